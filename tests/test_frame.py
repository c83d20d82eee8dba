"""Serial framing: COBS vectors, CRC-16/CCITT-FALSE, streaming decoder and resync.

About "never a wrong message": a frame is accepted only if its body is valid COBS and the
CRC-16 over the decoded payload matches.  Frames are bracketed by 0x00 on both sides and
their bodies contain no 0x00, so every 0x00-delimited segment of the wire is either
exactly one sent frame body or made only of noise.  Hence the decoder can only ever
output a sent payload, or the content of a noise segment that happens to be a
well-formed frame itself (a real, roughly 2**-16 per random segment, risk that CRC-16
cannot remove).  The noise tests therefore compare the decoder with an independent
reference model of the wire (textbook COBS + binascii.crc_hqx): output must be exactly
the sent payloads, in order, plus any noise segment the reference also accepts.
"""

import binascii

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from protocol.frame import (
    CRC_CHECK,
    ERR_COBS,
    ERR_CRC,
    ERR_EMPTY,
    ERR_OVERFLOW,
    MAX_PAYLOAD,
    FrameDecoder,
    FrameError,
    cobs_decode,
    cobs_encode,
    crc16,
    decode_frame,
    encode_frame,
    max_wire_size,
)
from tools.micropython import run_wasi

payloads = st.binary(min_size=1, max_size=300)
# Payloads rich in 0x00 and in long non-zero runs exercise every COBS block shape.
zeroish = st.lists(st.sampled_from([0, 0, 1, 0xFF]), min_size=1, max_size=600).map(bytes)
# Non-zero runs around the 254-byte COBS block limit, separated by single 0x00 bytes.
run_lengths = st.one_of(st.sampled_from([0, 1, 252, 253, 254, 255, 256, 508]), st.integers(0, 300))
long_runs = (
    st.lists(run_lengths, min_size=1, max_size=3)
    .map(lambda ns: b"\x00".join(b"\x5a" * n for n in ns))
    .filter(lambda b: 0 < len(b) <= MAX_PAYLOAD)
)
any_payload = st.one_of(payloads, zeroish, long_runs)


def _ref_cobs_decode(segment):
    """Textbook COBS decoder, independent of protocol.frame; None if malformed."""
    out = bytearray()
    i = 0
    while i < len(segment):
        code = segment[i]
        if code == 0 or i + code > len(segment):
            return None
        out += segment[i + 1 : i + code]
        i += code
        if code < 0xFF and i < len(segment):
            out.append(0)
    return bytes(out)


def _ref_accepts(segment, max_payload=MAX_PAYLOAD):
    """Payload the wire segment (between two 0x00) carries per the reference, or None."""
    data = _ref_cobs_decode(segment)
    if data is None or len(data) < 3 or len(data) > max_payload + 2:
        return None
    payload, crc = data[:-2], data[-2:]
    if binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big") != crc:
        return None
    return payload


def _ref_noise_frames(noise):
    # Noise sits between two frame delimiters, so its 0x00-split pieces are whole segments.
    return [p for p in (_ref_accepts(s) for s in noise.split(b"\x00") if s) if p is not None]


# --- CRC ----------------------------------------------------------------------------


def test_crc_published_check_value():
    assert crc16(b"123456789") == 0x29B1 == CRC_CHECK


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_crc_matches_stdlib_and_chains(a, b):
    # binascii.crc_hqx with init 0xFFFF is CRC-16/CCITT-FALSE.
    assert crc16(a + b) == binascii.crc_hqx(a + b, 0xFFFF)
    assert crc16(b, crc16(a)) == crc16(a + b)


# --- COBS vectors (Wikipedia "Consistent Overhead Byte Stuffing", examples 1-11) ---------

R01_FE = bytes(range(0x01, 0xFF))  # 254 non-zero bytes
COBS_VECTORS = [
    (b"\x00", b"\x01\x01\x00"),
    (b"\x00\x00", b"\x01\x01\x01\x00"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01\x00"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33\x00"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44\x00"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01\x00"),
    (R01_FE, b"\xff" + R01_FE + b"\x00"),
    (b"\x00" + R01_FE, b"\x01\xff" + R01_FE + b"\x00"),
    (bytes(range(0x01, 0x100)), b"\xff" + R01_FE + b"\x02\xff\x00"),
    (bytes(range(0x02, 0x100)) + b"\x00", b"\xff" + bytes(range(0x02, 0x100)) + b"\x01\x01\x00"),
    (
        bytes(range(0x03, 0x100)) + b"\x00\x01",
        b"\xfe" + bytes(range(0x03, 0x100)) + b"\x02\x01\x00",
    ),
]


@pytest.mark.parametrize(("raw", "wire"), COBS_VECTORS)
def test_cobs_published_vectors(raw, wire):
    assert cobs_encode(raw) + b"\x00" == wire
    assert cobs_decode(wire[:-1]) == raw


def test_cobs_long_runs_over_254():
    raw = b"\x41" * 600  # 254 + 254 + 92
    assert cobs_encode(raw) == b"\xff" + raw[:254] + b"\xff" + raw[:254] + b"\x5d" + raw[:92]
    raw = b"\x41" * 508  # exactly two full runs: no trailing code byte
    assert cobs_encode(raw) == b"\xff" + raw[:254] + b"\xff" + raw[:254]
    raw = b"\x41" * 254 + b"\x00" + b"\x41" * 254
    assert cobs_encode(raw) == b"\xff" + b"\x41" * 254 + b"\x01\xff" + b"\x41" * 254
    for raw in (b"\x41" * 600, b"\x41" * 508, b"\x41" * 254 + b"\x00" + b"\x41" * 254):
        assert cobs_decode(cobs_encode(raw)) == raw


@given(st.one_of(st.binary(max_size=700), zeroish, long_runs))
def test_cobs_round_trip_and_no_zero(raw):
    enc = cobs_encode(raw)
    assert b"\x00" not in enc
    assert cobs_decode(enc) == raw
    assert _ref_cobs_decode(enc) == raw


@pytest.mark.parametrize("bad", [b"\x05\x11", b"\x02\x00", b"\x00"])
def test_cobs_decode_rejects_malformed(bad):
    with pytest.raises(FrameError) as info:
        cobs_decode(bad)
    assert info.value.reason == ERR_COBS


# --- encode_frame / decode_frame ----------------------------------------------------


def test_encode_frame_exact_bytes():
    # CRC of b"123456789" is the published 0x29B1; no zeros, so one COBS block of 11.
    assert encode_frame(b"123456789") == bytes.fromhex("00 0c 313233343536373839 29b1 00")
    crc = crc16(b"\x11\x22\x00\x33").to_bytes(2, "big")
    assert 0 not in crc  # keeps the expected layout below simple
    assert encode_frame(b"\x11\x22\x00\x33") == b"\x00\x03\x11\x22\x04\x33" + crc + b"\x00"


@settings(max_examples=200)
@given(any_payload)
def test_frame_round_trip(payload):
    frame = encode_frame(payload)
    assert frame[0] == 0 and frame[-1] == 0
    assert b"\x00" not in frame[1:-1]
    assert len(frame) <= max_wire_size(len(payload))
    assert decode_frame(frame) == payload
    assert decode_frame(frame[1:-1]) == payload  # delimiters are optional
    assert FrameDecoder().feed(frame) == [payload]


def test_max_payload_boundary():
    big = bytes(range(1, 256)) * 4 + b"\x07\x08\x09\x0a"  # 1024 non-zero: worst-case size
    assert len(big) == MAX_PAYLOAD
    frame = encode_frame(big)
    assert len(frame) == max_wire_size() == 1 + 1026 + 5 + 1
    assert FrameDecoder().feed(frame) == [big]
    with pytest.raises(FrameError) as info:
        encode_frame(big + b"\x01")
    assert info.value.reason == ERR_OVERFLOW
    assert "1025" in str(info.value) and "1024" in str(info.value)
    # A larger sender limit is allowed, but a default receiver drops it as overflow.
    over = encode_frame(big + b"\x01", max_payload=2048)
    dec = FrameDecoder()
    assert dec.feed(over + encode_frame(b"next")) == [b"next"]
    assert dec.errors[ERR_OVERFLOW] == 1
    with pytest.raises(FrameError) as info:
        decode_frame(over)
    assert info.value.reason == ERR_OVERFLOW
    assert decode_frame(over, max_payload=2048) == big + b"\x01"


def test_encode_frame_rejects_empty_and_non_bytes():
    with pytest.raises(FrameError) as info:
        encode_frame(b"")
    assert info.value.reason == ERR_EMPTY
    assert isinstance(info.value, ValueError)
    with pytest.raises(TypeError, match="str"):
        encode_frame("text")


def test_encode_frame_accepts_bytearray_and_memoryview():
    expected = encode_frame(b"abc\x00d")
    assert encode_frame(bytearray(b"abc\x00d")) == expected
    assert encode_frame(memoryview(b"xabc\x00d")[1:]) == expected


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", ERR_EMPTY),
        (b"\x00\x00", ERR_EMPTY),
        (b"\x00\x01\x00", ERR_EMPTY),  # decodes to nothing
        (b"\x00\x03\x41\x42\x00", ERR_EMPTY),  # 2 bytes: a CRC with no payload
        (b"\x00\x05\x41\x00", ERR_COBS),  # block claims 4 data bytes, frame ends after 1
        (b"\x00\x02\x41\x00\x41\x00", ERR_COBS),  # 0x00 inside the body
        (b"\x00\x0c123456789\x29\xb2\x00", ERR_CRC),
    ],
)
def test_decode_frame_reasons(frame, reason):
    with pytest.raises(FrameError) as info:
        decode_frame(frame)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


# --- streaming decoder --------------------------------------------------------------


def test_decoder_counts_each_error_reason_and_recovers():
    good = encode_frame(b"ok")
    bad_crc = bytearray(encode_frame(b"payload"))
    bad_crc[3] ^= 0x01
    stream = (
        good
        + b"\x00\x00\x00"  # idle fill: not an error
        + b"\x05\x41\x00"  # cobs
        + b"\x01\x00"  # empty
        + bytes(bad_crc)  # crc
        + b"\x41" * 3000  # overflow, then discarded up to the next 0x00
        + good
    )
    dec = FrameDecoder()
    assert dec.feed(stream) == [b"ok", b"ok"]
    assert dec.errors == {ERR_CRC: 1, ERR_COBS: 1, ERR_OVERFLOW: 1, ERR_EMPTY: 1}
    assert dec.frames == 2
    assert dec.last_error == ERR_OVERFLOW


def test_decoder_overflow_on_implied_zero_and_on_data_byte():
    dec = FrameDecoder(max_payload=4)  # buffer holds 6 decoded bytes
    # 6 data bytes fill the buffer; the next code byte would add the implied 0x00.
    implied = b"\x00\x07" + b"\x01" * 6 + b"\x02\x01\x00"
    assert dec.feed(implied) == []
    assert dec.errors[ERR_OVERFLOW] == 1
    data = b"\x00\x08" + b"\x01" * 7 + b"\x00"
    assert dec.feed(data) == []
    assert dec.errors[ERR_OVERFLOW] == 2
    assert dec.feed(encode_frame(b"abcd")) == [b"abcd"]
    assert dec.feed(encode_frame(b"abcde", max_payload=5)) == []
    assert dec.errors[ERR_OVERFLOW] == 3


def test_decoder_rejects_bad_max_payload():
    with pytest.raises(ValueError, match="max_payload"):
        FrameDecoder(max_payload=0)


def test_reset_drops_partial_frame_keeps_counters():
    dec = FrameDecoder()
    frame = encode_frame(b"hello")
    dec.feed(frame[:4])
    dec.reset()
    assert dec.feed(frame[4:]) == []  # the tail alone is garbage
    assert sum(dec.errors.values()) == 1
    assert dec.feed(frame) == [b"hello"]


@settings(max_examples=200)
@given(st.binary(max_size=3000), st.sampled_from([1, 16, MAX_PAYLOAD]))
def test_decoder_never_raises_on_any_bytes(data, max_payload):
    dec = FrameDecoder(max_payload=max_payload)
    out = dec.feed(data)
    expected = [
        p for p in (_ref_accepts(s, max_payload) for s in data.split(b"\x00")[:-1] if s) if p
    ]
    assert out == expected
    assert all(1 <= len(p) <= max_payload for p in out)


stream_parts = st.lists(st.tuples(st.binary(max_size=40), any_payload), min_size=1, max_size=6)


@settings(max_examples=200)
@given(stream_parts)
def test_noise_between_frames_never_yields_a_wrong_message(parts):
    wire = b""
    expected = []
    noise_frames = 0
    for noise, payload in parts:
        wire += noise + encode_frame(payload)
        found = _ref_noise_frames(noise)
        noise_frames += len(found)
        expected += found + [payload]
    event("noise formed a valid frame" if noise_frames else "noise formed no frame")
    out = FrameDecoder().feed(wire)
    # Every frame sent after the noise is delivered, in order, and nothing else is
    # delivered except noise segments that are themselves well-formed frames.
    assert out == expected


@settings(max_examples=200)
@given(stream_parts)
def test_noise_without_zero_bytes_yields_only_sent_payloads(parts):
    # Zero-free noise becomes a single segment between two frames; reject the rare draws
    # where that segment happens to be a valid frame (the 2**-16 CRC-16 residue).
    for noise, _ in parts:
        assume(not _ref_noise_frames(noise.replace(b"\x00", b"")))
    wire = b"".join(n.replace(b"\x00", b"") + encode_frame(p) for n, p in parts)
    dec = FrameDecoder()
    assert dec.feed(wire) == [p for _, p in parts]
    garbage = sum(1 for n, _ in parts if n.replace(b"\x00", b""))
    assert sum(dec.errors.values()) == garbage


def test_noise_frame_is_delivered_because_it_is_a_frame():
    # The residual risk made concrete: noise that is itself a well-formed frame cannot be
    # told apart from one; it is delivered exactly as it appears on the wire.
    impostor = encode_frame(b"impostor")[1:-1]
    wire = b"\x13\x37" + impostor + encode_frame(b"real")
    assert FrameDecoder().feed(wire) == [b"real"]  # glued to garbage: dropped
    wire = b"\x13\x00" + impostor + encode_frame(b"real")
    assert FrameDecoder().feed(wire) == [b"impostor", b"real"]


def test_noise_swallows_frame_without_leading_delimiter():
    # Why the encoder emits a leading 0x00: without it, zero-free noise merges with
    # the following frame body and that frame is lost.
    body = encode_frame(b"123456789")[1:]
    dec = FrameDecoder()
    assert dec.feed(b"\x05\x41" + body + encode_frame(b"next")) == [b"next"]
    assert dec.errors[ERR_COBS] == 1
    assert FrameDecoder().feed(b"\x05\x41" + b"\x00" + body) == [b"123456789"]


@settings(max_examples=150)
@given(stream_parts, st.data())
def test_chunking_invariance(parts, data):
    wire = b"".join(n + encode_frame(p) for n, p in parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    whole = FrameDecoder()
    expected = whole.feed(wire)
    chunked = FrameDecoder()
    got = []
    prev = 0
    for cut in cuts + [len(wire)]:
        got += chunked.feed(memoryview(wire)[prev:cut])
        prev = cut
    bytewise = FrameDecoder()
    one_by_one = []
    for i in range(len(wire)):
        one_by_one += bytewise.feed(wire[i : i + 1])
    assert got == expected == one_by_one
    assert chunked.errors == whole.errors == bytewise.errors


def _data_positions(body):
    # Offsets of COBS data bytes (not code bytes) in a frame body.
    positions = []
    i = 0
    while i < len(body):
        positions += range(i + 1, i + body[i])
        i += body[i]
    return positions


@settings(max_examples=200)
@given(any_payload, payloads, st.data())
def test_corrupted_data_byte_drops_frame_next_recovered(payload, following, data):
    frame = bytearray(encode_frame(payload))
    positions = _data_positions(frame[1:-1])
    pos = 1 + data.draw(st.sampled_from(positions))
    new = data.draw(st.integers(1, 255).filter(lambda v: v != frame[pos]))
    frame[pos] = new
    # A non-zero data byte changed into another non-zero byte is a single-byte error in
    # the decoded payload+CRC; CRC-16 detects every burst of <= 16 bits, so this is
    # guaranteed, not probabilistic.
    dec = FrameDecoder()
    assert dec.feed(bytes(frame) + encode_frame(following)) == [following]
    assert dec.errors == {ERR_CRC: 1, ERR_COBS: 0, ERR_OVERFLOW: 0, ERR_EMPTY: 0}


@pytest.mark.parametrize("payload", [b"\x11\x22\x00\x33", b"A" * 20, b"\x00" * 5 + b"xyz"])
def test_every_single_byte_substitution_exhaustively(payload):
    # Code bytes and injected 0x00 change the block structure, so for those CRC-16 gives
    # ~2**-16 protection rather than a guarantee; checked exhaustively for these frames.
    frame = encode_frame(payload)
    after = encode_frame(b"after")
    for pos in range(1, len(frame) - 1):
        for value in range(256):
            if value == frame[pos]:
                continue
            bad = bytearray(frame)
            bad[pos] = value
            out = FrameDecoder().feed(bytes(bad) + after)
            assert out == [b"after"], (pos, value, out)


# --- real MicroPython ---------------------------------------------------------------

MPY_CORE = r"""
from protocol.frame import encode_frame, decode_frame, FrameDecoder, FrameError, cobs_encode, crc16
print(hex(crc16(b"123456789")))
print(cobs_encode(b"\x11\x22\x00\x33").hex())
print(cobs_encode(bytes(range(1, 256))) == b"\xff" + bytes(range(1, 255)) + b"\x02\xff")
f = encode_frame(b"123456789")
print(f.hex())
print(decode_frame(f))
try:
    decode_frame(b"\x00\x0c123456789\x29\xb2\x00")
except FrameError as e:
    print("error", e.reason, isinstance(e, ValueError))
d = FrameDecoder(max_payload=64)
wire = b"\x05\x41" + encode_frame(b"one") + b"\x41" * 100 + encode_frame(b"\x00two\x00")
got = []
for i in range(len(wire)):
    got += d.feed(wire[i:i + 1])
print(got, d.errors["cobs"], d.errors["overflow"], d.frames)
"""


def test_frame_core_under_micropython():
    lines = run_wasi(MPY_CORE).stdout.splitlines()
    assert lines == [
        "0x29b1",
        "0311220233",
        "True",
        "000c31323334353637383929b100",
        "b'123456789'",
        "error crc True",
        "[b'one', b'\\x00two\\x00'] 1 1 2",
    ]
