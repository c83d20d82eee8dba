"""The plant emulator with the real edge runtime of every module of the demo line.

Physics checked against closed forms: pump lag, Hagen-Poiseuille plus the BPR setpoint,
the compliance law C dP/dt = Q for a blocked line, relief valves, heating under the real
PID, an exotherm caught by the reactor's own interlocks, residence time and dispersion
(tanks-in-series), determinism, and one visible effect per fault kind.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge.rtd import cvd_resistance
from emulator.emulation import FAULT_KINDS, LineEmulation
from line.hydraulics import hagen_poiseuille_bar
from line.loader import load_line
from protocol.constants import QUALITY_BAD, QUALITY_GOOD, QUALITY_UNCERTAIN, RESULT_OK

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "lines" / "demo.toml"


def fault(kind, module, channel=None, **params):
    return SimpleNamespace(kind=kind, module=module, channel=channel, params=params)


def channel(em, module, name):
    for ch, _ in em.nodes[module].sensors:
        if ch.name == name:
            return ch
    for ch in em.nodes[module].derived:
        if ch.name == name:
            return ch
    raise KeyError(name)


def trips(em, module):
    return [e.cause for e in em.sinks[module].trips()]


def running(
    line=None,
    seed=0,
    flows=(0.5, 0.5),
    bpr=5.0,
    reactor=None,
    settle_s=40.0,
    start=("pump_a", "pump_b", "bpr1", "uv1", "valve1"),
):
    """The demo line leased, started, pumping, the BPR controlling; settled."""
    em = LineEmulation(line or DEMO, seed=seed)
    em.lease_all()
    for m in start + (("reactor1",) if reactor is not None else ()):
        assert em.state(m, "start").result == RESULT_OK
    em.set_setpoint("pump_a", "flow", flows[0])
    em.set_setpoint("pump_b", "flow", flows[1])
    em.set_setpoint("bpr1", "pressure_ctl", bpr)
    if "uv1" in start:
        em.set_setpoint("uv1", "lamp", 1.0)
    if reactor is not None:
        em.set_setpoint("reactor1", "coil_temp", reactor)
    em.run_for(settle_s, lease_every_s=1.0)
    return em


def test_pump_flow_follows_setpoint_with_first_order_lag():
    em = LineEmulation(DEMO)
    em.lease_all()
    em.state("pump_a", "start")
    em.run_for(1.0, lease_every_s=1.0)
    assert em.plant.flow_ml_min("pump_a") == 0.0
    em.set_setpoint("pump_a", "flow", 2.0)
    tau = em.line.modules["pump_a"].response_s
    em.run_for(tau, lease_every_s=1.0)
    # One time constant: 63 % of the step (ticks of 50/100 ms and 2 % ripple aside).
    assert 0.5 * 2.0 < em.plant.flow_ml_min("pump_a") < 0.72 * 2.0
    em.run_for(5.0, lease_every_s=1.0)
    flows = []
    for _ in range(40):
        em.run_for(0.1, lease_every_s=1.0)
        flows.append(em.plant.flow_ml_min("pump_a"))
    mean = sum(flows) / len(flows)
    assert mean == pytest.approx(2.0, rel=0.01)
    ripple = (max(flows) - min(flows)) / 2 / mean
    assert 0.005 < ripple < 0.03  # the 2 % stroke pulsation


def test_steady_pressure_is_bpr_setpoint_plus_hagen_poiseuille():
    em = running(flows=(2.5, 2.5), settle_s=90.0)
    line, plant = em.line, em.plant
    mu = line.solvent.viscosity_at(line.ambient_c)
    q_a, q = 2.5, 5.0

    def hp(cid, flow):
        comp = line.component(cid)
        if comp.kind == "tube":
            length = comp.length_m
        elif comp.kind == "pump":
            length = comp.length_m
        else:  # coil and tee: their volume through their bore
            area = math.pi * (comp.inner_diameter_mm / 2) ** 2  # mm^2
            length = comp.volume_ml * 1000.0 / area / 1000.0
        return hagen_poiseuille_bar(mu, length, comp.inner_diameter_mm, flow)

    expected_drop = (
        hp("pump_a", q_a)
        + hp("tube_a", q_a)
        + hp("mixer", q)
        + hp("tube_m", q)
        + hp("reactor1", q)
        + hp("tube_r", q)
    )
    drops, bprs, sensed = [], [], []
    for _ in range(50):
        em.run_for(0.2, lease_every_s=1.0)
        drops.append(plant.pressure_bar("pump_a") - plant.pressure_bar("bpr1"))
        bprs.append(plant.pressure_bar("bpr1"))
        sensed.append(channel(em, "pump_a", "pressure").value)
    mean = sum(drops) / len(drops)
    assert expected_drop > 0.25  # sizeable: 1/16" tubing at 5 mL/min
    assert mean == pytest.approx(expected_drop, rel=0.03)
    assert sum(bprs) / len(bprs) == pytest.approx(5.0, rel=0.02)
    assert sum(sensed) / len(sensed) == pytest.approx(5.0 + expected_drop, rel=0.03)


def test_sudden_clog_rises_at_compliance_rate_until_the_pump_trips():
    em = running(settle_s=60.0)
    plant = em.plant
    upstream = ["pump_a", "pump_b", "tube_a", "tube_b", "mixer", "tube_m", "reactor1"]
    compliance = sum(plant.compliance_ml_bar(c) for c in upstream)
    q_total = (plant.flow_ml_min("pump_a") + plant.flow_ml_min("pump_b")) / 60.0  # mL/s
    em.apply_fault(fault("clog", "reactor1", sudden=True))
    p0, t0 = plant.pressure_bar("pump_a"), em.now_ms
    em.run_for(2.0, lease_every_s=1.0)
    rate = (plant.pressure_bar("pump_a") - p0) / ((em.now_ms - t0) / 1000.0)
    assert rate == pytest.approx(q_total / compliance, rel=0.05)  # ~2 bar/s: finite
    assert em.run_until(lambda: "over_pressure" in trips(em, "pump_a"), 30.0, 1.0)
    em.run_for(5.0, lease_every_s=1.0)
    assert plant.flow_ml_min("pump_a") < 0.01 and plant.flow_ml_min("pump_b") < 0.01
    assert em.nodes["pump_a"].sm.state_name == "aborted"
    weakest = min(plant.component_ratings().values())
    assert 20.0 < plant.max_pressure_seen < weakest
    assert plant.over_rating() == [] and plant.relieved_ml == 0.0


def test_relief_valve_caps_pressure_below_the_pump_interlock():
    line = load_line(DEMO)
    line.protections[0].params["set_bar"] = 12.0
    em = running(line=line, settle_s=40.0)
    em.apply_fault(fault("clog", "reactor1", sudden=True))
    em.run_for(30.0, lease_every_s=1.0)
    plant = em.plant
    assert 12.0 < plant.max_pressure_seen < 12.5  # 1 mL/min through a 50 mL/min valve
    assert plant.relieved_ml > 0.3  # what the pumps pushed since it opened
    assert trips(em, "pump_a") == [] and em.nodes["pump_a"].sm.state_name == "execute"


def test_reactor_reaches_setpoint_under_the_real_pid_within_three_minutes():
    em = running(reactor=80.0, settle_s=0.0)
    reached = em.run_until(lambda: em.plant.temperature_c("reactor1") >= 79.0, 180.0, 1.0)
    assert reached, em.plant.temperature_c("reactor1")
    em.run_for(240.0, lease_every_s=1.0)
    assert em.plant.temperature_c("reactor1") == pytest.approx(80.0, abs=2.0)
    assert trips(em, "reactor1") == []
    # The board sees a PT100's resistance, quantised by the MAX31865.
    raw = em.plant.sensor_raw("reactor1", "temp_a")
    assert raw == pytest.approx(cvd_resistance(em.plant.temperature_c("reactor1")), abs=0.2)
    assert raw / (430.0 / 32768) == pytest.approx(round(raw / (430.0 / 32768)), abs=1e-6)


def test_exotherm_runs_away_without_control_and_the_interlocks_catch_it():
    em = running(reactor=60.0, settle_s=200.0)
    assert 55.0 < em.plant.temperature_c("reactor1") < 70.0  # near 60, overshooting
    em.apply_fault(fault("exotherm", "reactor1", heat_w=50.0, doubling_c=10.0))
    caught = em.run_until(lambda: trips(em, "reactor1"), 120.0, 1.0)
    assert caught
    first = trips(em, "reactor1")[0]
    assert first in ("uncontrolled_heating", "temperature_rising_fast", "over_temperature")
    assert em.nodes["reactor1"].outputs()["heater"] == 0.0
    # Nothing the module can do stops the reaction: it keeps heating past the limits.
    em.run_until(lambda: em.plant.cutout_open("reactor1"), 400.0, 1.0)
    assert em.plant.cutout_open("reactor1")
    assert "over_temperature" in trips(em, "reactor1") or "sensor_bad" in trips(em, "reactor1")
    assert "cutout_tripped" in trips(em, "reactor1")
    assert em.plant.heater_power_w("reactor1") == 0.0


def test_residence_time_and_a_dispersed_front_at_the_analyzer():
    # A tracer, not chemistry: the demo line without its reactor's kinetics, reagent A
    # absorbing at the lamp's line.
    line = load_line(DEMO)
    line.modules["reactor1"].params.pop("kinetics")
    line.modules["uv1"].params["absorptivity"] = {"pump_a": 8.0}
    em = running(line=line, flows=(1.0, 1.0), settle_s=0.0)
    plant = em.plant
    uv = channel(em, "uv1", "uv")
    t0 = em.now_ms
    conc, seen = [], []
    for _ in range(5000):
        em.step()
        if em.now_ms % 1000 == 0:
            em.lease_all()
        conc.append(((em.now_ms - t0) / 1000.0, plant.concentration("uv1")["pump_a"]))
        seen.append(uv.value)
    final = conc[-1][1]
    assert final == pytest.approx(0.5, rel=0.01)  # 1 M diluted 1:1

    def crossing(fraction):
        return next(t for t, c in conc if c >= fraction * final)

    # Tanks-in-series prediction: mean = sum V/Q, variance = sum (V/Q)^2 / N.
    mean = var = 0.0
    for cid, volume, tanks in plant.transport_stages():
        if cid in ("pump_b", "tube_b", "valve1"):
            continue
        q = 1.0 if cid in ("pump_a", "tube_a") else 2.0
        tau = volume / q * 60.0
        mean += tau
        var += tau * tau / tanks
    assert crossing(0.5) == pytest.approx(mean, rel=0.03)  # ~ 10 mL / 2 mL/min
    rise = crossing(0.9) - crossing(0.1)
    assert rise > 0.0
    assert rise == pytest.approx(2 * 1.2816 * math.sqrt(var), rel=0.1)
    # The analyzer module sees the same smoothed step through its lamp and photodiode.
    assert uv.quality == QUALITY_GOOD
    assert 0.75 < seen[-1] < 0.95  # 0.8 AU through the board's coarse table
    assert abs(seen[1000]) < 0.01 and seen[2500] < seen[3000] < seen[3500]


def _trace(seed):
    em = running(seed=seed, settle_s=20.0)
    return [p for sink in em.sinks.values() for p in sink.telemetry]


def test_same_seed_same_trace_other_seed_other_noise():
    a, b, c = _trace(3), _trace(3), _trace(4)
    assert len(a) == len(b) > 50
    assert a == b
    assert a != c


# --- one visible effect per fault kind ---------------------------------------------------------


def test_fault_kinds_cover_the_documented_set():
    assert set(FAULT_KINDS) == {
        "clog",
        "leak",
        "heater-stuck-on",
        "heater-open",
        "sensor-open",
        "sensor-short",
        "sensor-stuck",
        "sensor-drift",
        "pump-stall",
        "dry-feed",
        "exotherm",
        "power-loss",
        "partition",
        "broker-outage",
        "host-crash",
    }
    em = LineEmulation(DEMO)
    with pytest.raises(ValueError, match="does not fit"):
        em.apply_fault(fault("heater-open", "pump_a"))
    with pytest.raises(ValueError, match="not in line"):
        em.apply_fault(fault("clog", "nowhere"))


def test_progressive_clog_raises_the_pump_pressure():
    em = running()
    em.apply_fault(fault("clog", "tube_r", rate=0.05))
    em.run_for(10.0, lease_every_s=1.0)
    early = channel(em, "pump_a", "pressure").value
    assert early < 6.0  # 50 % open: laminar resistance x4, still small
    em.run_for(15.0, lease_every_s=1.0)
    assert channel(em, "pump_a", "pressure").value > 10.0
    # downstream of the clog: below the setpoint, and held there by the closed BPR
    assert channel(em, "bpr1", "pressure").value < 4.5
    assert em.plant.through_ml_min("uv1") < 0.1


def test_leak_loses_pressure_and_product():
    em = running()
    f = fault("leak", "reactor1", conductance_ml_min_bar=0.5)
    em.apply_fault(f)
    em.run_for(20.0, lease_every_s=1.0)
    assert channel(em, "bpr1", "pressure").value < 2.5  # the BPR closes but cannot hold
    assert em.plant.leaked_ml > 0.3
    assert em.plant.through_ml_min("uv1") < 0.1
    em.clear_fault(f)
    em.run_for(40.0, lease_every_s=1.0)
    assert channel(em, "bpr1", "pressure").value == pytest.approx(5.0, abs=0.3)


def test_heater_stuck_on_heats_with_the_output_off():
    em = LineEmulation(DEMO)
    em.apply_fault(fault("heater-stuck-on", "reactor1"))
    em.run_for(40.0)
    assert em.nodes["reactor1"].outputs()["heater"] == 0.0
    assert em.plant.temperature_c("reactor1") > 40.0
    assert "uncontrolled_heating" in trips(em, "reactor1")


def test_heater_open_never_heats_and_verification_trips():
    em = running(reactor=80.0, settle_s=0.0, start=("pump_a",))
    em.apply_fault(fault("heater-open", "reactor1"))
    assert em.run_until(lambda: trips(em, "reactor1"), 300.0, 1.0)
    assert trips(em, "reactor1")[0] in ("heater_not_heating", "temperature_runaway")
    assert em.plant.temperature_c("reactor1") < 23.0


@pytest.mark.parametrize(
    "kind, module, name, reason",
    [
        ("sensor-open", "reactor1", "temp_a", "open"),  # broken RTD: kilo-ohms
        ("sensor-short", "reactor1", "temp_b", "short"),
        ("sensor-open", "pump_a", "pressure", "namur_fail"),  # 4-20 mA loop break: 0 mA
        ("sensor-short", "bpr1", "pressure", "namur_fail"),  # overrange current
        ("sensor-open", "valve1", "position_fb", "open"),  # no electrical signature
    ],
)
def test_wire_faults_look_as_on_a_board(kind, module, name, reason):
    em = running(settle_s=5.0)
    em.apply_fault(fault(kind, module, name))
    em.run_for(1.0, lease_every_s=1.0)
    ch = channel(em, module, name)
    assert ch.quality == QUALITY_BAD and ch.bad_reason == reason
    if module == "reactor1":
        assert channel(em, "reactor1", "temperature").quality == QUALITY_UNCERTAIN
    if module == "pump_a":
        em.run_for(1.0, lease_every_s=1.0)
        assert "sensor_bad" in trips(em, "pump_a")


def test_sensor_stuck_misleads_the_bpr_loop():
    em = running()
    em.apply_fault(fault("sensor-stuck", "bpr1", "pressure", value=3.0))
    em.run_for(20.0, lease_every_s=1.0)
    assert channel(em, "bpr1", "pressure").value == pytest.approx(3.0, abs=0.01)
    assert em.plant.pressure_bar("bpr1") > 7.0  # the loop closes the valve on a lie


def test_sensor_drift_splits_the_redundant_pair():
    em = running(settle_s=5.0, start=("pump_a",))
    em.apply_fault(fault("sensor-drift", "reactor1", "temp_a", rate=0.5))
    em.run_for(8.0, lease_every_s=1.0)
    a, b = channel(em, "reactor1", "temp_a").value, channel(em, "reactor1", "temp_b").value
    assert a - b == pytest.approx(4.0, abs=0.5)
    em.run_for(5.0, lease_every_s=1.0)
    assert channel(em, "reactor1", "temperature").bad_reason == "disagreement"


def test_pump_stall_delivers_nothing_while_commanded():
    em = running()
    em.apply_fault(fault("pump-stall", "pump_a"))
    em.run_for(5.0, lease_every_s=1.0)
    assert em.nodes["pump_a"].outputs()["flow"] == 0.5
    assert em.plant.flow_ml_min("pump_a") == 0.0
    assert em.plant.flow_ml_min("pump_b") > 0.45


def test_dry_feed_trips_the_feed_interlock():
    em = running()
    em.apply_fault(fault("dry-feed", "pump_a"))
    em.run_for(3.0, lease_every_s=1.0)
    assert channel(em, "pump_a", "feed").value == 1
    assert "feed_empty" in trips(em, "pump_a")
    assert em.nodes["pump_a"].sm.state_name in ("holding", "held")
    assert em.plant.flow_ml_min("pump_a") == 0.0


def test_exotherm_heats_an_idle_reactor():
    em = LineEmulation(DEMO)
    em.apply_fault(fault("exotherm", "reactor1", heat_w=10.0))
    em.run_for(60.0)
    assert em.plant.temperature_c("reactor1") > 24.0
    assert em.nodes["reactor1"].outputs()["heater"] == 0.0


def test_power_loss_deenergises_and_reboots():
    em = running()
    first_birth = em.sinks["pump_a"].births[-1]
    em.apply_fault(fault("power-loss", "pump_a", duration_s=5.0))
    em.run_for(2.0, lease_every_s=1.0)
    assert em.plant.flow_ml_min("pump_a") < 0.1  # outputs fell to safe at once
    assert not em.powered("pump_a")
    em.run_for(4.0, lease_every_s=1.0)
    assert em.powered("pump_a") and em.boots["pump_a"] == 2
    birth = em.sinks["pump_a"].births[-1]
    assert birth.reset_cause == "power_on" and birth.boot_nonce != first_birth.boot_nonce
    assert em.nodes["pump_a"].sm.state_name == "idle"
    assert em.plant.flow_ml_min("pump_a") < 0.01


def test_partition_drops_leases_and_commands():
    em = running()
    f = fault("partition", "pump_a")
    em.apply_fault(f)
    assert em.command("pump_a", "rebirth") is None
    before = len(em.sinks["pump_a"].events)
    em.run_for(4.0, lease_every_s=1.0)
    node = em.nodes["pump_a"]
    assert node.sm.state_name == "aborted" and node.all_safe()  # lease lost: safe
    assert len(em.sinks["pump_a"].events) == before  # its trip never reached the broker
    assert em.nodes["pump_b"].sm.state_name == "execute"
    em.clear_fault(f)
    assert em.command("pump_a", "rebirth").result == RESULT_OK


@pytest.mark.parametrize("kind", ["broker-outage", "host-crash"])
def test_broker_outage_and_host_crash_silence_the_host(kind):
    em = running()
    f = fault(kind, "line")
    em.apply_fault(f)
    assert em.lease_all() == 0 and em.command("pump_a", "rebirth") is None
    telemetry = len(em.sinks["pump_a"].telemetry)
    em.run_for(4.0, lease_every_s=1.0)
    assert em.nodes["pump_a"].sm.state_name == "aborted"  # on_loss = "safe"
    assert em.nodes["reactor1"].sm.state_name in ("idle",)  # at rest: alarm only
    assert em.nodes["bpr1"].sm.state_name in ("holding", "held")  # on_loss = "hold"
    grew = len(em.sinks["pump_a"].telemetry) > telemetry
    assert grew == (kind == "host-crash")  # the broker still takes telemetry
    em.clear_fault(f)
    assert em.lease_all() == len(em.nodes)


def test_valve_routes_product_to_collection():
    em = running(flows=(2.0, 2.0), settle_s=20.0)
    plant = em.plant
    assert plant.collected_ml == 0.0 and plant.waste_ml > 0.5
    assert channel(em, "valve1", "position_fb").value == 0
    em.set_setpoint("valve1", "position", 1.0)
    em.run_for(30.0, lease_every_s=1.0)
    assert channel(em, "valve1", "position_fb").value == 1
    assert plant.valve_position("valve1") == 1.0
    assert plant.collected_ml == pytest.approx(4.0 * 30.0 / 60.0, rel=0.1)
    assert plant.concentration("collect")["pump_a"] < 1e-6  # the front is still in the coil


def test_boiling_depends_on_the_back_pressure():
    em = running(bpr=5.0, settle_s=40.0)
    em.plant.reactors["reactor1"].t = 95.0  # acetonitrile boils at 81.6 degC at 1 atm
    em.run_for(2.0, lease_every_s=1.0)
    assert not em.plant.boiling["reactor1"]  # 6 bar absolute: boils near 140 degC
    assert em.state("bpr1", "stop").result == RESULT_OK  # the valve opens fully (safe)
    em.run_for(3.0, lease_every_s=1.0)
    assert em.plant.pressure_bar("tube_r") < 0.2
    assert em.plant.boiling["reactor1"]
    readings = []
    for _ in range(50):
        em.run_for(0.2, lease_every_s=1.0)
        readings.append(channel(em, "uv1", "uv").value)
    assert max(readings) - min(readings) > 0.05  # bubbles through the flow cell


def test_signed_commands_and_a_faster_clock():
    key = bytes(range(32))
    em = LineEmulation(DEMO, tick_ms=None, keys={"reactor1": key})
    assert em.tick_ms == 50  # the fastest module's own tick
    em.lease_all()
    assert em.state("reactor1", "start").result == RESULT_OK
    assert em.set_setpoint("reactor1", "coil_temp", 40.0).result == RESULT_OK
    em.run_for(1.0, lease_every_s=1.0)
    assert em.nodes["reactor1"].tick_count == 10 and em.nodes["pump_a"].tick_count == 20
    em.apply_fault(fault("power-loss", "reactor1"))
    em.clear_fault(fault("power-loss", "reactor1"))  # an equal fault clears it too
    em.lease_all()
    assert em.state("reactor1", "start").result == RESULT_OK  # new boot, new counters


@pytest.mark.parametrize("flows", [(0.5, 0.5), (4.545, 5.455)], ids=["demo", "recipe"])
def test_the_bpr_holds_the_pressure_when_the_feeds_stop(flows):
    # A hot coil must keep its pressure while the pumps stop (a trip, a dry feed, a
    # clog, a lease loss): the BPR's loop has to close its needle valve faster than the
    # line's few microlitres per bar drain through it (0.2 s at 10 mL/min).  With the
    # earlier tuning (kp 0.02, ki 0.01) the pressure fell to ~0.2 bar in 2 s.
    em = running(flows=flows, settle_s=60.0)
    assert em.plant.pressure_bar("bpr1") == pytest.approx(5.0, abs=0.2)
    assert em.state("pump_a", "stop").result == RESULT_OK
    assert em.state("pump_b", "stop").result == RESULT_OK
    em.run_for(30.0, lease_every_s=1.0)
    assert em.plant.flow_ml_min("pump_a") < 1e-6 and em.plant.flow_ml_min("pump_b") < 1e-6
    assert em.plant.pressure_bar("tube_r") > 3.5  # the coil's outlet: still liquid at 130 degC


def _stuck_heater_cycle(line_path):
    """A reactor with a welded heater switch and no flow, stepped by its heat balance
    alone: (peak degC, lowest degC after the cut-out first opened, open at the end)."""
    from emulator.thermal import ReactorThermal

    line = load_line(line_path)
    th = ReactorThermal(line, line.modules["reactor1"])
    th.heater_stuck_on = True
    peak, low, opened = th.t, math.inf, False
    for _ in range(20000):  # 2000 s in 0.1 s steps
        th.step(0.1, 0.0, 0.0, 1.75, line.ambient_c, lambda: 0.0)
        peak = max(peak, th.t)
        opened = opened or th.cutout_open
        if opened:
            low = min(low, th.t)
    return peak, low, th.cutout_open


def test_the_thermal_cutout_latches_open_without_reset_c(tmp_path):
    # The demo's cut-out has no reset_c: a limiter.  Once open it stays open, so a welded
    # heater switch cannot drive the coil back up to the trip point: it cools for good.
    peak, low, still_open = _stuck_heater_cycle(DEMO)
    assert 165.0 <= peak < 167.0
    assert still_open and low < 100.0
    # With reset_c it is a thermostat: the coil cycles between 140 and 165 degC.
    text = DEMO.read_text().replace("trip_c = 165.0", "trip_c = 165.0\nreset_c = 140.0")
    text = text.replace('board = "board_configs/', f'board = "{ROOT}/board_configs/')
    cycling = tmp_path / "demo-thermostat.toml"
    cycling.write_text(text)
    peak, low, _ = _stuck_heater_cycle(cycling)
    assert peak >= 165.0 and 139.0 < low < 141.0


def _coil_boiling_margin(em, solvent="acetonitrile"):
    """(coil degC, bar gauge at its outlet, K below boiling there) from the plant itself."""
    from line.solvents import boiling_point_c, gauge_to_absolute

    t = em.plant.reactors["reactor1"].t
    p = max(em.plant.pressure_bar("tube_r"), 0.0)  # the coil's outlet: its lowest pressure
    return t, p, boiling_point_c(solvent, gauge_to_absolute(p)) - t


def test_a_crashed_host_never_lets_a_hot_coil_boil():
    # The host dies for good while the coil is at 110 degC under 5 bar (acetonitrile boils
    # at 82 degC at 1 atm).  Nobody leases: the pumps stop at once, the reactor holds its
    # setpoint for its 60 s grace and then cuts the heater; the BPR must keep regulating
    # on its own until the coil has cooled below the normal boiling point.  Checked on
    # the plant's own state (no host, nothing recorded): >= 10 K below boiling at the
    # coil's pressure every second until the coil is below 82 degC.
    from host.linecheck import BOILING_MARGIN_C
    from line.solvents import ATMOSPHERE_BAR, boiling_point_c

    em = running(flows=(4.545, 5.455), reactor=110.0, settle_s=400.0)
    assert em.plant.reactors["reactor1"].t > 105.0
    em.apply_fault(fault("host-crash", "line"))
    bp_atm = boiling_point_c("acetonitrile", ATMOSPHERE_BAR)
    worst = math.inf
    for _ in range(900):
        em.run_for(1.0)  # no leases: the host is gone
        t, p, margin = _coil_boiling_margin(em)
        if t < bp_atm:
            break
        worst = min(worst, margin)
        assert margin >= BOILING_MARGIN_C, (em.now_ms / 1000.0, t, p, margin)
    assert t < bp_atm, "the coil never cooled"
    assert worst < math.inf


def test_reaction_heat_is_bounded_by_the_reagents_it_consumes():
    # A 10 mL coil fed 10 mL/min of 0.45 M limiting reagent at 200 kJ/mol can release at
    # most 0.45 mol/L x 10 mL/min x 200 kJ/mol = 15 W, whatever the rate law asks (1 kW
    # here); with the feed stopped it spends its charge (<= 0.45 M x 10 mL x 200 kJ/mol
    # = 0.9 kJ) and the heat goes away.  Without an enthalpy the law alone rules.
    from emulator.thermal import ReactorThermal

    line = load_line(DEMO)
    th = ReactorThermal(line, line.modules["reactor1"])
    th.t = 80.0
    law = {"heat_w": 1000.0, "t_ref_c": 80.0, "doubling_c": 10.0, "max_w": 1000.0}
    th.fault_exotherm = dict(law, needs_reagents=False, enthalpy_kj_mol=200.0)
    flow_ml_s, conc = 10.0 / 60.0, 0.45
    released = 0.0
    for _ in range(6000):  # 600 s fed
        th.step(0.1, 0.0, flow_ml_s, 0.0, 80.0, lambda: 1.0, lambda: conc)
        assert th.reaction_w <= conc * flow_ml_s / 1000.0 * 200e3 * 1.0001 + 1e-9
    assert th.reaction_w == pytest.approx(15.0, rel=0.01)  # all of it reacts, at once
    for _ in range(600):  # the feed stops: 60 s on the charge alone
        th.step(0.1, 0.0, 0.0, 0.0, 80.0, lambda: 1.0, lambda: 0.0)
        released += th.reaction_w * 0.1
    assert th.reaction_w == 0.0 and released <= 0.45 * 10e-3 * 200e3
    th.fault_exotherm = dict(law, needs_reagents=False)  # no enthalpy: the law alone
    expected = 1000.0 * 2.0 ** ((th.t - 80.0) / 10.0)
    th.step(0.1, 0.0, 0.0, 0.0, 80.0, lambda: 1.0, lambda: 0.0)
    assert th.reaction_w == pytest.approx(expected) and expected > 15.0
