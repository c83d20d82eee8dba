"""PID controller for module loops (MicroPython and CPython).

After Brett Beauregard's "Improving the Beginner's PID" series and simple-pid, with the
clock passed in as wrap-safe millisecond ticks (see ``edge/clock.py``):

* derivative on measurement: a setpoint step moves only the P term, no derivative kick;
* the integral is kept in output units (``sum(ki * e * dt)``, gain folded in) and clamped
  to ``[out_min, out_max]``, so changing ``ki`` does not jump the output and a saturated
  loop recovers as soon as the error changes sign instead of first unwinding;
* output clamped to ``[out_min, out_max]``;
* bumpless manual -> auto: the integral is preloaded so the first auto output equals the
  manual output (given the last measurement);
* optional setpoint ramp: the working ``setpoint`` moves toward the requested ``target`` at
  most ``ramp_rate`` units per second.  With a ramp, the working setpoint starts from the
  process value whenever the controller (re)starts (construction, ``reset()``, manual ->
  auto), so a start-up never steps the setpoint;
* ``reverse=True`` for loops where more output lowers the measurement (cooling);
* optional first-order filter on the derivative (``d_filter_ms``, the filter's time
  constant): the D term is ``-kd * dPV/dt`` low-pass filtered, ``D += a * (Draw - D)``
  with ``a = dt / (d_filter_ms + dt)``, so sensor noise, which the raw difference
  quotient amplifies by ``kd / dt``, reaches the output attenuated while the slow slope
  of a real temperature change passes (Astrom & Hagglund's ``Td / N`` filter);
* setpoint weighting of the P term (``sp_weight`` = b, 0..1), the ISA form
  ``P = kp * (b * sp - pv)``: a setpoint change moves the output by only ``b`` of what
  the plain P would, and the integral brings the loop the rest of the way, so a step
  overshoots less, while disturbances (which move ``pv``) meet the full P.  Kept in
  incremental form: ``P = kp * (sp - pv)`` as before and each move ``dsp`` of the working
  setpoint between two updates takes ``kp * (1 - b) * dsp`` off the integral.  That is
  the ISA form exactly (its integral minus ``kp * (1 - b) * sp``) except that the
  integral stays inside the output limits whatever the setpoint, where the ISA form's
  must hold ``kp * (1 - b) * sp`` more.  On a ramp at rate ``r`` it pulls the integral
  down by ``kp * (1 - b) * r`` per second, which is what stops the integral winding up
  while it follows the ramp and overshooting where the ramp ends.  A move across a
  restart (no interval) is not weighted.  b = 1 (default) is the plain PID.

Relay test (commissioning, ``host/tune.py``): ``start_relay`` replaces the PID by a relay
with hysteresis around the working setpoint until ``stop_relay``, ``set_manual`` or
``reset`` (so a trip that pins the output ends it): ``bias + amplitude`` while the
measurement is below ``setpoint + hysteresis`` since it last was below ``setpoint -
hysteresis``, else ``bias - amplitude``.  At or above ``ceiling`` the relay gives
``out_min`` and stays there (``relay_state`` RELAY_CEILING) until stopped: the board's own
bound on the test.  Each completed cycle (one up-switch to the next) sets
``relay_cycles``, ``relay_period_ms`` and ``relay_amplitude`` (half the peak-to-peak of the
measurement over that cycle).  ``stop_relay`` resumes the PID bumplessly from the relay's
bias.  Relay mode needs auto mode (the module running).

Gains are per second: ``ki`` in 1/s, ``kd`` in s; ``dt`` is ``ticks_diff`` of successive
updates.  Timing rules of :meth:`PID.update`:

* the first update (and the first after ``reset()``, a bad measurement or a restart) has
  no I or D contribution and does not advance the ramp: there is no interval yet;
* ``dt == 0``, or ``dt < sample_ms`` when ``sample_ms`` is set, returns the previous
  output unchanged (no time has passed worth integrating);
* ``dt < 0`` (ticks more than half a period apart) or ``dt > max gap`` is a *restart*:
  the update behaves like the first one, keeping the integral.  A loop that stalled
  for minutes must not integrate the whole stall in one step nor differentiate across it.
  The max gap is ``GAP_FACTOR * sample_ms``, or ``DEFAULT_MAX_GAP_MS`` without sample_ms.

Bad values: a non-finite (NaN/inf) or missing (None) measurement makes ``update`` return
``None`` = "no valid output, the caller applies the module's safe value"; the integral is
held and the next valid update is a restart.  (In manual mode the operator's output is
returned whatever the measurement.)  Setpoint, tuning and manual-output changes outside
their range are refused with ``RESULT_OUT_OF_RANGE`` and change nothing; they are never
silently clamped.

``update`` allocates nothing but float temporaries: no containers, no formatting.
"""

import math

from edge.clock import ticks_diff
from protocol.constants import RESULT_OK, RESULT_OUT_OF_RANGE

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


DEFAULT_MAX_GAP_MS = const(10000)
RELAY_OFF = const(0)
RELAY_RUNNING = const(1)
RELAY_CEILING = const(2)
GAP_FACTOR = const(10)


def _finite(x):
    """True for a finite number; False for NaN, inf, None or anything not a number."""
    try:
        return math.isfinite(x)
    except TypeError:
        return False


def _clamp(x, lo, hi):
    if x > hi:
        return hi
    if x < lo:
        return lo
    return x


def _require_finite(name, value):
    if not _finite(value):
        raise ValueError("{} must be a finite number, got {!r}".format(name, value))


def _gains_valid(kp, ki, kd):
    # Negative gains are refused (as in Beauregard's SetTunings): direction is `reverse`.
    return _finite(kp) and _finite(ki) and _finite(kd) and kp >= 0 and ki >= 0 and kd >= 0


class PID:
    """PID loop; see the module docstring for the rules.

    Public read-only state: ``target`` (requested setpoint), ``setpoint`` (working
    setpoint, differs from target only while ramping), ``auto``, ``output`` (last output,
    None before the first update), ``p_term``, ``integral``, ``d_term`` (the filtered D
    term: also the filter's state), ``kp/ki/kd``, ``d_filter_ms``, ``sp_weight``.
    """

    def __init__(
        self,
        kp,
        ki,
        kd,
        out_min,
        out_max,
        setpoint_min,
        setpoint_max,
        ramp_rate=None,
        reverse=False,
        sample_ms=None,
        setpoint=None,
        d_filter_ms=None,
        sp_weight=1.0,
    ):
        _require_finite("out_min", out_min)
        _require_finite("out_max", out_max)
        if not out_min < out_max:
            raise ValueError("out_min ({!r}) must be below out_max ({!r})".format(out_min, out_max))
        _require_finite("setpoint_min", setpoint_min)
        _require_finite("setpoint_max", setpoint_max)
        if not setpoint_min <= setpoint_max:
            raise ValueError(
                "setpoint_min ({!r}) must not exceed setpoint_max ({!r})".format(
                    setpoint_min, setpoint_max
                )
            )
        if ramp_rate is not None and not (_finite(ramp_rate) and ramp_rate > 0):
            raise ValueError(
                "ramp_rate must be None or a finite number > 0 units/s, got {!r}".format(ramp_rate)
            )
        if sample_ms is not None and not (type(sample_ms) is int and sample_ms > 0):
            raise ValueError("sample_ms must be None or an int > 0, got {!r}".format(sample_ms))
        if d_filter_ms is not None and not (_finite(d_filter_ms) and d_filter_ms >= 0):
            raise ValueError(
                "d_filter_ms must be None or a finite number >= 0, got {!r}".format(d_filter_ms)
            )
        if not (_finite(sp_weight) and 0 <= sp_weight <= 1):
            raise ValueError("sp_weight must be a number in [0, 1], got {!r}".format(sp_weight))
        if not _gains_valid(kp, ki, kd):
            raise ValueError(
                "gains kp, ki, kd must be finite and >= 0 (use reverse=True for a "
                "reverse-acting loop), got {!r}, {!r}, {!r}".format(kp, ki, kd)
            )
        if setpoint is None:
            setpoint = setpoint_min
        elif not (_finite(setpoint) and setpoint_min <= setpoint <= setpoint_max):
            raise ValueError(
                "setpoint {!r} outside [{!r}, {!r}]".format(setpoint, setpoint_min, setpoint_max)
            )

        self.out_min = float(out_min)
        self.out_max = float(out_max)
        self.setpoint_min = float(setpoint_min)
        self.setpoint_max = float(setpoint_max)
        self.ramp_rate = None if ramp_rate is None else float(ramp_rate)
        self.reverse = bool(reverse)
        self.sample_ms = sample_ms
        self.max_gap_ms = DEFAULT_MAX_GAP_MS if sample_ms is None else GAP_FACTOR * sample_ms
        self.d_filter_ms = d_filter_ms
        self._d_tau = 0.0 if d_filter_ms is None else d_filter_ms / 1000.0  # s
        self.sp_weight = float(sp_weight)
        self.target = float(setpoint)
        self.auto = True
        self._manual_output = 0.0
        self.relay_state = RELAY_OFF
        self.relay_cycles = 0
        self.relay_period_ms = 0
        self.relay_amplitude = 0.0
        self._apply_tunings(kp, ki, kd)
        self.reset()

    # -- configuration -------------------------------------------------------------

    def _apply_tunings(self, kp, ki, kd):
        self.kp = float(kp)
        self.ki = float(ki)
        self.kd = float(kd)
        sign = -1.0 if self.reverse else 1.0
        self._kp = sign * self.kp
        self._ki = sign * self.ki
        self._kd = sign * self.kd
        self._kp_w = self._kp * (1.0 - self.sp_weight)  # setpoint weighting, per unit of dsp

    def set_tunings(self, kp, ki, kd):
        """Change gains without a bump from the integral; RESULT_OUT_OF_RANGE if any gain
        is negative or not finite (nothing changes then).

        Only the integral is bumpless: a kp change still moves the P term at once.
        """
        if not _gains_valid(kp, ki, kd):
            return RESULT_OUT_OF_RANGE
        self._apply_tunings(kp, ki, kd)
        return RESULT_OK

    def set_setpoint(self, sp):
        """Request a new setpoint; RESULT_OUT_OF_RANGE (state unchanged) outside
        ``[setpoint_min, setpoint_max]`` or not finite.  With a ramp only ``target`` moves
        now; the working ``setpoint`` follows in ``update``."""
        if not _finite(sp) or sp < self.setpoint_min or sp > self.setpoint_max:
            return RESULT_OUT_OF_RANGE
        self.target = float(sp)
        if self.ramp_rate is None:
            self.setpoint = self.target
        return RESULT_OK

    # -- modes -----------------------------------------------------------------------

    def set_manual(self, output=None):
        """Switch to (or stay in) manual with a fixed output.

        ``output=None`` holds the current output (or the manual output already set).
        RESULT_OUT_OF_RANGE, nothing changed, if the output is outside the output limits.
        """
        if output is None:
            if self.auto:
                output = self.output if self.output is not None else self._rest_output()
            else:
                output = self._manual_output
        elif not _finite(output) or output < self.out_min or output > self.out_max:
            return RESULT_OUT_OF_RANGE
        self.relay_state = RELAY_OFF  # a trip's pin ends a relay test
        self.auto = False
        self._manual_output = float(output)
        self.output = self._manual_output
        return RESULT_OK

    def set_auto(self, now_ms):
        """Switch manual -> auto bumplessly at ``now_ms`` (no-op when already auto).

        The integral is preloaded with ``manual_output - P(last measurement)`` (clamped
        to the output limits), so the first auto output continues from the manual one;
        without a measurement seen in manual the integral is the manual output and the
        next update is a restart (with a ramp, starting the working setpoint there).
        """
        if self.auto:
            return RESULT_OK
        meas = self._last_meas
        if meas is not None and self.ramp_rate is not None:
            self.setpoint = _clamp(meas, self.setpoint_min, self.setpoint_max)
        preload = self._manual_output
        if meas is not None:
            preload = preload - self._kp * (self.setpoint - meas)
        self.integral = _clamp(preload, self.out_min, self.out_max)
        self.p_term = 0.0
        self.d_term = 0.0
        self._last_ms = None if meas is None else now_ms
        self._last_sp = self.setpoint
        self._track_pv = meas is None and self.ramp_rate is not None
        self.output = self._manual_output
        self.auto = True
        return RESULT_OK

    # -- relay test --------------------------------------------------------------------

    def start_relay(self, amplitude, hysteresis, ceiling, bias=None, now_ms=0):
        """Start a relay test around the working setpoint; RESULT_OUT_OF_RANGE (nothing
        changes) in manual, or when ``bias +- amplitude`` is not inside the output limits,
        the hysteresis is negative or the ceiling not above ``setpoint + hysteresis``.
        ``bias`` None: the integral (what holds the setpoint at steady state)."""
        if bias is None:
            bias = self.integral
        if not (_finite(amplitude) and _finite(hysteresis) and _finite(ceiling)):
            return RESULT_OUT_OF_RANGE
        if not _finite(bias) or not self.auto or amplitude <= 0 or hysteresis < 0:
            return RESULT_OUT_OF_RANGE
        if bias - amplitude < self.out_min or bias + amplitude > self.out_max:
            return RESULT_OUT_OF_RANGE
        if ceiling <= self.target + hysteresis:
            return RESULT_OUT_OF_RANGE
        self._relay_hi = float(bias + amplitude)
        self._relay_lo = float(bias - amplitude)
        self._relay_bias = float(bias)
        self._relay_hyst = float(hysteresis)
        self._relay_ceiling = float(ceiling)
        self._relay_up = True
        self._relay_up_ms = None
        self._relay_max = -math.inf
        self._relay_min = math.inf
        self.relay_cycles = 0
        self.relay_period_ms = 0
        self.relay_amplitude = 0.0
        self.relay_state = RELAY_RUNNING
        return RESULT_OK

    def stop_relay(self, now_ms):
        """End a relay test: the PID takes over at ``now_ms`` continuing from the bias."""
        if self.relay_state == RELAY_OFF:
            return RESULT_OK
        self.relay_state = RELAY_OFF
        self.integral = _clamp(self._relay_bias, self.out_min, self.out_max)
        self.d_term = 0.0
        self._last_ms = None if self._last_meas is None else now_ms
        self._last_sp = self.setpoint
        return RESULT_OK

    def _relay(self, pv, now_ms):
        # Not a hot path: only while commissioning.  Floats only, no containers.
        if pv >= self._relay_ceiling or self.relay_state == RELAY_CEILING:
            self.relay_state = RELAY_CEILING
            return self.out_min
        sp = self.setpoint
        if pv > self._relay_max:
            self._relay_max = pv
        if pv < self._relay_min:
            self._relay_min = pv
        if self._relay_up:
            if pv > sp + self._relay_hyst:
                self._relay_up = False
        elif pv < sp - self._relay_hyst:
            self._relay_up = True
            if self._relay_up_ms is not None:
                self.relay_cycles += 1
                self.relay_period_ms = ticks_diff(now_ms, self._relay_up_ms)
                self.relay_amplitude = (self._relay_max - self._relay_min) / 2.0
            self._relay_up_ms = now_ms
            self._relay_max = pv
            self._relay_min = pv
        return self._relay_hi if self._relay_up else self._relay_lo

    def _rest_output(self):
        return _clamp(0.0, self.out_min, self.out_max)

    def reset(self):
        """Forget the dynamic state (integral, last measurement and time, output); keep
        mode, gains and target.  The working setpoint goes to the target, or with a ramp
        restarts from the next measurement."""
        self.relay_state = RELAY_OFF
        self.integral = self._rest_output()
        self.p_term = 0.0
        self.d_term = 0.0
        self._last_meas = None
        self._last_ms = None
        self.setpoint = self.target
        self._last_sp = self.setpoint  # the working setpoint of the last update
        self._track_pv = self.ramp_rate is not None
        self.output = None if self.auto else self._manual_output

    # -- the loop --------------------------------------------------------------------

    def update(self, measurement, now_ms):
        """One control step at tick ``now_ms``; returns the output, or None when the
        measurement is not a finite number (caller applies its safe output)."""
        if not self.auto:
            # Remember the measurement so that set_auto() can be bumpless.
            self._last_meas = measurement if _finite(measurement) else None
            return self._manual_output
        if not _finite(measurement):
            self._last_ms = None
            return None
        if self.relay_state:  # RELAY_RUNNING or RELAY_CEILING (a const is a global on CPython)
            self._last_meas = measurement
            self.output = self._relay(measurement, now_ms)
            return self.output

        last_ms = self._last_ms
        restart = True
        dt_ms = 0
        if last_ms is not None:
            dt_ms = ticks_diff(now_ms, last_ms)
            if dt_ms >= 0:
                if dt_ms == 0 or (self.sample_ms is not None and dt_ms < self.sample_ms):
                    return self.output
                restart = dt_ms > self.max_gap_ms
            # dt_ms < 0: more than half a tick period passed (or a caller bug): restart.

        sp = self.setpoint
        if self._track_pv:
            sp = _clamp(measurement, self.setpoint_min, self.setpoint_max)
        elif not restart and self.ramp_rate is not None and sp != self.target:
            step = self.ramp_rate * dt_ms / 1000.0
            target = self.target
            if target > sp:
                sp = sp + step
                if sp > target:
                    sp = target
            else:
                sp = sp - step
                if sp < target:
                    sp = target

        error = sp - measurement
        p = self._kp * error
        integral = self.integral
        d = 0.0
        if not restart:
            dt = dt_ms / 1000.0
            integral = integral + self._ki * error * dt - self._kp_w * (sp - self._last_sp)
            if integral != integral:  # NaN only from overflowing inputs (0 * inf)
                integral = self.integral
            integral = _clamp(integral, self.out_min, self.out_max)
            d = -self._kd * (measurement - self._last_meas) / dt
            tau = self._d_tau
            if tau > 0.0:  # first-order filter; d_term is its state (0 after a restart)
                d = self.d_term + dt / (tau + dt) * (d - self.d_term)

        out = p + integral + d
        if out != out:  # inf - inf from absurd magnitudes: no valid output this step
            self._last_ms = None
            return None
        out = _clamp(out, self.out_min, self.out_max)

        self.setpoint = sp
        self._last_sp = sp
        self._track_pv = False
        self.integral = integral
        self.p_term = p
        self.d_term = d
        self._last_meas = measurement
        self._last_ms = now_ms
        self.output = out
        return out


def relay_command(pid, config, now_ms):
    """The ``configure`` op's relay keys for one loop; returns ``(result, reason)``.

    ``relay = "start"`` with ``relay_amplitude``, ``relay_hysteresis``, ``relay_ceiling``
    (and optional ``relay_bias``) starts a test, ``"stop"`` ends it, ``"status"`` only
    reports.  The reason of every OK reads ``relay STATE cycles N period_ms P amplitude
    A output O bias B`` (STATE off, running or ceiling; B the relay's bias, or while
    off the integral, what a relay would centre on), which ``host/tune.py`` parses.
    """
    what = config.get("relay")
    if what == "start":
        for key in config:
            if key not in ("loop", "relay", "relay_amplitude", "relay_hysteresis"):
                if key not in ("relay_ceiling", "relay_bias"):
                    return RESULT_OUT_OF_RANGE, "relay key {} not supported".format(key)
        result = pid.start_relay(
            config.get("relay_amplitude"),
            config.get("relay_hysteresis", 0.0),
            config.get("relay_ceiling"),
            config.get("relay_bias"),
            now_ms,
        )
        if result != RESULT_OK:
            return result, "relay refused: module not running, or amplitude/ceiling out of range"
    elif what == "stop":
        pid.stop_relay(now_ms)
    elif what != "status":
        return RESULT_OUT_OF_RANGE, "relay must be start, stop or status"
    bias = pid._relay_bias if pid.relay_state != RELAY_OFF else pid.integral
    out = pid.output
    return (
        RESULT_OK,
        "relay {} cycles {} period_ms {} amplitude {:.5g} output {} bias {:.5g}".format(
            ("off", "running", "ceiling")[pid.relay_state],
            pid.relay_cycles,
            pid.relay_period_ms,
            pid.relay_amplitude,
            "None" if out is None else "{:.5g}".format(out),
            bias,
        ),
    )
