"""Latching interlocks: trip timing, hysteresis, first-out, forced outputs, reset."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import TICKS_PERIOD, ticks_add, ticks_diff
from edge.interlocks import Action, Interlock, InterlockSet
from edge.runaway import HeaterVerifier
from edge.signals import Linear, SensorChannel

NAN = float("nan")
SAFE = {"heater": 0.0, "pump": 0.0, "valve": False}


def channel(name="TT1", stale_ms=None):
    return SensorChannel(name, Linear(1.0), stale_ms=stale_ms)


def high_temp(ch, **kw):
    kw.setdefault("action", Action(safe=("heater",), state="aborted"))
    return Interlock("TT1_HH", ch, "above", 150.0, **kw)


class DigitalInput:
    def __init__(self, name, value=False):
        self.name = name
        self.value = value


# ------------------------------------------------------------------------ trip timing


def test_trip_in_the_same_tick_the_sample_crosses_the_limit():
    ch = channel()
    iset = InterlockSet([high_temp(ch)], SAFE)
    crossed_at = tripped_at = None
    t = 0
    temp = 140.0
    while tripped_at is None and t < 10_000:
        temp += 0.37
        ch.update(temp, t)  # read sensors
        iset.evaluate(t)  # interlocks
        outputs = {"heater": 1.0, **iset.forced_outputs()}  # write outputs
        if crossed_at is None and temp > 150.0:
            crossed_at = t
        if outputs["heater"] == 0.0:
            tripped_at = t
        t += 10
    assert crossed_at is not None
    assert tripped_at == crossed_at
    assert iset.first_out.value > 150.0 and iset.first_out.t_ms == crossed_at


def test_value_equal_to_limit_does_not_trip():
    ch = channel()
    iset = InterlockSet([high_temp(ch)], SAFE)
    ch.update(150.0, 0)
    assert not iset.evaluate(0)
    ch.update(150.001, 1)
    assert iset.evaluate(1)


@pytest.mark.parametrize("t0", [0, TICKS_PERIOD - 300])  # also across the tick wrap
def test_on_delay_trips_at_first_tick_with_elapsed_at_least_delay(t0):
    ch = channel()
    iset = InterlockSet([high_temp(ch, on_delay_ms=250)], SAFE)
    ticks = [0, 90, 180, 240, 249, 251, 300]  # irregular tick spacing
    ch.update(151.0, ticks_add(t0, 0))
    results = []
    for dt in ticks:
        t = ticks_add(t0, dt)
        iset.evaluate(t)
        results.append((dt, iset.active))
    assert results == [
        (0, False),
        (90, False),
        (180, False),
        (240, False),
        (249, False),
        (251, True),
        (300, True),
    ]
    assert ticks_diff(iset.first_out.t_ms, t0) == 251


def test_on_delay_exact_boundary_and_restart_when_condition_drops():
    ch = channel()
    iset = InterlockSet([high_temp(ch, on_delay_ms=200)], SAFE)
    ch.update(151.0, 0)
    iset.evaluate(0)
    iset.evaluate(150)
    ch.update(149.0, 160)  # drops out: the timer restarts
    iset.evaluate(160)
    ch.update(151.0, 170)
    iset.evaluate(170)
    iset.evaluate(369)
    assert not iset.active
    iset.evaluate(370)  # elapsed == on_delay: trips
    assert iset.active and iset.first_out.t_ms == 370


def test_reset_keeps_other_interlocks_on_delay_running():
    ch = channel()
    ch2 = channel("TT2")
    fast = high_temp(ch)
    slow = Interlock("TT2_HH", ch2, "above", 150.0, on_delay_ms=1000)
    iset = InterlockSet([fast, slow], SAFE)
    ch.update(151.0, 0)
    ch2.update(151.0, 0)
    iset.evaluate(0)
    ch.update(100.0, 500)
    iset.evaluate(500)
    assert iset.reset(500) == (True, "ok")
    iset.evaluate(1000)
    assert slow.tripped and iset.first_out.interlock_id == "TT2_HH"


# ---------------------------------------------------------- latching, hysteresis, reset


def test_trip_latches_and_reset_respects_hysteresis():
    ch = channel()
    iset = InterlockSet([high_temp(ch, hysteresis=5.0)], SAFE)
    ch.update(152.3, 0)
    iset.evaluate(0)
    assert iset.forced_outputs() == {"heater": 0.0}
    assert iset.requested_state == "aborted"

    ok, reason = iset.reset(10)
    assert not ok
    assert "TT1_HH" in reason and "152.3" in reason and "<= 145" in reason

    ch.update(147.0, 20)  # below the limit, but not below limit - hysteresis
    iset.evaluate(20)
    assert iset.active and iset.forced_outputs() == {"heater": 0.0}  # still latched
    ok, reason = iset.reset(30)
    assert not ok and "147" in reason

    ch.update(145.0, 40)
    iset.evaluate(40)
    assert iset.reset(50) == (True, "ok")
    assert not iset.active
    assert iset.forced_outputs() == {}
    assert iset.first_out is None and iset.trips == [] and iset.requested_state is None
    assert iset.last_reset_ms == 50
    assert iset.reset(60) == (True, "no trips latched")


def test_below_condition_and_hysteresis():
    ch = channel("FT1")
    low_flow = Interlock(
        "FT1_LL",
        ch,
        "below",
        2.0,
        hysteresis=0.5,
        cause="low_flow",
        action=Action(safe=("heater",)),
    )
    iset = InterlockSet([low_flow], SAFE)
    ch.update(2.0, 0)
    assert not iset.evaluate(0)
    ch.update(1.9, 10)
    assert iset.evaluate(10)
    assert iset.first_out.cause == "low_flow"
    ch.update(2.4, 20)
    ok, reason = iset.reset(20)
    assert not ok and ">= 2.5" in reason
    ch.update(2.5, 30)
    assert iset.reset(30) == (True, "ok")


def test_new_trip_after_reset_is_a_new_first_out():
    ch = channel()
    iset = InterlockSet([high_temp(ch)], SAFE)
    ch.update(151.0, 0)
    iset.evaluate(0)
    ch.update(100.0, 10)
    assert iset.reset(10)[0]
    ch.update(155.0, 20)
    iset.evaluate(20)
    events = iset.pop_events()
    assert [(e.interlock_id, e.t_ms, e.is_first_out) for e in events] == [
        ("TT1_HH", 0, True),
        ("TT1_HH", 20, True),
    ]


# ------------------------------------------------------------------ first-out, events


def test_first_out_and_exactly_one_event_per_trip():
    temp = channel("TT1")
    press = channel("PT1")
    received = []
    iset = InterlockSet(
        [
            high_temp(temp),
            Interlock(
                "PT1_HH", press, "above", 10.0, cause="over_pressure", action=Action(safe=("pump",))
            ),
        ],
        SAFE,
        on_trip=received.append,
    )
    temp.update(20.0, 0)
    press.update(12.0, 0)
    iset.evaluate(0)
    temp.update(170.0, 100)  # the temperature goes up as a consequence
    iset.evaluate(100)
    for t in range(200, 1000, 100):  # both causes persist: no further events
        temp.update(170.0, t)
        iset.evaluate(t)
    events = iset.pop_events()
    assert events == received
    assert [(e.interlock_id, e.cause, e.channel, e.value, e.t_ms) for e in events] == [
        ("PT1_HH", "over_pressure", "PT1", 12.0, 0),
        ("TT1_HH", "over_temperature", "TT1", 170.0, 100),
    ]
    # Every event carries the first-out cause.
    assert all(e.first_out.interlock_id == "PT1_HH" for e in events)
    assert all(e.first_out.cause == "over_pressure" for e in events)
    assert iset.first_out is events[0] and iset.trips == events
    assert iset.pop_events() == ()
    assert iset.forced_outputs() == {"pump": 0.0, "heater": 0.0}
    assert iset.requested_state == "aborted"  # PT1_HH requests none; TT1_HH does


def test_same_tick_trips_ranked_by_declaration_order():
    a = channel("A")
    b = channel("B")
    iset = InterlockSet(
        [Interlock("B_HH", b, "above", 1.0), Interlock("A_HH", a, "above", 1.0)], SAFE
    )
    a.update(2.0, 0)
    b.update(2.0, 0)
    iset.evaluate(0)
    assert [e.interlock_id for e in iset.pop_events()] == ["B_HH", "A_HH"]
    assert iset.first_out.interlock_id == "B_HH"


def test_event_queue_is_bounded():
    chans = [channel(f"C{i}") for i in range(5)]
    iset = InterlockSet(
        [Interlock(f"C{i}_HH", c, "above", 0.0) for i, c in enumerate(chans)], max_events=3
    )
    for c in chans:
        c.update(1.0, 0)
    iset.evaluate(0)
    assert [e.interlock_id for e in iset.pop_events()] == ["C2_HH", "C3_HH", "C4_HH"]
    assert iset.events_dropped == 2
    assert len(iset.trips) == 5  # the record itself is complete


# ---------------------------------------------------------------------- forced outputs


def test_safe_value_beats_declared_and_earliest_declared_wins():
    a = channel("A")
    b = channel("B")
    c = channel("C")
    iset = InterlockSet(
        [
            Interlock("A_HH", a, "above", 1.0, action=Action(values={"pump": 0.3, "valve": True})),
            Interlock("B_HH", b, "above", 1.0, action=Action(values={"pump": 0.8}, state="held")),
            Interlock("C_HH", c, "above", 1.0, action=Action(safe=("valve",))),
        ],
        SAFE,
    )
    a.update(0.0, 0)
    c.update(0.0, 0)
    b.update(2.0, 0)
    iset.evaluate(0)
    assert iset.forced_outputs() == {"pump": 0.8}
    assert iset.requested_state == "held"
    a.update(2.0, 10)
    iset.evaluate(10)
    assert iset.forced_outputs() == {"pump": 0.8, "valve": True}  # B tripped first
    c.update(2.0, 20)
    iset.evaluate(20)
    assert iset.forced_outputs() == {"pump": 0.8, "valve": False}  # safe value wins


def test_forced_outputs_not_rebuilt_while_nothing_changes():
    ch = channel()
    iset = InterlockSet([high_temp(ch)], SAFE)
    empty = iset.forced_outputs()
    for t in range(0, 500, 10):
        ch.update(100.0, t)
        assert not iset.evaluate(t)
        assert iset.forced_outputs() is empty
    ch.update(160.0, 500)
    iset.evaluate(500)
    latched = iset.forced_outputs()
    for t in range(510, 1000, 10):
        iset.evaluate(t)
        assert iset.forced_outputs() is latched


# ------------------------------------------------------------------- quality and inputs


def test_bad_quality_trips_with_sensor_bad_cause():
    ch = channel()
    iset = InterlockSet([high_temp(ch)], SAFE)
    ch.update(120.0, 0)
    iset.evaluate(0)
    ch.update(NAN, 10)
    iset.evaluate(10)
    rec = iset.first_out
    assert (rec.cause, rec.reason, rec.value, rec.channel) == ("sensor_bad", "nan", 120.0, "TT1")
    assert iset.forced_outputs() == {"heater": 0.0}
    ok, reason = iset.reset(20)
    assert not ok and "sensor_bad" in reason and "nan" in reason
    ch.update(120.0, 30)
    assert iset.reset(30) == (True, "ok")


def test_stale_channel_trips():
    ch = channel(stale_ms=500)
    iset = InterlockSet([high_temp(ch)], SAFE)
    ch.update(120.0, 0)
    for t in range(0, 1000, 100):
        ch.check(t)
        iset.evaluate(t)
    assert iset.first_out.t_ms == 600 and iset.first_out.reason == "stale"


def test_trip_on_bad_false_ignores_bad_but_blocks_reset():
    ch = channel()
    il = high_temp(ch, trip_on_bad=False)
    iset = InterlockSet([il], SAFE)
    ch.update(120.0, 0)
    ch.update(NAN, 10)
    assert not iset.evaluate(10)  # the frozen 120 is not judged, no trip on BAD
    ch.update(160.0, 20)
    assert iset.evaluate(20)
    ch.update(NAN, 30)
    ok, reason = iset.reset(30)
    assert not ok and "sensor_bad" in reason


def test_never_sampled_channel_trips_as_sensor_bad_once_stale():
    ch = channel(stale_ms=1000)
    iset = InterlockSet([high_temp(ch)], SAFE)
    ch.check(0)
    assert not iset.evaluate(0)  # still starting: no value to judge, no trip yet
    ch.check(1000)
    assert not iset.evaluate(1000)
    ch.check(1001)
    assert iset.evaluate(1001)
    assert iset.first_out.cause == "sensor_bad" and iset.first_out.reason == "stale"


def test_bad_quality_condition():
    ch = channel()
    iset = InterlockSet([Interlock("TT1_BAD", ch, "bad_quality", on_delay_ms=300)], SAFE)
    ch.update(20.0, 0)
    iset.evaluate(0)
    ch.update(None, 100)
    iset.evaluate(100)
    ch.update(20.0, 200)  # a one-sample glitch is filtered by the on-delay
    iset.evaluate(200)
    ch.update(None, 300)
    iset.evaluate(300)
    iset.evaluate(599)
    assert not iset.active
    iset.evaluate(600)
    assert iset.first_out.cause == "sensor_bad"


def test_input_true_estop():
    estop = DigitalInput("ESTOP")
    iset = InterlockSet(
        [
            Interlock(
                "ESTOP", estop, "input_true", cause="estop", action=Action(safe=("heater", "pump"))
            )
        ],
        SAFE,
    )
    iset.evaluate(0)
    assert not iset.active
    estop.value = 1
    iset.evaluate(10)
    assert iset.first_out.cause == "estop" and iset.forced_outputs() == {"heater": 0.0, "pump": 0.0}
    ok, reason = iset.reset(20)
    assert not ok and "ESTOP" in reason and "still active" in reason
    estop.value = 0
    assert iset.reset(30) == (True, "ok")


def test_heater_verifier_feeds_an_input_true_interlock():
    hv = HeaterVerifier(check_gain_time_ms=1000, name="HTR1_VERIFY")
    iset = InterlockSet(
        [
            Interlock(
                "HTR1_FAULT",
                hv,
                "input_true",
                cause="heater_fault",
                action=Action(safe=("heater",)),
            )
        ],
        SAFE,
    )
    t = 0
    while not iset.active:
        hv.update(150.0, 25.0, 1.0, t)  # full power, no rise
        iset.evaluate(t)
        t += 100
    assert iset.first_out.value == "heater_not_heating" and iset.first_out.channel == "HTR1_VERIFY"
    assert not iset.reset(t)[0]  # the fault latches until the verifier is reset
    hv.reset()
    assert iset.reset(t)[0]


# ------------------------------------------------------------------------ rate of rise


def _ramp(iset, ch, slope_per_s, t_end, t_start=0, v0=20.0, step=100):
    t = t_start
    while t <= t_end:
        ch.update(v0 + slope_per_s * (t - t_start) / 1000.0, t)
        iset.evaluate(t)
        if iset.active:
            return t
        t += step
    return None


def test_rate_of_rise_trips_after_a_full_window():
    ch = channel()
    ror = Interlock(
        "TT1_ROR", ch, "rate_of_rise", 1.0, window_ms=1000, hysteresis=0.5, cause="runaway_rate"
    )
    iset = InterlockSet([ror], SAFE)
    assert _ramp(iset, ch, 2.0, 5000) == 1000
    assert iset.first_out.value == pytest.approx(2.0)
    assert iset.first_out.cause == "runaway_rate"
    ok, reason = iset.reset(1000)
    assert not ok and "TT1_ROR" in reason and "<= 0.5/s" in reason
    # Levelled off: once a full window of flat history exists the cause is gone.
    for t in range(1100, 2200, 100):
        ch.update(22.0, t)
        iset.evaluate(t)
    assert ror.rate == pytest.approx(0.0)
    assert iset.reset(2200) == (True, "ok")


def test_slow_rise_does_not_trip_rate():
    ch = channel()
    iset = InterlockSet([Interlock("R", ch, "rate_of_rise", 1.0, window_ms=1000)], SAFE)
    assert _ramp(iset, ch, 0.5, 20_000) is None


def test_rate_of_rise_on_a_channel_still_starting_waits_for_readings():
    # A hardware sensor delivers nothing for its first ticks (MAX31865 settle time):
    # value None with quality UNCERTAIN, not BAD.  The rate must start from the first
    # reading, not fail on the empty ones a window later.
    ch = channel()
    ror = Interlock("R", ch, "rate_of_rise", 1.0, window_ms=1000)
    iset = InterlockSet([ror], SAFE)
    for t in range(0, 500, 100):
        ch.check(t)
        iset.evaluate(t)
        assert ch.value is None and ror.rate is None
    for t in range(500, 1500, 100):
        ch.update(20.0, t)
        iset.evaluate(t)
        assert ror.rate is None  # less than a full window of readings yet
    for t in range(1500, 2600, 100):
        ch.update(20.0 + 2.0 * (t - 1500) / 1000.0, t)
        iset.evaluate(t)
    assert ror.rate == pytest.approx(2.0)
    assert iset.active and iset.first_out.cause == ror.cause


def test_rate_history_restarts_after_bad_period():
    ch = channel()
    ror = Interlock("R", ch, "rate_of_rise", 1.0, window_ms=1000, trip_on_bad=False)
    iset = InterlockSet([ror], SAFE)
    _ramp(iset, ch, 0.0, 1500)
    ch.update(NAN, 1600)
    iset.evaluate(1600)
    assert ror.rate is None
    # A step after the gap is not a rate until a full window of new history exists.
    for t in range(1700, 2700, 100):
        ch.update(80.0, t)
        iset.evaluate(t)
        assert ror.rate is None or ror.rate == 0.0
    assert not iset.active


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"condition": "over"}, "condition must be one of"),
        ({"condition": "above"}, "limit must be a finite number, got None"),
        ({"condition": "above", "limit": NAN}, "limit must be a finite number"),
        ({"condition": "above", "limit": 1, "on_delay_ms": -1}, "on_delay_ms must be >= 0"),
        ({"condition": "above", "limit": 1, "hysteresis": -1}, "hysteresis must be >= 0"),
        ({"condition": "above", "limit": 1, "action": ("heater",)}, "action must be an Action"),
        ({"condition": "rate_of_rise", "limit": 1, "window_ms": 0}, "window_ms must be >= 1"),
    ],
)
def test_interlock_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Interlock("X1", channel(), **kwargs)


def test_set_validation():
    ch = channel()
    with pytest.raises(ValueError, match="actuator 'stirrer' has no entry in safe_values"):
        InterlockSet([Interlock("X", ch, "above", 1, action=Action(safe=("stirrer",)))], SAFE)
    with pytest.raises(ValueError, match="duplicate interlock id 'X'"):
        InterlockSet([Interlock("X", ch, "above", 1), Interlock("X", ch, "below", 0)])
    with pytest.raises(ValueError, match="tuple of actuator names"):
        Action(safe="heater")


# ----------------------------------------------------------------- model-based property

ops = st.lists(
    st.one_of(
        st.tuples(st.just("value"), st.floats(0.0, 200.0)),
        st.tuples(st.just("nan"), st.just(0.0)),
        st.tuples(st.just("reset"), st.just(0.0)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, TICKS_PERIOD - 1))
def test_latch_and_reset_follow_the_model(seq, t0):
    """Once tripped, forced outputs stay until an accepted reset; a reset is accepted iff
    no latched interlock's cause persists; exactly one event per trip."""
    ch = channel()
    hh = Interlock("HH", ch, "above", 150.0, hysteresis=5.0, action=Action(safe=("heater",)))
    ll = Interlock("LL", ch, "below", 10.0, hysteresis=2.0, action=Action(values={"pump": 0.2}))
    events = []
    iset = InterlockSet([hh, ll], SAFE, on_trip=events.append)
    ch.update(100.0, t0)
    iset.evaluate(t0)

    latched = set()
    trips = 0
    value, bad = 100.0, False
    t = t0
    for op, x in seq:
        t = ticks_add(t, 10)
        if op == "value":
            value, bad = x, False
            ch.update(x, t)
        elif op == "nan":
            bad = True
            ch.update(NAN, t)
        else:
            persists = (("HH" in latched) and (bad or value > 145.0)) or (
                ("LL" in latched) and (bad or value < 12.0)
            )
            ok, reason = iset.reset(t)
            assert ok == (not persists), reason
            if ok:
                latched.clear()
                assert iset.forced_outputs() == {}
        iset.evaluate(t)
        for name, cond in (("HH", bad or value > 150.0), ("LL", bad or value < 10.0)):
            if cond and name not in latched:
                latched.add(name)
                trips += 1
        expected = {}
        if "LL" in latched:
            expected["pump"] = 0.2
        if "HH" in latched:
            expected["heater"] = 0.0
        assert iset.forced_outputs() == expected
        assert iset.active == bool(latched)
        assert {il.id for il in (hh, ll) if il.tripped} == latched
        assert len(iset.trips) == len(latched)
    assert len(events) == trips


# ------------------------------------------------------------- the shared Condition


def test_condition_fires_after_its_on_delay_and_the_delay_restarts_when_it_drops():
    from edge.interlocks import Condition

    ch = channel()
    cond = Condition("TT1_H", ch, "above", 150.0, on_delay_ms=300, cause="too_hot")
    fired = []
    # Above from t=0 to 200, below at 200 (restart), above again from 300: fires at 600.
    for t, temp in [(0, 151), (100, 151), (200, 149), (300, 151), (400, 151), (500, 151)]:
        ch.update(float(temp), t)
        fired.append(cond.held(t))
    assert fired == [None] * 6
    ch.update(151.0, 600)
    assert cond.held(600) == "too_hot"
    # Fired: the delay starts over at the next tick that sees it (700), so holding on
    # fires again a full on_delay_ms later.
    for t in (700, 800, 900):
        ch.update(151.0, t)
        assert cond.held(t) is None
    ch.update(151.0, 1000)
    assert cond.held(1000) == "too_hot"


def test_interlock_and_alarm_share_the_condition_and_fire_in_the_same_tick():
    from edge.alarms import Alarm, AlarmSet

    ch = channel()
    iset = InterlockSet([high_temp(ch, on_delay_ms=250)], SAFE)
    alarms = AlarmSet([Alarm("TT1_H", ch, "above", 150.0, on_delay_ms=250)])
    tripped_at = raised_at = None
    for t in range(0, 1000, 50):
        ch.update(149.0 if t < 300 else 152.0, t)
        if iset.evaluate(t) and tripped_at is None:
            tripped_at = t
        alarms.evaluate(t)
        if alarms.pop_changes() and raised_at is None:
            raised_at = t
    assert tripped_at == raised_at == 550  # above from 300, held 250 ms


def test_an_alarm_raises_again_in_the_tick_after_it_cleared():
    from edge.alarms import Alarm, AlarmSet

    ch = channel()
    alarms = AlarmSet([Alarm("TT1_H", ch, "above", 150.0)])
    seen = []
    for t, temp in [(0, 151.0), (100, 149.0), (200, 151.0)]:
        ch.update(temp, t)
        alarms.evaluate(t)
        seen.extend((t, raised) for _a, raised in alarms.pop_changes())
    assert seen == [(0, True), (100, False), (200, True)]


def test_a_conditions_documented_defaults():
    """Interlocks and alarms pass every argument; a bare Condition (the built-in flag
    alarms, tools) gets these: no hysteresis, cause over_temperature, a BAD channel
    counts (sensor_bad), a one-second rate window."""
    from edge.interlocks import DEFAULT_WINDOW_MS, Condition

    ch = channel()
    cond = Condition("c", ch, "above", 100.0)
    assert cond.hysteresis == 0 and cond.on_delay_ms == 0
    assert cond.trip_on_bad is True
    assert cond.window_ms == DEFAULT_WINDOW_MS == 1000
    ch.update(100.5, 0)
    assert cond.held(0) == "over_temperature"
    ch.update(100.0, 10)
    assert cond.cause_now(True) is None  # no hysteresis: at the limit it is gone
    ch.update(NAN, 20)
    assert cond.held(20) == "sensor_bad"
