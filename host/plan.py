"""The plan of a run, before anything moves (``skid plan LINE RECIPE``).

What a recipe will do on a line, derived from its chemistry and the line's geometry:

* the pump flows and the concentrations in the coil (``host/recipe/plan.py``:
  ``Q = V / tau`` split so that each reagent's flow times its concentration is
  proportional to its equivalents);
* the residence time in the reactor, with its spread, and the transit from the reactor's
  inlet to the product valve (the line's residence-time model, ``line/rtd.py``);
* each phase's length: at least (fixed waits, a signal's ``for_s``, a steady window, the
  volume or residence times a wait needs at the planned flow; a wait on a signal may be
  over at once) and at most (every open-ended wait running to its timeout), and so the
  run time;
* the feed each pump draws (at least / at most) against what the line file says is
  loaded (``feed_volume_ml``), and the product volume sent to the collection vessel;
* the boiling margin: the solvent's boiling point at the regulated pressure against the
  hottest reactor setpoint, with the model ``skid check`` uses
  (``host.linecheck.solvent_boiling_point_c``: the Antoine data of ``line/solvents.py``,
  or a custom solvent table's own Clausius-Clapeyron constants).

``make_plan(line, recipe)`` returns it as plain JSON-ready data: ``skid plan --json``
prints it, ``plan_lines`` words it, ``skid run``/``skid demo`` print those lines at the
start and store the data in the run record as a ``plan`` note (``recorded_plan`` reads
it back).
"""

from __future__ import annotations

import math

from host.linecheck import BOILING_MARGIN_C, check_line, solvent_boiling_point_c, solvent_name
from host.recipe import RecipePlan, operating_point, plan_recipe, recipe_warnings
from host.runtext import wait_text
from line.rtd import Rtd
from line.solvents import UnknownSolventError, gauge_to_absolute

PLAN_NOTE = "plan"  # the kind of the run record's note that holds the plan
TRANSIT_QUANTILES = (0.01, 0.99)


def checked_recipe(recipe, line):
    """``recipe`` planned on ``line`` and the line checked at its operating point:
    (RecipePlan, operating point, line check report) -- what a run or a campaign's
    candidate condition must pass before anything is sent."""
    rp = plan_recipe(recipe, line)
    point = operating_point(recipe, line)
    report = check_line(
        line,
        temperature_c=point.temperature_c,
        pressure_bar=point.pressure_bar,
        flows_ml_min=rp.pump_flows if not rp.errors else None,
        solvent=recipe.solvent,
        origin=point.origin,
    )
    return rp, point, report


def make_plan(line, recipe) -> dict:
    """The plan of ``recipe`` on ``line`` (both loaded); ``ok`` is false and ``errors``
    lists why when the run would be refused (then only what can still be derived is
    filled in: the rest is None or empty)."""
    rp, point, report = checked_recipe(recipe, line)
    errors = list(rp.errors) + [i.message for i in report.errors]
    warnings = recipe_warnings(recipe, line) + [i.message for i in report.warnings]
    estimated = not rp.errors  # plan_recipe walks the phases only for a recipe that fits
    cond = recipe.conditions
    return {
        "ok": not errors,
        "line": {"id": line.id, "file": _path(line.file)},
        "recipe": {"name": recipe.name, "file": _path(recipe.file)},
        "conditions": {
            "reactor": rp.reactor or None,
            "reactor_volume_ml": rp.reactor_volume_ml,
            "residence_time_s": rp.residence_time_s,
            "total_flow_ml_min": rp.total_flow_ml_min,
            "temperature_c": cond.temperature_c,
            "pressure_bar": cond.pressure_bar,
        },
        "reagents": _reagents(recipe, rp),
        "pump_flows_ml_min": dict(rp.pump_flows),
        "residence": _residence(line, rp) if rp.reactor else None,
        "to_outlet": _to_outlet(line, rp) if rp.reactor else None,
        "phases": _phases(recipe, rp) if estimated else [],
        "run_time": _run_time(rp) if estimated else None,
        "feeds": _feeds(line, recipe, rp) if estimated else [],
        "product": _product(line, recipe, rp) if estimated else None,
        "boiling": _boiling(line, recipe, point),
        "errors": errors,
        "warnings": warnings,
    }


def _path(path) -> str | None:
    return None if path is None else str(path)


def _reagents(recipe, rp: RecipePlan) -> list[dict]:
    """Each reagent: its pump, feed concentration, equivalents, derived flow and its
    concentration in the combined stream; the limiting one has the fewest equivalents."""
    limiting = _limiting(recipe)
    return [
        {
            "name": r.name,
            "pump": r.pump,
            "concentration_mol_l": r.concentration_mol_l,
            "equivalents": r.equivalents,
            "flow_ml_min": rp.flows[r.name],
            "coil_concentration_mol_l": rp.mix_concentration_mol_l[r.name],
            "limiting": r.name == limiting,
        }
        for r in recipe.reagents.values()
    ]


def _limiting(recipe) -> str | None:
    reagents = list(recipe.reagents.values())
    return min(reagents, key=lambda r: r.equivalents).name if reagents else None


def _transit(t) -> dict:
    lo, hi = TRANSIT_QUANTILES
    return {
        "mean_s": t.mean_s,
        "sd_s": math.sqrt(t.variance_s2),
        "p01_s": t.quantile(lo),
        "p99_s": t.quantile(hi),
    }


def _residence(line, rp: RecipePlan) -> dict | None:
    """The reactor's residence time at the planned flows: V/Q and the spread of its
    tanks-in-series model."""
    if not rp.pump_flows:
        return None
    t = Rtd(line, rp.pump_flows).transit(rp.reactor, rp.reactor, through_a=True)
    if not math.isfinite(t.mean_s):
        return None
    _, volume, flow, tanks = t.stages[0]
    model = {"reactor": rp.reactor, "volume_ml": volume, "flow_ml_min": flow, "tanks": tanks}
    return model | _transit(t)


def _to_outlet(line, rp: RecipePlan) -> dict | None:
    """From the reactor's inlet to the product valve's outlet: when what enters the coil
    can first be collected, and when nearly all of it has passed."""
    coll = rp.collector
    if coll is None or not rp.pump_flows:
        return None
    rtd = Rtd(line, rp.pump_flows)
    try:
        t = rtd.transit(rp.reactor, coll.module, through_a=True)
    except ValueError:  # the valve is not downstream of the reactor
        return None
    if not math.isfinite(t.mean_s):
        return None
    return {"from": rp.reactor, "to": coll.module} | _transit(t)


def _phases(recipe, rp: RecipePlan) -> list[dict]:
    out = []
    for phase, est in zip(recipe.phases, rp.phases, strict=True):
        # resolved: 'reactor1.temperature ≥ 78 °C', not '>= temperature - 2'
        waits = [wait_text(st.wait, rp, recipe) for st in phase.steps if st.wait is not None]
        out.append(
            {
                "name": phase.name,
                "least_s": est.least_s,
                "nominal_s": est.nominal_s,
                "worst_s": est.worst_s,
                "waits": waits,
            }
        )
    return out


def _run_time(rp: RecipePlan) -> dict:
    return {
        "least_s": sum(p.least_s for p in rp.phases),
        "worst_s": sum(p.worst_s for p in rp.phases),
    }


def _feeds(line, recipe, rp: RecipePlan) -> list[dict]:
    """What each pump draws from its feed, against what the line file says is loaded."""
    out = []
    for pump in rp.pumps:
        reagent = next((r.name for r in recipe.reagents.values() if r.pump == pump), None)
        loaded = line.modules[pump].params.get("feed_volume_ml")
        worst = rp.consumption_ml.get(pump, 0.0)
        out.append(
            {
                "pump": pump,
                "reagent": reagent,
                "least_ml": rp.least_consumption_ml.get(pump, 0.0),
                "worst_ml": worst,
                "loaded_ml": loaded,
                "spare_ml": None if loaded is None else loaded - worst,
            }
        )
    return out


def _product(line, recipe, rp: RecipePlan) -> dict | None:
    """The volume sent to the collection vessel, and the limiting reagent in it."""
    coll = rp.collector
    if coll is None or coll.collect_position is None:
        return None
    outlets = line.modules[coll.module].params.get("outlets", [])
    limiting = _limiting(recipe)
    conc = rp.mix_concentration_mol_l.get(limiting, 0.0) if limiting else 0.0
    return {
        "valve": coll.module,
        "vessel": outlets[coll.collect_position],
        "vessel_ml": coll.vessel_ml,
        "nominal_ml": rp.collected_ml,
        "worst_ml": rp.worst_collected_ml,
        "limiting_reagent": limiting,
        "limiting_mmol": rp.collected_ml * conc,  # mL x mol/L = mmol
    }


def _boiling(line, recipe, point) -> dict | None:
    """The solvent's boiling point at the regulated pressure against the hottest reactor
    setpoint (``skid check`` refuses less than ``BOILING_MARGIN_C``)."""
    name, source = solvent_name(line, recipe.solvent)
    if name is None:
        return None
    p_abs = gauge_to_absolute(point.pressure_bar)
    try:
        bp = solvent_boiling_point_c(line, name, p_abs)
    except UnknownSolventError:
        return None  # check_line reports it among the errors
    margin = bp - point.temperature_c
    return {
        "solvent": name,
        "source": source,
        "pressure_bar": point.pressure_bar,
        "pressure_abs_bar": p_abs,
        "boiling_point_c": bp,
        "temperature_c": point.temperature_c,
        "temperature_from": point.origin.get("temperature_c"),
        "margin_c": margin,
        "required_margin_c": BOILING_MARGIN_C,
        "ok": margin > BOILING_MARGIN_C,
    }


def recorded_plan(record) -> dict | None:
    """The plan stored in a run record (``RunRecord``), or None (a run from before plans
    were recorded)."""
    for note in record.notes():
        if note.get("kind") == PLAN_NOTE and isinstance(note.get("data"), dict):
            return note["data"]
    return None


def plan_summary(plan: dict) -> str:
    """One line: the note's text in the run record."""
    c = plan["conditions"]
    parts = [
        f"{c['total_flow_ml_min']:.4g} mL/min through {c['reactor']} "
        f"({c['residence_time_s']:.4g} s), {c['temperature_c']:g} degC, {c['pressure_bar']:g} bar"
    ]
    if plan.get("run_time"):
        rt = plan["run_time"]
        parts.append(f"{rt['least_s']:.0f}..{rt['worst_s']:.0f} s")
    if plan.get("product"):
        parts.append(f"{plan['product']['nominal_ml']:.4g} mL product")
    return "plan: " + ", ".join(parts)


# --- in words ------------------------------------------------------------------------------


def _g(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _min(seconds: float) -> str:
    return f"{seconds:.0f} s ({seconds / 60.0:.1f} min)"


def _columns(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Rows of cells as left-aligned columns (the last column is not padded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        (
            indent
            + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False))
            + "  "
            + r[-1]
        ).rstrip()
        for r in rows
    ]


def plan_lines(plan: dict, findings: bool = True) -> list[str]:
    """The plan in words, as ``skid plan`` prints it (and ``skid run`` at its start);
    ``findings``: with the errors and warnings at the end."""
    out = [
        f"Plan: recipe {plan['recipe']['name']} on line {plan['line']['id']}"
        + ("" if plan["ok"] else " (the run would be refused: see the errors below)")
    ]
    for part in (_flow_lines, _residence_lines, _phase_lines, _feed_lines, _product_lines):
        out += part(plan)
    if plan["run_time"] is None:
        out += ["", "Phases, run time, feeds and product: worked out once the recipe fits the line"]
    out += _boiling_lines(plan["boiling"])
    if not findings:
        return out
    if plan["errors"]:
        out += ["", "Errors (the run would be refused):"] + [f"  - {e}" for e in plan["errors"]]
    if plan["warnings"]:
        out += ["", "Warnings:"] + [f"  - {w}" for w in plan["warnings"]]
    return out


def _flow_lines(plan: dict) -> list[str]:
    c = plan["conditions"]
    tau_min = c["residence_time_s"] / 60.0
    head = (
        f"Flows: {_g(c['total_flow_ml_min'])} mL/min in all, so that "
        f"{c['reactor'] or '(no reactor)'} ({_g(c['reactor_volume_ml'])} mL) holds each "
        f"parcel {tau_min:g} min; at {c['temperature_c']:g} degC and {c['pressure_bar']:g} bar"
    )
    rows = [["reagent", "pump", "feed mol/L", "equivalents", "flow mL/min", "in the coil mol/L"]]
    for r in plan["reagents"]:
        rows.append(
            [
                r["name"],
                r["pump"],
                _g(r["concentration_mol_l"]),
                _g(r["equivalents"]),
                _g(r["flow_ml_min"]),
                _g(r["coil_concentration_mol_l"]) + ("  (limiting)" if r["limiting"] else ""),
            ]
        )
    return ["", head] + _columns(rows)


def _residence_lines(plan: dict) -> list[str]:
    res, out_t = plan["residence"], plan["to_outlet"]
    if res is None:
        return []
    out = [
        "",
        "Residence time (line/rtd.py: tanks in series):",
        f"  in {res['reactor']}: {res['mean_s']:.1f} s mean ({_g(res['volume_ml'])} mL / "
        f"{_g(res['flow_ml_min'])} mL/min), sd {res['sd_s']:.1f} s; 1 % of it leaves within "
        f"{res['p01_s']:.1f} s, 99 % within {res['p99_s']:.1f} s",
    ]
    if out_t is not None:
        out.append(
            f"  {out_t['from']} inlet to {out_t['to']}: {out_t['mean_s']:.1f} s mean; the "
            f"first 1 % arrives after {out_t['p01_s']:.1f} s, 99 % by {out_t['p99_s']:.1f} s"
        )
    return out


def _phase_lines(plan: dict) -> list[str]:
    if not plan["phases"]:
        return []
    rows = [["phase", "at least", "at most", "waits for"]]
    for p in plan["phases"]:
        rows.append(
            [p["name"], f"{p['least_s']:.0f} s", f"{p['worst_s']:.0f} s", "; ".join(p["waits"])]
        )
    rt = plan["run_time"]
    return (
        [
            "",
            "Phases (at least: a wait on a signal may be met at once, but must hold for its "
            "for_s or steady window; at most: every wait running to its timeout):",
        ]
        + _columns(rows)
        + [f"  run time: at least {_min(rt['least_s'])}, at most {_min(rt['worst_s'])}"]
    )


def _feed_lines(plan: dict) -> list[str]:
    if not plan["feeds"]:
        return []
    rows = [["pump", "reagent", "at least mL", "at most mL", "loaded mL", "spare at most mL"]]
    for f in plan["feeds"]:
        rows.append(
            [
                f["pump"],
                f["reagent"] or "-",
                f"{f['least_ml']:.1f}",
                f"{f['worst_ml']:.1f}",
                _g(f["loaded_ml"]),
                "-" if f["spare_ml"] is None else f"{f['spare_ml']:.1f}",
            ]
        )
    return ["", "Feeds (drawn from each pump's feed):"] + _columns(rows)


def _product_lines(plan: dict) -> list[str]:
    p = plan["product"]
    if p is None:
        return []
    vessel = f"{p['vessel']}" + (f", {_g(p['vessel_ml'])} mL" if p["vessel_ml"] else "")
    out = [
        "",
        f"Product: {p['nominal_ml']:.1f} mL to collect ({p['valve']} -> {vessel}); at most "
        f"{p['worst_ml']:.1f} mL if the collection wait runs to its timeout",
    ]
    if p["limiting_reagent"]:
        out.append(
            f"  it carries {p['limiting_mmol']:.2f} mmol of {p['limiting_reagent']}, the "
            "limiting reagent"
        )
    return out


def _boiling_lines(b: dict | None) -> list[str]:
    if b is None:
        return ["", "Boiling margin: not known (no solvent with boiling-point data)"]
    verdict = (
        "ok"
        if b["ok"]
        else f"too close: skid check needs more than {b['required_margin_c']:g} degC"
    )
    return [
        "",
        f"Boiling margin: {b['solvent']} ({b['source']}) boils at {b['boiling_point_c']:.1f} degC "
        f"at {b['pressure_bar']:g} bar gauge ({b['pressure_abs_bar']:.2f} bar absolute), "
        f"{b['margin_c']:.1f} degC above the hottest reactor setpoint "
        f"({b['temperature_c']:g} degC): {verdict}",
    ]
