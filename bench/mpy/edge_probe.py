"""Edge-core cost probe: the reference reactor node ticking at a steady 60 degC.

Used by bench/bench_edge.py under CPython and both MicroPython WebAssembly builds.
MicroPython-compatible.  The probe only builds and runs; the caller measures, because
where ``gc.collect()`` may be called differs per build: MicroPython keeps some of a
function's locals in WebAssembly locals, which neither build's collector can scan, so a
collection *inside* a function may free live objects (the WASI build then traps).  The
caller therefore collects only at module top level, where everything of ours is
reachable from module globals: in the WASI build directly (heap growth; fuel runs use
``gc.disable()``), in the Node build after ``await asyncio.sleep_ms(0)``, because that
build only collects once control is back in JavaScript.
"""

import time

from edge.build import build_node
from edge.compiled_config import load_board_file
from edge.drivers.emulated import EmulatedActuator, EmulatedSensor
from edge.rtd import cvd_resistance
from edge.sink import NullSink
from protocol import messages

HOST0 = 1790000000000


def ticks_us():
    f = getattr(time, "ticks_us", None)
    if f is not None:
        return f()
    return int(time.perf_counter() * 1000000)


class Probe:
    def __init__(self):
        self.node = None
        self.now = 0
        self.lease = messages.build_lease("host", HOST0, 1, 3000)

    def boot(self, blob):
        cfg, chash = load_board_file(blob)
        drivers = {}
        for ch in cfg["channels"]:
            if ch["role"] == "actuator":
                lo, hi = ch["range"]
                drivers[ch["name"]] = EmulatedActuator(lo, hi, ch["safe"], ch["name"])
            elif ch.get("driver") is not None:
                unit = "0/1" if ch["driver"] == "pin_in" else "ohm"
                drivers[ch["name"]] = EmulatedSensor(unit, 0)
        ohms = cvd_resistance(60.0)
        drivers["temp_a"].set_raw(ohms)
        drivers["temp_b"].set_raw(ohms)
        self.drivers = drivers
        node = build_node(
            cfg,
            None,
            NullSink(),
            0,
            b"\x01\x02\x03\x04\x05\x06\x07\x08",
            config_hash=chash,
            drivers=drivers,
        )
        node.handle_lease(self.lease, 0)
        start = messages.build_command(1, "state", {"command": "start"}, HOST0 + 5000)
        node.handle_command(start, 0)
        alias = 0
        for i in range(len(node.channels)):
            if node.channels[i].name == "coil_temp":
                alias = i
        sp = messages.build_command(
            2, "set_setpoint", {"channel": alias, "value": 61.0}, HOST0 + 5000
        )
        node.handle_command(sp, 0)
        self.node = node

    def run(self, n, timed=False):
        """``n`` ticks of 100 ms in batches of 10 with a lease between batches (as the
        host sends them); returns the microseconds spent in ticks when ``timed``."""
        node = self.node
        spent = 0
        done = 0
        t = self.now
        while done < n:
            node.handle_lease(self.lease, t)
            k = 10 if n - done >= 10 else n - done
            t0 = ticks_us() if timed else 0
            for _ in range(k):
                t += 100
                node.tick(t)
            if timed:
                spent += ticks_us() - t0
            done += k
        self.now = t
        return spent

    def summary(self):
        node = self.node
        return "state={} tripped={} interlocks={} heater={}".format(
            node.sm.state_name,
            node.interlocks.active,
            len(node.interlocks.interlocks),
            node.outputs()["heater"],
        )
