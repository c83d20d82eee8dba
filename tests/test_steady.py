"""Steady-state detection (host/steady.py): properties over any signal."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.steady import SteadyState

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
windows = st.floats(min_value=1.0, max_value=120.0)
periods = st.integers(min_value=50, max_value=2000)  # ms between samples


def feed(det: SteadyState, samples) -> list[bool]:
    return [det.update(t, v) for t, v in samples]


@settings(max_examples=200, deadline=None)
@given(value=finite, window_s=windows, period_ms=periods, tol=st.floats(0.0, 10.0))
def test_a_constant_signal_is_steady_once_a_window_is_covered_and_not_before(
    value, window_s, period_ms, tol
):
    det = SteadyState(window_s, tolerance_abs=tol, min_samples=2)
    window_ms = int(round(window_s * 1000))
    n = window_ms // period_ms + 3
    samples = [(i * period_ms, value) for i in range(n)]
    out = feed(det, samples)
    for (t, _), steady in zip(samples, out, strict=True):
        assert steady == (t >= window_ms), (t, window_ms)
    assert out[-1] is True


@settings(max_examples=200, deadline=None)
@given(
    start=finite,
    slope_factor=st.floats(1.01, 100.0),
    sign=st.sampled_from([-1.0, 1.0]),
    window_s=windows,
    period_ms=periods,
    tol=st.floats(0.001, 10.0),
)
def test_a_ramp_steeper_than_the_band_over_a_window_is_never_steady(
    start, slope_factor, sign, window_s, period_ms, tol
):
    # slope (per ms) such that one window spans more than the tolerance
    slope = sign * slope_factor * tol / (window_s * 1000.0)
    det = SteadyState(window_s, tolerance_abs=tol, min_samples=2)
    n = int(window_s * 1000 / period_ms) * 3 + 5
    out = feed(det, [(i * period_ms, start + slope * i * period_ms) for i in range(n)])
    assert not any(out)


@settings(max_examples=200, deadline=None)
@given(
    level=st.floats(0.1, 1000.0),
    rel=st.floats(0.001, 0.2),
    noise=st.lists(st.floats(-0.5, 0.5), min_size=80, max_size=200),
    window_s=st.floats(1.0, 30.0),
)
def test_noise_within_the_band_is_steady(level, rel, noise, window_s):
    # every sample within +-rel/2 of the level: the spread never exceeds the band around
    # the mean (the mean is at least level * (1 - rel/2), the spread at most level * rel)
    tol_rel = rel / (1 - rel / 2)
    period_ms = max(1, int(window_s * 1000 / 40))
    det = SteadyState(window_s, tolerance_rel=tol_rel, min_samples=5)
    out = feed(det, [(i * period_ms, level * (1 + rel * x)) for i, x in enumerate(noise)])
    window_ms = int(round(window_s * 1000))
    first_covered = next(i for i in range(len(noise)) if i * period_ms >= window_ms)
    assert all(out[first_covered:])
    assert not any(out[:first_covered])


@settings(max_examples=100, deadline=None)
@given(value=finite, bad=st.sampled_from([None, math.nan, math.inf, -math.inf]))
def test_a_bad_sample_starts_the_window_over(value, bad):
    det = SteadyState(10.0, tolerance_abs=1.0, min_samples=2)
    assert feed(det, [(t, value) for t in range(0, 12_001, 1000)])[-1]
    assert det.update(13_000, bad) is False
    # a whole window of good samples again before it is steady
    again = feed(det, [(t, value) for t in range(14_000, 24_001, 1000)])
    assert not any(again[:-1]) and again[-1]


def test_a_step_change_is_steady_again_one_window_after_it():
    det = SteadyState(30.0, tolerance_abs=0.5, min_samples=5)
    trace = [(t, 1.0 if t < 60_000 else 5.0) for t in range(0, 150_001, 1000)]
    out = dict(zip([t for t, _ in trace], feed(det, trace), strict=True))
    assert out[59_000] and not out[60_000] and not out[89_000] and out[90_000]


def test_time_going_backwards_starts_over():
    det = SteadyState(5.0, tolerance_abs=0.1, min_samples=2)
    assert feed(det, [(t, 2.0) for t in range(0, 6001, 1000)])[-1]
    assert det.update(3000, 2.0) is False


def test_relative_and_absolute_tolerance_take_the_larger_band():
    det = SteadyState(2.0, tolerance_abs=0.5, tolerance_rel=0.01, min_samples=2)
    out = feed(det, [(0, 100.0), (1000, 100.9), (2000, 100.2)])  # 1 % of ~100 = 1.0
    assert out[-1] and det.span == pytest.approx(0.9)
    det = SteadyState(2.0, tolerance_abs=0.5, tolerance_rel=0.01, min_samples=2)
    assert feed(det, [(0, 1.0), (1000, 1.4), (2000, 1.0)])[-1]  # 0.5 absolute wins


def test_too_few_samples_in_the_window_is_not_steady():
    det = SteadyState(10.0, tolerance_abs=1.0, min_samples=5)
    assert not any(feed(det, [(0, 1.0), (6000, 1.0), (12_000, 1.0)]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window_s": 0, "tolerance_abs": 1.0}, "window_s"),
        ({"window_s": 10.0}, "tolerance"),
        ({"window_s": 10.0, "tolerance_abs": -1.0}, "tolerance_abs"),
        ({"window_s": 10.0, "tolerance_rel": math.nan}, "tolerance_rel"),
        ({"window_s": 10.0, "tolerance_abs": 1.0, "min_samples": 1}, "min_samples"),
    ],
)
def test_bad_parameters_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SteadyState(**kwargs)
