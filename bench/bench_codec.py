"""CBOR codec speed: protocol/cbor.py against cbor2's C extension, and under MicroPython.

Two workloads, both what a telemetry message of 8 channels encodes: the reference object
with every channel at a declared resolution (scaled integers), and the same readings on
channels without one (floats: Float32, some of which go out as float16).  CPython
timings are the best of 40 ``timeit`` runs per call, ours and cbor2's (C extension)
alternated in the same run so the ratio is comparable across machines.  Targets: encode
<= 2x ``cbor2.dumps`` and decode <= 3x ``cbor2.loads``, for both shapes.

MicroPython (both shapes, no targets): the WASI build gives fuel per call
(deterministic: the repeatable cost measure) from the difference between a loop that
encodes/decodes and an empty loop; the Node build gives microseconds per call from
``time.ticks_us`` (best of several runs; its clock ticks in whole milliseconds, so each
run is long).
"""

from __future__ import annotations

import struct
import timeit

import cbor2

from bench.common import record
from protocol.cbor import Float32, decode, encode
from tools.micropython import run_node, run_wasi

REFERENCE_TELEMETRY = {0: 3, 1: 1, 2: 200, 3: 3600000, 4: [8012, 7987, 503, 498, 250, 125, 634, 1]}
# The same eight readings on channels without a resolution: float channels, sent as
# Float32 (two of them, 2.5 and 1.25, are exact halves and go out as float16).
FLOAT_READINGS = [80.12, 79.87, 5.03, 4.98, 2.5, 1.25, 6.34, 0.01]
FLOAT_TELEMETRY = {0: 3, 1: 1, 2: 200, 3: 3600000, 4: [Float32(x) for x in FLOAT_READINGS]}
# What cbor2 is given for that shape: the same values as Python floats (already rounded
# to single precision, so cbor2.loads of our bytes returns exactly this).  cbor2.dumps
# writes them as 9-byte doubles; its canonical=True would write our bytes but is slower,
# so the faster default is the peer.
FLOAT_PLAIN = {
    0: 3,
    1: 1,
    2: 200,
    3: 3600000,
    4: [struct.unpack(">f", struct.pack(">f", x))[0] for x in FLOAT_READINGS],
}
SHAPES = (
    ("scaled", REFERENCE_TELEMETRY, REFERENCE_TELEMETRY),
    ("float", FLOAT_TELEMETRY, FLOAT_PLAIN),
)

NUMBER = 2000  # calls per timing
REPEAT = 40  # timings per function, ours and the peer's interleaved
# Few enough WASI iterations that the 1 MB guest heap never needs a collection.
WASI_CALLS = 200
# ticks_us advances in whole milliseconds in the Node build: long runs keep it precise.
NODE_CALLS = 5000
NODE_REPEAT = 3

SETUP = (
    "from protocol.cbor import encode, decode, Float32\n"
    "OBJ = {0: 3, 1: 1, 2: 200, 3: 3600000, 4: [8012, 7987, 503, 498, 250, 125, 634, 1]}\n"
    "DATA = encode(OBJ)\n"
    "FOBJ = {0: 3, 1: 1, 2: 200, 3: 3600000, 4: [Float32(x) for x in READINGS]}\n"
    "FDATA = encode(FOBJ)\n"
)
SETUP = f"READINGS = {FLOAT_READINGS!r}\n" + SETUP


def best_pair_us(ours, peer) -> tuple[float, float]:
    """Best time per call of ``ours`` and ``peer``, timed alternately so that load from
    other processes falls on both alike (the machine may be shared)."""
    t_ours, t_peer = [], []
    for _ in range(REPEAT):
        t_ours.append(timeit.timeit(ours, number=NUMBER))
        t_peer.append(timeit.timeit(peer, number=NUMBER))
    return min(t_ours) / NUMBER * 1e6, min(t_peer) / NUMBER * 1e6


def cpython_records() -> list[dict]:
    out = []
    for shape, obj, plain in SHAPES:
        data = cbor2.dumps(plain, canonical=True)
        if encode(obj) != data or decode(data) != plain or cbor2.loads(data) != plain:
            raise AssertionError(f"codec disagrees with cbor2 on the {shape} telemetry")
        enc, dumps = best_pair_us(lambda o=obj: encode(o), lambda p=plain: cbor2.dumps(p))
        dec, loads = best_pair_us(lambda d=data: decode(d), lambda d=data: cbor2.loads(d))
        out += [
            record("codec.encode_us_" + shape, enc, "us", "cbor2.dumps", dumps, "<=2.0x"),
            record("codec.decode_us_" + shape, dec, "us", "cbor2.loads", loads, "<=3.0x"),
        ]
    return out


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
enc = best(lambda: encode({obj}))
dec = best(lambda: decode({data}))
empty = best(lambda: None)
print(enc - empty, dec - empty)
"""


def micropython_records() -> list[dict]:
    out = []
    for shape, obj, data in (("scaled", "OBJ", "DATA"), ("float", "FOBJ", "FDATA")):
        enc_fuel = wasi_fuel_per_call(f"encode({obj})")
        dec_fuel = wasi_fuel_per_call(f"decode({data})")
        timing = NODE_TIMING.format(repeat=NODE_REPEAT, calls=NODE_CALLS, obj=obj, data=data)
        enc_us, dec_us = (float(x) for x in run_node(SETUP + timing).split())
        out += [
            record("codec.encode_fuel_micropython_" + shape, enc_fuel, "fuel"),
            record("codec.decode_fuel_micropython_" + shape, dec_fuel, "fuel"),
            record("codec.encode_us_micropython_node_" + shape, enc_us, "us"),
            record("codec.decode_us_micropython_node_" + shape, dec_us, "us"),
        ]
    return out


def run() -> list[dict]:
    return cpython_records() + micropython_records()


if __name__ == "__main__":
    for rec in run():
        print(rec)
