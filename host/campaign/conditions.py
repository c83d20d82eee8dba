"""A campaign's conditions on a recipe: the base recipe with a candidate condition put in,
the campaign recipe (the base recipe's start and end phases around the experiments), the
setpoints one experiment sends, and what one measurement means (yield, space-time yield,
reagent per gram).  Pure functions, no I/O.  Reference: docs/campaigns.md."""

from __future__ import annotations

from dataclasses import replace

from host.recipe import Recipe, Setpoint, ValueRef, plan_recipe

# reagent_per_gram when nothing was made: a finite stand-in for "infinitely much" (JSON,
# optimisers).
NO_PRODUCT_ML_G = 1e9


def limiting_reagent(recipe: Recipe) -> str:
    """The reagent the yield is counted on: the one with the fewest equivalents (1.0)."""
    return min(recipe.reagents, key=lambda n: (recipe.reagents[n].equivalents, n))


def excess_reagent(recipe: Recipe) -> str | None:
    """The reagent whose equivalents the variable ``equivalents`` sets (B): the first
    other than the limiting one."""
    lim = limiting_reagent(recipe)
    others = [n for n in recipe.reagents if n != lim]
    return others[0] if others else None


def with_condition(recipe: Recipe, condition: dict[str, float]) -> Recipe:
    """``recipe`` with ``condition`` (variable name -> value) put in its conditions and
    reagents.  Unknown names raise KeyError (the loader allows only known ones)."""
    cond = recipe.conditions
    reagents = dict(recipe.reagents)
    for name, value in condition.items():
        if name == "temperature_c":
            cond = replace(cond, temperature_c=float(value))
        elif name == "residence_time_min":
            cond = replace(cond, residence_time_min=float(value))
        elif name == "equivalents":
            b = excess_reagent(recipe)
            if b is None:
                raise KeyError("equivalents: the recipe has a single reagent")
            reagents[b] = replace(reagents[b], equivalents=float(value))
        else:
            raise KeyError(name)
    return replace(recipe, conditions=cond, reagents=reagents)


def _collects(phase) -> bool:
    return phase.quality is not None or any(s.valve == "collect" for s in phase.steps)


def _waits_steady(phase) -> bool:
    return any(s.wait is not None and s.wait.steady for s in phase.steps)


def split_phases(recipe: Recipe) -> tuple[list, list]:
    """(start phases, end phases) of the base recipe: the phases before its first
    steady-state or collect phase (prime, pressurise, heat ...) and those after its last
    collect phase (flush, cool, depressurise, stop).  The experiments run between."""
    phases = list(recipe.phases)
    first = next((i for i, p in enumerate(phases) if _collects(p) or _waits_steady(p)), None)
    if first is None:
        return phases, []
    last = max((i for i, p in enumerate(phases) if _collects(p)), default=first)
    return phases[:first], phases[last + 1 :]


def campaign_recipe(base: Recipe) -> Recipe:
    """The recipe one campaign session runs: the base recipe's start phases, then (fed by
    the runner) the experiments and a return to the base recipe's conditions, then its end
    phases; all at the base recipe's conditions, which its own checks and timeouts fit."""
    start, end = split_phases(base)
    return replace(base, name=f"{base.name}+campaign", phases=start + end)


def experiment_recipe(base: Recipe, condition: dict[str, float]) -> Recipe:
    """What the safety envelope checks for one condition: the base recipe at the condition
    with only its start phases, whose condition setpoints are exactly what the experiment
    sends (flows, temperature, pressure).  The end phases run at the base recipe's own
    conditions (the runner returns to them), so their timeouts are not judged at this one."""
    start, _ = split_phases(base)
    return replace(with_condition(base, condition), phases=start)


def end_phase(base: Recipe) -> str | None:
    """The phase the experiments are fed before (None: the recipe's end)."""
    _, end = split_phases(base)
    return end[0].name if end else None


def condition_setpoints(base: Recipe, candidate: Recipe, line) -> list[Setpoint]:
    """The setpoints an experiment sends: every setpoint of the base recipe's start phases
    that refers to a condition (temperature, pressure, a flow), resolved for ``candidate``
    as numbers; the last one per channel wins."""
    plan = plan_recipe(candidate, line)
    start, _ = split_phases(base)
    out: dict[tuple[str, str], Setpoint] = {}
    for phase in start:
        for step in phase.steps:
            for sp in step.sets:
                if sp.value.quantity is None:
                    continue
                value = plan.resolve(sp.value, candidate)
                ref = ValueRef(number=value, text=f"{value:.6g}")
                out[(sp.module, sp.channel)] = Setpoint(sp.module, sp.channel, ref, sp.key)
    return list(out.values())


def flows_of(candidate: Recipe, line) -> tuple[float, dict[str, float], dict[str, float]]:
    """(total flow mL/min, pump -> mL/min, reagent -> mol/L in the combined stream)."""
    plan = plan_recipe(candidate, line)
    return plan.total_flow_ml_min, dict(plan.pump_flows), dict(plan.mix_concentration_mol_l)


def results_of(absorbance: float, candidate: Recipe, line, measure) -> dict[str, float]:
    """The objectives from the mean absorbance over the measuring window.

    Beer-Lambert with one interferent, the excess reagent B (``measure.interferent``):
    A / l = e_P [P] + e_I [B], with [B] = [B]0 - [P] (B is used only by A + B -> P; the
    degradation P -> D uses none), so [P] = (A / l - e_I [B]0) / (e_P - e_I).
    yield = [P] / [A]0; space-time yield = [P] Q / V (mol/(L h)); reagent per gram =
    1000 / ([P] M) (mL of feed solutions per g of P)."""
    total, _pumps, mix = flows_of(candidate, line)
    path_cm = measure.path_mm / 10.0
    e_p, e_i = measure.product_absorptivity, measure.interferent_absorptivity
    b0 = mix.get(measure.interferent, 0.0) if measure.interferent else 0.0
    if measure.interferent and e_i:
        p = (absorbance / path_cm - e_i * b0) / (e_p - e_i)
    else:
        p = absorbance / path_cm / e_p
    p = max(p, 0.0)
    a0 = mix[limiting_reagent(candidate)]
    volume_l = plan_recipe(candidate, line).reactor_volume_ml / 1000.0
    out = {
        "product_mol_l": p,
        "yield": p / a0 if a0 > 0 else 0.0,
        "space_time_yield": p * total * 60.0 / 1000.0 / volume_l,
    }
    mm = measure.product_molar_mass
    if mm:
        out["reagent_per_gram"] = 1000.0 / (p * mm) if p > 0 else NO_PRODUCT_ML_G
    return out
