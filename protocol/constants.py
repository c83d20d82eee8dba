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
