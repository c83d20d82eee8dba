"""Reading a line file into a ``line.model.Line``, and the board configs of its modules.

A line file (``examples/lines/*.toml``) says what is plumbed to what and what the physics
needs to know about each piece:

* ``[line]``: ``id``, ``ambient_c``, ``solvent`` (a named solvent, or a table with
  ``viscosity_mPas``, ``density_g_ml`` ... optionally starting from a ``name``);
* ``[[modules]]``: the controlled modules (pump, reactor, bpr, analyzer, valve), each with
  ``board`` = its board config (relative to the line file or the repository) and its
  physical parameters.  The line's module id overrides the board config's, so one
  ``pump.toml`` serves ``pump_a`` and ``pump_b`` (``module_config``);
* ``[[parts]]``: passive pieces: ``tube``, ``mixer``, ``vessel`` (collection or waste);
* ``[[protections]]``: independent protection the software does not replace:
  ``relief_valve`` (at a component, ``set_bar``) and ``thermal_cutout`` (on a reactor,
  ``trip_c``);
* ``[[connections]]``: ``from``/``to`` pairs forming the flow graph, pumps to vessels.

The loader checks what the physics relies on (types, ranges, references, a flow graph
that runs from pumps to vessels without loops) and reports every problem at once, each
naming the file, the dotted key, the line, the value and what is allowed, like the board
config loader.  Deeper plausibility checks (ratings against relief settings, ...) belong
to the host.  Units are in the key names: ``_mm``, ``_m``, ``_ml``, ``_ul``, ``_bar``,
``_c`` (degC), ``_s``, ``_ms``, ``_w`` (W), ``_j_k`` (J/K), ``_w_k`` (W/K).
"""

from __future__ import annotations

from pathlib import Path

from edge.boardconfig import (
    ConfigError,
    compile_config,
    config_hash,
    decompile,
    emulate,
    load_board_config,
)
from edge.boardconfig.compile import board_file
from edge.boardconfig.core import (
    BAD,
    BOOL,
    CHOICE,
    FLOAT,
    ID_RE,
    ID_RULE,
    INT,
    MISSING,
    STR,
    TABLE,
    VALUE_TYPES,
    ConfigErrors,
    Context,
    Key,
    check_table,
    choice,
    did_you_mean,
    number,
    parse_toml,
    read_text,
)
from line.model import (
    MATERIALS,
    MODULE_KINDS,
    PART_KINDS,
    PROTECTION_KINDS,
    SOLVENTS,
    VESSEL_ROLES,
    Component,
    Line,
    Protection,
    Solvent,
    named_solvent,
)

ROOT = Path(__file__).resolve().parent.parent


class LineError(ConfigError):
    """A problem in a line file (the config core's located error: ``file``, ``key``,
    ``line``, ``value``, ``problem``, ``allowed``)."""


class LineErrors(ConfigErrors, LineError):
    """Every problem found in one line file (``errors``); attributes are the first one's."""


# --- schemas ---------------------------------------------------------------------------

IDS = "ids"  # a list of component ids
SPECIES = "species"  # a table component id -> number within lo..hi


def _ids(ctx, key, path, v):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        ctx.error(path, v, "is not a list of ids")
        return BAD
    return list(v)


def _species(ctx, key, path, v):
    if not isinstance(v, dict):
        ctx.error(path, v, "is not a table", "{name = number, ...}")
        return BAD
    out = {}
    for name, x in v.items():
        num = number(ctx, f"{path}.{name}", x, key.lo, key.hi)
        if num is not BAD:
            out[name] = num
    return out


LINE_TYPES = dict(VALUE_TYPES, **{IDS: _ids, SPECIES: _species})
REQUIRED = MISSING  # the default of a key that must be given


def _key(type_, default=None, lo=None, hi=None, doc="", choices=None) -> Key:
    """A line-file key; ``default`` REQUIRED: it must be given, None: optional."""
    required = default is REQUIRED
    return Key("", type_, doc, required, None if required else default, "", lo, hi, False, choices)


def _f(default=REQUIRED, lo=None, hi=None, doc=""):
    return _key(FLOAT, default, lo, hi, doc)


def _named(schema: dict[str, Key]) -> dict[str, Key]:
    for name, key in schema.items():
        key.name = name
    return schema


_FLOW_COMMON = {
    "rating_bar": _f(REQUIRED, 0.5, 2000.0, "pressure rating of the component (bar)"),
    "material": _key(CHOICE, None, choices=MATERIALS, doc="wetted material (tube swelling)"),
    "compliance_ul_bar": _f(None, 0.0, 1000.0, "override: volume taken up per bar (uL/bar)"),
    "tanks": _key(INT, None, 1, 500, doc="override: stirred tanks modelling dispersion"),
}

MODULE_SCHEMAS: dict[str, dict[str, Key]] = {
    "pump": {
        "max_flow_ml_min": _f(None, 0.001, 1000.0, "largest flow it can deliver"),
        "feed_volume_ml": _f(500.0, 0.0, 1e6, "reagent in its feed bottle"),
        "feed_concentration_mol_l": _f(1.0, 0.0, 20.0, "reagent concentration in the feed"),
        "response_s": _f(0.5, 0.001, 60.0, "first-order lag of flow after a setpoint change"),
        "pulsation": _f(0.02, 0.0, 0.5, "relative flow ripple per piston stroke"),
        "stroke_ul": _f(100.0, 1.0, 10000.0, "volume per stroke (ripple period)"),
        "dead_volume_ml": _f(0.1, 0.001, 100.0, "pump head and sensor volume"),
        "inner_diameter_mm": _f(1.0, 0.05, 50.0),
        "length_m": _f(0.05, 0.001, 100.0),
    },
    "reactor": {
        "volume_ml": _f(REQUIRED, 0.01, 10000.0, "coil volume"),
        "inner_diameter_mm": _f(1.0, 0.05, 50.0, "coil inner diameter"),
        "thermal_mass_j_k": _f(REQUIRED, 1.0, 1e6, "heat capacity of block and coil"),
        "ua_w_k": _f(REQUIRED, 0.0, 1000.0, "heat loss to ambient per kelvin"),
        "heater_w": _f(REQUIRED, 0.0, 100000.0, "heater power at full duty"),
        "probe_tau_s": _f(2.0, 0.0, 120.0, "temperature probe lag"),
        "exotherm": _key(TABLE, None, doc="reaction heat (see EXOTHERM_SCHEMA)"),
        "kinetics": _key(TABLE, None, doc="the reactions in the coil (see KINETICS_SCHEMA)"),
    },
    "bpr": {
        "open_conductance_ml_min_bar": _f(20.0, 0.001, 1e5, "flow per bar, valve fully open"),
        "rangeability": _f(1000.0, 2.0, 1e6, "equal-percentage valve: open / barely open"),
        "dead_volume_ml": _f(0.05, 0.001, 100.0),
        "inner_diameter_mm": _f(0.5, 0.05, 50.0, "ports (the valve seat sets the flow)"),
    },
    "analyzer": {
        "cell_volume_ul": _f(10.0, 0.1, 100000.0, "flow cell volume"),
        "inner_diameter_mm": _f(1.0, 0.05, 50.0),
        "path_mm": _f(1.0, 0.01, 1000.0, "optical path length"),
        "absorptivity": _key(SPECIES, None, 0.0, 1e6, doc="species (pump id) -> L/(mol cm)"),
        "species": _key(STR, None, doc="species a concentration channel reports (pump id)"),
        "molar_mass_g_mol": _f(100.0, 1.0, 1e6, "for g/L, mg/mL and ppm channels"),
        "response_s": _f(0.2, 0.0, 60.0, "detector electronics lag"),
    },
    "valve": {
        "outlets": _key(IDS, REQUIRED, doc="component downstream per position [0, 1]"),
        "switch_ms": _key(INT, 150, 0, 60000, doc="time to move between positions"),
        "dead_volume_ml": _f(0.005, 0.0001, 100.0),
        "inner_diameter_mm": _f(0.5, 0.05, 50.0),
    },
}
_MODULE_MATERIAL = {"pump": "ss", "reactor": "pfa", "bpr": "ss", "analyzer": "ss", "valve": "peek"}

EXOTHERM_SCHEMA = {
    "heat_w": _f(REQUIRED, 0.0, 1e6, "reaction heat at t_ref_c"),
    "t_ref_c": _f(REQUIRED, -50.0, 500.0),
    "doubling_c": _f(10.0, 0.1, 200.0, "the rate doubles every this many kelvin"),
    "max_w": _f(None, 0.0, 1e7, "limit set by the reagent supply (default 10 x heat_w)"),
    "needs_reagents": _key(BOOL, True, doc="scaled by the reagents present in the coil"),
}

# A reactor's chemistry (line/kinetics.py): A + B -> P (k1 [A][B]), P -> D (k2 [P]),
# P + B -> D promoted by B (k3 [P][B]^2), A -> S (k4 [A]); Arrhenius constants given at
# t_ref_c; what the analyzer downstream sees of it.
KINETICS_SCHEMA = {
    "a": _key(STR, REQUIRED, doc="the pump feeding A (the limiting reagent)"),
    "b": _key(STR, REQUIRED, doc="the pump feeding B"),
    "t_ref_c": _f(80.0, -50.0, 400.0, "temperature the k_ref values are given at"),
    "k1_ref_l_mol_min": _f(REQUIRED, 0.0, 1e6, "A + B -> P at t_ref_c"),
    "ea1_kj_mol": _f(REQUIRED, 0.0, 400.0),
    "k2_ref_per_min": _f(REQUIRED, 0.0, 1e6, "P -> D at t_ref_c"),
    "ea2_kj_mol": _f(REQUIRED, 0.0, 400.0),
    "k3_ref_l2_mol2_min": _f(0.0, 0.0, 1e6, "P + B -> D at t_ref_c (over-reaction, [P][B]^2)"),
    "ea3_kj_mol": _f(0.0, 0.0, 400.0),
    "k4_ref_per_min": _f(0.0, 0.0, 1e6, "A -> S at t_ref_c (decomposition of A)"),
    "ea4_kj_mol": _f(0.0, 0.0, 400.0),
    "absorptivity_product": _f(0.0, 0.0, 1e6, "P at the analyzer's line, L/(mol cm)"),
    "absorptivity_interferent": _f(0.0, 0.0, 1e6, "the interferent, L/(mol cm)"),
    "interferent": _key(STR, None, doc="what else absorbs: pump a or b, or degradant"),
    "noise_au": _f(0.0, 0.0, 10.0, "standard deviation of the absorbance noise (AU)"),
}

PART_SCHEMAS: dict[str, dict[str, Key]] = {
    "tube": {
        "inner_diameter_mm": _f(REQUIRED, 0.05, 50.0),
        "length_m": _f(REQUIRED, 0.001, 1000.0),
    },
    "mixer": {
        "volume_ml": _f(0.002, 0.0001, 1000.0),
        "inner_diameter_mm": _f(0.5, 0.05, 50.0),
    },
    "vessel": {
        "role": _key(CHOICE, REQUIRED, choices=VESSEL_ROLES),
        "volume_ml": _f(REQUIRED, 0.1, 1e7),
    },
}
_PART_MATERIAL = {"tube": "pfa", "mixer": "peek"}

PROTECTION_SCHEMAS: dict[str, dict[str, Key]] = {
    "relief_valve": {
        "set_bar": _f(REQUIRED, 0.1, 2000.0, "opening pressure"),
        "capacity_ml_min": _f(50.0, 0.01, 1e6, "flow it passes at 10 % over set_bar"),
    },
    "thermal_cutout": {
        "trip_c": _f(REQUIRED, 0.0, 1000.0, "opens the heater supply at this temperature"),
        # Omitted: a latching (manual-reset) limiter, what a process heater needs
        # (EN 60730-2-9 type 2.K, EN 14597 STB).  Given: a self-resetting thermostat.
        "reset_c": _f(None, -50.0, 1000.0, "closes again below; omitted: latches open"),
    },
}

SOLVENT_KEYS = {
    "name": _key(CHOICE, None, choices=tuple(SOLVENTS)),
    "viscosity_mPas": _f(None, 0.01, 100000.0),
    "density_g_ml": _f(None, 0.1, 25.0),
    "heat_capacity_j_gk": _f(None, 0.1, 20.0),
    "compressibility_per_bar": _f(None, 0.0, 0.01),
    "boiling_c": _f(None, -100.0, 600.0),
    "vaporization_kj_mol": _f(None, 1.0, 200.0),
    "viscosity_activation_k": _f(None, 0.0, 10000.0),
}


# --- loading -----------------------------------------------------------------------------


def _table(ctx: Context, path: str, data: dict, schema: dict[str, Key], fixed=()) -> dict:
    """The valid keys of ``data`` checked against ``schema``, defaults filled in (the
    core's ``check_table``; keys in ``fixed`` are the caller's)."""
    checked = check_table(ctx, data, schema, path, extra=fixed, types=LINE_TYPES)
    return {k: v for k, v in checked.items() if v is not None and v is not BAD}


def _id(ctx, path, v, seen: dict):
    if not isinstance(v, str) or not ID_RE.match(v) or v == "host":
        ctx.error(path, v, "is not a valid id", ID_RULE)
        return None
    if v in seen:
        ctx.error(path, v, f"is used twice (also {seen[v]})", "each id once")
        return None
    seen[v] = path
    return v


def _solvent(ctx, raw) -> Solvent:
    default = named_solvent("water")
    if raw is None:
        return default
    if isinstance(raw, str):
        if raw not in SOLVENTS:
            choice(ctx, "line.solvent", raw, SOLVENTS)
            return default
        return named_solvent(raw)
    if not isinstance(raw, dict):
        ctx.error("line.solvent", raw, "is neither a solvent name nor a table")
        return default
    vals = _table(ctx, "line.solvent", raw, SOLVENT_KEYS)
    name = vals.pop("name", None)
    if name is None:
        for req in ("viscosity_mPas", "density_g_ml"):
            if req not in raw:
                ctx.error(f"line.solvent.{req}", MISSING, "is required without a name")
        base = Solvent("custom", 1.0, 1.0)
    else:
        base = named_solvent(name)
    for k, v in vals.items():
        setattr(base, k, v)
    return base


_LINE_KEYS = {
    "id": _key(STR, REQUIRED),
    "description": _key(STR, None),
    "ambient_c": _f(22.0, -40.0, 60.0, "room temperature"),
    "solvent": _key(TABLE, None),  # name or table: checked by _solvent
}
_TOP = ("line", "modules", "parts", "protections", "connections")
for _schema in (
    _FLOW_COMMON,
    EXOTHERM_SCHEMA,
    KINETICS_SCHEMA,
    SOLVENT_KEYS,
    _LINE_KEYS,
    *MODULE_SCHEMAS.values(),
    *PART_SCHEMAS.values(),
    *PROTECTION_SCHEMAS.values(),
):
    _named(_schema)


def _list_of_tables(ctx, doc, name):
    v = doc.get(name, [])
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        ctx.error(name, v, "is not an array of tables", f"[[{name}]] sections")
        return []
    return v


def _resolve_board(ctx, key, value, base: Path) -> Path | None:
    if not isinstance(value, str) or not value:
        ctx.error(key, value, "is not a path", "a board config path")
        return None
    for candidate in (base / value, ROOT / value):
        if candidate.is_file():
            return candidate.resolve()
    ctx.error(key, value, "names no file", f"a path relative to {base} or {ROOT}")
    return None


def load_line_text(text: str, filename: str = "<line>", base: Path | None = None) -> Line:
    """Validate TOML ``text``; board paths resolve against ``base`` (default: the repo)."""
    ctx = Context(filename, text)
    try:
        doc = parse_toml(ctx)
    except ConfigErrors as exc:
        raise LineErrors(exc.errors) from None
    base = base if base is not None else ROOT
    for name, v in doc.items():
        if name not in _TOP:
            problem = "is not a known section" + did_you_mean(name, _TOP)
            ctx.error(name, v, problem, ", ".join(_TOP))
    head, solvent = _line_head(ctx, doc)
    seen: dict[str, str] = {}  # id -> where it is first used (ids are unique line-wide)
    modules = _modules(ctx, doc, seen, base)
    parts = _parts(ctx, doc, seen)
    components = dict(modules)
    components.update(parts)
    protections = _protections(ctx, doc, seen, modules, components)
    connections = _connections(ctx, doc, components)
    _check_kinetics(ctx, doc, modules)
    line = Line(
        id=head.get("id", "line"),
        file=None if filename.startswith("<") else Path(filename),
        solvent=solvent,
        ambient_c=head.get("ambient_c", 22.0),
        modules=modules,
        parts=parts,
        protections=protections,
        connections=connections,
        description=head.get("description", ""),
    )
    if not ctx.errors:
        _check_graph(ctx, line)
    if ctx.errors:
        raise LineErrors(ctx.errors)
    return line


def _line_head(ctx, doc) -> tuple[dict, Solvent]:
    """The ``[line]`` table (solvent aside) and the solvent."""
    raw_line = doc.get("line")
    if not isinstance(raw_line, dict):
        shown = MISSING if raw_line is None else raw_line
        ctx.error("line", shown, "is required", "a [line] table")
        raw_line = {}
    head = _table(
        ctx,
        "line",
        {k: v for k, v in raw_line.items() if k != "solvent"},
        _LINE_KEYS,
        fixed=("solvent",),
    )
    return head, _solvent(ctx, raw_line.get("solvent"))


def _id_and_kind(ctx, path, raw, seen, kinds) -> tuple[str | None, str | None]:
    """(id, kind) of one module, part or protection table; kind None when unknown."""
    cid = _id(ctx, path + ".id", raw.get("id"), seen) if "id" in raw else None
    if "id" not in raw:
        ctx.error(path + ".id", MISSING, "is required")
    kind = raw.get("kind")
    if kind not in kinds:
        choice(ctx, path + ".kind", kind, kinds)
        return cid, None
    return cid, kind


def _modules(ctx, doc, seen, base: Path) -> dict[str, Component]:
    modules: dict[str, Component] = {}
    for i, raw in enumerate(_list_of_tables(ctx, doc, "modules")):
        path = f"modules[{i}]"
        mid, kind = _id_and_kind(ctx, path, raw, seen, MODULE_KINDS)
        if kind is None:
            continue
        schema = dict(_FLOW_COMMON)
        schema.update(MODULE_SCHEMAS[kind])
        params = _table(ctx, path, raw, schema, fixed=("id", "kind", "board"))
        params.setdefault("material", _MODULE_MATERIAL[kind])
        if "exotherm" in params:
            params["exotherm"] = _table(
                ctx, path + ".exotherm", params["exotherm"], EXOTHERM_SCHEMA
            )
            params["exotherm"].setdefault("max_w", 10.0 * params["exotherm"].get("heat_w", 0.0))
        if "kinetics" in params:
            params["kinetics"] = _table(
                ctx, path + ".kinetics", params["kinetics"], KINETICS_SCHEMA
            )
        board = None
        if "board" not in raw:
            ctx.error(path + ".board", MISSING, "is required")
        else:
            board = _resolve_board(ctx, path + ".board", raw["board"], base)
        if board is not None:
            _check_board(ctx, path + ".board", raw["board"], board, kind, params)
        if mid is not None:
            modules[mid] = Component(mid, kind, "module", params, board)
    return modules


def _check_board(ctx, key, value, board: Path, kind: str, params: dict) -> None:
    """The module's board config must load and be of its kind; a pump without
    ``max_flow_ml_min`` takes its board's flow range."""
    try:
        cfg = load_board_config(board)
    except ConfigError as exc:
        ctx.error(key, value, f"is not a valid board config ({exc})")
        return
    if cfg.kind != kind:
        ctx.error(key, value, f"is a {cfg.kind} board, not a {kind}", f"a {kind} board config")
    elif kind == "pump" and "max_flow_ml_min" not in params:
        params["max_flow_ml_min"] = _channel_range(cfg.data, "flow")[1]


def _parts(ctx, doc, seen) -> dict[str, Component]:
    parts: dict[str, Component] = {}
    for i, raw in enumerate(_list_of_tables(ctx, doc, "parts")):
        path = f"parts[{i}]"
        pid, kind = _id_and_kind(ctx, path, raw, seen, PART_KINDS)
        if kind is None:
            continue
        schema = dict(PART_SCHEMAS[kind])
        if kind != "vessel":
            schema.update(_FLOW_COMMON)
        params = _table(ctx, path, raw, schema, fixed=("id", "kind"))
        if kind != "vessel":
            params.setdefault("material", _PART_MATERIAL[kind])
        if pid is not None:
            parts[pid] = Component(pid, kind, "part", params)
    return parts


def _protections(ctx, doc, seen, modules, components) -> list[Protection]:
    protections: list[Protection] = []
    for i, raw in enumerate(_list_of_tables(ctx, doc, "protections")):
        path = f"protections[{i}]"
        rid, kind = _id_and_kind(ctx, path, raw, seen, PROTECTION_KINDS)
        if kind is None:
            continue
        params = _table(ctx, path, raw, PROTECTION_SCHEMAS[kind], fixed=("id", "kind", "at"))
        at = raw.get("at")
        target = components.get(at) if isinstance(at, str) else None
        if kind == "relief_valve":
            allowed = sorted(c for c, comp in components.items() if comp.kind != "vessel")
            ok = target is not None and target.kind != "vessel"
        else:
            allowed = sorted(m for m, comp in modules.items() if comp.kind == "reactor")
            ok = target is not None and target.kind == "reactor"
        if not ok:
            ctx.error(
                path + ".at",
                MISSING if at is None else at,
                "names no component it can protect" if at is not None else "is required",
                ", ".join(allowed) or "none in this line",
            )
            continue
        if rid is not None:
            protections.append(Protection(rid, kind, at, params))
    return protections


def _connections(ctx, doc, components) -> list[tuple[str, str]]:
    connections: list[tuple[str, str]] = []
    for i, raw in enumerate(_list_of_tables(ctx, doc, "connections")):
        path = f"connections[{i}]"
        for k in raw:
            if k not in ("from", "to"):
                ctx.error(f"{path}.{k}", raw[k], "is not a known key", "from, to")
        ends = []
        for end in ("from", "to"):
            v = raw.get(end)
            if v not in components:
                problem = "is required" if v is None else "names no module or part"
                problem += did_you_mean(str(v), components)
                shown = MISSING if v is None else v
                ctx.error(f"{path}.{end}", shown, problem, ", ".join(sorted(components)))
            ends.append(v)
        if all(e in components for e in ends):
            if ends[0] == ends[1] or tuple(ends) in connections:
                ctx.error(path, ends, "connects a component to itself or repeats a connection")
            else:
                connections.append((ends[0], ends[1]))
    return connections


def _check_kinetics(ctx, doc, modules: dict[str, Component]) -> None:
    """A reactor's ``kinetics`` names two different pumps for A and B, and an
    interferent that is one of them or the degradant (default: B)."""
    pumps = sorted(m for m, comp in modules.items() if comp.kind == "pump")
    raw_modules = doc.get("modules") if isinstance(doc.get("modules"), list) else []
    for i, raw in enumerate(raw_modules):
        kin = modules.get(raw.get("id")) if isinstance(raw, dict) else None
        kin = kin.params.get("kinetics") if kin is not None else None
        if not isinstance(kin, dict):
            continue
        path = f"modules[{i}].kinetics"
        for end in ("a", "b"):
            if end in kin and kin[end] not in pumps:
                problem = "names no pump" + did_you_mean(str(kin[end]), pumps)
                ctx.error(f"{path}.{end}", kin[end], problem, ", ".join(pumps))
        if kin.get("a") is not None and kin.get("a") == kin.get("b"):
            ctx.error(f"{path}.b", kin["b"], "is the same pump as a", "a different pump")
        kin.setdefault("interferent", kin.get("b"))
        allowed = list(dict.fromkeys(x for x in (kin.get("a"), kin.get("b")) if x))
        allowed.append("degradant")
        if kin["interferent"] not in allowed:
            ctx.error(
                f"{path}.interferent", kin["interferent"], "is not a species", ", ".join(allowed)
            )


def _channel_range(data: dict, name: str) -> tuple[float, float]:
    for ch in data["channels"]:
        if ch["name"] == name:
            return tuple(ch["range"])
    raise KeyError(name)


def _check_graph(ctx: Context, line: Line) -> None:
    """Pumps feed the line, everything flows on to a vessel, nothing loops."""
    comps = line.components()
    index = {c: i for i, c in enumerate(line.modules)}
    index.update({c: i for i, c in enumerate(line.parts)})

    def key(cid):
        return f"{'modules' if cid in line.modules else 'parts'}[{index[cid]}]"

    if not line.modules_of("pump"):
        ctx.error("modules", MISSING, "has no pump", "at least one module of kind pump")
    for cid, comp in comps.items():
        up, down = line.upstream(cid), line.downstream(cid)
        if comp.kind == "pump" and up:
            ctx.error(key(cid), cid, f"is a pump fed from {up[0]!r}", "no connection into a pump")
        if comp.kind != "pump" and not up:
            ctx.error(key(cid), cid, "has no connection into it", "a connection from upstream")
        if comp.kind == "vessel":
            if down:
                ctx.error(key(cid), cid, "is a vessel with an outflow", "no connection from it")
        elif comp.kind == "valve":
            outlets = comp.outlets
            if len(outlets) != 2 or sorted(outlets) != sorted(down):
                ctx.error(
                    key(cid) + ".outlets",
                    outlets,
                    f"must be the two components it connects to ({', '.join(down)})",
                    "[position 0, position 1]",
                )
        elif len(down) != 1:
            ctx.error(key(cid), cid, f"has {len(down)} outflows", "exactly one (valves: two)")
    for an in line.modules_of("analyzer"):
        for sp in list(an.params.get("absorptivity", {})) + (
            [an.species] if "species" in an.params else []
        ):
            if sp not in line.modules or line.modules[sp].kind != "pump":
                ctx.error(
                    f"{key(an.id)}.absorptivity",
                    sp,
                    "names no pump (species)",
                    ", ".join(m.id for m in line.modules_of("pump")),
                )
    order = line.flow_order()
    if len(order) != len(comps):
        stuck = sorted(set(comps) - set(order))
        ctx.error("connections", stuck, "form a loop", "a flow graph without cycles")
        return
    if ctx.errors:
        return
    reaches = {c: comps[c].kind == "vessel" for c in comps}
    for c in reversed(order):
        reaches[c] = reaches[c] or any(reaches[d] for d in line.downstream(c))
    for c in order:
        if not reaches[c]:
            ctx.error(key(c), c, "has no path to a vessel", "every flow ends in a vessel")


def load_line(path) -> Line:
    """Read and validate the line file at ``path``; raises LineErrors."""
    path = Path(path)
    try:
        text = read_text(path)
    except ConfigErrors as exc:
        raise LineErrors(exc.errors) from None
    return load_line_text(text, str(path), path.resolve().parent)


# --- board configs of the line's modules ---------------------------------------------------

_COMPILED: dict[tuple[str, str], tuple[dict, bytes, dict]] = {}


def _compiled(line: Line, module_id: str) -> tuple[dict, bytes, dict]:
    blob, digest, hardware = _compiled_blob(line, module_id)
    return decompile(blob), digest, hardware


def _compiled_blob(line: Line, module_id: str) -> tuple[bytes, bytes, dict]:
    module = line.modules[module_id]
    cache_key = (str(module.board), module_id)
    hit = _COMPILED.get(cache_key)
    if hit is None:
        cfg = load_board_config(module.board)
        hardware = {ch["name"]: dict(ch) for ch in cfg.data["channels"]}
        emulated = emulate(cfg)
        emulated.data["module"]["id"] = module_id
        blob = compile_config(emulated)
        hit = (blob, config_hash(blob), hardware)
        _COMPILED[cache_key] = hit
    return hit


def module_config(line: Line, module_id: str) -> tuple[dict, bytes]:
    """The compiled emulated board config of ``module_id`` (its id set to the line's) and
    its 8-byte hash: ``(dict, hash)``, fresh dict on every call."""
    data, digest, _ = _compiled(line, module_id)
    return data, digest


def board_channels(line: Line, module_id: str) -> dict[str, dict]:
    """The hardware channel specs (before emulation): what the real driver would be, so
    the emulator can reproduce its resolution (ADC bits, reference resistor, shunt)."""
    return _compiled(line, module_id)[2]


def module_board_file(line: Line, module_id: str) -> bytes:
    """The board file (``config.bin``: hash + compiled emulated config) of ``module_id``:
    what a module process under the MicroPython Unix port boots from."""
    return board_file(_compiled_blob(line, module_id)[0])
