"""Edge-core costs for the reference reactor config (board_configs/reactor.toml, emulated).

The reference node: 2 PT100 sensors voted 1oo2, 1 PID loop, 7 interlocks (over-temperature,
cut-out, bad sensor, e-stop, lease, dead-man, heater verification), 2 alarms, heater
verification, telemetry every 10th tick, ticked at 100 ms with a steady 60 degC reading and
the loop at a 61 degC setpoint (the PID works every tick; inside the heater-verification
hysteresis, so the fixed reading does not trip it).

* CPython: time per tick, and one PID update, each against one ``simple_pid.PID`` update
  measured in the same run (best of repeats).
* MicroPython, Node build: time per tick (its clock counts whole ms: long runs); heap via
  ``gc.mem_alloc()`` after imports, after boot (runtime objects = boot - imports) and the
  growth per 1,000 ticks after a 6,000-tick (10 simulated minutes) warm-up, measured over
  20,000 ticks net of a control measurement with no work (each ``await`` that lets this
  build collect retains 16-64 B of its own), reported in whole 16-byte GC blocks.  Heap
  is read at top level after yielding to the event loop (see bench/mpy/edge_probe.py).
* MicroPython, WASI build: fuel per tick (deterministic), from two runs of different length
  with the collector disabled.
* Size of the edge and protocol packages compiled with mpy-cross (bytecode, no arch).
* Reaction: ticks from the sample that crosses the over-temperature limit to the tick that
  writes the heater's safe value (on-delay 0).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

from bench.common import record
from edge.boardconfig import compile_config, emulate, load_board_config
from edge.boardconfig.compile import board_file
from tools.micropython import run_node, run_wasi

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "bench" / "mpy" / "edge_probe.py"
# Not bundled onto microcontrollers (CPython-only parts of edge/).
NOT_BUNDLED = ("edge/linux", "edge/boardconfig")
GROWTH_TICKS = 20_000  # long, so the measurement's own retention is small per 1,000 ticks


def reference_blob() -> bytes:
    cfg = emulate(load_board_config(ROOT / "board_configs" / "reactor.toml"))
    return board_file(compile_config(cfg))


def _probe():
    sys.path.insert(0, str(PROBE.parent))
    try:
        import edge_probe
    finally:
        sys.path.remove(str(PROBE.parent))
    return edge_probe


def _best(fn, number, repeat=7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def cpython_records(blob: bytes) -> list[dict]:
    from simple_pid import PID as SimplePID

    from edge.pid import PID

    probe = _probe().Probe()
    probe.boot(blob)
    probe.run(200)
    assert probe.node.sm.state_name == "execute", probe.summary()
    tick_us = _best(lambda: probe.run(10), number=200) / 10  # includes 1 lease per 10

    ours = PID(0.05, 0.002, 2.0, 0.0, 1.0, 0.0, 250.0, setpoint=80.0)
    theirs = SimplePID(0.05, 0.002, 2.0, setpoint=80.0, sample_time=None, output_limits=(0, 1))
    state = {"t": 0}

    def ours_step():
        state["t"] += 100
        ours.update(60.0, state["t"])

    def theirs_step():
        theirs(60.0, dt=0.1)

    pid_us = _best(ours_step, number=20000)
    simple_us = _best(theirs_step, number=20000)
    return [
        record(
            "edge.tick_us",
            tick_us,
            "us",
            "simple_pid.PID update",
            simple_us,
            "<50",
        ),
        record("edge.pid_update_us", pid_us, "us", "simple_pid.PID update", simple_us, "<=1.0x"),
    ]


NODE_CODE = """
import gc, asyncio
# Every global exists before the first measurement: a new global can grow the module's
# dict, which would be counted as the runtime's heap.
m_start = m_imports = m_boot = m_warm = m_after = us = p = blob = edge_probe = None
ctrl = [0] * 6
i = 0
async def settle():
    await asyncio.sleep_ms(0)
    gc.collect()
    return gc.mem_alloc()
m_start = await settle()
import edge_probe
blob = bytes.fromhex({blob!r})
m_imports = await settle()
p = edge_probe.Probe()
p.boot(blob)
m_boot = await settle()
p.run(6000)
m_warm = await settle()
p.run({growth_ticks})
m_after = await settle()
# Control: the same measurement with no work in between.  Each await retains a little
# in this build (16-64 B), whatever ran before it.
for i in range(6):
    ctrl[i] = await settle()
us = p.run(3000, True) / 3000
print(m_start, m_imports, m_boot, m_warm, m_after, us)
print(sorted(ctrl[i] - ctrl[i - 1] for i in range(1, 6))[2])
print(p.summary())
"""

WASI_CODE = """
import gc
gc.disable()
import sys
sys.path.insert(0, '/input/bench/mpy')
import edge_probe
blob = bytes.fromhex({blob!r})
p = edge_probe.Probe()
p.boot(blob)
p.run({n})
print(p.summary())
"""


def micropython_records(blob: bytes) -> list[dict]:
    out = run_node(
        NODE_CODE.format(blob=blob.hex(), growth_ticks=GROWTH_TICKS),
        packages=("protocol", "edge"),
        async_=True,
        extra_files={"/lib/edge_probe.py": PROBE.read_bytes()},
    )
    numbers, control, summary = out.strip().splitlines()[-3:]
    if "state=execute" not in summary or "tripped=False" not in summary:
        raise AssertionError("reference node not running cleanly: " + summary)
    m_start, m_imports, m_boot, m_warm, m_after, us = (float(x) for x in numbers.split())
    # Growth per 1,000 ticks, net of what one measurement itself retains, in whole
    # 16-byte GC blocks (the allocator's unit: per-tick garbage that survived would show
    # up as whole blocks).
    per_1000 = (m_after - m_warm - float(control)) * 1000 / GROWTH_TICKS
    growth_blocks = round(per_1000 / 16)
    short = run_wasi(WASI_CODE.format(blob=blob.hex(), n=100))
    long = run_wasi(WASI_CODE.format(blob=blob.hex(), n=1100))
    fuel_per_tick = (long.fuel_used - short.fuel_used) / 1000
    return [
        record("edge.tick_us_micropython_node", us, "us"),
        record("edge.tick_fuel_micropython_wasi", fuel_per_tick, "fuel/tick"),
        record("edge.heap_runtime_bytes", int(m_boot - m_imports), "B", target="<16384"),
        record(
            "edge.heap_growth_1000_ticks", growth_blocks * 16, "B (whole GC blocks)", target="<=0"
        ),
        record("edge.heap_after_imports_bytes", int(m_imports - m_start), "B"),
    ]


def mpy_size_record() -> dict:
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for pkg in ("edge", "protocol"):
            for src in sorted((ROOT / pkg).rglob("*.py")):
                rel = src.relative_to(ROOT).as_posix()
                if any(rel.startswith(p + "/") for p in NOT_BUNDLED):
                    continue
                out = Path(tmp) / (rel.replace("/", "_") + ".mpy")
                subprocess.run([str(mpy_cross), "-o", str(out), str(src)], check=True)
                total += out.stat().st_size
    return record("edge.mpy_size_bytes", total, "B", target="<65536")


def reaction_record(blob: bytes) -> dict:
    from edge.signals import cvd_resistance

    probe = _probe().Probe()
    probe.boot(blob)
    node = probe.node
    limit = 150.0
    temp = 140.0
    crossed = None
    safe_at = None
    tick = 0
    while safe_at is None and tick < 10_000:
        tick += 1
        temp += 0.05
        ohms = cvd_resistance(temp)
        probe.drivers["temp_a"].set_raw(ohms)
        probe.drivers["temp_b"].set_raw(ohms)
        probe.now += 100
        if tick % 10 == 0:
            node.handle_lease(probe.lease, probe.now)
        node.tick(probe.now)
        if crossed is None and node.loops[0].measure.value > limit:
            crossed = tick
        if crossed is not None and node.interlocks.first_out is not None:
            if node.outputs()["heater"] == 0.0:
                safe_at = tick
    if crossed is None or safe_at is None:
        raise AssertionError("over-temperature never tripped in the reaction probe")
    return record("edge.reaction_ticks", safe_at - crossed + 1, "ticks", target="<=1")


def run() -> list[dict]:
    blob = reference_blob()
    records = cpython_records(blob)
    records += micropython_records(blob)
    records.append(mpy_size_record())
    records.append(reaction_record(blob))
    return records
