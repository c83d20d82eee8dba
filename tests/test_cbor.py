"""Tests of the pure-Python CBOR codec (protocol/cbor.py) under CPython.

Layers: the RFC 8949 Appendix A vectors; exact bytes for preferred serialisation and map
order; a differential property against cbor2; fuzzing of the decoder with random and
mutated input; one test per rejection the decoder promises (offset and reason); and the
fallbacks MicroPython ports need (manual half floats, UTF-8 validation).
"""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import cbor
from protocol.cbor import (
    UNDEFINED,
    DecodeError,
    EncodeError,
    Float32,
    Simple,
    Tag,
    decode,
    encode,
    encode_into,
)

ROOT = Path(__file__).resolve().parent.parent


VECTOR_FILE = ROOT / "tests" / "data" / "vectors" / "cbor-rfc8949-appendix-a.json"


def load_vectors() -> list[dict]:
    """RFC 8949 Appendix A, shipped with the tests (provenance: tests/data/vectors/README.md)."""
    return json.loads(VECTOR_FILE.read_text())


VECTORS = load_vectors()

# Every `diagnostic` entry of the vector file, spelled out as the value decode must return.
# A diagnostic missing here fails the test rather than being skipped.
DIAGNOSTIC_VALUES = {
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "NaN": math.nan,
    "undefined": UNDEFINED,
    "simple(16)": Simple(16),
    "simple(255)": Simple(255),
    '0("2013-03-21T20:04:00Z")': Tag(0, "2013-03-21T20:04:00Z"),
    "1(1363896240)": Tag(1, 1363896240),
    "1(1363896240.5)": Tag(1, 1363896240.5),
    "23(h'01020304')": Tag(23, b"\x01\x02\x03\x04"),
    "24(h'6449455446')": Tag(24, b"dIETF"),
    '32("http://www.example.com")': Tag(32, "http://www.example.com"),
    "h''": b"",
    "h'01020304'": b"\x01\x02\x03\x04",
    "{1: 2, 3: 4}": {1: 2, 3: 4},
    "(_ h'0102', h'030405')": b"\x01\x02\x03\x04\x05",
}


def norm(v, any_nan=False):
    """A form of ``v`` whose == is exact: types kept, floats by their bits.

    Tuples compare as lists (both are CBOR arrays).  With ``any_nan`` every NaN equals
    every other: for values that went through encode(), which sends all NaNs as f97e00.
    """
    if type(v) is bool:
        return ("bool", v)
    if type(v) is float:
        if any_nan and v != v:
            return ("nan",)
        return ("float", struct.pack(">d", v))
    if type(v) is int:
        return ("int", v)
    if type(v) in (list, tuple):
        return ("list", [norm(x, any_nan) for x in v])
    if type(v) is dict:
        return ("map", {norm(k, any_nan): norm(x, any_nan) for k, x in v.items()})
    if type(v) is bytearray:
        return ("bytes", bytes(v))
    if type(v) is bytes:
        return ("bytes", v)
    if type(v) is Tag:
        return ("tag", v.tag, norm(v.value, any_nan))
    return (type(v).__name__, v if v is None or v is UNDEFINED or type(v) is str else repr(v))


def _freeze(v):
    # norm() output must be hashable to serve as a dict key
    if isinstance(v, tuple):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, list):
        return ("L",) + tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return ("M",) + tuple(sorted((repr(k), _freeze(x)) for k, x in v.items()))
    return v


def same(a, b, any_nan=False) -> bool:
    return _freeze(norm(a, any_nan)) == _freeze(norm(b, any_nan))


def expected_value(entry):
    if "decoded" in entry:
        return entry["decoded"]
    return DIAGNOSTIC_VALUES[entry["diagnostic"]]


def representable(value) -> bool:
    """Whether encode() can write ``value`` (ints outside 64 bits need a bignum tag)."""
    return not (type(value) is int and not -(2**64) <= value < 2**64)


# --- RFC 8949 Appendix A -----------------------------------------------------------------


@pytest.mark.parametrize("entry", VECTORS, ids=[e["hex"] for e in VECTORS])
def test_rfc_vector_decodes_to_its_value(entry):
    assert same(decode(bytes.fromhex(entry["hex"])), expected_value(entry))


@pytest.mark.parametrize("entry", VECTORS, ids=[e["hex"] for e in VECTORS])
def test_rfc_vector_reencodes(entry):
    data = bytes.fromhex(entry["hex"])
    value = decode(data)
    if not representable(value):
        # 2**64 and -2**64-1 are bignums: outside the encoder's declared int range
        with pytest.raises(EncodeError, match="out of range"):
            encode(value)
        return
    again = encode(value)
    if entry["roundtrip"]:
        assert again == data
    else:
        # indefinite lengths and long floats come back in preferred serialisation
        assert len(again) <= len(data)
        assert same(decode(again), value)


def test_every_diagnostic_vector_has_an_expected_value():
    diagnostics = {e["diagnostic"] for e in VECTORS if "diagnostic" in e}
    assert diagnostics == set(DIAGNOSTIC_VALUES)


# --- exact bytes ---------------------------------------------------------------------------

REFERENCE_TELEMETRY = {0: 3, 1: 1, 2: 200, 3: 3600000, 4: [8012, 7987, 503, 498, 250, 125, 634, 1]}


@pytest.mark.parametrize(
    "value, hex_",
    [
        (
            REFERENCE_TELEMETRY,
            "a5000301010218c8031a0036ee800488191f4c191f331901f71901f218fa187d19027a01",
        ),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (2**32 - 1, "1affffffff"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (-24, "37"),
        (-25, "3818"),
        (-(2**64), "3bffffffffffffffff"),
        (65504.0, "f97bff"),
        (65520.0, "fa477ff000"),  # just above the half range
        (5.960464477539063e-08, "f90001"),  # smallest half subnormal
        (1.1, "fb3ff199999999999a"),
        (-0.0, "f98000"),
        (float("-nan"), "f97e00"),
        (struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0], "f97e00"),  # payload dropped
        ((1, [2]), "82018102"),
        (bytearray(b"\x01"), "4101"),
        ("x" * 24, "7818" + "78" * 24),
        (Tag(2**64 - 1, None), "dbfffffffffffffffff6"),
        (Simple(19), "f3"),
        (Simple(32), "f820"),
        (UNDEFINED, "f7"),
    ],
    ids=repr,
)
def test_preferred_serialisation_bytes(value, hex_):
    assert encode(value).hex() == hex_


def test_map_keys_in_bytewise_order_of_their_encodings():
    value = {"b": 1, "aa": 2, 10: 3, -1: 4, b"x": 5, 1000: 6, 24: 7, 3: 8}
    # 03 < 0a < 1818 < 1903e8 < 20 < 4178 < 6162 < 626161
    assert encode(value).hex() == "a8" + "0308" + "0a03" + "181807" + "1903e806" + (
        "2004" + "417805" + "616201" + "62616102"
    )


def test_int_keys_out_of_insertion_order_are_sorted():
    assert encode({3: 1, 1: 2, 100: 3, 24: 4}) == bytes.fromhex("a401020301181804186403")


def test_fast_path_falls_back_when_a_later_key_is_not_an_int():
    # the fast path writes 0 and 1 before meeting "a"; the output must not keep them twice
    assert encode({0: 0, 1: 1, "a": 2}).hex() == "a3" + "0000" + "0101" + "616102"


def test_encode_into_appends_to_a_buffer():
    buf = bytearray(b"\xaa")
    encode_into(buf, [1, "a"])
    assert buf == bytearray(b"\xaa\x82\x01\x61a")


def test_subclasses_of_supported_types_encode_as_their_base():
    class MyInt(int):
        pass

    class MyDict(dict):
        pass

    class MyStr(str):
        def __str__(self):
            return "not me"

    class MyBytes(bytes):
        pass

    assert encode(MyDict({MyInt(1): MyInt(300)})) == encode({1: 300})
    assert encode([MyStr("ab"), MyBytes(b"c"), 1.5]) == encode(["ab", b"c", 1.5])


# --- Float32 -------------------------------------------------------------------------------


def test_float32_measured_value_goes_on_the_wire_as_single():
    data = encode(Float32(80.12))
    assert data[0] == 0xFA and len(data) == 5
    assert data[1:] == struct.pack(">f", 80.12)
    back = decode(data)
    assert abs(back - 80.12) <= 80.12 * 2**-24


def test_float32_uses_half_when_exact():
    assert encode(Float32(1.5)) == bytes.fromhex("f93e00")


@pytest.mark.parametrize(
    "value, hex_",
    [
        (1e300, "f97c00"),
        (-1e300, "f9fc00"),
        (math.nan, "f97e00"),
        (-0.0, "f98000"),
        (0.1, "fa3dcccccd"),
    ],
)
def test_float32_edge_values(value, hex_):
    assert encode(Float32(value)).hex() == hex_


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
@settings(max_examples=200)
def test_float32_round_trip_within_single_precision(x):
    back = decode(encode(Float32(x)))
    if abs(x) <= 3.4028234663852886e38:
        assert back == struct.unpack(">f", struct.pack(">f", x))[0]
        assert abs(back - x) <= abs(x) * 2**-24 or abs(x) < 2**-126
    else:
        assert math.isinf(back) or abs(back) == 3.4028234663852886e38


# Float32 items of a list take an inline path in the encoder (a single whose low 13 bits
# are not all zero goes out as is), and float items of an array an inline path in the
# decoder: both must give what the general path gives for the same value on its own.
ANY_DOUBLE = st.floats(width=64) | st.integers(0, 2**64 - 1).map(
    lambda b: struct.unpack(">d", struct.pack(">Q", b))[0]
)


@given(ANY_DOUBLE)
@settings(max_examples=1000)
def test_float32_in_a_list_encodes_as_on_its_own(x):
    alone = encode(Float32(x))  # the general path (_enc_float)
    assert encode([Float32(x), Float32(x)]) == b"\x82" + alone + alone
    assert encode({0: [Float32(x)]}) == b"\xa1\x00\x81" + alone


@pytest.mark.parametrize(
    "bits", [0x7FF8000100000000, 0xFFF0000000000001, 0x7FF00000FFFFFFFF, 0x7FFFFFFFFFFFFFFF]
)
def test_float32_nan_with_a_payload_in_a_list_is_the_canonical_nan(bits):
    x = struct.unpack(">d", struct.pack(">Q", bits))[0]
    assert x != x
    assert encode([Float32(x)]) == bytes.fromhex("81f97e00")


@given(ANY_DOUBLE)
@settings(max_examples=300)
def test_float32_in_a_list_without_half_struct_format_is_identical(x):
    native = encode([Float32(x)])
    saved = cbor._HAS_HALF
    cbor._HAS_HALF = False
    try:
        assert encode([Float32(x)]) == native
    finally:
        cbor._HAS_HALF = saved


@given(st.integers(0, 2**32 - 1), st.sampled_from(["fa", "f9", "fb"]))
@settings(max_examples=1000)
def test_float_items_of_an_array_decode_as_on_their_own(bits, head):
    width = {"fa": 4, "f9": 2, "fb": 8}[head]
    item = bytes.fromhex(head) + bits.to_bytes(8, "big")[8 - width :]
    alone = decode(item)
    inner = decode(b"\x82" + item + item)
    assert [struct.pack(">d", v) for v in inner] == [struct.pack(">d", alone)] * 2
    assert struct.pack(">d", decode(b"\xa1\x00" + item)[0]) == struct.pack(">d", alone)


def test_half_without_struct_format_matches_struct_for_every_pattern():
    for h in range(65536):
        raw = bytes([h >> 8, h & 255])
        want = struct.unpack(">e", raw)[0]
        got = cbor._unpack_half(raw, 0)[0]
        assert (want != want and got != got) or struct.pack(">d", want) == struct.pack(">d", got)


# --- strategies ----------------------------------------------------------------------------

# NaNs are drawn as the one quiet NaN that f97e00 decodes to, so values compare by their
# bits after a trip through encoders that drop NaN payloads (ours and cbor2's).
FLOATS = st.floats(allow_nan=True, allow_infinity=True).map(lambda f: math.nan if f != f else f)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.integers(min_value=-30, max_value=300)
    | FLOATS
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.builds(Simple, st.integers(0, 19) | st.integers(32, 255))
    | st.just(UNDEFINED)
)
TAG_NUMBERS = st.integers(min_value=0, max_value=2**64 - 1).filter(lambda n: n not in (2, 3))
INT_KEYS = st.integers(min_value=0, max_value=2**64 - 1) | st.integers(min_value=0, max_value=30)


def values(keys=INT_KEYS):
    return st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=6)
            | st.lists(children, max_size=4).map(tuple)
            | st.dictionaries(keys, children, max_size=6)
            | st.builds(Tag, TAG_NUMBERS, children)
        ),
        max_leaves=20,
    )


def to_cbor2(v):
    """The same value in cbor2's types."""
    if type(v) in (list, tuple):
        return [to_cbor2(x) for x in v]
    if type(v) is dict:
        return {to_cbor2(k): to_cbor2(x) for k, x in v.items()}
    if type(v) is Tag:
        return cbor2.CBORTag(v.tag, to_cbor2(v.value))
    if type(v) is Simple:
        return cbor2.CBORSimpleValue(v.value)
    if v is UNDEFINED:
        return cbor2.undefined
    return v


# --- differential and round-trip properties ---------------------------------------------


@given(values())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_encode_matches_cbor2_canonical(x):
    # cbor2's canonical map order (length first) equals RFC 8949 bytewise order for the
    # non-negative int keys drawn here.
    assert encode(x) == cbor2.dumps(to_cbor2(x), canonical=True)


@given(values())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_decode_reads_what_cbor2_writes(x):
    assert same(decode(cbor2.dumps(to_cbor2(x))), x)


ANY_KEYS = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.text(max_size=6)
    | st.binary(max_size=6)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
)


@given(st.dictionaries(ANY_KEYS, st.integers(0, 5), max_size=8))
@settings(max_examples=200)
def test_maps_with_any_keys_are_in_bytewise_order_and_round_trip(d):
    data = encode(d)
    pairs = sorted((encode(k), encode(v)) for k, v in d.items())
    assert data == bytes([0xA0 | len(d)]) + b"".join(k + v for k, v in pairs)
    assert same(decode(data), d)


@given(values(keys=ANY_KEYS))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(x):
    data = encode(x)
    assert same(decode(data), x)
    assert encode(decode(data)) == data


# --- fuzzing ---------------------------------------------------------------------------------


def decode_or_error(data):
    try:
        return decode(data)
    except DecodeError as exc:
        assert 0 <= exc.offset <= len(data) and exc.reason
        return exc


@given(st.binary(max_size=64))
@settings(max_examples=1000)
def test_arbitrary_bytes_raise_only_decode_error(data):
    result = decode_or_error(data)
    if isinstance(result, DecodeError):
        return
    # anything accepted re-encodes to something that decodes to the same value, unless it
    # holds what encode() documents it refuses: bignums beyond 64 bits, two NaN map keys
    try:
        again = encode(result)
    except EncodeError as exc:
        assert "out of range" in str(exc) or "same bytes" in str(exc)
        return
    assert same(decode(again), result, any_nan=True)  # NaN payloads are not kept


@given(values(), st.data())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_encodings_raise_only_decode_error(x, data):
    raw = bytearray(encode(x))
    action = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if action == "flip":
        raw[pos] = data.draw(st.integers(0, 255))
    elif action == "truncate":
        del raw[pos:]
    elif action == "insert":
        raw.insert(pos, data.draw(st.integers(0, 255)))
    else:
        del raw[pos]
    decode_or_error(bytes(raw))


# --- rejections ------------------------------------------------------------------------------

# (hex input, offset, reason substring): one or more per promised rejection.
MALFORMED = [
    ("", 0, "unexpected end"),
    ("1901", 2, "unexpected end"),
    ("8301820203", 5, "unexpected end"),
    ("fa0000", 3, "unexpected end"),
    ("82fa000000", 5, "unexpected end"),  # a float32 cut short inside an array (inline path)
    ("81f900", 3, "unexpected end"),  # a half cut short inside an array (inline path)
    ("a1001a000000", 6, "unexpected end"),  # a 32-bit map value cut short (inline path)
    ("a100fa0000", 5, "unexpected end"),  # a float32 map value (through _dec)
    ("a1018501", 2, "declared length 5 exceeds the 1 bytes"),  # an array value of a map
    ("a10182fa00", 5, "unexpected end"),
    ("1b00000000", 5, "unexpected end"),
    ("82a201020304", 6, "unexpected end"),
    ("9f01", 2, "unexpected end"),
    ("5f4101", 3, "unexpected end"),
    ("1c", 0, "reserved additional information value 28"),
    ("3d", 0, "reserved additional information value 29"),
    ("5e", 0, "reserved additional information value 30"),
    ("9c", 0, "reserved additional information value 28"),
    ("dd", 0, "reserved additional information value 29"),
    ("fe", 0, "reserved additional information value 30"),
    ("ff", 0, "break outside"),
    ("81ff", 1, "break outside"),
    ("a101ff", 2, "break outside"),
    ("bf01ff", 2, "break outside"),  # break where a map value should be
    ("c1ff", 1, "break outside"),
    ("1f", 0, "indefinite length not allowed for major type 0"),
    ("3f", 0, "indefinite length not allowed for major type 1"),
    ("df00", 0, "indefinite length not allowed for major type 6"),
    ("5f6161ff", 1, "chunk of major type 3 inside an indefinite string of major type 2"),
    ("7f4161ff", 1, "chunk of major type 2 inside an indefinite string of major type 3"),
    ("5f01ff", 1, "chunk of major type 0"),
    ("5f5fffff", 1, "indefinite-length chunk"),
    ("7f7fffff", 1, "indefinite-length chunk"),
    ("61ff", 0, "invalid UTF-8"),
    ("62c080", 0, "invalid UTF-8"),  # overlong NUL
    ("63eda080", 0, "invalid UTF-8"),  # surrogate
    ("64f4908080", 0, "invalid UTF-8"),  # above U+10FFFF
    ("7f6161616161ffff", 5, "invalid UTF-8"),  # the third chunk is the bad one
    ("7f61c361bcff", 1, "invalid UTF-8"),  # a chunk may not split a code point
    ("0000", 1, "1 trailing bytes"),
    ("8100ff", 2, "1 trailing bytes"),
    ("f800", 0, "two-byte simple value 0 below 32"),
    ("f818", 0, "two-byte simple value 24 below 32"),
    ("f81f", 0, "two-byte simple value 31 below 32"),
    ("5a00000005010203", 0, "declared length 5 exceeds the 3 bytes"),
    ("7801", 0, "declared length 1 exceeds the 0 bytes"),
    ("9b0000000100000000010203", 0, "declared length 4294967296 exceeds the 3 bytes"),
    ("bb0000000100000000010203", 0, "map of 4294967296 entries needs at least 8589934592"),
    ("a2010203", 0, "map of 2 entries needs at least 4 bytes, 3 left"),
    ("5b0000000100000000010203", 0, "declared length 4294967296 exceeds the 3 bytes"),
    ("5f5b0000000100000000010203ff", 1, "declared length 4294967296 exceeds"),
    ("a1800100", 1, "unhashable map key"),
    ("a1a00100", 1, "unhashable map key"),
    ("a1c18001", 1, "unhashable map key"),  # a tag holding an array
    ("a201000100", 3, "duplicate map key 1"),
    ("a20100f500", 3, "duplicate map key True"),  # true == 1 in Python (documented)
    ("bf616100616101ff", 4, "duplicate map key 'a'"),
    ("a2f97e0000fa7fc0000000", 5, "duplicate map key nan"),
    ("bff97e0000f97e0000ff", 5, "duplicate map key nan"),
    ("c201", 1, "bignum tag 2 content must be a byte string"),
    ("c380", 1, "bignum tag 3 content must be a byte string"),
]


@pytest.mark.parametrize(
    "hex_, offset, reason", MALFORMED, ids=[m[0] or "empty" for m in MALFORMED]
)
def test_malformed_input_is_rejected_with_offset_and_reason(hex_, offset, reason):
    with pytest.raises(DecodeError) as info:
        decode(bytes.fromhex(hex_))
    assert info.value.offset == offset
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)
    assert str(offset) in str(info.value)


def nested_arrays(n):
    return bytes([0x81] * n + [0x00])


def test_sixteen_nested_containers_decode_seventeen_raise():
    value = decode(nested_arrays(16))
    for _ in range(16):
        value = value[0]
    assert value == 0
    with pytest.raises(DecodeError, match="nesting deeper than max_depth") as info:
        decode(nested_arrays(17))
    assert info.value.offset == 16


def test_maps_and_tags_count_towards_depth():
    assert decode(bytes([0xA1, 0x00] * 16 + [0x00]))  # sixteen nested maps
    with pytest.raises(DecodeError, match="nesting"):
        decode(bytes([0xA1, 0x00] * 17 + [0x00]))
    assert decode(bytes([0xC1] * 16 + [0x00])) is not None
    with pytest.raises(DecodeError, match="nesting") as info:
        decode(bytes([0xC1] * 17 + [0x00]))
    assert info.value.offset == 16


def test_max_depth_is_adjustable():
    assert decode(nested_arrays(2), max_depth=2) == [[0]]
    with pytest.raises(DecodeError, match="nesting"):
        decode(nested_arrays(3), max_depth=2)
    with pytest.raises(DecodeError, match="nesting"):
        decode(bytes.fromhex("9f9f00ffff"), max_depth=1)  # indefinite containers too


@pytest.mark.parametrize(
    "hex_, depth, offset",
    [
        ("a10100", 0, 0),  # a top-level map (decode's shortcut) with no room
        ("a1018100", 1, 2),  # an array value of a map (the map's shortcut) with no room
        ("a101a10100", 1, 2),  # a map value of a map
        ("8181a10100", 2, 2),
    ],
)
def test_depth_is_judged_the_same_on_the_shortcuts(hex_, depth, offset):
    with pytest.raises(DecodeError, match="nesting deeper than max_depth") as info:
        decode(bytes.fromhex(hex_), max_depth=depth)
    assert info.value.offset == offset
    assert decode(bytes.fromhex(hex_), max_depth=depth + 1) is not None


def test_memory_bomb_is_refused_before_allocating():
    bomb = bytes.fromhex("9b0000000100000000") + b"\x00\x00\x00"
    started = time.perf_counter()
    with pytest.raises(DecodeError, match="exceeds"):
        decode(bomb)
    assert time.perf_counter() - started < 0.05


def test_max_size():
    data = bytes.fromhex("83010203")
    assert decode(data, max_size=4) == [1, 2, 3]
    with pytest.raises(DecodeError, match="longer than max_size 3") as info:
        decode(data, max_size=3)
    assert info.value.offset == 3


def test_accepts_bytearray_and_memoryview():
    data = bytes.fromhex("83010203")
    assert decode(bytearray(data)) == decode(memoryview(data)) == [1, 2, 3]


def test_non_preferred_heads_are_accepted():
    # well-formed though not preferred: decoders must take them
    assert decode(bytes.fromhex("1800")) == 0
    assert decode(bytes.fromhex("1b0000000000000001")) == 1
    assert decode(bytes.fromhex("fb3ff8000000000000")) == 1.5
    assert decode(bytes.fromhex("c24101")) == 1


# --- encode errors -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**64, -(2**64) - 1, [2**70]])
def test_ints_outside_64_bits_are_refused(value):
    with pytest.raises(EncodeError, match="out of range"):
        encode(value)


@pytest.mark.parametrize("value", [object(), {1, 2}, 1j, [None, object()]])
def test_unsupported_types_are_refused(value):
    with pytest.raises(EncodeError, match="cannot encode"):
        encode(value)


def test_keys_with_equal_encodings_are_refused():
    with pytest.raises(EncodeError, match="same bytes"):
        encode({math.nan: 1, float("nan"): 2})


def test_deep_or_cyclic_structures_are_refused():
    deep: list = []
    for _ in range(33):
        deep = [deep]
    with pytest.raises(EncodeError, match="nested deeper"):
        encode(deep)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(EncodeError, match="nested deeper"):
        encode(cyclic)


def test_errors_are_value_errors():
    assert issubclass(DecodeError, ValueError) and issubclass(EncodeError, ValueError)


# --- value types -----------------------------------------------------------------------------


def test_tag_simple_and_undefined_behave_as_values():
    assert Tag(1, [2]) == Tag(1, [2]) and Tag(1, 2) != Tag(2, 2) and Tag(1, 2) != 2
    assert repr(Tag(32, "x")) == "Tag(32, 'x')"
    assert Simple(16) == Simple(16) and Simple(16) != Simple(17)
    assert {Simple(16): 1}[Simple(16)] == 1
    assert repr(UNDEFINED) == "UNDEFINED" and not UNDEFINED
    assert decode(encode([Simple(0), UNDEFINED])) == [Simple(0), UNDEFINED]


@pytest.mark.parametrize("n", [20, 23, 24, 31, 256, -1])
def test_simple_values_with_a_meaning_or_out_of_range_are_refused(n):
    with pytest.raises(ValueError, match="simple value"):
        Simple(n)


def test_tag_numbers_must_fit_64_bits():
    with pytest.raises(ValueError, match="Tag number"):
        Tag(2**64, None)


# --- MicroPython fallbacks, exercised under CPython ---------------------------------------


def test_manual_half_conversion_matches_struct(monkeypatch):
    # every half bit pattern decodes identically without the 'e' struct format...
    patterns = [bytes([0xF9, h >> 8, h & 0xFF]) for h in range(65536)]
    native = [decode(p) for p in patterns]
    monkeypatch.setattr(cbor, "_HAS_HALF", False)
    manual = [decode(p) for p in patterns]
    assert all(same(a, b, any_nan=True) for a, b in zip(native, manual, strict=True))
    # ...and re-encodes to the same bytes (all NaNs to the canonical one)
    for p, v in zip(patterns, manual, strict=True):
        assert encode(v) == (b"\xf9\x7e\x00" if v != v else p)


@given(FLOATS)
@settings(max_examples=500)
def test_encoding_without_half_struct_format_is_identical(x):
    native = encode(x)
    saved = cbor._HAS_HALF
    cbor._HAS_HALF = False
    try:
        assert encode(x) == native
    finally:
        cbor._HAS_HALF = saved


def test_utf8_validator_catches_what_lenient_decoders_accept():
    for bad in (
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe0\x80\x80",
        b"\xc3",
        b"\xc3A",
    ):
        assert cbor._utf8_error(bad) == 0
    assert cbor._utf8_error("aü水𐅑".encode()) == -1
    assert cbor._utf8_error(b"ab\xff") == 2


@given(st.binary(max_size=12) | st.text(max_size=6).map(str.encode))
@settings(max_examples=1000)
def test_utf8_validator_agrees_with_cpython(data):
    try:
        data.decode("utf-8")
        strict_ok = True
    except UnicodeDecodeError:
        strict_ok = False
    assert (cbor._utf8_error(data) == -1) == strict_ok


def test_utf8_validator_agrees_with_cpython_on_all_short_sequences():
    for lead in range(0x80, 0x100):
        for second in range(256):
            seq = bytes([lead, second, 0x80, 0x80])[: 2 + (lead >= 0xE0) + (lead >= 0xF0)]
            try:
                seq.decode("utf-8")
                strict_ok = True
            except UnicodeDecodeError:
                strict_ok = False
            assert (cbor._utf8_error(seq) == -1) == strict_ok, seq
