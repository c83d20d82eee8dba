"""protocol.auth: HMAC-SHA256, command signing and verification, host time and expiry."""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cbor
from protocol.auth import (
    LEASE_BACKWARDS,
    LEASE_BAD_TAG,
    LEASE_NO_TAG,
    LEASE_REPLAYED,
    LEASE_SENDERS_FULL,
    AuthError,
    CommandVerifier,
    HostTimeEstimate,
    compute_tag,
    equal_ct,
    hmac_sha256,
    lease_tag,
    sign_command,
    sign_lease,
)
from protocol.constants import (
    RESULT_MALFORMED,
    RESULT_OK,
    RESULT_REPLAYED,
    RESULT_UNAUTHENTICATED,
)
from protocol.messages import (
    Auth,
    MessageError,
    build_command,
    build_lease,
    parse_command,
    parse_lease,
)

KEY = bytes(range(100, 132))  # 32 bytes
NONCE = bytes.fromhex("a1a2a3a4a5a6a7a8")
MODULE = "reactor-2"
EXPIRY = 1767225605000


def command(cid=1, value=80.0):
    return build_command(cid, "set_setpoint", {"channel": 1, "value": value}, EXPIRY)


def signed(cid=1, counter=1, sender="host-a", key=KEY, module=MODULE, nonce=NONCE, value=80.0):
    return sign_command(command(cid, value), key, module, nonce, sender, counter)


# --- HMAC -------------------------------------------------------------------------------

RFC4231 = [
    # (key, data, full or truncated HMAC-SHA-256)
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    ),
    (
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data."
        b" The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
]


@pytest.mark.parametrize("key, data, expected", RFC4231)
def test_hmac_rfc4231_vectors(key, data, expected):
    mac = hmac_sha256(key, data)
    assert mac.hex()[: len(expected)] == expected
    assert mac == hmac.new(key, data, hashlib.sha256).digest()


@settings(max_examples=200)
@given(st.binary(max_size=150), st.binary(max_size=300))
def test_hmac_matches_cpython(key, data):
    assert hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


def test_equal_ct():
    assert equal_ct(b"abc", b"abc")
    assert not equal_ct(b"abc", b"abd")
    assert not equal_ct(b"abc", b"xbc")
    assert not equal_ct(b"abc", b"ab")
    assert equal_ct(b"", b"")


def test_tag_is_hmac_of_the_documented_array():
    unsigned = command()
    tag = compute_tag(KEY, MODULE, NONCE, "host-a", 7, unsigned)
    data = cbor2.dumps([MODULE, NONCE, "host-a", 7, unsigned], canonical=True)
    assert tag == hmac.new(KEY, data, hashlib.sha256).digest()[:16]
    cmd = parse_command(signed(counter=7))
    assert cmd.auth == Auth("host-a", 7, tag)
    assert cmd.unsigned_bytes() == unsigned


# --- Verification -----------------------------------------------------------------------


def verifier(**kw):
    args = dict(key=KEY, module_id=MODULE, boot_nonce=NONCE)
    args.update(kw)
    return CommandVerifier(**args)


def test_accepts_the_received_bytes_with_or_without_their_parse():
    v = verifier()
    assert v.verify(signed(counter=1)) == RESULT_OK
    data = signed(counter=2)
    assert v.verify(data, parse_command(data)) == RESULT_OK
    assert v.verify(bytearray(signed(counter=3))) == RESULT_OK
    assert v.verify(memoryview(signed(counter=4))) == RESULT_OK
    assert v.last_counter("host-a") == 4
    # A parsed Command alone is not enough: the tag covers the bytes, not a re-encoding.
    with pytest.raises(TypeError, match="received bytes"):
        v.verify(parse_command(signed(counter=5)))
    assert v.last_counter("host-a") == 4


def test_rejects_unsigned_and_tampered():
    v = verifier()
    assert v.verify(command()) == RESULT_UNAUTHENTICATED
    good_bytes = signed(counter=5)
    good = parse_command(good_bytes)
    # same auth block on a different value
    forged = build_command(1, "set_setpoint", {"channel": 1, "value": 99.0}, EXPIRY, good.auth)
    assert v.verify(forged) == RESULT_UNAUTHENTICATED
    # flipped tag bit
    bad_tag = bytes([good.auth.tag[0] ^ 1]) + good.auth.tag[1:]
    tampered = build_command(
        1, "set_setpoint", {"channel": 1, "value": 80.0}, EXPIRY, Auth("host-a", 5, bad_tag)
    )
    assert v.verify(tampered) == RESULT_UNAUTHENTICATED
    # counter changed after signing
    bumped = build_command(
        1, "set_setpoint", {"channel": 1, "value": 80.0}, EXPIRY, Auth("host-a", 6, good.auth.tag)
    )
    assert v.verify(bumped) == RESULT_UNAUTHENTICATED
    # wrong key, wrong module, another sender name
    assert v.verify(signed(key=bytes(32))) == RESULT_UNAUTHENTICATED
    assert v.verify(signed(module="reactor-3")) == RESULT_UNAUTHENTICATED
    assert v.last_counter("host-a") is None  # nothing was recorded
    assert v.verify(good_bytes) == RESULT_OK


def test_malformed_bytes():
    assert verifier().verify(b"\xa1\x00") == RESULT_MALFORMED
    assert verifier().verify(b"not cbor at all \xff") == RESULT_MALFORMED


def test_replay_and_counter_order():
    v = verifier()
    first = signed(counter=10)
    assert v.verify(first) == RESULT_OK
    assert v.verify(first) == RESULT_REPLAYED
    assert v.verify(signed(counter=9)) == RESULT_REPLAYED
    assert v.verify(signed(counter=10, cid=2)) == RESULT_REPLAYED
    assert v.verify(signed(counter=11)) == RESULT_OK
    assert v.verify(signed(counter=1000)) == RESULT_OK
    # counters are per sender
    assert v.verify(signed(counter=1, sender="host-b")) == RESULT_OK
    assert v.last_counter("host-a") == 1000 and v.last_counter("host-b") == 1


def test_rejected_command_does_not_advance_the_counter():
    v = verifier()
    assert v.verify(signed(counter=50, key=bytes(16))) == RESULT_UNAUTHENTICATED
    assert v.verify(signed(counter=5)) == RESULT_OK
    assert v.verify(signed(counter=4)) == RESULT_REPLAYED
    assert v.last_counter("host-a") == 5


def test_new_boot_nonce_invalidates_old_tags_and_restarts_counters():
    v = verifier()
    old = signed(counter=100)
    assert v.verify(old) == RESULT_OK
    new_nonce = bytes.fromhex("b1b2b3b4b5b6b7b8b9")
    v.new_boot(new_nonce)
    assert v.verify(old) == RESULT_UNAUTHENTICATED
    assert v.verify(signed(counter=1, nonce=new_nonce)) == RESULT_OK
    fresh = verifier(boot_nonce=new_nonce)  # what a rebooted module builds
    assert fresh.verify(old) == RESULT_UNAUTHENTICATED
    assert fresh.verify(signed(counter=1, nonce=new_nonce)) == RESULT_OK


def test_sender_table_is_bounded():
    v = verifier(max_senders=3)
    for i in range(3):
        assert v.verify(signed(sender=f"host-{i}")) == RESULT_OK
    assert v.verify(signed(sender="host-9")) == RESULT_UNAUTHENTICATED
    assert v.verify(signed(sender="host-1", counter=2)) == RESULT_OK  # known senders still work
    assert v.verify(signed(sender="host-1", counter=2)) == RESULT_REPLAYED
    assert v.last_counter("host-9") is None


def test_key_never_shown():
    key = b"\x13\x37" * 12
    v = CommandVerifier(key, MODULE, NONCE)
    for text in (repr(v), str(v)):
        assert "key=<hidden>" in text
        assert key.hex() not in text and repr(key) not in text and str(list(key)) not in text
    assert not hasattr(v, "__dict__") and not hasattr(v, "key")
    with pytest.raises(AuthError) as info:
        CommandVerifier(key[:15], MODULE, NONCE)
    assert key[:15].hex() not in str(info.value) and repr(key[:15]) not in str(info.value)
    assert "length 16..32" in str(info.value)


@pytest.mark.parametrize(
    "kw, exc",
    [
        (dict(key=b"k" * 15), AuthError),
        (dict(key=b"k" * 33), AuthError),
        (dict(key="k" * 16), AuthError),
        (dict(boot_nonce=b"n" * 7), AuthError),
        (dict(boot_nonce=b"n" * 17), AuthError),
        (dict(module_id="Reactor 2"), MessageError),
        (dict(max_senders=0), AuthError),
    ],
)
def test_verifier_rejects_bad_setup(kw, exc):
    with pytest.raises(exc):
        verifier(**kw)
    assert issubclass(exc, ValueError)


def test_sign_rejects_bad_inputs():
    with pytest.raises(MessageError, match="command.auth.counter"):
        sign_command(command(), KEY, MODULE, NONCE, "host-a", -1)
    with pytest.raises(MessageError, match="command.auth.sender"):
        sign_command(command(), KEY, MODULE, NONCE, "Host A", 1)
    with pytest.raises(AuthError):
        sign_command(command(), b"short", MODULE, NONCE, "host-a", 1)
    with pytest.raises(MessageError):
        sign_command(b"\xff", KEY, MODULE, NONCE, "host-a", 1)


def test_resigning_replaces_the_auth_block():
    once = signed(counter=1)
    twice = sign_command(once, KEY, MODULE, NONCE, "host-a", 2)
    assert parse_command(twice).auth.counter == 2
    assert verifier().verify(twice) == RESULT_OK


@settings(max_examples=60)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(-1e6, 1e6),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=16, max_size=32),
)
def test_sign_verify_property(cid, value, counter, key):
    v = CommandVerifier(key, MODULE, NONCE)
    data = sign_command(command(cid, value), key, MODULE, NONCE, "host-a", counter)
    assert v.verify(data) == RESULT_OK
    assert v.verify(data) == RESULT_REPLAYED


# --- Which bytes the tag covers (protocol/SPEC.md section 7) ----------------------------

SIGNED_OPS = [
    ("set_setpoint", {"channel": 1, "value": 80.1}),
    ("state", {"command": "start"}),
    ("reset_trip", None),
    ("ack_alarm", {"target": "over_temperature"}),
    ("rebirth", None),
    # long enough for a 2-byte byte-string head in the signing input
    ("configure", {"config": {f"key_{i:02d}": "x" * 60 for i in range(8)}}),
]


def entries(data):
    """The encoded entries of a canonical (sorted) command map, in order."""
    m = cbor.decode(data)
    out = [cbor.encode(k) + cbor.encode(m[k]) for k in sorted(m)]
    assert data[0] < 0xB8 and b"".join(out) == data[1:]  # one-byte head, canonical
    return out


@pytest.mark.parametrize("op, args", SIGNED_OPS)
def test_signed_command_is_the_unsigned_one_with_the_auth_entry_appended(op, args):
    """What sign_command sends is exactly the shape the verifier inverts: the unsigned
    bytes with the map head counting one entry more and key 6 appended (no wire change
    from signing a canonical encoding)."""
    unsigned = build_command(7, op, args, EXPIRY)
    data = sign_command(unsigned, KEY, MODULE, NONCE, "host-a", 2**40)
    tag = parse_command(data).auth.tag
    entry = b"\x06" + cbor2.dumps(["host-a", 2**40, tag], canonical=True)
    assert data == bytes([unsigned[0] + 1]) + unsigned[1:] + entry
    documented = cbor2.dumps([MODULE, NONCE, "host-a", 2**40, unsigned], canonical=True)
    assert tag == hmac.new(KEY, documented, hashlib.sha256).digest()[:16]
    assert verifier().verify(data) == RESULT_OK


def test_a_double_held_rounded_by_the_board_still_verifies():
    """A float32 board parses 80.1 to the nearest single: the tag still verifies, because
    it is checked over the received bytes, not a re-encoding of the parsed command."""
    data = signed(value=80.1)
    cmd = parse_command(data)
    cmd.args["value"] = struct.unpack(">f", struct.pack(">f", 80.1))[0]
    assert build_command(1, "set_setpoint", cmd.args, EXPIRY) != command(value=80.1)
    assert verifier().verify(data, cmd) == RESULT_OK


def test_a_tampered_byte_anywhere_is_refused():
    data = signed(counter=3, value=80.1)
    parsed = parse_command(data)
    v = verifier()
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            t = bytearray(data)
            t[i] ^= bit
            assert v.verify(bytes(t)) in (RESULT_MALFORMED, RESULT_UNAUTHENTICATED), (i, bit)
            # Even handed the parse of the genuine bytes, the verifier checks what it got.
            assert v.verify(bytes(t), parsed) == RESULT_UNAUTHENTICATED, (i, bit)
    assert v.last_counter("host-a") is None
    assert v.verify(data) == RESULT_OK


def test_auth_not_last_is_refused():
    data = signed(counter=3)
    parts = entries(data)
    auth = parts.pop()
    assert auth[0] == 0x06
    v = verifier()
    for at in range(len(parts)):
        moved = bytes([data[0]]) + b"".join(parts[:at] + [auth] + parts[at:])
        assert parse_command(moved).auth == parse_command(data).auth  # same fields, same tag
        assert v.verify(moved) == RESULT_UNAUTHENTICATED, at
    assert v.verify(data) == RESULT_OK


def test_a_non_canonical_map_head_is_refused():
    data = signed(counter=3)
    n = data[0] & 0x1F
    for head in (bytes([0xB8, n]), bytes([0xB9, 0, n]), b"\xbf"):
        other = head + data[1:] + (b"\xff" if head == b"\xbf" else b"")
        assert parse_command(other).auth == parse_command(data).auth
        assert verifier().verify(other) == RESULT_UNAUTHENTICATED, head.hex()


def test_trailing_bytes_are_refused():
    data = signed(counter=3)
    assert verifier().verify(data + b"\x00") == RESULT_MALFORMED  # the parse refuses them
    # and the verifier on its own: the auth entry is not the last thing received
    assert verifier().verify(data + b"\x00", parse_command(data)) == RESULT_UNAUTHENTICATED


def test_an_equivalent_re_encoding_is_refused():
    """The tag covers bytes: a command re-encoded (longer heads, a double for a half) means
    the same but is not what was signed, so it is refused (protocol/SPEC.md section 7)."""
    data = signed(counter=3)
    parts = entries(data)
    assert parts[2] == b"\x02\x01"  # command_id 1
    assert parts[4] == b"\x04\xa2\x00\x01\x01\xf9\x55\x00"  # channel 1, value 80.0 (half)
    assert parts[6][:4] == b"\x06\x83\x66h"  # [sender, counter 3, tag]
    variants = [
        parts[:2] + [b"\x02\x1a\x00\x00\x00\x01"] + parts[3:],
        parts[:4] + [b"\x04\xa2\x00\x01\x01\xfb" + struct.pack(">d", 80.0)] + parts[5:],
        parts[:6] + [parts[6][:9] + b"\x18\x03" + parts[6][10:]],
    ]
    assert parts[6][9] == 0x03
    for parts_ in variants:
        other = bytes([data[0]]) + b"".join(parts_)
        assert parse_command(other) == parse_command(data)  # the same command
        assert verifier().verify(other) == RESULT_UNAUTHENTICATED, other.hex()
    assert verifier().verify(data) == RESULT_OK


def test_non_canonical_bytes_signed_as_sent_verify():
    """The other side of the rule: the module does not judge the encoding of what was
    signed, only that the bytes are the signed ones.  A signer that signs a (valid but
    non-preferred) encoding and sends exactly it is accepted."""
    unsigned = command()
    parts = entries(unsigned)
    unsigned = bytes([unsigned[0]]) + b"".join(
        parts[:4] + [b"\x04\xa2\x00\x01\x01\xfb" + struct.pack(">d", 80.0)] + parts[5:]
    )
    tag = compute_tag(KEY, MODULE, NONCE, "host-a", 3, unsigned)
    entry = b"\x06" + cbor.encode(["host-a", 3, tag])
    data = bytes([unsigned[0] + 1]) + unsigned[1:] + entry
    assert verifier().verify(data) == RESULT_OK


def test_spec_names_the_auth_entry_of_the_signed_example():
    """protocol/SPEC.md section 7 splits the signed COMMAND example by hand: keep it true."""
    key = bytes(range(16))
    unsigned = build_command(42, "set_setpoint", {"channel": 2, "value": 12.5}, 1767225605000)
    nonce = bytes.fromhex("0102030405060708")
    data = sign_command(unsigned, key, "pump-1", nonce, "host-a", 1767225600000)
    entry = data[len(unsigned) :]
    assert data == b"\xa7" + unsigned[1:] + entry and unsigned[0] == 0xA6 and len(entry) == 35
    spec = " ".join((Path(__file__).parents[1] / "protocol" / "SPEC.md").read_text().split())
    prose = "06 83 66686f73742d61 1b0000019b76daa800 50fdcd0fd4b2b5cf8c01ed99e9678e1318"
    assert "".join(prose.split()) == entry.hex()
    assert f"the last 35 bytes are the auth entry `{prose}`" in spec
    assert CommandVerifier(key, "pump-1", nonce).verify(data) == RESULT_OK


# --- Host time and expiry ---------------------------------------------------------------

HOST_T = 1767225600000


def test_unknown_host_time_counts_as_expired():
    h = HostTimeEstimate()
    assert h.host_now(0) is None
    assert h.is_expired(2**64 - 1, 0)


def test_host_time_follows_leases_and_judges_expiry():
    h = HostTimeEstimate()
    h.update(HOST_T, 1000)
    assert h.host_now(1000) == HOST_T
    assert h.host_now(1250) == HOST_T + 250
    assert not h.is_expired(HOST_T + 250, 1250)  # expiry is the last valid instant
    assert h.is_expired(HOST_T + 249, 1250)
    h.update(HOST_T + 5000, 5900)  # next lease re-anchors (a slow local clock caught up)
    assert h.host_now(5900) == HOST_T + 5000
    assert h.host_now(6000) == HOST_T + 5100


def test_host_time_never_steps_back_but_does_not_accumulate_drift():
    """A lease below the current estimate (local clock 100 ms fast) holds the estimate
    until that lease's host time passes it, then follows the lease: no step back, and the
    100 ms are not carried into the next interval."""
    h = HostTimeEstimate()
    h.update(HOST_T, 1000)
    assert h.update(HOST_T + 5000, 6100) is False  # estimate was HOST_T + 5100
    assert h.host_now(6100) == HOST_T + 5100  # held, not back to + 5000
    assert h.host_now(6200) == HOST_T + 5100  # still held (the lease says + 5100 now)
    assert h.host_now(6300) == HOST_T + 5200  # follows the lease again
    # A host clock stepped an hour back moves nothing back either.
    assert h.update(HOST_T - 3_600_000, 6300) is False
    assert h.host_now(6300) == HOST_T + 5200
    assert h.is_expired(HOST_T + 5199, 6300)  # what was expired stays expired


def test_host_time_across_tick_wrap():
    h = HostTimeEstimate()
    h.update(HOST_T, (1 << 30) - 100)
    assert h.host_now(50) == HOST_T + 150


def test_stale_or_future_lease_makes_time_unknown():
    h = HostTimeEstimate(max_age_ms=10_000)
    h.update(HOST_T, 0)
    assert h.host_now(10_000) == HOST_T + 10_000
    assert h.host_now(10_001) is None
    assert h.is_expired(HOST_T + 60_000, 10_001)
    assert h.host_now((1 << 30) - 5) is None  # "before" the lease: clock confusion
    with pytest.raises(ValueError):
        HostTimeEstimate(max_age_ms=1 << 29)


def test_module_side_flow():
    """Parse, authenticate, then check expiry against the lease-derived host time."""
    v = verifier()
    h = HostTimeEstimate()
    data = signed(counter=HOST_T)
    cmd = parse_command(data)
    assert v.verify(data, cmd) == RESULT_OK
    assert h.is_expired(cmd.expiry_ms, 0)  # no lease yet
    h.update(EXPIRY - 3000, 0)
    assert not h.is_expired(cmd.expiry_ms, 2000)
    assert h.is_expired(cmd.expiry_ms, 3001)


# --- Leases -------------------------------------------------------------------------------


def lease(seq=HOST_T, host_t=HOST_T, duration=3000, sender="host-a", signers=None):
    if signers is None:
        signers = [(MODULE, KEY, NONCE)]
    return parse_lease(sign_lease(sender, host_t, seq, duration, signers))


def test_lease_tag_is_hmac_of_the_documented_array():
    data = cbor2.dumps([MODULE, NONCE, "host-a", 7, HOST_T, 3000], canonical=True)
    expected = hmac.new(KEY, data, hashlib.sha256).digest()[:16]
    assert lease_tag(KEY, MODULE, NONCE, "host-a", 7, HOST_T, 3000) == expected
    assert lease(seq=7).tags == {MODULE: expected}


def test_lease_verifier_accepts_own_tag_only():
    v = verifier()
    assert v.verify_lease(lease(seq=1)) is None
    unsigned = parse_lease(build_lease("host-a", HOST_T, 2, 3000))
    assert v.verify_lease(unsigned) == LEASE_NO_TAG
    other = lease(seq=3, signers=[("pump-2", KEY, NONCE)])  # a tag, but not for us
    assert v.verify_lease(other) == LEASE_NO_TAG
    wrong_key = lease(seq=4, signers=[(MODULE, bytes(32), NONCE)])
    assert v.verify_lease(wrong_key) == LEASE_BAD_TAG
    old_boot = lease(seq=5, signers=[(MODULE, KEY, b"\x09" * 8)])
    assert v.verify_lease(old_boot) == LEASE_BAD_TAG


def test_lease_tag_covers_every_field():
    v = verifier()
    good = lease(seq=10, host_t=HOST_T + 10, duration=3000)
    for field, value in (
        ("host_id", "mallory"),
        ("seq", 11),
        ("host_time_ms", HOST_T + 86_400_000),
        ("duration_ms", 3_600_000),
    ):
        forged = lease(seq=10, host_t=HOST_T + 10, duration=3000)
        setattr(forged, field, value)
        assert v.verify_lease(forged) == LEASE_BAD_TAG, field
    assert v.verify_lease(good) is None


def test_lease_replayed_or_backwards_is_refused_and_changes_nothing():
    v = verifier()
    assert v.verify_lease(lease(seq=100, host_t=HOST_T)) is None
    assert v.verify_lease(lease(seq=100, host_t=HOST_T)) == LEASE_REPLAYED
    assert v.verify_lease(lease(seq=99, host_t=HOST_T + 5)) == LEASE_REPLAYED
    assert v.verify_lease(lease(seq=101, host_t=HOST_T - 1)) == LEASE_BACKWARDS
    # the refused ones did not advance the sender: 101 at the same host time is fine
    assert v.verify_lease(lease(seq=101, host_t=HOST_T)) is None
    # another sender has its own seq and host time
    assert v.verify_lease(lease(seq=1, host_t=HOST_T - 60_000, sender="estop")) is None
    # a new boot forgets them (its nonce makes old tags worthless anyway)
    v.new_boot(b"\x0a" * 8)
    assert v.verify_lease(lease(seq=1, signers=[(MODULE, KEY, b"\x0a" * 8)])) is None


def test_lease_sender_table_is_bounded():
    v = verifier(max_senders=2)
    assert v.verify_lease(lease(seq=1, sender="h1")) is None
    assert v.verify_lease(lease(seq=1, sender="h2")) is None
    assert v.verify_lease(lease(seq=1, sender="h3")) == LEASE_SENDERS_FULL
    assert v.verify_lease(lease(seq=2, sender="h1")) is None


def test_one_lease_authenticates_several_modules():
    signers = [(f"pump-{i}", bytes([i]) * 16, bytes([i]) * 8) for i in range(1, 4)]
    data = sign_lease("host-a", HOST_T, HOST_T, 3000, signers)
    for module_id, key, nonce in signers:
        v = CommandVerifier(key, module_id, nonce)
        assert v.verify_lease(parse_lease(data)) is None, module_id
    # a command tag and a lease tag never stand in for each other (5- vs 6-item input)
    assert lease_tag(KEY, MODULE, NONCE, "h", 1, 2, 3) != compute_tag(
        KEY, MODULE, NONCE, "h", 1, b"x"
    )


def test_sign_lease_checks_its_arguments():
    with pytest.raises(MessageError, match="lease.seq"):
        sign_lease("host-a", HOST_T, -1, 3000, [])
    with pytest.raises(AuthError, match="boot_nonce"):
        sign_lease("host-a", HOST_T, 1, 3000, [(MODULE, KEY, b"short")])
    with pytest.raises(AuthError, match="auth.key"):
        sign_lease("host-a", HOST_T, 1, 3000, [(MODULE, b"k", NONCE)])
    too_many = [(f"m{i}", KEY, NONCE) for i in range(33)]
    with pytest.raises(MessageError, match="lease.tags"):
        sign_lease("host-a", HOST_T, 1, 3000, too_many)
    assert parse_lease(sign_lease("host-a", HOST_T, 1, 3000, [])).tags is None
