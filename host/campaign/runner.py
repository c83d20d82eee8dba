"""The campaign runner: the experiment loop of one campaign session, deterministic.

``CampaignRunner`` never blocks, never reads a clock and never talks to a module: the
session shell (``host/campaign/session.py``) hands the running recipe's sequencer its
``next_steps`` (``Sequencer.feed``) and passes every tick's analyzer reading to
``observe``.  Each experiment is three steps of the running recipe:

1. *set*: outlet to waste, the condition's setpoints (the pump flows derived from the
   residence time and equivalents, the reactor temperature, the pressure);
2. *steady*: at least ``min_residence_times`` residence times, and then every
   ``[steady] signals`` steady (``host/steady.py``) over ``window_s``; not steady within
   ``timeout_s``: the experiment fails ("not steady") and the campaign goes on;
3. *measure*: the analyzer averaged over ``[measure] window_s`` (outlet still to waste).

Before a condition is planned it passes ``check(candidate recipe) -> reasons`` (the
safety envelope, ``host/campaign/envelope.py``): a refused condition is recorded as
infeasible with its reasons, told back to the strategy, and never becomes a step.  When
the strategy has no more (or a budget would be exceeded), the best condition is run
``replicates`` more times (its spread is in the report), then the recipe goes on to its
end phases.  A run that ends aborted (a trip, the operator) fails the running experiment
with the run's reason; the campaign stops there (exit 3) until ``skid campaign resume``.

Everything worth keeping goes to ``sink(kind, data)``: ``experiment`` (every experiment,
any status) and ``state`` (the strategy's state after each tell, for resume).
"""

from __future__ import annotations

from collections.abc import Callable

from host.campaign.conditions import (
    condition_setpoints,
    experiment_recipe,
    flows_of,
    results_of,
    split_phases,
    with_condition,
)
from host.recipe import RecipeError, SteadySpec, Step, Wait

MAX_INFEASIBLE_IN_A_ROW = 50  # a strategy stuck outside the envelope ends the design


class Experiment:
    """One experiment of a campaign: ``kind`` design | replicate; ``status`` planned,
    running, ok, infeasible, failed."""

    def __init__(self, index: int, condition: dict, kind: str = "design"):
        self.index = index
        self.condition = dict(condition)
        self.kind = kind
        self.status = "planned"
        self.reason = ""
        self.results: dict = {}
        self.absorbance: float | None = None
        self.samples: list[float] = []
        self.start_s: float | None = None
        self.end_s: float | None = None
        self.reagent_ml = 0.0
        self.line_time_s = 0.0
        self.total_flow_ml_min = 0.0
        self.run_id = ""
        self.step_names: tuple[str, str, str] = ("", "", "")

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "kind": self.kind,
            "condition": self.condition,
            "status": self.status,
            "reason": self.reason,
            "results": self.results,
            "absorbance": self.absorbance,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "reagent_ml": round(self.reagent_ml, 4),
            "line_time_s": round(self.line_time_s, 3),
            "run_id": self.run_id,
        }


class Totals:
    """What the campaign has used so far, over every session (from the record)."""

    def __init__(self, done: list[dict] = ()):
        self.experiments = sum(
            1 for e in done if e["kind"] == "design" and e["status"] != "infeasible"
        )
        self.replicates = sum(1 for e in done if e["kind"] == "replicate")
        self.line_time_s = sum(e.get("line_time_s", 0.0) for e in done)
        self.reagent_ml = sum(e.get("reagent_ml", 0.0) for e in done)
        self.next_index = 1 + max((e["index"] for e in done), default=0)


class CampaignRunner:
    def __init__(
        self,
        campaign,
        line,
        base_recipe,
        strategy,
        check: Callable[[object], list[str]],
        sink: Callable[[str, dict], None],
        *,
        run_id: str = "",
        done: list[dict] = (),
    ):
        self.campaign = campaign
        self.line = line
        self.base = base_recipe
        self.strategy = strategy
        self.check = check
        self.sink = sink
        self.run_id = run_id
        self.totals = Totals(list(done))
        self.current: Experiment | None = None
        self.queued: Experiment | None = None  # planned before the line started
        self.design_done = False
        self.stop_reason = ""  # why the design ended (exhausted, a budget)
        self.experiments: list[Experiment] = []  # this session's
        self._returned = False
        self.feed_stop: str | None = None  # a feed would run dry: refill, then resume
        self.pumped_ml: dict[str, float] = {}  # per pump, this session (observe)
        self._last_ms: int | None = None
        _, end = split_phases(base_recipe)
        self._end_s = sum(st.timeout_s for ph in end for st in ph.steps if st.wait is not None)
        self._base_flows = flows_of(base_recipe, line)[1]

    # --- planning -----------------------------------------------------------------------

    def plan_next(self) -> Experiment | None:
        """The next experiment to run (feasible), or None when the campaign has no more;
        every infeasible condition on the way is recorded and told back."""
        refused = 0
        while not self.design_done and self.feed_stop is None:
            if self.totals.experiments >= self.campaign.budget["experiments"]:
                self._end_design(f"experiment budget {self.campaign.budget['experiments']} spent")
                break
            cond = self.strategy.ask()
            if cond is None:
                self._end_design("the strategy has no more conditions")
                break
            exp = Experiment(self.totals.next_index, cond)
            self.totals.next_index += 1
            if self._feasible(exp) and self._affordable(exp):
                return exp
            if exp.status == "over_budget":
                break
            refused += 1
            if refused >= MAX_INFEASIBLE_IN_A_ROW:
                self._end_design(f"{refused} infeasible conditions in a row")
        return self._plan_replicate()

    def _end_design(self, why: str) -> None:
        self.design_done = True
        self.stop_reason = self.stop_reason or why

    def _plan_replicate(self) -> Experiment | None:
        if self.feed_stop is not None or self.totals.replicates >= self.campaign.replicates:
            return None
        best = self.strategy.best()
        if not best:
            return None
        cond = {k: v for k, v in best.items() if k in {v.name for v in self.campaign.variables}}
        exp = Experiment(self.totals.next_index, cond, kind="replicate")
        self.totals.next_index += 1
        if not self._feasible(exp) or not self._affordable(exp):
            self.totals.replicates = self.campaign.replicates  # would never pass: none more
            return None
        self.totals.replicates += 1
        return exp

    def _feasible(self, exp: Experiment) -> bool:
        try:
            reasons = list(self.check(experiment_recipe(self.base, exp.condition)))
        except (KeyError, RecipeError, ValueError) as exc:
            reasons = [str(exc)]
        if not reasons:
            return True
        exp.status = "infeasible"
        exp.reason = "; ".join(reasons)
        exp.run_id = self.run_id
        self._finish(exp)
        return False

    def estimate(self, exp: Experiment) -> tuple[float, float]:
        """(line time s, reagent mL) an experiment takes at least: the residence times to
        wait, the steady window and the measuring window, at its total flow."""
        candidate = with_condition(self.base, exp.condition)
        total, _, _ = flows_of(candidate, self.line)
        c = self.campaign
        tau_s = candidate.conditions.residence_time_min * 60.0
        t = c.min_residence_times * tau_s + c.measure.window_s
        return t, total * t / 60.0

    def _affordable(self, exp: Experiment) -> bool:
        budget = self.campaign.budget
        t, ml = self.estimate(exp)
        why = None
        if budget.get("time_min") and self.totals.line_time_s + t > budget["time_min"] * 60.0:
            why = f"line-time budget {budget['time_min']:g} min would be exceeded"
        elif budget.get("reagent_ml") and self.totals.reagent_ml + ml > budget["reagent_ml"]:
            why = f"reagent budget {budget['reagent_ml']:g} mL would be exceeded"
        else:
            self.feed_stop = self._feed_short(exp, t)
            if self.feed_stop is None:
                return True
        if why is not None:
            self._end_design(why)
        exp.status = "over_budget"  # not told: a resume asks for it again
        return False

    def _feed_short(self, exp: Experiment, t_s: float) -> str | None:
        """Why a pump's feed would run dry (None: it will not): what this session pumped,
        plus the experiment (its estimate and twice the steady window for reaching steady
        state), plus the end phases at the base recipe's flows for every wait's full
        timeout (flush, cool), against the line's ``feed_volume_ml``.  A session starts
        with the feeds full (the operator refills them before a resume)."""
        _, flows, _ = flows_of(with_condition(self.base, exp.condition), self.line)
        worst_s = t_s + 2.0 * self.campaign.steady_window_s
        for pump, flow in flows.items():
            have = self.line.modules[pump].params.get("feed_volume_ml")
            if have is None:
                continue
            need = (
                self.pumped_ml.get(pump, 0.0)
                + flow * worst_s / 60.0
                + self._base_flows.get(pump, 0.0) * self._end_s / 60.0
            )
            if need > have:
                return (
                    f"the feed of {pump} would run dry: {have:g} mL loaded, "
                    f"{self.pumped_ml.get(pump, 0.0):.0f} mL pumped, {need:.0f} mL needed "
                    "with the next experiment and the end phases: refill the feeds, then "
                    "skid campaign resume"
                )
        return None

    # --- steps --------------------------------------------------------------------------

    def steps_for(self, exp: Experiment) -> list[tuple[str, Step]]:
        """The experiment as steps of the running recipe (phase ``experiment-N``)."""
        c = self.campaign
        candidate = with_condition(self.base, exp.condition)
        phase = f"experiment-{exp.index}" + ("-replicate" if exp.kind == "replicate" else "")
        key = f"experiments[{exp.index}]"
        names = (
            f"experiment {exp.index}: set conditions",
            f"experiment {exp.index}: steady",
            f"experiment {exp.index}: measure",
        )
        exp.step_names = names
        tau_s = candidate.conditions.residence_time_min * 60.0
        steady = tuple(
            SteadySpec(s.module, s.channel, c.steady_window_s, s.tolerance_abs, s.tolerance_rel)
            for s in c.steady_signals
        )
        conds = ", ".join(f"{k} {v:.4g}" for k, v in exp.condition.items())
        return [
            (
                phase,
                Step(
                    names[0],
                    key,
                    valve="waste",
                    sets=tuple(condition_setpoints(self.base, candidate, self.line)),
                    note=conds,
                ),
            ),
            (
                phase,
                Step(
                    names[1],
                    key,
                    wait=Wait(residence_times=c.min_residence_times, steady=steady),
                    timeout_s=c.min_residence_times * tau_s + c.steady_timeout_s,
                    on_timeout="continue",
                ),
            ),
            (
                phase,
                Step(
                    names[2],
                    key,
                    wait=Wait(seconds=c.measure.window_s),
                    timeout_s=c.measure.window_s + 60.0,
                ),
            ),
        ]

    # --- fed by the running recipe -----------------------------------------------------

    def first(self) -> Experiment | None:
        """Plan the first experiment before the line starts (its condition sets the start
        phases' flows and temperature)."""
        self.queued = self.plan_next()
        return self.queued

    def next_steps(self, now_ms: int, history: list[dict]) -> list[tuple[str, Step]]:
        """Sequencer.feed's feeder: close the experiment that just ran, start the next."""
        if self.current is not None:
            self._close(now_ms, history)
        exp = self.queued if self.queued is not None else self.plan_next()
        self.queued = None
        if exp is None:
            return self._back_to_base()
        exp.status = "running"
        exp.run_id = self.run_id
        exp.start_s = now_ms / 1000.0
        exp.total_flow_ml_min = flows_of(with_condition(self.base, exp.condition), self.line)[0]
        self.current = exp
        return self.steps_for(exp)

    def _back_to_base(self) -> list[tuple[str, Step]]:
        """After the last experiment, once: the base recipe's setpoints again, so its end
        phases (flush, cool ...) run at the flows and temperature they were written for."""
        if self._returned:
            return []
        self._returned = True
        sets = tuple(condition_setpoints(self.base, self.base, self.line))
        step = Step("back to the base recipe's conditions", "experiments.end", sets=sets)
        return [("campaign-end", step)]

    def observe(
        self, now_ms: int, step: str | None, value: float | None, flows: dict | None = None
    ) -> None:
        """One tick: the analyzer's reading while the measuring step runs; ``flows``
        (pump -> mL/min read) integrated into ``pumped_ml`` for the feed check."""
        if flows is not None and self._last_ms is not None and now_ms > self._last_ms:
            dt_min = (now_ms - self._last_ms) / 60000.0
            for pump, flow in flows.items():
                if flow is not None and flow > 0:
                    self.pumped_ml[pump] = self.pumped_ml.get(pump, 0.0) + flow * dt_min
        self._last_ms = now_ms
        exp = self.current
        if exp is not None and step == exp.step_names[2] and value is not None:
            exp.samples.append(float(value))

    def _close(self, now_ms: int, history: list[dict]) -> None:
        exp = self.current
        self.current = None
        self._account(exp, now_ms)
        steady = [h for h in history if h["step"] == exp.step_names[1]]
        if steady and steady[-1]["result"] == "timeout":
            exp.status = "failed"
            exp.reason = f"not steady within {self.campaign.steady_timeout_s:g} s"
        elif not exp.samples:
            exp.status = "failed"
            exp.reason = (
                f"no reading of {self.campaign.measure.module}.{self.campaign.measure.channel}"
            )
        else:
            exp.absorbance = sum(exp.samples) / len(exp.samples)
            candidate = with_condition(self.base, exp.condition)
            exp.results = results_of(exp.absorbance, candidate, self.line, self.campaign.measure)
            exp.status = "ok"
        self._finish(exp)

    def _account(self, exp: Experiment, now_ms: int) -> None:
        exp.end_s = now_ms / 1000.0
        exp.line_time_s = exp.end_s - (exp.start_s or exp.end_s)
        exp.reagent_ml = exp.total_flow_ml_min * exp.line_time_s / 60.0
        self.totals.line_time_s += exp.line_time_s
        self.totals.reagent_ml += exp.reagent_ml
        if exp.kind == "design":
            self.totals.experiments += 1

    def _finish(self, exp: Experiment) -> None:
        """Record the experiment; tell a design experiment's outcome to the strategy."""
        self.experiments.append(exp)
        self.sink("experiment", exp.as_dict())
        if exp.kind != "design":
            return
        results = exp.results if exp.status == "ok" else None
        self.strategy.tell(exp.condition, results, exp.status, exp.reason)
        self.sink("state", {"strategy": self.strategy.state(), "after": exp.index})

    def on_end(self, now_ms: int, outcome: str, reason: str) -> None:
        """The run ended.  Aborted with an experiment running: that experiment failed with
        the run's reason (a trip's cause, the operator's abort)."""
        exp = self.current
        if exp is None:
            return
        self.current = None
        self._account(exp, now_ms)
        exp.status = "failed"
        exp.reason = reason or f"the run ended {outcome}"
        self._finish(exp)
