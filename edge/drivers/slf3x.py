"""Sensirion SLF3x liquid flow sensor (SLF3S-0600F, SLF3S-1300F) on I2C, read without
ever blocking.

The interface (Sensirion SLF3S-1300F datasheet v1.0, June 2019, "Digital Interface
Description"; the same sequences in Sensirion's SF06-LF driver and in the Linux IIO
driver drivers/iio/flow/slf3s.c, which says the family shares one register map and the
sub-types differ only in the flow scale factor):

* 7-bit address 0x08 (fixed);
* "start continuous measurement" is a 2-byte command per calibrated liquid: 0x3608 water,
  0x3615 isopropanol (IPA); "stop continuous measurement" 0x3FF9; soft reset: the I2C
  general call (address 0x00) with the byte 0x06;
* in continuous mode the sensor samples internally (0.5 ms) and averages until it is
  read; a read of up to 9 bytes returns three big-endian 16-bit words, each followed by
  its CRC-8 (polynomial 0x31, initial value 0xFF, no reflection, no final XOR):
  signed flow, signed temperature, signalling flags;
* flow = word / scale factor: SLF3S-1300F 500 per mL/min (datasheet "Scale factors"
  table), SLF3S-0600F 10 per uL/min (its datasheet's table; Sensirion's Arduino driver
  constant INV_FLOW_SCALE_FACTORS_SLF3S_0600F = 10); temperature = word / 200 degC;
* flags: bit 0 air-in-line, bit 1 high flow (above the calibrated range), both "since
  the last read-out"; bit 5 exponential smoothing active (informational);
* the first valid sample comes about 60 ms (typ.) after the start command (the Linux
  driver's SLF3S_MEAS_START_DELAY_US, datasheet section 2.2).

Tick-loop pattern: the start command is sent on the first ``read`` (construction does no
bus I/O, so a missing sensor cannot stop the firmware from booting) and reads return None
(fault "starting") for ``settle_ms``; after that each ``read`` is one 9-byte transfer
(about 0.25 ms at 400 kHz) into a preallocated buffer and returns the flow averaged since
the previous read, in mL/min whatever the model.  A bad CRC returns None with fault
"crc"; a set air-in-line or high-flow flag returns None with fault "air_in_line" /
"high_flow" (the flow of that interval is not a measurement); a bus error (no ACK: the
sensor lost power and came back idle, or is absent) returns None with fault "bus" and
re-sends the start command on the next read.

Accuracy: the sensor is a thermal (calorimetric) one calibrated for water and IPA only;
in any other liquid its reading depends on that liquid's heat capacity and conductivity
and the datasheet specifies no accuracy (docs/board-config.md, "Flow sensors").
"""

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731

from edge.clock import ticks_add, ticks_diff
from edge.hal import FAULT_BUS, FAULT_STARTING, Sensor

ADDRESS = const(0x08)
GENERAL_CALL = const(0x00)
SOFT_RESET = const(0x06)
CMD_START_WATER = const(0x3608)
CMD_START_IPA = const(0x3615)
CMD_STOP = const(0x3FF9)
CRC_POLY = const(0x31)
CRC_INIT = const(0xFF)
FLAG_AIR_IN_LINE = const(0x0001)
FLAG_HIGH_FLOW = const(0x0002)
FLAG_SMOOTHING = const(0x0020)
TEMPERATURE_SCALE = 200.0  # per degC
START_MS = const(60)  # start command -> first valid sample (typ.)

UNIT_ML_MIN = "mL/min"  # the raw unit this driver reads in
FAULT_CRC = "crc"
FAULT_AIR = "air_in_line"
FAULT_HIGH_FLOW = "high_flow"

# model -> words per mL/min (the 0600F's 10 per uL/min is 10000 per mL/min)
MODELS = (("SLF3S-1300F", 500.0), ("SLF3S-0600F", 10000.0))
LIQUIDS = (("water", CMD_START_WATER), ("ipa", CMD_START_IPA))


def crc8(buf, start=0, n=2):
    """Sensirion CRC-8 of ``buf[start:start + n]`` (no slice: nothing allocated)."""
    crc = CRC_INIT
    i = start
    end = start + n
    while i < end:
        crc ^= buf[i]
        b = 8
        while b:  # while loops: nothing allocated in the tick path
            crc = ((crc << 1) ^ CRC_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
            b -= 1
        i += 1
    return crc


def words_per_ml_min(model):
    for name, scale in MODELS:
        if name == model:
            return scale
    raise ValueError(
        "slf3x: model {!r} not one of {}".format(model, ", ".join(m[0] for m in MODELS))
    )


def start_command(liquid):
    for name, cmd in LIQUIDS:
        if name == liquid:
            return cmd
    raise ValueError(
        "slf3x: liquid {!r} not one of {}".format(liquid, ", ".join(x[0] for x in LIQUIDS))
    )


def _signed(msb, lsb):
    code = (msb << 8) | lsb
    return code - 0x10000 if code & 0x8000 else code


class Slf3x(Sensor):
    """Liquid flow in mL/min.  ``i2c``: a MicroPython-style bus (``writeto``,
    ``readfrom_into``).  ``temperature`` (degC) and ``flags`` hold the last good frame's
    other two words."""

    raw_unit = UNIT_ML_MIN

    def __init__(self, i2c, model="SLF3S-1300F", liquid="water", settle_ms=START_MS):
        Sensor.__init__(self)
        if not isinstance(settle_ms, int) or settle_ms < 0:
            raise ValueError("slf3x: settle_ms must be an int >= 0, got {!r}".format(settle_ms))
        self._i2c = i2c
        self.address = ADDRESS
        self.model = model
        self.liquid = liquid
        self._per_word = 1.0 / words_per_ml_min(model)
        cmd = start_command(liquid)
        self._start = bytearray((cmd >> 8, cmd & 0xFF))
        self.settle_ms = settle_ms
        self._started = False
        self._ready_at = 0
        self._rx = bytearray(9)
        self.temperature = None
        self.flags = 0
        self.crc_errors = 0

    def _command(self, buf):
        self._i2c.writeto(self.address, buf)

    def stop(self):
        """Stop continuous measurement (the sensor idles; the next read restarts it)."""
        self._started = False
        self._command(bytearray((CMD_STOP >> 8, CMD_STOP & 0xFF)))

    def soft_reset(self):
        """General-call reset: every device on the bus that honours it resets."""
        self._started = False
        self._i2c.writeto(GENERAL_CALL, bytearray((SOFT_RESET,)))

    def read(self, now_ms):
        try:
            if not self._started:
                self._command(self._start)
                self._started = True
                self._ready_at = ticks_add(now_ms, self.settle_ms)
                return self._failed(FAULT_STARTING, "slf3x: measurement started")
            if ticks_diff(now_ms, self._ready_at) < 0:
                return self._failed(FAULT_STARTING, "slf3x: first sample pending")
            rx = self._rx
            self._i2c.readfrom_into(self.address, rx)
        except OSError as e:
            self._started = False  # a sensor that lost power comes back idle
            return self._failed(FAULT_BUS, "slf3x: i2c transfer failed: " + repr(e))
        i = 0
        while i < 9:
            if crc8(rx, i) != rx[i + 2]:
                self.crc_errors += 1
                return self._failed(
                    FAULT_CRC,
                    "slf3x: CRC mismatch in word {}: got 0x{:02x}, computed 0x{:02x}".format(
                        i // 3, rx[i + 2], crc8(rx, i)
                    ),
                )
            i += 3
        self.temperature = _signed(rx[3], rx[4]) / TEMPERATURE_SCALE
        flags = (rx[6] << 8) | rx[7]
        self.flags = flags
        if flags & FLAG_AIR_IN_LINE:
            return self._failed(FAULT_AIR, "slf3x: air in line since the last read")
        if flags & FLAG_HIGH_FLOW:
            return self._failed(FAULT_HIGH_FLOW, "slf3x: flow above the calibrated range")
        return self._ok(_signed(rx[0], rx[1]) * self._per_word)
