"""Build every flowskid message kind, and parse what a module receives (see
protocol/SPEC.md).  Board side: modules carry this module and protocol.wire.

A message is a CBOR map with small integer keys: key 0 is the kind, key 1 the protocol
version, the rest are kind specific (protocol.wire has the keys).  ``build_<kind>(...)``
validates its arguments and returns the encoded bytes.  ``parse_command`` and
``parse_lease`` decode, validate and return a small ``__slots__`` record; the parsers of
what modules send live in protocol.host_messages (host side, not on boards).  Every
problem raises ``MessageError`` (a ``ValueError``, from protocol.wire) naming the field,
the value and what is allowed.

Enumerations travel as small integers (codes in protocol.constants); builders accept the
name or the code, parsers return the name (ACK results stay integer RESULT_* codes).

Telemetry is the hot path: ``TelemetryCodec(channels)`` precomputes the channel scaling
once and reuses its output list and map for every ``build``.

MicroPython-compatible.
"""

from protocol import cbor
from protocol.constants import (
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
    RESET_CAUSE_NAMES,
    RESULT_NAMES,
    SERVICE_COMMANDS,
    SEVERITY_NAMES,
)
from protocol.wire import (
    AUTH_TAG_LEN,
    BOOT_NONCE_MAX,
    BOOT_NONCE_MIN,
    CONFIG_HASH_MAX,
    CONFIG_HASH_MIN,
    CONFIG_TEXT_MAX_LEN,
    K_ARGS,
    K_AUTH,
    K_CAUSE,
    K_COUNT,
    K_DETAIL,
    K_EVENT_TYPE,
    K_KIND,
    K_LEASE_TAGS,
    K_NEW_STATE,
    K_OP,
    K_QUALITY,
    K_REASON,
    K_SEQ,
    K_SOURCE,
    K_TIME,
    K_VALUES,
    K_VERSION,
    KA_CHANNEL,
    KA_COMMAND,
    KA_TARGET,
    KA_VALUE,
    KIND_NAMES,
    LEASE_DURATION_MAX_MS,
    LEASE_MAX_TAGS,
    MAX_CHANNELS,
    MAX_CONFIG_ENTRIES,
    NAME_MAX_LEN,
    T_BOOL,
    T_BYTES,
    T_ENUM,
    T_ID,
    T_INT,
    T_MAP,
    T_NAME,
    T_NUMBER,
    T_OTHER,
    T_TEXT,
    TEXT_MAX_LEN,
    U32_MAX,
    U64_MAX,
    # The builders take Channels and raise MessageError: importable from here too.
    Channel,  # noqa: F401
    MessageError,  # noqa: F401
    Record,
    check,
    check_channels,
    check_states,
    check_target,
    code_of,
    decode,
    event_rules,
    fail,
    map_values,
    scale_of,
    to_raw,
)

# --- Encoding ---------------------------------------------------------------------------


def _encode(msg):
    """Every builder goes through here (tests hook it to validate against the CDDL)."""
    return cbor.encode(msg)


def _build(cls, values):
    """The message map of kind ``cls.KIND`` from ``values`` (in ``cls._FIELDS`` order),
    each checked as ``cls._SPEC`` says; the key of field i is i + 2.  None leaves an
    optional key out; T_OTHER values go in as given (their builder checks them)."""
    kind = cls.KIND
    msg = {K_KIND: kind, K_VERSION: PROTOCOL_VERSION}
    spec = cls._SPEC
    for i in range(len(spec)):
        v = values[i]
        if v is None and i + 2 in cls._OPTIONAL:
            continue
        if spec[i][0] != T_OTHER:
            v = check(KIND_NAMES[kind] + "." + cls._FIELDS[i], v, *spec[i])
        msg[i + 2] = v
    return msg


# --- Records (what the parsers return; see protocol.wire.Record) ------------------------


class Birth(Record):
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
        (T_ID,),
        (T_ENUM, MODULE_KIND_NAMES),
        (T_TEXT, 1, NAME_MAX_LEN),
        (T_BYTES, CONFIG_HASH_MIN, CONFIG_HASH_MAX),
        (T_ENUM, RESET_CAUSE_NAMES),
        (T_INT, 0, 255),
        (T_BYTES, BOOT_NONCE_MIN, BOOT_NONCE_MAX),
        (T_OTHER,),
        (T_OTHER,),
        (T_OTHER,),
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


class Death(Record):
    KIND = KIND_DEATH
    _FIELDS = ("bdseq",)
    _SPEC = ((T_INT, 0, 255),)
    __slots__ = _FIELDS

    def __init__(self, bdseq):
        self.bdseq = bdseq


class Telemetry(Record):
    """``values`` are real numbers when parsed with the channel list (raw wire numbers
    otherwise); ``qualities`` is a parallel list of QUALITY_* codes."""

    KIND = KIND_TELEMETRY
    _FIELDS = ("seq", "t_ms", "values", "qualities")
    _SPEC = ((T_INT, 0, 255), (T_INT, 0, U64_MAX), (T_OTHER,), (T_OTHER,))
    _OPTIONAL = (K_QUALITY,)
    __slots__ = _FIELDS

    def __init__(self, seq, t_ms, values, qualities):
        self.seq = seq
        self.t_ms = t_ms
        self.values = values
        self.qualities = qualities


class Event(Record):
    KIND = KIND_EVENT
    _FIELDS = ("number", "t_ms", "type", "severity", "source", "cause", "detail", "count", "state")
    # count and state: their presence depends on the type (see event_rules).
    _SPEC = (
        (T_INT, 0, U32_MAX),
        (T_INT, 0, U64_MAX),
        (T_ENUM, EVENT_TYPE_NAMES),
        (T_ENUM, SEVERITY_NAMES),
        (T_OTHER,),
        (T_NAME,),
        (T_TEXT, 0, TEXT_MAX_LEN),
        (T_INT, 1, U32_MAX),
        (T_TEXT, 1, NAME_MAX_LEN),
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


class Auth(Record):
    _FIELDS = ("sender", "counter", "tag")
    __slots__ = _FIELDS

    def __init__(self, sender, counter, tag):
        self.sender = sender
        self.counter = counter
        self.tag = tag


class Command(Record):
    """``args`` maps argument names (channel, value, command, target, config) to values."""

    KIND = KIND_COMMAND
    _FIELDS = ("command_id", "op", "args", "expiry_ms", "auth")
    _SPEC = ((T_INT, 0, U32_MAX), (T_ENUM, OP_NAMES), (T_OTHER,), (T_INT, 0, U64_MAX), (T_OTHER,))
    _OPTIONAL = (K_ARGS, K_AUTH)
    __slots__ = _FIELDS

    def __init__(self, command_id, op, args, expiry_ms, auth):
        self.command_id = command_id
        self.op = op
        self.args = args
        self.expiry_ms = expiry_ms
        self.auth = auth

    def unsigned_bytes(self):
        """Canonical encoding of this command without its auth block: what a host signs.
        Host side only: a module checks the tag over the bytes it received
        (protocol.auth.CommandVerifier.verify), because on a float32 board this
        re-encoding of the parsed values differs from what was signed."""
        return build_command(self.command_id, self.op, self.args, self.expiry_ms)


class Ack(Record):
    KIND = KIND_ACK
    _FIELDS = ("command_id", "result", "reason")
    _SPEC = ((T_INT, 0, U32_MAX), (T_ENUM, RESULT_NAMES), (T_TEXT, 0, TEXT_MAX_LEN))
    _OPTIONAL = (K_REASON,)
    __slots__ = _FIELDS

    def __init__(self, command_id, result, reason):
        self.command_id = command_id
        self.result = result
        self.reason = reason

    @property
    def result_name(self):
        return RESULT_NAMES[self.result]


class Lease(Record):
    """``tags`` maps module id -> 16-byte tag (protocol.auth.sign_lease), or None for an
    unsigned lease (accepted by unkeyed modules only)."""

    KIND = KIND_LEASE
    _FIELDS = ("host_id", "host_time_ms", "seq", "duration_ms", "tags")
    _SPEC = (
        (T_ID,),
        (T_INT, 0, U64_MAX),
        (T_INT, 0, U64_MAX),
        (T_INT, 1, LEASE_DURATION_MAX_MS),
        (T_OTHER,),
    )
    _OPTIONAL = (K_LEASE_TAGS,)
    __slots__ = _FIELDS

    def __init__(self, host_id, host_time_ms, seq, duration_ms, tags=None):
        self.host_id = host_id
        self.host_time_ms = host_time_ms
        self.seq = seq
        self.duration_ms = duration_ms
        self.tags = tags


class HostState(Record):
    KIND = KIND_STATE
    _FIELDS = ("online", "t_ms")
    _SPEC = ((T_BOOL,), (T_INT, 0, U64_MAX))
    __slots__ = _FIELDS

    def __init__(self, online, t_ms):
        self.online = online
        self.t_ms = t_ms


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
        check_channels("birth.channels", channels),
        check_states("birth.states", states, state),
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
        check_channels("telemetry.channels", channels)
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
                s = scale_of(res)
                self._scale[i] = s
                self._res[i] = res
                self._rlo[i] = to_raw(lo, s, res)
                self._rhi[i] = to_raw(hi, s, res)
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
            fail("telemetry.seq", seq, "0..255")
        if type(t_ms) is not int or t_ms < 0 or t_ms > U64_MAX:
            check("telemetry.t_ms", t_ms, T_INT, 0, U64_MAX)
        n = self._n
        if (type(values) is not list and type(values) is not tuple) or len(values) != n:
            fail("telemetry.values", values, "a list of {} values (one per channel)".format(n))
        qmap = None
        if qualities is not None:
            t = type(qualities)
            if (t is not list and t is not tuple) or len(qualities) != n:
                fail("telemetry.qualities", qualities, "a list of {} QUALITY_* codes".format(n))
            for i in range(n):
                q = qualities[i]
                if q:
                    if type(q) is not int or q < 0 or q > QUALITY_BAD:
                        fail("telemetry.qualities[{}]".format(i), q, "0..2")
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
                    fail(
                        "telemetry.values[{}]".format(i),
                        v,
                        "numbers (None needs a non-GOOD quality)",
                    )
                out[i] = None
                continue
            t = type(v)
            if (t is not float and t is not int) or not lo[i] <= v <= hi[i]:
                fail("telemetry.values[{}]".format(i), v, "{}..{}".format(lo[i], hi[i]))
            r = res[i]
            if r is None:
                out[i] = cbor.Float32(v)
            else:
                out[i] = to_raw(v, scale[i], r)
        msg = self._msg
        msg[K_SEQ] = seq
        msg[K_TIME] = t_ms
        msg[K_VALUES] = out
        if qmap is not None:
            msg[K_QUALITY] = qmap
        elif K_QUALITY in msg:
            del msg[K_QUALITY]
        return _encode(msg)


def build_telemetry(seq, t_ms, values, channels, qualities=None):
    """One-off telemetry build; on the hot path keep a TelemetryCodec instead."""
    return TelemetryCodec(channels).build(seq, t_ms, values, qualities)


# --- EVENT ------------------------------------------------------------------------------


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
    event_rules(msg[K_EVENT_TYPE], source, cause, count, state)
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


def _check_config(field, cfg):
    check(field, cfg, T_MAP, 1, MAX_CONFIG_ENTRIES)
    for k in cfg:
        kf = "{}[{!r}]".format(field, k)
        check(field + " key", k, T_NAME)
        v = cfg[k]
        t = type(v)
        if t is int:
            check(kf, v, T_INT, -U64_MAX - 1, U64_MAX)
        elif t is float:
            check(kf, v, T_NUMBER)
        elif t is str:
            check(kf, v, T_TEXT, 0, CONFIG_TEXT_MAX_LEN)
        elif v is not None and t is not bool:
            fail(kf, v, "null, bool, int, finite float or text up to 64 chars")
    return cfg


def _check_args(op_code, args, by_name):
    """Validate op arguments; returns the wire map (int keys).

    ``by_name``: True when ``args`` is keyed by name (builder), False by wire key.
    """
    if args is None:
        args = {}
    check("command.args", args, T_MAP, 0, 5)
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
            fail(
                "command.args",
                k,
                "arguments of {}: {}".format(op, "/".join(required + optional) or "none"),
            )
        wire[_ARG_NAMES.index(name)] = args[k]
    for name in required:
        if _ARG_NAMES.index(name) not in wire:
            fail("command.args." + name, None, "a value (required by {})".format(op))
    for k in wire:
        f = "command.args." + _ARG_NAMES[k]
        v = wire[k]
        if k == KA_CHANNEL:
            check(f, v, T_INT, 0, MAX_CHANNELS - 1)
        elif k == KA_VALUE:
            check(f, v, T_NUMBER)
        elif k == KA_COMMAND:
            if type(v) is not str or v not in SERVICE_COMMANDS:
                fail(f, v, "/".join(SERVICE_COMMANDS))
        elif k == KA_TARGET:
            check_target(f, v)
        else:
            _check_config(f, v)
    return wire


def _check_auth(auth):
    if isinstance(auth, Auth):
        auth = (auth.sender, auth.counter, auth.tag)
    elif (type(auth) is not list and type(auth) is not tuple) or len(auth) != 3:
        fail("command.auth", auth, "Auth(sender, counter, tag) or a 3-item list")
    return Auth(
        check("command.auth.sender", auth[0], T_ID),
        check("command.auth.counter", auth[1], T_INT, 0, U64_MAX),
        check("command.auth.tag", auth[2], T_BYTES, AUTH_TAG_LEN, AUTH_TAG_LEN),
    )


def build_command(command_id, op, args, expiry_ms, auth=None):
    """COMMAND.  ``args`` by name: set_setpoint {channel, value}, state {command},
    reset_trip/ack_alarm {target?}, rebirth {}, configure {config}.  ``expiry_ms`` is host
    time (ms since the Unix epoch).  ``auth`` is usually added by protocol.auth.sign_command.
    """
    op_code = code_of("command.op", op, OP_NAMES)
    wire_args = _check_args(op_code, args, True) or None
    if auth is not None:
        a = _check_auth(auth)
        auth = [a.sender, a.counter, a.tag]
    return _encode(_build(Command, (command_id, op_code, wire_args, expiry_ms, auth)))


def command_from_map(m):
    """The Command of a decoded COMMAND map (protocol.wire.decode)."""
    v = map_values(Command, m)
    if K_ARGS in m:
        check("command.args", m[K_ARGS], T_MAP, 1, 5)
    wire = _check_args(m[K_OP], v[2], False)
    args = {}
    for k in wire:
        args[_ARG_NAMES[k]] = wire[k]
    v[2] = args
    if K_AUTH in m:
        v[4] = _check_auth(v[4])
    return Command(*v)


def parse_command(data):
    return command_from_map(decode(data, KIND_COMMAND))


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
        check("lease.tags", tags, T_MAP, 1, LEASE_MAX_TAGS)
        wire = {}
        for module_id in tags:
            tag = tags[module_id]
            wire[module_id] = bytes(tag) if isinstance(tag, bytearray) else tag
        tags = _check_lease_tags(wire)
    return _encode(_build(Lease, (host_id, host_time_ms, seq, duration_ms, tags)))


def _check_lease_tags(tags):
    """``tags`` if it is a map of 1..LEASE_MAX_TAGS module ids -> 16-byte tags."""
    check("lease.tags", tags, T_MAP, 1, LEASE_MAX_TAGS)
    for module_id in tags:
        check("lease.tags key", module_id, T_ID)
        tag = tags[module_id]
        if type(tag) is not bytes or len(tag) != AUTH_TAG_LEN:
            fail("lease.tags[{!r}]".format(module_id), tag, "bytes of length 16..16")
    return tags


def lease_from_map(m):
    """The Lease of a decoded LEASE map (protocol.wire.decode)."""
    v = map_values(Lease, m)
    if K_LEASE_TAGS in m:
        _check_lease_tags(v[4])
    return Lease(*v)


def parse_lease(data):
    return lease_from_map(decode(data, KIND_LEASE))


# --- STATE (retained host state) --------------------------------------------------------


def build_state(online, t_ms):
    """STATE: retained host presence; ``t_ms`` is host time (ms since the Unix epoch)."""
    return _encode(_build(HostState, (online, t_ms)))
