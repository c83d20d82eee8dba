"""What a recipe's steps and waits say, as an operator reads them: every expression
(``temperature - 2``, ``pressure``, ``flow.amine``) resolved to its number and the unit of
the channel it applies to (``reactor1.temperature ≥ 78 °C``).  Used by the run
status (``host/runstatus.py``) and the coordinator's progress lines (``host/session.py``).
"""

from __future__ import annotations

_DISPLAY_UNITS = {"degC": "°C", "1": ""}


def display_unit(unit: str | None) -> str:
    """A channel's unit as shown to people: ``degC`` is ``°C``, a fraction (``1``) none."""
    if not unit:
        return ""
    return _DISPLAY_UNITS.get(unit, unit)


def _with_unit(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}" if unit else f"{value:.4g}"


def wait_text(wait, plan, recipe) -> str:
    """A step's wait with every expression resolved to a number and its unit, e.g.
    ``reactor1.temperature ≥ 78 °C`` (``plan``: the recipe's ``RecipePlan``)."""
    resolve = _resolver(plan, recipe)

    def unit_of(module: str, channel: str) -> str:
        return _unit_of(plan, module, channel)

    parts = []
    if wait.seconds is not None:
        parts.append(f"{wait.seconds:g} s")
    if wait.residence_times is not None:
        parts.append(f"{wait.residence_times:g} residence times")
    if wait.signal is not None:
        sig = ".".join(wait.signal)
        unit = unit_of(*wait.signal)
        tail = f" {unit}" if unit else ""
        if wait.target is not None:
            parts.append(f"{sig} = {resolve(wait.target)} ± {wait.band:g}{tail}")
        if wait.above is not None:
            parts.append(f"{sig} ≥ {resolve(wait.above)}{tail}")
        if wait.below is not None:
            parts.append(f"{sig} ≤ {resolve(wait.below)}{tail}")
        if wait.for_s:  # "for 0 s" says nothing
            parts[-1] += f" for {wait.for_s:g} s"
    for s in wait.steady:
        unit = unit_of(s.module, s.channel)
        tols = []
        if s.tolerance_abs is not None:
            tols.append(_with_unit(s.tolerance_abs, unit))
        if s.tolerance_rel is not None:
            tols.append(f"{s.tolerance_rel * 100:g} %")
        parts.append(
            f"{s.module}.{s.channel} steady within {' / '.join(tols)} over {s.window_s:g} s"
        )
    if wait.collected_ml is not None:
        parts.append(f"{wait.collected_ml:g} mL collected")
    return " and ".join(parts)


def phase_list(recipe, plan) -> list[dict]:
    """[{name, description, conditions}] of the recipe's phases, conditions resolved."""
    out = []
    for phase in getattr(recipe, "phases", None) or []:
        conditions = [wait_text(st.wait, plan, recipe) for st in phase.steps if st.wait]
        out.append(
            {"name": phase.name, "description": phase.description or "", "conditions": conditions}
        )
    return out


def _resolver(plan, recipe):
    def resolve(ref) -> str:
        try:
            return f"{plan.resolve(ref, recipe):.4g}"
        except (AttributeError, KeyError, TypeError):
            return str(ref)  # an expression the plan cannot resolve stays as written

    return resolve


def _unit_of(plan, module: str, channel: str) -> str:
    info = (plan.channels.get(module) or {}).get(channel) if plan is not None else None
    return display_unit(getattr(info, "unit", ""))


def _actions(step, resolve, describe, unit_of) -> list[str]:
    """A step's actions in the loader's words (``host/recipe/loader.py``), with values
    and waits given by ``resolve`` and ``describe``."""
    out = []
    if step.service is not None:
        out.append(step.service + ("" if step.modules is None else " " + ",".join(step.modules)))
    if step.valve is not None:
        out.append(f"outlet to {step.valve}")
    for sp in step.sets:
        unit = unit_of(sp.module, sp.channel)
        out.append(f"{sp.module}.{sp.channel}={resolve(sp.value)}" + (f" {unit}" if unit else ""))
    if step.wait is not None:
        out.append("wait " + describe(step.wait))
    return out


def step_text(step, plan, recipe) -> str:
    """The step's name; a name the loader made from its actions (no ``name`` in the
    file) is made again with every value resolved, with units."""
    auto = "; ".join(_actions(step, str, lambda w: w.describe(), lambda m, c: ""))
    if step.name != auto:
        return step.name  # the recipe author's own words
    resolve = _resolver(plan, recipe)
    return "; ".join(
        _actions(
            step, resolve, lambda w: wait_text(w, plan, recipe), lambda m, c: _unit_of(plan, m, c)
        )
    )


def find_step(recipe, phase: str | None, name: str | None):
    """The Step called ``name`` of ``phase`` (a recipe phase, or ``shutdown:<sequence>``)."""
    if recipe is None or phase is None or name is None:
        return None
    if phase.startswith("shutdown:"):
        groups = [s.steps for s in recipe.shutdowns if s.name == phase[len("shutdown:") :]]
    else:
        groups = [p.steps for p in recipe.phases if p.name == phase]
    return next((st for steps in groups for st in steps if st.name == name), None)


def current_step_text(recipe, plan, phase: str | None, name: str | None) -> str | None:
    """``step_text`` of the step the sequencer names (its name if not found)."""
    step = find_step(recipe, phase, name)
    return name if step is None else step_text(step, plan, recipe)
