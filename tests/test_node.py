"""The edge runtime (edge.node) driven tick by tick from the shipped board configs.

Time is simulated: every test advances it explicitly.  Safety claims tested here map to
the hazard table in docs/safety.md.
"""

from __future__ import annotations

import pytest

from edge import states as st
from protocol import messages
from protocol.constants import (
    RESULT_EXPIRED,
    RESULT_MALFORMED,
    RESULT_NOT_ALLOWED_IN_STATE,
    RESULT_OK,
    RESULT_OUT_OF_RANGE,
    RESULT_REPLAYED,
    RESULT_UNAUTHENTICATED,
    RESULT_UNKNOWN,
)
from tests.edge_harness import KEY, Rig


class SafeOnlyDriver:
    """Records the order of writes, to prove boot writes safe values first."""


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
    rig = Rig(kind)
    assert rig.node.all_safe()
    birth = messages.parse_birth(rig.node.birth())
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
    birth = messages.parse_birth(rig.node.birth())
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
    t = messages.parse_telemetry(rig.sink.telemetry[-1], rig.node.channels)
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
        if measure.value > 150.0:
            break
        # Below the limit the heater is driven (the setpoint is far above)...
        assert rig.node.outputs()["heater"] > 0.0
        assert not rig.sink.trips()
    # ...and the tick whose (filtered) sample crosses 150 degC writes the safe value:
    # reaction = one tick (on_delay 0).
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


def test_one_probe_open_keeps_running_on_the_other():
    rig = Rig("reactor")
    rig.start()
    rig.set("coil_temp", 60.0)
    rig.run_s(5, lease_every_ms=1000)
    for ch, drv in rig.node.sensors:
        if ch.name == "temp_a":
            drv.set_fault("open")
    rig.run_s(5, lease_every_ms=1000)
    assert not rig.sink.trips()
    assert rig.node.outputs()["heater"] > 0.0


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
        # Ramped setpoint: the heater is not at full power for the whole window, and the
        # growing error (max_error 600 degC*s) trips first.
        (None, "temperature_runaway", 90.0),
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


def test_state_machine_is_not_bypassed_by_a_trip_during_execute():
    rig = Rig("pump")
    rig.start()
    rig.set("flow", 3.0)
    rig.tick()
    rig.plant.overrides["pressure"] = 30.0  # above the 20 bar trip
    rig.tick(3)
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
    from protocol import messages

    assert messages.parse_telemetry(payload, node.channels).t_ms == 2000
