"""The CBOR codec under real MicroPython: same answers as under CPython.

Cases are prepared on CPython (RFC 8949 vectors, hypothesis-generated values encoded by
cbor2 in canonical form, the explicit malformed inputs of test_cbor.py and mutations of
valid encodings), shipped to MicroPython as hex with the expected outcome, and checked
there: the decoded value (types and float bits), the re-encoding, or the DecodeError's
offset and reason.  The same program runs on both builds (Node and WASI); each reports
every mismatch and the test asserts there are none.
"""

from __future__ import annotations

import json
import shutil
import struct

import cbor2
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_cbor import MALFORMED, ROOT, VECTORS, to_cbor2, values

from protocol.cbor import UNDEFINED, DecodeError, EncodeError, Float32, Simple, Tag, decode, encode
from tools.micropython import run_node, run_wasi


def spec(v):
    """``v`` as nested lists of strings and ints that MicroPython rebuilds exactly."""
    if type(v) is bool:
        return ["T" if v else "F"]
    if v is None:
        return ["N"]
    if v is UNDEFINED:
        return ["U"]
    if type(v) is int:
        return ["i", str(v)]
    if type(v) is float:
        return ["f", struct.pack(">d", v).hex()]
    if type(v) is str:
        return ["s", v.encode().hex()]
    if type(v) is bytes:
        return ["b", v.hex()]
    if type(v) is list:
        return ["l", [spec(x) for x in v]]
    if type(v) is dict:
        return ["m", [[spec(k), spec(x)] for k, x in v.items()]]
    if type(v) is Tag:
        return ["t", str(v.tag), spec(v.value)]
    if type(v) is Simple:
        return ["S", v.value]
    raise AssertionError(f"no spec for {v!r}")


def reason_kind(reason: str) -> str:
    # map-key reasons end with the key's repr, which MicroPython may print differently
    cut = reason.find(" map key")
    return reason if cut < 0 else reason[: cut + len(" map key")]


def case(data: bytes) -> list:
    """[hex, outcome] with outcome computed here, on CPython."""
    try:
        value = decode(data)
    except DecodeError as exc:
        return [data.hex(), ["error", exc.offset, reason_kind(exc.reason)]]
    try:
        again = encode(value).hex()
    except EncodeError:
        again = None  # a bignum beyond 64 bits: encode must refuse it there too
    return [data.hex(), ["value", spec(value), again]]


def build_cases() -> list:
    cases = [case(bytes.fromhex(e["hex"])) for e in VECTORS]
    cases += [case(bytes.fromhex(m[0])) for m in MALFORMED]
    cases += [case(bytes([0x81] * n + [0])) for n in (16, 17)]
    samples: list[bytes] = []

    @settings(
        max_examples=150,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(values(), st.data())
    def collect(x, data):
        canonical = cbor2.dumps(to_cbor2(x), canonical=True)
        assert encode(x) == canonical
        samples.append(canonical)
        raw = bytearray(canonical)
        pos = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[pos] = data.draw(st.integers(0, 255))
        else:
            del raw[pos:]
        samples.append(bytes(raw))

    collect()
    cases += [case(s) for s in samples]
    return cases


CHECKER = r"""
import json
import struct
from binascii import unhexlify
from protocol import cbor


def cases():
    # one JSON line per case, parsed as it is checked: the WASI build has a 1 MB heap
    # and traps (rather than raising MemoryError) when it runs full
    with open(CASES_PATH) as f:
        for line in f:
            yield json.loads(line)

def build(e):
    k = e[0]
    if k == "i": return int(e[1])
    if k == "f": return struct.unpack(">d", unhexlify(e[1]))[0]
    if k == "s": return unhexlify(e[1]).decode()
    if k == "b": return unhexlify(e[1])
    if k == "l": return [build(x) for x in e[1]]
    if k == "m": return dict((build(a), build(b)) for a, b in e[1])
    if k == "t": return cbor.Tag(int(e[1]), build(e[2]))
    if k == "S": return cbor.Simple(e[1])
    return {"T": True, "F": False, "N": None, "U": cbor.UNDEFINED}[k]

def same(v, e):
    k = e[0]
    if k == "f":
        x = build(e)
        if x != x:
            return type(v) is float and v != v
        return type(v) is float and struct.pack(">d", v) == struct.pack(">d", x)
    if k == "l":
        return type(v) is list and len(v) == len(e[1]) and all(same(a, b) for a, b in zip(v, e[1]))
    if k == "m":
        if type(v) is not dict or len(v) != len(e[1]):
            return False
        for ke, ve in e[1]:
            key = build(ke)
            if key not in v or not same(v[key], ve):
                return False
        return True
    if k == "t":
        return type(v) is cbor.Tag and v.tag == int(e[1]) and same(v.value, e[2])
    if k in ("T", "F", "N", "U"):
        return v is build(e)
    want = build(e)
    return type(v) is type(want) and v == want

failures = []
n_cases = 0
for h, outcome in cases():
    n_cases += 1
    data = unhexlify(h)
    try:
        value = cbor.decode(data)
    except cbor.DecodeError as exc:
        if outcome[0] != "error" or exc.offset != outcome[1] or not exc.reason.startswith(outcome[2]):
            failures.append((h, "raised", exc.offset, exc.reason))
        continue
    if outcome[0] != "value":
        failures.append((h, "decoded, expected error", outcome))
        continue
    if not same(value, outcome[1]):
        failures.append((h, "decoded to", repr(value)))
        continue
    try:
        again = cbor.encode(value).hex()
    except cbor.EncodeError:
        again = None
    if again != outcome[2]:
        failures.append((h, "re-encoded as", again))

# Float32 and the manual half conversion used where struct lacks the 'e' format
for x, want in FLOAT32:
    got = cbor.encode(cbor.Float32(x)).hex()
    if got != want:
        failures.append(("Float32", x, got))
    got = cbor.encode([cbor.Float32(x)]).hex()  # the encoder's inline path for lists
    if got != "81" + want:
        failures.append(("Float32 in a list", x, got))
    if want.startswith("f9") or want.startswith("fa"):  # the decoder's inline path
        v = cbor.decode(unhexlify("81" + want))[0]
        if struct.pack(">d", v) != struct.pack(">d", cbor.decode(unhexlify(want))):
            failures.append(("float in an array", want, v))
native = cbor._HAS_HALF
halves = range(0, 65536, HALF_STEP)
for h in halves:
    p = bytes([0xF9, h >> 8, h & 255])
    v = cbor.decode(p)
    cbor._HAS_HALF = False
    w = cbor.decode(p)
    again = cbor.encode(w)
    cbor._HAS_HALF = native
    if not (v != v and w != w) and struct.pack(">d", v) != struct.pack(">d", w):
        failures.append(("half decode", h, v, w))
    if again != (b"\xf9\x7e\x00" if w != w else p):
        failures.append(("half encode", h, again))

for f in failures:
    print("FAIL", f)
print("checked", n_cases, "cases,", len(halves), "halves; failures:", len(failures))
"""

FLOAT32_VALUES = [
    80.12,
    1.5,
    0.1,
    -2.5e-6,
    1e300,
    65504.0,
    65520.0,
    3.4028234663852886e38,
    -0.0,
    2.5,
    6.103515625e-05,  # smallest normal half
    5.960464477539063e-08,  # smallest subnormal half
    1e-40,  # a single subnormal
]


CASES_FILE = "cbor_cases.jsonl"


def checker(cases_path: str, half_step: int) -> str:
    float32 = [[x, encode(Float32(x)).hex()] for x in FLOAT32_VALUES]
    return (
        f"CASES_PATH = {cases_path!r}\nFLOAT32 = {float32!r}\nHALF_STEP = {half_step}\n" + CHECKER
    )


def expected_summary(n_cases: int, half_step: int) -> str:
    return f"checked {n_cases} cases, {len(range(0, 65536, half_step))} halves; failures: 0"


@pytest.fixture(scope="module")
def cases() -> list:
    return build_cases()


@pytest.fixture(scope="module")
def cases_jsonl(cases) -> tuple[bytes, int]:
    return "".join(json.dumps(c) + "\n" for c in cases).encode(), len(cases)


def test_cases_cover_values_errors_and_bignums(cases):
    kinds = [c[1][0] for c in cases]
    assert kinds.count("error") >= len(MALFORMED)
    assert kinds.count("value") >= len(VECTORS) + 150  # vectors and hypothesis values
    assert any(c[1][0] == "value" and c[1][2] is None for c in cases)  # 2**64 bignum


def test_codec_under_micropython_node(cases_jsonl):
    data, n = cases_jsonl
    code = checker("/lib/" + CASES_FILE, half_step=3)
    out = run_node(code, extra_files={"/lib/" + CASES_FILE: data})
    assert out.strip().splitlines()[-1] == expected_summary(n, 3), out


def test_codec_under_micropython_wasi(cases_jsonl, tmp_path):
    # The WASI build sees one read-only folder: give it the codec and the cases.  It checks
    # fewer half patterns: that build traps ("memory fault ... out of bounds memory
    # access") in long allocation-heavy loops, even ones that never touch the codec.
    data, n = cases_jsonl
    shutil.copytree(ROOT / "protocol", tmp_path / "protocol")
    (tmp_path / CASES_FILE).write_bytes(data)
    out = run_wasi(checker("/input/" + CASES_FILE, half_step=301), root=tmp_path).stdout
    assert out.strip().splitlines()[-1] == expected_summary(n, 301), out
