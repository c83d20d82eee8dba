"""Recipes: what a chemist wants the line to do, validated before anything moves.

A recipe file (``examples/recipes/*.toml``, reference: docs/recipes.md) states the
chemistry (residence time, temperature, pressure, reagent concentrations and
stoichiometric equivalents) and the procedure (phases of steps), plus the line-wide
shutdown sequences chosen by hazard.  From the chemistry and the line's reactor volume
the host derives the pump flows:

    total flow      Q   = V_reactor / residence_time
    reagent i flow  Q_i = Q * (e_i / c_i) / sum_j (e_j / c_j)

(``e`` equivalents, ``c`` feed concentration in mol/L), so the molar flows ``Q_i c_i``
stand in the ratio of the equivalents and the flows add up to ``Q``.  The limiting
reagent (equivalents 1.0) then meets the others at ``c_lim Q_lim / Q`` mol/L.

``load_recipe(path) -> Recipe`` checks the file on its own (types, ranges, names;
raises ``RecipeError`` listing every problem, each naming file, key, line, value and
what is allowed); ``check_recipe(recipe, line) -> list[str]`` checks it against a line
(modules, channels, setpoint ranges of the modules' board configs, pump ranges, the
feed volume the whole run may consume, the collection vessel); ``plan_recipe(recipe,
line) -> RecipePlan`` gives the derived quantities the sequencer runs with.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.boardconfig.lines import index_lines, line_of
from line.loader import located_text, module_config
from protocol.wire import ID_PATTERN

SERVICE_COMMANDS = ("start", "stop", "hold", "unhold", "abort", "reset", "complete")
ON_TIMEOUT = ("abort", "continue", "hold")
# Causes the host itself raises (module trips bring their own cause codes).
HOST_CAUSES = ("module_lost", "operator_abort", "command_failed", "wait_timeout", "host_restart")
DEFAULT_TIMEOUT_S = 600.0
COMMAND_TIMEOUT_S = 15.0

_REAGENT_RE = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")
_NUM = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?"
_REF_RE = re.compile(
    rf"\s*(?:({_NUM})\s*\*\s*)?([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)?)\s*(?:([+-])\s*({_NUM}))?\s*\Z"
)
_SIGNAL_RE = re.compile(r"(" + ID_PATTERN + r")\.([a-z_][a-z0-9_]*)\Z")  # module.channel


# --- errors ----------------------------------------------------------------------------


class RecipeIssue:
    """One problem: ``file``, ``key`` (dotted), ``line`` (or None), ``value``, ``problem``,
    ``allowed`` (text or None)."""

    def __init__(self, file, key, line, value, problem, allowed=None, missing=False):
        self.file = str(file)
        self.key = key
        self.line = line
        self.value = value
        self.problem = problem
        self.allowed = allowed
        self.text = located_text(file, key, line, value, problem, allowed, missing)

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"RecipeIssue({self.text!r})"


class RecipeError(ValueError):
    """Every problem found in one recipe (``issues``: RecipeIssue objects, or plain
    texts for problems found against a line)."""

    def __init__(self, issues, file: str | None = None):
        self.issues = list(issues)
        first = self.issues[0]
        self.file = getattr(first, "file", None) or file or "<recipe>"
        if len(self.issues) == 1:
            text = str(first)
        else:
            text = f"{self.file}: {len(self.issues)} errors:\n" + "\n".join(
                "  " + str(i) for i in self.issues
            )
        super().__init__(text)


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueRef:
    """A setpoint or target: a number, or ``[factor *] quantity [+|- offset]`` (quantity
    names: ``temperature``, ``pressure``, ``total_flow``, ``flow.<reagent>``)."""

    number: float | None = None
    quantity: str | None = None
    factor: float = 1.0
    offset: float = 0.0
    text: str = ""

    def __str__(self):
        return self.text or f"{self.number:g}"


@dataclass(frozen=True)
class Setpoint:
    module: str
    channel: str
    value: ValueRef
    key: str  # where it is in the file (messages)


@dataclass(frozen=True)
class SteadySpec:
    """One signal that must be steady (host.steady.SteadyState's parameters)."""

    module: str
    channel: str
    window_s: float = 60.0
    tolerance_abs: float | None = None
    tolerance_rel: float | None = None

    def describe(self) -> str:
        tols = []
        if self.tolerance_abs is not None:
            tols.append(f"{self.tolerance_abs:g}")
        if self.tolerance_rel is not None:
            tols.append(f"{self.tolerance_rel * 100:g} %")
        return f"{self.module}.{self.channel} (within {' / '.join(tols)} over {self.window_s:g} s)"


@dataclass(frozen=True)
class Wait:
    """Every condition given must hold at once (a conjunction)."""

    seconds: float | None = None
    residence_times: float | None = None
    signal: tuple[str, str] | None = None  # (module, channel)
    target: ValueRef | None = None
    band: float | None = None  # |value - target| <= band
    above: ValueRef | None = None  # value >= above
    below: ValueRef | None = None  # value <= below
    for_s: float = 0.0
    steady: tuple[SteadySpec, ...] = ()
    collected_ml: float | None = None

    def describe(self) -> str:
        parts = []
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} s")
        if self.residence_times is not None:
            parts.append(f"{self.residence_times:g} residence times")
        if self.signal is not None:
            sig = ".".join(self.signal)
            if self.target is not None:
                parts.append(f"{sig} within {self.band:g} of {self.target}")
            if self.above is not None:
                parts.append(f"{sig} >= {self.above}")
            if self.below is not None:
                parts.append(f"{sig} <= {self.below}")
            if self.for_s:
                parts[-1] += f" for {self.for_s:g} s"
        if self.steady:
            parts.append("steady " + ", ".join(s.describe() for s in self.steady))
        if self.collected_ml is not None:
            parts.append(f"{self.collected_ml:g} mL collected")
        return " and ".join(parts)

    @property
    def timed_only(self) -> bool:
        """True when the wait's length is fixed by time alone."""
        return (
            self.signal is None
            and not self.steady
            and self.collected_ml is None
            and self.residence_times is None
        )


@dataclass(frozen=True)
class Step:
    name: str
    key: str  # "phases[2].steps[0]"
    service: str | None = None
    modules: tuple[str, ...] | None = None  # None: every module of the line
    valve: str | None = None  # outlet id or vessel role
    valve_module: str | None = None
    sets: tuple[Setpoint, ...] = ()
    wait: Wait | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    on_timeout: str = "abort"
    abort_sequence: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Phase:
    name: str
    description: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class ShutdownSequence:
    name: str
    on: tuple[str, ...]  # cause patterns (fnmatch); "*" answers every cause
    steps: tuple[Step, ...]
    description: str = ""

    def matches(self, cause: str, catch_all: bool) -> bool:
        for pattern in self.on:
            if pattern == "*":
                if catch_all:
                    return True
            elif fnmatch.fnmatchcase(cause, pattern):
                return True
        return False


@dataclass(frozen=True)
class Reagent:
    name: str
    pump: str
    concentration_mol_l: float
    equivalents: float


@dataclass(frozen=True)
class Conditions:
    residence_time_min: float
    temperature_c: float
    pressure_bar: float
    reactor: str | None = None


@dataclass
class Recipe:
    name: str
    line: str
    conditions: Conditions
    reagents: dict[str, Reagent]
    phases: list[Phase]
    shutdowns: list[ShutdownSequence]
    description: str = ""
    solvent: str | None = None
    line_file: Path | None = None
    file: Path | None = None
    text: str = ""

    def shutdown_for(self, cause: str) -> ShutdownSequence:
        """The sequence declared for ``cause``: the first whose ``on`` names it, else the
        catch-all (``on = ["*"]``)."""
        for seq in self.shutdowns:
            if seq.matches(cause, catch_all=False):
                return seq
        for seq in self.shutdowns:
            if seq.matches(cause, catch_all=True):
                return seq
        raise LookupError(f"recipe {self.name}: no shutdown sequence answers {cause!r}")

    def sequence(self, name: str) -> ShutdownSequence:
        for seq in self.shutdowns:
            if seq.name == name:
                return seq
        raise LookupError(f"recipe {self.name}: no shutdown sequence named {name!r}")

    def steps(self):
        """(phase, step) for every step, in order."""
        for phase in self.phases:
            for step in phase.steps:
                yield phase, step


# --- loading -----------------------------------------------------------------------------


class _Ctx:
    def __init__(self, file: str, text: str):
        self.file = file
        self.text = text
        self.issues: list[RecipeIssue] = []
        self._index = None

    def line(self, key):
        if not key:
            return None
        if self._index is None:
            try:
                self._index = index_lines(self.text)
            except Exception:  # noqa: BLE001 - line numbers are a courtesy
                self._index = {}
        try:
            return line_of(self._index, key)
        except Exception:  # noqa: BLE001
            return None

    def error(self, key, value, problem, allowed=None, missing=False):
        self.issues.append(
            RecipeIssue(self.file, key, self.line(key), value, problem, allowed, missing)
        )


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _float(ctx, key, v, lo=None, hi=None, lo_open=False):
    """A number in range, or None after recording an error."""
    if not _number(v):
        ctx.error(key, v, "is not a number", _range_text(lo, hi, lo_open))
        return None
    if lo is not None and (v <= lo if lo_open else v < lo) or hi is not None and v > hi:
        ctx.error(key, v, "is out of range", _range_text(lo, hi, lo_open))
        return None
    return float(v)


def _range_text(lo, hi, lo_open=False):
    if lo is not None and hi is not None:
        return f"{'>' if lo_open else ''}{lo:g}..{hi:g}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return "a finite number"


def _str(ctx, key, v, choices=None):
    if not isinstance(v, str) or not v:
        ctx.error(key, v, "is not a non-empty string", ", ".join(choices) if choices else None)
        return None
    if choices is not None and v not in choices:
        hint = difflib.get_close_matches(v, choices, 1)
        problem = "is not a known choice" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        ctx.error(key, v, problem, "one of " + ", ".join(choices))
        return None
    return v


def _keys(ctx, key, table, allowed):
    """Report keys of ``table`` that are not in ``allowed``."""
    for name in table:
        if name not in allowed:
            hint = difflib.get_close_matches(name, list(allowed), 1)
            problem = "is not a known key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            ctx.error(f"{key}.{name}" if key else name, table[name], problem, ", ".join(allowed))


def _required(ctx, key, table, name):
    if name not in table:
        ctx.error(f"{key}.{name}", None, "is required", missing=True)
        return False
    return True


def _table(ctx, key, v) -> dict | None:
    if not isinstance(v, dict):
        ctx.error(key, v, "is not a table")
        return None
    return v


def _value_ref(ctx, key, v, quantities) -> ValueRef | None:
    if _number(v):
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
            _keys(ctx, ikey, item, _STEADY_KEYS)
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
    n_errors = len(ctx.issues)
    _keys(ctx, key, raw, _WAIT_KEYS)
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
                ctx.error(f"{key}.band", None, "is required with target", missing=True)
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
    if len(ctx.issues) != n_errors:
        return None
    return Wait(**kw)


def _step(ctx, key, raw, quantities, in_shutdown: bool) -> Step | None:
    raw = _table(ctx, key, raw)
    if raw is None:
        return None
    n_errors = len(ctx.issues)
    _keys(ctx, key, raw, _STEP_KEYS)
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
    if len(ctx.issues) != n_errors:
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
_PHASE_KEYS = ("name", "description", "abort_sequence", "steps")
_SHUTDOWN_KEYS = ("name", "description", "on", "steps")


def load_recipe_text(text: str, filename: str = "<recipe>", base: Path | None = None) -> Recipe:
    """Validate TOML ``text``; raises RecipeError listing every problem found."""
    ctx = _Ctx(str(filename), text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(
            [RecipeIssue(filename, None, None, None, f"is not TOML: {exc}")]
        ) from None
    _keys(ctx, "", doc, _TOP)

    head = _table(ctx, "recipe", doc.get("recipe", {})) or {}
    if "recipe" not in doc:
        ctx.error("recipe", None, "is required", "a [recipe] table", missing=True)
    _keys(ctx, "recipe", head, _RECIPE_KEYS)
    name = line_id = None
    if _required(ctx, "recipe", head, "name"):
        name = _str(ctx, "recipe.name", head["name"])
    if _required(ctx, "recipe", head, "line"):
        line_id = _str(ctx, "recipe.line", head["line"])
    description = head.get("description", "")
    if not isinstance(description, str):
        ctx.error("recipe.description", description, "is not a string")
        description = ""
    solvent = None
    if "solvent" in head:
        solvent = _str(ctx, "recipe.solvent", head["solvent"])
    line_file = None
    if "line_file" in head:
        lf = _str(ctx, "recipe.line_file", head["line_file"])
        if lf is not None:
            line_file = (base / lf).resolve() if base is not None else Path(lf)
            if not line_file.is_file():
                ctx.error("recipe.line_file", lf, "names no file", f"a path relative to {base}")

    cond_raw = _table(ctx, "conditions", doc.get("conditions", {})) or {}
    if "conditions" not in doc:
        ctx.error("conditions", None, "is required", "a [conditions] table", missing=True)
    _keys(ctx, "conditions", cond_raw, _CONDITION_KEYS)
    cond_vals = {}
    limits = {
        "residence_time_min": (0.0, 1440.0, True),
        "temperature_c": (-100.0, 400.0, False),
        "pressure_bar": (0.0, 400.0, False),
    }
    for cname, (lo, hi, lo_open) in limits.items():
        if _required(ctx, "conditions", cond_raw, cname):
            cond_vals[cname] = _float(ctx, f"conditions.{cname}", cond_raw[cname], lo, hi, lo_open)
    reactor = None
    if "reactor" in cond_raw:
        reactor = _str(ctx, "conditions.reactor", cond_raw["reactor"])

    reagents: dict[str, Reagent] = {}
    reg_raw = _table(ctx, "reagents", doc.get("reagents", {})) or {}
    if not reg_raw:
        ctx.error("reagents", None, "is required", "[reagents.<name>] tables", missing=True)
    pumps_seen: dict[str, str] = {}
    for rname, r in reg_raw.items():
        key = f"reagents.{rname}"
        if not _REAGENT_RE.match(rname):
            ctx.error(key, rname, "is not a valid reagent name", "[a-z][a-z0-9_]*, up to 48")
            continue
        r = _table(ctx, key, r)
        if r is None:
            continue
        n_errors = len(ctx.issues)
        _keys(ctx, key, r, _REAGENT_KEYS)
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
            vals["equivalents"] = _float(
                ctx, f"{key}.equivalents", r["equivalents"], 0.0, 1000.0, True
            )
        if len(ctx.issues) == n_errors:
            reagents[rname] = Reagent(rname, **vals)
    if reagents and not ctx.issues:
        least = min(r.equivalents for r in reagents.values())
        if abs(least - 1.0) > 1e-9:
            ctx.error(
                "reagents",
                {n: r.equivalents for n, r in reagents.items()},
                f"have no limiting reagent (smallest equivalents {least:g})",
                "the limiting reagent at equivalents = 1.0, the others >= 1.0",
            )

    quantities = ["temperature", "pressure", "total_flow"] + [f"flow.{n}" for n in reg_raw]

    phases: list[Phase] = []
    raw_phases = doc.get("phases")
    if not isinstance(raw_phases, list) or not raw_phases:
        ctx.error("phases", raw_phases, "is required", "[[phases]] sections", missing=True)
        raw_phases = []
    seen_phases: dict[str, str] = {}
    phase_aborts: list[tuple[str, str]] = []
    for i, p in enumerate(raw_phases):
        key = f"phases[{i}]"
        p = _table(ctx, key, p)
        if p is None:
            continue
        _keys(ctx, key, p, _PHASE_KEYS)
        pname = None
        if _required(ctx, key, p, "name"):
            pname = _str(ctx, f"{key}.name", p["name"])
            if pname in seen_phases:
                ctx.error(f"{key}.name", pname, f"is used twice (also {seen_phases[pname]})")
            elif pname is not None:
                seen_phases[pname] = key
        pdesc = p.get("description", "")
        if not isinstance(pdesc, str):
            ctx.error(f"{key}.description", pdesc, "is not a string")
            pdesc = ""
        pabort = None
        if "abort_sequence" in p:
            pabort = _str(ctx, f"{key}.abort_sequence", p["abort_sequence"])
            if pabort is not None:
                phase_aborts.append((f"{key}.abort_sequence", pabort))
        steps = []
        if _required(ctx, key, p, "steps"):
            steps = _steps(ctx, f"{key}.steps", p["steps"], quantities, False)
        if pabort is not None:
            steps = [s if s.abort_sequence else _replace(s, abort_sequence=pabort) for s in steps]
        phases.append(Phase(pname or key, pdesc, tuple(steps)))

    shutdowns: list[ShutdownSequence] = []
    raw_sd = doc.get("shutdown")
    if not isinstance(raw_sd, list) or not raw_sd:
        ctx.error(
            "shutdown",
            raw_sd,
            "is required",
            '[[shutdown]] sequences, one of them with on = ["*"]',
            missing=True,
        )
        raw_sd = []
    seen_sd: dict[str, str] = {}
    for i, s in enumerate(raw_sd):
        key = f"shutdown[{i}]"
        s = _table(ctx, key, s)
        if s is None:
            continue
        _keys(ctx, key, s, _SHUTDOWN_KEYS)
        sname = None
        if _required(ctx, key, s, "name"):
            sname = _str(ctx, f"{key}.name", s["name"])
            if sname in seen_sd:
                ctx.error(f"{key}.name", sname, f"is used twice (also {seen_sd[sname]})")
            elif sname is not None:
                seen_sd[sname] = key
        on: tuple[str, ...] = ()
        if _required(ctx, key, s, "on"):
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
            else:
                on = tuple(raw_on)
        sdesc = s.get("description", "")
        if not isinstance(sdesc, str):
            ctx.error(f"{key}.description", sdesc, "is not a string")
            sdesc = ""
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

    if ctx.issues:
        raise RecipeError(ctx.issues)
    return Recipe(
        name=name,
        line=line_id,
        conditions=Conditions(reactor=reactor, **cond_vals),
        reagents=reagents,
        phases=phases,
        shutdowns=shutdowns,
        description=description,
        solvent=solvent,
        line_file=line_file,
        file=None if str(filename).startswith("<") else Path(filename),
        text=text,
    )


def _replace(step: Step, **kw) -> Step:
    from dataclasses import replace

    return replace(step, **kw)


def load_recipe(path) -> Recipe:
    """Read and validate the recipe file at ``path``; raises RecipeError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(
            [RecipeIssue(str(path), None, None, None, f"cannot be read: {exc}")]
        ) from None
    return load_recipe_text(text, str(path), path.resolve().parent)


# --- against a line ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelInfo:
    """What the host needs to know of one module channel (from its board config)."""

    name: str
    role: str  # sensor, actuator, status, setpoint (a loop's setpoint)
    lo: float
    hi: float
    unit: str = ""
    driven_by: str | None = None  # actuator owned by a loop: set the loop instead


def module_channels(line, module_id: str) -> dict[str, ChannelInfo]:
    """Channel name -> ChannelInfo for a module of ``line`` (its emulated board config)."""
    data, _ = module_config(line, module_id)
    loops = data.get("pid") or []
    owner = {lp["output"]: lp["name"] for lp in loops}
    out: dict[str, ChannelInfo] = {}
    for ch in data["channels"]:
        lo, hi = ch.get("range") or (-math.inf, math.inf)
        out[ch["name"]] = ChannelInfo(
            ch["name"], ch["role"], lo, hi, ch.get("unit", ""), owner.get(ch["name"])
        )
    for lp in loops:
        measured = out.get(lp.get("measure"))  # a loop's setpoint is in its measure's unit
        unit = lp.get("unit") or (measured.unit if measured else "")
        out[lp["name"]] = ChannelInfo(
            lp["name"], "setpoint", lp["setpoint_min"], lp["setpoint_max"], unit
        )
    return out


def _interlock_limits(line, module_id: str) -> list[tuple[str, str, float]]:
    """(channel, condition, limit) of the module's limit interlocks."""
    data, _ = module_config(line, module_id)
    out = []
    for il in data.get("interlocks") or []:
        if il.get("limit") is not None and il.get("condition") in ("above", "below"):
            out.append((il["channel"], il["condition"], float(il["limit"])))
    return out


@dataclass
class Collector:
    """The valve that sends product to collection: positions by outlet and role."""

    module: str
    channel: str
    positions: dict[str, int]  # outlet id / vessel role -> position
    collect_position: int | None
    vessel_ml: float | None


@dataclass
class PhaseEstimate:
    name: str
    nominal_s: float | None  # None: depends on a signal (unknown in advance)
    worst_s: float  # every open-ended wait running to its timeout


@dataclass
class RecipePlan:
    """What the recipe means on one line: derived flows and the consumption plan."""

    reactor: str
    reactor_volume_ml: float
    residence_time_s: float
    total_flow_ml_min: float
    flows: dict[str, float]  # reagent -> mL/min
    pump_flows: dict[str, float]  # pump -> mL/min
    mix_concentration_mol_l: dict[str, float]  # reagent -> in the combined stream
    pumps: list[str]  # every pump of the line
    collector: Collector | None
    channels: dict[str, dict[str, ChannelInfo]]  # module -> channel -> info
    consumption_ml: dict[str, float] = field(default_factory=dict)  # pump -> worst case
    nominal_consumption_ml: dict[str, float] = field(default_factory=dict)
    collected_ml: float = 0.0  # nominal
    worst_collected_ml: float = 0.0
    phases: list[PhaseEstimate] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def quantity(self, name: str, recipe: Recipe) -> float:
        if name == "temperature":
            return recipe.conditions.temperature_c
        if name == "pressure":
            return recipe.conditions.pressure_bar
        if name == "total_flow":
            return self.total_flow_ml_min
        if name.startswith("flow."):
            return self.flows[name[5:]]
        raise KeyError(name)

    def resolve(self, ref: ValueRef, recipe: Recipe) -> float:
        if ref.number is not None:
            return ref.number
        return ref.factor * self.quantity(ref.quantity, recipe) + ref.offset


def derive_flows(
    reagents: dict[str, Reagent], total_flow_ml_min: float
) -> tuple[dict[str, float], dict[str, float]]:
    """(flow per reagent in mL/min, concentration per reagent in the combined stream):
    Q_i = Q (e_i / c_i) / sum_j (e_j / c_j), so Q_i c_i is proportional to e_i."""
    weights = {n: r.equivalents / r.concentration_mol_l for n, r in reagents.items()}
    total_w = sum(weights.values())
    flows = {n: total_flow_ml_min * w / total_w for n, w in weights.items()}
    mix = {n: reagents[n].concentration_mol_l * flows[n] / total_flow_ml_min for n in reagents}
    return flows, mix


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def plan_recipe(recipe: Recipe, line) -> RecipePlan:
    """Derived flows and the consumption plan of ``recipe`` on ``line``; problems found
    on the way are in ``.errors`` (``check_recipe`` returns them)."""
    errors: list[str] = []
    src = str(recipe.file) if recipe.file else "<recipe>"
    ctx = _Ctx(src, recipe.text)

    def err(key, value, problem, allowed=None):
        errors.append(str(RecipeIssue(src, key, ctx.line(key), value, problem, allowed)))

    modules = line.modules
    if recipe.line != line.id:
        err("recipe.line", recipe.line, f"does not match the line's id {line.id!r}", line.id)
    line_solvent = getattr(getattr(line, "solvent", None), "name", None)
    if recipe.solvent and line_solvent not in (None, "custom") and recipe.solvent != line_solvent:
        err(
            "recipe.solvent",
            recipe.solvent,
            f"differs from the line's solvent {line_solvent!r} (its pressure and boiling-point "
            "checks assume that one)",
            line_solvent,
        )

    reactors = [m.id for m in modules.values() if m.kind == "reactor"]
    reactor = recipe.conditions.reactor
    if reactor is None:
        if len(reactors) == 1:
            reactor = reactors[0]
        else:
            err(
                "conditions.reactor",
                None,
                f"must be given: the line has {len(reactors)} reactors",
                ", ".join(reactors) or "none",
            )
    elif reactor not in reactors:
        err("conditions.reactor", reactor, "is not a reactor of the line", ", ".join(reactors))
        reactor = None
    volume = float(modules[reactor].volume_ml) if reactor else 1.0
    tau_s = recipe.conditions.residence_time_min * 60.0
    total = volume / recipe.conditions.residence_time_min  # mL/min
    flows, mix = derive_flows(recipe.reagents, total)

    channels: dict[str, dict[str, ChannelInfo]] = {
        mid: module_channels(line, mid) for mid in modules
    }
    pumps = [m.id for m in modules.values() if m.kind == "pump"]
    pump_flows: dict[str, float] = {}
    for rname, r in recipe.reagents.items():
        key = f"reagents.{rname}.pump"
        if r.pump not in modules or modules[r.pump].kind != "pump":
            err(key, r.pump, "is not a pump of the line", ", ".join(pumps))
            continue
        pump_flows[r.pump] = flows[rname]
        info = channels[r.pump].get("flow")
        hi = info.hi if info else math.inf
        max_flow = modules[r.pump].params.get("max_flow_ml_min")
        if max_flow is not None:
            hi = min(hi, max_flow)
        lo = info.lo if info else 0.0
        if not (lo <= flows[rname] <= hi):
            err(
                f"reagents.{rname}",
                round(flows[rname], 4),
                f"needs {_fmt(flows[rname])} mL/min from {r.pump} (total {_fmt(total)} mL/min "
                f"for {recipe.conditions.residence_time_min:g} min in {_fmt(volume)} mL)",
                f"{lo:g}..{hi:g} mL/min",
            )

    # The pressure the recipe regulates must sit below every pressure trip on the line.
    for mid in modules:
        for channel, cond, limit in _interlock_limits(line, mid):
            if channel == "pressure" and cond == "above":
                if recipe.conditions.pressure_bar >= limit:
                    err(
                        "conditions.pressure_bar",
                        recipe.conditions.pressure_bar,
                        f"reaches {mid}'s {channel} interlock ({limit:g} bar)",
                        f"< {limit:g}",
                    )

    collector = _collector(line, channels)
    plan = RecipePlan(
        reactor=reactor or "",
        reactor_volume_ml=volume,
        residence_time_s=tau_s,
        total_flow_ml_min=total,
        flows=flows,
        pump_flows=pump_flows,
        mix_concentration_mol_l=mix,
        pumps=pumps,
        collector=collector,
        channels=channels,
        errors=errors,
    )

    for _, step in recipe.steps():
        _check_step(recipe, plan, line, step, err)
    for seq in recipe.shutdowns:
        for step in seq.steps:
            _check_step(recipe, plan, line, step, err)

    if not errors:
        _estimate(recipe, plan, line, err)
    return plan


def _valve_info(line, channels, module_id: str) -> Collector:
    """A valve's positions by outlet id and by vessel role; "collect" and "waste" always
    name the positions leading to a collection and a waste vessel."""
    m = line.modules[module_id]
    positions: dict[str, int] = {}
    collect = vessel_ml = None
    comps = line.components()
    for pos, outlet in enumerate(m.params.get("outlets", [])):
        positions[outlet] = pos
        comp = comps.get(outlet)
        role = comp.params.get("role") if comp is not None else None
        if role is None:
            continue
        positions.setdefault(role, pos)
        if role == "collection" and collect is None:
            collect = pos
            vessel_ml = comp.params.get("volume_ml")
            positions.setdefault("collect", pos)
    channel = next(
        (c.name for c in channels[module_id].values() if c.role == "actuator"), "position"
    )
    return Collector(module_id, channel, positions, collect, vessel_ml)


def _collector(line, channels) -> Collector | None:
    """The line's product valve: the first valve with a collection vessel among its
    outlets (else the first valve)."""
    valves = [_valve_info(line, channels, m.id) for m in line.modules.values() if m.kind == "valve"]
    for v in valves:
        if v.collect_position is not None:
            return v
    return valves[0] if valves else None


def valve_target(plan: RecipePlan, line, step: Step) -> tuple[str, str, int] | str:
    """(module, channel, position) the step's ``valve`` means, or an error text."""
    if step.valve_module is not None:
        m = line.modules.get(step.valve_module)
        if m is None or m.kind != "valve":
            valves = [v.id for v in line.modules.values() if v.kind == "valve"]
            return f"valve_module {step.valve_module!r} is not a valve: allowed " + ", ".join(
                valves
            )
        coll = _valve_info(line, plan.channels, m.id)
    else:
        coll = plan.collector
        if coll is None:
            return "the line has no valve"
    pos = coll.positions.get(step.valve)
    if pos is None:
        return f"{step.valve!r} is no outlet of {coll.module}: allowed " + ", ".join(
            sorted(coll.positions)
        )
    return coll.module, coll.channel, pos


def _check_step(recipe, plan: RecipePlan, line, step: Step, err) -> None:
    modules = line.modules
    allowed_mods = ", ".join(modules)
    if step.modules is not None:
        for i, mid in enumerate(step.modules):
            if mid not in modules:
                err(f"{step.key}.modules[{i}]", mid, "is not a module of the line", allowed_mods)
    if step.valve is not None:
        target = valve_target(plan, line, step)
        if isinstance(target, str):
            err(f"{step.key}.valve", step.valve, target)
    for sp in step.sets:
        if sp.module not in modules:
            err(sp.key, f"{sp.module}.{sp.channel}", "names no module of the line", allowed_mods)
            continue
        chans = plan.channels[sp.module]
        info = chans.get(sp.channel)
        settable = [c.name for c in chans.values() if c.role == "setpoint"] + [
            c.name for c in chans.values() if c.role == "actuator" and c.driven_by is None
        ]
        if info is None or info.name not in settable:
            why = "is not a setpoint of " + sp.module
            if info is not None and info.driven_by:
                why += f" (loop {info.driven_by} drives it: set that)"
            err(sp.key, f"{sp.module}.{sp.channel}", why, ", ".join(settable))
            continue
        try:
            value = plan.resolve(sp.value, recipe)
        except KeyError:
            continue
        if not (info.lo <= value <= info.hi):
            err(
                sp.key,
                f"{sp.value} = {value:.4g}" if sp.value.quantity else value,
                f"is outside {sp.module}.{sp.channel}'s range",
                f"{info.lo:g}..{info.hi:g} {info.unit}".strip(),
            )
    w = step.wait
    if w is not None:
        for sig, key in [(w.signal, f"{step.key}.wait.signal")] + [
            ((s.module, s.channel), f"{step.key}.wait.steady") for s in w.steady
        ]:
            if sig is None:
                continue
            mid, ch = sig
            if mid not in modules:
                err(key, f"{mid}.{ch}", "names no module of the line", allowed_mods)
            elif ch not in plan.channels[mid]:
                err(
                    key,
                    f"{mid}.{ch}",
                    f"is not a channel of {mid}",
                    ", ".join(plan.channels[mid]),
                )
        if w.collected_ml is not None and (
            plan.collector is None or plan.collector.collect_position is None
        ):
            err(f"{step.key}.wait.collected_ml", w.collected_ml, "needs a collection valve")
        if w.timed_only and step.timeout_s < (w.seconds or 0.0):
            err(
                f"{step.key}.timeout_s",
                step.timeout_s,
                f"is shorter than the wait itself ({w.seconds:g} s)",
                f">= {w.seconds:g}",
            )


def _estimate(recipe: Recipe, plan: RecipePlan, line, err) -> None:
    """Walk the phases: how long each takes and what the pumps consume.  Nominal counts
    fixed waits only; the worst case runs every open-ended wait to its timeout."""
    running = {p: False for p in plan.pumps}
    commanded = {p: 0.0 for p in plan.pumps}
    at_collect = False
    nominal = {p: 0.0 for p in plan.pumps}
    worst = {p: 0.0 for p in plan.pumps}
    collected = worst_collected = 0.0
    coll = plan.collector

    def flow_now():
        return {p: commanded[p] if running[p] else 0.0 for p in plan.pumps}

    for phase in recipe.phases:
        p_nom: float | None = 0.0
        p_worst = 0.0
        for step in phase.steps:
            if step.service is not None:
                mods = step.modules if step.modules is not None else tuple(line.modules)
                for mid in mods:
                    if mid in running:
                        # a held module keeps its outputs: only these stop a pump
                        if step.service in ("start", "unhold"):
                            running[mid] = True
                        elif step.service in ("stop", "abort", "complete"):
                            running[mid] = False
            for sp in step.sets:
                if sp.module in commanded and sp.channel == "flow":
                    commanded[sp.module] = plan.resolve(sp.value, recipe)
            if step.valve is not None and coll is not None:
                target = valve_target(plan, line, step)
                if not isinstance(target, str) and target[0] == coll.module:
                    at_collect = target[2] == coll.collect_position
            w = step.wait
            if w is None:
                continue
            flows = flow_now()
            q = sum(flows.values())
            known = []
            if w.seconds is not None:
                known.append(w.seconds)
            if w.residence_times is not None:
                known.append(
                    w.residence_times * plan.reactor_volume_ml / q * 60.0 if q > 0 else math.inf
                )
            if w.collected_ml is not None:
                known.append(w.collected_ml / q * 60.0 if (q > 0 and at_collect) else math.inf)
            open_ended = w.signal is not None or bool(w.steady)
            nom = max(known) if known else 0.0
            if math.isinf(nom):
                err(
                    f"{step.key}.wait",
                    w.describe(),
                    "can never be met: nothing flows"
                    + (" into collection" if w.collected_ml is not None else ""),
                )
                nom = step.timeout_s
            elif nom > step.timeout_s:
                err(
                    f"{step.key}.timeout_s",
                    step.timeout_s,
                    f"is shorter than the wait's nominal length ({nom:.0f} s)",
                    f">= {nom:.0f}",
                )
            # A wait fixed by time alone lasts exactly that; any other may run to its
            # timeout (then it aborts, continues or holds, but draws feed until then).
            worst_s = nom if w.timed_only else max(step.timeout_s, nom)
            if p_nom is not None:
                p_nom = None if open_ended else p_nom + nom
            p_worst += worst_s
            for p, f in flows.items():
                nominal[p] += f * nom / 60.0
                worst[p] += f * worst_s / 60.0
            if at_collect:
                collected += q * nom / 60.0
                worst_collected += q * worst_s / 60.0
        plan.phases.append(PhaseEstimate(phase.name, p_nom, p_worst))
    plan.nominal_consumption_ml = nominal
    plan.consumption_ml = worst
    plan.collected_ml = collected
    plan.worst_collected_ml = worst_collected
    for p, need in worst.items():
        have = line.modules[p].params.get("feed_volume_ml")
        if have is not None and need > have + 1e-9:
            reagent = next((r.name for r in recipe.reagents.values() if r.pump == p), None)
            err(
                f"reagents.{reagent}" if reagent else "phases",
                round(need, 1),
                f"mL may be drawn from {p}'s feed (every open-ended wait running to its "
                f"timeout; {nominal[p]:.1f} mL nominally) but the line's feed holds "
                f"{have:g} mL",
                f"<= {have:g} mL (shorten timeouts or refill)",
            )
    if coll is not None and coll.vessel_ml is not None and worst_collected > coll.vessel_ml:
        err(
            "phases",
            round(worst_collected, 1),
            f"mL may reach the collection vessel ({collected:.1f} mL nominally) but it "
            f"holds {coll.vessel_ml:g} mL",
            f"<= {coll.vessel_ml:g} mL",
        )


@dataclass(frozen=True)
class OperatingPoint:
    """What the line checks judge a recipe by: the hottest reactor temperature it
    commands, the regulated pressure (the BPR set pressure, ``conditions.pressure_bar``),
    and where each is written (``origin``: quantity -> ``FILE:LINE: KEY = VALUE``), so a
    finding about them points at the recipe's key, not at the line file."""

    temperature_c: float
    pressure_bar: float
    origin: dict[str, str]


def operating_point(recipe: Recipe, line) -> OperatingPoint:
    """``conditions.temperature_c``, unless a step sets a reactor's temperature loop
    higher (a number, or ``temperature + 5``): then that step's value and key."""
    src = str(recipe.file) if recipe.file else "<recipe>"
    ctx = _Ctx(src, recipe.text)

    def where(key, shown):
        n = ctx.line(key)
        return f"{src}:{n}: {key} = {shown}" if n is not None else f"{src}: {key} = {shown}"

    cond = recipe.conditions
    hottest = cond.temperature_c
    origin = {
        "temperature_c": where("conditions.temperature_c", f"{cond.temperature_c:g}"),
        "pressure_bar": where("conditions.pressure_bar", f"{cond.pressure_bar:g}"),
    }
    steps = [st for _, st in recipe.steps()] + [st for sd in recipe.shutdowns for st in sd.steps]
    for step in steps:
        for sp in step.sets:
            value = _temperature_setpoint(line, sp, cond)
            if value is not None and value > hottest:
                hottest = value
                shown = f"{value:g}" if sp.value.number is not None else f'"{sp.value}" = {value:g}'
                origin["temperature_c"] = where(sp.key, shown)
    return OperatingPoint(hottest, cond.pressure_bar, origin)


def _temperature_setpoint(line, sp: Setpoint, cond: Conditions) -> float | None:
    """The degC value ``sp`` gives a reactor's loop setpoint, or None if it sets none."""
    module = line.modules.get(sp.module)
    if module is None or module.kind != "reactor":
        return None
    info = module_channels(line, sp.module).get(sp.channel)
    if info is None or info.role != "setpoint" or info.unit != "degC":
        return None
    ref = sp.value
    if ref.number is not None:
        return ref.number
    base = {"temperature": cond.temperature_c, "pressure": cond.pressure_bar}.get(ref.quantity)
    return None if base is None else ref.factor * base + ref.offset


def check_recipe(recipe: Recipe, line) -> list[str]:
    """Every problem running ``recipe`` on ``line`` would meet; empty when it fits."""
    return list(plan_recipe(recipe, line).errors)


def recipe_warnings(recipe: Recipe, line) -> list[str]:
    """Doubts short of errors: a reagent concentration that differs from what the line
    file says its feed holds."""
    out = []
    src = str(recipe.file) if recipe.file else "<recipe>"
    for r in recipe.reagents.values():
        pump = line.modules.get(r.pump)
        if pump is None:
            continue
        feed_c = pump.params.get("feed_concentration_mol_l")
        if feed_c is not None and abs(feed_c - r.concentration_mol_l) > 0.01 * max(feed_c, 1e-9):
            out.append(
                f"{src}: reagents.{r.name}.concentration_mol_l = {r.concentration_mol_l:g} "
                f"differs from the line's feed_concentration_mol_l = {feed_c:g} on {r.pump}"
            )
    return out
