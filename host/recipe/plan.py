"""What a recipe means on one line: the pump flows derived from its chemistry, its
checks against the line's modules and board configs, the feed and collection it
consumes (``plan_recipe``), and its operating point for the line checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge.boardconfig.core import Context
from host.recipe.model import Conditions, Reagent, Recipe, RecipeIssue, Setpoint, Step, ValueRef
from line.loader import module_config
from line.solvents import UnknownSolventError, solvent_data

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
    least_s: float = 0.0  # the shortest it can take: nominal, a signal's for_s, a steady window


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
    least_consumption_ml: dict[str, float] = field(default_factory=dict)  # pump -> at least
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


def _reporter(recipe: Recipe):
    """(errors, err): ``err(key, value, problem, allowed=None)`` appends to ``errors`` a
    located text naming the recipe's file, key and line."""
    errors: list[str] = []
    src = str(recipe.file) if recipe.file else "<recipe>"
    ctx = Context(src, recipe.text)

    def err(key, value, problem, allowed=None):
        errors.append(str(RecipeIssue(src, key, ctx.line(key), value, problem, allowed)))

    return errors, err


def plan_recipe(recipe: Recipe, line) -> RecipePlan:
    """Derived flows and the consumption plan of ``recipe`` on ``line``; problems found
    on the way are in ``.errors`` (``check_recipe`` returns them)."""
    errors, err = _reporter(recipe)
    modules = line.modules
    _check_line_and_solvent(recipe, line, err)
    reactor = _reactor(recipe, line, err)
    volume = float(modules[reactor].volume_ml) if reactor else 1.0
    tau_s = recipe.conditions.residence_time_min * 60.0
    total = volume / recipe.conditions.residence_time_min  # mL/min
    flows, mix = derive_flows(recipe.reagents, total)

    channels: dict[str, dict[str, ChannelInfo]] = {
        mid: module_channels(line, mid) for mid in modules
    }
    pump_flows = _pump_flows(recipe, line, channels, flows, total, volume, err)
    _check_pressure_trips(recipe, line, err)
    plan = RecipePlan(
        reactor=reactor or "",
        reactor_volume_ml=volume,
        residence_time_s=tau_s,
        total_flow_ml_min=total,
        flows=flows,
        pump_flows=pump_flows,
        mix_concentration_mol_l=mix,
        pumps=[m.id for m in modules.values() if m.kind == "pump"],
        collector=_collector(line, channels),
        channels=channels,
        errors=errors,
    )

    for _, step in recipe.steps():
        _check_step(recipe, plan, line, step, err)
    for seq in recipe.shutdowns:
        for step in seq.steps:
            _check_step(recipe, plan, line, step, err)
    for phase in recipe.phases:
        if phase.quality is not None:
            _check_quality(plan, line, phase, err)

    if not errors:
        _estimate(recipe, plan, line, err)
    return plan


def _check_line_and_solvent(recipe: Recipe, line, err) -> None:
    if recipe.line != line.id:
        err("recipe.line", recipe.line, f"does not match the line's id {line.id!r}", line.id)
    line_solvent = getattr(getattr(line, "solvent", None), "name", None)
    if (
        recipe.solvent
        and line_solvent not in (None, "custom")
        and _solvent_key(recipe.solvent) != _solvent_key(line_solvent)
    ):
        err(
            "recipe.solvent",
            recipe.solvent,
            f"differs from the line's solvent {line_solvent!r} (its pressure and boiling-point "
            "checks assume that one)",
            line_solvent,
        )


def _solvent_key(name: str) -> str:
    """The solvent ``name`` stands for (``MeCN`` and ``acetonitrile`` are one), or the
    name itself when the boiling-point data does not know it."""
    try:
        return solvent_data(name).name
    except UnknownSolventError:
        return name


def _reactor(recipe: Recipe, line, err) -> str | None:
    """The reactor whose volume sets the flows: ``conditions.reactor``, or the line's
    only one."""
    reactors = [m.id for m in line.modules.values() if m.kind == "reactor"]
    reactor = recipe.conditions.reactor
    if reactor is None:
        if len(reactors) == 1:
            return reactors[0]
        err(
            "conditions.reactor",
            None,
            f"must be given: the line has {len(reactors)} reactors",
            ", ".join(reactors) or "none",
        )
    elif reactor not in reactors:
        err("conditions.reactor", reactor, "is not a reactor of the line", ", ".join(reactors))
        return None
    return reactor


def _pump_flows(recipe: Recipe, line, channels, flows, total, volume, err) -> dict[str, float]:
    """Pump -> mL/min; each reagent's pump must exist and deliver its flow (``total``
    mL/min through ``volume`` mL)."""
    modules = line.modules
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
    return pump_flows


def _check_pressure_trips(recipe: Recipe, line, err) -> None:
    """The pressure the recipe regulates must sit below every pressure trip on the line."""
    for mid in line.modules:
        for channel, cond, limit in _interlock_limits(line, mid):
            if channel == "pressure" and cond == "above":
                if recipe.conditions.pressure_bar >= limit:
                    err(
                        "conditions.pressure_bar",
                        recipe.conditions.pressure_bar,
                        f"reaches {mid}'s {channel} interlock ({limit:g} bar)",
                        f"< {limit:g}",
                    )


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


def _check_quality(plan: RecipePlan, line, phase, err) -> None:
    """A quality spec's signals are channels of the line's modules, and its phase sends
    the outlet to collection (nothing else is collected, so nothing else is judged)."""
    for lim in phase.quality.limits:
        if lim.module not in line.modules:
            err(f"{lim.key}.signal", f"{lim.module}.{lim.channel}", "names no module of the line")
        elif lim.channel not in plan.channels[lim.module]:
            err(
                f"{lim.key}.signal",
                f"{lim.module}.{lim.channel}",
                f"is not a channel of {lim.module}",
                ", ".join(plan.channels[lim.module]),
            )
    if not any(step.valve == "collect" for step in phase.steps):
        err(
            phase.quality.key,
            phase.name,
            "is on a phase that does not collect",
            'a phase with valve = "collect"',
        )


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


class _PumpState:
    """What the pumps and the product valve do at one point of the procedure."""

    def __init__(self, plan: RecipePlan):
        self.running = {p: False for p in plan.pumps}
        self.commanded = {p: 0.0 for p in plan.pumps}
        self.at_collect = False

    def apply(self, recipe: Recipe, plan: RecipePlan, line, step: Step) -> None:
        """Follow ``step``'s service command, flow setpoints and valve move."""
        if step.service is not None:
            mods = step.modules if step.modules is not None else tuple(line.modules)
            for mid in mods:
                if mid in self.running:
                    # a held module keeps its outputs: only these stop a pump
                    if step.service in ("start", "unhold"):
                        self.running[mid] = True
                    elif step.service in ("stop", "abort", "complete"):
                        self.running[mid] = False
        for sp in step.sets:
            if sp.module in self.commanded and sp.channel == "flow":
                self.commanded[sp.module] = plan.resolve(sp.value, recipe)
        coll = plan.collector
        if step.valve is not None and coll is not None:
            target = valve_target(plan, line, step)
            if not isinstance(target, str) and target[0] == coll.module:
                self.at_collect = target[2] == coll.collect_position

    def flows(self) -> dict[str, float]:
        return {p: self.commanded[p] if self.running[p] else 0.0 for p in self.running}


def _estimate(recipe: Recipe, plan: RecipePlan, line, err) -> None:
    """Walk the phases: how long each takes and what the pumps consume.  Nominal counts
    fixed waits only; the worst case runs every open-ended wait to its timeout."""
    state = _PumpState(plan)
    nominal = plan.nominal_consumption_ml = {p: 0.0 for p in plan.pumps}
    worst = plan.consumption_ml = {p: 0.0 for p in plan.pumps}
    least = plan.least_consumption_ml = {p: 0.0 for p in plan.pumps}
    plan.collected_ml = plan.worst_collected_ml = 0.0
    for phase in recipe.phases:
        p_nom: float | None = 0.0
        p_worst = p_least = 0.0
        for step in phase.steps:
            state.apply(recipe, plan, line, step)
            w = step.wait
            if w is None:
                continue
            flows = state.flows()
            q = sum(flows.values())
            nom, worst_s = _wait_length(plan, step, q, state.at_collect, err)
            # A signal must hold for for_s, a steady signal for its whole window.
            least_s = min(worst_s, max([nom, w.for_s] + [s.window_s for s in w.steady]))
            if p_nom is not None:
                p_nom = None if (w.signal is not None or w.steady) else p_nom + nom
            p_worst += worst_s
            p_least += least_s
            for p, f in flows.items():
                nominal[p] += f * nom / 60.0
                worst[p] += f * worst_s / 60.0
                least[p] += f * least_s / 60.0
            if state.at_collect:
                plan.collected_ml += q * nom / 60.0
                plan.worst_collected_ml += q * worst_s / 60.0
        plan.phases.append(PhaseEstimate(phase.name, p_nom, p_worst, p_least))
    _check_consumption(recipe, plan, line, err)


def _wait_length(plan: RecipePlan, step: Step, q: float, at_collect: bool, err):
    """(nominal, worst case) seconds of ``step``'s wait with ``q`` mL/min flowing."""
    w = step.wait
    assert w is not None
    known = []
    if w.seconds is not None:
        known.append(w.seconds)
    if w.residence_times is not None:
        known.append(w.residence_times * plan.reactor_volume_ml / q * 60.0 if q > 0 else math.inf)
    if w.collected_ml is not None:
        known.append(w.collected_ml / q * 60.0 if (q > 0 and at_collect) else math.inf)
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
    return nom, nom if w.timed_only else max(step.timeout_s, nom)


def _check_consumption(recipe: Recipe, plan: RecipePlan, line, err) -> None:
    """The worst case must fit in each pump's feed and in the collection vessel."""
    nominal, worst = plan.nominal_consumption_ml, plan.consumption_ml
    collected, worst_collected = plan.collected_ml, plan.worst_collected_ml
    coll = plan.collector
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
    ctx = Context(src, recipe.text)

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
