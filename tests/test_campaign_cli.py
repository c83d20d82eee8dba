"""``skid campaign`` end to end in process, with the real strategies and safety envelope:
a screen whose bounds cross the boiling point and the trip limit never sends a refused
condition; a trip at a chosen experiment stops the campaign with exit 3 and resume
finishes it without repeating; the report and --emit-recipe."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from host.campaign.record import CampaignRecord
from host.cli import main
from host.recipe import check_recipe, load_recipe
from host.record import verify
from line.loader import load_line
from tests.test_campaign_runner import _setpoints

ROOT = Path(__file__).resolve().parent.parent
LINE = str(ROOT / "examples" / "lines" / "demo.toml")
UNSAFE = str(ROOT / "examples" / "campaigns" / "demo-unsafe.toml")
TRIP_LIMIT_C = 150.0  # board_configs/reactor.toml: the over-temperature interlock


def _run(tmp_path, capsys, *argv) -> tuple[int, dict]:
    code = main(
        [
            *argv,
            "--runs-dir",
            str(tmp_path / "runs"),
            "--campaigns-dir",
            str(tmp_path / "c"),
            "--json",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


def test_bounds_across_the_boiling_point_and_the_trip_limit_are_refused_never_sent(
    tmp_path, capsys
):
    best = tmp_path / "best.toml"
    code, out = _run(
        tmp_path, capsys, "campaign", "run", LINE, UNSAFE, "--emulate", "--emit-recipe", str(best)
    )
    assert code == 0, out
    exps = out["experiments"]
    refused = [e for e in exps if e["status"] == "infeasible"]
    ran = [e for e in exps if e["status"] == "ok"]
    assert refused and ran
    hot = [e for e in refused if e["condition"]["temperature_c"] >= 180.0]
    assert hot and all("trip" in e["reason"] or "boil" in e["reason"] for e in hot), hot
    for e in refused:
        assert e["start_s"] is None and e["line_time_s"] == 0.0
    # Nothing refused reached a module: every reactor setpoint the session's run sent is
    # a condition that passed, and stays 10 K below the trip limit.
    run_record = next((tmp_path / "runs").glob("*.sqlite"))
    temps = _setpoints(run_record, "reactor1", "coil_temp")
    # Besides the conditions run: the base recipe's 80 degC (start and end phases) and
    # 20 degC (its flush).
    allowed = {e["condition"]["temperature_c"] for e in ran} | {80.0, 20.0}
    assert set(temps) <= allowed, (temps, allowed)
    assert max(temps) <= TRIP_LIMIT_C - 10.0
    # --emit-recipe: the best condition as a recipe that loads.
    recipe = load_recipe(best)
    assert recipe.conditions.temperature_c == round(out["best"]["condition"]["temperature_c"], 4)
    assert check_recipe(recipe, load_line(LINE)) == []  # skid plan would accept it
    record = CampaignRecord.open(out["campaign_id"], tmp_path / "c", readonly=True)
    assert [e["status"] for e in record.experiments()] == [e["status"] for e in exps]
    record.close()
    assert verify(out["record"]).ok


def test_a_trip_at_a_chosen_experiment_exits_3_and_resume_does_not_repeat(tmp_path, capsys):
    # The demo-unsafe screen's second experiment runs from about 250 s of run time: a
    # clog of the coil then trips the pumps on over-pressure.
    code, out = _run(
        tmp_path,
        capsys,
        "campaign",
        "run",
        LINE,
        UNSAFE,
        "--emulate",
        "--fault",
        "clog:reactor1@300",
    )
    assert code == 3, out
    failed = [e for e in out["experiments"] if e["status"] == "failed"]
    assert len(failed) == 1 and "over_pressure" in failed[0]["reason"], failed
    first = {e["index"]: e for e in out["experiments"]}
    code, again = _run(tmp_path, capsys, "campaign", "resume", out["campaign_id"], "--emulate")
    assert code == 0, again
    later = [e for e in again["experiments"] if e["index"] not in first]
    assert later, "resume ran nothing new"
    finished = {tuple(sorted(e["condition"].items())) for e in first.values()}
    for e in later:
        if e["kind"] == "design":
            assert tuple(sorted(e["condition"].items())) not in finished, e
    runs = {e["run_id"] for e in again["experiments"] if e["status"] != "infeasible"}
    assert len(runs) == 2, "a resume is a new run"


def test_the_report_draws_and_exports(tmp_path, capsys):
    code, out = _run(tmp_path, capsys, "campaign", "run", LINE, UNSAFE, "--emulate")
    assert code == 0
    assert (
        main(
            [
                "campaign",
                "report",
                out["campaign_id"],
                "--campaigns-dir",
                str(tmp_path / "c"),
                "--out",
                str(tmp_path / "rep"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.split()
    names = {Path(p).name for p in printed}
    assert {"index.html", "experiments.csv", "response.png", "best.png"} <= names
    with open(tmp_path / "rep" / "experiments.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == [e["index"] for e in out["experiments"]]
    assert {"temperature_c", "residence_time_min", "yield", "status", "reason"} <= set(rows[0])
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "the hash chain holds" in html
