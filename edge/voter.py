"""1oo2 voting: one value from two channels measuring the same variable.

Split from ``edge.signals`` (same quality rules, see there) so that only boards whose
config has a redundant pair carry and load this file (``edge.build`` imports it lazily).
"""

from edge.clock import ticks_diff
from edge.signals import REASON_DEGRADED, REASON_DISAGREEMENT, _repr, _require_number
from protocol.constants import QUALITY_BAD, QUALITY_GOOD, QUALITY_UNCERTAIN

SELECT_MAX = "max"
SELECT_MIN = "min"
SELECT_AVG = "avg"
_SELECTS = (SELECT_MAX, SELECT_MIN, SELECT_AVG)


class Redundant1oo2:
    """One value from two channels measuring the same variable (1-out-of-2).

    * both usable and ``|a - b| <= max_disagreement``: value by ``select`` ("max" for
      high-trip variables such as over-temperature, so either sensor alone can trip;
      "min" for low-trip variables; "avg"), quality GOOD (UNCERTAIN if either is);
    * both usable but further apart: BAD "disagreement" (one of them is lying and we
      cannot tell which);
    * one BAD, the other usable: *degraded* (``degraded`` True, the moment it happens):
      the other's value, quality UNCERTAIN (redundancy lost; still usable), but only
      for ``degraded_max_ms``: running 1oo1 for strictly longer is BAD "degraded" until
      both inputs are usable again (None = no limit);
    * both BAD: BAD with ``a``'s reason (``b``'s if ``a`` has none).

    An input that is merely starting (no sample yet, not BAD) does not make the pair
    degraded: the inputs' own ``stale_ms`` bounds that.  ``unfiltered`` is selected from
    the inputs' ``unfiltered`` values the same way as ``value``.

    Derived: call ``check(now_ms)`` each tick after the inputs were updated; it also runs
    the inputs' own time limits.  As for ``SensorChannel``, ``value`` keeps the last
    usable value while BAD.
    """

    def __init__(self, a, b, max_disagreement, name=None, select=SELECT_AVG, degraded_max_ms=None):
        _require_number("max_disagreement", max_disagreement)
        if max_disagreement < 0:
            raise ValueError("max_disagreement must be >= 0, got {}".format(max_disagreement))
        if select not in _SELECTS:
            raise ValueError("select must be one of {}, got {!r}".format(_SELECTS, select))
        if degraded_max_ms is not None and degraded_max_ms <= 0:
            raise ValueError(
                "degraded_max_ms must be > 0 ms or None, got {!r}".format(degraded_max_ms)
            )
        self.a = a
        self.b = b
        self.max_disagreement = max_disagreement
        self.name = name if name is not None else "{}|{}".format(a.name, b.name)
        self.select = select
        self.degraded_max_ms = degraded_max_ms
        self.value = None
        self.unfiltered = None
        self.quality = QUALITY_UNCERTAIN
        self.bad_reason = None
        self.last_good_ms = None
        self.degraded = False
        self._degraded_ms0 = 0

    def _pick(self, va, vb):
        if self.select == SELECT_MAX:
            return va if va >= vb else vb
        if self.select == SELECT_MIN:
            return va if va <= vb else vb
        return (va + vb) * 0.5

    def _bad(self, reason):
        self.quality = QUALITY_BAD
        self.bad_reason = reason
        return QUALITY_BAD

    def check(self, now_ms):
        a = self.a
        b = self.b
        a.check(now_ms)
        b.check(now_ms)
        va = a.value
        vb = b.value
        a_bad = a.quality == QUALITY_BAD
        b_bad = b.quality == QUALITY_BAD
        a_ok = not a_bad and va is not None
        b_ok = not b_bad and vb is not None
        # Degraded: exactly one input BAD and the other delivering.
        degraded = (a_bad and b_ok) or (b_bad and a_ok)
        if degraded and not self.degraded:
            self._degraded_ms0 = now_ms
        self.degraded = degraded
        if not a_ok and not b_ok and not (a_bad and b_bad):
            # At least one input is still starting and none has a value yet.
            if a_bad or b_bad:
                return self._bad(a.bad_reason if a_bad else b.bad_reason)
            self.quality = QUALITY_UNCERTAIN
            self.bad_reason = None
            return self.quality
        if a_ok and b_ok:
            # a_ok and b_ok imply both values are numbers (pyright cannot follow that)
            if abs(va - vb) > self.max_disagreement:  # pyright: ignore[reportOptionalOperand]
                return self._bad(REASON_DISAGREEMENT)
            self.value = self._pick(va, vb)
            self.unfiltered = self._pick(a.unfiltered, b.unfiltered)
            if a.quality == QUALITY_GOOD and b.quality == QUALITY_GOOD:
                self.quality = QUALITY_GOOD
            else:
                self.quality = QUALITY_UNCERTAIN
        elif a_ok or b_ok:
            if (
                degraded
                and self.degraded_max_ms is not None
                and ticks_diff(now_ms, self._degraded_ms0) > self.degraded_max_ms
            ):
                return self._bad(REASON_DEGRADED)
            one = a if a_ok else b
            self.value = one.value
            self.unfiltered = one.unfiltered
            self.quality = QUALITY_UNCERTAIN
        else:
            return self._bad(a.bad_reason or b.bad_reason)
        self.bad_reason = None
        self.last_good_ms = now_ms
        return self.quality

    def __repr__(self):
        return _repr(self)
