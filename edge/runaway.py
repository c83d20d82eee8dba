"""Heater verification: is the heater actually moving the temperature it claims to control?

Independent of the PID and of the interlock limits, in the manner of Klipper's
``verify_heater`` and Marlin's thermal-runaway protection.  It catches faults an
over-temperature limit never sees because the reading stays *low*: a disconnected or
burnt-out heater, a thermocouple that fell out of its well (reads ambient while the heater
runs flat out), a heater that can no longer hold its setpoint, and, the other way round, a
temperature that keeps rising with the heater off (stuck-on SSR, exotherm).

Checks, every ``update(target, temperature, heater_output, now_ms)``:

* Near target (temperature >= target - hysteresis) or no target (``target is None``):
  nothing is accumulated; the error resets while within +-hysteresis of the target.
* Below the band: error += (target - hysteresis - temperature) * dt, in degree-seconds
  (Klipper adds the same per 1 s check, so its ``max_error`` carries over unchanged).
  - A new target starts an *approach*: the temperature must rise by ``heating_gain``
    within ``check_gain_time_ms``; each such rise resets the error and restarts the
    window.  If the window runs out and the heater was at or above ``full_power`` for the
    whole window -> "heater_not_heating".  If it was not at full power the approach just
    ends (the PID chose not to push; that is not proof of a fault) and the error check
    below takes over.
  - Otherwise (holding, or the approach ended) error >= ``max_error`` ->
    "temperature_runaway" (e.g. the temperature fell away from a held setpoint).
* Heater off (output <= ``off_level``): the temperature may not rise more than
  ``uncontrolled_rise`` above the lowest reading since the heater went off ->
  "uncontrolled_heating".  The margin must exceed the normal overshoot after switch-off.

A fault latches: ``update`` keeps returning it (so the caller can keep the heater off)
until ``reset()``.  ``value`` mirrors ``fault``, so the verifier can feed an
``Interlock(..., condition="input_true")`` whose cause then persists until ``reset()``.

``reset_refusal(now_ms)`` says whether the cause can be taken as gone (None) or why not,
from what ``update`` kept seeing after the trip:

* "uncontrolled_heating": the temperature must have fallen at least ``hysteresis``
  (and at all, when that is 0) below its peak since the trip.  Whatever heated it
  (stuck SSR, exotherm) has then stopped, and a reset cannot buy another
  ``uncontrolled_rise`` while it still climbs.
* "heater_not_heating", "temperature_runaway": only heating again can tell whether the
  heater works, so the reset re-arms the checks, but not before ``check_gain_time_ms``
  since the trip: reset-and-start cycles keep a dead heater (or one heating a probe that
  fell out) switched off at least half of the time.

A None/NaN temperature is skipped (the sensor channel's BAD quality is the interlocks'
business).  Pass ``target=None`` when the loop is disabled: targets of 0 or below are real
setpoints here, unlike in Klipper.
"""

from edge.clock import ticks_add, ticks_diff

FAULT_NOT_HEATING = "heater_not_heating"
FAULT_RUNAWAY = "temperature_runaway"
FAULT_UNCONTROLLED = "uncontrolled_heating"
FAULTS = (FAULT_NOT_HEATING, FAULT_RUNAWAY, FAULT_UNCONTROLLED)


def _positive(field, value, allow_zero=False):
    ok = isinstance(value, (int, float)) and value - value == 0
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(
            "{} must be a finite number {} 0, got {!r}".format(
                field, ">=" if allow_zero else ">", value
            )
        )


def _fmt(x):
    return "?" if x is None else "{:.1f}".format(x)


class HeaterVerifier:
    def __init__(
        self,
        hysteresis=5.0,
        max_error=120.0,
        heating_gain=2.0,
        check_gain_time_ms=20000,
        full_power=0.9,
        off_level=0.0,
        uncontrolled_rise=10.0,
        name=None,
    ):
        _positive("hysteresis", hysteresis, allow_zero=True)
        _positive("max_error", max_error)
        _positive("heating_gain", heating_gain)
        _positive("check_gain_time_ms", check_gain_time_ms)
        _positive("uncontrolled_rise", uncontrolled_rise)
        if not (isinstance(full_power, (int, float)) and 0 < full_power <= 1):
            raise ValueError("full_power must be in (0, 1], got {!r}".format(full_power))
        if not (isinstance(off_level, (int, float)) and 0 <= off_level < full_power):
            raise ValueError(
                "off_level must be in [0, full_power={}), got {!r}".format(full_power, off_level)
            )
        self.name = name
        self.hysteresis = hysteresis
        self.max_error = max_error
        self.heating_gain = heating_gain
        self.check_gain_time_ms = check_gain_time_ms
        self.full_power = full_power
        self.off_level = off_level
        self.uncontrolled_rise = uncontrolled_rise
        self.reset()

    def reset(self):
        """Clear a latched fault and all tracking (the next target starts a new approach)."""
        self.fault = None
        self.error = 0.0
        self._last_ms = None
        self._last_target = None
        self._approaching = False
        self._starting = False
        self._goal_temp = 0.0
        self._goal_ms = 0
        self._full_throughout = False
        self._off_min = None
        self._fault_ms = 0
        self._waited = False  # check_gain_time_ms passed since the fault
        self._peak = None  # highest temperature since the fault
        self._temp = None  # latest temperature since the fault

    @property
    def value(self):
        return self.fault

    @property
    def approaching(self):
        return self._approaching

    def _trip(self, code, temperature, now_ms):
        self.fault = code
        self._fault_ms = now_ms
        self._peak = temperature
        self._temp = temperature
        return code

    def _track_after_fault(self, temperature, now_ms):
        # Latched, not counted on: ticks_diff turns negative after half a tick period.
        if not self._waited and ticks_diff(now_ms, self._fault_ms) >= self.check_gain_time_ms:
            self._waited = True
        if temperature is None or temperature - temperature != 0:
            self._temp = None  # unknown now: the cooling cannot be shown
            return
        self._temp = temperature
        if self._peak is None or temperature > self._peak:
            self._peak = temperature

    def reset_refusal(self, now_ms):
        """None when a reset may clear the fault (or there is none), else why not."""
        code = self.fault
        if code is None:
            return None
        if code == FAULT_UNCONTROLLED:
            t = self._temp
            peak = self._peak
            clear = peak - self.hysteresis if peak is not None else None
            if t is not None and t <= clear and t < peak:
                return None
            return "{}: {} now {} degC, peak {}; reset once it fell to {} degC".format(
                code, self.name, _fmt(t), _fmt(peak), _fmt(clear)
            )
        waited = ticks_diff(now_ms, self._fault_ms)
        if self._waited or waited >= self.check_gain_time_ms:
            return None
        return "{}: {} tripped {} ms ago; reset possible {} ms after the trip".format(
            code, self.name, waited, self.check_gain_time_ms
        )

    def _arm_gain_window(self, temperature, heater_output, now_ms):
        self._goal_temp = temperature + self.heating_gain
        self._goal_ms = ticks_add(now_ms, self.check_gain_time_ms)
        # Judged from the next update on: the output passed in now was computed before
        # the new target (the runtime verifies before it writes this tick's outputs).
        self._full_throughout = True

    def update(self, target, temperature, heater_output, now_ms):
        """One check; returns None or the (latched) fault code."""
        if self.fault is not None:
            self._track_after_fault(temperature, now_ms)
            return self.fault
        if temperature is None or temperature - temperature != 0:
            return None
        if self._last_ms is None:
            dt_s = 0.0
        else:
            dt = ticks_diff(now_ms, self._last_ms)
            dt_s = dt / 1000.0 if dt > 0 else 0.0
        self._last_ms = now_ms

        if heater_output <= self.off_level:
            if self._off_min is None or temperature < self._off_min:
                self._off_min = temperature
            elif temperature - self._off_min > self.uncontrolled_rise:
                return self._trip(FAULT_UNCONTROLLED, temperature, now_ms)
        else:
            self._off_min = None

        hyst = self.hysteresis
        if target is None or temperature >= target - hyst:
            self._approaching = False
            self._starting = False
            if target is None or temperature <= target + hyst:
                self.error = 0.0
            self._last_target = target
            return None

        self.error += (target - hyst - temperature) * dt_s
        if not self._approaching:
            if target != self._last_target:
                self._approaching = True
                self._starting = True
                self._arm_gain_window(temperature, heater_output, now_ms)
            elif self.error >= self.max_error:
                return self._trip(FAULT_RUNAWAY, temperature, now_ms)
        elif temperature >= self._goal_temp:
            # Progress: the heater is doing its job, start a fresh window from here.
            self._starting = False
            self.error = 0.0
            self._arm_gain_window(temperature, heater_output, now_ms)
        else:
            if heater_output < self.full_power:
                self._full_throughout = False
            if ticks_diff(now_ms, self._goal_ms) >= 0:
                self._approaching = False
                if self._full_throughout:
                    return self._trip(FAULT_NOT_HEATING, temperature, now_ms)
                if self.error >= self.max_error:
                    return self._trip(FAULT_RUNAWAY, temperature, now_ms)
            elif self._starting:
                # A dip right after the target change (cold feed, sensor lag) must not
                # make the first goal unreachable: track the goal down with the dip.
                g = temperature + self.heating_gain
                if g < self._goal_temp:
                    self._goal_temp = g
        self._last_target = target
        return None
