"""Sensors as the board sees them: lag, noise, quantisation and the electrical signal.

A ``SensorModel`` takes the true physical value (bar, degC, AU, ...) each tick and
writes what the emulated driver would read: the value after the sensor's own lag, with
noise, converted by the inverse of the board config's calibration into the driver's raw
unit (ohms for a PT100 on a MAX31865, mA for a 4-20 mA transmitter, volts) and rounded
to the converter's resolution.  Wire faults produce the electrical signature of the
fault (0 mA for a broken current loop, kilo-ohms for an open RTD), so the firmware's
calibration and NAMUR checks find them exactly as on hardware; where no raw value can
express the fault the driver's ``set_fault`` is used.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from edge.rtd import Pt100
from edge.signals import Current4to20
from emulator.electrical import open_circuit_raw, raw_for, short_circuit_raw

NE43_SATURATION_MA = (3.8, 20.5)  # a healthy transmitter's output never leaves this band
ADS1115_FULL_SCALE = {2 / 3: 6.144, 1: 4.096, 2: 2.048, 4: 1.024, 8: 0.512, 16: 0.256}

PRESSURE_PER_BAR = {"bar": 1.0, "mbar": 1000.0, "kPa": 100.0, "MPa": 0.1, "psi": 14.5038}
ABSORBANCE_PER_AU = {"AU": 1.0, "mAU": 1000.0}
SLF3X_ML_MIN_PER_WORD = {"SLF3S-1300F": 1 / 500.0, "SLF3S-0600F": 1 / 10000.0}


def quantum(hardware: dict | None, raw_unit: str) -> float:
    """Smallest raw step of the converter the real driver uses (0 = none)."""
    if not hardware:
        return 0.0
    driver = hardware.get("driver")
    if driver == "max31865":
        return hardware.get("ref_ohms", 430.0) / 32768.0  # 15-bit ratio
    if driver == "ads1115":
        lsb = ADS1115_FULL_SCALE.get(hardware.get("gain", 1), 4.096) / 32768.0
        shunt = hardware.get("shunt_ohms")
        return lsb / shunt * 1000.0 if shunt else lsb
    if driver == "adc":
        return hardware.get("vref", 3.3) / 65536.0
    if driver == "slf3x":
        # one flow word: 1/500 mL/min (SLF3S-1300F), 1/10 uL/min (SLF3S-0600F)
        return SLF3X_ML_MIN_PER_WORD.get(hardware.get("model", "SLF3S-1300F"), 0.0)
    return 0.0


@dataclass
class SensorFault:
    """A fault on one channel (kept by the plant: it survives a module reboot)."""

    wire: str | None = None  # "open" or "short"
    stuck: float | None = None  # engineering value held
    drift_rate: float = 0.0  # units/s
    drift: float = 0.0  # accumulated offset
    extra: dict = field(default_factory=dict)


class SensorModel:
    """One hardware sensor channel of a bound module."""

    def __init__(
        self,
        channel,
        driver,
        unit: str,
        hardware: dict | None,
        tau_s: float,
        noise: float,
        rng: random.Random,
        offset: float = 0.0,
        digital=False,
    ):
        self.channel = channel
        self.driver = driver
        self.unit = unit
        self.calibration = channel.calibration
        self.tau_s = tau_s
        self.noise = noise
        self.rng = rng
        self.offset = offset
        self.digital = digital
        self.q = 0.0 if digital else quantum(hardware, driver.raw_unit)
        self.value: float | None = None  # lagged true value
        self.last_raw = None
        self.saturate = isinstance(self.calibration, Current4to20)
        self._set_fault_used = False

    def write(self, true_value: float, dt: float, fault: SensorFault | None, raw_of=None) -> None:
        """``raw_of(value)`` replaces the calibration inverse (physical transducers such
        as a photodiode, whose signal is not the calibration table's exact inverse)."""
        if self.value is None or self.tau_s <= 0.0 or dt <= 0.0:
            self.value = true_value
        else:
            self.value += (true_value - self.value) * (1.0 - math.exp(-dt / self.tau_s))
        drv = self.driver
        if fault is not None and fault.wire is not None:
            raw = (open_circuit_raw if fault.wire == "open" else short_circuit_raw)(
                None if self.digital else self.calibration
            )
            if raw is None:
                drv.set_fault(fault.wire)
                self._set_fault_used = True
            else:
                self._clear_driver_fault()
                drv.set_raw(raw)
                self.last_raw = raw
            return
        self._clear_driver_fault()
        if self.digital:
            raw = 1 if self.value >= 0.5 else 0
            if fault is not None and fault.stuck is not None:
                raw = 1 if fault.stuck >= 0.5 else 0
            drv.set_raw(raw)
            self.last_raw = raw
            return
        if fault is not None and fault.stuck is not None:
            v = fault.stuck
        else:
            v = (
                self.value + self.offset + self.rng.gauss(0.0, self.noise)
                if self.noise
                else (self.value + self.offset)
            )
            if fault is not None:
                v += fault.drift
        raw = raw_of(v) if raw_of is not None else raw_for(self.calibration, v)
        if self.saturate:
            lo, hi = NE43_SATURATION_MA
            raw = lo if raw < lo else hi if raw > hi else raw
        elif isinstance(self.calibration, Pt100) and raw < 0.0:
            raw = 0.0
        if self.q:
            raw = round(raw / self.q) * self.q
        drv.set_raw(raw)
        self.last_raw = raw

    def _clear_driver_fault(self):
        if self._set_fault_used:
            self.driver.set_fault(None)
            self._set_fault_used = False
