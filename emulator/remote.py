"""The plant over MQTT: one emulator process owns the physics, each module is its own
``skid edge --emulate --plant remote`` process (broker mode, docs/broker-mode.md).

Both sides keep the in-process emulation's contract with the edge runtime: the plant
reads actuator values from emulated actuator drivers and writes sensor raw readings
(``set_raw``) and wire faults (``set_fault``) into emulated sensor drivers.  Here the
drivers on the two sides are mirrored over MQTT:

* ``PlantServer`` (emulator process) builds the ``Plant`` of the line and, per module,
  a *shadow node*: the module's real node built from the same config (never ticked), so
  the plant binds exactly the channels, calibrations and drivers the module has.  Each
  ``step(now_ms)`` applies the outputs received since the last step to the shadow
  actuators, applies physical faults on their schedule, steps the plant and returns one
  sensors message per powered module.
* ``edge.plantport.PlantPort`` (module process, CPython or MicroPython) is the node's
  ``before_tick``: it copies the latest sensors message into the node's emulated sensor
  drivers and hands back the node's actuator values when they changed (and every
  ``heartbeat_ms``).  Its docstring specifies the two topics.
* ``PlantLink`` is the paho-mqtt shell both sides use (never the module's own MqttLink,
  which stays the board's code path).

Topics are emulator wiring, not the protocol: ``skidsim/<line>/<module>/sensors`` and
``skidsim/<line>/<module>/outputs``, CBOR maps, QoS 0, never retained.  An empty outputs
payload means "this module has no power" (the module's will, or its last word on a
clean stop): the plant unbinds it, so its outputs fall to their de-energised values, as
``LineEmulation`` does on a power loss; the next outputs message binds it again.

Every process computes simulated time from one shared origin: ``edge.clock.shared_ms``
= (wall time - epoch) x speed, in ms.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from urllib.parse import urlparse

import cbor2
import paho.mqtt.client as paho

from edge.build import build_node
from edge.clock import shared_ms
from edge.plantport import SIM_PREFIX, PlantPort, sim_topic
from edge.sink import NullSink
from emulator.emulation import FAULT_KINDS
from emulator.faults import FaultSchedule
from emulator.plant import Plant
from line.loader import module_config
from line.model import Line

# Plant step (simulated ms).  Half LineEmulation's 100 ms: in broker mode every step and
# tick of quantisation, plus the wall-clock latency of two MQTT hops times --speed, is dead
# time in the modules' loops that a real board (its sensor wired to it) never has.  The BPR
# loop, tuned to close its valve as fast as a stopped feed drains the line, oscillated at
# 3x-10x with 100 ms steps (measured: in-process with the reading delayed 300 ms it swings
# 0.6..14 bar) and holds within +-0.1 bar at 5x and 10x with 50 ms (and the runner's
# after_tick sending each tick's outputs at once).
STEP_MS = 50

# Faults the plant process cannot carry out: they act on processes and the network.
# power-loss is done by host.launcher (SIGKILL the module's process, restart it later).
PROCESS_FAULTS = frozenset({"power-loss"})
NETWORK_FAULTS = frozenset({"partition", "broker-outage", "host-crash"})
PLANT_FAULTS = frozenset(FAULT_KINDS) - PROCESS_FAULTS - NETWORK_FAULTS


class RemotePlantError(ValueError):
    """Bad broker-mode wiring (a fault the plant process cannot do, an unknown module)."""


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://HOST[:PORT]`` -> (host, port); the same rule as host.brokerurl (the
    emulator may not import host)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(f"broker URL {url!r}: expected mqtt://HOST[:PORT]")
    return parsed.hostname, parsed.port or 1883


def _fault_kind(fault) -> str:
    return fault.kind


def check_plant_faults(faults: Iterable) -> None:
    """Raise RemotePlantError for any fault the plant process cannot apply."""
    for f in faults:
        kind = _fault_kind(f)
        if kind in PLANT_FAULTS:
            continue
        if kind in PROCESS_FAULTS:
            raise RemotePlantError(
                f"fault {f}: {kind} is carried out by the launcher (host.launcher, "
                "`skid demo --broker`), which kills and restarts the module's process; "
                "the plant process cannot"
            )
        raise RemotePlantError(
            f"fault {f}: {kind} is a network fault, not supported in broker mode "
            "(run it in-process: `skid demo` without --broker); allowed here: "
            + ", ".join(sorted(PLANT_FAULTS | PROCESS_FAULTS))
        )


# --- emulator side ---------------------------------------------------------------------


class PlantServer:
    """The plant of ``line`` served to module processes (deterministic: give it the
    messages that arrived with ``on_message`` and the time with ``step``).

    ``faults``: ``emulator.faults.Fault`` objects of plant kinds (``PLANT_FAULTS``),
    scheduled on simulated time since the epoch."""

    def __init__(self, line: Line, line_id: str, seed: int = 0, faults: Iterable = ()):
        faults = list(faults)
        check_plant_faults(faults)
        self.line = line
        self.line_id = line_id
        self.plant = Plant(line, seed)
        self.shadows: dict[str, object] = {}
        self._by_topic: dict[str, str] = {}
        self._pending: deque[tuple[str, bytes]] = deque()
        self.schedule = FaultSchedule(faults)
        self._undo: dict[int, Callable[[], None]] = {}
        self.fault_log: list[tuple[float, str, str]] = []  # (t_s, apply/clear, fault)
        self.outputs_seen: dict[str, int] = {}  # module -> outputs messages received
        self.powered: dict[str, bool] = {}
        self.now_ms: int | None = None
        for mid in line.modules:
            cfg, digest = module_config(line, mid)
            # A shadow of the module's node: same channels and drivers, never ticked.
            node = build_node(cfg, None, NullSink(), 0, b"\x00" * 8, config_hash=digest)
            self.shadows[mid] = node
            self._by_topic[sim_topic(line_id, mid, "outputs")] = mid
            self.plant.bind(mid, node)
            self.powered[mid] = True
            self.outputs_seen[mid] = 0

    @property
    def subscriptions(self) -> list[str]:
        return [f"{SIM_PREFIX}/{self.line_id}/+/outputs"]

    def on_message(self, topic: str, payload: bytes) -> None:
        """Queue one received message (any thread); applied at the next ``step``."""
        self._pending.append((topic, payload))

    def _apply(self, topic: str, payload: bytes) -> None:
        mid = self._by_topic.get(topic)
        if mid is None:
            return
        if not payload:  # the module lost power (its will) or stopped
            if self.powered[mid]:
                self.plant.unbind(mid)
                self.powered[mid] = False
            return
        try:
            msg = cbor2.loads(payload)
            outputs = msg["out"]
        except (ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
            return
        node = self.shadows[mid]
        for slot in node.actuators:
            value = outputs.get(slot.name)
            if isinstance(value, (int, float)):
                slot.driver.value = value
        self.outputs_seen[mid] += 1
        if not self.powered[mid]:  # rebooted: wire it to the plant again
            self.plant.bind(mid, node)
            self.powered[mid] = True

    def step(self, now_ms: int) -> list[tuple[str, bytes]]:
        """Advance the plant to ``now_ms``; returns (topic, payload) sensors messages."""
        while self._pending:
            self._apply(*self._pending.popleft())
        if self.now_ms is not None and now_ms < self.now_ms:
            now_ms = self.now_ms  # the wall clock stepped back: hold, never rewind
        self.now_ms = now_ms
        for action, fault in self.schedule.due(now_ms / 1000.0):
            self._fault(action, fault, now_ms / 1000.0)
        self.plant.step(now_ms)
        out = []
        for mid, node in self.shadows.items():
            if self.powered[mid]:
                out.append((sim_topic(self.line_id, mid, "sensors"), sensors_payload(node, now_ms)))
        return out

    def _fault(self, action: str, fault, t_s: float) -> None:
        if action == "apply":
            undo = self.plant.apply_fault(
                fault.kind, fault.module, fault.channel, dict(fault.params)
            )
            self._undo[id(fault)] = undo
        else:
            undo = self._undo.pop(id(fault), None)
            if undo is not None:
                undo()
        self.fault_log.append((t_s, action, str(fault)))


def sensors_payload(node, now_ms: int) -> bytes:
    raw = {}
    faults = {}
    for ch, drv in node.sensors:
        raw[ch.name] = drv.raw
        if drv.injected_fault is not None:
            faults[ch.name] = drv.injected_fault
    msg = {"t": now_ms, "raw": raw}
    if faults:
        msg["fault"] = faults
    return cbor2.dumps(msg)


# --- module side: edge.plantport.PlantPort (MicroPython-compatible, so a module under
# the MicroPython Unix port speaks the same wiring) ------------------------------------


# --- the paho-mqtt shell ----------------------------------------------------------------


class PlantLink:
    """A paho-mqtt (v2 API, MQTT 3.1.1) client for the plant wiring: QoS 0, clean
    session, reconnects by itself; ``on_message(topic, payload)`` runs in paho's
    network thread.  ``will``: (topic, payload) published by the broker if this process
    dies without disconnecting."""

    def __init__(
        self,
        broker_url: str,
        client_id: str,
        subscriptions: Iterable[str],
        on_message: Callable[[str, bytes], None],
        will: tuple[str, bytes] | None = None,
        on_connect: Callable[[], None] | None = None,
    ):
        self.host, self.port = parse_broker_url(broker_url)
        self.subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self.connected = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"{client_id}-{os.getpid()}",
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        if will is not None:
            self.client.will_set(will[0], will[1], qos=0, retain=False)
        self.client.on_connect = self._connected
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = lambda c, u, m: self._on_message(m.topic, bytes(m.payload))
        self.client.reconnect_delay_set(0.2, 2)

    def _connected(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            return
        for pattern in self.subscriptions:
            client.subscribe(pattern, qos=0)
        self.connected.set()
        if self._on_connect is not None:
            self._on_connect()

    def start(self) -> None:
        """Connect in the background (a broker that is not up yet is retried)."""
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=0, retain=False)

    def close(self, last: tuple[str, bytes] | None = None) -> None:
        """Send ``last`` (if any), disconnect cleanly and stop the network thread."""
        if last is not None and self.connected.is_set():
            info = self.client.publish(last[0], last[1], qos=0, retain=False)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()


def connect_port(node, line_id: str, broker_url: str) -> tuple[PlantPort, PlantLink]:
    """A PlantPort for ``node`` wired to the broker (started; connects by itself).
    Its will tells the plant the module lost power if the process dies."""
    holder: list[PlantPort] = []
    outputs = sim_topic(line_id, node.module_id, "outputs")
    sensors = sim_topic(line_id, node.module_id, "sensors")

    def on_message(topic: str, payload: bytes) -> None:
        if topic == sensors:
            holder[0].on_sensors(payload)

    def on_connect() -> None:
        # Power on: the plant (re)binds a module when it hears its outputs, and the
        # module waits for readings before its first tick.
        if holder:
            holder[0].send_outputs(holder[0].last_step_ms, force=True)

    link = PlantLink(
        broker_url,
        f"skidsim-{line_id}-{node.module_id}",
        [sensors],
        on_message,
        will=(outputs, b""),
        on_connect=on_connect,
    )
    port = PlantPort(node, line_id, link.publish)
    holder.append(port)
    link.start()
    return port, link


def serve_plant(
    server: PlantServer,
    broker_url: str,
    epoch: float,
    speed: float,
    stop: threading.Event,
    duration_s: float | None = None,
    status: Callable[[PlantServer], None] | None = None,
    status_every_s: float = 10.0,
) -> dict:
    """Run ``server`` on the shared clock until ``stop`` is set (or ``duration_s``
    simulated seconds since the epoch); returns timing statistics."""
    link = PlantLink(
        broker_url, f"skidsim-{server.line_id}-plant", server.subscriptions, server.on_message
    )
    link.start()
    steps = late_steps = 0
    max_late_ms = 0.0
    busy_s = 0.0
    next_status = None
    try:
        now = shared_ms(time.time(), epoch, speed)
        due = (now // STEP_MS + 1) * STEP_MS
        while not stop.is_set():
            wait_s = (due - shared_ms(time.time(), epoch, speed)) / 1000.0 / speed
            if wait_s > 0 and stop.wait(wait_s):
                break
            t0 = time.perf_counter()
            now = shared_ms(time.time(), epoch, speed)
            late = now - due
            if late > max_late_ms:
                max_late_ms = late
            if late >= STEP_MS:
                late_steps += 1
            for topic, payload in server.step(now):
                link.publish(topic, payload)
            steps += 1
            busy_s += time.perf_counter() - t0
            if status is not None and (next_status is None or now >= next_status):
                status(server)
                next_status = now + int(status_every_s * 1000)
            if duration_s is not None and now >= duration_s * 1000:
                break
            due += STEP_MS
            if due <= now:  # overrun: skip ahead rather than burst
                due = (now // STEP_MS + 1) * STEP_MS
    finally:
        link.close()
    return {
        "steps": steps,
        "late_steps": late_steps,
        "max_late_ms": max_late_ms,
        "busy_s": busy_s,
    }
