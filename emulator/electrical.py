"""What an edge driver would read for a physical value: the inverse of each calibration.

The emulator computes physics in engineering units (degC, bar, mL/min); the edge runtime
must see the *electrical* signal its board config expects (ohms for a PT100, mA for a
4-20 mA transmitter, volts for a linear input), so that calibration, plausibility checks
and wire faults behave exactly as on hardware.  A broken loop or open RTD is produced
here too (``open_circuit_raw``/``short_circuit_raw``).
"""

from __future__ import annotations

from edge.rtd import Pt100, cvd_resistance
from edge.signals import Calibration, Current4to20, Linear
from edge.table import Table


def raw_for(calibration: Calibration | None, value: float) -> float:
    """The raw reading (driver units) that ``calibration`` converts to ``value``."""
    if calibration is None or type(calibration) is Calibration:
        return float(value)
    if isinstance(calibration, Linear):
        if calibration.gain == 0:
            raise ValueError("linear calibration with gain 0 has no inverse")
        return (value - calibration.offset) / calibration.gain
    if isinstance(calibration, Current4to20):
        span = calibration.hi_value - calibration.lo_value
        return 4.0 + 16.0 * (value - calibration.lo_value) / span
    if isinstance(calibration, Pt100):
        return cvd_resistance(value, calibration.r0)
    if isinstance(calibration, Table):
        raws, values = calibration._raws, calibration._values
        pairs = sorted(zip(values, raws, strict=True))
        if value <= pairs[0][0]:
            return pairs[0][1]
        for (v0, r0), (v1, r1) in zip(pairs, pairs[1:], strict=False):
            if v0 <= value <= v1:
                return r0 if v1 == v0 else r0 + (r1 - r0) * (value - v0) / (v1 - v0)
        return pairs[-1][1]
    raise TypeError(f"no inverse for calibration {type(calibration).__name__}")


def open_circuit_raw(calibration: Calibration | None) -> float | None:
    """What a broken wire reads as: 0 mA for a current loop, a huge resistance for an
    RTD, None (no reading) otherwise."""
    if isinstance(calibration, Current4to20):
        return 0.0
    if isinstance(calibration, Pt100):
        return 10_000.0
    return None


def short_circuit_raw(calibration: Calibration | None) -> float | None:
    """A shorted sensor: ~0 ohm for an RTD, overrange current for a 4-20 mA loop."""
    if isinstance(calibration, Current4to20):
        return 24.0
    if isinstance(calibration, Pt100):
        return 0.5
    return None
