"""Tests for edge/pid.py.

Each required improvement over the textbook PID is tested against ``NaivePID`` below
(Beauregard's "beginner's PID"): the test first shows the naive controller has the
defect, then that ours does not, so a test cannot pass by accident.
"""

import dis
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simple_pid import PID as SimplePID

from edge import pid as pid_module
from edge.clock import TICKS_PERIOD, ticks_wrap
from edge.pid import DEFAULT_MAX_GAP_MS, PID
from protocol.constants import RESULT_OK, RESULT_OUT_OF_RANGE

NAN = float("nan")
INF = float("inf")


class NaivePID:
    """The beginner's PID: derivative on error, unclamped integral stored as sum(e*dt)
    with ki applied at output time, raw (not wrap-safe) time differences, no bumpless
    transfer, NaN passed straight through.  Output limits are optional."""

    def __init__(self, kp, ki, kd, out_min=None, out_max=None, setpoint=0.0):
        self.kp, self.ki, self.kd = kp, ki, kd
        self.out_min, self.out_max = out_min, out_max
        self.setpoint = setpoint
        self.err_sum = 0.0
        self.last_err = None
        self.last_ms = None
        self.auto = True
        self.manual_output = 0.0

    def set_manual(self, output):
        self.auto = False
        self.manual_output = output

    def set_auto(self):
        self.auto = True

    def update(self, measurement, now_ms):
        if not self.auto:
            return self.manual_output
        err = self.setpoint - measurement
        out = self.kp * err
        if self.last_ms is not None:
            dt = (now_ms - self.last_ms) / 1000.0
            self.err_sum += err * dt
            out += self.ki * self.err_sum + self.kd * (err - self.last_err) / dt
        self.last_err = err
        self.last_ms = now_ms
        if self.out_max is not None and out > self.out_max:
            out = self.out_max
        if self.out_min is not None and out < self.out_min:
            out = self.out_min
        return out


def make(kp=1.0, ki=0.0, kd=0.0, out_min=-1000.0, out_max=1000.0, sp_min=0.0, sp_max=100.0, **kw):
    return PID(kp, ki, kd, out_min, out_max, sp_min, sp_max, **kw)


def snapshot(controller):
    return dict(vars(controller))


# -- the required improvements, each against the naive controller -----------------------


def test_derivative_on_measurement_gives_no_kick_on_setpoint_step():
    ours = make(kp=1.0, kd=1.0, setpoint=20.0)
    naive = NaivePID(1.0, 0.0, 1.0, -1000.0, 1000.0, setpoint=20.0)
    for k in range(10):
        assert ours.update(20.0, 100 * k) == 0.0
        assert naive.update(20.0, 100 * k) == 0.0
    assert ours.set_setpoint(30.0) == RESULT_OK
    naive.setpoint = 30.0

    naive_out = naive.update(20.0, 1000)
    ours_out = ours.update(20.0, 1000)

    assert naive_out == pytest.approx(10.0 + 1.0 * 10.0 / 0.1)  # the kick: kd * de/dt
    assert ours_out == pytest.approx(10.0)  # P only: the measurement did not move
    assert ours.d_term == 0.0


def test_derivative_still_acts_on_measurement_changes():
    ours = make(kp=0.0, kd=2.0, setpoint=50.0)
    ours.update(40.0, 0)
    assert ours.update(41.0, 100) == pytest.approx(-2.0 * 1.0 / 0.1)


def test_integral_clamped_so_saturated_loop_recovers_immediately():
    # Actuator saturated for a minute while the process does not respond (e.g. the
    # heater is still warming up), then the measurement overshoots the setpoint.
    ours = make(kp=2.5, ki=1.0, out_min=0.0, out_max=100.0, setpoint=50.0)
    naive = NaivePID(2.5, 1.0, 0.0, 0.0, 100.0, setpoint=50.0)
    t = 0
    for _ in range(600):
        assert ours.update(0.0, t) == 100.0
        assert naive.update(0.0, t) == 100.0
        assert ours.integral <= 100.0
        t += 100

    ours_after = []
    naive_after = []
    for _ in range(100):  # ten seconds above the setpoint
        ours_after.append(ours.update(60.0, t))
        naive_after.append(naive.update(60.0, t))
        t += 100

    assert all(out == 100.0 for out in naive_after)  # still unwinding ki*3000 of windup
    assert ours_after[0] < 100.0  # leaves saturation on the first step past the setpoint
    assert ours_after[0] == pytest.approx(-25.0 + 100.0 - 1.0 * 10.0 * 0.1)


def test_integral_clamped_at_lower_limit_too():
    ours = make(kp=0.0, ki=5.0, out_min=-20.0, out_max=30.0, setpoint=0.0)
    for k in range(200):
        ours.update(90.0, 100 * k)
    assert ours.integral == -20.0
    assert ours.output == -20.0


def test_output_limits():
    ours = make(kp=10.0, out_min=0.0, out_max=100.0, setpoint=60.0)
    naive = NaivePID(10.0, 0.0, 0.0, setpoint=60.0)  # no limits
    assert naive.update(10.0, 0) == 500.0
    assert ours.update(10.0, 0) == 100.0
    naive.setpoint = 0.0
    assert ours.set_setpoint(0.0) == RESULT_OK
    assert naive.update(50.0, 100) == -500.0
    assert ours.update(50.0, 100) == 0.0


def test_bumpless_manual_to_auto():
    ours = make(kp=2.0, ki=0.5, kd=0.1, out_min=0.0, out_max=100.0, setpoint=30.0)
    naive = NaivePID(2.0, 0.5, 0.1, 0.0, 100.0, setpoint=30.0)
    assert ours.set_manual(40.0) == RESULT_OK
    naive.set_manual(40.0)
    for k in range(11):
        assert ours.update(25.0, 100 * k) == 40.0
        assert naive.update(25.0, 100 * k) == 40.0
    assert ours.set_auto(1000) == RESULT_OK
    naive.set_auto()

    naive_out = naive.update(25.0, 1100)
    ours_out = ours.update(25.0, 1100)

    assert abs(naive_out - 40.0) > 20.0  # jumps to kp*e = 10
    # Only one step of integral action separates the first auto output from manual.
    assert ours_out == pytest.approx(40.0 + 0.5 * 5.0 * 0.1)


def test_bumpless_auto_manual_auto_round_trip():
    ours = make(kp=1.5, ki=0.8, kd=0.2, out_min=0.0, out_max=100.0, setpoint=50.0)
    t = 0
    y = 20.0
    for _ in range(50):
        y += 0.01 * ours.update(y, t)
        t += 100
    held = ours.output
    assert ours.set_manual() == RESULT_OK  # hold the current output
    assert ours.update(y, t) == held
    assert ours.set_auto(t) == RESULT_OK
    assert ours.update(y, t + 100) == pytest.approx(held + 0.8 * (50.0 - y) * 0.1)


def test_tuning_change_without_bump():
    ours = make(kp=1.0, ki=1.0, setpoint=10.0)
    naive = NaivePID(1.0, 1.0, 0.0, -1000.0, 1000.0, setpoint=10.0)
    t = 0
    for _ in range(20):
        ours.update(5.0, t)
        naive.update(5.0, t)
        t += 100
    # At the setpoint: the output is the integral alone.
    before_ours = ours.update(10.0, t)
    before_naive = naive.update(10.0, t)
    assert before_ours == pytest.approx(before_naive) == pytest.approx(9.5)

    assert ours.set_tunings(1.0, 3.0, 0.0) == RESULT_OK
    naive.ki = 3.0
    t += 100

    assert naive.update(10.0, t) == pytest.approx(3 * 9.5)  # the bump
    assert ours.update(10.0, t) == pytest.approx(9.5)


def test_setpoint_ramp_limits_working_setpoint_rate():
    ours = make(kp=1.0, ramp_rate=2.0, setpoint=20.0)
    naive = NaivePID(1.0, 0.0, 0.0, -1000.0, 1000.0, setpoint=20.0)
    assert ours.update(20.0, 0) == 0.0
    naive.update(20.0, 0)
    assert ours.set_setpoint(30.0) == RESULT_OK
    naive.setpoint = 30.0
    assert (ours.target, ours.setpoint) == (30.0, 20.0)  # both visible

    assert naive.update(20.0, 100) == 10.0  # the whole step at once
    outputs = [ours.update(20.0, 100 * k) for k in range(1, 61)]
    for k, out in enumerate(outputs, start=1):
        expected_sp = min(20.0 + 0.2 * k, 30.0)
        assert out == pytest.approx(expected_sp - 20.0)
    assert ours.setpoint == 30.0  # lands exactly on the target, never overshoots it


def test_setpoint_ramp_downward_and_with_irregular_steps():
    ours = make(kp=1.0, ramp_rate=4.0, setpoint=50.0)
    ours.update(50.0, 0)
    ours.set_setpoint(45.0)
    t = 0
    previous = ours.setpoint
    for dt in (250, 10, 1000, 40, 700):
        t += dt
        ours.update(50.0, t)
        assert previous - ours.setpoint <= 4.0 * dt / 1000.0 + 1e-12
        assert ours.setpoint >= 45.0
        previous = ours.setpoint
    assert ours.setpoint == 45.0


def test_ramp_starts_from_process_value_on_start_and_on_auto():
    ours = make(kp=1.0, ramp_rate=1.0, setpoint=80.0)
    assert ours.update(20.0, 0) == 0.0  # no setpoint step at start-up
    assert ours.setpoint == 20.0
    ours.update(20.0, 1000)
    assert ours.setpoint == pytest.approx(21.0)

    ours.set_manual(5.0)
    ours.update(60.0, 2000)
    ours.set_auto(2000)
    assert ours.setpoint == 60.0  # restarts from the measurement seen in manual
    ours.update(60.0, 3000)
    assert ours.setpoint == pytest.approx(61.0)


def test_time_across_tick_wrap_gives_identical_output():
    def scenario(controller, base, naive=False):
        outputs = []
        y = 15.0
        t = base
        for k in range(120):
            if k == 40:
                if naive:
                    controller.setpoint = 70.0
                else:
                    controller.set_setpoint(70.0)
            out = controller.update(y, ticks_wrap(t))
            outputs.append(out)
            y += 0.02 * out - 0.01 * (y - 15.0)
            t += 97 + (k % 5)
        return outputs

    def ours():
        return make(kp=2.0, ki=0.3, kd=0.5, out_min=0.0, out_max=100.0, setpoint=60.0)

    def naive():
        return NaivePID(2.0, 0.3, 0.5, 0.0, 100.0, setpoint=60.0)

    wrap_base = TICKS_PERIOD - 6000  # wraps around step 60
    assert scenario(ours(), 0) == scenario(ours(), wrap_base)
    assert scenario(naive(), 0, naive=True) != scenario(naive(), wrap_base, naive=True)


def test_non_finite_measurement_returns_none_and_holds_integral():
    ours = make(kp=1.0, ki=1.0, kd=1.0, setpoint=10.0)
    naive = NaivePID(1.0, 1.0, 1.0, -1000.0, 1000.0, setpoint=10.0)
    for k in range(10):
        ours.update(8.0, 100 * k)
        naive.update(8.0, 100 * k)
    integral = ours.integral
    for k, bad in enumerate((NAN, INF, -INF, None)):
        assert ours.update(bad, 1000 + 100 * k) is None
        assert ours.integral == integral
    naive.update(NAN, 1000)

    # The first valid sample after bad ones is a restart: P plus the held integral.
    assert ours.update(9.0, 1500) == pytest.approx(1.0 + integral)
    assert ours.update(9.0, 1600) == pytest.approx(1.0 + integral + 0.1)
    # The naive controller is poisoned for good.
    assert math.isnan(naive.update(9.0, 1100))
    assert math.isnan(naive.update(9.0, 1200))


def test_non_finite_measurement_in_manual_keeps_manual_output():
    ours = make(kp=1.0, ki=1.0, setpoint=10.0)
    ours.set_manual(7.0)
    assert ours.update(NAN, 0) == 7.0
    ours.set_auto(0)
    assert ours.integral == 7.0  # no measurement to be bumpless against: integral only
    assert ours.update(10.0, 100) == 7.0


def test_large_gap_restarts_instead_of_integrating_it():
    ours = make(kp=1.0, ki=1.0, kd=1.0, setpoint=10.0)
    naive = NaivePID(1.0, 1.0, 1.0, -1000.0, 1000.0, setpoint=10.0)
    for k in range(10):
        ours.update(8.0, 100 * k)
        naive.update(8.0, 100 * k)
    integral = ours.integral
    hour = 3_600_000
    assert naive.update(7.0, 900 + hour) == 1000.0  # ki * 3 * 3600 in one step
    assert ours.update(7.0, 900 + hour) == pytest.approx(3.0 + integral)
    assert ours.integral == integral


def test_gap_threshold():
    ours = make(kp=0.0, ki=1.0, setpoint=10.0)
    ours.update(9.0, 0)
    ours.update(9.0, DEFAULT_MAX_GAP_MS)  # exactly the limit: integrated
    assert ours.integral == pytest.approx(1.0 * DEFAULT_MAX_GAP_MS / 1000.0)
    ours.update(9.0, 2 * DEFAULT_MAX_GAP_MS + 1)  # beyond: restart
    assert ours.integral == pytest.approx(1.0 * DEFAULT_MAX_GAP_MS / 1000.0)

    sampled = make(kp=0.0, ki=1.0, setpoint=10.0, sample_ms=50)
    assert sampled.max_gap_ms == 500
    sampled.update(9.0, 0)
    sampled.update(9.0, 501)
    assert sampled.integral == 0.0


def test_time_going_backwards_is_a_restart():
    ours = make(kp=1.0, ki=1.0, kd=1.0, setpoint=10.0)
    ours.update(8.0, 1000)
    ours.update(8.0, 1100)
    integral = ours.integral
    assert ours.update(8.0, 900) == pytest.approx(2.0 + integral)
    assert ours.integral == integral


def test_zero_dt_and_sample_ms_return_previous_output_unchanged():
    ours = make(kp=1.0, ki=1.0, setpoint=10.0)
    first = ours.update(8.0, 0)
    state = snapshot(ours)
    assert ours.update(3.0, 0) == first
    assert snapshot(ours) == state

    sampled = make(kp=1.0, ki=1.0, setpoint=10.0, sample_ms=100)
    first = sampled.update(8.0, 0)
    state = snapshot(sampled)
    assert sampled.update(2.0, 99) == first
    assert snapshot(sampled) == state
    assert sampled.update(8.0, 100) == pytest.approx(2.0 + 0.2)


def test_reverse_acting():
    cooler = make(kp=2.0, ki=1.0, out_min=0.0, out_max=100.0, setpoint=20.0, reverse=True)
    assert cooler.update(25.0, 0) == pytest.approx(10.0)
    assert cooler.update(25.0, 100) == pytest.approx(10.0 + 0.5)
    assert cooler.update(15.0, 200) == 0.0


def test_reset_forgets_dynamic_state_but_keeps_target_and_mode():
    ours = make(kp=1.0, ki=1.0, kd=1.0, out_min=-50.0, out_max=50.0, setpoint=10.0)
    for k in range(5):
        ours.update(0.0, 100 * k)
    ours.set_setpoint(20.0)
    ours.reset()
    assert ours.integral == 0.0
    assert ours.output is None
    assert ours.target == ours.setpoint == 20.0
    assert ours.update(15.0, 10_000) == 5.0  # first update: P only
    ours.set_manual(3.0)
    ours.reset()
    assert ours.output == 3.0 and not ours.auto


# -- refusals change nothing --------------------------------------------------------------


@pytest.mark.parametrize("bad", [100.0001, -0.5, 1e9, NAN, INF, -INF, None, "50"])
def test_out_of_range_setpoint_is_refused_not_clamped(bad):
    ours = make(kp=1.0, ki=1.0, ramp_rate=5.0, setpoint=40.0)
    ours.update(30.0, 0)
    ours.update(31.0, 100)
    state = snapshot(ours)
    assert ours.set_setpoint(bad) == RESULT_OUT_OF_RANGE
    assert snapshot(ours) == state


def test_setpoint_limits_are_inclusive():
    ours = make(sp_min=10.0, sp_max=20.0, setpoint=15.0)
    assert ours.set_setpoint(10.0) == RESULT_OK
    assert ours.set_setpoint(20.0) == RESULT_OK
    assert ours.target == 20.0


@pytest.mark.parametrize(
    "gains", [(-1.0, 0.0, 0.0), (1.0, -0.1, 0.0), (1.0, 0.0, -2.0), (NAN, 0, 0), (1, INF, 0)]
)
def test_invalid_tunings_are_refused(gains):
    ours = make(kp=1.0, ki=1.0, setpoint=40.0)
    ours.update(30.0, 0)
    state = snapshot(ours)
    assert ours.set_tunings(*gains) == RESULT_OUT_OF_RANGE
    assert snapshot(ours) == state


@pytest.mark.parametrize("bad", [-1000.5, 1000.5, NAN, INF])
def test_manual_output_outside_limits_is_refused(bad):
    ours = make(kp=1.0, setpoint=40.0)
    ours.update(30.0, 0)
    state = snapshot(ours)
    assert ours.set_manual(bad) == RESULT_OUT_OF_RANGE
    assert snapshot(ours) == state


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"out_min": 10.0, "out_max": 10.0}, "out_min"),
        ({"out_max": NAN}, "out_max"),
        ({"sp_min": 5.0, "sp_max": 4.0}, "setpoint_min"),
        ({"sp_max": INF}, "setpoint_max"),
        ({"kp": -1.0}, "gains"),
        ({"kd": NAN}, "gains"),
        ({"ramp_rate": 0.0}, "ramp_rate"),
        ({"ramp_rate": -1.0}, "ramp_rate"),
        ({"sample_ms": 0}, "sample_ms"),
        ({"sample_ms": 2.5}, "sample_ms"),
        ({"setpoint": 150.0}, "setpoint"),
    ],
)
def test_constructor_rejects_bad_configuration(kwargs, field):
    with pytest.raises(ValueError, match=field):
        make(**kwargs)


# -- agreement with simple-pid --------------------------------------------------------------


def test_matches_simple_pid_in_closed_loop():
    """Same algorithm as simple-pid (D on measurement, integral clamped to the output
    limits, gain folded in) when both see the same fixed dt."""
    kp, ki, kd = 3.0, 0.7, 0.4
    ours = make(kp=kp, ki=ki, kd=kd, out_min=0.0, out_max=100.0, setpoint=45.0)
    ref = SimplePID(kp, ki, kd, setpoint=45.0, sample_time=None, output_limits=(0.0, 100.0))
    y = 20.0
    t = 0
    for k in range(400):
        if k == 200:
            ours.set_setpoint(30.0)
            ref.setpoint = 30.0
        out = ours.update(y, t)
        # simple-pid integrates on its first call too: a negligible dt aligns it with ours.
        expected = ref(y, dt=1e-12 if k == 0 else 0.1)
        assert out == pytest.approx(expected, rel=1e-9, abs=1e-9)
        y += 0.1 * (0.5 * out - (y - 20.0)) / 5.0
        t += 100
    assert 0.0 < ours.output < 100.0  # the run saturated early on and settled since


# -- hot path and invariants ------------------------------------------------------------------


def test_update_builds_no_containers_and_calls_only_arithmetic_helpers():
    allowed_globals = {"_finite", "_clamp", "ticks_diff", "math", "TypeError"}  # caught, not raised
    for func in (PID.update, pid_module._clamp, pid_module._finite):
        for ins in dis.get_instructions(func):
            assert not ins.opname.startswith(("BUILD_", "LIST_", "DICT_", "SET_", "MAP_")), (
                func.__name__,
                ins.opname,
            )
            assert ins.opname not in ("FORMAT_VALUE", "MAKE_FUNCTION"), (func.__name__, ins)
            if ins.opname == "LOAD_GLOBAL":
                assert ins.argval in allowed_globals, (func.__name__, ins.argval)


def test_absurd_magnitudes_never_produce_nan_output():
    ours = make(kp=1e3, ki=1e3, kd=1e3, out_min=-5.0, out_max=5.0, setpoint=0.0)
    for k, y in enumerate((1e308, -1e308, 1e308, 0.0, -1e308, 1e308)):
        out = ours.update(y, 1 + k)
        assert out is None or -5.0 <= out <= 5.0
        assert -5.0 <= ours.integral <= 5.0


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
measurement = st.one_of(finite, st.sampled_from([NAN, INF, -INF, None]))
gain = st.floats(min_value=-0.5, max_value=1e3, allow_nan=False)
operation = st.one_of(
    st.tuples(st.just("update"), measurement, st.integers(-2000, 30_000)),
    st.tuples(st.just("update"), measurement, st.integers(1, 500)),
    st.tuples(st.just("setpoint"), st.one_of(finite, st.just(NAN))),
    st.tuples(st.just("tunings"), gain, gain, gain),
    st.tuples(st.just("manual"), st.one_of(st.none(), finite)),
    st.tuples(st.just("auto")),
    st.tuples(st.just("reset")),
)


@settings(max_examples=300, deadline=None)
@given(
    limits=st.tuples(finite, finite).filter(lambda lim: lim[0] < lim[1]),
    sp_limits=st.tuples(finite, finite).map(sorted),
    gains=st.tuples(*[st.floats(0, 1e3)] * 3),
    ramp_rate=st.one_of(st.none(), st.floats(min_value=1e-3, max_value=1e4)),
    reverse=st.booleans(),
    sample_ms=st.one_of(st.none(), st.integers(1, 1000)),
    start=st.integers(0, TICKS_PERIOD - 1),
    ops=st.lists(operation, max_size=60),
)
def test_property_output_and_integral_stay_within_limits(
    limits, sp_limits, gains, ramp_rate, reverse, sample_ms, start, ops
):
    lo, hi = limits
    ours = PID(
        *gains, lo, hi, *sp_limits, ramp_rate=ramp_rate, reverse=reverse, sample_ms=sample_ms
    )
    t = start
    for op in ops:
        if op[0] == "update":
            _, y, dt = op
            t = ticks_wrap(t + dt)
            previous_sp = ours.setpoint
            out = ours.update(y, t)
            if out is None:
                assert ours.auto and not (isinstance(y, float) and math.isfinite(y))
            else:
                assert lo <= out <= hi
            if ramp_rate is not None and ours.auto and dt > 0 and out is not None:
                moved_toward_target = abs(ours.setpoint - previous_sp)
                tracked_pv = ours.setpoint == min(max(y, sp_limits[0]), sp_limits[1])
                rounding = 2 * math.ulp(previous_sp) + 2 * math.ulp(ours.setpoint)
                limit = ramp_rate * dt / 1000.0 * (1 + 1e-9) + rounding
                assert tracked_pv or moved_toward_target <= limit
        elif op[0] == "setpoint":
            code = ours.set_setpoint(op[1])
            in_range = math.isfinite(op[1]) and sp_limits[0] <= op[1] <= sp_limits[1]
            assert code == (RESULT_OK if in_range else RESULT_OUT_OF_RANGE)
        elif op[0] == "tunings":
            code = ours.set_tunings(*op[1:])
            assert code == (RESULT_OK if min(op[1:]) >= 0 else RESULT_OUT_OF_RANGE)
        elif op[0] == "manual":
            ours.set_manual(op[1])
        elif op[0] == "auto":
            ours.set_auto(t)
        else:
            ours.reset()
        assert lo <= ours.integral <= hi
        assert ours.output is None or lo <= ours.output <= hi
        assert sp_limits[0] <= ours.setpoint <= sp_limits[1]
        assert sp_limits[0] <= ours.target <= sp_limits[1]


# -- issue 14: derivative filter, setpoint weighting, relay test ------------------------------


def test_derivative_filter_is_first_order_on_the_measurement_slope():
    # A measurement step of 1 at dt 0.1 s: raw D = -kd * 1 / 0.1 = -10.  With a 0.9 s
    # filter the first D is a = 0.1 / (0.9 + 0.1) of it, then decays by (1 - a) per tick.
    raw = make(kp=0.0, kd=1.0, setpoint=50.0)
    filt = make(kp=0.0, kd=1.0, setpoint=50.0, d_filter_ms=900)
    for c in (raw, filt):
        c.update(20.0, 0)
        c.update(21.0, 100)
    assert raw.d_term == pytest.approx(-10.0)
    assert filt.d_term == pytest.approx(-1.0)
    filt.update(21.0, 200)
    assert filt.d_term == pytest.approx(-0.9)


def test_derivative_filter_cuts_noise_on_the_output():
    import random

    rng = random.Random(1)
    noise = [60.0 + rng.gauss(0.0, 0.05) for _ in range(600)]
    outs = {}
    for tau in (None, 1000):
        c = make(kp=0.0, kd=1.0, setpoint=60.0, d_filter_ms=tau)
        outs[tau] = [c.update(y, 100 * k) for k, y in enumerate(noise)][1:]
    rms = {t: math.sqrt(sum(o * o for o in v) / len(v)) for t, v in outs.items()}
    assert rms[1000] < rms[None] / 5.0


def test_setpoint_weight_scales_the_proportional_kick_of_a_step():
    plain = make(kp=2.0, setpoint=20.0)
    weighted = make(kp=2.0, setpoint=20.0, sp_weight=0.25)
    for c in (plain, weighted):
        c.update(20.0, 0)
        c.update(20.0, 100)
        assert c.set_setpoint(30.0) == RESULT_OK
    assert plain.update(20.0, 200) == pytest.approx(20.0)
    assert weighted.update(20.0, 200) == pytest.approx(5.0)  # 2 * 0.25 * 10


def test_setpoint_weight_does_not_weaken_the_response_to_disturbances():
    plain = make(kp=2.0, setpoint=20.0)
    weighted = make(kp=2.0, setpoint=20.0, sp_weight=0.25)
    for c in (plain, weighted):
        c.update(20.0, 0)
        c.update(20.0, 100)
    assert plain.update(19.0, 200) == weighted.update(19.0, 200) == pytest.approx(2.0)


def test_setpoint_weight_pulls_the_integral_down_along_a_ramp():
    # A ramp at 1 unit/s followed one tick behind (error 0.1: the integral gains 0.001 per
    # tick), while the weighting takes kp * (1 - b) * 0.1 per tick off it.
    c = make(kp=1.0, ki=0.1, setpoint=20.0, sp_weight=0.5, ramp_rate=1.0, out_min=-100.0)
    c.update(20.0, 0)
    c.set_setpoint(30.0)
    for k in range(1, 11):
        c.update(c.setpoint, 100 * k)
    assert c.integral == pytest.approx(10 * (0.001 - 0.05))


def test_new_parameters_out_of_range_are_refused():
    for kw in ({"sp_weight": 1.5}, {"sp_weight": -0.1}, {"sp_weight": NAN}, {"d_filter_ms": -1}):
        with pytest.raises(ValueError):
            make(**kw)


def test_relay_oscillates_measures_and_ends_on_a_pin():
    c = make(kp=1.0, ki=0.1, out_min=0.0, out_max=1.0, setpoint=50.0)
    c.update(50.0, 0)
    assert c.start_relay(0.6, 0.1, 60.0, bias=0.5) == RESULT_OUT_OF_RANGE  # 0.5 + 0.6 > 1
    assert c.start_relay(0.2, 0.1, 50.05, bias=0.5) == RESULT_OUT_OF_RANGE  # ceiling too low
    assert c.start_relay(0.2, 0.1, 60.0, bias=0.5) == RESULT_OK
    # A sine of amplitude 1 and period 4 s: the relay switches once per half period.
    t = 0
    for k in range(1, 200):
        t = 100 * k
        y = 50.0 + math.sin(2 * math.pi * t / 4000.0)
        out = c.update(y, t)
        assert out in (pytest.approx(0.7), pytest.approx(0.3))
    assert c.relay_cycles >= 3
    assert c.relay_period_ms == 4000
    assert c.relay_amplitude == pytest.approx(1.0, abs=0.02)
    assert c.update(60.0, t + 100) == 0.0  # the ceiling: minimum output, and it stays
    assert c.update(50.0, t + 200) == 0.0
    assert c.set_manual(0.0) == RESULT_OK  # a trip's pin ends the test
    assert c.relay_state == pid_module.RELAY_OFF
