"""On-chip I/O through MicroPython's ``machine`` module: ADC, PWM, digital pins.

The drivers take ready-made ``machine`` objects (or test fakes with the same methods);
only ``MachineHardware``, the provider that builds them, touches ``machine``, and it
imports it inside its methods, so this module imports fine on CPython and in the
WebAssembly builds, which have no hardware classes.
"""

from edge.hal import FAULT_BUS, UNIT_DIGITAL, UNIT_VOLT, Actuator, Sensor

_DUTY_FULL = 65535


class AdcSensor(Sensor):
    """On-chip ADC: ``adc.read_u16()`` (0..65535) -> volts at the pin."""

    raw_unit = UNIT_VOLT

    def __init__(self, adc, vref=3.3):
        Sensor.__init__(self)
        self._adc = adc
        self._volts_per_count = vref / _DUTY_FULL

    def read(self, now_ms):
        try:
            counts = self._adc.read_u16()
        except OSError as e:
            return self._failed(FAULT_BUS, "adc read failed: " + repr(e))
        return self._ok(counts * self._volts_per_count)


class PwmActuator(Actuator):
    """PWM (or PWM-filtered 0-10 V / DAC) output with a linear engineering scale.

    ``lo`` is the engineering value at duty 0 and ``hi`` the value at full duty 65535
    (``hi < lo`` inverts).  A heater: lo=0, hi=1 (duty fraction).  A pump whose 0-10 V
    speed input spans 0..50 mL/min: lo=0, hi=50; its ``limits`` (the channel range, e.g.
    (0, 20)) may be narrower than the scale but not wider, since duty cannot exceed
    0..65535.  ``limits`` defaults to the whole scale.
    """

    def __init__(self, pwm, lo=0.0, hi=1.0, safe=0.0, freq=None, limits=None, name="pwm"):
        if lo == hi:
            raise ValueError("{}: pwm scale needs lo != hi, got lo = hi = {!r}".format(name, lo))
        scale_min = min(lo, hi)
        scale_max = max(lo, hi)
        if limits is None:
            limits = (scale_min, scale_max)
        if limits[0] < scale_min or limits[1] > scale_max:
            raise ValueError(
                "{}: range [{}, {}] exceeds the pwm scale lo..hi [{}, {}]".format(
                    name, limits[0], limits[1], scale_min, scale_max
                )
            )
        Actuator.__init__(self, limits[0], limits[1], safe, name)
        self._pwm = pwm
        self._lo = lo
        self._duty_per_unit = _DUTY_FULL / (hi - lo)
        if freq is not None:
            pwm.freq(freq)
        self.duty = None
        self.safe()

    def duty_for(self, value):
        """The duty_u16 for an in-range engineering value (rounded half up)."""
        duty = int((value - self._lo) * self._duty_per_unit + 0.5)
        # Only float rounding can push past the ends here: the range was validated.
        if duty < 0:
            return 0
        if duty > _DUTY_FULL:
            return _DUTY_FULL
        return duty

    def _apply(self, value):
        duty = self.duty_for(value)
        self._pwm.duty_u16(duty)
        self.duty = duty


class DigitalIn(Sensor):
    """A GPIO input: 0/1, inverted when ``invert`` (e.g. an active-low switch)."""

    raw_unit = UNIT_DIGITAL

    def __init__(self, pin, invert=False):
        Sensor.__init__(self)
        self._pin = pin
        self._invert = 1 if invert else 0

    def read(self, now_ms):
        return self._ok((1 if self._pin.value() else 0) ^ self._invert)


class DigitalOut(Actuator):
    """A GPIO output driven 0/1 (a valve, a relay); ``invert`` for active-low drivers."""

    def __init__(self, pin, invert=False, safe=0, name="pin_out"):
        Actuator.__init__(self, 0, 1, safe, name)
        self._pin = pin
        self._invert = 1 if invert else 0
        self.safe()

    def _check(self, value, what):
        if not isinstance(value, (int, float)) or value not in (0, 1):
            raise ValueError("{}: {} {!r} is not 0 or 1".format(self.name, what, value))

    def _apply(self, value):
        self._pin.value((1 if value else 0) ^ self._invert)


class MachineHardware:
    """Hardware provider for MicroPython boards (see ``edge.drivers.build_sensor``).

    One ``machine.SPI``/``machine.I2C`` object per bus id is shared by every device on
    that bus.  ``spi_pins``/``i2c_pins`` optionally map a bus id to its pins
    (``(sck, mosi, miso)`` / ``(scl, sda)``); otherwise the port's default pins are used.
    SPI runs in mode 1 (CPOL=0, CPHA=1), which the MAX31865 requires (CPHA must be 1).
    """

    def __init__(self, spi_pins=None, i2c_pins=None, spi_baudrate=1000000, i2c_freq=400000):
        self._spi_pins = spi_pins or {}
        self._i2c_pins = i2c_pins or {}
        self._spi_baudrate = spi_baudrate
        self._i2c_freq = i2c_freq
        self._spi = {}
        self._i2c = {}

    def adc(self, pin):
        import machine

        return machine.ADC(machine.Pin(pin))

    def pwm(self, pin, freq):
        import machine

        pwm = machine.PWM(machine.Pin(pin))
        pwm.freq(freq)
        return pwm

    def pin_in(self, pin):
        import machine

        return machine.Pin(pin, machine.Pin.IN)

    def pin_out(self, pin):
        import machine

        return machine.Pin(pin, machine.Pin.OUT)

    def spi(self, bus_id):
        bus = self._spi.get(bus_id)
        if bus is None:
            import machine

            pins = self._spi_pins.get(bus_id)
            if pins is None:
                bus = machine.SPI(bus_id, baudrate=self._spi_baudrate, polarity=0, phase=1)
            else:
                bus = machine.SPI(
                    bus_id,
                    baudrate=self._spi_baudrate,
                    polarity=0,
                    phase=1,
                    sck=machine.Pin(pins[0]),
                    mosi=machine.Pin(pins[1]),
                    miso=machine.Pin(pins[2]),
                )
            self._spi[bus_id] = bus
        return bus

    def i2c(self, bus_id):
        bus = self._i2c.get(bus_id)
        if bus is None:
            import machine

            pins = self._i2c_pins.get(bus_id)
            if pins is None:
                bus = machine.I2C(bus_id, freq=self._i2c_freq)
            else:
                bus = machine.I2C(
                    bus_id, scl=machine.Pin(pins[0]), sda=machine.Pin(pins[1]), freq=self._i2c_freq
                )
            self._i2c[bus_id] = bus
        return bus
