"""MQTT 3.1.1 packets as pure functions, and a streaming packet reader.

Only what an edge module needs: CONNECT/CONNACK, PUBLISH (QoS 0 and 1), PUBACK,
SUBSCRIBE/SUBACK, PINGREQ/PINGRESP and DISCONNECT (QoS 2 is deliberately absent: the
link never asks for it, so a QoS 2 PUBLISH from the broker is a protocol error).  The
broker's side (building CONNACK/SUBACK, parsing CONNECT/SUBSCRIBE) is in
edge.link.broker_packets, which boards do not carry.

Builders return ``bytes`` and raise ``ValueError`` naming the bad argument.  Parsers take
the body of a packet (what follows the fixed header) and raise :class:`MqttProtocolError`
for anything malformed, never another exception type, because their input comes from the
network.  :class:`PacketReader` frames a byte stream into ``(packet_type, flags, body)``
tuples with a bounded packet size.

Section numbers refer to the OASIS MQTT 3.1.1 standard.  MicroPython-compatible.
"""

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

PACKET_NAMES = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
}

# Fixed packets (sections 3.12-3.14).
PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

# CONNACK return codes (3.2.2.3).
CONNACK_ACCEPTED = const(0)
CONNACK_MESSAGES = {
    0: "connection accepted",
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
SUBACK_FAILURE = const(0x80)

MAX_REMAINING_LENGTH = const(268435455)  # four varint bytes (2.2.3)
DEFAULT_MAX_PACKET_SIZE = const(16384)
_MAX_STR = const(65535)
_PROTOCOL_NAME = b"\x00\x04MQTT"
_PROTOCOL_LEVEL = const(4)  # 3.1.1

# Fixed-header flags a packet type must carry (2.2.2); PUBLISH flags are variable (None).
_REQUIRED_FLAGS = (None, 0, 0, None, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, None)


class MqttProtocolError(ValueError):
    """Bytes received from the network are not a well-formed MQTT 3.1.1 packet."""


# ---------------------------------------------------------------------------- encoding


def encode_remaining_length(n):
    """The variable-length "remaining length" of a fixed header (2.2.3)."""
    if not isinstance(n, int) or n < 0 or n > MAX_REMAINING_LENGTH:
        raise ValueError("remaining length {!r} out of range 0..{}".format(n, MAX_REMAINING_LENGTH))
    out = bytearray()
    while True:
        digit = n & 0x7F
        n >>= 7
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def decode_remaining_length(buf, offset=0):
    """Decode a remaining length starting at ``buf[offset]``.

    Returns ``(value, n_bytes)``, or None when ``buf`` ends before the varint does.
    Raises MqttProtocolError for a varint longer than four bytes.
    """
    value = 0
    shift = 0
    end = len(buf)
    for i in range(4):
        if offset + i >= end:
            return None
        digit = buf[offset + i]
        value |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return value, i + 1
        shift += 7
    raise MqttProtocolError("remaining length is longer than 4 bytes")


def _as_bytes(value, field):
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueError("{} must be str or bytes, got {}".format(field, type(value).__name__))


def _binary(value, field, text=False):
    # Length-prefixed binary data (1.5.6), or with ``text`` a UTF-8 string (1.5.3).
    data = _as_bytes(value, field)
    if len(data) > _MAX_STR:
        raise ValueError("{} is {} bytes long (max {})".format(field, len(data), _MAX_STR))
    if text and b"\x00" in data:
        raise ValueError("{} must not contain U+0000".format(field))
    return len(data).to_bytes(2, "big") + data


def _check_packet_id(packet_id):
    if not isinstance(packet_id, int) or packet_id < 1 or packet_id > 65535:
        raise ValueError("packet_id {!r} out of range 1..65535".format(packet_id))


def _check_qos(qos, field, allowed):
    if qos not in allowed:
        raise ValueError("{} {!r} not supported; allowed: {}".format(field, qos, allowed))


def _packet(first_byte, body):
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


def connect(
    client_id,
    keepalive_s=60,
    clean_session=True,
    will_topic=None,
    will_payload=b"",
    will_qos=0,
    will_retain=False,
    username=None,
    password=None,
):
    """CONNECT (3.1).  A will is sent when ``will_topic`` is given."""
    if not isinstance(keepalive_s, int) or keepalive_s < 0 or keepalive_s > 65535:
        raise ValueError("keepalive_s {!r} out of range 0..65535".format(keepalive_s))
    cid = _binary(client_id, "client_id", True)
    if len(cid) == 2 and not clean_session:
        raise ValueError("an empty client_id requires clean_session=True (3.1.3.1)")
    flags = 0x02 if clean_session else 0
    parts = [_PROTOCOL_NAME, b"", b"", cid]
    if will_topic is not None:
        _check_qos(will_qos, "will_qos", (0, 1, 2))
        will = _binary(will_topic, "will_topic", True)
        if len(will) == 2:
            raise ValueError("will_topic must not be empty")
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        parts.append(will)
        parts.append(_binary(will_payload, "will_payload"))
    if username is not None:
        flags |= 0x80
        parts.append(_binary(username, "username", True))
    if password is not None:
        if username is None:
            raise ValueError("password requires a username in MQTT 3.1.1 (3.1.2.9)")
        flags |= 0x40
        parts.append(_binary(password, "password"))
    parts[1] = bytes((_PROTOCOL_LEVEL, flags))
    parts[2] = keepalive_s.to_bytes(2, "big")
    return _packet(0x10, b"".join(parts))


def publish(topic, payload, qos=0, retain=False, dup=False, packet_id=0):
    """PUBLISH (3.3) with QoS 0 or 1; ``packet_id`` (1..65535) only with QoS 1."""
    _check_qos(qos, "qos", (0, 1))
    name = _binary(topic, "topic", True)
    if len(name) == 2:
        raise ValueError("topic must not be empty")
    if b"+" in name[2:] or b"#" in name[2:]:
        raise ValueError("topic {!r} must not contain wildcards".format(topic))
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    if qos:
        _check_packet_id(packet_id)
        first |= 0x08 if dup else 0
        head = name + packet_id.to_bytes(2, "big")
    else:
        if dup:
            raise ValueError("dup must be False for QoS 0 (3.3.1.1)")
        if packet_id:
            raise ValueError("packet_id must be 0 for QoS 0, got {!r}".format(packet_id))
        head = name
    body = _as_bytes(payload, "payload")
    size = len(head) + len(body)
    if size > MAX_REMAINING_LENGTH:
        raise ValueError("publish packet of {} bytes is too large".format(size))
    return bytes((first,)) + encode_remaining_length(size) + head + body


def puback(packet_id):
    """PUBACK (3.4)."""
    _check_packet_id(packet_id)
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def subscribe(packet_id, topics):
    """SUBSCRIBE (3.8); ``topics`` is a non-empty sequence of ``(filter, qos)``."""
    _check_packet_id(packet_id)
    if not topics:
        raise ValueError("subscribe needs at least one (filter, qos) pair")
    parts = [packet_id.to_bytes(2, "big")]
    for topic, qos in topics:
        _check_qos(qos, "subscription qos", (0, 1, 2))
        name = _binary(topic, "topic filter", True)
        if len(name) == 2:
            raise ValueError("topic filter must not be empty")
        parts.append(name)
        parts.append(bytes((qos,)))
    return _packet(0x82, b"".join(parts))


# ---------------------------------------------------------------------------- decoding


def _need(body, offset, n, what):
    if offset + n > len(body):
        raise MqttProtocolError(
            "{} truncated: needs {} bytes at offset {}, body has {}".format(
                what, n, offset, len(body)
            )
        )


def _read_u16(body, offset, what):
    _need(body, offset, 2, what)
    return (body[offset] << 8) | body[offset + 1]


def _read_binary(body, offset, what):
    n = _read_u16(body, offset, what + " length")
    _need(body, offset + 2, n, what)
    return bytes(body[offset + 2 : offset + 2 + n]), offset + 2 + n


def _read_utf8(body, offset, what):
    data, offset = _read_binary(body, offset, what)
    if b"\x00" in data:
        raise MqttProtocolError("{} contains U+0000".format(what))
    try:
        return data.decode("utf-8"), offset
    except UnicodeError:
        raise MqttProtocolError("{} is not valid UTF-8: {!r}".format(what, data)) from None


def _packet_id(body, offset, what):
    pid = _read_u16(body, offset, what + " packet id")
    if pid == 0:
        raise MqttProtocolError("{} packet id must not be 0".format(what))
    return pid


def _exact_length(body, n, what):
    if len(body) != n:
        raise MqttProtocolError("{} body must be {} bytes, got {}".format(what, n, len(body)))


def parse_connack(body):
    """CONNACK body -> ``(session_present, return_code)``."""
    _exact_length(body, 2, "CONNACK")
    if body[0] & 0xFE:
        raise MqttProtocolError("CONNACK reserved flag bits set: 0x{:02x}".format(body[0]))
    if body[1] not in CONNACK_MESSAGES:
        raise MqttProtocolError("CONNACK return code {} out of range 0..5".format(body[1]))
    return bool(body[0] & 1), body[1]


def parse_publish(flags, body):
    """PUBLISH flags and body -> ``(topic, payload, qos, retain, dup, packet_id)``.

    ``topic`` is a str; ``packet_id`` is 0 for QoS 0.  QoS 2 is rejected: the link only
    ever subscribes with QoS 0 or 1, so a broker never sends it.
    """
    qos = (flags >> 1) & 3
    dup = bool(flags & 8)
    if qos == 3:
        raise MqttProtocolError("PUBLISH with QoS 3 is malformed")
    if qos == 2:
        raise MqttProtocolError("PUBLISH with QoS 2 is not supported")
    if qos == 0 and dup:
        raise MqttProtocolError("PUBLISH with QoS 0 must not set DUP")
    topic, offset = _read_utf8(body, 0, "PUBLISH topic")
    if not topic:
        raise MqttProtocolError("PUBLISH topic is empty")
    if "+" in topic or "#" in topic:
        raise MqttProtocolError("PUBLISH topic {!r} contains a wildcard".format(topic))
    packet_id = 0
    if qos:
        packet_id = _packet_id(body, offset, "PUBLISH")
        offset += 2
    return topic, bytes(body[offset:]), qos, bool(flags & 1), dup, packet_id


def parse_puback(body):
    """PUBACK body -> packet id."""
    _exact_length(body, 2, "PUBACK")
    return _packet_id(body, 0, "PUBACK")


def parse_suback(body):
    """SUBACK body -> ``(packet_id, [return codes])``."""
    packet_id = _packet_id(body, 0, "SUBACK")
    codes = list(body[2:])
    if not codes:
        raise MqttProtocolError("SUBACK has no return codes")
    for code in codes:
        if code not in (0, 1, 2, SUBACK_FAILURE):
            raise MqttProtocolError("SUBACK return code 0x{:02x} is not allowed".format(code))
    return packet_id, codes


def parse_empty(ptype, body):
    """PINGREQ, PINGRESP and DISCONNECT carry no body."""
    _exact_length(body, 0, PACKET_NAMES.get(ptype, "packet"))


class PacketReader:
    """Frames a TCP byte stream into complete packets.

    ``feed(data)`` appends received bytes; ``pop()`` returns the next complete packet as
    ``(packet_type, flags, body)`` or None if more bytes are needed.  The fixed header is
    checked as soon as it is complete, so an oversized or malformed packet is rejected
    before its body is buffered: the buffer never holds more than one partial packet
    (at most ``max_packet_size`` bytes) plus the last chunk fed.  After an
    MqttProtocolError the stream position is lost: drop the connection.
    """

    def __init__(self, max_packet_size=DEFAULT_MAX_PACKET_SIZE):
        if max_packet_size < 2:
            raise ValueError("max_packet_size {!r} must be >= 2".format(max_packet_size))
        self.max_packet_size = max_packet_size
        self._buf = bytearray()

    def feed(self, data):
        self._buf.extend(data)

    def buffered(self):
        return len(self._buf)

    def clear(self):
        self._buf = bytearray()

    def pop(self):
        buf = self._buf
        if len(buf) < 2:
            return None
        first = buf[0]
        ptype = first >> 4
        flags = first & 0x0F
        if ptype == 0 or ptype == 15:
            raise MqttProtocolError("reserved packet type {}".format(ptype))
        required = _REQUIRED_FLAGS[ptype]
        if required is not None and flags != required:
            raise MqttProtocolError(
                "{} fixed-header flags must be 0x{:x}, got 0x{:x}".format(
                    PACKET_NAMES[ptype], required, flags
                )
            )
        decoded = decode_remaining_length(buf, 1)
        if decoded is None:
            return None
        length, n = decoded
        total = 1 + n + length
        if total > self.max_packet_size:
            raise MqttProtocolError(
                "{} of {} bytes exceeds max_packet_size {}".format(
                    PACKET_NAMES[ptype], total, self.max_packet_size
                )
            )
        if len(buf) < total:
            return None
        body = bytes(buf[1 + n : total])
        buf[:total] = b""
        return ptype, flags, body
