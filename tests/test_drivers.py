"""Edge drivers against exact fakes of their buses.

The fakes are register-level models, not replay scripts: ``FakeMax31865`` decodes the SPI
protocol (address byte, bit 7 = write, auto-increment while CS is low, self-clearing
config bits) and records the MOSI bytes of every transaction; ``FakeI2C`` models ADS1115
chips (a config write with OS=1 latches the selected input's code into the conversion
register) and records every (address, register, bytes).  So the tests check both the
exact bytes a driver sends and that those bytes make a real chip do the right thing.

The fakes and ``scenario()`` are plain MicroPython-compatible code: the last test sends
their source to the real MicroPython interpreter and checks the same bytes there.
"""

import inspect

import pytest

from edge.clock import TICKS_PERIOD, ticks_add
from edge.drivers import ACTUATOR_DRIVERS, SENSOR_DRIVERS, build_actuator, build_sensor
from edge.drivers.ads1115 import (
    Ads1115,
    Ads1115Channel,
    CurrentLoop,
    config_word,
    conversion_ms,
)
from edge.drivers.emulated import EmulatedActuator, EmulatedSensor
from edge.drivers.machine_io import AdcSensor, DigitalIn, DigitalOut, PwmActuator
from edge.drivers.max31865 import Max31865, config_byte, describe_fault
from edge.hal import UNIT_DIGITAL, UNIT_MILLIAMP, UNIT_OHM, UNIT_VOLT
from edge.linux.hardware import SmbusBus, SpidevBus, SysfsPwm, parse_pwm_pin
from edge.linux.watchdog import LinuxWatchdog
from edge.rtd import Pt100
from tools.micropython import run_node

# ----------------------------------------------------------------------------- bus fakes


class FakeMax31865:
    """A MAX31865 behind an SPI bus: pass the instance as ``spi`` and ``.cs`` as ``cs``.

    ``transactions``: the MOSI bytes of each CS-low window (or of each call when
    ``auto_cs``, like Linux spidev with kernel chip select).  SPI traffic while CS is
    high is a driver bug and raises AssertionError.  ``fail`` makes transfers raise
    OSError (EIO), as MicroPython's SPI does on a bus error.
    """

    def __init__(self, auto_cs=False):
        self.regs = bytearray(8)
        self.regs[3] = 0xFF  # high fault threshold resets to FFFFh
        self.regs[4] = 0xFF
        self.transactions = []
        self.auto_cs = auto_cs
        self.fail = False
        self.cs = FakeChipSelect(self)
        self._mosi = None
        self._addr = -1

    def set_rtd(self, code15, fault=False):
        word = code15 << 1
        self.regs[1] = word >> 8
        self.regs[2] = (word & 0xFF) | (1 if fault else 0)

    def begin(self):
        self._mosi = bytearray()
        self._addr = -1

    def end(self):
        if self._mosi is not None and len(self._mosi):
            self.transactions.append(bytes(self._mosi))
        self._mosi = None

    def _byte(self, mosi):
        self._mosi.append(mosi)
        if self._addr < 0:
            self._addr = mosi
            return 0xFF  # SDO is high impedance during the address byte
        reg = self._addr & 0x7F
        self._addr = (self._addr & 0x80) | ((reg + 1) & 0x7F)
        if self._addr & 0x80 and reg < 8:
            self._write_reg(reg, mosi)
            return 0xFF
        return self.regs[reg] if reg < 8 else 0xFF  # invalid addresses read FFh

    def _write_reg(self, reg, value):
        if reg == 0:
            if value & 0x02:  # fault status clear
                self.regs[7] = 0
                self.regs[2] &= 0xFE
            self.regs[0] = value & ~0x22  # 1-shot and fault-clear bits self-clear
        elif 3 <= reg <= 6:
            self.regs[reg] = value  # thresholds; 01h, 02h, 07h are read-only

    def _transfer(self, tx, rx):
        if self.fail:
            raise OSError(5)
        auto = self._mosi is None
        if auto:
            if not self.auto_cs:
                raise AssertionError("SPI transfer while CS is high")
            self.begin()
        for i in range(len(tx)):
            miso = self._byte(tx[i])
            if rx is not None:
                rx[i] = miso
        if auto:
            self.end()

    # MicroPython machine.SPI methods
    def write(self, buf):
        self._transfer(buf, None)

    def write_readinto(self, tx, rx):
        self._transfer(tx, rx)

    def readinto(self, buf, write=0):
        self._transfer(bytes([write]) * len(buf), buf)

    def read(self, nbytes, write=0):
        buf = bytearray(nbytes)
        self.readinto(buf, write)
        return bytes(buf)


class FakeChipSelect:
    """A CS pin wired to a ``FakeMax31865``: low opens a transaction, high closes it."""

    def __init__(self, chip):
        self.chip = chip
        self.level = None

    def value(self, x=None):
        if x is None:
            return self.level
        x = 1 if x else 0
        if x == 0 and self.level != 0:
            self.chip.begin()
        elif x == 1 and self.level == 0:
            self.chip.end()
        self.level = x


class FakeI2C:
    """ADS1115 chips on an I2C bus (MicroPython API).

    ``inputs[address]`` holds the four AINx codes (signed 16-bit).  Records ``writes``
    (address, register, bytes) and ``reads`` (address, register, nbytes).  A missing
    address NACKs (OSError ENODEV); ``fail`` raises OSError (EIO) on every transfer.
    """

    def __init__(self, inputs):
        self.inputs = inputs
        self.conversion = {}
        self.config = {}
        self.writes = []
        self.reads = []
        self.fail = False

    def _check(self, addr):
        if self.fail:
            raise OSError(5)
        if addr not in self.inputs:
            raise OSError(19)

    def writeto_mem(self, addr, memaddr, buf):
        self._check(addr)
        self.writes.append((addr, memaddr, bytes(buf)))
        if memaddr == 1:
            word = (buf[0] << 8) | buf[1]
            self.config[addr] = word
            mux = (word >> 12) & 7
            if word & 0x8000 and mux >= 4:
                self.conversion[addr] = self.inputs[addr][mux - 4] & 0xFFFF

    def readfrom_mem(self, addr, memaddr, nbytes):
        self._check(addr)
        self.reads.append((addr, memaddr, nbytes))
        value = self.conversion.get(addr, 0) if memaddr == 0 else self.config.get(addr, 0x8583)
        return bytes([value >> 8, value & 0xFF])[:nbytes]

    def readfrom_mem_into(self, addr, memaddr, buf):
        data = self.readfrom_mem(addr, memaddr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]


class FakePin:
    def __init__(self, level=0):
        self.level = level
        self.history = []

    def value(self, x=None):
        if x is None:
            return self.level
        self.level = x
        self.history.append(x)


class FakePwm:
    def __init__(self):
        self.duties = []
        self.freqs = []

    def duty_u16(self, duty):
        self.duties.append(duty)

    def freq(self, hz):
        self.freqs.append(hz)


class FakeAdc:
    def __init__(self, counts=0):
        self.counts = counts
        self.fail = False

    def read_u16(self):
        if self.fail:
            raise OSError(5)
        return self.counts


class FakeProvider:
    """The hardware-provider interface, sharing one bus object per bus id."""

    def __init__(self):
        self.calls = []
        self.spis = {}
        self.i2cs = {}

    def adc(self, pin):
        self.calls.append(("adc", pin))
        return FakeAdc()

    def pwm(self, pin, freq):
        self.calls.append(("pwm", pin, freq))
        return FakePwm()

    def pin_in(self, pin):
        self.calls.append(("pin_in", pin))
        return FakePin()

    def pin_out(self, pin):
        self.calls.append(("pin_out", pin))
        return FakePin()

    def spi(self, bus_id):
        self.calls.append(("spi", bus_id))
        if bus_id not in self.spis:
            self.spis[bus_id] = FakeMax31865(auto_cs=True)
        return self.spis[bus_id]

    def i2c(self, bus_id):
        self.calls.append(("i2c", bus_id))
        if bus_id not in self.i2cs:
            self.i2cs[bus_id] = FakeI2C({0x48: [4800, 24000, -1600, 0], 0x49: [1, 2, 3, 4]})
        return self.i2cs[bus_id]


# ----------------------------------------------------------------------------- MAX31865

PT100_0C_CODE = 7620  # round(100 / 430 * 32768): 100 ohm (0 degC) with the 430 ohm reference


def _configured_max(wires=2, filter_hz=50):
    chip = FakeMax31865()
    sensor = Max31865(chip, chip.cs, wires=wires, filter_hz=filter_hz)
    assert sensor.read(0) is None
    chip.transactions.clear()
    return chip, sensor


def test_max31865_configures_on_first_read_and_settles_before_reading():
    chip = FakeMax31865()
    sensor = Max31865(chip, chip.cs)
    assert chip.transactions == [] and chip.cs.level == 1  # construction: CS high, no I/O
    assert sensor.raw_unit == UNIT_OHM == "ohm"

    assert sensor.read(0) is None
    assert sensor.fault == "starting"
    # VBIAS + 50 Hz (+ fault clear) with conversions off, then automatic conversion.
    assert chip.transactions == [b"\x80\x83", b"\x80\xc1"]
    assert chip.regs[0] == 0xC1

    chip.set_rtd(PT100_0C_CODE)
    assert sensor.read(99) is None  # still settling: no bus traffic
    assert len(chip.transactions) == 2

    ohms = sensor.read(100)
    # One transaction reads config, RTD MSB, RTD LSB.
    assert chip.transactions[2:] == [b"\x00\x00\x00\x00"]
    assert ohms == pytest.approx(PT100_0C_CODE * 430.0 / 32768, rel=1e-15)
    assert abs(ohms - 100.0) < 430.0 / 32768  # within one LSB of 100 ohm
    assert Pt100().convert(ohms) == pytest.approx(0.0, abs=0.02)  # 0 degC
    assert sensor.fault is None and chip.cs.level == 1


@pytest.mark.parametrize(
    "wires, filter_hz, static, auto",
    [
        (2, 50, 0x83, 0xC1),
        (4, 50, 0x83, 0xC1),
        (3, 50, 0x93, 0xD1),
        (3, 60, 0x92, 0xD0),
        (2, 60, 0x82, 0xC0),
    ],
)
def test_max31865_config_bytes(wires, filter_hz, static, auto):
    chip = FakeMax31865()
    Max31865(chip, chip.cs, wires=wires, filter_hz=filter_hz).read(0)
    assert chip.transactions == [bytes([0x80, static]), bytes([0x80, auto])]
    assert config_byte(wires, filter_hz) == auto


def test_max31865_ohms_from_register_values():
    chip, sensor = _configured_max()
    for code, now in ((0x7FFF, 100), (1, 110), (PT100_0C_CODE * 2, 120)):
        chip.set_rtd(code)
        assert sensor.read(now) == pytest.approx(code * 430.0 / 32768, rel=1e-15)
    pt1000 = FakeMax31865()
    sensor = Max31865(pt1000, pt1000.cs, ref_ohms=4300.0)
    sensor.read(0)
    pt1000.set_rtd(PT100_0C_CODE)
    assert sensor.read(100) == pytest.approx(1000.0, abs=4300.0 / 32768)


@pytest.mark.parametrize(
    "status, fault",
    [
        (0x80, "open"),
        (0x08, "open"),
        (0x10, "open"),
        (0x40, "short"),
        (0x04, "device"),
        (0xC0, "short"),
    ],
)
def test_max31865_fault_bit_reads_status_clears_it_and_returns_none(status, fault):
    chip, sensor = _configured_max()
    chip.set_rtd(0x7FFF, fault=True)
    chip.regs[7] = status
    assert sensor.read(100) is None
    assert sensor.fault == fault
    assert sensor.last_fault == status
    assert f"0x{status:02x}" in sensor.last_error
    # data read, fault status read, clear (D1 set, D5/D3/D2 zero, config kept)
    assert chip.transactions == [b"\x00\x00\x00\x00", b"\x07\x00", b"\x80\xc3"]
    assert chip.regs[7] == 0 and chip.regs[0] == 0xC1 and chip.regs[2] & 1 == 0


def test_max31865_holds_off_after_a_fault_then_recovers():
    chip, sensor = _configured_max()
    chip.set_rtd(0x7FFF, fault=True)
    chip.regs[7] = 0x80
    assert sensor.read(100) is None
    chip.transactions.clear()
    # The faulted conversion is still in the data registers (fault bit now cleared):
    # it must not come back as a good reading before a fresh conversion.
    assert sensor.read(120) is None and sensor.fault == "open"
    assert chip.transactions == []
    chip.set_rtd(PT100_0C_CODE)
    assert sensor.read(150) == pytest.approx(PT100_0C_CODE * 430.0 / 32768)
    assert sensor.fault is None
    assert "high threshold" in sensor.last_error  # sticky diagnostic


def test_max31865_reconfigures_a_chip_that_lost_its_config():
    chip, sensor = _configured_max()
    chip.set_rtd(PT100_0C_CODE)
    chip.regs[0] = 0x00  # power-on reset: conversions stopped, RTD data frozen
    assert sensor.read(100) is None
    assert sensor.fault == "device"
    assert "0x00" in sensor.last_error and "0xc1" in sensor.last_error
    assert chip.transactions == [b"\x00\x00\x00\x00", b"\x80\x83", b"\x80\xc1"]
    assert sensor.read(150) is None and sensor.fault == "starting"
    assert sensor.read(200) == pytest.approx(PT100_0C_CODE * 430.0 / 32768)


def test_max31865_absent_chip_reads_none():
    chip, sensor = _configured_max()
    chip.regs[0] = 0xFF  # floating MISO pulled up
    assert sensor.read(100) is None and sensor.fault == "device"


def test_max31865_bus_error_returns_none_and_releases_cs():
    chip, sensor = _configured_max()
    chip.set_rtd(PT100_0C_CODE)
    chip.fail = True
    assert sensor.read(100) is None
    assert sensor.fault == "bus"
    assert "spi" in sensor.last_error and "5" in sensor.last_error
    assert chip.cs.level == 1
    chip.fail = False
    assert sensor.read(110) == pytest.approx(PT100_0C_CODE * 430.0 / 32768)


def test_max31865_bus_error_during_configure_retries_next_read():
    chip = FakeMax31865()
    sensor = Max31865(chip, chip.cs)
    chip.fail = True
    assert sensor.read(0) is None and sensor.fault == "bus"
    chip.fail = False
    assert sensor.read(10) is None and sensor.fault == "starting"
    assert chip.transactions == [b"\x80\x83", b"\x80\xc1"]


def test_max31865_settle_time_across_tick_wrap():
    chip = FakeMax31865()
    sensor = Max31865(chip, chip.cs)
    start = TICKS_PERIOD - 10
    sensor.read(start)
    chip.set_rtd(PT100_0C_CODE)
    assert sensor.read(ticks_add(start, 99)) is None
    assert sensor.read(ticks_add(start, 100)) is not None


def test_max31865_with_bus_driven_chip_select():
    chip = FakeMax31865(auto_cs=True)
    sensor = Max31865(chip, None)
    sensor.read(0)
    chip.set_rtd(PT100_0C_CODE)
    assert sensor.read(100) == pytest.approx(PT100_0C_CODE * 430.0 / 32768)
    assert chip.transactions == [b"\x80\x83", b"\x80\xc1", b"\x00\x00\x00\x00"]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"wires": 5}, ("wires", "5")),
        ({"filter_hz": 55}, ("filter_hz", "55")),
        ({"ref_ohms": 0}, ("ref_ohms", "0")),
        ({"settle_ms": -1}, ("settle_ms", "-1")),
    ],
)
def test_max31865_rejects_bad_parameters(kwargs, words):
    chip = FakeMax31865()
    with pytest.raises(ValueError) as err:
        Max31865(chip, chip.cs, **kwargs)
    for word in words:
        assert word in str(err.value)


def test_max31865_describes_fault_bits():
    assert describe_fault(0x84) == "RTD above high threshold, over/under voltage"
    assert describe_fault(0) == "no status bit set"


# ----------------------------------------------------------------------------- ADS1115


@pytest.mark.parametrize(
    "channel, gain, rate, word",
    [
        (0, 1, 128, 0xC383),
        (1, 1, 128, 0xD383),
        (2, 1, 128, 0xE383),
        (3, 1, 128, 0xF383),
        (0, 2 / 3, 128, 0xC183),
        (0, 2, 128, 0xC583),
        (0, 4, 128, 0xC783),
        (0, 8, 128, 0xC983),
        (0, 16, 128, 0xCB83),
        (0, 1, 8, 0xC303),
        (0, 1, 250, 0xC3A3),
        (0, 1, 860, 0xC3E3),
        (3, 16, 860, 0xFBE3),
    ],
)
def test_ads1115_config_words(channel, gain, rate, word):
    assert config_word(channel, gain, rate) == word
    bus = FakeI2C({0x48: [0, 0, 0, 0]})
    sensor = Ads1115Channel(Ads1115(bus), channel, gain, rate)
    sensor.read(0)
    assert bus.writes == [(0x48, 0x01, bytes([word >> 8, word & 0xFF]))]


def test_ads1115_starts_in_one_tick_and_reads_in_the_next():
    bus = FakeI2C({0x48: [12000, 0, 0, 0]})
    sensor = Ads1115Channel(Ads1115(bus), 0)
    assert sensor.raw_unit == UNIT_VOLT
    assert sensor.read(0) is None and sensor.fault == "starting"
    assert bus.writes == [(0x48, 1, b"\xc3\x83")] and bus.reads == []
    assert sensor.read(9) is None  # 128 SPS: 7.8 ms +10 % -> wait 10 ms; no traffic yet
    assert len(bus.writes) == 1 and bus.reads == []
    assert sensor.read(10) == pytest.approx(12000 * 4.096 / 32768, rel=1e-12)
    assert bus.reads == [(0x48, 0x00, 2)]
    assert bus.writes[1:] == [(0x48, 1, b"\xc3\x83")]  # next conversion already started
    # Reading again before that conversion is done returns the same sample, no traffic.
    assert sensor.read(15) == pytest.approx(1.5, rel=1e-12)
    assert len(bus.reads) == 1


def test_ads1115_current_loop_4_and_20_ma_at_150_ohm():
    bus = FakeI2C({0x48: [4800, 24000, 0, 0]})
    chip = Ads1115(bus)
    low = CurrentLoop(Ads1115Channel(chip, 0), shunt_ohms=150)
    high = CurrentLoop(Ads1115Channel(chip, 1), shunt_ohms=150)
    assert low.raw_unit == UNIT_MILLIAMP
    readings = []
    for now in range(0, 100, 20):
        readings.append((low.read(now), high.read(now)))
    assert readings[-1] == (pytest.approx(4.0, abs=1e-9), pytest.approx(20.0, abs=1e-9))
    assert readings[0] == (None, None) and low.fault is None


def test_ads1115_negative_and_full_scale_codes():
    codes = [-1600, -32768, 32767, -1]
    bus = FakeI2C({0x48: codes})
    chip = Ads1115(bus)
    sensors = [Ads1115Channel(chip, ch) for ch in range(4)]
    now = 0
    for _ in range(8):  # two full round-robin passes
        for s in sensors:
            s.read(now)
        now += 20
    values = [s.read(now) for s in sensors]
    assert values == [
        pytest.approx(-0.2, abs=1e-12),
        pytest.approx(-4.096, abs=1e-12),
        pytest.approx(32767 * 4.096 / 32768, abs=1e-12),
        pytest.approx(-4.096 / 32768, abs=1e-15),
    ]


def test_ads1115_gain_sets_full_scale():
    bus = FakeI2C({0x48: [32767, 0, 0, 0]})
    sensor = Ads1115Channel(Ads1115(bus), 0, gain=16)
    sensor.read(0)
    assert sensor.read(10) == pytest.approx(0.256 * 32767 / 32768, rel=1e-12)


def test_ads1115_round_robin_over_channels_of_one_chip():
    bus = FakeI2C({0x48: [100, 200, 300, 400]})
    chip = Ads1115(bus)
    a = Ads1115Channel(chip, 0)
    c = Ads1115Channel(chip, 2)
    lsb = 4.096 / 32768
    assert (a.read(0), c.read(0)) == (None, None)  # AIN0 started
    assert (a.read(10), c.read(10)) == (pytest.approx(100 * lsb), None)  # AIN2 started
    assert (a.read(20), c.read(20)) == (pytest.approx(100 * lsb), pytest.approx(300 * lsb))
    started = [w[2] for w in bus.writes]
    assert started == [b"\xc3\x83", b"\xe3\x83", b"\xc3\x83"]


def test_ads1115_bus_error_returns_none_drops_cached_values_and_recovers():
    bus = FakeI2C({0x48: [4800, 24000, 0, 0]})
    chip = Ads1115(bus)
    a = Ads1115Channel(chip, 0)
    b = Ads1115Channel(chip, 1)
    for now in (0, 10, 20):
        a.read(now)
        b.read(now)
    assert a.read(30) is not None
    bus.fail = True
    assert a.read(40) is None
    assert a.fault == "bus" and "i2c" in a.last_error and chip.last_error == a.last_error
    bus.fail = False
    assert b.read(41) is None  # its pre-failure value is gone; a conversion restarts
    assert b.fault == "starting"


def test_ads1115_missing_device_is_none_not_an_exception():
    bus = FakeI2C({0x48: [0, 0, 0, 0]})
    sensor = CurrentLoop(Ads1115Channel(Ads1115(bus, 0x4A), 0))
    assert sensor.read(0) is None
    assert sensor.fault == "bus" and "0x4a" in sensor.last_error and "19" in sensor.last_error


def test_ads1115_conversion_wait():
    assert [conversion_ms(r) for r in (8, 128, 860)] == [139, 10, 3]


def test_ads1115_rejects_bad_parameters():
    chip = Ads1115(FakeI2C({0x48: [0, 0, 0, 0]}))
    for kwargs, word in (
        ({"channel": 4}, "channel"),
        ({"gain": 3}, "gain"),
        ({"rate": 100}, "rate"),
    ):
        args = {"channel": 0}
        args.update(kwargs)
        with pytest.raises(ValueError, match=word):
            Ads1115Channel(chip, **args)
    Ads1115Channel(chip, 1)
    with pytest.raises(ValueError, match="channel 1 is already in use"):
        Ads1115Channel(chip, 1)
    with pytest.raises(ValueError, match="address"):
        Ads1115(FakeI2C({}), 0x100)
    with pytest.raises(ValueError, match="shunt_ohms"):
        CurrentLoop(Ads1115Channel(chip, 2), shunt_ohms=0)


# ----------------------------------------------------------------------------- machine I/O


@pytest.mark.parametrize(
    "lo, hi, value, duty",
    [
        (0.0, 1.0, 0.0, 0),
        (0.0, 1.0, 1.0, 65535),
        (0.0, 1.0, 0.5, 32768),  # 32767.5 rounds half up
        (0.0, 1.0, 0.25, 16384),
        (0.0, 50.0, 20.0, 26214),  # pump: 0-10 V spans 0..50 mL/min
        (0.0, 50.0, 12.5, 16384),
        (1.0, 0.0, 1.0, 0),  # inverted scale
        (1.0, 0.0, 0.0, 65535),
    ],
)
def test_pwm_duty_mapping(lo, hi, value, duty):
    pwm = FakePwm()
    act = PwmActuator(pwm, lo, hi, safe=lo)
    act.write(value)
    assert pwm.duties[-1] == duty and act.duty == duty and act.value == value


def test_pwm_writes_safe_value_at_construction_and_on_safe():
    pwm = FakePwm()
    act = PwmActuator(pwm, 0.0, 50.0, safe=0.0, freq=2000, limits=(0.0, 20.0), name="pump")
    assert pwm.freqs == [2000] and pwm.duties == [0] and act.value == 0.0
    act.write(20.0)
    act.safe()
    assert pwm.duties == [0, 26214, 0] and act.value == 0.0 and act.writes == 3
    assert (act.min, act.max, act.safe_value) == (0.0, 20.0, 0.0)


def test_actuator_out_of_range_raises_and_changes_nothing():
    pwm = FakePwm()
    act = PwmActuator(pwm, 0.0, 50.0, safe=0.0, limits=(0.0, 20.0), name="pump")
    act.write(10.0)
    for bad in (20.5, -0.1, float("nan"), None, "5"):
        with pytest.raises(ValueError) as err:
            act.write(bad)
        assert "pump" in str(err.value) and "[0.0, 20.0]" in str(err.value)
    assert act.value == 10.0 and len(pwm.duties) == 2


def test_pwm_rejects_range_wider_than_scale_or_unsafe_safe_value():
    with pytest.raises(ValueError, match="exceeds the pwm scale"):
        PwmActuator(FakePwm(), 0.0, 1.0, safe=0.0, limits=(0.0, 2.0))
    with pytest.raises(ValueError, match="safe value 2"):
        PwmActuator(FakePwm(), 0.0, 1.0, safe=2)
    with pytest.raises(ValueError, match="lo != hi"):
        PwmActuator(FakePwm(), 1.0, 1.0, safe=1.0)


def test_adc_sensor_volts_and_bus_error():
    adc = FakeAdc(32768)
    sensor = AdcSensor(adc, vref=3.3)
    assert sensor.read(0) == pytest.approx(32768 * 3.3 / 65535, rel=1e-15)
    adc.counts = 65535
    assert sensor.read(0) == pytest.approx(3.3, rel=1e-15)
    adc.fail = True
    assert sensor.read(0) is None and sensor.fault == "bus"


@pytest.mark.parametrize(
    "level, invert, raw", [(0, False, 0), (1, False, 1), (0, True, 1), (1, True, 0)]
)
def test_digital_in(level, invert, raw):
    sensor = DigitalIn(FakePin(level), invert=invert)
    assert sensor.read(0) == raw and sensor.raw_unit == UNIT_DIGITAL


def test_digital_out_invert_safe_and_validation():
    pin = FakePin()
    valve = DigitalOut(pin, invert=True, safe=0, name="valve")
    assert pin.history == [1]  # safe 0, active low -> pin high at construction
    valve.write(1)
    valve.write(True)
    valve.safe()
    assert pin.history == [1, 0, 0, 1] and valve.value == 0
    for bad in (0.5, 2, -1, None):
        with pytest.raises(ValueError, match="valve"):
            valve.write(bad)
    assert pin.history == [1, 0, 0, 1]


# ----------------------------------------------------------------------------- emulated


def test_emulated_sensor_raw_and_faults():
    sensor = EmulatedSensor("mA")
    assert sensor.raw_unit == "mA" and sensor.read(0) is None
    sensor.set_raw(12.5)
    assert sensor.read(1) == 12.5 and sensor.fault is None
    sensor.set_fault("open")
    assert sensor.read(2) is None and sensor.fault == "open"
    sensor.set_fault(None)
    assert sensor.read(3) == 12.5 and sensor.fault is None
    assert sensor.reads == 4
    with pytest.raises(ValueError, match="'melted'"):
        sensor.set_fault("melted")


def test_emulated_actuator_records_writes():
    act = EmulatedActuator(0.0, 1.0, 0.0, name="heater")
    assert act.value == 0.0 and act.writes == 0
    act.write(0.7)
    act.write(0.2)
    assert act.value == 0.2 and act.writes == 2
    with pytest.raises(ValueError, match="heater"):
        act.write(1.2)
    act.safe()
    assert act.value == 0.0 and act.writes == 3
    with pytest.raises(ValueError, match="range"):
        EmulatedActuator(1.0, 0.0, 0.0)


# ----------------------------------------------------------------------------- build from specs


def test_build_sensors_share_bus_objects_per_bus_id():
    hw = FakeProvider()
    t1 = build_sensor({"driver": "max31865", "spi": 0, "cs": 17}, hw)
    t2 = build_sensor(
        {"driver": "max31865", "spi": 0, "cs": 20, "wires": 3, "ref_ohms": 4300.0}, hw
    )
    t3 = build_sensor({"driver": "max31865", "spi": 1, "cs": 9, "filter_hz": 60}, hw)
    assert isinstance(t1, Max31865) and t1._spi is t2._spi is hw.spis[0]
    assert t3._spi is hw.spis[1] and t3._spi is not t1._spi
    assert t1._cs is not t2._cs
    assert (t2.config, t2.ref_ohms, t3.config) == (0xD1, 4300.0, 0xC0)
    assert ("pin_out", 17) in hw.calls and ("pin_out", 20) in hw.calls
    kernel_cs = build_sensor({"driver": "max31865", "spi": 1}, hw)  # Linux: CE0, no cs pin
    assert kernel_cs._cs is None and kernel_cs._spi is t3._spi

    p0 = build_sensor({"driver": "ads1115", "i2c": 0, "channel": 0, "shunt_ohms": 150}, hw)
    p1 = build_sensor({"driver": "ads1115", "i2c": 0, "channel": 1, "shunt_ohms": 150}, hw)
    v2 = build_sensor({"driver": "ads1115", "i2c": 0, "channel": 2, "gain": 2, "rate": 860}, hw)
    other = build_sensor({"driver": "ads1115", "i2c": 0, "address": 0x49, "channel": 0}, hw)
    assert isinstance(p0, CurrentLoop) and isinstance(v2, Ads1115Channel)
    assert p0.adc_channel.chip is p1.adc_channel.chip is v2.chip
    assert other.chip is not v2.chip and other.chip.address == 0x49
    assert v2.chip._i2c is other.chip._i2c is hw.i2cs[0]
    assert [c for c in hw.calls if c[0] in ("spi", "i2c")] == [
        ("spi", 0),
        ("spi", 0),
        ("spi", 1),
        ("spi", 1),
        ("i2c", 0),
        ("i2c", 0),
    ]
    # The shared chip works end to end: 4 mA and 20 mA loops on AIN0/AIN1.
    for now in range(0, 100, 20):
        ma = (p0.read(now), p1.read(now), v2.read(now))
    assert ma[0] == pytest.approx(4.0) and ma[1] == pytest.approx(20.0)
    assert ma[2] == pytest.approx(-1600 * 2.048 / 32768)


def test_build_simple_sensors():
    hw = FakeProvider()
    adc = build_sensor({"driver": "adc", "pin": 26, "vref": 3.0}, hw)
    din = build_sensor({"driver": "pin_in", "pin": 5, "invert": True}, hw)
    emu = build_sensor({"driver": "emulated", "raw_unit": "ohm"}, hw)
    assert isinstance(adc, AdcSensor) and isinstance(din, DigitalIn)
    assert isinstance(emu, EmulatedSensor) and emu.raw_unit == "ohm"
    assert din.read(0) == 1  # pin low, inverted
    assert hw.calls == [("adc", 26), ("pin_in", 5)]


def test_build_actuators():
    hw = FakeProvider()
    heater = build_actuator({"driver": "pwm", "pin": 15, "safe": 0.0, "range": [0, 1]}, hw)
    pump = build_actuator(
        {
            "driver": "pwm",
            "pin": 16,
            "freq": 500,
            "lo": 0.0,
            "hi": 50.0,
            "range": [0, 20],
            "safe": 0.0,
            "name": "pump",
        },
        hw,
    )
    inverted = build_actuator({"driver": "pwm", "pin": 17, "safe": 0.0, "invert": True}, hw)
    valve = build_actuator({"driver": "pin_out", "pin": 3, "safe": 1, "invert": True}, hw)
    emu = build_actuator({"driver": "emulated", "range": [0, 100], "safe": 0}, hw)
    assert hw.calls == [("pwm", 15, 1000), ("pwm", 16, 500), ("pwm", 17, 1000), ("pin_out", 3)]
    assert isinstance(heater, PwmActuator) and isinstance(valve, DigitalOut)
    assert isinstance(emu, EmulatedActuator) and (emu.min, emu.max) == (0, 100)
    pump.write(20)
    assert pump.duty == 26214 and pump.name == "pump"
    assert inverted.duty == 65535  # safe 0.0 on an inverted scale -> full duty
    assert valve.value == 1
    with pytest.raises(ValueError, match="pump"):
        pump.write(25)


def test_unknown_driver_names_it_and_the_allowed_list():
    hw = FakeProvider()
    with pytest.raises(ValueError) as err:
        build_sensor({"driver": "bogus", "name": "T1"}, hw)
    message = str(err.value)
    assert "'bogus'" in message and "T1" in message
    for name in SENSOR_DRIVERS:
        assert name in message
    with pytest.raises(ValueError) as err:
        build_actuator({"driver": "max31865", "safe": 0}, hw)
    for name in ACTUATOR_DRIVERS:
        assert name in str(err.value)
    assert "'max31865'" in str(err.value)


@pytest.mark.parametrize(
    "build, spec, key",
    [
        (build_sensor, {"driver": "max31865"}, "'spi'"),
        (build_sensor, {"driver": "ads1115", "i2c": 0}, "'channel'"),
        (build_sensor, {"driver": "adc"}, "'pin'"),
        (build_actuator, {"driver": "pwm", "pin": 1}, "'safe'"),
        (build_actuator, {"driver": "emulated", "safe": 0}, "'range'"),
        (build_actuator, {"driver": "pin_out", "pin": 1, "safe": 0, "range": [0, 2]}, "[0, 1]"),
    ],
)
def test_build_rejects_incomplete_specs(build, spec, key):
    with pytest.raises(ValueError) as err:
        build(spec, FakeProvider())
    assert key in str(err.value)


# ----------------------------------------------------------------------------- Linux adapters


class FakeSmbus:
    """smbus2.SMBus block-transfer methods over a ``FakeI2C``."""

    def __init__(self, i2c):
        self.i2c = i2c

    def write_i2c_block_data(self, addr, register, data):
        self.i2c.writeto_mem(addr, register, bytes(data))

    def read_i2c_block_data(self, addr, register, length):
        return list(self.i2c.readfrom_mem(addr, register, length))


class FakeSpidev:
    """spidev.SpiDev.xfer2 (kernel chip select: one transaction per call)."""

    def __init__(self, chip):
        self.chip = chip

    def xfer2(self, data):
        rx = bytearray(len(data))
        self.chip.write_readinto(bytes(data), rx)
        return list(rx)


def test_linux_bus_adapters_run_the_shared_drivers():
    bus = FakeI2C({0x48: [24000, 0, 0, 0]})
    loop = CurrentLoop(Ads1115Channel(Ads1115(SmbusBus(FakeSmbus(bus))), 0))
    loop.read(0)
    assert loop.read(10) == pytest.approx(20.0)
    assert bus.writes == [(0x48, 1, b"\xc3\x83")] * 2 and bus.reads == [(0x48, 0, 2)]

    chip = FakeMax31865(auto_cs=True)
    rtd = Max31865(SpidevBus(FakeSpidev(chip)), None)
    rtd.read(0)
    chip.set_rtd(PT100_0C_CODE)
    assert rtd.read(100) == pytest.approx(PT100_0C_CODE * 430.0 / 32768)
    assert chip.transactions == [b"\x80\x83", b"\x80\xc1", b"\x00\x00\x00\x00"]
    spi = SpidevBus(FakeSpidev(chip))
    assert spi.read(2, 0x07) == b"\xff\x00"  # address 07h, then fault status


def test_linux_sysfs_pwm(tmp_path):
    chip_dir = tmp_path / "pwmchip0"
    (chip_dir / "pwm1").mkdir(parents=True)
    pwm = SysfsPwm(0, 1, str(tmp_path))
    pwm.freq(1000)
    assert (chip_dir / "pwm1" / "period").read_text() == "1000000"
    assert (chip_dir / "pwm1" / "enable").read_text() == "1"
    pwm.duty_u16(32768)
    assert (chip_dir / "pwm1" / "duty_cycle").read_text() == str(1000000 * 32768 // 65535)
    (tmp_path / "pwmchip2").mkdir()
    SysfsPwm(2, 0, str(tmp_path))
    assert (tmp_path / "pwmchip2" / "export").read_text() == "0"
    assert [parse_pwm_pin(p) for p in (18, 13, "pwmchip2/1")] == [(0, 0), (0, 1), (2, 1)]
    with pytest.raises(ValueError, match="GPIO 12, 13, 18, 19"):
        parse_pwm_pin(4)


def test_linux_watchdog_feeds_and_magic_closes(tmp_path):
    path = tmp_path / "watchdog"
    path.write_bytes(b"")
    with LinuxWatchdog(str(path)) as wdt:
        wdt.feed()
        wdt.feed()
    assert path.read_bytes() == b"\0\0V"
    with pytest.raises(ValueError, match="closed"):
        wdt.feed()
    other = tmp_path / "not_a_watchdog"
    other.write_bytes(b"")
    with pytest.raises(OSError):  # a regular file has no watchdog ioctl
        LinuxWatchdog(str(other), timeout_s=10)
    assert other.read_bytes() == b"V"  # the failed open still closed in order


# ----------------------------------------------------------------------------- on MicroPython


def scenario():
    """Drive both bus drivers through their exact byte sequences; return what happened."""
    from edge.drivers import build_sensor
    from edge.drivers.ads1115 import Ads1115Channel, CurrentLoop
    from edge.drivers.max31865 import Max31865

    out = []
    chip = FakeMax31865()
    rtd = Max31865(chip, chip.cs, wires=3, filter_hz=60)
    out.append(rtd.read(0))
    chip.set_rtd(7620)
    out.append(int(rtd.read(100) * 10000 + 0.5))
    chip.set_rtd(0x7FFF, True)
    chip.regs[7] = 0x84
    out.append(rtd.read(110))
    out.append(rtd.fault)
    out.append(chip.regs[7])
    out.append([list(t) for t in chip.transactions])

    class Provider:  # just the i2c part of the hardware-provider interface
        def __init__(self, bus):
            self.bus = bus

        def i2c(self, bus_id):
            return self.bus

    bus = FakeI2C({0x48: [4800, 24000, -1600, 0]})
    hw = Provider(bus)
    low = build_sensor({"driver": "ads1115", "i2c": 0, "channel": 0, "shunt_ohms": 150}, hw)
    high = build_sensor({"driver": "ads1115", "i2c": 0, "channel": 1, "shunt_ohms": 150}, hw)
    volts = Ads1115Channel(low.adc_channel.chip, 2, 16, 860)
    out.append(isinstance(low, CurrentLoop) and high.adc_channel.chip is volts.chip)
    for now in range(0, 100, 20):
        ma = [low.read(now), high.read(now), volts.read(now)]
    out.append([int(ma[0] * 1000000 + 0.5), int(ma[1] * 1000000 + 0.5), int(ma[2] * 1000000 - 0.5)])
    out.append([[w[0], w[1], list(w[2])] for w in bus.writes[:3]])
    bus.fail = True
    out.append([low.read(200), low.fault])
    return out


EXPECTED_SCENARIO = [
    None,
    999939,  # 7620 * 430 / 32768 = 99.9939 ohm
    None,
    "open",
    0,
    [[0x80, 0x92], [0x80, 0xD0], [0, 0, 0, 0], [0, 0, 0, 0], [7, 0], [0x80, 0xD2]],
    True,
    [4000000, 20000000, -12500],  # x 1e6: 4 mA, 20 mA, AIN2 at gain 16: -1600 * 0.256/32768 V
    [[0x48, 1, [0xC3, 0x83]], [0x48, 1, [0xD3, 0x83]], [0x48, 1, [0xEB, 0xE3]]],
    [None, "bus"],
]


def test_scenario_on_cpython():
    assert scenario() == EXPECTED_SCENARIO


def test_drivers_run_on_real_micropython():
    source = "\n".join(
        inspect.getsource(obj) for obj in (FakeMax31865, FakeChipSelect, FakeI2C, scenario)
    )
    out = run_node(source + "\nprint(repr(scenario()))\n", packages=("protocol", "edge"))
    assert out.strip() == repr(EXPECTED_SCENARIO)
