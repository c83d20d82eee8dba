"""Build sensors and actuators from compiled board-config specs.

``spec`` is a plain dict; ``spec["driver"]`` picks the driver and the other keys are its
parameters (defaults in brackets):

Sensors (``build_sensor``):

* ``emulated``: ``raw_unit`` ["V"]
* ``adc``: ``pin``, ``vref`` [3.3] -> volts
* ``pin_in``: ``pin``, ``invert`` [False] -> 0/1
* ``max31865``: ``spi`` (bus id), ``cs`` (pin; absent or None when the bus drives CS),
  ``ref_ohms`` [430.0], ``wires`` [2], ``filter_hz`` [50], ``settle_ms`` [100] -> ohms
* ``ads1115``: ``i2c`` (bus id), ``address`` [0x48], ``channel`` (0..3), ``gain`` [1],
  ``rate`` [128] -> volts, or mA through a ``shunt_ohms`` resistor when that key is given
* ``slf3x``: ``i2c`` (bus id), ``model`` ["SLF3S-1300F"], ``liquid`` ["water"],
  ``settle_ms`` [60] -> mL/min (Sensirion liquid flow sensor, address 0x08)

Actuators (``build_actuator``), all with ``safe`` (required) and ``range`` ([min, max]):

* ``emulated``: ``range`` required
* ``pwm``: ``pin``, ``freq`` [1000], ``lo`` [0.0] / ``hi`` [1.0] = the engineering values
  at duty 0 / full duty, ``range`` [lo..hi], ``invert`` [False] swaps lo and hi
* ``pin_out``: ``pin``, ``invert`` [False]; ``range`` is [0, 1] if given

``name`` (optional) labels error messages.  ``hw`` is the hardware provider:
``adc(pin)``, ``pwm(pin, freq)``, ``pin_in(pin)``, ``pin_out(pin)``, ``spi(bus_id)``,
``i2c(bus_id)`` - ``edge.drivers.machine_io.MachineHardware`` on a MicroPython board,
``edge.linux.hardware.LinuxHardware`` on a Raspberry Pi, a fake in tests.  The provider
shares one bus object per bus id; an ADS1115 chip (bus id + address) is shared by all its
channels through a registry kept on the provider object (attribute ``_shared_devices``).
"""

from edge.drivers.machine_io import AdcSensor, DigitalIn, DigitalOut, PwmActuator

# The chip drivers (ads1115, max31865, slf3x) and the emulated ones are imported where they are
# built: only boards whose config uses a driver carry its file
# (edge.boardconfig.board_files.files_for_config), and an imported module costs RAM for
# as long as the board runs (docs/deploy.md, "Memory").

SENSOR_DRIVERS = ("emulated", "adc", "pin_in", "max31865", "ads1115", "slf3x")
ACTUATOR_DRIVERS = ("emulated", "pwm", "pin_out")


def _driver(spec, kind, allowed):
    if not isinstance(spec, dict):
        raise ValueError("{} spec must be a dict, got {!r}".format(kind, spec))
    driver = spec.get("driver")
    if driver not in allowed:
        raise ValueError(
            "{} {}: unknown driver {!r}; allowed: {}".format(
                kind, spec.get("name", "?"), driver, ", ".join(allowed)
            )
        )
    return driver


def _need(spec, key, kind):
    if key not in spec:
        raise ValueError(
            "{} {}: driver {!r} needs key {!r}".format(
                kind, spec.get("name", "?"), spec.get("driver"), key
            )
        )
    return spec[key]


def _shared_chip(hw, bus_id, address):
    registry = getattr(hw, "_shared_devices", None)
    if registry is None:
        registry = {}
        hw._shared_devices = registry
    key = ("ads1115", bus_id, address)
    chip = registry.get(key)
    if chip is None:
        from edge.drivers.ads1115 import Ads1115  # noqa: PLC0415  (see the imports)

        chip = Ads1115(hw.i2c(bus_id), address)
        registry[key] = chip
    return chip


def build_sensor(spec, hw):
    """A ``Sensor`` for ``spec`` (see the module docstring); ValueError on a bad spec."""
    driver = _driver(spec, "sensor", SENSOR_DRIVERS)
    if driver == "emulated":
        from edge.drivers.emulated import EmulatedSensor  # noqa: PLC0415  (see the imports)

        return EmulatedSensor(spec.get("raw_unit", "V"))
    if driver == "adc":
        return AdcSensor(hw.adc(_need(spec, "pin", "sensor")), spec.get("vref", 3.3))
    if driver == "pin_in":
        return DigitalIn(hw.pin_in(_need(spec, "pin", "sensor")), spec.get("invert", False))
    if driver == "max31865":
        from edge.drivers.max31865 import Max31865  # noqa: PLC0415  (see the imports)

        bus = hw.spi(_need(spec, "spi", "sensor"))
        cs = spec.get("cs")  # absent/None: the bus asserts CS itself (Linux kernel CS)
        return Max31865(
            bus,
            None if cs is None else hw.pin_out(cs),
            spec.get("ref_ohms", 430.0),
            spec.get("wires", 2),
            spec.get("filter_hz", 50),
            spec.get("settle_ms", 100),
        )
    if driver == "slf3x":
        from edge.drivers.slf3x import Slf3x  # noqa: PLC0415  (see the imports)

        return Slf3x(
            hw.i2c(_need(spec, "i2c", "sensor")),
            spec.get("model", "SLF3S-1300F"),
            spec.get("liquid", "water"),
            spec.get("settle_ms", 60),
        )
    # ads1115: only boards with an ADS1115 channel carry edge/drivers/ads1115.py
    from edge.drivers.ads1115 import DEFAULT_ADDRESS, Ads1115Channel, CurrentLoop  # noqa: PLC0415

    chip = _shared_chip(hw, _need(spec, "i2c", "sensor"), spec.get("address", DEFAULT_ADDRESS))
    channel = Ads1115Channel(
        chip, _need(spec, "channel", "sensor"), spec.get("gain", 1), spec.get("rate", 128)
    )
    if "shunt_ohms" in spec:
        return CurrentLoop(channel, spec["shunt_ohms"])
    return channel


def _range(spec, default=None):
    rng = spec.get("range", default)
    if rng is None:
        _need(spec, "range", "actuator")
    if not isinstance(rng, (list, tuple)) or len(rng) != 2:
        raise ValueError(
            "actuator {}: range must be [min, max], got {!r}".format(spec.get("name", "?"), rng)
        )
    return rng


def build_actuator(spec, hw):
    """An ``Actuator`` for ``spec`` (see the module docstring); ValueError on a bad spec.

    Hardware actuators write their safe value on construction."""
    driver = _driver(spec, "actuator", ACTUATOR_DRIVERS)
    name = spec.get("name", driver)
    safe = _need(spec, "safe", "actuator")
    if driver == "emulated":
        from edge.drivers.emulated import EmulatedActuator  # noqa: PLC0415  (see the imports)

        rng = _range(spec)
        return EmulatedActuator(rng[0], rng[1], safe, name)
    if driver == "pwm":
        lo = spec.get("lo", 0.0)
        hi = spec.get("hi", 1.0)
        if spec.get("invert", False):
            lo, hi = hi, lo
        rng = _range(spec, (min(lo, hi), max(lo, hi)))
        freq = spec.get("freq", 1000)
        return PwmActuator(
            hw.pwm(_need(spec, "pin", "actuator"), freq), lo, hi, safe, None, rng, name
        )
    # pin_out
    rng = _range(spec, (0, 1))
    if rng[0] != 0 or rng[1] != 1:
        raise ValueError("actuator {}: pin_out range must be [0, 1], got {!r}".format(name, rng))
    return DigitalOut(
        hw.pin_out(_need(spec, "pin", "actuator")), spec.get("invert", False), safe, name
    )
