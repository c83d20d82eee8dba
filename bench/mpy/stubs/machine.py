"""A stand-in for MicroPython's ``machine`` module, for measuring board code where there
is no hardware (the WebAssembly builds): bench/mpy/board_ram.py.

Only what edge.boardmain and edge.drivers.machine_io use.  The buses answer like the
chips the shipped board configs wire to them: a MAX31865 on SPI reading a PT100 at
60 degC, an ADS1115 on I2C converting 12 mA across a 150 ohm shunt (1.8 V at gain 1),
an ADC at mid scale; digital inputs read 0.  Never on a board (not in any bundle).
"""

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_RTD_CODE = int(123.24 / 430.0 * 32768)  # MAX31865: PT100 at 60 degC, 430 ohm reference
_ADS_CODE = int(1.8 / 4.096 * 32768)  # ADS1115 at gain 1 (+-4.096 V): 12 mA x 150 ohm


def reset_cause():
    return PWRON_RESET


class Pin:
    IN = 0
    OUT = 1

    def __init__(self, pin, mode=-1):
        self.pin = pin
        self._value = 0

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = v
        return None


class PWM:
    def __init__(self, pin):
        self._duty = 0

    def freq(self, f=None):
        return 1000

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d
        return None

    def deinit(self):
        pass


class ADC:
    def __init__(self, pin):
        pass

    def read_u16(self):
        return 32768


class SPI:
    """One MAX31865: writes set the config register; reads from 00h return it and the
    RTD code (fault bit clear); the fault status register reads 0."""

    def __init__(self, bus_id, **kwargs):
        self._config = 0

    def write(self, buf):
        if buf[0] == 0x80:  # write to the config register
            self._config = buf[1] & ~0x02  # the fault-clear bit reads back 0

    def write_readinto(self, tx, rx):
        if tx[0] == 0x00:
            rx[1] = self._config
            rx[2] = (_RTD_CODE << 1) >> 8
            rx[3] = (_RTD_CODE << 1) & 0xFE
        else:
            for i in range(len(rx)):
                rx[i] = 0


# An SLF3x frame: 0 mL/min (the probe runs the pump at its safe 0), 23 degC, no flags, each word
# followed by its Sensirion CRC-8.
_SLF3X_FRAME = bytes((0x00, 0x00, 0x81, 0x11, 0xF8, 0x20, 0x00, 0x00, 0x81))


class I2C:
    """ADS1115 chips: every conversion reads the same code; an SLF3x at 0x08 reads the
    same frame."""

    def __init__(self, bus_id, **kwargs):
        pass

    def writeto(self, addr, buf):
        pass

    def readfrom_into(self, addr, buf):
        for i in range(len(buf)):
            buf[i] = _SLF3X_FRAME[i]

    def writeto_mem(self, addr, reg, buf):
        pass

    def readfrom_mem_into(self, addr, reg, buf):
        buf[0] = _ADS_CODE >> 8
        buf[1] = _ADS_CODE & 0xFF


class Timer:
    PERIODIC = 1
    ONE_SHOT = 0

    def __init__(self, timer_id=-1):
        pass

    def init(self, **kwargs):
        pass

    def deinit(self):
        pass


class WDT:
    def __init__(self, id=0, timeout=5000):
        pass

    def feed(self):
        pass
