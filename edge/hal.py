"""Hardware abstraction: the two interfaces every edge driver implements.

``Sensor.read(now_ms)`` returns one raw reading in the driver's ``raw_unit`` (volts, mA,
ohms, counts, or 0/1 for a digital input), or None when the device could not be read.
Device faults never raise out of ``read``: the driver catches ``OSError`` (bus error, no
ACK), sets ``fault`` to a short code for the signal layer (``SensorChannel.update(raw,
now_ms, fault=sensor.fault)``) and keeps a readable message in ``last_error``.

* ``fault`` describes the *latest* read: None after a good one.
* ``last_error`` is sticky: the most recent failure message, kept for diagnostics.

``Actuator.write(value)`` takes an engineering value (heater duty 0..1, valve 0/1, pump
mL/min) inside ``[min, max]``.  Nothing is clamped silently: a value outside the range
(or NaN) raises ValueError, because the runtime validates first and a value that gets
here out of range is a bug to surface, not to hide.  ``safe()`` writes ``safe_value``;
hardware drivers write it once at construction, so outputs come up in their safe state.
``value`` is the last value written.

Drivers receive their bus and pin objects (injected by a hardware provider, see
``edge.drivers``); nothing in here creates hardware.
"""

# Raw units (``Sensor.raw_unit``).
UNIT_VOLT = "V"
UNIT_MILLIAMP = "mA"
UNIT_OHM = "ohm"
UNIT_COUNT = "count"
UNIT_DIGITAL = "0/1"

# Short fault codes (``Sensor.fault``).  "open" and "short" are the signal layer's
# REASON_OPEN / REASON_SHORT (edge.signals), so they pass straight through.
FAULT_OPEN = "open"
FAULT_SHORT = "short"
FAULT_BUS = "bus"  # the bus transaction failed (OSError: no ACK, timeout, ...)
FAULT_DEVICE = "device"  # the device answered but reports a fault or lost its config
FAULT_STARTING = "starting"  # configured, first conversion not ready yet


class Sensor:
    """Base class for inputs: subclasses implement ``read``."""

    raw_unit = UNIT_VOLT

    def __init__(self):
        self.fault = None
        self.last_error = None

    def read(self, now_ms):
        """One raw reading in ``raw_unit``, or None (see ``fault``/``last_error``)."""
        raise NotImplementedError

    def _ok(self, raw):
        self.fault = None
        return raw

    def _failed(self, fault, message):
        self.fault = fault
        self.last_error = message
        return None


def _is_number(x):
    return isinstance(x, (int, float))


class Actuator:
    """Base class for outputs: subclasses implement ``_apply(value)``.

    ``name`` only labels error messages.  ``lo``/``hi`` are the inclusive range
    (``min``/``max``) and ``safe`` must lie inside it.
    """

    def __init__(self, lo, hi, safe, name="actuator"):
        self.name = name
        if not (_is_number(lo) and _is_number(hi)) or not lo < hi:
            raise ValueError(
                "{}: range must be two numbers [min, max] with min < max, got [{!r}, {!r}]".format(
                    name, lo, hi
                )
            )
        self.min = lo
        self.max = hi
        self._check(safe, "safe value")
        self.safe_value = safe
        self.value = None
        self.writes = 0

    def _check(self, value, what):
        # ``not lo <= v <= hi`` is also true for NaN.
        if not _is_number(value) or not self.min <= value <= self.max:
            raise ValueError(
                "{}: {} {!r} outside range [{}, {}]".format(
                    self.name, what, value, self.min, self.max
                )
            )

    def write(self, value):
        """Drive the output to ``value`` (engineering units); ValueError if out of range."""
        self._check(value, "value")
        self._apply(value)
        self.value = value
        self.writes += 1

    def safe(self):
        """Drive the output to its declared safe value."""
        self.write(self.safe_value)

    def _apply(self, value):
        raise NotImplementedError
