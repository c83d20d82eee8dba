"""``LinuxHardware``: the hardware provider for a Raspberry Pi, on CPython.

It hands the drivers of ``edge.drivers`` objects with the MicroPython API they use, so
the MAX31865 and ADS1115 code is shared between boards and the Pi:

* SPI: ``spidev`` wrapped as ``SpidevBus`` (``write``, ``write_readinto``, ``readinto``,
  ``read``).  Bus id ``N`` opens ``/dev/spidevN.0`` (``"N.M"``: ``/dev/spidevN.M``); the
  kernel asserts CE0 (CE``M``) around every transfer.  Every register access of the
  drivers is one transfer, so a device wired to CE0 needs no ``cs`` pin.  A device with a
  GPIO ``cs`` works too (the driver toggles it around the transfer), but CE0 still toggles
  with it: on one bus use either a single device on CE0, or GPIO chip selects only with
  nothing wired to CE0 - otherwise the CE0 device would also receive the other devices'
  register writes.  (``no_cs`` is not used: not every SPI controller driver supports it.)
* I2C: ``smbus2.SMBus`` wrapped as ``SmbusBus`` (``writeto_mem``, ``readfrom_mem``,
  ``readfrom_mem_into``); smbus2 raises OSError on a NACK, as MicroPython does.
* GPIO: ``gpiozero`` input/output devices wrapped as pins with ``value()``.
* PWM: the kernel's hardware PWM through sysfs (``/sys/class/pwm``; enable it with
  ``dtoverlay=pwm-2chan``).  A pin is a BCM GPIO number (12/18 -> channel 0, 13/19 ->
  channel 1 of ``pwmchip0``) or a ``"pwmchipN/M"`` string (e.g. Pi 5: ``"pwmchip2/0"``).
* ADC: the Pi has none; use an ADS1115.
"""

import os

SPI_MODE = 1  # CPOL=0, CPHA=1: the MAX31865 needs CPHA = 1
_PWM_CHANNEL_OF_GPIO = {12: 0, 18: 0, 13: 1, 19: 1}
_SYSFS_PWM = "/sys/class/pwm"


class SpidevBus:
    """A ``spidev.SpiDev`` (or anything with ``xfer2``) with MicroPython's SPI methods."""

    def __init__(self, dev):
        self._dev = dev

    def write(self, buf):
        self._dev.xfer2(list(buf))

    def write_readinto(self, tx, rx):
        rx[:] = bytes(self._dev.xfer2(list(tx)))

    def readinto(self, buf, write=0x00):
        buf[:] = bytes(self._dev.xfer2([write] * len(buf)))

    def read(self, nbytes, write=0x00):
        return bytes(self._dev.xfer2([write] * nbytes))


class SmbusBus:
    """An ``smbus2.SMBus`` with MicroPython's register-oriented I2C methods."""

    def __init__(self, bus):
        self._bus = bus

    def writeto_mem(self, addr, memaddr, buf):
        self._bus.write_i2c_block_data(addr, memaddr, list(buf))

    def readfrom_mem(self, addr, memaddr, nbytes):
        return bytes(self._bus.read_i2c_block_data(addr, memaddr, nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf):
        buf[:] = bytes(self._bus.read_i2c_block_data(addr, memaddr, len(buf)))


class GpioPin:
    """A gpiozero device as a MicroPython-style pin: ``value()`` reads, ``value(x)`` sets."""

    def __init__(self, device):
        self._device = device

    def value(self, x=None):
        if x is None:
            return 1 if self._device.value else 0
        self._device.value = 1 if x else 0
        return None


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class SysfsPwm:
    """One hardware PWM channel through ``/sys/class/pwm`` with ``freq`` and ``duty_u16``."""

    def __init__(self, chip, channel, root=_SYSFS_PWM):
        self._chip_dir = "{}/pwmchip{}".format(root, chip)
        self._dir = "{}/pwm{}".format(self._chip_dir, channel)
        if not os.path.isdir(self._dir):
            _write(self._chip_dir + "/export", str(channel))
        self._period_ns = 0
        self._duty = 0

    def freq(self, hz):
        # The kernel rejects a period shorter than the current duty cycle: zero it first.
        _write(self._dir + "/duty_cycle", "0")
        self._period_ns = 1000000000 // hz
        _write(self._dir + "/period", str(self._period_ns))
        self.duty_u16(self._duty)
        _write(self._dir + "/enable", "1")

    def duty_u16(self, duty):
        self._duty = duty
        _write(self._dir + "/duty_cycle", str(self._period_ns * duty // 65535))

    def deinit(self):
        _write(self._dir + "/enable", "0")


def parse_pwm_pin(pin):
    """(chip, channel) for a BCM GPIO number or a ``"pwmchipN/M"`` string."""
    if isinstance(pin, str) and pin.startswith("pwmchip") and "/" in pin:
        chip, channel = pin[len("pwmchip") :].split("/", 1)
        return int(chip), int(channel)
    if pin in _PWM_CHANNEL_OF_GPIO:
        return 0, _PWM_CHANNEL_OF_GPIO[pin]
    raise ValueError(
        "pwm pin {!r}: the Pi has hardware PWM on GPIO 12, 13, 18, 19, or give 'pwmchipN/M'".format(
            pin
        )
    )


class LinuxHardware:
    """The ``edge.drivers`` hardware provider on a Raspberry Pi (one bus object per id)."""

    def __init__(self, spi_hz=1000000, pwm_root=_SYSFS_PWM):
        self._spi_hz = spi_hz
        self._pwm_root = pwm_root
        self._spi = {}
        self._i2c = {}

    def adc(self, pin):
        raise ValueError(
            "adc pin {!r}: a Raspberry Pi has no ADC; use an 'ads1115' sensor".format(pin)
        )

    def pwm(self, pin, freq):
        chip, channel = parse_pwm_pin(pin)
        pwm = SysfsPwm(chip, channel, self._pwm_root)
        pwm.freq(freq)
        return pwm

    def pin_in(self, pin):
        import gpiozero

        return GpioPin(gpiozero.DigitalInputDevice(pin))

    def pin_out(self, pin):
        import gpiozero

        return GpioPin(gpiozero.DigitalOutputDevice(pin))

    def spi(self, bus_id):
        bus = self._spi.get(bus_id)
        if bus is None:
            import spidev

            dev = spidev.SpiDev()
            if isinstance(bus_id, str):
                number, device = bus_id.split(".", 1)
                dev.open(int(number), int(device))
            else:
                dev.open(bus_id, 0)
            dev.max_speed_hz = self._spi_hz
            dev.mode = SPI_MODE
            bus = SpidevBus(dev)
            self._spi[bus_id] = bus
        return bus

    def i2c(self, bus_id):
        bus = self._i2c.get(bus_id)
        if bus is None:
            import smbus2

            bus = SmbusBus(smbus2.SMBus(bus_id))
            self._i2c[bus_id] = bus
        return bus
