"""Boot a board bundle's edge core under MicroPython, as edge/boardmain.py does, but with
emulated drivers instead of ``machine`` and an in-memory link instead of a socket.

Run by tests/test_bundle.py inside the Node WebAssembly port, with the bundle's files (and
nothing else of this repository) in the guest filesystem: ``/lib/edge/*.mpy``,
``/lib/protocol/*.mpy``, ``/config.bin``, ``/board_secrets.py``, ``/main.py``, ``/boot.py``.
This file is not part of a bundle.

Prints one line per fact, for the CPython side to check:

    boot_us N              script start (imports included) -> birth handed to the link
    safe NAME VALUE SAFE   every actuator right after the node is built
    msg TOPIC HEX          every message the node published, in order
    out T STATE heater X   outputs once a second
"""

import os
import sys
import time

T0 = time.ticks_us()

from edge.build import build_node  # noqa: E402  (after T0: imports are part of the boot)
from edge.compiled_config import load_board_file  # noqa: E402
from edge.drivers.emulated import EmulatedActuator, EmulatedSensor  # noqa: E402
from edge.rtd import cvd_resistance  # noqa: E402
from edge.runner import EdgeRunner  # noqa: E402
from edge.session import ModuleSession  # noqa: E402
from edge.sink import NullSink  # noqa: E402
from protocol import messages  # noqa: E402
from protocol.topics import TOPIC_CMD, TOPIC_LEASE, host_topic, module_topic  # noqa: E402

LINE = "line1"
HOST0 = 1790000000000


class MemoryLink:
    """The tick-facing side of edge.link.client.MqttLink, keeping messages in memory."""

    def __init__(self):
        self.sent = []
        self.will = None

    @property
    def is_up(self):
        return True

    def publish_birth(self, topic, payload):
        self.sent.append((topic, payload))

    def publish_telemetry(self, topic, payload):
        self.sent.append((topic, payload))

    def publish_event(self, topic, payload, critical=False):
        self.sent.append((topic, payload))

    def publish_ack(self, topic, payload):
        self.sent.append((topic, payload))

    def set_will(self, will_payload):
        self.will = will_payload

    def publish_dropped_notice(self, topic, make_payload):
        pass


def emulated_drivers(cfg):
    drivers = {}
    for ch in cfg["channels"]:
        if ch["role"] == "actuator":
            lo, hi = ch["range"]
            drivers[ch["name"]] = EmulatedActuator(lo, hi, ch["safe"], ch["name"])
        elif ch.get("driver") is not None:
            unit = "0/1" if ch["driver"] == "pin_in" else "ohm"
            drivers[ch["name"]] = EmulatedSensor(unit, 0)
    return drivers


def main(trip_at_ms, hot_degc, seconds):
    os.chdir("/")
    with open("config.bin", "rb") as f:  # edge.boardmain.CONFIG_FILE
        cfg, chash = load_board_file(f.read())
    import board_secrets  # the bundle's file: the template defines no broker

    assert getattr(board_secrets, "BROKER_HOST", None) is None
    drivers = emulated_drivers(cfg)
    for ch in cfg["channels"]:
        if ch["role"] == "sensor" and ch.get("driver") is not None:
            drivers[ch["name"]].set_raw(cvd_resistance(25.0))
    module_id = cfg["module"]["id"]
    node = build_node(
        cfg,
        None,
        NullSink(),
        0,
        b"\x01\x02\x03\x04\x05\x06\x07\x08",
        config_hash=chash,
        drivers=drivers,
    )
    for slot in node.actuators:
        print("safe", slot.name, slot.driver.value, slot.safe)
    link = MemoryLink()
    clock = [0]
    session = ModuleSession(node, LINE, lambda: clock[0], link)

    async def virtual_sleep(ms):
        clock[0] += ms

    cmd_topic = module_topic(LINE, module_id, TOPIC_CMD)
    lease_topic = host_topic(LINE, TOPIC_LEASE)
    aliases = {}
    for i in range(len(node.channels)):
        aliases[node.channels[i].name] = i

    def plant(now):
        # The host's side (lease, start, setpoint) and the coil temperature.
        host = HOST0 + now
        if now % 1000 == 0:
            runner.on_message(lease_topic, messages.build_lease("host", host, now // 1000, 3000))
        if now == 500:
            cmd = messages.build_command(1, "state", {"command": "start"}, host + 5000)
            runner.on_message(cmd_topic, cmd)
        if now == 1000:
            args = {"channel": aliases["coil_temp"], "value": 120.0}
            runner.on_message(
                cmd_topic, messages.build_command(2, "set_setpoint", args, host + 5000)
            )
        temp = hot_degc if now >= trip_at_ms else 25.0
        drivers["temp_a"].set_raw(cvd_resistance(temp))
        drivers["temp_b"].set_raw(cvd_resistance(temp))
        drivers["cutout"].set_raw(0)
        drivers["estop"].set_raw(0)
        if now % 1000 == 0:
            print("out", now, node.sm.state_name, "heater", drivers["heater"].value)

    runner = EdgeRunner(
        node,
        LINE,
        lambda: clock[0],
        sleep_ms=virtual_sleep,
        link=link,
        before_tick=plant,
        session=session,
    )
    runner.on_connect()  # what the link does once the broker accepted it: BIRTH
    print("boot_us", time.ticks_diff(time.ticks_us(), T0))
    return runner, link, int(seconds * 1000 // node.tick_ms)


def report(link):
    for topic, payload in link.sent:
        print("msg", topic, bytes(payload).hex())
    print("mpy", sys.implementation._mpy & 0xFF)
