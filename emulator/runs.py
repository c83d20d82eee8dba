"""Scripted runs of an emulated line: a stand-in host that brings the line to an
operating point, injects faults on schedule and records what the modules did.

Until the host coordinator and its recipes exist, this is what ``skid demo`` and the fault
scenario tests run.  It only does what a host does (leases, commands through the real wire
format); all control and protection happen in the modules' own edge runtimes.

``run_line(...)`` returns a ``RunRecord``: trips (module, first-out cause, simulated time,
seen directly on the module, so a partitioned module's local trip counts although its
event cannot reach anyone), alarms, the peak of every sensor channel, and whether every
module ended safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emulator.emulation import LineEmulation
from emulator.faults import Fault, FaultSchedule, Scenario
from protocol.constants import RESULT_NAMES

# The demo line's operating point (examples/lines/demo.toml): what the example scenarios
# assume.  Module kind -> list of (channel, value) setpoints.
OPERATING_POINT = {
    "pump": [("flow", 0.5)],
    "bpr": [("pressure_ctl", 5.0)],
    "reactor": [("coil_temp", 80.0)],
    "analyzer": [("lamp", 1.0)],
}


@dataclass
class TripSeen:
    module: str
    cause: str
    t_s: float
    interlock: str


@dataclass
class RunRecord:
    line: str
    seed: int
    duration_s: float
    trips: list[TripSeen] = field(default_factory=list)
    alarms: list[tuple[str, str, float]] = field(default_factory=list)  # module, cause, t_s
    peaks: dict[str, float] = field(default_factory=dict)  # "module.channel" -> max
    faults: list[tuple[str, str, float]] = field(default_factory=list)  # apply/clear, fault, t_s
    first_fault_s: float | None = None
    all_safe_at_end: bool = False
    states: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    # After the first fault: when each module (and every module) was first safe, and when
    # each watched condition first held.
    safe_times: dict[str, float] = field(default_factory=dict)
    all_safe_time: float | None = None
    signal_times: dict[str, float] = field(default_factory=dict)

    def trip_time(self, module: str, accepts) -> float | None:
        for t in self.trips:
            if t.module == module and accepts(t.cause):
                return t.t_s
        return None

    def alarm_time(self, module: str, accepts) -> float | None:
        for m, cause, t in self.alarms:
            if m == module and accepts(cause):
                return t
        return None


class DemoHost:
    """Leases every second and drives the line to its operating point."""

    def __init__(self, emulation: LineEmulation, log=None):
        self.emu = emulation
        self.log = log or (lambda text: None)

    def start(self) -> None:
        emu = self.emu
        emu.lease_all()
        for mid in emu.nodes:
            ack = emu.state(mid, "start")
            self.log(f"host: start {mid}: {_ack_text(ack)}")
        for mid, node in emu.nodes.items():
            for channel, value in OPERATING_POINT.get(node.kind, ()):
                ack = emu.set_setpoint(mid, channel, value)
                self.log(f"host: {mid}.{channel} = {value:g}: {_ack_text(ack)}")

    def shutdown(self) -> None:
        """Line-wide stop: every module to its safe state (a stand-in for the host's
        declared shutdown sequence)."""
        for mid in self.emu.nodes:
            self.emu.state(mid, "stop")


def _ack_text(ack) -> str:
    if ack is None:
        return "unreachable"
    return RESULT_NAMES[ack.result] + (f" ({ack.reason})" if ack.reason else "")


def run_line(
    line: str | Path,
    duration_s: float,
    faults: list[Fault] | tuple[Fault, ...] = (),
    seed: int = 0,
    log=None,
    stop_at_end: bool = True,
    abort_line_on_trip: bool = True,
    watch=(),
    status=None,
    status_every_s: float = 60.0,
) -> RunRecord:
    emu = LineEmulation(line, seed=seed)
    record = RunRecord(line=emu.line.id, seed=seed, duration_s=duration_s)
    run = _ScriptedRun(emu, record, log or record.log.append, faults)
    host = DemoHost(emu, run.say)
    host.start()
    aborted = False
    steps = int(round(duration_s * 1000 / emu.tick_ms))
    next_lease = 0
    next_status = status_every_s
    for _ in range(steps):
        run.apply_due_faults()
        if emu.now_ms >= next_lease:
            emu.lease_all()
            next_lease = emu.now_ms + 1000
        emu.step()
        t = emu.now_ms / 1000.0
        run.watch_modules(t)
        if record.first_fault_s is not None:
            run.watch_safety(t, watch)
        if status is not None and t >= next_status:
            status(emu)
            next_status += status_every_s
        if abort_line_on_trip and record.trips and not aborted:
            aborted = True
            run.say(f"t={t:7.1f} s  host: trip on {record.trips[0].module}: stopping the line")
            host.shutdown()
    if stop_at_end and not aborted:
        host.shutdown()
        for _ in range(5):
            emu.lease_all()
            emu.step()
    record.all_safe_at_end = all(
        node.all_safe() or mid in emu.powered_off for mid, node in emu.nodes.items()
    )
    record.states = {mid: node.sm.state_name for mid, node in emu.nodes.items()}
    return record


class _ScriptedRun:
    """What ``run_line`` watches on the emulated modules each step, into ``record``."""

    def __init__(self, emu: LineEmulation, record: RunRecord, say, faults):
        self.emu = emu
        self.record = record
        self.say = say
        self.schedule = FaultSchedule(list(faults))
        self.seen_trips: dict[str, int] = {}
        self.seen_events: dict[str, int] = {mid: 0 for mid in emu.nodes}
        self.boots: dict[str, object] = dict(emu.nodes)

    def value_of(self, module: str, channel: str):
        """A module's current reading, straight from its runtime (not over the wire)."""
        node = self.emu.nodes.get(module)
        if node is None:
            return None
        for (kind, obj), ch in zip(node.sources, node.channels, strict=True):
            if ch.name == channel:
                return obj.value if kind == 0 else (obj.driver.value if kind == 1 else None)
        return None

    def apply_due_faults(self) -> None:
        emu = self.emu
        record = self.record
        now_s = emu.now_ms / 1000.0
        for action, fault in self.schedule.due(now_s, self.value_of):
            if action == "apply":
                emu.apply_fault(fault)
                if record.first_fault_s is None:
                    record.first_fault_s = now_s
            else:
                emu.clear_fault(fault)
            record.faults.append((action, str(fault), now_s))
            self.say(f"t={now_s:7.1f} s  fault {action}: {fault}")

    def watch_modules(self, t: float) -> None:
        """New trips and alarms of every module (seen on the module itself), and peaks."""
        record = self.record
        for mid, node in self.emu.nodes.items():
            if self.boots[mid] is not node:  # rebooted after a power loss: a new runtime
                self.boots[mid] = node
                self.seen_trips[mid] = 0
                self.seen_events[mid] = 0
            trips = node.interlocks.trips
            for rec in trips[self.seen_trips.get(mid, 0) :]:
                cause = node.trip_cause(rec)
                record.trips.append(TripSeen(mid, cause, t, rec.interlock_id))
                self.say(f"t={t:7.1f} s  {mid}: TRIP {cause} ({rec.interlock_id})")
            self.seen_trips[mid] = len(trips)
            events = self.emu.sinks[mid].events
            for ev in events[self.seen_events[mid] :]:
                if ev.type == "alarm":
                    record.alarms.append((mid, ev.cause, t))
            self.seen_events[mid] = len(events)
            for ch, _drv in node.sensors:
                _peak(record.peaks, f"{mid}.{ch.name}", ch.value)
            for ch in node.derived:
                _peak(record.peaks, f"{mid}.{ch.name}", ch.value)

    def watch_safety(self, t: float, watch) -> None:
        """After the first fault: when each module, and every module, was first safe, and
        when each watched condition first held."""
        emu = self.emu
        record = self.record
        every = True
        for mid, node in emu.nodes.items():
            safe = mid in emu.powered_off or node.all_safe()
            every = every and safe
            if safe and mid not in record.safe_times:
                record.safe_times[mid] = t
        if every and record.all_safe_time is None:
            record.all_safe_time = t
        for cond in watch:
            key = str(cond)
            if key not in record.signal_times and cond.holds(self.value_of):
                record.signal_times[key] = t


def _peak(peaks: dict[str, float], key: str, value) -> None:
    if value is None:
        return
    if key not in peaks or value > peaks[key]:
        peaks[key] = value


def run_scenario(scenario: Scenario, line: str | Path | None = None, log=None) -> RunRecord:
    path = line or scenario.line
    if path is None:
        raise ValueError(f"scenario {scenario.name}: no line given")
    watch = [e.condition for e in scenario.expectations if e.kind == "signal"]
    return run_line(
        path,
        scenario.duration_s,
        scenario.faults,
        seed=scenario.seed,
        log=log,
        abort_line_on_trip=False,
        watch=watch,
    )


def check_expectations(scenario: Scenario, record: RunRecord) -> list[tuple[str, float | None]]:
    """(expectation text, detection time after the first fault or None) for each one that
    was NOT met; empty when all were."""
    failures = []
    onset = record.first_fault_s or 0.0
    for exp in scenario.expectations:
        t = detection_time(exp, record)
        if t is None or t - onset > exp.within_s:
            failures.append((str(exp), None if t is None else t - onset))
    return failures


def detection_time(exp, record: RunRecord) -> float | None:
    if exp.kind == "trip":
        return record.trip_time(exp.module, exp.accepts)
    if exp.kind == "alarm":
        return record.alarm_time(exp.module, exp.accepts)
    if exp.kind == "safe":
        if exp.module is None:
            return record.all_safe_time
        return record.safe_times.get(exp.module)
    if exp.kind == "signal":
        return record.signal_times.get(str(exp.condition))
    raise ValueError(f"unknown expectation kind {exp.kind!r}")
