"""Load and validate a board-config TOML file (host and Raspberry Pi; CPython only).

``load_board_config(path)`` / ``load_board_config_text(text, filename)`` return a
``BoardConfig`` whose ``data`` is the normalised plain dict that ``compile_config``
encodes: every default filled in (from ``schema`` only), numbers of float keys as
floats, times in ms, channels in declaration order with their telemetry alias.

Every problem is collected; then one ``ConfigErrors`` (a ``ConfigError``, a
``ValueError``) lists them all, each naming the file, the dotted key
(``channels.heater.safe``, ``interlocks[2].limit``), the line when it can be found, the
value and what is allowed::

    board_configs/reactor.toml:42: channels.heater.safe = 1.5 is out of range: allowed 0.0..1.0
"""

from __future__ import annotations

import copy
import re

from edge.boardconfig import core
from edge.boardconfig import schema as S
from edge.boardconfig.core import (  # noqa: F401 - ConfigErrors, toml_repr: re-exported API
    ConfigError,
    ConfigErrors,
    Context,
    parse_toml,
    read_text,
    toml_repr,
)
from edge.boardconfig.values import check_table as _check_table
from edge.boardconfig.values import check_value as _check_value
from edge.boardconfig.values import ok as _ok

_MISSING = core.MISSING
_BAD = core.BAD
_NAME_RE = core.NAME_RE
_BUS_RE = re.compile(r"(spi|i2c)([0-9]{1,2})\Z")
_suggest = core.suggest
_tname = core.type_name
_unknown_key = core.unknown_key

FORMAT_VERSION = 1


def _range_text(rng, unit=""):
    return core.range_text(rng[0], rng[1], unit)


# --- the validator -----------------------------------------------------------------------------


class _Loader:
    def __init__(self, ctx, doc):
        self.ctx = ctx
        self.doc = doc
        self.target = None
        self.tick_ms = None
        self.pins = {}  # pin -> key path of its first use
        self.pwm_slices = {}  # rp2 (slice, channel) -> (key path, pin, freq)
        self.pwm_slice_freq = {}  # rp2 slice -> (key path, freq)
        self.i2c_devices = {}  # (bus, address, channel) -> key path
        self.spi_devices = {}  # linux spidev "N.M" driven by the kernel's chip select
        self.declared_buses = {"spi": {}, "i2c": {}}  # id -> key path

    def err(self, key, value, problem, allowed=None, code=None):
        self.ctx.error(key, value, problem, allowed, code)

    def section(self, name, keys, required=False):
        t = self.doc.get(name, _MISSING)
        if t is _MISSING:
            if required:
                self.err(
                    name, _MISSING, "is missing: every board config needs a [{}] table".format(name)
                )
                return None
            t = {}
        if not isinstance(t, dict):
            self.err(name, t, "has the wrong type: expected a table, got " + _tname(t))
            return None
        return _check_table(self.ctx, t, keys, name)

    # -- top level -------------------------------------------------------------------------
    def run(self):
        for name, v in self.doc.items():
            if name not in S.TOP_LEVEL:
                _unknown_key(self.ctx, "", name, v, list(S.TOP_LEVEL))
        module = self.section("module", S.MODULE, required=True) or {}
        for k in ("id", "kind", "target", "tick_ms", "telemetry_every", "key_file"):
            module.setdefault(k, _BAD)
        if module["target"] is not _BAD:
            self.target = S.TARGETS[module["target"]]
        if module["tick_ms"] is not _BAD:
            self.tick_ms = module["tick_ms"]
        self.module = module
        lease = self.lease()
        watchdog = self.watchdog()
        buses = self.buses()
        channels = self.channels(watchdog)
        self.by_name = {c["name"]: c for c in channels}
        pids = self.pids(channels)
        self.pid_by_name = {p["name"]: p for p in pids}
        before = len(self.ctx.errors)
        interlocks = self.trips("interlocks", S.INTERLOCK, True)
        self.interlock_errors = len(self.ctx.errors) > before
        alarms = self.trips("alarms", S.ALARM, False)
        self.unique_trip_ids()
        runaway = self.runaway()
        self.setpoints_below_trips(pids, interlocks)
        self.loop_reaches_verifier_levels(runaway)
        estop = self.estop(channels)
        self.kind_rules(module, channels, interlocks, runaway)
        if len(channels) + len(pids) > S.MAX_BIRTH_CHANNELS:
            self.err(
                "channels",
                _MISSING,
                "declares {} channels and {} loops: a birth holds at most {} in all".format(
                    len(channels), len(pids), S.MAX_BIRTH_CHANNELS
                ),
            )
        if self.ctx.errors:
            return None
        return {
            "format": FORMAT_VERSION,
            "module": module,
            "lease": lease,
            "watchdog": watchdog,
            "buses": buses,
            "channels": channels,
            "pid": pids,
            "interlocks": interlocks,
            "alarms": alarms,
            "runaway": runaway,
            "estop": estop,
        }

    def at_least_ticks(self, key, value, n, strict=False):
        # Timing keys must span at least n control ticks.
        if self.tick_ms is None or value is _BAD or value is None:
            return
        need = n * self.tick_ms
        if value < need or (strict and value == need):
            self.err(
                key,
                value,
                "is too short for tick_ms = {}".format(self.tick_ms),
                "{} {} ms ({} x tick_ms)".format(">" if strict else ">=", need, n),
            )

    def lease(self):
        out = self.section("lease", S.LEASE) or {}
        if not all(k in out for k in S.LEASE):
            return out
        self.at_least_ticks("lease.timeout_ms", out["timeout_ms"], 2)
        grace_given = not isinstance(out["grace_ms"], S.Derived)
        if out["on_loss"] == "hold" and not grace_given:
            self.err(
                "lease.grace_ms",
                _MISSING,
                'is missing: on_loss = "hold" needs a bounded grace time',
                S.LEASE["grace_ms"].allowed(),
            )
        elif out["on_loss"] == "safe" and grace_given and out["grace_ms"] is not _BAD:
            self.err(
                "lease.grace_ms",
                out["grace_ms"],
                'does not apply with on_loss = "safe"',
                'only with on_loss = "hold"',
            )
        if out["on_loss"] == "safe":
            out["grace_ms"] = 0
        return out

    def watchdog(self):
        out = self.section("watchdog", S.WATCHDOG) or {}
        if not all(k in out for k in S.WATCHDOG):
            return out
        self.at_least_ticks("watchdog.timeout_ms", out["timeout_ms"], 2, strict=True)
        self.at_least_ticks("watchdog.deadman_ms", out["deadman_ms"], 2)
        t = self.target
        if (
            t is not None
            and out["timeout_ms"] is not _BAD
            and out["timeout_ms"] > t.max_watchdog_ms
        ):
            self.err(
                "watchdog.timeout_ms",
                out["timeout_ms"],
                "is beyond the {} watchdog".format(t.name),
                "at most {} ms".format(t.max_watchdog_ms),
            )
        return out

    # -- pins and buses ----------------------------------------------------------------------
    def use_pin(self, key, pin, output=False, adc=False, pwm=False):
        t = self.target
        if pin is _BAD or pin is None or isinstance(pin, S.Derived):
            return
        if t is not None:
            if pin not in t.pins:
                self.err(key, pin, "is not a pin of target {}".format(t.name), t.pins_text)
                return
            if output and pin in t.input_only:
                self.err(
                    key,
                    pin,
                    "is input-only on {} and cannot drive an output".format(t.name),
                    "an output-capable pin (not {}..{})".format(
                        min(t.input_only), max(t.input_only)
                    ),
                )
                return
            if adc and t.adc_pins is not None and pin not in t.adc_pins:
                allowed = ", ".join(str(p) for p in t.adc_pins) or "none (no on-chip ADC)"
                self.err(key, pin, "is not an ADC pin on {}".format(t.name), allowed)
                return
            if pwm and t.pwm_pins is not None and pin not in t.pwm_pins:
                self.err(
                    key,
                    pin,
                    "has no hardware PWM on {}".format(t.name),
                    ", ".join(str(p) for p in t.pwm_pins),
                )
                return
        first = self.pins.get(pin)
        if first is not None:
            self.err(
                key,
                pin,
                "is used twice: pin {} is already {} (line {})".format(
                    pin, first, self.ctx.line(first)
                ),
                "each pin once",
            )
            return
        self.pins[pin] = key

    def buses(self):
        raw = self.doc.get("buses", {})
        out = {"spi_baudrate": 1000000, "i2c_freq": 400000, "spi_pins": {}, "i2c_pins": {}}
        if not isinstance(raw, dict):
            self.err("buses", raw, "has the wrong type: expected a table, got " + _tname(raw))
            return out
        scalars = {k: v for k, v in raw.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in raw.items() if isinstance(v, dict)}

        def hint(name):
            if _suggest(name, list(S.BUSES)):
                return ""
            return " (bus tables are named spiN or i2cN, N the bus id)"

        base = _check_table(self.ctx, scalars, S.BUSES, "buses", extra=(), unknown_hint=hint)
        out.update(base)
        t = self.target
        for name, table in tables.items():
            path = "buses." + name
            m = _BUS_RE.match(name)
            if not m:
                near = _suggest(name, ["spi0", "spi1", "i2c0", "i2c1"])
                self.err(
                    path,
                    table,
                    "is not a bus name" + (" (did you mean '{}'?)".format(near) if near else ""),
                    "spiN or i2cN where N is the bus id",
                )
                continue
            kind, bus_id = m.group(1), int(m.group(2))
            if t is not None and bus_id not in t.bus_ids[kind]:
                self.err(
                    path,
                    table,
                    "is not a {} bus of target {}".format(kind, t.name),
                    ", ".join("{}{}".format(kind, i) for i in t.bus_ids[kind]),
                )
                continue
            if t is not None and not t.bus_pins:
                self.err(
                    path,
                    table,
                    "cannot set bus pins on {}: the kernel (device tree) assigns them".format(
                        t.name
                    ),
                    "no [buses.{}] table on {}".format(name, t.name),
                )
                continue
            pins = _check_table(self.ctx, table, S.BUS_TABLES[kind], path)
            for pname, pin in pins.items():
                self.use_pin(path + "." + pname, pin, output=pname in ("sck", "mosi", "scl", "sda"))
            self.declared_buses[kind][bus_id] = path
            order = ("sck", "mosi", "miso") if kind == "spi" else ("scl", "sda")
            out[kind + "_pins"][bus_id] = [pins[k] for k in order]
        return out

    def bus_ref(self, key, kind, bus_id):
        t = self.target
        if bus_id is _BAD or t is None:
            return
        if bus_id not in t.bus_ids[kind]:
            self.err(
                key,
                bus_id,
                "is not a {} bus of target {}".format(kind, t.name),
                ", ".join(str(i) for i in t.bus_ids[kind]),
            )
        elif t.bus_pins and t.name != "generic" and bus_id not in self.declared_buses[kind]:
            self.err(
                key,
                bus_id,
                "names an undeclared bus: add [buses.{}{}] with its pins".format(kind, bus_id),
                "a declared {} bus".format(kind),
            )

    # -- channels ------------------------------------------------------------------------------
    def channels(self, watchdog):
        self.partial = []  # channels validated so far (redundant pairs look back)
        raw = self.doc.get("channels", _MISSING)
        if raw is _MISSING:
            self.err(
                "channels",
                _MISSING,
                "is missing: a module needs at least one channel",
                "[channels.NAME] tables",
            )
            return []
        if not isinstance(raw, dict):
            self.err("channels", raw, "has the wrong type: expected a table, got " + _tname(raw))
            return []
        seen = []
        for name, table in raw.items():
            path = "channels." + name
            if not _NAME_RE.match(name):
                self.err(
                    path, _MISSING, "is not a valid channel name ({!r})".format(name), S.NAME_RULE
                )
                continue
            if not isinstance(table, dict):
                self.err(path, table, "has the wrong type: expected a table, got " + _tname(table))
                continue
            ch = self.channel(name, path, table, watchdog, seen)
            if ch is not None:
                ch["alias"] = len(self.partial)
                self.partial.append(ch)
            seen.append(name)
        return self.partial

    def channel(self, name, path, table, watchdog, earlier):
        role_key = S.CHANNEL["role"]
        role = table.get("role", _MISSING)
        if role is _MISSING:
            self.err(path + ".role", _MISSING, "is missing", role_key.allowed())
            role = _BAD
        else:
            role = _check_value(self.ctx, role_key, path + ".role", role)
        derived = "redundant" in table
        driver_name = table.get("driver", _MISSING)
        driver = None
        if derived:
            for k in S.HARDWARE_ONLY:
                if k in table:
                    self.err(
                        path + "." + k,
                        table[k],
                        "does not apply to a redundant "
                        "channel (it takes its readings from its two inputs)",
                        "only on hardware channels",
                    )
            for k in table:
                if k in S.DRIVER_PARAM_OWNERS:
                    self.err(
                        path + "." + k,
                        table[k],
                        "does not apply to a redundant channel: it has no driver",
                        "only on hardware channels",
                    )
        elif driver_name is _MISSING:
            self.err(path + ".driver", _MISSING, "is missing", S.CHANNEL["driver"].allowed())
        elif _check_value(self.ctx, S.CHANNEL["driver"], path + ".driver", driver_name) is not _BAD:
            driver = S.DRIVERS[driver_name]
        if role is _BAD:
            return None  # without a role nothing else can be judged sensibly
        if not derived:
            for k in S.REDUNDANT_ONLY:
                if k in table:
                    self.err(
                        path + "." + k,
                        table[k],
                        "only applies to redundant channels",
                        "with redundant = [a, b]",
                    )
        if driver is not None and role not in driver.roles:
            self.err(
                path + ".driver",
                driver_name,
                "cannot serve a {} channel".format(role),
                "for {}: {}".format(
                    role, ", ".join(d.name for d in S.DRIVERS.values() if role in d.roles)
                ),
            )
            driver = None
        if (
            driver is not None
            and driver.targets is not None
            and self.target is not None
            and self.target.name not in driver.targets
        ):
            self.err(
                path + ".driver",
                driver_name,
                "is not available on target {}".format(self.target.name),
                "on {}: {}".format(
                    self.target.name,
                    ", ".join(
                        d.name
                        for d in S.DRIVERS.values()
                        if role in d.roles and (d.targets is None or self.target.name in d.targets)
                    ),
                ),
            )
            driver = None

        keys = dict(S.CHANNEL)
        skip = set(S.HARDWARE_ONLY if derived else S.REDUNDANT_ONLY)
        skip.update(("role", "driver"))
        for k in skip:
            keys.pop(k)
        params = driver.params if driver is not None else {}

        def hint(key):
            owners = S.DRIVER_PARAM_OWNERS.get(key)
            if owners and driver is not None:
                return ' for driver "{}" (it is a parameter of {})'.format(
                    driver.name, ", ".join(owners)
                )
            return ""

        body = {
            k: v
            for k, v in table.items()
            if k not in skip and k not in params and k not in S.DRIVER_PARAM_OWNERS
        }
        vals = _check_table(
            self.ctx,
            body,
            keys,
            path,
            applies_to=role,
            applies_what="{} channels",
            extra=("role", "driver") + tuple(params),
            unknown_hint=hint,
        )
        if driver is not None:
            for k, v in table.items():
                if k in S.DRIVER_PARAM_OWNERS and k not in params:
                    own = [
                        n for n, key in keys.items() if key.applies is None or role in key.applies
                    ]
                    _unknown_key(
                        self.ctx, path, k, v, ["role", "driver"] + own + list(params), hint(k)
                    )
        ch = {"name": name, "role": role}

        # unit
        if role in ("sensor", "actuator"):
            if "unit" not in table:
                self.err(
                    path + ".unit",
                    _MISSING,
                    "is missing: {}s need a unit".format(role),
                    S.CHANNEL["unit"].allowed(),
                )
                unit = _BAD
            else:
                unit = vals["unit"]
            ch["unit"] = unit
        else:
            ch["unit"] = ""
        # range
        if role == "status":
            rng = [0.0, 1.0]
        elif "range" not in table:
            self.err(
                path + ".range", _MISSING, "is missing: {}s need a range".format(role), "[min, max]"
            )
            rng = _BAD
        else:
            rng = vals["range"]
        ch["range"] = rng
        ch["resolution"] = 1.0 if role == "status" else vals.get("resolution")
        if _ok(rng) and ch["resolution"] not in (None, _BAD):
            res = ch["resolution"]
            if max(abs(rng[0]), abs(rng[1])) / res > S.RAW_LIMIT:
                self.err(
                    path + ".resolution",
                    res,
                    "is too fine for range {}: telemetry integers would overflow".format(
                        _range_text(rng)
                    ),
                    ">= {:.3g}".format(max(abs(rng[0]), abs(rng[1])) / S.RAW_LIMIT),
                )
            elif res > rng[1] - rng[0]:
                self.err(
                    path + ".resolution",
                    res,
                    "is coarser than the whole range {}".format(_range_text(rng)),
                    "<= {}".format(rng[1] - rng[0]),
                )

        if derived:
            self.redundant(path, ch, vals, earlier)
            return ch
        if driver is not None:
            ch["driver"] = driver.name
            pvals = _check_table(
                self.ctx,
                {k: table[k] for k in params if k in table},
                params,
                path,
                applies_to=role,
                applies_what="{} channels",
            )
            self.driver_params(path, ch, driver, pvals, role)
        else:
            ch["driver"] = _BAD
        if role == "sensor":
            ch["calibration"] = self.calibration(path, ch, table.get("calibration", _MISSING))
            ch["filter_tau_ms"] = vals["filter_tau_ms"]
            ch["stale_ms"] = vals["stale_ms"]
            self.at_least_ticks(path + ".stale_ms", vals["stale_ms"], 2)
            self.time_limits(path, ch, vals, table)
        elif role == "actuator":
            safe = vals["safe"]
            if "safe" not in table:
                self.err(
                    path + ".safe",
                    _MISSING,
                    "is missing: every actuator needs a safe value",
                    _range_text(rng) if _ok(rng) else "a number within range",
                )
                safe = _BAD
            elif _ok(safe, rng) and not rng[0] <= safe <= rng[1]:
                self.err(
                    path + ".safe",
                    safe,
                    "is out of range",
                    _range_text(rng, ch["unit"] if _ok(ch["unit"]) else ""),
                )
                safe = _BAD
            ch["safe"] = safe
            dm = vals["deadman_ms"]
            if isinstance(dm, S.Derived):
                dm = watchdog.get("deadman_ms", _BAD)
            else:
                self.at_least_ticks(path + ".deadman_ms", dm, 2)
            ch["deadman_ms"] = dm
            self.actuator_checks(path, ch, table)
            ch["unpowered"] = self.unpowered(path, ch, vals["unpowered"])
        return ch

    def time_limits(self, path, ch, vals, table):
        """A hardware sensor's uncertain_ms and frozen-reading (stuck_*) keys."""
        unc = vals["uncertain_ms"]
        if isinstance(unc, S.Derived):
            unc = ch["stale_ms"]
        else:
            self.at_least_ticks(path + ".uncertain_ms", unc, 2)
        ch["uncertain_ms"] = unc
        ch["stuck_ms"] = vals["stuck_ms"]
        ch["stuck_band"] = vals["stuck_band"]
        ch["on_stuck"] = vals["on_stuck"]
        if vals["stuck_ms"] is None:
            for k in S.STUCK_OPTIONS:
                if k in table:
                    self.err(
                        path + "." + k,
                        table[k],
                        "has no effect without stuck_ms (frozen-reading detection is off)",
                        "with stuck_ms = N",
                    )
        else:
            self.at_least_ticks(path + ".stuck_ms", vals["stuck_ms"], 2)

    def redundant(self, path, ch, vals, earlier):
        pair = vals.get("redundant")
        if ch["role"] != "sensor":
            return
        ch["redundant"] = pair
        ch["max_disagreement"] = vals.get("max_disagreement")
        ch["select"] = vals.get("select")
        ch["degraded_max_ms"] = vals.get("degraded_max_ms")
        self.at_least_ticks(path + ".degraded_max_ms", ch["degraded_max_ms"], 2)
        if isinstance(vals.get("max_disagreement"), S.Derived):
            self.err(
                path + ".max_disagreement",
                _MISSING,
                "is missing: redundant channels need it",
                ">= 0.0",
            )
            ch["max_disagreement"] = _BAD
        if pair is _BAD:
            return
        if len(pair) != 2:
            self.err(path + ".redundant", pair, "must name exactly two channels", "[a, b]")
            ch["redundant"] = _BAD
            return
        for i, other in enumerate(pair):
            p = "{}.redundant[{}]".format(path, i)
            if other not in earlier:
                self.err(
                    p,
                    other,
                    "is not a channel declared before {}".format(ch["name"]),
                    ", ".join(earlier) or "no channels yet",
                )
                ch["redundant"] = _BAD
                continue
            o = self.channel_lookup(other)
            if o is None:
                ch["redundant"] = _BAD
                continue
            if o["role"] != "sensor" or "redundant" in o:
                self.err(p, other, "is not a hardware sensor channel", "a sensor with a driver")
                ch["redundant"] = _BAD
            elif _ok(o["unit"], ch["unit"]) and o["unit"] != ch["unit"]:
                self.err(
                    p,
                    other,
                    'measures in "{}", not "{}"'.format(o["unit"], ch["unit"]),
                    'a sensor in "{}"'.format(ch["unit"]),
                )
                ch["redundant"] = _BAD

    def channel_lookup(self, name):
        for c in self.partial:
            if c["name"] == name:
                return c
        return None

    def driver_params(self, path, ch, driver, p, role):
        name = driver.name
        for pname, key in driver.params.items():
            if key.type == S.PIN and pname in p:
                self.use_pin(
                    path + "." + pname,
                    p[pname],
                    output=(name, pname) in S.OUTPUT_PIN_PARAMS,
                    adc=(name, pname) in S.ADC_PIN_PARAMS,
                    pwm=name == "pwm",
                )
        if name == "max31865":
            bus = p["spi"]
            if isinstance(bus, str):
                if self.target is not None and self.target.name != "linux":
                    self.err(
                        path + ".spi",
                        bus,
                        'is a kernel chip-select id ("N.M"), which exists only on linux',
                        "a bus id (int)",
                    )
                    bus = _BAD
                else:
                    bus = int(bus.split(".")[0])
            self.bus_ref(path + ".spi", "spi", bus)
            if isinstance(p["cs"], S.Derived) and bus is not _BAD:
                # Kernel chip select: one device per /dev/spidevN.M.
                dev = p["spi"] if isinstance(p["spi"], str) else "{}.0".format(bus)
                first = self.spi_devices.get(dev)
                if first is not None:
                    self.err(
                        path + ".spi",
                        p["spi"],
                        "is used twice: /dev/spidev{} is already {} (line {})".format(
                            dev, first, self.ctx.line(first)
                        ),
                        "another /dev/spidevN.M (kernel chip select) or a cs pin",
                    )
                else:
                    self.spi_devices[dev] = path + ".spi"
            if isinstance(p["cs"], S.Derived) and (
                self.target is None or self.target.name != "linux"
            ):
                self.err(
                    path + ".cs",
                    _MISSING,
                    "is missing: the chip select pin is needed on {}".format(
                        self.target.name if self.target else "this target"
                    ),
                    "a pin (absent only on linux, where the kernel drives chip select)",
                )
        if name == "ads1115":
            self.bus_ref(path + ".i2c", "i2c", p["i2c"])
            if _ok(p["i2c"], p["address"], p["channel"]):
                dev = (p["i2c"], p["address"], p["channel"])
                first = self.i2c_devices.get(dev)
                if first is not None:
                    self.err(
                        path + ".channel",
                        p["channel"],
                        "is used twice: ads1115 {} on i2c{} AIN{} is already {} (line {})".format(
                            hex(p["address"]), p["i2c"], p["channel"], first, self.ctx.line(first)
                        ),
                        "each ADC input once",
                    )
                else:
                    self.i2c_devices[dev] = path + ".channel"
            shunt = p.get("shunt_ohms")
            if _ok(shunt, p["gain"]) and shunt is not None:
                fs = dict(S.ADS1115_FULL_SCALE)[p["gain"]]
                volts = shunt * S.NE43_FAIL_HIGH_MA / 1000.0
                if volts > fs:
                    self.err(
                        path + ".shunt_ohms",
                        shunt,
                        "clips: {} mA across it is {:.3g} V, "
                        "beyond the {} V full scale of gain {}".format(
                            S.NE43_FAIL_HIGH_MA, volts, fs, _gain_text(p["gain"])
                        ),
                        "<= {:.4g} ohm at this gain".format(fs * 1000 / S.NE43_FAIL_HIGH_MA),
                    )
        if name == "pwm":
            if _ok(p["lo"], p["hi"]) and p["lo"] == p["hi"]:
                self.err(
                    path + ".hi",
                    p["hi"],
                    "equals lo: the PWM scale is empty",
                    "a value other than lo = {}".format(p["lo"]),
                )
            t = self.target
            if t is not None and _ok(p["freq"]) and p["freq"] < t.min_pwm_freq:
                self.err(
                    path + ".freq",
                    p["freq"],
                    "is below the slowest {} hardware PWM".format(t.name),
                    ">= {} Hz".format(t.min_pwm_freq),
                )
            if (
                t is not None
                and t.name == "rp2"
                and _ok(p["pin"], p["freq"])
                and p["pin"] in t.pins
            ):
                self.rp2_pwm_slice(path + ".pin", p["pin"], p["freq"])
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

    def rp2_pwm_slice(self, key, pin, freq):
        slice_, chan = (pin >> 1) & 7, pin & 1
        other = self.pwm_slices.get((slice_, chan))
        if other is not None:
            self.err(
                key,
                pin,
                "shares PWM slice {} channel {} with {} = {} (line {}): both "
                "would output the same duty".format(
                    slice_, "AB"[chan], other[0], other[1], self.ctx.line(other[0])
                ),
                "a pin on another slice or channel",
            )
            return
        self.pwm_slices[(slice_, chan)] = (key, pin)
        f = self.pwm_slice_freq.get(slice_)
        if f is not None and f[1] != freq:
            self.err(
                key.rsplit(".", 1)[0] + ".freq",
                freq,
                "differs from {} on the same PWM "
                "slice {} ({} Hz, line {}): a slice has one frequency".format(
                    f[0], slice_, f[1], self.ctx.line(f[0])
                ),
                "{} Hz".format(f[1]),
            )
        elif f is None:
            self.pwm_slice_freq[slice_] = (key, freq)

    def calibration(self, path, ch, raw):
        cpath = path + ".calibration"
        if raw is _MISSING:
            cal = {"type": "linear", "gain": 1.0, "offset": 0.0, "raw_min": None, "raw_max": None}
            self.resolve_raw_unit(ch, cal)
            return cal
        if not isinstance(raw, dict):
            self.err(
                cpath,
                raw,
                "has the wrong type: expected an inline table such as "
                '{type = "linear", gain = 2.0}, got ' + _tname(raw),
            )
            return _BAD
        ctype = raw.get("type", _MISSING)
        if ctype is _MISSING:
            self.err(
                cpath + ".type",
                _MISSING,
                "is missing",
                "one of " + ", ".join('"{}"'.format(t) for t in S.CALIBRATION_TYPES),
            )
            return _BAD
        if ctype not in S.CALIBRATIONS:
            near = _suggest(str(ctype), S.CALIBRATION_TYPES)
            self.err(
                cpath + ".type",
                ctype,
                "is not a calibration type"
                + (' (did you mean "{}"?)'.format(near) if near else ""),
                "one of " + ", ".join('"{}"'.format(t) for t in S.CALIBRATION_TYPES),
            )
            return _BAD
        keys = S.CALIBRATIONS[ctype]
        cal = _check_table(self.ctx, raw, keys, cpath)
        if ctype == "pt100" and _ok(cal["r0"]):
            if isinstance(cal["r_short"], S.Derived):
                cal["r_short"] = 0.18 * cal["r0"]
            if isinstance(cal["r_open"], S.Derived):
                cal["r_open"] = 4.0 * cal["r0"]
            if _ok(cal["r_short"], cal["r_open"]) and not (
                cal["r_short"] < cal["r0"] < cal["r_open"]
            ):
                self.err(
                    cpath,
                    raw,
                    "needs r_short < r0 < r_open",
                    "r_short < {} < r_open".format(cal["r0"]),
                )
        if ctype == "linear":
            if _ok(cal["gain"]) and cal["gain"] == 0:
                self.err(cpath + ".gain", 0.0, "is zero", "a non-zero number")
            if (
                _ok(cal["raw_min"], cal["raw_max"])
                and cal["raw_min"] is not None
                and cal["raw_max"] is not None
                and cal["raw_min"] > cal["raw_max"]
            ):
                self.err(
                    cpath + ".raw_max",
                    cal["raw_max"],
                    "is below raw_min",
                    ">= {}".format(cal["raw_min"]),
                )
        if (
            ctype == "4-20mA"
            and _ok(cal["lo_value"], cal["hi_value"])
            and cal["lo_value"] == cal["hi_value"]
        ):
            self.err(
                cpath + ".hi_value",
                cal["hi_value"],
                "equals lo_value: the span is empty",
                "a value other than {}".format(cal["lo_value"]),
            )
        # The driver must deliver what the calibration converts.
        need = S.CALIBRATION_RAW_UNIT.get(ctype)
        have = self.raw_unit_of(ch)
        if need is not None and have is not None and have is not _BAD and have != need:
            fix = {
                "mA": 'a current input (ads1115 with shunt_ohms, or emulated raw_unit "mA")',
                "ohm": 'an RTD input (max31865, or emulated raw_unit "ohm")',
            }[need]
            self.err(
                cpath + ".type",
                ctype,
                "needs readings in {}, but driver {} reads {}".format(need, ch.get("driver"), have),
                fix,
            )
        out = {"type": ctype}
        out.update(cal)
        self.resolve_raw_unit(ch, out)
        if (
            ctype == "pt100"
            and ch.get("driver") == "max31865"
            and _ok(ch["range"], cal["r0"])
            and "ref_ohms" in ch
            and _ok(ch["ref_ohms"])
        ):
            r_top = S.rtd_resistance(ch["range"][1], cal["r0"])
            if r_top >= ch["ref_ohms"]:
                self.err(
                    path + ".ref_ohms",
                    ch["ref_ohms"],
                    "is too small: the RTD reads {:.1f} ohm at the range top {}".format(
                        r_top, ch["range"][1]
                    ),
                    "> {:.1f} ohm".format(r_top),
                )
        return out

    def raw_unit_of(self, ch):
        d = ch.get("driver")
        if d == "emulated":
            return ch.get("raw_unit")  # None until resolved: anything goes
        if d == "ads1115":
            return "mA" if "shunt_ohms" in ch else "V"
        if d in S.DRIVERS:
            return S.DRIVERS[d].raw_unit
        return None

    def resolve_raw_unit(self, ch, cal):
        if ch.get("driver") == "emulated" and ch.get("raw_unit") is None:
            ctype = cal.get("type") if isinstance(cal, dict) else None
            ch["raw_unit"] = S.CALIBRATION_RAW_UNIT.get(ctype, "V")

    def actuator_checks(self, path, ch, table):
        rng, safe, d = ch["range"], ch["safe"], ch.get("driver")
        if not _ok(rng):
            return
        if d == "pin_out":
            if rng != [0.0, 1.0]:
                self.err(
                    path + ".range", table.get("range"), "does not suit a digital output", "[0, 1]"
                )
            elif _ok(safe) and safe not in (0.0, 1.0):
                self.err(path + ".safe", safe, "is not a digital level", "0 or 1")
        if d == "pwm" and _ok(ch.get("lo", _BAD), ch.get("hi", _BAD)):
            lo, hi = ch["lo"], ch["hi"]
            if ch.get("invert"):
                lo, hi = hi, lo
            smin, smax = min(lo, hi), max(lo, hi)
            if smin < smax and (rng[0] < smin or rng[1] > smax):
                self.err(
                    path + ".range",
                    table.get("range"),
                    "exceeds the PWM scale lo..hi (duty cannot go beyond 0..100 %)",
                    "within {}".format(_range_text([smin, smax])),
                )

    def unpowered(self, path, ch, declared):
        """The value the actuator falls to without power; its safe value must be that one.

        Safe state = de-energised outputs: a board that loses power, sits in reset or
        crashed drives nothing, so only a safe value the actuator reaches by itself is
        safe when it matters most.  A safe value that needs power (a normally-closed BPR
        whose "safe" is fully open) is refused (``safe_value_needs_power``)."""
        d = ch.get("driver")
        if declared is _BAD:
            return _BAD
        if not isinstance(declared, S.Derived):
            value, how = declared, "as declared by unpowered"
        elif d == "pwm" and _ok(ch.get("lo", _BAD), ch.get("hi", _BAD)):
            inverted = ch.get("invert") is True
            value = ch["hi"] if inverted else ch["lo"]
            how = "pwm at duty 0 is {} = {}".format(
                "hi (invert = true)" if inverted else "lo", S.fmt_num(value)
            )
        elif d == "pin_out":
            value, how = 0.0, "a pin_out load is off at 0"
        elif d == "emulated" and _ok(ch["safe"]):
            return ch["safe"]  # no hardware: the emulator de-energises to this value
        else:
            return _BAD  # the driver's own errors say why
        safe = ch["safe"]
        if _ok(safe) and safe != value:
            self.err(
                path + ".safe",
                safe,
                "needs power: de-energised (board off, in reset or crashed) {} goes to {} "
                "({})".format(ch["name"], S.fmt_num(value), how),
                "{} (the de-energised value); for other hardware declare its real "
                "de-energised value with unpowered = ...".format(S.fmt_num(value)),
                code="safe_value_needs_power",
            )
        return value

    # -- loops --------------------------------------------------------------------------------
    def ref(self, key, name, roles, what):
        """The channel ``name`` if it exists with one of ``roles``; else an error, None."""
        if name is _BAD or name is None:
            return None
        ch = self.by_name.get(name)
        if ch is None:
            near = _suggest(name, list(self.by_name))
            self.err(
                key,
                name,
                "names an unknown channel" + (" (did you mean '{}'?)".format(near) if near else ""),
                ", ".join(self.by_name) or "no channels declared",
            )
            return None
        if ch["role"] not in roles:
            cands = [n for n, c in self.by_name.items() if c["role"] in roles]
            self.err(
                key,
                name,
                "is {} {} channel, not {}".format(
                    "an" if ch["role"] == "actuator" else "a", ch["role"], what
                ),
                ", ".join(cands) if cands else "no such channel declared",
            )
            return None
        return ch

    def pids(self, channels):
        raw = self.doc.get("pid", {})
        if not isinstance(raw, dict):
            self.err("pid", raw, "has the wrong type: expected a table, got " + _tname(raw))
            return []
        out = []
        outputs = {}
        for name, table in raw.items():
            path = "pid." + name
            if not _NAME_RE.match(name):
                self.err(
                    path, _MISSING, "is not a valid loop name ({!r})".format(name), S.NAME_RULE
                )
                continue
            if name in self.by_name:
                self.err(
                    path,
                    _MISSING,
                    "has the name of a channel: loop setpoints appear "
                    "in the birth next to the channels",
                    "a name no channel uses",
                )
                continue
            if not isinstance(table, dict):
                self.err(path, table, "has the wrong type: expected a table, got " + _tname(table))
                continue
            v = _check_table(self.ctx, table, S.PID, path)
            m = self.ref(path + ".measure", v["measure"], ("sensor",), "a sensor")
            o = self.ref(path + ".output", v["output"], ("actuator",), "an actuator")
            if o is not None:
                if o["name"] in outputs:
                    self.err(
                        path + ".output",
                        o["name"],
                        "is already driven by loop {}".format(outputs[o["name"]]),
                        "one loop per actuator",
                    )
                outputs[o["name"]] = name
            orng = v["output_range"]
            if o is not None and _ok(o["range"]):
                if isinstance(orng, S.Derived):
                    orng = list(o["range"])
                elif _ok(orng) and (orng[0] < o["range"][0] or orng[1] > o["range"][1]):
                    self.err(
                        path + ".output_range",
                        orng,
                        "is outside {}'s range".format(o["name"]),
                        "within " + _range_text(o["range"]),
                    )
            srng = v["setpoint_range"]
            if m is not None and _ok(m["range"]):
                if isinstance(srng, S.Derived):
                    srng = list(m["range"])
                elif _ok(srng) and (srng[0] < m["range"][0] or srng[1] > m["range"][1]):
                    self.err(
                        path + ".setpoint_range",
                        srng,
                        "is outside {}'s range".format(m["name"]),
                        "within " + _range_text(m["range"]),
                    )
            sp = v["setpoint"]
            if _ok(srng):
                if isinstance(sp, S.Derived):
                    sp = srng[0]
                elif _ok(sp) and not srng[0] <= sp <= srng[1]:
                    self.err(path + ".setpoint", sp, "is outside setpoint_range", _range_text(srng))
            if v["sample_ms"] is not None:
                self.at_least_ticks(path + ".sample_ms", v["sample_ms"], 1)
            if m is None or o is None or not _ok(orng, srng, sp):
                continue
            out.append(
                {
                    "name": name,
                    "alias": len(channels) + len(out),
                    "unit": m["unit"],
                    "resolution": m["resolution"],
                    "measure": m["name"],
                    "output": o["name"],
                    "kp": v["kp"],
                    "ki": v["ki"],
                    "kd": v["kd"],
                    "out_min": orng[0],
                    "out_max": orng[1],
                    "setpoint_min": srng[0],
                    "setpoint_max": srng[1],
                    "setpoint": sp,
                    "ramp_rate": v["ramp_rate"],
                    "reverse": v["reverse"],
                    "sample_ms": v["sample_ms"],
                }
            )
        return out

    # -- interlocks and alarms ---------------------------------------------------------------------
    def trips(self, section, keys, forcing):
        raw = self.doc.get(section, [])
        if not isinstance(raw, list):
            self.err(
                section,
                raw,
                "has the wrong type: expected an array of tables ([[{}]]), got {}".format(
                    section, _tname(raw)
                ),
            )
            return []
        out = []
        for i, table in enumerate(raw):
            path = "{}[{}]".format(section, i)
            if not isinstance(table, dict):
                self.err(path, table, "has the wrong type: expected a table, got " + _tname(table))
                continue
            cond = table.get("condition", _MISSING)
            if cond is not _MISSING:
                cond = _check_value(self.ctx, keys["condition"], path + ".condition", cond)
            if cond is _BAD:
                continue
            if cond is _MISSING:
                self.err(path + ".condition", _MISSING, "is missing", keys["condition"].allowed())
                continue
            v = _check_table(
                self.ctx, table, keys, path, applies_to=cond, applies_what='condition "{}"'
            )
            entry = self.trip(path, section, cond, v, table, forcing)
            if entry is not None:
                out.append(entry)
        return out

    def trip(self, path, section, cond, v, table, forcing):
        roles = {
            "above": ("sensor",),
            "below": ("sensor",),
            "rate_of_rise": ("sensor",),
            "input_true": ("status",),
            "bad_quality": ("sensor", "status"),
        }[cond]
        what = "a " + " or ".join(roles) + " channel"
        ch = self.ref(path + ".channel", v["channel"], roles, what)
        limit = v.get("limit")
        if cond in ("above", "below", "rate_of_rise"):
            if "limit" not in table:
                self.err(
                    path + ".limit",
                    _MISSING,
                    'is missing: condition "{}" needs a limit'.format(cond),
                    "a number",
                )
                limit = _BAD
            elif cond == "rate_of_rise":
                if _ok(limit) and limit <= 0:
                    self.err(path + ".limit", limit, "is not a rise", "> 0 units/s")
            elif (
                ch is not None
                and _ok(limit, ch["range"])
                and not (ch["range"][0] <= limit <= ch["range"][1])
            ):
                self.err(
                    path + ".limit",
                    limit,
                    "is outside {}'s range, so the trip could never fire on a value".format(
                        ch["name"]
                    ),
                    _range_text(ch["range"], ch["unit"]),
                )
        else:
            limit = None
        cause = v.get("cause")
        if cond == "bad_quality":
            cause = "sensor_bad"
        elif "cause" not in table:
            self.err(path + ".cause", _MISSING, "is missing: events need a cause code", S.NAME_RULE)
            cause = _BAD
        if cond == "rate_of_rise":
            self.at_least_ticks(path + ".window_ms", v["window_ms"], 2)
        entry = {
            "id": v["id"],
            "channel": ch["name"] if ch is not None else _BAD,
            "condition": cond,
            "limit": limit,
            "on_delay_ms": v["on_delay_ms"],
            "hysteresis": v.get("hysteresis", 0.0),
            "window_ms": v.get("window_ms", S.INTERLOCK["window_ms"].default),
            "unfiltered": v.get("unfiltered", False),
            "trip_on_bad": v.get("trip_on_bad", True),
            "cause": cause,
        }
        if not forcing:
            entry["severity"] = v["severity"]
        else:
            safe = v["force_safe"]
            values = v["force_values"]
            safe = list(safe) if _ok(safe) else _BAD
            values = dict(values) if _ok(values) else _BAD
            if _ok(safe):
                for j, name in enumerate(safe):
                    if (
                        self.ref(
                            "{}.force_safe[{}]".format(path, j), name, ("actuator",), "an actuator"
                        )
                        is None
                    ):
                        safe = _BAD
                        break
            if _ok(values):
                for name, x in values.items():
                    a = self.ref(
                        "{}.force_values.{}".format(path, name), name, ("actuator",), "an actuator"
                    )
                    if a is None:
                        values = _BAD
                        break
                    if _ok(a["range"]) and not a["range"][0] <= x <= a["range"][1]:
                        self.err(
                            "{}.force_values.{}".format(path, name),
                            x,
                            "is out of range",
                            _range_text(a["range"], a["unit"]),
                        )
                    if _ok(safe) and name in safe:
                        self.err(
                            "{}.force_values.{}".format(path, name),
                            x,
                            "is also in force_safe",
                            "each actuator in one of them",
                        )
            if _ok(safe, values) and not safe and not values:
                self.err(
                    path,
                    _MISSING,
                    "forces nothing: an interlock must force at least one "
                    "actuator (use [[alarms]] to only report)",
                    "force_safe = [...] or force_values = {...}",
                )
            entry["safe"] = safe
            entry["values"] = values
            entry["state"] = v["state"]
        if not all(_ok(x) for x in entry.values()):
            return None
        return entry

    def unique_trip_ids(self):
        seen = {}
        for section in ("interlocks", "alarms"):
            raw = self.doc.get(section, [])
            if not isinstance(raw, list):
                continue
            for i, t in enumerate(raw):
                x = t.get("id") if isinstance(t, dict) else None
                if not isinstance(x, str):
                    continue
                path = "{}[{}].id".format(section, i)
                if x == "estop":
                    self.err(
                        path, x, "is reserved for the [estop] section's trip", "any other name"
                    )
                elif x in seen:
                    self.err(
                        path,
                        x,
                        "is used twice (also {}, line {})".format(seen[x], self.ctx.line(seen[x])),
                        "ids unique among interlocks and alarms",
                    )
                else:
                    seen[x] = path

    # -- runaway, e-stop -----------------------------------------------------------------------
    def runaway(self):
        if "runaway" not in self.doc:
            return None
        v = self.section("runaway", S.RUNAWAY)
        if v is None:
            return None
        loop = None
        if _ok(v["pid"]):
            loop = self.pid_by_name.get(v["pid"])
            declared = self.doc.get("pid", {})
            if loop is None and not (isinstance(declared, dict) and v["pid"] in declared):
                # (a declared loop that failed validation has its own errors already)
                self.err(
                    "runaway.pid",
                    v["pid"],
                    "names an unknown loop",
                    ", ".join(self.pid_by_name) or "no [pid.*] loops declared",
                )
        if loop is None:
            return None
        measure = v["measure"]
        if isinstance(measure, S.Derived):
            measure = loop["measure"]
            m = self.by_name[measure]
            mkey = "pid.{}.measure".format(loop["name"])
        else:
            m = self.ref("runaway.measure", measure, ("sensor",), "a sensor")
            mkey = "runaway.measure"
        if m is not None and m["unit"] != "degC":
            self.err(
                mkey,
                m["name"],
                'measures in "{}": runaway protection watches a temperature'.format(m["unit"]),
                'a sensor in "degC"',
            )
        out_ch = self.by_name[loop["output"]]
        rng = out_ch["range"]
        fp, off = v["full_power"], v["off_level"]
        if _ok(fp, rng) and not (rng[0] < fp <= rng[1]):
            self.err(
                "runaway.full_power",
                fp,
                "is outside the heater's range",
                "{} < full_power <= {}".format(rng[0], rng[1]),
            )
        elif _ok(off, fp, rng) and not (rng[0] <= off < fp):
            self.err(
                "runaway.off_level",
                off,
                "is not between the heater's minimum and full_power",
                "{} <= off_level < {}".format(rng[0], fp),
            )
        out = {
            "pid": loop["name"],
            "measure": m["name"] if m else _BAD,
            "output": loop["output"],
            "state": "aborted",
        }
        for k in (
            "hysteresis",
            "max_error",
            "heating_gain",
            "check_gain_time_ms",
            "full_power",
            "off_level",
            "uncontrolled_rise",
        ):
            out[k] = v[k]
        return out

    # -- cross-checks: a loop must not be able to defeat a protection ------------------------
    def inputs_of(self, name):
        """The hardware channels behind ``name`` (a redundant channel's two inputs)."""
        ch = self.by_name.get(name)
        pair = ch.get("redundant") if ch is not None else None
        if isinstance(pair, list):
            return set(pair)
        return {name}

    def setpoints_below_trips(self, pids, interlocks):
        """A setpoint the host may set must lie where the interlocks on the same quantity
        stay quiet, with their hysteresis as the margin (``setpoint_above_trip``, and
        ``setpoint_below_trip`` for low trips): "setpoint outside the safe range is
        rejected" then holds, and a module tripped near its setpoint can be reset at it
        (an "above" cause persists until the value is at or below limit - hysteresis).
        Interlocks count when they watch the loop's measure or a channel sharing one of
        its hardware inputs (a 1oo2 vote and its probes)."""
        for loop in pids:
            measured = self.inputs_of(loop["measure"])
            table = self.doc["pid"][loop["name"]]
            unit = "" if loop["unit"] in ("", "1") else " " + loop["unit"]
            for i, il in enumerate(interlocks):
                cond = il["condition"]
                if cond not in ("above", "below") or not measured & self.inputs_of(il["channel"]):
                    continue
                limit, band = il["limit"], il["hysteresis"]
                if cond == "above":
                    bound = limit - band
                    bad = loop["setpoint_max"] > bound or loop["setpoint_max"] >= limit
                    end, cmp, sign = "setpoint_max", "<" if band == 0 else "<=", "-"
                    code = "setpoint_above_trip"
                else:
                    bound = limit + band
                    bad = loop["setpoint_min"] < bound or loop["setpoint_min"] <= limit
                    end, cmp, sign = "setpoint_min", ">" if band == 0 else ">=", "+"
                    code = "setpoint_below_trip"
                if not bad:
                    continue
                problem = "reaches {} the trip of interlocks[{}] {} ({} {} {})".format(
                    cond, i, il["id"], il["channel"], cond, S.fmt_num(limit)
                )
                allowed = "{} {} {}{} (trip limit {} {} hysteresis {})".format(
                    end, cmp, S.fmt_num(bound), unit, S.fmt_num(limit), sign, S.fmt_num(band)
                )
                key = "pid.{}.setpoint_range".format(loop["name"])
                raw = table.get("setpoint_range", _MISSING)
                if raw is _MISSING:
                    key = "pid." + loop["name"]
                    rng = [loop["setpoint_min"], loop["setpoint_max"]]
                    problem = "has setpoint_range {} (the measure's range), which {}".format(
                        toml_repr(rng), problem
                    )
                self.err(key, raw, problem, allowed, code=code)

    def loop_reaches_verifier_levels(self, runaway):
        """Heater verification judges the loop's output against full_power and off_level:
        a loop limited below full_power never counts as heating at full power
        (heater_not_heating can never fire), one limited above off_level never counts as
        off (uncontrolled_heating can never fire).  Both silently disable a protection."""
        if runaway is None or not _ok(runaway["full_power"], runaway["off_level"]):
            return
        loop = self.pid_by_name.get(runaway["pid"])
        if loop is None:
            return
        key = "pid.{}.output_range".format(loop["name"])
        raw = self.doc["pid"][loop["name"]].get("output_range", _MISSING)
        if raw is _MISSING:
            key = "pid.{}".format(loop["name"])
        out_min, out_max = loop["out_min"], loop["out_max"]
        if out_min > runaway["off_level"]:
            self.err(
                key,
                raw,
                "keeps the heater above runaway.off_level = {} (out_min {}), so heater "
                "verification never sees it off and uncontrolled heating goes "
                "undetected".format(S.fmt_num(runaway["off_level"]), S.fmt_num(out_min)),
                "out_min <= {} (or raise runaway.off_level)".format(
                    S.fmt_num(runaway["off_level"])
                ),
                code="output_min_above_off_level",
            )
        if out_max < runaway["full_power"]:
            self.err(
                key,
                raw,
                "keeps the heater below runaway.full_power = {} (out_max {}), so heater "
                "verification never sees full power and a heater that does not heat goes "
                "undetected".format(S.fmt_num(runaway["full_power"]), S.fmt_num(out_max)),
                "out_max >= {} (or lower runaway.full_power)".format(
                    S.fmt_num(runaway["full_power"])
                ),
                code="output_max_below_full_power",
            )

    def estop(self, channels):
        if "estop" not in self.doc:
            return None
        v = self.section("estop", S.ESTOP)
        if v is None:
            return None
        ch = self.ref("estop.channel", v["channel"], ("status",), "a status input")
        if ch is None:
            return None
        return {
            "channel": ch["name"],
            "state": v["state"],
            "cause": "estop",
            "safe": [c["name"] for c in channels if c["role"] == "actuator"],
        }

    # -- per-kind requirements ------------------------------------------------------------------
    def kind_rules(self, module, channels, interlocks, runaway):
        kind = module["kind"]
        if kind is _BAD:
            return
        rule = S.KIND_RULES[kind]
        raw_channels = self.doc.get("channels", {})
        if not isinstance(raw_channels, dict):
            return
        for name, req in list(rule.channels.items()) + list(rule.optional.items()):
            required = name in rule.channels
            key = "channels." + name
            if name not in raw_channels:
                if required:
                    self.err(
                        key,
                        _MISSING,
                        'is missing: a {} module needs a {} channel "{}" ({})'.format(
                            kind, req.role, name, req.doc
                        ),
                        '[channels.{}] with role = "{}"'.format(name, req.role),
                    )
                continue
            ch = self.by_name.get(name)
            if ch is None:
                continue
            if ch["role"] != req.role:
                self.err(
                    key + ".role",
                    ch["role"],
                    "is wrong for {} in a {} module ({})".format(name, kind, req.doc),
                    '"{}"'.format(req.role),
                )
                continue
            if req.units and _ok(ch["unit"]) and ch["unit"] not in req.units:
                self.err(
                    key + ".unit",
                    ch["unit"],
                    "is wrong for {} in a {} module".format(name, kind),
                    ", ".join('"{}"'.format(u) for u in req.units),
                )
            if req.safe is not None and _ok(ch.get("safe")) and ch["safe"] != req.safe:
                self.err(
                    key + ".safe",
                    ch["safe"],
                    "must be {} for {} in a {} module ({})".format(req.safe, name, kind, req.doc),
                    repr(req.safe),
                )
        for req in rule.interlocks:
            if self.interlock_errors:
                break  # a broken entry may be the one meant: its own error says enough
            if not self.has_interlock(req, channels, interlocks):
                on = req.channel if req.channel else "a sensor in {}".format("/".join(req.units))
                self.err(
                    "interlocks",
                    _MISSING,
                    "lacks a required interlock for a {} module: {}".format(kind, req.doc),
                    'an [[interlocks]] entry with condition = "{}" on {} and force_safe '
                    'containing "{}"'.format(req.condition, on, req.forces),
                )
        if rule.runaway:
            if "runaway" not in self.doc:
                self.err(
                    "runaway",
                    _MISSING,
                    "is missing: a {} module needs heater runaway protection".format(kind),
                    "[runaway] with pid = the heating loop",
                )
            elif runaway is not None and runaway.get("output") != "heater":
                self.err(
                    "runaway.pid",
                    runaway.get("pid"),
                    "is not the loop driving heater",
                    "the loop whose output is heater",
                )
        if rule.any_sensor_units:
            if not any(
                c["role"] == "sensor" and c["unit"] in rule.any_sensor_units for c in channels
            ):
                self.err(
                    "channels",
                    _MISSING,
                    "lacks a measurement: a {} module needs a sensor channel in one of {}".format(
                        kind, ", ".join(rule.any_sensor_units)
                    ),
                )

    def has_interlock(self, req, channels, interlocks):
        target = self.by_name.get(req.forces)
        if target is None:
            return True  # the missing channel was already reported
        for il in interlocks:
            if il["condition"] != req.condition:
                continue
            ch = self.by_name.get(il["channel"])
            if req.channel is not None and il["channel"] != req.channel:
                continue
            if req.units is not None and (ch is None or ch["unit"] not in req.units):
                continue
            if req.forces in il["safe"]:
                return True
            if il["values"].get(req.forces) == target.get("safe"):
                return True
        return False


def _gain_text(g):
    return "2/3" if g == 2 / 3 else str(g)


# --- public API ---------------------------------------------------------------------------------


class BoardConfig:
    """A validated board config.  ``data`` is the normalised plain dict (the compiled
    form before CBOR encoding); ``file`` is where it came from."""

    def __init__(self, data, file=None):
        self.data = data
        self.file = file

    @property
    def module_id(self):
        return self.data["module"]["id"]

    @property
    def kind(self):
        return self.data["module"]["kind"]

    @property
    def target(self):
        return self.data["module"]["target"]

    @property
    def tick_ms(self):
        return self.data["module"]["tick_ms"]

    @property
    def channels(self):
        return self.data["channels"]

    def channel(self, name):
        for ch in self.data["channels"]:
            if ch["name"] == name:
                return ch
        raise KeyError(name)

    @property
    def emulated(self):
        return all(c.get("driver", "emulated") == "emulated" for c in self.data["channels"])

    def to_dict(self):
        return copy.deepcopy(self.data)

    def __repr__(self):
        return "<BoardConfig {} ({}) from {}>".format(self.module_id, self.kind, self.file)


def load_board_config_text(text, filename="<config>"):
    """Validate TOML ``text``; ``filename`` is used in error messages."""
    ctx = Context(str(filename), text)
    doc = parse_toml(ctx)
    data = _Loader(ctx, doc).run()
    ctx.raise_errors()
    return BoardConfig(data, ctx.file)


def load_board_config(path):
    """Read and validate the TOML file at ``path``."""
    return load_board_config_text(read_text(path), str(path))


def emulate(cfg):
    """The same config with every channel on the ``emulated`` driver.

    Sensors keep their calibration and read in the raw unit of the driver they replace
    (so the emulator feeds volts, mA or ohms and faults behave as on hardware); bus pins
    are dropped and the hardware watchdog is off (the host runtime has none).  The result
    has its own config hash."""
    data = cfg.to_dict()
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
    data["buses"]["spi_pins"] = {}
    data["buses"]["i2c_pins"] = {}
    data["watchdog"]["hardware"] = False
    return BoardConfig(data, cfg.file)
