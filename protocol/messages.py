"""Build and parse every flowskid message kind (see protocol/SPEC.md).

A message is a CBOR map with small integer keys: key 0 is the kind, key 1 the protocol
version, the rest are kind specific.  ``build_<kind>(...)`` validates its arguments and
returns the encoded bytes; ``parse_<kind>(data)`` decodes, validates and returns a small
``__slots__`` object; ``parse(data)`` dispatches on the kind.  Every problem, including a
frame that is not CBOR at all, raises ``MessageError`` (a ``ValueError``) naming the field,
the value and what is allowed.

Enumerations travel as small integers (codes in protocol.constants); builders accept the
name or the code, parsers return the name (ACK results stay integer RESULT_* codes).

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
    PROTOCOL_VERSION,
    QUALITY_BAD,
    QUALITY_GOOD,
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
    from typing import NoReturn


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
# host state
K_ONLINE = const(2)
K_STATE_TIME = const(3)

# --- Limits -----------------------------------------------------------------------------

U32_MAX = 4294967295
U64_MAX = 18446744073709551615
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
# A scaled telemetry integer must fit in a signed 32-bit word.
RAW_LIMIT = 2147483647
# Largest accepted frame; also bounds what a malicious peer can make a board allocate.
MAX_MESSAGE_BYTES = const(8192)
# Deepest nesting of any kind (command -> args -> config map is three levels).
_MAX_DEPTH = const(4)

_ID_FIRST = "abcdefghijklmnopqrstuvwxyz0123456789"
_ID_REST = _ID_FIRST + "_-"
_SNAKE_FIRST = "abcdefghijklmnopqrstuvwxyz"
_SNAKE_REST = _SNAKE_FIRST + "0123456789_"
_ID_RULE = "1-32 chars of [a-z0-9_-], starting with [a-z0-9]"
_SNAKE_RULE = "snake_case 1-32 chars: [a-z][a-z0-9_]*"

# Operations a birth may list as allowed in a state: every op but the generic "state"
# (which the service commands stand for) plus the service commands themselves.
ALLOWED_OPERATIONS = tuple(n for n in OP_NAMES if n != "state") + SERVICE_COMMANDS

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


# --- Validation helpers (shared by builders and parsers) --------------------------------


def _fail(field, value, allowed) -> "NoReturn":
    raise MessageError("{}: {!r} not in {}".format(field, value, allowed), field)


def _fail_length(field, n, lo, hi) -> "NoReturn":
    raise MessageError("{}: length {} not in {}..{}".format(field, n, lo, hi), field)


def _is_int(v):
    # bool is an int subclass on both CPython and MicroPython; it is never a number here.
    return type(v) is int


def _is_number(v):
    t = type(v)
    return t is int or t is float


def _finite(v):
    # inf - inf and nan - nan are nan, and nan compares unequal to everything.
    return v - v == 0


def _uint(field, v, hi):
    if type(v) is not int or v < 0 or v > hi:
        _fail(field, v, "0..{}".format(hi))
    return v


def _int_range(field, v, lo, hi):
    if type(v) is not int or v < lo or v > hi:
        _fail(field, v, "{}..{}".format(lo, hi))
    return v


def _text(field, v, lo, hi):
    if type(v) is not str or len(v) < lo or len(v) > hi:
        _fail(field, v, "text of {}..{} chars".format(lo, hi))
    return v


def _bytes(field, v, lo, hi):
    if isinstance(v, bytearray):
        v = bytes(v)
    if type(v) is not bytes or len(v) < lo or len(v) > hi:
        _fail(field, v, "bytes of length {}..{}".format(lo, hi))
    return v


def _chars_ok(v, first, rest, max_len):
    if type(v) is not str or not v or len(v) > max_len or v[0] not in first:
        return False
    for c in v:
        if c not in rest:
            return False
    return True


def _ident(field, v):
    if not _chars_ok(v, _ID_FIRST, _ID_REST, ID_MAX_LEN):
        _fail(field, v, _ID_RULE)
    return v


def _snake(field, v):
    if not _chars_ok(v, _SNAKE_FIRST, _SNAKE_REST, NAME_MAX_LEN):
        _fail(field, v, _SNAKE_RULE)
    return v


def _enum(field, v, names):
    """Name or code -> code (builders)."""
    if type(v) is int:
        if 0 <= v < len(names):
            return v
    elif type(v) is str:
        for i in range(len(names)):
            if names[i] == v:
                return i
    _fail(field, v, "{} (or code 0..{})".format("/".join(names), len(names) - 1))


def _enum_code(field, v, names):
    """Wire code -> name (parsers)."""
    if type(v) is not int or v < 0 or v >= len(names):
        _fail(field, v, "0..{} ({})".format(len(names) - 1, "/".join(names)))
    return names[v]


def _number(field, v):
    if not _is_number(v) or not _finite(v):
        _fail(field, v, "finite numbers")
    return v


def _bool(field, v):
    if type(v) is not bool:
        _fail(field, v, "true/false")
    return v


def _list(field, v, lo, hi):
    if type(v) is not list and type(v) is not tuple:
        _fail(field, v, "a list of {}..{} items".format(lo, hi))
    if len(v) < lo or len(v) > hi:
        _fail_length(field, len(v), lo, hi)
    return v


def _dict(field, v, lo, hi):
    if type(v) is not dict:
        _fail(field, v, "a map of {}..{} entries".format(lo, hi))
    if len(v) < lo or len(v) > hi:
        _fail_length(field, len(v), lo, hi)
    return v


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
        _fail("message.kind", kind, "1..{}".format(len(_KIND_NAMES) - 1))
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


def _check_keys(name, m, required, optional, header=True):
    """Every key is an int of the kind (strict: unknown keys are a newer protocol)."""
    for k in m:
        if type(k) is not int or not (
            k in required or k in optional or (header and (k == K_KIND or k == K_VERSION))
        ):
            raise MessageError("{}: unexpected key {!r}".format(name, k), name)
    for k in required:
        if k not in m:
            raise MessageError("{}: missing required key {}".format(name, k), name)


def _header(kind):
    return {K_KIND: kind, K_VERSION: PROTOCOL_VERSION}


# --- Plain result objects ---------------------------------------------------------------


class _Record:
    __slots__ = ()
    _FIELDS = ()

    def __init__(self, *values):
        fields = self._FIELDS
        for i in range(len(fields)):
            setattr(self, fields[i], values[i])

    def __eq__(self, other):
        if type(other) is not type(self):
            return False
        for f in self._FIELDS:
            if getattr(self, f) != getattr(other, f):
                return False
        return True

    def __ne__(self, other):
        return not self.__eq__(other)

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
    __slots__ = _FIELDS

    def __init__(self, bdseq):
        self.bdseq = bdseq


class Telemetry(_Record):
    """``values`` are real numbers when parsed with the channel list (raw wire numbers
    otherwise); ``qualities`` is a parallel list of QUALITY_* codes."""

    KIND = KIND_TELEMETRY
    _FIELDS = ("seq", "t_ms", "values", "qualities")
    __slots__ = _FIELDS

    def __init__(self, seq, t_ms, values, qualities):
        self.seq = seq
        self.t_ms = t_ms
        self.values = values
        self.qualities = qualities


class Event(_Record):
    KIND = KIND_EVENT
    _FIELDS = ("number", "t_ms", "type", "severity", "source", "cause", "detail", "count", "state")
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
    __slots__ = _FIELDS

    def __init__(self, command_id, result, reason):
        self.command_id = command_id
        self.result = result
        self.reason = reason

    @property
    def result_name(self):
        return RESULT_NAMES[self.result]


class Lease(_Record):
    KIND = KIND_LEASE
    _FIELDS = ("host_id", "host_time_ms", "seq", "duration_ms")
    __slots__ = _FIELDS

    def __init__(self, host_id, host_time_ms, seq, duration_ms):
        self.host_id = host_id
        self.host_time_ms = host_time_ms
        self.seq = seq
        self.duration_ms = duration_ms


class HostState(_Record):
    KIND = KIND_STATE
    _FIELDS = ("online", "t_ms")
    __slots__ = _FIELDS

    def __init__(self, online, t_ms):
        self.online = online
        self.t_ms = t_ms


def _new(cls, values):
    return cls(*values)


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


def _from_raw(raw, scale, resolution):
    if scale:
        return raw / scale
    return raw * resolution


def _check_channel(field, ch, alias):
    """Validate one Channel (builder) and return its wire map."""
    if not isinstance(ch, Channel):
        _fail(field, ch, "Channel objects")
    if ch.alias is not None and ch.alias != alias:
        _fail(field + ".alias", ch.alias, "{} (its position)".format(alias))
    _text(field + ".name", ch.name, 1, NAME_MAX_LEN)
    _text(field + ".unit", ch.unit, 0, UNIT_MAX_LEN)
    role = _enum(field + ".role", ch.role, ROLE_NAMES)
    lo = _number(field + ".lo", ch.lo)
    hi = _number(field + ".hi", ch.hi)
    if not lo < hi:
        _fail(field + ".hi", hi, "numbers greater than lo={!r}".format(lo))
    res = ch.resolution
    out = {KC_NAME: ch.name, KC_UNIT: ch.unit, KC_ROLE: role, KC_MIN: lo, KC_MAX: hi}
    if res is not None:
        if not _is_number(res) or not _finite(res) or res <= 0:
            _fail(field + ".resolution", res, "positive finite numbers or None")
        scale = _scale_of(res)
        for bound in (lo, hi):
            if abs(_to_raw(bound, scale, res)) > RAW_LIMIT:
                _fail(
                    field + ".resolution",
                    res,
                    "resolutions keeping range/resolution within +-{}".format(RAW_LIMIT),
                )
        out[KC_RESOLUTION] = res
    return out


def _check_channels(field, channels):
    _list(field, channels, 0, MAX_CHANNELS)
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


def _channel_from_wire(field, m, alias):
    _dict(field, m, 5, 6)
    _check_keys(field, m, (KC_NAME, KC_UNIT, KC_ROLE, KC_MIN, KC_MAX), (KC_RESOLUTION,), False)
    if KC_RESOLUTION in m and m[KC_RESOLUTION] is None:
        _fail(field + ".resolution", None, "positive finite numbers (omit the key for none)")
    ch = Channel(
        m[KC_NAME],
        m[KC_UNIT],
        _enum_code(field + ".role", m[KC_ROLE], ROLE_NAMES),
        m[KC_MIN],
        m[KC_MAX],
        m.get(KC_RESOLUTION),
        alias,
    )
    _check_channel(field, ch, alias)
    return ch


# --- BIRTH ------------------------------------------------------------------------------


def _check_states(field, states, state):
    _dict(field, states, 1, MAX_STATES)
    out = {}
    for name in states:
        sf = "{}[{!r}]".format(field, name)
        _text(sf, name, 1, NAME_MAX_LEN)
        ops = _list(sf, states[name], 0, len(ALLOWED_OPERATIONS))
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
    msg = _header(KIND_BIRTH)
    msg[K_MODULE_ID] = _ident("birth.module_id", module_id)
    msg[K_MODULE_KIND] = _enum("birth.module_kind", module_kind, MODULE_KIND_NAMES)
    msg[K_FIRMWARE] = _text("birth.firmware", firmware, 1, NAME_MAX_LEN)
    msg[K_CONFIG_HASH] = _bytes("birth.config_hash", config_hash, CONFIG_HASH_MIN, CONFIG_HASH_MAX)
    msg[K_RESET_CAUSE] = _enum("birth.reset_cause", reset_cause, RESET_CAUSE_NAMES)
    msg[K_BIRTH_BDSEQ] = _uint("birth.bdseq", bdseq, 255)
    msg[K_BOOT_NONCE] = _bytes("birth.boot_nonce", boot_nonce, BOOT_NONCE_MIN, BOOT_NONCE_MAX)
    msg[K_CHANNELS] = _check_channels("birth.channels", channels)
    msg[K_STATES] = _check_states("birth.states", states, state)
    msg[K_STATE] = state
    return _encode(msg)


_BIRTH_KEYS = (
    K_MODULE_ID,
    K_MODULE_KIND,
    K_FIRMWARE,
    K_CONFIG_HASH,
    K_RESET_CAUSE,
    K_BIRTH_BDSEQ,
    K_BOOT_NONCE,
    K_CHANNELS,
    K_STATES,
    K_STATE,
)


def _birth_from_map(m):
    _check_keys("birth", m, _BIRTH_KEYS, ())
    raw_channels = _list("birth.channels", m[K_CHANNELS], 0, MAX_CHANNELS)
    channels = []
    for i in range(len(raw_channels)):
        channels.append(_channel_from_wire("birth.channels[{}]".format(i), raw_channels[i], i))
    _check_channels("birth.channels", channels)  # uniqueness of names
    return _new(
        Birth,
        (
            _ident("birth.module_id", m[K_MODULE_ID]),
            _enum_code("birth.module_kind", m[K_MODULE_KIND], MODULE_KIND_NAMES),
            _text("birth.firmware", m[K_FIRMWARE], 1, NAME_MAX_LEN),
            _bytes("birth.config_hash", m[K_CONFIG_HASH], CONFIG_HASH_MIN, CONFIG_HASH_MAX),
            _enum_code("birth.reset_cause", m[K_RESET_CAUSE], RESET_CAUSE_NAMES),
            _uint("birth.bdseq", m[K_BIRTH_BDSEQ], 255),
            _bytes("birth.boot_nonce", m[K_BOOT_NONCE], BOOT_NONCE_MIN, BOOT_NONCE_MAX),
            channels,
            _check_states("birth.states", m[K_STATES], m[K_STATE]),
            m[K_STATE],
        ),
    )


def parse_birth(data):
    return _birth_from_map(_decode(data, KIND_BIRTH))


# --- DEATH ------------------------------------------------------------------------------


def build_death(bdseq):
    """DEATH (the module's MQTT last will): ``bdseq`` matches the birth it ends."""
    msg = _header(KIND_DEATH)
    msg[K_DEATH_BDSEQ] = _uint("death.bdseq", bdseq, 255)
    return _encode(msg)


def _death_from_map(m):
    _check_keys("death", m, (K_DEATH_BDSEQ,), ())
    return _new(Death, (_uint("death.bdseq", m[K_DEATH_BDSEQ], 255),))


def parse_death(data):
    return _death_from_map(_decode(data, KIND_DEATH))


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
        self._msg = _header(KIND_TELEMETRY)

    def build(self, seq, t_ms, values, qualities=None):
        """Encode one sample.  ``qualities``: None (all GOOD) or one QUALITY_* per value."""
        if type(seq) is not int or seq < 0 or seq > 255:
            _fail("telemetry.seq", seq, "0..255")
        if type(t_ms) is not int or t_ms < 0 or t_ms > U64_MAX:
            _fail("telemetry.t_ms", t_ms, "0..{}".format(U64_MAX))
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
        return _telemetry_from_map(_decode(data, KIND_TELEMETRY), self)

    def _scale_values(self, values):
        n = self._n
        if len(values) != n:
            _fail_length("telemetry.values", len(values), n, n)
        out = [None] * n  # type: list[object]
        for i in range(n):
            v = values[i]
            if v is None:
                continue
            f = "telemetry.values[{}]".format(i)
            r = self._res[i]
            if r is None:
                if not self._rlo[i] <= v <= self._rhi[i]:
                    _fail(f, v, "{}..{}".format(self._lo[i], self._hi[i]))
                out[i] = float(v)
            else:
                if type(v) is not int or v < self._rlo[i] or v > self._rhi[i]:
                    _fail(f, v, "integers {}..{}".format(self._rlo[i], self._rhi[i]))
                out[i] = _from_raw(v, self._scale[i], r)
        return out


def build_telemetry(seq, t_ms, values, channels, qualities=None):
    """One-off telemetry build; on the hot path keep a TelemetryCodec instead."""
    return TelemetryCodec(channels).build(seq, t_ms, values, qualities)


def _telemetry_from_map(m, codec):
    _check_keys("telemetry", m, (K_SEQ, K_TIME, K_VALUES), (K_QUALITY,))
    seq = _uint("telemetry.seq", m[K_SEQ], 255)
    t_ms = _uint("telemetry.t_ms", m[K_TIME], U64_MAX)
    values = _list("telemetry.values", m[K_VALUES], 0, MAX_CHANNELS)
    n = len(values)
    qualities = [QUALITY_GOOD] * n
    qm = m.get(K_QUALITY)
    if qm is not None:
        _dict("telemetry.quality", qm, 1, n if n else 1)
        for alias in qm:
            if type(alias) is not int or alias < 0 or alias >= n:
                raise MessageError(
                    "telemetry.quality: alias {!r} not in 0..{}".format(alias, n - 1),
                    "telemetry.quality",
                )
            qualities[alias] = _int_range(
                "telemetry.quality[{}]".format(alias), qm[alias], 1, QUALITY_BAD
            )
    elif K_QUALITY in m:
        _fail("telemetry.quality", None, "a map (omit the key when all values are GOOD)")
    for i in range(n):
        v = values[i]
        if v is None:
            if qualities[i] == QUALITY_GOOD:
                _fail(
                    "telemetry.values[{}]".format(i), v, "numbers (null needs a non-GOOD quality)"
                )
        elif not _is_number(v) or not _finite(v):
            _fail("telemetry.values[{}]".format(i), v, "finite numbers or null")
    if codec is not None:
        values = codec._scale_values(values)
    else:
        values = list(values)
    return _new(Telemetry, (seq, t_ms, values, qualities))


def parse_telemetry(data, channels=None):
    """Parse telemetry; with the birth's ``channels`` (or a TelemetryCodec) the values
    come back as real numbers range-checked per channel, without them as wire numbers."""
    codec = channels
    if channels is not None and not isinstance(channels, TelemetryCodec):
        codec = TelemetryCodec(channels)
    return _telemetry_from_map(_decode(data, KIND_TELEMETRY), codec)


# --- EVENT ------------------------------------------------------------------------------


def _check_event(number, t_ms, event_type, severity, source, cause, detail, count, state):
    """Validate; returns (type_code, severity_code)."""
    _uint("event.number", number, U32_MAX)
    _uint("event.t_ms", t_ms, U64_MAX)
    tcode = _enum("event.type", event_type, EVENT_TYPE_NAMES)
    scode = _enum("event.severity", severity, SEVERITY_NAMES)
    if source is not None:
        if type(source) is int:
            _uint("event.source", source, MAX_CHANNELS - 1)
        elif not _chars_ok(source, _SNAKE_FIRST, _SNAKE_REST, NAME_MAX_LEN):
            _fail("event.source", source, "a channel alias 0..63 or a " + _SNAKE_RULE + " id")
    if cause is not None:
        _snake("event.cause", cause)
    elif tcode == EVENT_TRIP:
        _fail("event.cause", cause, _SNAKE_RULE + " (required for trips)")
    if detail is not None:
        _text("event.detail", detail, 0, TEXT_MAX_LEN)
    if tcode == EVENT_DROPPED:
        _int_range("event.count", count, 1, U32_MAX)
    elif count is not None:
        _fail("event.count", count, "None (only dropped events carry a count)")
    if tcode == EVENT_STATE_CHANGE:
        _text("event.state", state, 1, NAME_MAX_LEN)
    elif state is not None:
        _fail("event.state", state, "None (only state_change events carry a state)")
    return tcode, scode


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
    tcode, scode = _check_event(
        number, t_ms, event_type, severity, source, cause, detail, count, state
    )
    msg = _header(KIND_EVENT)
    msg[K_EVENT_NUMBER] = number
    msg[K_EVENT_TIME] = t_ms
    msg[K_EVENT_TYPE] = tcode
    msg[K_SEVERITY] = scode
    if source is not None:
        msg[K_SOURCE] = source
    if cause is not None:
        msg[K_CAUSE] = cause
    if detail is not None:
        msg[K_DETAIL] = detail
    if count is not None:
        msg[K_COUNT] = count
    if state is not None:
        msg[K_NEW_STATE] = state
    return _encode(msg)


def _event_from_map(m):
    _check_keys(
        "event",
        m,
        (K_EVENT_NUMBER, K_EVENT_TIME, K_EVENT_TYPE, K_SEVERITY),
        (K_SOURCE, K_CAUSE, K_DETAIL, K_COUNT, K_NEW_STATE),
    )
    values = (
        m[K_EVENT_NUMBER],
        m[K_EVENT_TIME],
        _enum_code("event.type", m[K_EVENT_TYPE], EVENT_TYPE_NAMES),
        _enum_code("event.severity", m[K_SEVERITY], SEVERITY_NAMES),
        m.get(K_SOURCE),
        m.get(K_CAUSE),
        m.get(K_DETAIL),
        m.get(K_COUNT),
        m.get(K_NEW_STATE),
    )
    for key in (K_SOURCE, K_CAUSE, K_DETAIL, K_COUNT, K_NEW_STATE):
        if key in m and m[key] is None:
            raise MessageError("event: key {} is null (omit it instead)".format(key), "event")
    _check_event(*values)
    return _new(Event, values)


def parse_event(data):
    return _event_from_map(_decode(data, KIND_EVENT))


# --- COMMAND ----------------------------------------------------------------------------

_ARG_KEYS = {
    "channel": KA_CHANNEL,
    "value": KA_VALUE,
    "command": KA_COMMAND,
    "target": KA_TARGET,
    "config": KA_CONFIG,
}
_ARG_NAMES = ("channel", "value", "command", "target", "config")
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
        return _uint(field, v, MAX_CHANNELS - 1)
    if not _chars_ok(v, _SNAKE_FIRST, _SNAKE_REST, NAME_MAX_LEN):
        _fail(field, v, "a channel alias 0..63 or a " + _SNAKE_RULE + " id")
    return v


def _check_config(field, cfg):
    _dict(field, cfg, 1, MAX_CONFIG_ENTRIES)
    for k in cfg:
        kf = "{}[{!r}]".format(field, k)
        _snake(field + " key", k)
        v = cfg[k]
        if v is None or type(v) is bool or type(v) is int:
            if type(v) is int:
                _int_range(kf, v, -U64_MAX - 1, U64_MAX)
        elif type(v) is float:
            _number(kf, v)
        elif type(v) is str:
            _text(kf, v, 0, CONFIG_TEXT_MAX_LEN)
        else:
            _fail(
                kf,
                v,
                "null, bool, int, finite float or text up to {} chars".format(CONFIG_TEXT_MAX_LEN),
            )
    return cfg


def _check_args(op_code, args, names_in):
    """Validate op arguments; returns the wire map (int keys) or None when empty.

    ``names_in``: True when ``args`` is keyed by name (builder), False by wire key.
    """
    if args is None:
        args = {}
    _dict("command.args", args, 0, 5)
    required, optional = _OP_ARGS[op_code]
    op = OP_NAMES[op_code]
    wire = {}
    for k in args:
        if names_in:
            name = k
            known = type(k) is str and k in _ARG_KEYS
        else:
            known = type(k) is int and 0 <= k < len(_ARG_NAMES)
            name = _ARG_NAMES[k] if known else k
        if not known or (name not in required and name not in optional):
            _fail(
                "command.args",
                k,
                "arguments of {}: {}".format(op, "/".join(required + optional) or "none"),
            )
        wire[_ARG_KEYS[name]] = args[k]  # pyright: ignore[reportArgumentType]
    for name in required:
        if _ARG_KEYS[name] not in wire:
            _fail("command.args." + name, None, "a value (required by {})".format(op))
    if KA_CHANNEL in wire:
        _uint("command.args.channel", wire[KA_CHANNEL], MAX_CHANNELS - 1)
    if KA_VALUE in wire:
        _number("command.args.value", wire[KA_VALUE])
    if KA_COMMAND in wire:
        c = wire[KA_COMMAND]
        if type(c) is not str or c not in SERVICE_COMMANDS:
            _fail("command.args.command", c, "/".join(SERVICE_COMMANDS))
    if KA_TARGET in wire:
        _check_target("command.args.target", wire[KA_TARGET])
    if KA_CONFIG in wire:
        _check_config("command.args.config", wire[KA_CONFIG])
    return wire


def _check_auth(auth):
    if isinstance(auth, Auth):
        sender, counter, tag = auth.sender, auth.counter, auth.tag
    else:
        if (type(auth) is not list and type(auth) is not tuple) or len(auth) != 3:
            _fail("command.auth", auth, "Auth(sender, counter, tag) or a 3-item list")
        sender, counter, tag = auth[0], auth[1], auth[2]
    _ident("command.auth.sender", sender)
    _uint("command.auth.counter", counter, U64_MAX)
    tag = _bytes("command.auth.tag", tag, AUTH_TAG_LEN, AUTH_TAG_LEN)
    return Auth(sender, counter, tag)


def build_command(command_id, op, args, expiry_ms, auth=None):
    """COMMAND.  ``args`` by name: set_setpoint {channel, value}, state {command},
    reset_trip/ack_alarm {target?}, rebirth {}, configure {config}.  ``expiry_ms`` is host
    time (ms since the Unix epoch).  ``auth`` is usually added by protocol.auth.sign_command.
    """
    _uint("command.command_id", command_id, U32_MAX)
    op_code = _enum("command.op", op, OP_NAMES)
    wire_args = _check_args(op_code, args, True)
    _uint("command.expiry_ms", expiry_ms, U64_MAX)
    msg = _header(KIND_COMMAND)
    msg[K_COMMAND_ID] = command_id
    msg[K_OP] = op_code
    if wire_args:
        msg[K_ARGS] = wire_args
    msg[K_EXPIRY] = expiry_ms
    if auth is not None:
        a = _check_auth(auth)
        msg[K_AUTH] = [a.sender, a.counter, a.tag]
    return _encode(msg)


def _command_from_map(m):
    _check_keys("command", m, (K_COMMAND_ID, K_OP, K_EXPIRY), (K_ARGS, K_AUTH))
    command_id = _uint("command.command_id", m[K_COMMAND_ID], U32_MAX)
    op = _enum_code("command.op", m[K_OP], OP_NAMES)
    if K_ARGS in m:
        _dict("command.args", m[K_ARGS], 1, 5)
    wire_args = _check_args(m[K_OP], m.get(K_ARGS), False)
    args = {}
    for k in wire_args:
        args[_ARG_NAMES[k]] = wire_args[k]
    expiry = _uint("command.expiry_ms", m[K_EXPIRY], U64_MAX)
    auth = None
    if K_AUTH in m:
        auth = _check_auth(m[K_AUTH])
    return _new(Command, (command_id, op, args, expiry, auth))


def parse_command(data):
    return _command_from_map(_decode(data, KIND_COMMAND))


# --- ACK --------------------------------------------------------------------------------


def build_ack(command_id, result, reason=None):
    """ACK: ``result`` is a RESULT_* code (or its name); ``reason`` is for humans."""
    msg = _header(KIND_ACK)
    msg[K_ACK_ID] = _uint("ack.command_id", command_id, U32_MAX)
    msg[K_RESULT] = _enum("ack.result", result, RESULT_NAMES)
    if reason is not None:
        msg[K_REASON] = _text("ack.reason", reason, 0, TEXT_MAX_LEN)
    return _encode(msg)


def _ack_from_map(m):
    _check_keys("ack", m, (K_ACK_ID, K_RESULT), (K_REASON,))
    reason = m.get(K_REASON)
    if K_REASON in m:
        _text("ack.reason", reason, 0, TEXT_MAX_LEN)
    result = m[K_RESULT]
    _enum_code("ack.result", result, RESULT_NAMES)
    return _new(Ack, (_uint("ack.command_id", m[K_ACK_ID], U32_MAX), result, reason))


def parse_ack(data):
    return _ack_from_map(_decode(data, KIND_ACK))


# --- LEASE ------------------------------------------------------------------------------


def build_lease(host_id, host_time_ms, seq, duration_ms):
    """LEASE: the host is alive; modules fall back to safe state ``duration_ms`` after the
    last one.  Modules also learn host time from it (see protocol.auth.HostTimeEstimate)."""
    msg = _header(KIND_LEASE)
    msg[K_HOST_ID] = _ident("lease.host_id", host_id)
    msg[K_HOST_TIME] = _uint("lease.host_time_ms", host_time_ms, U64_MAX)
    msg[K_LEASE_SEQ] = _uint("lease.seq", seq, U32_MAX)
    msg[K_DURATION] = _int_range("lease.duration_ms", duration_ms, 1, LEASE_DURATION_MAX_MS)
    return _encode(msg)


def _lease_from_map(m):
    _check_keys("lease", m, (K_HOST_ID, K_HOST_TIME, K_LEASE_SEQ, K_DURATION), ())
    return _new(
        Lease,
        (
            _ident("lease.host_id", m[K_HOST_ID]),
            _uint("lease.host_time_ms", m[K_HOST_TIME], U64_MAX),
            _uint("lease.seq", m[K_LEASE_SEQ], U32_MAX),
            _int_range("lease.duration_ms", m[K_DURATION], 1, LEASE_DURATION_MAX_MS),
        ),
    )


def parse_lease(data):
    return _lease_from_map(_decode(data, KIND_LEASE))


# --- STATE (retained host state) --------------------------------------------------------


def build_state(online, t_ms):
    """STATE: retained host presence; ``t_ms`` is host time (ms since the Unix epoch)."""
    msg = _header(KIND_STATE)
    msg[K_ONLINE] = _bool("state.online", online)
    msg[K_STATE_TIME] = _uint("state.t_ms", t_ms, U64_MAX)
    return _encode(msg)


def _state_from_map(m):
    _check_keys("state", m, (K_ONLINE, K_STATE_TIME), ())
    return _new(
        HostState,
        (_bool("state.online", m[K_ONLINE]), _uint("state.t_ms", m[K_STATE_TIME], U64_MAX)),
    )


def parse_state(data):
    return _state_from_map(_decode(data, KIND_STATE))


# --- Dispatch ---------------------------------------------------------------------------


def parse(data, channels=None):
    """Parse any message kind; ``channels`` (or a TelemetryCodec) scales telemetry."""
    m = _decode(data, None)
    kind = m[K_KIND]
    if kind == KIND_BIRTH:
        return _birth_from_map(m)
    if kind == KIND_DEATH:
        return _death_from_map(m)
    if kind == KIND_TELEMETRY:
        codec = channels
        if channels is not None and not isinstance(channels, TelemetryCodec):
            codec = TelemetryCodec(channels)
        return _telemetry_from_map(m, codec)
    if kind == KIND_EVENT:
        return _event_from_map(m)
    if kind == KIND_COMMAND:
        return _command_from_map(m)
    if kind == KIND_ACK:
        return _ack_from_map(m)
    if kind == KIND_LEASE:
        return _lease_from_map(m)
    return _state_from_map(m)


def kind_name(kind):
    """'telemetry' for KIND_TELEMETRY, etc."""
    if type(kind) is int and 0 < kind < len(_KIND_NAMES):
        return _KIND_NAMES[kind]
    raise MessageError("message.kind: {!r} not in 1..{}".format(kind, len(_KIND_NAMES) - 1))
