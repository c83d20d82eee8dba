"""The campaign report's pieces on a made-up list of experiments: the Pareto front, the
best condition with its replicate spread, the figures and the CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from host.campaign.cli import best_condition
from host.campaign.model import ObjectiveSpec, load_campaign
from host.campaign.report import pareto_front, plot_best, plot_pareto, plot_response, write_csv

ROOT = Path(__file__).resolve().parent.parent


def test_the_pareto_front_keeps_only_the_non_dominated():
    pts = [(0.9, 10.0), (0.8, 5.0), (0.7, 12.0), (0.95, 20.0), (0.6, 4.0)]
    # yield max, reagent per gram min: (0.8, 5) and (0.6, 4) and (0.9, 10) trade off;
    # (0.7, 12) is beaten by (0.9, 10); (0.95, 20) has the best yield.
    assert sorted(pareto_front(pts, ("max", "min"))) == [0, 1, 3, 4]
    assert pareto_front(pts, ("max", "max")) == [3]


def _exp(i, t, tau, y, rpg, kind="design", status="ok"):
    return {
        "index": i,
        "kind": kind,
        "status": status,
        "reason": "" if status == "ok" else "why",
        "condition": {"temperature_c": t, "residence_time_min": tau},
        "results": {
            "yield": y,
            "reagent_per_gram": rpg,
            "space_time_yield": 1.0,
            "product_mol_l": 0.3,
        }
        if status == "ok"
        else {},
        "absorbance": 0.5,
        "start_s": 0.0,
        "end_s": 1.0,
        "line_time_s": 1.0,
        "reagent_ml": 1.0,
        "run_id": "r",
    }


EXPS = [
    _exp(1, 60.0, 2.0, 0.5, 20.0),
    _exp(2, 80.0, 5.0, 0.8, 12.0),
    _exp(3, 150.0, 5.0, 0, 0, status="infeasible"),
    _exp(4, 100.0, 5.0, 0, 0, status="failed"),
    _exp(5, 80.0, 5.0, 0.78, 12.5, kind="replicate"),
    _exp(6, 80.0, 5.0, 0.83, 11.5, kind="replicate"),
]


def test_the_best_condition_carries_its_replicate_spread():
    campaign = load_campaign(ROOT / "examples" / "campaigns" / "demo-screen.toml")
    best = best_condition(EXPS, campaign)
    assert best["condition"] == {"temperature_c": 80.0, "residence_time_min": 5.0}
    assert best["n"] == 3 and best["experiments"] == [2, 5, 6]
    assert abs(best["mean"]["yield"] - 0.8033) < 1e-3
    assert (best["min"]["yield"], best["max"]["yield"]) == (0.78, 0.83)


def test_the_figures_and_the_csv_are_written(tmp_path):
    campaign = load_campaign(ROOT / "examples" / "campaigns" / "demo-screen.toml")
    campaign.objectives = [ObjectiveSpec("yield", "max"), ObjectiveSpec("reagent_per_gram", "min")]
    for plot, name in ((plot_response, "r.png"), (plot_pareto, "p.png"), (plot_best, "b.png")):
        path = plot(EXPS, campaign, tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(write_csv(EXPS, campaign, tmp_path / "e.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "ok", "infeasible", "failed", "ok", "ok"]
    assert rows[2]["yield"] == "" and rows[2]["temperature_c"] == "150.0"
