"""The campaign file: what to vary, what to optimise, within which budget, how to wait
for steady state and how to measure.  Loaded with the config-validation core
(``edge/boardconfig/core.py``) like recipes: every problem at once, each naming file,
line, key, value and what is allowed (``CampaignError``; the CLI exits 2).

Reference: docs/campaigns.md.  Tables::

    [campaign]    name, recipe (base recipe file), line_file (optional), seed, replicates
    [[variables]] name (temperature_c | residence_time_min | equivalents), lo, hi, levels
    [[objectives]] name (yield | space_time_yield | reagent_per_gram), direction (max|min)
    [budget]      experiments, time_min, reagent_ml
    [strategy]    kind (factorial | lhs | random | bayes) + options
    [steady]      min_residence_times, window_s, timeout_s, signals
    [measure]     signal, window_s, path_mm, product_absorptivity_l_mol_cm,
                  interferent, interferent_absorptivity_l_mol_cm, product_molar_mass_g_mol
    [safety]      dh_kj_mol, cp_j_g_k, density_g_ml, onset_c, onset_margin_k
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge.boardconfig.core import (
    BAD,
    CHOICE,
    FLOAT,
    INT,
    MISSING,
    PATH,
    STR,
    ConfigErrors,
    Context,
    Key,
    check_table,
    keys,
    parse_toml,
    read_text,
)

VARIABLES = ("temperature_c", "residence_time_min", "equivalents", "concentration_mol_l")
# A variable the runner can set on a line whose feeds come straight from stock bottles.
# concentration_mol_l needs a diluent feed; refused (with that reason) until a line has one.
SETTABLE = ("temperature_c", "residence_time_min", "equivalents")
VARIABLE_LIMITS = {  # name: (lo, hi, unit) the file may ask for at all (the envelope narrows)
    "temperature_c": (-50.0, 300.0, "degC"),
    "residence_time_min": (0.05, 240.0, "min"),
    "equivalents": (0.1, 20.0, ""),
    "concentration_mol_l": (0.001, 20.0, "mol/L"),
}
OBJECTIVES = ("yield", "space_time_yield", "reagent_per_gram")
STRATEGIES = ("factorial", "lhs", "random", "bayes")
_SIGNAL_RE = re.compile(r"[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*\Z")


class CampaignError(ValueError):
    """Every problem of one campaign file (``errors``: located ConfigError objects)."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class VariableSpec:
    name: str
    lo: float
    hi: float
    levels: int | None = None


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    direction: str


@dataclass(frozen=True)
class SteadySignal:
    module: str
    channel: str
    tolerance_abs: float | None
    tolerance_rel: float | None


@dataclass(frozen=True)
class Measure:
    module: str
    channel: str
    window_s: float
    path_mm: float
    product_absorptivity: float  # L/(mol cm)
    interferent: str | None  # a reagent of the recipe
    interferent_absorptivity: float  # L/(mol cm)
    product_molar_mass: float | None  # g/mol


@dataclass
class Campaign:
    name: str
    file: Path
    recipe_file: Path
    line_file: Path | None
    seed: int
    replicates: int
    variables: list[VariableSpec]
    objectives: list[ObjectiveSpec]
    budget: dict  # experiments, time_min, reagent_ml (None: unbounded)
    strategy: str
    strategy_options: dict
    min_residence_times: float
    steady_window_s: float
    steady_timeout_s: float
    steady_signals: list[SteadySignal]
    measure: Measure
    safety: dict  # dh_kj_mol, cp_j_g_k, density_g_ml, onset_c, onset_margin_k
    text: str = ""
    hash: str = ""
    extra: dict = field(default_factory=dict)


_CAMPAIGN = keys(
    Key("name", STR, "campaign name", required=True),
    Key("recipe", PATH, "base recipe, relative to this file", required=True),
    Key("line_file", PATH, "the line, relative to this file (must be the one run on)"),
    Key("seed", INT, "the strategy's seed", default=0, lo=0, hi=2**31 - 1),
    Key("replicates", INT, "runs of the best condition at the end", default=2, lo=0, hi=10),
)
_VARIABLE = keys(
    Key("name", CHOICE, "a recipe condition", required=True, choices=VARIABLES),
    Key("lo", FLOAT, "lower bound", required=True),
    Key("hi", FLOAT, "upper bound", required=True),
    Key("levels", INT, "factorial levels", lo=2, hi=9),
)
_OBJECTIVE = keys(
    Key("name", CHOICE, "what to optimise", required=True, choices=OBJECTIVES),
    Key("direction", CHOICE, "max or min", default=None, choices=("max", "min")),
)
_BUDGET = keys(
    Key("experiments", INT, "most experiments", required=True, lo=1, hi=1000),
    Key("time_min", FLOAT, "most line time", lo=0.0, lo_open=True, unit="min"),
    Key("reagent_ml", FLOAT, "most feed volume", lo=0.0, lo_open=True, unit="mL"),
)
_STEADY = keys(
    Key("min_residence_times", FLOAT, "wait at least", default=1.5, lo=0.5, hi=20.0),
    Key("window_s", FLOAT, "steady over", default=30.0, lo=5.0, hi=3600.0, unit="s"),
    Key("timeout_s", FLOAT, "then give up", default=1800.0, lo=10.0, hi=86400.0, unit="s"),
)
_MEASURE = keys(
    Key("signal", STR, "the analyzer's module.channel", required=True),
    Key("window_s", FLOAT, "average over", default=30.0, lo=1.0, hi=3600.0, unit="s"),
    Key("path_mm", FLOAT, "cell path", required=True, lo=0.0, lo_open=True, hi=100.0),
    Key("product_absorptivity_l_mol_cm", FLOAT, "of P", required=True, lo=0.0, lo_open=True),
    Key("interferent", STR, "reagent of the recipe that also absorbs"),
    Key("interferent_absorptivity_l_mol_cm", FLOAT, "of it", default=0.0, lo=0.0),
    Key("product_molar_mass_g_mol", FLOAT, "for reagent_per_gram", lo=1.0, hi=5000.0),
)
_SAFETY = keys(
    Key("dh_kj_mol", FLOAT, "reaction enthalpy", required=True, lo=-2000.0, hi=2000.0),
    Key("cp_j_g_k", FLOAT, "heat capacity", required=True, lo=0.1, hi=10.0),
    Key("density_g_ml", FLOAT, "density", required=True, lo=0.1, hi=5.0),
    Key("onset_c", FLOAT, "decomposition onset", required=True, lo=-50.0, hi=1000.0),
    Key("onset_margin_k", FLOAT, "margin below onset", default=50.0, lo=0.0, hi=500.0),
)
_TOP = ("campaign", "variables", "objectives", "budget", "strategy", "steady", "measure", "safety")
# host/campaign/strategies.py's options: bayes "startup" (random trials first), "sampler"
# ("tpe", or "nsga2" with several objectives) and its "population_size"; every kind
# "max_infeasible" (refusals after which it proposes no more).
_STRATEGY_OPTIONS = {
    "startup": (1, 100),
    "max_infeasible": (1, 10000),
    "population_size": (2, 1000),
    "sampler": ("tpe", "nsga2"),
}


def load_campaign(path) -> Campaign:
    """Read and validate the campaign file at ``path``; raises CampaignError."""
    path = Path(path)
    try:
        text = read_text(path)
    except ConfigErrors as exc:
        raise CampaignError(exc.errors) from None
    return load_campaign_text(text, str(path), path.resolve().parent)


def load_campaign_text(text: str, filename: str, base: Path) -> Campaign:  # long: one table each
    ctx = Context(filename, text)
    try:
        doc = parse_toml(ctx)
    except ConfigErrors as exc:
        raise CampaignError(exc.errors) from None
    for name in doc:
        if name not in _TOP:
            ctx.error(name, doc[name], "is not a campaign table", ", ".join(_TOP))
    head = _checked(ctx, doc, "campaign", _CAMPAIGN)
    recipe_file = _file(ctx, base, "campaign.recipe", head.get("recipe"))
    line_file = _file(ctx, base, "campaign.line_file", head.get("line_file"))
    variables = _variables(ctx, doc.get("variables", MISSING))
    objectives = _objectives(ctx, doc.get("objectives", MISSING))
    budget = _checked(ctx, doc, "budget", _BUDGET)
    strategy, options = _strategy(ctx, doc.get("strategy", MISSING))
    steady = _checked(ctx, doc, "steady", _STEADY, required=False, extra=("signals",))
    signals = _steady_signals(ctx, (doc.get("steady") or {}).get("signals"))
    measure = _measure(ctx, doc, objectives)
    safety = _checked(ctx, doc, "safety", _SAFETY)
    if ctx.errors:
        raise CampaignError(ctx.errors)
    return Campaign(
        name=head["name"],
        file=Path(filename),
        recipe_file=recipe_file,
        line_file=line_file,
        seed=head["seed"],
        replicates=head["replicates"],
        variables=variables,
        objectives=objectives,
        budget=budget,
        strategy=strategy,
        strategy_options=options,
        min_residence_times=steady["min_residence_times"],
        steady_window_s=steady["window_s"],
        steady_timeout_s=steady["timeout_s"],
        steady_signals=signals,
        measure=measure,
        safety=safety,
        text=text,
        hash=hashlib.sha256(text.encode()).hexdigest(),
    )


def _checked(ctx, doc, name, schema, required=True, extra=()) -> dict:
    table = doc.get(name, MISSING)
    if table is MISSING:
        if required:
            ctx.error(name, MISSING, "is required", f"a [{name}] table")
        table = {}
    if not isinstance(table, dict):
        ctx.error(name, table, "is not a table")
        table = {}
    return check_table(ctx, table, schema, name, extra=extra)


def _file(ctx, base: Path, key: str, rel) -> Path | None:
    if rel is None or rel is BAD:
        return None
    path = (base / rel).resolve()
    if not path.is_file():
        ctx.error(key, rel, "names no file", f"a path relative to {base}")
        return None
    return path


def _array(ctx, key, raw) -> list[dict]:
    if raw is MISSING:
        ctx.error(key, MISSING, "is required", f"at least one [[{key}]] table")
        return []
    if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
        ctx.error(key, raw, "is not a list of tables", f"[[{key}]] tables")
        return []
    return raw


def _variables(ctx, raw) -> list[VariableSpec]:
    out, seen = [], set()
    for i, table in enumerate(_array(ctx, "variables", raw)):
        path = f"variables[{i}]"
        v = check_table(ctx, table, _VARIABLE, path)
        name, lo, hi = v["name"], v["lo"], v["hi"]
        if BAD in (name, lo, hi):
            continue
        if name in seen:
            ctx.error(f"{path}.name", name, "is declared twice", "each variable once")
            continue
        seen.add(name)
        if name not in SETTABLE:
            ctx.error(
                f"{path}.name",
                name,
                "cannot be set by a campaign on a line whose feeds come from stock bottles "
                "(it needs a diluent feed)",
                ", ".join(SETTABLE),
            )
            continue
        vlo, vhi, unit = VARIABLE_LIMITS[name]
        for which, value in (("lo", lo), ("hi", hi)):
            if not vlo <= value <= vhi:
                ctx.error(f"{path}.{which}", value, "is out of range", f"{vlo:g}..{vhi:g} {unit}")
        if lo >= hi:
            ctx.error(f"{path}.hi", hi, "is not above lo", f"> {lo:g}")
            continue
        levels = v["levels"] if v["levels"] is not BAD else None
        out.append(VariableSpec(name, float(lo), float(hi), levels))
    return out


def _objectives(ctx, raw) -> list[ObjectiveSpec]:
    out = []
    natural = {"yield": "max", "space_time_yield": "max", "reagent_per_gram": "min"}
    for i, table in enumerate(_array(ctx, "objectives", raw)):
        v = check_table(ctx, table, _OBJECTIVE, f"objectives[{i}]")
        if v["name"] is BAD or v["direction"] is BAD:
            continue
        if any(o.name == v["name"] for o in out):
            ctx.error(f"objectives[{i}].name", v["name"], "is declared twice", "each once")
            continue
        out.append(ObjectiveSpec(v["name"], v["direction"] or natural[v["name"]]))
    return out


def _strategy(ctx, raw) -> tuple[str, dict]:
    if raw is MISSING or not isinstance(raw, dict):
        ctx.error("strategy", raw, "is required", "a [strategy] table with kind")
        return "", {}
    kind = raw.get("kind", MISSING)
    if kind not in STRATEGIES:
        ctx.error("strategy.kind", kind, "is not a strategy", ", ".join(STRATEGIES))
    options = {}
    for name, value in raw.items():
        if name == "kind":
            continue
        if name not in _STRATEGY_OPTIONS:
            ctx.error(f"strategy.{name}", value, "is not an option", ", ".join(_STRATEGY_OPTIONS))
            continue
        allowed = _STRATEGY_OPTIONS[name]
        if isinstance(allowed[0], str):
            if value not in allowed:
                ctx.error(f"strategy.{name}", value, "is not a choice", ", ".join(allowed))
                continue
            options[name] = value
            continue
        lo, hi = allowed
        if type(value) is not int or not lo <= value <= hi:
            ctx.error(f"strategy.{name}", value, "is out of range", f"an integer {lo}..{hi}")
            continue
        options[name] = value
    return (kind if kind in STRATEGIES else ""), options


def _steady_signals(ctx, raw) -> list[SteadySignal]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        ctx.error("steady.signals", raw, "is not a list", "[{signal, tolerance_abs|rel}, ...]")
        return []
    out = []
    for i, item in enumerate(raw):
        path = f"steady.signals[{i}]"
        if not isinstance(item, dict):
            ctx.error(path, item, "is not a table", "{signal = 'module.channel', tolerance_...}")
            continue
        schema = keys(
            Key("signal", STR, required=True),
            Key("tolerance_abs", FLOAT, lo=0.0, lo_open=True),
            Key("tolerance_rel", FLOAT, lo=0.0, lo_open=True, hi=1.0),
        )
        v = check_table(ctx, item, schema, path)
        sig = _signal(ctx, f"{path}.signal", v["signal"])
        if v["tolerance_abs"] is None and v["tolerance_rel"] is None:
            ctx.error(path, item, "has no tolerance", "tolerance_abs and/or tolerance_rel")
            continue
        if sig is not None and BAD not in (v["tolerance_abs"], v["tolerance_rel"]):
            out.append(SteadySignal(sig[0], sig[1], v["tolerance_abs"], v["tolerance_rel"]))
    return out


def _signal(ctx, key, value) -> tuple[str, str] | None:
    if value is BAD or value is None:
        return None
    if not _SIGNAL_RE.match(value):
        ctx.error(key, value, "is not a signal", "module.channel, e.g. uv1.uv")
        return None
    module, channel = value.split(".")
    return module, channel


def _measure(ctx, doc, objectives) -> Measure | None:
    m = _checked(ctx, doc, "measure", _MEASURE)
    sig = _signal(ctx, "measure.signal", m.get("signal"))
    if (
        any(o.name == "reagent_per_gram" for o in objectives)
        and m.get("product_molar_mass_g_mol") is None
    ):
        ctx.error(
            "measure.product_molar_mass_g_mol",
            MISSING,
            "is required for the objective reagent_per_gram",
            "1..5000 g/mol",
        )
    if sig is None or BAD in m.values():
        return None
    return Measure(
        module=sig[0],
        channel=sig[1],
        window_s=m["window_s"],
        path_mm=m["path_mm"],
        product_absorptivity=m["product_absorptivity_l_mol_cm"],
        interferent=m["interferent"],
        interferent_absorptivity=m["interferent_absorptivity_l_mol_cm"],
        product_molar_mass=m["product_molar_mass_g_mol"],
    )
