"""A scripted reactor scenario for the edge core, MicroPython-compatible.

Runs the real runtime (edge.build / edge.node) from a compiled board config with emulated
drivers, a tiny deterministic first-order plant written here, and a script of host
actions: lease, start, setpoint steps, a probe fault, an over-temperature trip, a refused
and an accepted reset.  ``run(blob)`` returns text lines (outputs every second, every
event) that must be identical, within float formatting, under CPython and MicroPython.
"""

from edge.build import build_node
from edge.compiled_config import load_board_file
from edge.drivers.emulated import EmulatedActuator, EmulatedSensor
from edge.rtd import cvd_resistance
from edge.sink import NullSink
from protocol import host_messages, messages

HOST0 = 1790000000000


class Sink(NullSink):
    """Records what the node says, as text (the edge.sink contract)."""

    def __init__(self, out):
        self.out = out

    def publish_birth(self, payload):
        self.out.append("birth {}".format(len(payload)))

    def publish_telemetry(self, payload):
        pass

    def publish_event(self, payload, critical=False):
        e = host_messages.parse_event(payload)
        self.out.append("event {} {} {} {}".format(e.number, e.type, e.cause, e.state))

    def publish_ack(self, payload):
        a = host_messages.parse_ack(payload)
        self.out.append("ack {} {}".format(a.command_id, a.result))


def _drivers(cfg):
    drivers = {}
    for ch in cfg["channels"]:
        if ch["role"] == "actuator":
            lo, hi = ch["range"]
            drivers[ch["name"]] = EmulatedActuator(lo, hi, ch["safe"], ch["name"])
        elif ch.get("driver") is not None:
            unit = "0/1" if ch["driver"] == "pin_in" else "ohm"
            drivers[ch["name"]] = EmulatedSensor(unit, 0)
    return drivers


def run(blob, seconds=90, tick_ms=100):
    out = []
    cfg, chash = load_board_file(blob)
    drivers = _drivers(cfg)
    node = build_node(
        cfg,
        None,
        Sink(out),
        0,
        b"\x01\x02\x03\x04\x05\x06\x07\x08",
        config_hash=chash,
        drivers=drivers,
    )
    node.birth()
    aliases = {}
    for i in range(len(node.channels)):
        aliases[node.channels[i].name] = i
    temp = 20.0
    override = None
    cid = 0
    now = 0
    for _ in range(int(seconds * 1000 // tick_ms)):
        now += tick_ms
        t = now / 1000.0
        host = HOST0 + now
        if now % 1000 == 0:
            node.handle_lease(messages.build_lease("host", host, now // 1000, 3000), now)
        cmd = None
        if now == 1000:
            cmd = ("state", {"command": "start"})
        elif now == 2000:
            cmd = ("set_setpoint", {"channel": aliases["coil_temp"], "value": 80.0})
        elif now == 30000:
            cmd = ("set_setpoint", {"channel": aliases["coil_temp"], "value": 500.0})
        elif now == 31000:
            cmd = ("set_setpoint", {"channel": aliases["coil_temp"], "value": 120.0})
        elif now == 75000:
            cmd = ("state", {"command": "reset"})  # refused: still hot
        elif now == 88000:
            cmd = ("state", {"command": "reset"})  # accepted: cooled down
        if cmd is not None:
            cid += 1
            node.handle_command(messages.build_command(cid, cmd[0], cmd[1], host + 5000), now)
        # plant: first order toward ambient + 200 degC at full heater power
        heater = drivers["heater"].value
        temp += (20.0 + 200.0 * heater - temp) * (tick_ms / 1000.0) / 60.0
        if 70.0 <= t < 80.0:
            override = 150.0 + (t - 70.0) * 2.0  # something else heats the coil
        elif t >= 80.0:
            override = 60.0
        reading = temp if override is None else override
        ohms = cvd_resistance(reading)
        drivers["temp_a"].set_raw(ohms)
        if 50.0 <= t < 52.0:
            drivers["temp_b"].set_fault("open")  # one probe: the 1oo2 vote carries on
        else:
            drivers["temp_b"].set_fault(None)
            drivers["temp_b"].set_raw(ohms)
        drivers["cutout"].set_raw(0)
        drivers["estop"].set_raw(0)
        node.tick(now)
        if now % 1000 == 0:
            out.append(
                "t {} {} heater {} temp {}".format(
                    now // 1000,
                    node.sm.state_name,
                    drivers["heater"].value,
                    node.loops[0].measure.value,
                )
            )
    return out
