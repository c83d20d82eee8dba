"""Signal conditioning: calibrations, quality codes, filter, staleness, 1oo2 redundancy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import TICKS_PERIOD, ticks_add, ticks_wrap
from edge.rtd import Pt100, cvd_resistance
from edge.signals import (
    Calibration,
    Current4to20,
    Linear,
    SensorChannel,
    Unfiltered,
    is_finite_number,
)
from edge.table import Table
from edge.voter import Redundant1oo2
from protocol.constants import QUALITY_BAD, QUALITY_GOOD, QUALITY_UNCERTAIN

NAN = float("nan")


# ------------------------------------------------------------------------ calibrations


def test_is_finite_number():
    assert is_finite_number(0) and is_finite_number(-3.5)
    assert not is_finite_number(None)
    assert not is_finite_number(NAN)
    assert not is_finite_number(float("inf")) and not is_finite_number(float("-inf"))


def test_linear_convert_and_bounds():
    cal = Linear(0.1, -5.0, 0, 4095)
    assert cal.convert(1000) == pytest.approx(95.0)
    assert cal.raw_ok(0) and cal.raw_ok(4095)
    assert not cal.raw_ok(-1) and not cal.raw_ok(4096)
    assert cal.bad_reason(5000) == "out_of_range"
    assert not cal.raw_uncertain(2000)
    unbounded = Linear(2.0)
    assert unbounded.raw_ok(-1e9) and unbounded.convert(3) == 6.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"gain": 0}, "gain must be non-zero"),
        ({"gain": NAN}, "gain must be a finite number"),
        ({"gain": 1, "raw_min": 10, "raw_max": 5}, "raw_min 10 must be <= raw_max 5"),
    ],
)
def test_linear_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Linear(**kwargs)


def test_current_4_to_20_conversion():
    cal = Current4to20(0.0, 10.0)  # 0..10 bar
    assert cal.convert(4.0) == pytest.approx(0.0)
    assert cal.convert(12.0) == pytest.approx(5.0)
    assert cal.convert(20.0) == pytest.approx(10.0)
    reverse = Current4to20(100.0, 0.0)
    assert reverse.convert(8.0) == pytest.approx(75.0)
    with pytest.raises(ValueError, match="lo_value and hi_value must differ"):
        Current4to20(5, 5)


@pytest.mark.parametrize(
    "ma, quality, reason",
    [
        (0.0, QUALITY_BAD, "namur_fail"),  # broken wire
        (3.59, QUALITY_BAD, "namur_fail"),
        (3.6, QUALITY_BAD, "namur_fail"),  # NE43: <= 3.6 mA is a failure signal
        (3.61, QUALITY_UNCERTAIN, None),
        (3.79, QUALITY_UNCERTAIN, None),
        (3.8, QUALITY_GOOD, None),
        (4.0, QUALITY_GOOD, None),
        (20.5, QUALITY_GOOD, None),
        (20.51, QUALITY_UNCERTAIN, None),
        (20.99, QUALITY_UNCERTAIN, None),
        (21.0, QUALITY_BAD, "namur_fail"),  # NE43: >= 21 mA is a failure signal
        (21.01, QUALITY_BAD, "namur_fail"),
        (24.0, QUALITY_BAD, "namur_fail"),  # shorted loop
    ],
)
def test_current_4_to_20_namur_ne43_bands(ma, quality, reason):
    ch = SensorChannel("PT1", Current4to20(0.0, 10.0))
    assert ch.update(ma, 0) == quality
    assert ch.quality == quality
    assert ch.bad_reason == reason
    if quality != QUALITY_BAD:
        # Uncertain readings are still converted (linearly extrapolated) and usable.
        assert ch.value == pytest.approx((ma - 4.0) / 16.0 * 10.0)
        assert ch.last_good_ms == 0


def test_table_interpolates_and_rejects_outside():
    # Type K thermocouple, a few points of the IEC 60584 table (mV -> degC).
    cal = Table([(0.0, 0.0), (4.096, 100.0), (8.138, 200.0), (12.209, 300.0)])
    assert cal.convert(0.0) == 0.0
    assert cal.convert(8.138) == pytest.approx(200.0)
    assert cal.convert(12.209) == pytest.approx(300.0)
    assert cal.convert(2.048) == pytest.approx(50.0)
    assert cal.convert(6.117) == pytest.approx(150.0)
    assert cal.raw_ok(0.0) and cal.raw_ok(12.209)
    assert not cal.raw_ok(-0.001) and not cal.raw_ok(12.21)
    assert cal.bad_reason(-1) == "out_of_range"


def test_table_custom_reasons_and_decreasing_values():
    # NTC-like: resistance up -> temperature down; below the table = short, above = open.
    cal = Table([(100, 150.0), (1000, 80.0), (10000, 25.0)], low_reason="short", high_reason="open")
    assert cal.convert(550) == pytest.approx(115.0)
    assert cal.bad_reason(50) == "short"
    assert cal.bad_reason(20000) == "open"
    ch = SensorChannel("TT", cal)
    ch.update(20000, 0)
    assert (ch.quality, ch.bad_reason) == (QUALITY_BAD, "open")


@pytest.mark.parametrize(
    "points, match",
    [
        ([(0, 0)], "at least 2 entries"),
        ([(0, 0), (0, 1)], r"points\[1\] raw 0 must be > previous raw 0"),
        ([(1, 0), (0, 1)], r"points\[1\] raw 0 must be > previous raw 1"),
        ([(0, 0), (1, 2, 3)], r"points\[1\] must be \(raw, value\)"),
        ([(0, 0), (1, NAN)], r"points\[1\] value must be a finite number"),
    ],
)
def test_table_rejects_bad_points(points, match):
    with pytest.raises(ValueError, match=match):
        Table(points)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e4, 1e4, allow_nan=False),
            st.floats(-1e4, 1e4, allow_nan=False),
        ),
        min_size=2,
        max_size=12,
        unique_by=lambda p: p[0],
    ),
    st.floats(0, 1),
)
def test_table_output_between_neighbouring_points(points, frac):
    points = sorted(points)
    cal = Table(points)
    raws = [p[0] for p in points]
    raw = raws[0] + frac * (raws[-1] - raws[0])
    v = cal.convert(raw)
    # Find the bracketing segment and check the result lies between its two values.
    for (r0, v0), (r1, v1) in zip(points, points[1:], strict=False):
        if r0 <= raw <= r1:
            assert min(v0, v1) - 1e-6 <= v <= max(v0, v1) + 1e-6
            break


@pytest.mark.parametrize(
    "t_c, ohms",
    [(-200.0, 18.5201), (-100.0, 60.2558), (0.0, 100.0), (100.0, 138.5055), (850.0, 390.4811)],
)
def test_pt100_against_iec_60751_reference_values(t_c, ohms):
    assert cvd_resistance(t_c) == pytest.approx(ohms, abs=1e-4)
    assert Pt100().convert(ohms) == pytest.approx(t_c, abs=2e-4)


@settings(max_examples=300, deadline=None)
@given(st.floats(-200.0, 850.0))
def test_pt100_round_trip(t_c):
    assert Pt100().convert(cvd_resistance(t_c)) == pytest.approx(t_c, abs=1e-6)


def test_pt100_formula_keeps_precision_in_single_precision():
    """The cancellation-free root stays accurate when every operation rounds to float32,
    as on an RP2040/ESP32; the textbook (-A + sqrt(D)) / 2B form cancels and is worse."""
    import struct

    def f32(x):
        return struct.unpack("f", struct.pack("f", x))[0]

    a, b = f32(3.9083e-3), f32(-5.775e-7)
    for t_c in (0.5, 1.0, 25.0, 100.0, 400.0, 850.0):
        r = f32(cvd_resistance(t_c))
        x = f32(f32(r / 100.0) - 1.0)
        d = f32(math.sqrt(f32(f32(a * a) + f32(f32(4.0 * b) * x))))
        stable = f32(f32(2.0 * x) / f32(a + d))
        textbook = f32(f32(-a + d) / f32(2.0 * b))
        assert abs(stable - t_c) < 1e-4
        assert abs(stable - t_c) <= abs(textbook - t_c)


def test_pt100_open_and_short_detection():
    ch = SensorChannel("TT1", Pt100())
    ch.update(138.5055, 0)
    assert ch.quality == QUALITY_GOOD and ch.value == pytest.approx(100.0, abs=1e-3)
    ch.update(400.01, 10)
    assert (ch.quality, ch.bad_reason) == (QUALITY_BAD, "open")
    ch.update(17.99, 20)
    assert (ch.quality, ch.bad_reason) == (QUALITY_BAD, "short")
    assert ch.value == pytest.approx(100.0, abs=1e-3)  # last usable value kept


def test_pt1000_scales_bounds():
    cal = Pt100(r0=1000.0)
    assert (cal.r_short, cal.r_open) == (180.0, 4000.0)
    assert cal.convert(1385.055) == pytest.approx(100.0, abs=1e-3)
    with pytest.raises(ValueError, match="need 0 < r_short < r0 < r_open"):
        Pt100(r_short=150.0)


# ----------------------------------------------------------------------------- channel


def test_channel_starts_uncertain_and_goes_bad_stale_if_nothing_arrives():
    ch = SensorChannel("TT1", Linear(1.0), stale_ms=2000)
    assert (ch.value, ch.quality, ch.bad_reason, ch.last_good_ms) == (
        None,
        QUALITY_UNCERTAIN,
        None,
        None,
    )
    assert ch.starting
    # A bus device still converting: tolerated for stale_ms after the first reading...
    assert ch.update(None, 1000, fault="starting") == QUALITY_UNCERTAIN
    assert ch.update(None, 3000, fault="starting") == QUALITY_UNCERTAIN
    # ...then the channel is BAD "stale", so a sensor that never delivers still trips.
    assert ch.update(None, 3001, fault="starting") == QUALITY_BAD
    assert ch.bad_reason == "stale" and not ch.starting


def test_channel_without_readings_goes_stale_from_its_first_check():
    ch = SensorChannel("TT1", Linear(1.0), stale_ms=500)
    assert ch.check(100) == QUALITY_UNCERTAIN
    assert ch.check(601) == QUALITY_BAD and ch.bad_reason == "stale"


def test_channel_real_fault_at_boot_is_bad_at_once():
    ch = SensorChannel("TT1", Pt100())
    assert ch.update(None, 0, fault="open") == QUALITY_BAD
    assert ch.bad_reason == "open"
    ch2 = SensorChannel("TT2", Linear(1.0))
    assert ch2.update(float("nan"), 0) == QUALITY_BAD


def test_channel_starting_fault_after_first_sample_is_bad():
    ch = SensorChannel("TT1", Linear(1.0))
    ch.update(20.0, 0)
    assert ch.update(None, 100, fault="starting") == QUALITY_BAD
    assert ch.bad_reason == "starting"


def test_1oo2_starting_inputs_are_uncertain_without_value():
    a = SensorChannel("TT1A", Linear(1.0), stale_ms=1000)
    b = SensorChannel("TT1B", Linear(1.0), stale_ms=1000)
    r = Redundant1oo2(a, b, 5.0, select="max")
    a.update(None, 0, fault="starting")
    b.update(None, 0, fault="starting")
    assert r.check(0) == QUALITY_UNCERTAIN and r.value is None
    a.update(50.0, 100)
    assert r.check(100) == QUALITY_UNCERTAIN and r.value == 50.0
    b.update(None, 1001, fault="starting")
    assert r.check(1001) == QUALITY_UNCERTAIN and r.value == 50.0  # b stale, a carries on


def test_channel_bad_samples_keep_last_value():
    ch = SensorChannel("TT1", Linear(1.0), range_min=-50, range_max=300)
    ch.update(42.0, 0)
    assert (ch.value, ch.quality, ch.bad_reason) == (42.0, QUALITY_GOOD, None)
    for raw, reason in (
        (NAN, "nan"),
        (None, "nan"),
        (float("inf"), "nan"),
        (300.5, "out_of_range"),
    ):
        assert ch.update(raw, 100) == QUALITY_BAD
        assert ch.bad_reason == reason
        assert ch.value == 42.0
        assert ch.last_good_ms == 0
    assert ch.raw == 300.5


def test_channel_driver_fault_flag():
    """A thermocouple driver reports an open circuit as a flag (with or without NaN)."""
    ch = SensorChannel("TC1", Linear(1.0))
    ch.update(21.0, 0)
    assert ch.update(NAN, 100, fault="open") == QUALITY_BAD
    assert ch.bad_reason == "open"
    assert ch.update(21.5, 200, fault="open") == QUALITY_BAD  # flag wins over a number
    ch.update(22.0, 300)
    assert (ch.quality, ch.bad_reason, ch.value) == (QUALITY_GOOD, None, 22.0)


def test_channel_range_limits_are_inclusive():
    ch = SensorChannel("TT1", Linear(1.0), range_min=0.0, range_max=100.0)
    assert ch.update(0.0, 0) == QUALITY_GOOD
    assert ch.update(100.0, 1) == QUALITY_GOOD
    assert ch.update(100.000001, 2) == QUALITY_BAD
    assert ch.update(-0.000001, 3) == QUALITY_BAD
    assert ch.bad_reason == "out_of_range"


def test_filter_first_order_step_and_bypass():
    ch = SensorChannel("TT1", Linear(1.0), filter_tau_ms=1000, stale_ms=None)
    ch.update(0.0, 0)
    assert ch.value == 0.0  # first sample bypasses the filter
    ch.update(100.0, 1000)  # dt == tau -> alpha = 1/2
    assert ch.value == pytest.approx(50.0)
    ch.update(100.0, 1000)  # dt = 0 -> no movement
    assert ch.value == pytest.approx(50.0)
    ch.update(100.0, 4000)  # dt = 3 tau -> alpha = 3/4
    assert ch.value == pytest.approx(87.5)
    ch.update(NAN, 4100)
    ch.update(10.0, 4200)  # first sample after a bad period bypasses the filter
    assert ch.value == 10.0
    ch.update(20.0, 5200)
    assert ch.value == pytest.approx(15.0)


def test_filter_after_staleness_restarts():
    ch = SensorChannel("TT1", Linear(1.0), filter_tau_ms=1000, stale_ms=500)
    ch.update(0.0, 0)
    ch.check(600)
    assert ch.quality == QUALITY_BAD
    ch.update(80.0, 700)
    assert ch.value == 80.0 and ch.quality == QUALITY_GOOD


def test_filter_dt_across_tick_wrap():
    ch = SensorChannel("TT1", Linear(1.0), filter_tau_ms=1000)
    t0 = TICKS_PERIOD - 500
    ch.update(0.0, t0)
    ch.update(100.0, ticks_add(t0, 1000))  # wrapped: now < t0 numerically
    assert ch.value == pytest.approx(50.0)
    assert ch.check(ticks_add(t0, 1500)) == QUALITY_GOOD


def test_staleness_boundary_and_reason_priority():
    ch = SensorChannel("TT1", Linear(1.0), stale_ms=2000)
    ch.update(5.0, 1000)
    assert ch.check(3000) == QUALITY_GOOD  # exactly stale_ms old: still fresh
    assert ch.check(3001) == QUALITY_BAD
    assert ch.bad_reason == "stale"
    assert ch.value == 5.0
    ch.update(6.0, 3100)
    assert ch.check(3100) == QUALITY_GOOD
    ch.update(NAN, 3200)
    ch.check(9000)
    assert ch.bad_reason == "nan"  # the original cause is kept, not overwritten by "stale"


def test_uncertain_samples_refresh_staleness():
    ch = SensorChannel("PT1", Current4to20(0, 10), stale_ms=1000, uncertain_ms=5000)
    ch.update(3.7, 0)
    assert ch.quality == QUALITY_UNCERTAIN
    ch.update(3.7, 900)
    assert ch.check(1800) == QUALITY_UNCERTAIN


def test_channel_parked_in_an_ne43_margin_band_goes_bad_after_uncertain_ms():
    # 3.62 mA: a transmitter that failed downscale but does not quite reach 3.6 mA.
    ch = SensorChannel("PT1", Current4to20(0.0, 40.0), stale_ms=500)  # uncertain_ms: 500
    assert ch.uncertain_ms == 500
    ch.update(12.0, 0)
    t = 50
    while t <= 500:
        assert ch.update(3.62, t) == QUALITY_UNCERTAIN and ch.check(t) == QUALITY_UNCERTAIN
        t += 50
    # More than 500 ms of nothing but UNCERTAIN samples (the first at t = 50): BAD.
    assert ch.update(3.62, 600) == QUALITY_BAD
    assert ch.bad_reason == "uncertain"
    frozen = ch.value
    assert ch.update(3.62, 650) == QUALITY_BAD and ch.value == frozen  # stays BAD
    assert ch.check(5000) == QUALITY_BAD and ch.bad_reason == "uncertain"
    # Only a GOOD sample ends it, and a new UNCERTAIN run gets the full time again.
    assert ch.update(12.0, 5050) == QUALITY_GOOD
    assert ch.update(3.7, 5100) == QUALITY_UNCERTAIN
    assert ch.check(5600) == QUALITY_UNCERTAIN
    assert ch.check(5601) == QUALITY_BAD and ch.bad_reason == "uncertain"


def test_uncertain_ms_is_its_own_limit():
    ch = SensorChannel("PT1", Current4to20(0.0, 40.0), stale_ms=5000, uncertain_ms=200)
    ch.update(20.7, 0)  # NE43 over-range margin
    assert ch.check(200) == QUALITY_UNCERTAIN
    assert ch.check(201) == QUALITY_BAD and ch.bad_reason == "uncertain"
    with pytest.raises(ValueError, match="TT1: uncertain_ms must be > 0"):
        SensorChannel("TT1", Linear(1), uncertain_ms=0)


def test_frozen_reading_is_flagged_stuck_after_stuck_ms():
    ch = SensorChannel("PT1", Linear(1.0), stuck_ms=1000, stuck_band=0.02)
    t = 0
    ch.update(11.0, t)
    while t <= 1000:  # within +-0.02 of the first sample for exactly stuck_ms: not yet
        ch.update(11.0 + (0.02 if t % 100 else -0.02), t)
        assert not ch.stuck
        t += 50
    ch.update(11.0, 1050)
    assert ch.stuck and ch.quality == QUALITY_GOOD  # a flag (alarm), not BAD by default
    ch.update(11.03, 1100)  # leaves the band: alive again, a new run starts
    assert not ch.stuck
    ch.update(11.03, 2100)
    assert not ch.stuck
    ch.update(11.03, 2101)
    assert ch.stuck
    ch.update(NAN, 2150)  # another failure ends the run
    assert not ch.stuck and ch.quality == QUALITY_BAD


def test_noisy_reading_is_never_stuck():
    import random

    rng = random.Random(1)
    ch = SensorChannel("PT1", Linear(1.0), stuck_ms=10_000, stuck_band=0.02)
    for i in range(20 * 3600):  # an hour at 20 Hz, 0.01 sd noise (the emulator's)
        ch.update(11.0 + rng.gauss(0.0, 0.01), i * 50)
        assert not ch.stuck


def test_stuck_bad_holds_the_channel_bad_until_the_reading_moves():
    ch = SensorChannel("PT1", Linear(1.0), stale_ms=500, stuck_ms=1000, stuck_bad=True)
    t = 0
    while t <= 1000:
        assert ch.update(5.0, t) == QUALITY_GOOD
        ch.check(t)
        t += 50
    assert ch.update(5.0, 1050) == QUALITY_BAD and ch.bad_reason == "stuck"
    for t in range(1100, 3000, 50):  # still frozen: stays BAD, not stale, not GOOD
        assert ch.update(5.0, t) == QUALITY_BAD and ch.check(t) == QUALITY_BAD
        assert ch.bad_reason == "stuck"
    assert ch.update(5.1, 3000) == QUALITY_GOOD and not ch.stuck and ch.value == 5.1


def test_stuck_parameter_validation():
    with pytest.raises(ValueError, match="TT1: stuck_ms must be > 0"):
        SensorChannel("TT1", Linear(1), stuck_ms=0)
    with pytest.raises(ValueError, match="TT1: stuck_band must be >= 0"):
        SensorChannel("TT1", Linear(1), stuck_ms=10, stuck_band=-1.0)


def test_unfiltered_value_is_the_sample_before_the_filter():
    ch = SensorChannel("PT1", Linear(1.0), filter_tau_ms=100)
    ch.update(0.0, 0)
    ch.update(30.0, 50)  # a step: the filter moves a third of the way
    assert ch.value == pytest.approx(10.0) and ch.unfiltered == 30.0
    view = Unfiltered(ch)
    assert view.value == 30.0 and view.name == "PT1" and view.quality == QUALITY_GOOD
    ch.update(NAN, 100)
    assert view.quality == QUALITY_BAD and view.bad_reason == "nan" and view.value == 30.0


def test_channel_parameter_validation():
    with pytest.raises(ValueError, match="TT1: filter_tau_ms must be >= 0"):
        SensorChannel("TT1", Linear(1), filter_tau_ms=-1)
    with pytest.raises(ValueError, match="TT1: stale_ms must be > 0"):
        SensorChannel("TT1", Linear(1), stale_ms=0)
    with pytest.raises(ValueError, match="TT1: range_min 5 must be <= range_max 1"):
        SensorChannel("TT1", Linear(1), range_min=5, range_max=1)


def test_default_calibration_is_identity():
    assert Calibration().convert(3.25) == 3.25
    ch = SensorChannel("X")
    ch.update(7, 0)
    assert (ch.value, ch.quality) == (7, QUALITY_GOOD)


samples = st.lists(
    st.tuples(st.integers(0, 5000), st.floats(-1e6, 1e6, allow_nan=False)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(samples, st.integers(0, 20_000), st.integers(0, TICKS_PERIOD - 1))
def test_filter_output_stays_within_input_range(seq, tau, t0):
    ch = SensorChannel("X", Linear(1.0), filter_tau_ms=tau, stale_ms=None)
    t = t0
    seen = []
    for dt, x in seq:
        t = ticks_wrap(t + dt)
        prev = ch.value
        ch.update(x, t)
        seen.append(x)
        assert min(seen) <= ch.value <= max(seen)
        if prev is not None:  # each step moves towards the input, never past it
            assert min(prev, x) <= ch.value <= max(prev, x)


# ------------------------------------------------------------------------------- 1oo2


def _pair(select="avg", max_dis=5.0):
    a = SensorChannel("TT1A", Linear(1.0), stale_ms=1000)
    b = SensorChannel("TT1B", Linear(1.0), stale_ms=1000)
    return a, b, Redundant1oo2(a, b, max_dis, "TT1", select=select)


@pytest.mark.parametrize("select, expected", [("avg", 101.0), ("max", 102.0), ("min", 100.0)])
def test_1oo2_select_policy(select, expected):
    a, b, r = _pair(select)
    a.update(100.0, 0)
    b.update(102.0, 0)
    assert r.check(0) == QUALITY_GOOD
    assert r.value == expected and r.bad_reason is None and r.last_good_ms == 0


def test_1oo2_disagreement_is_bad():
    a, b, r = _pair("max")
    a.update(100.0, 0)
    b.update(105.0, 0)
    assert r.check(0) == QUALITY_GOOD  # exactly at max_disagreement: agree
    b.update(105.5, 100)
    assert r.check(100) == QUALITY_BAD
    assert r.bad_reason == "disagreement"
    assert r.value == 105.0  # last usable value kept


def test_1oo2_one_sensor_bad_uses_the_other_uncertain():
    a, b, r = _pair("max")
    a.update(100.0, 0)
    b.update(101.0, 0)
    r.check(0)
    a.update(NAN, 100)
    b.update(160.0, 100)  # the survivor alone can still trip a high limit
    assert r.check(100) == QUALITY_UNCERTAIN
    assert r.value == 160.0
    b.update(None, 200)
    assert r.check(200) == QUALITY_BAD
    assert r.bad_reason == "nan"


def test_1oo2_uncertain_input_and_staleness():
    a, b, r = _pair("avg")
    a.update(100.0, 0)
    b.update(100.0, 0)
    b.quality = QUALITY_UNCERTAIN  # e.g. an NE43 over-range reading
    assert r.check(0) == QUALITY_UNCERTAIN
    b.update(100.0, 0)
    a.update(100.0, 900)
    # b is more than stale_ms old at 1500: r.check runs the inputs' staleness itself.
    assert r.check(1500) == QUALITY_UNCERTAIN
    assert b.bad_reason == "stale" and r.value == 100.0
    assert r.check(2000) == QUALITY_BAD
    assert r.bad_reason == "stale"


def test_1oo2_on_one_probe_is_degraded_at_once_and_bad_after_degraded_max_ms():
    a = SensorChannel("TT1A", Linear(1.0), stale_ms=1000)
    b = SensorChannel("TT1B", Linear(1.0), stale_ms=1000)
    r = Redundant1oo2(a, b, 5.0, "TT1", select="max", degraded_max_ms=10_000)
    a.update(100.0, 0)
    b.update(100.0, 0)
    assert r.check(0) == QUALITY_GOOD and not r.degraded
    a.update(None, 100, fault="open")
    b.update(100.0, 100)
    assert r.check(100) == QUALITY_UNCERTAIN and r.degraded  # the tick it happens
    for t in range(200, 10_101, 100):  # usable on the survivor for degraded_max_ms
        b.update(101.0, t)
        assert r.check(t) == QUALITY_UNCERTAIN and r.value == 101.0
    b.update(101.0, 10_101)
    assert r.check(10_101) == QUALITY_BAD and r.bad_reason == "degraded"
    b.update(102.0, 10_200)
    assert r.check(10_200) == QUALITY_BAD and r.value == 101.0  # stays BAD, value frozen
    # Both probes back: redundancy restored, GOOD, and a later loss gets the full time.
    a.update(102.0, 10_300)
    b.update(102.0, 10_300)
    assert r.check(10_300) == QUALITY_GOOD and not r.degraded
    b.update(None, 10_400, fault="open")
    a.update(102.0, 10_400)
    assert r.check(10_400) == QUALITY_UNCERTAIN and r.degraded


def test_1oo2_starting_probe_is_not_degraded():
    a = SensorChannel("TT1A", Linear(1.0), stale_ms=1000)
    b = SensorChannel("TT1B", Linear(1.0), stale_ms=1000)
    r = Redundant1oo2(a, b, 5.0, "TT1", degraded_max_ms=500)
    a.update(100.0, 0)
    b.update(None, 0, fault="starting")  # first conversion not ready yet
    assert r.check(0) == QUALITY_UNCERTAIN and not r.degraded
    a.update(100.0, 900)
    assert r.check(900) == QUALITY_UNCERTAIN and not r.degraded
    a.update(100.0, 1001)
    assert r.check(1001) == QUALITY_UNCERTAIN and r.degraded  # b never came: stale


def test_1oo2_unfiltered_follows_select():
    a = SensorChannel("TT1A", Linear(1.0), filter_tau_ms=1000)
    b = SensorChannel("TT1B", Linear(1.0), filter_tau_ms=1000)
    r = Redundant1oo2(a, b, 5.0, "TT1", select="max")
    a.update(100.0, 0)
    b.update(100.0, 0)
    a.update(103.0, 100)
    b.update(101.0, 100)
    r.check(100)
    assert r.unfiltered == 103.0 and r.value < 101.0
    view = Unfiltered(r)
    assert view.value == 103.0 and view.quality == r.quality


def test_1oo2_validation_and_default_name():
    a, b, _ = _pair()
    assert Redundant1oo2(a, b, 1.0).name == "TT1A|TT1B"
    with pytest.raises(ValueError, match="select must be one of"):
        Redundant1oo2(a, b, 1.0, select="median")
    with pytest.raises(ValueError, match="max_disagreement must be >= 0"):
        Redundant1oo2(a, b, -1.0)
    with pytest.raises(ValueError, match="degraded_max_ms must be > 0"):
        Redundant1oo2(a, b, 1.0, degraded_max_ms=0)
