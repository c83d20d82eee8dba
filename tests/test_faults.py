"""Fault injection specification: parsing, validation, scheduling, scenario files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.boardconfig import ConfigError
from emulator import emulation
from emulator.faults import (
    FAULT_KINDS,
    HOST_FAULTS,
    LINE,
    PARAMS,
    SENSOR_FAULTS,
    Condition,
    Expectation,
    Fault,
    FaultSchedule,
    FaultSpecError,
    ScenarioError,
    ScenarioErrors,
    fault_help,
    line_targets,
    load_scenario,
    load_scenario_text,
    make_fault,
    parse_condition,
    parse_fault_option,
)
from line.loader import load_line

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "examples" / "scenarios"

# The reference line examples/lines/demo.toml (checked against the file below): component
# id -> kind, and each module's sensor and status channels.
DEMO = {
    "pump_a": "pump",
    "pump_b": "pump",
    "reactor1": "reactor",
    "bpr1": "bpr",
    "uv1": "analyzer",
    "valve1": "valve",
    "tube_a": "tube",
    "tube_b": "tube",
    "mixer": "mixer",
    "tube_m": "tube",
    "tube_r": "tube",
    "tube_x": "tube",
    "waste": "vessel",
    "collect": "vessel",
}
CHANNELS = {
    "pump_a": ["pressure", "feed", "estop"],
    "pump_b": ["pressure", "feed", "estop"],
    "reactor1": ["temp_a", "temp_b", "temperature", "cutout", "estop"],
    "bpr1": ["pressure", "estop"],
    "uv1": ["uv", "lamp_monitor", "estop"],
    "valve1": ["position_fb", "estop"],
}
MODULE_OF_KIND = {
    "pump": "pump_a",
    "reactor": "reactor1",
    "bpr": "bpr1",
    "analyzer": "uv1",
    "valve": "valve1",
    "tube": "tube_m",
    "mixer": "mixer",
    "vessel": "waste",
}


def parse(text, channels=CHANNELS):
    return parse_fault_option(text, DEMO, channels)


def spec_error(text, channels=CHANNELS) -> str:
    with pytest.raises(FaultSpecError) as info:
        parse(text, channels)
    message = str(info.value)
    assert message.startswith("--fault " + text + ": ")
    return message


# --- the fit table ----------------------------------------------------------------------


def test_one_fit_table_with_the_issue_kinds():
    assert FAULT_KINDS is emulation.FAULT_KINDS  # the emulation's table, not a copy
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
    assert set(PARAMS) == set(FAULT_KINDS)
    assert FAULT_KINDS["heater-open"] == {"reactor"}
    assert FAULT_KINDS["dry-feed"] == {"pump"}
    assert FAULT_KINDS["host-crash"] == {LINE}
    assert HOST_FAULTS == {"partition", "broker-outage", "host-crash"}
    assert SENSOR_FAULTS == {k for k in FAULT_KINDS if k.startswith("sensor-")}


def test_parameters_match_what_the_effects_read():
    for kind, specs in PARAMS.items():
        effect_reads = set(emulation.FAULT_PARAMS[kind])
        if kind == "power-loss":
            # its reboot delay is the fault's duration_s (+DURATION), not a parameter
            effect_reads.discard("duration_s")
        assert set(specs) == effect_reads, kind


def test_demo_line_matches_the_tables_here():
    line = load_line(ROOT / "examples" / "lines" / "demo.toml")
    assert line_targets(line) == (DEMO, CHANNELS)


@pytest.mark.parametrize("kind", list(FAULT_KINDS))
def test_each_kind_parses_exactly_on_the_modules_it_fits(kind):
    for module_kind, module in MODULE_OF_KIND.items():
        text = f"{kind}:{module}@5"
        if module_kind in FAULT_KINDS[kind]:
            fault = parse(text)
            assert (fault.kind, fault.module, fault.at_s) == (kind, module, 5.0)
        else:
            message = spec_error(text)
            assert ("does not fit" in message) or ("line-wide" in message)
    line_text = f"{kind}:line@5"
    if FAULT_KINDS[kind] == {LINE}:
        assert parse(line_text) == Fault(kind, LINE, at_s=5.0)
    else:
        assert "needs a module as target" in spec_error(line_text)


# --- parsing: the forms -----------------------------------------------------------------


def test_issue_examples():
    clog = parse("clog:reactor1@120,rate=0.05")
    assert clog == Fault("clog", "reactor1", None, 120.0, None, None, {"rate": 0.05})
    # fixed defaults filled in
    assert clog.params == {"rate": 0.05, "sudden": False, "open": 0.0, "min_open": 0.0}

    power = parse("power-loss:pump_a@60+5")
    assert (power.kind, power.module, power.at_s, power.duration_s) == (
        "power-loss",
        "pump_a",
        60.0,
        5.0,
    )
    assert power.params == {}

    drift = parse("sensor-drift:reactor1.temp_a@30,rate=0.1")
    assert (drift.module, drift.channel, drift.params) == ("reactor1", "temp_a", {"rate": 0.1})


@pytest.mark.parametrize(
    "text, at_s, duration_s",
    [
        ("leak:bpr1@0", 0.0, None),
        ("leak:bpr1@0.25", 0.25, None),
        ("leak:bpr1@.5", 0.5, None),
        ("leak:bpr1@7.", 7.0, None),
        ("leak:bpr1@1e2", 100.0, None),
        ("leak:bpr1@1.5e+1+2.5", 15.0, 2.5),
        ("leak:bpr1@3+1e-3", 3.0, 0.001),
        ("  leak : bpr1 @ 10 + 4 ", 10.0, 4.0),
    ],
)
def test_time_forms(text, at_s, duration_s):
    fault = parse(text)
    assert (fault.at_s, fault.duration_s) == (at_s, duration_s)


@pytest.mark.parametrize(
    "target, channel",
    [
        ("pump_a", "pressure"),  # the high-pressure interlock's channel
        ("bpr1", "pressure"),
        ("reactor1", "temp_a"),  # temperature is the 1oo2 vote: its first probe
        ("reactor1.temperature", "temp_a"),
        ("reactor1.temp_b", "temp_b"),
        ("uv1", "uv"),
        ("uv1.lamp_monitor", "lamp_monitor"),
        ("valve1", "position_fb"),
        ("pump_b.feed", "feed"),
    ],
)
def test_sensor_targets(target, channel):
    for kind in sorted(SENSOR_FAULTS):
        fault = parse(f"{kind}:{target}@1")
        assert fault.channel == channel
        assert fault.target == fault.module + "." + channel


def test_sensor_targets_without_channel_lists():
    assert parse("sensor-open:reactor1@1", channels=None).channel == "temp_a"
    assert parse("sensor-open:uv1@1", channels=None).channel == "uv"
    assert parse("sensor-open:pump_a.anything@1", channels=None).channel == "anything"
    # a module left out of the channel table is not checked either
    assert parse("sensor-open:bpr1.other@1", channels={"reactor1": ["temp_a"]}).channel == "other"


def test_analyzer_main_sensor_is_its_first_channel():
    fault = parse("sensor-short:uv1@1", channels={"uv1": ["absorbance", "lamp"]})
    assert fault.channel == "absorbance"


def test_voted_channel_stays_when_its_probes_are_not_on_the_module():
    fault = parse("sensor-open:reactor1@1", channels={"reactor1": ["temperature"]})
    assert fault.channel == "temperature"


def test_params_from_text_and_defaults():
    sudden = {"sudden": False, "open": 0.0, "min_open": 0.0}
    assert parse("clog:reactor1@1").params == sudden
    assert parse("clog:tube_m@1,sudden=true, open = 0.25").params == {
        "sudden": True,
        "open": 0.25,
        "min_open": 0.0,
    }
    assert parse("clog:mixer@1,rate=0,sudden=No").params == {**sudden, "rate": 0.0}
    assert parse("leak:reactor1@1").params == {"conductance_ml_min_bar": 0.2}
    assert parse("leak:valve1@1,conductance_ml_min_bar=5").params == {"conductance_ml_min_bar": 5.0}
    assert parse("sensor-stuck:bpr1@1").params == {}  # no fixed default: the effect decides
    assert parse("sensor-stuck:bpr1@1,value=-3.5").params == {"value": -3.5}
    assert parse("sensor-drift:bpr1@1").params == {"rate": 0.1}
    assert parse("sensor-drift:bpr1@1,rate=-0.2").params == {"rate": -0.2}
    assert parse("heater-stuck-on:reactor1@1").params == {}
    exotherm = {"heat_w": 20.0, "doubling_c": 10.0, "needs_reagents": False}
    assert parse("exotherm:reactor1@1").params == exotherm
    assert parse("exotherm:reactor1@1,heat_w=120,t_ref_c=80,max_w=500,needs_reagents=1").params == {
        **exotherm,
        "heat_w": 120.0,
        "t_ref_c": 80.0,
        "max_w": 500.0,
        "needs_reagents": True,
    }
    from_python = make_fault(
        "clog", "reactor1", line_modules=DEMO, at_s=0, params={"rate": 1, "sudden": True}
    )
    assert from_python.params == {**sudden, "rate": 1.0, "sudden": True}


@pytest.mark.parametrize(
    "text",
    [
        "clog:reactor1@120,rate=0.05",
        "clog:bpr1@0.1+0.30000000000000004,sudden=true,open=0.3",
        "clog:tube_x@2,rate=0.5,min_open=0.1",
        "exotherm:reactor1@1,heat_w=50,t_ref_c=-20.5,needs_reagents=true",
        "power-loss:pump_a@60+5",
        "sensor-drift:reactor1.temp_a@30",
        "sensor-drift:reactor1.temp_b@30,rate=-1e-05",
        "sensor-stuck:uv1.uv@2,value=0.5",
        "broker-outage:line@10.5+30",
        "host-crash:line@1e+20",
    ],
)
def test_option_round_trip(text):
    fault = parse(text)
    assert parse(fault.option()) == fault
    assert str(fault) == fault.option()


def test_faults_are_hashable_values():
    a, b = parse("clog:reactor1@1,rate=0.5"), parse("clog:reactor1@1.0,rate=.5")
    assert a == b and hash(a) == hash(b)
    assert len({a, b, parse("clog:reactor1@2")}) == 2


# --- parsing: errors --------------------------------------------------------------------


def test_unknown_kind_lists_kinds_with_a_suggestion():
    message = spec_error("clg:reactor1@10")
    assert message == (
        "--fault clg:reactor1@10: unknown fault kind 'clg' (did you mean 'clog'?); valid kinds: "
        + ", ".join(FAULT_KINDS)
    )
    assert "did you mean 'heater-open'" in spec_error("heater-opn:reactor1@1")
    assert "did you mean" not in spec_error("zzz:reactor1@1")


def test_unknown_target_lists_the_targets_that_fit():
    message = spec_error("clog:reactr@10")
    assert "unknown target 'reactr' (did you mean 'reactor1'?)" in message
    assert message.endswith(
        "valid targets for clog: bpr1, mixer, pump_a, pump_b, reactor1,"
        " tube_a, tube_b, tube_m, tube_r, tube_x, uv1, valve1"
    )
    message = spec_error("dry-feed:pump_c@1")
    assert "unknown target 'pump_c'" in message
    assert message.endswith("valid targets for dry-feed: pump_a, pump_b")
    assert "(or module.channel)" in spec_error("sensor-open:nowhere@1")
    assert "none on this line" in parse_error_on({"bpr1": "bpr"}, "heater-open:reactor1@1")


def parse_error_on(line, text):
    with pytest.raises(FaultSpecError) as info:
        parse_fault_option(text, line)
    return str(info.value)


def test_kind_not_fitting_the_module_kind():
    message = spec_error("heater-open:pump_a@1")
    assert message == (
        "--fault heater-open:pump_a@1: fault kind heater-open does not fit 'pump_a'"
        " (a pump): heater-open fits reactor; valid targets: reactor1"
    )
    message = spec_error("partition:tube_m@1")
    assert (
        "does not fit 'tube_m' (a tube): partition fits analyzer, bpr, pump, reactor, valve"
        in message
    )
    assert "leak fits analyzer, bpr, mixer, pump, reactor, tube, valve" in spec_error(
        "leak:waste@1"
    )
    assert "valid targets: pump_a, pump_b" in spec_error("pump-stall:bpr1@1")
    message = spec_error("broker-outage:reactor1@1")
    assert "broker-outage is a line-wide fault: its target is 'line', not 'reactor1'" in message
    assert "needs a module as target, not 'line'" in spec_error("partition:line@1")


def test_channel_errors():
    message = spec_error("sensor-open:reactor1.temp_c@1")
    assert "module 'reactor1' has no sensor channel 'temp_c' (did you mean" in message
    assert message.endswith("valid channels: temp_a, temp_b, temperature, cutout, estop")
    message = spec_error("clog:reactor1.temp_a@1")
    assert "clog targets a whole module, not a channel: use 'reactor1'" in message
    message = spec_error("sensor-open:valve1@1", channels={"valve1": []})
    assert "module 'valve1' (a valve) has no main sensor 'position_fb'" in message
    assert "name the channel as valve1.CHANNEL; valid channels: none" in message
    assert "bad channel name 'Bad!'" in spec_error("sensor-open:bpr1.Bad!@1", channels=None)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("clog:reactor1@-1", "bad time '-1': expected SECONDS[+DURATION]"),
        ("clog:reactor1@ten", "bad time 'ten'"),
        ("clog:reactor1@", "bad time ''"),
        ("clog:reactor1@nan", "bad time 'nan'"),
        ("clog:reactor1@inf", "bad time 'inf'"),
        ("clog:reactor1@1e999", "bad time '1e999'"),
        ("clog:reactor1@10+0", "bad time '10+0'"),
        ("clog:reactor1@10+-1", "bad time '10+-1'"),
        ("clog:reactor1@10++1", "bad time '10++1'"),
        ("clog:reactor1@10+", "bad time '10+'"),
        ("clog:reactor1@1@2", "bad time '1@2'"),
        ("clog:reactor1", "missing @SECONDS after the target"),
        ("clog", "missing :TARGET after the kind"),
        ("clog:@1", "missing TARGET after 'clog:'"),
        ("", "expected KIND:TARGET@SECONDS[+DURATION][,key=value...]"),
    ],
)
def test_bad_time_and_shape(text, expected):
    assert expected in spec_error(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "clog:reactor1@1,rte=2",
            "unknown parameter 'rte' (did you mean 'rate'?);"
            " valid parameters of clog: rate, sudden, open, min_open",
        ),
        (
            "sensor-open:reactor1@1,rate=2",
            "unknown parameter 'rate'; sensor-open takes no parameters",
        ),
        ("clog:reactor1@1,rate", "bad parameter 'rate': expected key=value"),
        ("clog:reactor1@1,", "bad parameter '': expected key=value"),
        ("clog:reactor1@1,=3", "bad parameter '=3'"),
        ("clog:reactor1@1,rate=1,rate=2", "parameter rate given twice"),
        (
            "clog:reactor1@1,rate=fast",
            "bad value 'fast' for parameter rate of clog: expected a number",
        ),
        ("clog:reactor1@1,rate=nan", "bad value 'nan'"),
        ("clog:reactor1@1,rate=1e999", "bad value '1e999'"),
        (
            "clog:reactor1@1,rate=-2",
            "parameter rate of clog = -2 is out of range: allowed 0..1000 1/s",
        ),
        ("clog:reactor1@1,open=1.5", "open of clog = 1.5 is out of range: allowed 0..1"),
        (
            "clog:reactor1@1,sudden=maybe",
            "bad value 'maybe' for parameter sudden of clog: expected true or false",
        ),
        ("clog:reactor1@1,sudden=2", "expected true or false"),
        ("leak:reactor1@1,conductance_ml_min_bar=0", "allowed > 0 and <= 100000 mL/min/bar"),
        ("sensor-drift:bpr1@1,rate=0", "allowed any finite number, not 0"),
        ("exotherm:reactor1@1,heat_w=2e6", "allowed 0..1000000 W"),
        (
            "exotherm:reactor1@1,power_w=1",
            "unknown parameter 'power_w'; valid parameters of exotherm: heat_w,",
        ),
        (
            "exotherm:reactor1@1,doubling_c=0",
            "doubling_c of exotherm = 0 is out of range: allowed 0.1..200 K",
        ),
        (
            "power-loss:pump_a@1,duration_s=5",
            "unknown parameter 'duration_s'; power-loss takes no parameters",
        ),
    ],
)
def test_bad_params(text, expected):
    assert expected in spec_error(text)


def test_error_carries_the_wrong_part():
    with pytest.raises(FaultSpecError) as info:
        parse("clog:reactor1@1,rate=-2")
    assert (info.value.key, info.value.value) == ("params.rate", "-2")
    assert isinstance(info.value, ValueError)


# Pieces that reach every branch of the grammar when glued together at random.
_PIECES = st.sampled_from(
    list(FAULT_KINDS)
    + list(DEMO)
    + ["line", ":", "@", "+", ",", "=", ".", " ", "temp_a", "rate", "value", "sudden"]
    + ["1", "0", "-1", "2.5", "1e3", "1e999", "nan", "x", "\u0663", "\n", "@@", "::", "true"]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_PIECES, max_size=12).map("".join)))
def test_arbitrary_text_parses_or_raises_fault_spec_error(text):
    for channels in (CHANNELS, None):
        try:
            fault = parse_fault_option(text, DEMO, channels)
        except FaultSpecError as exc:
            assert str(exc).startswith("--fault ")
        else:
            assert isinstance(fault, Fault)
            assert fault.at_s is not None and math.isfinite(fault.at_s) and fault.at_s >= 0
            assert parse_fault_option(fault.option(), DEMO, channels) == fault


# --- Fault, make_fault, conditions -----------------------------------------------------


def test_fault_constructor_checks_what_needs_no_line():
    with pytest.raises(FaultSpecError, match="exactly one trigger"):
        Fault("clog", "reactor1")
    with pytest.raises(FaultSpecError, match="exactly one trigger"):
        Fault("clog", "reactor1", at_s=1.0, when=Condition("reactor1", "temperature", ">", 1.0))
    with pytest.raises(FaultSpecError, match=r"at_s must be a number of seconds >= 0"):
        Fault("clog", "reactor1", at_s=-1.0)
    with pytest.raises(FaultSpecError, match=r"duration_s must be a number of seconds > 0"):
        Fault("clog", "reactor1", at_s=1.0, duration_s=0)
    with pytest.raises(FaultSpecError, match="unknown fault kind 'clot'"):
        Fault("clot", "reactor1", at_s=1.0)
    with pytest.raises(FaultSpecError, match="when must be a Condition"):
        Fault("clog", "reactor1", when="reactor1.temperature > 3")  # type: ignore[arg-type]
    with pytest.raises(FaultSpecError, match="targets a whole module"):
        Fault("leak", "reactor1", "temp_a", at_s=1.0)
    assert Fault("clog", "reactor1", at_s=3).at_s == 3.0


def test_make_fault_from_python():
    fault = make_fault(
        "exotherm",
        "reactor1",
        line_modules=DEMO,
        when="reactor1.temperature >= 80",
        duration_s=30,
        params={"heat_w": 200},
    )
    assert fault.when == Condition("reactor1", "temperature", ">=", 80.0)
    assert fault.params == {"heat_w": 200.0, "doubling_c": 10.0, "needs_reagents": False}
    assert str(fault) == "exotherm:reactor1 when reactor1.temperature >= 80 for 30 s"
    with pytest.raises(ValueError, match="no --fault form"):
        fault.option()
    with pytest.raises(FaultSpecError, match="does not fit 'bpr1'"):
        make_fault("exotherm", "bpr1", line_modules=DEMO, at_s=1)
    with pytest.raises(FaultSpecError, match="params of clog must be a table"):
        make_fault("clog", "bpr1", line_modules=DEMO, at_s=1, params=[1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("reactor1.temperature > 80", Condition("reactor1", "temperature", ">", 80.0)),
        ("pump_a.pressure<=-0.5", Condition("pump_a", "pressure", "<=", -0.5)),
        ("  bpr1.pressure >= 1e1 ", Condition("bpr1", "pressure", ">=", 10.0)),
        ("uv1.uv < .25", Condition("uv1", "uv", "<", 0.25)),
    ],
)
def test_conditions_parse(text, expected):
    assert parse_condition(text, DEMO, CHANNELS) == expected
    assert parse_condition(str(expected), DEMO, CHANNELS) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("reactor1.temperature = 80", "expected 'module.channel OP NUMBER'"),
        ("reactor > 80", "expected 'module.channel OP NUMBER'"),
        ("reactor1.temperature > hot", "expected 'module.channel OP NUMBER'"),
        ("reactor1.temperature > 1e999", "is not a finite number"),
        ("reactr.temperature > 1", "unknown module 'reactr' (did you mean 'reactor1'?)"),
        (
            "tube_m.pressure > 1",
            "unknown module 'tube_m'; valid modules: pump_a, pump_b, reactor1,",
        ),
        ("reactor1.temprature > 1", "has no channel 'temprature' (did you mean 'temperature'?)"),
        (80, "condition must be a string"),
    ],
)
def test_condition_errors(text, expected):
    with pytest.raises(FaultSpecError) as info:
        parse_condition(text, DEMO, CHANNELS)
    assert expected in str(info.value)
    assert info.value.key == "when"


def test_condition_holds():
    readings = {("reactor1", "temperature"): 80.0}

    def value_of(module, channel):
        return readings.get((module, channel))

    assert not Condition("reactor1", "temperature", ">", 80.0).holds(value_of)
    assert Condition("reactor1", "temperature", ">=", 80.0).holds(value_of)
    assert Condition("reactor1", "temperature", "<=", 80.0).holds(value_of)
    assert not Condition("reactor1", "temperature", "<", 80.0).holds(value_of)
    assert not Condition("bpr1", "pressure", "<", 80.0).holds(value_of)  # no reading
    readings[("reactor1", "temperature")] = math.nan
    assert not Condition("reactor1", "temperature", "<", 80.0).holds(value_of)
    assert not Condition("reactor1", "temperature", ">", 80.0).holds(value_of)


# --- schedule ---------------------------------------------------------------------------


def timed(kind, target, at_s, duration_s=None):
    return make_fault(kind, target, line_modules=DEMO, at_s=at_s, duration_s=duration_s)


def test_schedule_applies_each_fault_once_in_time_order():
    late = timed("leak", "bpr1", 20)
    early = timed("clog", "reactor1", 10)
    same_time = timed("pump-stall", "pump_a", 10)
    schedule = FaultSchedule([late, early, same_time])
    assert schedule.due(0.0) == []
    assert schedule.due(9.99) == []
    assert schedule.due(10.0) == [("apply", early), ("apply", same_time)]
    assert schedule.due(10.0) == []
    assert schedule.due(30.0) == [("apply", late)]
    assert schedule.due(1000.0) == []
    assert schedule.active == [late, early, same_time]
    assert schedule.pending == []
    assert [(t, a) for t, a, _ in schedule.history] == [
        (10.0, "apply"),
        (10.0, "apply"),
        (20.0, "apply"),
    ]


def test_schedule_clears_after_duration_even_within_one_step():
    power = timed("power-loss", "pump_a", 60, duration_s=5)
    outage = timed("broker-outage", "line", 62, duration_s=1)
    schedule = FaultSchedule([power, outage])
    assert schedule.due(59) == []
    assert schedule.due(61) == [("apply", power)]
    assert schedule.active == [power]
    # one long step covers: outage applied 62, cleared 63, power cleared 65
    assert schedule.due(100) == [("apply", outage), ("clear", outage), ("clear", power)]
    assert [t for t, _, _ in schedule.history] == [60, 62, 63, 65]
    assert schedule.active == []
    assert schedule.due(200) == []


def test_schedule_clears_before_applies_at_the_same_instant():
    first = timed("partition", "reactor1", 0, duration_s=10)
    second = timed("partition", "reactor1", 10, duration_s=10)
    schedule = FaultSchedule([second, first])
    assert schedule.due(0) == [("apply", first)]
    assert schedule.due(10) == [("clear", first), ("apply", second)]
    assert schedule.due(19.5) == []
    assert schedule.due(20) == [("clear", second)]


def test_schedule_conditions_fire_once_when_first_true():
    hot = make_fault(
        "exotherm", "reactor1", line_modules=DEMO, when="reactor1.temperature > 80", duration_s=15
    )
    clock = timed("clog", "bpr1", 5)
    readings = {"temperature": 20.0}

    def value_of(module, channel):
        assert module == "reactor1"
        return readings[channel]

    schedule = FaultSchedule([hot, clock])
    assert schedule.due(0, value_of) == []
    readings["temperature"] = 80.0
    assert schedule.due(5, value_of) == [("apply", clock)]  # 80 is not > 80
    readings["temperature"] = 80.5
    assert schedule.due(6, value_of) == [("apply", hot)]
    assert schedule.applied_at(0) == 6
    readings["temperature"] = 20.0
    assert schedule.due(7, value_of) == []
    readings["temperature"] = 99.0
    assert schedule.due(20, value_of) == []  # fires once only
    assert schedule.due(21, value_of) == [("clear", hot)]
    assert schedule.due(50, value_of) == []


def test_schedule_refuses_misuse():
    conditional = make_fault("leak", "bpr1", line_modules=DEMO, when="bpr1.pressure < 1")
    schedule = FaultSchedule([conditional])
    with pytest.raises(ValueError, match="needs value_of"):
        schedule.due(0)
    schedule.due(5, lambda m, c: 2.0)
    with pytest.raises(ValueError, match="time went backwards"):
        schedule.due(4, lambda m, c: 2.0)
    with pytest.raises(ValueError, match="finite number"):
        schedule.due(math.inf, lambda m, c: 2.0)
    with pytest.raises(TypeError):
        FaultSchedule(["clog:reactor1@1"])  # type: ignore[list-item]


def test_schedule_is_deterministic_whatever_the_step():
    faults = [
        timed("leak", "bpr1", 3.3, 2),
        timed("clog", "reactor1", 1.1, 4.4),
        timed("partition", "valve1", 5.5),
        timed("sensor-open", "pump_b", 2.2, 0.5),
    ]

    def run(step):
        schedule = FaultSchedule(faults)
        for n in range(int(12 / step)):
            schedule.due(n * step)
        schedule.due(12.0)
        return [(a, f) for _, a, f in schedule.history]

    assert run(0.1) == run(1.0) == run(20.0)


# --- scenario files --------------------------------------------------------------------


def example_files():
    return sorted(SCENARIOS.glob("*.toml"))


def test_one_example_scenario_per_fault_kind():
    kinds = {}
    for path in example_files():
        scenario = load_scenario(path, DEMO, CHANNELS)
        for fault in scenario.faults:
            kinds.setdefault(fault.kind, []).append(path.name)
    assert set(kinds) == set(FAULT_KINDS)
    assert len(example_files()) == len(FAULT_KINDS)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_example_scenario_loads(path):
    scenario = load_scenario(path, DEMO, CHANNELS)
    assert scenario.name == path.stem
    assert scenario.description
    assert scenario.faults and scenario.expectations
    assert scenario.line is not None and scenario.line.name == "demo.toml"
    assert scenario.line.resolve() == (ROOT / "examples" / "lines" / "demo.toml").resolve()
    assert path.stem.startswith(scenario.faults[0].kind)
    for fault in scenario.faults:
        assert fault.at_s is None or fault.at_s < scenario.duration_s
    for expectation in scenario.expectations:
        assert expectation.within_s < scenario.duration_s
    schedule = scenario.schedule()
    assert schedule.due(scenario.duration_s, lambda m, c: None) or any(
        f.when is not None for f in scenario.faults
    )


GOOD = """
[scenario]
name = "clog-reactor"
description = "the coil blocks"
duration_s = 300
seed = 7
line = "../lines/demo.toml"

[[faults]]
kind = "clog"
target = "reactor1"
at_s = 60
params = { rate = 0.05 }

[[faults]]
kind = "sensor-drift"
target = "reactor1.temp_b"
when = "reactor1.temperature > 80"
duration_s = 30

[[expect]]
trip = { module = "pump_a", cause = "over_pressure", within_s = 40 }

[[expect]]
alarm = { module = "pump_a", cause = ["high_pressure", "other"], within_s = 30 }
safe = { module = "reactor1", within_s = 50 }
signal = { when = "pump_a.pressure > 15", within_s = 30 }
safe_within_s = 60
"""


def test_scenario_text_loads_everything():
    scenario = load_scenario_text(GOOD, "s/clog.toml", DEMO, CHANNELS)
    assert (scenario.name, scenario.description, scenario.duration_s, scenario.seed) == (
        "clog-reactor",
        "the coil blocks",
        300.0,
        7,
    )
    assert scenario.line == Path("s/../lines/demo.toml")
    assert scenario.faults == (
        Fault("clog", "reactor1", at_s=60.0, params={"rate": 0.05}),
        Fault(
            "sensor-drift",
            "reactor1",
            "temp_b",
            when=Condition("reactor1", "temperature", ">", 80.0),
            duration_s=30.0,
        ),
    )
    assert scenario.expectations == (
        Expectation("trip", 40.0, "pump_a", "over_pressure"),
        Expectation("safe", 60.0),
        Expectation("alarm", 30.0, "pump_a", ("high_pressure", "other")),
        Expectation("safe", 50.0, "reactor1"),
        Expectation("signal", 30.0, condition=Condition("pump_a", "pressure", ">", 15.0)),
    )
    assert str(scenario.expectations[0]) == "pump_a trips over_pressure within 40 s"
    assert str(scenario.expectations[1]) == "every module safe within 60 s"
    assert str(scenario.expectations[2]) == "pump_a raises alarm high_pressure or other within 30 s"
    assert scenario.expectations[0].accepts("over_pressure")
    assert not scenario.expectations[0].accepts("high_pressure")
    assert scenario.expectations[2].accepts("other")


def scenario_error(text, channels=CHANNELS) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, "bad.toml", DEMO, channels)
    return info.value


def test_scenario_errors_name_file_line_key_and_value():
    text = GOOD.replace('kind = "clog"', 'kind = "clg"')
    error = scenario_error(text)
    assert str(error).startswith(
        "bad.toml:10: faults[0].kind = \"clg\" is not valid: unknown fault kind 'clg'"
        " (did you mean 'clog'?);"
        " valid kinds: clog, leak,"
    )
    assert isinstance(error, ConfigError) and isinstance(error, FaultSpecError)
    assert (error.file, error.key, error.line, error.value) == (
        "bad.toml",
        "faults[0].kind",
        10,
        "clg",
    )


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            'target = "reactor1"',
            'target = "reactr"',
            "bad.toml:11: faults[0].target = \"reactr\" is not valid: unknown target 'reactr' (did you mean 'reactor1'?)",
        ),
        ('target = "reactor1"', 'target = "pump_a"', None),
        (
            'target = "reactor1"',
            'target = "reactor1.temp_a"',
            'faults[0].target = "reactor1.temp_a" is not valid: clog targets a whole module',
        ),
        (
            'target = "reactor1.temp_b"',
            'target = "reactor1.temp_x"',
            "bad.toml:17: faults[1].target = \"reactor1.temp_x\" is not valid: module 'reactor1' has no sensor channel 'temp_x'",
        ),
        (
            "at_s = 60",
            "at_s = -60",
            "bad.toml:12: faults[0].at_s = -60 is not valid: at_s must be a number of seconds >= 0",
        ),
        ("at_s = 60", 'at_s = "60"', 'faults[0].at_s = "60" is not valid: at_s must be a number'),
        (
            "at_s = 60",
            "",
            "bad.toml:9: faults[0] is not valid: fault clog:reactor1 needs exactly one trigger",
        ),
        (
            "at_s = 60",
            'at_s = 60\nwhen = "bpr1.pressure > 2"',
            "faults[0].at_s = 60 is not valid: fault clog:reactor1 needs exactly one trigger",
        ),
        (
            "rate = 0.05",
            "rate = -1",
            "bad.toml:13: faults[0].params.rate = -1 is not valid: parameter rate of clog = -1 is out of range",
        ),
        (
            "rate = 0.05",
            "rat = 1",
            "faults[0].params.rat = 1 is not valid: unknown parameter 'rat' (did you mean 'rate'?)",
        ),
        (
            "rate = 0.05",
            "rate = true",
            "faults[0].params.rate = true is not valid: bad value True for parameter rate",
        ),
        (
            'when = "reactor1.temperature > 80"',
            'when = "reactor1.temp > 80"',
            'bad.toml:18: faults[1].when = "reactor1.temp > 80" is not valid: bad condition',
        ),
        (
            "duration_s = 30\n",
            "duration_s = 0\n",
            "faults[1].duration_s = 0 is not valid: duration_s must be a number of seconds > 0",
        ),
        (
            'kind = "clog"',
            "",
            "bad.toml:9: faults[0].kind is required: a fault kind, one of clog, leak",
        ),
        ("duration_s = 300", "", "bad.toml:2: scenario.duration_s is required (seconds)"),
        (
            "duration_s = 300",
            "duration_s = 0",
            "scenario.duration_s = 0 is not valid: duration_s must be a number of seconds > 0",
        ),
        ("seed = 7", "seed = -1", "bad.toml:6: scenario.seed = -1 must be an integer"),
        ('name = "clog-reactor"', 'name = ""', 'scenario.name = "" must be a non-empty string'),
        (
            'name = "clog-reactor"',
            'nam = "x"',
            "scenario.nam = \"x\" is not a known key (did you mean 'name'?)",
        ),
        (
            "seed = 7",
            "seed = 7\n[scenaro]\nx = 1",
            "is not a known key (did you mean 'scenario'?): allowed scenario, faults, expect",
        ),
        ('cause = "over_pressure", ', "", "expect[0].trip.cause is required: a cause code"),
        ('"over_pressure"', "[]", "expect[0].trip.cause = [] is required: a cause code"),
        ('"over_pressure"', '["a", 3]', 'expect[0].trip.cause = ["a", 3] is required'),
        (
            'module = "pump_a", cause = "over',
            'module = "pmp_a", cause = "over',
            "bad.toml:22: expect[0].trip.module = \"pmp_a\" is not a module of the line (did you mean 'pump_a'?)",
        ),
        (
            "within_s = 40",
            "within = 40",
            "expect[0].trip.within = 40 is not a known key (did you mean 'within_s'?)",
        ),
        (
            '"pump_a.pressure > 15"',
            '"pump_a.pressure ~ 15"',
            'expect[1].signal.when = "pump_a.pressure ~ 15" is not valid: bad condition',
        ),
        ("safe_within_s = 60", "safe_within = 60", "expect[1].safe_within = 60 is not a known key"),
        (
            "[[expect]]\ntrip",
            "[[expect]]\nnote = 1\n[[expect]]\ntrip",
            "expect[0] names no expectation",
        ),
    ],
)
def test_scenario_error_messages(old, new, expected):
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    if expected is None:  # a different but valid target
        assert load_scenario_text(text, "bad.toml", DEMO, CHANNELS).faults[0].module == "pump_a"
        return
    message = str(scenario_error(text))
    assert expected in message, message


def test_scenario_reports_every_problem_at_once():
    text = GOOD.replace('kind = "clog"', 'kind = "clg"').replace("seed = 7", "seed = 1.5")
    error = scenario_error(text)
    assert isinstance(error, ScenarioErrors) and isinstance(error, FaultSpecError)
    assert len(error.errors) == 2
    lines = str(error).splitlines()
    assert lines[0] == "bad.toml: 2 errors:"
    assert lines[1].startswith("  bad.toml:6: scenario.seed = 1.5")
    assert lines[2].startswith("  bad.toml:10: faults[0].kind")


def test_scenario_file_level_errors(tmp_path):
    with pytest.raises(ScenarioError, match="x.toml:1: is not valid TOML"):
        load_scenario_text("[scenario\n", "x.toml", DEMO)
    with pytest.raises(
        ScenarioError, match="x.toml: scenario is required: allowed a \\[scenario\\] table"
    ):
        load_scenario_text("", "x.toml", DEMO)
    with pytest.raises(
        ScenarioError, match="faults is not an array of tables: allowed \\[\\[faults\\]\\] sections"
    ):
        load_scenario_text('faults = 3\n[scenario]\nname = "x"\nduration_s = 1\n', "x.toml", DEMO)
    missing = tmp_path / "missing.toml"
    with pytest.raises(ScenarioError, match="missing.toml: cannot be read"):
        load_scenario(missing, DEMO)


def test_scenario_without_faults_is_a_baseline_run():
    scenario = load_scenario_text('[scenario]\nname = "idle"\nduration_s = 10\n', "i.toml", DEMO)
    assert (scenario.faults, scenario.expectations, scenario.seed, scenario.line) == (
        (),
        (),
        0,
        None,
    )


def test_help_text_names_every_kind_and_parameter():
    text = fault_help()
    assert "--fault KIND:TARGET@SECONDS[+DURATION][,key=value...]" in text
    for kind, specs in PARAMS.items():
        assert f"\n  {kind} " in text
        for name in specs:
            assert f"      {name}=" in text


def test_the_emulation_accepts_every_example_fault():
    emulation_of_demo = emulation.LineEmulation(ROOT / "examples" / "lines" / "demo.toml")
    line_modules, channels = line_targets(emulation_of_demo.line)
    for path in example_files():
        for fault in load_scenario(path, line_modules, channels).faults:
            emulation_of_demo.apply_fault(fault)
            emulation_of_demo.step()
            assert emulation_of_demo.active_faults() == [fault]
            assert emulation_of_demo.clear_fault(fault), fault
            emulation_of_demo.step()
    assert emulation_of_demo.active_faults() == []


def test_power_loss_deenergises_outputs_rather_than_writing_safe_values(monkeypatch):
    """Without power no firmware writes safe values: each output falls to what the
    hardware does undriven (the board config's ``unpowered``).  The loader makes the two
    equal, so to tell them apart this plant models a valve that falls to "collect" (1)
    unpowered while its firmware's safe value is "waste" (0)."""
    from emulator import plant as plant_module

    real = plant_module.module_config

    def valve_falls_to_collect(line, module_id):
        cfg, digest = real(line, module_id)
        for ch in cfg["channels"]:
            if module_id == "valve1" and ch["name"] == "position":
                assert ch["safe"] == ch["unpowered"] == 0.0
                ch["unpowered"] = 1.0
        return cfg, digest

    monkeypatch.setattr(plant_module, "module_config", valve_falls_to_collect)
    em = emulation.LineEmulation(ROOT / "examples" / "lines" / "demo.toml")
    em.run_for(2.0)
    assert em.plant.valve_position("valve1") == 0.0  # powered: the firmware holds safe 0
    power_loss = make_fault("power-loss", "valve1", line_modules=DEMO, at_s=0)
    em.apply_fault(power_loss)
    em.run_for(2.0)
    assert em.plant.valve_position("valve1") == 1.0  # unpowered: de-energised, not safe
    assert em.clear_fault(power_loss)  # power back: the firmware boots, writes safe again
    em.run_for(2.0)
    assert em.powered("valve1") and em.plant.valve_position("valve1") == 0.0
