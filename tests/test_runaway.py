"""Heater verification against simulated heating curves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import TICKS_PERIOD, ticks_add, ticks_diff
from edge.runaway import HeaterVerifier

AMBIENT = 25.0


class Plant:
    """First-order thermal model: dT/dt = (ambient + gain * power - T) / tau.

    At full power it settles at ambient + gain (225 degC), 3.3 degC/s from cold.
    """

    def __init__(self, gain=200.0, tau_s=60.0, temp=AMBIENT):
        self.gain = gain
        self.tau_s = tau_s
        self.temp = temp

    def step(self, power, dt_s):
        self.temp += (AMBIENT + self.gain * power - self.temp) * dt_s / self.tau_s


def p_control(target, temp, kp=0.2):
    if target is None:
        return 0.0
    return min(1.0, max(0.0, kp * (target - temp) + 0.6 * (target - AMBIENT) / 200.0))


def run(
    hv,
    plant,
    target,
    seconds,
    *,
    t0=0,
    step_ms=500,
    reading=None,
    power_override=None,
    trace=None,
):
    """Closed loop for ``seconds``; returns (fault, t_ms) at the first fault or (None, t)."""
    t = t0
    for _ in range(int(seconds * 1000 / step_ms)):
        measured = plant.temp if reading is None else reading(t, plant.temp)
        power = p_control(target, measured)
        fault = hv.update(target, measured, power, t)
        if fault:
            return fault, t
        actual = power if power_override is None else power_override(t, power)
        plant.step(actual, step_ms / 1000.0)
        if trace is not None:
            trace.append((t, measured, power))
        t = ticks_add(t, step_ms)
    return None, t


def verifier(**kw):
    kw.setdefault("hysteresis", 5.0)
    kw.setdefault("max_error", 120.0)
    kw.setdefault("heating_gain", 2.0)
    kw.setdefault("check_gain_time_ms", 20_000)
    return HeaterVerifier(**kw)


def test_normal_warm_up_hold_and_cool_down_pass():
    hv = verifier()
    plant = Plant()
    trace = []
    assert run(hv, plant, 150.0, 1200, trace=trace)[0] is None
    assert abs(plant.temp - 150.0) < 5.0
    assert max(m for _, m, _ in trace) > 145.0
    # Setpoint step up, then heater disabled: cooling is fine.
    assert run(hv, plant, 180.0, 600, t0=1_200_000)[0] is None
    assert run(hv, plant, None, 600, t0=1_800_000)[0] is None
    assert hv.fault is None and hv.value is None


def test_warm_up_across_tick_wrap():
    hv = verifier()
    assert run(hv, Plant(), 150.0, 900, t0=TICKS_PERIOD - 60_000)[0] is None


def test_disconnected_heater_trips_within_check_time():
    hv = verifier()
    plant = Plant()
    fault, t = run(hv, plant, 150.0, 120, power_override=lambda t, p: 0.0)
    assert fault == "heater_not_heating"
    assert t == 20_000  # first update with check_gain_time elapsed
    assert hv.update(150.0, 25.0, 1.0, t + 500) == "heater_not_heating"  # latched


def test_weak_heater_that_still_gains_is_accepted():
    """Slow but steady progress (>= heating_gain per window) is not a fault."""
    hv = verifier()
    plant = Plant(gain=100.0, tau_s=400.0)  # weak: 0.25 degC/s from cold, ~0.18 near 55
    fault, _ = run(hv, plant, 60.0, 1500)
    assert fault is None


def test_thermocouple_fallen_out_during_warm_up():
    hv = verifier()
    plant = Plant()
    # After 15 s the probe sits in air: reads ambient while the controller runs flat out.
    reading = lambda t, temp: temp if t < 15_000 else AMBIENT + 0.3  # noqa: E731
    fault, t = run(hv, plant, 150.0, 120, reading=reading)
    assert fault == "heater_not_heating"
    assert 15_000 < t <= 15_000 + 20_000


def test_thermocouple_fallen_out_while_holding():
    hv = verifier()
    plant = Plant()
    assert run(hv, plant, 150.0, 600)[0] is None
    reading = lambda t, temp: AMBIENT  # noqa: E731
    fault, t = run(hv, plant, 150.0, 60, t0=600_000, reading=reading)
    # Error grows by (145 - 25) = 120 degC*s per second: max_error in about a second.
    assert fault == "temperature_runaway"
    assert t - 600_000 <= 1500


def test_held_temperature_drop_trips():
    hv = verifier()
    plant = Plant()
    assert run(hv, plant, 150.0, 600)[0] is None
    # Half the heating elements fail: full power now only reaches ~125 degC.
    trace = []
    fault, t = run(
        hv, plant, 150.0, 600, t0=600_000, power_override=lambda t, p: p * 0.5, trace=trace
    )
    assert fault == "temperature_runaway"
    below = [tt for tt, m, _ in trace if m < 145.0]
    assert below, "the fault must come after the temperature left the band"
    # 120 degC*s accumulated after leaving the band, while only a few degC below it.
    assert 5_000 <= ticks_diff(t, below[0]) <= 60_000


def test_no_rise_at_partial_power_is_runaway_not_not_heating():
    """The PID is not pushing, so there is no proof of a dead heater; but the
    temperature stays far from target, so the accumulated error trips."""
    hv = verifier()
    fault = None
    t = 0
    while fault is None and t < 60_000:
        fault = hv.update(150.0, 25.0, 0.5, t)
        t += 500
    assert fault == "temperature_runaway"
    assert t - 500 == 20_000  # at the end of the gain window, error long past max_error


def test_approach_restarts_on_new_target_and_progress_resets_error():
    hv = verifier(check_gain_time_ms=10_000)
    temp = 25.0
    t = 0
    for _ in range(40):  # 1 degC every 4 s: 2 degC per 8 s < 10 s window
        assert hv.update(100.0, temp, 1.0, t) is None
        temp += 0.125
        t += 500
    assert hv.approaching
    # Progress every 8 s resets the error, although 20 s below the band would exceed it.
    assert hv.error <= (100.0 - 5.0 - 25.0) * 8.0

    slow = verifier(check_gain_time_ms=10_000)  # 1 degC per 8 s: too slow
    temp = 25.0
    t = 0
    fault = None
    while fault is None:
        fault = slow.update(100.0, temp, 1.0, t)
        temp += 0.0625
        t += 500
    assert (fault, t - 500) == ("heater_not_heating", 10_000)


def test_goal_tracks_an_initial_dip():
    """Cold feed right after the target step: the first goal follows the dip down."""
    hv = verifier(check_gain_time_ms=10_000)
    temps = [60.0, 58.0, 56.0, 55.0] + [55.0 + 0.3 * i for i in range(1, 30)]
    t = 0
    for temp in temps:
        assert hv.update(120.0, temp, 1.0, t) is None, (t, temp)
        t += 1000


def test_uncontrolled_heating_with_heater_off():
    hv = verifier()
    temp = 80.0
    t = 0
    fault = None
    while fault is None and t < 120_000:
        fault = hv.update(None, temp, 0.0, t)  # exotherm: +0.5 degC/s, heater off
        temp += 0.25
        t += 500
    assert fault == "uncontrolled_heating"
    assert temp - 0.25 > 90.0 and temp - 0.25 <= 90.5


def test_uncontrolled_rise_measured_from_lowest_reading():
    hv = verifier()
    t = 0
    for temp in [100.0, 95.0, 90.0, 88.0, 95.0, 98.0]:  # cooled, then rises 10 from 88
        assert hv.update(100.0, temp, 0.0, t) is None
        t += 1000
    assert hv.update(100.0, 98.1, 0.0, t) == "uncontrolled_heating"


def test_overshoot_after_switch_off_within_margin_passes():
    hv = verifier()
    t = 0
    for temp in [148.0, 150.0, 152.0, 154.0, 155.0, 155.5, 155.0, 153.0, 151.0]:
        assert hv.update(150.0, temp, 0.0, t) is None
        t += 1000
    # Switching the heater back on forgets the off-baseline.
    assert hv.update(150.0, 149.0, 0.4, t) is None
    assert hv.update(150.0, 149.0, 0.0, t + 1000) is None


def test_bad_temperature_is_skipped_and_reset_clears():
    hv = verifier()
    assert hv.update(150.0, float("nan"), 1.0, 0) is None
    assert hv.update(150.0, None, 1.0, 0) is None
    assert hv.update(None, 30.0, 0.0, 0) is None
    assert hv.update(None, 41.0, 0.0, 1000) == "uncontrolled_heating"
    assert hv.value == "uncontrolled_heating"
    hv.reset()
    assert hv.fault is None and hv.error == 0.0
    assert hv.update(None, 41.0, 0.0, 2000) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hysteresis": -1}, "hysteresis must be a finite number >= 0"),
        ({"max_error": 0}, "max_error must be a finite number > 0"),
        ({"heating_gain": float("nan")}, "heating_gain must be a finite number > 0"),
        ({"check_gain_time_ms": 0}, "check_gain_time_ms must be a finite number > 0"),
        ({"full_power": 1.5}, r"full_power must be in \(0, 1\]"),
        ({"off_level": 0.95}, r"off_level must be in \[0, full_power=0.9\)"),
    ],
)
def test_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HeaterVerifier(**kwargs)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-5.0, 5.0),  # offset from target, inside +-hysteresis
            st.floats(0.0, 1.0),  # heater output
            st.integers(1, 5000),  # dt ms
        ),
        min_size=1,
        max_size=80,
    ),
    st.floats(-50.0, 300.0),
    st.integers(0, TICKS_PERIOD - 1),
)
def test_holding_within_hysteresis_never_trips(seq, target, t0):
    hv = verifier()
    t = t0
    for offset, power, dt in seq:
        t = ticks_add(t, dt)
        assert hv.update(target, target + offset, power, t) is None


# -- when may a reset clear a fault (issue 10 item 5) -----------------------------------------


def _trip_uncontrolled(hv, temp=80.0, t=0):
    """Heater off, temperature climbing 0.5 degC/s until uncontrolled_heating."""
    while hv.update(None, temp, 0.0, t) is None:
        temp += 0.25
        t += 500
        assert t < 120_000
    return temp, t


def test_uncontrolled_heating_reset_refused_until_cooled_a_hysteresis_below_its_peak():
    """A reset used to clear uncontrolled_heating at once, even while the temperature
    still climbed with the heater off; each reset then re-armed the rise check from the
    current (higher) temperature: another ``uncontrolled_rise`` per reset."""
    hv = verifier(hysteresis=5.0)
    temp, t = _trip_uncontrolled(hv)
    assert hv.reset_refusal(t) is not None
    for _ in range(20):  # still rising after the trip
        temp += 0.25
        t += 500
        assert hv.update(None, temp, 0.0, t) == "uncontrolled_heating"
    peak = temp
    why = hv.reset_refusal(t)
    assert why is not None and "uncontrolled_heating" in why
    assert f"{peak - 5.0:.1f}" in why  # names where it clears
    hv.update(None, peak - 4.9, 0.0, t + 500)  # cooling, but not a hysteresis yet
    assert hv.reset_refusal(t + 500) is not None
    hv.update(None, peak - 5.0, 0.0, t + 1000)
    assert hv.reset_refusal(t + 1000) is None
    hv.update(None, float("nan"), 0.0, t + 1500)  # reading lost: cannot be shown
    assert hv.reset_refusal(t + 1500) is not None
    hv.update(None, peak + 1.0, 0.0, t + 2000)  # and rising again: refused again
    assert hv.reset_refusal(t + 2000) is not None


def test_uncontrolled_heating_with_zero_hysteresis_still_needs_a_fall():
    hv = verifier(hysteresis=0.0)
    temp, t = _trip_uncontrolled(hv)
    hv.update(None, temp, 0.0, t + 500)  # level at the peak: not shown to be over
    assert hv.reset_refusal(t + 500) is not None
    hv.update(None, temp - 0.01, 0.0, t + 1000)
    assert hv.reset_refusal(t + 1000) is None


@pytest.mark.parametrize("t0", [0, TICKS_PERIOD - 5_000])
def test_not_heating_reset_refused_until_a_check_window_after_the_trip(t0):
    hv = verifier(check_gain_time_ms=20_000)
    fault, t_trip = run(hv, Plant(), 150.0, 60, t0=t0, power_override=lambda t, p: 0.0)
    assert fault == "heater_not_heating"
    assert hv.reset_refusal(t_trip) is not None
    late = ticks_add(t_trip, 19_999)
    why = hv.reset_refusal(late)
    assert why is not None and "heater_not_heating" in why and "20000 ms" in why
    assert hv.reset_refusal(ticks_add(t_trip, 20_000)) is None


def test_no_fault_needs_no_waiting():
    assert verifier().reset_refusal(0) is None


def test_a_check_window_once_passed_stays_passed_across_the_tick_wrap():
    """A fault latched for longer than half the tick period (days on a board) must not
    become unresettable because the wrap-safe difference turned negative."""
    hv = verifier(check_gain_time_ms=20_000)
    fault, t_trip = run(hv, Plant(), 150.0, 60, power_override=lambda t, p: 0.0)
    assert fault == "heater_not_heating"
    t = t_trip
    for _ in range(3):  # the verifier is updated every tick; here once per 1/4 period
        t = ticks_add(t, TICKS_PERIOD // 4 + 1)
        hv.update(None, 25.0, 0.0, t)
    assert ticks_diff(t, t_trip) < 0
    assert hv.reset_refusal(t) is None
