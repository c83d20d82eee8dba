"""``[pid.NAME]``: control loops, each measuring one sensor and driving one actuator, with
output and setpoint ranges inside those channels' ranges."""

from __future__ import annotations

from edge.boardconfig import schema as S
from edge.boardconfig.core import MISSING, NAME_RE, range_text
from edge.boardconfig.values import check_table, ok


def pids(board, channels):
    """Every valid loop, in declaration order, aliased after the channels."""
    raw = board.doc.get("pid", {})
    if not isinstance(raw, dict):
        board.wrong_type("pid", raw)
        return []
    out = []
    outputs = {}  # actuator -> the loop driving it
    for name, table in raw.items():
        path = "pid." + name
        if not _loop_table(board, name, path, table):
            continue
        loop = _loop(board, name, path, table, outputs)
        if loop is not None:
            loop["alias"] = len(channels) + len(out)
            out.append(loop)
    return out


def _loop_table(board, name, path, table):
    if not NAME_RE.match(name):
        board.err(path, MISSING, "is not a valid loop name ({!r})".format(name), S.NAME_RULE)
        return False
    if name in board.by_name:
        board.err(
            path,
            MISSING,
            "has the name of a channel: loop setpoints appear in the birth next to the channels",
            "a name no channel uses",
        )
        return False
    if not isinstance(table, dict):
        board.wrong_type(path, table)
        return False
    return True


def _loop(board, name, path, table, outputs):
    v = check_table(board.ctx, table, S.PID, path)
    m = board.ref(path + ".measure", v["measure"], ("sensor",), "a sensor")
    o = board.ref(path + ".output", v["output"], ("actuator",), "an actuator")
    if o is not None:
        if o["name"] in outputs:
            board.err(
                path + ".output",
                o["name"],
                "is already driven by loop {}".format(outputs[o["name"]]),
                "one loop per actuator",
            )
        outputs[o["name"]] = name
    orng = _within(board, path + ".output_range", v["output_range"], o)
    srng = _within(board, path + ".setpoint_range", v["setpoint_range"], m)
    sp = v["setpoint"]
    if ok(srng):
        if isinstance(sp, S.Derived):
            sp = srng[0]
        elif ok(sp) and not srng[0] <= sp <= srng[1]:
            board.err(
                path + ".setpoint", sp, "is outside setpoint_range", range_text(srng[0], srng[1])
            )
    if v["sample_ms"] is not None:
        board.at_least_ticks(path + ".sample_ms", v["sample_ms"], 1)
    if m is None or o is None or not ok(orng, srng, sp):
        return None
    return {
        "name": name,
        "alias": None,
        "unit": m["unit"],
        "resolution": m["resolution"],
        "measure": m["name"],
        "output": o["name"],
        "kp": v["kp"],
        "ki": v["ki"],
        "kd": v["kd"],
        "d_filter_ms": v["d_filter_ms"],
        "sp_weight": v["sp_weight"],
        "out_min": orng[0],
        "out_max": orng[1],
        "setpoint_min": srng[0],
        "setpoint_max": srng[1],
        "setpoint": sp,
        "ramp_rate": v["ramp_rate"],
        "reverse": v["reverse"],
        "sample_ms": v["sample_ms"],
    }


def _within(board, key, rng, ch):
    """A loop range: the channel's own when not given, else inside it."""
    if ch is None or not ok(ch["range"]):
        return rng
    lo, hi = ch["range"]
    if isinstance(rng, S.Derived):
        return [lo, hi]
    if ok(rng) and (rng[0] < lo or rng[1] > hi):
        board.err(
            key, rng, "is outside {}'s range".format(ch["name"]), "within " + range_text(lo, hi)
        )
    return rng
