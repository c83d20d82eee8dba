"""A module's end of the emulated plant over MQTT (broker mode), MicroPython-compatible.

In a broker-mode emulated line one emulator process owns the physics
(``emulator.remote.PlantServer``) and every module is its own process.  The plant reads
the module's actuator values and writes its sensors' raw readings and wire faults into the
module's emulated drivers, mirrored over two topics (emulator wiring, not the protocol):

* ``skidsim/<line>/<module>/outputs``, module -> plant: CBOR map
  ``{"t": sim_ms, "out": {actuator name: value}}``, QoS 0, sent when a value changed and
  at least every ``heartbeat_ms``; an EMPTY payload means "this module has no power" (the
  module's plant connection's will, or its last word on a clean stop);
* ``skidsim/<line>/<module>/sensors``, plant -> module: CBOR map
  ``{"t": sim_ms, "raw": {sensor name: raw}, "fault": {sensor name: fault}}`` ("fault"
  only when a wire fault is injected), QoS 0.

``PlantPort.step(now_ms)`` is the runner's ``before_tick``: it copies the latest
readings into the emulated drivers; ``after_tick(now_ms)`` sends the outputs the tick
just wrote.
``on_sensors(payload)`` may be called from any task or thread; it only swaps one
reference.  The same class runs in a CPython module process (``emulator.remote``) and in a
MicroPython one (``edge.emulated_main``), so both speak exactly this wiring.
"""

from protocol.cbor import DecodeError, decode, encode

SIM_PREFIX = "skidsim"
HEARTBEAT_MS = 500  # unchanged outputs are re-sent this often (simulated ms)
SIM_TOPIC_KINDS = ("sensors", "outputs")


def sim_topic(line_id, module_id, kind):
    if kind not in SIM_TOPIC_KINDS:
        raise ValueError("sim topic kind {!r}: allowed sensors, outputs".format(kind))
    return SIM_PREFIX + "/" + line_id + "/" + module_id + "/" + kind


class PlantPort:
    """The module process's end; ``publish(topic, payload)`` sends one message."""

    def __init__(self, node, line_id, publish, heartbeat_ms=HEARTBEAT_MS):
        self.node = node
        self.line_id = line_id
        self.publish = publish
        self.heartbeat_ms = heartbeat_ms
        self.sensors_topic = sim_topic(line_id, node.module_id, "sensors")
        self.outputs_topic = sim_topic(line_id, node.module_id, "outputs")
        self._drivers = {}
        for ch, drv in node.sensors:
            self._drivers[ch.name] = drv
        self._latest = None
        self._applied = None
        self._last_sent = None
        self._last_sent_ms = None
        self.sensors_received = 0
        self.sensors_malformed = 0
        self.outputs_sent = 0
        self.last_step_ms = 0
        # Tick timing as this port sees it (simulated ms): the largest delay of a tick
        # past its period, and how many ticks came a whole period or more late.
        self.tick_ms = node.tick_ms
        self.steps = 0
        self.max_late_ms = 0
        self.late_steps = 0

    @property
    def has_sensors(self):
        return self._applied is not None or self._latest is not None

    def on_sensors(self, payload):
        """Keep the newest well-formed readings; a malformed message is counted, never
        raised (it comes from the network)."""
        try:
            msg = decode(payload)
        except (DecodeError, ValueError, TypeError):
            self.sensors_malformed += 1
            return
        if isinstance(msg, dict) and isinstance(msg.get("raw"), dict):
            self._latest = msg  # one reference swap: safe across threads
            self.sensors_received += 1
        else:
            self.sensors_malformed += 1

    def step(self, now_ms):
        if self._applied is not None:  # timing of the ticks since the readings came
            gap = now_ms - self.last_step_ms
            self.steps += 1
            if gap - self.tick_ms > self.max_late_ms:
                self.max_late_ms = gap - self.tick_ms
            if gap >= 2 * self.tick_ms:
                self.late_steps += 1
        self.last_step_ms = now_ms
        msg = self._latest
        if msg is None or msg is self._applied:
            return
        self._applied = msg
        faults = msg.get("fault") or {}
        for name, raw in msg["raw"].items():
            drv = self._drivers.get(name)
            if drv is None:
                continue
            drv.set_fault(faults.get(name))
            drv.set_raw(raw)

    def after_tick(self, now_ms):
        """The runner's ``after_tick``: the outputs this tick wrote go out now, not a
        tick later (the emulation's loop through the broker has dead time enough)."""
        self.send_outputs(now_ms)

    def outputs(self):
        out = {}
        for slot in self.node.actuators:
            out[slot.name] = slot.driver.value
        return out

    def send_outputs(self, now_ms, force=False):
        out = self.outputs()
        due = (
            force
            or out != self._last_sent
            or self._last_sent_ms is None
            or now_ms - self._last_sent_ms >= self.heartbeat_ms
        )
        if not due:
            return
        self._last_sent = out
        self._last_sent_ms = now_ms
        self.outputs_sent += 1
        self.publish(self.outputs_topic, encode({"t": now_ms, "out": out}))
