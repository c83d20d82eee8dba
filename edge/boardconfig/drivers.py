"""A hardware channel's driver parameters (pins, buses, I2C/SPI devices, rp2 PWM slices,
ADS1115 shunt and gain) and a sensor's calibration (linear, points, 4-20mA, pt100), with
the raw unit the driver delivers and the calibration needs."""

from __future__ import annotations

from edge.boardconfig import schema as S
from edge.boardconfig.core import BAD, MISSING, did_you_mean
from edge.boardconfig.module import bus_ref, use_pin
from edge.boardconfig.values import check_table, ok


def driver_params(board, path, ch, driver, p, role):
    """Claim the driver's pins and devices, check its parameters together, and copy them
    into the channel (absent optional parameters stay out: the driver tests ``in``)."""
    name = driver.name
    for pname, key in driver.params.items():
        if key.type == S.PIN and pname in p:
            use_pin(
                board,
                path + "." + pname,
                p[pname],
                output=(name, pname) in S.OUTPUT_PIN_PARAMS,
                adc=(name, pname) in S.ADC_PIN_PARAMS,
                pwm=name == "pwm",
            )
    if name == "max31865":
        _max31865(board, path, p)
    if name == "ads1115":
        _ads1115(board, path, p)
    if name == "slf3x":
        _slf3x(board, path, p, ch)
    if name == "pwm":
        _pwm(board, path, p)
    if name == "emulated" and role in ("sensor", "status"):
        ru = p.get("raw_unit")
        if isinstance(ru, S.Derived):
            ru = None  # resolved once the calibration is known
        p["raw_unit"] = ru
    for k, v in p.items():
        if isinstance(v, S.Derived):
            v = None
        if v is None and driver.params[k].default is None and k != "cs":
            continue  # absent optional parameter: left out (the driver tests `in`)
        ch[k] = v


def _max31865(board, path, p):
    t = board.target
    bus = p["spi"]
    if isinstance(bus, str):
        if t is not None and t.name != "linux":
            board.err(
                path + ".spi",
                bus,
                'is a kernel chip-select id ("N.M"), which exists only on linux',
                "a bus id (int)",
            )
            bus = BAD
        else:
            bus = int(bus.split(".")[0])
    bus_ref(board, path + ".spi", "spi", bus)
    if isinstance(p["cs"], S.Derived) and bus is not BAD:
        _kernel_chip_select(board, path, p["spi"], bus)
    if isinstance(p["cs"], S.Derived) and (t is None or t.name != "linux"):
        board.err(
            path + ".cs",
            MISSING,
            "is missing: the chip select pin is needed on {}".format(
                t.name if t else "this target"
            ),
            "a pin (absent only on linux, where the kernel drives chip select)",
        )


def _kernel_chip_select(board, path, spi, bus):
    # Kernel chip select: one device per /dev/spidevN.M.
    dev = spi if isinstance(spi, str) else "{}.0".format(bus)
    first = board.spi_devices.get(dev)
    if first is not None:
        board.err(
            path + ".spi",
            spi,
            "is used twice: /dev/spidev{} is already {} (line {})".format(
                dev, first, board.line(first)
            ),
            "another /dev/spidevN.M (kernel chip select) or a cs pin",
        )
    else:
        board.spi_devices[dev] = path + ".spi"


def _ads1115(board, path, p):
    bus_ref(board, path + ".i2c", "i2c", p["i2c"])
    if ok(p["i2c"], p["address"], p["channel"]):
        dev = (p["i2c"], p["address"], p["channel"])
        first = board.i2c_devices.get(dev)
        if first is not None:
            board.err(
                path + ".channel",
                p["channel"],
                "is used twice: ads1115 {} on i2c{} AIN{} is already {} (line {})".format(
                    hex(p["address"]), p["i2c"], p["channel"], first, board.line(first)
                ),
                "each ADC input once",
            )
        else:
            board.i2c_devices[dev] = path + ".channel"
    shunt = p.get("shunt_ohms")
    if ok(shunt, p["gain"]) and shunt is not None:
        fs = dict(S.ADS1115_FULL_SCALE)[p["gain"]]
        volts = shunt * S.NE43_FAIL_HIGH_MA / 1000.0
        if volts > fs:
            board.err(
                path + ".shunt_ohms",
                shunt,
                "clips: {} mA across it is {:.3g} V, beyond the {} V full scale of gain {}".format(
                    S.NE43_FAIL_HIGH_MA, volts, fs, _gain_text(p["gain"])
                ),
                "<= {:.4g} ohm at this gain".format(fs * 1000 / S.NE43_FAIL_HIGH_MA),
            )


def _slf3x(board, path, p, ch):
    """One SLF3x per bus (its address 0x08 is fixed); its range within the model's."""
    bus_ref(board, path + ".i2c", "i2c", p["i2c"])
    if ok(p["i2c"]):
        dev = (p["i2c"], 0x08, None)
        first = board.i2c_devices.get(dev)
        if first is not None:
            board.err(
                path + ".i2c",
                p["i2c"],
                "is used twice: an SLF3x (fixed address 0x08) on i2c{} is already {} "
                "(line {})".format(p["i2c"], first, board.line(first)),
                "one SLF3x per I2C bus",
            )
        else:
            board.i2c_devices[dev] = path + ".i2c"
    rng = ch.get("range")
    if not ok(p["model"], rng) or not isinstance(rng, list) or ch.get("unit") != "mL/min":
        return
    full = S.SLF3X_FULL_SCALE[p["model"]][0]
    if rng[1] > full or rng[0] < -full:
        board.err(
            path + ".range",
            rng,
            "exceeds the {}'s calibrated range +-{} mL/min".format(p["model"], full),
            "within [-{0}, {0}]".format(full),
        )


def _gain_text(g):
    return "2/3" if g == 2 / 3 else str(g)


def _pwm(board, path, p):
    if ok(p["lo"], p["hi"]) and p["lo"] == p["hi"]:
        board.err(
            path + ".hi",
            p["hi"],
            "equals lo: the PWM scale is empty",
            "a value other than lo = {}".format(p["lo"]),
        )
    t = board.target
    if t is not None and ok(p["freq"]) and p["freq"] < t.min_pwm_freq:
        board.err(
            path + ".freq",
            p["freq"],
            "is below the slowest {} hardware PWM".format(t.name),
            ">= {} Hz".format(t.min_pwm_freq),
        )
    if t is not None and t.name == "rp2" and ok(p["pin"], p["freq"]) and p["pin"] in t.pins:
        rp2_pwm_slice(board, path + ".pin", p["pin"], p["freq"])


def rp2_pwm_slice(board, key, pin, freq):
    """On rp2 two pins share a PWM slice (one frequency) and may clash on its channel."""
    slice_, chan = (pin >> 1) & 7, pin & 1
    other = board.pwm_slices.get((slice_, chan))
    if other is not None:
        board.err(
            key,
            pin,
            "shares PWM slice {} channel {} with {} = {} (line {}): both "
            "would output the same duty".format(
                slice_, "AB"[chan], other[0], other[1], board.line(other[0])
            ),
            "a pin on another slice or channel",
        )
        return
    board.pwm_slices[(slice_, chan)] = (key, pin)
    f = board.pwm_slice_freq.get(slice_)
    if f is not None and f[1] != freq:
        board.err(
            key.rsplit(".", 1)[0] + ".freq",
            freq,
            "differs from {} on the same PWM "
            "slice {} ({} Hz, line {}): a slice has one frequency".format(
                f[0], slice_, f[1], board.line(f[0])
            ),
            "{} Hz".format(f[1]),
        )
    elif f is None:
        board.pwm_slice_freq[slice_] = (key, freq)


# --- calibration ------------------------------------------------------------------------------

_CALIBRATION_TYPES_TEXT = "one of " + ", ".join('"{}"'.format(t) for t in S.CALIBRATION_TYPES)


def calibration(board, path, ch, raw):
    """The sensor's calibration, normalised (linear 1:1 when absent), or BAD."""
    cpath = path + ".calibration"
    if raw is MISSING:
        cal = {"type": "linear", "gain": 1.0, "offset": 0.0, "raw_min": None, "raw_max": None}
        resolve_raw_unit(ch, cal)
        return cal
    ctype = _calibration_type(board, cpath, raw)
    if ctype is BAD:
        return BAD
    cal = check_table(board.ctx, raw, S.CALIBRATIONS[ctype], cpath)
    _calibration_values(board, cpath, ctype, cal, raw)
    _raw_unit_fits(board, cpath, ctype, ch)
    out = {"type": ctype}
    out.update(cal)
    resolve_raw_unit(ch, out)
    if ctype == "pt100":
        _pt100_reference(board, path, ch, cal)
    return out


def _calibration_type(board, cpath, raw):
    if not isinstance(raw, dict):
        board.wrong_type(cpath, raw, 'an inline table such as {type = "linear", gain = 2.0}')
        return BAD
    ctype = raw.get("type", MISSING)
    if ctype is MISSING:
        board.err(cpath + ".type", MISSING, "is missing", _CALIBRATION_TYPES_TEXT)
        return BAD
    if ctype not in S.CALIBRATIONS:
        board.err(
            cpath + ".type",
            ctype,
            "is not a calibration type" + did_you_mean(str(ctype), S.CALIBRATION_TYPES, '"'),
            _CALIBRATION_TYPES_TEXT,
        )
        return BAD
    return ctype


def _calibration_values(board, cpath, ctype, cal, raw):
    """Checks across the keys of one calibration; fills pt100's derived limits."""
    if ctype == "pt100" and ok(cal["r0"]):
        if isinstance(cal["r_short"], S.Derived):
            cal["r_short"] = 0.18 * cal["r0"]
        if isinstance(cal["r_open"], S.Derived):
            cal["r_open"] = 4.0 * cal["r0"]
        if ok(cal["r_short"], cal["r_open"]) and not (cal["r_short"] < cal["r0"] < cal["r_open"]):
            board.err(
                cpath, raw, "needs r_short < r0 < r_open", "r_short < {} < r_open".format(cal["r0"])
            )
    if ctype == "linear":
        if ok(cal["gain"]) and cal["gain"] == 0:
            board.err(cpath + ".gain", 0.0, "is zero", "a non-zero number")
        lo, hi = cal["raw_min"], cal["raw_max"]
        if ok(lo, hi) and lo is not None and hi is not None and lo > hi:
            board.err(cpath + ".raw_max", hi, "is below raw_min", ">= {}".format(lo))
    if ctype == "4-20mA" and ok(cal["lo_value"], cal["hi_value"]):
        if cal["lo_value"] == cal["hi_value"]:
            board.err(
                cpath + ".hi_value",
                cal["hi_value"],
                "equals lo_value: the span is empty",
                "a value other than {}".format(cal["lo_value"]),
            )


def _raw_unit_fits(board, cpath, ctype, ch):
    """The driver must deliver what the calibration converts."""
    need = S.CALIBRATION_RAW_UNIT.get(ctype)
    have = raw_unit_of(ch)
    if need is not None and have is not None and have is not BAD and have != need:
        fix = {
            "mA": 'a current input (ads1115 with shunt_ohms, or emulated raw_unit "mA")',
            "ohm": 'an RTD input (max31865, or emulated raw_unit "ohm")',
        }[need]
        board.err(
            cpath + ".type",
            ctype,
            "needs readings in {}, but driver {} reads {}".format(need, ch.get("driver"), have),
            fix,
        )


def _pt100_reference(board, path, ch, cal):
    """A MAX31865's reference resistor must exceed the RTD at the top of the range."""
    if not (
        ch.get("driver") == "max31865"
        and ok(ch["range"], cal["r0"])
        and "ref_ohms" in ch
        and ok(ch["ref_ohms"])
    ):
        return
    r_top = S.rtd_resistance(ch["range"][1], cal["r0"])
    if r_top >= ch["ref_ohms"]:
        board.err(
            path + ".ref_ohms",
            ch["ref_ohms"],
            "is too small: the RTD reads {:.1f} ohm at the range top {}".format(
                r_top, ch["range"][1]
            ),
            "> {:.1f} ohm".format(r_top),
        )


def raw_unit_of(ch):
    d = ch.get("driver")
    if d == "emulated":
        return ch.get("raw_unit")  # None until resolved: anything goes
    if d == "ads1115":
        return "mA" if "shunt_ohms" in ch else "V"
    if d in S.DRIVERS:
        return S.DRIVERS[d].raw_unit
    return None


def resolve_raw_unit(ch, cal):
    if ch.get("driver") == "emulated" and ch.get("raw_unit") is None:
        ctype = cal.get("type") if isinstance(cal, dict) else None
        ch["raw_unit"] = S.CALIBRATION_RAW_UNIT.get(ctype, "V")


def emulated(data):
    """``data`` (a normalised config, changed in place) with every channel on the
    ``emulated`` driver, reading in the raw unit of the driver it replaces."""
    for ch in data["channels"]:
        driver = ch.get("driver")
        if driver is None or driver == "emulated":
            continue
        raw_unit = None
        if ch["role"] in ("sensor", "status"):
            raw_unit = "mA" if "shunt_ohms" in ch else S.DRIVERS[driver].raw_unit
        for p in S.DRIVERS[driver].params:
            ch.pop(p, None)
        ch["driver"] = "emulated"
        if raw_unit is not None:
            ch["raw_unit"] = raw_unit
    return data
