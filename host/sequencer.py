"""The recipe sequencer: runs a recipe's phases on a line, deterministically.

``Sequencer(recipe, line, access, now_ms)`` is driven by ``tick(now_ms)`` and never
blocks or sleeps.  ``access`` is the coordinator's LineAccess (``value``, ``send``,
``module_state``, ``online``, ``note``): commands are asynchronous, each ``send``
returns a Pending with ``done``/``ok``/``reason``.

A step runs in two stages: its commands (service commands, the outlet valve, setpoints,
all sent at once) must every one be acknowledged OK before its wait begins; a rejected
command, or one unanswered after ``command_timeout_s``, takes the step's abort path.
A wait ends when all its conditions hold, or at its timeout: then ``on_timeout`` says
abort (run the abort path), continue (next step) or hold (the operator decides).

States: idle -> running -> completed, with held and manual (the recipe paused; in
manual the operator sets setpoints, while every module's own interlocks stay active) and
aborting -> aborted when a shutdown sequence runs.  A trip or a lost module runs the
shutdown sequence the recipe declares for that cause; the first cause wins, later ones
are noted.  While paused (held or manual) the recipe's timers stand still and the outlet
goes to waste; resume puts back what the recipe had set (outlet, and every setpoint the
operator changed in manual) and restarts the current wait's condition tracking.

Every phase and step change, operator action and reaction goes to ``access.note`` so the
run record holds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from host.quality import Ledger, QualityMonitor, totals
from host.recipe import (
    COMMAND_TIMEOUT_S,
    HOST_CAUSES,
    Recipe,
    RecipeError,
    RecipePlan,
    Step,
    Wait,
    plan_recipe,
    valve_target,
)
from host.steady import SteadyState

STATES = ("idle", "running", "held", "manual", "aborting", "completed", "aborted")

# Module states in which a service command has nothing left to do.
_ALREADY = {
    "start": ("starting", "execute", "unholding"),
    "stop": ("stopping", "stopped", "aborting", "aborted"),
    "abort": ("aborting", "aborted"),
    "hold": ("holding", "held"),
    "unhold": ("unholding", "execute"),
    "complete": ("completing", "completed"),
    "reset": ("resetting", "idle"),
}
# Module states whose outputs are already safe: shutdown steps leave them alone.
_SAFE_STATES = ("stopping", "stopped", "aborting", "aborted")
_FINAL = ("stopped", "aborted", "completed")

# A regulated pressure that collapses while the recipe runs (a leak, a regulator that lost
# control): the line-level reaction is the shutdown for cause ``low_pressure`` (heater
# off first).  Watched: every pressure setpoint the recipe commanded at or above
# LOW_PRESSURE_MIN_BAR (a vent to 0 is not), once its measure has reached
# LOW_PRESSURE_ARM of it (pressurising is not a collapse); it fires when the measure
# stays below LOW_PRESSURE_FRACTION of the setpoint for LOW_PRESSURE_FOR_MS (a few
# noisy samples do not).  No module can see this alone: the BPR does not know the coil
# is hot, and a BPR "below" interlock would trip it while idle.
LOW_PRESSURE_CAUSE = "low_pressure"
LOW_PRESSURE_MIN_BAR = 1.0
LOW_PRESSURE_ARM = 0.8
LOW_PRESSURE_FRACTION = 0.5
LOW_PRESSURE_FOR_MS = 2000


@dataclass
class _Command:
    module: str
    op: str
    args: dict | None
    label: str
    key: tuple[str, str] | None = None  # (module, channel) for setpoints
    value: float | None = None
    pending: object = None
    sent_ms: int = 0
    skipped: str | None = None
    error: str | None = None


@dataclass
class _Run:
    """One step in execution."""

    phase: str
    step: Step
    shutdown: bool
    started_ms: int
    commands: list[_Command] = field(default_factory=list)
    stage: str = "send"  # send -> acks -> wait -> done
    wait_start_active: int = 0
    pumped0: float = 0.0
    collected0: float = 0.0
    band_since: int | None = None
    steady: list[SteadyState] = field(default_factory=list)
    timed_out_hold: bool = False


class Sequencer:
    def __init__(
        self,
        recipe: Recipe,
        plan,
        access,
        now_ms: int = 0,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
    ):
        self.recipe = recipe
        self.line = plan
        self.plan: RecipePlan = plan_recipe(recipe, plan)
        if self.plan.errors:
            raise RecipeError(self.plan.errors, str(recipe.file or recipe.name))
        self.access = access
        self.command_timeout_ms = int(command_timeout_s * 1000)
        self.state = "idle"
        self.phase: str | None = None
        self.reason = ""
        self.first_cause: str | None = None
        self.first_module: str | None = None
        self.later_causes: list[tuple[str | None, str, int]] = []  # module, cause, t_ms
        self.shutdown_name: str | None = None
        self.collected_ml = 0.0
        self.pumped_ml = 0.0  # every pump's flow, integrated
        self.now_ms = now_ms
        self.started_ms: int | None = None
        self.history: list[dict] = []  # one entry per step: phase, step, start_s, end_s, result
        self._phases: list[dict] = []  # phase, start_s, end_s
        self._last_ms = now_ms
        self._active_ms = 0  # advances only while running or aborting
        self._pumped_active = 0.0  # pumped while active: residence-time waits
        self._queue: list[tuple[str, Step]] = [(phase.name, step) for phase, step in recipe.steps()]
        self._run: _Run | None = None
        self._restore: list[_Command] = []  # resume: put back what the recipe set
        self._side: list[_Command] = []  # manual setpoints, pause outlet moves
        self._commanded: dict[tuple[str, str], float] = {}
        self._manual_changed: set[tuple[str, str]] = set()
        self._outlet_moved = False
        self._lost: set[str] = set()
        self._pressure_loops = self._regulated_pressures()
        self._pressure_armed: dict[tuple[str, str], float] = {}  # loop -> setpoint armed at
        self._pressure_low_since: dict[tuple[str, str], int] = {}
        # Quality (host/quality.py): the collect phase's monitor, the outlet's ledger.
        self._quality_specs = {p.name: p.quality for p in recipe.phases if p.quality}
        self.quality: QualityMonitor | None = None
        self._quality_phase: str | None = None
        self.ledger = Ledger()
        self.collected_in_spec_ml = 0.0
        self._divert_why: str | None = None
        self._diverting_since: int | None = None
        self._outlet_sent_ms = -(10**9)
        self._estimate = not self._measured_flow_channels()
        self._feeder = None  # feed(): more steps asked for at a point of the recipe
        self._feed_before: str | None = None

    def feed(self, before_phase: str | None, feeder) -> None:
        """Let ``feeder()`` extend the running recipe (a campaign's experiments): each time
        the recipe is about to enter ``before_phase`` (None: about to finish) while
        running, ``feeder()`` is asked for more steps and returns a list of
        ``(phase name, Step)`` to run first, ``None`` to be asked again at the next tick
        (the recipe waits there, its timers running), or ``[]`` when it has no more: the
        recipe then goes on into ``before_phase``.  A shutdown replaces the queue, so a
        feeder is never asked once the recipe is aborting."""
        self._feeder = feeder
        self._feed_before = before_phase

    # -- what the outside sees --------------------------------------------------------------

    @property
    def step(self) -> str | None:
        return None if self._run is None else self._run.step.name

    @property
    def step_name(self) -> str | None:
        return self.step

    @property
    def outcome(self) -> str | None:
        return self.state if self.state in ("completed", "aborted") else None

    @property
    def finished(self) -> bool:
        return self.state in ("completed", "aborted")

    def elapsed_s(self) -> float:
        return 0.0 if self.started_ms is None else (self.now_ms - self.started_ms) / 1000.0

    def residence_times(self) -> float:
        """Reactor volumes pumped since the start."""
        return self.pumped_ml / self.plan.reactor_volume_ml

    def progress(self, now_ms: int | None = None) -> dict:
        """Where the run is (``now_ms``, if given, only moves the elapsed times on)."""
        phase_start = self._phases[-1]["start_s"] if self._phases else 0.0
        elapsed = self.elapsed_s()
        if now_ms is not None and self.started_ms is not None and now_ms > self.now_ms:
            elapsed = (now_ms - self.started_ms) / 1000.0
        return {
            "state": self.state,
            "phase": self.phase,
            "step": self.step,
            "elapsed_s": round(elapsed, 3),
            "phase_elapsed_s": round(elapsed - phase_start, 3),
            "residence_times": round(self.residence_times(), 3),
            "residence_time_s": self.plan.residence_time_s,
            "collected_ml": round(self.collected_ml, 3),
            "next_phase_in_s": self._next_phase_in_s(),
            "reason": self.reason,
        }

    def phase_log(self) -> list[dict]:
        """Each phase entered: {phase, start_s, end_s} (end_s None while it runs)."""
        return [dict(p) for p in self._phases]

    # -- run control -----------------------------------------------------------------------

    def start(self, now_ms: int | None = None, who: str = "coordinator", reason: str = ""):
        if now_ms is not None:
            self._advance_clock(now_ms)
        if self.state != "idle":
            return False, f"cannot start: the recipe is {self.state}"
        self.started_ms = self.now_ms
        self.state = "running"
        self._note(
            "recipe",
            f"recipe {self.recipe.name} starts on line {self.recipe.line}: "
            f"{self.plan.total_flow_ml_min:.4g} mL/min for "
            f"{self.recipe.conditions.residence_time_min:g} min in "
            f"{self.plan.reactor_volume_ml:g} mL",
            who=who,
            reason=reason,
            flows={p: round(f, 4) for p, f in self.plan.pump_flows.items()},
        )
        self._step_machine()
        return True, "started"

    def hold(self, who: str, reason: str):
        """Pause the recipe: timers stop, the outlet goes to waste, modules keep running."""
        if self.state != "running":
            return self._operator("hold", who, reason, False, f"the recipe is {self.state}")
        self._pause("held")
        return self._operator("hold", who, reason, True, "recipe timers stopped, outlet to waste")

    def manual(self, who: str, reason: str):
        """Pause the recipe and let the operator set setpoints (``manual_set``); every
        module's interlocks stay active."""
        if self.state not in ("running", "held"):
            return self._operator("manual", who, reason, False, f"the recipe is {self.state}")
        self._pause("manual")
        return self._operator(
            "manual", who, reason, True, "setpoints by hand (manual_set); interlocks stay active"
        )

    def manual_set(self, module: str, channel: str, value: float, who: str, reason: str):
        """In manual: send one setpoint, checked against the module's board config."""
        action = f"set {module}.{channel} = {value}"
        why = self._manual_refusal(module, channel, value)
        if why is not None:
            return self._operator(action, who, reason, False, why)
        cmd = _Command(
            module,
            "set_setpoint",
            {"channel": channel, "value": float(value)},
            f"set {module}.{channel}={value:g}",
        )
        self._send(cmd)
        self._side.append(cmd)
        self._manual_changed.add((module, channel))
        return self._operator(action, who, reason, True, "sent")

    def _manual_refusal(self, module, channel, value) -> str | None:
        if self.state != "manual":
            return f"setpoints are set by hand only in manual (the recipe is {self.state})"
        chans = self.plan.channels.get(module)
        if chans is None:
            return f"no module {module!r}: allowed " + ", ".join(self.plan.channels)
        info = chans.get(channel)
        settable = [
            c.name
            for c in chans.values()
            if c.role == "setpoint" or (c.role == "actuator" and c.driven_by is None)
        ]
        if info is None or channel not in settable:
            return f"{module}.{channel} is not a setpoint: allowed " + ", ".join(settable)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            return f"{module}.{channel} = {value!r} is not a number"
        if not info.lo <= value <= info.hi:
            return f"{module}.{channel} = {value:g} outside {info.lo:g}..{info.hi:g}"
        return None

    def resume(self, who: str, reason: str):
        """Back to running: the recipe's outlet and every setpoint changed in manual are
        put back (acknowledged before the recipe goes on); the current wait's conditions
        are tracked afresh."""
        if self.state not in ("held", "manual"):
            return self._operator("resume", who, reason, False, f"the recipe is {self.state}")
        keys = set(self._manual_changed)
        if self._outlet_moved and self.plan.collector is not None:
            keys.add((self.plan.collector.module, self.plan.collector.channel))
        restore = []
        for module, channel in sorted(keys):
            value = self._commanded.get((module, channel))
            if value is None:
                self._note(
                    "recipe",
                    f"{module}.{channel} was never set by the recipe: left as the operator set it",
                )
                continue
            restore.append(
                _Command(
                    module,
                    "set_setpoint",
                    {"channel": channel, "value": value},
                    f"restore {module}.{channel}={value:g}",
                    key=(module, channel),
                    value=value,
                )
            )
        self._manual_changed.clear()
        self._outlet_moved = False
        for cmd in restore:
            self._send(cmd)
        self._restore = restore
        self.state = "running"
        run = self._run
        if run is not None and run.stage == "wait":
            run.band_since = None
            for det in run.steady:
                det.reset()
            if run.timed_out_hold:
                run.timed_out_hold = False
                run.wait_start_active = self._active_ms
        result = self._operator(
            "resume",
            who,
            reason,
            True,
            f"{len(restore)} setpoint(s) restored" if restore else "recipe running",
        )
        self._step_machine()
        return result

    def abort(self, who: str, reason: str):
        """Run the shutdown sequence for ``operator_abort``."""
        if self.state == "aborting":
            why = f"already shutting down ({self.shutdown_name})"
            return self._operator("abort", who, reason, False, why)
        if self.finished:
            return self._operator("abort", who, reason, False, f"the run is already {self.state}")
        self._begin_shutdown("operator_abort", f"operator abort by {who}: {reason}")
        result = self._operator(
            "abort", who, reason, True, f"shutdown sequence {self.shutdown_name} running"
        )
        self._step_machine()
        return result

    def _operator(self, action: str, who: str, reason: str, ok: bool, why: str):
        """Record an operator action with who, why and what came of it; (ok, why)."""
        self._note(
            "operator",
            f"{action}: {'accepted' if ok else 'refused'}: {why}",
            who=who,
            reason=reason,
            action=action,
            accepted=ok,
        )
        return ok, why

    def shut_down(self, cause: str, text: str, now_ms: int | None = None) -> None:
        """Run the shutdown sequence for ``cause`` now, from any state but finished: e.g.
        ``host_restart``, when a restarted coordinator re-attaches to a run it lost track
        of and will not continue (what was collected during the gap is not trustworthy)."""
        if now_ms is not None:
            self._advance_clock(now_ms)
        self._begin_shutdown(cause, text)
        self._step_machine()

    def on_trip(self, module: str, cause: str, t_ms: int | None = None) -> None:
        """A module tripped: run the shutdown sequence for ``cause`` (first one wins)."""
        self._begin_shutdown(cause, f"{module} tripped: {cause}", module, t_ms=t_ms)
        self._step_machine()

    def on_module_lost(self, module: str, t_ms: int | None = None) -> None:
        """A module died or went silent: its commands are skipped from now on."""
        self._lost.add(module)
        self._begin_shutdown("module_lost", f"{module} lost", module, t_ms=t_ms)
        self._step_machine()

    # -- the clock ---------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        self._advance_clock(now_ms)
        self._poll_side()
        self._watch_quality()
        if self.state in ("running", "held"):
            self._watch_pressures()
        if self.state in ("running", "aborting"):
            self._step_machine()

    # -- line-level watch --------------------------------------------------------------------

    def _regulated_pressures(self) -> list[tuple[str, str, str]]:
        """(module, setpoint channel, measure channel) of every pressure loop: a module
        with a setpoint in bar and exactly one pressure sensor (a BPR)."""
        out = []
        for mid, chans in self.plan.channels.items():
            sensors = [c.name for c in chans.values() if c.role == "sensor" and c.unit == "bar"]
            for c in chans.values():
                if c.role == "setpoint" and c.unit == "bar" and len(sensors) == 1:
                    out.append((mid, c.name, sensors[0]))
        return out

    def _watch_pressures(self) -> None:
        """Shut down on a regulated pressure collapsing while the recipe runs (see
        LOW_PRESSURE_*)."""
        for mid, sp_ch, measure in self._pressure_loops:
            key = (mid, sp_ch)
            setpoint = self._commanded.get(key)
            value = self.access.value(mid, measure)
            if setpoint is None or setpoint < LOW_PRESSURE_MIN_BAR or value is None:
                self._pressure_low_since.pop(key, None)
                continue
            if self._pressure_armed.get(key) != setpoint:
                self._pressure_low_since.pop(key, None)
                if value >= LOW_PRESSURE_ARM * setpoint:
                    self._pressure_armed[key] = setpoint
                continue
            if value >= LOW_PRESSURE_FRACTION * setpoint:
                self._pressure_low_since.pop(key, None)
                continue
            since = self._pressure_low_since.setdefault(key, self.now_ms)
            if self.now_ms - since >= LOW_PRESSURE_FOR_MS:
                self._begin_shutdown(
                    LOW_PRESSURE_CAUSE,
                    f"{mid}.{measure} at {value:.3g} bar, below "
                    f"{LOW_PRESSURE_FRACTION:g} x its setpoint {setpoint:g} bar for "
                    f"{LOW_PRESSURE_FOR_MS / 1000:g} s: a leak or a lost regulator",
                    mid,
                )
                return

    def _advance_clock(self, now_ms: int) -> None:
        dt = now_ms - self._last_ms
        if dt <= 0:
            self.now_ms = max(self.now_ms, now_ms)
            return
        self._last_ms = now_ms
        self.now_ms = now_ms
        active = self.state in ("running", "aborting")
        if active:
            self._active_ms += dt
        if self.state == "idle":
            return
        flow = self._total_flow()
        ml = flow * dt / 60000.0
        self.pumped_ml += ml
        if active:
            self._pumped_active += ml
        at_collect = self._at_collect()
        if at_collect:
            self.collected_ml += ml
        self._book(now_ms - dt, now_ms, at_collect)

    def _measured_flow_channels(self) -> dict[str, str]:
        """pump -> its flow sensor channel (a sensor in mL/min), for the pumps with one."""
        out = {}
        for pump in self.plan.pumps:
            for ch in self.plan.channels.get(pump, {}).values():
                if ch.role == "sensor" and ch.unit == "mL/min":
                    out[pump] = ch.name
        return out

    def _outlet_flow(self) -> float:
        """What reaches the outlet valve (mL/min): each pump's measured flow where it has
        a flow sensor, else its setpoint (the ledger then says: estimate)."""
        sensors = self._measured_flow_channels()
        total = 0.0
        for pump in self.plan.pumps:
            v = self.access.value(pump, sensors.get(pump, "flow"))
            if v is not None and v > 0:
                total += v
        return total

    # -- quality -------------------------------------------------------------------------------

    def _book(self, t0: int, t1: int, at_collect: bool) -> None:
        """The outlet's volume of this tick in the ledger (while a quality phase runs, or
        to collection), and the in-spec collected volume the collect waits count."""
        monitor = self.quality if self.phase == self._quality_phase else None
        if monitor is None and not at_collect:
            return
        why = self._divert_why or ("recipe paused" if self.state != "running" else "")
        if not at_collect and not why:
            return  # the outlet not yet (or no longer) at collection: the recipe's waste
        ml = self._outlet_flow() * (t1 - t0) / 60000.0
        self.ledger.book(t0, t1, ml, at_collect, self._estimate, why)
        if at_collect and (self.quality is None or self.quality.off_spec_at(t1) is None):
            self.collected_in_spec_ml += ml

    def _watch_quality(self) -> None:
        """Start the monitor when a quality phase's collection begins; judge its limits;
        divert and resume the outlet (running only: a shutdown sets the outlet itself)."""
        spec = self._quality_specs.get(self.phase or "")
        run = self._run
        if spec is not None and self.quality is None and run is not None and run.stage == "wait":
            flows = {
                p: self._commanded.get((p, "flow"), f) for p, f in self.plan.pump_flows.items()
            }
            coll = self.plan.collector
            self.quality = QualityMonitor(spec, self.line, flows, self.plan.reactor, coll.module)
            self._quality_phase = self.phase
            self._note("quality", f"quality specification of phase {self.phase} watched")
        monitor = self.quality
        if monitor is None or self.phase != self._quality_phase:
            return
        for exc in monitor.update(self.now_ms, self.access.value):
            self._note("quality", f"excursion: {exc.why}", signal=exc.signal, limit=exc.limit)
        if monitor.changed:
            monitor.changed = False
            self._rebook_in_spec()
        if self.state == "running":
            self._steer_outlet(monitor)

    def _rebook_in_spec(self) -> None:
        """An excursion reaches back (its material was on the way before it was seen):
        count the in-spec collected volume again."""
        q = self.quality
        self.collected_in_spec_ml = sum(
            ml
            for _t0, t1, ml, where, _e, _w in self.ledger.ticks
            if where == "collect" and (q is None or q.off_spec_at(t1) is None)
        )

    def _steer_outlet(self, monitor: QualityMonitor) -> None:
        why = monitor.want_divert(self.now_ms)
        coll = self.plan.collector
        if why is not None and self._divert_why is None:
            self._diverting_since = self.now_ms
            self._note("quality", f"outlet to waste: {why}", state="diverted")
        elif why is None and self._divert_why is not None:
            self._note("quality", "back in spec: outlet to collection again", state="collecting")
            self._diverting_since = None
        self._divert_why = why
        limit = monitor.spec.max_divert_s
        if why is not None and limit is not None and self._diverting_since is not None:
            if self.now_ms - self._diverting_since >= limit * 1000.0:
                self._begin_shutdown("quality", f"diverted for {limit:g} s: {why}", coll.module)
                return
        if coll is None or not self._at_collect_commanded():
            return
        want = coll.positions.get("waste") if why is not None else coll.collect_position
        if want is None or self.now_ms - self._outlet_sent_ms < 1000:
            return
        value = self.access.value(coll.module, coll.channel)
        if value is not None and round(value) == want:
            return
        cmd = _Command(
            coll.module,
            "set_setpoint",
            {"channel": coll.channel, "value": float(want)},
            f"outlet {coll.module} to {'waste' if why else 'collection'} (quality)",
        )
        self._send(cmd)
        self._side.append(cmd)
        self._outlet_sent_ms = self.now_ms

    @property
    def deviations(self) -> bool:
        """Whether anything was diverted, or collected off spec, or any excursion seen."""
        if self.quality is not None and self.quality.excursions:
            return True
        return any(s["status"] != "in_spec" and s["status"] != "collected" for s in self.segments())

    def segments(self) -> list[dict]:
        return self.ledger.segments(self.quality, self.started_ms or 0)

    def quality_summary(self) -> dict:
        """The --json fields: volumes by status, segments and excursions."""
        segs = self.segments()
        t0 = self.started_ms or 0
        return {
            **totals(segs),
            "volume_estimated": self._estimate,
            "segments": segs,
            "excursions": []
            if self.quality is None
            else [e.as_dict(t0) for e in self.quality.excursions],
        }

    def _total_flow(self) -> float:
        total = 0.0
        for pump in self.plan.pumps:
            v = self.access.value(pump, "flow")
            if v is not None and v > 0:
                total += v
        return total

    def _at_collect(self) -> bool:
        coll = self.plan.collector
        if coll is None or coll.collect_position is None:
            return False
        v = self.access.value(coll.module, coll.channel)
        return v is not None and round(v) == coll.collect_position

    # -- steps ---------------------------------------------------------------------------------

    def _step_machine(self) -> None:
        for _ in range(256):  # zero-time steps run within one tick; bounded all the same
            if self.state not in ("running", "aborting"):
                return
            if self._restore:
                if not self._restore_done():
                    return
                continue
            run = self._run
            if run is None:
                if not self._next_step():
                    return
                continue
            before = run.stage
            self._work(run)
            if self._run is not run:
                continue  # a shutdown replaced it
            if run.stage == "done":
                self._end_step(run, "done")
                continue
            if run.stage == before:
                return

    def _next_step(self) -> bool:
        if self._feeder is not None and self.state == "running" and self._at_feed_point():
            more = self._feeder()
            if more is None:
                return False
            if not more:
                self._feeder = None
            self._queue[0:0] = list(more)
        if not self._queue:
            self._finish()
            return False
        phase, step = self._queue.pop(0)
        if phase != self.phase:
            self._enter_phase(phase)
        self._run = _Run(phase, step, self.state == "aborting", self.now_ms)
        text = step.name + (f" ({step.note})" if step.note else "")
        self._note("step", text, phase=phase, step=step.name)
        return True

    def _at_feed_point(self) -> bool:
        if not self._queue:
            return self._feed_before is None
        return self._queue[0][0] == self._feed_before

    def _enter_phase(self, phase: str) -> None:
        t = self.elapsed_s()
        if self._phases and self._phases[-1]["end_s"] is None:
            self._phases[-1]["end_s"] = t
        self._phases.append({"phase": phase, "start_s": t, "end_s": None})
        self.phase = phase
        self._note("phase", f"phase {phase}", phase=phase)

    def _end_step(self, run: _Run, result: str) -> None:
        self.history.append(
            {
                "phase": run.phase,
                "step": run.step.name,
                "start_s": (run.started_ms - (self.started_ms or 0)) / 1000.0,
                "end_s": self.elapsed_s(),
                "result": result,
            }
        )
        if self._run is run:
            self._run = None

    def _finish(self) -> None:
        t = self.elapsed_s()
        if self._phases and self._phases[-1]["end_s"] is None:
            self._phases[-1]["end_s"] = t
        if self.state == "aborting":
            self.state = "aborted"
            self._note(
                "phase",
                f"aborted after shutdown sequence {self.shutdown_name}: {self.reason}",
                phase=self.phase or "",
                cause=self.first_cause,
            )
        else:
            self.state = "completed"
            self.reason = self.reason or "every phase done"
            self._note(
                "phase",
                f"recipe {self.recipe.name} completed: {self.collected_ml:.1f} mL collected",
                phase=self.phase or "",
                collected_ml=round(self.collected_ml, 3),
            )

    def _work(self, run: _Run) -> None:
        if run.stage == "send":
            run.commands = self._commands_of(run.step, run.shutdown)
            for cmd in run.commands:
                if cmd.skipped is None:
                    self._send(cmd)
            run.stage = "acks"
            return
        if run.stage == "acks":
            waiting = False
            failed = []
            for cmd in run.commands:
                if cmd.skipped is not None:
                    continue
                state = self._command_state(cmd)
                if state == "waiting":
                    waiting = True
                elif state == "failed":
                    failed.append(cmd)
            if failed:
                if run.shutdown:
                    for cmd in failed:
                        self._note(
                            "reaction",
                            f"{cmd.label} failed: {cmd.error} (shutdown goes on)",
                            module=cmd.module,
                        )
                        cmd.skipped = "failed"
                else:
                    cmd = failed[0]
                    self._end_step(run, "failed")
                    self._begin_shutdown(
                        "command_failed",
                        f"{cmd.label} failed: {cmd.error}",
                        cmd.module,
                        sequence=run.step.abort_sequence,
                    )
                    return
            if waiting:
                return
            for cmd in run.commands:
                if cmd.skipped is None and cmd.key is not None and not run.shutdown:
                    self._commanded[cmd.key] = cmd.value
            if run.step.wait is None:
                run.stage = "done"
            else:
                self._start_wait(run)
                self._evaluate_wait(run)
            return
        if run.stage == "wait":
            self._evaluate_wait(run)

    def _commands_of(self, step: Step, shutdown: bool) -> list[_Command]:
        out: list[_Command] = []
        if step.service is not None:
            mods = step.modules if step.modules is not None else tuple(self.line.modules)
            for mid in mods:
                cmd = _Command(mid, "state", {"command": step.service}, f"{step.service} {mid}")
                state = self.access.module_state(mid)
                if state in _ALREADY.get(step.service, ()):
                    cmd.skipped = f"already {state}"
                out.append(cmd)
        if step.valve is not None:
            target = valve_target(self.plan, self.line, step)
            if isinstance(target, str):  # check_recipe rules this out
                raise RecipeError([target])
            module, channel, pos = target
            out.append(
                _Command(
                    module,
                    "set_setpoint",
                    {"channel": channel, "value": float(pos)},
                    f"outlet {module} to {step.valve}",
                    key=(module, channel),
                    value=float(pos),
                )
            )
        for sp in step.sets:
            value = self.plan.resolve(sp.value, self.recipe)
            out.append(
                _Command(
                    sp.module,
                    "set_setpoint",
                    {"channel": sp.channel, "value": value},
                    f"set {sp.module}.{sp.channel}={value:.4g}",
                    key=(sp.module, sp.channel),
                    value=value,
                )
            )
        if shutdown:
            for cmd in out:
                if cmd.skipped is not None:
                    continue
                if cmd.module in self._lost or not self.access.online(cmd.module):
                    cmd.skipped = "offline"
                elif cmd.op == "set_setpoint" and (
                    self.access.module_state(cmd.module) in _SAFE_STATES
                ):
                    cmd.skipped = f"already {self.access.module_state(cmd.module)}: outputs safe"
        for cmd in out:
            if cmd.skipped is not None:
                self._note("step", f"{cmd.label}: skipped ({cmd.skipped})", step=step.name)
        return out

    def _send(self, cmd: _Command) -> None:
        cmd.sent_ms = self.now_ms
        try:
            cmd.pending = self.access.send(cmd.module, cmd.op, cmd.args)
        except (KeyError, ValueError) as exc:
            cmd.pending = None
            cmd.error = str(exc)

    def _command_state(self, cmd: _Command) -> str:
        """'ok', 'waiting' or 'failed' (then ``cmd.error`` says why)."""
        p = cmd.pending
        if p is None:
            cmd.error = cmd.error or "could not be sent"
            return "failed"
        if getattr(p, "done", False):
            if getattr(p, "ok", False):
                return "ok"
            why = getattr(p, "reason", None) or getattr(p, "result", None) or "rejected"
            if (
                cmd.op == "state"
                and cmd.args.get("command") == "start"
                and self.access.module_state(cmd.module) in _FINAL
            ):
                why = f"{why} (reset the module first)"
            cmd.error = str(why)
            return "failed"
        if self.now_ms - cmd.sent_ms > self.command_timeout_ms:
            cmd.error = f"no acknowledgement within {self.command_timeout_ms / 1000:g} s"
            return "failed"
        return "waiting"

    def _restore_done(self) -> bool:
        """False while a restore command is unanswered; a failed one starts the abort path."""
        waiting = False
        for cmd in self._restore:
            state = self._command_state(cmd)
            if state == "failed":
                self._restore = []
                self._begin_shutdown(
                    "command_failed", f"{cmd.label} failed on resume: {cmd.error}", cmd.module
                )
                return True
            waiting = waiting or state == "waiting"
        if waiting:
            return False
        self._restore = []
        return True

    def _poll_side(self) -> None:
        keep = []
        for cmd in self._side:
            state = self._command_state(cmd)
            if state == "waiting":
                keep.append(cmd)
            elif state == "failed":
                self._note("operator", f"{cmd.label} failed: {cmd.error}", module=cmd.module)
        self._side = keep

    # -- waits ---------------------------------------------------------------------------------

    def _start_wait(self, run: _Run) -> None:
        w = run.step.wait
        run.stage = "wait"
        run.wait_start_active = self._active_ms
        run.pumped0 = self._pumped_active
        run.collected0 = self.collected_in_spec_ml
        run.band_since = None
        run.steady = [SteadyState(s.window_s, s.tolerance_abs, s.tolerance_rel) for s in w.steady]

    def _evaluate_wait(self, run: _Run) -> None:
        w: Wait = run.step.wait
        step = run.step
        elapsed = self._active_ms - run.wait_start_active
        ok = True
        if w.seconds is not None:
            ok = ok and elapsed >= w.seconds * 1000.0
        if w.residence_times is not None:
            passed = (self._pumped_active - run.pumped0) / self.plan.reactor_volume_ml
            ok = ok and passed >= w.residence_times - 1e-9
        if w.collected_ml is not None:
            ok = ok and self.collected_in_spec_ml - run.collected0 >= w.collected_ml - 1e-9
        if w.signal is not None:
            value = self.access.value(*w.signal)
            if self._signal_holds(w, value):
                if run.band_since is None:
                    run.band_since = self._active_ms
                ok = ok and self._active_ms - run.band_since >= w.for_s * 1000.0
            else:
                run.band_since = None
                ok = False
        for spec, det in zip(w.steady, run.steady, strict=True):
            steady = det.update(self._active_ms, self.access.value(spec.module, spec.channel))
            ok = ok and steady
        if ok:
            self._note(
                "step",
                f"{w.describe()}: met after {elapsed / 1000:.1f} s",
                phase=run.phase,
                step=step.name,
            )
            run.stage = "done"
            return
        if elapsed < step.timeout_s * 1000.0:
            return
        text = f"{step.name}: not met within {step.timeout_s:g} s"
        if step.on_timeout == "continue":
            self._note("step", text + ": continuing", phase=run.phase, step=step.name)
            self._end_step(run, "timeout")
        elif step.on_timeout == "hold" and run.shutdown:
            self._end_step(run, "timeout")
            self._hold_at(run, text)
        elif step.on_timeout == "hold":
            self._note("reaction", text + ": holding for the operator", step=step.name)
            run.timed_out_hold = True
            self.reason = text
            self._pause("held")
        else:
            self._end_step(run, "timeout")
            self._begin_shutdown("wait_timeout", text, sequence=step.abort_sequence)

    def _hold_at(self, run: _Run, text: str) -> None:
        """A shutdown wait with ``on_timeout = "hold"`` timed out: the sequence ends here,
        and what it has set stays as it is.  A cool-down wait before the BPR opens is the
        case: a coil whose temperature is unknown (the voted channel BAD, the module lost)
        or still hot keeps its pressure rather than flash; holding pressure is safe (the
        pumps are stopped or to waste, the reliefs and ratings cover over-pressure).  The
        run ends aborted, the pressure left is reported (``residual``) and the operator
        decides when the coil is known cool."""
        left = [step.name for phase, step in self._queue if phase == run.phase]
        self._queue = [(phase, step) for phase, step in self._queue if phase != run.phase]
        self._note(
            "reaction",
            f"{text}: shutdown sequence {self.shutdown_name} stops here, everything it has "
            f"set is held; not run: {'; '.join(left) or 'nothing'}; the operator decides",
            step=run.step.name,
            not_run=left,
        )
        self.reason = f"{self.reason}; held at: {text}"

    def _signal_holds(self, w: Wait, value: float | None) -> bool:
        if value is None:
            return False
        resolve = self.plan.resolve
        if w.target is not None and abs(value - resolve(w.target, self.recipe)) > w.band:
            return False
        if w.above is not None and value < resolve(w.above, self.recipe):
            return False
        if w.below is not None and value > resolve(w.below, self.recipe):
            return False
        return True

    # -- pause and shutdown ----------------------------------------------------------------------

    def _pause(self, state: str) -> None:
        """Recipe paused (held or manual): timers stop, product goes to waste."""
        was = self.state
        self.state = state
        coll = self.plan.collector
        if was == "running" and coll is not None and self._at_collect_commanded():
            waste = coll.positions.get("waste")
            if waste is not None:
                cmd = _Command(
                    coll.module,
                    "set_setpoint",
                    {"channel": coll.channel, "value": float(waste)},
                    f"outlet {coll.module} to waste while paused",
                )
                self._send(cmd)
                self._side.append(cmd)
                self._outlet_moved = True
        self._note("phase", f"recipe {state}", phase=self.phase or "", state=state)

    def _at_collect_commanded(self) -> bool:
        coll = self.plan.collector
        if coll is None or coll.collect_position is None:
            return False
        value = self._commanded.get((coll.module, coll.channel))
        return value is not None and round(value) == coll.collect_position

    def _begin_shutdown(
        self,
        cause: str,
        text: str,
        module: str | None = None,
        sequence: str | None = None,
        t_ms: int | None = None,
    ) -> None:
        when = self.now_ms if t_ms is None else t_ms
        hazard = cause not in HOST_CAUSES
        if (
            self.state == "aborting"
            and hazard
            and self.first_cause in HOST_CAUSES
            and sequence is None
            and self.recipe.shutdown_for(cause).name != self.shutdown_name
        ):
            # A real hazard (a trip) while a non-hazard shutdown runs (operator abort, a
            # timeout, a failed command, a lost module): the hazard's own sequence takes
            # over, since it is the one written for what is now happening.
            self.later_causes.append((self.first_module, self.first_cause, when))
            self._note(
                "reaction",
                f"{text}: takes over from shutdown sequence {self.shutdown_name}",
                cause=cause,
                module=module,
            )
            self.state = "running"  # let the common path below start the new sequence
        if self.state in ("aborting", "completed", "aborted"):
            self.later_causes.append((module, cause, when))
            if self.state == "aborting":
                why = f"shutdown sequence {self.shutdown_name} already running"
            else:
                why = f"the run is already {self.state}"
            self._note("reaction", f"{text}: noted ({why})", cause=cause, module=module)
            return
        seq = self.recipe.sequence(sequence) if sequence else self.recipe.shutdown_for(cause)
        self.first_cause = cause
        self.first_module = module
        self.reason = text
        self.shutdown_name = seq.name
        if self.started_ms is None:
            self.started_ms = self.now_ms
        if self._run is not None:
            self._end_step(self._run, "interrupted")
        self._restore = []
        self._manual_changed.clear()
        self.state = "aborting"
        self._note(
            "reaction",
            f"{text}: running shutdown sequence {seq.name}",
            cause=cause,
            module=module,
            sequence=seq.name,
        )
        self._queue = [(f"shutdown:{seq.name}", step) for step in seq.steps]

    # -- estimates --------------------------------------------------------------------------------

    def _next_phase_in_s(self) -> float | None:
        """Seconds until the next phase where that can be known (fixed waits, flows)."""
        run = self._run
        if self.state not in ("running", "aborting") or run is None:
            return None
        flow = self._total_flow()
        total = 0.0
        if run.stage == "wait":
            rest = self._wait_remaining_s(run, flow)
            if rest is None:
                return None
            total += rest
        elif run.step.wait is not None:
            rest = self._wait_length_s(run.step.wait, flow)
            if rest is None:
                return None
            total += rest
        for phase, step in self._queue:
            if phase != run.phase:
                break
            if step.wait is not None:
                rest = self._wait_length_s(step.wait, flow)
                if rest is None:
                    return None
                total += rest
        return round(total, 1)

    def _wait_length_s(self, w: Wait, flow: float) -> float | None:
        if w.signal is not None or w.steady:
            return None
        parts = [w.seconds or 0.0]
        if w.residence_times is not None:
            if flow <= 0:
                return None
            parts.append(w.residence_times * self.plan.reactor_volume_ml / flow * 60.0)
        if w.collected_ml is not None:
            if flow <= 0:
                return None
            parts.append(w.collected_ml / flow * 60.0)
        return max(parts)

    def _wait_remaining_s(self, run: _Run, flow: float) -> float | None:
        w = run.step.wait
        if w.signal is not None or w.steady:
            return None
        elapsed = (self._active_ms - run.wait_start_active) / 1000.0
        parts = [max(0.0, (w.seconds or 0.0) - elapsed)]
        if w.residence_times is not None:
            if flow <= 0:
                return None
            left = w.residence_times - (self._pumped_active - run.pumped0) / (
                self.plan.reactor_volume_ml
            )
            parts.append(max(0.0, left) * self.plan.reactor_volume_ml / flow * 60.0)
        if w.collected_ml is not None:
            if flow <= 0:
                return None
            left = w.collected_ml - (self.collected_in_spec_ml - run.collected0)
            parts.append(max(0.0, left) / flow * 60.0)
        return max(parts)

    # -- notes ------------------------------------------------------------------------------------

    def _note(self, kind: str, text: str, **data) -> None:
        data.setdefault("t_s", round(self.elapsed_s(), 3))
        if kind in ("phase", "step"):
            data.setdefault("phase", self.phase or "")
        self.access.note(kind, text, **data)
