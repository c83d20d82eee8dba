"""``[runaway]``: heater runaway protection on one temperature loop, and the cross-check
that the loop's output range lets heater verification see both full power and off."""

from __future__ import annotations

from edge.boardconfig import schema as S
from edge.boardconfig.core import BAD, MISSING
from edge.boardconfig.values import ok

_COPIED = (
    "hysteresis",
    "max_error",
    "heating_gain",
    "check_gain_time_ms",
    "full_power",
    "off_level",
    "uncontrolled_rise",
)


def runaway(board):
    """The normalised ``[runaway]`` (None when absent or its loop is unusable)."""
    if "runaway" not in board.doc:
        return None
    v = board.section("runaway", S.RUNAWAY)
    if v is None:
        return None
    loop = _loop(board, v["pid"])
    if loop is None:
        return None
    m = _measure(board, v["measure"], loop)
    _power_levels(board, v, board.by_name[loop["output"]]["range"])
    out = {
        "pid": loop["name"],
        "measure": m["name"] if m else BAD,
        "output": loop["output"],
        "state": "aborted",
    }
    for k in _COPIED:
        out[k] = v[k]
    return out


def _loop(board, name):
    if not ok(name):
        return None
    loop = board.pid_by_name.get(name)
    declared = board.doc.get("pid", {})
    if loop is None and not (isinstance(declared, dict) and name in declared):
        # (a declared loop that failed validation has its own errors already)
        board.err(
            "runaway.pid",
            name,
            "names an unknown loop",
            ", ".join(board.pid_by_name) or "no [pid.*] loops declared",
        )
    return loop


def _measure(board, measure, loop):
    """The watched temperature sensor: the loop's measure unless named."""
    if isinstance(measure, S.Derived):
        m = board.by_name[loop["measure"]]
        mkey = "pid.{}.measure".format(loop["name"])
    else:
        m = board.ref("runaway.measure", measure, ("sensor",), "a sensor")
        mkey = "runaway.measure"
    if m is not None and ok(m["unit"]) and m["unit"] != "degC":  # (a bad unit has its error)
        board.err(
            mkey,
            m["name"],
            'measures in "{}": runaway protection watches a temperature'.format(m["unit"]),
            'a sensor in "degC"',
        )
    return m


def _power_levels(board, v, rng):
    fp, off = v["full_power"], v["off_level"]
    if ok(fp, rng) and not (rng[0] < fp <= rng[1]):
        board.err(
            "runaway.full_power",
            fp,
            "is outside the heater's range",
            "{} < full_power <= {}".format(rng[0], rng[1]),
        )
    elif ok(off, fp, rng) and not (rng[0] <= off < fp):
        board.err(
            "runaway.off_level",
            off,
            "is not between the heater's minimum and full_power",
            "{} <= off_level < {}".format(rng[0], fp),
        )


def loop_reaches_verifier_levels(board, runaway):
    """Heater verification judges the loop's output against full_power and off_level:
    a loop limited below full_power never counts as heating at full power
    (heater_not_heating can never fire), one limited above off_level never counts as
    off (uncontrolled_heating can never fire).  Both silently disable a protection."""
    if runaway is None or not ok(runaway["full_power"], runaway["off_level"]):
        return
    loop = board.pid_by_name.get(runaway["pid"])
    if loop is None:
        return
    key = "pid.{}.output_range".format(loop["name"])
    raw = board.doc["pid"][loop["name"]].get("output_range", MISSING)
    if raw is MISSING:
        key = "pid.{}".format(loop["name"])
    off, full = S.fmt_num(runaway["off_level"]), S.fmt_num(runaway["full_power"])
    out_min, out_max = loop["out_min"], loop["out_max"]
    if out_min > runaway["off_level"]:
        board.err(
            key,
            raw,
            "keeps the heater above runaway.off_level = {} (out_min {}), so heater "
            "verification never sees it off and uncontrolled heating goes "
            "undetected".format(off, S.fmt_num(out_min)),
            "out_min <= {} (or raise runaway.off_level)".format(off),
            code="output_min_above_off_level",
        )
    if out_max < runaway["full_power"]:
        board.err(
            key,
            raw,
            "keeps the heater below runaway.full_power = {} (out_max {}), so heater "
            "verification never sees full power and a heater that does not heat goes "
            "undetected".format(full, S.fmt_num(out_max)),
            "out_max >= {} (or lower runaway.full_power)".format(full),
            code="output_max_below_full_power",
        )
