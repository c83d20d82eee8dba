"""A whole line emulated: the real edge runtime of every module on one simulated clock.

``LineEmulation(line)`` builds one real ``edge.node.Node`` per module of the line from
its board config (emulated drivers, the line's module id; ``line.loader.module_config``)
and the ``Plant`` behind them.  ``step()`` advances the clock by ``tick_ms``: the plant
first (it reads what the modules wrote last tick and writes fresh sensor readings), then
every module whose own tick is due.  Nothing here controls or protects anything: that is
the modules' own firmware, unchanged.

There is no host yet (the coordinator comes with the host issue): ``lease_all()`` and
``command()`` build real protocol messages for tests and scripts, honouring the network
faults (``partitioned``, ``broker_up``, ``host_up``).

Faults: ``apply_fault(fault)`` / ``clear_fault(fault)`` take any object with ``kind``,
``module`` (a module or part id, or "line"), ``channel`` and ``params``;
``FAULT_KINDS`` says which targets each kind fits.  Physical faults act in the plant
(``Plant.apply_fault``); power and network faults act here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from edge.build import build_node
from edge.sink import Sink
from emulator.plant import Plant
from line.loader import load_line, module_config
from line.model import MODULE_KINDS, Line
from protocol import auth, host_messages, messages

HOST_EPOCH_MS = 1_790_000_000_000  # host wall clock at simulated t = 0
HOST_ID = "host"
COMMAND_SENDER = "coordinator"

_MODULES = set(MODULE_KINDS)
_FLOW = _MODULES | {"tube", "mixer"}

FAULT_KINDS: dict[str, set[str]] = {
    "clog": set(_FLOW),
    "leak": set(_FLOW),
    "heater-stuck-on": {"reactor"},
    "heater-open": {"reactor"},
    "exotherm": {"reactor"},
    "sensor-open": set(_MODULES),
    "sensor-short": set(_MODULES),
    "sensor-stuck": set(_MODULES),
    "sensor-drift": set(_MODULES),
    "pump-stall": {"pump"},
    "dry-feed": {"pump"},
    "power-loss": set(_MODULES),
    "partition": set(_MODULES),
    "broker-outage": {"line"},
    "host-crash": {"line"},
}
FAULT_TARGETS = FAULT_KINDS

# What each kind reads from ``params`` (all optional).
FAULT_PARAMS: dict[str, dict[str, str]] = {
    "clog": {
        "rate": "open area lost per second (fraction/s); absent or 0: sudden",
        "sudden": "true: blocked at once",
        "open": "open fraction left by a sudden clog (default 0: fully blocked)",
        "min_open": "a progressive clog stops at this open fraction (default 0)",
    },
    "leak": {"conductance_ml_min_bar": "leak flow per bar of line pressure (default 0.2)"},
    "heater-stuck-on": {},
    "heater-open": {},
    "exotherm": {
        "heat_w": "reaction heat now (default 10 W + 1.5 x the reactor's heat loss now)",
        "t_ref_c": "temperature at which it is heat_w (default: the reactor's now)",
        "doubling_c": "rise that doubles it (default 10)",
        "max_w": "cap (default 10 x heat_w)",
        "needs_reagents": "scale by the reagents in the coil (default false)",
        "enthalpy_kj_mol": "kJ per mol of limiting reagent: heat bounded by the reagents "
        "consumed (default: unbounded)",
    },
    "sensor-open": {},
    "sensor-short": {},
    "sensor-stuck": {"value": "engineering value it sticks at (default: its reading now)"},
    "sensor-drift": {"rate": "drift in the channel's units per second (default 0.1)"},
    "pump-stall": {},
    "dry-feed": {},
    "power-loss": {"duration_s": "reboot after this long (absent: at clear_fault)"},
    "partition": {},
    "broker-outage": {},
    "host-crash": {},
}


class RecordingSink(Sink):
    """Collects what a node publishes, decoded (the ``edge.sink`` contract)."""

    def __init__(self):
        self.births = []
        self.telemetry = []
        self.events = []
        self.acks = []
        self.critical = []

    def publish_birth(self, payload):
        self.births.append(host_messages.parse_birth(payload))

    def publish_telemetry(self, payload):
        self.telemetry.append(payload)

    def publish_event(self, payload, critical=False):
        ev = host_messages.parse_event(payload)
        self.events.append(ev)
        if critical:
            self.critical.append(ev)

    def publish_ack(self, payload):
        self.acks.append(host_messages.parse_ack(payload))

    def trips(self):
        return [e for e in self.events if e.type == "trip"]


class _GatedSink(Sink):
    """Delivers a module's messages only while its network path to the broker works
    (unattached runs; attached, ``host.inproc``'s transport gates the same way)."""

    def __init__(self, emulation: LineEmulation, module_id: str, inner):
        self.emulation = emulation
        self.module_id = module_id
        self.inner = inner

    def _open(self):
        em = self.emulation
        return em.broker_up and self.module_id not in em.partitioned

    def publish_birth(self, payload):
        if self._open():
            self.inner.publish_birth(payload)

    def publish_telemetry(self, payload):
        if self._open():
            self.inner.publish_telemetry(payload)

    def publish_event(self, payload, critical=False):
        if self._open():
            self.inner.publish_event(payload, critical)

    def publish_ack(self, payload):
        if self._open():
            self.inner.publish_ack(payload)


class LineEmulation:
    """One simulated line: a ``Plant`` and a real edge ``Node`` per module.

    ``tick_ms`` is the clock step (None: the shortest module tick, so every module ticks
    at its configured rate; with a longer step a faster module ticks once per step).
    ``speed`` (None: as fast as possible) paces ``run_for`` to that many simulated
    seconds per wall second.  ``sink_factory(module_id)`` makes each module's sink
    (default ``RecordingSink``); ``keys`` maps module id -> command key (commands are
    then signed).
    """

    def __init__(
        self,
        line: Line | str | Path,
        seed: int = 0,
        tick_ms: int | None = 100,
        speed: float | None = None,
        sink_factory: Callable[[str], object] | None = None,
        keys: dict[str, bytes] | None = None,
    ):
        if not isinstance(line, Line):
            line = load_line(line)
        self.line = line
        self.seed = seed
        self.speed = speed
        self.keys = dict(keys or {})
        self._sink_factory = sink_factory or (lambda _mid: RecordingSink())
        self._boot_rng = random.Random(seed * 7919 + 1)
        self.plant = Plant(line, seed)
        self.now_ms = 0
        self.nodes: dict[str, object] = {}
        self.sinks: dict[str, object] = {}
        self.nonces: dict[str, bytes] = {}
        self.hashes: dict[str, bytes] = {}
        self.partitioned: set[str] = set()
        self.broker_up = True
        self.host_up = True
        self.powered_off: dict[str, int | None] = {}  # module -> reboot at (ms) or None
        self.boots: dict[str, int] = {}
        self._next_tick: dict[str, int] = {}
        self._counters: dict[str, int] = {}
        self._lease_seq = 0
        self._command_id = 0
        self._active: dict[int, tuple[object, Callable[[], None]]] = {}
        # Called with now_ms at the end of every step (host.inproc moves messages here).
        self.step_hooks: list[Callable[[int], None]] = []
        # The shell a booted module runs, ``on_boot(module_id, node)``: None births it
        # through its gated sink; host.inproc starts its session on the bus.
        self.on_boot: Callable[[str, object], None] | None = None
        for mid in line.modules:
            self.sinks[mid] = self._sink_factory(mid)
            self._boot(mid, "power_on")
        min_tick = min(node.tick_ms for node in self.nodes.values())
        self.tick_ms = tick_ms if tick_ms is not None else min_tick
        self.plant.step(self.now_ms)

    # -- modules ----------------------------------------------------------------------------

    def _boot(self, module_id: str, reset_cause: str) -> None:
        cfg, digest = module_config(self.line, module_id)
        nonce = bytes(self._boot_rng.getrandbits(8) for _ in range(8))
        node = build_node(
            cfg,
            None,
            _GatedSink(self, module_id, self.sinks[module_id]),
            self.now_ms,
            nonce,
            reset_cause=reset_cause,
            key=self.keys.get(module_id),
            config_hash=digest,
        )
        self.nodes[module_id] = node
        self.nonces[module_id] = nonce
        self.hashes[module_id] = digest
        self.boots[module_id] = self.boots.get(module_id, 0) + 1
        self._counters[module_id] = 0
        self._next_tick[module_id] = self.now_ms + node.tick_ms
        self.plant.bind(module_id, node)
        if self.on_boot is not None:
            self.on_boot(module_id, node)
        else:
            node.birth()

    def powered(self, module_id: str) -> bool:
        return module_id not in self.powered_off

    # -- the clock --------------------------------------------------------------------------

    def step(self) -> None:
        """One clock step: the plant, then every module whose tick is due."""
        self.now_ms += self.tick_ms
        now = self.now_ms
        if self.powered_off:
            for mid, at in list(self.powered_off.items()):
                if at is not None and now >= at:
                    self._power_on(mid)
        self.plant.step(now)
        nxt = self._next_tick
        for mid, node in self.nodes.items():
            due = nxt[mid]
            if due > now or mid in self.powered_off:
                continue
            node.tick(now)
            if node.rebirth_pending:  # as edge.session.ModuleSession.after_tick does
                node.birth()
            tick = node.tick_ms
            while due <= now:
                due += tick
            nxt[mid] = due
        for hook in self.step_hooks:
            hook(now)

    def run_for(self, seconds: float, lease_every_s: float | None = None) -> None:
        """Step for ``seconds`` of simulated time; optionally lease every module every
        ``lease_every_s`` (a stand-in for the host's lease loop)."""
        steps = int(round(seconds * 1000.0 / self.tick_ms))
        lease_ms = None if lease_every_s is None else max(1, int(lease_every_s * 1000))
        next_lease = self.now_ms
        wall0 = time.monotonic()
        sim0 = self.now_ms
        for _ in range(steps):
            if lease_ms is not None and self.now_ms >= next_lease:
                self.lease_all()
                next_lease = self.now_ms + lease_ms
            self.step()
            if self.speed:
                ahead = (self.now_ms - sim0) / 1000.0 / self.speed - (time.monotonic() - wall0)
                if ahead > 0.002:
                    time.sleep(ahead)

    def run_until(
        self, predicate: Callable[[], bool], timeout_s: float, lease_every_s: float | None = None
    ) -> bool:
        """Step until ``predicate()`` holds (True) or ``timeout_s`` passed (False)."""
        end = self.now_ms + int(timeout_s * 1000)
        while self.now_ms < end:
            if predicate():
                return True
            self.run_for(self.tick_ms / 1000.0, lease_every_s)
        return predicate()

    # -- a minimal host side ------------------------------------------------------------------

    def host_ms(self) -> int:
        return HOST_EPOCH_MS + self.now_ms

    def reachable(self, module_id: str) -> bool:
        """Can a message from the host reach this module now?"""
        return (
            self.host_up
            and self.broker_up
            and module_id not in self.partitioned
            and module_id not in self.powered_off
        )

    _reachable = reachable  # the older private name

    def connected(self, module_id: str) -> bool:
        """Does this module have a working path to the broker (powered, not partitioned,
        broker up)?  Independent of the host."""
        return (
            self.broker_up
            and module_id not in self.partitioned
            and module_id not in self.powered_off
        )

    def lease_all(self, duration_ms: int = 3000) -> int:
        """Send a LEASE to every reachable module; returns how many got one."""
        if not (self.host_up and self.broker_up):
            return 0
        # As host/coordinator.py does: seq = host time in ms (at least the last + 1), one
        # tag per keyed module for its current boot.
        host_now = self.host_ms()
        self._lease_seq = max(self._lease_seq + 1, host_now)
        signers = [
            (mid, key, self.nonces[mid]) for mid, key in self.keys.items() if mid in self.nonces
        ]
        data = auth.sign_lease(HOST_ID, host_now, self._lease_seq, duration_ms, signers)
        n = 0
        for mid, node in self.nodes.items():
            if self._reachable(mid):
                node.handle_lease(data, self.now_ms)
                n += 1
        return n

    def command(self, module_id: str, op: str, args: dict | None = None, expiry_s: float = 5.0):
        """Send one COMMAND; returns the parsed ACK, or None when it could not arrive."""
        if module_id not in self.nodes:
            raise KeyError(f"no module {module_id!r}: allowed {', '.join(self.nodes)}")
        if not self._reachable(module_id):
            return None
        self._command_id += 1
        data = messages.build_command(
            self._command_id, op, args, self.host_ms() + int(expiry_s * 1000)
        )
        key = self.keys.get(module_id)
        if key is not None:
            self._counters[module_id] += 1
            data = auth.sign_command(
                data,
                key,
                module_id,
                self.nonces[module_id],
                COMMAND_SENDER,
                self._counters[module_id],
            )
        ack = self.nodes[module_id].handle_command(data, self.now_ms)
        return host_messages.parse_ack(ack)

    def alias(self, module_id: str, channel: str) -> int:
        for i, ch in enumerate(self.nodes[module_id].channels):
            if ch.name == channel:
                return i
        names = ", ".join(ch.name for ch in self.nodes[module_id].channels)
        raise KeyError(f"{module_id} has no channel {channel!r}: allowed {names}")

    def set_setpoint(self, module_id: str, channel: str, value: float):
        return self.command(
            module_id, "set_setpoint", {"channel": self.alias(module_id, channel), "value": value}
        )

    def state(self, module_id: str, command: str):
        return self.command(module_id, "state", {"command": command})

    # -- faults -----------------------------------------------------------------------------

    def target_kind(self, target: str) -> str:
        if target == "line":
            return "line"
        comps = self.line.components()
        if target not in comps:
            raise ValueError(
                f"fault target {target!r} is not in line {self.line.id}: allowed line, "
                + ", ".join(comps)
            )
        return comps[target].kind

    def apply_fault(self, fault) -> None:
        kind = fault.kind
        target = fault.module
        channel = getattr(fault, "channel", None)
        params = dict(getattr(fault, "params", None) or {})
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} unknown: allowed {', '.join(FAULT_KINDS)}")
        tkind = self.target_kind(target)
        if tkind not in FAULT_KINDS[kind]:
            raise ValueError(
                f"fault {kind} does not fit {target!r} (a {tkind}): allowed "
                + ", ".join(sorted(FAULT_KINDS[kind]))
            )
        if kind == "power-loss":
            undo = self._power_loss(target, params.get("duration_s"))
        elif kind == "partition":
            self.partitioned.add(target)
            undo = lambda: self.partitioned.discard(target)  # noqa: E731
        elif kind == "broker-outage":
            self.broker_up = False
            undo = lambda: setattr(self, "broker_up", True)  # noqa: E731
        elif kind == "host-crash":
            self.host_up = False
            undo = lambda: setattr(self, "host_up", True)  # noqa: E731
        else:
            undo = self.plant.apply_fault(kind, target, channel, params)
        self._active[id(fault)] = (fault, undo)

    def clear_fault(self, fault) -> bool:
        """End a fault applied earlier (the same object, or one equal in kind, module and
        channel); False if none is active."""
        entry = self._active.pop(id(fault), None)
        if entry is None:
            for key, (f, _undo) in list(self._active.items()):
                if (f.kind, f.module, getattr(f, "channel", None)) == (
                    fault.kind,
                    fault.module,
                    getattr(fault, "channel", None),
                ):
                    entry = self._active.pop(key)
                    break
        if entry is None:
            return False
        entry[1]()
        return True

    def active_faults(self) -> list:
        return [f for f, _ in self._active.values()]

    def _power_loss(self, module_id: str, duration_s) -> Callable[[], None]:
        if module_id in self.powered_off:
            return lambda: None
        self.plant.unbind(module_id)
        self.powered_off[module_id] = (
            None if duration_s is None else self.now_ms + int(float(duration_s) * 1000)
        )

        def restore():
            if module_id in self.powered_off:
                self._power_on(module_id)

        return restore

    def _power_on(self, module_id: str) -> None:
        self.powered_off.pop(module_id, None)
        self._boot(module_id, "power_on")
