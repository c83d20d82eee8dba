"""ADS1115 16-bit I2C ADC (single-ended AIN0..AIN3), read without ever blocking.

Registers (TI ADS1115 datasheet, "Register Map"; same constants as Adafruit's
CircuitPython ADS1x15 driver, github.com/adafruit/Adafruit_CircuitPython_ADS1x15):

* 00h conversion: big-endian two's complement, volts = code * FSR / 32768;
* 01h config, big-endian: bit 15 OS (write 1: start a single conversion), bits 14:12
  MUX (100..111 = AINx vs GND), 11:9 PGA, bit 8 MODE (1 = single-shot), 7:5 data rate,
  1:0 COMP_QUE (11 = comparator off).

Tick-loop pattern, one tick of latency: a conversion takes 1/rate seconds (7.8 ms at 128
SPS; the oscillator is +-10 %), far too long to wait for inside a tick.  So a read
*collects* the conversion started by an earlier read, once its time has passed, and
immediately *starts* the next one; it never sleeps or polls.  The value a read returns was
sampled during the previous tick (one-tick latency); the very first read of a channel
returns None (fault "starting").

Several channels of one chip share it through an ``Ads1115`` object and are converted in
turn (round robin): with N channels read every tick, each channel gets a fresh value every
N ticks and in between reports its last one.  A bus error (OSError) drops every cached
value, so no channel reports data from before the failure.
"""

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731

from edge.clock import ticks_diff
from edge.hal import FAULT_BUS, FAULT_STARTING, UNIT_MILLIAMP, UNIT_VOLT, Sensor

DEFAULT_ADDRESS = const(0x48)
REG_CONVERSION = const(0x00)
REG_CONFIG = const(0x01)

CONFIG_OS_SINGLE = const(0x8000)
CONFIG_MUX_SINGLE_AIN0 = const(0x4000)  # MUX 100; AINx = 100 + x, shifted by 12
CONFIG_MODE_SINGLE = const(0x0100)
CONFIG_COMP_QUE_DISABLE = const(0x0003)

# PGA gain (Adafruit's convention) -> (PGA bits, full-scale range in volts).
GAINS = (
    (2 / 3, 0x0000, 6.144),
    (1, 0x0200, 4.096),
    (2, 0x0400, 2.048),
    (4, 0x0600, 1.024),
    (8, 0x0800, 0.512),
    (16, 0x0A00, 0.256),
)
# Data rate in samples per second -> DR bits.
RATES = (
    (8, 0x0000),
    (16, 0x0020),
    (32, 0x0040),
    (64, 0x0060),
    (128, 0x0080),
    (250, 0x00A0),
    (475, 0x00C0),
    (860, 0x00E0),
)


def _gain_entry(gain):
    for g, bits, fsr in GAINS:
        if isinstance(gain, (int, float)) and abs(gain - g) < 1e-3:
            return bits, fsr
    raise ValueError(
        "ads1115: gain {!r} not one of 2/3, 1, 2, 4, 8, 16 (full scale 6.144 .. 0.256 V)".format(
            gain
        )
    )


def config_word(channel, gain=1, rate=128):
    """The config register word that starts a single-shot conversion of AIN``channel``."""
    if channel not in (0, 1, 2, 3):
        raise ValueError("ads1115: channel must be 0..3, got {!r}".format(channel))
    pga, _ = _gain_entry(gain)
    for sps, dr in RATES:
        if rate == sps:
            return (
                CONFIG_OS_SINGLE
                | (CONFIG_MUX_SINGLE_AIN0 + (channel << 12))
                | pga
                | CONFIG_MODE_SINGLE
                | dr
                | CONFIG_COMP_QUE_DISABLE
            )
    raise ValueError(
        "ads1115: rate {!r} SPS not one of {}".format(rate, ", ".join(str(r[0]) for r in RATES))
    )


def conversion_ms(rate):
    """Whole ms to wait for one conversion at ``rate`` SPS, with the +-10 % clock margin."""
    return (1100 + rate - 1) // rate + 1


def signed16(msb, lsb):
    code = (msb << 8) | lsb
    return code - 0x10000 if code & 0x8000 else code


class Ads1115:
    """One chip on an I2C bus (MicroPython API: ``writeto_mem``, ``readfrom_mem_into``)."""

    def __init__(self, i2c, address=DEFAULT_ADDRESS):
        if not isinstance(address, int) or not 0x08 <= address <= 0x77:
            raise ValueError(
                "ads1115: address must be a 7-bit I2C address, got {!r}".format(address)
            )
        self._i2c = i2c
        self.address = address
        self._config = [0, 0, 0, 0]  # per channel; 0 = channel not in use
        self._wait_ms = [0, 0, 0, 0]
        self._volts_per_code = [0.0, 0.0, 0.0, 0.0]
        self._volts = [None, None, None, None]  # type: list[float | None]
        self._pending = -1  # channel being converted, -1 = idle
        self._started_ms = 0
        self._last = 3  # round robin starts at AIN0
        self._wbuf = bytearray(2)
        self._rbuf = bytearray(2)
        self.last_error = None

    def add_channel(self, channel, gain=1, rate=128):
        """Register AIN``channel``; a channel can be registered once."""
        word = config_word(channel, gain, rate)
        if self._config[channel]:
            raise ValueError(
                "ads1115 at 0x{:02x}: channel {} is already in use".format(self.address, channel)
            )
        self._config[channel] = word
        self._wait_ms[channel] = conversion_ms(rate)
        self._volts_per_code[channel] = _gain_entry(gain)[1] / 32768

    def volts(self, channel, now_ms):
        """Latest volts on ``channel`` (None before its first conversion or after a bus
        error); collects a finished conversion and starts the next, never waits.
        Raises OSError on a bus error (the channel sensor turns it into None)."""
        try:
            if self._pending >= 0:
                if ticks_diff(now_ms, self._started_ms) < self._wait_ms[self._pending]:
                    return self._volts[channel]
                self._collect()
            self._start_next(now_ms)
        except OSError:
            self._pending = -1
            for i in range(4):
                self._volts[i] = None
            raise
        return self._volts[channel]

    def _collect(self):
        channel = self._pending
        self._pending = -1
        rbuf = self._rbuf
        self._i2c.readfrom_mem_into(self.address, REG_CONVERSION, rbuf)
        self._volts[channel] = signed16(rbuf[0], rbuf[1]) * self._volts_per_code[channel]
        self._last = channel

    def _start_next(self, now_ms):
        channel = self._last
        for _ in range(4):
            channel = (channel + 1) & 3
            word = self._config[channel]
            if word:
                self._wbuf[0] = word >> 8
                self._wbuf[1] = word & 0xFF
                self._i2c.writeto_mem(self.address, REG_CONFIG, self._wbuf)
                self._pending = channel
                self._started_ms = now_ms
                return


class Ads1115Channel(Sensor):
    """Volts on one single-ended input of a shared ``Ads1115``."""

    raw_unit = UNIT_VOLT

    def __init__(self, chip, channel, gain=1, rate=128):
        Sensor.__init__(self)
        chip.add_channel(channel, gain, rate)
        self.chip = chip
        self.channel = channel

    def read(self, now_ms):
        try:
            volts = self.chip.volts(self.channel, now_ms)
        except OSError as e:
            message = "ads1115 at 0x{:02x}: i2c transfer failed: {!r}".format(self.chip.address, e)
            self.chip.last_error = message
            return self._failed(FAULT_BUS, message)
        if volts is None:
            return self._failed(FAULT_STARTING, "ads1115: first conversion pending")
        return self._ok(volts)


class CurrentLoop(Sensor):
    """A 4-20 mA loop read as the voltage across a shunt: mA = V / shunt_ohms * 1000."""

    raw_unit = UNIT_MILLIAMP

    def __init__(self, adc_channel, shunt_ohms=150):
        Sensor.__init__(self)
        if not isinstance(shunt_ohms, (int, float)) or not shunt_ohms > 0:
            raise ValueError("current loop: shunt_ohms must be > 0, got {!r}".format(shunt_ohms))
        self.adc_channel = adc_channel
        self.shunt_ohms = shunt_ohms
        self._ma_per_volt = 1000 / shunt_ohms

    def read(self, now_ms):
        volts = self.adc_channel.read(now_ms)
        if volts is None:
            self.fault = self.adc_channel.fault
            self.last_error = self.adc_channel.last_error
            return None
        return self._ok(volts * self._ma_per_volt)
