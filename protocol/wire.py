"""What both sides of the wire share: keys, limits, the id and name rules, field types,
checks, the decoder and the Channel record (see protocol/SPEC.md).

Three modules make up the messages.  This one is imported by both of the others:

* protocol.messages (board side): the builders, ``TelemetryCodec`` and the parsers of
  what a module receives (COMMAND, LEASE).  Boards carry it and this module.
* protocol.host_messages (host side): the parsers of what modules send (BIRTH, DEATH,
  TELEMETRY, EVENT, ACK), of the host STATE, and ``parse`` of any kind.  Boards leave
  it out (edge/boardconfig/board_files.py).

Every problem raises ``MessageError`` (a ``ValueError``) naming the field, the value and
what is allowed.  Ids and names have one rule each, here (``ID_PATTERN``, ``NAME_PATTERN``):
host code that checks an id with ``re`` uses the pattern, boards use ``is_id``/``is_name``,
which allocate nothing.

MicroPython-compatible; imports nothing of flowskid but protocol.
"""

from protocol import cbor
from protocol.constants import (
    EVENT_DROPPED,
    EVENT_STATE_CHANGE,
    EVENT_TRIP,
    OP_NAMES,
    OP_STATE,
    PROTOCOL_VERSION,
    ROLE_NAMES,
    SERVICE_COMMANDS,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731

# Type-checker only (pyright treats TYPE_CHECKING as true; nothing is imported at run time).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


# --- Ids and names: the one rule of each ------------------------------------------------

# Ids (line, module, host, sender) are also MQTT topic levels: the rule leaves out
# wildcards ('+', '#'), the level separator ('/') and a leading '$'.
ID_MAX_LEN = const(32)
ID_PATTERN = "[a-z0-9][a-z0-9_-]{0,31}"
ID_RULE = ID_PATTERN + " (lowercase letters, digits, '_' and '-'; 1-32 chars)"
# Names (channels, states, interlocks, alarms, causes, config keys) are snake_case.
NAME_MAX_LEN = const(32)
NAME_PATTERN = "[a-z][a-z0-9_]{0,31}"
NAME_RULE = NAME_PATTERN + " (snake_case, 1-32 chars)"

# The patterns as character sets, for the allocation-free checks (tests/test_topics.py
# checks that they agree with the patterns).
_SNAKE_FIRST = "abcdefghijklmnopqrstuvwxyz"
_ID_FIRST = _SNAKE_FIRST + "0123456789"
_SNAKE_REST = _ID_FIRST + "_"
_ID_REST = _SNAKE_REST + "-"


def _chars_ok(v, first, rest):
    # 1-32 characters: ID_MAX_LEN == NAME_MAX_LEN.
    if type(v) is not str or not 0 < len(v) <= ID_MAX_LEN or v[0] not in first:
        return False
    for c in v:
        if c not in rest:
            return False
    return True


def is_id(v):
    """True if ``v`` is a str matching ID_PATTERN."""
    return _chars_ok(v, _ID_FIRST, _ID_REST)


def is_name(v):
    """True if ``v`` is a str matching NAME_PATTERN."""
    return _chars_ok(v, _SNAKE_FIRST, _SNAKE_REST)


def id_problem(v):
    """What is wrong with ``v`` as an id ("is empty", ...), or None if it is valid."""
    if not isinstance(v, str):
        return "must be a str, got " + type(v).__name__
    n = len(v)
    if n == 0:
        return "is empty"
    if n > ID_MAX_LEN:
        return "is {} characters long (max {})".format(n, ID_MAX_LEN)
    if v[0] not in _ID_FIRST:
        return "must start with a lowercase letter or digit, not {!r}".format(v[0])
    for i in range(1, n):
        if v[i] not in _ID_REST:
            return "has invalid character {!r} at index {}".format(v[i], i)
    return None


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


# Operations a birth may list as allowed in a state: every op but the generic "state"
# (which the service commands stand for) plus the service commands themselves.
ALLOWED_OPERATIONS = OP_NAMES[:OP_STATE] + OP_NAMES[OP_STATE + 1 :] + SERVICE_COMMANDS

KIND_NAMES = (
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

# Field types: what ``check`` accepts, and the ``_SPEC`` tables of the message records
# (protocol.messages).
T_INT = const(0)  # an int (never a bool) in lo..hi
T_TEXT = const(1)  # a str of lo..hi characters
T_BYTES = const(2)  # bytes (a bytearray is taken as bytes) of length lo..hi
T_ID = const(3)  # a module, host or sender id (ID_RULE)
T_NAME = const(4)  # a snake_case name (NAME_RULE)
T_BOOL = const(5)
T_NUMBER = const(6)  # a finite int or float
T_LIST = const(7)  # a list or tuple of lo..hi items
T_MAP = const(8)  # a dict of lo..hi entries
T_ENUM = const(9)  # lo is the names tuple: builders take a name or a code, parsers a code
T_OTHER = const(10)  # checked by the message kind's own code

# What each field type allows, for error messages (formatted with lo, hi).
_ALLOWED = (
    "{}..{}",
    "text of {}..{} chars",
    "bytes of length {}..{}",
    ID_RULE.replace("{", "{{").replace("}", "}}"),  # the {0,31} of the pattern
    NAME_RULE.replace("{", "{{").replace("}", "}}"),
    "true/false",
    "finite numbers",
    "a list of {}..{} items",
    "a map of {}..{} entries",
)


def fail(field, value, allowed) -> "NoReturn":
    """Raise MessageError: ``field``: ``value`` not in ``allowed``."""
    raise MessageError("{}: {!r} not in {}".format(field, value, allowed), field)


def finite_number(v):
    """True for an int or float that is neither inf nor nan (and never a bool)."""
    # bool is an int subclass on both CPython and MicroPython; it is never a number here.
    # inf - inf and nan - nan are nan, and nan compares unequal to everything.
    t = type(v)
    return (t is int or t is float) and v - v == 0


def check(field, v, kind, lo=0, hi=0) -> "Any":
    """``v`` if it is a valid ``kind`` field (bytes for a bytearray, the code for an enum
    name), else MessageError naming ``field``, ``v`` and what is allowed."""
    if kind == T_ENUM:
        return code_of(field, v, lo)
    if kind == T_BYTES and isinstance(v, bytearray):
        return check(field, bytes(v), kind, lo, hi)
    t = type(v)
    if kind == T_INT:
        ok = t is int and lo <= v <= hi
    elif kind == T_TEXT:
        ok = t is str and lo <= len(v) <= hi
    elif kind == T_BYTES:
        ok = t is bytes and lo <= len(v) <= hi
    elif kind == T_ID:
        ok = is_id(v)
    elif kind == T_NAME:
        ok = is_name(v)
    elif kind == T_BOOL:
        ok = t is bool
    elif kind == T_NUMBER:
        ok = finite_number(v)
    elif kind == T_LIST:
        ok = t is list or t is tuple
    else:
        ok = t is dict
    if not ok:
        fail(field, v, _ALLOWED[kind].format(lo, hi))
    if kind >= T_LIST and not lo <= len(v) <= hi:
        raise MessageError("{}: length {} not in {}..{}".format(field, len(v), lo, hi), field)
    return v


def code_of(field, v, names):
    """Name or code -> code (builders)."""
    if type(v) is int:
        if 0 <= v < len(names):
            return v
    elif type(v) is str and v in names:
        return names.index(v)
    fail(field, v, "{} (or code 0..{})".format("/".join(names), len(names) - 1))


def name_of(field, v, names):
    """Wire code -> name (parsers)."""
    if type(v) is not int or not 0 <= v < len(names):
        fail(field, v, "0..{} ({})".format(len(names) - 1, "/".join(names)))
    return names[v]


def check_keys(name, m, first, end, optional):
    """Keys of ``m`` are ints below ``end`` (strict: unknown keys are a newer protocol);
    those from ``first`` on are required unless ``optional``."""
    for k in m:
        if type(k) is not int or not 0 <= k < end:
            raise MessageError("{}: unexpected key {!r}".format(name, k), name)
    for k in range(first, end):
        if k not in m and k not in optional:
            raise MessageError("{}: missing required key {}".format(name, k), name)


def round_half_away(x):
    """round() with halves away from zero."""
    # Same result on CPython and MicroPython (their round() differ for halves), and the
    # usual metrology convention.  Half cases are rare: most decimals are inexact floats.
    if x >= 0:
        return int(x + 0.5)
    return -int(0.5 - x)


# --- Decoding (every parser starts here) -----------------------------------------------


def decode(data, expected_kind):
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
    if type(kind) is not int or kind < 1 or kind >= len(KIND_NAMES):
        fail("message.kind", kind, "1..8")
    if expected_kind is not None and kind != expected_kind:
        fail("message.kind", kind, "{} ({})".format(expected_kind, KIND_NAMES[expected_kind]))
    version = m.get(K_VERSION)
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise MessageError(
            "{}.version: protocol version {!r} not supported (this side speaks {})".format(
                KIND_NAMES[kind], version, PROTOCOL_VERSION
            ),
            "{}.version".format(KIND_NAMES[kind]),
        )
    return m


def map_values(cls, m):
    """``cls._FIELDS`` values of a decoded message map: keys checked, values checked as
    ``cls._SPEC`` says (enums come back as names); None for an absent optional key,
    T_OTHER values as they are (their parser checks them)."""
    name = KIND_NAMES[cls.KIND]
    spec = cls._SPEC
    check_keys(name, m, 2, len(spec) + 2, cls._OPTIONAL)
    values = []
    for i in range(len(spec)):
        v = m.get(i + 2)
        kind = spec[i][0]
        if kind == T_ENUM:
            v = name_of(name + "." + cls._FIELDS[i], v, spec[i][1])
        elif kind != T_OTHER and i + 2 in m:
            v = check(name + "." + cls._FIELDS[i], v, *spec[i])
        values.append(v)
    return values


# --- Records ----------------------------------------------------------------------------
# A message record (protocol.messages) has KIND, ``_FIELDS`` (field i travels at key
# i + 2), ``_OPTIONAL`` (wire keys that may be left out) and ``_SPEC``: per field,
# (field type, lo, hi) for ``check``.


class Record:
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


class Channel(Record):
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


# --- Channels and scaling ---------------------------------------------------------------


def scale_of(resolution):
    """Integer N when resolution == 1/N (0.01 -> 100), else 0 (use the resolution itself).

    Dividing by N on decode gives the correctly rounded decimal (8012 / 100 == 80.12,
    while 8012 * 0.01 == 80.12000000000001); the tolerance lets a single-precision
    board, which sees 0.01 as 0.0099999998, reach the same N.
    """
    inv = 1.0 / resolution
    n = round_half_away(inv)
    if n >= 1 and abs(inv - n) <= 1e-6 * n:
        return n
    return 0


def to_raw(value, scale, resolution):
    """The wire integer of ``value`` for a channel of this resolution (see scale_of)."""
    if scale:
        return round_half_away(value * scale)
    return round_half_away(value / resolution)


def check_channel(field, ch, alias):
    """Validate one Channel (built, or parsed from a birth) and return its wire map."""
    if not isinstance(ch, Channel):
        fail(field, ch, "Channel objects")
    if ch.alias is not None and ch.alias != alias:
        fail(field + ".alias", ch.alias, "{} (its position)".format(alias))
    check(field + ".name", ch.name, T_TEXT, 1, NAME_MAX_LEN)
    check(field + ".unit", ch.unit, T_TEXT, 0, UNIT_MAX_LEN)
    role = code_of(field + ".role", ch.role, ROLE_NAMES)
    lo = check(field + ".lo", ch.lo, T_NUMBER)
    hi = check(field + ".hi", ch.hi, T_NUMBER)
    if not lo < hi:
        fail(field + ".hi", hi, "numbers greater than lo={!r}".format(lo))
    res = ch.resolution
    out = {KC_NAME: ch.name, KC_UNIT: ch.unit, KC_ROLE: role, KC_MIN: lo, KC_MAX: hi}
    if res is not None:
        if not finite_number(res) or res <= 0:
            fail(field + ".resolution", res, "positive finite numbers or None")
        scale = scale_of(res)
        for bound in (lo, hi):
            if abs(to_raw(bound, scale, res)) > RAW_LIMIT:
                fail(
                    field + ".resolution",
                    res,
                    "resolutions keeping range/resolution within +-2147483647",
                )
        out[KC_RESOLUTION] = res
    return out


def check_channels(field, channels):
    """Validate a channel list (alias = position, names unique); returns the wire maps."""
    check(field, channels, T_LIST, 0, MAX_CHANNELS)
    out = []
    seen = {}
    for i in range(len(channels)):
        f = "{}[{}]".format(field, i)
        out.append(check_channel(f, channels[i], i))
        name = channels[i].name
        if name in seen:
            fail(
                f + ".name",
                name,
                "names unique within the module (also used by alias {})".format(seen[name]),
            )
        seen[name] = i
    return out


# --- Rules of one message kind, shared by its builder and its parser --------------------


def check_states(field, states, state):
    """BIRTH states: each state name -> the ALLOWED_OPERATIONS accepted in it; ``state``
    is one of them.  Returns the map with list values."""
    check(field, states, T_MAP, 1, MAX_STATES)
    out = {}
    for name in states:
        sf = "{}[{!r}]".format(field, name)
        check(sf, name, T_TEXT, 1, NAME_MAX_LEN)
        ops = check(sf, states[name], T_LIST, 0, len(ALLOWED_OPERATIONS))
        for j in range(len(ops)):
            if ops[j] not in ALLOWED_OPERATIONS:
                fail("{}[{}]".format(sf, j), ops[j], "/".join(ALLOWED_OPERATIONS))
        out[name] = list(ops)
    if type(state) is not str or state not in out:
        fail("birth.state", state, "the states listed in birth.states")
    return out


def event_rules(tcode, source, cause, count, state):
    """The EVENT rules that depend on the type code ``tcode``."""
    if source is not None:
        check_target("event.source", source)
    if cause is None and tcode == EVENT_TRIP:
        fail("event.cause", cause, NAME_RULE + " (required for trips)")
    if tcode == EVENT_DROPPED:
        check("event.count", count, T_INT, 1, U32_MAX)
    elif count is not None:
        fail("event.count", count, "None (only dropped events carry a count)")
    if tcode == EVENT_STATE_CHANGE:
        check("event.state", state, T_TEXT, 1, NAME_MAX_LEN)
    elif state is not None:
        fail("event.state", state, "None (only state_change events carry a state)")


def check_target(field, v):
    """An event source or a command target: a channel alias or a snake_case name."""
    if type(v) is int:
        return check(field, v, T_INT, 0, MAX_CHANNELS - 1)
    if not is_name(v):
        fail(field, v, "a channel alias 0..63 or a " + NAME_RULE + " id")
    return v
