"""host.registry: births, deaths (bdSeq), telemetry decoding, sequence gaps, staleness,
config hash checks, events and malformed input, with messages built by protocol.messages."""

from __future__ import annotations

from host.registry import STALE_AFTER_MS, Registry
from protocol import messages
from protocol.constants import QUALITY_BAD
from protocol.messages import Channel
from protocol.topics import host_topic, module_topic

LINE = "l1"
HASH = bytes.fromhex("0011223344556677")
NONCE1 = b"\x01" * 8
NONCE2 = b"\x02" * 8
CHANNELS = [
    Channel("flow", "mL/min", "actuator", 0.0, 10.0, 0.001),
    Channel("pressure", "bar", "sensor", 0.0, 40.0, 0.01),
    Channel("speed", "rpm", "setpoint", 0.0, 100.0),  # float32 on the wire
]
CODEC = messages.TelemetryCodec(CHANNELS)
STATES = {"idle": ["start", "rebirth"], "execute": ["stop", "set_setpoint"], "aborted": ["reset"]}


def topic(kind, module="pump1"):
    return module_topic(LINE, module, kind)


def birth(bdseq=0, nonce=NONCE1, config_hash=HASH, state="idle", module="pump1", kind="pump"):
    return messages.build_birth(
        module, kind, "1.0.0", config_hash, "power_on", bdseq, nonce, CHANNELS, STATES, state
    )


def data(seq, values=(1.5, 12.34, 50.0), qualities=None, t_ms=1000):
    return CODEC.build(seq, t_ms, list(values), qualities)


def event(number, event_type, **kw):
    severity = kw.pop("severity", "info")
    return messages.build_event(number, 500 + number, event_type, severity, **kw)


def kinds(events):
    return [e.kind for e in events]


def test_birth_then_telemetry_decodes_values_by_channel_name():
    reg = Registry(LINE, {"pump1": ("pump", HASH)})
    (ev,) = reg.on_message(topic("birth"), birth(), 100)
    # The event carries the parsed BIRTH itself; data only what the registry concluded.
    assert ev.kind == "birth" and ev.data == {"reboot": True}
    assert isinstance(ev.message, messages.Birth) and ev.message.module_kind == "pump"
    view = reg.modules["pump1"]
    assert view.born and view.online and not view.stale and view.hash_ok is True
    assert view.state == "idle" and view.boot_nonce == NONCE1 and view.bdseq == 0
    assert [c.name for c in view.channels] == ["flow", "pressure", "speed"]
    assert reg.value("pump1", "pressure") is None  # nothing measured yet

    (sample,) = reg.on_message(topic("data"), data(0), 200)
    assert sample.kind == "sample" and isinstance(sample.message, messages.Telemetry)
    assert sample.message.seq == 0 and sample.message.t_ms == 1000
    assert sample.data["values"] == {"flow": 1.5, "pressure": 12.34, "speed": 50.0}
    assert reg.value("pump1", "pressure") == 12.34 and view.quality["flow"] == "good"
    reg.on_message(topic("data"), data(1, (None, 40.0, 50.0), [QUALITY_BAD, QUALITY_BAD, 0]), 300)
    assert view.values["flow"] is None and view.quality["pressure"] == "bad"
    assert reg.value("pump1", "pressure") is None  # a bad value is not a value
    assert reg.rebirth_needed() == []


def test_death_with_matching_bdseq_marks_stale_and_an_old_sessions_death_is_ignored():
    reg = Registry(LINE)
    reg.on_message(topic("birth"), birth(bdseq=4), 0)
    reg.on_message(topic("data"), data(0), 10)
    # The will of the previous connection (bdSeq 3) arriving late changes nothing.
    assert reg.on_message(topic("death"), messages.build_death(3), 20) == []
    assert reg.online("pump1") and reg.value("pump1", "flow") == 1.5
    events = reg.on_message(topic("death"), messages.build_death(4), 30)
    assert kinds(events) == ["death", "stale"] and events[0].message.bdseq == 4
    view = reg.modules["pump1"]
    assert not view.online and view.stale and not reg.online("pump1")
    assert view.values["flow"] == 1.5 and reg.value("pump1", "flow") is None  # kept, stale
    # A new birth (bdSeq 5) makes it fresh again.
    assert kinds(reg.on_message(topic("birth"), birth(bdseq=5), 40)) == ["birth", "fresh"]
    assert reg.online("pump1")


def test_telemetry_before_birth_and_seq_gaps_ask_for_a_rebirth():
    reg = Registry(LINE)
    assert reg.on_message(topic("data"), data(7), 0) == []  # cannot decode: no channels
    view = reg.modules["pump1"]
    assert not view.born and view.last_seen_ms == 0
    assert reg.rebirth_needed() == ["pump1"]
    assert reg.rebirth_needed() == []  # cleared by asking
    reg.on_message(topic("data"), data(8), 1000)
    assert reg.rebirth_needed() == []  # asked 1 s ago: not again yet
    reg.on_message(topic("data"), data(9), 6000)
    assert reg.rebirth_needed() == ["pump1"]  # still no birth after 5 s: ask again

    reg.on_message(topic("birth"), birth(), 6100)
    reg.on_message(topic("data"), data(0), 6200)
    reg.on_message(topic("data"), data(1), 6300)
    events = reg.on_message(topic("data"), data(5), 6400)
    assert kinds(events) == ["seq_gap", "sample"]
    assert events[0].data == {"stream": "telemetry", "expected": 2, "got": 5}
    assert reg.rebirth_needed() == ["pump1"]
    assert reg.on_message(topic("data"), data(6), 6500)[0].kind == "sample"
    # seq wraps 255 -> 0 without a gap
    reg.on_message(topic("birth"), birth(), 7000)
    for seq in range(256):
        reg.on_message(topic("data"), data(seq), 7001 + seq)
    assert kinds(reg.on_message(topic("data"), data(0), 8000)) == ["sample"]


def test_silence_makes_a_module_stale_after_3_s_plus_three_periods():
    reg = Registry(LINE)
    reg.on_message(topic("birth"), birth(), 0)
    for i in range(3):
        reg.on_message(topic("data"), data(i), 1000 * (i + 1))  # 1 Hz
    last = 3000
    limit = STALE_AFTER_MS + 3 * 1000
    assert reg.tick(last + limit) == []
    (ev,) = reg.tick(last + limit + 1)
    assert ev.kind == "stale" and ev.data["reason"] == "silent"
    assert reg.modules["pump1"].stale and reg.value("pump1", "flow") is None
    assert reg.tick(last + limit + 5000) == []  # reported once
    events = reg.on_message(topic("data"), data(3), last + limit + 6000)
    assert kinds(events) == ["fresh", "sample"] and reg.value("pump1", "flow") == 1.5


def test_config_hash_and_kind_are_checked_against_the_line():
    reg = Registry(LINE, {"pump1": ("pump", HASH), "valve1": ("valve", None)})
    events = reg.on_message(topic("birth"), birth(config_hash=b"\xff" * 8), 0)
    assert kinds(events) == ["birth", "hash_mismatch"]
    assert events[1].data == {"expected": HASH.hex()}
    assert events[1].message.config_hash == b"\xff" * 8
    assert reg.modules["pump1"].hash_ok is False
    events = reg.on_message(topic("birth", "valve1"), birth(module="valve1", kind="pump"), 0)
    assert kinds(events) == ["birth", "kind_mismatch"] and reg.modules["valve1"].hash_ok is None
    assert events[1].data == {"expected": "valve"} and events[1].message.module_kind == "pump"
    events = reg.on_message(topic("birth", "stray"), birth(module="stray"), 0)
    assert kinds(events) == ["birth", "unexpected_module"]


def test_events_track_trips_first_out_alarms_and_state():
    reg = Registry(LINE)
    reg.on_message(topic("birth"), birth(), 0)
    view = reg.modules["pump1"]
    (ev,) = reg.on_message(
        topic("event"), event(1, "alarm", severity="warning", source="high_p", cause="high"), 10
    )
    assert ev.kind == "alarm" and view.alarms == {"high_p"}
    reg.on_message(topic("event"), event(2, "alarm", severity="error", source="lease"), 20)
    (ev,) = reg.on_message(
        topic("event"), event(3, "trip", severity="critical", cause="overpressure"), 30
    )
    assert ev.kind == "trip" and ev.data == {"first_out": "overpressure"}
    assert ev.message.cause == "overpressure" and ev.message.number == 3
    reg.on_message(topic("event"), event(4, "trip", severity="critical", cause="estop"), 40)
    (ev,) = reg.on_message(topic("event"), event(5, "state_change", state="aborted"), 50)
    assert ev.kind == "state" and ev.data["previous"] == "idle" and view.state == "aborted"
    assert ev.message.type == "state_change" and ev.message.state == "aborted"
    assert view.trips == [("overpressure", 30), ("estop", 40)]  # first-out first
    # A QoS 1 duplicate (same number and module time) after a reconnect is ignored.
    assert (
        reg.on_message(topic("event"), event(4, "trip", severity="critical", cause="estop"), 60)
        == []
    )
    reg.on_message(topic("event"), event(6, "alarm_cleared", source="high_p"), 70)
    assert view.alarms == {"lease"}
    reg.on_message(topic("event"), event(7, "trip_reset"), 80)
    assert view.trips == []
    # A rebirth of the same boot keeps alarms; a reboot (new nonce) forgets them.
    reg.on_message(topic("birth"), birth(bdseq=1), 90)
    assert view.alarms == {"lease"}
    reg.on_message(topic("birth"), birth(nonce=NONCE2), 100)
    assert view.alarms == set() and view.last_event_number is None


def test_lost_events_are_reported_and_ask_for_a_rebirth():
    reg = Registry(LINE)
    reg.on_message(topic("birth"), birth(), 0)
    reg.on_message(topic("event"), event(1, "alarm", source="a"), 10)
    events = reg.on_message(topic("event"), event(4, "alarm", source="b"), 20)
    assert kinds(events) == ["seq_gap", "alarm"] and events[0].data["stream"] == "event"
    assert reg.rebirth_needed() == ["pump1"]
    (ev,) = reg.on_message(
        topic("event"),
        event(5, "dropped", severity="warning", count=3, detail="event queue overflow"),
        30,
    )
    assert ev.kind == "dropped" and ev.message.count == 3
    assert reg.rebirth_needed() == []  # asked just now; retried after REBIRTH_RETRY_MS
    reg.on_message(topic("event"), event(6, "dropped", severity="warning", count=1), 6000)
    assert reg.rebirth_needed() == ["pump1"]


def test_an_event_before_any_birth_is_kept_and_asks_for_a_birth():
    reg = Registry(LINE)
    (ev,) = reg.on_message(topic("event"), event(9, "trip", severity="critical", cause="estop"), 5)
    assert ev.kind == "trip" and reg.modules["pump1"].trips == [("estop", 5)]
    assert reg.rebirth_needed() == ["pump1"]


def test_malformed_input_never_raises():
    reg = Registry(LINE)
    bad = reg.on_message(topic("birth"), b"\xff\x00garbage", 0)
    assert kinds(bad) == ["malformed"] and bad[0].data["topic"] == topic("birth")
    assert reg.modules == {}
    # A birth of another module on this module's topic.
    bad = reg.on_message(topic("birth"), birth(module="pump2"), 0)
    assert kinds(bad) == ["malformed"] and "pump2" in bad[0].data["reason"]
    reg.on_message(topic("birth"), birth(), 0)
    # Telemetry that does not fit the birth's channels (2 values for 3 channels).
    wrong = messages.build_telemetry(0, 0, [1.0, 2.0], CHANNELS[:2])
    bad = reg.on_message(topic("data"), wrong, 10)
    assert kinds(bad) == ["malformed"] and "telemetry.values" in bad[0].data["reason"]
    assert reg.rebirth_needed() == ["pump1"]
    assert kinds(reg.on_message(topic("event"), messages.build_death(0), 20)) == ["malformed"]
    assert kinds(reg.on_message(topic("death"), b"", 20)) == ["malformed"]
    assert reg.malformed == 5
    # Outside the line's module topics: not ours, not an error.
    assert reg.on_message("skid/v1/other/pump1/birth", birth(), 0) == []
    assert reg.on_message(host_topic(LINE, "lease"), b"x", 0) == []
    assert reg.on_message("random/topic", b"x", 0) == []
    assert reg.on_message(topic("ack"), b"x", 0) == []
