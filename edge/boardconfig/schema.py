"""The board-config schema: every key, its type, unit, default, range and choices.

This module is declarative: the loader walks these tables, and docs/board-config.md's key
tables are generated from them (``python -m edge.boardconfig.schema`` prints them; a test
keeps the document in step).  Defaults live here and only here: the loader fills them in,
the compiled form carries every value explicitly, and the board never needs a default.

A ``Key`` is one TOML key.  ``required`` keys must be present; otherwise ``default`` is
used, which is a constant, ``None`` (absent stays None in the compiled form) or a
``Derived`` rule computed by the loader from other values (its ``doc`` says how).
"""

from __future__ import annotations

from edge.boardconfig import core

# The shared key types, rules and formatting (edge.boardconfig.core), under the names the
# section modules use (S.FLOAT, S.NAME_RULE, S.fmt_num, ...).
from edge.boardconfig.core import (  # noqa: F401
    BOOL,
    CHOICE,
    FLOAT,
    ID,
    ID_RULE,
    INT,
    NAME,
    NAME_RULE,
    PATH,
    PATH_MAX_LEN,
    RANGE,
    REF,
    REFS,
    STR,
    TABLE,
    VALUES,
    fmt_choice,
    fmt_num,
    keys,
)

# The protocol's limits and id/name rule, for the loader (S.ID_PATTERN, ...): not copies.
from protocol.wire import ID_PATTERN, NAME_PATTERN, RAW_LIMIT, UNIT_MAX_LEN  # noqa: F401
from protocol.wire import MAX_CHANNELS as MAX_BIRTH_CHANNELS  # noqa: F401

# Key types of board configs only (checked by edge.boardconfig.values).
PIN = "pin"  # a GPIO number, valid for the module's target
POINTS = "points"  # calibration table [[raw, value], ...]
GAIN = "gain"  # ADS1115 PGA gain: 2/3, 1, 2, 4, 8 or 16
SPI_BUS_ID = "spi_bus_id"  # an SPI bus id; on linux also "N.M" (bus N, kernel chip select M)


class Derived:
    """A default computed from other values; ``doc`` is what the documentation shows."""

    def __init__(self, doc):
        self.doc = doc

    def __repr__(self):
        return "Derived({!r})".format(self.doc)


class Key(core.Key):
    """A board-config key: ``core.Key`` with the allowed-value texts of the board types."""

    def allowed(self):
        if self.choices is None:
            if self.type == GAIN:
                return "one of 2/3, 1, 2, 4, 8, 16"
            if self.type == SPI_BUS_ID:
                return 'a bus id {}..{} (linux: or "N.M")'.format(self.lo, self.hi)
            if self.type == INT and self.name == "address" and None not in (self.lo, self.hi):
                return "{}..{}".format(hex(self.lo), hex(self.hi))
        return core.Key.allowed(self)


MODULE_KINDS = ("pump", "reactor", "bpr", "valve", "analyzer")  # protocol MODULE_KIND_NAMES
ROLES = ("sensor", "actuator", "status")
CONDITIONS = ("above", "below", "bad_quality", "rate_of_rise", "input_true", "deviation")
TRIP_STATES = ("aborted", "stopped", "held")
SEVERITIES = ("info", "warning", "error", "critical")
SELECTS = ("max", "min", "avg")
# Calibration-table bad reasons (edge.signals also has "uncertain", "stuck" and "degraded",
# which only the channel's time limits produce).
BAD_REASONS = ("nan", "open", "short", "out_of_range", "namur_fail", "stale", "disagreement")
RAW_UNITS = ("V", "mA", "ohm", "count", "0/1", "mL/min")  # edge.hal UNIT_*; slf3x: mL/min

# Engineering units a channel may declare (telemetry and birth carry them verbatim).
UNITS = (
    "1",
    "%",
    "degC",
    "K",
    "bar",
    "mbar",
    "kPa",
    "MPa",
    "psi",
    "mL/min",
    "uL/min",
    "L/h",
    "g/min",
    "g/h",
    "AU",
    "mAU",
    "mol/L",
    "mmol/L",
    "g/L",
    "mg/mL",
    "ppm",
    "V",
    "mA",
    "ohm",
    "Hz",
    "rpm",
    "W",
)

# --- targets ---------------------------------------------------------------------------


class Target:
    """What a board family offers: GPIO numbers, which can be outputs or ADC inputs,
    bus ids, watchdog limit and which drivers exist there."""

    def __init__(
        self,
        name,
        pins,
        pins_text,
        input_only=(),
        adc_pins=None,
        pwm_pins=None,
        min_pwm_freq=1,
        bus_ids=None,
        bus_pins=True,
        max_watchdog_ms=60000,
        drivers=None,
        note="",
    ):
        self.name = name
        self.pins = frozenset(pins)
        self.pins_text = pins_text
        self.input_only = frozenset(input_only)
        self.adc_pins = None if adc_pins is None else tuple(adc_pins)
        self.pwm_pins = None if pwm_pins is None else tuple(pwm_pins)
        self.min_pwm_freq = min_pwm_freq
        self.bus_ids = bus_ids or {"spi": tuple(range(10)), "i2c": tuple(range(10))}
        self.bus_pins = bus_pins  # False: the OS owns the bus pins ([buses] pins forbidden)
        self.max_watchdog_ms = max_watchdog_ms
        self.drivers = drivers  # None = every driver
        self.note = note


_ESP32_PINS = tuple(range(0, 6)) + tuple(range(12, 20)) + (21, 22, 23, 25, 26, 27)
_ESP32_PINS = _ESP32_PINS + tuple(range(32, 40))

TARGETS = {
    "rp2": Target(
        "rp2",
        range(0, 30),
        "GPIO 0-29",
        adc_pins=(26, 27, 28, 29),
        min_pwm_freq=8,  # 125 MHz / (256 * 65536): the slowest hardware PWM
        bus_ids={"spi": (0, 1), "i2c": (0, 1)},
        max_watchdog_ms=8388,  # RP2040 watchdog maximum
        note="RP2040 (Raspberry Pi Pico): ADC on GPIO 26-29; PWM slice = (pin >> 1) & 7, "
        "channel A/B = pin & 1; the watchdog cannot exceed 8388 ms",
    ),
    "esp32": Target(
        "esp32",
        _ESP32_PINS,
        "GPIO 0-5, 12-19, 21-23, 25-27, 32-39 (6-11 drive the SPI flash)",
        input_only=range(34, 40),
        adc_pins=range(32, 40),  # ADC1 only: ADC2 is unusable while Wi-Fi runs
        bus_ids={"spi": (1, 2), "i2c": (0, 1)},
        max_watchdog_ms=60000,
        note="ESP32: GPIO 34-39 are input-only; ADC1 (GPIO 32-39) only, since ADC2 stops "
        "working while Wi-Fi is on; SPI buses 1 (HSPI) and 2 (VSPI)",
    ),
    "linux": Target(
        "linux",
        range(0, 28),
        "BCM 0-27",
        adc_pins=(),
        pwm_pins=(12, 13, 18, 19),
        bus_ids={"spi": tuple(range(7)), "i2c": tuple(range(23))},
        bus_pins=False,
        max_watchdog_ms=15000,  # bcm2835_wdt maximum
        note="Raspberry Pi (CPython): no on-chip ADC (use ads1115); hardware PWM on BCM "
        "12, 13, 18, 19; bus pins are set by the kernel (device tree), not here; the "
        "bcm2835 watchdog cannot exceed 15 s",
    ),
    "generic": Target(
        "generic",
        range(0, 256),
        "0-255",
        note="any board: pins 0-255, no capability checks (for tests and new ports)",
    ),
}
TARGET_NAMES = tuple(TARGETS)

# --- sections ----------------------------------------------------------------------------

MODULE = keys(
    Key("id", ID, "module id: the MQTT topic segment and birth id", required=True),
    Key("kind", CHOICE, "module kind", required=True, choices=MODULE_KINDS),
    Key(
        "target",
        CHOICE,
        "board family: decides valid pins, buses, drivers and the watchdog limit",
        required=True,
        choices=TARGET_NAMES,
    ),
    Key("tick_ms", INT, "control period", default=100, unit="ms", lo=10, hi=1000),
    Key(
        "telemetry_every",
        INT,
        "publish telemetry every N ticks",
        default=10,
        unit="ticks",
        lo=1,
        hi=100,
    ),
    Key(
        "key_file",
        PATH,
        "path (on the board) of the command authentication key; the key itself never "
        "enters the config or its hash.  Absent: commands are not authenticated",
    ),
)

LEASE = keys(
    Key(
        "timeout_ms",
        INT,
        "lease lost when no host lease arrives for this long (at least 2 x tick_ms)",
        default=3000,
        unit="ms",
        lo=100,
        hi=600000,
    ),
    Key(
        "on_loss",
        CHOICE,
        '"safe": every actuator to its safe value at once; "hold": keep the current '
        "setpoints for grace_ms, then safe",
        default="safe",
        choices=("safe", "hold"),
    ),
    Key(
        "grace_ms",
        INT,
        'how long "hold" keeps setpoints after lease loss; required with on_loss = "hold", '
        'not allowed with "safe" (compiled as 0)',
        default=Derived('**required** with "hold"; 0 with "safe"'),
        unit="ms",
        lo=1,
        hi=600000,
    ),
)

WATCHDOG = keys(
    Key("hardware", BOOL, "arm the hardware watchdog (false: software only)", default=True),
    Key(
        "timeout_ms",
        INT,
        "watchdog timeout; must exceed 2 x tick_ms and the target's maximum (rp2 8388, "
        "linux 15000)",
        default=2000,
        unit="ms",
        lo=1,
        hi=60000,
    ),
    Key(
        "deadman_ms",
        INT,
        "default actuator deadman: an actuator not refreshed by the control loop for this "
        "long goes to its safe value (at least 2 x tick_ms)",
        default=1000,
        unit="ms",
        lo=1,
        hi=600000,
    ),
)

BUSES = keys(
    Key(
        "spi_baudrate",
        INT,
        "SPI clock for every SPI bus",
        default=1000000,
        unit="Hz",
        lo=100000,
        hi=5000000,
    ),
    Key(
        "i2c_freq",
        INT,
        "I2C clock for every I2C bus",
        default=400000,
        unit="Hz",
        lo=10000,
        hi=1000000,
    ),
)
# ``[buses.spiN]`` / ``[buses.i2cN]`` tables (N = bus id) give the pins of a bus.
SPI_BUS = keys(
    Key("sck", PIN, "SPI clock pin", required=True),
    Key("mosi", PIN, "SPI controller-out pin", required=True),
    Key("miso", PIN, "SPI controller-in pin (may be input-only)", required=True),
)
I2C_BUS = keys(
    Key("scl", PIN, "I2C clock pin", required=True),
    Key("sda", PIN, "I2C data pin", required=True),
)
BUS_TABLES = {"spi": SPI_BUS, "i2c": I2C_BUS}

CHANNEL = keys(
    Key("role", CHOICE, "what the channel is", required=True, choices=ROLES),
    Key(
        "unit",
        CHOICE,
        "engineering unit (required for sensors and actuators; status channels are 0/1 "
        'and have unit "")',
        default=Derived("**required** for sensors and actuators"),
        choices=UNITS,
        applies=("sensor", "actuator"),
    ),
    Key(
        "driver",
        CHOICE,
        "hardware driver; its parameters are keys of the same table (see Drivers).  "
        "Derived (redundant) channels have no driver",
        default=Derived("**required** (except redundant channels)"),
        choices=None,  # filled below from DRIVERS
    ),
    Key(
        "calibration",
        TABLE,
        "raw reading -> engineering value (see Calibrations); sensors only",
        default=Derived('{type = "linear", gain = 1.0, offset = 0.0}'),
        applies=("sensor",),
    ),
    Key(
        "range",
        RANGE,
        "[min, max] engineering limits: a sensor reading outside is BAD, an actuator "
        "refuses values outside; status channels are [0, 1]",
        default=Derived("**required**"),
        applies=("sensor", "actuator"),
    ),
    Key(
        "resolution",
        FLOAT,
        "telemetry step: values travel as integers round(value / resolution); absent: "
        "float32.  Status channels always use 1",
        lo=0.0,
        lo_open=True,
        applies=("sensor", "actuator"),
    ),
    Key(
        "filter_tau_ms",
        INT,
        "first-order low-pass time constant (0: no filter)",
        default=0,
        unit="ms",
        lo=0,
        hi=600000,
        applies=("sensor",),
    ),
    Key(
        "stale_ms",
        INT,
        "reading BAD (stale) when no usable sample for longer than this (at least 2 x tick_ms)",
        default=2000,
        unit="ms",
        lo=1,
        hi=600000,
        applies=("sensor",),
    ),
    Key(
        "uncertain_ms",
        INT,
        "reading BAD (uncertain) when every sample for longer than this was UNCERTAIN (a "
        "4-20 mA transmitter parked in an NE43 margin band); at least 2 x tick_ms",
        default=Derived("stale_ms"),
        unit="ms",
        lo=1,
        hi=600000,
        applies=("sensor",),
    ),
    Key(
        "stuck_ms",
        INT,
        "frozen-transmitter detection: the reading is stuck when it stays within "
        "stuck_band for longer than this (absent: off; at least 2 x tick_ms)",
        unit="ms",
        lo=1,
        hi=3600000,
        applies=("sensor",),
    ),
    Key(
        "stuck_band",
        FLOAT,
        "with stuck_ms: +- band in the channel's unit that a live reading (process and "
        "converter noise) leaves within stuck_ms; compared before the filter",
        default=0.0,
        lo=0.0,
        applies=("sensor",),
    ),
    Key(
        "on_stuck",
        CHOICE,
        'with stuck_ms: "alarm": a sensor_stuck alarm (id and source = the channel name); '
        '"bad": also BAD (stuck), so every interlock watching the channel trips',
        default="alarm",
        choices=("alarm", "bad"),
        applies=("sensor",),
    ),
    Key(
        "safe",
        FLOAT,
        "value forced on trips, e-stop, lease loss and deadman; required for every "
        "actuator, within range",
        default=Derived("**required**"),
        applies=("actuator",),
    ),
    Key(
        "unpowered",
        FLOAT,
        "the value the actuator takes de-energised (board off, in reset or crashed, "
        "outputs not driven); safe must equal it.  Declare it when the hardware differs "
        "from the driver's default, e.g. a normally-open valve on pin_out = 1",
        default=Derived(
            "pwm: the value at duty 0 (lo; hi with invert); pin_out: 0 (invert only sets "
            "the pin's polarity); emulated: safe"
        ),
        applies=("actuator",),
    ),
    Key(
        "deadman_ms",
        INT,
        "this actuator's deadman (at least 2 x tick_ms)",
        default=Derived("watchdog.deadman_ms"),
        unit="ms",
        lo=1,
        hi=600000,
        applies=("actuator",),
    ),
    Key(
        "redundant",
        REFS,
        "[a, b]: a derived 1oo2 sensor from two sensors declared earlier (same unit); "
        "it has no driver, calibration, filter or stale_ms of its own",
        applies=("sensor",),
    ),
    Key(
        "max_disagreement",
        FLOAT,
        "redundant only: readings further apart than this make the channel BAD "
        "(disagreement); required with redundant",
        default=Derived("**required** with redundant"),
        lo=0.0,
        applies=("sensor",),
    ),
    Key(
        "select",
        CHOICE,
        'redundant only: value when both agree ("max" for high trips such as '
        'over-temperature, "min" for low trips)',
        default="avg",
        choices=SELECTS,
        applies=("sensor",),
    ),
    Key(
        "degraded_max_ms",
        INT,
        "redundant only: running on one probe (the other BAD) raises a redundancy_lost "
        "alarm at once (id and source = the channel name) and makes the channel BAD "
        "(degraded) after this long; at least 2 x tick_ms",
        default=3600000,
        unit="ms",
        lo=1,
        hi=86400000,
        applies=("sensor",),
    ),
)
# Keys only a derived (redundant) channel takes, and keys it must not have.
REDUNDANT_ONLY = ("redundant", "max_disagreement", "select", "degraded_max_ms")
HARDWARE_ONLY = (
    "driver",
    "calibration",
    "filter_tau_ms",
    "stale_ms",
    "uncertain_ms",
    "stuck_ms",
    "stuck_band",
    "on_stuck",
)
STUCK_OPTIONS = ("stuck_band", "on_stuck")  # only meaningful with stuck_ms

# --- drivers -----------------------------------------------------------------------------


SLF3X_MODELS = ("SLF3S-1300F", "SLF3S-0600F")


class Driver:
    def __init__(self, name, doc, roles, params, raw_unit, targets=None):
        self.name = name
        self.doc = doc
        self.roles = roles
        self.params = params
        self.raw_unit = raw_unit  # what the driver reads (sensors), for calibration checks
        self.targets = targets  # None = every target


DRIVERS = {
    "emulated": Driver(
        "emulated",
        "the plant emulator supplies readings (in raw_unit, so calibrations apply as on "
        "hardware) and reads actuator outputs; `--emulate` swaps every driver for this",
        ("sensor", "actuator", "status"),
        keys(
            Key(
                "raw_unit",
                CHOICE,
                "unit the emulator writes readings in (sensors and status only)",
                default=Derived(
                    'status: "0/1"; sensor: "mA" with a 4-20mA calibration, "ohm" with '
                    'pt100, else "V"'
                ),
                choices=RAW_UNITS,
                applies=("sensor", "status"),
            ),
        ),
        raw_unit=None,
    ),
    "adc": Driver(
        "adc",
        "on-chip ADC (machine.ADC): volts at the pin",
        ("sensor",),
        keys(
            Key("pin", PIN, "ADC-capable GPIO (rp2: 26-29; esp32: ADC1, 32-39)", required=True),
            Key("vref", FLOAT, "ADC reference voltage", default=3.3, unit="V", lo=1.0, hi=5.5),
        ),
        raw_unit="V",
        targets=("rp2", "esp32", "generic"),
    ),
    "ads1115": Driver(
        "ads1115",
        "TI ADS1115 16-bit I2C ADC, single-ended input: volts, or mA across shunt_ohms "
        "(4-20 mA loops)",
        ("sensor",),
        keys(
            Key(
                "i2c",
                INT,
                "I2C bus id (declare its pins in [buses.i2cN])",
                required=True,
                lo=0,
                hi=22,
            ),
            Key(
                "address",
                INT,
                "7-bit I2C address set by the ADDR pin (GND 0x48, VDD 0x49, SDA 0x4A, SCL 0x4B)",
                default=0x48,
                lo=0x48,
                hi=0x4B,
            ),
            Key("channel", INT, "input AIN0..AIN3", required=True, lo=0, hi=3),
            Key(
                "gain",
                GAIN,
                "PGA gain: full scale 6.144 (2/3), 4.096 (1), 2.048 (2), 1.024 (4), 0.512 (8), "
                "0.256 V (16)",
                default=1,
            ),
            Key(
                "rate",
                CHOICE,
                "samples per second",
                default=128,
                unit="SPS",
                choices=(8, 16, 32, 64, 128, 250, 475, 860),
            ),
            Key(
                "shunt_ohms",
                FLOAT,
                "current-loop shunt resistor: the reading becomes mA.  21 mA across it must "
                "stay inside the gain's full scale",
                unit="ohm",
                lo=1.0,
                hi=1000.0,
            ),
        ),
        raw_unit="V",
    ),
    "max31865": Driver(
        "max31865",
        "Maxim MAX31865 RTD converter on SPI (PT100/PT1000): ohms",
        ("sensor",),
        keys(
            Key(
                "spi",
                SPI_BUS_ID,
                'SPI bus id (declare its pins in [buses.spiN]); on linux also "N.M" = '
                "/dev/spidevN.M, the kernel driving chip select M",
                required=True,
                lo=0,
                hi=6,
            ),
            Key(
                "cs",
                PIN,
                "chip-select GPIO; required except on linux, where absent means the "
                "kernel's chip select",
                default=Derived("**required** (linux: none)"),
            ),
            Key("wires", CHOICE, "RTD wiring", required=True, choices=(2, 3, 4)),
            Key(
                "ref_ohms",
                FLOAT,
                "reference resistor (430 for PT100 boards, 4300 for PT1000); must exceed "
                "the RTD's resistance at the top of the range",
                default=430.0,
                unit="ohm",
                lo=10.0,
                hi=100000.0,
            ),
            Key("filter_hz", CHOICE, "mains notch filter", default=50, unit="Hz", choices=(50, 60)),
            Key(
                "settle_ms",
                INT,
                "bias settling before the first reading",
                default=100,
                unit="ms",
                lo=0,
                hi=10000,
            ),
        ),
        raw_unit="ohm",
    ),
    "slf3x": Driver(
        "slf3x",
        "Sensirion SLF3S-1300F / SLF3S-0600F liquid flow sensor on I2C (address 0x08, one "
        "per bus): mL/min, calibrated for water or isopropanol only (see Flow sensors)",
        ("sensor",),
        keys(
            Key(
                "i2c",
                INT,
                "I2C bus id (declare its pins in [buses.i2cN])",
                required=True,
                lo=0,
                hi=22,
            ),
            Key(
                "model",
                CHOICE,
                "sensor model: sets the scale factor (1300F: 500 per mL/min, up to 40 "
                "mL/min; 0600F: 10 per uL/min, up to 2 mL/min)",
                default="SLF3S-1300F",
                choices=SLF3X_MODELS,
            ),
            Key(
                "liquid",
                CHOICE,
                "calibration the sensor measures with (start command 0x3608 water, 0x3615 "
                "isopropanol)",
                default="water",
                choices=("water", "ipa"),
            ),
            Key(
                "settle_ms",
                INT,
                "start command to the first valid sample",
                default=60,
                unit="ms",
                lo=0,
                hi=10000,
            ),
        ),
        raw_unit="mL/min",
    ),
    "pin_in": Driver(
        "pin_in",
        "digital input: 0/1 (e-stop, cut-out contact, level or bubble switch)",
        ("status",),
        keys(
            Key("pin", PIN, "GPIO", required=True),
            Key("invert", BOOL, "active-low input (e.g. a normally-closed contact)", default=False),
        ),
        raw_unit="0/1",
    ),
    "pwm": Driver(
        "pwm",
        "PWM output (a heater through an SSR/MOSFET, or a filtered 0-10 V pump speed "
        "input): engineering value lo at duty 0, hi at full duty, linear",
        ("actuator",),
        keys(
            Key("pin", PIN, "output-capable GPIO (linux: 12, 13, 18, 19)", required=True),
            Key(
                "freq",
                INT,
                "PWM frequency (rp2: at least 8 Hz)",
                default=1000,
                unit="Hz",
                lo=1,
                hi=1000000,
            ),
            Key("lo", FLOAT, "engineering value at duty 0", default=0.0),
            Key(
                "hi",
                FLOAT,
                "engineering value at full duty; range must lie within lo..hi",
                default=1.0,
            ),
            Key("invert", BOOL, "swap lo and hi (active-low driver stage)", default=False),
        ),
        raw_unit=None,
    ),
    "pin_out": Driver(
        "pin_out",
        "digital output 0/1 (solenoid valve, relay); range must be [0, 1], safe 0 or 1",
        ("actuator",),
        keys(
            Key("pin", PIN, "output-capable GPIO", required=True),
            Key("invert", BOOL, "active-low output", default=False),
        ),
        raw_unit=None,
    ),
}
DRIVER_NAMES = tuple(DRIVERS)
CHANNEL["driver"].choices = DRIVER_NAMES
# Every driver parameter name, so an unknown key can say which driver takes it.
DRIVER_PARAM_OWNERS = {}
for _d in DRIVERS.values():
    for _p in _d.params:
        DRIVER_PARAM_OWNERS.setdefault(_p, []).append(_d.name)

# Inputs: pins read by the driver; outputs: pins it drives (checked against input-only).
OUTPUT_PIN_PARAMS = {("pwm", "pin"), ("pin_out", "pin"), ("max31865", "cs")}
ADC_PIN_PARAMS = {("adc", "pin")}

# SLF3x: model -> (calibrated full scale mL/min, raw step mL/min) (edge.drivers.slf3x).
SLF3X_FULL_SCALE = {"SLF3S-1300F": (40.0, 1 / 500.0), "SLF3S-0600F": (2.0, 1 / 10000.0)}

# ADS1115 gain -> full-scale volts (edge.drivers.ads1115.GAINS).
ADS1115_FULL_SCALE = ((2 / 3, 6.144), (1, 4.096), (2, 2.048), (4, 1.024), (8, 0.512), (16, 0.256))
NE43_FAIL_HIGH_MA = 21.0  # edge.signals: above this a loop reading is a failure

# --- calibrations --------------------------------------------------------------------------

CALIBRATIONS = {
    "linear": keys(
        Key("type", CHOICE, '"linear"', required=True, choices=("linear",)),
        Key("gain", FLOAT, "value = gain * raw + offset (non-zero)", default=1.0),
        Key("offset", FLOAT, "value at raw 0", default=0.0),
        Key("raw_min", FLOAT, "raw readings below are implausible (BAD)"),
        Key("raw_max", FLOAT, "raw readings above are implausible (BAD)"),
    ),
    "4-20mA": keys(
        Key("type", CHOICE, '"4-20mA"', required=True, choices=("4-20mA",)),
        Key("lo_value", FLOAT, "value at 4 mA", required=True),
        Key("hi_value", FLOAT, "value at 20 mA (differs from lo_value)", required=True),
    ),
    "pt100": keys(
        Key("type", CHOICE, '"pt100"', required=True, choices=("pt100",)),
        Key(
            "r0",
            FLOAT,
            "resistance at 0 degC (1000 for a PT1000)",
            default=100.0,
            unit="ohm",
            lo=10.0,
            hi=10000.0,
        ),
        Key(
            "r_short",
            FLOAT,
            "below: BAD short",
            default=Derived("0.18 x r0"),
            unit="ohm",
            lo=0.0,
            lo_open=True,
        ),
        Key(
            "r_open",
            FLOAT,
            "above: BAD open",
            default=Derived("4 x r0"),
            unit="ohm",
            lo=0.0,
            lo_open=True,
        ),
    ),
    "table": keys(
        Key("type", CHOICE, '"table"', required=True, choices=("table",)),
        Key(
            "points",
            POINTS,
            "[[raw, value], ...]: at least 2, raw strictly increasing; piecewise linear, "
            "raw outside the table is BAD",
            required=True,
        ),
        Key(
            "low_reason",
            CHOICE,
            "bad reason below the table",
            default="out_of_range",
            choices=BAD_REASONS,
        ),
        Key(
            "high_reason",
            CHOICE,
            "bad reason above the table",
            default="out_of_range",
            choices=BAD_REASONS,
        ),
    ),
}
CALIBRATION_TYPES = tuple(CALIBRATIONS)
# The raw unit a calibration needs from its driver (None: any).
CALIBRATION_RAW_UNIT = {"4-20mA": "mA", "pt100": "ohm"}

# IEC 60751 Callendar-Van Dusen (edge.signals), for the max31865 ref_ohms check.
CVD_A = 3.9083e-3
CVD_B = -5.775e-7


def rtd_resistance(t_c, r0):
    return r0 * (1.0 + CVD_A * t_c + CVD_B * t_c * t_c)


# --- loops, interlocks, alarms, runaway, e-stop ------------------------------------------

PID = keys(
    Key("measure", REF, "sensor channel the loop controls", required=True),
    Key("output", REF, "actuator channel it drives (one loop per actuator)", required=True),
    Key("kp", FLOAT, "proportional gain (output units per measured unit)", required=True, lo=0.0),
    Key("ki", FLOAT, "integral gain", default=0.0, unit="1/s", lo=0.0),
    Key("kd", FLOAT, "derivative gain", default=0.0, unit="s", lo=0.0),
    Key(
        "d_filter_ms",
        FLOAT,
        "time constant of the first-order filter on the derivative term (absent or 0: unfiltered)",
        unit="ms",
        lo=0.0,
        hi=600000.0,
    ),
    Key(
        "sp_weight",
        FLOAT,
        "setpoint weight b of the P term, kp * (b * setpoint - measurement); 1 = plain PID",
        default=1.0,
        lo=0.0,
        hi=1.0,
    ),
    Key(
        "output_range",
        RANGE,
        "[out_min, out_max], within the output channel's range",
        default=Derived("the output channel's range"),
    ),
    Key(
        "setpoint_range",
        RANGE,
        "[setpoint_min, setpoint_max] the host may set, within the measure's range",
        default=Derived("the measure channel's range"),
    ),
    Key(
        "setpoint",
        FLOAT,
        "initial setpoint, within setpoint_range",
        default=Derived("setpoint_range min"),
    ),
    Key("ramp_rate", FLOAT, "setpoint ramp (absent: steps)", unit="units/s", lo=0.0, lo_open=True),
    Key(
        "reverse", BOOL, "more output lowers the measurement (cooling, a BPR valve)", default=False
    ),
    Key(
        "sample_ms",
        INT,
        "run the loop at most this often (absent: every tick; at least tick_ms)",
        unit="ms",
        lo=1,
        hi=600000,
    ),
)

_VALUE_CONDITIONS = ("above", "below", "rate_of_rise", "deviation")
TRIP_COMMON = (
    Key("id", NAME, 'unique among interlocks and alarms; "estop" is reserved', required=True),
    Key("channel", REF, "the sensor (status for input_true) it watches", required=True),
    Key("condition", CHOICE, "what trips it", required=True, choices=CONDITIONS),
    Key(
        "limit",
        FLOAT,
        "above/below: within the channel's range; rate_of_rise: units/s, > 0; deviation: "
        "the tolerance, >= 0, in the channel's unit",
        default=Derived("**required**"),
        applies=_VALUE_CONDITIONS,
    ),
    Key(
        "reference",
        REF,
        "deviation: what the channel must follow, a PID loop (its setpoint while in auto; "
        "none in manual) or an actuator (the value last written to it: the command, or "
        "the safe value while stopped or forced), in the channel's unit",
        default=Derived("**required**"),
        applies=("deviation",),
    ),
    Key(
        "relative",
        FLOAT,
        "deviation: tolerance added per unit of the reference, so the band is "
        "limit + relative * abs(reference) (0.05 = 5 % of the setpoint)",
        default=0.0,
        lo=0.0,
        hi=1.0,
        applies=("deviation",),
    ),
    Key(
        "on_delay_ms",
        INT,
        "condition must hold this long first",
        default=0,
        unit="ms",
        lo=0,
        hi=600000,
    ),
    Key(
        "hysteresis",
        FLOAT,
        "reset band below/above the limit",
        default=0.0,
        lo=0.0,
        applies=_VALUE_CONDITIONS,
    ),
    Key(
        "window_ms",
        INT,
        "rate_of_rise: rate measured over this window (at least 2 x tick_ms)",
        default=1000,
        unit="ms",
        lo=1,
        hi=600000,
        applies=("rate_of_rise",),
    ),
    Key(
        "unfiltered",
        BOOL,
        "watch the channel's value before its filter_tau_ms low-pass (protection should "
        "not wait for a filter meant for control); a redundant channel selects from its "
        "probes' unfiltered values",
        default=False,
        applies=_VALUE_CONDITIONS,
    ),
    Key(
        "trip_on_bad",
        BOOL,
        'a BAD channel trips too (cause "sensor_bad"); not for bad_quality',
        default=True,
        applies=("above", "below", "rate_of_rise", "input_true", "deviation"),
    ),
    Key(
        "cause",
        NAME,
        'cause code in trip/alarm events; bad_quality always uses "sensor_bad"',
        default=Derived("**required**"),
        applies=("above", "below", "rate_of_rise", "input_true", "deviation"),
    ),
)
INTERLOCK = keys(
    *TRIP_COMMON,
    Key("force_safe", REFS, "actuators forced to their safe value", default=()),
    Key("force_values", VALUES, "actuator -> value forced (within its range)", default=()),
    Key(
        "state",
        CHOICE,
        "state the trip drives the module to",
        default="aborted",
        choices=TRIP_STATES,
    ),
)
ALARM = keys(
    *TRIP_COMMON,
    Key("severity", CHOICE, "event severity", default="warning", choices=SEVERITIES),
    Key(
        "while_on",
        REF,
        "an actuator channel: the alarm applies only while it is on (applied value >= 0.5) "
        "and clears when it is switched off, e.g. an analyzer's reading while its lamp is lit",
    ),
)

RUNAWAY = keys(
    Key(
        "pid",
        REF,
        "the heating loop: its setpoint is the target, its output the heater",
        required=True,
    ),
    Key("measure", REF, "temperature sensor watched (degC)", default=Derived("the loop's measure")),
    Key(
        "hysteresis",
        FLOAT,
        "band below target treated as reached",
        default=5.0,
        unit="degC",
        lo=0.0,
    ),
    Key(
        "max_error",
        FLOAT,
        "accumulated shortfall that trips temperature_runaway",
        default=120.0,
        unit="degC*s",
        lo=0.0,
        lo_open=True,
    ),
    Key(
        "heating_gain",
        FLOAT,
        "rise required per check_gain_time_ms while approaching",
        default=2.0,
        unit="degC",
        lo=0.0,
        lo_open=True,
    ),
    Key(
        "check_gain_time_ms", INT, "approach window", default=20000, unit="ms", lo=1000, hi=3600000
    ),
    Key(
        "full_power", FLOAT, "output counted as full power (within the heater's range)", default=0.9
    ),
    Key("off_level", FLOAT, "output counted as off (within range, below full_power)", default=0.0),
    Key(
        "uncontrolled_rise",
        FLOAT,
        "rise allowed with the heater off",
        default=10.0,
        unit="degC",
        lo=0.0,
        lo_open=True,
    ),
)

ESTOP = keys(
    Key("channel", REF, "status channel of the e-stop input (1 = stop)", required=True),
    Key(
        "state",
        CHOICE,
        "state an e-stop drives the module to",
        default="aborted",
        choices=TRIP_STATES,
    ),
)

TOP_LEVEL = {
    "module": "table",
    "lease": "table",
    "watchdog": "table",
    "buses": "table",
    "channels": "table",
    "pid": "table",
    "interlocks": "array",
    "alarms": "array",
    "runaway": "table",
    "estop": "table",
}

# --- per-kind requirements ----------------------------------------------------------------


class ChannelReq:
    def __init__(self, role, units=None, safe=None, doc=""):
        self.role = role
        self.units = units  # allowed units, None = any
        self.safe = safe  # required safe value, None = any in range
        self.doc = doc


class InterlockReq:
    """At least one interlock ``condition`` on ``channel`` (or on any sensor with a unit in
    ``units``) that forces ``forces`` to its safe value (or to a declared value equal to
    it)."""

    def __init__(self, condition, forces, doc, channel=None, units=None):
        self.condition = condition
        self.forces = forces
        self.doc = doc
        self.channel = channel
        self.units = units


class KindRule:
    def __init__(
        self, channels, optional=None, interlocks=(), runaway=False, any_sensor_units=None, doc=""
    ):
        self.channels = channels  # name -> ChannelReq, required
        self.optional = optional or {}  # name -> ChannelReq, checked when present
        self.interlocks = interlocks
        self.runaway = runaway
        self.any_sensor_units = any_sensor_units  # at least one sensor with one of these
        self.doc = doc


PRESSURE_UNITS = ("bar", "mbar", "kPa", "MPa", "psi")
FLOW_UNITS = ("mL/min", "uL/min", "L/h", "g/min", "g/h")
FRACTION_UNITS = ("1", "%")
ANALYZER_UNITS = ("AU", "mAU", "mol/L", "mmol/L", "g/L", "mg/mL", "ppm")

KIND_RULES = {
    "pump": KindRule(
        {
            "flow": ChannelReq("actuator", FLOW_UNITS, safe=0.0, doc="flow setpoint, safe 0"),
            "pressure": ChannelReq("sensor", PRESSURE_UNITS, doc="head pressure"),
        },
        optional={"feed": ChannelReq("status", doc="feed-level or bubble sensor")},
        interlocks=(
            InterlockReq("above", "flow", "high head pressure stops the pump", channel="pressure"),
        ),
        doc="HPLC-style pump",
    ),
    "reactor": KindRule(
        {
            "heater": ChannelReq(
                "actuator", FRACTION_UNITS, safe=0.0, doc="heater power (PWM), safe 0"
            ),
            "temperature": ChannelReq("sensor", ("degC",), doc="coil temperature"),
            "cutout": ChannelReq(
                "status", doc="independent over-temperature cut-out input (1 = tripped)"
            ),
        },
        interlocks=(
            InterlockReq(
                "above", "heater", "over-temperature forces the heater safe", units=("degC",)
            ),
            InterlockReq(
                "input_true", "heater", "a tripped cut-out forces the heater safe", channel="cutout"
            ),
        ),
        runaway=True,
        doc="heated coil reactor",
    ),
    "bpr": KindRule(
        {
            "pressure": ChannelReq("sensor", PRESSURE_UNITS, doc="system pressure"),
            "valve": ChannelReq("actuator", FRACTION_UNITS, doc="regulating valve opening"),
        },
        doc="electronic back-pressure regulator",
    ),
    "valve": KindRule(
        {"position": ChannelReq("actuator", ("1",), doc="0/1 position (e.g. waste/collect)")},
        optional={"position_fb": ChannelReq("status", doc="position feedback switch")},
        doc="switching valve",
    ),
    "analyzer": KindRule(
        {},
        optional={"lamp": ChannelReq("actuator", doc="light source on/off")},
        any_sensor_units=ANALYZER_UNITS,
        doc="in-line UV/IR flow cell",
    ),
}


# --- documentation -------------------------------------------------------------------------


def _type_text(key):
    return {
        INT: "int",
        FLOAT: "float",
        BOOL: "bool",
        STR: "string",
        CHOICE: "string" if key.choices and isinstance(key.choices[0], str) else "int",
        ID: "string",
        NAME: "string",
        REF: "name",
        REFS: "[names]",
        VALUES: "{name = float}",
        PIN: "int (pin)",
        RANGE: "[float, float]",
        PATH: "string",
        POINTS: "[[float, float], ...]",
        TABLE: "inline table",
        GAIN: "number",
        SPI_BUS_ID: 'int or "N.M"',
    }[key.type]


def _default_text(key):
    if key.required:
        return "**required**"
    d = key.default
    if isinstance(d, Derived):
        return d.doc
    if d is None:
        return "absent"
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, str):
        return '"{}"'.format(d)
    if isinstance(d, tuple) and not d:
        return "empty"
    if isinstance(d, int) and key.name == "address":
        return hex(d)
    return repr(d)


def markdown_table(section):
    with_for = any(k.applies for k in section.values())
    head = "| key | type | unit | default | allowed |" + (" for |" if with_for else "")
    rows = [head + " meaning |", "|" + " --- |" * (head.count("|"))]
    for key in section.values():
        allowed = key.allowed()
        if key.type == PIN:
            allowed = "a pin of the target"
        elif key.type == REF:
            allowed = "a declared name"
        elif key.type in (REFS, VALUES, POINTS, TABLE):
            allowed = "see meaning"
        cells = [
            "`{}`".format(key.name),
            _type_text(key),
            key.unit,
            _default_text(key),
            allowed,
        ]
        if with_for:
            cells.append(", ".join(key.applies) if key.applies else "all")
        cells.append(key.doc)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def markdown_tables():
    """Every generated table, keyed by the marker name used in docs/board-config.md."""
    out = {
        "module": markdown_table(MODULE),
        "lease": markdown_table(LEASE),
        "watchdog": markdown_table(WATCHDOG),
        "buses": markdown_table(BUSES),
        "buses.spi": markdown_table(SPI_BUS),
        "buses.i2c": markdown_table(I2C_BUS),
        "channels": markdown_table(CHANNEL),
        "pid": markdown_table(PID),
        "interlocks": markdown_table(INTERLOCK),
        "alarms": markdown_table(ALARM),
        "runaway": markdown_table(RUNAWAY),
        "estop": markdown_table(ESTOP),
    }
    for name, drv in DRIVERS.items():
        out["driver." + name] = markdown_table(drv.params) if drv.params else "(no parameters)"
    for name, cal in CALIBRATIONS.items():
        out["calibration." + name] = markdown_table(cal)
    targets = ["| target | pins | notes |", "| --- | --- | --- |"]
    for t in TARGETS.values():
        targets.append("| `{}` | {} | {} |".format(t.name, t.pins_text, t.note))
    out["targets"] = "\n".join(targets)
    return out


def render_doc(text):
    """``text`` with every ``<!-- schema:NAME -->...<!-- /schema -->`` block regenerated."""
    tables = markdown_tables()
    out = []
    pos = 0
    start_tag = "<!-- schema:"
    while True:
        i = text.find(start_tag, pos)
        if i < 0:
            out.append(text[pos:])
            break
        j = text.index("-->", i)
        name = text[i + len(start_tag) : j].strip()
        end = text.index("<!-- /schema -->", j)
        out.append(text[pos : j + 3])
        out.append("\n" + tables[name] + "\n")
        pos = end
    return "".join(out)
