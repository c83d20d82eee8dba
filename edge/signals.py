"""Signal conditioning: raw driver readings -> engineering values with a quality code.

Pieces:

* Calibrations turn one raw reading into an engineering value.  Each has
  ``convert(raw)``, ``raw_ok(raw)`` (physically plausible at all), ``bad_reason(raw)``
  (why not, as a short code) and ``raw_uncertain(raw)`` (plausible but outside the
  trustworthy band).  ``Linear`` and ``Current4to20`` (NAMUR NE43) here; ``Table``
  (piecewise linear, e.g. thermocouple mV -> degC) in ``edge.table`` and ``Pt100``
  (Callendar-Van Dusen) in ``edge.rtd``.
* ``SensorChannel`` validates, range-checks, filters and timestamps one input.
* ``Redundant1oo2`` (``edge.voter``) derives one value from two channels measuring the
  same thing.

The table, PT100 and 1oo2 parts live in their own modules so that only a board whose
config uses them loads them (``edge.build`` imports them lazily; every module a board
imports costs RAM, see docs/deploy.md, "Memory").

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
