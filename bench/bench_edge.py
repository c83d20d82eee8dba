"""Edge-core costs for the reference reactor config (board_configs/reactor.toml, emulated).

The reference node: 2 PT100 sensors voted 1oo2, 1 PID loop, 7 interlocks (over-temperature,
cut-out, bad sensor, e-stop, lease, dead-man, heater verification), 2 alarms, heater
verification, telemetry every 10th tick, ticked at 100 ms with a steady 60 degC reading and
the loop at a 61 degC setpoint (the PID works every tick; inside the heater-verification
hysteresis, so the fixed reading does not trip it).

* CPython: time per tick, and one PID update, each against one ``simple_pid.PID`` update
  measured in the same run (best of repeats).
* MicroPython, Node build: time per tick (its clock counts whole ms: long runs); heap via
  ``gc.mem_alloc()`` after imports and after boot (runtime objects = boot - imports), read
  at top level after yielding to the event loop (see bench/mpy/edge_probe.py).
* MicroPython, WASI build: fuel per tick (deterministic), from two runs of different length
  with the collector disabled; and the heap growth per 1,000 ticks after a 6,000-tick (10
  simulated minutes) warm-up: ``gc.collect()`` then ``gc.mem_alloc()`` at module top level
  (where every object of ours is reachable from module globals) after every 1,000 ticks,
  over 40,000 ticks.  Deterministic, and free of the Node build's own retention: that
  build never collects while Python runs (``gc.collect()`` only marks a collection as
  pending and the heap grows instead; it happens when control returns to JavaScript),
  each ``await`` that lets it collect keeps 16-64 B, and long runs between collections
  leave a few hundred bytes to kilobytes behind even for a loop that only allocates
  lists (docs/edge.md, "Heap").
* Size of the ``.mpy`` files a board bundle holds (edge/boardconfig/board_files.py),
  compiled with the bundle's mpy-cross options; ``python -m bench.bench_edge --sizes``
  prints the per-file breakdown.
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
from edge.boardconfig.board_files import MPY_CROSS_ARGS, board_files
from edge.boardconfig.compile import board_file
from tools.micropython import run_node, run_wasi

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "bench" / "mpy" / "edge_probe.py"
WARMUP_TICKS = 6_000
GROWTH_CYCLES = 40  # of 1,000 ticks, each followed by a collection


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
m_start = m_imports = m_boot = us = p = blob = edge_probe = None
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
p.run(3000)
us = p.run(3000, True) / 3000
print(m_start, m_imports, m_boot, us)
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


WASI_HEAP_CODE = """
import gc
import sys
sys.path.insert(0, '/input/bench/mpy')
import edge_probe
# Everything exists before the first reading (a new global could grow the module dict).
blob = bytes.fromhex({blob!r})
heap = [0] * ({cycles} + 1)
k = 0
p = edge_probe.Probe()
p.boot(blob)
for k in range({warm} // 1000):
    p.run(1000)
    gc.collect()
heap[0] = gc.mem_alloc()
for k in range({cycles}):
    p.run(1000)
    gc.collect()  # module top level: nothing of ours lives only in a function's locals
    heap[k + 1] = gc.mem_alloc()
print(' '.join(str(x) for x in heap))
print(p.summary())
"""


def _check_summary(summary: str) -> None:
    if "state=execute" not in summary or "tripped=False" not in summary:
        raise AssertionError("reference node not running cleanly: " + summary)


def heap_growth(blob: bytes, cycles: int = GROWTH_CYCLES) -> list[int]:
    """``gc.mem_alloc()`` after the warm-up and after each further 1,000 ticks (WASI)."""
    out = run_wasi(WASI_HEAP_CODE.format(blob=blob.hex(), cycles=cycles, warm=WARMUP_TICKS)).stdout
    heap, summary = out.strip().splitlines()[-2:]
    _check_summary(summary)
    return [int(x) for x in heap.split()]


def micropython_records(blob: bytes) -> list[dict]:
    out = run_node(
        NODE_CODE.format(blob=blob.hex()),
        packages=("protocol", "edge"),
        async_=True,
        extra_files={"/lib/edge_probe.py": PROBE.read_bytes()},
    )
    numbers, summary = out.strip().splitlines()[-2:]
    _check_summary(summary)
    m_start, m_imports, m_boot, us = (float(x) for x in numbers.split())
    short = run_wasi(WASI_CODE.format(blob=blob.hex(), n=100))
    long = run_wasi(WASI_CODE.format(blob=blob.hex(), n=1100))
    fuel_per_tick = (long.fuel_used - short.fuel_used) / 1000
    heap = heap_growth(blob)
    window = heap[-1] - heap[0]
    # Per 1,000 ticks in whole 16-byte GC blocks (the allocator's unit): garbage that
    # survived every tick would show as whole blocks; the raw window is recorded too.
    growth_blocks = round(window / 16 / (len(heap) - 1))
    return [
        record("edge.tick_us_micropython_node", us, "us"),
        record("edge.tick_fuel_micropython_wasi", fuel_per_tick, "fuel/tick"),
        record("edge.heap_runtime_bytes", int(m_boot - m_imports), "B", target="<16384"),
        record(
            "edge.heap_growth_1000_ticks", growth_blocks * 16, "B (whole GC blocks)", target="<=0"
        ),
        record(
            "edge.heap_growth_window_bytes",
            window,
            f"B over {1000 * (len(heap) - 1)} ticks",
        ),
        record("edge.heap_after_imports_bytes", int(m_imports - m_start), "B"),
    ]


def _mpy_cross(src: Path, out: Path, args=MPY_CROSS_ARGS) -> bytes:
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    subprocess.run([str(mpy_cross), *args, "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def mpy_size_record() -> dict:
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for rel in board_files(ROOT):
            total += len(_mpy_cross(ROOT / rel, Path(tmp) / "out.mpy"))
    # No target any more: what a board holds in RAM is the metric (edge.ram_*, per kind).
    return record("edge.mpy_size_bytes", total, "B")


def _read_uint(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, i


def _mpy_parts(data: bytes) -> tuple[int, int]:
    """(qstr table bytes, constant table bytes) of an .mpy v6 file (header: 4 bytes, then
    the counts, the qstr table, the constant table, then the code)."""
    n_qstr, i = _read_uint(data, 4)
    n_obj, i = _read_uint(data, i)
    q_start = i
    for _ in range(n_qstr):
        n, i = _read_uint(data, i)
        if not n & 1:  # odd: an index into the firmware's static qstrs, no text
            i += (n >> 1) + 1

    def skip_obj(i: int) -> int:
        kind = data[i]
        i += 1
        if kind <= 4:  # fun table, None, False, True, Ellipsis
            return i
        n, i = _read_uint(data, i)
        if kind == 10:  # tuple
            for _ in range(n):
                i = skip_obj(i)
            return i
        return i + n + (1 if kind in (5, 6) else 0)  # str and bytes end with a NUL

    c_start = i
    for _ in range(n_obj):
        i = skip_obj(i)
    return c_start - q_start, i - c_start


def mpy_breakdown(files=None) -> list[dict]:
    """Per file: .mpy bytes as bundled, its qstr (names) and constant (strings, floats,
    big ints) tables, the line-number tables (the difference to ``-X no-source-lines``),
    the code (bytecode, function preludes and headers), and the size with ``-O3``."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mpy"
        for rel in files if files is not None else board_files(ROOT):
            data = _mpy_cross(ROOT / rel, out)
            no_lines = _mpy_cross(ROOT / rel, out, (*MPY_CROSS_ARGS, "-X", "no-source-lines"))
            o3 = _mpy_cross(ROOT / rel, out, ("-O3",))
            qstrs, consts = _mpy_parts(data)
            lines = len(data) - len(no_lines)
            rows.append(
                {
                    "file": rel,
                    "total": len(data),
                    "qstr": qstrs,
                    "const": consts,
                    "lines": lines,
                    "code": len(data) - qstrs - consts - lines,
                    "O3": len(o3),
                }
            )
    return rows


def print_breakdown(rows: list[dict]) -> None:
    cols = ("total", "qstr", "const", "lines", "code", "O3")
    print("| file | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for row in rows + [{"file": "**total**", **{c: sum(r[c] for r in rows) for c in cols}}]:
        print("| {} | ".format(row["file"]) + " | ".join(str(row[c]) for c in cols) + " |")


def reaction_record(blob: bytes) -> dict:
    from edge.rtd import cvd_resistance

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
        if crossed is None and node.loops[0].measure.unfiltered > limit:  # what it trips on
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
    records += board_ram_records()[0]
    records.append(reaction_record(blob))
    return records


# -- RAM per shipped kind (the metric that replaced the .mpy size target) -----------------

STUBS = ROOT / "bench" / "mpy" / "stubs"
BOARD_RAM_PROBE = ROOT / "bench" / "mpy" / "board_ram.py"
RAM_TABLE = ROOT / "host" / "board_ram_table.py"
RAM_TICKS = 1000
RAM_TOTAL_TARGET = 80 * 1024
RAM_RUNTIME_TARGET = 16 * 1024
KIND_WARMUP_TICKS = 6_000
KIND_GROWTH_CYCLES = 10  # of 1,000 ticks per kind (the reference reactor has 40)

RAM_NODE_CODE = """
import gc, asyncio
# Every global exists before the first reading (a new global could grow the module dict).
names = {names!r}
mem = [0] * (len(names) + 1)
i = m_boot = m_run = m_after = 0
blob = bytes.fromhex({blob!r})
import machine  # the stub: not part of a bundle, imported before the first reading
import board_ram
b = board_ram.Board()
async def settle():
    await asyncio.sleep_ms(0)
    gc.collect()
    return gc.mem_alloc()
mem[0] = await settle()
while i < len(names):
    __import__(names[i])
    i += 1
    mem[i] = await settle()
b.boot(blob)
m_boot = await settle()
b.run({ticks})
b.fill_queues()
m_run = await settle()
b.run({ticks})
m_after = await settle()
print(' '.join(str(x) for x in mem))
print(m_boot, m_run, m_after)
print(b.summary())
"""

RAM_WASI_CODE = """
import gc
import sys
sys.path.insert(0, '/input/bench/mpy/stubs')
sys.path.insert(0, '/input/bench/mpy')
import board_ram
blob = bytes.fromhex({blob!r})
heap = [0] * ({cycles} + 1)
k = 0
b = board_ram.Board()
b.boot(blob)
b.fill_queues()
for k in range({warm} // 1000):
    b.run(1000)
    gc.collect()
heap[0] = gc.mem_alloc()
for k in range({cycles}):
    b.run(1000)
    gc.collect()  # module top level: nothing of ours lives only in a function's locals
    heap[k + 1] = gc.mem_alloc()
print(' '.join(str(x) for x in heap))
print(b.summary())
"""


def shipped_kinds() -> dict[str, Path]:
    """name (the file stem: the kind, or a variant such as pump_flow) -> board config of
    every shipped config that runs on MicroPython."""
    out = {}
    for path in sorted((ROOT / "board_configs").glob("*.toml")):
        cfg = load_board_config(path)
        if cfg.target != "linux":
            out[path.stem] = path  # the file name: pump_flow.toml is a second pump
    return out


def measure_board_ram(config: Path, ticks: int = RAM_TICKS) -> dict:
    """Heap use of one kind under the Node build, from its bundle's .mpy files as
    shipped (``skid bundle --target generic``): per imported module, then boot, then
    ``ticks`` ticks with the outage queues full.  Bytes; see docs/deploy.md, "Memory"."""
    from host.bundle import build_bundle  # bench -> host: the bundle exactly as shipped

    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_bundle(config, "generic", Path(tmp) / "b")
        files = {
            "/lib/" + rel: (Path(tmp) / "b" / "lib" / rel).read_bytes()
            for rel in (
                p.relative_to(Path(tmp) / "b" / "lib").as_posix()
                for p in (Path(tmp) / "b" / "lib").rglob("*.mpy")
            )
        }
        blob = (Path(tmp) / "b" / "config.bin").read_bytes()
    files["/lib/machine.py"] = (STUBS / "machine.py").read_bytes()
    files["/lib/board_ram.py"] = BOARD_RAM_PROBE.read_bytes()
    order = bundle.modules
    names = [m[: -len(".py")].replace("/", ".").removesuffix(".__init__") for m in order]
    out = run_node(
        RAM_NODE_CODE.format(names=names, blob=blob.hex(), ticks=ticks),
        packages=(),
        async_=True,
        extra_files=files,
    )
    mem_line, boot_line, summary = out.strip().splitlines()[-3:]
    if "state=execute" not in summary or "up=False" not in summary:
        raise AssertionError(f"{config.name}: board not running as expected: {summary}")
    mem = [int(x) for x in mem_line.split()]
    m_boot, m_run, m_after = (int(x) for x in boot_line.split())
    per_module = {order[i]: mem[i + 1] - mem[i] for i in range(len(order))}
    return {
        "imports": mem[-1] - mem[0],
        "boot": m_boot - mem[-1],
        "runtime": m_run - mem[-1],
        "total": m_run - mem[0],
        "second_1000_ticks": m_after - m_run,
        "per_module": per_module,
        "summary": summary,
    }


def kind_heap_growth(config: Path, cycles: int = KIND_GROWTH_CYCLES) -> list[int]:
    """``gc.mem_alloc()`` after the warm-up and after each further 1,000 ticks of one kind
    booted by the RAM probe (WASI build, sources; collections at top level)."""
    blob = board_file(compile_config(load_board_config(config)))
    code = RAM_WASI_CODE.format(blob=blob.hex(), cycles=cycles, warm=KIND_WARMUP_TICKS)
    heap, summary = run_wasi(code).stdout.strip().splitlines()[-2:]
    if "state=execute" not in summary:
        raise AssertionError(f"{config.name}: board not running as expected: {summary}")
    return [int(x) for x in heap.split()]


def board_ram_records(kinds: dict[str, Path] | None = None) -> tuple[list[dict], dict]:
    """Records per shipped kind, and the table host/board_ram.py is written from."""
    records = []
    table = {}
    for kind, path in (kinds or shipped_kinds()).items():
        m = measure_board_ram(path)
        heap = kind_heap_growth(path)
        growth_blocks = round((heap[-1] - heap[0]) / 16 / (len(heap) - 1))
        table[kind] = {k: m[k] for k in ("imports", "runtime", "total", "per_module")}
        records += [
            record(f"edge.ram_total_bytes.{kind}", m["total"], "B", target=f"<={RAM_TOTAL_TARGET}"),
            record(f"edge.ram_imports_bytes.{kind}", m["imports"], "B"),
            record(
                f"edge.ram_runtime_bytes.{kind}",
                m["runtime"],
                "B",
                target=f"<={RAM_RUNTIME_TARGET}",
            ),
            record(
                f"edge.ram_growth_1000_ticks.{kind}",
                growth_blocks * 16,
                "B (whole GC blocks)",
                target="<=0",
            ),
        ]
    return records, table


def write_ram_table(table: dict) -> None:
    """host/board_ram_table.py: the measured figures ``skid bundle`` checks a bundle against."""
    lines = [
        '"""Measured RAM per shipped board kind: written by `python -m bench.bench_edge',
        "--ram-table` (bench/bench_edge.py, board_ram_records); do not edit by hand.",
        "",
        "Bytes of MicroPython heap (gc.mem_alloc) under the 32-bit Node WebAssembly build,",
        "MicroPython 1.27, from each kind's bundle (.mpy, as shipped): ``imports`` is the",
        "import closure of edge/boardmain.py, ``runtime`` what boot and 1,000 ticks add with",
        "the link's outage queues full, ``per_module`` what importing each file added (in",
        "dependency order).  docs/deploy.md, section Memory.",
        '"""',
        "",
        "# fmt: off",
        f"MEASURED = {table!r}",
        "# fmt: on",
        "",
    ]
    RAM_TABLE.write_text("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:] == ["--sizes"]:
        print_breakdown(mpy_breakdown())
    elif sys.argv[1:] == ["--ram-table"]:
        recs, ram = board_ram_records()
        write_ram_table(ram)
        for rec in recs:
            print(rec["name"], rec["value"], rec["unit"], rec["target"] or "")
    else:
        raise SystemExit("usage: python -m bench.bench_edge --sizes | --ram-table")
