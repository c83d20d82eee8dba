"""Signal conditioning: raw driver readings -> engineering values with a quality code.

Pieces:

* Calibrations turn one raw reading into an engineering value.  Each has
  ``convert(raw)``, ``raw_ok(raw)`` (physically plausible at all), ``bad_reason(raw)``
  (why not, as a short code) and ``raw_uncertain(raw)`` (plausible but outside the
  trustworthy band).  ``Linear``, ``Current4to20`` (NAMUR NE43), ``Table`` (piecewise
  linear, e.g. thermocouple mV -> degC) and ``Pt100`` (Callendar-Van Dusen).
* ``SensorChannel`` validates, range-checks, filters and timestamps one input.
* ``Redundant1oo2`` derives one value from two channels measuring the same thing.

Quality rules (shared by every channel here):

* GOOD: the latest sample was usable and inside the trustworthy band.
* UNCERTAIN: usable, but the calibration flags it (NE43 over/under-range band) or a
  1oo2 pair lost one of its sensors.  UNCERTAIN is a short-lived state: a hardware
  channel UNCERTAIN for longer than ``uncertain_ms`` is BAD "uncertain", and a 1oo2 pair
  running on one probe for longer than ``degraded_max_ms`` is BAD "degraded".
* BAD: no usable sample (None/NaN/inf, driver fault flag, implausible raw, engineering
  value outside ``[range_min, range_max]``), or no usable sample for more than
  ``stale_ms``, or a 1oo2 disagreement, or one of the time limits above, or a reading
  stuck for ``stuck_ms`` on a channel configured to treat that as BAD.  ``bad_reason``
  says which (first-out cause).

``value`` is filtered (for control and display); ``unfiltered`` is the same sample before
the low-pass filter, for protection that must not wait for the filter.

On BAD, ``value`` keeps the last usable (filtered) value so a display still shows
something, but it must not be trusted: interlocks treat BAD as trip-worthy.  ``value`` is
None until the first usable sample.  After any BAD period the low-pass filter restarts
from the next usable sample, so a stale pre-fault value never leaks into the new one.

Allocation: ``update``/``check`` create no containers (floats are still boxed on ports
with object representation A; that cannot be avoided in Python).
"""

import math

from edge.clock import ticks_diff
from edge.hal import FAULT_STARTING
from protocol.constants import QUALITY_BAD, QUALITY_GOOD, QUALITY_UNCERTAIN

# Short first-out cause codes carried in ``bad_reason`` (and in trip events).
REASON_NAN = "nan"
REASON_OPEN = "open"
REASON_SHORT = "short"
REASON_OUT_OF_RANGE = "out_of_range"
REASON_NAMUR_FAIL = "namur_fail"
REASON_STALE = "stale"
REASON_DISAGREEMENT = "disagreement"
REASON_UNCERTAIN = "uncertain"  # UNCERTAIN for longer than uncertain_ms
REASON_STUCK = "stuck"  # reading frozen for stuck_ms (only with stuck_bad)
REASON_DEGRADED = "degraded"  # 1oo2 pair on one probe for longer than degraded_max_ms

BAD_REASONS = (
    REASON_NAN,
    REASON_OPEN,
    REASON_SHORT,
    REASON_OUT_OF_RANGE,
    REASON_NAMUR_FAIL,
    REASON_STALE,
    REASON_DISAGREEMENT,
    REASON_UNCERTAIN,
    REASON_STUCK,
    REASON_DEGRADED,
)

SELECT_MAX = "max"
SELECT_MIN = "min"
SELECT_AVG = "avg"
_SELECTS = (SELECT_MAX, SELECT_MIN, SELECT_AVG)


def is_finite_number(x):
    """True for an int/float that is neither NaN nor infinite (None -> False)."""
    if x is None:
        return False
    # inf - inf and nan - nan are both NaN, which is the only value unequal to 0 here;
    # avoids math.isfinite, which older MicroPython builds lack.
    return x - x == 0


def _require_number(field, value):
    if not is_finite_number(value):
        raise ValueError("{} must be a finite number, got {!r}".format(field, value))


def _repr(ch):
    return "<{} {} value={} quality={} reason={}>".format(
        type(ch).__name__, ch.name, ch.value, ch.quality, ch.bad_reason
    )


# --------------------------------------------------------------------------- calibrations


class Calibration:
    """Base: every finite raw reading is plausible and trustworthy."""

    def convert(self, raw):
        return raw

    def raw_ok(self, raw) -> bool:
        return True

    def bad_reason(self, raw) -> str:
        """Short code for an implausible ``raw`` (only asked when ``raw_ok`` is False)."""
        return REASON_OUT_OF_RANGE

    def raw_uncertain(self, raw) -> bool:
        return False


class Linear(Calibration):
    """``value = gain * raw + offset``; raw outside ``[raw_min, raw_max]`` is implausible.

    ``raw_min``/``raw_max`` may be None for "no bound" (e.g. a digital sensor that already
    reports engineering units).
    """

    def __init__(self, gain, offset=0.0, raw_min=None, raw_max=None):
        _require_number("gain", gain)
        _require_number("offset", offset)
        if gain == 0:
            raise ValueError("gain must be non-zero, got 0")
        if raw_min is not None:
            _require_number("raw_min", raw_min)
        if raw_max is not None:
            _require_number("raw_max", raw_max)
        if raw_min is not None and raw_max is not None and raw_min > raw_max:
            raise ValueError("raw_min {} must be <= raw_max {}".format(raw_min, raw_max))
        self.gain = gain
        self.offset = offset
        self.raw_min = raw_min
        self.raw_max = raw_max

    def convert(self, raw):
        return self.gain * raw + self.offset

    def raw_ok(self, raw):
        if self.raw_min is not None and raw < self.raw_min:
            return False
        if self.raw_max is not None and raw > self.raw_max:
            return False
        return True


# NAMUR NE43 bands for a 4-20 mA loop (raw in mA):
#   raw <= 3.6            failure signal (broken wire, or the transmitter signalling its
#                         own fault downscale: NE43 says <= 3.6)      -> BAD "namur_fail"
#   3.6 <  raw <  3.8     under measuring range                       -> UNCERTAIN
#   3.8 <= raw <= 20.5    measurement information (incl. 3.8-4 and 20-20.5 over/under-
#                         range that NE43 treats as valid, linearly extrapolated) -> GOOD
#   20.5 <  raw <  21.0   over measuring range                        -> UNCERTAIN
#   raw >= 21.0           failure signal (short circuit, or upscale fault signalling:
#                         NE43 says >= 21)                            -> BAD "namur_fail"
# The UNCERTAIN bands are where a failing transmitter passes on its way to its failure
# signal (or parks, if it drives e.g. 3.7 mA): a channel leaves them within uncertain_ms
# or goes BAD.
NE43_FAIL_LOW_MA = 3.6
NE43_GOOD_LOW_MA = 3.8
NE43_GOOD_HIGH_MA = 20.5
NE43_FAIL_HIGH_MA = 21.0


class Current4to20(Calibration):
    """4-20 mA transmitter: 4 mA -> ``lo_value``, 20 mA -> ``hi_value`` (linear).

    Values in the NE43 uncertain bands are still converted linearly (3.7 mA reads a little
    below ``lo_value``); a channel whose ``range_min``/``range_max`` equal the span will
    therefore reject them as out of range, so set the channel range to the physically
    plausible limits rather than the transmitter span.
    """

    def __init__(self, lo_value, hi_value):
        _require_number("lo_value", lo_value)
        _require_number("hi_value", hi_value)
        if lo_value == hi_value:
            raise ValueError("lo_value and hi_value must differ, both are {}".format(lo_value))
        self.lo_value = lo_value
        self.hi_value = hi_value
        self._per_ma = (hi_value - lo_value) / 16.0

    def convert(self, raw):
        return self.lo_value + (raw - 4.0) * self._per_ma

    def raw_ok(self, raw):
        # Strict: exactly 3.6 mA and 21.0 mA are NE43 failure signals, not readings.
        return NE43_FAIL_LOW_MA < raw < NE43_FAIL_HIGH_MA

    def bad_reason(self, raw):
        return REASON_NAMUR_FAIL

    def raw_uncertain(self, raw):
        return raw < NE43_GOOD_LOW_MA or raw > NE43_GOOD_HIGH_MA


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


# IEC 60751 Callendar-Van Dusen coefficients.
CVD_A = 3.9083e-3
CVD_B = -5.775e-7
CVD_C = -4.183e-12  # only below 0 degC


def cvd_resistance(t_c, r0=100.0):
    """Resistance of a platinum RTD at ``t_c`` degC (IEC 60751), for tests and tables."""
    r = 1.0 + CVD_A * t_c + CVD_B * t_c * t_c
    if t_c < 0:
        r += CVD_C * (t_c - 100.0) * t_c * t_c * t_c
    return r0 * r


class Pt100(Calibration):
    """Platinum RTD, raw in ohms -> degC by Callendar-Van Dusen.

    0..850 degC (R >= R0): the quadratic R = R0 (1 + A T + B T^2) solved exactly for T, in
    the cancellation-free form T = 2 (R/R0 - 1) / (A + sqrt(A^2 + 4 B (R/R0 - 1))), which
    keeps its precision in single-precision floats.  Below 0 degC the quadratic root is
    refined by Newton steps on the full equation (with the C term), so the usual
    -200..0 degC range is accurate too.

    Raw above ``r_open`` (default 4 * R0: 400 ohm for a Pt100, beyond 850 degC) is an open
    circuit; below ``r_short`` (default 0.18 * R0: 18 ohm, about -200 degC) a short.
    ``r0=1000`` gives a Pt1000.
    """

    def __init__(self, r0=100.0, r_short=None, r_open=None):
        _require_number("r0", r0)
        if r0 <= 0:
            raise ValueError("r0 must be > 0 ohm, got {}".format(r0))
        if r_short is None:
            r_short = 0.18 * r0
        if r_open is None:
            r_open = 4.0 * r0
        _require_number("r_short", r_short)
        _require_number("r_open", r_open)
        if not 0 < r_short < r0 < r_open:
            raise ValueError(
                "need 0 < r_short < r0 < r_open, got r_short={} r0={} r_open={}".format(
                    r_short, r0, r_open
                )
            )
        self.r0 = r0
        self.r_short = r_short
        self.r_open = r_open

    def raw_ok(self, raw):
        return self.r_short <= raw <= self.r_open

    def bad_reason(self, raw):
        return REASON_SHORT if raw < self.r_short else REASON_OPEN

    def convert(self, raw):
        x = raw / self.r0 - 1.0
        t = 2.0 * x / (CVD_A + math.sqrt(CVD_A * CVD_A + 4.0 * CVD_B * x))
        if t < 0:
            # The C term is -4.2e-12 (t - 100) t^3: tiny near 0, ~2.5 degC at -200 degC.
            n = 4
            while n > 0:
                n -= 1
                t2 = t * t
                f = CVD_A * t + CVD_B * t2 + CVD_C * (t - 100.0) * t2 * t - x
                df = CVD_A + 2.0 * CVD_B * t + CVD_C * (4.0 * t - 300.0) * t2
                t -= f / df
        return t


# ------------------------------------------------------------------------------ channels


class SensorChannel:
    """One conditioned input.

    ``update(raw, now_ms, fault=None)`` takes a driver reading (None or NaN when the driver
    failed; ``fault`` lets a driver name the failure, e.g. a MAX31855 open-thermocouple bit
    -> ``fault="open"``).  ``check(now_ms)`` applies the time limits and should run every
    tick.

    * ``filter_tau_ms``: first-order low-pass time constant (0 = no filter).  Discrete
      form y += a (x - y) with a = dt / (tau + dt), dt from ticks, so the output is always
      between the previous output and the new input.  ``value`` is the filtered value,
      ``unfiltered`` the latest usable sample before the filter.
    * ``stale_ms``: BAD "stale" once the last usable sample is older than this (strictly
      more than ``stale_ms`` ms ago); None disables.
    * ``uncertain_ms``: BAD "uncertain" once every usable sample for strictly more than
      this was UNCERTAIN (a transmitter parked in an NE43 margin band); it stays BAD until
      a GOOD sample.  None (the default) = ``stale_ms``: a reading that cannot be trusted
      is treated like one that does not arrive.
    * ``stuck_ms``/``stuck_band``: the reading is *stuck* (``stuck`` True) once every
      usable sample for strictly more than ``stuck_ms`` stayed within +-``stuck_band``
      (engineering units, unfiltered) of the first sample of that run: a live transmitter
      always moves a little (process and converter noise), a frozen one does not.
      None disables.  ``stuck_bad`` False: ``stuck`` is only a flag (edge.build raises an
      alarm from it); True: the channel is also BAD "stuck" until a sample leaves the
      band, so every interlock watching it trips.
    * Start-up: a new channel is UNCERTAIN with ``value`` None (``starting`` is True) while
      its driver reports ``fault="starting"`` (a bus device's first conversion is not ready;
      see edge.hal), for at most ``stale_ms`` after the first reading: then it is BAD
      "stale".  Any other failure before the first usable sample is BAD at once.  Without
      this, every module would boot with latched sensor_bad trips from sensors that
      simply had not converted yet; with it, a sensor that never delivers still trips
      within ``stale_ms`` of boot.
    * ``range_min``/``range_max``: inclusive engineering-unit limits, not widened by any
      margin; outside -> BAD "out_of_range".  None = unbounded.

    A GOOD or UNCERTAIN sample is "usable": it updates ``value`` and ``last_good_ms``
    (unless a time limit above already made the channel BAD).
    """

    def __init__(
        self,
        name,
        calibration=None,
        filter_tau_ms=0,
        stale_ms=2000,
        range_min=None,
        range_max=None,
        uncertain_ms=None,
        stuck_ms=None,
        stuck_band=0.0,
        stuck_bad=False,
    ):
        if filter_tau_ms is None or filter_tau_ms < 0:
            raise ValueError(
                "{}: filter_tau_ms must be >= 0 ms, got {!r}".format(name, filter_tau_ms)
            )
        if stale_ms is not None and stale_ms <= 0:
            raise ValueError("{}: stale_ms must be > 0 ms or None, got {!r}".format(name, stale_ms))
        if uncertain_ms is None:
            uncertain_ms = stale_ms
        elif uncertain_ms <= 0:
            raise ValueError(
                "{}: uncertain_ms must be > 0 ms or None, got {!r}".format(name, uncertain_ms)
            )
        if stuck_ms is not None and stuck_ms <= 0:
            raise ValueError("{}: stuck_ms must be > 0 ms or None, got {!r}".format(name, stuck_ms))
        _require_number(name + ".stuck_band", stuck_band)
        if stuck_band < 0:
            raise ValueError("{}: stuck_band must be >= 0, got {!r}".format(name, stuck_band))
        if range_min is not None:
            _require_number(name + ".range_min", range_min)
        if range_max is not None:
            _require_number(name + ".range_max", range_max)
        if range_min is not None and range_max is not None and range_min > range_max:
            raise ValueError(
                "{}: range_min {} must be <= range_max {}".format(name, range_min, range_max)
            )
        self.name = name
        self.calibration = calibration if calibration is not None else Calibration()
        self.filter_tau_ms = filter_tau_ms
        self.stale_ms = stale_ms
        self.uncertain_ms = uncertain_ms
        self.stuck_ms = stuck_ms
        self.stuck_band = stuck_band
        self.stuck_bad = stuck_bad
        self.range_min = range_min
        self.range_max = range_max
        self.value = None
        self.unfiltered = None
        self.quality = QUALITY_UNCERTAIN
        self.bad_reason = None
        self.raw = None
        self.last_good_ms = None
        self.stuck = False
        self._start_ms = None  # first reading, while no usable sample has arrived yet
        self._primed = False  # filter has a valid previous output
        self._uncertain_ms0 = None  # first UNCERTAIN sample of the current UNCERTAIN run
        self._stuck_ref = None  # first sample of the current run within the band
        self._stuck_ms0 = 0  # ... and when it came

    @property
    def starting(self):
        """True until the first usable sample (and while not yet BAD)."""
        return self.last_good_ms is None and self.quality != QUALITY_BAD

    def _set_bad(self, reason):
        self.quality = QUALITY_BAD
        self.bad_reason = reason
        self._primed = False
        if reason != REASON_STUCK:
            # Something else happened to the signal: a stuck run starts afresh.
            self._stuck_ref = None
            self.stuck = False
        if reason != REASON_UNCERTAIN:
            self._uncertain_ms0 = None

    def _uncertain_expired(self, now_ms):
        t0 = self._uncertain_ms0
        return (
            t0 is not None
            and self.uncertain_ms is not None
            and ticks_diff(now_ms, t0) > self.uncertain_ms
        )

    def _track_stuck(self, x, now_ms):
        """Update the stuck run with usable sample ``x``; returns ``self.stuck``."""
        ref = self._stuck_ref
        band = self.stuck_band
        if ref is None or x - ref > band or ref - x > band:
            self._stuck_ref = x
            self._stuck_ms0 = now_ms
            self.stuck = False
        elif ticks_diff(now_ms, self._stuck_ms0) > self.stuck_ms:
            self.stuck = True
        return self.stuck

    def update(self, raw, now_ms, fault=None):
        """Take one driver reading at ``now_ms``; returns the new quality."""
        self.raw = raw
        if self._start_ms is None:
            self._start_ms = now_ms
        if fault:
            if fault == FAULT_STARTING and self.starting:
                return self.check(now_ms)
            self._set_bad(fault)
            return QUALITY_BAD
        if not is_finite_number(raw):
            self._set_bad(REASON_NAN)
            return QUALITY_BAD
        cal = self.calibration
        if not cal.raw_ok(raw):
            self._set_bad(cal.bad_reason(raw))
            return QUALITY_BAD
        x = cal.convert(raw)
        if (
            not is_finite_number(x)
            or (self.range_min is not None and x < self.range_min)
            or (self.range_max is not None and x > self.range_max)
        ):
            self._set_bad(REASON_OUT_OF_RANGE)
            return QUALITY_BAD
        if cal.raw_uncertain(raw):
            if self._uncertain_ms0 is None:
                self._uncertain_ms0 = now_ms
            elif self._uncertain_expired(now_ms):
                # Parked in a margin band: no longer a reading (value stays frozen).
                self._set_bad(REASON_UNCERTAIN)
                return QUALITY_BAD
            quality = QUALITY_UNCERTAIN
        else:
            self._uncertain_ms0 = None
            quality = QUALITY_GOOD
        if self.stuck_ms is not None and self._track_stuck(x, now_ms) and self.stuck_bad:
            self._set_bad(REASON_STUCK)
            return QUALITY_BAD

        if self._primed and self.filter_tau_ms > 0:
            dt = ticks_diff(now_ms, self.last_good_ms)
            if dt < 0:
                dt = 0
            y = self.value
            y += (x - y) * (dt / (self.filter_tau_ms + dt))
            # Rounding can overshoot the input by an ulp; keep the output within bounds.
            if (x >= self.value and y > x) or (x < self.value and y < x):
                y = x
            self.value = y
        else:
            self.value = x
        self.unfiltered = x
        self._primed = True
        self.last_good_ms = now_ms
        self.quality = quality
        self.bad_reason = None
        return quality

    def check(self, now_ms):
        """Time limits: BAD "stale" when no usable sample for more than ``stale_ms``
        (counted from the first reading while the channel is still starting), BAD
        "uncertain" when UNCERTAIN for more than ``uncertain_ms``."""
        if self.quality == QUALITY_BAD:
            return self.quality
        if self.quality == QUALITY_UNCERTAIN and self._uncertain_expired(now_ms):
            self._set_bad(REASON_UNCERTAIN)
            return QUALITY_BAD
        if self.stale_ms is None:
            return self.quality
        since = self.last_good_ms
        if since is None:
            if self._start_ms is None:
                self._start_ms = now_ms
            since = self._start_ms
        if ticks_diff(now_ms, since) > self.stale_ms:
            self._set_bad(REASON_STALE)
        return self.quality

    def __repr__(self):
        return _repr(self)


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


class Unfiltered:
    """A read-only view of a channel whose ``value`` is the channel's ``unfiltered``
    sample, for an interlock that must act on the raw step rather than wait for the
    low-pass filter (``unfiltered = true`` in the board config).  Quality, bad reason
    and name are the channel's."""

    def __init__(self, channel):
        self.channel = channel
        self.name = channel.name

    @property
    def value(self):
        return self.channel.unfiltered

    @property
    def quality(self):
        return self.channel.quality

    @property
    def bad_reason(self):
        return self.channel.bad_reason

    def __repr__(self):
        return "<Unfiltered {}>".format(_repr(self.channel))
