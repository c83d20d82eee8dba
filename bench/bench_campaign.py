"""Campaigns against the physical budget, on the emulated kinetics of the demo line.

For each strategy (bayes: Optuna TPE; lhs; random; and the 3-level full factorial as the
baseline grid), over 5 seeds, a REAL campaign runs in process: ``host.campaign.session.
run_session`` on the emulated demo line (modules, plant with ``line.kinetics``,
coordinator), as ``skid campaign run LINE examples/campaigns/demo-bayes.toml --emulate
--seed SEED`` runs it, with the strategy's seed = the emulator's seed = SEED (T 40-140
degC, 1-20 min, 1-3 equivalents of B; no replicates).  After each experiment the TRUE
yield of P (``Kinetics.yield_at``, plug-flow integration) at the strategy's recommended
condition (``Strategy.best``) is compared with 95 % of the best achievable yield over the
feasible region (the campaign's own safety envelope; ``Kinetics.best_achievable``); once
reached the strategy has no more conditions, so the campaign ends as any campaign does
(the recipe's end phases), or at ``CAP`` experiments.  The 3-level grid always runs its
27 conditions (the peer: the whole grid).  Reported, as the median over the seeds (a
seed that never reaches 95 % counts as infinitely costly): the experiments (that used the
line: ok or failed), and the line time and feed the runner accounted for them (each
experiment from setting its condition to the end of its measuring window, at its total
flow: the campaign record's ``line_time_s`` and ``reagent_ml``).

The demo line's 250 mL feed bottles run dry after about 17 experiments (a campaign then
stops for a refill and a resume); the benchmark's line is the demo line with 5 L feeds,
so that no campaign stops for that.  The campaigns run on ``WORKERS`` processes.

Also measured: the wall time of a 20-experiment Bayesian campaign in process (target
< 2 min), run alone before the others, and of this whole benchmark (<= 30 min).  A
secondary record per strategy (``campaign_surrogate_*``, no targets) keeps the earlier
estimate that does not run the line (the runner's lower-bound cost rule, the model's
yield plus noise), to show how far the rule is from a run.

Quick mode (``FLOWSKID_BENCH_QUICK=1`` or ``python -m bench.bench_campaign --quick``):
one seed, at most 6 experiments per campaign, a 6-experiment timed campaign; a smoke
run of the whole path, not a result.
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
FEED_ML = 5000.0  # the bench line's feed bottles (the demo's 250 mL run dry at ~17)
WORKERS = 2  # processes for the campaigns (this 2-core machine)
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


def campaign_for(base, kind: str, seed: int, cap: int):
    """The demo campaign with another strategy and seed, at most ``cap`` experiments and
    no replicates (the grid: 3 levels of every variable)."""
    campaign = copy.copy(base)
    campaign.strategy, campaign.seed, campaign.replicates = kind, seed, 0
    campaign.budget = {"experiments": cap, "time_min": None, "reagent_ml": None}
    if kind == "factorial":
        campaign.variables = [v.__class__(v.name, v.lo, v.hi, 3) for v in campaign.variables]
    return campaign


def one(bench: Bench, kind: str, seed: int) -> dict:
    """SURROGATE, the line is not run: one campaign loop by the runner's cost rule;
    experiments, line time and feed until 95 % (None: not reached within CAP or the
    design), and the totals of the whole loop."""
    strategy = make_campaign_strategy(campaign_for(bench.campaign, kind, seed, CAP))
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


class StopAt:
    """A strategy that has no more conditions once the true yield at its recommended
    condition reaches ``threshold`` (None: never stops early; ``keep_going``: notes when
    it is reached but goes on, the grid).  Notes after how many experiments that used
    the line (ok or failed) it was reached."""

    def __init__(self, inner, kinetics, threshold: float | None, keep_going: bool = False):
        self.inner = inner
        self.kinetics = kinetics
        self.threshold = threshold
        self.keep_going = keep_going
        self.reached_after: int | None = None
        self.true_best = 0.0

    def __getattr__(self, name):  # best, state, restore, ran ... : the strategy's
        return getattr(self.inner, name)

    def ask(self):
        if self.reached_after is not None and not self.keep_going:
            return None
        return self.inner.ask()

    def tell(self, condition, results, status="ok", reason=""):
        self.inner.tell(condition, results, status, reason)
        best = self.inner.best()
        if best is None:
            return
        self.true_best = self.kinetics.yield_at(best)
        hit = self.threshold is not None and self.true_best >= self.threshold
        if hit and self.reached_after is None:
            self.reached_after = self.inner.ran()


def feed_line(directory: Path, ml: float = FEED_ML) -> Path:
    """The demo line with ``ml`` mL feed bottles instead of 250 mL (module text)."""
    text = LINE.read_text()
    if "feed_volume_ml = 250.0" not in text:
        raise RuntimeError(f"{LINE}: no 'feed_volume_ml = 250.0' to enlarge")
    path = Path(directory) / "demo.toml"
    path.write_text(text.replace("feed_volume_ml = 250.0", f"feed_volume_ml = {ml:.1f}"))
    return path


def real_campaign(kind: str, seed: int, cap: int, threshold: float | None, line: str) -> dict:
    """One campaign run for real in process (module text): until 95 % (``threshold``,
    the yield) or ``cap`` experiments.  Returns what it took, from the runner's
    accounting: ``reached`` (experiments, line_min, feed_ml until 95 %, or None), the
    totals of the whole campaign, the simulated run time and the wall time."""
    import tempfile

    from host.campaign.record import CampaignRecord
    from host.campaign.session import run_session
    from host.dryrun import InProcessSite

    campaign = campaign_for(load_campaign(CAMPAIGN), kind, seed, cap)
    kinetics = from_line(load_line(line))
    strategy = StopAt(make_campaign_strategy(campaign), kinetics, threshold, kind == "factorial")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rec = CampaignRecord.create(Path(tmp) / "c", campaign, "demo", "l", "r", 0)
        result = run_session(
            campaign,
            line,
            lambda prep: InProcessSite(
                prep.line, lambda s: None, recipe_name=prep.recipe.name, seed=seed
            ),
            rec,
            strategy=strategy,
            runs_dir=Path(tmp) / "runs",
        )
        rec.close()
    wall = time.perf_counter() - started
    ran = [e for e in result.experiments if e["status"] != "infeasible"]
    reached = None
    if strategy.reached_after is not None:
        upto = ran[: strategy.reached_after]
        reached = {
            "experiments": len(upto),
            "line_min": sum(e["line_time_s"] for e in upto) / 60.0,
            "feed_ml": sum(e["reagent_ml"] for e in upto),
        }
    return {
        "kind": kind,
        "seed": seed,
        "outcome": result.outcome,
        "reason": result.reason,
        "reached": reached,
        "experiments": len(ran),
        "failed": sum(1 for e in ran if e["status"] == "failed"),
        "infeasible": len(result.experiments) - len(ran),
        "line_min": sum(e["line_time_s"] for e in ran) / 60.0,
        "feed_ml": sum(e["reagent_ml"] for e in ran),
        "true_yield_of_recommended": strategy.true_best,
        "run_s": result.summary.duration_s if result.summary else 0.0,
        "wall_s": wall,
    }


def all_campaigns(seeds, cap: int, threshold: float, line: Path) -> dict[str, list[dict]]:
    """Every strategy x seed on ``WORKERS`` processes, the longest (the grid) first."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(kind, seed) for kind in reversed(STRATEGIES) for seed in seeds]
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:
        futures = {
            job: pool.submit(real_campaign, job[0], job[1], cap, threshold, str(line))
            for job in jobs
        }
        done = {job: f.result() for job, f in futures.items()}
    return {kind: [done[(kind, seed)] for seed in seeds] for kind in STRATEGIES}


def _strategy_records(kind: str, runs: list[dict], grid: dict, prefix: str, targets: bool):
    reached = sum(1 for r in runs if r["reached"])
    label = GRID if kind == "factorial" else kind
    bayes = targets and kind == "bayes"
    out = []
    for key, unit, target in (
        ("experiments", "experiments", "<=20" if bayes else None),
        ("line_min", "min", None),
        ("feed_ml", "mL", "<0.5x" if bayes else None),
    ):
        per_seed = [None if r["reached"] is None else round(r["reached"][key], 2) for r in runs]
        out.append(
            _rec(
                f"{prefix}{kind}_{key}_to_95pct",
                _median(runs, key),
                unit,
                f"whole {GRID} grid",
                statistics.median(r[key] for r in grid),
                target,
                strategy=label,
                seeds=len(runs),
                seeds_reaching_95pct=reached,
                per_seed=per_seed,
            )
        )
    return out


def run(quick: bool | None = None) -> list[dict]:  # long: one record per quantity, in order
    """The records (module text); ``quick``: the smoke run (default: the environment's
    ``FLOWSKID_BENCH_QUICK``)."""
    import os
    import tempfile

    if quick is None:
        quick = os.environ.get("FLOWSKID_BENCH_QUICK", "") not in ("", "0")
    seeds, cap, timed = ((0,), 6, 6) if quick else (SEEDS, CAP, 20)
    started = time.perf_counter()
    bench = Bench()
    threshold = 0.95 * bench.best
    out = [
        _rec(
            "campaign_best_achievable_yield", bench.best, "fraction", condition=bench.best_condition
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        line = feed_line(Path(tmp))
        alone = real_campaign("bayes", bench.campaign.seed, timed, None, str(line))
        runs = all_campaigns(seeds, cap, threshold, line)
    for kind in STRATEGIES:
        out += _strategy_records(kind, runs[kind], runs["factorial"], "campaign_", True)
    out[-1]["note"] = (
        f"real in-process campaigns on the emulated demo line ({FEED_ML:g} mL feeds), "
        f"at most {cap} experiments, {WORKERS} worker processes"
    )
    for kind in STRATEGIES:
        out.append(
            _rec(
                f"campaign_{kind}_wall_s_median",
                statistics.median(r["wall_s"] for r in runs[kind]),
                "s",
                seeds=len(seeds),
                experiments_run=[r["experiments"] for r in runs[kind]],
                failed=[r["failed"] for r in runs[kind]],
                outcomes=[r["outcome"] for r in runs[kind]],
            )
        )
    surrogate = {kind: [one(bench, kind, s) for s in seeds] for kind in STRATEGIES}
    for kind in STRATEGIES:
        out += _strategy_records(
            kind, surrogate[kind], surrogate["factorial"], "campaign_surrogate_", False
        )
    out.append(
        _rec(
            f"campaign_in_process_{timed}_experiments_wall_s",
            alone["wall_s"],
            "s",
            target="<120" if not quick else None,
            line_min=round(alone["line_min"], 1),
            feed_ml=round(alone["feed_ml"], 1),
            experiments_run=alone["experiments"],
            simulated_run_s=round(alone["run_s"], 1),
            note="bayes, the campaign's seed, alone (before the 2-worker pool)",
        )
    )
    out.append(
        _rec(
            "campaign_benchmark_wall_s",
            time.perf_counter() - started,
            "s",
            target="<=1800" if not quick else None,
            quick=quick,
        )
    )
    return out


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv[1:] or None), indent=1))
