"""``[[interlocks]]`` and ``[[alarms]]``: trips on a channel's value, rate of rise, bad
quality or a status input.  An interlock forces actuators to safe or given values; an
alarm only reports.  Also the cross-check that no loop setpoint reaches a trip."""

from __future__ import annotations

from edge.boardconfig import schema as S
from edge.boardconfig.core import BAD, MISSING, range_text, toml_repr
from edge.boardconfig.values import check_table, check_value, ok

_ROLES = {
    "above": ("sensor",),
    "below": ("sensor",),
    "rate_of_rise": ("sensor",),
    "input_true": ("status",),
    "bad_quality": ("sensor", "status"),
    "deviation": ("sensor",),
}
_VALUE_CONDITIONS = ("above", "below", "rate_of_rise", "deviation")


def trips(board, section, keys, forcing):
    """The valid entries of ``[[interlocks]]`` (``forcing``) or ``[[alarms]]``."""
    raw = board.doc.get(section, [])
    if not isinstance(raw, list):
        board.wrong_type(section, raw, "an array of tables ([[{}]])".format(section))
        return []
    out = []
    for i, table in enumerate(raw):
        path = "{}[{}]".format(section, i)
        if not isinstance(table, dict):
            board.wrong_type(path, table)
            continue
        cond = table.get("condition", MISSING)
        if cond is not MISSING:
            cond = check_value(board.ctx, keys["condition"], path + ".condition", cond)
        if cond is BAD:
            continue
        if cond is MISSING:
            board.err(path + ".condition", MISSING, "is missing", keys["condition"].allowed())
            continue
        v = check_table(
            board.ctx, table, keys, path, applies_to=cond, applies_what='condition "{}"'
        )
        entry = trip(board, path, cond, v, table, forcing)
        if entry is not None:
            out.append(entry)
    return out


def trip(board, path, cond, v, table, forcing):
    """One normalised trip, or None if any part of it is invalid."""
    roles = _ROLES[cond]
    ch = board.ref(path + ".channel", v["channel"], roles, "a " + " or ".join(roles) + " channel")
    limit = _limit(board, path, cond, v, table, ch)
    cause = v.get("cause")
    if cond == "bad_quality":
        cause = "sensor_bad"
    elif "cause" not in table:
        board.err(path + ".cause", MISSING, "is missing: events need a cause code", S.NAME_RULE)
        cause = BAD
    if cond == "rate_of_rise":
        board.at_least_ticks(path + ".window_ms", v["window_ms"], 2)
    entry = {
        "id": v["id"],
        "channel": ch["name"] if ch is not None else BAD,
        "condition": cond,
        "limit": limit,
        "on_delay_ms": v["on_delay_ms"],
        "hysteresis": v.get("hysteresis", 0.0),
        "window_ms": v.get("window_ms", S.INTERLOCK["window_ms"].default),
        "unfiltered": v.get("unfiltered", False),
        "trip_on_bad": v.get("trip_on_bad", True),
        "cause": cause,
    }
    if cond == "deviation":
        # Only deviations carry these keys: other entries (and so the compiled bytes and
        # config hashes of every existing board) stay as they were.
        entry["reference"] = _reference(board, path, v, table, ch)
        entry["relative"] = v["relative"]
    if forcing:
        _forcing(board, path, v, entry)
    else:
        entry["severity"] = v["severity"]
        if "while_on" in table:  # only then: other boards' compiled bytes stay as they were
            gate = board.ref(path + ".while_on", v["while_on"], ("actuator",), "an actuator")
            entry["while_on"] = BAD if gate is None else gate["name"]
    if not all(ok(x) for x in entry.values()):
        return None
    return entry


def _limit(board, path, cond, v, table, ch):
    if cond not in _VALUE_CONDITIONS:
        return None
    limit = v.get("limit")
    if "limit" not in table:
        board.err(
            path + ".limit",
            MISSING,
            'is missing: condition "{}" needs a limit'.format(cond),
            "a number",
        )
        return BAD
    if cond == "rate_of_rise":
        if ok(limit) and limit <= 0:
            board.err(path + ".limit", limit, "is not a rise", "> 0 units/s")
    elif cond == "deviation":
        if ok(limit) and limit < 0:
            board.err(path + ".limit", limit, "is a negative tolerance", ">= 0")
    elif (
        ch is not None and ok(limit, ch["range"]) and not ch["range"][0] <= limit <= ch["range"][1]
    ):
        board.err(
            path + ".limit",
            limit,
            "is outside {}'s range, so the trip could never fire on a value".format(ch["name"]),
            range_text(ch["range"][0], ch["range"][1], ch["unit"]),
        )
    return limit


def _reference(board, path, v, table, ch):
    """A deviation's reference: a PID loop or an actuator in the channel's unit."""
    key = path + ".reference"
    if "reference" not in table:
        board.err(
            key,
            MISSING,
            'is missing: condition "deviation" needs what the channel must follow',
            "a PID loop or an actuator channel",
        )
        return BAD
    name = v["reference"]
    if not ok(name):
        return BAD
    target = board.pid_by_name.get(name)
    if target is None:
        target = board.ref(key, name, ("actuator",), "a PID loop or an actuator")
        if target is None:
            return BAD
    unit = target.get("unit")
    if ch is not None and ok(unit, ch.get("unit")) and unit != ch["unit"]:
        board.err(
            key,
            name,
            "is in {}, but {} measures {}: the difference would mean nothing".format(
                unit, ch["name"], ch["unit"]
            ),
            "a loop or actuator in {}".format(ch["unit"]),
        )
        return BAD
    return name


def _forcing(board, path, v, entry):
    """An interlock's force_safe / force_values: existing actuators, values in range,
    each actuator in one of them, and at least one actuator in all."""
    safe = list(v["force_safe"]) if ok(v["force_safe"]) else BAD
    values = dict(v["force_values"]) if ok(v["force_values"]) else BAD
    if ok(safe):
        for j, name in enumerate(safe):
            key = "{}.force_safe[{}]".format(path, j)
            if board.ref(key, name, ("actuator",), "an actuator") is None:
                safe = BAD
                break
    if ok(values):
        values = _forced_values(board, path, values, safe)
    if ok(safe, values) and not safe and not values:
        board.err(
            path,
            MISSING,
            "forces nothing: an interlock must force at least one "
            "actuator (use [[alarms]] to only report)",
            "force_safe = [...] or force_values = {...}",
        )
    entry["safe"] = safe
    entry["values"] = values
    entry["state"] = v["state"]


def _forced_values(board, path, values, safe):
    for name, x in values.items():
        key = "{}.force_values.{}".format(path, name)
        a = board.ref(key, name, ("actuator",), "an actuator")
        if a is None:
            return BAD
        if ok(a["range"]) and not a["range"][0] <= x <= a["range"][1]:
            lo, hi = a["range"]
            board.err(key, x, "is out of range", range_text(lo, hi, a["unit"]))
        if ok(safe) and name in safe:
            board.err(key, x, "is also in force_safe", "each actuator in one of them")
    return values


def unique_trip_ids(board):
    """Trip ids are unique among interlocks and alarms; "estop" is the [estop]'s."""
    seen = {}
    for section in ("interlocks", "alarms"):
        raw = board.doc.get(section, [])
        if not isinstance(raw, list):
            continue
        for i, t in enumerate(raw):
            x = t.get("id") if isinstance(t, dict) else None
            if not isinstance(x, str):
                continue
            path = "{}[{}].id".format(section, i)
            if x == "estop":
                board.err(path, x, "is reserved for the [estop] section's trip", "any other name")
            elif x in seen:
                board.err(
                    path,
                    x,
                    "is used twice (also {}, line {})".format(seen[x], board.line(seen[x])),
                    "ids unique among interlocks and alarms",
                )
            else:
                seen[x] = path


# --- a loop must not be able to defeat a protection ------------------------------------------


def setpoints_below_trips(board, pids, interlocks):
    """A setpoint the host may set must lie where the interlocks on the same quantity
    stay quiet, with their hysteresis as the margin (``setpoint_above_trip``, and
    ``setpoint_below_trip`` for low trips): "setpoint outside the safe range is
    rejected" then holds, and a module tripped near its setpoint can be reset at it
    (an "above" cause persists until the value is at or below limit - hysteresis).
    Interlocks count when they watch the loop's measure or a channel sharing one of
    its hardware inputs (a 1oo2 vote and its probes)."""
    for loop in pids:
        measured = board.inputs_of(loop["measure"])
        for i, il in enumerate(interlocks):
            if il["condition"] in ("above", "below") and measured & board.inputs_of(il["channel"]):
                _setpoint_clear_of(board, loop, i, il)


def _setpoint_clear_of(board, loop, i, il):
    cond, limit, band = il["condition"], il["limit"], il["hysteresis"]
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
        return
    # An invalid unit was reported with its channel; the texts then go without one.
    unit = loop["unit"] if ok(loop["unit"]) else ""
    unit = "" if unit in ("", "1") else " " + unit
    problem = "reaches {} the trip of interlocks[{}] {} ({} {} {})".format(
        cond, i, il["id"], il["channel"], cond, S.fmt_num(limit)
    )
    allowed = "{} {} {}{} (trip limit {} {} hysteresis {})".format(
        end, cmp, S.fmt_num(bound), unit, S.fmt_num(limit), sign, S.fmt_num(band)
    )
    key = "pid.{}.setpoint_range".format(loop["name"])
    raw = board.doc["pid"][loop["name"]].get("setpoint_range", MISSING)
    if raw is MISSING:
        key = "pid." + loop["name"]
        rng = [loop["setpoint_min"], loop["setpoint_max"]]
        problem = "has setpoint_range {} (the measure's range), which {}".format(
            toml_repr(rng), problem
        )
    board.err(key, raw, problem, allowed, code=code)
