"""Authenticated LEASE on a real edge node (protocol/SPEC.md section 7, "Authenticated
LEASE"; issue 10 item 3).

Leases feed the comms-loss watchdog and the host-time estimate that command expiry is
judged by, and anyone on the broker can publish on the lease topic.  So a keyed module
takes only leases with a valid tag for itself, a fresh seq and a host time that does not
go back; the host time it estimates never steps back; a lease can shorten the board's
lease timeout, never extend it; unkeyed (bench) modules keep taking unsigned leases.
Ported from the outside reproduction 03_unauthenticated_lease.py.
"""

from __future__ import annotations

from host.commands.control import EstopLease
from host.registry import Registry
from protocol import auth, messages, wire
from protocol.constants import RESULT_EXPIRED, RESULT_OK
from tests.edge_harness import HOST_EPOCH_MS, KEY, NONCE, Rig

OTHER_KEY = bytes(range(100, 132))


def forged(host_time_ms, seq=1, duration_ms=3000, host_id="mallory"):
    """What anyone on the broker can publish: an unsigned lease."""
    return messages.build_lease(host_id, host_time_ms, seq, duration_ms)


def signed(rig, host_time_ms, seq, key=KEY, nonce=NONCE, module_id=None, host_id="host"):
    module_id = module_id or rig.node.module_id
    return auth.sign_lease(host_id, host_time_ms, seq, 3000, [(module_id, key, nonce)])


def idle_keyed_rig(kind="pump"):
    """A keyed module whose watchdog is armed by one real lease (pump: 2 s timeout)."""
    rig = Rig(kind, key=KEY)
    assert rig.lease()
    return rig


def run_with(rig, seconds, payload_at, every_ms=500):
    """Tick ``seconds``, handing ``payload_at(host_ms)`` to the node every ``every_ms``."""
    results = []
    for _ in range(int(seconds * 1000 / rig.tick_ms)):
        if rig.now % every_ms == 0:
            results.append(rig.node.handle_lease(payload_at(rig.host_ms()), rig.now))
        rig.tick()
    return results


# --- forged, replayed and backwards leases do not feed the watchdog ------------------------


def test_forged_leases_do_not_keep_a_keyed_module_alive():
    rig = idle_keyed_rig()
    seq = iter(range(1, 10**6))
    results = run_with(rig, 5, lambda t: forged(t, next(seq)))
    assert results and not any(results)
    assert rig.node.lease.lost  # as if nothing had arrived
    assert rig.node.leases_refused == len(results)
    assert rig.node.lease_refusal == auth.LEASE_NO_TAG


def test_forged_leases_after_the_host_died_do_not_keep_a_reactor_heating():
    """Repro (a): the reactor runs, its host dies, a forger leases every 2 s.  It holds,
    then aborts with the heater off when its hold grace runs out."""
    rig = Rig("reactor", key=KEY)
    rig.start()
    assert rig.set("coil_temp", 120.0).result == RESULT_OK
    rig.run_s(30, lease_every_ms=1000)
    assert rig.node.sm.state_name == "execute" and rig.node.outputs()["heater"] > 0
    run_with(rig, 70, forged, every_ms=2000)  # 3 s timeout + 60 s hold grace, and then some
    assert rig.node.lease.lost
    assert rig.node.sm.state_name == "aborted" and rig.node.outputs()["heater"] == 0.0
    assert [e.cause for e in rig.sink.trips()] == ["lease_expired"]


def test_leases_with_a_wrong_tag_are_ignored():
    rig = idle_keyed_rig()
    t = rig.host_ms()
    wrong = (
        signed(rig, t + 1, t + 1, key=OTHER_KEY),  # another key
        signed(rig, t + 2, t + 2, nonce=b"\x09" * 8),  # the module's previous boot
        signed(rig, t + 3, t + 3, module_id="pump2"),  # a tag for another module only
    )
    for data in wrong:
        assert rig.node.handle_lease(data, rig.now) is False
    assert rig.node.leases_refused == 3
    # a tag copied onto other field values does not verify either
    lease = messages.parse_lease(signed(rig, t + 4, t + 4))
    tampered = messages.build_lease("host", t + 86_400_000, t + 4, 3000, lease.tags)
    assert rig.node.handle_lease(tampered, rig.now) is False
    assert rig.node.lease_refusal == auth.LEASE_BAD_TAG


def test_a_replayed_lease_does_not_feed_the_watchdog():
    rig = idle_keyed_rig()
    recorded = signed(rig, rig.host_ms() + 1, rig.host_ms() + 1)
    assert rig.node.handle_lease(recorded, rig.now)  # the real one
    results = run_with(rig, 5, lambda _t: recorded)  # replayed by an eavesdropper
    assert not any(results) and rig.node.lease.lost
    assert rig.node.lease_refusal == auth.LEASE_REPLAYED


def test_a_lease_whose_host_time_goes_back_is_refused_and_changes_nothing():
    rig = idle_keyed_rig()
    rig.tick(10)
    before = rig.node.host_time.host_now(rig.now)
    seq = rig.lease_seq + 1  # a fresh seq, but the host clock an hour back
    back = signed(rig, rig.host_ms() - 3_600_000, seq)
    assert rig.node.handle_lease(back, rig.now) is False
    assert rig.node.lease_refusal == auth.LEASE_BACKWARDS
    assert rig.node.host_time.host_now(rig.now) == before
    rig.tick(int(2500 / rig.tick_ms))  # pump lease timeout 2 s: not fed by it
    assert rig.node.lease.lost


def test_host_time_does_not_step_back_for_an_accepted_lease_either():
    """Another sender (its own seq table) whose clock is behind: its lease feeds the
    watchdog, but the estimate holds, so an expired command stays expired (repro c)."""
    rig = Rig("reactor", key=KEY)
    rig.lease()
    rig.tick(5)
    late = rig.command("set_setpoint", {"channel": rig.alias("coil_temp"), "value": 50.0}, -60)
    assert late.result == RESULT_EXPIRED
    before = rig.node.host_time.host_now(rig.now)
    assert rig.lease(host_ms=rig.host_ms() - 3_600_000, sender="estop")  # accepted ...
    assert rig.node.host_time.host_now(rig.now) == before  # ... but time did not go back
    again = rig.command("set_setpoint", {"channel": rig.alias("coil_temp"), "value": 50.0}, -60)
    assert again.result == RESULT_EXPIRED


def test_forged_host_times_do_not_move_the_estimate():
    """Repro (b) and (c): a forged future lease would make the host's signed abort look
    expired; a forged past one would revive an expired command."""
    rig = Rig("reactor", key=KEY)
    rig.start()
    before = rig.node.host_time.host_now(rig.now)
    assert not rig.node.handle_lease(forged(rig.host_ms() + 86_400_000), rig.now)
    assert not rig.node.handle_lease(forged(rig.host_ms() - 3_600_000, seq=2), rig.now)
    assert rig.node.host_time.host_now(rig.now) == before
    late = rig.command("set_setpoint", {"channel": rig.alias("coil_temp"), "value": 200.0}, -60)
    assert late.result == RESULT_EXPIRED
    assert rig.state("abort").result == RESULT_OK


# --- the lease duration can shorten the board's timeout, never extend it -------------------


def lease_lost_after(rig, duration_ms):
    """ms from an accepted lease with ``duration_ms`` until the watchdog reports loss."""
    assert rig.lease(duration_ms=duration_ms)
    start = rig.now
    while not rig.node.lease.lost:
        rig.tick()
        assert rig.now - start < 10_000
    return rig.now - start


def test_a_lease_shortens_the_board_timeout():
    rig = Rig("pump", key=KEY)  # lease.timeout_ms = 2000, tick 50 ms
    assert lease_lost_after(rig, 500) == 550  # lost on the first tick past 500 ms


def test_a_lease_cannot_extend_the_board_timeout():
    rig = Rig("pump", key=KEY)
    assert lease_lost_after(rig, 3_600_000) == 2050  # the board's 2 s, not an hour


# --- several keyed modules, unkeyed modules, rebirth ----------------------------------------


def test_one_lease_carries_the_tags_of_several_keyed_modules():
    pump = Rig("pump", key=KEY)
    reactor = Rig("reactor", key=OTHER_KEY)
    t = pump.host_ms()
    both = auth.sign_lease(
        "host",
        t,
        t,
        3000,
        [(pump.node.module_id, KEY, NONCE), (reactor.node.module_id, OTHER_KEY, NONCE)],
    )
    assert pump.node.handle_lease(both, 0) and reactor.node.handle_lease(both, 0)
    only_pump = auth.sign_lease("host", t + 1, t + 1, 3000, [(pump.node.module_id, KEY, NONCE)])
    assert pump.node.handle_lease(only_pump, 0)
    assert not reactor.node.handle_lease(only_pump, 0)
    assert reactor.node.lease_refusal == auth.LEASE_NO_TAG


def test_an_unkeyed_module_takes_unsigned_and_signed_leases():
    rig = Rig("pump")  # bench: no key
    assert rig.node.handle_lease(forged(rig.host_ms()), rig.now)
    assert rig.node.host_time.host_now(rig.now) == rig.host_ms()
    data = auth.sign_lease("host", rig.host_ms(), 5, 3000, [("reactor1", KEY, NONCE)])
    assert rig.node.handle_lease(data, rig.now)
    assert rig.node.leases_refused == 0


def test_a_keyed_module_without_host_time_still_answers_an_unsigned_rebirth():
    """A host that missed the birth cannot sign a lease (no boot nonce), so the module
    knows no host time; the unsigned rebirth must get through, or nothing ever would."""
    rig = Rig("reactor", key=KEY)
    births = len(rig.sink.births)
    ack = rig.send(messages.build_command(7, "rebirth", None, HOST_EPOCH_MS + 5000))
    assert ack.result == RESULT_OK and rig.node.rebirth_pending
    assert rig.state("start").result == RESULT_EXPIRED  # everything else waits for a lease
    rig.node.birth()
    assert len(rig.sink.births) == births + 1


# --- `skid stop`'s own lease --------------------------------------------------------------


def test_skid_stop_signs_its_lease_for_every_keyed_module_born_so_far():
    rig = Rig("reactor", key=KEY)
    registry = Registry("demo")
    lease = EstopLease({"reactor1": KEY})
    first = lease.due(registry, HOST_EPOCH_MS)  # before the birth: unsigned, for the bench
    assert messages.parse_lease(first).tags is None
    assert not rig.node.handle_lease(first, rig.now)
    assert lease.due(registry, HOST_EPOCH_MS + 10) is None  # nothing new to sign for
    registry.on_message("skid/v1/demo/reactor1/birth", rig.node.birth(), 0)
    second = lease.due(registry, HOST_EPOCH_MS + 20)
    assert second is not None and rig.node.handle_lease(second, rig.now)
    assert lease.due(registry, HOST_EPOCH_MS + 30) is None


def test_the_coordinator_refuses_more_keyed_modules_than_one_lease_can_sign_for():
    from host.coordinator import Coordinator

    keys = {f"m{i}": KEY for i in range(wire.LEASE_MAX_TAGS + 1)}
    try:
        Coordinator(None, None, None, None, line_id="big", now_ms=0, host_ms=lambda: 0, keys=keys)
    except ValueError as exc:
        assert "33 keyed modules" in str(exc) and "at most 32" in str(exc)
    else:
        raise AssertionError("a lease cannot carry 33 tags: the coordinator must refuse")
