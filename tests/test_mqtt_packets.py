"""MQTT 3.1.1 packet builders/parsers (edge/link/mqtt_packets.py).

Exact bytes against the examples of the OASIS MQTT 3.1.1 standard and against what
paho-mqtt puts on the wire; round trips and arbitrary chunking through the streaming
reader (hypothesis); malformed input raises MqttProtocolError and nothing else; and the
same builders/parsers under real MicroPython.
"""

import json
import socket

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.link import broker_packets as bp
from edge.link import mqtt_packets as mp
from edge.link.mqtt_packets import MqttProtocolError, PacketReader
from tools.micropython import run_node


def frame(data, max_packet_size=mp.DEFAULT_MAX_PACKET_SIZE):
    """Split a byte string into its packets; asserts nothing is left over."""
    reader = PacketReader(max_packet_size)
    reader.feed(data)
    out = []
    while True:
        pkt = reader.pop()
        if pkt is None:
            break
        out.append(pkt)
    assert reader.buffered() == 0
    return out


def single(data):
    packets = frame(data)
    assert len(packets) == 1
    return packets[0]


# ---------------------------------------------------------------------------- remaining length


# Table 2.4 of the standard: the boundaries of each varint length.
@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2097151, b"\xff\xff\x7f"),
        (2097152, b"\x80\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_matches_spec_table(value, encoded):
    assert mp.encode_remaining_length(value) == encoded
    assert mp.decode_remaining_length(encoded) == (value, len(encoded))
    assert mp.decode_remaining_length(b"\x30" + encoded, 1) == (value, len(encoded))


@pytest.mark.parametrize("bad", [-1, 268435456, 1.5, "3"])
def test_remaining_length_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="remaining length"):
        mp.encode_remaining_length(bad)


def test_remaining_length_incomplete_and_too_long():
    assert mp.decode_remaining_length(b"") is None
    assert mp.decode_remaining_length(b"\x80\x80") is None
    with pytest.raises(MqttProtocolError, match="longer than 4 bytes"):
        mp.decode_remaining_length(b"\x80\x80\x80\x80\x01")


@settings(max_examples=200)
@given(st.integers(0, mp.MAX_REMAINING_LENGTH))
def test_remaining_length_round_trip(n):
    encoded = mp.encode_remaining_length(n)
    assert mp.decode_remaining_length(encoded) == (n, len(encoded))


# ---------------------------------------------------------------------------- exact bytes


def test_connect_variable_header_matches_spec_example():
    # 3.1.2.10, figure 3.6: user name, password, will QoS 1, will flag, clean session,
    # keepalive 10 -> flags 0xCE.
    pkt = mp.connect("c", 10, True, "w", b"x", 1, False, "u", b"p")
    ptype, flags, body = single(pkt)
    assert (ptype, flags) == (mp.CONNECT, 0)
    assert body[:10] == b"\x00\x04MQTT\x04\xce\x00\x0a"
    assert body[10:] == b"\x00\x01c" + b"\x00\x01w" + b"\x00\x01x" + b"\x00\x01u" + b"\x00\x01p"
    assert pkt[:2] == bytes((0x10, len(body)))


def test_minimal_connect_exact_bytes():
    assert mp.connect("ab", keepalive_s=60) == (
        b"\x10\x0e" + b"\x00\x04MQTT\x04\x02\x00\x3c" + b"\x00\x02ab"
    )
    # Retained will with QoS 2, no credentials, persistent session.
    pkt = mp.connect("id", 5, False, "t", b"", 2, True)
    assert pkt[9] == 0x04 | (2 << 3) | 0x20


def test_publish_matches_spec_example_and_flags():
    # 3.3.2.3, figure 3.11: topic "a/b", packet identifier 10.
    pkt = mp.publish("a/b", b"hi", qos=1, packet_id=10)
    assert pkt == b"\x32\x09" + b"\x00\x03a/b\x00\x0a" + b"hi"
    assert mp.publish("a/b", b"", qos=0) == b"\x30\x05\x00\x03a/b"
    assert mp.publish("a/b", b"", qos=0, retain=True)[0] == 0x31
    assert mp.publish("a/b", b"", qos=1, dup=True, packet_id=1)[0] == 0x3A


def test_subscribe_matches_spec_example():
    # 3.8.3.1, figure 3.22: packet id 10, "a/b" QoS 1, "c/d" QoS 2.
    pkt = mp.subscribe(10, [("a/b", 1), ("c/d", 2)])
    assert pkt == b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/d\x02"


def test_fixed_packets_exact_bytes():
    assert bp.pingreq() == b"\xc0\x00"
    assert bp.pingresp() == b"\xd0\x00"
    assert bp.disconnect() == b"\xe0\x00"
    assert mp.puback(0x1234) == b"\x40\x02\x12\x34"
    assert bp.connack(0, True) == b"\x20\x02\x01\x00"
    assert bp.connack(5) == b"\x20\x02\x00\x05"
    # 3.9.3, figure 3.26: success QoS 0, success QoS 2, failure.
    assert bp.suback(10, [0, 2, 0x80]) == b"\x90\x05\x00\x0a\x00\x02\x80"


def test_large_payload_uses_multi_byte_length():
    payload = bytes(range(256)) * 2
    pkt = mp.publish("t", payload)
    assert pkt[:3] == b"\x30" + mp.encode_remaining_length(3 + 512)
    assert mp.parse_publish(0, single(pkt)[2])[1] == payload


class _PahoCapture:
    """A one-connection TCP server that records what paho-mqtt sends."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.reader = PacketReader()
        self.conn = None

    def accept(self):
        self.server.settimeout(5)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(0.05)

    def packets(self, client, count):
        got = []
        for _ in range(200):
            client.loop(timeout=0.01)
            try:
                data = self.conn.recv(4096)
            except TimeoutError:
                data = b""
            self.reader.feed(data)
            while (pkt := self.reader.pop()) is not None:
                got.append(pkt)
            if len(got) >= count:
                return got
        raise AssertionError(f"paho sent {len(got)} packets, expected {count}")

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.server.close()


def _raw(pkt):
    ptype, flags, body = pkt
    return bytes(((ptype << 4) | flags,)) + mp.encode_remaining_length(len(body)) + body


def test_bytes_equal_what_paho_sends():
    capture = _PahoCapture()
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id="skid-m1",
        clean_session=True,
        protocol=paho.MQTTv311,
    )
    try:
        client.will_set("skid/v1/l1/m1/death", b"\xa1\x00\x02", qos=1, retain=False)
        client.username_pw_set("module", "s3cret")
        client.connect("127.0.0.1", capture.port, keepalive=15)
        capture.accept()
        (connect_pkt,) = capture.packets(client, 1)
        ours = mp.connect(
            "skid-m1",
            15,
            True,
            "skid/v1/l1/m1/death",
            b"\xa1\x00\x02",
            1,
            False,
            "module",
            b"s3cret",
        )
        assert _raw(connect_pkt) == ours
        capture.conn.sendall(bp.connack(0))
        client.publish("skid/v1/l1/m1/event", b"\x01\x02\x03", qos=1)
        client.publish("skid/v1/l1/m1/data", b"\x04", qos=0, retain=True)
        client.subscribe([("skid/v1/l1/m1/cmd", 1), ("skid/v1/l1/host/lease", 0)])
        got = capture.packets(client, 3)
        assert [_raw(p) for p in got] == [
            mp.publish("skid/v1/l1/m1/event", b"\x01\x02\x03", qos=1, packet_id=1),
            mp.publish("skid/v1/l1/m1/data", b"\x04", qos=0, retain=True),
            # paho spends message id 2 on the QoS 0 publish (not on the wire), so 3 here.
            mp.subscribe(3, [("skid/v1/l1/m1/cmd", 1), ("skid/v1/l1/host/lease", 0)]),
        ]
    finally:
        client.socket() and client.socket().close()
        capture.close()


# ---------------------------------------------------------------------------- round trips

_topic_text = st.text(
    alphabet=st.characters(blacklist_characters="+#\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
)
_payloads = st.binary(max_size=300)
_pids = st.integers(1, 65535)


@st.composite
def publishes(draw):
    qos = draw(st.sampled_from((0, 1)))
    return (
        draw(_topic_text),
        draw(_payloads),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(_pids) if qos else 0,
    )


@settings(max_examples=150)
@given(publishes())
def test_publish_round_trip(fields):
    topic, payload, qos, retain, dup, pid = fields
    ptype, flags, body = single(mp.publish(topic, payload, qos, retain, dup, pid))
    assert ptype == mp.PUBLISH
    assert mp.parse_publish(flags, body) == (topic, payload, qos, retain, dup, pid)


@settings(max_examples=100)
@given(
    client_id=st.text(min_size=1, max_size=23).filter(lambda s: "\x00" not in s),
    keepalive=st.integers(0, 65535),
    clean=st.booleans(),
    will=st.one_of(st.none(), st.tuples(_topic_text, _payloads, st.integers(0, 2), st.booleans())),
    creds=st.one_of(
        st.none(),
        st.tuples(st.text(max_size=20).filter(lambda s: "\x00" not in s), st.none()),
        st.tuples(st.text(max_size=20).filter(lambda s: "\x00" not in s), st.binary(max_size=20)),
    ),
)
def test_connect_round_trip(client_id, keepalive, clean, will, creds):
    will_topic, will_payload, will_qos, will_retain = will or (None, b"", 0, False)
    username, password = creds or (None, None)
    pkt = mp.connect(
        client_id,
        keepalive,
        clean,
        will_topic,
        will_payload,
        will_qos,
        will_retain,
        username,
        password,
    )
    ptype, flags, body = single(pkt)
    assert (ptype, flags) == (mp.CONNECT, 0)
    fields = bp.parse_connect(body)
    assert fields == {
        "client_id": client_id,
        "keepalive_s": keepalive,
        "clean_session": clean,
        "will_topic": will_topic,
        "will_payload": will_payload if will else None,
        "will_qos": will_qos,
        "will_retain": will_retain,
        "username": username,
        "password": password,
    }


@settings(max_examples=100)
@given(_pids, st.lists(st.tuples(_topic_text, st.integers(0, 2)), min_size=1, max_size=5))
def test_subscribe_and_suback_round_trip(pid, topics):
    ptype, flags, body = single(mp.subscribe(pid, topics))
    assert (ptype, flags) == (mp.SUBSCRIBE, 2)
    assert bp.parse_subscribe(body) == (pid, topics)
    codes = [q if i % 2 else 0x80 for i, (_, q) in enumerate(topics)]
    ptype, _, body = single(bp.suback(pid, codes))
    assert ptype == mp.SUBACK
    assert mp.parse_suback(body) == (pid, codes)


def test_small_packets_round_trip():
    assert mp.parse_connack(single(bp.connack(0, True))[2]) == (True, 0)
    assert mp.parse_connack(single(bp.connack(4))[2]) == (False, 4)
    assert mp.parse_puback(single(mp.puback(65535))[2]) == 65535
    for pkt, ptype in ((bp.pingreq(), mp.PINGREQ), (bp.pingresp(), mp.PINGRESP)):
        got = single(pkt)
        assert got == (ptype, 0, b"")
        mp.parse_empty(ptype, got[2])


@st.composite
def packet_streams(draw):
    packets = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(("publish", "puback", "ping", "suback", "connack")))
        if kind == "publish":
            packets.append(mp.publish(*draw(publishes())))
        elif kind == "puback":
            packets.append(mp.puback(draw(_pids)))
        elif kind == "ping":
            packets.append(bp.pingresp())
        elif kind == "suback":
            packets.append(
                bp.suback(draw(_pids), draw(st.lists(st.sampled_from((0, 1, 0x80)), min_size=1)))
            )
        else:
            packets.append(bp.connack(draw(st.integers(0, 5))))
    return packets


@settings(max_examples=150)
@given(packet_streams(), st.data())
def test_reader_reassembles_any_chunking(packets, data):
    stream = b"".join(packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    reader = PacketReader()
    out = []
    start = 0
    for cut in cuts + [len(stream)]:
        reader.feed(stream[start:cut])
        start = cut
        while (pkt := reader.pop()) is not None:
            out.append(pkt)
    assert [_raw(p) for p in out] == packets
    assert reader.buffered() == 0


def test_reader_byte_by_byte():
    packets = [mp.publish("a/b", b"x" * 200, 1, packet_id=7), bp.pingresp(), mp.puback(7)]
    reader = PacketReader()
    out = []
    for byte in b"".join(packets):
        reader.feed(bytes((byte,)))
        while (pkt := reader.pop()) is not None:
            out.append(_raw(pkt))
    assert out == packets


# ---------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x00\x00", "reserved packet type 0"),
        (b"\xf0\x00", "reserved packet type 15"),
        (b"\x91\x03\x00\x01\x00", "SUBACK fixed-header flags"),
        (b"\x80\x00", "SUBSCRIBE fixed-header flags"),
        (b"\xc1\x00", "PINGREQ fixed-header flags"),
        (b"\x30\xff\xff\xff\xff\x7f", "longer than 4 bytes"),
        (b"\x30\xff\x7f", "exceeds max_packet_size"),
    ],
)
def test_reader_rejects_bad_fixed_headers(data, match):
    reader = PacketReader()
    reader.feed(data)
    with pytest.raises(MqttProtocolError, match=match):
        reader.pop()


def test_reader_rejects_oversize_before_buffering_the_body():
    reader = PacketReader(max_packet_size=64)
    reader.feed(b"\x30\x7f")  # only the header of a 129-byte packet
    with pytest.raises(MqttProtocolError, match="129 bytes exceeds max_packet_size 64"):
        reader.pop()
    assert frame(mp.publish("t", b"x" * 59), 64)  # exactly 64 bytes still fits


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mp.parse_publish(6, b"\x00\x01a"), "QoS 3"),
        (lambda: mp.parse_publish(4, b"\x00\x01a\x00\x01"), "QoS 2"),
        (lambda: mp.parse_publish(8, b"\x00\x01a"), "must not set DUP"),
        (lambda: mp.parse_publish(2, b"\x00\x01a\x00\x00"), "packet id must not be 0"),
        (lambda: mp.parse_publish(2, b"\x00\x01a\x00"), "PUBLISH packet id truncated"),
        (lambda: mp.parse_publish(0, b"\x00\x05ab"), "PUBLISH topic truncated"),
        (lambda: mp.parse_publish(0, b"\x00\x02\xc3\x28"), "not valid UTF-8"),
        (lambda: mp.parse_publish(0, b"\x00\x03a/#"), "wildcard"),
        (lambda: mp.parse_publish(0, b"\x00\x00xyz"), "topic is empty"),
        (lambda: mp.parse_publish(0, b"\x00\x02a\x00"), "U\\+0000"),
        (lambda: mp.parse_connack(b"\x00"), "CONNACK body must be 2 bytes"),
        (lambda: mp.parse_connack(b"\x02\x00"), "reserved flag"),
        (lambda: mp.parse_connack(b"\x00\x06"), "return code 6"),
        (lambda: mp.parse_puback(b"\x00\x01\x00"), "PUBACK body must be 2 bytes"),
        (lambda: mp.parse_puback(b"\x00\x00"), "packet id must not be 0"),
        (lambda: mp.parse_suback(b"\x00\x01"), "no return codes"),
        (lambda: mp.parse_suback(b"\x00\x01\x03"), "return code 0x03"),
        (lambda: mp.parse_empty(mp.PINGRESP, b"\x00"), "PINGRESP body must be 0 bytes"),
        (lambda: bp.parse_connect(b"\x00\x04MQTX\x04\x02\x00\x00\x00\x00"), "protocol name"),
        (lambda: bp.parse_connect(b"\x00\x04MQTT\x03\x02\x00\x00\x00\x00"), "protocol level 3"),
        (
            lambda: bp.parse_connect(b"\x00\x04MQTT\x04\x40\x00\x00\x00\x00\x00\x00"),
            "password without",
        ),
        (lambda: bp.parse_connect(b"\x00\x04MQTT\x04\x02\x00\x00\x00\x00\x99"), "trailing"),
        (lambda: bp.parse_subscribe(b"\x00\x01\x00\x01a\x03"), "qos byte 0x03"),
    ],
)
def test_parsers_reject_malformed_bodies(call, match):
    with pytest.raises(MqttProtocolError, match=match):
        call()


_PARSERS = {
    mp.CONNECT: lambda flags, body: bp.parse_connect(body),
    mp.CONNACK: lambda flags, body: mp.parse_connack(body),
    mp.PUBLISH: mp.parse_publish,
    mp.PUBACK: lambda flags, body: mp.parse_puback(body),
    mp.SUBSCRIBE: lambda flags, body: bp.parse_subscribe(body),
    mp.SUBACK: lambda flags, body: mp.parse_suback(body),
    mp.PINGREQ: lambda flags, body: mp.parse_empty(mp.PINGREQ, body),
    mp.PINGRESP: lambda flags, body: mp.parse_empty(mp.PINGRESP, body),
    mp.DISCONNECT: lambda flags, body: mp.parse_empty(mp.DISCONNECT, body),
}


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(4, 300))
def test_garbage_raises_only_protocol_errors(data, max_size):
    reader = PacketReader(max_size)
    reader.feed(data)
    try:
        while (pkt := reader.pop()) is not None:
            parse = _PARSERS.get(pkt[0])
            if parse is not None:
                parse(pkt[1], pkt[2])
    except MqttProtocolError:
        pass


@settings(max_examples=200)
@given(st.sampled_from(sorted(_PARSERS)), st.integers(0, 15), st.binary(max_size=80))
def test_garbage_bodies_raise_only_protocol_errors(ptype, flags, body):
    try:
        _PARSERS[ptype](flags, body)
    except MqttProtocolError:
        pass


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mp.publish("a/+", b""), "wildcards"),
        (lambda: mp.publish("", b""), "topic must not be empty"),
        (lambda: mp.publish("t", b"", qos=2, packet_id=1), "qos 2 not supported"),
        (lambda: mp.publish("t", b"", qos=1), "packet_id 0 out of range"),
        (lambda: mp.publish("t", b"", qos=0, dup=True), "dup must be False"),
        (lambda: mp.publish("t", 5), "payload must be str or bytes"),
        (lambda: mp.connect("c", keepalive_s=70000), "keepalive_s 70000"),
        (lambda: mp.connect("", clean_session=False), "empty client_id"),
        (lambda: mp.connect("c", password=b"x"), "password requires a username"),
        (lambda: mp.connect("c", will_topic="t", will_qos=3), "will_qos 3"),
        (lambda: mp.connect("x" * 70000), "client_id is 70000 bytes"),
        (lambda: mp.subscribe(1, []), "at least one"),
        (lambda: bp.suback(1, [3]), "suback return code 3"),
        (lambda: mp.puback(0), "packet_id 0"),
    ],
)
def test_builders_name_the_bad_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------- MicroPython

MICROPYTHON_PROGRAM = r"""
from edge.link import broker_packets as bp
from edge.link import mqtt_packets as mp
import json

out = {}
pkt = mp.connect("m1", 10, True, "skid/v1/l1/m1/death", b"\x01\x02", 1, False, "u", b"p")
r = mp.PacketReader()
for i in range(len(pkt)):
    r.feed(pkt[i:i + 1])
    got = r.pop()
    if got is not None:
        break
c = bp.parse_connect(got[2])
out["connect_hex"] = pkt.hex()
out["connect"] = [c["client_id"], c["keepalive_s"], c["will_topic"], c["will_qos"], c["username"]]

stream = (mp.publish("skid/v1/l1/m1/event", b"\x00" * 300, 1, False, True, 513)
          + mp.publish("t/\u00e9", b"x", 0, True) + mp.puback(9) + bp.pingresp()
          + bp.suback(3, [1, 0x80]) + bp.connack(0, True))
r = mp.PacketReader()
packets = []
for start in range(0, len(stream), 7):
    r.feed(stream[start:start + 7])
    while True:
        p = r.pop()
        if p is None:
            break
        packets.append(p)
out["stream_hex"] = stream.hex()
pub = mp.parse_publish(packets[0][1], packets[0][2])
out["pub1"] = [pub[0], len(pub[1]), pub[2], pub[3], pub[4], pub[5]]
pub = mp.parse_publish(packets[1][1], packets[1][2])
out["pub2"] = [pub[0], pub[1].decode(), pub[2], pub[3]]
out["puback"] = mp.parse_puback(packets[2][2])
out["suback"] = list(mp.parse_suback(packets[4][2]))
out["connack"] = list(mp.parse_connack(packets[5][2]))
out["count"] = len(packets)

errors = []
for bad in (b"\xf0\x00", b"\x30\xff\xff\xff\xff\x7f", b"\x32\x05\x00\x02\xc3\x28\x00"):
    r = mp.PacketReader()
    r.feed(bad)
    try:
        p = r.pop()
        if p is not None:
            mp.parse_publish(p[1], p[2])
        errors.append("no error")
    except mp.MqttProtocolError as e:
        errors.append(isinstance(e, ValueError))
out["errors"] = errors

# The link's tick-facing side (no sockets in this build: the client's network half runs
# on CPython only, in tests/test_link.py).
from edge.link.client import MqttLink
link = MqttLink("127.0.0.1", 1883, "m1", "skid/v1/l1/m1/death", b"d", event_queue_size=3)
out["tele_down"] = link.publish_telemetry("skid/v1/l1/m1/data", b"t")
for i in range(3):
    link.publish_event("skid/v1/l1/m1/event", bytes((i,)), critical=(i == 0))
link.publish_event("skid/v1/l1/m1/event", b"\x03")
out["bad_topic"] = link.publish_event("a/#", b"x")
out["queued"] = [e[1][-1] for e in link._events.items]
notice = lambda n: b"dropped %d" % n
out["dropped"] = [link.dropped,
                  link.publish_dropped_notice("skid/v1/l1/m1/event", notice),
                  link.dropped,
                  link.publish_dropped_notice("skid/v1/l1/m1/event", notice)]
items = link._events.items
out["queued_after"] = [items[0][1][-1], items[1][1][-1], bytes(items[2][1][-9:]).decode(), len(items)]
out["stats"] = [link.stats["telemetry_dropped"], link.stats["publish_errors"]]
print(json.dumps(out))
"""


def test_packets_and_link_queue_under_micropython():
    got = json.loads(run_node(MICROPYTHON_PROGRAM, packages=("protocol", "edge")))
    assert (
        got["connect_hex"]
        == mp.connect("m1", 10, True, "skid/v1/l1/m1/death", b"\x01\x02", 1, False, "u", b"p").hex()
    )
    assert got["connect"] == ["m1", 10, "skid/v1/l1/m1/death", 1, "u"]
    assert (
        got["stream_hex"]
        == (
            mp.publish("skid/v1/l1/m1/event", b"\x00" * 300, 1, False, True, 513)
            + mp.publish("t/\u00e9", b"x", 0, True)
            + mp.puback(9)
            + bp.pingresp()
            + bp.suback(3, [1, 0x80])
            + bp.connack(0, True)
        ).hex()
    )
    assert got["count"] == 6
    assert got["pub1"] == ["skid/v1/l1/m1/event", 300, 1, False, True, 513]
    assert got["pub2"] == ["t/\u00e9", "x", 0, True]
    assert got["puback"] == 9
    assert got["suback"] == [3, [1, 0x80]]
    assert got["connack"] == [True, 0]
    assert got["errors"] == [True, True, True]
    assert got["tele_down"] is False
    assert got["bad_topic"] is False
    # The critical first event survives; the oldest non-critical one (1) was dropped.
    assert got["queued"] == [0, 2, 3]
    # The notice needs a slot: it evicts event 2 and counts it (1 + 1 dropped).
    assert got["dropped"] == [1, True, 2, False]
    assert got["queued_after"] == [0, 3, "dropped 2", 3]
    assert got["stats"] == [1, 1]
