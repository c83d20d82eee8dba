"""`skid check`: board configs, lines and recipes validated without running anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "lines" / "demo.toml"
SKID = Path(sys.executable).parent / "skid"


def run_check(capsys, *args):
    code = main(["check", *map(str, args), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    return code, summary, out


def write_mutated(tmp_path, old, new, name="line.toml"):
    text = DEMO.read_text()
    assert text.count(old) == 1
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def test_demo_line_and_shipped_board_configs_pass(capsys):
    code, summary, out = run_check(capsys, DEMO, ROOT / "board_configs")
    assert code == 0 and summary["ok"] is True
    kinds = {Path(f["path"]).name: f["kind"] for f in summary["files"]}
    assert kinds["demo.toml"] == "line"
    assert kinds["reactor.toml"] == kinds["pump.toml"] == "board"
    assert len(summary["files"]) == 7  # the line and six board configs (pump_flow.toml too)
    assert all(f["ok"] and f["errors"] == [] for f in summary["files"])
    assert f"{DEMO} (line): ok" in out


def test_relief_above_a_rating_fails_with_code_and_exit_2(capsys, tmp_path):
    path = write_mutated(tmp_path, "set_bar = 22.0", "set_bar = 30.0")
    code, summary, out = run_check(capsys, path)
    assert code == 2 and summary["ok"] is False
    (entry,) = summary["files"]
    assert entry["kind"] == "line" and entry["ok"] is False
    assert [e["code"] for e in entry["errors"]] == ["rating_below_relief"]
    assert entry["errors"][0]["component"] == "reactor1"
    assert f"{path} (line): 1 error" in out
    assert "protections[0].set_bar = 30" in out


def test_line_file_errors_name_key_value_and_allowed(capsys, tmp_path):
    path = write_mutated(tmp_path, 'solvent = "acetonitrile"', 'solvent = "xylene"')
    code, summary, _ = run_check(capsys, path)
    assert code == 2
    (error,) = summary["files"][0]["errors"]
    assert error["key"] == "line.solvent" and error["value"] == "xylene"
    assert "acetonitrile" in error["allowed"] and error["line"] is not None


def test_broken_board_config_reports_every_error(capsys, tmp_path):
    text = (ROOT / "board_configs" / "pump.toml").read_text()
    assert text.count("limit = 20.0") == 1
    bad = tmp_path / "pump.toml"
    bad.write_text(
        text.replace("limit = 20.0", 'limit = "high"').replace("tick_ms = 50", "tick_ms = 0")
    )
    code, summary, out = run_check(capsys, bad, DEMO)
    assert code == 2
    files = {Path(f["path"]).name: f for f in summary["files"]}
    assert files["demo.toml"]["ok"] is True
    errors = files["pump.toml"]["errors"]
    assert {e["key"] for e in errors} >= {"module.tick_ms", "interlocks[0].limit"}
    assert all(e["code"] == "board_config" and e["message"] for e in errors)
    assert f"pump.toml (board): {len(errors)} errors" in out


def test_directory_with_an_unknown_toml_and_a_missing_path(capsys, tmp_path):
    (tmp_path / "notes.toml").write_text('title = "not a skid file"\n')
    (tmp_path / "broken.toml").write_text("[line\n")
    code, summary, _ = run_check(capsys, tmp_path, tmp_path / "nope.toml")
    assert code == 2
    got = {Path(f["path"]).name: [e["code"] for e in f["errors"]] for f in summary["files"]}
    assert got == {
        "broken.toml": ["invalid_toml"],
        "notes.toml": ["unknown_file_kind"],
        "nope.toml": ["not_found"],
    }


def test_recipe_is_checked_against_the_line_given_with_it(capsys, tmp_path):
    # A setpoint outside the module's board-config range fails the recipe, not the line;
    # the recipe comes first on the command line, the line is still loaded first.
    text = (ROOT / "examples" / "recipes" / "demo.toml").read_text()
    text = text.replace('line_file = "../lines/demo.toml"\n', "")
    assert text.count("temperature_c = 80.0") == 1
    recipe = tmp_path / "r.toml"
    recipe.write_text(text.replace("temperature_c = 80.0", "temperature_c = 300.0"))
    code, summary, _ = run_check(capsys, recipe, DEMO)
    assert code == 2
    assert [f["kind"] for f in summary["files"]] == ["recipe", "line"]
    assert not summary["files"][0]["ok"] and summary["files"][1]["ok"]
    assert any("300" in e["message"] for e in summary["files"][0]["errors"])


def test_recipe_at_a_boiling_operating_point_fails(capsys, tmp_path):
    # the shipped recipe passes; at 140 degC and 0.5 bar acetonitrile would boil
    text = (ROOT / "examples" / "recipes" / "demo.toml").read_text()
    for old, new in (
        ("temperature_c = 80.0", "temperature_c = 140.0"),
        ("pressure_bar = 5.0", "pressure_bar = 0.5"),
        ('line_file = "../lines/demo.toml"', f'line_file = "{DEMO}"'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    hot = tmp_path / "hot.toml"
    hot.write_text(text)
    code, summary, _ = run_check(capsys, ROOT / "examples" / "recipes" / "demo.toml", hot)
    assert code == 2
    ok, bad = summary["files"]
    assert ok["ok"] is True and ok["kind"] == "recipe"
    assert "solvent_boils" in [e["code"] for e in bad["errors"]]


def test_installed_entry_point_exit_codes(tmp_path):
    ok = subprocess.run([SKID, "check", DEMO], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "demo.toml (line): ok" in ok.stdout
    bad = write_mutated(
        tmp_path, 'at = "reactor1"\ntrip_c = 165.0', 'at = "reactor1"\ntrip_c = 140.0'
    )
    res = subprocess.run([SKID, "check", bad, "--json"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    codes = [e["code"] for e in summary["files"][0]["errors"]]
    assert "cutout_below_interlock" in codes


def _methanol_tryout(tmp_path, temperature="120.0", extra=()):
    """The new-user tryout: the demo line and recipe in methanol, 120 degC at 5 bar
    (methanol boils at 120.1 degC at 5 bar gauge)."""
    line = write_mutated(tmp_path, 'solvent = "acetonitrile"', 'solvent = "methanol"')
    line.write_text(line.read_text().replace('"board_configs/', f'"{ROOT}/board_configs/'))
    text = (ROOT / "examples" / "recipes" / "demo.toml").read_text()
    for old, new in (
        ('solvent = "acetonitrile"', 'solvent = "methanol"'),
        ("temperature_c = 80.0", f"temperature_c = {temperature}"),
        ('line_file = "../lines/demo.toml"', f'line_file = "{line}"'),
        *extra,
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    recipe = tmp_path / "meoh.toml"
    recipe.write_text(text)
    lineno = {
        key: 1 + text.splitlines().index(next(ln for ln in text.splitlines() if ln.startswith(key)))
        for key in ("temperature_c", "pressure_bar")
    }
    return line, recipe, lineno


def test_boiling_margin_is_an_error_located_at_the_recipe_temperature(capsys, tmp_path):
    line, recipe, lineno = _methanol_tryout(tmp_path)
    code, summary, out = run_check(capsys, recipe)
    assert code == 2
    (entry,) = summary["files"]
    (error,) = entry["errors"]
    assert error["code"] == "solvent_boils"
    where = f"{recipe}:{lineno['temperature_c']}: conditions.temperature_c = 120: "
    assert error["message"].startswith(where)
    assert "only 0.1 degC from boiling" in error["message"]
    # the trip limit (150 degC) is above the boiling point too: a warning at the pressure
    (warning,) = entry["warnings"]
    assert warning["code"] == "trip_above_boiling"
    assert warning["message"].startswith(f"{recipe}:{lineno['pressure_bar']}: ")
    assert "None" not in out


def test_boiling_margin_refuses_the_run_and_warnings_name_their_location(tmp_path):
    from host.session import RunRefused, prepare

    line, recipe, lineno = _methanol_tryout(tmp_path)
    with pytest.raises(RunRefused) as exc:
        prepare(line, recipe)
    (problem,) = exc.value.problems
    assert problem.startswith(f"{recipe}:{lineno['temperature_c']}: conditions.temperature_c")
    # 105 degC keeps the margin: the run may start, with the trip warning located
    line, recipe, lineno = _methanol_tryout(tmp_path, temperature="105.0")
    prep = prepare(line, recipe)
    (warning,) = prep.warnings
    assert warning.startswith(f"{recipe}:{lineno['pressure_bar']}: conditions.pressure_bar = 5")
    assert not warning.startswith("None")


def test_a_step_setting_the_coil_hotter_than_the_conditions_is_located_there(capsys, tmp_path):
    line, recipe, _ = _methanol_tryout(
        tmp_path,
        temperature="100.0",
        extra=(
            (
                'set = { "reactor1.coil_temp" = "temperature" }',
                'set = { "reactor1.coil_temp" = "temperature + 15" }',
            ),
        ),
    )
    code, summary, _ = run_check(capsys, recipe)
    assert code == 2
    (error,) = summary["files"][0]["errors"]
    assert (
        'phases[2].steps[0].set."reactor1.coil_temp" = "temperature + 15" = 115' in error["message"]
    )


def test_every_shipped_recipe_keeps_the_boiling_margin(capsys):
    code, summary, _ = run_check(capsys, ROOT / "examples" / "recipes")
    assert code == 0, summary
    for entry in summary["files"]:
        assert "solvent_boils" not in [e["code"] for e in entry["errors"]]
