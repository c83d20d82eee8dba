"""The broker's side of the MQTT 3.1.1 packets in edge.link.mqtt_packets: building
CONNACK and SUBACK, parsing CONNECT and SUBSCRIBE, and the constant PINGREQ, PINGRESP and
DISCONNECT packets as functions.

A module never needs these (edge.link.client sends CONNECT/SUBSCRIBE and parses the
answers), so they are left out of board bundles (edge/boardconfig/board_files.py); tests
use them for fake brokers and round trips.  Same error rules as mqtt_packets.
MicroPython-compatible.
"""

from edge.link import mqtt_packets as mp

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731

# mqtt_packets' protocol level (copied: an underscore const() does not exist at run time
# on MicroPython).
_PROTOCOL_LEVEL = const(4)  # 3.1.1


def connack(return_code=0, session_present=False):
    """CONNACK (3.2): what a broker answers to CONNECT."""
    if return_code not in mp.CONNACK_MESSAGES:
        raise ValueError("return_code {!r} out of range 0..5".format(return_code))
    if session_present and return_code:
        raise ValueError("session_present must be False when the connection is refused")
    return bytes((0x20, 2, 1 if session_present else 0, return_code))


def suback(packet_id, return_codes):
    """SUBACK (3.9): granted QoS per filter, or 0x80 for failure."""
    mp._check_packet_id(packet_id)
    for code in return_codes:
        if code not in (0, 1, 2, mp.SUBACK_FAILURE):
            raise ValueError("suback return code {!r} not in (0, 1, 2, 0x80)".format(code))
    return mp._packet(0x90, packet_id.to_bytes(2, "big") + bytes(return_codes))


def pingreq():
    return mp.PINGREQ_PACKET


def pingresp():
    return mp.PINGRESP_PACKET


def disconnect():
    return mp.DISCONNECT_PACKET


def parse_subscribe(body):
    """SUBSCRIBE body -> ``(packet_id, [(filter, qos)])``."""
    packet_id = mp._packet_id(body, 0, "SUBSCRIBE")
    offset = 2
    topics = []
    while offset < len(body):
        topic, offset = mp._read_utf8(body, offset, "SUBSCRIBE filter")
        mp._need(body, offset, 1, "SUBSCRIBE qos")
        qos = body[offset]
        if qos > 2:
            raise mp.MqttProtocolError("SUBSCRIBE qos byte 0x{:02x} is malformed".format(qos))
        topics.append((topic, qos))
        offset += 1
    if not topics:
        raise mp.MqttProtocolError("SUBSCRIBE has no topic filters")
    return packet_id, topics


def parse_connect(body):
    """CONNECT body -> dict of its fields."""
    mp._need(body, 0, 10, "CONNECT header")
    if bytes(body[0:6]) != mp._PROTOCOL_NAME:
        raise mp.MqttProtocolError("CONNECT protocol name is not MQTT: {!r}".format(body[0:6]))
    if body[6] != _PROTOCOL_LEVEL:
        raise mp.MqttProtocolError("CONNECT protocol level {} is not 4".format(body[6]))
    flags = body[7]
    if flags & 1:
        raise mp.MqttProtocolError("CONNECT reserved flag is set")
    will = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if will_qos == 3 or (not will and (will_qos or will_retain)):
        raise mp.MqttProtocolError("CONNECT will flags 0x{:02x} are malformed".format(flags))
    if flags & 0x40 and not flags & 0x80:
        raise mp.MqttProtocolError("CONNECT has a password without a user name")
    out = {
        "clean_session": bool(flags & 0x02),
        "keepalive_s": (body[8] << 8) | body[9],
        "will_topic": None,
        "will_payload": None,
        "will_qos": will_qos,
        "will_retain": will_retain,
        "username": None,
        "password": None,
    }
    out["client_id"], offset = mp._read_utf8(body, 10, "CONNECT client id")
    if will:
        out["will_topic"], offset = mp._read_utf8(body, offset, "CONNECT will topic")
        out["will_payload"], offset = mp._read_binary(body, offset, "CONNECT will payload")
    if flags & 0x80:
        out["username"], offset = mp._read_utf8(body, offset, "CONNECT user name")
    if flags & 0x40:
        out["password"], offset = mp._read_binary(body, offset, "CONNECT password")
    if offset != len(body):
        raise mp.MqttProtocolError("CONNECT has {} trailing bytes".format(len(body) - offset))
    return out
