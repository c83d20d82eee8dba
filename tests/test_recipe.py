"""Recipes (host/recipe/): loading, derived flows, checks against a line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.recipe import (
    Reagent,
    RecipeError,
    check_recipe,
    derive_flows,
    load_recipe,
    load_recipe_text,
    plan_recipe,
    recipe_warnings,
)
from line.loader import load_line
from tests.recipe_harness import DEMO_LINE, DEMO_RECIPE, ROOT

LINE = load_line(DEMO_LINE)

# A small valid recipe for the demo line; tests swap pieces of it.
BASE = """
[recipe]
name = "small"
line = "demo"

[conditions]
residence_time_min = 2.0
temperature_c = 60.0
pressure_bar = 5.0

[reagents.amine]
pump = "pump_a"
concentration_mol_l = 1.0
equivalents = 1.0

[reagents.acyl]
pump = "pump_b"
concentration_mol_l = 0.5
equivalents = 1.5

[[phases]]
name = "run"

[[phases.steps]]
service = "start"
valve = "waste"
set = { "pump_a.flow" = "flow.amine", "pump_b.flow" = "flow.acyl" }
wait = { seconds = 10 }

[[phases.steps]]
set = { "reactor1.coil_temp" = "temperature", "bpr1.pressure_ctl" = "pressure" }
wait = { signal = "reactor1.temperature", target = "temperature", band = 2, for_s = 5 }
timeout_s = 300

[[phases.steps]]
valve = "collect"
wait = { collected_ml = 20 }
timeout_s = 600

[[phases.steps]]
service = "stop"

[[shutdown]]
name = "default"
on = ["*"]

[[shutdown.steps]]
service = "stop"
"""


def load(text: str = BASE):
    return load_recipe_text(text, "t.toml")


def errors_of(text: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load(text)
    return [str(i) for i in info.value.issues]


def check(text: str) -> list[str]:
    return check_recipe(load(text), LINE)


# --- the demo recipe -------------------------------------------------------------------------


def test_the_demo_recipe_fits_the_demo_line_with_the_flows_of_its_header_comment():
    recipe = load_recipe(DEMO_RECIPE)
    assert recipe.line == LINE.id and recipe.line_file == DEMO_LINE.resolve()
    assert check_recipe(recipe, LINE) == []
    assert recipe_warnings(recipe, LINE) == []
    plan = plan_recipe(recipe, LINE)
    assert plan.reactor == "reactor1" and plan.reactor_volume_ml == 10.0
    assert plan.total_flow_ml_min == pytest.approx(10.0)
    assert plan.residence_time_s == 60.0
    assert plan.pump_flows == pytest.approx({"pump_a": 10 / 2.2, "pump_b": 12 / 2.2})
    assert plan.mix_concentration_mol_l["amine"] == pytest.approx(1 / 2.2)
    # 100 mL collected, nominally; every pump draws less than its 250 mL feed even when
    # every open-ended wait runs to its timeout
    assert plan.collected_ml == pytest.approx(100.0)
    assert all(v < 250.0 for v in plan.consumption_ml.values())
    assert plan.consumption_ml["pump_b"] > plan.nominal_consumption_ml["pump_b"]
    names = [p.name for p in plan.phases]
    assert names[:3] == ["prime", "pressurise", "heat"] and names[-1] == "stop"
    assert recipe.shutdown_for("over_pressure").name == "pressure"
    assert recipe.shutdown_for("over_temperature").name == "temperature"
    assert recipe.shutdown_for("heater_not_heating").name == "temperature"
    assert recipe.shutdown_for("module_lost").name == "default"
    assert recipe.shutdown_for("operator_abort").name == "default"


def test_every_example_recipe_loads_and_fits_its_line():
    paths = sorted((ROOT / "examples" / "recipes").glob("*.toml"))
    assert len(paths) >= 2
    for path in paths:
        recipe = load_recipe(path)
        assert recipe.line_file is not None, path
        assert check_recipe(recipe, load_line(recipe.line_file)) == [], path


# --- derived flows ---------------------------------------------------------------------------------


def test_flows_split_so_the_molar_ratio_matches_the_equivalents():
    plan = plan_recipe(load(), LINE)
    # Q = 10 mL / 2 min = 5 mL/min; weights e/c: amine 1/1 = 1, acyl 1.5/0.5 = 3
    assert plan.total_flow_ml_min == pytest.approx(5.0)
    assert plan.flows == pytest.approx({"amine": 1.25, "acyl": 3.75})
    assert plan.pump_flows == pytest.approx({"pump_a": 1.25, "pump_b": 3.75})
    # molar flows 1.25 mmol/min and 1.875 mmol/min: 1 : 1.5
    assert 3.75 * 0.5 / (1.25 * 1.0) == pytest.approx(1.5)
    assert plan.mix_concentration_mol_l == pytest.approx({"amine": 0.25, "acyl": 0.375})


@settings(max_examples=200, deadline=None)
@given(
    total=st.floats(0.01, 100.0),
    reagents=st.lists(
        st.tuples(st.floats(0.01, 20.0), st.floats(1.0, 10.0)), min_size=1, max_size=5
    ),
)
def test_derived_flows_add_up_and_keep_the_stoichiometry(total, reagents):
    table = {f"r{i}": Reagent(f"r{i}", f"p{i}", c, e) for i, (c, e) in enumerate(reagents)}
    flows, mix = derive_flows(table, total)
    assert sum(flows.values()) == pytest.approx(total)
    ref = table["r0"]
    for name, r in table.items():
        molar_ratio = flows[name] * r.concentration_mol_l / (flows["r0"] * ref.concentration_mol_l)
        assert molar_ratio == pytest.approx(r.equivalents / ref.equivalents)
        assert mix[name] == pytest.approx(r.concentration_mol_l * flows[name] / total)


def test_setpoint_references_resolve_with_factor_and_offset():
    text = BASE.replace(
        "wait = { seconds = 10 }",
        'wait = { signal = "reactor1.temperature", above = "0.5 * temperature - 2" }',
    )
    recipe = load(text)
    plan = plan_recipe(recipe, LINE)
    ref = recipe.phases[0].steps[0].wait.above
    assert plan.resolve(ref, recipe) == pytest.approx(28.0)


def test_phase_estimates_and_consumption_follow_the_plan():
    plan = plan_recipe(load(), LINE)
    (phase,) = plan.phases
    assert phase.nominal_s is None  # a signal wait: unknown in advance
    assert phase.worst_s == pytest.approx(10 + 300 + 600)
    # worst case: 910 s at 1.25 / 3.75 mL/min
    assert plan.consumption_ml == pytest.approx(
        {"pump_a": 1.25 * 910 / 60, "pump_b": 3.75 * 910 / 60}
    )
    # nominal: the 10 s wait and 20 mL collected at 5 mL/min (240 s)
    assert plan.nominal_consumption_ml["pump_a"] == pytest.approx(1.25 * 250 / 60)
    assert plan.collected_ml == pytest.approx(20.0)


# --- loader errors -----------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_with_file_key_line_value_and_what_is_allowed():
    text = (
        BASE.replace("residence_time_min = 2.0", "residence_time_min = -1")
        .replace('service = "stop"\n\n[[shutdown]]', 'service = "halt"\n\n[[shutdown]]')
        .replace("equivalents = 1.5", "equivalnts = 1.5")
    )
    with pytest.raises(RecipeError) as info:
        load(text)
    issues = info.value.issues
    assert len(issues) == 4, [str(i) for i in issues]  # the misspelling also loses a key
    message = str(info.value)
    assert message.startswith("t.toml: 4 errors:")
    assert (
        "t.toml:7: conditions.residence_time_min = -1 is out of range: allowed > 0.0 and <= 1440.0"
        in message
    )
    assert 'phases[0].steps[3].service = "halt" is not a valid choice' in message
    assert (
        'allowed one of "start", "stop", "hold", "unhold", "abort", "reset", "complete"' in message
    )
    assert "reagents.acyl.equivalnts = 1.5 is not a known key (did you mean 'equivalents'?)" in (
        message
    )
    assert "reagents.acyl.equivalents is required" in message


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('name = "small"\n', "", "recipe.name is required"),
        ('line = "demo"', "line = 3", "recipe.line = 3 has the wrong type: expected a string"),
        (
            "pressure_bar = 5.0",
            'pressure_bar = "high"',
            'conditions.pressure_bar = "high" has the wrong type: expected a number',
        ),
        ("temperature_c = 60.0", "temperature_c = 900.0", "temperature_c = 900.0 is out of range"),
        ('pump = "pump_b"', 'pump = "pump_a"', "also feeds reagent 'amine'"),
        (
            "equivalents = 1.0",
            "equivalents = 1.2",
            "have no limiting reagent (smallest equivalents 1.2)",
        ),
        ("[reagents.acyl]", "[reagents.Acyl-2]", "is not a valid reagent name"),
        ('"flow.acyl"', '"flow.acid"', '"flow.acid" is neither a number nor a known quantity'),
        ('"pump_a.flow"', '"pump_a"', '"pump_a" is not a signal name'),
        ("band = 2, ", "", "band is required with target"),
        ('on = ["*"]', 'on = ["over_pressure"]', "has no catch-all sequence"),
        ('on = ["*"]', "on = []", "is not a list of cause codes"),
        ("wait = { seconds = 10 }", "wait = { }", "waits for nothing"),
        (
            "wait = { seconds = 10 }",
            "wait = { seconds = 10, minutes = 1 }",
            "minutes = 1 is not a known key",
        ),
        ("wait = { seconds = 10 }", 'wait = { steady = "uv1.uv" }', "needs a tolerance"),
        ("wait = { seconds = 10 }", "wait = { seconds = 10, band = 1 }", "band = 1 needs signal"),
        (
            "timeout_s = 300",
            'timeout_s = 300\non_timeout = "retry"',
            'on_timeout = "retry" is not a valid choice',
        ),
        (
            "timeout_s = 300",
            'timeout_s = 300\nabort_sequence = "nope"',
            'abort_sequence = "nope" names no shutdown sequence',
        ),
        (
            '[[phases]]\nname = "run"\n',
            '[[phases]]\nname = "run"\nmystery = 1\n',
            "phases[0].mystery = 1 is not a known key",
        ),
        (
            '[[shutdown.steps]]\nservice = "stop"',
            '[[shutdown.steps]]\nservice = "stop"\non_timeout = "wait"',
            'allowed one of "abort", "continue", "hold"',
        ),
        ('[[shutdown.steps]]\nservice = "stop"', '[[shutdown.steps]]\nnote = "x"', "does nothing"),
    ],
)
def test_each_kind_of_loader_error_names_key_value_and_allowed(old, new, expected):
    assert old in BASE, old
    errors = errors_of(BASE.replace(old, new, 1))
    assert any(expected in e for e in errors), errors
    assert all(e.startswith("t.toml") for e in errors)


def test_a_toml_syntax_error_and_an_unreadable_file_are_recipe_errors(tmp_path):
    with pytest.raises(RecipeError, match="t.toml:1: is not valid TOML"):
        load("[recipe\nname=")
    with pytest.raises(RecipeError, match="missing.toml: cannot be read"):
        load_recipe(tmp_path / "missing.toml")


def test_a_line_file_that_does_not_exist_is_named(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(BASE.replace('line = "demo"', 'line = "demo"\nline_file = "nowhere.toml"'))
    with pytest.raises(RecipeError, match='recipe.line_file = "nowhere.toml" names no file'):
        load_recipe(path)


# --- checks against the line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('line = "demo"', 'line = "other"', 'recipe.line = "other" does not match the line\'s id'),
        (
            'pump = "pump_b"',
            'pump = "reactor1"',
            'reagents.acyl.pump = "reactor1" is not a pump of the line',
        ),
        ('"reactor1.coil_temp"', '"reactor9.coil_temp"', "names no module of the line"),
        (
            '"reactor1.coil_temp"',
            '"reactor1.heater"',
            "is not a setpoint of reactor1 (loop coil_temp drives it",
        ),
        (
            '"bpr1.pressure_ctl" = "pressure"',
            '"bpr1.pressure_ctl" = "pressure", "uv1.uv" = 1',
            'uv1.uv" is not a setpoint of uv1',
        ),
        (
            "temperature_c = 60.0",
            "temperature_c = 250.0",
            "is outside reactor1.coil_temp's range: allowed 20..140 degC",
        ),
        ("residence_time_min = 2.0", "residence_time_min = 0.5", "needs 15 mL/min from pump_b"),
        (
            "pressure_bar = 5.0",
            "pressure_bar = 20.0",
            "reaches pump_a's pressure interlock (20 bar)",
        ),
        (
            'valve = "collect"',
            'valve = "drain"',
            "'drain' is no outlet of valve1: allowed collect, collection, waste",
        ),
        (
            'signal = "reactor1.temperature"',
            'signal = "reactor1.temp"',
            "is not a channel of reactor1",
        ),
        (
            'service = "start"',
            'service = "start"\nmodules = ["pump_a", "pump_c"]',
            'modules[1] = "pump_c" is not a module of the line',
        ),
        (
            'line = "demo"',
            'line = "demo"\nsolvent = "water"',
            "differs from the line's solvent 'acetonitrile'",
        ),
        ("timeout_s = 600", "timeout_s = 60", "is shorter than the wait's nominal length (240 s)"),
        (
            "residence_time_min = 2.0",
            'residence_time_min = 2.0\nreactor = "bpr1"',
            "is not a reactor of the line",
        ),
    ],
)
def test_check_recipe_names_what_does_not_fit_the_line(old, new, expected):
    assert old in BASE, old
    errors = check(BASE.replace(old, new, 1))
    assert any(expected in e for e in errors), errors


def test_the_feed_volume_check_counts_the_whole_run_at_its_worst():
    # collecting 200 mL at 5 mL/min takes 40 min: pump_b (3.75 mL/min) would draw
    # more than its 250 mL if the waits ran to their timeouts (10 + 300 + 4200 s)
    text = BASE.replace(
        "collected_ml = 20 }\ntimeout_s = 600", "collected_ml = 200 }\ntimeout_s = 4200"
    )
    errors = check(text)
    feed = [e for e in errors if "feed holds 250 mL" in e]
    assert len(feed) == 1, errors
    assert "reagents.acyl = 281.9 mL may be drawn from pump_b's feed" in feed[0]
    assert "150.6 mL nominally" in feed[0]  # nominal: 10 s + 40 min at 3.75 mL/min
    # and 200 mL of product, up to 350 mL, do not fit the 250 mL collection vessel
    assert any("may reach the collection vessel" in e and "holds 250 mL" in e for e in errors)


def test_a_wait_that_cannot_be_met_is_an_error():
    text = BASE.replace('valve = "collect"\n', 'valve = "waste"\n')
    errors = check(text)
    assert any("can never be met: nothing flows into collection" in e for e in errors), errors


def test_a_concentration_the_line_does_not_hold_is_a_warning():
    text = BASE  # pump_b's feed holds 1.0 mol/L on the demo line, the recipe says 0.5
    assert check(text) == []
    (warning,) = recipe_warnings(load(text), LINE)
    assert "reagents.acyl.concentration_mol_l = 0.5 differs" in warning
    assert "feed_concentration_mol_l = 1 on pump_b" in warning
