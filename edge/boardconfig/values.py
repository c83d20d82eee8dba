"""The value types of board configs only: GPIO pins, calibration points, SPI bus ids and
ADS1115 gains.  ``BOARD_TYPES`` is ``core.VALUE_TYPES`` with them added;
``check_value`` and ``check_table`` are the core's, bound to it."""

from __future__ import annotations

import re

from edge.boardconfig import core
from edge.boardconfig import schema as S
from edge.boardconfig.core import BAD

_SPI_DEVICE_RE = re.compile(r"([0-9]{1,2})\.([0-3])\Z")


def _pin(ctx, key, path, v):
    if type(v) is not int:
        ctx.error(
            path, v, "has the wrong type: expected an integer pin number, got " + core.type_name(v)
        )
        return BAD
    if v < 0:
        ctx.error(path, v, "is not a pin number", "0 or more")
        return BAD
    return v


def _points(ctx, key, path, v):
    if not isinstance(v, list) or len(v) < 2:
        ctx.error(
            path, v, "is not a calibration table", "[[raw, value], ...] with at least 2 points"
        )
        return BAD
    out = []
    for i, pt in enumerate(v):
        p = "{}[{}]".format(path, i)
        if not isinstance(pt, list) or len(pt) != 2 or not all(core.is_finite(x) for x in pt):
            ctx.error(p, pt, "is not a point", "[raw, value]: two finite numbers")
            return BAD
        raw, val = float(pt[0]), float(pt[1])
        if out and raw <= out[-1][0]:
            ctx.error(
                p,
                pt,
                "is out of order: raw must be above the previous point's raw {}".format(
                    S.fmt_num(out[-1][0])
                ),
                "raw strictly increasing",
            )
            return BAD
        out.append([raw, val])
    return out


def _spi_bus_id(ctx, key, path, v):
    if type(v) is int:
        return core.bounds(ctx, key, path, v)
    m = _SPI_DEVICE_RE.match(v) if isinstance(v, str) else None
    if m is None or int(m.group(1)) > key.hi:
        ctx.error(path, v, "is not an SPI bus id", key.allowed())
        return BAD
    return v


def _gain(ctx, key, path, v):
    if core.is_finite(v):
        for g, _fs in S.ADS1115_FULL_SCALE:
            if abs(v - g) < 1e-3:
                return g
    ctx.error(path, v, "is not a valid gain", key.allowed())
    return BAD


BOARD_TYPES = dict(core.VALUE_TYPES)
BOARD_TYPES.update({S.PIN: _pin, S.POINTS: _points, S.SPI_BUS_ID: _spi_bus_id, S.GAIN: _gain})


def check_value(ctx, key, path, v):
    """``core.check_value`` with the board types."""
    return core.check_value(ctx, key, path, v, BOARD_TYPES)


def check_table(ctx, table, keys, path, **kw):
    """``core.check_table`` with the board types (same keyword arguments)."""
    return core.check_table(ctx, table, keys, path, types=BOARD_TYPES, **kw)


def ok(*values):
    """True if none of ``values`` is BAD or a not-yet-resolved ``Derived`` default."""
    return all(v is not BAD and not isinstance(v, S.Derived) for v in values)
