"""Build and parse every flowskid message kind (see protocol/SPEC.md).

A message is a CBOR map with small integer keys: key 0 is the kind, key 1 the protocol
version, the rest are kind specific.  ``build_<kind>(...)`` validates its arguments and
returns the encoded bytes; ``parse_<kind>(data)`` decodes, validates and returns a small
``__slots__`` object; ``parse(data)`` dispatches on the kind.  Every problem, including a
frame that is not CBOR at all, raises ``MessageError`` (a ``ValueError``) naming the field,
the value and what is allowed.

Enumerations travel as small integers (codes in protocol.constants); builders accept the
name or the code, parsers return the name (ACK results stay integer RESULT_* codes).

The parsers only the host needs (everything but COMMAND and LEASE, and ``parse``) live
in protocol/host_messages.py, kept off boards; this module hands them on by name.

Telemetry is the hot path: ``TelemetryCodec(channels)`` precomputes the channel scaling
once and reuses its output list and map for every ``build``.

MicroPython-compatible.
"""

from protocol import cbor
from protocol.constants import (
    EVENT_DROPPED,
    EVENT_STATE_CHANGE,
    EVENT_TRIP,
    EVENT_TYPE_NAMES,
    KIND_ACK,
    KIND_BIRTH,
    KIND_COMMAND,
    KIND_DEATH,
    KIND_EVENT,
    KIND_LEASE,
    KIND_STATE,
    KIND_TELEMETRY,
    MODULE_KIND_NAMES,
    OP_NAMES,
    OP_STATE,
    PROTOCOL_VERSION,
    QUALITY_BAD,
    RESET_CAUSE_NAMES,
    RESULT_NAMES,
    ROLE_NAMES,
    SERVICE_COMMANDS,
    SEVERITY_NAMES,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731

# Type-checker only (pyright treats TYPE_CHECKING as true; nothing is imported at run time).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


# --- Wire keys (numbers are the wire format: never renumber) ----------------------------

K_KIND = const(0)
K_VERSION = const(1)

# birth
K_MODULE_ID = const(2)
K_MODULE_KIND = const(3)
K_FIRMWARE = const(4)
K_CONFIG_HASH = const(5)
K_RESET_CAUSE = const(6)
K_BIRTH_BDSEQ = const(7)
K_BOOT_NONCE = const(8)
K_CHANNELS = const(9)
K_STATES = const(10)
K_STATE = const(11)
# channel entry (a map inside birth key 9; its alias is its position)
KC_NAME = const(0)
KC_UNIT = const(1)
KC_ROLE = const(2)
KC_MIN = const(3)
KC_MAX = const(4)
KC_RESOLUTION = const(5)
# death
K_DEATH_BDSEQ = const(2)
# telemetry
K_SEQ = const(2)
K_TIME = const(3)
K_VALUES = const(4)
K_QUALITY = const(5)
# event
K_EVENT_NUMBER = const(2)
K_EVENT_TIME = const(3)
K_EVENT_TYPE = const(4)
K_SEVERITY = const(5)
K_SOURCE = const(6)
K_CAUSE = const(7)
K_DETAIL = const(8)
K_COUNT = const(9)
K_NEW_STATE = const(10)
# command
K_COMMAND_ID = const(2)
K_OP = const(3)
K_ARGS = const(4)
K_EXPIRY = const(5)
K_AUTH = const(6)
# command arguments (keys of the map at command key 4)
KA_CHANNEL = const(0)
KA_VALUE = const(1)
KA_COMMAND = const(2)
KA_TARGET = const(3)
KA_CONFIG = const(4)
# ack
K_ACK_ID = const(2)
K_RESULT = const(3)
K_REASON = const(4)
# lease
K_HOST_ID = const(2)
K_HOST_TIME = const(3)
K_LEASE_SEQ = const(4)
K_DURATION = const(5)
K_LEASE_TAGS = const(6)
# host state
K_ONLINE = const(2)
K_STATE_TIME = const(3)

# --- Limits -----------------------------------------------------------------------------

U32_MAX = const(4294967295)
U64_MAX = const(18446744073709551615)
ID_MAX_LEN = const(32)  # module, host and sender ids: same rule as MQTT topic ids
NAME_MAX_LEN = const(32)  # channel, state, interlock, cause and config key names
UNIT_MAX_LEN = const(16)
TEXT_MAX_LEN = const(128)  # event detail, ACK reason
CONFIG_TEXT_MAX_LEN = const(64)
MAX_CHANNELS = const(64)
MAX_STATES = const(32)
MAX_CONFIG_ENTRIES = const(32)
CONFIG_HASH_MIN = const(4)
CONFIG_HASH_MAX = const(32)
BOOT_NONCE_MIN = const(8)
BOOT_NONCE_MAX = const(16)
AUTH_TAG_LEN = const(16)
LEASE_DURATION_MAX_MS = const(3600000)
# Keyed modules one LEASE can authenticate (one 16-byte tag each).  A tag entry is at most
# 1 + 32 (id) + 1 + 16 (tag) = 50 bytes, so a lease is at most 64 + 32 * 50 = 1664 bytes,
# well inside MAX_MESSAGE_BYTES and small enough for a board to decode once a second.
LEASE_MAX_TAGS = const(32)
# A scaled telemetry integer must fit in a signed 32-bit word.
RAW_LIMIT = const(2147483647)
# Largest accepted frame; also bounds what a malicious peer can make a board allocate.
MAX_MESSAGE_BYTES = const(8192)
# Deepest nesting of any kind (command -> args -> config map is three levels).
_MAX_DEPTH = const(4)

_ID_FIRST = "abcdefghijklmnopqrstuvwxyz0123456789"
_SNAKE_FIRST = _ID_FIRST[:26]
_SNAKE_REST = _ID_FIRST + "_"
_ID_REST = _SNAKE_REST + "-"
_ID_RULE = "1-32 chars of [a-z0-9_-], starting with [a-z0-9]"
_SNAKE_RULE = "snake_case 1-32 chars: [a-z][a-z0-9_]*"

# Operations a birth may list as allowed in a state: every op but the generic "state"
# (which the service commands stand for) plus the service commands themselves.
ALLOWED_OPERATIONS = OP_NAMES[:OP_STATE] + OP_NAMES[OP_STATE + 1 :] + SERVICE_COMMANDS

_KIND_NAMES = (
    None,
    "birth",
    "death",
    "telemetry",
    "event",
    "command",
    "ack",
    "lease",
    "state",
)


class MessageError(ValueError):
    """A message (or a builder argument) violates the protocol.

    ``field`` is the dotted name of the offending field (``"telemetry.seq"``); for a frame
    that is not valid CBOR it is ``"message"`` and ``offset`` is the failing byte.
    """

    def __init__(self, message, field=None, offset=None):
        super().__init__(message)
        if field is None:
            field = message.split(":", 1)[0]
        self.field = field
        self.offset = offset


# --- Validation (shared by builders and parsers) ----------------------------------------

# Field types: what ``_check`` accepts, and the ``_SPEC`` tables of the message records.
_INT = const(0)  # an int (never a bool) in lo..hi
_TEXT = const(1)  # a str of lo..hi characters
_BYTES = const(2)  # bytes (a bytearray is taken as bytes) of length lo..hi
_ID = const(3)  # a module, host or sender id (_ID_RULE)
_NAME = const(4)  # a snake_case name (_SNAKE_RULE)
_BOOL = const(5)
_NUMBER = const(6)  # a finite int or float
_LIST = const(7)  # a list or tuple of lo..hi items
_MAP = const(8)  # a dict of lo..hi entries
_ENUM = const(9)  # lo is the names tuple: builders take a name or a code, parsers a code
_OTHER = const(10)  # checked by the message kind's own code

# What each field type allows, for error messages (formatted with lo, hi).
_ALLOWED = (
    "{}..{}",
    "text of {}..{} chars",
    "bytes of length {}..{}",
    _ID_RULE,
    _SNAKE_RULE,
    "true/false",
    "finite numbers",
    "a list of {}..{} items",
    "a map of {}..{} entries",
)


def _fail(field, value, allowed) -> "NoReturn":
    raise MessageError("{}: {!r} not in {}".format(field, value, allowed), field)


def _finite_number(v):
    # bool is an int subclass on both CPython and MicroPython; it is never a number here.
    # inf - inf and nan - nan are nan, and nan compares unequal to everything.
    t = type(v)
    return (t is int or t is float) and v - v == 0


def _chars_ok(v, first, rest):
    # An id or a snake_case name: 1-32 (ID_MAX_LEN == NAME_MAX_LEN) characters.
    if type(v) is not str or not 0 < len(v) <= ID_MAX_LEN or v[0] not in first:
        return False
    for c in v:
        if c not in rest:
            return False
    return True


def _check(field, v, kind, lo=0, hi=0) -> "Any":
    """``v`` if it is a valid ``kind`` field (bytes for a bytearray, the code for an enum
    name), else MessageError naming ``field``, ``v`` and what is allowed."""
    if kind == _ENUM:
        return _enum(field, v, lo)
    if kind == _BYTES and isinstance(v, bytearray):
        return _check(field, bytes(v), kind, lo, hi)
    t = type(v)
    if kind == _INT:
        ok = t is int and lo <= v <= hi
    elif kind == _TEXT:
        ok = t is str and lo <= len(v) <= hi
    elif kind == _BYTES:
        ok = t is bytes and lo <= len(v) <= hi
    elif kind == _ID:
        ok = _chars_ok(v, _ID_FIRST, _ID_REST)
    elif kind == _NAME:
        ok = _chars_ok(v, _SNAKE_FIRST, _SNAKE_REST)
    elif kind == _BOOL:
        ok = t is bool
    elif kind == _NUMBER:
        ok = _finite_number(v)
    elif kind == _LIST:
        ok = t is list or t is tuple
    else:
        ok = t is dict
    if not ok:
        _fail(field, v, _ALLOWED[kind].format(lo, hi))
    if kind >= _LIST and not lo <= len(v) <= hi:
        raise MessageError("{}: length {} not in {}..{}".format(field, len(v), lo, hi), field)
    return v


def _ident(field, v):
    return _check(field, v, _ID)


def _uint(field, v, hi):
    return _check(field, v, _INT, 0, hi)


def _enum(field, v, names):
    """Name or code -> code (builders)."""
    if type(v) is int:
        if 0 <= v < len(names):
            return v
    elif type(v) is str and v in names:
        return names.index(v)
    _fail(field, v, "{} (or code 0..{})".format("/".join(names), len(names) - 1))


def _enum_code(field, v, names):
    """Wire code -> name (parsers)."""
    if type(v) is not int or not 0 <= v < len(names):
        _fail(field, v, "0..{} ({})".format(len(names) - 1, "/".join(names)))
    return names[v]


def _check_keys(name, m, first, end, optional):
    """Keys of ``m`` are ints below ``end`` (strict: unknown keys are a newer protocol);
    those from ``first`` on are required unless ``optional``."""
    for k in m:
        if type(k) is not int or not 0 <= k < end:
            raise MessageError("{}: unexpected key {!r}".format(name, k), name)
    for k in range(first, end):
        if k not in m and k not in optional:
            raise MessageError("{}: missing required key {}".format(name, k), name)


def _round_half_away(x):
    # Same result on CPython and MicroPython (their round() differ for halves), and the
    # usual metrology convention.  Half cases are rare: most decimals are inexact floats.
    if x >= 0:
        return int(x + 0.5)
    return -int(0.5 - x)


# --- Encoding / decoding choke points ---------------------------------------------------


def _encode(msg):
    """Every builder goes through here (tests hook it to validate against the CDDL)."""
    return cbor.encode(msg)


def _decode(data, expected_kind):
    """bytes -> validated top-level map whose kind is ``expected_kind`` (None: any)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError("message: expected bytes, got {}".format(type(data).__name__), "message")
    try:
        m = cbor.decode(data, _MAX_DEPTH, MAX_MESSAGE_BYTES)
    except cbor.DecodeError as exc:
        raise MessageError(
            "message: malformed CBOR at byte {}: {}".format(exc.offset, exc.reason),
            "message",
            exc.offset,
        ) from exc
    if type(m) is not dict:
        raise MessageError(
            "message: expected a CBOR map, got {}".format(type(m).__name__), "message"
        )
    kind = m.get(K_KIND)
    if type(kind) is not int or kind < 1 or kind >= len(_KIND_NAMES):
        _fail("message.kind", kind, "1..8")
    if expected_kind is not None and kind != expected_kind:
        _fail("message.kind", kind, "{} ({})".format(expected_kind, _KIND_NAMES[expected_kind]))
    version = m.get(K_VERSION)
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise MessageError(
            "{}.version: protocol version {!r} not supported (this side speaks {})".format(
                _KIND_NAMES[kind], version, PROTOCOL_VERSION
            ),
            "{}.version".format(_KIND_NAMES[kind]),
        )
    return m


def _build(cls, values):
    """The message map of kind ``cls.KIND`` from ``values`` (in ``cls._FIELDS`` order),
    each checked as ``cls._SPEC`` says; the key of field i is i + 2.  None leaves an
    optional key out; _OTHER values go in as given (their builder checks them)."""
    kind = cls.KIND
    msg = {K_KIND: kind, K_VERSION: PROTOCOL_VERSION}
    spec = cls._SPEC
    for i in range(len(spec)):
        v = values[i]
        if v is None and i + 2 in cls._OPTIONAL:
            continue
        if spec[i][0] != _OTHER:
            v = _check(_KIND_NAMES[kind] + "." + cls._FIELDS[i], v, *spec[i])
        msg[i + 2] = v
    return msg


def _map_values(cls, m):
    """``cls._FIELDS`` values of a decoded message map: keys checked, values checked as
    ``cls._SPEC`` says (enums come back as names); None for an absent optional key,
    _OTHER values as they are (their parser checks them)."""
    name = _KIND_NAMES[cls.KIND]
    spec = cls._SPEC
    _check_keys(name, m, 2, len(spec) + 2, cls._OPTIONAL)
    values = []
    for i in range(len(spec)):
        v = m.get(i + 2)
        kind = spec[i][0]
        if kind == _ENUM:
            v = _enum_code(name + "." + cls._FIELDS[i], v, spec[i][1])
        elif kind != _OTHER and i + 2 in m:
            v = _check(name + "." + cls._FIELDS[i], v, *spec[i])
        values.append(v)
    return values


# --- Plain result objects ---------------------------------------------------------------
# A message record's ``_SPEC`` gives, per field, (field type, lo, hi) for ``_check``.


class _Record:
    __slots__ = ()
    _FIELDS = ()
    _OPTIONAL = ()  # wire keys that may be left out

    def __eq__(self, other):
        if type(other) is not type(self):
            return False
        for f in self._FIELDS:
            if getattr(self, f) != getattr(other, f):
                return False
        return True

    def __repr__(self):
        parts = []
        for f in self._FIELDS:
            parts.append("{}={!r}".format(f, getattr(self, f)))
        return "{}({})".format(type(self).__name__, ", ".join(parts))


class Channel(_Record):
    """One channel of a module.  ``alias`` is its position in the birth's channel list.

    ``resolution`` (e.g. 0.01) makes telemetry carry ``round(value / resolution)`` as an
    integer; None sends the value as a float32.
    """

    _FIELDS = ("alias", "name", "unit", "role", "lo", "hi", "resolution")
    __slots__ = _FIELDS

    def __init__(self, name, unit, role, lo, hi, resolution=None, alias=None):
        self.name = name
        self.unit = unit
        self.role = role
        self.lo = lo
        self.hi = hi
        self.resolution = resolution
        self.alias = alias


class Birth(_Record):
    KIND = KIND_BIRTH
    _FIELDS = (
        "module_id",
        "module_kind",
        "firmware",
        "config_hash",
        "reset_cause",
        "bdseq",
        "boot_nonce",
        "channels",
        "states",
        "state",
    )
    _SPEC = (
        (_ID,),
        (_ENUM, MODULE_KIND_NAMES),
        (_TEXT, 1, NAME_MAX_LEN),
        (_BYTES, CONFIG_HASH_MIN, CONFIG_HASH_MAX),
        (_ENUM, RESET_CAUSE_NAMES),
        (_INT, 0, 255),
        (_BYTES, BOOT_NONCE_MIN, BOOT_NONCE_MAX),
        (_OTHER,),
        (_OTHER,),
        (_OTHER,),
    )
    __slots__ = _FIELDS

    def __init__(
        self,
        module_id,
        module_kind,
        firmware,
        config_hash,
        reset_cause,
        bdseq,
        boot_nonce,
        channels,
        states,
        state,
    ):
        self.module_id = module_id
        self.module_kind = module_kind
        self.firmware = firmware
        self.config_hash = config_hash
        self.reset_cause = reset_cause
        self.bdseq = bdseq
        self.boot_nonce = boot_nonce
        self.channels = channels
        self.states = states
        self.state = state


class Death(_Record):
    KIND = KIND_DEATH
    _FIELDS = ("bdseq",)
    _SPEC = ((_INT, 0, 255),)
    __slots__ = _FIELDS

    def __init__(self, bdseq):
        self.bdseq = bdseq


class Telemetry(_Record):
    """``values`` are real numbers when parsed with the channel list (raw wire numbers
    otherwise); ``qualities`` is a parallel list of QUALITY_* codes."""

    KIND = KIND_TELEMETRY
    _FIELDS = ("seq", "t_ms", "values", "qualities")
    _SPEC = ((_INT, 0, 255), (_INT, 0, U64_MAX), (_OTHER,), (_OTHER,))
    _OPTIONAL = (K_QUALITY,)
    __slots__ = _FIELDS

    def __init__(self, seq, t_ms, values, qualities):
        self.seq = seq
        self.t_ms = t_ms
        self.values = values
        self.qualities = qualities


class Event(_Record):
    KIND = KIND_EVENT
    _FIELDS = ("number", "t_ms", "type", "severity", "source", "cause", "detail", "count", "state")
    # count and state: their presence depends on the type (see _event_rules).
    _SPEC = (
        (_INT, 0, U32_MAX),
        (_INT, 0, U64_MAX),
        (_ENUM, EVENT_TYPE_NAMES),
        (_ENUM, SEVERITY_NAMES),
        (_OTHER,),
        (_NAME,),
        (_TEXT, 0, TEXT_MAX_LEN),
        (_INT, 1, U32_MAX),
        (_TEXT, 1, NAME_MAX_LEN),
    )
    _OPTIONAL = (K_SOURCE, K_CAUSE, K_DETAIL, K_COUNT, K_NEW_STATE)
    __slots__ = _FIELDS

    def __init__(self, number, t_ms, type, severity, source, cause, detail, count, state):
        self.number = number
        self.t_ms = t_ms
        self.type = type
        self.severity = severity
        self.source = source
        self.cause = cause
        self.detail = detail
        self.count = count
        self.state = state


class Auth(_Record):
    _FIELDS = ("sender", "counter", "tag")
    __slots__ = _FIELDS

    def __init__(self, sender, counter, tag):
        self.sender = sender
        self.counter = counter
        self.tag = tag


class Command(_Record):
    """``args`` maps argument names (channel, value, command, target, config) to values."""

    KIND = KIND_COMMAND
    _FIELDS = ("command_id", "op", "args", "expiry_ms", "auth")
    _SPEC = ((_INT, 0, U32_MAX), (_ENUM, OP_NAMES), (_OTHER,), (_INT, 0, U64_MAX), (_OTHER,))
    _OPTIONAL = (K_ARGS, K_AUTH)
    __slots__ = _FIELDS

    def __init__(self, command_id, op, args, expiry_ms, auth):
        self.command_id = command_id
        self.op = op
        self.args = args
        self.expiry_ms = expiry_ms
        self.auth = auth

    def unsigned_bytes(self):
        """Canonical encoding of this command without its auth block (what the tag covers)."""
        return build_command(self.command_id, self.op, self.args, self.expiry_ms)


class Ack(_Record):
    KIND = KIND_ACK
    _FIELDS = ("command_id", "result", "reason")
    _SPEC = ((_INT, 0, U32_MAX), (_ENUM, RESULT_NAMES), (_TEXT, 0, TEXT_MAX_LEN))
    _OPTIONAL = (K_REASON,)
    __slots__ = _FIELDS

    def __init__(self, command_id, result, reason):
        self.command_id = command_id
        self.result = result
        self.reason = reason

    @property
    def result_name(self):
        return RESULT_NAMES[self.result]


class Lease(_Record):
    """``tags`` maps module id -> 16-byte tag (protocol.auth.sign_lease), or None for an
    unsigned lease (accepted by unkeyed modules only)."""

    KIND = KIND_LEASE
    _FIELDS = ("host_id", "host_time_ms", "seq", "duration_ms", "tags")
    _SPEC = (
        (_ID,),
        (_INT, 0, U64_MAX),
        (_INT, 0, U64_MAX),
        (_INT, 1, LEASE_DURATION_MAX_MS),
        (_OTHER,),
    )
    _OPTIONAL = (K_LEASE_TAGS,)
    __slots__ = _FIELDS

    def __init__(self, host_id, host_time_ms, seq, duration_ms, tags=None):
        self.host_id = host_id
        self.host_time_ms = host_time_ms
        self.seq = seq
        self.duration_ms = duration_ms
        self.tags = tags


class HostState(_Record):
    KIND = KIND_STATE
    _FIELDS = ("online", "t_ms")
    _SPEC = ((_BOOL,), (_INT, 0, U64_MAX))
    __slots__ = _FIELDS

    def __init__(self, online, t_ms):
        self.online = online
        self.t_ms = t_ms


_CLASSES = (None, Birth, Death, Telemetry, Event, Command, Ack, Lease, HostState)


# --- Channels and scaling ---------------------------------------------------------------


def _scale_of(resolution):
    """Integer N when resolution == 1/N (0.01 -> 100), else 0 (use the resolution itself).

    Dividing by N on decode gives the correctly rounded decimal (8012 / 100 == 80.12,
    while 8012 * 0.01 == 80.12000000000001); the tolerance lets a single-precision
    board, which sees 0.01 as 0.0099999998, reach the same N.
    """
    inv = 1.0 / resolution
    n = _round_half_away(inv)
    if n >= 1 and abs(inv - n) <= 1e-6 * n:
        return n
    return 0


def _to_raw(value, scale, resolution):
    if scale:
        return _round_half_away(value * scale)
    return _round_half_away(value / resolution)


def _check_channel(field, ch, alias):
    """Validate one Channel (builder) and return its wire map."""
    if not isinstance(ch, Channel):
        _fail(field, ch, "Channel objects")
    if ch.alias is not None and ch.alias != alias:
        _fail(field + ".alias", ch.alias, "{} (its position)".format(alias))
    _check(field + ".name", ch.name, _TEXT, 1, NAME_MAX_LEN)
    _check(field + ".unit", ch.unit, _TEXT, 0, UNIT_MAX_LEN)
    role = _enum(field + ".role", ch.role, ROLE_NAMES)
    lo = _check(field + ".lo", ch.lo, _NUMBER)
    hi = _check(field + ".hi", ch.hi, _NUMBER)
    if not lo < hi:
        _fail(field + ".hi", hi, "numbers greater than lo={!r}".format(lo))
    res = ch.resolution
    out = {KC_NAME: ch.name, KC_UNIT: ch.unit, KC_ROLE: role, KC_MIN: lo, KC_MAX: hi}
    if res is not None:
        if not _finite_number(res) or res <= 0:
            _fail(field + ".resolution", res, "positive finite numbers or None")
        scale = _scale_of(res)
        for bound in (lo, hi):
            if abs(_to_raw(bound, scale, res)) > RAW_LIMIT:
                _fail(
                    field + ".resolution",
                    res,
                    "resolutions keeping range/resolution within +-2147483647",
                )
        out[KC_RESOLUTION] = res
    return out


def _check_channels(field, channels):
    _check(field, channels, _LIST, 0, MAX_CHANNELS)
    out = []
    seen = {}
    for i in range(len(channels)):
        f = "{}[{}]".format(field, i)
        out.append(_check_channel(f, channels[i], i))
        name = channels[i].name
        if name in seen:
            _fail(
                f + ".name",
                name,
                "names unique within the module (also used by alias {})".format(seen[name]),
            )
        seen[name] = i
    return out


# --- BIRTH ------------------------------------------------------------------------------


def _check_states(field, states, state):
    _check(field, states, _MAP, 1, MAX_STATES)
    out = {}
    for name in states:
        sf = "{}[{!r}]".format(field, name)
        _check(sf, name, _TEXT, 1, NAME_MAX_LEN)
        ops = _check(sf, states[name], _LIST, 0, len(ALLOWED_OPERATIONS))
        for j in range(len(ops)):
            if ops[j] not in ALLOWED_OPERATIONS:
                _fail("{}[{}]".format(sf, j), ops[j], "/".join(ALLOWED_OPERATIONS))
        out[name] = list(ops)
    if type(state) is not str or state not in out:
        _fail("birth.state", state, "the states listed in birth.states")
    return out


def build_birth(
    module_id,
    module_kind,
    firmware,
    config_hash,
    reset_cause,
    bdseq,
    boot_nonce,
    channels,
    states,
    state,
):
    """BIRTH: who the module is, its channels (alias = position) and its state machine.

    ``states`` maps each state name to the operations (command ops or service commands,
    see ALLOWED_OPERATIONS) the module accepts in it; ``state`` is the current one.
    """
    values = (
        module_id,
        module_kind,
        firmware,
        config_hash,
        reset_cause,
        bdseq,
        boot_nonce,
        _check_channels("birth.channels", channels),
        _check_states("birth.states", states, state),
        state,
    )
    return _encode(_build(Birth, values))


# --- DEATH ------------------------------------------------------------------------------


def build_death(bdseq):
    """DEATH (the module's MQTT last will): ``bdseq`` matches the birth it ends."""
    return _encode(_build(Death, (bdseq,)))


# --- TELEMETRY --------------------------------------------------------------------------


class TelemetryCodec:
    """Telemetry for one channel list: scaling precomputed, output buffers reused.

    ``build`` rejects a value outside its channel's [lo, hi] (firmware should clamp and
    flag the value UNCERTAIN or BAD); ``None`` means "no value" and needs a non-GOOD
    quality.  Scaled values round half away from zero.
    """

    __slots__ = ("channels", "_n", "_scale", "_res", "_lo", "_hi", "_rlo", "_rhi", "_out", "_msg")

    def __init__(self, channels):
        _check_channels("telemetry.channels", channels)
        n = len(channels)
        self.channels = channels
        self._n = n
        self._scale = [0] * n  # N when resolution == 1/N
        self._res = [None] * n  # None: float32 channel
        self._lo = [0] * n
        self._hi = [0] * n
        self._rlo = [0] * n  # raw (scaled) bounds, for parsing
        self._rhi = [0] * n
        for i in range(n):
            ch = channels[i]
            lo = ch.lo
            hi = ch.hi
            self._lo[i] = lo
            self._hi[i] = hi
            res = ch.resolution
            if res is not None:
                s = _scale_of(res)
                self._scale[i] = s
                self._res[i] = res
                self._rlo[i] = _to_raw(lo, s, res)
                self._rhi[i] = _to_raw(hi, s, res)
            else:
                # The wire value is rounded to float32; allow that much beyond the bounds.
                slack = (abs(lo) + abs(hi)) * 1.2e-7
                self._rlo[i] = lo - slack
                self._rhi[i] = hi + slack
        self._out = [0] * n  # type: list[object]
        self._msg = {K_KIND: KIND_TELEMETRY, K_VERSION: PROTOCOL_VERSION}

    def build(self, seq, t_ms, values, qualities=None):
        """Encode one sample.  ``qualities``: None (all GOOD) or one QUALITY_* per value."""
        if type(seq) is not int or seq < 0 or seq > 255:
            _fail("telemetry.seq", seq, "0..255")
        if type(t_ms) is not int or t_ms < 0 or t_ms > U64_MAX:
            _check("telemetry.t_ms", t_ms, _INT, 0, U64_MAX)
        n = self._n
        if (type(values) is not list and type(values) is not tuple) or len(values) != n:
            _fail("telemetry.values", values, "a list of {} values (one per channel)".format(n))
        qmap = None
        if qualities is not None:
            t = type(qualities)
            if (t is not list and t is not tuple) or len(qualities) != n:
                _fail("telemetry.qualities", qualities, "a list of {} QUALITY_* codes".format(n))
            for i in range(n):
                q = qualities[i]
                if q:
                    if type(q) is not int or q < 0 or q > QUALITY_BAD:
                        _fail("telemetry.qualities[{}]".format(i), q, "0..2")
                    if qmap is None:
                        qmap = {}
                    qmap[i] = q
        out = self._out
        scale = self._scale
        res = self._res
        lo = self._lo
        hi = self._hi
        for i in range(n):
            v = values[i]
            if v is None:
                if qmap is None or i not in qmap:
                    _fail(
                        "telemetry.values[{}]".format(i),
                        v,
                        "numbers (None needs a non-GOOD quality)",
                    )
                out[i] = None
                continue
            t = type(v)
            if (t is not float and t is not int) or not lo[i] <= v <= hi[i]:
                _fail("telemetry.values[{}]".format(i), v, "{}..{}".format(lo[i], hi[i]))
            r = res[i]
            if r is None:
                out[i] = cbor.Float32(v)
            else:
                out[i] = _to_raw(v, scale[i], r)
        msg = self._msg
        msg[K_SEQ] = seq
        msg[K_TIME] = t_ms
        msg[K_VALUES] = out
        if qmap is not None:
            msg[K_QUALITY] = qmap
        elif K_QUALITY in msg:
            del msg[K_QUALITY]
        return _encode(msg)

    def parse(self, data):
        """Host side: protocol.host_messages.parse_telemetry with this codec."""
        from protocol.host_messages import parse_telemetry  # host only

        return parse_telemetry(data, self)


def build_telemetry(seq, t_ms, values, channels, qualities=None):
    """One-off telemetry build; on the hot path keep a TelemetryCodec instead."""
    return TelemetryCodec(channels).build(seq, t_ms, values, qualities)


# --- EVENT ------------------------------------------------------------------------------


def _event_rules(tcode, source, cause, count, state):
    """The EVENT rules that depend on the type code ``tcode``."""
    if source is not None:
        _check_target("event.source", source)
    if cause is None and tcode == EVENT_TRIP:
        _fail("event.cause", cause, _SNAKE_RULE + " (required for trips)")
    if tcode == EVENT_DROPPED:
        _check("event.count", count, _INT, 1, U32_MAX)
    elif count is not None:
        _fail("event.count", count, "None (only dropped events carry a count)")
    if tcode == EVENT_STATE_CHANGE:
        _check("event.state", state, _TEXT, 1, NAME_MAX_LEN)
    elif state is not None:
        _fail("event.state", state, "None (only state_change events carry a state)")


def build_event(
    number,
    t_ms,
    event_type,
    severity,
    source=None,
    cause=None,
    detail=None,
    count=None,
    state=None,
):
    """EVENT: ``cause`` (snake_case first-out code) is required for trips, ``count`` for
    ``dropped`` (events a full queue discarded), ``state`` (the new state) for
    ``state_change``."""
    msg = _build(Event, (number, t_ms, event_type, severity, source, cause, detail, count, state))
    _event_rules(msg[K_EVENT_TYPE], source, cause, count, state)
    return _encode(msg)


# --- COMMAND ----------------------------------------------------------------------------

_ARG_NAMES = ("channel", "value", "command", "target", "config")  # index: wire key
# Per op code: (required argument names, optional argument names).
_OP_ARGS = (
    (("channel", "value"), ()),  # set_setpoint
    (("command",), ()),  # state
    ((), ("target",)),  # reset_trip: no target = every latched trip whose cause cleared
    ((), ("target",)),  # ack_alarm: no target = every active alarm
    ((), ()),  # rebirth
    (("config",), ()),  # configure
)


def _check_target(field, v):
    if type(v) is int:
        return _check(field, v, _INT, 0, MAX_CHANNELS - 1)
    if not _chars_ok(v, _SNAKE_FIRST, _SNAKE_REST):
        _fail(field, v, "a channel alias 0..63 or a " + _SNAKE_RULE + " id")
    return v


def _check_config(field, cfg):
    _check(field, cfg, _MAP, 1, MAX_CONFIG_ENTRIES)
    for k in cfg:
        kf = "{}[{!r}]".format(field, k)
        _check(field + " key", k, _NAME)
        v = cfg[k]
        t = type(v)
        if t is int:
            _check(kf, v, _INT, -U64_MAX - 1, U64_MAX)
        elif t is float:
            _check(kf, v, _NUMBER)
        elif t is str:
            _check(kf, v, _TEXT, 0, CONFIG_TEXT_MAX_LEN)
        elif v is not None and t is not bool:
            _fail(kf, v, "null, bool, int, finite float or text up to 64 chars")
    return cfg


def _check_args(op_code, args, by_name):
    """Validate op arguments; returns the wire map (int keys).

    ``by_name``: True when ``args`` is keyed by name (builder), False by wire key.
    """
    if args is None:
        args = {}
    _check("command.args", args, _MAP, 0, 5)
    required, optional = _OP_ARGS[op_code]
    op = OP_NAMES[op_code]
    wire = {}
    for k in args:
        if by_name:
            name = k
            known = type(k) is str and k in _ARG_NAMES
        else:
            known = type(k) is int and 0 <= k < len(_ARG_NAMES)
            name = _ARG_NAMES[k] if known else k
        if not known or name not in required + optional:
            _fail(
                "command.args",
                k,
                "arguments of {}: {}".format(op, "/".join(required + optional) or "none"),
            )
        wire[_ARG_NAMES.index(name)] = args[k]
    for name in required:
        if _ARG_NAMES.index(name) not in wire:
            _fail("command.args." + name, None, "a value (required by {})".format(op))
    for k in wire:
        f = "command.args." + _ARG_NAMES[k]
        v = wire[k]
        if k == KA_CHANNEL:
            _check(f, v, _INT, 0, MAX_CHANNELS - 1)
        elif k == KA_VALUE:
            _check(f, v, _NUMBER)
        elif k == KA_COMMAND:
            if type(v) is not str or v not in SERVICE_COMMANDS:
                _fail(f, v, "/".join(SERVICE_COMMANDS))
        elif k == KA_TARGET:
            _check_target(f, v)
        else:
            _check_config(f, v)
    return wire


def _check_auth(auth):
    if isinstance(auth, Auth):
        auth = (auth.sender, auth.counter, auth.tag)
    elif (type(auth) is not list and type(auth) is not tuple) or len(auth) != 3:
        _fail("command.auth", auth, "Auth(sender, counter, tag) or a 3-item list")
    return Auth(
        _check("command.auth.sender", auth[0], _ID),
        _check("command.auth.counter", auth[1], _INT, 0, U64_MAX),
        _check("command.auth.tag", auth[2], _BYTES, AUTH_TAG_LEN, AUTH_TAG_LEN),
    )


def build_command(command_id, op, args, expiry_ms, auth=None):
    """COMMAND.  ``args`` by name: set_setpoint {channel, value}, state {command},
    reset_trip/ack_alarm {target?}, rebirth {}, configure {config}.  ``expiry_ms`` is host
    time (ms since the Unix epoch).  ``auth`` is usually added by protocol.auth.sign_command.
    """
    op_code = _enum("command.op", op, OP_NAMES)
    wire_args = _check_args(op_code, args, True) or None
    if auth is not None:
        a = _check_auth(auth)
        auth = [a.sender, a.counter, a.tag]
    return _encode(_build(Command, (command_id, op_code, wire_args, expiry_ms, auth)))


def _command_values(m, v):
    if K_ARGS in m:
        _check("command.args", m[K_ARGS], _MAP, 1, 5)
    wire = _check_args(m[K_OP], v[2], False)
    args = {}
    for k in wire:
        args[_ARG_NAMES[k]] = wire[k]
    v[2] = args
    if K_AUTH in m:
        v[4] = _check_auth(v[4])


def parse_command(data):
    m = _decode(data, KIND_COMMAND)
    v = _map_values(Command, m)
    _command_values(m, v)
    return Command(*v)


# --- ACK --------------------------------------------------------------------------------


def build_ack(command_id, result, reason=None):
    """ACK: ``result`` is a RESULT_* code (or its name); ``reason`` is for humans."""
    return _encode(_build(Ack, (command_id, result, reason)))


# --- LEASE ------------------------------------------------------------------------------


def build_lease(host_id, host_time_ms, seq, duration_ms, tags=None):
    """LEASE: the host is alive; a module falls back to its lease-loss action after
    min(its board's ``lease.timeout_ms``, ``duration_ms``) without a fresh lease.  Modules
    also learn host time from it (see protocol.auth.HostTimeEstimate).  ``seq`` must
    increase per sender; hosts use host time in ms, which survives their restarts.
    ``tags`` (module id -> 16-byte tag) is usually added by protocol.auth.sign_lease."""
    if tags is not None:
        _check("lease.tags", tags, _MAP, 1, LEASE_MAX_TAGS)
        wire = {}
        for module_id in tags:
            tag = tags[module_id]
            wire[module_id] = bytes(tag) if isinstance(tag, bytearray) else tag
        tags = _check_lease_tags(wire)
    return _encode(_build(Lease, (host_id, host_time_ms, seq, duration_ms, tags)))


def _check_lease_tags(tags):
    """``tags`` if it is a map of 1..LEASE_MAX_TAGS module ids -> 16-byte tags."""
    _check("lease.tags", tags, _MAP, 1, LEASE_MAX_TAGS)
    for module_id in tags:
        _check("lease.tags key", module_id, _ID)
        tag = tags[module_id]
        if type(tag) is not bytes or len(tag) != AUTH_TAG_LEN:
            _fail("lease.tags[{!r}]".format(module_id), tag, "bytes of length 16..16")
    return tags


def _lease_values(m, v):
    if K_LEASE_TAGS in m:
        _check_lease_tags(v[4])


def parse_lease(data):
    m = _decode(data, KIND_LEASE)
    v = _map_values(Lease, m)
    _lease_values(m, v)
    return Lease(*v)


# --- STATE (retained host state) --------------------------------------------------------


def build_state(online, t_ms):
    """STATE: retained host presence; ``t_ms`` is host time (ms since the Unix epoch)."""
    return _encode(_build(HostState, (online, t_ms)))


# --- Host-side parsers ------------------------------------------------------------------


# The parsers of what modules send (and ``parse`` of any kind) run on the host only, so
# they live in protocol/host_messages.py, which board bundles leave out
# (edge/boardconfig/board_files.py); host code still finds them here by name.
_HOST_PARSERS = (
    "parse",
    "parse_birth",
    "parse_death",
    "parse_telemetry",
    "parse_event",
    "parse_ack",
    "parse_state",
)


def __getattr__(name):
    if name in _HOST_PARSERS:
        from protocol import host_messages  # host only

        return getattr(host_messages, name)
    raise AttributeError("module 'protocol.messages' has no attribute {!r}".format(name))
