"""Running a recipe on a line: the one loop around the coordinator.

``run_recipe(prep, site)`` is the run orchestration: it opens the run record, puts the
coordinator on the site's transport and clock, lets the modules in, turns the loop until
the recipe ends (or the run time limit, or Ctrl-C, asks for the shutdown sequence), lets
final events land, judges the end and closes everything.  A ``Site`` is all that differs
between where the modules are:

* ``BrokerSite`` (here): a real MQTT broker, with real boards or an emulated line's
  processes (``run_over_broker``; ``launch`` starts them, passed by ``host/dryrun.py``:
  this module never imports the emulator), on a wall clock (``SharedClock``);
* ``host.dryrun.InProcessSite``: the emulated modules and plant in this process, on the
  emulation's simulated clock, through the in-process bus (``skid demo``,
  ``skid run --emulate``).

Every run validates the line and the recipe before anything moves (``prepare``): a line
or recipe that fails its checks raises ``RunRefused`` and nothing is commanded.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.boardconfig import compile_config, config_hash, load_board_config
from edge.clock import shared_ms
from host.coordinator import ATTACH_TIMEOUT_MS, Coordinator, Summary
from host.linecheck import check_line
from host.plan import PLAN_NOTE, make_plan, plan_lines, plan_summary
from host.recipe import RecipeError, check_recipe, load_recipe, module_channels, operating_point
from host.record import RunRecord
from host.runtext import current_step_text, display_unit
from host.transport import MqttTransport
from line.loader import LineError, load_line, module_config
from protocol import messages
from protocol.topics import host_topic

PROGRESS_EVERY_S = 30.0
SETTLE_AFTER_MS = 3000  # keep the loop turning briefly after the end, so final events land
SHUTDOWN_BOUND_MS = 1_800_000  # after the run time limit: how long the shutdown may take
SESSION_EXPIRY_S = 3600  # how long the broker keeps a vanished host's queued messages


class RunRefused(Exception):
    """The line or recipe failed validation: nothing was started (exit code 2)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class Prepared:
    line: object
    recipe: object
    line_hash: str
    recipe_hash: str
    warnings: list[str]
    plan: dict | None = None  # host/plan.py: printed at the start, stored in the record


def _file_hash(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def prepare(line_path, recipe_path) -> Prepared:
    """Load and validate the line and the recipe together; raise RunRefused on any error."""
    problems: list[str] = []
    try:
        line = load_line(line_path)
    except LineError as exc:
        raise RunRefused([str(exc)]) from None
    try:
        recipe = load_recipe(recipe_path)
    except RecipeError as exc:
        raise RunRefused([str(exc)]) from None
    problems.extend(str(p) for p in check_recipe(recipe, line))
    # The same operating point as `skid check`: findings located at the recipe's keys
    # (each message names its file and line; a component id would only repeat it).
    point = operating_point(recipe, line)
    report = check_line(
        line,
        temperature_c=point.temperature_c,
        pressure_bar=point.pressure_bar,
        solvent=recipe.solvent,
        origin=point.origin,
    )
    problems.extend(i.message for i in report.errors)
    if problems:
        raise RunRefused(problems)
    return Prepared(
        line=line,
        recipe=recipe,
        line_hash=_file_hash(line_path),
        recipe_hash=_file_hash(recipe_path),
        warnings=[i.message for i in report.warnings],
        plan=make_plan(line, recipe),
    )


class RunLimits:
    """Ctrl-C/SIGTERM (``should_abort()`` returns a reason) and the run-time limit: each
    asks the coordinator, once, for the recipe's shutdown sequence rather than leaving the
    line as it is; ``SHUTDOWN_BOUND_MS`` after the limit the loop gives up."""

    def __init__(self, coord, max_s: float, now_ms: int, should_abort=None):
        self.coord = coord
        self.max_s = max_s
        self.should_abort = should_abort
        self.end_ms = now_ms + int(max_s * 1000)
        self.abort_sent = False
        self.limit_hit = False

    def give_up(self, now_ms: int) -> bool:
        """Call once per loop turn; True when the loop must end without the coordinator."""
        if self.should_abort is not None and not self.abort_sent:
            why = self.should_abort()
            if why:
                self.abort_sent = True
                self.coord.request("abort", "operator", why)
        if now_ms < self.end_ms:
            return False
        if self.limit_hit:
            self.coord.reason = f"the run did not finish within {self.max_s:g} s"
            return True
        self.limit_hit = True
        self.end_ms = now_ms + SHUTDOWN_BOUND_MS
        if not self.abort_sent:
            self.abort_sent = True
            self.coord.request("abort", "coordinator", f"run time limit {self.max_s:g} s reached")
        return False


class Progress:
    """A line of progress to stderr every ``every_s`` of run time: phase, elapsed,
    residence times, time to the next phase, and the readings ``status_signals`` picks."""

    def __init__(self, log: Callable[[str], None], every_s: float = PROGRESS_EVERY_S):
        self.log = log
        self.every_ms = int(every_s * 1000)
        self._next = 0
        self._signals: list[tuple[str, str]] | None = None

    def __call__(self, coord: Coordinator, now_ms: int) -> None:
        if now_ms - coord.started_ms < self._next:
            return
        self._next += self.every_ms
        if self._signals is None:
            self._signals = status_signals(coord.line, coord.recipe)
        self.log(status_line(coord, now_ms, self._signals))


def status_signals(line, recipe) -> list[tuple[str, str]]:
    """The (module, channel) readings a progress line shows: every signal the recipe waits
    on (its steps and shutdown sequences), and the pressure at the head of the line (the
    first pump's pressure sensor, where a clog shows first); in the line's module order."""
    wanted: set[tuple[str, str]] = set()
    if recipe is not None:
        steps = [st for _, st in recipe.steps()] + [
            st for sd in recipe.shutdowns for st in sd.steps
        ]
        for step in steps:
            wait = step.wait
            if wait is None:
                continue
            if wait.signal is not None:
                wanted.add(tuple(wait.signal))
            wanted.update((s.module, s.channel) for s in wait.steady)
    pumps = [mid for mid, m in line.modules.items() if m.kind == "pump"]
    if pumps:
        for ch in module_channels(line, pumps[0]).values():
            if ch.role == "sensor" and ch.unit == "bar":
                wanted.add((pumps[0], ch.name))
                break
    order = {mid: i for i, mid in enumerate(line.modules)}
    return sorted(wanted, key=lambda sig: (order.get(sig[0], len(order)), sig[1]))


def status_line(coord: Coordinator, now_ms: int, signals=None) -> str:
    """One progress line: run time, the sequencer's phase and step (its values and waits
    resolved to numbers with units, ``host/runtext.py``), and the ``signals`` readings with
    their units (default: ``status_signals`` of the run's line and recipe)."""
    t = (now_ms - coord.started_ms) / 1000.0
    parts = [f"t={t:7.1f} s"]
    seq = coord.sequencer
    if seq is None:
        parts.append(coord.phase)
    else:
        info = seq.progress(now_ms) if hasattr(seq, "progress") else {}
        phase = info.get("phase", seq.phase)
        parts.append(f"{seq.state}: {phase}")
        if info.get("step"):
            recipe, plan = getattr(coord, "recipe", None), getattr(seq, "plan", None)
            parts.append(f"[{current_step_text(recipe, plan, phase, info['step'])}]")
        if info.get("residence_times") is not None:
            parts.append(f"{info['residence_times']:.1f} residence times")
        if info.get("next_phase_in_s") is not None:
            parts.append(f"next phase in ~{info['next_phase_in_s']:.0f} s")
        if info.get("collected_ml"):
            parts.append(f"collected {info['collected_ml']:.1f} mL")
    if signals is None:
        signals = status_signals(coord.line, coord.recipe)
    values = []
    registry = getattr(coord, "registry", None)
    for mid, ch in signals:
        v = coord.access.value(mid, ch)
        if v is not None:
            view = None if registry is None else registry.modules.get(mid)
            channel = None if view is None else view.channel(ch)
            unit = display_unit(getattr(channel, "unit", ""))
            values.append(f"{mid}.{ch}={v:.2f}" + (f" {unit}" if unit else ""))
    if values:
        parts.append(" ".join(values))
    if coord.trips:
        parts.append(f"trips: {len(coord.trips)}")
    return "  ".join(parts)


def expected_hashes(line, emulated: bool) -> dict[str, bytes]:
    """The config hash each module of ``line`` must announce: its board config with the
    line's module id, compiled (with emulated drivers when the line is emulated)."""
    if emulated:
        return {mid: module_config(line, mid)[1] for mid in line.modules}
    out = {}
    for mid, comp in line.modules.items():
        cfg = load_board_config(comp.board)
        cfg.data["module"]["id"] = mid
        out[mid] = config_hash(compile_config(cfg))
    return out


# --- the one run orchestration ----------------------------------------------------------------


class SharedClock:
    """A broker-mode run's clock: ``speed`` x real time since ``epoch`` (Unix seconds), the
    clock every process of the line computes (``edge.clock.shared_ms``).  ``advance()`` lets
    ``poll_s`` of wall time pass."""

    def __init__(self, epoch: float, speed: float, poll_s: float = 0.005):
        self.epoch = epoch
        self.speed = speed
        self.poll_s = poll_s
        self._epoch_ms = int(epoch * 1000)

    def now_ms(self) -> int:
        return shared_ms(time.time(), self.epoch, self.speed)

    def host_ms(self) -> int:
        # Host time on the run's clock, so modules' expiry checks agree at any speed.
        return self._epoch_ms + self.now_ms()

    def advance(self) -> None:
        time.sleep(self.poll_s)


class Site:
    """Where the modules of a run are and how its time passes: all that the in-process dry
    run (``host.dryrun.InProcessSite``) and a run over a broker (``BrokerSite``) differ in.
    ``run_recipe`` does everything else, the same way for both.

    Set by a site: ``line_id``; ``clock`` (``now_ms()`` the modules' ms, ``host_ms()`` the
    host time stamped in the record, ``advance()`` lets time pass: a simulation step or a
    short sleep); ``transport`` (connected, with the host's will); ``hashes`` (the config
    hash each module must announce, recorded); ``metadata`` (added to the record's)."""

    line_id: str
    clock: object
    transport: object
    hashes: dict[str, bytes]
    metadata: dict[str, str]
    keys: dict[str, bytes] | None = None  # per-module command keys
    attach_timeout_ms: int = ATTACH_TIMEOUT_MS
    resume: str | None = None  # a run id or record path to re-attach to
    plant: object = None  # what ``on_tick(coord, plant)`` gets (tests, fault scripts)

    def banner(self, run_id: str) -> str:
        raise NotImplementedError

    def start(self) -> None:
        """Once the coordinator listens: let the modules in (they birth)."""

    def before_turn(self, coord: Coordinator) -> None:
        """Before each turn of the main loop (in-process: due faults)."""

    def outputs_safe(self, coord: Coordinator) -> bool | None:
        """Whether every module's outputs are safe at the end (None: cannot tell)."""
        return _all_stopped(coord)

    def close(self, clean: bool) -> None:
        """After the run (``clean``: the coordinator closed the run normally)."""


def prepare_and_warn(line_path, recipe_path, say: Callable[[str], None]) -> Prepared:
    prep = prepare(line_path, recipe_path)
    if prep.plan is not None:
        for text in plan_lines(prep.plan, findings=False):
            say(text)
    for w in prep.warnings:
        say(f"warning: {w}")
    return prep


def run_recipe(
    prep: Prepared,
    site: Site,
    *,
    runs_dir="runs",
    metadata: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
    max_s: float = 3600.0,
    should_abort: Callable[[], str | None] | None = None,
    on_tick: Callable[[Coordinator, object], None] | None = None,
    operator_key: bytes | None = None,
) -> Summary:
    """Run the prepared recipe on ``site``'s modules until it finishes, the run time limit
    ``max_s`` passes (then the shutdown sequence, bounded), or ``should_abort()`` gives a
    reason (then the shutdown sequence runs to its end); return the summary.  Closes the
    record and the site whatever happens."""
    say = log or (lambda text: None)
    try:
        record = _open_record(prep, site, runs_dir, metadata)
    except BaseException:
        site.close(clean=False)
        raise
    closed = False
    try:
        coord = _coordinator(prep, site, record, say, operator_key)
        say(site.banner(record.run_id))
        site.start()
        _loop(coord, site, Progress(say, progress_every_s), max_s, should_abort, on_tick)
        _settle(coord, site.clock)
        judge_end(coord, site.outputs_safe(coord))
        summary = coord.close()
        closed = True
    finally:
        record.close()
        site.close(clean=closed)
    return summary


def _open_record(prep: Prepared, site: Site, runs_dir, metadata) -> RunRecord:
    clock = site.clock
    if site.resume is not None:
        record = RunRecord.open(site.resume, runs_dir)
        last_ms = record.meta().get("last_ms") or clock.host_ms()
        record.add_gap(last_ms, clock.host_ms(), "coordinator restarted: nothing recorded")
        return record
    record = RunRecord.create(
        runs_dir,
        site.line_id,
        line_hash=prep.line_hash,
        recipe_name=prep.recipe.name,
        recipe_hash=prep.recipe_hash,
        config_hashes={mid: h.hex() for mid, h in site.hashes.items()},
        metadata={**(metadata or {}), **site.metadata},
        now_ms=clock.host_ms(),
    )
    if prep.plan is not None:  # in the hash chain, right after the run's description
        record.add_note(clock.host_ms(), PLAN_NOTE, plan_summary(prep.plan), prep.plan)
    return record


def _coordinator(prep: Prepared, site: Site, record, say, operator_key) -> Coordinator:
    return Coordinator(
        prep.line,
        prep.recipe,
        site.transport,
        record,
        line_id=site.line_id,
        now_ms=site.clock.now_ms(),
        host_ms=site.clock.host_ms,
        keys=site.keys,
        expected_hashes={mid: {h} for mid, h in site.hashes.items()},
        log=say,
        attach_timeout_ms=site.attach_timeout_ms,
        resume_cause=None
        if site.resume is None
        else "coordinator restarted mid-run: re-attached, shutting the line down",
        operator_key=operator_key,
    )


def _loop(coord, site: Site, progress: Progress, max_s, should_abort, on_tick) -> None:
    clock = site.clock
    limits = RunLimits(coord, max_s, clock.now_ms(), should_abort)
    while True:
        site.before_turn(coord)
        clock.advance()
        now = clock.now_ms()
        coord.step(now)
        if on_tick is not None:
            on_tick(coord, site.plant)
        progress(coord, now)
        if coord.finished or limits.give_up(now):
            return


def _settle(coord: Coordinator, clock) -> None:
    """Keep the loop turning briefly after the end, so final events land."""
    settle_end = clock.now_ms() + SETTLE_AFTER_MS
    while clock.now_ms() < settle_end:
        clock.advance()
        coord.step(clock.now_ms())


# --- over a broker ---------------------------------------------------------------------------


class BrokerSite(Site):
    """The modules of the line on a real MQTT broker: real boards (in real time, or on the
    shared clock of an emulated line someone else launched: ``epoch``), or an emulated
    line's processes (``procs``, ``host.launcher.EmulatedLineProcesses``: started once the
    coordinator listens, stopped at the end when ``own_procs``)."""

    def __init__(
        self,
        line,
        broker_url: str,
        say: Callable[[str], None],
        *,
        procs=None,
        own_procs: bool = False,
        line_id: str | None = None,
        epoch: float | None = None,
        speed: float = 1.0,
        keys: dict[str, bytes] | None = None,
        resume: str | None = None,
        resumed: dict | None = None,
        poll_s: float = 0.005,
    ):
        self.line = line
        self.broker_url = broker_url
        self.procs = self.plant = procs
        self.own_procs = own_procs
        self.keys = keys
        self.resume = resume
        resumed = resumed or {}
        resumed_with = resumed.get("metadata") or {}
        epoch, speed, emulated = _broker_clock(procs, epoch, speed, resume, resumed_with)
        self.line_id = (
            procs.line_id if procs is not None else (line_id or resumed.get("line_id") or line.id)
        )
        self.clock = SharedClock(epoch, speed, poll_s)
        # Processes take a few wall seconds to start: allow a minute of wall time.
        self.attach_timeout_ms = int(60_000 * speed)
        # Said before anything starts: `skid status` / `skid stop` need it from another terminal.
        lid = self.line_id
        say(f"skid: line id {lid} on {broker_url} (skid status/stop --line-id {lid})")
        # One broker session per run (a restarted coordinator takes the same one over): what
        # modules publish while the coordinator is away waits for it at the broker.
        client_id = resumed_with.get("host_client_id") or f"{lid}-host-{uuid.uuid4().hex[:6]}"
        self.transport = self._connect(client_id)
        # Emulated modules run the emulated form of their board config; real ones the real
        # form.  A run on a real line never accepts an emulated stand-in.
        self.hashes = expected_hashes(line, emulated)
        self.metadata = {
            "broker": broker_url,
            "speed": f"{speed:g}",
            "host_client_id": client_id,
            "epoch": repr(epoch),
        }

    def _connect(self, client_id: str) -> MqttTransport:
        state_topic = host_topic(self.line_id, "state")
        transport = MqttTransport(
            self.broker_url,
            client_id,
            will=(state_topic, messages.build_state(False, 0), 1, True),
            # A durable session: events modules publish while the host reconnects (or is
            # being restarted) wait for it at the broker instead of being lost.
            session_expiry_s=SESSION_EXPIRY_S,
            resume_session=self.resume is not None,
        )
        try:
            transport.connect()
        except Exception:
            if self.own_procs:
                self.procs.stop()
            raise
        return transport

    def banner(self, run_id: str) -> str:
        return f"skid: run {run_id}: line {self.line.id} as {self.line_id} on {self.broker_url}" + (
            f", emulated at {self.clock.speed:g}x" if self.procs is not None else ""
        )

    def start(self) -> None:
        if self.procs is not None and not self.procs.procs:  # not started yet: host listens first
            self.procs.start()

    def close(self, clean: bool) -> None:
        # A clean goodbye discards our will: after a crash, send it, so the retained host
        # state says offline.
        self.transport.close(send_will=not clean)
        if self.own_procs:
            self.procs.stop()


def _broker_clock(procs, epoch, speed, resume, resumed_with) -> tuple[float, float, bool]:
    """(epoch, speed, emulated) of a broker-mode run: the launched processes' clock; on
    re-attaching to an emulated line, the one the run started on; with ``epoch``, the
    shared clock of an emulated line launched elsewhere; else real time from now."""
    if procs is not None:
        return (procs.epoch if procs.epoch is not None else procs._epoch), procs.speed, True
    if resume is not None and epoch is None:
        if resumed_with.get("epoch") and resumed_with.get("speed", "1") != "1":
            epoch = float(resumed_with["epoch"])
            speed = float(resumed_with["speed"])
    if epoch is None:
        return time.time(), 1.0, False
    return epoch, speed, True


def _resumed_meta(resume: str | None, runs_dir) -> dict:
    """The description of the run being resumed (read once), or {}."""
    if resume is None:
        return {}
    earlier = RunRecord.open(resume, runs_dir, readonly=True)
    try:
        return earlier.meta()
    finally:
        earlier.close()


def run_over_broker(
    line_path,
    recipe_path,
    broker_url: str,
    *,
    launch: Callable[[float], object] | None = None,
    speed: float = 10.0,
    line_id: str | None = None,
    keys: dict[str, bytes] | None = None,
    launched=None,
    poll_s: float = 0.005,
    epoch: float | None = None,
    resume: str | None = None,
    runs_dir="runs",
    log: Callable[[str], None] | None = None,
    **options,
) -> Summary:
    """Run ``recipe_path`` over a real MQTT broker (``options``: those of ``run_recipe``).

    ``launch(epoch)`` (an emulated line: ``host.dryrun.run_emulated_over_broker``) is
    called once the line and recipe passed ``prepare`` and returns the line's processes,
    not yet started, on a fresh line id and a shared clock ``speed`` x real time from
    ``epoch``; they are started once the coordinator listens and stopped (retained
    messages cleared) at the end.  Without it, the real modules of the line are coordinated on
    ``line_id`` (default: the line's id) in real time, or, with ``epoch``, on the shared
    clock of an emulated line someone else launched (``speed`` x real time since ``epoch``).
    ``launched`` (tests) is an already-started ``EmulatedLineProcesses`` to use.

    ``resume`` (a run id or record path) re-attaches a restarted coordinator to that run:
    the record is reopened, the time nobody recorded is entered as a gap, the modules are
    asked to rebirth, and the recipe's ``host_restart`` shutdown sequence brings the line
    to its safe end (a run is not continued across a gap in coordination).
    """
    say = log or (lambda text: None)
    prep = prepare_and_warn(line_path, recipe_path, say)
    resumed = _resumed_meta(resume, runs_dir)
    procs = launched
    own_procs = launch is not None and procs is None
    if own_procs:
        # The clock starts now, so the coordinator (subscribed before the modules start,
        # to hear their births) and the processes share it from the first message.
        procs = launch(time.time())
    site = BrokerSite(
        prep.line,
        broker_url,
        say,
        procs=procs,
        own_procs=own_procs,
        line_id=line_id,
        epoch=epoch,
        speed=speed,
        keys=keys,
        resume=resume,
        resumed=resumed,
        poll_s=poll_s,
    )
    return run_recipe(prep, site, runs_dir=runs_dir, log=say, **options)


SAFE_STATES = ("idle", "stopped", "aborted", "completed")
# Above this (bar gauge) a pressure reading at the end is pressure trapped in the line.
# The recipes' own "vented" criterion is the BPR below 0.5 bar; a transducer's zero
# offset and the liquid head in the tubing read a few tenths at rest, so a lower limit
# would cry wolf, while 0.5 bar behind a fitting still sprays solvent when it is opened.
RESIDUAL_BAR = 0.5


def residual_pressures(coord: Coordinator) -> list[dict]:
    """Every pressure sensor of the line still reading above ``RESIDUAL_BAR``, as
    ``{"component": module id, "pressure_bar": reading}`` (highest first).  A line that
    tripped on a clog keeps the pump's pressure behind the clog: no valve of the line can
    vent it, so the operator must know before opening anything.  Sensors not heard from
    (module lost, reading stale or bad) cannot be judged and are left out."""
    out = []
    for mid in coord.line.modules:
        for ch in module_channels(coord.line, mid).values():
            if ch.role != "sensor" or ch.unit != "bar":
                continue
            value = coord.access.value(mid, ch.name)
            if value is not None and value > RESIDUAL_BAR:
                out.append({"component": mid, "pressure_bar": round(value, 2)})
    return sorted(out, key=lambda r: -r["pressure_bar"])


def judge_end(coord: Coordinator, outputs_safe: bool | None) -> None:
    """``all_safe_at_end``: outputs safe and no pressure left in the line; a completed run
    with a quality excursion or a diverted segment is ``completed_with_deviations``."""
    coord.residual = residual_pressures(coord)
    coord.all_safe_at_end = False if coord.residual else outputs_safe
    seq = coord.sequencer
    if coord.outcome == "completed" and seq is not None and seq.deviations:
        # Every phase done, but something was diverted or off spec (host/quality.py).
        coord.outcome = "completed_with_deviations"


def _all_stopped(coord: Coordinator) -> bool | None:
    """Whether every module last reported a state whose outputs are safe; None when a
    module's state is unknown (never heard, or offline: its last word may be stale)."""
    states = []
    for mid in coord.line.modules:
        view = coord.registry.modules.get(mid)
        if view is None or view.state is None or not view.online:
            return None
        states.append(view.state)
    return all(s in SAFE_STATES for s in states)
