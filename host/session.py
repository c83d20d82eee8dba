"""Running a recipe on a line: the loops around the coordinator.

``run_over_broker`` puts the coordinator on a real MQTT broker and coordinates the modules
of the line out there: real boards, or an emulated line's processes (``launch`` starts
them; ``host/dryrun.py`` passes it, this module never imports the emulator).  The
in-process dry run (``skid demo``, ``skid run --emulate``) is ``host.dryrun.run_in_process``,
built from the same pieces here.

Both validate the line and the recipe before anything moves (``prepare``): a line or
recipe that fails its checks raises ``RunRefused`` and nothing is commanded.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from host.coordinator import Coordinator, Summary
from host.linecheck import check_line
from host.recipe import RecipeError, check_recipe, load_recipe, module_channels, operating_point
from line.loader import LineError, load_line, module_config

PROGRESS_EVERY_S = 30.0
SETTLE_AFTER_MS = 3000
SHUTDOWN_BOUND_MS = 1_800_000  # after the run time limit: how long the shutdown may take
SESSION_EXPIRY_S = 3600  # how long the broker keeps a vanished host's queued messages  # keep the loops turning briefly after the end, so final events land


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
    residence times, time to the next phase."""

    def __init__(self, log: Callable[[str], None], every_s: float = PROGRESS_EVERY_S):
        self.log = log
        self.every_ms = int(every_s * 1000)
        self._next = 0

    def __call__(self, coord: Coordinator, now_ms: int) -> None:
        if now_ms - coord.started_ms < self._next:
            return
        self._next += self.every_ms
        self.log(status_line(coord, now_ms))


def status_line(coord: Coordinator, now_ms: int) -> str:
    t = (now_ms - coord.started_ms) / 1000.0
    parts = [f"t={t:7.1f} s"]
    seq = coord.sequencer
    if seq is None:
        parts.append(coord.phase)
    else:
        info = seq.progress(now_ms) if hasattr(seq, "progress") else {}
        parts.append(f"{seq.state}: {info.get('phase', seq.phase)}")
        if info.get("step"):
            parts.append(f"[{info['step']}]")
        if info.get("residence_times") is not None:
            parts.append(f"{info['residence_times']:.1f} residence times")
        if info.get("next_phase_in_s") is not None:
            parts.append(f"next phase in ~{info['next_phase_in_s']:.0f} s")
        if info.get("collected_ml"):
            parts.append(f"collected {info['collected_ml']:.1f} mL")
    values = []
    for key in ("reactor1.temperature", "pump_a.pressure", "bpr1.pressure", "uv1.uv"):
        mid, ch = key.split(".")
        v = coord.access.value(mid, ch)
        if v is not None:
            values.append(f"{key}={v:.2f}")
    if values:
        parts.append(" ".join(values))
    if coord.trips:
        parts.append(f"trips: {len(coord.trips)}")
    return "  ".join(parts)


def shared_sim_ms(epoch: float, speed: float) -> int:
    """Simulated ms since ``epoch`` (Unix seconds) at ``speed`` x real time: the clock every
    process of a broker-mode line computes.  The emulator's processes use
    ``emulator.remote.shared_sim_ms``; this copy keeps a run on real modules free of the
    emulator, and tests/test_architecture.py checks the two agree."""
    return int((time.time() - epoch) * speed * 1000.0)


def expected_hashes(line, emulated: bool) -> dict[str, bytes]:
    """The config hash each module of ``line`` must announce: its board config with the
    line's module id, compiled (with emulated drivers when the line is emulated)."""
    if emulated:
        return {mid: module_config(line, mid)[1] for mid in line.modules}
    from edge.boardconfig import compile_config, config_hash, load_board_config

    out = {}
    for mid, comp in line.modules.items():
        cfg = load_board_config(comp.board)
        cfg.data["module"]["id"] = mid
        out[mid] = config_hash(compile_config(cfg))
    return out


def run_over_broker(
    line_path,
    recipe_path,
    broker_url: str,
    *,
    launch: Callable[[float], object] | None = None,
    speed: float = 10.0,
    runs_dir="runs",
    metadata: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
    max_s: float = 3600.0,
    should_abort: Callable[[], str | None] | None = None,
    line_id: str | None = None,
    keys: dict[str, bytes] | None = None,
    launched=None,
    poll_s: float = 0.005,
    epoch: float | None = None,
    resume: str | None = None,
    operator_key: bytes | None = None,
) -> Summary:
    """Run ``recipe_path`` over a real MQTT broker.

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
    from host.record import RunRecord
    from host.transport import MqttTransport
    from protocol import messages
    from protocol.topics import host_topic

    say = log or (lambda text: None)
    prep = prepare(line_path, recipe_path)
    for w in prep.warnings:
        say(f"warning: {w}")
    line = prep.line
    resumed: dict = {}  # the description of the run being resumed: read once
    if resume is not None:
        earlier = RunRecord.open(resume, runs_dir, readonly=True)
        try:
            resumed = earlier.meta()
        finally:
            earlier.close()
    resumed_with = resumed.get("metadata") or {}
    procs = launched
    own_procs = False
    epoch_given = False
    if launch is not None and procs is None:
        # The clock starts now, so the coordinator (subscribed before the modules start,
        # to hear their births) and the processes share it from the first message.
        procs = launch(time.time())
        own_procs = True
    if procs is not None:
        line_id = procs.line_id
        epoch = procs.epoch if procs.epoch is not None else procs._epoch
        speed = procs.speed
    else:
        if resume is not None and epoch is None:
            # Re-attaching to an emulated line: its clock is the one the run started on.
            if resumed_with.get("epoch") and resumed_with.get("speed", "1") != "1":
                epoch = float(resumed_with["epoch"])
                speed = float(resumed_with["speed"])
        if epoch is None:
            epoch = time.time()
            speed = 1.0
        else:
            epoch_given = True
        line_id = line_id or resumed.get("line_id") or line.id

    # Said before anything starts: `skid status` / `skid stop` need it from another terminal.
    say(f"skid: line id {line_id} on {broker_url} (skid status/stop --line-id {line_id})")

    def sim_ms() -> int:
        return shared_sim_ms(epoch, speed)

    epoch_ms = int(epoch * 1000)

    def host_ms() -> int:
        # Host time on the run's clock, so modules' expiry checks agree at any speed.
        return epoch_ms + sim_ms()

    state_topic = host_topic(line_id, "state")
    # One broker session per run (a restarted coordinator takes the same one over): what
    # modules publish while the coordinator is away waits for it at the broker.
    client_id = resumed_with.get("host_client_id") or f"{line_id}-host-{uuid.uuid4().hex[:6]}"
    transport = MqttTransport(
        broker_url,
        client_id,
        will=(state_topic, messages.build_state(False, 0), 1, True),
        # A durable session: events modules publish while the host reconnects (or is
        # being restarted) wait for it at the broker instead of being lost.
        session_expiry_s=SESSION_EXPIRY_S,
        resume_session=resume is not None,
    )
    try:
        transport.connect()
    except Exception:
        if own_procs:
            procs.stop()
        raise
    # Emulated modules run the emulated form of their board config; real ones the real
    # form.  A run on a real line never accepts an emulated stand-in.
    emulated = procs is not None or epoch_given
    hashes = expected_hashes(line, emulated)
    accepted = {mid: {h} for mid, h in hashes.items()}
    if resume is not None:
        record = RunRecord.open(resume, runs_dir)
        last_ms = record.meta().get("last_ms") or host_ms()
        record.add_gap(last_ms, host_ms(), "coordinator restarted: nothing recorded")
    else:
        record = RunRecord.create(
            runs_dir,
            line_id,
            line_hash=prep.line_hash,
            recipe_name=prep.recipe.name,
            recipe_hash=prep.recipe_hash,
            config_hashes={mid: h.hex() for mid, h in hashes.items()},
            metadata={
                **(metadata or {}),
                "broker": broker_url,
                "speed": f"{speed:g}",
                "host_client_id": client_id,
                "epoch": repr(epoch),
            },
            now_ms=host_ms(),
        )
    coord = Coordinator(
        line,
        prep.recipe,
        transport,
        record,
        line_id=line_id,
        now_ms=sim_ms(),
        host_ms=host_ms,
        keys=keys,
        expected_hashes=accepted,
        log=say,
        # Processes take a few wall seconds to start: allow a minute of wall time.
        attach_timeout_ms=int(60_000 * speed),
        resume_cause=None
        if resume is None
        else "coordinator restarted mid-run: re-attached, shutting the line down",
        operator_key=operator_key,
    )
    say(
        f"skid: run {record.run_id}: line {line.id} as {line_id} on {broker_url}"
        + (f", emulated at {speed:g}x" if procs is not None else "")
    )
    progress = Progress(say, progress_every_s)
    closed = False
    try:
        if procs is not None and not procs.procs:  # not started yet: the host listens first
            procs.start()
        limits = RunLimits(coord, max_s, sim_ms(), should_abort)
        while True:
            now = sim_ms()
            coord.step(now)
            progress(coord, now)
            if coord.finished or limits.give_up(now):
                break
            time.sleep(poll_s)
        settle_end = sim_ms() + SETTLE_AFTER_MS
        while sim_ms() < settle_end:
            coord.step(sim_ms())
            time.sleep(poll_s)
        judge_end(coord, _all_stopped(coord))
        summary = coord.close()
        closed = True
    finally:
        record.close()
        # A clean goodbye discards our will: after a crash, send it, so the retained host
        # state says offline.
        transport.close(send_will=not closed)
        if own_procs:
            procs.stop()
    return summary


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
    """``all_safe_at_end``: outputs safe and no pressure left in the line."""
    coord.residual = residual_pressures(coord)
    coord.all_safe_at_end = False if coord.residual else outputs_safe


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
