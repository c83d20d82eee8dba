"""What each module kind requires (``schema.KIND_RULES``): named channels with a role,
unit or safe value, interlocks, runaway protection, a measurement."""

from __future__ import annotations

from edge.boardconfig import schema as S
from edge.boardconfig.core import BAD, MISSING
from edge.boardconfig.values import ok


def kind_rules(board, module, channels, interlocks, runaway):
    kind = module["kind"]
    if kind is BAD:
        return
    rule = S.KIND_RULES[kind]
    raw_channels = board.doc.get("channels", {})
    if not isinstance(raw_channels, dict):
        return
    for name, req in list(rule.channels.items()) + list(rule.optional.items()):
        if name in raw_channels:
            _channel_fits(board, kind, name, req)
        elif name in rule.channels:
            board.err(
                "channels." + name,
                MISSING,
                'is missing: a {} module needs a {} channel "{}" ({})'.format(
                    kind, req.role, name, req.doc
                ),
                '[channels.{}] with role = "{}"'.format(name, req.role),
            )
    _interlocks(board, kind, rule, interlocks)
    if rule.runaway:
        _runaway(board, kind, runaway)
    if rule.any_sensor_units and not any(
        c["role"] == "sensor" and c["unit"] in rule.any_sensor_units for c in channels
    ):
        board.err(
            "channels",
            MISSING,
            "lacks a measurement: a {} module needs a sensor channel in one of {}".format(
                kind, ", ".join(rule.any_sensor_units)
            ),
        )


def _channel_fits(board, kind, name, req):
    key = "channels." + name
    ch = board.by_name.get(name)
    if ch is None:
        return
    if ch["role"] != req.role:
        board.err(
            key + ".role",
            ch["role"],
            "is wrong for {} in a {} module ({})".format(name, kind, req.doc),
            '"{}"'.format(req.role),
        )
        return
    if req.units and ok(ch["unit"]) and ch["unit"] not in req.units:
        board.err(
            key + ".unit",
            ch["unit"],
            "is wrong for {} in a {} module".format(name, kind),
            ", ".join('"{}"'.format(u) for u in req.units),
        )
    if req.safe is not None and ok(ch.get("safe")) and ch["safe"] != req.safe:
        board.err(
            key + ".safe",
            ch["safe"],
            "must be {} for {} in a {} module ({})".format(req.safe, name, kind, req.doc),
            repr(req.safe),
        )


def _interlocks(board, kind, rule, interlocks):
    if board.interlock_errors:
        return  # a broken entry may be the one meant: its own error says enough
    for req in rule.interlocks:
        if not has_interlock(board, req, interlocks):
            on = req.channel if req.channel else "a sensor in {}".format("/".join(req.units))
            board.err(
                "interlocks",
                MISSING,
                "lacks a required interlock for a {} module: {}".format(kind, req.doc),
                'an [[interlocks]] entry with condition = "{}" on {} and force_safe '
                'containing "{}"'.format(req.condition, on, req.forces),
            )


def _runaway(board, kind, runaway):
    if "runaway" not in board.doc:
        board.err(
            "runaway",
            MISSING,
            "is missing: a {} module needs heater runaway protection".format(kind),
            "[runaway] with pid = the heating loop",
        )
    elif runaway is not None and runaway.get("output") != "heater":
        board.err(
            "runaway.pid",
            runaway.get("pid"),
            "is not the loop driving heater",
            "the loop whose output is heater",
        )


def has_interlock(board, req, interlocks):
    """True if an interlock of ``req.condition`` on the required channel or unit forces
    ``req.forces`` safe (or to its safe value); also when that channel is missing."""
    target = board.by_name.get(req.forces)
    if target is None:
        return True  # the missing channel was already reported
    for il in interlocks:
        if il["condition"] != req.condition:
            continue
        ch = board.by_name.get(il["channel"])
        if req.channel is not None and il["channel"] != req.channel:
            continue
        if req.units is not None and (ch is None or ch["unit"] not in req.units):
            continue
        if req.forces in il["safe"]:
            return True
        if il["values"].get(req.forces) == target.get("safe"):
            return True
    return False
