"""MAX31865 RTD-to-digital converter (PT100 / PT1000) on SPI, read without ever blocking.

Register map and sequences follow the Maxim MAX31865 datasheet (19-6478 Rev 3: "Internal
Registers", "Configuration Register (00h)", "Serial Interface") and match Adafruit's
CircuitPython driver (github.com/adafruit/Adafruit_CircuitPython_MAX31865,
adafruit_max31865.py: register constants, ``clear_faults`` = ``config & ~0x2C | 0x02``,
ratio -> ohms = code / 32768 * ref_resistor, SPI with CPHA = 1):

* registers are read at 0xh and written at 8xh, MSB first; the address auto-increments
  while CS stays low, so one transaction reads config (00h), RTD MSB (01h), RTD LSB (02h);
* config 00h: D7 VBIAS on, D6 automatic conversion, D5 1-shot, D4 3-wire, D3:D2 fault
  detection cycle, D1 fault status clear (self-clearing, written with D5, D3, D2 = 0),
  D0 50 Hz notch (0 = 60 Hz);
* RTD 01h/02h: the 15-bit ratio code R_rtd / R_ref * 32768, shifted left by one; bit 0
  of the LSB is the fault flag, details in fault status 07h.

Adafruit's driver triggers a 1-shot conversion and sleeps 65 ms; a tick loop must not
sleep, so this driver runs the chip in automatic mode (a conversion every 20 ms at 50 Hz,
16.7 ms at 60 Hz; 21 ms max) and each ``read`` just fetches the latest result.

Robustness:

* configuration happens on the first ``read`` (construction does no bus I/O, so a missing
  board cannot stop the firmware from booting); reads return None (fault "starting") for
  ``settle_ms`` while VBIAS settles and the first conversion completes;
* every read also fetches the config register: if the chip lost power (config back to 00h:
  conversions stopped, data frozen) or is absent (00h/FFh), the read returns None (fault
  "device") and the chip is reconfigured at once;
* a set fault bit: read fault status, clear it, return None (fault "open"/"short"/
  "device"), and hold readings off for ``_FAULT_HOLDOFF_MS`` so the faulted conversion
  still in the data registers is never reported as good.
"""

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731

from edge.clock import ticks_add, ticks_diff
from edge.hal import (
    FAULT_BUS,
    FAULT_DEVICE,
    FAULT_OPEN,
    FAULT_SHORT,
    FAULT_STARTING,
    UNIT_OHM,
    Sensor,
)

REG_CONFIG = const(0x00)
REG_RTD_MSB = const(0x01)
REG_RTD_LSB = const(0x02)
REG_FAULT_STATUS = const(0x07)
WRITE = const(0x80)  # address bit 7: write

CONFIG_VBIAS = const(0x80)
CONFIG_AUTO = const(0x40)
CONFIG_1SHOT = const(0x20)
CONFIG_3WIRE = const(0x10)
CONFIG_FAULT_CYCLE = const(0x0C)
CONFIG_FAULT_CLEAR = const(0x02)
CONFIG_50HZ = const(0x01)

FAULT_HIGH_THRESHOLD = const(0x80)
FAULT_LOW_THRESHOLD = const(0x40)
FAULT_REFIN_HIGH = const(0x20)
FAULT_REFIN_LOW = const(0x10)
FAULT_RTDIN_LOW = const(0x08)
FAULT_OVUV = const(0x04)

# Bits that mean the RTD or its wiring is open (resistance high / FORCE- open).
_OPEN_BITS = const(0xB8)

_FAULT_NAMES = (
    (FAULT_HIGH_THRESHOLD, "RTD above high threshold"),
    (FAULT_LOW_THRESHOLD, "RTD below low threshold"),
    (FAULT_REFIN_HIGH, "REFIN- > 0.85 x VBIAS"),
    (FAULT_REFIN_LOW, "REFIN- < 0.85 x VBIAS (FORCE- open)"),
    (FAULT_RTDIN_LOW, "RTDIN- < 0.85 x VBIAS (FORCE- open)"),
    (FAULT_OVUV, "over/under voltage"),
)

# Two conversion periods at 50 Hz (the slower notch), so a fresh conversion has landed.
_FAULT_HOLDOFF_MS = const(50)


def describe_fault(status):
    """Human-readable names of the bits set in a fault status byte."""
    names = [name for bit, name in _FAULT_NAMES if status & bit]
    return ", ".join(names) if names else "no status bit set"


def fault_code(status):
    """The signal layer's short code for a fault status byte."""
    if status & FAULT_LOW_THRESHOLD:
        return FAULT_SHORT
    if status & _OPEN_BITS:
        return FAULT_OPEN
    return FAULT_DEVICE


def config_byte(wires=2, filter_hz=50):
    """The configuration register value this driver runs the chip with."""
    if wires not in (2, 3, 4):
        raise ValueError("max31865: wires must be 2, 3 or 4, got {!r}".format(wires))
    if filter_hz not in (50, 60):
        raise ValueError("max31865: filter_hz must be 50 or 60, got {!r}".format(filter_hz))
    config = CONFIG_VBIAS | CONFIG_AUTO
    if wires == 3:
        config |= CONFIG_3WIRE
    if filter_hz == 50:
        config |= CONFIG_50HZ
    return config


class Max31865(Sensor):
    """RTD resistance in ohms.

    ``spi``: a MicroPython-style SPI bus (``write``, ``write_readinto``) in mode 1 or 3.
    ``cs``: the chip-select pin (``value(0/1)``), or None when the bus asserts CS itself
    for each call (Linux spidev with kernel chip select).  ``ref_ohms``: the reference
    resistor (430 for the usual PT100 board, 4300 for PT1000).
    """

    raw_unit = UNIT_OHM

    def __init__(self, spi, cs, ref_ohms=430.0, wires=2, filter_hz=50, settle_ms=100):
        Sensor.__init__(self)
        if not isinstance(ref_ohms, (int, float)) or not ref_ohms > 0:
            raise ValueError("max31865: ref_ohms must be > 0, got {!r}".format(ref_ohms))
        if not isinstance(settle_ms, int) or settle_ms < 0:
            raise ValueError("max31865: settle_ms must be an int >= 0, got {!r}".format(settle_ms))
        self._spi = spi
        self._cs = cs
        self.config = config_byte(wires, filter_hz)
        self.ref_ohms = ref_ohms
        self.settle_ms = settle_ms
        self._ohms_per_code = ref_ohms / 32768
        self._configured = False
        self._ready_at = 0
        self._hold_fault = FAULT_STARTING
        self._hold_message = "not configured yet"
        self.last_fault = 0  # the last fault status byte read from the chip
        # Preallocated transfers: the hot path allocates nothing.
        self._tx_data = bytearray(4)  # read from 00h: config, RTD MSB, RTD LSB
        self._rx_data = bytearray(4)
        self._tx_fault = bytearray((REG_FAULT_STATUS, 0))
        self._rx_fault = bytearray(2)
        self._tx_config = bytearray((REG_CONFIG | WRITE, 0))
        if cs is not None:
            cs.value(1)

    def _write_config(self, value):
        self._tx_config[1] = value
        cs = self._cs
        if cs is not None:
            cs.value(0)
        try:
            self._spi.write(self._tx_config)
        finally:
            if cs is not None:
                cs.value(1)

    def _transfer(self, tx, rx):
        cs = self._cs
        if cs is not None:
            cs.value(0)
        try:
            self._spi.write_readinto(tx, rx)
        finally:
            if cs is not None:
                cs.value(1)

    def _configure(self, now_ms):
        # Set wiring, notch and VBIAS (clearing any power-up fault) with conversions
        # off, then start automatic conversion: the datasheet warns against changing the
        # notch while converting automatically.
        self._configured = False
        self._write_config((self.config & ~CONFIG_AUTO) | CONFIG_FAULT_CLEAR)
        self._write_config(self.config)
        self._configured = True
        self._hold(now_ms, self.settle_ms, FAULT_STARTING, "configured; first conversion pending")

    def _hold(self, now_ms, ms, fault, message):
        self._ready_at = ticks_add(now_ms, ms)
        self._hold_fault = fault
        self._hold_message = message

    def read(self, now_ms):
        try:
            if not self._configured:
                self._configure(now_ms)
                return self._failed(self._hold_fault, self._hold_message)
            if ticks_diff(now_ms, self._ready_at) < 0:
                return self._failed(self._hold_fault, self._hold_message)
            rx = self._rx_data
            self._transfer(self._tx_data, rx)
            if rx[1] != self.config:
                message = "max31865: config register reads 0x{:02x}, expected 0x{:02x} (chip reset or absent); reconfigured".format(
                    rx[1], self.config
                )
                self._configure(now_ms)
                return self._failed(FAULT_DEVICE, message)
            if rx[3] & 1:
                self._transfer(self._tx_fault, self._rx_fault)
                status = self._rx_fault[1]
                self._write_config(self.config | CONFIG_FAULT_CLEAR)
                self.last_fault = status
                fault = fault_code(status)
                message = "max31865: RTD fault status 0x{:02x}: {}".format(
                    status, describe_fault(status)
                )
                self._hold(now_ms, _FAULT_HOLDOFF_MS, fault, message)
                return self._failed(fault, message)
            code = ((rx[2] << 8) | rx[3]) >> 1
            return self._ok(code * self._ohms_per_code)
        except OSError as e:
            return self._failed(FAULT_BUS, "max31865: spi transfer failed: " + repr(e))
