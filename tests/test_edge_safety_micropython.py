"""The safety chain (signals -> interlocks, heater verification) gives the same trip
sequence and outputs under real MicroPython as under CPython."""

from __future__ import annotations

import contextlib
import io

import pytest

from tools.micropython import node_available, run_node

SCENARIO = r"""
import gc
from edge.rtd import Pt100, cvd_resistance
from edge.signals import SensorChannel, Linear
from edge.voter import Redundant1oo2
from edge.interlocks import Interlock, InterlockSet, Action
from edge.runaway import HeaterVerifier

def f(x):
    return "None" if x is None else "{:.3f}".format(x)

def show(d):
    return ",".join("{}={}".format(k, d[k]) for k in sorted(d))

tt_a = SensorChannel("TT1A", Pt100(), filter_tau_ms=0, stale_ms=1000, range_min=-50, range_max=400)
tt_b = SensorChannel("TT1B", Pt100(), filter_tau_ms=0, stale_ms=1000, range_min=-50, range_max=400)
tt = Redundant1oo2(tt_a, tt_b, 3.0, "TT1", select="max")
hv = HeaterVerifier(check_gain_time_ms=3000, name="HTR1")
trips = []
iset = InterlockSet(
    [
        Interlock("TT1_HH", tt, "above", 150.0, hysteresis=5.0,
                  action=Action(safe=("heater",), state="aborted")),
        Interlock("TT1B_BAD", tt_b, "bad_quality", action=Action(values={"pump": 0.25})),
        Interlock("HTR1_FAULT", hv, "input_true", cause="heater_fault",
                  action=Action(safe=("heater",))),
    ],
    {"heater": 0.0},
    on_trip=trips.append,
)

def tick(t, temp_a, temp_b, power=0.5, target=None):
    tt_a.update(None if temp_a is None else cvd_resistance(temp_a), t)
    tt_b.update(None if temp_b is None else cvd_resistance(temp_b), t)
    tt.check(t)
    hv.update(target, tt.value, power, t)
    iset.evaluate(t)
    for rec in iset.pop_events():
        print("TRIP t={} id={} cause={} ch={} value={} reason={} first_out={}/{}".format(
            rec.t_ms, rec.interlock_id, rec.cause, rec.channel,
            f(rec.value) if not isinstance(rec.value, str) else rec.value,
            rec.reason, rec.first_out.interlock_id, rec.first_out.cause))
    print("t={} TT1={} q={} forced={} state={}".format(
        t, f(tt.value), tt.quality, show(iset.forced_outputs()), iset.requested_state))

t = 0
for temp in (140.0, 146.0, 149.5, 150.4, 151.2):
    tick(t, temp, temp - 0.4)
    t += 100
tick(t, 152.0, float("nan"))  # sensor B fails: 1oo2 carries on UNCERTAIN on A
t += 100
ok, reason = iset.reset(t)
print("reset", ok, reason)
tick(t, 147.0, 146.6)  # below the limit, above limit - hysteresis
t += 100
print("reset", *iset.reset(t))
tick(t, 144.0, 143.5)
t += 100
print("reset", *iset.reset(t))
tick(t, 120.0, 119.0)
t += 100
# Heater verification: full power, target far above, no rise -> fault -> trip.
for _ in range(40):
    tick(t, 120.0, 119.8, power=1.0, target=200.0)
    t += 100
    if hv.fault:
        break
print("reset", *iset.reset(t))
hv.reset()
print("reset", *iset.reset(t))
print("trips", len(trips))

# Steady state with integer raw values: no heap allocation per tick.
ch = SensorChannel("X", Linear(1, 0, 0, 1000), stale_ms=500)
steady = InterlockSet([Interlock("X_HH", ch, "above", 500), Interlock("X_BAD", ch, "bad_quality")])
def steady_ticks(t0, n):
    t = t0
    while n > 0:
        ch.update(100, t)
        ch.check(t)
        steady.evaluate(t)
        t += 10
        n -= 1
steady_ticks(0, 50)
def allocated(t0, n):
    gc.collect()
    before = gc.mem_alloc()
    steady_ticks(t0, n)
    return gc.mem_alloc() - before
if hasattr(gc, "mem_alloc"):
    # Difference of two runs: fixed costs of the measurement itself cancel out.
    print("ALLOC", allocated(3000, 300) - allocated(1000, 100))
"""


def _cpython_output() -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(SCENARIO, "<scenario>", "exec"), {"__name__": "__scenario__"})
    return buf.getvalue()


@pytest.mark.skipif(
    not node_available(), reason="node + MicroPython WebAssembly port not installed"
)
def test_safety_scenario_matches_cpython_under_micropython():
    mpy_lines = run_node(SCENARIO, packages=("protocol", "edge")).splitlines()
    alloc = [line for line in mpy_lines if line.startswith("ALLOC")]
    assert alloc == ["ALLOC 0"], "steady-state ticks allocate on MicroPython"
    mpy_lines = [line for line in mpy_lines if not line.startswith("ALLOC")]
    cpy_lines = _cpython_output().splitlines()
    assert mpy_lines == cpy_lines

    # And the CPython run itself tells the intended story.
    trip_lines = [line for line in cpy_lines if line.startswith("TRIP")]
    assert trip_lines == [
        "TRIP t=300 id=TT1_HH cause=over_temperature ch=TT1 value=150.400 reason=None first_out=TT1_HH/over_temperature",
        "TRIP t=500 id=TT1B_BAD cause=sensor_bad ch=TT1B value=150.800 reason=nan first_out=TT1_HH/over_temperature",
        "TRIP t=3900 id=HTR1_FAULT cause=heater_fault ch=HTR1 value=heater_not_heating reason=None first_out=HTR1_FAULT/heater_fault",
    ]
    assert "t=300 TT1=150.400 q=0 forced=heater=0.0 state=aborted" in cpy_lines
    assert "t=500 TT1=152.000 q=1 forced=heater=0.0,pump=0.25 state=aborted" in cpy_lines
    resets = [line for line in cpy_lines if line.startswith("reset")]
    assert resets[0].startswith("reset False TT1_HH: cause persists (over_temperature TT1 = 152")
    assert "TT1B_BAD: cause persists (sensor_bad: TT1B is nan)" in resets[0]
    assert resets[1].startswith("reset False TT1_HH: cause persists (over_temperature TT1 = 147")
    assert resets[2:] == [
        "reset True ok",
        "reset False HTR1_FAULT: cause persists (HTR1 still active, value heater_not_heating)",
        "reset True ok",
    ]
    assert cpy_lines[-1] == "trips 3"
