"""The line's safety envelope: may a campaign run this condition at all?

A campaign's optimiser proposes conditions; none reaches a module before
``check_condition`` has passed it.  The checks (``CHECKS``, each a function of one
``Case``) are those of a recipe plus two a campaign adds:

* ``recipe_and_line``: everything ``skid plan`` refuses (``host/recipe/plan.py`` and
  ``host/linecheck.py``): the modules' setpoint and pump ranges, the ratings against the
  regulated pressure and the pumps, the feed the experiment draws against what is left
  in each bottle (pass the line with the feed left: ``line_with_feed_left``), the
  collection vessel; the boiling check is left to ``boiling_margin``;
* ``boiling_margin``: the solvent boils at least ``BOILING_MARGIN_C`` above the hottest
  reactor setpoint at the regulated pressure (``skid plan``'s own check, code
  ``solvent_boils``);
* ``trip_margin``: the setpoint is at most each reactor's over-temperature trip limit
  (its board config's "above" interlocks on degC channels) less ``TRIP_MARGIN_K``;
* ``adiabatic``: if the cooling failed, the reaction would heat the coil by
  ``dT_ad = -dH c_lim / (rho cp)`` (kJ/mol x mol/L = J/mL, over g/mL x J/(g K));
  ``T + dT_ad`` must stay below the boiling point at the line pressure and below the
  onset temperature of decomposition less its margin (``Thermo``: the campaign file's
  ``[safety]``).

Each reason starts with its check's name (``"trip_margin: ..."``) and says the value, the
limit and what is allowed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from host.linecheck import solvent_boiling_point_c, solvent_name
from host.plan import checked_recipe
from line.loader import module_config
from line.solvents import UnknownSolventError, gauge_to_absolute

TRIP_MARGIN_K = 10.0


@dataclass(frozen=True)
class Thermo:
    """The reaction's thermal data (campaign file ``[safety]``): reaction enthalpy
    ``dh_kj_mol`` (negative: exothermic) per mole of the limiting reagent, the mixture's
    heat capacity ``cp_j_g_k`` and density ``density_g_ml``, the onset temperature of
    decomposition ``onset_c`` and the margin kept below it ``onset_margin_k``."""

    dh_kj_mol: float
    cp_j_g_k: float
    density_g_ml: float
    onset_c: float
    onset_margin_k: float = 50.0

    def adiabatic_rise_k(self, conc_limiting_mol_l: float) -> float:
        """The temperature rise if all of the limiting reagent reacted with no cooling."""
        return -self.dh_kj_mol * conc_limiting_mol_l / (self.density_g_ml * self.cp_j_g_k)


@dataclass
class Case:
    """One condition as the checks see it: the line, the recipe, its plan, its operating
    point (hottest setpoint, pressure), the line check's report and the thermal data."""

    line: object
    recipe: object
    plan: object
    point: object
    report: object
    thermo: Thermo | None
    where: str


def recipe_and_line(case: Case) -> list[str]:
    out = [f"recipe: {e}" for e in case.plan.errors]
    out += [
        f"line {case.where} [{i.code}]: {i.message}"
        for i in case.report.errors
        if i.code != "solvent_boils"
    ]
    return out


def boiling_margin(case: Case) -> list[str]:
    return [f"boiling_margin: {i.message}" for i in case.report.errors if i.code == "solvent_boils"]


def trip_limits(line, reactor: str) -> list[tuple[str, float]]:
    """(interlock id, limit) of the reactor's "above" interlocks on degC channels."""
    data, _ = module_config(line, reactor)
    units = {ch["name"]: ch.get("unit", "") for ch in data["channels"]}
    return [
        (il["id"], float(il["limit"]))
        for il in data.get("interlocks") or []
        if il.get("condition") == "above"
        and il.get("limit") is not None
        and units.get(il.get("channel")) == "degC"
    ]


def trip_margin(case: Case) -> list[str]:
    t = case.point.temperature_c
    out = []
    for reactor in case.line.modules_of("reactor"):
        for il_id, limit in trip_limits(case.line, reactor.id):
            if t > limit - TRIP_MARGIN_K:
                out.append(
                    f"trip_margin: temperature {t:g} degC is within {TRIP_MARGIN_K:g} K of "
                    f"{reactor.id}'s over-temperature trip {il_id} ({limit:g} degC, "
                    f"{reactor.board}): allowed <= {limit - TRIP_MARGIN_K:g} degC"
                )
    return out


def limiting_concentration(recipe, plan) -> float:
    """The limiting reagent's (fewest equivalents) concentration in the coil, mol/L."""
    if not recipe.reagents:
        return 0.0
    limiting = min(recipe.reagents.values(), key=lambda r: r.equivalents).name
    return plan.mix_concentration_mol_l.get(limiting, 0.0)


def boiling_point_c(case: Case) -> float | None:
    """The solvent's boiling point at the regulated pressure (``skid plan``'s model)."""
    name, _ = solvent_name(case.line, case.recipe.solvent)
    if name is None:
        return None
    try:
        return solvent_boiling_point_c(case.line, name, gauge_to_absolute(case.point.pressure_bar))
    except UnknownSolventError:
        return None


def adiabatic(case: Case) -> list[str]:
    th = case.thermo
    if th is None:
        return ["adiabatic: no thermal data ([safety]): the adiabatic rise cannot be checked"]
    c_lim = limiting_concentration(case.recipe, case.plan)
    rise = th.adiabatic_rise_k(c_lim)
    t = case.point.temperature_c
    top = t + rise
    head = (
        f"adiabatic: {t:g} degC + adiabatic rise {rise:.1f} K (dH {th.dh_kj_mol:g} kJ/mol x "
        f"{c_lim:.3g} mol/L / ({th.density_g_ml:g} g/mL x {th.cp_j_g_k:g} J/(g K))) = {top:.1f} degC"
    )
    out = []
    bp = boiling_point_c(case)
    if bp is None:
        out.append(f"{head}; the solvent's boiling point is not known: cannot be checked")
    elif top >= bp:
        out.append(
            f"{head} reaches the boiling point {bp:.1f} degC at {case.point.pressure_bar:g} "
            f"bar: allowed < {bp - rise:.1f} degC at this concentration"
        )
    limit = th.onset_c - th.onset_margin_k
    if top >= limit:
        out.append(
            f"{head} reaches the onset of decomposition {th.onset_c:g} degC less "
            f"{th.onset_margin_k:g} K: allowed < {limit - rise:.1f} degC at this concentration"
        )
    return out


CHECKS = (recipe_and_line, boiling_margin, trip_margin, adiabatic)


def check_condition(prep_line, recipe, thermo: Thermo | None, line_path=None) -> list[str]:
    """Why ``recipe`` (a loaded host recipe with the candidate condition substituted)
    may not run on ``prep_line`` (the loaded line, its pumps' ``feed_volume_ml`` being
    the feed left); empty: feasible.  ``line_path`` only names the line in messages."""
    plan, point, report = checked_recipe(recipe, prep_line)
    where = str(line_path or prep_line.file or prep_line.id)
    case = Case(prep_line, recipe, plan, point, report, thermo, where)
    return [reason for check in CHECKS for reason in check(case)]


def line_with_feed_left(line, used_ml: dict[str, float]):
    """A copy of ``line`` whose pumps' ``feed_volume_ml`` is less what ``used_ml``
    (pump -> mL) says earlier experiments drew."""
    out = copy.copy(line)
    out.modules = dict(line.modules)
    for pump, used in used_ml.items():
        comp = copy.copy(line.modules[pump])
        comp.params = dict(comp.params)
        if "feed_volume_ml" in comp.params:
            comp.params["feed_volume_ml"] = max(0.0, comp.params["feed_volume_ml"] - used)
        out.modules[pump] = comp
    return out
