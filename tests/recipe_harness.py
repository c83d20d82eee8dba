"""Run a recipe on an emulated line without a transport: a LineAccess over LineEmulation.

``EmulatedAccess`` is what the coordinator gives the sequencer, built on the emulation's
own minimal host side: commands go through the real wire format to the real edge nodes
(``LineEmulation.command``: synchronous, so every Pending is done at once), values come
from the telemetry each module publishes (decoded with its birth's channel list, BAD
quality reads as None), module states from their state_change events, trips from their
trip events.  ``run_recipe`` leases every module each second, steps the clock, feeds
trips and silent modules to the sequencer and samples a few signals once a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emulator.emulation import LineEmulation, RecordingSink
from emulator.faults import Fault, FaultSchedule
from host.recipe import Recipe, load_recipe
from host.sequencer import Sequencer
from protocol import host_messages, messages
from protocol.constants import QUALITY_BAD, RESULT_NAMES, RESULT_OK

ROOT = Path(__file__).resolve().parent.parent
DEMO_LINE = ROOT / "examples" / "lines" / "demo.toml"
DEMO_RECIPE = ROOT / "examples" / "recipes" / "demo.toml"
LOST_AFTER_MS = 3500


class TelemetrySink(RecordingSink):
    """Keeps the latest decoded value of every channel and the module's service state."""

    def __init__(self):
        super().__init__()
        self.codec = None
        self.values: dict[str, float | None] = {}
        self.state: str | None = None
        self.last_ms: int | None = None
        self.clock = lambda: 0

    def publish_birth(self, payload):
        super().publish_birth(payload)
        self.codec = messages.TelemetryCodec(self.births[-1].channels)
        self.state = "idle"

    def publish_telemetry(self, payload):
        if self.codec is None:
            return
        t = host_messages.parse_telemetry(payload, self.codec)
        for ch, v, q in zip(self.codec.channels, t.values, t.qualities, strict=True):
            self.values[ch.name] = None if q == QUALITY_BAD else v
        self.last_ms = self.clock()

    def publish_event(self, payload, critical=False):
        super().publish_event(payload, critical)
        ev = self.events[-1]
        if ev.type == "state_change" and ev.state:
            self.state = ev.state


@dataclass
class DonePending:
    """A command answered at once (the emulation's commands are synchronous)."""

    module: str
    op: str
    args: dict | None
    result: str | None
    reason: str | None
    done: bool = True

    @property
    def ok(self) -> bool:
        return self.result == "ok"


class EmulatedAccess:
    """The LineAccess the sequencer needs, over a LineEmulation."""

    def __init__(self, emu: LineEmulation):
        self.emu = emu
        self.notes: list[tuple[float, str, str, dict]] = []  # t_s, kind, text, data
        self.sent: list[tuple[float, str, str, dict | None, str | None]] = []
        self.t0_ms = 0  # times in notes and sent count from here (the recipe's start)

    def t_s(self) -> float:
        return (self.emu.now_ms - self.t0_ms) / 1000.0

    def sink(self, module: str) -> TelemetrySink:
        return self.emu.sinks[module]

    def value(self, module: str, channel: str) -> float | None:
        if not self.online(module):
            return None
        return self.sink(module).values.get(channel)

    def send(self, module: str, op: str, args: dict | None = None) -> DonePending:
        wire = dict(args) if args else None
        if op == "set_setpoint" and wire is not None and isinstance(wire.get("channel"), str):
            wire["channel"] = self.emu.alias(module, wire["channel"])
        ack = self.emu.command(module, op, wire)
        if ack is None:
            pending = DonePending(module, op, args, None, "unreachable", done=False)
        else:
            name = "ok" if ack.result == RESULT_OK else RESULT_NAMES[ack.result]
            pending = DonePending(module, op, args, name, ack.reason)
        self.sent.append((self.t_s(), module, op, args, pending.result))
        return pending

    def module_state(self, module: str) -> str | None:
        return self.sink(module).state

    def online(self, module: str) -> bool:
        sink = self.sink(module)
        return sink.last_ms is not None and self.emu.now_ms - sink.last_ms <= LOST_AFTER_MS

    def note(self, kind: str, text: str, **data) -> None:
        self.notes.append((self.t_s(), kind, text, data))


@dataclass
class RecipeRun:
    """What happened: the sequencer (state, phase_log, history, ...), trips seen, a
    1-second trace of a few signals, the commands sent and the notes written."""

    sequencer: Sequencer
    access: EmulatedAccess
    emulation: LineEmulation
    trips: list[tuple[str, str, float]] = field(default_factory=list)  # module, cause, t_s
    trace: list[dict] = field(default_factory=list)
    end_s: float = 0.0

    def phase(self, name: str) -> dict:
        for p in self.sequencer.phase_log():
            if p["phase"] == name:
                return p
        raise KeyError(f"no phase {name!r}: " + ", ".join(p["phase"] for p in self.phases()))

    def phases(self) -> list[dict]:
        return self.sequencer.phase_log()

    def at(self, t_s: float) -> dict:
        """The first trace row at or after ``t_s``."""
        for row in self.trace:
            if row["t_s"] >= t_s:
                return row
        raise KeyError(f"no trace row at or after {t_s} s (the run ended at {self.end_s} s)")

    def first_time(self, predicate) -> float | None:
        for row in self.trace:
            if predicate(row):
                return row["t_s"]
        return None


TRACED = (
    ("reactor1", "temperature"),
    ("pump_a", "pressure"),
    ("pump_b", "pressure"),
    ("bpr1", "pressure"),
    ("uv1", "uv"),
    ("valve1", "position"),
    ("pump_a", "flow"),
)


def run_recipe(
    recipe: Recipe | str | Path = DEMO_RECIPE,
    line: str | Path = DEMO_LINE,
    faults: list[Fault] | tuple[Fault, ...] = (),
    seed: int = 0,
    max_s: float = 1800.0,
    after_s: float = 2.0,
    actions: dict[float, object] | None = None,
) -> RecipeRun:
    """Run until the sequencer finishes (then ``after_s`` more) or ``max_s``.
    ``actions`` maps a simulated time (s) to ``f(run)``, called once at that time."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    emu = LineEmulation(line, seed=seed, sink_factory=lambda _mid: TelemetrySink())
    for sink in emu.sinks.values():
        sink.clock = lambda: emu.now_ms
    access = EmulatedAccess(emu)
    seq = Sequencer(recipe, emu.line, access, emu.now_ms)
    run = RecipeRun(seq, access, emu)
    schedule = FaultSchedule(list(faults))
    pending_actions = sorted((actions or {}).items())
    seen_events = {mid: 0 for mid in emu.nodes}
    lost: set[str] = set()
    emu.lease_all()
    emu.run_for(2.0, lease_every_s=1.0)  # a first telemetry from every module
    t0 = access.t0_ms = emu.now_ms
    seq.start(emu.now_ms)
    next_lease = emu.now_ms
    next_trace = emu.now_ms
    end_at = None
    while emu.now_ms - t0 < max_s * 1000:
        now_s = (emu.now_ms - t0) / 1000.0
        for action, fault in schedule.due(now_s, lambda m, c: access.value(m, c)):
            if action == "apply":
                emu.apply_fault(fault)
            else:
                emu.clear_fault(fault)
        while pending_actions and pending_actions[0][0] <= now_s:
            pending_actions.pop(0)[1](run)
        if emu.now_ms >= next_lease:
            emu.lease_all()
            next_lease = emu.now_ms + 1000
        emu.step()
        t_s = (emu.now_ms - t0) / 1000.0
        for mid, sink in emu.sinks.items():
            events = sink.events
            for ev in events[seen_events[mid] :]:
                if ev.type == "trip":
                    run.trips.append((mid, ev.cause, t_s))
                    seq.on_trip(mid, ev.cause, emu.now_ms)
            seen_events[mid] = len(events)
            if mid not in lost and sink.last_ms is not None and not access.online(mid):
                lost.add(mid)
                seq.on_module_lost(mid, emu.now_ms)
        seq.tick(emu.now_ms)
        if emu.now_ms >= next_trace:
            row = {"t_s": t_s, "phase": seq.phase, "state": seq.state}
            for m, c in TRACED:
                row[f"{m}.{c}"] = access.value(m, c)
            row["collected_ml"] = seq.collected_ml
            run.trace.append(row)
            next_trace += 1000
        if seq.finished and end_at is None:
            end_at = emu.now_ms + int(after_s * 1000)
        if end_at is not None and emu.now_ms >= end_at:
            break
    run.end_s = (emu.now_ms - t0) / 1000.0
    return run
