"""Numeric codes shared by every message kind (see protocol/SPEC.md).

Kept in one small module so edge code can import the codes without pulling in the
message builders.  Values are part of the wire format: never renumber.
"""

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


PROTOCOL_VERSION = const(1)

# Message kinds (key 0 of every message map is the kind, key 1 the protocol version).
KIND_BIRTH = const(1)
KIND_DEATH = const(2)
KIND_TELEMETRY = const(3)
KIND_EVENT = const(4)
KIND_COMMAND = const(5)
KIND_ACK = const(6)
KIND_LEASE = const(7)
KIND_STATE = const(8)

# Per-value quality.  GOOD is 0 so the common all-good case can be omitted on the wire.
QUALITY_GOOD = const(0)
QUALITY_UNCERTAIN = const(1)
QUALITY_BAD = const(2)

# ACK result codes.
RESULT_OK = const(0)
RESULT_OUT_OF_RANGE = const(1)
RESULT_NOT_ALLOWED_IN_STATE = const(2)
RESULT_UNKNOWN = const(3)
RESULT_EXPIRED = const(4)
RESULT_UNAUTHENTICATED = const(5)
RESULT_REPLAYED = const(6)
RESULT_BUSY = const(7)
RESULT_MALFORMED = const(8)

RESULT_NAMES = (
    "ok",
    "out_of_range",
    "not_allowed_in_state",
    "unknown",
    "expired",
    "unauthenticated",
    "replayed",
    "busy",
    "malformed",
)

# --- Enumerations carried as small unsigned integers ------------------------------------
# Each *_NAMES tuple is indexed by the wire code; the Python API speaks the names.

# Module kinds (birth).
MODULE_PUMP = const(0)
MODULE_REACTOR = const(1)
MODULE_BPR = const(2)
MODULE_VALVE = const(3)
MODULE_ANALYZER = const(4)
MODULE_KIND_NAMES = ("pump", "reactor", "bpr", "valve", "analyzer")

# Reset causes (birth).  0 is "unknown" so a port that cannot tell reports the default.
RESET_UNKNOWN = const(0)
RESET_POWER_ON = const(1)
RESET_WATCHDOG = const(2)
RESET_SOFT = const(3)
RESET_BROWNOUT = const(4)
RESET_CAUSE_NAMES = ("unknown", "power_on", "watchdog", "soft", "brownout")

# Channel roles (birth).
ROLE_SENSOR = const(0)
ROLE_ACTUATOR = const(1)
ROLE_SETPOINT = const(2)
ROLE_STATUS = const(3)
ROLE_NAMES = ("sensor", "actuator", "setpoint", "status")

QUALITY_NAMES = ("good", "uncertain", "bad")

# Event types (event).
EVENT_ALARM = const(0)
EVENT_ALARM_CLEARED = const(1)
EVENT_TRIP = const(2)
EVENT_TRIP_RESET = const(3)
EVENT_STATE_CHANGE = const(4)
EVENT_OPERATOR_ACTION = const(5)
EVENT_DROPPED = const(6)
EVENT_TYPE_NAMES = (
    "alarm",
    "alarm_cleared",
    "trip",
    "trip_reset",
    "state_change",
    "operator_action",
    "dropped",
)

# Event severities (event), ordered: a larger code is more severe.
SEVERITY_INFO = const(0)
SEVERITY_WARNING = const(1)
SEVERITY_ERROR = const(2)
SEVERITY_CRITICAL = const(3)
SEVERITY_NAMES = ("info", "warning", "error", "critical")

# Command operations (command).
OP_SET_SETPOINT = const(0)
OP_STATE = const(1)
OP_RESET_TRIP = const(2)
OP_ACK_ALARM = const(3)
OP_REBIRTH = const(4)
OP_CONFIGURE = const(5)
OP_NAMES = ("set_setpoint", "state", "reset_trip", "ack_alarm", "rebirth", "configure")

# Service commands carried by OP_STATE (PackML / MTP vocabulary).  They travel as text
# because the set is the state machine's, not the wire format's; births list, per state,
# which of these (and which OP_NAMES other than "state") the module accepts.
SERVICE_COMMANDS = (
    "start",
    "stop",
    "hold",
    "unhold",
    "suspend",
    "unsuspend",
    "abort",
    "clear",
    "reset",
    "complete",
    "pause",
    "resume",
    "restart",
)
