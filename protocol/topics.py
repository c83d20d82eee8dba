"""MQTT topic namespace (see protocol/SPEC.md, "Topics").

    skid/v1/<line>/<module>/<kind>   kind in MODULE_KINDS (birth, death, data, event, cmd, ack)
    skid/v1/<line>/host/<kind>       kind in HOST_KINDS (lease, state)

Ids (line, module, host) follow protocol.wire.ID_PATTERN (1-32 characters of
lowercase letters, digits, '_' and '-', starting with a letter or digit), so they can
never contain MQTT wildcards ('+', '#'), a level separator ('/') or a leading
'$' (broker-internal topics).  "host" is reserved: it cannot be a module id.

MicroPython-compatible; topics are str, and parse_topic also accepts the bytes topics
that umqtt hands to its callback.
"""

from protocol.constants import (
    KIND_ACK,
    KIND_BIRTH,
    KIND_COMMAND,
    KIND_DEATH,
    KIND_EVENT,
    KIND_LEASE,
    KIND_STATE,
    KIND_TELEMETRY,
)
from protocol.wire import ID_RULE, id_problem  # the one id rule

ROOT = "skid"
VERSION = "v1"
PREFIX = ROOT + "/" + VERSION + "/"
HOST_SEGMENT = "host"

# Topic kinds (last topic level).
TOPIC_BIRTH = "birth"
TOPIC_DEATH = "death"
TOPIC_DATA = "data"  # telemetry
TOPIC_EVENT = "event"
TOPIC_CMD = "cmd"
TOPIC_ACK = "ack"
TOPIC_LEASE = "lease"
TOPIC_STATE = "state"

MODULE_KINDS = (TOPIC_BIRTH, TOPIC_DEATH, TOPIC_DATA, TOPIC_EVENT, TOPIC_CMD, TOPIC_ACK)
HOST_KINDS = (TOPIC_LEASE, TOPIC_STATE)

# Which message kind (protocol.constants, key 0 of the CBOR map) travels on each topic,
# so a receiver can reject a message published on the wrong topic.
MESSAGE_KIND = {
    TOPIC_BIRTH: KIND_BIRTH,
    TOPIC_DEATH: KIND_DEATH,
    TOPIC_DATA: KIND_TELEMETRY,
    TOPIC_EVENT: KIND_EVENT,
    TOPIC_CMD: KIND_COMMAND,
    TOPIC_ACK: KIND_ACK,
    TOPIC_LEASE: KIND_LEASE,
    TOPIC_STATE: KIND_STATE,
}

# Recommended (qos, retain) per topic kind.  Death is published by the broker as the
# module's MQTT last will (and by the module itself on a clean shutdown).  Only the host
# state is retained, so a late subscriber learns it at once; a retained birth or lease
# would be replayed stale after the publisher is gone.
PUBLISH_FLAGS = {
    TOPIC_BIRTH: (1, False),
    TOPIC_DEATH: (1, False),
    TOPIC_DATA: (0, False),
    TOPIC_EVENT: (1, False),
    TOPIC_CMD: (1, False),
    TOPIC_ACK: (1, False),
    TOPIC_LEASE: (0, False),
    TOPIC_STATE: (1, True),
}

ID_KINDS = ("line", "module", "host")


class TopicError(ValueError):
    """An id, topic kind or topic string is not part of the namespace."""


def validate_id(kind_of_id, value):
    """Return ``value`` if it is a valid ``kind_of_id`` ("line", "module" or "host") id.

    Raises TopicError naming the id kind, the value, what is wrong and the allowed pattern.
    """
    if kind_of_id not in ID_KINDS:
        raise TopicError("unknown id kind {!r}; expected one of {}".format(kind_of_id, ID_KINDS))
    problem = id_problem(value)
    if problem is None and kind_of_id == "module" and value == HOST_SEGMENT:
        problem = "is reserved for host topics"
    if problem is not None:
        raise TopicError("{} id {!r} {}; allowed: {}".format(kind_of_id, value, problem, ID_RULE))
    return value


def _check_kind(kind, allowed, where):
    if kind not in allowed:
        raise TopicError("{} topic kind {!r} is not one of {}".format(where, kind, allowed))


def module_topic(line, module, kind):
    """``skid/v1/<line>/<module>/<kind>`` for kind in MODULE_KINDS."""
    validate_id("line", line)
    validate_id("module", module)
    _check_kind(kind, MODULE_KINDS, "module")
    return PREFIX + line + "/" + module + "/" + kind


def host_topic(line, kind):
    """``skid/v1/<line>/host/<kind>`` for kind in HOST_KINDS (lease, state)."""
    validate_id("line", line)
    _check_kind(kind, HOST_KINDS, "host")
    return PREFIX + line + "/" + HOST_SEGMENT + "/" + kind


def module_filter(line, kind):
    """Subscription filter for one kind from every module of a line: ``skid/v1/<line>/+/<kind>``.

    The host segment never matches by accident: host kinds and module kinds are disjoint.
    """
    validate_id("line", line)
    _check_kind(kind, MODULE_KINDS, "module")
    return PREFIX + line + "/+/" + kind


def line_filter(line):
    """Subscription filter for every topic of a line: ``skid/v1/<line>/#``."""
    validate_id("line", line)
    return PREFIX + line + "/#"


def parse_topic(topic):
    """Split a concrete topic into ``(line, module, kind)``; module is None for host topics.

    Raises TopicError for anything outside the namespace (including wildcard filters).
    """
    if isinstance(topic, (bytes, bytearray)):
        try:
            topic = bytes(topic).decode("utf-8")
        except UnicodeError:
            raise TopicError("topic {!r} is not valid UTF-8".format(topic)) from None
    if not isinstance(topic, str):
        raise TopicError("topic must be a str, got " + type(topic).__name__)
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != ROOT or parts[1] != VERSION:
        raise TopicError(
            "topic {!r} is not of the form {}<line>/<module|host>/<kind>".format(topic, PREFIX)
        )
    line = parts[2]
    module = parts[3]
    kind = parts[4]
    try:
        validate_id("line", line)
        if module == HOST_SEGMENT:
            _check_kind(kind, HOST_KINDS, "host")
            return line, None, kind
        validate_id("module", module)
        _check_kind(kind, MODULE_KINDS, "module")
    except TopicError as exc:
        raise TopicError("topic {!r}: {}".format(topic, exc)) from None
    return line, module, kind
