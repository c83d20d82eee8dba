"""Campaigns against the physical budget, on the emulated kinetics of the demo line.

For each strategy (bayes: Optuna TPE; lhs; random; and the 3-level full factorial as the
baseline grid), over 5 seeds, the campaign loop of ``examples/campaigns/demo-bayes.toml``
(T 40-140 degC, 1-20 min, 1-3 equivalents of B) runs until the TRUE yield of P
(``line.kinetics``, plug-flow integration) at the strategy's recommended condition
reaches 95 % of the best achievable yield over the feasible region (the campaign's own
safety envelope, ``host/campaign/envelope.py``; ``Kinetics.best_achievable``).  Reported,
as the median over the seeds: the experiments, the line time and the feed volume spent
until then.

What each experiment costs and measures follows the runner's rules
(``host/campaign/runner.py``) without running the line, so that 4 strategies x 5 seeds fit
in minutes: line time = min_residence_times x residence time + the measuring window (the
runner's lower bound: the time steady-state detection adds on top is not counted, for
any strategy alike); feed = total flow x that time; the measurement is the runner's own
(``results_of``: Beer-Lambert with the interferent correction) applied to the model's
outlet absorbance plus the analyzer's noise averaged over the window.  Conditions the
envelope refuses cost nothing and are told back as infeasible, as in a campaign.

Measured for real: the wall time of a 20-experiment Bayesian campaign in process (the
emulated line, modules and coordinator; target < 2 min), whose actual line time and feed
are reported beside the rule's, and the wall time of this whole benchmark (<= 30 min).
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import time
from pathlib import Path

from bench.common import record
from host.campaign.conditions import experiment_recipe, flows_of, results_of, with_condition
from host.campaign.model import load_campaign
from host.campaign.session import make_campaign_strategy, make_check
from host.recipe import load_recipe
from line.kinetics import from_line
from line.loader import load_line

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
CAMPAIGN = ROOT / "examples" / "campaigns" / "demo-bayes.toml"
SEEDS = (0, 1, 2, 3, 4)
CAP = 40  # experiments at most per strategy and seed (the grid: its 27)
STRATEGIES = ("bayes", "lhs", "random", "factorial")
GRID = "factorial 3-level"
SAMPLES_PER_WINDOW = 30  # the analyzer's telemetry at 1 Hz over a 30 s window


class Bench:
    """The line, the campaign, the envelope and the kinetics, loaded once."""

    def __init__(self):
        self.campaign = load_campaign(CAMPAIGN)
        self.line = load_line(LINE)
        self.base = load_recipe(self.campaign.recipe_file)
        self.kin = from_line(self.line)
        self.check = make_check(self.campaign, self.line, LINE)
        region = {v.name: (v.lo, v.hi) for v in self.campaign.variables}
        self.best, self.best_condition = self.kin.best_achievable(region, self.feasible)

    def feasible(self, condition: dict) -> bool:
        """The runner's envelope check (``concentration_mol_l``: the line's feed, fixed)."""
        cond = {k: v for k, v in condition.items() if k != "concentration_mol_l"}
        return not self.check(experiment_recipe(self.base, cond))

    def measure(self, condition: dict, rng: random.Random) -> dict:
        candidate = with_condition(self.base, condition)
        outlet = self.kin.outlet(
            condition["temperature_c"], condition["residence_time_min"], condition["equivalents"]
        )
        m = self.campaign.measure
        noise = self.kin.noise_au / math.sqrt(SAMPLES_PER_WINDOW)
        absorbance = self.kin.absorbance(outlet, m.path_mm) + rng.gauss(0.0, noise)
        return results_of(absorbance, candidate, self.line, m)

    def cost(self, condition: dict) -> tuple[float, float]:
        """(line time s, feed mL) by the runner's rule (module text)."""
        candidate = with_condition(self.base, condition)
        total, _, _ = flows_of(candidate, self.line)
        c = self.campaign
        t = c.min_residence_times * condition["residence_time_min"] * 60.0 + c.measure.window_s
        return t, total * t / 60.0


def one(bench: Bench, kind: str, seed: int) -> dict:
    """One campaign loop: experiments, line time and feed until 95 % (None: not reached
    within CAP or the design), and the totals of the whole loop."""
    campaign = copy.copy(bench.campaign)
    campaign.strategy, campaign.seed = kind, seed
    campaign.budget = {**campaign.budget, "experiments": CAP}
    if kind == "factorial":
        campaign.variables = [v.__class__(v.name, v.lo, v.hi, 3) for v in campaign.variables]
    strategy = make_campaign_strategy(campaign)
    rng = random.Random(1000 + seed)
    n, line_s, feed = 0, 0.0, 0.0
    reached = None
    while n < CAP:
        cond = strategy.ask()
        if cond is None:
            break
        if not bench.feasible(cond):
            strategy.tell(cond, None, "infeasible", "outside the envelope")
            continue
        strategy.tell(cond, bench.measure(cond, rng), "ok")
        t, ml = bench.cost(cond)
        n, line_s, feed = n + 1, line_s + t, feed + ml
        best = strategy.best()
        if reached is None and bench.kin.yield_at(best) >= 0.95 * bench.best:
            reached = {"experiments": n, "line_min": line_s / 60.0, "feed_ml": feed}
            if kind != "factorial":
                break
    return {"reached": reached, "experiments": n, "line_min": line_s / 60.0, "feed_ml": feed}


def _median(runs: list[dict], key: str) -> float | None:
    """Median over the seeds, an unreached seed counting as infinitely costly."""
    values = [r["reached"][key] if r["reached"] else math.inf for r in runs]
    m = statistics.median(values)
    return None if math.isinf(m) else m


def _rec(name, value, unit, peer=None, peer_value=None, target=None, **extra) -> dict:
    if value is None:
        out = {
            "name": name,
            "value": None,
            "unit": unit,
            "peer": peer,
            "peer_value": peer_value,
            "ratio": None,
            "target": target,
        }
    else:
        out = record(name, value, unit, peer, peer_value, target)
    out.update(extra)
    return out


def in_process_campaign(experiments: int = 20) -> dict:
    """A real Bayesian campaign of ``experiments`` on the emulated line, in process."""
    import tempfile

    from host.campaign.record import CampaignRecord
    from host.campaign.session import run_session
    from host.dryrun import InProcessSite

    campaign = load_campaign(CAMPAIGN)
    campaign.budget = {"experiments": experiments, "time_min": None, "reagent_ml": None}
    campaign.replicates = 0
    with tempfile.TemporaryDirectory() as tmp:
        # The demo line with 1 L feed bottles: 20 experiments of up to 20 min residence
        # time draw more than its 250 mL ones hold (a campaign stops to have them refilled).
        line = Path(tmp) / "demo.toml"
        line.write_text(
            LINE.read_text().replace("feed_volume_ml = 250.0", "feed_volume_ml = 1000.0")
        )
        rec = CampaignRecord.create(Path(tmp) / "c", campaign, "demo", "l", "r", 0)
        started = time.perf_counter()
        result = run_session(
            campaign,
            line,
            lambda prep: InProcessSite(prep.line, lambda s: None, recipe_name=prep.recipe.name),
            rec,
            strategy=make_campaign_strategy(campaign),
            runs_dir=Path(tmp) / "runs",
        )
        wall = time.perf_counter() - started
        rec.close()
    ran = [e for e in result.experiments if e["status"] != "infeasible"]
    return {
        "wall_s": wall,
        "outcome": result.outcome,
        "experiments": len(ran),
        "line_min": sum(e["line_time_s"] for e in ran) / 60.0,
        "feed_ml": sum(e["reagent_ml"] for e in ran),
        "run_s": result.summary.duration_s if result.summary else 0.0,
    }


def run() -> list[dict]:  # long: one record per measured quantity, in order
    started = time.perf_counter()
    bench = Bench()
    runs = {kind: [one(bench, kind, seed) for seed in SEEDS] for kind in STRATEGIES}
    grid = runs["factorial"][0]  # the whole 3-level grid (the same for every seed)
    out = [
        _rec(
            "campaign_best_achievable_yield", bench.best, "fraction", condition=bench.best_condition
        )
    ]
    for kind in STRATEGIES:
        reached = sum(1 for r in runs[kind] if r["reached"])
        label = GRID if kind == "factorial" else kind
        for key, unit, peer_value, target in (
            (
                "experiments",
                "experiments",
                grid["experiments"],
                "<=20" if kind == "bayes" else None,
            ),
            ("line_min", "min", grid["line_min"], None),
            ("feed_ml", "mL", grid["feed_ml"], "<0.5x" if kind == "bayes" else None),
        ):
            out.append(
                _rec(
                    f"campaign_{kind}_{key}_to_95pct",
                    _median(runs[kind], key),
                    unit,
                    f"whole {GRID} grid",
                    peer_value,
                    target,
                    strategy=label,
                    seeds=len(SEEDS),
                    seeds_reaching_95pct=reached,
                )
            )
    real = in_process_campaign(20)
    out.append(
        _rec(
            "campaign_in_process_20_experiments_wall_s",
            real["wall_s"],
            "s",
            target="<120",
            line_min=round(real["line_min"], 1),
            feed_ml=round(real["feed_ml"], 1),
            experiments_run=real["experiments"],
            simulated_run_s=round(real["run_s"], 1),
        )
    )
    out.append(
        _rec("campaign_benchmark_wall_s", time.perf_counter() - started, "s", target="<=1800")
    )
    return out


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(), indent=1))
