"""One campaign session on a line: the thin shell around ``CampaignRunner``.

``run_session`` validates the line and the base recipe (``host.session.prepare``), plans
the first feasible experiment, builds the campaign recipe (the base recipe's start phases
at the first condition, its end phases after), and runs it as ONE coordinator run on the
site's modules (``host.session.run_recipe``: in process or over a broker, same loop):
the line is primed, pressurised and heated once, the runner feeds the experiments into
the running recipe (``Sequencer.feed``), and the recipe's end phases shut the line down.
A resume is a new session and so a new run record; the campaign record lists them all.

Returns a ``SessionResult``: ``outcome`` done | stopped (a trip or the operator: exit 3)
| no_feasible_condition, the run summary and this session's experiments."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from host.campaign.conditions import campaign_recipe, end_phase
from host.campaign.runner import CampaignRunner
from host.session import Prepared, prepare, prepare_loaded, run_recipe

PROGRESS_EVERY_S = 300.0  # a campaign runs for hours: a progress line every 5 min of run time
DEFAULT_MAX_S = 30 * 24 * 3600.0  # a safety net: the budgets end a campaign long before


@dataclass
class SessionResult:
    outcome: str
    reason: str = ""
    summary: object = None
    experiments: list[dict] = field(default_factory=list)
    campaign_id: str = ""


def make_check(campaign, line, line_path):
    """The safety envelope as the runner's ``check(candidate recipe) -> reasons``."""
    from host.campaign.envelope import Thermo, check_condition  # h-kinetics' module

    s = campaign.safety
    thermo = Thermo(
        s["dh_kj_mol"], s["cp_j_g_k"], s["density_g_ml"], s["onset_c"], s["onset_margin_k"]
    )
    return lambda recipe: check_condition(line, recipe, thermo, line_path=line_path)


def make_campaign_strategy(campaign, state: dict | None = None):
    """The campaign's strategy (``host/campaign/strategies.py``), restored from ``state``."""
    from host.campaign.strategies import Objective, Variable, make_strategy

    strategy = make_strategy(
        campaign.strategy,
        [Variable(v.name, v.lo, v.hi, v.levels) for v in campaign.variables],
        [Objective(o.name, o.direction) for o in campaign.objectives],
        campaign.seed,
        campaign.budget["experiments"],
        **campaign.strategy_options,
    )
    if state is not None:
        strategy.restore(state)
    return strategy


class _Shell:
    """What ``run_recipe``'s ``on_tick`` does each turn: hand the sequencer the runner's
    feeder once, pass the analyzer's reading, and copy experiments into the run record."""

    def __init__(self, runner: CampaignRunner, base, record, clock, log):
        self.runner = runner
        self.base = base
        self.record = record
        self.clock = clock
        self.log = log
        self.coord = None
        self.now_ms = 0
        self.signal = (runner.campaign.measure.module, runner.campaign.measure.channel)
        self.pumps = [m.id for m in runner.line.modules.values() if m.kind == "pump"]

    def sink(self, kind: str, data: dict) -> None:
        if kind == "experiment":
            self._said(data)
            if self.coord is not None:  # a segment of the run, in its own record too
                text = f"campaign experiment {data['index']}: {data['status']}"
                self.coord.note("campaign", text, experiment=data)
        self.record.add(
            self.clock.host_ms(), kind, f"{kind} {data.get('index', data.get('after', ''))}", data
        )

    def _said(self, e: dict) -> None:
        cond = ", ".join(f"{k}={v:.4g}" for k, v in e["condition"].items())
        if e["status"] == "ok":
            first = [o.name for o in self.runner.campaign.objectives]  # the objectives first
            names = first + [k for k in e["results"] if k not in first]
            res = ", ".join(f"{k} {e['results'][k]:.4g}" for k in names if k in e["results"])
            self.log(f"campaign: experiment {e['index']} ({e['kind']}) {cond}: {res}")
        else:
            self.log(f"campaign: experiment {e['index']} {cond}: {e['status']}: {e['reason']}")

    def on_tick(self, coord, _plant) -> None:
        seq = coord.sequencer
        if seq is None:
            return
        if self.coord is None:
            self.coord = coord
            self.runner.run_id = coord.record.run_id
            self.record.add(
                self.clock.host_ms(),
                "session",
                f"session: run {coord.record.run_id}",
                {"run_id": coord.record.run_id},
            )
            seq.feed(end_phase(self.base), lambda: self.runner.next_steps(seq.now_ms, seq.history))
        self.now_ms = seq.now_ms
        if seq.state in ("aborting", "aborted") and self.runner.current is not None:
            # A trip or an abort: the experiment ends now (its failure in this run's record).
            self.runner.on_end(seq.now_ms, seq.state, seq.reason)
        flows = {p: coord.access.value(p, "flow") for p in self.pumps}
        self.runner.observe(seq.now_ms, seq.step, coord.access.value(*self.signal), flows)


def run_session(  # long: the session's steps in order, each a few lines
    campaign,
    line_path,
    make_site: Callable[[Prepared], object],
    record,
    *,
    strategy,
    check=None,
    done: list[dict] = (),
    runs_dir="runs",
    log: Callable[[str], None] | None = None,
    max_s: float = DEFAULT_MAX_S,
    should_abort=None,
    on_tick=None,
) -> SessionResult:
    """Run one session of ``campaign`` (``record``: its CampaignRecord; ``done``: the
    experiments of earlier sessions, not repeated; ``strategy`` already restored)."""
    say = log or (lambda text: None)
    base = prepare(line_path, campaign.recipe_file)  # RunRefused: exit 2
    check = check or make_check(campaign, base.line, line_path)
    holder: dict = {}

    def sink(kind, data):  # before the line starts (infeasible first conditions): wall time
        if "shell" in holder:
            holder["shell"].sink(kind, data)
        else:
            record.add(int(time.time() * 1000), kind, f"{kind} before the line started", data)

    runner = CampaignRunner(
        campaign, base.line, base.recipe, strategy, check, sink, done=list(done)
    )
    first = runner.first()
    if first is None:
        why = runner.stop_reason or "no condition passed the safety envelope"
        record.finish(int(time.time() * 1000), "no_feasible_condition", {"reason": why})
        return SessionResult(
            "no_feasible_condition", why, experiments=[e.as_dict() for e in runner.experiments]
        )
    recipe = campaign_recipe(base.recipe)
    prep = prepare_loaded(base.line, recipe, base.line_hash, campaign.hash)
    site = make_site(prep)
    shell = _Shell(runner, base.recipe, record, site.clock, say)
    holder["shell"] = shell

    def tick(coord, plant):
        shell.on_tick(coord, plant)
        if on_tick is not None:
            on_tick(coord, plant)

    summary = run_recipe(
        prep,
        site,
        runs_dir=runs_dir,
        metadata={"campaign": record.campaign_id},
        log=say,
        progress_every_s=PROGRESS_EVERY_S,
        max_s=max_s,
        should_abort=should_abort,
        on_tick=tick,
    )
    shell.coord = None  # the run record is closed: what follows goes to the campaign's only
    runner.on_end(shell.now_ms, summary.outcome, summary.reason)
    outcome = "done" if summary.outcome.startswith("completed") else "stopped"
    reason = runner.stop_reason if outcome == "done" else summary.reason
    if outcome == "done" and runner.feed_stop is not None:
        outcome, reason = "stopped", runner.feed_stop
    result = SessionResult(outcome, reason, summary, [e.as_dict() for e in runner.experiments])
    record.finish(
        site.clock.host_ms(),
        outcome,
        {
            "reason": reason,
            "run_id": summary.run_id,
            "run_outcome": summary.outcome,
            "trips": summary.trips,
        },
    )
    return result
