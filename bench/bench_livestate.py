"""The live state of a line (host/livestate.py) and the run status (host/runstatus.py).

Workload: the issue's view budget, 20 modules of 8 channels each publishing at 10 Hz,
one simulated minute (12 000 telemetry messages, built once), plus the coordinator's run
status each second.  Measured, best of 5 runs:

* ``LiveLine.on_message`` per telemetry message, against the coordinator's own
  ``Registry.on_message`` on the same messages (the peer: the parse every host already
  does); target <= 2x;
* the CPU that keeps one LiveLine current at that rate, as % of one core (target < 5 %);
* ``LiveLine.snapshot`` of the 20 modules (what ``skid status --json --watch`` and a view
  serialise on a change), and ``json.dumps`` of it;
* the run status of the demo line mid-run: its size and the time to build and encode it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench.common import record
from host.dryrun import run_in_process
from host.livestate import LiveLine
from host.registry import Registry
from host.runstatus import build_run_status
from protocol import messages
from protocol.topics import module_topic
from protocol.wire import Channel

ROOT = Path(__file__).resolve().parent.parent
LINE = "bench"
MODULES = 20
HZ = 10
SECONDS = 60
T0 = 1_790_000_000_000
REPEAT = 5
STATES = {"idle": ["start"], "execute": ["stop"]}


def _channels() -> list:
    out = [Channel(f"t{i}", "degC", "sensor", -50.0, 300.0, 0.01) for i in range(4)]
    out += [Channel(f"p{i}", "bar", "sensor", 0.0, 40.0, 0.01) for i in range(2)]
    out += [
        Channel("sp", "degC", "setpoint", 0.0, 200.0, 0.1),
        Channel("out", "1", "actuator", 0, 1),
    ]
    return out


def workload() -> tuple[list, list]:
    """(births, telemetry): (topic, payload, now_ms) in arrival order."""
    channels = _channels()
    codec = messages.TelemetryCodec(channels)
    births, data = [], []
    for m in range(MODULES):
        mid = f"m{m:02d}"
        payload = messages.build_birth(
            mid, "reactor", "1.0", b"\x00" * 8, "power_on", 0, bytes([m + 1]) * 8,
            channels, STATES, "execute",
        )  # fmt: skip
        births.append((module_topic(LINE, mid, "birth"), payload, T0))
    for k in range(SECONDS * HZ):
        for m in range(MODULES):
            values = [20.0 + (k % 50) * 0.1] * 4 + [3.0, 3.1, 80.0, 0.5]
            payload = codec.build(k & 0xFF, k * 100, values)
            data.append((module_topic(LINE, f"m{m:02d}", "data"), payload, T0 + k * 100 + m))
    return births, data


def _feed(handler, births, data) -> float:
    for topic, payload, now in births:
        handler(topic, payload, now)
    start = time.process_time()
    for topic, payload, now in data:
        handler(topic, payload, now)
    return time.process_time() - start


def _best(fn, repeat: int = REPEAT) -> float:
    return min(fn() for _ in range(repeat))


def _run_status() -> tuple[int, float]:
    """(bytes, seconds to build and encode) of the demo line's run status mid-run: the
    quick recipe in process until its heat phase, then aborted."""
    found = {}

    def on_tick(coord, _plant):
        seq = coord.sequencer
        if "size" not in found and seq is not None and seq.phase == "heat":
            start = time.perf_counter()
            for _ in range(50):
                payload = build_run_status(coord.run_status.status(coord.now_ms))
            found["seconds"] = (time.perf_counter() - start) / 50
            found["size"] = len(payload)
            coord.request("abort", "bench", "measured")

    with tempfile.TemporaryDirectory() as runs:
        run_in_process(ROOT / "examples/lines/demo.toml", ROOT / "examples/recipes/quick.toml",
                       runs_dir=runs, on_tick=on_tick)  # fmt: skip
    return found["size"], found["seconds"]


def run() -> list[dict]:
    births, data = workload()
    n = len(data)

    def ours() -> float:
        live = LiveLine(LINE)
        live.on_link(True, T0)
        return _feed(live.on_message, births, data)

    def peer() -> float:
        return _feed(Registry(LINE).on_message, births, data)

    # Interleaved, so both see the same machine load.
    ours_s, peer_s = [], []
    for _ in range(REPEAT):
        ours_s.append(ours())
        peer_s.append(peer())
    per_msg_us = min(ours_s) / n * 1e6
    peer_us = min(peer_s) / n * 1e6
    core_pct = per_msg_us * MODULES * HZ / 1e6 * 100.0

    live = LiveLine(LINE)
    live.on_link(True, T0)
    _feed(live.on_message, births, data)
    now = data[-1][2]
    snap_s = _best(lambda: _timed(lambda: live.snapshot(now), 200)) / 200
    dumps_s = _best(lambda: _timed(lambda: json.dumps(live.snapshot(now)), 200)) / 200
    size, status_s = _run_status()
    return [
        record(
            "livestate: on_message per telemetry message (20 modules x 8 channels)",
            per_msg_us,
            "us",
            "host.registry.Registry.on_message",
            peer_us,
            "<=2.0x",
        ),  # fmt: skip
        record(
            "livestate: one LiveLine kept current, 20 modules at 10 Hz",
            core_pct,
            "% of one core",
            target="<5",
        ),  # fmt: skip
        record("livestate: snapshot of 20 modules", snap_s * 1e3, "ms"),
        record("livestate: snapshot + json.dumps, 20 modules", dumps_s * 1e3, "ms"),
        record("runstatus: payload of the demo line mid-run", size, "B"),
        record("runstatus: build and encode, demo line", status_s * 1e6, "us"),
    ]


def _timed(fn, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn()
    return time.process_time() - start


if __name__ == "__main__":
    for r in run():
        print(r)
