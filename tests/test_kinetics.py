"""The reactor chemistry (line/kinetics.py, line/kinetics_search.py, emulator/reaction.py):
the rate laws, the steady yield, the line file's ``kinetics`` table and its located
errors, the demo line's parameters, whose best yield lies inside the campaign region, and
the emulated line reaching that yield at steady state, as its analyzer reports it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emulator.emulation import LineEmulation
from emulator.reaction import DEGRADANT, PRODUCT, CoilReaction
from line import kinetics_search
from line.kinetics import Kinetics, from_line
from line.loader import LineErrors, load_line, load_line_text

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "lines" / "demo.toml"
REGION = {
    "temperature_c": (40.0, 140.0),
    "residence_time_min": (1.0, 20.0),
    "equivalents": (1.0, 3.0),
}


@pytest.fixture(scope="module")
def kin() -> Kinetics:
    k = from_line(load_line(DEMO))
    assert k is not None
    return k


@pytest.fixture(scope="module")
def best(kin):
    return kin.best_achievable(REGION)


def _line_errors(old, new):
    text = DEMO.read_text()
    assert old in text
    with pytest.raises(LineErrors) as info:
        load_line_text(text.replace(old, new), "lines/demo.toml")
    return info.value.errors


# --- the line file ------------------------------------------------------------------------


def test_demo_line_carries_the_kinetics_of_its_reactor(kin):
    assert (kin.reactor, kin.a, kin.b, kin.interferent) == (
        "reactor1",
        "pump_a",
        "pump_b",
        "pump_b",
    )
    assert kin.feed_a_mol_l == kin.feed_b_mol_l == 1.0
    assert kin.rates(kin.t_ref_c) == (3.0, 0.068, 0.24, 0.044)


def test_a_line_without_kinetics_has_none():
    text = DEMO.read_text()
    start = text.index("[modules.kinetics]")
    end = text.index("[[modules]]", start)
    line = load_line_text(text[:start] + text[end:], "demo.toml")
    assert from_line(line) is None and "kinetics" not in line.modules["reactor1"].params


@pytest.mark.parametrize(
    "old, new, key, text",
    [
        (
            "ea1_kj_mol = 70.0",
            "ea1_kj_mol = -70.0",
            "modules[2].kinetics.ea1_kj_mol",
            "lines/demo.toml:{line}: modules[2].kinetics.ea1_kj_mol = -70.0 is out of range: "
            "allowed 0.0..400.0",
        ),
        (
            'a = "pump_a"',
            'a = "pump_q"',
            "modules[2].kinetics.a",
            "names no pump (did you mean 'pump_b'?): allowed pump_a, pump_b",
        ),
        (
            'b = "pump_b"',
            'b = "pump_a"',
            "modules[2].kinetics.b",
            "is the same pump as a",
        ),
        (
            'interferent = "pump_b"',
            'interferent = "uv1"',
            "modules[2].kinetics.interferent",
            "is not a species: allowed pump_a, pump_b, degradant",
        ),
        (
            "k2_ref_per_min = 0.068",
            "k2_ref_per_mn = 0.068",
            "modules[2].kinetics.k2_ref_per_mn",
            "did you mean 'k2_ref_per_min'",
        ),
        (
            "noise_au = 0.001",
            "noise_au = 20.0",
            "modules[2].kinetics.noise_au",
            "allowed 0.0..10.0",
        ),
    ],
)
def test_bad_kinetics_name_file_line_key_value_and_range(old, new, key, text):
    errors = _line_errors(old, new)
    err = next(e for e in errors if e.key == key)
    lines = DEMO.read_text().splitlines()
    line_no = next(i for i, s in enumerate(lines, 1) if s.startswith(old))
    assert err.line == line_no
    assert text.format(line=line_no) in str(err)


def test_a_required_rate_constant_is_reported_missing():
    errors = _line_errors("k1_ref_l_mol_min = 3.0 ", "# k1 left out ")
    assert any(
        e.key == "modules[2].kinetics.k1_ref_l_mol_min" and "is missing" in str(e) for e in errors
    )


# --- the rate laws and the steady yield ------------------------------------------------------


def test_inlet_concentrations_follow_the_recipe_flow_split(kin):
    # 1 M feeds mixed 1 : 1.2 (host/recipe/plan.py): A at 1/2.2 mol/L, B 1.2 times that.
    a0, b0 = kin.inlet(1.2)
    assert a0 == pytest.approx(1 / 2.2) and b0 == pytest.approx(1.2 / 2.2)
    a0, b0 = kin.inlet(2.0, conc_a_mol_l=0.5)  # half-strength A: flows 1 : 1
    assert a0 == pytest.approx(0.25) and b0 == pytest.approx(0.5)


def test_second_order_alone_matches_its_closed_form():
    # Only R1, A and B equimolar: [A] = a0 / (1 + k1 a0 t), so yield = k1 a0 t / (1 + k1 a0 t).
    only_r1 = Kinetics("r", "a", "b", 80.0, 2.0, 50.0, 0.0, 0.0)
    for t_c, tau in ((80.0, 3.0), (120.0, 0.5), (40.0, 17.0)):
        k1 = only_r1.rates(t_c).k1
        a0 = only_r1.inlet(1.0)[0]
        exact = k1 * a0 * tau / (1 + k1 * a0 * tau)
        assert only_r1.steady_yield(t_c, tau, 1.0) == pytest.approx(exact, rel=1e-7)


def test_arrhenius_doubles_where_the_activation_energy_says(kin):
    # k1 ratio between 100 and 110 degC: exp(Ea/R (1/373.15 - 1/383.15)).
    ratio = kin.rates(110.0).k1 / kin.rates(100.0).k1
    assert ratio == pytest.approx(math.exp(70.0 / 8.314462618e-3 * (1 / 373.15 - 1 / 383.15)))


def test_mass_balance_and_the_grid_scan_agree_with_the_exact_integration(kin):
    a0, b0 = kin.inlet(1.6)
    # Every P made by R1 is P or D: A + P + D and B + P + D stay at a0, b0 but for what
    # R4 (A -> S) and R3 (a second B per D) take away.
    r1_r2 = Kinetics("r", "a", "b", kin.t_ref_c, 3.0, 70.0, 0.034, 140.0)
    out = r1_r2.outlet(95.0, 7.0, 1.6)
    assert out["A"] + out["P"] + out["D"] == pytest.approx(a0, rel=1e-7)
    assert out["B"] + out["P"] + out["D"] == pytest.approx(b0, rel=1e-7)
    out = kin.outlet(95.0, 7.0, 1.6)
    assert out["A"] + out["P"] + out["D"] < a0 - 1e-3
    assert out["B"] + out["P"] + out["D"] < b0 - 1e-3
    axes = {
        "temperature_c": np.array([60.0, 95.0, 130.0]),
        "residence_time_min": np.array([1.0, 7.0, 20.0]),
        "equivalents": np.array([1.0, 1.6, 3.0]),
        "concentration_mol_l": np.array([1.0]),
    }
    rows = kinetics_search.scan(kin, axes)
    assert len(rows) == 27
    for y, t_c, tau, eq, conc in rows:
        assert y == pytest.approx(kin.steady_yield(t_c, tau, eq, conc), abs=2e-5)


# --- the optimum of the demo parameters ----------------------------------------------------


def test_the_best_yield_lies_inside_the_campaign_region(best):
    y, cond = best
    assert 0.75 < y < 0.85
    for name, (lo, hi) in REGION.items():
        margin = 0.1 * (hi - lo)
        assert lo + margin < cond[name] < hi - margin, (name, cond[name])


def test_the_optimum_is_a_local_maximum_and_beats_a_fine_grid(kin, best):
    y, cond = best
    steps = {"temperature_c": 2.0, "residence_time_min": 0.5, "equivalents": 0.05}
    for name, step in steps.items():
        for sign in (-1, 1):
            moved = dict(cond, **{name: cond[name] + sign * step})
            assert kin.yield_at(moved) < y
    grid = kinetics_search.scan(kin, kinetics_search._axes(kin, REGION, {}))
    assert grid[:, 0].max() <= y + 1e-5  # nothing on the 41 x 96 x 33 grid is better
    assert grid[:, 0].max() > y - 5e-3


def test_a_feasibility_test_moves_the_best_to_the_feasible_side(kin, best):
    y_free, _ = best
    calls = []

    def cool_enough(c):
        calls.append(c)
        return c["temperature_c"] <= 70.0

    y, cond = kin.best_achievable(REGION, feasible=cool_enough)
    assert cond["temperature_c"] <= 70.0 and cond["temperature_c"] == pytest.approx(70.0, abs=0.5)
    assert y < y_free and y == pytest.approx(kin.yield_at(cond))
    # The same as the best with the temperature held at the envelope's edge.
    at_70, _ = kin.best_achievable(
        {"residence_time_min": (1.0, 20.0), "equivalents": (1.0, 3.0)},
        fixed={"temperature_c": 70.0},
    )
    assert y == pytest.approx(at_70, abs=1e-4)
    assert len(calls) < 1000  # the caller's test may plan a whole recipe: a bounded number
    assert kin.best_achievable(REGION, feasible=lambda c: False) == (0.0, None)


def test_variables_outside_the_region_are_fixed(kin):
    y, cond = kin.best_achievable(
        {"temperature_c": (40.0, 140.0)}, fixed={"residence_time_min": 1.0, "equivalents": 1.2}
    )
    assert cond["residence_time_min"] == 1.0 and cond["equivalents"] == 1.2
    assert y == pytest.approx(kin.steady_yield(cond["temperature_c"], 1.0, 1.2), rel=1e-9)
    with pytest.raises(ValueError, match="'pressure_bar' is not a variable"):
        kin.best_achievable({"pressure_bar": (1.0, 2.0)})


# --- in the emulated line -------------------------------------------------------------------


def _uv(em):
    return next(ch for ch, _ in em.nodes["uv1"].sensors if ch.name == "uv")


def test_the_emulated_line_at_steady_state_gives_the_model_yield(kin):
    # 100 degC, 2 min, 1.5 eq: the pumps as the recipe sets them (1 M feeds, 1 : 1.5).
    temperature, tau, eq = 100.0, 2.0, 1.5
    em = LineEmulation(DEMO, seed=1, tick_ms=100)
    em.lease_all()
    for module in em.nodes:
        em.state(module, "start")
    total = em.line.modules["reactor1"].volume_ml / tau
    em.set_setpoint("pump_a", "flow", total / (1 + eq))
    em.set_setpoint("pump_b", "flow", total * eq / (1 + eq))
    em.set_setpoint("bpr1", "pressure_ctl", 5.0)
    em.set_setpoint("reactor1", "coil_temp", temperature)
    em.set_setpoint("uv1", "lamp", 1.0)
    em.run_until(lambda: em.plant.temperature_c("reactor1") > temperature - 0.5, 400.0, 1.0)
    em.run_for(4 * tau * 60.0, lease_every_s=1.0)  # four residence times at temperature
    uv, readings, p_out = _uv(em), [], []
    for _ in range(300):  # 30 s of readings
        em.step()
        if em.now_ms % 1000 == 0:
            em.lease_all()
        readings.append(uv.value)
        p_out.append(em.plant.concentration("uv1")["P"])
    expected = kin.steady_yield(temperature, tau, eq)
    a0, b0 = kin.inlet(eq)
    # The coil's 59 stirred tanks against the plug flow of the model: dispersion costs
    # a little conversion.
    assert sum(p_out) / len(p_out) / a0 == pytest.approx(expected, abs=0.01)
    # What the host sees: the analyzer's reading, noise, interferent and calibration table
    # included, worked back to a yield.
    mean = sum(readings) / len(readings)
    derived = kin.yield_from_absorbance(mean, em.line.modules["uv1"].path_mm, eq)
    assert derived == pytest.approx(expected, abs=0.015)
    spread = max(readings) - min(readings)
    assert 0.0005 < spread < 0.02  # noisy, but not so that it hides the yield
    # B, the interferent, adds to P's absorbance (0.2 cm x 0.3 x [B] ~ 0.015 AU).
    assert mean > 0.2 * 10.0 * sum(p_out) / len(p_out) + 0.01


def test_a_line_without_kinetics_sees_its_tracers():
    line = load_line(DEMO)
    line.modules["reactor1"].params.pop("kinetics")
    line.modules["uv1"].params["absorptivity"] = {"pump_a": 8.0}
    em = LineEmulation(line, seed=0)
    assert em.plant.kinetics == {} and em.plant.transport.species == ["pump_a", "pump_b"]
    em.lease_all()
    for module in ("pump_a", "pump_b", "bpr1", "uv1", "valve1"):
        em.state(module, "start")
    em.set_setpoint("pump_a", "flow", 5.0)
    em.set_setpoint("pump_b", "flow", 5.0)
    em.set_setpoint("uv1", "lamp", 1.0)
    em.run_for(150.0, lease_every_s=1.0)  # 10 mL coil at 10 mL/min: a minute, then steady
    assert em.plant.absorbance("uv1") == pytest.approx(0.2 * 8.0 * 0.5, rel=0.01)
    assert _uv(em).value == pytest.approx(0.8, abs=0.01)


def test_the_coil_reaction_follows_the_rate_laws_and_survives_a_runaway(kin):
    # One tank, no flow: a batch.  120 s at 100 degC in 0.1 s steps against the exact
    # integration (a plug of liquid is a batch in time).
    species = ["pump_a", "pump_b", PRODUCT, DEGRADANT]
    a0, b0 = kin.inlet(1.5)
    tanks = [[a0], [b0], [0.0], [0.0]]
    reaction = CoilReaction(kin, species, tanks)
    for _ in range(1200):
        reaction.step(0.1, 100.0)
    exact = kin.outlet(100.0, 2.0, 1.5)
    for s, name in zip(species, "ABPD", strict=True):
        assert tanks[species.index(s)][0] == pytest.approx(exact[name], abs=1e-5)
    # A coil running away to 400 degC: rate x step ~ 1e6, the explicit rule would blow up.
    hot = [[a0], [b0], [0.1], [0.0]]
    runaway = CoilReaction(kin, species, hot)
    for _ in range(50):
        runaway.step(0.1, 400.0)
    values = [t[0] for t in hot]
    assert all(math.isfinite(v) and v >= 0.0 for v in values)
    assert values[2] < 1e-6  # the product is gone: degraded
    assert hot[3][0] <= a0 + 0.1 and hot[0][0] + hot[2][0] + hot[3][0] <= a0 + 0.1 + 1e-12
