"""Contract tests found missing by mutation testing (`make mutate`, docs/mutation-survivors.md).

Each test states a rule of the safety code that no other test pinned down exactly: the
boundary at exactly the limit, the reason text of a refusal, the arithmetic of a deadline.
They are written against the documented contract, not against a particular mutant.
"""

from __future__ import annotations

import hashlib
import hmac

import cbor2
import pytest

from edge.clock import ticks_diff
from edge.hal import Actuator
from edge.interlocks import Action, Interlock, InterlockSet
from edge.lease import LEASE_LOST, LEASE_OK, LEASE_RESTORED, LeaseWatchdog
from edge.node import ActuatorSlot
from edge.rtd import Pt100
from edge.runaway import HeaterVerifier
from edge.signals import Current4to20, Linear, SensorChannel
from edge.voter import Redundant1oo2
from protocol import auth, messages, wire
from protocol.constants import (
    QUALITY_BAD,
    QUALITY_GOOD,
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
from protocol.messages import MessageError
from tests.edge_harness import KEY, Rig

# ------------------------------------------------------------------ lease watchdog


def test_lease_watchdog_rejects_bad_settings_with_the_key_and_value():
    with pytest.raises(ValueError, match=r"^lease\.on_loss: 'stop' not one of safe/hold$"):
        LeaseWatchdog(1000, on_loss="stop")
    with pytest.raises(ValueError, match=r"^lease\.timeout_ms: 0 must be > 0$"):
        LeaseWatchdog(0)
    with pytest.raises(ValueError, match=r"^lease\.grace_ms: -1 must be >= 0$"):
        LeaseWatchdog(1000, on_loss="hold", grace_ms=-1)
    # The smallest legal values are accepted.
    assert LeaseWatchdog(1).timeout_ms == 1
    assert LeaseWatchdog(1000, on_loss="hold", grace_ms=0).grace_ms == 0


def test_lease_watchdog_is_the_channel_named_lease():
    # Trip events name the channel: a lease trip must say "lease".
    lw = LeaseWatchdog(1000)
    assert lw.name == "lease"
    assert lw.quality == QUALITY_GOOD  # a lease is never a bad sensor
    assert not lw.value and not lw.lost and not lw.armed


def test_unarmed_watchdog_never_expires():
    lw = LeaseWatchdog(1000)
    assert lw.check(10_000_000, True) == LEASE_OK
    assert not lw.lost and not lw.value


def test_lease_expires_only_after_more_than_timeout_ms():
    lw = LeaseWatchdog(1000)
    lw.feed(5000)
    assert lw.check(6000, True) == LEASE_OK  # exactly timeout_ms: still within the lease
    assert not lw.lost
    assert lw.check(6001, True) == LEASE_LOST
    assert lw.lost and lw.value  # "safe": the loss action is due at once
    assert lw.check(6002, True) == LEASE_OK  # LOST is reported once per loss


def test_safe_mode_ignores_grace():
    lw = LeaseWatchdog(1000, on_loss="safe", grace_ms=5000)
    assert lw.grace_ms == 0
    lw.feed(0)
    assert lw.check(1001, True) == LEASE_LOST
    assert lw.value


def test_hold_grace_runs_from_the_expiry_and_ends_exactly_at_grace_ms():
    lw = LeaseWatchdog(1000, on_loss="hold", grace_ms=500)
    lw.feed(0)
    # A stalled tick loop notices the loss late (expiry was at t=1000).
    assert lw.check(1200, True) == LEASE_LOST
    assert not lw.value
    lw.check(1499, True)
    assert not lw.value  # one ms before the grace ends
    lw.check(1500, True)
    assert lw.value  # grace measured from the expiry, not from t=1200


def test_hold_grace_already_over_when_the_loss_is_noticed():
    lw = LeaseWatchdog(1000, on_loss="hold", grace_ms=500)
    lw.feed(0)
    assert lw.check(1500, True) == LEASE_LOST  # expiry 1000 + grace 500 = now
    assert lw.value


def test_loss_at_rest_raises_no_trip_however_long_it_lasts():
    lw = LeaseWatchdog(1000, on_loss="hold", grace_ms=0)
    lw.feed(0)
    assert lw.check(2000, False) == LEASE_LOST
    assert not lw.active_at_loss
    for t in (3000, 60_000, 600_000):
        lw.check(t, False)
        assert not lw.value


@pytest.mark.parametrize("on_loss", ["safe", "hold"])
def test_started_while_lost_is_supervised_from_that_moment(on_loss):
    lw = LeaseWatchdog(1000, on_loss=on_loss)  # default grace: 0
    assert lw.grace_ms == 0
    lw.feed(0)
    lw.check(2000, False)  # lost at rest
    assert not lw.value
    lw.check(3000, True)  # started anyway (a command still within its expiry)
    assert lw.active_at_loss
    assert lw.value  # grace 0: the loss action is due in that same tick


def test_started_while_lost_gets_the_full_grace_from_the_start():
    lw = LeaseWatchdog(1000, on_loss="hold", grace_ms=400)
    lw.feed(0)
    lw.check(2000, False)
    lw.check(5000, True)
    assert not lw.value
    lw.check(5399, True)
    assert not lw.value
    lw.check(5400, True)
    assert lw.value


def test_a_lease_after_a_loss_restores_once_and_clears_the_loss():
    lw = LeaseWatchdog(1000)
    lw.feed(0)
    lw.check(1001, True)
    assert lw.value
    lw.feed(1500)
    assert not lw.lost and not lw.value
    assert lw.check(1510, True) == LEASE_RESTORED
    assert lw.check(1520, True) == LEASE_OK  # reported once
    # The new lease re-arms the deadline from its own arrival.
    assert lw.check(2500, True) == LEASE_OK
    assert lw.check(2501, True) == LEASE_LOST


# ------------------------------------------------------------------ node: command checks


def _ack_ok(ack):
    return ack.result == RESULT_OK


def test_direct_setpoint_accepts_exactly_its_limits_and_names_the_range_when_refused():
    rig = Rig("pump")
    rig.lease()
    slot = rig.node.actuators[0]
    assert _ack_ok(rig.set("flow", 0.0)) and slot.commanded == 0.0
    assert _ack_ok(rig.set("flow", 10.0)) and slot.commanded == 10.0
    ack = rig.set("flow", 10.5)
    assert ack.result == RESULT_OUT_OF_RANGE
    assert ack.reason == "flow = 10.5 outside 0.0..10.0"
    assert slot.commanded == 10.0  # refused: nothing changed


def test_loop_setpoint_refusal_names_channel_value_and_range():
    rig = Rig("reactor")
    rig.lease()
    ack = rig.set("coil_temp", 500.0)
    assert ack.result == RESULT_OUT_OF_RANGE
    # The configured setpoint range (board_configs/reactor.toml: at most the over-temperature
    # trip minus its hysteresis, which the loader enforces).
    assert ack.reason == "coil_temp = 500.0 outside 20.0..140.0"
    assert _ack_ok(rig.set("coil_temp", 140.0))  # the top of the range is a setpoint
    ack = rig.set("coil_temp", 140.5)
    assert ack.reason == "coil_temp = 140.5 outside 20.0..140.0"


def test_setpoint_refusals_for_channels_that_are_not_setpoints():
    rig = Rig("reactor")
    rig.lease()
    ack = rig.set("heater", 0.5)  # driven by its loop: set the loop instead
    assert ack.result == RESULT_UNKNOWN
    assert ack.reason == "heater is driven by loop coil_temp: set coil_temp"
    ack = rig.set("temperature", 50.0)
    assert ack.result == RESULT_UNKNOWN and ack.reason == "temperature is not a setpoint"
    n = len(rig.node.channels)
    ack = rig.command("set_setpoint", {"channel": n, "value": 1.0})  # one past the last
    assert ack.result == RESULT_UNKNOWN and ack.reason == f"no channel with alias {n}"
    assert rig.node.actuators[0].commanded is None


def test_configure_changes_only_the_gains_it_names_and_explains_refusals():
    rig = Rig("reactor")
    rig.lease()
    pid = rig.node.loops[0].pid
    kp, ki = pid.kp, pid.ki
    assert _ack_ok(rig.command("configure", {"config": {"loop": "coil_temp", "kd": 0.25}}))
    assert (pid.kp, pid.ki, pid.kd) == (kp, ki, 0.25)
    ack = rig.command("configure", {"config": {"loop": "coil_temp", "ti": 1.0}})
    assert ack.result == RESULT_UNKNOWN and ack.reason == "configure key ti not supported"
    ack = rig.command("configure", {"config": {"loop": "coil_temp", "kd": -1.0}})
    assert ack.result == RESULT_OUT_OF_RANGE and ack.reason == "gains must be finite and >= 0"
    ack = rig.command("configure", {"config": {"loop": "mixer", "kp": 1.0}})
    assert ack.result == RESULT_OUT_OF_RANGE and ack.reason == "no loop named mixer"
    ack = rig.command("configure", {"config": {"loop": "coil_temp", "kp": "fast"}})
    assert ack.result == RESULT_OUT_OF_RANGE and ack.reason and "None" not in ack.reason
    assert pid.kd == 0.25


# ------------------------------------------------------------------ node: trip reset


def _heater_fault(rig):
    """Latch a heater-verification trip (the verifier found the heater not heating) at the
    next tick's time, as update() would."""
    lp = rig.node.loops[0]
    lp.verifier._trip("heater_not_heating", None, rig.now + rig.tick_ms)
    rig.tick()
    assert rig.node.interlocks.active
    assert [t.cause for t in rig.sink.trips()][-1] == "heater_not_heating"


def _settle_aborted(rig):
    rig.tick(3)
    assert rig.node.sm.state_name == "aborted"


def test_reset_clears_a_heater_verification_trip_and_the_verifier_detects_again():
    rig = Rig("reactor")
    rig.start()
    _heater_fault(rig)
    tripped_ms = rig.now
    _settle_aborted(rig)
    lp = rig.node.loops[0]
    window = lp.verifier.check_gain_time_ms
    # A heater that did not heat is re-armed by the reset, but only once a check window
    # has passed since the trip (reset-and-start cycles keep a dead heater off).
    rig.run_s((window - rig.tick_ms - (rig.now - tripped_ms)) / 1000)
    ack = rig.command("reset_trip")  # one tick short of the window
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE
    assert ack.reason == (
        f"heater_verify: heater_not_heating: coil_temp tripped {window - rig.tick_ms} ms ago;"
        f" reset possible {window} ms after the trip"
    )
    assert rig.node.interlocks.active and lp.verifier.fault == "heater_not_heating"
    rig.tick()  # exactly the window
    ack = rig.command("reset_trip")
    assert ack.result == RESULT_OK and ack.reason is None
    assert not rig.node.interlocks.active and lp.verifier.fault is None
    assert rig.node.interlocks.last_reset_ms == rig.now
    resets = [e for e in rig.sink.events if e.type == "trip_reset"]
    assert len(resets) == 1 and resets[0].detail == "trips reset by command"
    # Re-armed: the next fault trips again.
    rig.lease()
    assert _ack_ok(rig.state("reset"))
    rig.tick(3)
    rig.start()
    _heater_fault(rig)
    assert len(rig.sink.trips()) == 2


def test_a_refused_reset_changes_nothing_not_even_the_heater_verifier():
    rig = Rig("reactor")
    rig.start()
    rig.plant.digital["estop"] = 1  # the e-stop input is pressed
    lp = rig.node.loops[0]
    lp.verifier._trip("heater_not_heating", None, rig.now + rig.tick_ms)
    rig.tick()
    _settle_aborted(rig)
    ack = rig.command("reset_trip")
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE
    # Every refusal is named: the pressed e-stop, then the verifier's own wait (the
    # interlock that mirrors the verifier is judged by the verifier, not as "persists").
    causes = ack.reason.split("; ")
    assert causes[0].startswith("estop: cause persists")
    assert causes[1].startswith("heater_verify: heater_not_heating: coil_temp tripped")
    assert len(causes) == 2
    # Once the verifier's window has passed, only the e-stop holds the reset back.
    rig.run_s(lp.verifier.check_gain_time_ms / 1000)
    ack = rig.command("reset_trip")
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE
    assert ack.reason.startswith("estop: cause persists") and "heater_verify" not in ack.reason
    assert rig.node.interlocks.active
    assert lp.verifier.fault == "heater_not_heating"  # refused: the verifier kept its fault
    assert [e.type for e in rig.sink.events].count("trip_reset") == 0


def test_a_refused_reset_names_every_persisting_cause():
    rig = Rig("reactor")
    rig.start()
    rig.plant.digital["estop"] = 1
    rig.plant.digital["cutout"] = 1  # the independent over-temperature cut-out
    rig.tick()
    _settle_aborted(rig)
    ack = rig.command("reset_trip")
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE
    causes = ack.reason.split("; ")
    assert [c.split(":")[0] for c in causes] == ["cutout", "estop"]


# ------------------------------------------------------------------ node: dead-man check


def test_deadman_check_forces_safe_only_after_more_than_deadman_ms():
    rig = Rig("pump")
    rig.start()
    assert _ack_ok(rig.set("flow", 5.0))
    rig.tick()
    slot = rig.node.actuators[0]
    assert slot.driver.value == 5.0
    t = slot.last_write_ms
    assert rig.node.deadman_check(t + slot.deadman_ms) == 0  # exactly the deadline: not yet
    assert slot.driver.value == 5.0
    assert rig.node.deadman_check(t + slot.deadman_ms + 1) == 1
    assert slot.driver.value == slot.safe
    assert rig.node.deadman_check(t + slot.deadman_ms + 2) == 0  # already safe


# ------------------------------------------------------------------ protocol.auth

AUTH_KEY = bytes(range(100, 132))
AUTH_NONCE = bytes.fromhex("a1a2a3a4a5a6a7a8")


def _command():
    return messages.build_command(1, "set_setpoint", {"channel": 1, "value": 80.0}, 1767225605000)


@pytest.mark.parametrize("n", [63, 64, 65])
def test_hmac_block_sized_keys(n):
    # RFC 2104: only a key longer than the 64-byte block is hashed first.
    key = bytes(range(n))
    assert auth.hmac_sha256(key, b"msg") == hmac.new(key, b"msg", hashlib.sha256).digest()


def test_bytearray_key_and_nonce_sign_like_bytes():
    signed = auth.sign_command(_command(), AUTH_KEY, "reactor-2", AUTH_NONCE, "host-a", 1)
    again = auth.sign_command(
        _command(), bytearray(AUTH_KEY), "reactor-2", bytearray(AUTH_NONCE), "host-a", 1
    )
    assert again == signed
    v = auth.CommandVerifier(bytearray(AUTH_KEY), "reactor-2", bytearray(AUTH_NONCE))
    assert v.verify(signed) == RESULT_OK


def test_auth_setup_errors_name_the_field_and_never_the_key():
    with pytest.raises(
        auth.AuthError, match=r"^auth\.key: bytes of length 16\.\.32 required, got 8$"
    ):
        auth.CommandVerifier(b"k" * 8, "reactor-2", AUTH_NONCE)
    with pytest.raises(
        auth.AuthError, match=r"^auth\.key: bytes of length 16\.\.32 required, got str$"
    ):
        auth.CommandVerifier("k" * 16, "reactor-2", AUTH_NONCE)
    with pytest.raises(
        auth.AuthError, match=r"^auth\.boot_nonce: b'\\x01' not in bytes of length 8\.\.16$"
    ):
        auth.CommandVerifier(AUTH_KEY, "reactor-2", b"\x01")
    with pytest.raises(auth.AuthError, match=r"^auth\.max_senders: 0 not in 1\.\.$"):
        auth.CommandVerifier(AUTH_KEY, "reactor-2", AUTH_NONCE, max_senders=0)
    with pytest.raises(MessageError, match="verifier.module_id"):
        auth.CommandVerifier(AUTH_KEY, "Bad Id", AUTH_NONCE)
    with pytest.raises(MessageError, match="command.module_id"):
        auth.sign_command(_command(), AUTH_KEY, "Bad Id", AUTH_NONCE, "host-a", 1)
    with pytest.raises(MessageError, match="command.auth.sender"):
        auth.sign_command(_command(), AUTH_KEY, "reactor-2", AUTH_NONCE, "Bad Id", 1)
    with pytest.raises(MessageError, match="command.auth.counter"):
        auth.sign_command(_command(), AUTH_KEY, "reactor-2", AUTH_NONCE, "host-a", -1)


def test_nonce_length_limits_are_inclusive():
    for n in (8, 16):
        v = auth.CommandVerifier(AUTH_KEY, "reactor-2", bytes(n))
        signed = auth.sign_command(_command(), AUTH_KEY, "reactor-2", bytes(n), "host-a", 1)
        assert v.verify(signed) == RESULT_OK
    with pytest.raises(auth.AuthError):
        auth.CommandVerifier(AUTH_KEY, "reactor-2", bytes(17))


def test_sender_table_holds_eight_senders_by_default_and_one_at_least():
    v = auth.CommandVerifier(AUTH_KEY, "reactor-2", AUTH_NONCE)
    for i in range(8):
        s = auth.sign_command(_command(), AUTH_KEY, "reactor-2", AUTH_NONCE, f"host-{i}", 1)
        assert v.verify(s) == RESULT_OK
    s = auth.sign_command(_command(), AUTH_KEY, "reactor-2", AUTH_NONCE, "host-8", 1)
    assert v.verify(s) == RESULT_UNAUTHENTICATED
    one = auth.CommandVerifier(AUTH_KEY, "reactor-2", AUTH_NONCE, max_senders=1)
    s = auth.sign_command(_command(), AUTH_KEY, "reactor-2", AUTH_NONCE, "host-a", 1)
    assert one.verify(s) == RESULT_OK


def _auth_only(tag_over, counter=1):
    """A Command whose auth block carries the tag of the unsigned bytes ``tag_over``."""
    tag = auth.compute_tag(AUTH_KEY, "reactor-2", AUTH_NONCE, "host-a", counter, tag_over)
    cmd = messages.parse_command(_command())
    cmd.auth = messages.Auth("host-a", counter, tag)
    return cmd, b"\x06" + cbor2.dumps(["host-a", counter, tag])


def test_command_tag_covers_exactly_head_minus_one_and_the_entries_before_auth():
    """The verifier's byte rule on its own (it is handed a parse, and checks the bytes):
    the unsigned bytes are the first byte minus one and everything up to the auth entry,
    which must be the last bytes; the first byte must be a one-byte map head (0xa1..0xb7).
    Checked with tags over exactly the bytes the rule derives, so only the rule decides."""
    body = _command()[1:]  # the entries of a 5-entry command
    for b in range(256):
        cmd, entry = _auth_only(bytes([(b - 1) & 0xFF]) + body)
        v = auth.CommandVerifier(AUTH_KEY, "reactor-2", AUTH_NONCE)
        want = RESULT_OK if 0xA1 <= b <= 0xB7 else RESULT_UNAUTHENTICATED
        assert v.verify(bytes([b]) + body + entry, cmd) == want, hex(b)
    # a map of the auth entry alone: the unsigned bytes are the empty map
    cmd, entry = _auth_only(b"\xa0")
    v = auth.CommandVerifier(AUTH_KEY, "reactor-2", AUTH_NONCE)
    assert v.verify(b"\xa1" + entry, cmd) == RESULT_OK
    # too short to hold the auth entry, empty, or the auth entry not last: refused, even
    # where a tag over what a lax rule would hash (the head alone) checks
    cmd, entry = _auth_only(b"\xa0", counter=2)
    for data in (b"\xa1", b"", b"\xa1" + entry[:-1], b"\xa1" + entry + b"\x00"):
        assert v.verify(data, cmd) == RESULT_UNAUTHENTICATED, data.hex()
    assert v.verify(b"\xa1" + entry, cmd) == RESULT_OK
    # the auth entry must be canonical: a longer counter head is not what was signed
    cmd, entry = _auth_only(b"\xa0", counter=3)
    longer = entry[:9] + b"\x18\x03" + entry[10:]
    assert entry[9] == 3 and cbor2.loads(longer[1:]) == cbor2.loads(entry[1:])
    assert v.verify(b"\xa1" + longer, cmd) == RESULT_UNAUTHENTICATED
    assert v.last_counter("host-a") == 2


def test_command_tag_input_is_the_documented_array_for_any_length():
    """_tag_head's byte-string head for unsigned encodings of every head size."""
    for n in (0, 1, 23, 24, 255, 256, 8192, 65535):
        unsigned = bytes([0xA0]) + bytes(range(256)) * (n // 256) + bytes(n % 256)
        unsigned = unsigned[:n]
        tag = auth.compute_tag(AUTH_KEY, "reactor-2", AUTH_NONCE, "host-a", 2**63, unsigned)
        data = cbor2.dumps(["reactor-2", AUTH_NONCE, "host-a", 2**63, unsigned])
        assert tag == hmac.new(AUTH_KEY, data, hashlib.sha256).digest()[:16], n
    with pytest.raises(auth.AuthError, match=r"^auth\.unsigned: 65536 bytes, at most 65535$"):
        auth.compute_tag(AUTH_KEY, "reactor-2", AUTH_NONCE, "host-a", 1, bytes(65536))


def test_verify_wants_the_received_bytes():
    v = auth.CommandVerifier(AUTH_KEY, "reactor-2", AUTH_NONCE)
    signed = auth.sign_command(_command(), AUTH_KEY, "reactor-2", AUTH_NONCE, "host-a", 1)
    with pytest.raises(TypeError, match="^CommandVerifier.verify: the received bytes, not a"):
        v.verify(messages.parse_command(signed))
    assert v.verify(signed, messages.parse_command(signed)) == RESULT_OK
    assert v.verify(signed) == RESULT_REPLAYED  # parsed by the verifier itself
    assert v.verify(b"\xff") == RESULT_MALFORMED


# ------------------------------------------------------------------ signal plausibility


def test_pt100_open_and_short_limits_are_inclusive():
    cal = Pt100()
    assert cal.raw_ok(18.0) and cal.raw_ok(400.0)  # r_short, r_open themselves are plausible
    assert not cal.raw_ok(17.99) and cal.bad_reason(17.99) == "short"
    assert not cal.raw_ok(400.01) and cal.bad_reason(400.01) == "open"


def _starting(name):
    ch = SensorChannel(name, Linear(1.0), stale_ms=1000)
    ch.update(None, 0, fault="starting")  # first conversion not ready yet
    assert ch.starting and ch.value is None
    return ch


def _bad(name, reason):
    ch = SensorChannel(name, Linear(1.0), stale_ms=1000)
    ch.update(None, 0, fault=reason)
    assert ch.quality == QUALITY_BAD
    return ch


@pytest.mark.parametrize("bad_first", [True, False])
def test_1oo2_with_one_input_starting_and_the_other_bad_is_bad_with_its_reason(bad_first):
    a, b = (
        (_bad("ta", "open"), _starting("tb"))
        if bad_first
        else (_starting("ta"), _bad("tb", "open"))
    )
    pair = Redundant1oo2(a, b, 5.0)
    assert pair.check(10) == QUALITY_BAD
    assert pair.quality == QUALITY_BAD and pair.bad_reason == "open"


def test_1oo2_with_both_inputs_starting_is_uncertain_without_a_reason():
    pair = Redundant1oo2(_starting("ta"), _starting("tb"), 5.0)
    assert pair.check(10) == QUALITY_UNCERTAIN
    assert pair.bad_reason is None and pair.value is None


# ------------------------------------------------------------------ interlock refusal texts

SAFE_VALUES = {"heater": 0.0, "pump": 0.0}


class _Input:
    def __init__(self, name, value):
        self.name = name
        self.value = value


def _tripped(interlock, ch, value):
    iset = InterlockSet([interlock], {})
    ch.update(value, 0)
    assert iset.evaluate(0)
    return iset


def test_reset_refusal_names_interlock_cause_reading_and_clear_level():
    ch = SensorChannel("TT1", Linear(1.0), stale_ms=None)
    iset = _tripped(Interlock("TT1_HH", ch, "above", 150.0, hysteresis=5.0), ch, 152.3)
    assert iset.reset(1) == (
        False,
        "TT1_HH: cause persists (over_temperature TT1 = 152.3, clears at <= 145)",
    )
    ch = SensorChannel("FT1", Linear(1.0), stale_ms=None)
    low = Interlock("FT1_L", ch, "below", 2.0, hysteresis=0.5, cause="low_flow")
    iset = _tripped(low, ch, 1.0)
    assert iset.reset(1) == (False, "FT1_L: cause persists (low_flow FT1 = 1, clears at >= 2.5)")
    # Large readings stay short (4 significant digits, exponent form).
    ch = SensorChannel("PT1", Linear(1.0), stale_ms=None)
    high = Interlock("PT1_HH", ch, "above", 1e5, hysteresis=2e4, cause="over_pressure")
    iset = _tripped(high, ch, 2.5e5)
    assert iset.reset(1) == (
        False,
        "PT1_HH: cause persists (over_pressure PT1 = 2.5e+05, clears at <= 8e+04)",
    )


def test_reset_refusal_for_inputs_bad_sensors_and_unknown_rates():
    estop = _Input("estop", True)
    iset = InterlockSet([Interlock("ESTOP", estop, "input_true", cause="estop")], {})
    assert iset.evaluate(0)
    assert iset.reset(1) == (False, "ESTOP: cause persists (estop still active, value True)")

    ch = SensorChannel("TT1", Linear(1.0), stale_ms=None)
    iset = _tripped(Interlock("TT1_HH", ch, "above", 150.0), ch, float("nan"))
    assert iset.reset(1) == (False, "TT1_HH: cause persists (sensor_bad: TT1 is nan)")

    ch = SensorChannel("TT2", Linear(1.0), stale_ms=None)
    ror = Interlock("TT2_ROR", ch, "rate_of_rise", 1.0, window_ms=1000, cause="runaway_rate")
    iset = InterlockSet([ror], {})
    ch.update(float("nan"), 0)  # BAD: trips as sensor_bad, and the rate history restarts
    assert iset.evaluate(0)
    ch.update(20.0, 100)
    iset.evaluate(100)
    assert iset.reset(100) == (
        False,
        "TT2_ROR: cause persists (rate of TT2 unknown until a full 1000 ms window)",
    )


# ------------------------------------------------------------------ node: refusal reasons


def test_setpoints_are_refused_at_rest_after_an_abort():
    rig = Rig("pump")
    rig.start()
    assert _ack_ok(rig.state("abort"))
    rig.tick(3)
    assert rig.node.sm.state_name == "aborted"
    ack = rig.set("flow", 1.0)
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE
    assert ack.reason == "set_setpoint not allowed in aborted"
    assert rig.node.actuators[0].commanded is None


def test_state_command_refusal_reasons():
    rig = Rig("reactor")
    rig.lease()
    ack = rig.state("suspend")  # a wire-level service command this module does not implement
    assert ack.result == RESULT_UNKNOWN and ack.reason == "service command suspend not supported"
    ack = rig.state("unhold")  # not held
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE and ack.reason == "unhold not allowed in idle"
    ack = rig.command("reset_trip")
    assert ack.result == RESULT_OK and ack.reason == "no trips latched"


def test_start_command_enters_starting_at_the_command_time():
    rig = Rig("reactor")
    rig.tick(3)
    rig.lease()
    assert _ack_ok(rig.state("start"))
    assert rig.node.sm.state_name == "starting" and rig.node.sm.entered_ms == rig.now


def test_without_a_lease_only_start_and_unhold_are_refused():
    rig = Rig("reactor")  # on_loss = hold, lease timeout 3 s
    rig.start()
    assert _ack_ok(rig.state("hold"))
    rig.tick(2)
    assert rig.node.sm.state_name == "held"
    rig.tick(int(4000 / rig.tick_ms))  # no lease: lost
    assert rig.node.lease.lost
    # Host time is still known from the last lease, so the command itself is fresh.
    ack = rig.state("unhold")
    assert (
        ack.result == RESULT_NOT_ALLOWED_IN_STATE and ack.reason == "unhold refused: no host lease"
    )
    assert rig.node.sm.state_name == "held"
    # Going to a safer state is never refused for want of a lease.
    assert _ack_ok(rig.state("abort"))


def test_reset_with_latched_trips_is_refused_until_the_module_is_at_rest():
    rig = Rig("pump")
    rig.start()
    rig.plant.digital["estop"] = 1
    rig.tick()
    assert rig.node.sm.state_name == "aborting"
    ack = rig.state("reset")
    assert (
        ack.result == RESULT_NOT_ALLOWED_IN_STATE and ack.reason == "reset not allowed in aborting"
    )
    rig.plant.digital["estop"] = 0
    rig.tick(3)
    assert rig.node.sm.state_name == "aborted"
    assert _ack_ok(rig.state("reset"))
    assert not rig.node.interlocks.active
    assert rig.node.interlocks.last_reset_ms == rig.now


def test_ack_alarm_reports_how_many_were_acknowledged():
    rig = Rig("reactor")
    rig.lease()
    ack = rig.command("ack_alarm", {"target": "high_temperature"})
    assert ack.result == RESULT_OK and ack.reason == "0 acknowledged"
    alarm = rig.node.alarms.alarms[0]
    alarm.active, alarm.acked = True, False  # high_temperature is active, not acknowledged
    ack = rig.command("ack_alarm", {"target": "fast_rise"})
    assert ack.reason == "0 acknowledged" and not alarm.acked
    ack = rig.command("ack_alarm", {"target": "high_temperature"})
    assert ack.reason == "1 acknowledged" and alarm.acked


def test_ack_alarm_on_a_module_without_alarms():
    # The valve has no configured alarms once they are removed, and no built-in ones (no
    # stuck detection, no 1oo2 pair: those raise sensor_stuck / redundancy_lost alarms).
    rig = Rig("valve", mutate=lambda d: d.__setitem__("alarms", []))
    assert rig.node.alarms is None
    rig.lease()
    ack = rig.command("ack_alarm")
    assert ack.result == RESULT_OK and ack.reason == "no alarms configured"


# ------------------------------------------------------------------ node: handle_command


def test_malformed_command_ack_carries_its_id_and_the_parse_error():
    rig = Rig("reactor")
    rig.lease()
    good = messages.build_command(77, "set_setpoint", {"channel": 6, "value": 80.0}, 10**13)
    decoded = cbor2.loads(good)
    decoded[wire.K_OP] = 250  # no such operation
    ack = rig.send(cbor2.dumps(decoded))
    assert ack.result == RESULT_MALFORMED and ack.command_id == 77
    assert ack.reason and "op" in ack.reason and "None" not in ack.reason


def test_authentication_refusals_say_why():
    rig = Rig("reactor", key=KEY)
    rig.lease()
    ack = rig.command("rebirth")
    assert ack.result == RESULT_OK
    ack = rig.command("set_setpoint", {"channel": 6, "value": 80.0}, sign=False)
    assert ack.result == RESULT_UNAUTHENTICATED
    assert ack.reason == "missing or invalid authentication tag"
    ack = rig.command("set_setpoint", {"channel": 6, "value": 80.0}, counter=rig.counter)
    assert ack.result == RESULT_REPLAYED and ack.reason == "counter already used"


def test_expiry_refusals_say_why():
    rig = Rig("reactor")
    ack = rig.set("coil_temp", 80.0)
    assert ack.result == RESULT_EXPIRED and ack.reason == "host time unknown (no recent lease)"
    rig.lease()
    ack = rig.command("set_setpoint", {"channel": 6, "value": 80.0}, expiry_s=-1.0)
    assert ack.result == RESULT_EXPIRED and ack.reason == "expired"


def test_only_accepted_commands_are_logged_as_operator_actions():
    rig = Rig("pump", key=KEY)
    rig.lease()
    before = len(rig.sink.events)
    assert rig.set("flow", 99.0).result == RESULT_OUT_OF_RANGE
    assert len(rig.sink.events) == before  # a refusal emits nothing
    assert _ack_ok(rig.set("flow", 2.5))
    (event,) = rig.sink.events[before:]
    assert event.type == "operator_action" and event.source == "coordinator"
    assert event.detail == "set_setpoint channel=0 value=2.5"


def test_handle_lease_reports_whether_the_lease_was_taken():
    rig = Rig("reactor")
    assert rig.node.handle_lease(messages.build_lease("host", 10**12, 1, 3000), 0) is True
    assert rig.node.handle_lease(b"\xff\x00", 0) is False


def _good(name, value):
    ch = SensorChannel(name, Linear(1.0), stale_ms=None)
    ch.update(value, 0)
    return ch


def test_1oo2_disagreement_makes_the_pair_bad_for_its_interlock():
    pair = Redundant1oo2(_good("ta", 100.0), _good("tb", 110.0), 5.0, select="max")
    hh = Interlock("T_HH", pair, "above", 150.0)
    iset = InterlockSet([hh], {})
    assert pair.check(0) == QUALITY_BAD
    assert pair.quality == QUALITY_BAD and pair.bad_reason == "disagreement"
    assert iset.evaluate(0) and iset.first_out.cause == "sensor_bad"


@pytest.mark.parametrize(
    "select, a, b, expected",
    [
        ("max", 101.0, 99.0, 101.0),
        ("max", 99.0, 101.0, 101.0),
        ("min", 99.0, 101.0, 99.0),
        ("min", 101.0, 99.0, 99.0),
        ("avg", 99.0, 101.0, 100.0),
    ],
)
def test_1oo2_select(select, a, b, expected):
    pair = Redundant1oo2(_good("ta", a), _good("tb", b), 5.0, select=select)
    assert pair.check(0) == QUALITY_GOOD
    assert pair.value == expected


def test_1oo2_both_bad_reports_the_first_inputs_reason():
    pair = Redundant1oo2(_bad("ta", "open"), _bad("tb", "short"), 5.0)
    assert pair.check(0) == QUALITY_BAD
    assert pair.bad_reason == "open"


# ------------------------------------------------------------------ heater verifier error sum


def test_runaway_error_integrates_real_elapsed_time_only():
    v = HeaterVerifier(hysteresis=5.0, max_error=1000.0)
    v.update(100.0, 50.0, 1.0, 0)  # first sample: no time has elapsed yet
    assert v.error == 0.0
    v.update(100.0, 50.0, 1.0, 0)  # same tick again: nothing elapsed
    assert v.error == 0.0
    v.update(100.0, 50.0, 1.0, 1)  # 1 ms below the band by 45 degC
    assert v.error == pytest.approx(0.045)
    v.update(100.0, 50.0, 1.0, 2001)  # 2 s more
    assert v.error == pytest.approx(0.045 + 90.0)
    v.update(100.0, 50.0, 1.0, 1001)  # a tick from the past adds nothing
    assert v.error == pytest.approx(0.045 + 90.0)


# ------------------------------------------------------------------ auth: field names, host time


def test_signing_errors_name_the_field_first():
    cases = [
        ({"module_id": "Bad Id"}, r"^command\.module_id: "),
        ({"sender": "Bad Id"}, r"^command\.auth\.sender: "),
        ({"counter": -1}, r"^command\.auth\.counter: "),
    ]
    for kw, match in cases:
        args = {"module_id": "reactor-2", "sender": "host-a", "counter": 1, **kw}
        with pytest.raises(MessageError, match=match):
            auth.sign_command(
                _command(), AUTH_KEY, args["module_id"], AUTH_NONCE, args["sender"], args["counter"]
            )
    with pytest.raises(MessageError, match=r"^verifier\.module_id: "):
        auth.CommandVerifier(AUTH_KEY, "Bad Id", AUTH_NONCE)


def test_host_time_is_known_for_max_age_ms_after_a_lease_and_10_minutes_by_default():
    est = auth.HostTimeEstimate()
    assert est.max_age_ms == 600_000
    est.update(5_000_000, 100)
    assert est.host_now(100 + 600_000) == 5_600_000
    assert est.host_now(100 + 600_001) is None


def test_host_time_max_age_limits():
    assert auth.HostTimeEstimate(1).max_age_ms == 1
    half = 1 << 29
    assert auth.HostTimeEstimate(half - 1).max_age_ms == half - 1
    for bad in (0, half):
        with pytest.raises(
            ValueError, match=rf"^host_time\.max_age_ms: {bad} not in 1\.\.{half - 1}$"
        ):
            auth.HostTimeEstimate(bad)


# ------------------------------------------------------------------ configuration errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"condition": "over"},
            "interlock X1: condition must be one of ('above', 'below', 'bad_quality',"
            " 'rate_of_rise', 'input_true', 'deviation'), got 'over'",
        ),
        ({"condition": "above"}, "interlock X1 limit must be a finite number, got None"),
        (
            {"condition": "below", "limit": "1"},
            "interlock X1 limit must be a finite number, got '1'",
        ),
        (
            {"condition": "above", "limit": 1, "on_delay_ms": -1},
            "interlock X1 on_delay_ms must be >= 0, got -1",
        ),
        (
            {"condition": "above", "limit": 1, "hysteresis": -0.5},
            "interlock X1 hysteresis must be >= 0, got -0.5",
        ),
        (
            {"condition": "above", "limit": 1, "action": ("heater",)},
            "interlock X1: action must be an Action, got ('heater',)",
        ),
        (
            {"condition": "rate_of_rise", "limit": 1, "window_ms": 0},
            "interlock X1 window_ms must be >= 1, got 0",
        ),
        (
            {"condition": "rate_of_rise", "limit": 1, "window_ms": float("inf")},
            "interlock X1 window_ms must be a finite number, got inf",
        ),
    ],
)
def test_interlock_config_errors_name_interlock_key_value_and_range(kwargs, message):
    with pytest.raises(ValueError) as exc:
        Interlock("X1", SensorChannel("TT1", Linear(1.0)), **kwargs)
    assert str(exc.value) == message


def test_interlock_config_accepts_the_boundary_values():
    ch = SensorChannel("TT1", Linear(1.0))
    il = Interlock("X1", ch, "rate_of_rise", 0, on_delay_ms=0, hysteresis=0, window_ms=1)
    assert (il.limit, il.on_delay_ms, il.hysteresis, il.window_ms) == (0, 0, 0, 1)
    il = Interlock("X2", ch, "bad_quality", cause="ignored")
    assert il.cause == "sensor_bad" and il.limit is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hysteresis": -1}, "hysteresis must be a finite number >= 0, got -1"),
        ({"max_error": 0}, "max_error must be a finite number > 0, got 0"),
        ({"heating_gain": float("nan")}, "heating_gain must be a finite number > 0, got nan"),
        ({"check_gain_time_ms": 0}, "check_gain_time_ms must be a finite number > 0, got 0"),
        ({"uncontrolled_rise": -1}, "uncontrolled_rise must be a finite number > 0, got -1"),
        ({"max_error": "1"}, "max_error must be a finite number > 0, got '1'"),
        ({"full_power": 0}, "full_power must be in (0, 1], got 0"),
        ({"full_power": 1.5}, "full_power must be in (0, 1], got 1.5"),
        ({"off_level": 0.9}, "off_level must be in [0, full_power=0.9), got 0.9"),
        ({"off_level": -0.1}, "off_level must be in [0, full_power=0.9), got -0.1"),
    ],
)
def test_heater_verifier_config_errors_name_key_value_and_range(kwargs, message):
    with pytest.raises(ValueError) as exc:
        HeaterVerifier(**kwargs)
    assert str(exc.value) == message


def test_heater_verifier_defaults_and_boundary_values():
    v = HeaterVerifier()  # Klipper's verify_heater defaults, in ms
    assert (v.hysteresis, v.max_error, v.heating_gain, v.check_gain_time_ms) == (
        5.0,
        120.0,
        2.0,
        20000,
    )
    assert (v.full_power, v.off_level, v.uncontrolled_rise) == (0.9, 0.0, 10.0)
    v = HeaterVerifier(hysteresis=0, full_power=1, off_level=0)
    assert (v.hysteresis, v.full_power, v.off_level) == (0, 1, 0)


# ------------------------------------------------------------------ heater verifier boundaries


def test_runaway_band_edges_are_inclusive():
    v = HeaterVerifier(hysteresis=5.0, max_error=1000.0)
    v.update(100.0, 95.0, 0.5, 0)  # exactly target - hysteresis: near target
    v.update(100.0, 95.0, 0.5, 1000)
    assert v.error == 0.0 and not v.approaching
    v.update(100.0, 90.0, 0.5, 2000)  # below the band: error accumulates
    assert v.error == pytest.approx(5.0)
    v.update(100.0, 105.0, 0.5, 3000)  # exactly target + hysteresis: the error resets
    assert v.error == 0.0
    v.update(100.0, 90.0, 0.5, 4000)
    assert v.error == pytest.approx(5.0)
    v.update(100.0, 100.0, 0.5, 5000)  # at the target
    assert v.error == 0.0


def test_held_setpoint_trips_runaway_at_exactly_max_error():
    v = HeaterVerifier(hysteresis=0.0, max_error=10.0)
    assert v.update(100.0, 100.0, 0.5, 0) is None  # holding at the target
    assert v.update(100.0, 95.0, 0.5, 1000) is None  # 5 degC-s
    assert v.update(100.0, 95.0, 0.5, 2000) == "temperature_runaway"  # 10 degC-s: the limit


def test_approach_at_partial_power_ends_and_trips_runaway_at_exactly_max_error():
    v = HeaterVerifier(hysteresis=0.0, max_error=10.0, heating_gain=2.0, check_gain_time_ms=1000)
    assert v.update(100.0, 90.0, 0.5, 0) is None
    assert v.approaching
    assert v.update(100.0, 90.0, 0.5, 1000) == "temperature_runaway"


def test_an_approach_that_ran_out_at_partial_power_is_over():
    v = HeaterVerifier(hysteresis=0.0, max_error=1000.0, heating_gain=2.0, check_gain_time_ms=1000)
    v.update(100.0, 90.0, 0.5, 0)
    assert v.update(100.0, 90.5, 0.5, 1000) is None  # window over, no fault: not full power
    assert not v.approaching


def test_output_exactly_at_full_power_counts_as_full_power():
    v = HeaterVerifier(heating_gain=2.0, check_gain_time_ms=1000, full_power=0.9)
    v.update(100.0, 50.0, 0.9, 0)
    assert v.update(100.0, 50.5, 0.9, 500) is None
    assert v.update(100.0, 51.0, 0.9, 1000) == "heater_not_heating"


def test_reaching_exactly_the_gain_is_progress():
    v = HeaterVerifier(hysteresis=5.0, heating_gain=2.0, check_gain_time_ms=1000)
    v.update(100.0, 50.0, 1.0, 0)  # goal 52 by t=1000
    assert v.update(100.0, 52.0, 1.0, 500) is None
    assert v.error == 0.0  # progress resets the error ...
    assert v.update(100.0, 52.5, 1.0, 1400) is None  # ... and restarts the window (now 1500)


def test_only_the_first_window_tracks_a_dip():
    v = HeaterVerifier(hysteresis=5.0, heating_gain=2.0, check_gain_time_ms=1000)
    v.update(100.0, 50.0, 1.0, 0)
    v.update(100.0, 52.0, 1.0, 100)  # progress: goal 54 by t=1100
    v.update(100.0, 50.0, 1.0, 200)  # a later dip does not lower the goal
    v.update(100.0, 52.5, 1.0, 300)  # above 50 + 2, below 54: not progress
    assert v.update(100.0, 53.0, 1.0, 1100) == "heater_not_heating"


# ------------------------------------------------------------------ interlock set details


class _Probe:
    """A channel with quality but without a bad_reason attribute (e.g. a digital input)."""

    def __init__(self, name):
        self.name = name
        self.value = 0.0
        self.quality = QUALITY_GOOD


def test_trip_records_carry_the_requested_state_and_no_reason_unless_sensor_bad():
    ch = SensorChannel("TT1", Linear(1.0), stale_ms=None)
    il = Interlock("TT1_HH", ch, "above", 150.0, action=Action(state="held"))
    iset = _tripped(il, ch, 151.0)
    rec = iset.first_out
    assert rec.state == "held" and rec.reason is None
    probe = _Probe("p1")
    probe.quality = QUALITY_BAD
    iset = InterlockSet([Interlock("P1_H", probe, "above", 1.0)], {})
    assert iset.evaluate(0)
    assert iset.first_out.cause == "sensor_bad" and iset.first_out.reason is None
    assert iset.reset(1) == (False, "P1_H: cause persists (sensor_bad: p1 is bad)")


def test_most_severe_requested_state_wins_over_a_trip_without_one():
    a = _Input("a", True)
    b = _Input("b", False)
    iset = InterlockSet(
        [
            Interlock("A", a, "input_true", action=Action()),
            Interlock("B", b, "input_true", action=Action(state="held")),
        ],
        {},
    )
    assert iset.requested_state is None
    iset.evaluate(0)
    assert iset.requested_state is None  # no trip asked for a state
    b.value = True
    iset.evaluate(1)
    assert iset.requested_state == "held"


def test_interlock_set_reset_lists_every_persisting_cause():
    a = _Input("a", True)
    b = _Input("b", True)
    iset = InterlockSet([Interlock("A", a, "input_true"), Interlock("B", b, "input_true")], {})
    iset.evaluate(0)
    ok, reason = iset.reset(1)
    assert not ok
    assert reason == (
        "A: cause persists (a still active, value True); B: cause persists (b still active, value True)"
    )


def test_a_latched_trip_whose_reading_vanished_still_persists():
    probe = _Probe("p1")
    probe.value = 200.0
    iset = InterlockSet([Interlock("P1_H", probe, "above", 150.0)], {})
    assert iset.evaluate(0)
    probe.value = None  # reading unknown: the cause cannot be shown to be gone
    ok, _ = iset.reset(1)
    assert not ok


def _rate_set(hysteresis=0.0):
    ch = SensorChannel("TT1", Linear(1.0), stale_ms=None)
    ror = Interlock(
        "ROR", ch, "rate_of_rise", 1.0, window_ms=1000, hysteresis=hysteresis, cause="rate"
    )
    return ch, InterlockSet([ror], {})


def test_a_rate_exactly_at_the_limit_does_not_trip():
    ch, iset = _rate_set()
    for t in range(0, 5001, 250):
        ch.update(20.0 + t / 1000.0, t)  # exactly 1 degC/s (binary-exact steps)
        assert not iset.evaluate(t)


def test_a_latched_rate_trip_persists_until_the_rate_falls_below_limit_minus_hysteresis():
    ch, iset = _rate_set(hysteresis=0.5)
    v = 20.0
    for t in range(0, 2001, 100):
        v += 0.2  # 2 degC/s
        ch.update(v, t)
        iset.evaluate(t)
    assert iset.active
    for t in range(2100, 5001, 100):
        v += 0.08  # 0.8 degC/s: under the limit, above limit - hysteresis
        ch.update(v, t)
        iset.evaluate(t)
    ok, reason = iset.reset(5000)
    assert not ok and "clears at <= 0.5/s" in reason


def test_interlock_set_rejects_non_interlocks_by_name():
    with pytest.raises(ValueError) as exc:
        InterlockSet(["TT1_HH"])
    assert str(exc.value) == "interlocks must be Interlock objects, got 'TT1_HH'"


def test_trip_event_queue_keeps_the_newest_32_by_default_and_counts_the_rest():
    inputs = [_Input(f"i{n}", True) for n in range(34)]
    iset = InterlockSet([Interlock(f"I{n}", ch, "input_true") for n, ch in enumerate(inputs)])
    iset.evaluate(0)
    events = iset.pop_events()
    assert len(events) == 32 and iset.events_dropped == 2
    assert events[0].interlock_id == "I2" and events[-1].interlock_id == "I33"


def test_interlock_defaults_and_what_it_reads_from_its_channel():
    ch = SensorChannel("TT1", Linear(1.0))
    il = Interlock("X1", ch, "above", 150.0)
    assert (il.limit, il.on_delay_ms, il.hysteresis, il.cause) == (150.0, 0, 0, "over_temperature")
    assert il.channel_name == "TT1" and il.trip_on_bad and not il.tripped
    ror = Interlock("X2", ch, "rate_of_rise", 1.0)
    assert ror.window_ms == 1000 and ror.rate is None  # unknown until a full window
    nameless = Interlock("X3", object(), "input_true")
    assert nameless.channel_name is None


def test_interlock_set_starts_with_nothing_latched():
    iset = InterlockSet([])
    assert iset.requested_state is None and iset.last_reset_ms is None
    assert iset.first_out is None and not iset.active and iset.forced_outputs() == {}


def test_set_and_action_configuration_errors_are_exact():
    ch = SensorChannel("TT1", Linear(1.0))
    with pytest.raises(ValueError) as exc:
        Action(safe="heater")
    assert str(exc.value) == "safe must be a tuple of actuator names, got the string 'heater'"
    with pytest.raises(ValueError) as exc:
        InterlockSet(
            [Interlock("X", ch, "above", 1, action=Action(safe=("stirrer",)))], SAFE_VALUES
        )
    assert str(exc.value) == (
        "interlock X: actuator 'stirrer' has no entry in safe_values ['heater', 'pump']"
    )
    with pytest.raises(ValueError) as exc:
        InterlockSet([Interlock("X", ch, "above", 1), Interlock("X", ch, "below", 0)])
    assert str(exc.value) == "duplicate interlock id 'X'"


def test_heater_verifier_accepts_small_positive_settings():
    v = HeaterVerifier(hysteresis=0.5, max_error=0.5, heating_gain=0.5, uncontrolled_rise=0.5)
    assert (v.hysteresis, v.max_error, v.heating_gain, v.uncontrolled_rise) == (0.5,) * 4
    assert HeaterVerifier(check_gain_time_ms=1).check_gain_time_ms == 1


# ------------------------------------------------------------------ sensor channel details


def test_a_sensor_that_never_delivers_goes_stale_counted_from_its_first_reading():
    ch = SensorChannel("TT1", Linear(1.0), stale_ms=1000)
    ch.update(None, 0, fault="starting")
    assert ch.check(1000) == QUALITY_UNCERTAIN  # exactly stale_ms: still starting
    assert ch.check(1001) == QUALITY_BAD and ch.bad_reason == "stale"


def test_low_pass_step_response_is_exact_for_any_positive_tau():
    ch = SensorChannel("TT1", Linear(1.0), filter_tau_ms=1, stale_ms=None)
    ch.update(0.0, 0)
    ch.update(100.0, 1)  # a = dt / (tau + dt) = 1/2
    assert ch.value == 50.0


def test_low_pass_ignores_samples_that_are_not_newer():
    ch = SensorChannel("TT1", Linear(1.0), filter_tau_ms=1000, stale_ms=None)
    ch.update(0.0, 1000)
    ch.update(100.0, 1000)  # same tick: no time has passed
    assert ch.value == 0.0
    ch.update(100.0, 900)  # older than the last good sample
    assert ch.value == 0.0


class _Output(Actuator):
    def _apply(self, value):
        pass


def test_deadman_check_counts_every_actuator_it_forced():
    rig = Rig("pump")
    node = rig.node
    node.actuators.append(ActuatorSlot("stirrer", _Output(0.0, 1.0, 0.0, "stirrer"), 500))
    for slot in node.actuators:
        slot.driver.write(slot.hi)
        slot.last_write_ms = 0
    assert node.deadman_check(501) == 2
    assert node.all_safe()


def test_a_refused_state_command_does_not_reset_latched_trips():
    rig = Rig("pump")
    rig.start()
    rig.plant.digital["estop"] = 1
    rig.tick()
    rig.plant.digital["estop"] = 0  # the cause is gone, but only a reset may clear the trip
    rig.tick(3)
    assert rig.node.sm.state_name == "aborted" and rig.node.interlocks.active
    for name in ("start", "unhold"):
        ack = rig.state(name)
        # A reset never restarts and a restart never resets: refused while a trip latches.
        assert ack.result == RESULT_NOT_ALLOWED_IN_STATE
        assert ack.reason == f"{name} refused: trip estop latched, reset it first"
        assert rig.node.interlocks.active  # still latched: a start is no reset
    assert rig.node.sm.state_name == "aborted"
    assert [e.type for e in rig.sink.events].count("trip_reset") == 0
    # Reset, the state machine still says where a start is allowed.
    assert _ack_ok(rig.command("reset_trip")) and not rig.node.interlocks.active
    ack = rig.state("start")
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE
    assert ack.reason == "start not allowed in aborted"


# ------------------------------------------------------------------ heater verifier: reset rule


def _uncontrolled_trip(hysteresis=5.0):
    """Heater off at 50.0 degC; 60.5 degC rises 10.5 K > uncontrolled_rise: trips at t=1000."""
    v = HeaterVerifier(hysteresis=hysteresis, uncontrolled_rise=10.0, name="coil")
    assert v.update(None, 50.0, 0.0, 0) is None
    assert v.update(None, 60.5, 0.0, 1000) == "uncontrolled_heating"
    return v


def test_uncontrolled_heating_refusal_names_the_reading_the_peak_and_where_it_clears():
    v = _uncontrolled_trip()
    # Right at the trip the reading that tripped is both the latest and the peak.
    assert v.reset_refusal(1000) == (
        "uncontrolled_heating: coil now 60.5 degC, peak 60.5; reset once it fell to 55.5 degC"
    )
    v.update(None, 58.3, 0.0, 1100)
    assert v.reset_refusal(1100) == (
        "uncontrolled_heating: coil now 58.3 degC, peak 60.5; reset once it fell to 55.5 degC"
    )


@pytest.mark.parametrize("lost", [None, float("nan")])
def test_uncontrolled_heating_with_the_reading_lost_is_refused_as_unknown(lost):
    v = _uncontrolled_trip()
    assert v.update(None, lost, 0.0, 1100) == "uncontrolled_heating"
    assert v.reset_refusal(1100) == (
        "uncontrolled_heating: coil now ? degC, peak 60.5; reset once it fell to 55.5 degC"
    )
    v.update(None, 55.5, 0.0, 1200)  # the reading is back, a hysteresis below the peak
    assert v.reset_refusal(1200) is None


def test_a_check_window_passed_exactly_is_remembered_across_the_tick_wrap():
    v = HeaterVerifier(heating_gain=2.0, check_gain_time_ms=1000, full_power=0.9, name="coil")
    assert v.update(100.0, 20.0, 1.0, 0) is None  # the approach starts: 22 degC by t=1000
    assert v.update(100.0, 20.0, 1.0, 1000) == "heater_not_heating"
    assert v.reset_refusal(1999) == (
        "heater_not_heating: coil tripped 999 ms ago; reset possible 1000 ms after the trip"
    )
    v.update(100.0, 20.0, 1.0, 2000)  # seen exactly one window after the trip
    # Half a tick period later the wrap-safe difference is negative: only the
    # remembered pass still allows the reset.
    late = 1000 + (1 << 29) + 1
    assert ticks_diff(late, 1000) < 0
    assert v.reset_refusal(late) is None


# ------------------------------------------------------------------ signals: stuck, uncertain


def test_a_bad_sample_restarts_the_stuck_run_from_the_next_usable_sample():
    ch = SensorChannel("p", stale_ms=None, stuck_ms=1000, stuck_band=0.5)
    ch.update(10.0, 0)
    ch.update(10.0, 1001)
    assert ch.stuck
    ch.update(float("nan"), 1100)  # something else happened to the signal
    assert not ch.stuck and ch.bad_reason == "nan"
    assert ch.update(10.0, 1200) == QUALITY_GOOD  # a fresh run starts here
    ch.update(10.0, 2200)
    assert not ch.stuck  # exactly stuck_ms into the new run
    ch.update(10.0, 2201)
    assert ch.stuck


def test_a_bad_sample_restarts_the_uncertain_run():
    ch = SensorChannel("i", Current4to20(0.0, 10.0), stale_ms=None, uncertain_ms=1000)
    assert ch.update(3.7, 0) == QUALITY_UNCERTAIN  # NE43 low margin band
    assert ch.update(3.5, 500) == QUALITY_BAD  # failure signal
    assert ch.bad_reason == "namur_fail"
    assert ch.update(3.7, 600) == QUALITY_UNCERTAIN  # a new uncertain run from 600
    assert ch.update(3.7, 1600) == QUALITY_UNCERTAIN  # exactly uncertain_ms
    assert ch.update(3.7, 1601) == QUALITY_BAD and ch.bad_reason == "uncertain"


# ------------------------------------------------------------------ node: parked outputs


def _pump_with_a_stirrer(d):
    """The pump plus a second actuator (stirrer) that a held-type door interlock forces."""
    d["channels"].append(
        {
            "alias": len(d["channels"]),
            "deadman_ms": 500,
            "driver": "emulated",
            "name": "stirrer",
            "range": [0.0, 1.0],
            "resolution": 0.001,
            "role": "actuator",
            "safe": 0.0,
            "unit": "",
            "unpowered": 0.0,
        }
    )
    d["channels"].append(
        {
            "alias": len(d["channels"]),
            "driver": "emulated",
            "name": "door",
            "range": [0.0, 1.0],
            "raw_unit": "0/1",
            "resolution": 1.0,
            "role": "status",
            "unit": "",
        }
    )
    d["interlocks"].append(
        {
            "cause": "door_open",
            "channel": "door",
            "condition": "input_true",
            "hysteresis": 0.0,
            "id": "door_open",
            "limit": None,
            "on_delay_ms": 0,
            "safe": ["stirrer"],
            "state": "held",
            "trip_on_bad": True,
            "unfiltered": False,
            "values": {},
            "window_ms": 1000,
        }
    )


def _leased_ticks(rig, n, **digital):
    for _ in range(n):
        if rig.now % 1000 == 0:
            rig.lease()
        rig.plant.digital.update(digital)
        rig.tick()


def test_outputs_parked_by_successive_resets_all_stay_parked_until_unhold():
    rig = Rig("pump", mutate=_pump_with_a_stirrer)
    rig.start()
    assert _ack_ok(rig.set("flow", 5.0)) and _ack_ok(rig.set("stirrer", 0.8))
    _leased_ticks(rig, 5)
    assert rig.node.outputs() == {"flow": 5.0, "stirrer": 0.8}
    _leased_ticks(rig, 3000 // rig.tick_ms, feed=1)  # feed_empty (held) forces flow 0
    _leased_ticks(rig, 2, feed=0)
    assert rig.command("reset_trip").reason == "outputs stay as the trip forced them until unhold"
    _leased_ticks(rig, 2, door=1)  # door_open (held) forces the stirrer off
    _leased_ticks(rig, 2, door=0)
    assert rig.node.sm.state_name == "held"
    assert _ack_ok(rig.command("reset_trip"))
    _leased_ticks(rig, 5)
    # The second reset parks the stirrer without releasing the flow the first one parked.
    assert rig.node.outputs() == {"flow": 0.0, "stirrer": 0.0}
    assert _ack_ok(rig.state("unhold"))
    _leased_ticks(rig, 3)
    assert rig.node.outputs() == {"flow": 5.0, "stirrer": 0.8}


# ------------------------------------------------------------------ fast node variants
# tests/test_node.py proves these rules over minutes of simulated operation (a 5-minute
# heat-up, a 10-minute degraded limit), which makes every surviving mutant of the node
# code cost seconds: `make mutate` deselects those two and runs these short versions.


def test_uncontrolled_heating_at_rest_refuses_both_resets_until_cooled_below_the_peak():
    rig = Rig("reactor")
    rig.lease()
    temp = 25.0
    rig.hold_coil(temp, 10)  # heater off at rest: the rise check runs
    while not rig.node.interlocks.active:
        temp += 0.5
        rig.hold_coil(temp)
        assert temp < 100.0, "no trip"
    assert rig.sink.trips()[-1].cause == "uncontrolled_heating"
    rig.hold_coil(temp + 1.0, 5)  # still rising after the trip
    peak = rig.node.loops[0].measure.value
    for ack in (rig.command("reset_trip"), rig.state("reset")):
        assert ack.result == RESULT_NOT_ALLOWED_IN_STATE, ack
        assert ack.reason.startswith("heater_verify: uncontrolled_heating: ")
        assert f"peak {peak:.1f}" in ack.reason
    assert not [e for e in rig.sink.events if e.type == "trip_reset"]
    hysteresis = rig.cfg["runaway"]["hysteresis"]
    rig.hold_coil(peak - hysteresis + 0.5, 30)  # cooling, not enough yet
    assert rig.state("reset").result == RESULT_NOT_ALLOWED_IN_STATE
    rig.hold_coil(peak - hysteresis - 0.5, 30)
    assert rig.state("reset").result == RESULT_OK
    rig.hold_coil(peak - hysteresis - 0.5, 3)
    assert rig.node.sm.state_name == "idle" and not rig.node.interlocks.active


def _short_degraded_limit(d):
    for ch in d["channels"]:
        if "redundant" in ch:
            ch["degraded_max_ms"] = 2000


def test_one_probe_lost_trips_exactly_after_a_short_degraded_max_ms():
    rig = Rig("reactor", mutate=_short_degraded_limit)
    rig.start()
    rig.hold_coil(40.0, 10)
    pair = [d for d in rig.node.derived if d.name == "temperature"][0]
    assert pair.degraded_max_ms == 2000
    rig.plant.overrides["temp_a"] = float("nan")  # probe a lost
    rig.plant.overrides["temp_b"] = 40.0
    rig.tick()
    t_lost = rig.now
    assert pair.degraded and pair.quality == QUALITY_UNCERTAIN
    while rig.now - t_lost < 2000:
        rig.tick()
        assert not rig.sink.trips(), rig.now - t_lost
    assert rig.now - t_lost == 2000  # exactly degraded_max_ms: still running on one probe
    rig.tick()  # the first tick strictly after it
    trips = rig.sink.trips()
    assert trips and trips[0].cause == "sensor_bad" and "degraded" in trips[0].detail
    assert pair.bad_reason == "degraded" and rig.node.outputs()["heater"] == 0.0
    rig.tick(3)
    ack = rig.state("reset")
    assert ack.result == RESULT_NOT_ALLOWED_IN_STATE and "degraded" in ack.reason
    rig.hold_coil(40.0, 2)  # both probes back
    assert rig.state("reset").result == RESULT_OK


def test_1oo2_on_one_probe_takes_that_probes_unfiltered_sample_too():
    a = SensorChannel("a", filter_tau_ms=1000, stale_ms=None)
    b = SensorChannel("b", filter_tau_ms=1000, stale_ms=None)
    pair = Redundant1oo2(a, b, 5.0, "t", "max")
    a.update(50.0, 0)
    b.update(50.0, 0)
    pair.check(0)
    a.update(float("nan"), 100)  # probe a lost
    b.update(52.0, 100)  # filtered: value between 50 and 52, unfiltered 52
    pair.check(100)
    assert pair.degraded and pair.quality == QUALITY_UNCERTAIN
    assert pair.value == b.value and pair.unfiltered == 52.0


def test_a_runaway_trip_waits_one_check_window_counted_from_the_trip():
    v = HeaterVerifier(hysteresis=0.0, max_error=10.0, check_gain_time_ms=1000, name="coil")
    assert v.update(50.0, 50.0, 0.5, 0) is None  # holding at the target
    assert v.update(50.0, 40.0, 0.5, 1000) == "temperature_runaway"  # 10 K for 1 s
    assert v.reset_refusal(1500) == (
        "temperature_runaway: coil tripped 500 ms ago; reset possible 1000 ms after the trip"
    )
    assert v.reset_refusal(2000) is None


def _feed_empty_stops(d):
    for il in d["interlocks"]:
        if il["id"] == "feed_empty":
            il["state"] = "stopped"


def test_only_a_reset_resets_trips_and_a_plain_reset_reports_none():
    rig = Rig("pump", mutate=_feed_empty_stops)
    rig.start()
    _leased_ticks(rig, 3000 // rig.tick_ms, feed=1)  # feed_empty trips: stopped
    _leased_ticks(rig, 5, feed=0)  # its cause is gone
    assert rig.node.sm.state_name == "stopped" and rig.node.interlocks.active
    assert _ack_ok(rig.state("abort"))  # accepted in stopped, but no reset
    assert rig.node.interlocks.active
    assert [e.type for e in rig.sink.events].count("trip_reset") == 0
    # A module stopped by the operator, with no trip latched: its reset is the state
    # machine's alone, no trip_reset.
    rig = Rig("pump")
    rig.start()
    assert _ack_ok(rig.state("stop"))
    _leased_ticks(rig, 5)
    assert rig.node.sm.state_name == "stopped" and not rig.node.interlocks.active
    assert _ack_ok(rig.state("reset"))
    assert [e.type for e in rig.sink.events].count("trip_reset") == 0


def test_an_unsigned_rebirth_too_soon_is_busy_with_the_limit_in_the_reason():
    from edge.node import UNSIGNED_REBIRTH_MIN_MS
    from protocol.constants import RESULT_BUSY

    rig = Rig("reactor")
    rig.lease()
    assert _ack_ok(rig.command("rebirth"))
    ack = rig.command("rebirth")
    assert ack.result == RESULT_BUSY
    assert ack.reason == f"unsigned rebirth at most once per {UNSIGNED_REBIRTH_MIN_MS} ms"


def test_a_malformed_lease_is_refused_as_malformed_and_changes_nothing():
    rig = Rig("pump")
    assert not rig.node.handle_lease(b"\xa1\x00", rig.now)  # a map without the lease keys
    assert rig.node.leases_refused == 1 and rig.node.lease_refusal == "malformed"
    assert not rig.node.lease.armed and rig.node.host_time.host_now(rig.now) is None


def test_sign_lease_names_the_bad_module_id_key():
    with pytest.raises(MessageError, match=r"^lease\.tags key: 'Bad Id' not in \[a-z0-9\]"):
        auth.sign_lease("host", 1, 1, 3000, [("Bad Id", KEY, bytes(8))])


def test_host_time_update_reports_whether_it_moved_the_estimate():
    est = auth.HostTimeEstimate()
    assert est.update(1_000_000, 0) is True  # the first lease sets it
    assert est.host_now(500) == 1_000_500
    assert est.update(1_000_500, 500) is True  # exactly the estimate: followed
    assert est.update(1_000_999, 1000) is False  # behind the estimate (1_001_000): held
    assert est.host_now(1000) == 1_001_000


# --- Node.tick: what the module announces (events are the host's only view) -------------------


def _new_events(rig, n0):
    return rig.sink.events[n0:]


def test_a_lease_loss_and_return_are_announced_exactly_and_hold_names_the_cause():
    rig = Rig("reactor")  # on_loss = "hold"
    rig.start()
    n0 = len(rig.sink.events)
    timeout = rig.cfg["lease"]["timeout_ms"]
    rig.tick(timeout // rig.tick_ms + 2)  # no lease: lost
    new = _new_events(rig, n0)
    alarm = [e for e in new if e.type == "alarm"]
    assert [(e.severity, e.source, e.cause, e.detail) for e in alarm] == [
        ("error", "lease", "lease_expired", "no lease")
    ]
    changes = [e.detail for e in new if e.type == "state_change"]
    assert changes and changes[0] == "execute -> holding (lease_lost)", changes
    n1 = len(rig.sink.events)
    rig.lease()
    rig.tick()
    cleared = [e for e in _new_events(rig, n1) if e.type == "alarm_cleared"]
    assert [(e.severity, e.source, e.cause) for e in cleared] == [
        ("info", "lease", "lease_expired")
    ]


def test_a_lease_loss_at_rest_changes_no_state():
    rig = Rig("reactor")
    rig.lease()
    rig.tick()
    n0 = len(rig.sink.events)
    rig.tick(rig.cfg["lease"]["timeout_ms"] // rig.tick_ms + 2)
    assert rig.node.sm.state_name == "idle"
    assert not [e for e in _new_events(rig, n0) if e.type == "state_change"]


@pytest.mark.parametrize("state", ["held", "stopped", "aborted"])
def test_a_trip_forces_its_declared_state_with_its_cause_in_the_state_change(state):
    def declare(cfg):
        for il in cfg["interlocks"]:
            if il["id"] == "high_pressure":
                il["state"] = state

    rig = Rig("pump", mutate=declare)
    rig.start()
    assert rig.set("flow", 3.0).result == 0
    rig.tick()
    n0 = len(rig.sink.events)
    rig.plant.overrides["pressure"] = 30.0  # above the 20 bar trip
    rig.tick()
    changes = [e.detail for e in _new_events(rig, n0) if e.type == "state_change"]
    acting = {"held": "holding", "stopped": "stopping", "aborted": "aborting"}[state]
    assert changes[0] == f"execute -> {acting} (over_pressure)", changes


def test_an_alarm_event_carries_its_severity_and_value_and_its_clearing_is_info():
    rig = Rig("reactor")
    rig.start()
    n0 = len(rig.sink.events)
    for v in (141.0, 141.0):  # above the 140 degC high_temperature alarm
        rig.plant.overrides["temp_a"] = v
        rig.plant.overrides["temp_b"] = v
        rig.tick(10)
    raised = [
        e for e in _new_events(rig, n0) if e.type == "alarm" and e.source == "high_temperature"
    ]
    assert raised and raised[0].severity == "warning"
    assert raised[0].detail.startswith("value 14") and raised[0].cause == "high_temperature"
    n1 = len(rig.sink.events)
    for _ in range(40):
        rig.plant.overrides["temp_a"] = 100.0
        rig.plant.overrides["temp_b"] = 100.0
        rig.tick()
    cleared = [e for e in _new_events(rig, n1) if e.type == "alarm_cleared"]
    assert [(e.severity, e.source) for e in cleared if e.source == "high_temperature"] == [
        ("info", "high_temperature")
    ]


def test_telemetry_goes_out_every_telemetry_every_ticks_starting_with_that_tick():
    rig = Rig("pump")
    every = rig.cfg["module"]["telemetry_every"]
    n0 = len(rig.sink.telemetry)
    rig.tick(every - 1)
    assert len(rig.sink.telemetry) == n0
    rig.tick()
    assert len(rig.sink.telemetry) == n0 + 1
    rig.tick(every)
    assert len(rig.sink.telemetry) == n0 + 2
