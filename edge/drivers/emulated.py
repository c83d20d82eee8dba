"""Emulated I/O: the plant emulator stands in for the hardware.

The emulator writes sensor readings with ``set_raw(v)`` (in the sensor's ``raw_unit``,
so the board config's calibration applies exactly as on hardware) and may inject a wire
fault with ``set_fault("open" | "short" | None)``.  It reads actuator outputs from
``.value``; ``writes`` counts how often the firmware drove the output.
"""

from edge.hal import FAULT_OPEN, FAULT_SHORT, UNIT_VOLT, Actuator, Sensor

_FAULTS = (FAULT_OPEN, FAULT_SHORT)


class EmulatedSensor(Sensor):
    def __init__(self, raw_unit=UNIT_VOLT, raw=None):
        Sensor.__init__(self)
        self.raw_unit = raw_unit
        self.raw = raw
        self.injected_fault = None
        self.reads = 0

    def set_raw(self, value):
        self.raw = value

    def set_fault(self, fault):
        """Make reads fail with ``fault`` ("open" or "short"); None clears it."""
        if fault is not None and fault not in _FAULTS:
            raise ValueError(
                "emulated sensor: fault {!r} not one of {} or None".format(fault, _FAULTS)
            )
        self.injected_fault = fault

    def read(self, now_ms):
        self.reads += 1
        if self.injected_fault is not None:
            return self._failed(self.injected_fault, "emulated " + self.injected_fault + " fault")
        return self._ok(self.raw)


class EmulatedActuator(Actuator):
    """Starts at its safe value without counting a write (no hardware to initialise)."""

    def __init__(self, lo, hi, safe, name="emulated"):
        Actuator.__init__(self, lo, hi, safe, name)
        self.value = safe

    def _apply(self, value):
        pass
