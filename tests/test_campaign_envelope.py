"""The safety envelope of a campaign (host/campaign/envelope.py): a condition too close
to the trip limit, to boiling, or whose adiabatic rise would reach boiling or the onset
of decomposition is refused with its reason.  Each refusal is shown to come from its own
check: with that check switched off the same condition passes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from host.campaign import envelope
from host.campaign.envelope import Thermo, check_condition, line_with_feed_left
from host.recipe import load_recipe
from line.kinetics import from_line
from line.loader import load_line, load_line_text

ROOT = Path(__file__).resolve().parent.parent
DEMO_LINE = ROOT / "examples" / "lines" / "demo.toml"
DEMO_RECIPE = ROOT / "examples" / "recipes" / "demo.toml"
# The demo chemistry's thermal data (docs/emulator.md): an acylation, -120 kJ/mol, in
# acetonitrile; decomposition sets in at 220 degC, kept 50 K away.
THERMO = Thermo(dh_kj_mol=-120.0, cp_j_g_k=2.0, density_g_ml=0.8, onset_c=220.0)
MILD = Thermo(dh_kj_mol=-1.0, cp_j_g_k=2.0, density_g_ml=0.8, onset_c=220.0)


@pytest.fixture(scope="module")
def line():
    return load_line(DEMO_LINE)


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(DEMO_RECIPE)


def at(recipe, temperature_c=None, pressure_bar=None, residence_time_min=None, equivalents=None):
    """The recipe with a campaign's condition substituted (the timeouts stretched with
    the residence time, as a campaign's recipe would have them)."""
    c = recipe.conditions
    conditions = dataclasses.replace(
        c,
        temperature_c=c.temperature_c if temperature_c is None else temperature_c,
        pressure_bar=c.pressure_bar if pressure_bar is None else pressure_bar,
        residence_time_min=residence_time_min or c.residence_time_min,
    )
    reagents = dict(recipe.reagents)
    if equivalents is not None:
        reagents["acyl"] = dataclasses.replace(reagents["acyl"], equivalents=equivalents)
    # Waits counted in residence times or collected volume last longer at a lower flow.
    slower = max(1.0, conditions.residence_time_min / c.residence_time_min)

    def stretched(step):
        w = step.wait
        if w is None or (w.residence_times is None and w.collected_ml is None):
            return step
        return dataclasses.replace(step, timeout_s=step.timeout_s * slower)

    phases = [
        dataclasses.replace(ph, steps=tuple(stretched(s) for s in ph.steps)) for ph in recipe.phases
    ]
    return dataclasses.replace(recipe, conditions=conditions, reagents=reagents, phases=phases)


def without(monkeypatch, check):
    monkeypatch.setattr(envelope, "CHECKS", tuple(c for c in envelope.CHECKS if c is not check))


def test_the_demo_recipe_is_inside_the_envelope(line, recipe):
    assert check_condition(line, recipe, THERMO) == []


def test_the_best_yield_of_the_demo_chemistry_is_feasible(line, recipe):
    region = {
        "temperature_c": (40.0, 140.0),
        "residence_time_min": (1.0, 20.0),
        "equivalents": (1.0, 3.0),
    }
    y, cond = from_line(line).best_achievable(region)
    chosen = at(
        recipe, cond["temperature_c"], None, cond["residence_time_min"], cond["equivalents"]
    )
    assert check_condition(line, chosen, THERMO) == []
    # The region does cross the envelope: its hot corner is refused.
    hot = at(recipe, 140.0, None, 1.0, 3.0)
    assert "adiabatic" in [r.split(":")[0] for r in check_condition(line, hot, THERMO)]


def test_within_10_k_of_the_trip_limit_is_refused(line, recipe, tmp_path, monkeypatch):
    # The demo reactor's setpoint range already stops at its trip (150) less 10 K.  A board
    # tripping at 130 degC whose setpoints go up to 125 (trip less its 5 K hysteresis, all
    # the board config allows) leaves 120..125 degC to the envelope alone.
    board = (ROOT / "board_configs" / "reactor.toml").read_text()
    assert "limit = 150.0" in board
    board = board.replace("limit = 150.0", "limit = 130.0", 1)
    board = board.replace("setpoint_range = [20.0, 140.0]", "setpoint_range = [20.0, 125.0]")
    (tmp_path / "reactor.toml").write_text(board)
    text = DEMO_LINE.read_text().replace(
        'board = "board_configs/reactor.toml"', f'board = "{tmp_path / "reactor.toml"}"'
    )
    low_trip = load_line_text(text, str(tmp_path / "line.toml"), ROOT)
    assert check_condition(low_trip, at(recipe, 120.0), MILD) == []
    reasons = check_condition(low_trip, at(recipe, 125.0), MILD)
    assert reasons == [
        "trip_margin: temperature 125 degC is within 10 K of reactor1's over-temperature "
        f"trip over_temperature (130 degC, {tmp_path / 'reactor.toml'}): allowed <= 120 degC"
    ]
    without(monkeypatch, envelope.trip_margin)
    assert check_condition(low_trip, at(recipe, 125.0), MILD) == []


def test_crossing_the_boiling_point_is_refused(line, recipe, monkeypatch):
    # At 1 bar gauge acetonitrile boils at 105 degC: 100 degC is within the 10 K margin.
    reasons = check_condition(line, at(recipe, 100.0, 1.0), MILD)
    assert len(reasons) == 1 and reasons[0].startswith("boiling_margin: ")
    assert "boils at 105.4 degC at 1 bar gauge" in reasons[0]
    assert check_condition(line, at(recipe, 95.0, 1.0), MILD) == []
    without(monkeypatch, envelope.boiling_margin)
    assert check_condition(line, at(recipe, 100.0, 1.0), MILD) == []


def test_an_adiabatic_rise_to_boiling_or_to_the_onset_is_refused(line, recipe, monkeypatch):
    # 0.455 mol/L x 120 kJ/mol / (0.8 g/mL x 2 J/(g K)) = 34 K; 5 bar: boils at 150 degC.
    assert THERMO.adiabatic_rise_k(1 / 2.2) == pytest.approx(34.09, abs=0.01)
    assert check_condition(line, at(recipe, 115.0), THERMO) == []
    reasons = check_condition(line, at(recipe, 120.0), THERMO)
    assert len(reasons) == 1 and reasons[0].startswith(
        "adiabatic: 120 degC + adiabatic rise 34.1 K"
    )
    assert "reaches the boiling point 150.0 degC at 5 bar: allowed < 115.9 degC" in reasons[0]
    # At 15 bar the solvent boils far above; a low onset (130 degC less 50 K) still refuses.
    early = dataclasses.replace(THERMO, onset_c=130.0)
    reasons = check_condition(line, at(recipe, 60.0, 15.0), early)
    assert len(reasons) == 1 and "onset of decomposition 130 degC less 50 K" in reasons[0]
    assert check_condition(line, at(recipe, 45.0, 15.0), early) == []
    without(monkeypatch, envelope.adiabatic)
    assert check_condition(line, at(recipe, 120.0), THERMO) == []
    assert check_condition(line, at(recipe, 60.0, 15.0), early) == []


def test_no_thermal_data_refuses_rather_than_skipping(line, recipe):
    reasons = check_condition(line, recipe, None)
    assert reasons == [
        "adiabatic: no thermal data ([safety]): the adiabatic rise cannot be checked"
    ]


def test_the_feed_left_and_the_pressure_ratings_are_the_plans(line, recipe, monkeypatch):
    emptied = line_with_feed_left(line, {"pump_a": 245.0})
    assert emptied.modules["pump_a"].feed_volume_ml == 5.0
    assert line.modules["pump_a"].feed_volume_ml == 250.0  # the line itself is untouched
    reasons = check_condition(emptied, recipe, THERMO)
    assert len(reasons) == 1 and "pump_a's feed" in reasons[0] and "holds 5 mL" in reasons[0]
    reasons = check_condition(line, at(recipe, pressure_bar=24.0), THERMO)
    assert any("pump_a's pressure interlock (20 bar)" in r for r in reasons)
    assert any("[pressure_above_relief]" in r for r in reasons)
    without(monkeypatch, envelope.recipe_and_line)
    assert check_condition(emptied, recipe, THERMO) == []
