"""Reading a recipe file into a ``host.recipe.model.Recipe``: types, ranges, names and
references, every problem at once (``RecipeError``), each naming file, key, line, value
and what is allowed.  Reference: docs/recipes.md."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge.boardconfig.core import (
    BAD,
    MISSING,
    ConfigErrors,
    Context,
    check_keys,
    choice,
    is_finite,
    number,
    parse_toml,
    read_text,
    string,
)
from host.recipe.model import (
    HOST_CAUSES,
    ON_TIMEOUT,
    SERVICE_COMMANDS,
    Conditions,
    Phase,
    QualityLimit,
    QualitySpec,
    Reagent,
    Recipe,
    RecipeError,
    Setpoint,
    ShutdownSequence,
    SteadySpec,
    Step,
    ValueRef,
    Wait,
)
from protocol.wire import ID_PATTERN

_REAGENT_RE = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")
_NUM = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?"
_REF_RE = re.compile(
    rf"\s*(?:({_NUM})\s*\*\s*)?([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)?)\s*(?:([+-])\s*({_NUM}))?\s*\Z"
)
_SIGNAL_RE = re.compile(r"(" + ID_PATTERN + r")\.([a-z_][a-z0-9_]*)\Z")  # module.channel

# --- loading -----------------------------------------------------------------------------


def _float(ctx, key, v, lo=None, hi=None, lo_open=False):
    """A number in range (the core's ``number``), or None after recording an error."""
    out = number(ctx, key, v, lo, hi, lo_open)
    return None if out is BAD else out


def _str(ctx, key, v, choices=None):
    """A non-empty one-line string, one of ``choices`` if given; None after an error."""
    out = string(ctx, key, v) if choices is None else choice(ctx, key, v, choices)
    return None if out is BAD else out


def _required(ctx, key, table, name):
    if name not in table:
        ctx.error(f"{key}.{name}", MISSING, "is required")
        return False
    return True


def _table(ctx, key, v) -> dict | None:
    if not isinstance(v, dict):
        ctx.error(key, v, "is not a table")
        return None
    return v


def _value_ref(ctx, key, v, quantities) -> ValueRef | None:
    if is_finite(v):
        return ValueRef(number=float(v), text=f"{v:g}")
    if isinstance(v, str):
        m = _REF_RE.match(v)
        if m and m.group(2) in quantities:
            factor = float(m.group(1)) if m.group(1) else 1.0
            offset = float(m.group(4)) if m.group(4) else 0.0
            if m.group(3) == "-":
                offset = -offset
            return ValueRef(quantity=m.group(2), factor=factor, offset=offset, text=v.strip())
        ctx.error(
            key,
            v,
            "is neither a number nor a known quantity",
            "a number, or [factor *] quantity [+|- offset] with quantity one of "
            + ", ".join(quantities),
        )
        return None
    ctx.error(key, v, "is not a number or a quantity name", ", ".join(quantities))
    return None


def _signal(ctx, key, v):
    if isinstance(v, str) and _SIGNAL_RE.match(v):
        module, channel = v.split(".", 1)
        return module, channel
    ctx.error(key, v, "is not a signal name", '"module.channel", e.g. "reactor1.temperature"')
    return None


_STEP_KEYS = (
    "name",
    "note",
    "service",
    "modules",
    "valve",
    "valve_module",
    "set",
    "wait",
    "timeout_s",
    "on_timeout",
    "abort_sequence",
)
_WAIT_KEYS = (
    "seconds",
    "residence_times",
    "signal",
    "target",
    "band",
    "above",
    "below",
    "for_s",
    "steady",
    "window_s",
    "tolerance_abs",
    "tolerance_rel",
    "collected_ml",
)


_STEADY_KEYS = ("signal", "window_s", "tolerance_abs", "tolerance_rel")


def _steady(ctx, key, raw) -> tuple[SteadySpec, ...]:
    """``steady`` is a signal, a list of signals (sharing the wait's window_s and
    tolerances) or a list of tables {signal, window_s, tolerance_abs, tolerance_rel}."""
    items = raw["steady"]
    if isinstance(items, str | dict):
        items = [items]
    if not isinstance(items, list) or not items:
        ctx.error(
            f"{key}.steady",
            raw["steady"],
            "is not a signal or a list of signals",
            '"module.channel", [...], or [{signal = ..., tolerance_abs = ...}, ...]',
        )
        return ()
    shared: dict[str, Any] = {}
    if "window_s" in raw:
        shared["window_s"] = _float(ctx, f"{key}.window_s", raw["window_s"], 1.0, 86400.0)
    for name in ("tolerance_abs", "tolerance_rel"):
        if name in raw:
            shared[name] = _float(ctx, f"{key}.{name}", raw[name], 0.0, None, lo_open=True)
    out = []
    for i, item in enumerate(items):
        ikey = f"{key}.steady[{i}]"
        spec = dict(shared)
        if isinstance(item, dict):
            check_keys(ctx, ikey, item, _STEADY_KEYS)
            if not _required(ctx, ikey, item, "signal"):
                continue
            sig = _signal(ctx, f"{ikey}.signal", item["signal"])
            if "window_s" in item:
                spec["window_s"] = _float(ctx, f"{ikey}.window_s", item["window_s"], 1.0, 86400.0)
            for name in ("tolerance_abs", "tolerance_rel"):
                if name in item:
                    spec[name] = _float(ctx, f"{ikey}.{name}", item[name], 0.0, None, True)
        else:
            sig = _signal(ctx, ikey, item)
        if sig is None or any(v is None for v in spec.values()):
            continue
        if spec.get("tolerance_abs") is None and spec.get("tolerance_rel") is None:
            ctx.error(
                ikey,
                item,
                "needs a tolerance",
                "tolerance_abs and/or tolerance_rel (on the signal or the wait)",
            )
            continue
        out.append(SteadySpec(sig[0], sig[1], **spec))
    return tuple(out)


def _wait(ctx, key, raw, quantities) -> Wait | None:
    raw = _table(ctx, key, raw)
    if raw is None:
        return None
    n_errors = len(ctx.errors)
    check_keys(ctx, key, raw, _WAIT_KEYS)
    kw: dict[str, Any] = {}
    for name in ("seconds", "residence_times", "collected_ml"):
        if name in raw:
            kw[name] = _float(ctx, f"{key}.{name}", raw[name], 0.0, None, lo_open=True)
    if "signal" in raw:
        kw["signal"] = _signal(ctx, f"{key}.signal", raw["signal"])
        forms = [n for n in ("target", "above", "below") if n in raw]
        if not forms:
            ctx.error(
                f"{key}.signal",
                raw["signal"],
                "needs a condition",
                "target (with band), above or below",
            )
        for name in forms:
            kw[name] = _value_ref(ctx, f"{key}.{name}", raw[name], quantities)
        if "target" in raw:
            if "band" not in raw:
                ctx.error(f"{key}.band", MISSING, "is required with target")
            else:
                kw["band"] = _float(ctx, f"{key}.band", raw["band"], 0.0, None)
        elif "band" in raw:
            ctx.error(f"{key}.band", raw["band"], "only goes with target")
        if "for_s" in raw:
            kw["for_s"] = _float(ctx, f"{key}.for_s", raw["for_s"], 0.0, 86400.0)
    else:
        for name in ("target", "band", "above", "below", "for_s"):
            if name in raw:
                ctx.error(f"{key}.{name}", raw[name], "needs signal", "signal = 'module.channel'")
    if "steady" in raw:
        kw["steady"] = _steady(ctx, key, raw)
    else:
        for name in ("window_s", "tolerance_abs", "tolerance_rel"):
            if name in raw:
                ctx.error(f"{key}.{name}", raw[name], "needs steady", "steady = 'module.channel'")
    if not any(
        n in raw for n in ("seconds", "residence_times", "signal", "steady", "collected_ml")
    ):
        ctx.error(
            key,
            raw,
            "waits for nothing",
            "seconds, residence_times, signal, steady and/or collected_ml",
        )
    if len(ctx.errors) != n_errors:
        return None
    return Wait(**kw)


def _step(ctx, key, raw, quantities, in_shutdown: bool) -> Step | None:
    raw = _table(ctx, key, raw)
    if raw is None:
        return None
    n_errors = len(ctx.errors)
    check_keys(ctx, key, raw, _STEP_KEYS)
    kw: dict[str, Any] = {"key": key}
    actions = []
    if "service" in raw:
        kw["service"] = _str(ctx, f"{key}.service", raw["service"], SERVICE_COMMANDS)
        actions.append(f"{raw['service']}")
        mods = raw.get("modules", "all")
        if mods == "all":
            kw["modules"] = None
        elif isinstance(mods, list) and mods and all(isinstance(m, str) for m in mods):
            kw["modules"] = tuple(mods)
            actions[-1] += " " + ",".join(mods)
        else:
            ctx.error(f"{key}.modules", mods, "is not a list of module ids", '"all" or [ids]')
    elif "modules" in raw:
        ctx.error(f"{key}.modules", raw["modules"], "needs service", "service = 'start' ...")
    if "valve" in raw:
        kw["valve"] = _str(ctx, f"{key}.valve", raw["valve"])
        actions.append(f"outlet to {raw['valve']}")
        if "valve_module" in raw:
            kw["valve_module"] = _str(ctx, f"{key}.valve_module", raw["valve_module"])
    elif "valve_module" in raw:
        ctx.error(f"{key}.valve_module", raw["valve_module"], "needs valve", "valve = 'collect'")
    if "set" in raw:
        table = _table(ctx, f"{key}.set", raw["set"])
        sets = []
        for name, v in (table or {}).items():
            skey = f"{key}.set.{name}" if "." not in name else f'{key}.set."{name}"'
            sig = _signal(ctx, skey, name)
            ref = _value_ref(ctx, skey, v, quantities)
            if sig is not None and ref is not None:
                sets.append(Setpoint(sig[0], sig[1], ref, skey))
                actions.append(f"{name}={ref}")
        if table is not None and not table:
            ctx.error(f"{key}.set", table, "sets nothing", '{"module.channel" = value, ...}')
        kw["sets"] = tuple(sets)
    if "wait" in raw:
        kw["wait"] = _wait(ctx, f"{key}.wait", raw["wait"], quantities)
        if kw["wait"] is not None:
            actions.append("wait " + kw["wait"].describe())
    if "timeout_s" in raw:
        kw["timeout_s"] = _float(ctx, f"{key}.timeout_s", raw["timeout_s"], 0.0, 7 * 86400.0, True)
    if "on_timeout" in raw:
        allowed = ON_TIMEOUT  # in a shutdown "hold" ends the sequence there (sequencer)
        kw["on_timeout"] = _str(ctx, f"{key}.on_timeout", raw["on_timeout"], allowed)
    elif in_shutdown:
        kw["on_timeout"] = "continue"
    if "abort_sequence" in raw:
        if in_shutdown:
            ctx.error(f"{key}.abort_sequence", raw["abort_sequence"], "has no use in a shutdown")
        kw["abort_sequence"] = _str(ctx, f"{key}.abort_sequence", raw["abort_sequence"])
    if "note" in raw:
        kw["note"] = _str(ctx, f"{key}.note", raw["note"])
    if not actions:
        ctx.error(key, raw, "does nothing", "service, valve, set and/or wait")
    if "name" in raw:
        kw["name"] = _str(ctx, f"{key}.name", raw["name"])
    else:
        kw["name"] = "; ".join(actions)
    if len(ctx.errors) != n_errors:
        return None
    return Step(**kw)


def _steps(ctx, key, raw, quantities, in_shutdown) -> list[Step]:
    if not isinstance(raw, list) or not raw or not all(isinstance(x, dict) for x in raw):
        ctx.error(key, raw, "is not a non-empty array of tables", f"[[{key}]] sections")
        return []
    out = []
    for i, s in enumerate(raw):
        step = _step(ctx, f"{key}[{i}]", s, quantities, in_shutdown)
        if step is not None:
            out.append(step)
    return out


_TOP = ("recipe", "conditions", "reagents", "phases", "shutdown")
_RECIPE_KEYS = ("name", "line", "line_file", "description", "solvent")
_CONDITION_KEYS = ("residence_time_min", "temperature_c", "pressure_bar", "reactor")
_REAGENT_KEYS = ("pump", "concentration_mol_l", "equivalents")
_PHASE_KEYS = ("name", "description", "abort_sequence", "steps", "quality")
_QUALITY_KEYS = ("limits", "resume_after_s", "max_divert_s")
_LIMIT_KEYS = ("signal", "min", "max", "tolerance_abs", "tolerance_rel", "for_s")
_SHUTDOWN_KEYS = ("name", "description", "on", "steps")


def load_recipe_text(text: str, filename: str = "<recipe>", base: Path | None = None) -> Recipe:
    """Validate TOML ``text``; raises RecipeError listing every problem found."""
    ctx = Context(filename, text)
    try:
        doc = parse_toml(ctx)
    except ConfigErrors as exc:
        raise RecipeError(exc.errors) from None
    check_keys(ctx, "", doc, _TOP)
    head = _head(ctx, doc, base)
    cond_vals, reactor = _conditions(ctx, doc)
    reagents, reagent_names = _reagents(ctx, doc)
    quantities = ["temperature", "pressure", "total_flow"] + [f"flow.{n}" for n in reagent_names]
    phases, raw_phases, phase_aborts = _phases(ctx, doc, quantities)
    shutdowns = _shutdowns(ctx, doc, quantities)
    _check_abort_refs(ctx, raw_phases, phase_aborts, shutdowns)
    if ctx.errors:
        raise RecipeError(ctx.errors)
    return Recipe(
        conditions=Conditions(reactor=reactor, **cond_vals),
        reagents=reagents,
        phases=phases,
        shutdowns=shutdowns,
        file=None if str(filename).startswith("<") else Path(filename),
        text=text,
        **head,
    )


def _head(ctx, doc, base: Path | None) -> dict[str, Any]:
    """The ``[recipe]`` table: Recipe's name, line, description, solvent, line_file."""
    head = _table(ctx, "recipe", doc.get("recipe", {})) or {}
    if "recipe" not in doc:
        ctx.error("recipe", MISSING, "is required", "a [recipe] table")
    check_keys(ctx, "recipe", head, _RECIPE_KEYS)
    out: dict[str, Any] = {"name": None, "line": None, "solvent": None, "line_file": None}
    if _required(ctx, "recipe", head, "name"):
        out["name"] = _str(ctx, "recipe.name", head["name"])
    if _required(ctx, "recipe", head, "line"):
        out["line"] = _str(ctx, "recipe.line", head["line"])
    description = head.get("description", "")
    if not isinstance(description, str):
        ctx.error("recipe.description", description, "is not a string")
        description = ""
    out["description"] = description
    if "solvent" in head:
        out["solvent"] = _str(ctx, "recipe.solvent", head["solvent"])
    if "line_file" in head:
        lf = _str(ctx, "recipe.line_file", head["line_file"])
        if lf is not None:
            line_file = (base / lf).resolve() if base is not None else Path(lf)
            if not line_file.is_file():
                ctx.error("recipe.line_file", lf, "names no file", f"a path relative to {base}")
            out["line_file"] = line_file
    return out


_CONDITION_LIMITS = {  # name: (lo, hi, lo excluded)
    "residence_time_min": (0.0, 1440.0, True),
    "temperature_c": (-100.0, 400.0, False),
    "pressure_bar": (0.0, 400.0, False),
}


def _conditions(ctx, doc) -> tuple[dict[str, Any], str | None]:
    """The ``[conditions]`` table: (numeric conditions, reactor or None)."""
    cond_raw = _table(ctx, "conditions", doc.get("conditions", {})) or {}
    if "conditions" not in doc:
        ctx.error("conditions", MISSING, "is required", "a [conditions] table")
    check_keys(ctx, "conditions", cond_raw, _CONDITION_KEYS)
    cond_vals = {}
    for cname, (lo, hi, lo_open) in _CONDITION_LIMITS.items():
        if _required(ctx, "conditions", cond_raw, cname):
            cond_vals[cname] = _float(ctx, f"conditions.{cname}", cond_raw[cname], lo, hi, lo_open)
    reactor = None
    if "reactor" in cond_raw:
        reactor = _str(ctx, "conditions.reactor", cond_raw["reactor"])
    return cond_vals, reactor


def _reagents(ctx, doc) -> tuple[dict[str, Reagent], list[str]]:
    """The ``[reagents.<name>]`` tables: (valid reagents, every name given)."""
    reagents: dict[str, Reagent] = {}
    reg_raw = _table(ctx, "reagents", doc.get("reagents", {})) or {}
    if not reg_raw:
        ctx.error("reagents", MISSING, "is required", "[reagents.<name>] tables")
    pumps_seen: dict[str, str] = {}
    for rname, r in reg_raw.items():
        reagent = _reagent(ctx, rname, r, pumps_seen)
        if reagent is not None:
            reagents[rname] = reagent
    if reagents and not ctx.errors:
        least = min(r.equivalents for r in reagents.values())
        if abs(least - 1.0) > 1e-9:
            ctx.error(
                "reagents",
                {n: r.equivalents for n, r in reagents.items()},
                f"have no limiting reagent (smallest equivalents {least:g})",
                "the limiting reagent at equivalents = 1.0, the others >= 1.0",
            )
    return reagents, list(reg_raw)


def _reagent(ctx, rname, r, pumps_seen: dict[str, str]) -> Reagent | None:
    key = f"reagents.{rname}"
    if not _REAGENT_RE.match(rname):
        ctx.error(key, rname, "is not a valid reagent name", "[a-z][a-z0-9_]*, up to 48")
        return None
    r = _table(ctx, key, r)
    if r is None:
        return None
    n_errors = len(ctx.errors)
    check_keys(ctx, key, r, _REAGENT_KEYS)
    vals = {}
    if _required(ctx, key, r, "pump"):
        vals["pump"] = _str(ctx, f"{key}.pump", r["pump"])
        if vals["pump"] in pumps_seen:
            ctx.error(
                f"{key}.pump",
                vals["pump"],
                f"also feeds reagent {pumps_seen[vals['pump']]!r}",
                "one reagent per pump",
            )
        elif vals["pump"] is not None:
            pumps_seen[vals["pump"]] = rname
    if _required(ctx, key, r, "concentration_mol_l"):
        vals["concentration_mol_l"] = _float(
            ctx, f"{key}.concentration_mol_l", r["concentration_mol_l"], 0.0, 30.0, True
        )
    if _required(ctx, key, r, "equivalents"):
        vals["equivalents"] = _float(ctx, f"{key}.equivalents", r["equivalents"], 0.0, 1000.0, True)
    if len(ctx.errors) != n_errors:
        return None
    return Reagent(rname, **vals)


def _description(ctx, key, table) -> str:
    desc = table.get("description", "")
    if not isinstance(desc, str):
        ctx.error(f"{key}.description", desc, "is not a string")
        return ""
    return desc


def _unique_name(ctx, key, table, seen: dict[str, str]) -> str | None:
    """``table.name``, required and not used by an earlier table (``seen``: name -> key)."""
    name = None
    if _required(ctx, key, table, "name"):
        name = _str(ctx, f"{key}.name", table["name"])
        if name in seen:
            ctx.error(f"{key}.name", name, f"is used twice (also {seen[name]})")
        elif name is not None:
            seen[name] = key
    return name


def _phases(ctx, doc, quantities) -> tuple[list[Phase], list, list[tuple[str, str]]]:
    """The ``[[phases]]``: (phases, the raw list, (key, name) of each phase's
    abort_sequence).  A phase's abort_sequence is the default of its steps'."""
    phases: list[Phase] = []
    raw_phases = doc.get("phases")
    if not isinstance(raw_phases, list) or not raw_phases:
        ctx.error("phases", MISSING, "is required", "[[phases]] sections")
        raw_phases = []
    seen_phases: dict[str, str] = {}
    phase_aborts: list[tuple[str, str]] = []
    for i, p in enumerate(raw_phases):
        key = f"phases[{i}]"
        p = _table(ctx, key, p)
        if p is None:
            continue
        check_keys(ctx, key, p, _PHASE_KEYS)
        pname = _unique_name(ctx, key, p, seen_phases)
        pdesc = _description(ctx, key, p)
        pabort = None
        if "abort_sequence" in p:
            pabort = _str(ctx, f"{key}.abort_sequence", p["abort_sequence"])
            if pabort is not None:
                phase_aborts.append((f"{key}.abort_sequence", pabort))
        steps = []
        if _required(ctx, key, p, "steps"):
            steps = _steps(ctx, f"{key}.steps", p["steps"], quantities, False)
        if pabort is not None:
            steps = [s if s.abort_sequence else replace(s, abort_sequence=pabort) for s in steps]
        quality = _quality(ctx, f"{key}.quality", p["quality"]) if "quality" in p else None
        phases.append(Phase(pname or key, pdesc, tuple(steps), quality))
    return phases, raw_phases, phase_aborts


def _quality(ctx, key, raw) -> QualitySpec | None:
    """A collect phase's ``quality`` table: ``limits`` (a list of {signal, min, max,
    tolerance_abs, tolerance_rel, for_s}), ``resume_after_s``, ``max_divert_s``."""
    raw = _table(ctx, key, raw)
    if raw is None:
        return None
    check_keys(ctx, key, raw, _QUALITY_KEYS)
    resume = _float(ctx, f"{key}.resume_after_s", raw.get("resume_after_s", 10.0), 0.0, 86400.0)
    max_divert = None
    if "max_divert_s" in raw:
        max_divert = _float(ctx, f"{key}.max_divert_s", raw["max_divert_s"], 1.0, 86400.0)
    items = raw.get("limits")
    if not isinstance(items, list) or not items:
        ctx.error(
            f"{key}.limits",
            items if items is not None else MISSING,
            "is required",
            "a list of {signal = ..., min/max/tolerance_abs/tolerance_rel = ...}",
        )
        return None
    limits = [_limit(ctx, f"{key}.limits[{i}]", item) for i, item in enumerate(items)]
    if resume is None or any(lim is None for lim in limits):
        return None
    return QualitySpec(tuple(limits), resume, max_divert, key)  # type: ignore[arg-type]


def _limit(ctx, key, item) -> QualityLimit | None:
    item = _table(ctx, key, item)
    if item is None or not _required(ctx, key, item, "signal"):
        return None
    check_keys(ctx, key, item, _LIMIT_KEYS)
    sig = _signal(ctx, f"{key}.signal", item["signal"])
    vals: dict[str, Any] = {}
    for name in ("min", "max"):
        if name in item:
            vals[name] = _float(ctx, f"{key}.{name}", item[name])
    for name in ("tolerance_abs", "tolerance_rel"):
        if name in item:
            vals[name] = _float(ctx, f"{key}.{name}", item[name], 0.0, None, lo_open=True)
    if "for_s" in item:
        vals["for_s"] = _float(ctx, f"{key}.for_s", item["for_s"], 0.0, 3600.0)
    if sig is None or any(v is None for v in vals.values()):
        return None
    if not set(vals) - {"for_s"}:
        ctx.error(
            key,
            item["signal"],
            "needs a range",
            "min and/or max, or tolerance_abs and/or tolerance_rel",
        )
        return None
    if vals.get("min") is not None and vals.get("max") is not None and vals["min"] > vals["max"]:
        ctx.error(f"{key}.min", vals["min"], "is above max", f"<= {vals['max']:g}")
        return None
    return QualityLimit(sig[0], sig[1], key=key, **vals)


def _shutdowns(ctx, doc, quantities) -> list[ShutdownSequence]:
    """The ``[[shutdown]]`` sequences; one of them must answer every cause (``"*"``)."""
    shutdowns: list[ShutdownSequence] = []
    raw_sd = doc.get("shutdown")
    if not isinstance(raw_sd, list) or not raw_sd:
        ctx.error(
            "shutdown",
            MISSING,
            "is required",
            '[[shutdown]] sequences, one of them with on = ["*"]',
        )
        raw_sd = []
    seen_sd: dict[str, str] = {}
    for i, s in enumerate(raw_sd):
        key = f"shutdown[{i}]"
        s = _table(ctx, key, s)
        if s is None:
            continue
        check_keys(ctx, key, s, _SHUTDOWN_KEYS)
        sname = _unique_name(ctx, key, s, seen_sd)
        on = _causes(ctx, key, s) if _required(ctx, key, s, "on") else ()
        sdesc = _description(ctx, key, s)
        steps = []
        if _required(ctx, key, s, "steps"):
            steps = _steps(ctx, f"{key}.steps", s["steps"], quantities, True)
        shutdowns.append(ShutdownSequence(sname or key, on, tuple(steps), sdesc))
    if shutdowns and not any("*" in s.on for s in shutdowns):
        ctx.error(
            "shutdown",
            [s.name for s in shutdowns],
            "has no catch-all sequence",
            'one [[shutdown]] with on = ["*"] (the default for any other cause)',
        )
    return shutdowns


def _causes(ctx, key, s) -> tuple[str, ...]:
    """A shutdown's ``on``: a cause code or pattern, or a list of them."""
    raw_on = s["on"]
    if isinstance(raw_on, str):
        raw_on = [raw_on]
    if (
        not isinstance(raw_on, list)
        or not raw_on
        or not all(isinstance(x, str) and x for x in raw_on)
    ):
        ctx.error(
            f"{key}.on",
            s["on"],
            "is not a list of cause codes",
            'trip causes (over_pressure, ...), "*", or ' + ", ".join(HOST_CAUSES),
        )
        return ()
    return tuple(raw_on)


def _check_abort_refs(ctx, raw_phases, phase_aborts, shutdowns) -> None:
    """Every abort_sequence (of a phase or a step) names a shutdown sequence."""
    names = {s.name for s in shutdowns}
    refs = list(phase_aborts)
    for i, p in enumerate(raw_phases):
        if isinstance(p, dict) and isinstance(p.get("steps"), list):
            for j, s in enumerate(p["steps"]):
                if isinstance(s, dict) and isinstance(s.get("abort_sequence"), str):
                    refs.append((f"phases[{i}].steps[{j}].abort_sequence", s["abort_sequence"]))
    for key, ref in refs:
        if ref not in names and shutdowns:
            ctx.error(key, ref, "names no shutdown sequence", ", ".join(sorted(names)))


def load_recipe(path) -> Recipe:
    """Read and validate the recipe file at ``path``; raises RecipeError."""
    path = Path(path)
    try:
        text = read_text(path)
    except ConfigErrors as exc:
        raise RecipeError(exc.errors) from None
    return load_recipe_text(text, str(path), path.resolve().parent)
