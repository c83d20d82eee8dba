"""CBOR codec speed: protocol/cbor.py against cbor2's C extension, and under MicroPython.

The workload is the reference telemetry object (8 channels at their declared resolutions,
exactly what a telemetry message encodes).  CPython timings are best-of-N ``timeit`` per
call, ours and cbor2's measured in the same run so the ratio is comparable across
machines.  MicroPython: the WASI build gives fuel per call (deterministic: the repeatable
cost measure) from the difference between a loop that encodes/decodes and an empty loop;
the Node build gives microseconds per call from ``time.ticks_us`` (best of several runs;
its clock ticks in whole milliseconds, so each run is long).
"""

from __future__ import annotations

import timeit

import cbor2

from bench.common import record
from protocol.cbor import decode, encode
from tools.micropython import run_node, run_wasi

REFERENCE_TELEMETRY = {0: 3, 1: 1, 2: 200, 3: 3600000, 4: [8012, 7987, 503, 498, 250, 125, 634, 1]}

NUMBER = 20000  # calls per timeit repeat
REPEAT = 9
# Few enough WASI iterations that the 1 MB guest heap never needs a collection.
WASI_CALLS = 200
# ticks_us advances in whole milliseconds in the Node build: long runs keep it precise.
NODE_CALLS = 5000
NODE_REPEAT = 3

SETUP = (
    "from protocol.cbor import encode, decode\n"
    "OBJ = {0: 3, 1: 1, 2: 200, 3: 3600000, 4: [8012, 7987, 503, 498, 250, 125, 634, 1]}\n"
    "DATA = encode(OBJ)\n"
)


def best_us(func) -> float:
    return min(timeit.repeat(func, number=NUMBER, repeat=REPEAT)) / NUMBER * 1e6


def cpython_records() -> list[dict]:
    obj = REFERENCE_TELEMETRY
    data = cbor2.dumps(obj)
    if encode(obj) != data or decode(data) != obj:
        raise AssertionError("codec disagrees with cbor2 on the reference object")
    enc, dumps = best_us(lambda: encode(obj)), best_us(lambda: cbor2.dumps(obj))
    dec, loads = best_us(lambda: decode(data)), best_us(lambda: cbor2.loads(data))
    return [
        record("codec.encode_us", enc, "us", "cbor2.dumps", dumps, "<=2.0x"),
        record("codec.decode_us", dec, "us", "cbor2.loads", loads, "<=5.0x"),
    ]


def wasi_fuel_per_call(call: str) -> float:
    loop = "for _ in range({}):\n    {}\nprint('done')\n"
    empty = run_wasi(SETUP + loop.format(WASI_CALLS, "pass"))
    work = run_wasi(SETUP + loop.format(WASI_CALLS, call))
    if work.stdout.strip() != "done":
        raise AssertionError("WASI run did not complete: " + work.stdout)
    return (work.fuel_used - empty.fuel_used) / WASI_CALLS


NODE_TIMING = """
import time
def best(fn):
    best = None
    for _ in range({repeat}):
        t0 = time.ticks_us()
        for _ in range({calls}):
            fn()
        dt = time.ticks_diff(time.ticks_us(), t0)
        best = dt if best is None or dt < best else best
    return best / {calls}
enc = best(lambda: encode(OBJ))
dec = best(lambda: decode(DATA))
empty = best(lambda: None)
print(enc - empty, dec - empty)
"""


def micropython_records() -> list[dict]:
    enc_fuel = wasi_fuel_per_call("encode(OBJ)")
    dec_fuel = wasi_fuel_per_call("decode(DATA)")
    out = run_node(SETUP + NODE_TIMING.format(repeat=NODE_REPEAT, calls=NODE_CALLS))
    enc_us, dec_us = (float(x) for x in out.split())
    return [
        record("codec.encode_fuel_micropython", enc_fuel, "fuel"),
        record("codec.decode_fuel_micropython", dec_fuel, "fuel"),
        record("codec.encode_us_micropython_node", enc_us, "us"),
        record("codec.decode_us_micropython_node", dec_us, "us"),
    ]


def run() -> list[dict]:
    return cpython_records() + micropython_records()


if __name__ == "__main__":
    for rec in run():
        print(rec)
