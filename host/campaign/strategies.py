"""What a campaign runs next: designed screens and Bayesian optimisation, seeded.

``make_strategy(kind, variables, objectives, seed, budget_experiments, **opts)`` gives a
``Strategy`` of one of ``KINDS``:

* ``factorial``: the full factorial of each variable's levels (``Variable.levels``: a
  count of evenly spaced levels or the values; default 3), ordered for the line
  (``order_for_line``);
* ``lhs``: a Latin hypercube of ``budget_experiments`` points (``scipy.stats.qmc``,
  seeded), ordered for the line;
* ``random``: uniform points, the i-th drawn from the generator seeded ``[seed, i]``;
* ``bayes``: Optuna's TPE sampler (``TPESampler(seed=seed, multivariate=True)``; opts
  ``startup``: random trials first, default 5); with several objectives the same sampler
  optimises them all (Optuna's multi-objective TPE), or NSGA-II with ``sampler="nsga2"``.

The loop: ``ask()`` gives the next condition (a dict of variable values) or None when
the design is done or the budget spent; the campaign checks it against the line's safety
envelope, runs it or not, and ``tell``s the outcome: ``"ok"`` with the objectives'
values, ``"infeasible"`` (refused before anything moved: the reason says why) or
``"failed"`` (it ran and tripped, or gave no result).  Until told, ``ask()`` gives the
same condition again.  The budget counts experiments that ran (ok or failed); refused
conditions do not use the line, so they do not count, but after ``max_infeasible``
(default 5 x budget) of them ``ask()`` gives up.

Infeasible and failed conditions are told to Optuna as COMPLETE trials with a penalty
value per objective: the worst value of that objective among the ok results so far (0
for a maximised objective before any), so TPE learns to avoid the region; an Optuna
FAIL would be ignored by the sampler, which would then propose the same region again.

``state()`` is JSON-able; ``restore(state)`` on a fresh strategy of the same kind, seed,
variables, objectives and budget replays the history (for ``bayes``: asks and tells
Optuna again in the same order, which reproduces the sampler's random stream), so a
resumed campaign continues exactly as the uninterrupted one would, without repeating a
finished experiment; an experiment asked but not told is asked again.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np

KINDS = ("factorial", "lhs", "random", "bayes")
OBJECTIVES = ("yield", "space_time_yield", "reagent_per_gram")
DIRECTIONS = ("max", "min")
STATUSES = ("ok", "infeasible", "failed")
STATE_VERSION = 1
# Order in which variables are held while the others move (order_for_line): the coil's
# temperature is slowest to change, a new residence time needs the coil refilled, a new
# concentration or ratio only new pump flows.
LINE_PRIORITY = ("temperature_c", "residence_time_min", "concentration_mol_l", "equivalents")


@dataclass(frozen=True)
class Variable:
    """A recipe condition a campaign varies between ``lo`` and ``hi``; ``levels`` (for
    factorial designs): a number of evenly spaced levels, or the values themselves."""

    name: str
    lo: float
    hi: float
    levels: int | tuple[float, ...] | None = None

    def level_values(self, default: int = 3) -> list[float]:
        n = default if self.levels is None else self.levels
        if isinstance(n, int):
            if n < 1:
                raise ValueError(f"{self.name}: levels = {n}: at least 1")
            return [self.lo] if n == 1 else list(np.linspace(self.lo, self.hi, n).tolist())
        return [float(v) for v in n]

    def to_json(self) -> dict:
        levels = list(self.levels) if isinstance(self.levels, tuple | list) else self.levels
        return {"name": self.name, "lo": self.lo, "hi": self.hi, "levels": levels}


@dataclass(frozen=True)
class Objective:
    """``name`` in ``OBJECTIVES``, ``direction`` "max" or "min"."""

    name: str
    direction: str = "max"

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"objective {self.name}: direction {self.direction!r}: max or min")

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "max" else a < b


def order_for_line(conditions: list[dict], variables) -> list[dict]:
    """``conditions`` in an order that saves solvent and time on the line: the slowest
    variable (``LINE_PRIORITY``: temperature first, rising, since heating is quicker than
    cooling) changes least often; within each of its levels the next one runs up and
    down in turn (a serpentine), and so on.  Continuous designs (every value distinct)
    are binned into about sqrt(n) levels per variable for this."""
    names = [v.name for v in variables]
    keys = sorted(names, key=lambda n: LINE_PRIORITY.index(n) if n in LINE_PRIORITY else 99)
    return _serpentine(list(conditions), keys, ascending=True)


def _levels_of(conditions, name):
    values = sorted({c[name] for c in conditions})
    bins = max(1, round(math.sqrt(len(conditions))))
    if len(values) <= bins:
        return lambda c: values.index(c[name])
    lo, hi = values[0], values[-1]
    width = (hi - lo) / bins or 1.0
    return lambda c: min(bins - 1, int((c[name] - lo) / width))


def _serpentine(conditions, keys, ascending):
    if not keys or len(conditions) <= 1:
        return conditions
    name, rest = keys[0], keys[1:]
    level = _levels_of(conditions, name)
    groups: dict[int, list] = {}
    for c in conditions:
        groups.setdefault(level(c), []).append(c)
    out = []
    for i, lvl in enumerate(sorted(groups, reverse=not ascending)):
        group = sorted(groups[lvl], key=lambda c: c[name], reverse=not ascending)
        out.extend(_serpentine(group, rest, ascending=(i % 2 == 0)))
    return out


class Strategy:
    """The ask/tell loop, the history, the budget and the best result (module text)."""

    kind = ""

    def __init__(self, variables, objectives, seed: int, budget_experiments: int, **opts):
        if not variables:
            raise ValueError("a strategy needs at least one variable")
        if not objectives:
            raise ValueError("a strategy needs at least one objective")
        for v in variables:
            if not v.lo <= v.hi:
                raise ValueError(f"{v.name}: lo {v.lo} > hi {v.hi}")
        self.variables = list(variables)
        self.objectives = list(objectives)
        self.seed = int(seed)
        self.budget = int(budget_experiments)
        self.opts = dict(opts)
        self.max_infeasible = int(opts.get("max_infeasible", 5 * max(self.budget, 1)))
        self.history: list[dict] = []
        self.pending: dict | None = None

    # --- the loop ------------------------------------------------------------------------

    def ask(self) -> dict | None:
        """The next condition, or None when done (design exhausted or budget spent)."""
        if self.pending is not None:
            return dict(self.pending)
        if self.ran() >= self.budget or self.refused() >= self.max_infeasible:
            return None
        cond = self._next()
        if cond is None:
            return None
        self.pending = cond
        return dict(cond)

    def tell(self, condition: dict, results: dict | None, status: str = "ok", reason: str = ""):
        """The outcome of the condition ``ask`` gave (module text)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r}: one of {', '.join(STATUSES)}")
        if self.pending is None or any(
            not math.isclose(condition.get(k, math.nan), v, rel_tol=1e-12, abs_tol=1e-12)
            for k, v in self.pending.items()
        ):
            raise ValueError(f"tell({condition}) does not answer the last ask ({self.pending})")
        if status == "ok":
            missing = [o.name for o in self.objectives if o.name not in (results or {})]
            if missing:
                raise ValueError(f"results lack the objectives {', '.join(missing)}")
            results = {o.name: float(results[o.name]) for o in self.objectives}
        record = {
            "condition": dict(self.pending),
            "results": results if status == "ok" else None,
            "status": status,
            "reason": reason,
        }
        self._told(record)
        self.history.append(record)
        self.pending = None

    def ran(self) -> int:
        """Experiments that used the line (ok or failed)."""
        return sum(1 for r in self.history if r["status"] != "infeasible")

    def refused(self) -> int:
        return sum(1 for r in self.history if r["status"] == "infeasible")

    def best(self) -> dict | None:
        """The recommended condition: the best ok result of the first objective."""
        record = self.best_record()
        return None if record is None else dict(record["condition"])

    def best_record(self) -> dict | None:
        first = self.objectives[0]
        best = None
        for r in self.history:
            if r["status"] == "ok" and (
                best is None or first.better(r["results"][first.name], best["results"][first.name])
            ):
                best = r
        return best

    def pareto(self) -> list[dict]:
        """The ok records no other ok record dominates (better or equal in every
        objective, better in one): the trade-off front when there are several."""
        ok = [r for r in self.history if r["status"] == "ok"]
        return [r for r in ok if not any(self._dominates(o, r) for o in ok if o is not r)]

    def _dominates(self, a: dict, b: dict) -> bool:
        va, vb = a["results"], b["results"]
        if any(o.better(vb[o.name], va[o.name]) for o in self.objectives):
            return False
        return any(o.better(va[o.name], vb[o.name]) for o in self.objectives)

    # --- resume ------------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything ``restore`` needs, as JSON-able data."""
        return {
            "version": STATE_VERSION,
            "kind": self.kind,
            "seed": self.seed,
            "budget": self.budget,
            "variables": [v.to_json() for v in self.variables],
            "objectives": [[o.name, o.direction] for o in self.objectives],
            "history": [dict(r) for r in self.history],
            "pending": None if self.pending is None else dict(self.pending),
        }

    def restore(self, state: dict) -> None:
        """Continue from ``state`` (of a strategy made with the same arguments)."""
        mine = self.state()
        for key in ("version", "kind", "seed", "budget", "variables", "objectives"):
            if _jsonish(state.get(key)) != _jsonish(mine[key]):
                raise ValueError(
                    f"state has {key} = {state.get(key)!r}, this strategy {mine[key]!r}"
                )
        if self.history or self.pending is not None:
            raise ValueError("restore needs a fresh strategy")
        for record in state["history"]:
            cond = self.ask()
            if cond is None or _jsonish(cond) != _jsonish(record["condition"]):
                raise ValueError(f"the history does not replay: asked {cond}, recorded {record}")
            self.tell(cond, record["results"], record["status"], record.get("reason", ""))
        if state.get("pending") is not None:
            cond = self.ask()
            if _jsonish(cond) != _jsonish(state["pending"]):
                raise ValueError(f"the pending condition does not replay: {cond}")

    # --- for the subclasses --------------------------------------------------------------------

    def _next(self) -> dict | None:
        raise NotImplementedError

    def _told(self, record: dict) -> None:
        """A subclass hears of an outcome (before it enters the history)."""

    def _scaled(self, unit) -> dict:
        return {
            v.name: float(v.lo + (v.hi - v.lo) * float(u))
            for v, u in zip(self.variables, unit, strict=True)
        }


def _jsonish(x):
    """``x`` as it comes back from JSON (tuples as lists, floats rounded to 12 digits)."""
    if isinstance(x, dict):
        return {k: _jsonish(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonish(v) for v in x]
    if isinstance(x, float):
        return float(f"{x:.12g}")
    return x


class _Design(Strategy):
    """A fixed list of conditions, run in order; refused ones are skipped."""

    def __init__(self, *args, **opts):
        super().__init__(*args, **opts)
        self.design = self._design()
        if opts.get("order", True):
            self.design = order_for_line(self.design, self.variables)

    def _design(self) -> list[dict]:
        raise NotImplementedError

    def _next(self):
        i = len(self.history)
        return dict(self.design[i]) if i < len(self.design) else None


class Factorial(_Design):
    kind = "factorial"

    def _design(self):
        default = int(self.opts.get("levels", 3))
        axes = [v.level_values(default) for v in self.variables]
        names = [v.name for v in self.variables]
        return [dict(zip(names, p, strict=True)) for p in itertools.product(*axes)]


class LatinHypercube(_Design):
    kind = "lhs"

    def _design(self):
        from scipy.stats import qmc

        sampler = qmc.LatinHypercube(d=len(self.variables), seed=self.seed)
        return [self._scaled(u) for u in sampler.random(max(self.budget, 1))]


class RandomSampling(Strategy):
    kind = "random"

    def _next(self):
        rng = np.random.default_rng([self.seed, len(self.history)])
        return self._scaled(rng.random(len(self.variables)))


class Bayes(Strategy):
    """Optuna: one trial per ask; the study lives in memory and is rebuilt on restore."""

    kind = "bayes"

    def __init__(self, *args, **opts):
        super().__init__(*args, **opts)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = int(opts.get("startup", 5))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if len(self.objectives) > 1 and opts.get("sampler") == "nsga2":
                sampler = optuna.samplers.NSGAIISampler(
                    seed=self.seed, population_size=int(opts.get("population_size", 8))
                )
            else:
                sampler = optuna.samplers.TPESampler(
                    seed=self.seed, multivariate=True, n_startup_trials=startup
                )
        self.study = optuna.create_study(
            sampler=sampler,
            directions=[
                "maximize" if o.direction == "max" else "minimize" for o in self.objectives
            ],
        )
        self.distributions = {
            v.name: optuna.distributions.FloatDistribution(v.lo, v.hi) for v in self.variables
        }
        self.trial = None

    def _next(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate TPE is "experimental"
            self.trial = self.study.ask(self.distributions)
        return {v.name: float(self.trial.params[v.name]) for v in self.variables}

    def _told(self, record):
        if record["status"] == "ok":
            values = [record["results"][o.name] for o in self.objectives]
        else:
            values = [self._penalty(o) for o in self.objectives]
        self.trial.set_user_attr("status", record["status"])
        self.study.tell(self.trial, values if len(values) > 1 else values[0])
        self.trial = None

    def _penalty(self, objective: Objective) -> float:
        seen = [r["results"][objective.name] for r in self.history if r["status"] == "ok"]
        if not seen:
            return 0.0 if objective.direction == "max" else 1e9
        return min(seen) if objective.direction == "max" else max(seen)


_KINDS = {"factorial": Factorial, "lhs": LatinHypercube, "random": RandomSampling, "bayes": Bayes}


def make_strategy(kind, variables, objectives, seed, budget_experiments, **opts) -> Strategy:
    """A new ``Strategy`` of ``kind`` (``KINDS``); see the module text for ``opts``."""
    if kind not in _KINDS:
        raise ValueError(f"strategy {kind!r}: one of {', '.join(KINDS)}")
    return _KINDS[kind](variables, objectives, seed, budget_experiments, **opts)
