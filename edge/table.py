"""Piecewise-linear calibration tables (``calibration.type = "table"``).

Split from ``edge.signals`` so that only boards whose config has a table carry and load
this file (``edge.build`` imports it lazily).
"""

from edge.signals import REASON_OUT_OF_RANGE, Calibration, _require_number


class Table(Calibration):
    """Piecewise-linear interpolation through ``points`` = ((raw, value), ...).

    Raw points must be strictly increasing (values may go either way, e.g. NTC).  A raw
    reading outside the table is implausible; ``low_reason``/``high_reason`` name the
    cause (an RTD table would use "short" below and "open" above).
    """

    def __init__(self, points, low_reason=REASON_OUT_OF_RANGE, high_reason=REASON_OUT_OF_RANGE):
        raws = []
        values = []
        for i, point in enumerate(points):
            if len(point) != 2:
                raise ValueError("points[{}] must be (raw, value), got {!r}".format(i, point))
            raw, value = point
            _require_number("points[{}] raw".format(i), raw)
            _require_number("points[{}] value".format(i), value)
            if raws and raw <= raws[-1]:
                raise ValueError(
                    "points[{}] raw {} must be > previous raw {} (sorted, no duplicates)".format(
                        i, raw, raws[-1]
                    )
                )
            raws.append(raw)
            values.append(value)
        if len(raws) < 2:
            raise ValueError("points needs at least 2 entries, got {}".format(len(raws)))
        self._raws = tuple(raws)
        self._values = tuple(values)
        self.raw_min = raws[0]
        self.raw_max = raws[-1]
        self.low_reason = low_reason
        self.high_reason = high_reason

    def raw_ok(self, raw):
        return self.raw_min <= raw <= self.raw_max

    def bad_reason(self, raw):
        return self.low_reason if raw < self.raw_min else self.high_reason

    def convert(self, raw):
        raws = self._raws
        # Binary search for the segment [raws[lo], raws[lo + 1]] holding raw.
        lo = 0
        hi = len(raws) - 1
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if raws[mid] <= raw:
                lo = mid
            else:
                hi = mid
        r0 = raws[lo]
        v0 = self._values[lo]
        return v0 + (raw - r0) * (self._values[hi] - v0) / (raws[hi] - r0)
