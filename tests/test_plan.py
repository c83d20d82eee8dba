"""``skid plan LINE RECIPE`` (host/plan.py, host/commands/plan.py) against values worked
out by hand from the example line and recipes, the plan printed at the start of a run
and stored in its record, and the docs that describe it."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from host.cli import main
from host.dryrun import run_in_process
from host.plan import PLAN_NOTE, make_plan, plan_lines, recorded_plan
from host.recipe import load_recipe
from host.record import RunRecord, verify
from line.loader import load_line
from line.model import SOLVENTS as LINE_SOLVENTS
from line.solvents import SOLVENTS

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
RECIPES = ROOT / "examples" / "recipes"


def plan_of(recipe: str | Path, line: Path = LINE) -> dict:
    path = recipe if isinstance(recipe, Path) else RECIPES / f"{recipe}.toml"
    return make_plan(load_line(line), load_recipe(path))


# --- the demo recipe, by hand --------------------------------------------------------------


def test_demo_flows_and_concentrations_by_hand():
    plan = plan_of("demo")
    assert plan["ok"] and plan["errors"] == []
    c = plan["conditions"]
    # reactor1 holds 10 mL; residence time 1 min: Q = V / tau = 10 mL / 1 min = 10 mL/min.
    assert c["reactor"] == "reactor1"
    assert c["total_flow_ml_min"] == pytest.approx(10.0)
    assert c["residence_time_s"] == pytest.approx(60.0)
    # Flows split by equivalents / concentration: amine 1 eq / 1 M = 1, acyl 1.2 / 1 M =
    # 1.2, sum 2.2: amine 10 x 1 / 2.2 = 4.5455 mL/min, acyl 10 x 1.2 / 2.2 = 5.4545.
    # In the coil: 1 M x 4.5455 / 10 = 0.45455 M amine, 1 M x 5.4545 / 10 = 0.54545 M acyl.
    amine, acyl = plan["reagents"]
    assert (amine["name"], amine["pump"], amine["limiting"]) == ("amine", "pump_a", True)
    assert (acyl["name"], acyl["pump"], acyl["limiting"]) == ("acyl", "pump_b", False)
    assert amine["flow_ml_min"] == pytest.approx(4.5455, abs=1e-4)
    assert acyl["flow_ml_min"] == pytest.approx(5.4545, abs=1e-4)
    assert amine["coil_concentration_mol_l"] == pytest.approx(0.45455, abs=1e-5)
    assert acyl["coil_concentration_mol_l"] == pytest.approx(0.54545, abs=1e-5)
    assert plan["pump_flows_ml_min"] == pytest.approx(
        {"pump_a": 4.5455, "pump_b": 5.4545}, abs=1e-4
    )


def test_demo_residence_time_by_hand():
    res = plan_of("demo")["residence"]
    # Mean: V / Q = 10 mL / 10 mL/min = 1 min = 60 s.
    assert res["mean_s"] == pytest.approx(60.0)
    # Tanks in series (Taylor-Aris): d = 1 mm, area pi/4 x 1e-6 = 7.854e-7 m2;
    # u = 10 mL/min = 1.6667e-7 m3/s / 7.854e-7 = 0.21221 m/s; L = 10e-6 / 7.854e-7 =
    # 12.732 m; D_ax = 1e-9 + u^2 d^2 / (192 x 1e-9) = 0.045032e-6 / 1.92e-7 = 0.23454 m2/s;
    # Bo = u L / D_ax = 0.21221 x 12.732 / 0.23454 = 11.52; N = 1 + Bo/2 = 6.76 -> 7.
    assert res["tanks"] == 7
    # Spread of N tanks of mean 60 s: sd = 60 / sqrt(7) = 22.678 s.
    assert res["sd_s"] == pytest.approx(22.678, abs=1e-3)
    assert res["p01_s"] < res["mean_s"] < res["p99_s"]
    out = plan_of("demo")["to_outlet"]
    # Reactor inlet to valve1 at 10 mL/min: reactor1 60 s, tube_r (0.5 mm x 0.3 m =
    # pi/4 x 0.25e-6 x 0.3 m3 = 0.058905 mL) 0.35343 s, bpr1 (dead volume 0.05 mL) 0.3 s,
    # tube_x 0.35343 s, uv1 (10 uL cell) 0.06 s, valve1 (0.005 mL) 0.03 s: 61.0969 s.
    assert (out["from"], out["to"]) == ("reactor1", "valve1")
    assert out["mean_s"] == pytest.approx(61.0969, abs=1e-3)


def test_demo_phases_and_run_time_by_hand():
    plan = plan_of("demo")
    phases = {p["name"]: (p["least_s"], p["worst_s"]) for p in plan["phases"]}
    # At least: fixed waits, a signal's for_s, a steady window, the volume or residence
    # times a wait needs at 10 mL/min.  At most: every open-ended wait to its timeout.
    assert phases == {
        "prime": (15.0, 15.0),  # wait 15 s
        "pressurise": (5.0, 90.0),  # bpr1.pressure in band for 5 s; timeout 90
        "heat": (0.0, 300.0),  # above temperature - 2, for_s 0; timeout 300
        "equilibrate": (30.0, 300.0),  # in band for 30 s; timeout 300
        "switch-to-reagents": (0.0, 0.0),  # no wait
        "steady-state": (60.0, 300.0),  # max(1 x 10 mL / 10 mL/min = 60 s, window 30 s)
        "collect": (600.0, 1200.0),  # 100 mL / 10 mL/min = 10 min; timeout 1200
        "flush": (60.0, 120.0),  # one residence time; timeout 120
        "cool": (0.0, 300.0),  # below 60 degC; timeout 300
        "depressurise": (2.0, 60.0),  # below 0.5 bar for 2 s; timeout 60
        "stop": (0.0, 0.0),
    }
    # 15 + 5 + 0 + 30 + 0 + 60 + 600 + 60 + 0 + 2 + 0 = 772 s;
    # 15 + 90 + 300 + 300 + 0 + 300 + 1200 + 120 + 300 + 60 + 0 = 2685 s.
    assert plan["run_time"] == {"least_s": 772.0, "worst_s": 2685.0}
    assert plan["phases"][2]["waits"] == ["reactor1.temperature ≥ 78 °C"]


def test_demo_feeds_and_product_by_hand():
    plan = plan_of("demo")
    feeds = {f["pump"]: f for f in plan["feeds"]}
    # The pumps run from prime until the cool phase stops them.  At least: 15 + 5 + 0 +
    # 30 + 0 + 60 + 600 + 60 + 0 = 770 s: pump_a 4.5455 x 770 / 60 = 58.333 mL, pump_b
    # 5.4545 x 770 / 60 = 70.000 mL.  At most: 15 + 90 + 300 + 300 + 300 + 1200 + 120 +
    # 300 = 2625 s: pump_a 4.5455 x 2625 / 60 = 198.86 mL, pump_b 238.64 mL.
    # Loaded: feed_volume_ml = 250 each: 51.14 and 11.36 mL to spare.
    a, b = feeds["pump_a"], feeds["pump_b"]
    assert (a["reagent"], a["loaded_ml"], b["reagent"], b["loaded_ml"]) == (
        "amine",
        250.0,
        "acyl",
        250.0,
    )
    assert a["least_ml"] == pytest.approx(58.333, abs=1e-3)
    assert b["least_ml"] == pytest.approx(70.000, abs=1e-3)
    assert a["worst_ml"] == pytest.approx(198.86, abs=0.01)
    assert b["worst_ml"] == pytest.approx(238.64, abs=0.01)
    assert a["spare_ml"] == pytest.approx(51.14, abs=0.01)
    assert b["spare_ml"] == pytest.approx(11.36, abs=0.01)
    product = plan["product"]
    # Collected until 100 mL; at most 1200 s x 10 mL/min = 200 mL (the vessel holds 250).
    # The limiting amine at 0.45455 M: 100 mL x 0.45455 mol/L = 45.455 mmol.
    assert (product["valve"], product["vessel"], product["vessel_ml"]) == (
        "valve1",
        "collect",
        250.0,
    )
    assert product["nominal_ml"] == pytest.approx(100.0)
    assert product["worst_ml"] == pytest.approx(200.0)
    assert product["limiting_reagent"] == "amine"
    assert product["limiting_mmol"] == pytest.approx(45.455, abs=1e-3)


def test_demo_boiling_margin_by_hand():
    b = plan_of("demo")["boiling"]
    # Acetonitrile (recipe.solvent), 5 bar gauge = 6.01325 bar absolute.  NIST Antoine
    # A 4.27873, B 1355.374, C -37.853 holds up to 362.3 K, where P = 10^(4.27873 -
    # 1355.374 / 324.447) = 1.26253 bar; above it, ln P on a line in 1/T to the critical
    # point (545.5 K, 48.3 bar): slope ln(48.3 / 1.26253) / (1/545.5 - 1/362.3) =
    # 3.6443 / -0.00092693 = -3931.5; 1/T = 1/362.3 + ln(6.01325 / 1.26253) / -3931.5 =
    # 0.0027601 - 0.00039703 = 0.0023631: T = 423.17 K = 150.02 degC.  Antoine
    # extrapolated: 1355.374 / (4.27873 - log10 6.01325) + 37.853 = 425.14 K = 151.99
    # degC; the lower one counts: 150.02 degC, 70.02 degC above the 80 degC setpoint.
    assert (b["solvent"], b["source"]) == ("acetonitrile", "recipe.solvent")
    assert b["pressure_abs_bar"] == pytest.approx(6.01325)
    assert b["boiling_point_c"] == pytest.approx(150.02, abs=0.01)
    assert b["temperature_c"] == 80.0
    assert b["temperature_from"].endswith("conditions.temperature_c = 80")
    assert b["margin_c"] == pytest.approx(70.02, abs=0.01)
    assert (b["required_margin_c"], b["ok"]) == (10.0, True)


# --- the other examples ------------------------------------------------------------------------


def test_quick_by_hand():
    plan = plan_of("quick")
    # 10 mL / 1 min = 10 mL/min, 1 : 1 between the 1 M feeds: 5 mL/min each, 0.5 M each.
    assert [r["flow_ml_min"] for r in plan["reagents"]] == pytest.approx([5.0, 5.0])
    assert [r["coil_concentration_mol_l"] for r in plan["reagents"]] == pytest.approx([0.5, 0.5])
    # At least: prime 10 s, pressurise 0 (above, no for_s), heat 10 (for_s), steady
    # max(60, window 20) = 60, collect 60, shut-down 0: 140 s.  At most: 10 + 90 + 300 +
    # 300 + 60 + (300 + 60) = 1120 s.
    assert plan["run_time"] == {"least_s": 140.0, "worst_s": 1120.0}
    # Collect 60 s at 10 mL/min = 10 mL: 10 mL x 0.5 M = 5 mmol of amine.
    assert plan["product"]["nominal_ml"] == pytest.approx(10.0)
    assert plan["product"]["limiting_mmol"] == pytest.approx(5.0)
    # Pumps run 10 + 90 + 300 + 300 + 60 + 300 = 1060 s at most: 5 x 1060 / 60 = 88.33 mL.
    assert [f["worst_ml"] for f in plan["feeds"]] == pytest.approx([88.333, 88.333], abs=1e-3)
    # 3 bar gauge = 4.01325 bar absolute: 1/T = 0.0027601 + ln(4.01325 / 1.26253) /
    # -3931.5 = 0.0027601 - 0.00029417 = 0.0024659: T = 405.52 K = 132.37 degC, 92.37
    # degC above 40 degC.
    assert plan["boiling"]["boiling_point_c"] == pytest.approx(132.37, abs=0.01)
    assert plan["boiling"]["margin_c"] == pytest.approx(92.37, abs=0.01)
    # skid check's warning (the over-temperature trip at 150 degC is above that) is kept.
    assert plan["ok"] and any("trip_c" in w or "boiling point" in w for w in plan["warnings"])


def test_demo_screen_by_hand():
    plan = plan_of("demo-screen")
    # 10 mL / 2 min = 5 mL/min; weights 1/1 and 2/1, sum 3: 5/3 = 1.6667 and 10/3 =
    # 3.3333 mL/min; in the coil 1.6667/5 = 0.33333 M and 0.66667 M.
    assert plan["conditions"]["total_flow_ml_min"] == pytest.approx(5.0)
    assert plan["conditions"]["residence_time_s"] == pytest.approx(120.0)
    flows = [r["flow_ml_min"] for r in plan["reagents"]]
    assert flows == pytest.approx([1.6667, 3.3333], abs=1e-4)
    conc = [r["coil_concentration_mol_l"] for r in plan["reagents"]]
    assert conc == pytest.approx([0.33333, 0.66667], abs=1e-5)
    # Collect 180 s at 5 mL/min = 15 mL; 15 mL x 0.33333 M = 5 mmol of amine.
    assert plan["product"]["nominal_ml"] == pytest.approx(15.0)
    assert plan["product"]["limiting_mmol"] == pytest.approx(5.0)
    # At least: 15 + 0 + 30 + max(1.5 x 120 = 180, 30) + 180 + 0 = 405 s.
    assert plan["run_time"]["least_s"] == pytest.approx(405.0)
    # 4 bar gauge: 1/T = 0.0027601 + ln(5.01325 / 1.26253) / -3931.5 = 0.0024094:
    # T = 415.04 K = 141.89 degC.
    assert plan["boiling"]["boiling_point_c"] == pytest.approx(141.89, abs=0.01)


def _copy(tmp_path: Path, src: Path, name: str, edits: list[tuple[str, str]]) -> Path:
    text = src.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    out = tmp_path / name
    out.write_text(text)
    return out


def test_a_custom_solvent_uses_its_own_boiling_point_like_skid_check(tmp_path):
    """A solvent table with boiling_c and vaporization_kj_mol: Clausius-Clapeyron, the
    model the boiling check uses for it."""
    line = _copy(
        tmp_path,
        LINE,
        "line.toml",
        [
            (
                'solvent = "acetonitrile"',
                "solvent = { viscosity_mPas = 0.9, density_g_ml = 1.0, boiling_c = 100.0, "
                "vaporization_kj_mol = 40.7 }",
            ),
            ('board = "board_configs/', f'board = "{ROOT}/board_configs/'),
        ],
    )
    recipe = _copy(
        tmp_path,
        RECIPES / "demo.toml",
        "r.toml",
        [('solvent = "acetonitrile"', ""), ("../lines/demo.toml", "line.toml")],
    )
    b = plan_of(recipe, line)["boiling"]
    # 1/T = 1/373.15 - 8.314 x ln(6.01325 / 1.01325) / 40700 = 0.00267989 - 0.00036377 =
    # 0.00231612: T = 431.76 K = 158.61 degC.
    assert (b["solvent"], b["source"]) == ("custom", "line.solvent")
    assert b["boiling_point_c"] == pytest.approx(158.61, abs=0.01)


def test_a_recipe_too_close_to_boiling_is_planned_but_refused(tmp_path, capsys):
    recipe = _copy(
        tmp_path,
        RECIPES / "demo.toml",
        "hot.toml",
        [("temperature_c = 80.0", "temperature_c = 140.0"), ("../lines/demo.toml", str(LINE))],
    )
    plan = plan_of(recipe)
    # Boiling at 5 bar: 150.02 degC (above).  skid check refuses a margin of 10 degC or
    # less: at 140 degC the margin is 150.02 - 140 = 10.02 (ok), at 141 it is 9.02.
    assert plan["boiling"]["margin_c"] == pytest.approx(10.02, abs=0.01)
    assert plan["boiling"]["ok"] and plan["ok"]
    recipe = _copy(
        tmp_path, recipe, "hotter.toml", [("temperature_c = 140.0", "temperature_c = 141.0")]
    )
    plan = plan_of(recipe)
    assert plan["boiling"]["margin_c"] == pytest.approx(9.02, abs=0.01)
    assert not plan["boiling"]["ok"] and not plan["ok"]
    assert any("would boil" in e or "from boiling" in e for e in plan["errors"])
    assert main(["plan", str(LINE), str(recipe)]) == 2
    out = capsys.readouterr().out
    assert "the run would be refused" in out and "Errors (the run would be refused):" in out
    assert "9.0 degC above the hottest reactor setpoint (141 degC): too close" in out


# --- the command -------------------------------------------------------------------------------


def test_skid_plan_prints_the_plan_and_json_gives_the_same(capsys):
    recipe = RECIPES / "demo.toml"
    assert main(["plan", str(LINE), str(recipe)]) == 0
    text = capsys.readouterr().out
    expected = make_plan(load_line(LINE), load_recipe(recipe))
    assert text.splitlines() == plan_lines(expected)
    for shown in (
        "amine    pump_a  1           1            4.545        0.4545  (limiting)",
        "run time: at least 772 s (12.9 min), at most 2685 s (44.8 min)",
        "pump_a  amine    58.3         198.9       250        51.1",
        "Product: 100.0 mL to collect (valve1 -> collect, 250 mL)",
        "45.45 mmol of amine",
        "boils at 150.0 degC at 5 bar gauge (6.01 bar absolute), 70.0 degC above",
    ):
        assert shown in text, shown
    assert main(["plan", str(LINE), str(recipe), "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # only the object: `| jq` works
    assert json.loads(out) == json.loads(json.dumps(expected))


def test_skid_plan_on_a_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["plan", str(LINE), str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err
    assert main(["plan", str(LINE), str(tmp_path / "nope.toml"), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and "nope.toml" in out["errors"][0]


# --- printed at the start of a run, stored in its record ---------------------------------------


def test_a_run_prints_its_plan_first_and_records_it_in_the_chain(tmp_path):
    log: list[str] = []
    recipe = RECIPES / "quick.toml"
    summary = run_in_process(LINE, recipe, runs_dir=tmp_path, log=log.append)
    assert summary.outcome.startswith("completed")
    start = next(i for i, t in enumerate(log) if t.startswith("skid: run "))
    assert log[0] == "Plan: recipe quick on line demo"
    assert "  run time: at least 140 s (2.3 min), at most 1120 s (18.7 min)" in log[:start]
    expected = json.loads(json.dumps(make_plan(load_line(LINE), load_recipe(recipe))))
    with RunRecord.open(summary.record, readonly=True) as rec:
        assert recorded_plan(rec) == expected
        first = rec.audit()[:2]
        note = rec.notes()[0]
    assert [e["kind"] for e in first] == ["run", "note"]  # right after the run's description
    assert note["kind"] == PLAN_NOTE and note["text"].startswith("plan: 10 mL/min through reactor1")
    assert verify(summary.record).ok
    # The plan is in the hash chain: changing it breaks the record at that entry.
    conn = sqlite3.connect(summary.record)
    seq, body = conn.execute(
        "SELECT seq, body FROM audit WHERE kind = 'note' ORDER BY seq LIMIT 1"
    ).fetchone()
    conn.execute(
        "UPDATE audit SET body = ? WHERE seq = ?",
        (body.replace('"least_s":140.0', '"least_s":1.0'), seq),
    )
    conn.commit()
    conn.close()
    result = verify(summary.record)
    assert not result.ok and result.first_bad == seq


# --- the docs ----------------------------------------------------------------------------------


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = re.search(r"^#{1,3} ", text[start + len(heading) :], re.M)
    return text[start : start + len(heading) + (nxt.start() if nxt else len(text))]


def test_lines_md_lists_every_solvent_name_and_alias_the_solvents_module_accepts():
    section = _section((ROOT / "docs" / "lines.md").read_text(), "### Boiling points")
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 2:
            rows[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[1]))
    assert rows, "docs/lines.md: the solvent table is missing from 'Boiling points'"
    documented = {name: aliases for name, aliases in rows.items()}
    accepted = {s.name: set(s.aliases) for s in SOLVENTS.values()}
    assert documented == accepted
    # ...and a line file's `solvent` names (physical properties for the emulator).
    head = _section((ROOT / "docs" / "lines.md").read_text(), "### `[line]`")
    named = set(re.findall(r"`(\w+)`", head.split("| `solvent` |")[1].split("\n")[0]))
    assert set(LINE_SOLVENTS) <= named


def test_cli_md_documents_skid_plan_and_every_key_of_its_json():
    section = _section((ROOT / "docs" / "cli.md").read_text(), "## Planning a run")
    assert "skid plan LINE RECIPE" in section
    plan = plan_of("demo")
    keys = set(plan) | {f"{k}.{sub}" for k, v in plan.items() if isinstance(v, dict) for sub in v}
    for k in ("phases", "feeds", "reagents"):
        keys |= {f"{k}[].{sub}" for sub in plan[k][0]}
    missing = [k for k in sorted(keys) if f'"{k.split(".")[-1]}":' not in section]
    assert not missing, f"docs/cli.md 'Planning a run' does not name: {missing}"


def test_a_recipe_may_name_the_lines_solvent_by_an_alias(tmp_path):
    """docs/lines.md: a recipe's solvent may be any accepted spelling; MeCN is the line's
    acetonitrile, not a different solvent (before, only the exact spelling passed)."""
    recipe = _copy(
        tmp_path,
        RECIPES / "demo.toml",
        "mecn.toml",
        [('solvent = "acetonitrile"', 'solvent = "MeCN"'), ("../lines/demo.toml", str(LINE))],
    )
    plan = plan_of(recipe)
    assert plan["ok"], plan["errors"]
    assert plan["boiling"]["boiling_point_c"] == pytest.approx(150.02, abs=0.01)
    other = _copy(tmp_path, recipe, "water.toml", [('solvent = "MeCN"', 'solvent = "H2O"')])
    assert any("differs from the line's solvent" in e for e in plan_of(other)["errors"])


def test_a_recipe_that_does_not_fit_still_shows_its_flows_and_says_what_is_missing(tmp_path):
    recipe = _copy(
        tmp_path,
        RECIPES / "demo.toml",
        "fast.toml",
        [
            ("residence_time_min = 1.0", "residence_time_min = 0.2"),
            ("../lines/demo.toml", str(LINE)),
        ],
    )
    plan = plan_of(recipe)
    # 10 mL / 0.2 min = 50 mL/min: amine 50 / 2.2 = 22.727 mL/min, beyond pump_a's 10.
    assert not plan["ok"]
    assert plan["reagents"][0]["flow_ml_min"] == pytest.approx(22.727, abs=1e-3)
    assert any("needs 22.73 mL/min from pump_a" in e for e in plan["errors"])
    assert (plan["phases"], plan["run_time"], plan["feeds"], plan["product"]) == (
        [],
        None,
        [],
        None,
    )
    text = "\n".join(plan_lines(plan))
    assert "Phases, run time, feeds and product: worked out once the recipe fits the line" in text
