"""protocol.messages: round trips, the reference telemetry, validation, fuzzing, SPEC examples.

Every message built here also passes through the CDDL check of tests/conftest.py.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cbor2
import pycddl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bench_wire import (
    REFERENCE_OBJECT,
    REFERENCE_SEQ,
    REFERENCE_T_MS,
    REFERENCE_VALUES,
    reference_channels,
    reference_json,
    reference_telemetry,
    run,
)
from protocol import auth, cbor, constants, messages
from protocol.constants import (
    QUALITY_BAD,
    QUALITY_GOOD,
    QUALITY_UNCERTAIN,
    RESULT_NOT_ALLOWED_IN_STATE,
    RESULT_OK,
)
from protocol.host_messages import (
    parse,
    parse_ack,
    parse_birth,
    parse_death,
    parse_event,
    parse_state,
    parse_telemetry,
)
from protocol.messages import (
    Ack,
    Auth,
    Birth,
    Command,
    Death,
    Event,
    HostState,
    Lease,
    Telemetry,
    TelemetryCodec,
    build_ack,
    build_birth,
    build_command,
    build_death,
    build_event,
    build_lease,
    build_state,
    build_telemetry,
    parse_command,
    parse_lease,
)
from protocol.wire import Channel, MessageError
from tools.micropython import run_node

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "protocol" / "SPEC.md"
CDDL_PATH = ROOT / "protocol" / "flowskid.cddl"

# --- Example messages (also the hex examples of SPEC.md) --------------------------------

EXAMPLE_KEY = bytes(range(16))  # the documented example key: never use it on a skid
EXAMPLE_NONCE = bytes.fromhex("0102030405060708")
EPOCH_MS = 1767225600000  # 2026-01-01T00:00:00Z


def pump_channels():
    return [
        Channel("flow", "mL/min", "sensor", 0, 50, 0.01),
        Channel("pressure", "bar", "sensor", 0, 20, 0.001),
        Channel("flow_sp", "mL/min", "setpoint", 0, 50, 0.01),
        Channel("motor_temp", "degC", "sensor", -40, 150),  # float32 on the wire
    ]


PUMP_STATES = {
    "idle": ["start", "set_setpoint", "configure", "rebirth"],
    "running": ["stop", "hold", "abort", "set_setpoint", "ack_alarm", "rebirth"],
    "held": ["unhold", "abort", "rebirth"],
    "tripped": ["reset_trip", "ack_alarm", "rebirth"],
}


def example_birth():
    return build_birth(
        module_id="pump-1",
        module_kind="pump",
        firmware="0.1.0",
        config_hash=bytes.fromhex("c0ffee01"),
        reset_cause="power_on",
        bdseq=0,
        boot_nonce=EXAMPLE_NONCE,
        channels=pump_channels(),
        states=PUMP_STATES,
        state="idle",
    )


def example_command():
    return build_command(42, "set_setpoint", {"channel": 2, "value": 12.5}, EPOCH_MS + 5000)


def example_signed_command():
    return auth.sign_command(
        example_command(), EXAMPLE_KEY, "pump-1", EXAMPLE_NONCE, "host-a", EPOCH_MS
    )


# The second keyed module of the signed lease example (SPEC section 7).
EXAMPLE_KEY_2 = bytes(range(16, 32))
EXAMPLE_NONCE_2 = bytes.fromhex("1112131415161718")


def example_signed_lease():
    return auth.sign_lease(
        "host-a",
        EPOCH_MS,
        EPOCH_MS,
        3000,
        [("pump-1", EXAMPLE_KEY, EXAMPLE_NONCE), ("reactor-1", EXAMPLE_KEY_2, EXAMPLE_NONCE_2)],
    )


SPEC_EXAMPLES = {
    "birth": example_birth,
    "death": lambda: build_death(0),
    "telemetry": reference_telemetry,
    "telemetry_quality": lambda: build_telemetry(
        201,
        3601000,
        [80.12, 79.87, 5.03, 4.98, 0.25, 0.125, None, 1],
        reference_channels(),
        [0, 0, 0, 0, 0, QUALITY_UNCERTAIN, QUALITY_BAD, 0],
    ),
    "event": lambda: build_event(
        17, 3602500, "trip", "critical", source=0, cause="over_temperature", detail="T 152.3 > 150"
    ),
    "command": example_command,
    "command_signed": example_signed_command,
    "ack": lambda: build_ack(42, RESULT_NOT_ALLOWED_IN_STATE, "set_setpoint not allowed in held"),
    "lease": lambda: build_lease("host-a", EPOCH_MS, 1234, 3000),
    "lease_signed": example_signed_lease,
    "state": lambda: build_state(True, EPOCH_MS),
}


def all_examples():
    """One built message of every kind (and variants)."""
    extra = [
        build_event(1, 10, "alarm", "warning", source="hi_pressure"),
        build_event(2, 11, "alarm_cleared", "info", source=1),
        build_event(3, 12, "trip_reset", "info", source="hi_temp"),
        build_event(4, 13, "state_change", "info", state="running"),
        build_event(5, 14, "operator_action", "info", detail="manual purge"),
        build_event(6, 15, "dropped", "warning", count=12),
        build_command(1, "state", {"command": "start"}, EPOCH_MS),
        build_command(2, "reset_trip", None, EPOCH_MS),
        build_command(3, "reset_trip", {"target": "hi_temp"}, EPOCH_MS),
        build_command(4, "ack_alarm", {"target": 3}, EPOCH_MS),
        build_command(5, "rebirth", {}, EPOCH_MS),
        build_command(
            6,
            "configure",
            {"config": {"kp": 1.5, "mode": "auto", "n": 3, "on": True, "x": None}},
            EPOCH_MS,
        ),
        build_ack(7, "ok"),
        build_state(False, 0),
    ]
    return [f() for f in SPEC_EXAMPLES.values()] + extra


# --- Reference telemetry ----------------------------------------------------------------


def test_reference_telemetry_is_exactly_the_reference_object():
    data = reference_telemetry()
    assert data == cbor.encode(REFERENCE_OBJECT)
    assert data == cbor2.dumps(REFERENCE_OBJECT, canonical=True)
    assert cbor2.loads(data) == REFERENCE_OBJECT
    assert len(data) == 36 <= 40


def test_reference_telemetry_parses_back_to_the_values():
    t = parse_telemetry(reference_telemetry(), reference_channels())
    assert isinstance(t, Telemetry)
    assert (t.seq, t.t_ms) == (REFERENCE_SEQ, REFERENCE_T_MS)
    assert t.values == [float(v) for v in REFERENCE_VALUES]  # exact, not approximately
    assert all(type(v) is float for v in t.values)
    assert t.qualities == [QUALITY_GOOD] * 8


def test_bench_record_meets_target():
    (rec,) = run()
    assert rec["name"] == "wire.telemetry_bytes"
    assert rec["value"] == 36
    assert rec["peer"] == "json_with_names"
    doc = json.loads(reference_json())
    assert doc["values"]["t_reactor"] == 80.12 and doc["seq"] == 200
    assert rec["peer_value"] == len(reference_json())
    assert rec["ratio"] == round(36 / rec["peer_value"], 3) <= 0.25


def test_decimal_values_round_instead_of_truncating():
    # 80.12 / 0.01 == 8011.999999999999 and 0.29 * 100 == 28.999999999999996.
    ch = [Channel("a", "", "sensor", 0, 100, 0.01), Channel("b", "", "sensor", 0, 100, 0.01)]
    data = build_telemetry(0, 0, [80.12, 0.29], ch)
    assert cbor2.loads(data)[4] == [8012, 29]
    assert parse_telemetry(data, ch).values == [80.12, 0.29]


def test_scaling_rounds_half_away_from_zero():
    ch = [Channel(f"x{i}", "", "sensor", -10, 10, 1) for i in range(4)]
    data = build_telemetry(0, 0, [2.5, -2.5, 3.5, 0.49], ch)
    assert cbor2.loads(data)[4] == [3, -3, 4, 0]


def test_resolution_that_is_not_a_decimal_fraction():
    ch = [Channel("a", "", "sensor", 0, 1000, 5), Channel("b", "", "sensor", -1, 1, 0.3)]
    data = build_telemetry(0, 0, [42, -0.5], ch)
    assert cbor2.loads(data)[4] == [8, -2]
    assert parse_telemetry(data, ch).values == [40, pytest.approx(-0.6)]


def test_float_channels_travel_as_float32():
    ch = [Channel("t", "degC", "sensor", -40, 150)]
    data = build_telemetry(0, 0, [21.1], ch)
    assert data[-5] == 0xFA  # single precision
    assert parse_telemetry(data, ch).values == [pytest.approx(21.1, rel=2**-23)]
    half = build_telemetry(0, 0, [1.5], ch)
    assert half[-3] == 0xF9  # half when exact
    # a float32 value just above the bound still parses (the wire rounds to float32)
    top = [Channel("t", "", "sensor", 0, 0.1)]
    assert parse_telemetry(build_telemetry(0, 0, [0.1], top), top).values[0] > 0.1


def test_quality_omitted_when_all_good():
    ch = reference_channels()
    plain = build_telemetry(1, 2, list(REFERENCE_VALUES), ch)
    assert build_telemetry(1, 2, list(REFERENCE_VALUES), ch, [QUALITY_GOOD] * 8) == plain
    assert 5 not in cbor2.loads(plain)


def test_quality_lists_only_the_non_good_values():
    data = SPEC_EXAMPLES["telemetry_quality"]()
    assert cbor2.loads(data)[5] == {5: QUALITY_UNCERTAIN, 6: QUALITY_BAD}
    assert cbor2.loads(data)[4][6] is None
    t = parse_telemetry(data, reference_channels())
    assert t.qualities == [0, 0, 0, 0, 0, 1, 2, 0]
    assert t.values[6] is None
    # a few bytes more than the all-good case, not a parallel list
    assert len(data) - len(reference_telemetry()) <= 8


def test_codec_reuses_buffers_and_clears_quality():
    codec = TelemetryCodec(reference_channels())
    vals = list(REFERENCE_VALUES)
    bad = codec.build(1, 1, vals, [2, 0, 0, 0, 0, 0, 0, 0])
    good = codec.build(1, 1, vals)
    assert 5 in cbor2.loads(bad) and 5 not in cbor2.loads(good)
    assert parse_telemetry(bad, codec).qualities[0] == QUALITY_BAD
    assert codec.build(REFERENCE_SEQ, REFERENCE_T_MS, vals) == reference_telemetry()


def test_parse_telemetry_without_channels_gives_wire_numbers():
    t = parse(reference_telemetry())
    assert t.values == REFERENCE_OBJECT[4]


# --- Round trips ------------------------------------------------------------------------


def test_birth_round_trip():
    b = parse_birth(example_birth())
    assert isinstance(b, Birth) and b.KIND == constants.KIND_BIRTH
    assert (b.module_id, b.module_kind, b.firmware) == ("pump-1", "pump", "0.1.0")
    assert b.config_hash == bytes.fromhex("c0ffee01")
    assert (b.reset_cause, b.bdseq, b.boot_nonce) == ("power_on", 0, EXAMPLE_NONCE)
    assert b.states == PUMP_STATES and b.state == "idle"
    expected = pump_channels()
    for i, ch in enumerate(expected):
        ch.alias = i
    assert b.channels == expected
    assert b.channels[3].resolution is None and b.channels[0].resolution == 0.01
    # a parsed channel list feeds the telemetry codec directly
    tele = build_telemetry(0, 0, [1.0, 2.0, 3.0, 25.0], b.channels)
    assert parse_telemetry(tele, b.channels).values == [1.0, 2.0, 3.0, 25.0]
    assert parse(example_birth()) == b


def test_birth_accepts_codes_for_enumerations():
    by_code = build_birth(
        "pump-1",
        0,
        "0.1.0",
        bytes.fromhex("c0ffee01"),
        1,
        0,
        EXAMPLE_NONCE,
        [
            Channel("flow", "mL/min", 0, 0, 50, 0.01),
            Channel("pressure", "bar", 0, 0, 20, 0.001),
            Channel("flow_sp", "mL/min", 2, 0, 50, 0.01),
            Channel("motor_temp", "degC", 0, -40, 150),
        ],
        PUMP_STATES,
        "idle",
    )
    assert by_code == example_birth()


@pytest.mark.parametrize(
    "data, expected",
    [
        (build_death(7), Death(7)),
        (
            build_event(9, 5, "trip", "critical", 0, "estop", "button"),
            Event(9, 5, "trip", "critical", 0, "estop", "button", None, None),
        ),
        (
            build_event(10, 6, "dropped", "warning", count=3),
            Event(10, 6, "dropped", "warning", None, None, None, 3, None),
        ),
        (
            build_event(11, 7, "state_change", "info", state="held"),
            Event(11, 7, "state_change", "info", None, None, None, None, "held"),
        ),
        (build_ack(3, "busy", "pump priming"), Ack(3, constants.RESULT_BUSY, "pump priming")),
        (build_ack(4, RESULT_OK), Ack(4, RESULT_OK, None)),
        (build_lease("host-a", EPOCH_MS, 2**64 - 1, 1), Lease("host-a", EPOCH_MS, 2**64 - 1, 1)),
        (
            build_lease("host-a", 5, 6, 7, {"pump-1": b"t" * 16, "r": bytearray(b"u" * 16)}),
            Lease("host-a", 5, 6, 7, {"pump-1": b"t" * 16, "r": b"u" * 16}),
        ),
        (build_state(False, 2**64 - 1), HostState(False, 2**64 - 1)),
        (
            build_command(1, "state", {"command": "hold"}, 5),
            Command(1, "state", {"command": "hold"}, 5, None),
        ),
        (build_command(2, "rebirth", None, 0), Command(2, "rebirth", {}, 0, None)),
        (
            build_command(3, "configure", {"config": {"kp": 0.5}}, 9),
            Command(3, "configure", {"config": {"kp": 0.5}}, 9, None),
        ),
        (
            build_command(
                2**32 - 1,
                "ack_alarm",
                {"target": "hi_temp"},
                2**64 - 1,
                Auth("h", 2**64 - 1, b"t" * 16),
            ),
            Command(
                2**32 - 1,
                "ack_alarm",
                {"target": "hi_temp"},
                2**64 - 1,
                Auth("h", 2**64 - 1, b"t" * 16),
            ),
        ),
    ],
)
def test_round_trip(data, expected):
    assert parse(data) == expected
    specific = {
        Death: parse_death,
        Event: parse_event,
        Ack: parse_ack,
        Lease: parse_lease,
        HostState: parse_state,
        Command: parse_command,
    }[type(expected)]
    assert specific(data) == expected


def test_every_example_round_trips_through_its_builder():
    for data in all_examples():
        obj = parse(data)
        assert isinstance(obj, (Birth, Death, Telemetry, Event, Command, Ack, Lease, HostState))
        assert obj.KIND == cbor2.loads(data)[0]
        if isinstance(obj, Command):
            rebuilt = build_command(obj.command_id, obj.op, obj.args, obj.expiry_ms, obj.auth)
            assert rebuilt == data
    assert parse_ack(build_ack(1, "replayed")).result_name == "replayed"


def test_repr_names_fields():
    assert repr(parse(build_death(3))) == "Death(bdseq=3)"
    assert "seq=200" in repr(parse(reference_telemetry()))


def test_objects_have_slots_not_dicts():
    for obj in (parse(d) for d in all_examples()):
        assert not hasattr(obj, "__dict__")


# --- Validation -------------------------------------------------------------------------


def good_birth_kwargs(**over):
    kw = dict(
        module_id="pump-1",
        module_kind="pump",
        firmware="0.1.0",
        config_hash=b"\x01\x02\x03\x04",
        reset_cause="soft",
        bdseq=1,
        boot_nonce=EXAMPLE_NONCE,
        channels=pump_channels(),
        states=PUMP_STATES,
        state="idle",
    )
    kw.update(over)
    return kw


def chan(**over):
    kw = dict(name="flow", unit="mL/min", role="sensor", lo=0, hi=50, resolution=0.01)
    kw.update(over)
    return Channel(**kw)


REF = list(REFERENCE_VALUES)
BUILD_VIOLATIONS = [
    # (field, call)
    ("telemetry.seq", lambda: build_telemetry(300, 0, REF, reference_channels())),
    ("telemetry.seq", lambda: build_telemetry(-1, 0, REF, reference_channels())),
    ("telemetry.seq", lambda: build_telemetry(True, 0, REF, reference_channels())),
    ("telemetry.t_ms", lambda: build_telemetry(0, 2**64, REF, reference_channels())),
    ("telemetry.t_ms", lambda: build_telemetry(0, 1.5, REF, reference_channels())),
    ("telemetry.values", lambda: build_telemetry(0, 0, REF[:7], reference_channels())),
    ("telemetry.values", lambda: build_telemetry(0, 0, "abc", reference_channels())),
    ("telemetry.values[0]", lambda: build_telemetry(0, 0, [300.5] + REF[1:], reference_channels())),
    ("telemetry.values[7]", lambda: build_telemetry(0, 0, REF[:7] + [2], reference_channels())),
    (
        "telemetry.values[1]",
        lambda: build_telemetry(0, 0, [1, math.nan] + REF[2:], reference_channels()),
    ),
    (
        "telemetry.values[1]",
        lambda: build_telemetry(0, 0, [1, math.inf] + REF[2:], reference_channels()),
    ),
    (
        "telemetry.values[1]",
        lambda: build_telemetry(0, 0, [1, "2"] + REF[2:], reference_channels()),
    ),
    (
        "telemetry.values[2]",
        lambda: build_telemetry(0, 0, [1, 2, None] + REF[3:], reference_channels()),
    ),
    ("telemetry.qualities", lambda: build_telemetry(0, 0, REF, reference_channels(), [0] * 7)),
    (
        "telemetry.qualities[3]",
        lambda: build_telemetry(0, 0, REF, reference_channels(), [0, 0, 0, 3, 0, 0, 0, 0]),
    ),
    ("telemetry.channels[0].resolution", lambda: build_telemetry(0, 0, [1], [chan(resolution=0)])),
    (
        "telemetry.channels[0].resolution",
        lambda: build_telemetry(0, 0, [1], [chan(resolution=1e-9)]),
    ),
    ("telemetry.channels[0].hi", lambda: build_telemetry(0, 0, [1], [chan(lo=5, hi=5)])),
    ("telemetry.channels[0].lo", lambda: build_telemetry(0, 0, [1], [chan(lo=math.nan)])),
    ("telemetry.channels[0].role", lambda: build_telemetry(0, 0, [1], [chan(role="heater")])),
    ("telemetry.channels[0].name", lambda: build_telemetry(0, 0, [1], [chan(name="")])),
    ("telemetry.channels[0].unit", lambda: build_telemetry(0, 0, [1], [chan(unit="u" * 17)])),
    ("telemetry.channels[0]", lambda: build_telemetry(0, 0, [1], [("flow", "", "sensor", 0, 1)])),
    ("telemetry.channels[1].name", lambda: build_telemetry(0, 0, [1, 1], [chan(), chan()])),
    ("telemetry.channels[0].alias", lambda: build_telemetry(0, 0, [1], [chan(alias=4)])),
    ("birth.module_id", lambda: build_birth(**good_birth_kwargs(module_id="Pump/1"))),
    ("birth.module_id", lambda: build_birth(**good_birth_kwargs(module_id="p" * 33))),
    ("birth.module_kind", lambda: build_birth(**good_birth_kwargs(module_kind="heater"))),
    ("birth.module_kind", lambda: build_birth(**good_birth_kwargs(module_kind=5))),
    ("birth.firmware", lambda: build_birth(**good_birth_kwargs(firmware=""))),
    ("birth.config_hash", lambda: build_birth(**good_birth_kwargs(config_hash=b"\x01"))),
    ("birth.config_hash", lambda: build_birth(**good_birth_kwargs(config_hash="abcd"))),
    ("birth.reset_cause", lambda: build_birth(**good_birth_kwargs(reset_cause="lightning"))),
    ("birth.bdseq", lambda: build_birth(**good_birth_kwargs(bdseq=256))),
    ("birth.boot_nonce", lambda: build_birth(**good_birth_kwargs(boot_nonce=b"1234567"))),
    ("birth.boot_nonce", lambda: build_birth(**good_birth_kwargs(boot_nonce=b"1" * 17))),
    (
        "birth.channels",
        lambda: build_birth(**good_birth_kwargs(channels=[chan(name=f"c{i}") for i in range(65)])),
    ),
    (
        "birth.channels[1].hi",
        lambda: build_birth(**good_birth_kwargs(channels=[chan(), chan(name="x", hi="5")])),
    ),
    ("birth.states", lambda: build_birth(**good_birth_kwargs(states={}))),
    (
        "birth.states['idle'][0]",
        lambda: build_birth(**good_birth_kwargs(states={"idle": ["launch"]})),
    ),
    ("birth.states['idle']", lambda: build_birth(**good_birth_kwargs(states={"idle": "start"}))),
    ("birth.state", lambda: build_birth(**good_birth_kwargs(state="flying"))),
    ("death.bdseq", lambda: build_death(256)),
    ("event.number", lambda: build_event(2**32, 0, "alarm", "info")),
    ("event.t_ms", lambda: build_event(1, -5, "alarm", "info")),
    ("event.type", lambda: build_event(1, 0, "explosion", "info")),
    ("event.severity", lambda: build_event(1, 0, "alarm", "fatal")),
    ("event.source", lambda: build_event(1, 0, "alarm", "info", source=64)),
    ("event.source", lambda: build_event(1, 0, "alarm", "info", source="High Temp")),
    ("event.cause", lambda: build_event(1, 0, "trip", "critical")),
    ("event.cause", lambda: build_event(1, 0, "trip", "critical", cause="OverTemp")),
    ("event.detail", lambda: build_event(1, 0, "alarm", "info", detail="x" * 129)),
    ("event.count", lambda: build_event(1, 0, "dropped", "warning")),
    ("event.count", lambda: build_event(1, 0, "dropped", "warning", count=0)),
    ("event.count", lambda: build_event(1, 0, "alarm", "warning", count=2)),
    ("event.state", lambda: build_event(1, 0, "state_change", "info")),
    ("event.state", lambda: build_event(1, 0, "alarm", "info", state="idle")),
    ("command.command_id", lambda: build_command(2**32, "rebirth", None, 0)),
    ("command.op", lambda: build_command(1, "explode", None, 0)),
    ("command.op", lambda: build_command(1, 6, None, 0)),
    ("command.expiry_ms", lambda: build_command(1, "rebirth", None, 2**64)),
    ("command.expiry_ms", lambda: build_command(1, "rebirth", None, None)),
    ("command.args", lambda: build_command(1, "rebirth", {"channel": 1}, 0)),
    (
        "command.args",
        lambda: build_command(1, "set_setpoint", {"channel": 1, "value": 2, "extra": 3}, 0),
    ),
    ("command.args", lambda: build_command(1, "set_setpoint", [1, 2], 0)),
    ("command.args.value", lambda: build_command(1, "set_setpoint", {"channel": 1}, 0)),
    (
        "command.args.value",
        lambda: build_command(1, "set_setpoint", {"channel": 1, "value": math.nan}, 0),
    ),
    (
        "command.args.channel",
        lambda: build_command(1, "set_setpoint", {"channel": 64, "value": 1}, 0),
    ),
    ("command.args.command", lambda: build_command(1, "state", {"command": "launch"}, 0)),
    ("command.args.target", lambda: build_command(1, "reset_trip", {"target": "Hi Temp"}, 0)),
    ("command.args.config", lambda: build_command(1, "configure", {"config": {}}, 0)),
    ("command.args.config key", lambda: build_command(1, "configure", {"config": {"Kp": 1}}, 0)),
    (
        "command.args.config['kp']",
        lambda: build_command(1, "configure", {"config": {"kp": [1]}}, 0),
    ),
    (
        "command.args.config['kp']",
        lambda: build_command(1, "configure", {"config": {"kp": "x" * 65}}, 0),
    ),
    ("command.auth", lambda: build_command(1, "rebirth", None, 0, ("h", 1))),
    ("command.auth.sender", lambda: build_command(1, "rebirth", None, 0, ("", 1, b"t" * 16))),
    ("command.auth.counter", lambda: build_command(1, "rebirth", None, 0, ("h", -1, b"t" * 16))),
    ("command.auth.tag", lambda: build_command(1, "rebirth", None, 0, ("h", 1, b"t" * 15))),
    ("ack.command_id", lambda: build_ack(-1, "ok")),
    ("ack.result", lambda: build_ack(1, 9)),
    ("ack.result", lambda: build_ack(1, "great")),
    ("ack.reason", lambda: build_ack(1, "ok", 5)),
    ("lease.host_id", lambda: build_lease("host", 0, 0, 1000) and build_lease("HOST", 0, 0, 1000)),
    ("lease.host_time_ms", lambda: build_lease("h", 2**64, 0, 1000)),
    ("lease.seq", lambda: build_lease("h", 0, 2**64, 1000)),
    ("lease.tags", lambda: build_lease("h", 0, 0, 1000, {})),
    ("lease.tags", lambda: build_lease("h", 0, 0, 1000, [("m", b"t" * 16)])),
    ("lease.tags", lambda: build_lease("h", 0, 0, 1000, {f"m{i}": b"t" * 16 for i in range(33)})),
    ("lease.tags key", lambda: build_lease("h", 0, 0, 1000, {"Pump": b"t" * 16})),
    ("lease.tags['m']", lambda: build_lease("h", 0, 0, 1000, {"m": b"t" * 15})),
    ("lease.tags['m']", lambda: build_lease("h", 0, 0, 1000, {"m": "t" * 16})),
    ("lease.duration_ms", lambda: build_lease("h", 0, 0, 0)),
    ("lease.duration_ms", lambda: build_lease("h", 0, 0, 3600001)),
    ("state.online", lambda: build_state(1, 0)),
    ("state.t_ms", lambda: build_state(True, -1)),
]


@pytest.mark.parametrize("field, call", BUILD_VIOLATIONS, ids=[f for f, _ in BUILD_VIOLATIONS])
def test_builder_rejects_with_field_name(field, call):
    with pytest.raises(MessageError) as info:
        call()
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")
    assert isinstance(info.value, ValueError)


def test_error_message_names_value_and_range():
    with pytest.raises(MessageError) as info:
        build_telemetry(300, 0, REF, reference_channels())
    assert str(info.value) == "telemetry.seq: 300 not in 0..255"
    with pytest.raises(MessageError, match=r"telemetry.values\[0\]: 300.5 not in -50..300"):
        build_telemetry(0, 0, [300.5] + REF[1:], reference_channels())


def enc(obj):
    return cbor2.dumps(obj, canonical=True)


TELE = dict(REFERENCE_OBJECT)
PARSE_VIOLATIONS = [
    # (field, bytes)
    ("message", b""),
    ("message", b"\xa1"),
    ("message", b"\xff"),
    ("message", enc([3, 1])),
    ("message", enc({0: 3, 1: 1}) + b"\x00"),
    ("message.kind", enc({1: 1})),
    ("message.kind", enc({0: 9, 1: 1})),
    ("message.kind", enc({0: "telemetry", 1: 1})),
    ("telemetry.version", enc({**TELE, 1: 2})),
    ("telemetry.version", enc({0: 3})),
    ("telemetry", enc({**TELE, 9: 1})),
    ("telemetry", enc({**TELE, "x": 1})),
    ("telemetry", {k: v for k, v in TELE.items() if k != 3}),
    ("telemetry.seq", enc({**TELE, 2: 256})),
    ("telemetry.t_ms", enc({**TELE, 3: -1})),
    ("telemetry.values", enc({**TELE, 4: {}})),
    ("telemetry.values[1]", enc({**TELE, 4: [1, "x"]})),
    ("telemetry.values[0]", enc({**TELE, 4: [None, 1]})),
    ("telemetry.values[0]", enc({**TELE, 4: [math.nan]})),
    ("telemetry.quality", enc({**TELE, 5: {}})),
    ("telemetry.quality", enc({**TELE, 5: None})),
    ("telemetry.quality", enc({**TELE, 5: {8: 2}})),
    ("telemetry.quality[0]", enc({**TELE, 5: {0: 0}})),
    ("telemetry.quality[0]", enc({**TELE, 5: {0: 3}})),
    ("birth", enc({0: 1, 1: 1})),
    ("death.bdseq", enc({0: 2, 1: 1, 2: 300})),
    ("death.bdseq", enc({0: 2, 1: 1, 2: 1.0})),
    ("death.bdseq", enc({0: 2, 1: 1, 2: True})),
    ("event.type", enc({0: 4, 1: 1, 2: 1, 3: 1, 4: 7, 5: 0})),
    ("event.cause", enc({0: 4, 1: 1, 2: 1, 3: 1, 4: 2, 5: 3})),
    ("event", enc({0: 4, 1: 1, 2: 1, 3: 1, 4: 0, 5: 0, 8: None})),
    ("command.op", enc({0: 5, 1: 1, 2: 1, 3: 9, 5: 0})),
    ("command.args", enc({0: 5, 1: 1, 2: 1, 3: 4, 4: {}, 5: 0})),
    ("command.args", enc({0: 5, 1: 1, 2: 1, 3: 1, 4: {0: 1}, 5: 0})),
    ("command.args.command", enc({0: 5, 1: 1, 2: 1, 3: 1, 4: {2: "fly"}, 5: 0})),
    ("command.auth.tag", enc({0: 5, 1: 1, 2: 1, 3: 4, 5: 0, 6: ["h", 1, b"x"]})),
    ("command.auth", enc({0: 5, 1: 1, 2: 1, 3: 4, 5: 0, 6: {"h": 1}})),
    ("ack.result", enc({0: 6, 1: 1, 2: 1, 3: 9})),
    ("ack.reason", enc({0: 6, 1: 1, 2: 1, 3: 0, 4: None})),
    ("lease.duration_ms", enc({0: 7, 1: 1, 2: "h", 3: 1, 4: 1, 5: 0})),
    ("lease.tags", enc({0: 7, 1: 1, 2: "h", 3: 1, 4: 1, 5: 1, 6: None})),
    ("lease.tags", enc({0: 7, 1: 1, 2: "h", 3: 1, 4: 1, 5: 1, 6: {}})),
    ("lease.tags key", enc({0: 7, 1: 1, 2: "h", 3: 1, 4: 1, 5: 1, 6: {1: b"t" * 16}})),
    ("lease.tags['m']", enc({0: 7, 1: 1, 2: "h", 3: 1, 4: 1, 5: 1, 6: {"m": b"t"}})),
    ("state.online", enc({0: 8, 1: 1, 2: 1, 3: 1})),
]


@pytest.mark.parametrize("field, data", PARSE_VIOLATIONS, ids=[f for f, _ in PARSE_VIOLATIONS])
def test_parser_rejects_with_field_name(field, data):
    if isinstance(data, dict):
        data = enc(data)
    with pytest.raises(MessageError) as info:
        parse(data)
    assert info.value.field == field


def test_unknown_protocol_version_is_named():
    with pytest.raises(MessageError, match="protocol version 2 not supported"):
        parse(enc({**TELE, 1: 2}))


def test_malformed_cbor_is_chained_and_has_offset():
    with pytest.raises(MessageError) as info:
        parse(b"\xa2\x00\x03\x01\x1c")  # reserved additional information at byte 4
    assert isinstance(info.value.__cause__, cbor.DecodeError)
    assert info.value.offset == 4
    assert "at byte 4" in str(info.value)


def test_parse_specific_kind_rejects_other_kinds():
    with pytest.raises(MessageError, match=r"message.kind: 2 not in 1 \(birth\)"):
        parse_birth(build_death(1))
    with pytest.raises(MessageError) as info:
        parse_telemetry("not bytes")
    assert info.value.field == "message"


def test_parse_with_channels_checks_ranges_and_types():
    ch = reference_channels()
    with pytest.raises(MessageError) as info:
        parse_telemetry(enc({**TELE, 4: [30001] + TELE[4][1:]}), ch)
    assert info.value.field == "telemetry.values[0]"
    with pytest.raises(MessageError) as info:
        parse_telemetry(enc({**TELE, 4: [80.12] + TELE[4][1:]}), ch)  # float where int expected
    assert info.value.field == "telemetry.values[0]"
    with pytest.raises(MessageError) as info:
        parse_telemetry(reference_telemetry(), ch[:7])
    assert info.value.field == "telemetry.values"


def test_nested_channel_map_is_validated():
    b = cbor2.loads(example_birth())
    b[9][0][7] = 1
    with pytest.raises(MessageError) as info:
        parse(enc(b))
    assert info.value.field == "birth.channels[0]"
    b = cbor2.loads(example_birth())
    b[9][0][5] = None
    with pytest.raises(MessageError) as info:
        parse(enc(b))
    assert info.value.field == "birth.channels[0].resolution"


# --- Fuzzing ----------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64 - 1),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=20),
)
cbor_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(st.integers(-2, 12), st.text(max_size=5)), inner, max_size=6),
    ),
    max_leaves=20,
)


def parse_only_message_errors(data: bytes, channels=None):
    try:
        obj = parse(data, channels)
    except MessageError:
        return None
    assert obj.KIND == cbor2.loads(data)[0]
    return obj


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80))
def test_fuzz_arbitrary_bytes(data):
    parse_only_message_errors(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 8), st.dictionaries(st.integers(2, 12), cbor_values, max_size=8))
def test_fuzz_maps_of_every_kind(kind, body):
    data = enc({0: kind, 1: 1, **body})
    parse_only_message_errors(data, reference_channels())
    parse_only_message_errors(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SPEC_EXAMPLES) + 14)), st.data())
def test_fuzz_mutated_valid_messages(index, data):
    original = all_examples()[index]
    buf = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            buf.insert(pos, data.draw(st.integers(0, 255)))
        elif len(buf) > 1:
            del buf[pos]
    parse_only_message_errors(bytes(buf), reference_channels())
    parse_only_message_errors(bytes(buf))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 255),
    st.integers(0, 2**64 - 1),
    st.lists(st.one_of(st.none(), st.floats(-50, 300)), min_size=8, max_size=8),
    st.lists(st.sampled_from([0, 1, 2]), min_size=8, max_size=8),
)
def test_fuzz_telemetry_round_trip(seq, t_ms, raw_values, qualities):
    ch = reference_channels()
    # clamp into each channel's range; None needs a non-GOOD quality
    values = []
    for c, v in zip(ch, raw_values, strict=True):
        values.append(None if v is None else min(max(v, c.lo), c.hi))
    qualities = [q if v is not None else max(q, 1) for v, q in zip(values, qualities, strict=True)]
    t = parse_telemetry(build_telemetry(seq, t_ms, values, ch, qualities), ch)
    assert (t.seq, t.t_ms, t.qualities) == (seq, t_ms, qualities)
    for c, v, got in zip(ch, values, t.values, strict=True):
        if v is None:
            assert got is None
        else:
            assert abs(got - v) <= c.resolution / 2 + 1e-9


# --- CDDL -------------------------------------------------------------------------------


def test_conftest_hook_validates_built_messages(cddl_violations):
    before = len(cddl_violations)
    with pytest.raises(AssertionError, match="flowskid.cddl"):
        messages._encode({0: 2, 1: 1, 2: 300})
    assert len(cddl_violations) == before + 1
    del cddl_violations[before:]


@pytest.mark.parametrize(
    "obj",
    [
        {0: 2, 1: 1, 2: 256},
        {0: 2, 1: 2, 2: 1},
        {0: 3, 1: 1, 2: 1, 3: 1, 4: [1], 5: {0: 0}},
        {0: 3, 1: 1, 2: 1, 3: 1, 4: ["x"]},
        {0: 4, 1: 1, 2: 1, 3: 1, 4: 7, 5: 0},
        {0: 5, 1: 1, 2: 1, 3: 0, 4: {2: "start"}, 5: 1},
        {0: 5, 1: 1, 2: 1, 3: 1, 4: {2: "launch"}, 5: 1},
        {0: 6, 1: 1, 2: 1, 3: 9},
        {0: 7, 1: 1, 2: "Host", 3: 1, 4: 1, 5: 1},
        {0: 8, 1: 1, 2: 1, 3: 1},
        {0: 9, 1: 1},
    ],
)
def test_schema_rejects_invalid_messages(obj):
    schema = pycddl.Schema(CDDL_PATH.read_text())
    with pytest.raises(pycddl.ValidationError):
        schema.validate_cbor(enc(obj))


# --- SPEC.md examples -------------------------------------------------------------------

_EXAMPLE_RE = re.compile(r"<!-- example: (\w+) -->\s*```text\n(.*?)```", re.S)


def spec_hex_examples():
    return {
        name: "".join(body.split()) for name, body in _EXAMPLE_RE.findall(SPEC_PATH.read_text())
    }


def test_spec_hex_examples_match_the_builders():
    found = spec_hex_examples()
    assert sorted(found) == sorted(SPEC_EXAMPLES)
    for name, make in SPEC_EXAMPLES.items():
        assert found[name] == make().hex(), (
            f"SPEC.md example {name!r} is stale; now: {make().hex()}"
        )


def test_spec_documents_every_result_code_and_kind():
    text = SPEC_PATH.read_text()
    for name in constants.RESULT_NAMES:
        assert "`" + name + "`" in text
    for code, name in enumerate(
        ("BIRTH", "DEATH", "TELEMETRY", "EVENT", "COMMAND", "ACK", "LEASE", "STATE"), 1
    ):
        assert f"### {name} (kind {code}," in text
    for names in (constants.MODULE_KIND_NAMES, constants.EVENT_TYPE_NAMES, constants.OP_NAMES):
        for code, name in enumerate(names):
            assert f"{code} `{name}`" in text
    assert "skid/v1/<line>/<module>/<kind>" in text


# --- Under real MicroPython -------------------------------------------------------------

MPY_PROGRAM = r"""
from protocol import messages as m, host_messages as h, auth as a
from protocol.wire import Channel, MessageError
ch = [Channel(*s) for s in REF_CHANNELS]
out = []
codec = m.TelemetryCodec(ch)
t = codec.build(200, 3600000, [80.12, 79.87, 5.03, 4.98, 0.250, 0.125, 0.634, 1])
out.append(t.hex())
p = h.parse_telemetry(t, codec)
out.append(repr(p.values == [80.12, 79.87, 5.03, 4.98, 0.25, 0.125, 0.634, 1.0]))
q = m.build_telemetry(201, 3601000, [80.12, 79.87, 5.03, 4.98, 0.25, 0.125, None, 1], ch, [0, 0, 0, 0, 0, 1, 2, 0])
out.append(q.hex())
out.append(repr(h.parse_telemetry(q, ch).qualities))
pumps = [Channel("flow", "mL/min", "sensor", 0, 50, 0.01), Channel("pressure", "bar", "sensor", 0, 20, 0.001),
         Channel("flow_sp", "mL/min", "setpoint", 0, 50, 0.01), Channel("motor_temp", "degC", "sensor", -40, 150)]
b = m.build_birth("pump-1", "pump", "0.1.0", bytes.fromhex("c0ffee01"), "power_on", 0, NONCE, pumps, STATES, "idle")
out.append(b.hex())
pb = h.parse(b)
out.append(pb.module_id + " " + pb.reset_cause + " " + str(len(pb.channels)) + " " + pb.channels[1].unit)
built = [
    m.build_death(0),
    m.build_event(17, 3602500, "trip", "critical", source=0, cause="over_temperature", detail="T 152.3 > 150"),
    m.build_ack(42, 2, "set_setpoint not allowed in held"),
    m.build_lease("host-a", EPOCH, 1234, 3000),
    m.build_state(True, EPOCH),
]
cmd = m.build_command(42, "set_setpoint", {"channel": 2, "value": 12.5}, EPOCH + 5000)
signed = a.sign_command(cmd, KEY, "pump-1", NONCE, "host-a", EPOCH)
built += [cmd, signed]
for d in built:
    out.append(d.hex())
    out.append(type(h.parse(d)).__name__)
v = a.CommandVerifier(KEY, "pump-1", NONCE)
out.append(repr([v.verify(signed), v.verify(signed), v.verify(cmd), v.verify(b"\xff")]))
v2 = a.CommandVerifier(KEY, "pump-1", b"\x09" * 8)
out.append(repr(v2.verify(signed)))
out.append(repr(v))
out.append(a.hmac_sha256(b"k" * 100, b"msg").hex())
errs = []
for f in (lambda: m.build_telemetry(300, 0, [0] * 8, ch), lambda: h.parse(b"\xa5\x00"), lambda: h.parse(bytes([0xa2, 0, 3, 1, 2]))):
    try:
        f()
        errs.append("no error")
    except MessageError as e:
        errs.append(e.field)
out.append(repr(errs))
h = a.HostTimeEstimate()
x = [h.is_expired(EPOCH, 5)]
h.update(EPOCH, (1 << 30) - 10)
x += [h.host_now(20), h.is_expired(EPOCH + 29, 20), h.is_expired(EPOCH + 30, 20)]
x += [h.update(EPOCH, 20), h.host_now(20)]
out.append(repr(x))
sl = a.sign_lease("host-a", EPOCH, EPOCH, 3000, [("pump-1", KEY, NONCE), ("reactor-1", KEY2, NONCE2)])
out.append(sl.hex())
lv = a.CommandVerifier(KEY, "pump-1", NONCE)
pl = m.parse_lease(sl)
unsigned = m.parse_lease(m.build_lease("host-a", EPOCH, EPOCH + 1, 3000))
out.append("|".join(str(r) for r in (lv.verify_lease(pl), lv.verify_lease(pl), lv.verify_lease(unsigned))))
print("\n".join(out))
"""


def test_everything_under_micropython():
    from bench.bench_wire import REFERENCE_CHANNELS

    prelude = f"REF_CHANNELS = {REFERENCE_CHANNELS!r}\nNONCE = {EXAMPLE_NONCE!r}\nKEY = {EXAMPLE_KEY!r}\nEPOCH = {EPOCH_MS}\nSTATES = {PUMP_STATES!r}\n"
    prelude += f"KEY2 = {EXAMPLE_KEY_2!r}\nNONCE2 = {EXAMPLE_NONCE_2!r}\n"
    lines = run_node(prelude + MPY_PROGRAM, packages=("protocol",)).splitlines()
    signed = example_signed_command()
    expected = [
        reference_telemetry().hex(),
        "True",
        SPEC_EXAMPLES["telemetry_quality"]().hex(),
        "[0, 0, 0, 0, 0, 1, 2, 0]",
        example_birth().hex(),
        "pump-1 power_on 4 bar",
    ]
    names = ["Death", "Event", "Ack", "Lease", "HostState", "Command", "Command"]
    for name, key in zip(
        names, ["death", "event", "ack", "lease", "state", "command", "command_signed"], strict=True
    ):
        expected += [SPEC_EXAMPLES[key]().hex(), name]
    expected += [
        "[0, 6, 5, 8]",
        "5",
        "CommandVerifier(module_id='pump-1', senders=1/8, key=<hidden>)",
        auth.hmac_sha256(b"k" * 100, b"msg").hex(),
        "['telemetry.seq', 'message', 'telemetry.version']",
        f"[True, {EPOCH_MS + 30}, True, False, False, {EPOCH_MS + 30}]",
        example_signed_lease().hex(),
        "None|seq not above the sender's last|no tag for this module",
    ]
    assert signed.hex() == SPEC_EXAMPLES["command_signed"]().hex()
    assert lines == expected


def _protocol_imports(path):
    """(module, name) for every ``from protocol.X import name`` in ``path``, lazy ones too."""
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("protocol"):
            out += [(node.module, a.name) for a in node.names]
    return out


def test_protocol_modules_import_only_public_names_of_each_other():
    # The split of issue 11: protocol.wire is the shared public module; nothing reaches
    # into another module's underscore names (MicroPython drops underscore const()s at
    # compile time, so such an import can even fail on a board).
    root = ROOT / "protocol"
    for path in sorted(root.glob("*.py")):
        for module, name in _protocol_imports(path):
            assert not name.startswith("_"), f"{path.name} imports {module}.{name}"


def test_the_board_side_never_imports_the_host_parsers_and_no_module_cycles():
    # Boards carry protocol.messages and protocol.wire but not protocol.host_messages
    # (edge/boardconfig/board_files.py): neither may import it, not even lazily, and the
    # modules import each other in one direction only (no __getattr__ facade either).
    root = ROOT / "protocol"
    graph = {}
    for path in sorted(root.glob("*.py")):
        graph[path.stem] = {m.split(".", 1)[1] for m, _ in _protocol_imports(path) if "." in m}
        graph[path.stem] |= {n for m, n in _protocol_imports(path) if m == "protocol"}
        assert "__getattr__" not in path.read_text(), path.name
    for board_module in ("messages", "wire", "auth", "topics", "constants", "cbor"):
        assert "host_messages" not in graph[board_module], board_module

    def reaches(start, target, seen=()):
        return any(
            n == target or (n not in seen and reaches(n, target, (*seen, n)))
            for n in graph.get(start, ())
        )

    for module in graph:
        assert not reaches(module, module), f"import cycle through protocol.{module}"
    assert not hasattr(messages, "parse_birth")
