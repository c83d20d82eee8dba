"""The edge runtime (edge.node) driven tick by tick from the shipped board configs.

Time is simulated: every test advances it explicitly.  Safety claims tested here map to
the hazard table in docs/safety.md.
"""

from __future__ import annotations

import pytest

from edge import states as st
from edge.drivers.emulated import EmulatedActuator
from protocol import host_messages, messages
from protocol.constants import (
    QUALITY_BAD,
    QUALITY_UNCERTAIN,
    RESULT_EXPIRED,
    RESULT_MALFORMED,
    RESULT_NOT_ALLOWED_IN_STATE,
    RESULT_OK,
    RESULT_OUT_OF_RANGE,
    RESULT_REPLAYED,
    RESULT_UNAUTHENTICATED,
    RESULT_UNKNOWN,
)
from tests.edge_harness import KEY, Rig, compiled


class SafeOnlyDriver(EmulatedActuator):
    """An actuator that powers up at an UNSAFE value (as a real output may before the
    firmware drives it) and records every write: only the node's boot writes can make it
    safe, so a test with it fails if the boot writes are skipped."""

    def __init__(self, lo, hi, safe, name):
        EmulatedActuator.__init__(self, lo, hi, safe, name)
        self.value = hi if safe != hi else lo  # power-up: anything but safe
        self.history = []

    def _apply(self, value):
        self.history.append(value)


def power_up_unsafe_drivers(kind):
    """``{actuator: SafeOnlyDriver}`` for every actuator of the shipped ``kind`` config."""
    cfg, _ = compiled(kind)
    drivers = {}
    for ch in cfg["channels"]:
        if ch["role"] == "actuator":
            lo, hi = ch["range"]
            drivers[ch["name"]] = SafeOnlyDriver(lo, hi, ch["safe"], ch["name"])
    return drivers


def snapshot(rig):
    node = rig.node
    return (
        node.sm.state,
        node.outputs(),
        [(lp.pid.target, lp.pid.kp, lp.pid.ki, lp.pid.kd) for lp in node.loops],
        [slot.commanded for slot in node.actuators],
        node.interlocks.active,
    )


# -- boot --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reactor", "pump", "bpr", "valve", "analyzer"])
def test_boot_outputs_are_safe_and_birth_describes_the_module(kind):
    drivers = power_up_unsafe_drivers(kind)
    assert drivers and not any(d.value == d.safe_value for d in drivers.values())
    rig = Rig(kind, drivers=drivers)
    # Building the node wrote every actuator's safe value, once, before any tick.
    assert rig.node.tick_count == 0
    for slot in rig.node.actuators:
        assert slot.driver is drivers[slot.name]
        assert slot.driver.history == [slot.safe], (slot.name, slot.driver.history)
    assert rig.node.all_safe()
    birth = host_messages.parse_birth(rig.node.birth())
    assert birth.module_kind == kind
    assert birth.config_hash == rig.hash
    assert birth.state == "idle"
    assert [c.name for c in birth.channels] == [c.name for c in rig.node.channels]
    # The allowed-command table is the state machine's own.
    assert "start" in birth.states["idle"] and "start" not in birth.states["execute"]
    assert "set_setpoint" in birth.states["execute"]
    assert "set_setpoint" not in birth.states["aborted"]
    rig.tick(20)  # idle: outputs stay safe whatever the plant does
    assert rig.node.all_safe()
    assert rig.node.sm.state_name == "idle"
    assert not rig.sink.trips(), rig.sink.trips()


def test_watchdog_reset_boots_latched_in_aborted_and_reports_cause():
    rig = Rig("reactor", reset_cause="watchdog")
    birth = host_messages.parse_birth(rig.node.birth())
    assert birth.reset_cause == "watchdog" and birth.state == "aborted"
    rig.lease()
    assert rig.state("start").result == RESULT_NOT_ALLOWED_IN_STATE
    assert rig.state("reset").result == RESULT_OK
    rig.tick(2)
    assert rig.node.sm.state_name == "idle"


# -- control -----------------------------------------------------------------------------


def test_reactor_heats_toward_setpoint_under_pid_and_telemetry_decodes():
    rig = Rig("reactor")
    rig.start()
    assert rig.set("coil_temp", 80.0).result == RESULT_OK
    rig.run_s(600, lease_every_ms=1000)
    temp = rig.node.loops[0].measure.value
    assert 70.0 < temp < 90.0, temp
    assert not rig.sink.trips()
    assert rig.sink.telemetry
    t = host_messages.parse_telemetry(rig.sink.telemetry[-1], rig.node.channels)
    values = dict(zip([c.name for c in rig.node.channels], t.values, strict=True))
    assert values["coil_temp"] == pytest.approx(80.0, abs=0.01)
    assert abs(values["temperature"] - temp) < 1.0


def test_setpoint_out_of_range_is_rejected_and_changes_nothing():
    rig = Rig("reactor")
    rig.start()
    before = snapshot(rig)
    ack = rig.set("coil_temp", 500.0)
    assert ack.result == RESULT_OUT_OF_RANGE
    assert "500" in ack.reason and "140" in ack.reason
    assert snapshot(rig) == before


def test_command_not_allowed_in_state_changes_nothing():
    rig = Rig("reactor")
    rig.lease()
    before = snapshot(rig)
    ack = rig.state("unhold")
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE and "idle" in ack.reason
    assert snapshot(rig) == before


def test_commands_expire_against_host_time_from_the_lease():
    rig = Rig("reactor")
    # No lease yet: host time unknown, every command counts as expired.
    ack = rig.state("start")
    assert ack.result == RESULT_EXPIRED and "host time unknown" in ack.reason
    rig.lease()
    assert rig.command("state", {"command": "start"}, expiry_s=-1).result == RESULT_EXPIRED
    assert rig.node.sm.state_name == "idle"


def test_an_abort_is_never_refused_as_expired_but_still_authenticated():
    """A late abort errs to the safe side; the line stop must work even when the module's
    host time is ahead of the stopping host's clock (SPEC section 8)."""
    rig = Rig("reactor", key=KEY)
    rig.start()
    assert rig.set("coil_temp", 60.0).result == RESULT_OK
    rig.tick(5)
    late = rig.command("state", {"command": "hold"}, expiry_s=-60)
    assert late.result == RESULT_EXPIRED  # other commands still expire
    unsigned = rig.command("state", {"command": "abort"}, expiry_s=-60, sign=False)
    assert unsigned.result == RESULT_UNAUTHENTICATED
    assert rig.node.sm.state_name == "execute"
    ack = rig.command("state", {"command": "abort"}, expiry_s=-60)
    assert ack.result == RESULT_OK, ack
    rig.tick(2)
    assert rig.node.sm.state_name == "aborted" and rig.node.all_safe()


def test_an_unsigned_rebirth_is_never_refused_as_expired():
    """A host whose clock lags the module's host time (a stop from another machine) still
    gets the birth it needs to command the module at all."""
    rig = Rig("pump")
    rig.lease()
    ack = rig.command("rebirth", None, expiry_s=-60)
    assert ack.result == RESULT_OK, ack
    assert rig.node.rebirth_pending  # the shell publishes the birth after this tick


def test_malformed_command_gets_a_malformed_ack_and_changes_nothing():
    rig = Rig("reactor")
    rig.lease()
    before = snapshot(rig)
    for junk in (b"", b"\xff\x00", messages.build_lease("host", 1, 1, 1000)):
        ack = rig.send(junk)
        assert ack.result == RESULT_MALFORMED and ack.command_id == 0
    assert snapshot(rig) == before


def test_unknown_service_command_and_unknown_setpoint():
    rig = Rig("reactor")
    rig.lease()
    assert rig.state("suspend").result == RESULT_UNKNOWN
    assert rig.set("temperature", 50.0).result == RESULT_UNKNOWN  # a sensor, not a setpoint
    assert rig.set("heater", 0.5).result == RESULT_UNKNOWN  # driven by its loop


def test_configure_retunes_a_loop_and_rejects_bad_gains():
    rig = Rig("reactor")
    rig.lease()
    assert rig.command("configure", {"config": {"loop": "coil_temp", "kp": 0.1}}).result == 0
    assert rig.node.loops[0].pid.kp == 0.1
    before = snapshot(rig)
    assert rig.command("configure", {"config": {"loop": "coil_temp", "ki": -1.0}}).result == (
        RESULT_OUT_OF_RANGE
    )
    assert rig.command("configure", {"config": {"loop": "nope", "kp": 1.0}}).result == (
        RESULT_OUT_OF_RANGE
    )
    assert snapshot(rig) == before


# -- authentication ------------------------------------------------------------------------


def test_authenticated_module_rejects_unsigned_forged_and_replayed_commands():
    rig = Rig("reactor", key=KEY)
    rig.lease()
    before = snapshot(rig)
    assert rig.command("state", {"command": "start"}, sign=False).result == (RESULT_UNAUTHENTICATED)
    good = rig.command("state", {"command": "hold"}, counter=10)  # valid tag, not allowed
    assert good.result == RESULT_NOT_ALLOWED_IN_STATE
    assert rig.command("state", {"command": "start"}, counter=10).result == RESULT_REPLAYED
    assert rig.command("state", {"command": "start"}, counter=9).result == RESULT_REPLAYED
    assert snapshot(rig) == before
    rig.key = bytes(32)
    assert rig.command("state", {"command": "start"}, counter=60).result == (RESULT_UNAUTHENTICATED)
    rig.key = KEY
    assert rig.command("state", {"command": "start"}, counter=61).result == RESULT_OK


def test_key_never_appears_in_birth_telemetry_or_events():
    rig = Rig("reactor", key=KEY)
    rig.start()
    rig.tick(30)
    blobs = [rig.node.birth()] + rig.sink.telemetry
    blobs += [repr(e).encode() for e in rig.sink.events] + [repr(rig.node.verifier).encode()]
    for blob in blobs:
        assert KEY not in blob and KEY.hex().encode() not in blob


# -- interlocks ------------------------------------------------------------------------------


def hot(rig, value):
    rig.plant.overrides["temp_a"] = value
    rig.plant.overrides["temp_b"] = value


def no_ramp(cfg):
    cfg["pid"][0]["ramp_rate"] = None


def gentle_gains(cfg):
    # A loop tuned softly enough that a ramped setpoint never asks for full power for a
    # whole check_gain_time: the growing error trips (temperature_runaway) before the
    # missing temperature gain at full power (heater_not_heating) can.  The shipped
    # autotuned gains (kp 0.3) saturate the heater on the ramp, so they show the other.
    pid = cfg["pid"][0]
    pid["kp"], pid["ki"], pid["kd"] = 0.05, 0.002, 0.0


def test_over_temperature_forces_heater_safe_in_the_same_tick_and_latches():
    def no_ramp_past_the_trip(cfg):
        # The loader refuses setpoints above the trip (setpoint_above_trip); here the
        # loop stands in for anything that drives the coil past it (an exotherm, a
        # stuck heater), so the compiled limit is widened behind the loader's back.
        no_ramp(cfg)
        cfg["pid"][0]["setpoint_max"] = 200.0

    rig = Rig("reactor", mutate=no_ramp_past_the_trip)
    rig.start()
    assert rig.set("coil_temp", 200.0).result == 0
    measure = rig.node.loops[0].measure
    while True:  # the plant heats the coil toward 220 degC at full power
        if rig.now % 1000 == 0:
            rig.lease()
        rig.tick()
        if measure.unfiltered > 150.0:
            break
        # Below the limit the heater is driven (the setpoint is far above)...
        assert rig.node.outputs()["heater"] > 0.0
        assert not rig.sink.trips()
    # ...and the tick whose sample crosses 150 degC writes the safe value, without
    # waiting for the 300 ms control filter (unfiltered = true): reaction = one tick
    # (on_delay 0).
    assert measure.value <= 150.0, "the filtered value lags: this test must not pass on it"
    assert rig.node.outputs()["heater"] == 0.0
    trips = rig.sink.trips()
    assert len(trips) == 1 and trips[0].cause == "over_temperature"
    assert trips[0] in rig.sink.critical
    assert rig.node.sm.state_name in ("aborting", "aborted")
    # Latched: outputs stay safe and reset is refused while the cause persists.
    rig.tick(5)
    assert rig.node.outputs()["heater"] == 0.0
    ack = rig.state("reset")
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE and "over_temperature" in ack.reason
    assert "clears at <= 145" in ack.reason
    hot(rig, 146.0)  # inside the hysteresis band: still refused
    rig.tick()
    assert rig.state("reset").result == RESULT_NOT_ALLOWED_IN_STATE
    hot(rig, 100.0)
    rig.tick()
    assert rig.state("reset").result == RESULT_OK
    rig.tick(2)
    assert rig.node.sm.state_name == "idle"
    assert len(rig.sink.trips()) == 1  # exactly one trip event for one trip
    assert [e.type for e in rig.sink.events].count("trip_reset") == 1


def test_sensor_open_circuit_trips_as_sensor_bad_after_its_on_delay():
    rig = Rig("reactor")
    rig.start()
    rig.set("coil_temp", 100.0)
    rig.run_s(5, lease_every_ms=1000)
    # Both probes open: the 1oo2 channel goes BAD, heater safe from that tick on.
    for ch, drv in rig.node.sensors:
        if ch.name in ("temp_a", "temp_b"):
            drv.set_fault("open")
    rig.tick()
    assert rig.node.outputs()["heater"] == 0.0  # PID has no valid measurement: safe
    rig.run_s(0.5, lease_every_ms=1000)
    trips = rig.sink.trips()
    assert trips and trips[0].cause == "sensor_bad"
    assert "open" in trips[0].detail


def sensor(rig, name):
    for ch, drv in rig.node.sensors:
        if ch.name == name:
            return ch, drv
    raise KeyError(name)


def events_since(rig, n0, type_=None):
    return [e for e in rig.sink.events[n0:] if type_ is None or e.type == type_]


def test_a_bad_measurement_gives_no_heater_output_from_that_tick_even_without_a_trip():
    # Take the over-temperature interlock's trip-on-BAD away, so that no trip covers the
    # first ticks: the PID itself must give no output without a valid measurement.
    def no_trip_on_bad(cfg):
        config_of(cfg, "interlocks", "over_temperature")["trip_on_bad"] = False

    rig = Rig("reactor", mutate=no_trip_on_bad)
    rig.start()
    rig.set("coil_temp", 100.0)
    rig.run_s(5, lease_every_ms=1000)
    assert rig.node.outputs()["heater"] > 0.0
    for ch, drv in rig.node.sensors:
        if ch.name in ("temp_a", "temp_b"):
            drv.set_fault("open")
    rig.tick()
    assert not rig.sink.trips()  # nothing tripped yet (temperature_bad has its on-delay)
    assert rig.node.outputs()["heater"] == 0.0  # and still the heater is off
    on_delay = config_of(rig.cfg, "interlocks", "temperature_bad")["on_delay_ms"]
    for _ in range(on_delay // rig.tick_ms):
        rig.tick()
        assert rig.node.outputs()["heater"] == 0.0
    assert [t.cause for t in rig.sink.trips()] == ["sensor_bad"]


def test_one_probe_open_keeps_running_on_the_other():
    rig = Rig("reactor")
    rig.start()
    rig.set("coil_temp", 60.0)
    rig.run_s(5, lease_every_ms=1000)
    assert not events_since(rig, 0, "alarm")
    n0 = len(rig.sink.events)
    sensor(rig, "temp_a")[1].set_fault("open")
    rig.tick()
    # Redundancy lost is reported in the tick it happens (the pair runs 1oo1 now).
    alarms = events_since(rig, n0, "alarm")
    assert [(e.source, e.cause) for e in alarms] == [("temperature", "redundancy_lost")]
    rig.run_s(5, lease_every_ms=1000)
    assert not rig.sink.trips()
    assert rig.node.outputs()["heater"] > 0.0


def test_one_probe_lost_trips_after_degraded_max_ms():
    rig = Rig("reactor")
    rig.start()
    rig.set("coil_temp", 60.0)
    rig.run_s(5, lease_every_ms=1000)
    pair = [d for d in rig.node.derived if d.name == "temperature"][0]
    limit_ms = pair.degraded_max_ms
    assert limit_ms == 600_000  # board_configs/reactor.toml
    sensor(rig, "temp_a")[1].set_fault("open")
    rig.tick()
    t_lost = rig.now
    while rig.now - t_lost <= limit_ms - rig.tick_ms:
        if rig.now % 1000 == 0:
            rig.lease()
        rig.tick()
        assert not rig.sink.trips(), rig.now - t_lost
    rig.run_s(0.2)  # the first tick strictly after degraded_max_ms
    trips = rig.sink.trips()
    assert trips and trips[0].cause == "sensor_bad" and "degraded" in trips[0].detail
    assert rig.node.outputs()["heater"] == 0.0
    assert pair.bad_reason == "degraded"
    # Reset is refused while the pair still runs on one probe ...
    ack = rig.state("reset")
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE and "degraded" in ack.reason
    # ... and accepted once both probes are back.
    sensor(rig, "temp_a")[1].set_fault(None)
    rig.tick()
    assert rig.state("reset").result == RESULT_OK


def test_transmitter_at_the_ne43_failure_signal_trips_the_pump():
    # Ported from the safety review (repro 09): 3.6 mA is a transmitter signalling its own
    # failure; it used to read -1 bar, UNCERTAIN, and blinded the high-pressure interlock.
    rig = Rig("pump")
    rig.start()
    rig.set("flow", 5.0)
    rig.run_s(2, lease_every_ms=1000)
    ch, drv = sensor(rig, "pressure")
    drv.read = lambda now: 3.6
    rig.tick()
    assert ch.quality == QUALITY_BAD and ch.bad_reason == "namur_fail"
    assert rig.node.outputs()["flow"] == 0.0  # high_pressure trips on BAD: same tick
    assert rig.sink.trips()[0].cause == "sensor_bad" and "namur_fail" in rig.sink.trips()[0].detail


def test_transmitter_parked_in_the_ne43_margin_band_trips_within_uncertain_ms():
    rig = Rig("pump")
    rig.start()
    rig.set("flow", 5.0)
    rig.run_s(2, lease_every_ms=1000)
    ch, drv = sensor(rig, "pressure")
    assert ch.uncertain_ms == ch.stale_ms == 500  # the default: its stale_ms
    drv.read = lambda now: 3.62  # below the measuring range, not quite a failure signal
    t0 = rig.now
    while not rig.sink.trips():
        rig.tick()
        assert rig.now - t0 <= 500 + 2 * rig.tick_ms, "no trip within uncertain_ms"
        if rig.now - t0 <= 500:
            assert ch.quality == QUALITY_UNCERTAIN and rig.node.outputs()["flow"] == 5.0
    assert ch.bad_reason == "uncertain"
    assert rig.node.outputs()["flow"] == 0.0
    rig.run_s(60, lease_every_ms=1000)  # and it stays safe
    assert rig.node.outputs()["flow"] == 0.0 and ch.quality == QUALITY_BAD


def test_over_pressure_trips_the_pump_in_the_tick_of_the_step():
    rig = Rig("pump")
    rig.start()
    rig.set("flow", 3.0)
    rig.tick()
    assert rig.node.outputs()["flow"] == 3.0
    rig.plant.overrides["pressure"] = 30.0  # above the 20 bar trip
    rig.tick()
    ch = sensor(rig, "pressure")[0]
    # The filtered value has not reached 20 bar yet; the trip does not wait for it.
    assert ch.value < 20.0 and ch.unfiltered == pytest.approx(30.0)
    assert rig.node.outputs()["flow"] == 0.0
    trips = rig.sink.trips()
    assert len(trips) == 1 and trips[0].cause == "over_pressure"


def test_frozen_pressure_transmitter_raises_a_sensor_stuck_alarm():
    # Ported from the safety review (repro 07 c): a transmitter frozen at 11 bar.
    rig = Rig("pump")
    rig.start()
    rig.set("flow", 5.0)
    rig.run_s(5, lease_every_ms=1000)
    ch = sensor(rig, "pressure")[0]
    assert (ch.stuck_ms, ch.stuck_band) == (60_000, 0.02)  # board_configs/pump.toml
    rig.plant.overrides["pressure"] = 11.0
    n0 = len(rig.sink.events)
    rig.tick()
    t0 = rig.now
    while rig.now - t0 <= ch.stuck_ms:
        if rig.now % 1000 == 0:
            rig.lease()
        rig.tick()
        if rig.now - t0 < ch.stuck_ms:
            assert not events_since(rig, n0, "alarm")
    alarms = events_since(rig, n0, "alarm")
    assert [(e.source, e.cause) for e in alarms] == [("pressure", "sensor_stuck")]
    assert rig.now - t0 <= ch.stuck_ms + rig.tick_ms
    # An alarm only (the shipped default): the pump keeps running, nothing trips.
    assert not rig.sink.trips() and rig.node.outputs()["flow"] == 5.0
    # The reading moves again: the alarm clears.
    rig.plant.overrides["pressure"] = 11.5
    rig.tick()
    cleared = events_since(rig, n0, "alarm_cleared")
    assert [(e.source, e.cause) for e in cleared] == [("pressure", "sensor_stuck")]


def test_frozen_transmitter_trips_where_the_config_says_so():
    def on_stuck_bad(cfg):
        for ch in cfg["channels"]:
            if ch["name"] == "pressure":
                ch["on_stuck"] = "bad"

    rig = Rig("pump", mutate=on_stuck_bad)
    rig.start()
    rig.set("flow", 5.0)
    rig.run_s(5, lease_every_ms=1000)
    rig.plant.overrides["pressure"] = 11.0
    rig.run_s(61, lease_every_ms=1000)
    trips = rig.sink.trips()
    assert trips and trips[0].cause == "sensor_bad" and "stuck" in trips[0].detail
    assert rig.node.outputs()["flow"] == 0.0
    assert "stuck" in rig.state("reset").reason  # refused while still frozen


def test_estop_trips_every_actuator_in_the_same_tick():
    rig = Rig("pump")
    rig.start()
    assert rig.set("flow", 1.0).result == RESULT_OK
    rig.tick()
    assert rig.node.outputs()["flow"] == 1.0
    rig.plant.digital["estop"] = 1
    rig.tick()
    assert rig.node.all_safe()
    assert rig.sink.trips()[0].cause == "estop"


# -- watchdogs ---------------------------------------------------------------------------------


def test_lease_loss_with_hold_holds_then_goes_safe_after_grace():
    rig = Rig("reactor")  # on_loss = hold, grace 60 s, timeout 3 s
    rig.start()
    rig.set("coil_temp", 60.0)
    rig.run_s(10, lease_every_ms=1000)
    assert rig.node.outputs()["heater"] > 0.0
    rig.run_s(3.5)  # no more leases
    assert rig.node.sm.state_name in ("holding", "held")
    assert rig.node.outputs()["heater"] > 0.0  # held on its setpoints during the grace
    grace_ticks = 60_000 // rig.tick_ms
    for _ in range(grace_ticks + 1):
        rig.tick()
        if rig.node.all_safe():
            break
    assert rig.node.all_safe()
    assert rig.sink.trips()[0].cause == "lease_expired"
    # Still no lease: reset refused; lease back: accepted.
    assert rig.state("reset").result != RESULT_OK
    rig.lease()
    rig.tick()
    assert rig.state("reset").result == RESULT_OK


def test_lease_loss_with_safe_action_goes_safe_within_one_tick_of_timeout():
    def mutate(cfg):
        cfg["lease"]["on_loss"] = "safe"
        cfg["lease"]["grace_ms"] = 0

    rig = Rig("pump", mutate=mutate)
    rig.start()
    rig.set("flow", 2.0)
    rig.tick()
    last_lease = rig.now
    while not rig.node.all_safe():
        rig.tick()
        assert rig.now - last_lease <= 3000 + rig.tick_ms
    assert rig.sink.trips()[0].cause == "lease_expired"


def test_lease_loss_at_rest_only_alarms():
    rig = Rig("reactor")
    rig.lease()
    rig.run_s(5)
    assert not rig.sink.trips()
    alarms = [e for e in rig.sink.events if e.type == "alarm" and e.cause == "lease_expired"]
    assert len(alarms) == 1


def test_stalled_tick_loop_cannot_keep_an_actuator_energised():
    rig = Rig("reactor")
    rig.start()
    rig.set("coil_temp", 140.0)
    rig.run_s(3, lease_every_ms=1000)
    assert rig.node.outputs()["heater"] > 0.0
    deadman = rig.node.actuators[0].deadman_ms
    stall_start = rig.now
    # The tick loop stalls; only the independent timer runs.
    t = stall_start
    while t - stall_start <= deadman + 10:
        t += 10
        rig.node.deadman_check(t)
        if rig.node.all_safe():
            break
    assert rig.node.all_safe()
    assert t - stall_start <= deadman + 10
    rig.now = t
    rig.lease()
    rig.tick()  # the loop comes back: the dead-man firing is latched as a trip
    assert rig.sink.trips()[0].cause == "deadman_expired"
    assert rig.node.all_safe()


def test_deadman_check_does_nothing_while_ticks_run():
    rig = Rig("reactor")
    rig.start()
    rig.set("coil_temp", 140.0)
    for _ in range(50):
        rig.lease()
        rig.tick()
        assert rig.node.deadman_check(rig.now) == 0
    assert rig.node.outputs()["heater"] > 0.0


@pytest.mark.parametrize(
    "mutate, cause, bound_s",
    [
        # Full power at once: no temperature gain within check_gain_time (60 s).
        (no_ramp, "heater_not_heating", 60.0 + 0.1),
        # Ramped setpoint, gentle loop: the heater is not at full power for the whole
        # window, and the growing error (max_error 600 degC*s) trips first.
        (gentle_gains, "temperature_runaway", 90.0),
        # Ramped setpoint, the shipped (autotuned) loop: full power soon, no gain.
        (None, "heater_not_heating", 90.0),
    ],
)
def test_heater_that_does_not_heat_trips_heater_verification(mutate, cause, bound_s):
    rig = Rig("reactor", mutate=mutate)
    rig.start()
    rig.set("coil_temp", 140.0)
    rig.plant.heater_gain = 0.0  # heater element open: power applied, no temperature rise
    start = rig.now
    for _ in range(int(90_000 / rig.tick_ms)):
        if rig.now % 1000 == 0:
            rig.lease()
        rig.tick()
        if rig.sink.trips():
            break
    trips = rig.sink.trips()
    assert trips and trips[0].cause == cause, trips
    assert (trips[0].t_ms - start) / 1000.0 <= bound_s
    assert rig.node.all_safe()


def test_state_changes_are_events_in_order():
    rig = Rig("reactor")
    rig.start()
    changes = [e.state for e in rig.sink.events if e.type == "state_change"]
    assert changes[:2] == ["starting", "execute"]
    numbers = [e.number for e in rig.sink.events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_rebirth_command_publishes_a_new_birth_and_restarts_seq():
    rig = Rig("reactor")
    rig.lease()
    rig.tick(25)
    assert rig.node.seq > 0
    assert rig.command("rebirth").result == RESULT_OK
    assert rig.node.rebirth_pending
    rig.node.birth()
    assert rig.node.seq == 0 and not rig.node.rebirth_pending


def test_a_keyed_module_takes_an_unsigned_rebirth_and_nothing_else_unsigned():
    # A host that missed the birth has no boot nonce to sign with: rebirth is how it asks.
    rig = Rig("reactor", key=b"k" * 32)
    rig.lease()
    rig.tick(5)
    assert rig.command("rebirth", sign=False).result == RESULT_OK
    assert rig.node.rebirth_pending
    refused = rig.command("state", {"command": "start"}, sign=False)
    assert refused.result != RESULT_OK and rig.node.sm.state_name == "idle"
    # A signed rebirth with a wrong key is still refused: only the unsigned form is exempt.
    rig.key = b"x" * 32
    assert rig.command("rebirth").result != RESULT_OK


def ticks_until_filter_exceeds(limit, start, step, filter_tau_ms, tick_ms):
    """Ticks after a step of the input from ``start`` to ``step`` until a channel's
    first-order filter (edge.signals.SensorChannel: y += (x - y) * dt / (tau + dt))
    first reads above ``limit``: the detection bound of an interlock on that channel."""
    assert step > limit
    a = tick_ms / (filter_tau_ms + tick_ms)
    y = start
    n = 0
    while y <= limit:
        y += (step - y) * a
        n += 1
    return n


def config_of(cfg, section, name, key="id"):
    return next(item for item in cfg[section] if item[key] == name)


def test_over_pressure_stops_the_pump_by_the_tick_its_filtered_pressure_crosses_the_limit():
    rig = Rig("pump")
    rig.start()
    assert rig.set("flow", 3.0).result == RESULT_OK
    rig.tick()
    assert rig.node.outputs()["flow"] == 3.0
    pressure = next(ch for ch, _ in rig.node.sensors if ch.name == "pressure")
    # The bound follows from the config this test runs, not from a tick count that happens
    # to work: the step from the present reading to 30 bar, through the channel's filter,
    # against the high_pressure limit (an interlock on the unfiltered value trips sooner).
    limit = config_of(rig.cfg, "interlocks", "high_pressure")["limit"]
    tau = config_of(rig.cfg, "channels", "pressure", key="name")["filter_tau_ms"]
    step = 30.0
    bound = ticks_until_filter_exceeds(limit, pressure.value, step, tau, rig.tick_ms)
    assert bound > 1  # the shipped filter does delay the trip: the bound is not trivial
    rig.plant.overrides["pressure"] = step  # a clog: head pressure jumps above the limit
    for n in range(1, bound + 1):
        rig.tick()
        if rig.sink.trips():
            break
        assert rig.node.outputs()["flow"] == 3.0, n  # no trip yet: still pumping
        assert pressure.value <= limit, n  # ...and not because the filtered value crossed
    trips = rig.sink.trips()
    assert trips and trips[0].cause == "over_pressure", (n, bound, trips)
    assert n <= bound
    # Same tick: the tick that tripped wrote flow 0; the reading it tripped on is over.
    assert rig.node.outputs()["flow"] == 0.0 and rig.node.all_safe()
    assert trips[0].t_ms == rig.now
    assert float(trips[0].detail.split("value ")[1].split()[0]) > limit, trips[0].detail
    assert trips[0] in rig.sink.critical
    rig.tick(5)  # latched while the pressure stays high
    assert rig.node.outputs()["flow"] == 0.0
    assert rig.state("reset").result == RESULT_NOT_ALLOWED_IN_STATE


def test_state_machine_is_not_bypassed_by_a_trip_during_execute():
    rig = Rig("pump")
    rig.start()
    rig.set("flow", 3.0)
    rig.tick()
    rig.plant.overrides["pressure"] = 30.0  # above the 20 bar trip
    for _ in range(10):  # within the filter's bound (see the over-pressure test)
        rig.tick()
        if rig.sink.trips():
            break
    assert rig.node.all_safe()
    assert rig.node.sm.state in (st.ABORTING, st.ABORTED)
    assert rig.state("start").result == RESULT_NOT_ALLOWED_IN_STATE


def test_cutout_input_trips_the_heater():
    rig = Rig("reactor", mutate=no_ramp)
    rig.start()
    rig.set("coil_temp", 100.0)
    rig.run_s(2, lease_every_ms=1000)
    assert rig.node.outputs()["heater"] > 0.0
    rig.plant.digital["cutout"] = 1
    rig.tick()
    assert rig.node.outputs()["heater"] == 0.0
    assert rig.sink.trips()[0].cause == "cutout_tripped"
    rig.plant.digital["cutout"] = 0
    rig.tick()
    assert rig.state("reset").result == RESULT_OK


def test_start_is_refused_while_the_lease_is_lost():
    rig = Rig("reactor")
    rig.lease()
    rig.run_s(4)  # lease lost at rest: only an alarm
    ack = rig.state("start")  # still within its expiry and host time is known
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE and "lease" in ack.reason
    assert rig.node.sm.state_name == "idle"


def test_module_started_after_lease_loss_is_still_supervised():
    from edge.lease import LeaseWatchdog

    wd = LeaseWatchdog(3000, "hold", 10_000)
    wd.feed(0)
    assert wd.check(3100, active=False) == 1  # lost at rest
    assert not wd.value
    wd.check(5000, active=True)  # running now (e.g. started by a late command)
    wd.check(14_999, active=True)
    assert not wd.value
    wd.check(15_000, active=True)  # grace counted from when it became active
    assert wd.value


def test_uptime_keeps_counting_across_the_tick_wrap():
    from edge.build import build_node
    from edge.clock import TICKS_PERIOD
    from tests.edge_harness import NONCE, RecordingSink, compiled

    cfg, h = compiled("valve")
    start = TICKS_PERIOD - 1000
    node = build_node(cfg, None, RecordingSink(), start, NONCE, config_hash=h)
    t = start
    for _ in range(20):
        t = (t + 100) % TICKS_PERIOD
        node.tick(t)
    assert node._uptime_ms() == 2000
    payload = node.publish_telemetry()
    from protocol import host_messages

    assert host_messages.parse_telemetry(payload, node.channels).t_ms == 2000


# -- a reset never restarts (issue 10 item 4) ----------------------------------------------------


def _feed_empty_state(state):
    def mutate(cfg):
        for il in cfg["interlocks"]:
            if il["id"] == "feed_empty":
                il["state"] = state

    return mutate


def _run_leased(rig, ticks, feed=None):
    for _ in range(ticks):
        if rig.now % 1000 == 0:
            rig.lease()
        if feed is not None:
            rig.plant.digital["feed"] = feed
        rig.tick()


def _trip_feed_empty(rig):
    _run_leased(rig, 3000 // rig.tick_ms, feed=1)  # 3 s: past the 2 s on-delay
    assert [e.cause for e in rig.sink.trips()][-1] == "feed_empty"
    assert rig.node.outputs()["flow"] == 0.0
    _run_leased(rig, 2, feed=0)  # the feed is back: the cause has cleared


@pytest.mark.parametrize("trip_state", ["held", "stopped", "aborted"])
def test_a_reset_after_any_trip_keeps_outputs_safe_until_an_explicit_start_or_unhold(trip_state):
    """Regression: a trip declared ``state = "held"`` parks the pump in held, a running
    state; ``reset_trip`` used to lift the forced flow = 0 and the pump restarted at its
    old setpoint with no start or unhold (IEC 60204-1 / IEC 61511: a reset must never
    restart equipment).  Whatever state a trip moves the module to, after its reset the
    outputs stay safe until the operator restarts explicitly."""
    rig = Rig("pump", mutate=_feed_empty_state(trip_state))
    rig.start()
    assert rig.set("flow", 5.0).result == RESULT_OK
    rig.tick(5)
    assert rig.node.outputs()["flow"] == 5.0
    _trip_feed_empty(rig)
    assert rig.node.sm.state_name == trip_state
    if trip_state == "held":  # restarting is a step of its own, after the reset
        refused = rig.state("unhold")
        assert refused.result == RESULT_NOT_ALLOWED_IN_STATE and "feed_empty" in refused.reason
        assert rig.node.sm.state_name == "held"
    ack = rig.command("reset_trip")
    assert ack.result == RESULT_OK, ack
    assert not rig.node.interlocks.active
    _run_leased(rig, 30)
    assert rig.node.sm.state_name == trip_state
    assert rig.node.outputs()["flow"] == 0.0, "reset_trip restarted the pump"
    if trip_state == "held":
        assert "until unhold" in ack.reason
        restart = "unhold"
    else:
        assert rig.state("reset").result == RESULT_OK  # back to idle: still nothing moves
        _run_leased(rig, 10)
        assert rig.node.sm.state_name == "idle" and rig.node.outputs()["flow"] == 0.0
        restart = "start"
    assert rig.state(restart).result == RESULT_OK
    _run_leased(rig, 3)
    assert rig.node.sm.state_name == "execute"
    assert rig.node.outputs()["flow"] == 5.0  # the explicit restart is what brings it back


def test_a_trip_while_already_held_stays_safe_after_its_reset_until_unhold():
    """The operator held the pump (flow keeps its setpoint in held); a feed_empty trip
    (declared held) cannot move it further but forces flow 0.  Its reset must not put the
    flow back: only unhold does."""
    rig = Rig("pump")
    rig.start()
    assert rig.set("flow", 3.0).result == RESULT_OK
    assert rig.state("hold").result == RESULT_OK
    _run_leased(rig, 3)
    assert rig.node.sm.state_name == "held" and rig.node.outputs()["flow"] == 3.0
    _trip_feed_empty(rig)
    assert rig.command("reset_trip").result == RESULT_OK
    _run_leased(rig, 20)
    assert rig.node.outputs()["flow"] == 0.0
    assert rig.state("unhold").result == RESULT_OK
    _run_leased(rig, 3)
    assert rig.node.outputs()["flow"] == 3.0


def test_start_is_refused_while_a_trip_is_latched():
    """A held-type trip in idle leaves the module idle (nothing to hold) but latched.
    A start then used to run the module under the forced outputs, and the later reset
    released them: a restart by reset.  Start (and unhold) wait for the reset."""
    rig = Rig("pump")
    rig.lease()
    _trip_feed_empty(rig)
    assert rig.node.sm.state_name == "idle" and rig.node.interlocks.active
    refused = rig.state("start")
    assert refused.result == RESULT_NOT_ALLOWED_IN_STATE, refused
    assert "feed_empty" in refused.reason and "reset" in refused.reason
    assert rig.node.sm.state_name == "idle"
    assert rig.command("reset_trip").result == RESULT_OK
    assert rig.state("start").result == RESULT_OK


def test_a_loop_output_pinned_by_a_held_trip_resumes_bumplessly_on_unhold():
    """A loop whose actuator a trip pins sits in manual at the pinned value: its integral
    does not wind up behind the pin, the heater verifier sees no setpoint to miss, and
    unhold continues from the pinned output instead of jumping."""
    from edge.interlocks import Action

    rig = Rig("reactor")
    node = rig.node
    lp = node.loops[0]
    # A held trip on the cut-out input, for this test (the shipped one aborts).
    cut = next(il for il in node.interlocks.interlocks if il.id == "cutout")
    cut.action = Action(safe=(lp.output.name,), state="held")
    rig.start()
    assert rig.set("coil_temp", 140.0).result == RESULT_OK
    _run_leased(rig, 50)
    assert node.outputs()["heater"] > 0.0
    rig.plant.digital["cutout"] = 1
    _run_leased(rig, 1)
    assert node.sm.state_name in ("holding", "held") and node.outputs()["heater"] == 0.0
    rig.plant.digital["cutout"] = 0
    _run_leased(rig, 300)  # 30 s pinned at 0 while far below the setpoint
    assert not lp.pid.auto and lp.pid.output == lp.output.safe
    assert [e.cause for e in rig.sink.trips()] == [
        "cutout_tripped"
    ]  # no verifier trip behind the pin
    assert rig.command("reset_trip").result == RESULT_OK
    _run_leased(rig, 50)
    assert node.outputs()["heater"] == 0.0 and not node.interlocks.active
    assert rig.state("unhold").result == RESULT_OK
    rig.lease()
    rig.tick()
    assert node.sm.state_name in ("unholding", "execute")
    first = node.outputs()["heater"]
    p_only = lp.pid.kp * (lp.pid.setpoint - lp.measure.value)
    assert first <= max(p_only, 0.0) + 1e-6, "unhold stepped the heater by a wound-up integral"


# -- reset while uncontrolled heating persists (issue 10 item 5) ---------------------------------


def _exotherm_until_trip(rig, temp, rate_per_tick=0.02):
    for _ in range(3000):
        temp += rate_per_tick
        rig.hold_coil(temp)
        if rig.node.interlocks.active:
            return temp
    raise AssertionError("no trip")


def test_reset_refused_while_the_temperature_still_rises_with_the_heater_off():
    """Regression: a reset cleared uncontrolled_heating unconditionally, while the
    temperature kept climbing with the heater off (stuck SSR, exotherm), and each reset
    re-armed the check from there: another 15 degC per reset.  Now both ways of resetting
    are refused, with the reading in the reason, until the temperature fell at least the
    verifier's hysteresis below its peak since the trip."""
    rig = Rig("reactor")
    rig.start()
    assert rig.set("coil_temp", 60.0).result == RESULT_OK
    rig.run_s(300, lease_every_ms=1000)
    temp = _exotherm_until_trip(rig, rig.node.loops[0].measure.value)
    assert rig.sink.trips()[-1].cause == "uncontrolled_heating"
    for _ in range(20):  # 2 s more, still rising
        temp += 0.02
        rig.hold_coil(temp, 1)
    peak = rig.node.loops[0].measure.value
    for ack in (rig.command("reset_trip"), rig.state("reset")):
        assert ack.result == RESULT_NOT_ALLOWED_IN_STATE, ack
        assert "uncontrolled_heating" in ack.reason and "peak" in ack.reason, ack.reason
    assert rig.node.interlocks.active and rig.node.sm.state_name == "aborted"
    assert not [e for e in rig.sink.events if e.type == "trip_reset"]
    hysteresis = rig.cfg["runaway"]["hysteresis"]
    rig.hold_coil(peak - hysteresis + 0.5, 30)  # cooling, not enough yet
    assert rig.state("reset").result == RESULT_NOT_ALLOWED_IN_STATE
    rig.hold_coil(peak - hysteresis - 0.5, 30)
    assert rig.state("reset").result == RESULT_OK
    rig.hold_coil(peak - hysteresis - 0.5, 3)
    assert rig.node.sm.state_name == "idle" and not rig.node.interlocks.active


def test_a_heater_that_did_not_heat_may_be_reset_one_check_window_after_the_trip():
    """Only heating again can show the heater works, so the reset re-arms the verifier,
    but not before ``check_gain_time_ms`` since the trip: reset-and-start cycles keep a
    dead heater switched off at least half of the time."""
    rig = Rig("reactor")
    rig.start()
    assert rig.set("coil_temp", 140.0).result == RESULT_OK
    rig.plant.heater_gain = 0.0  # element open
    _run_leased(rig, 900)
    trips = rig.sink.trips()
    cause = trips[-1].cause
    assert cause in ("heater_not_heating", "temperature_runaway"), trips
    window = rig.cfg["runaway"]["check_gain_time_ms"]
    ticks_to_window = (trips[-1].t_ms - rig.node._uptime_ms() + window) // rig.tick_ms
    assert ticks_to_window > 10
    _run_leased(rig, ticks_to_window - 2)
    for ack in (rig.state("reset"), rig.command("reset_trip")):
        assert ack.result == RESULT_NOT_ALLOWED_IN_STATE and cause in ack.reason, ack
    _run_leased(rig, 3)
    assert rig.state("reset").result == RESULT_OK


def test_a_reset_does_not_rearm_a_healthy_verifier():
    """Resetting an unrelated trip (e-stop) must not restart the uncontrolled-rise
    baseline of a verifier that is watching a climb with the heater off."""
    rig = Rig("reactor")
    rig.lease()
    rig.tick(5)
    temp = rig.node.loops[0].measure.value
    rig.hold_coil(temp + 10.0, 30)  # +10 of the 15 allowed, heater off
    rig.plant.digital["estop"] = 1
    _run_leased(rig, 1)
    rig.plant.digital["estop"] = 0
    rig.hold_coil(temp + 10.0, 3)
    assert rig.state("reset").result == RESULT_OK
    rig.hold_coil(temp + 16.0, 30)  # 16 above the minimum since the heater went off
    assert rig.sink.trips()[-1].cause == "uncontrolled_heating"


# -- [runaway] measure (issue 10 item 6) ---------------------------------------------------------


def test_runaway_measure_names_the_sensor_the_verifier_watches():
    """Regression: ``[runaway] measure`` was validated and hashed, then ignored: the
    verifier always watched the loop's measure.  Here a block probe rises 60 degC with
    the heater off while the coil probes stay at 25 degC."""
    from edge.boardconfig import compile_config, decompile, emulate, load_board_config_text
    from edge.build import build_node
    from edge.rtd import cvd_resistance
    from emulator.emulation import RecordingSink
    from tests.edge_harness import NONCE, ROOT

    text = (ROOT / "board_configs" / "reactor.toml").read_text()
    block = "\n".join(
        [
            "[channels.block_temp]",
            'role = "sensor"',
            'unit = "degC"',
            'driver = "max31865"',
            "spi = 0",
            "cs = 21",
            "wires = 3",
            "ref_ohms = 430.0",
            'calibration = { type = "pt100" }',
            "range = [0.0, 250.0]",
            "resolution = 0.01",
            "stale_ms = 1000",
            "",
            "[channels.heater]",
        ]
    )
    assert text.count("[channels.heater]") == 1 and text.count('[runaway]\npid = "coil_temp"') == 1
    text = text.replace("[channels.heater]", block)
    text = text.replace(
        '[runaway]\npid = "coil_temp"', '[runaway]\npid = "coil_temp"\nmeasure = "block_temp"'
    )
    data = decompile(compile_config(emulate(load_board_config_text(text, "reactor+block.toml"))))
    assert data["runaway"]["measure"] == "block_temp"
    sink = RecordingSink()
    node = build_node(data, None, sink, 0, NONCE)
    assert node.loops[0].verify_measure.name == "block_temp"
    drv = {ch.name: d for ch, d in node.sensors}
    now = 0
    for i in range(1200):  # 120 s idle, heater off
        now += 100
        drv["temp_a"].set_raw(cvd_resistance(25.0))
        drv["temp_b"].set_raw(cvd_resistance(25.0))
        drv["block_temp"].set_raw(cvd_resistance(25.0 + 0.05 * i))
        drv["cutout"].set_raw(0)
        drv["estop"].set_raw(0)
        node.tick(now)
    assert [e.cause for e in sink.trips()] == ["uncontrolled_heating"]
    assert node.outputs()["heater"] == 0.0
    assert Rig("reactor").node.loops[0].verify_measure.name == "temperature"  # the default


# -- unsigned rebirths (issue 10 item 8) ----------------------------------------------------------


def test_unsigned_rebirths_are_rate_limited_and_silent():
    """Anyone on the plant network can send an unsigned rebirth.  At most one a second is
    taken (each queues a BIRTH); the others are refused ``busy`` with the reason and
    change nothing; none of them adds an EVENT to the queue that carries trips."""
    from protocol.constants import RESULT_BUSY

    rig = Rig("pump", key=KEY)
    rig.lease()
    rig.tick(5)
    events = len(rig.sink.events)
    assert rig.command("rebirth", sign=False).result == RESULT_OK
    rig.node.birth()
    refused = rig.command("rebirth", sign=False)
    assert refused.result == RESULT_BUSY and "once per 1000 ms" in refused.reason
    assert not rig.node.rebirth_pending
    rig.tick(900 // rig.tick_ms)  # 900 ms after the accepted one: still refused
    assert rig.command("rebirth", sign=False).result == RESULT_BUSY
    rig.tick(100 // rig.tick_ms)
    assert rig.command("rebirth", sign=False).result == RESULT_OK
    assert len(rig.sink.events) == events, "an unsigned rebirth emitted an event"
    # A signed rebirth is an operator's: not limited, and recorded.
    assert rig.command("rebirth").result == RESULT_OK
    assert rig.command("rebirth").result == RESULT_OK
    assert [e.type for e in rig.sink.events[events:]] == ["operator_action"] * 2
