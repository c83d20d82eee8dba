"""``[channels.NAME]``: role, unit, range and resolution; a hardware channel's driver
(``drivers``) and, for sensors, calibration and time limits; for actuators the safe and
de-energised values; for redundant (1oo2) channels the pair they vote over."""

from __future__ import annotations

from edge.boardconfig import drivers
from edge.boardconfig import schema as S
from edge.boardconfig.core import BAD, MISSING, NAME_RE, range_text, unknown_key
from edge.boardconfig.values import check_table, check_value, ok


def channels(board, watchdog):
    """Every channel in declaration order, each with its telemetry ``alias``."""
    board.partial = []
    raw = board.doc.get("channels", MISSING)
    if raw is MISSING:
        board.err(
            "channels",
            MISSING,
            "is missing: a module needs at least one channel",
            "[channels.NAME] tables",
        )
        return []
    if not isinstance(raw, dict):
        board.wrong_type("channels", raw)
        return []
    seen = []
    for name, table in raw.items():
        path = "channels." + name
        if not NAME_RE.match(name):
            board.err(path, MISSING, "is not a valid channel name ({!r})".format(name), S.NAME_RULE)
            continue
        if not isinstance(table, dict):
            board.wrong_type(path, table)
            continue
        ch = channel(board, name, path, table, watchdog, seen)
        if ch is not None:
            ch["alias"] = len(board.partial)
            board.partial.append(ch)
        seen.append(name)
    return board.partial


def channel(board, name, path, table, watchdog, earlier):
    """One channel, normalised; None when its role is unusable."""
    role = _role(board, path, table)
    derived = "redundant" in table
    driver = _declared_driver(board, path, table, derived)
    if role is BAD:
        return None  # without a role nothing else can be judged sensibly
    if not derived:
        _refuse(
            board,
            path,
            table,
            S.REDUNDANT_ONLY,
            "only applies to redundant channels",
            "with redundant = [a, b]",
        )
    driver = _driver_fits(board, path, role, driver, table.get("driver"))
    vals = _body(board, path, table, role, driver, derived)
    ch = {"name": name, "role": role}
    _unit_and_range(board, path, table, ch, vals)
    if derived:
        redundant(board, path, ch, vals, earlier)
        return ch
    if driver is not None:
        ch["driver"] = driver.name
        pvals = check_table(
            board.ctx,
            {k: table[k] for k in driver.params if k in table},
            driver.params,
            path,
            applies_to=role,
            applies_what="{} channels",
        )
        drivers.driver_params(board, path, ch, driver, pvals, role)
    else:
        ch["driver"] = BAD
    if role == "sensor":
        _sensor(board, path, ch, vals, table)
    elif role == "actuator":
        _actuator(board, path, ch, vals, table, watchdog)
    return ch


def _role(board, path, table):
    role = table.get("role", MISSING)
    if role is MISSING:
        board.err(path + ".role", MISSING, "is missing", S.CHANNEL["role"].allowed())
        return BAD
    return check_value(board.ctx, S.CHANNEL["role"], path + ".role", role)


def _refuse(board, path, table, names, problem, allowed):
    for k in names:
        if k in table:
            board.err(path + "." + k, table[k], problem, allowed)


def _declared_driver(board, path, table, derived):
    """The driver a hardware channel names (None if absent or unknown); a redundant
    channel may have none of the hardware keys."""
    if derived:
        _refuse(
            board,
            path,
            table,
            S.HARDWARE_ONLY,
            "does not apply to a redundant channel (it takes its readings from its two inputs)",
            "only on hardware channels",
        )
        _refuse(
            board,
            path,
            table,
            [k for k in table if k in S.DRIVER_PARAM_OWNERS],  # in the order written
            "does not apply to a redundant channel: it has no driver",
            "only on hardware channels",
        )
        return None
    driver_name = table.get("driver", MISSING)
    if driver_name is MISSING:
        board.err(path + ".driver", MISSING, "is missing", S.CHANNEL["driver"].allowed())
        return None
    if check_value(board.ctx, S.CHANNEL["driver"], path + ".driver", driver_name) is BAD:
        return None
    return S.DRIVERS[driver_name]


def _driver_fits(board, path, role, driver, driver_name):
    """``driver`` if it can serve ``role`` on the target; else None after an error."""
    if driver is None:
        return None
    if role not in driver.roles:
        board.err(
            path + ".driver",
            driver_name,
            "cannot serve a {} channel".format(role),
            "for {}: {}".format(
                role, ", ".join(d.name for d in S.DRIVERS.values() if role in d.roles)
            ),
        )
        return None
    t = board.target
    if driver.targets is not None and t is not None and t.name not in driver.targets:
        usable = [
            d.name
            for d in S.DRIVERS.values()
            if role in d.roles and (d.targets is None or t.name in d.targets)
        ]
        board.err(
            path + ".driver",
            driver_name,
            "is not available on target {}".format(t.name),
            "on {}: {}".format(t.name, ", ".join(usable)),
        )
        return None
    return driver


def _body(board, path, table, role, driver, derived):
    """The channel's own keys (not role, driver or driver parameters), checked."""
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
    vals = check_table(
        board.ctx,
        body,
        keys,
        path,
        applies_to=role,
        applies_what="{} channels",
        extra=("role", "driver") + tuple(params),
        unknown_hint=hint,
    )
    if driver is not None:
        # A parameter of another driver: unknown here, and the hint names its owners.
        own = [n for n, key in keys.items() if key.applies is None or role in key.applies]
        for k, v in table.items():
            if k in S.DRIVER_PARAM_OWNERS and k not in params:
                unknown_key(board.ctx, path, k, v, ["role", "driver"] + own + list(params), hint(k))
    return vals


def _unit_and_range(board, path, table, ch, vals):
    role = ch["role"]
    if role in ("sensor", "actuator"):
        if "unit" not in table:
            board.err(
                path + ".unit",
                MISSING,
                "is missing: {}s need a unit".format(role),
                S.CHANNEL["unit"].allowed(),
            )
            ch["unit"] = BAD
        else:
            ch["unit"] = vals["unit"]
    else:
        ch["unit"] = ""
    if role == "status":
        rng = [0.0, 1.0]
    elif "range" not in table:
        board.err(
            path + ".range", MISSING, "is missing: {}s need a range".format(role), "[min, max]"
        )
        rng = BAD
    else:
        rng = vals["range"]
    ch["range"] = rng
    ch["resolution"] = 1.0 if role == "status" else vals.get("resolution")
    if ok(rng) and ch["resolution"] not in (None, BAD):
        _resolution_fits(board, path, rng, ch["resolution"])


def _resolution_fits(board, path, rng, res):
    top = max(abs(rng[0]), abs(rng[1]))
    if top / res > S.RAW_LIMIT:
        board.err(
            path + ".resolution",
            res,
            "is too fine for range {}: telemetry integers would overflow".format(
                range_text(rng[0], rng[1])
            ),
            ">= {:.3g}".format(top / S.RAW_LIMIT),
        )
    elif res > rng[1] - rng[0]:
        board.err(
            path + ".resolution",
            res,
            "is coarser than the whole range {}".format(range_text(rng[0], rng[1])),
            "<= {}".format(rng[1] - rng[0]),
        )


# --- sensors ----------------------------------------------------------------------------------


def _sensor(board, path, ch, vals, table):
    ch["calibration"] = drivers.calibration(board, path, ch, table.get("calibration", MISSING))
    ch["filter_tau_ms"] = vals["filter_tau_ms"]
    ch["stale_ms"] = vals["stale_ms"]
    board.at_least_ticks(path + ".stale_ms", vals["stale_ms"], 2)
    time_limits(board, path, ch, vals, table)


def time_limits(board, path, ch, vals, table):
    """A hardware sensor's uncertain_ms and frozen-reading (stuck_*) keys."""
    unc = vals["uncertain_ms"]
    if isinstance(unc, S.Derived):
        unc = ch["stale_ms"]
    else:
        board.at_least_ticks(path + ".uncertain_ms", unc, 2)
    ch["uncertain_ms"] = unc
    ch["stuck_ms"] = vals["stuck_ms"]
    ch["stuck_band"] = vals["stuck_band"]
    ch["on_stuck"] = vals["on_stuck"]
    if vals["stuck_ms"] is None:
        _refuse(
            board,
            path,
            table,
            S.STUCK_OPTIONS,
            "has no effect without stuck_ms (frozen-reading detection is off)",
            "with stuck_ms = N",
        )
    else:
        board.at_least_ticks(path + ".stuck_ms", vals["stuck_ms"], 2)


def redundant(board, path, ch, vals, earlier):
    """A 1oo2 sensor: two earlier hardware sensors in the same unit."""
    pair = vals.get("redundant")
    if ch["role"] != "sensor":
        return
    ch["redundant"] = pair
    ch["max_disagreement"] = vals.get("max_disagreement")
    ch["select"] = vals.get("select")
    ch["degraded_max_ms"] = vals.get("degraded_max_ms")
    board.at_least_ticks(path + ".degraded_max_ms", ch["degraded_max_ms"], 2)
    if isinstance(vals.get("max_disagreement"), S.Derived):
        board.err(
            path + ".max_disagreement", MISSING, "is missing: redundant channels need it", ">= 0.0"
        )
        ch["max_disagreement"] = BAD
    if pair is BAD:
        return
    if len(pair) != 2:
        board.err(path + ".redundant", pair, "must name exactly two channels", "[a, b]")
        ch["redundant"] = BAD
        return
    for i, other in enumerate(pair):
        if not _redundant_input(board, "{}.redundant[{}]".format(path, i), ch, other, earlier):
            ch["redundant"] = BAD


def _redundant_input(board, key, ch, other, earlier):
    if other not in earlier:
        board.err(
            key,
            other,
            "is not a channel declared before {}".format(ch["name"]),
            ", ".join(earlier) or "no channels yet",
        )
        return False
    o = _validated(board, other)
    if o is None:
        return False
    if o["role"] != "sensor" or "redundant" in o:
        board.err(key, other, "is not a hardware sensor channel", "a sensor with a driver")
        return False
    if ok(o["unit"], ch["unit"]) and o["unit"] != ch["unit"]:
        board.err(
            key,
            other,
            'measures in "{}", not "{}"'.format(o["unit"], ch["unit"]),
            'a sensor in "{}"'.format(ch["unit"]),
        )
        return False
    return True


def _validated(board, name):
    for c in board.partial:
        if c["name"] == name:
            return c
    return None


# --- actuators --------------------------------------------------------------------------------


def _actuator(board, path, ch, vals, table, watchdog):
    rng = ch["range"]
    safe = vals["safe"]
    if "safe" not in table:
        board.err(
            path + ".safe",
            MISSING,
            "is missing: every actuator needs a safe value",
            range_text(rng[0], rng[1]) if ok(rng) else "a number within range",
        )
        safe = BAD
    elif ok(safe, rng) and not rng[0] <= safe <= rng[1]:
        unit = ch["unit"] if ok(ch["unit"]) else ""
        board.err(path + ".safe", safe, "is out of range", range_text(rng[0], rng[1], unit))
        safe = BAD
    ch["safe"] = safe
    dm = vals["deadman_ms"]
    if isinstance(dm, S.Derived):
        dm = watchdog.get("deadman_ms", BAD)
    else:
        board.at_least_ticks(path + ".deadman_ms", dm, 2)
    ch["deadman_ms"] = dm
    actuator_checks(board, path, ch, table)
    ch["unpowered"] = unpowered(board, path, ch, vals["unpowered"])


def actuator_checks(board, path, ch, table):
    """The range and safe value must suit the output driver."""
    rng, safe, d = ch["range"], ch["safe"], ch.get("driver")
    if not ok(rng):
        return
    if d == "pin_out":
        if rng != [0.0, 1.0]:
            board.err(
                path + ".range", table.get("range"), "does not suit a digital output", "[0, 1]"
            )
        elif ok(safe) and safe not in (0.0, 1.0):
            board.err(path + ".safe", safe, "is not a digital level", "0 or 1")
    if d == "pwm" and ok(ch.get("lo", BAD), ch.get("hi", BAD)):
        lo, hi = ch["lo"], ch["hi"]
        if ch.get("invert"):
            lo, hi = hi, lo
        smin, smax = min(lo, hi), max(lo, hi)
        if smin < smax and (rng[0] < smin or rng[1] > smax):
            board.err(
                path + ".range",
                table.get("range"),
                "exceeds the PWM scale lo..hi (duty cannot go beyond 0..100 %)",
                "within {}".format(range_text(smin, smax)),
            )


def unpowered(board, path, ch, declared):
    """The value the actuator falls to without power; its safe value must be that one.

    Safe state = de-energised outputs: a board that loses power, sits in reset or
    crashed drives nothing, so only a safe value the actuator reaches by itself is
    safe when it matters most.  A safe value that needs power (a normally-closed BPR
    whose "safe" is fully open) is refused (``safe_value_needs_power``)."""
    d = ch.get("driver")
    if declared is BAD:
        return BAD
    if not isinstance(declared, S.Derived):
        value, how = declared, "as declared by unpowered"
    elif d == "pwm" and ok(ch.get("lo", BAD), ch.get("hi", BAD)):
        inverted = ch.get("invert") is True
        value = ch["hi"] if inverted else ch["lo"]
        how = "pwm at duty 0 is {} = {}".format(
            "hi (invert = true)" if inverted else "lo", S.fmt_num(value)
        )
    elif d == "pin_out":
        value, how = 0.0, "a pin_out load is off at 0"
    elif d == "emulated" and ok(ch["safe"]):
        return ch["safe"]  # no hardware: the emulator de-energises to this value
    else:
        return BAD  # the driver's own errors say why
    safe = ch["safe"]
    if ok(safe) and safe != value:
        board.err(
            path + ".safe",
            safe,
            "needs power: de-energised (board off, in reset or crashed) {} goes to {} ({})".format(
                ch["name"], S.fmt_num(value), how
            ),
            "{} (the de-energised value); for other hardware declare its real "
            "de-energised value with unpowered = ...".format(S.fmt_num(value)),
            code="safe_value_needs_power",
        )
    return value
