"""host/linecheck.py and line/solvents.py: the demo line passes; each mutation of it fails
with the code that names its problem."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from host.linecheck import BOILING_MARGIN_C, check_line
from line.loader import LineErrors, load_line
from line.solvents import (
    SOLVENTS,
    UnknownSolventError,
    boiling_point_c,
    known_solvents,
    solvent_data,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "lines" / "demo.toml"
DEMO_TEXT = DEMO.read_text()

RELIEF = """[[protections]]
id = "relief1"
kind = "relief_valve"
at = "mixer"
set_bar = 22.0
capacity_ml_min = 50.0
"""
CUTOUT = """[[protections]]
id = "cutout1"
kind = "thermal_cutout"
at = "reactor1"
trip_c = 165.0                    # no reset_c: latches open until reset by hand (a limiter,
                                  # not a thermostat: a welded heater switch stays off)
"""


def mutated(tmp_path, *replacements, name="line.toml"):
    """The demo line with each (old, new) replaced; old must occur exactly once."""
    text = DEMO_TEXT
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return load_line(path)


def codes(issues):
    return [i.code for i in issues]


@pytest.fixture(scope="module")
def demo():
    return load_line(DEMO)


def test_demo_line_passes_with_its_operating_point(demo):
    seen = {m.id: m.kind for m in demo.modules.values()}
    report = check_line(
        demo,
        temperature_c=80.0,
        pressure_bar=5.0,
        flows_ml_min={"pump_a": 0.5, "pump_b": 0.5},
        modules_seen=seen,
    )
    assert report.ok and report.errors == [] and report.warnings == []
    # the cut-out margin over the software limit is noted
    assert codes(report.notes) == ["cutout_margin"]
    assert "165 degC, 15 degC above" in report.notes[0].message
    # pumps and their feed tubes see the full pump pressure; from the mixer on the
    # relief valve limits everything to its set pressure
    assert report.max_pressure_bar["pump_a"] == 40.0
    assert report.max_pressure_bar["tube_a"] == 40.0
    for cid in ("mixer", "tube_m", "reactor1", "tube_r", "bpr1", "uv1", "valve1"):
        assert report.max_pressure_bar[cid] == 22.0, cid
    segments = {s.component: s for s in report.segments}
    assert segments["reactor1"].heated and segments["reactor1"].limited_by == "relief1"
    assert segments["tube_a"].limited_by is None
    assert [s.component for s in report.segments][:2] == ["pump_a", "pump_b"]


def test_residence_time_of_the_demo_line_is_reactor_volume_over_flow(demo):
    report = check_line(demo, flows_ml_min={"pump_a": 0.5, "pump_b": 0.5})
    assert report.reactor_volume_ml == pytest.approx(10.0)
    assert report.reactor_volumes_ml == {"reactor1": pytest.approx(10.0)}
    assert report.residence_time_s(1.0) == pytest.approx(10.0 / 1.0 * 60.0)
    assert report.residence_time_s(0.25, reactor="reactor1") == pytest.approx(2400.0)
    assert report.residence_times_s["reactor1"] == pytest.approx(600.0)
    with pytest.raises(ValueError):
        report.residence_time_s(0.0)


def test_tube_volume_from_inner_diameter_and_length(demo):
    report = check_line(demo)
    # 0.5 mm ID x 0.5 m: pi/4 * 0.25 mm^2 * 500 mm = 98.17 uL
    assert report.volume_ml("tube_a") == pytest.approx(math.pi / 4 * 0.5**2 * 0.5, rel=1e-9)
    assert report.volume_ml("uv1") == pytest.approx(0.010)
    assert report.volume_ml("waste") == 0.0


def test_rating_below_pump_max_without_relief_fails(tmp_path):
    line = mutated(tmp_path, (RELIEF, ""))
    report = check_line(line)
    assert not report.ok
    # everything from the mixer on is now open to the pumps' 40 bar: the coil (25 bar),
    # the UV cell (30), the BPR and the valve (35) are all rated below it
    assert {(i.code, i.component) for i in report.errors} == {
        ("rating_below_pump_max", cid) for cid in ("reactor1", "uv1", "bpr1", "valve1")
    }
    issue = next(i for i in report.errors if i.component == "reactor1")
    assert "modules[2].rating_bar = 25" in issue.message and "40 bar" in issue.message
    assert str(tmp_path / "line.toml") in issue.message


def test_relief_downstream_of_a_component_does_not_protect_it(tmp_path):
    # A relief after the coil cannot help it: a clog in the coil leaves its inlet at
    # full pump pressure.
    line = mutated(tmp_path, ('at = "mixer"', 'at = "tube_r"'))
    report = check_line(line)
    assert ("rating_below_pump_max", "reactor1") in [(i.code, i.component) for i in report.errors]
    assert report.max_pressure_bar["tube_r"] == 22.0


def test_relief_set_above_a_rating_fails(tmp_path):
    line = mutated(tmp_path, ("set_bar = 22.0", "set_bar = 30.0"))
    report = check_line(line)
    assert codes(report.errors) == ["rating_below_relief"]
    assert report.errors[0].component == "reactor1"
    assert "protections[0].set_bar = 30" in report.errors[0].message
    assert "allowed: set_bar <= 25" in report.errors[0].message


def test_relief_below_the_pump_interlock_warns(tmp_path):
    line = mutated(tmp_path, ("set_bar = 22.0", "set_bar = 18.0"))
    report = check_line(line)
    assert report.ok
    assert set(codes(report.warnings)) == {"relief_below_interlock"}


def test_second_pump_sees_the_back_pressure_of_the_junction(tmp_path):
    line = mutated(
        tmp_path,
        (
            'board = "board_configs/pump.toml"\nrating_bar = 40.0\n'
            "feed_volume_ml = 250.0\nfeed_concentration_mol_l = 1.0\n"
            "response_s = 0.5\npulsation = 0.02\nstroke_ul = 100.0\n"
            'dead_volume_ml = 0.1\n\n[[modules]]\nid = "reactor1"',
            'board = "board_configs/pump.toml"\nrating_bar = 10.0\n'
            "feed_volume_ml = 250.0\nfeed_concentration_mol_l = 1.0\n"
            "response_s = 0.5\npulsation = 0.02\nstroke_ul = 100.0\n"
            'dead_volume_ml = 0.1\n\n[[modules]]\nid = "reactor1"',
        ),
    )
    report = check_line(line)
    assert line.modules["pump_b"].rating_bar == 10.0
    # pump_b itself only makes 10 bar, but pump_a can push 22 bar (relief) back into it
    assert report.max_pressure_bar["pump_b"] == 22.0
    assert ("rating_below_relief", "pump_b") in [(i.code, i.component) for i in report.errors]


def test_missing_cutout_fails(tmp_path):
    line = mutated(tmp_path, (CUTOUT, ""))
    report = check_line(line)
    assert codes(report.errors) == ["cutout_missing"]
    assert report.errors[0].component == "reactor1"
    assert "above 150" in report.errors[0].message


def test_cutout_at_or_below_the_software_limit_fails(tmp_path):
    line = mutated(tmp_path, ("trip_c = 165.0", "trip_c = 145.0"))
    report = check_line(line)
    assert codes(report.errors) == ["cutout_below_interlock"]
    msg = report.errors[0].message
    assert "protections[1].trip_c = 145" in msg and "150 degC" in msg and "> 150" in msg


def test_acetonitrile_boils_at_100_c_and_1_bar_but_not_at_5_bar(demo):
    # 1 bar absolute (0 bar gauge): acetonitrile boils at 81.6 degC
    report = check_line(demo, temperature_c=100.0, pressure_bar=0.0)
    assert codes(report.errors) == ["solvent_boils"]
    assert "'acetonitrile' boils at 81.9 degC at 0 bar gauge" in report.errors[0].message
    # 1 bar gauge (2 bar absolute): boils at ~105 degC, only 5 degC of margin: refused
    report = check_line(demo, temperature_c=100.0, pressure_bar=1.0)
    assert codes(report.errors) == ["solvent_boils"]
    assert "only 5." in report.errors[0].message
    report = check_line(demo, temperature_c=100.0, pressure_bar=5.0)
    assert report.ok and report.warnings == []


@pytest.mark.parametrize("below_bp", [BOILING_MARGIN_C + 0.2, BOILING_MARGIN_C, 0.1, -5.0])
def test_a_setpoint_within_the_margin_of_boiling_is_an_error(demo, below_bp):
    # setpoint + 10 K >= boiling point at the regulated pressure: refused
    bp = boiling_point_c("acetonitrile", 4.0 + 1.01325)  # 141.9 degC, below the trip
    report = check_line(demo, temperature_c=bp - below_bp, pressure_bar=4.0)
    expected = [] if below_bp > BOILING_MARGIN_C else ["solvent_boils"]
    assert codes(report.errors) == expected
    if expected:
        issue = report.errors[0]
        assert issue.component == "reactor1"
        assert f"below {bp - BOILING_MARGIN_C:.1f} degC" in issue.message
        assert "regulated pressure above" in issue.message


def test_methanol_at_120_c_and_5_bar_is_refused_with_the_pressure_it_needs(demo):
    # the new-user tryout: methanol boils at 120.1 degC at 5 bar gauge
    report = check_line(demo, temperature_c=120.0, pressure_bar=5.0, solvent="methanol")
    assert codes(report.errors) == ["solvent_boils"]
    msg = report.errors[0].message
    assert "'methanol' boils at 120.1 degC" in msg and "only 0.1 degC from boiling" in msg
    assert "below 110.1 degC" in msg and "above 6.9 bar gauge" in msg
    # 6.9 bar gauge is indeed enough for 120 degC plus the margin
    assert boiling_point_c("methanol", 6.95 + 1.01325) >= 120.0 + BOILING_MARGIN_C
    assert check_line(demo, temperature_c=120.0, pressure_bar=7.0, solvent="methanol").ok


def test_a_trip_limit_at_or_above_the_boiling_point_warns(demo):
    # reactor1 trips over_temperature at 150 degC; acetonitrile boils at 141.9 degC at
    # 4 bar: a runaway heater boils the coil before anything trips
    report = check_line(demo, temperature_c=60.0, pressure_bar=4.0)
    assert report.ok and codes(report.warnings) == ["trip_above_boiling"]
    (warning,) = report.warnings
    assert warning.component == "reactor1"
    assert "over_temperature (150 degC" in warning.message and "141.9" in warning.message
    # at 5 bar it boils at 150.02 degC: just above the trip, no warning
    assert check_line(demo, temperature_c=60.0, pressure_bar=5.0).warnings == []


def test_operating_point_findings_are_located_at_the_recipe_keys(demo):
    origin = {
        "temperature_c": "r.toml:23: conditions.temperature_c = 120",
        "pressure_bar": "r.toml:24: conditions.pressure_bar = 5",
    }
    report = check_line(
        demo, temperature_c=120.0, pressure_bar=5.0, solvent="methanol", origin=origin
    )
    (error,) = report.errors
    (warning,) = report.warnings
    assert error.message.startswith("r.toml:23: conditions.temperature_c = 120: recipe.solvent")
    assert warning.message.startswith("r.toml:24: conditions.pressure_bar = 5: reactor1's")
    assert str(DEMO) not in error.message.split(":")[0]


def test_setpoint_above_the_software_limit_fails(demo):
    report = check_line(demo, temperature_c=155.0, pressure_bar=15.0)
    assert "temperature_above_interlock" in codes(report.errors)


def test_unknown_solvent_is_named_with_the_allowed_list(demo, tmp_path):
    report = check_line(demo, temperature_c=80.0, pressure_bar=5.0, solvent="xylene")
    assert codes(report.errors) == ["unknown_solvent"]
    assert "'xylene'" in report.errors[0].message and "ethyl_acetate" in report.errors[0].message
    # a line naming an unknown solvent never loads
    with pytest.raises(LineErrors) as exc:
        mutated(tmp_path, ('solvent = "acetonitrile"', 'solvent = "xylene"'))
    assert exc.value.key == "line.solvent"
    # a solvent table without a boiling point cannot be checked
    line = mutated(
        tmp_path,
        ('solvent = "acetonitrile"', "solvent = { viscosity_mPas = 0.6, density_g_ml = 0.87 }"),
        name="custom.toml",
    )
    report = check_line(line, temperature_c=80.0, pressure_bar=5.0)
    assert codes(report.errors) == ["unknown_solvent"]


def test_recipe_solvent_overrides_the_line(demo):
    # methanol boils at ~120 degC at 6 bar absolute: 125 degC is too hot
    report = check_line(demo, temperature_c=125.0, pressure_bar=5.0, solvent="MeOH")
    assert "solvent_boils" in codes(report.errors)


def test_heating_above_the_boiling_point_needs_a_bpr_after_the_reactor(tmp_path):
    # bpr1 moved before the reactor: the coil is no longer held under pressure
    line = mutated(
        tmp_path,
        ('from = "tube_m"\nto = "reactor1"', 'from = "tube_m"\nto = "bpr1"'),
        ('from = "reactor1"\nto = "tube_r"', 'from = "bpr1"\nto = "reactor1"'),
        ('from = "tube_r"\nto = "bpr1"', 'from = "reactor1"\nto = "tube_r"'),
        ('from = "bpr1"\nto = "tube_x"', 'from = "tube_r"\nto = "tube_x"'),
    )
    report = check_line(line)
    assert codes(report.warnings) == ["no_bpr_downstream"]
    report = check_line(line, temperature_c=100.0, pressure_bar=5.0)
    assert "bpr_missing" in codes(report.errors)


def test_disconnected_module_is_rejected_with_its_key(tmp_path):
    with pytest.raises(LineErrors) as exc:
        mutated(tmp_path, ('[[connections]]\nfrom = "tube_x"\nto = "uv1"\n', ""))
    keys = {e.key for e in exc.value.errors}
    assert "modules[4]" in keys  # uv1: no connection into it
    assert "has no connection into it" in str(exc.value)


def test_modules_seen_missing_and_of_the_wrong_kind(demo):
    seen = {m.id: m.kind for m in demo.modules.values()}
    seen["reactor1"] = "pump"
    del seen["uv1"]
    seen["stray"] = "valve"
    report = check_line(demo, modules_seen=seen)
    errors = {(i.code, i.component) for i in report.errors}
    assert errors == {("module_kind_mismatch", "reactor1"), ("module_missing", "uv1")}
    assert "announced itself as a pump" in next(
        i.message for i in report.errors if i.code == "module_kind_mismatch"
    )
    assert [(i.code, i.component) for i in report.warnings] == [("module_not_in_line", "stray")]


def test_flow_above_the_pump_maximum_and_unknown_pump(demo):
    report = check_line(demo, flows_ml_min={"pump_a": 12.0, "pump_c": 1.0})
    assert {(i.code, i.component) for i in report.errors} == {
        ("flow_above_pump_max", "pump_a"),
        ("unknown_pump", "pump_c"),
    }


def test_valve_safe_position_should_lead_to_waste(tmp_path):
    line = mutated(tmp_path, ('outlets = ["waste", "collect"]', 'outlets = ["collect", "waste"]'))
    report = check_line(line)
    assert report.ok
    assert codes(report.warnings) == ["valve_safe_not_waste"]


# --- solvents ------------------------------------------------------------------------------

NORMAL_BOILING_C = {  # CRC Handbook
    "water": 100.0,
    "acetonitrile": 81.6,
    "methanol": 64.7,
    "ethanol": 78.3,
    "thf": 66.0,
    "toluene": 110.6,
    "dmf": 153.0,
    "dmso": 189.0,
    "ethyl_acetate": 77.1,
    "dichloromethane": 39.6,
    "acetone": 56.1,
    "2-propanol": 82.3,
}


@pytest.mark.parametrize("name", sorted(NORMAL_BOILING_C))
def test_normal_boiling_points(name):
    # DMF's NIST set ends at 363 K; the extension errs low (safe side) by ~3 K
    tol = 3.5 if name == "dmf" else 1.0
    assert boiling_point_c(name, 1.01325) == pytest.approx(NORMAL_BOILING_C[name], abs=tol)


def test_every_required_solvent_is_known_and_boiling_rises_with_pressure():
    assert set(known_solvents()) == set(NORMAL_BOILING_C) == set(SOLVENTS)
    for name in known_solvents():
        bps = [boiling_point_c(name, p) for p in (0.5, 1.0, 2.0, 6.0, 11.0, 21.0, 40.0)]
        assert bps == sorted(bps) and len(set(bps)) == len(bps), name


def test_boiling_points_at_pressure_match_reference_data():
    # ChemSep (DIPPR eq. 101) boiling points at 6.01 and 21 bar absolute
    assert boiling_point_c("acetonitrile", 6.01) == pytest.approx(150.6, abs=3.0)
    assert boiling_point_c("water", 6.01) == pytest.approx(159.0, abs=1.0)
    assert boiling_point_c("water", 21.0) == pytest.approx(215.0, abs=1.0)
    assert boiling_point_c("toluene", 21.0) == pytest.approx(264.9, abs=3.0)
    assert boiling_point_c("dmso", 6.01) == pytest.approx(274.8, abs=3.0)
    # above the critical pressure nothing boils
    assert boiling_point_c("acetone", 60.0) == math.inf


def test_solvent_names_aliases_and_unknown():
    assert solvent_data("MeCN").name == "acetonitrile"
    assert solvent_data("Ethyl acetate").name == "ethyl_acetate"
    assert solvent_data("IPA").name == "2-propanol"
    assert solvent_data("DCM").name == "dichloromethane"
    with pytest.raises(UnknownSolventError) as exc:
        solvent_data("xylene")
    assert "'xylene'" in str(exc.value) and "acetonitrile" in str(exc.value)
