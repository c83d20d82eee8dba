"""Parsers of the messages modules send: BIRTH, DEATH, TELEMETRY, EVENT, ACK, and of the
host's STATE, plus ``parse`` of any kind.  Host side.

Modules build these messages and parse only COMMAND and LEASE (protocol.messages), so this
module is left out of board bundles (edge/boardconfig/board_files.py) to keep them small.
It builds on the shared protocol.wire (keys, checks, decoder) and on protocol.messages'
records; nothing on the board side imports it.  Same rules as protocol.messages: every
problem raises ``MessageError`` naming the field, the value and what is allowed.

MicroPython-compatible (the cross-runtime tests parse under MicroPython too).
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
    QUALITY_BAD,
    QUALITY_GOOD,
    ROLE_NAMES,
)
from protocol.messages import (
    Ack,
    Birth,
    Death,
    Event,
    HostState,
    Telemetry,
    TelemetryCodec,
    command_from_map,
    lease_from_map,
)
from protocol.wire import (
    K_EVENT_TYPE,
    K_KIND,
    K_QUALITY,
    K_RESULT,
    KC_MAX,
    KC_MIN,
    KC_NAME,
    KC_RESOLUTION,
    KC_ROLE,
    KC_UNIT,
    MAX_CHANNELS,
    T_INT,
    T_LIST,
    T_MAP,
    Channel,
    MessageError,
    check,
    check_channel,
    check_channels,
    check_keys,
    check_states,
    decode,
    event_rules,
    fail,
    finite_number,
    map_values,
    name_of,
)

# --- BIRTH ------------------------------------------------------------------------------


def _channel_from_wire(field, m, alias):
    check(field, m, T_MAP, 5, 6)
    check_keys(field, m, 0, 6, (KC_RESOLUTION,))
    if KC_RESOLUTION in m and m[KC_RESOLUTION] is None:
        fail(field + ".resolution", None, "positive finite numbers (omit the key for none)")
    ch = Channel(
        m[KC_NAME],
        m[KC_UNIT],
        name_of(field + ".role", m[KC_ROLE], ROLE_NAMES),
        m[KC_MIN],
        m[KC_MAX],
        m.get(KC_RESOLUTION),
        alias,
    )
    check_channel(field, ch, alias)
    return ch


def _birth_values(v):
    raw = check("birth.channels", v[7], T_LIST, 0, MAX_CHANNELS)
    channels = []
    for i in range(len(raw)):
        channels.append(_channel_from_wire("birth.channels[{}]".format(i), raw[i], i))
    check_channels("birth.channels", channels)  # uniqueness of names
    v[7] = channels
    v[8] = check_states("birth.states", v[8], v[9])


def parse_birth(data):
    return _from_map(decode(data, KIND_BIRTH))


# --- DEATH ------------------------------------------------------------------------------


def parse_death(data):
    return _from_map(decode(data, KIND_DEATH))


# --- TELEMETRY --------------------------------------------------------------------------


def _scale_values(codec, values):
    """Wire numbers -> real numbers, range-checked per channel of ``codec``."""
    n = codec._n
    if len(values) != n:
        raise MessageError(
            "telemetry.values: length {} not in {}..{}".format(len(values), n, n),
            "telemetry.values",
        )
    out = [None] * n  # type: list[object]
    for i in range(n):
        v = values[i]
        if v is None:
            continue
        f = "telemetry.values[{}]".format(i)
        r = codec._res[i]
        if r is None:
            if not codec._rlo[i] <= v <= codec._rhi[i]:
                fail(f, v, "{}..{}".format(codec._lo[i], codec._hi[i]))
            out[i] = float(v)
        else:
            if type(v) is not int or v < codec._rlo[i] or v > codec._rhi[i]:
                fail(f, v, "integers {}..{}".format(codec._rlo[i], codec._rhi[i]))
            scale = codec._scale[i]
            out[i] = v / scale if scale else v * r
    return out


def _telemetry_values(v, has_quality, codec):
    values = check("telemetry.values", v[2], T_LIST, 0, MAX_CHANNELS)
    n = len(values)
    qualities = [QUALITY_GOOD] * n
    qm = v[3]
    if qm is not None:
        check("telemetry.quality", qm, T_MAP, 1, n or 1)
        for alias in qm:
            if type(alias) is not int or not 0 <= alias < n:
                fail("telemetry.quality", alias, "aliases 0..{}".format(n - 1))
            qualities[alias] = check(
                "telemetry.quality[{}]".format(alias), qm[alias], T_INT, 1, QUALITY_BAD
            )
    elif has_quality:
        fail("telemetry.quality", None, "a map (omit the key when all values are GOOD)")
    for i in range(n):
        x = values[i]
        if x is None:
            if qualities[i] == QUALITY_GOOD:
                fail("telemetry.values[{}]".format(i), x, "numbers (null needs a non-GOOD quality)")
        elif not finite_number(x):
            fail("telemetry.values[{}]".format(i), x, "finite numbers or null")
    v[2] = list(values) if codec is None else _scale_values(codec, values)
    v[3] = qualities


def parse_telemetry(data, channels=None):
    """Parse telemetry; with the birth's ``channels`` (or a TelemetryCodec) the values
    come back as real numbers range-checked per channel, without them as wire numbers."""
    return _from_map(decode(data, KIND_TELEMETRY), channels)


# --- EVENT, ACK, STATE ------------------------------------------------------------------


def parse_event(data):
    return _from_map(decode(data, KIND_EVENT))


def parse_ack(data):
    return _from_map(decode(data, KIND_ACK))


def parse_state(data):
    return _from_map(decode(data, KIND_STATE))


# --- Dispatch ---------------------------------------------------------------------------

# The record class of each kind the host parses here (COMMAND and LEASE: protocol.messages).
_CLASSES = (None, Birth, Death, Telemetry, Event, None, Ack, None, HostState)


def _from_map(m, channels=None):
    """The record of a decoded message map of any kind (header already checked by
    decode); COMMAND and LEASE come out exactly as protocol.messages parses them."""
    kind = m[K_KIND]
    if kind == KIND_COMMAND:
        return command_from_map(m)
    if kind == KIND_LEASE:
        return lease_from_map(m)
    cls = _CLASSES[kind]
    if kind == KIND_EVENT:
        for key in cls._OPTIONAL:
            if key in m and m[key] is None:
                raise MessageError("event: key {} is null (omit it instead)".format(key), "event")
    v = map_values(cls, m)
    if kind == KIND_BIRTH:
        _birth_values(v)
    elif kind == KIND_TELEMETRY:
        if channels is not None and not isinstance(channels, TelemetryCodec):
            channels = TelemetryCodec(channels)
        _telemetry_values(v, K_QUALITY in m, channels)
    elif kind == KIND_EVENT:
        event_rules(m[K_EVENT_TYPE], v[4], v[5], v[7], v[8])
    elif kind == KIND_ACK:
        v[1] = m[K_RESULT]  # ACK results stay RESULT_* codes
    return cls(*v)


def parse(data, channels=None):
    """Parse any message kind; ``channels`` (or a TelemetryCodec) scales telemetry."""
    return _from_map(decode(data, None), channels)
