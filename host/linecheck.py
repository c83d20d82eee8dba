"""Plausibility and safety checks of a line before anything moves.

``line.loader.load_line`` already rejects what the physics cannot run (types, ranges,
unknown references, pumps with an inlet, vessels with an outlet, valve outlets that do not
match the connections, loops, flows that end nowhere).  ``check_line`` adds what a
process engineer checks on the drawing (docs/lines.md explains each rule, with the demo
line as the worked example):

* every module of the line is present, and of the right kind, among the births seen;
* every component's pressure rating is at least the highest pressure it can see: the
  maximum pressure of any pump that can push into it (a pump's maximum is its own
  ``rating_bar``), or the set pressure of a relief valve that limits it;
* every reactor has an independent thermal cut-out tripping above the software
  over-temperature interlock of its board config;
* the solvent's boiling point at the regulated pressure is at least ``BOILING_MARGIN_C``
  above the reactor temperature (an error), the reactor's over-temperature trip sits
  below that boiling point (a warning otherwise: the coil could boil before anything
  trips), and a back-pressure regulator holds the reactor when it runs above the
  solvent's normal boiling point;
* reactor volume and residence time from the graph and the flows.

Deterministic and side-effect free apart from reading the modules' board configs.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge.boardconfig import ConfigError, load_board_config
from line.hydraulics import internal_volume_ml
from line.model import Component, Line
from line.solvents import (
    ATMOSPHERE_BAR,
    UnknownSolventError,
    gauge_to_absolute,
    known_solvents,
    solvent_data,
)

# A setpoint this close to boiling (degC) is refused: the PID overshoots by a few degC
# on the way up (4 degC in the emulated demo), and vapour-pressure data, probe placement
# and hot spots in a coil easily account for the rest.
BOILING_MARGIN_C = 10.0


@dataclass(frozen=True)
class LineIssue:
    """One finding: ``code`` (stable snake_case), ``component`` (id or None) and a
    ``message`` naming the file, key, value and the allowed range or the fix."""

    code: str
    component: str | None
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code, "component": self.component, "message": self.message}

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Segment:
    """One component on the flow path, in flow order (pumps first)."""

    component: str
    kind: str
    volume_ml: float
    rating_bar: float | None
    max_pressure_bar: float | None  # None for vessels (open to the atmosphere)
    limited_by: str | None  # relief valve id that limits max_pressure_bar, if any
    heated: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class LineReport:
    line: Line
    errors: list[LineIssue] = field(default_factory=list)
    warnings: list[LineIssue] = field(default_factory=list)
    notes: list[LineIssue] = field(default_factory=list)
    reactor_volumes_ml: dict[str, float] = field(default_factory=dict)
    max_pressure_bar: dict[str, float] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    residence_times_s: dict[str, float] = field(default_factory=dict)  # with flows given

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def reactor_volume_ml(self) -> float:
        """Total heated volume: every reactor's coil."""
        return sum(self.reactor_volumes_ml.values())

    @property
    def max_pump_pressure_bar(self) -> float:
        """The highest pressure any pump of the line can reach (its rating)."""
        ratings = [m.params.get("rating_bar") for m in self.line.modules_of("pump")]
        return max((r for r in ratings if r is not None), default=0.0)

    def volume_ml(self, component: str) -> float:
        """Internal volume of ``component`` (tubes from inner diameter and length; 0 for
        vessels, whose capacity is not part of the flow path)."""
        return component_volume_ml(self.line.component(component))

    def residence_time_s(self, total_flow_ml_min: float, reactor: str | None = None) -> float:
        """Time the liquid spends in the heated volume (or in ``reactor``) at a flow."""
        if not total_flow_ml_min > 0:
            raise ValueError(f"total flow {total_flow_ml_min} mL/min must be above 0")
        volume = self.reactor_volumes_ml[reactor] if reactor else self.reactor_volume_ml
        return volume / total_flow_ml_min * 60.0

    def to_dict(self) -> dict:
        return {
            "line": self.line.id,
            "ok": self.ok,
            "errors": [i.to_dict() for i in self.errors],
            "warnings": [i.to_dict() for i in self.warnings],
            "notes": [i.to_dict() for i in self.notes],
            "reactor_volume_ml": self.reactor_volume_ml,
            "reactor_volumes_ml": dict(self.reactor_volumes_ml),
            "max_pressure_bar": dict(self.max_pressure_bar),
            "residence_times_s": dict(self.residence_times_s),
        }


def component_volume_ml(comp: Component) -> float:
    if comp.kind == "vessel":
        return 0.0
    return internal_volume_ml(comp)


def solvent_name(line: Line, override: str | None = None) -> tuple[str | None, str]:
    """The solvent the boiling-point check uses: (its name, or None when the line file
    declares none; where it comes from: "recipe.solvent" or "line.solvent")."""
    if override is not None:
        return override, "recipe.solvent"
    if line.file is not None:
        try:
            raw = tomllib.loads(Path(line.file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            raw = {}
        if "solvent" not in raw.get("line", {}):
            return None, "line.solvent"
    return line.solvent.name, "line.solvent"


def solvent_boiling_point_c(line: Line, name: str, p_abs_bar: float) -> float:
    """The boiling point (degC) the checks use for solvent ``name`` at ``p_abs_bar`` bar
    absolute: a custom solvent table's own ``boiling_c`` and ``vaporization_kj_mol``
    (Clausius-Clapeyron, ``line.model.Solvent``) when it gives them, else the Antoine data
    of ``line/solvents.py``.  Raises ``UnknownSolventError`` for a name with no data."""
    if name == "custom":
        bp = line.solvent.boiling_point_c(p_abs_bar)
        if bp is not None:
            return bp
    return solvent_data(name).boiling_point_c(p_abs_bar)


def check_line(
    line: Line,
    *,
    temperature_c: float | None = None,
    pressure_bar: float | None = None,
    flows_ml_min: dict[str, float] | None = None,
    modules_seen: dict[str, str] | None = None,
    solvent: str | None = None,
    origin: dict[str, str] | None = None,
) -> LineReport:
    """Check ``line``; the operating point (reactor ``temperature_c``, regulated
    ``pressure_bar`` gauge, pump flows) and the births seen (``modules_seen``: id ->
    kind) are optional and enable the checks that need them.  ``solvent`` overrides the
    line's (a recipe may name one).  ``origin`` says where the operating point was
    written ("temperature_c" / "pressure_bar" -> ``FILE:LINE: KEY = VALUE``, e.g. a
    recipe's conditions): findings about it are located there instead of the line file."""
    report = LineReport(line)
    checker = _Checker(line, report, origin)
    checker.run(temperature_c, pressure_bar, flows_ml_min, modules_seen, solvent)
    return report


class _Checker:
    def __init__(self, line: Line, report: LineReport, origin: dict[str, str] | None = None):
        self.line = line
        self.report = report
        self.file = str(line.file) if line.file is not None else f"line {line.id}"
        self.origin = origin or {}
        self.comps = line.components()
        self.order = line.flow_order()
        self._index = {c: i for i, c in enumerate(line.modules)}
        self._index.update({c: i for i, c in enumerate(line.parts)})
        self._boards: dict[str, dict | None] = {}
        self.limited_by: dict[str, str | None] = {}

    # --- helpers ------------------------------------------------------------------------

    def key(self, cid: str, name: str | None = None) -> str:
        section = "modules" if cid in self.line.modules else "parts"
        base = f"{section}[{self._index[cid]}]"
        return f"{base}.{name}" if name else base

    def protection_key(self, prot, name: str) -> str:
        return f"protections[{self.line.protections.index(prot)}].{name}"

    def error(self, code, component, text, at: str | None = None):
        self.report.errors.append(LineIssue(code, component, f"{at or self.file}: {text}"))

    def warn(self, code, component, text, at: str | None = None):
        self.report.warnings.append(LineIssue(code, component, f"{at or self.file}: {text}"))

    def note(self, code, component, text):
        self.report.notes.append(LineIssue(code, component, f"{self.file}: {text}"))

    def board(self, mid: str) -> dict | None:
        """The module's board config data, or None (with a warning) if unreadable."""
        if mid not in self._boards:
            module = self.line.modules[mid]
            data = None
            if module.board is None:
                self.warn("board_missing", mid, f"{self.key(mid, 'board')}: no board config")
            else:
                try:
                    data = load_board_config(module.board).data
                except (ConfigError, OSError) as exc:
                    self.error("board_invalid", mid, f"{self.key(mid, 'board')}: {exc}")
            self._boards[mid] = data
        return self._boards[mid]

    def limits_above(self, mid: str, unit: str) -> list[tuple[str, float]]:
        """(interlock id, limit) of the board's "above" interlocks on ``unit`` channels."""
        data = self.board(mid)
        if data is None:
            return []
        units = {ch["name"]: ch.get("unit") for ch in data["channels"]}
        return [
            (il["id"], il["limit"])
            for il in data.get("interlocks", [])
            if il["condition"] == "above" and units.get(il["channel"]) == unit
        ]

    def reachable(self, start: str, removed: str | None = None) -> set[str]:
        """Components downstream of ``start`` (inclusive), not passing ``removed``."""
        seen, todo = set(), [start]
        while todo:
            c = todo.pop()
            if c in seen or c == removed:
                continue
            seen.add(c)
            todo.extend(self.line.downstream(c))
        return seen

    # --- the checks -----------------------------------------------------------------------

    def run(self, temperature_c, pressure_bar, flows, seen, solvent):
        if seen is not None:
            self.check_modules_seen(seen)
        self.check_pressures(pressure_bar)
        self.check_cutouts(temperature_c)
        self.check_solvent(temperature_c, pressure_bar, solvent)
        self.check_connections()
        self.compute_volumes(flows)

    def check_modules_seen(self, seen: dict[str, str]) -> None:
        for mid, module in self.line.modules.items():
            kind = seen.get(mid)
            if kind is None:
                self.error(
                    "module_missing",
                    mid,
                    f"{self.key(mid, 'id')} = {mid!r}: no {module.kind} module of that id "
                    f"is online (seen: {', '.join(sorted(seen)) or 'none'})",
                )
            elif kind != module.kind:
                self.error(
                    "module_kind_mismatch",
                    mid,
                    f"{self.key(mid, 'kind')} = {module.kind!r}: module {mid!r} announced "
                    f"itself as a {kind}; allowed: a {module.kind} module with this id",
                )
        for mid in sorted(set(seen) - set(self.line.modules)):
            self.warn(
                "module_not_in_line",
                mid,
                f"module {mid!r} ({seen[mid]}) is online but not part of this line",
            )

    def check_pressures(self, pressure_bar: float | None) -> None:
        """Each component's rating against the highest pressure a pump can push into it.

        A pump can pressurise everything downstream of it up to a blockage (a clog, a
        closed BPR or valve) to its own maximum, its ``rating_bar``.  A relief valve at
        component r limits the pressure from pump P at component X to its ``set_bar``
        when r lies on every flow path from P to X (or X is r): whatever blocks the way
        between r and X also cuts X off from P.  Components upstream of a relief are not
        protected by it: a clog between them and the relief leaves them at full pump
        pressure.  A component also sees the back pressure of whatever it flows into
        (a second pump's head sees the junction's pressure)."""
        line = self.line
        pumps = line.modules_of("pump")
        reliefs = [p for p in line.protections if p.kind == "relief_valve"]
        # (pressure, pump id, relief id or None) per component, the worst case
        worst: dict[str, tuple[float, str, str | None]] = {}
        for pump in pumps:
            p_max = pump.params.get("rating_bar")
            if p_max is None:
                continue
            downstream = self.reachable(pump.id)
            guards = []
            for r in reliefs:
                if r.at in downstream:
                    shielded = downstream - self.reachable(pump.id, removed=r.at)
                    guards.append((r, shielded))
            for cid in downstream:
                if self.comps[cid].kind == "vessel":
                    continue
                p, by = p_max, None
                for r, shielded in guards:
                    if cid in shielded and r.set_bar < p:
                        p, by = r.set_bar, r.id
                if cid not in worst or p > worst[cid][0]:
                    worst[cid] = (p, pump.id, by)
        for cid in reversed(self.order):  # back pressure from what a component feeds
            for d in line.downstream(cid):
                if d in worst and (cid not in worst or worst[d][0] > worst[cid][0]):
                    worst[cid] = worst[d]
        for cid in self.order:
            comp = self.comps[cid]
            if comp.kind == "vessel":
                continue
            rating = comp.params.get("rating_bar")
            if rating is None:
                self.error(
                    "rating_missing",
                    cid,
                    f"{self.key(cid, 'rating_bar')} is missing: give the component's "
                    "pressure rating in bar (0.5..2000)",
                )
                continue
            if cid not in worst:
                continue
            p, pump_id, relief_id = worst[cid]
            self.report.max_pressure_bar[cid] = p
            self.limited_by[cid] = relief_id
            if rating >= p - 1e-9:
                continue
            if relief_id is None:
                self.error(
                    "rating_below_pump_max",
                    cid,
                    f"{self.key(cid, 'rating_bar')} = {rating:g}: {cid} can see {p:g} bar "
                    f"(pump {pump_id}, rating_bar {p:g}) with no relief valve limiting it; "
                    f"allowed >= {p:g}, or add a relief valve set at most {rating:g} bar "
                    f"upstream of {cid} on every path from {pump_id}",
                )
            else:
                prot = next(r for r in reliefs if r.id == relief_id)
                self.error(
                    "rating_below_relief",
                    cid,
                    f"{self.key(cid, 'rating_bar')} = {rating:g}: relief valve {relief_id} "
                    f"({self.protection_key(prot, 'set_bar')} = {p:g}) lets {cid} reach "
                    f"{p:g} bar; allowed: set_bar <= {rating:g} or a rating >= {p:g}",
                )
        self.check_reliefs(reliefs, pressure_bar)

    def check_reliefs(self, reliefs, pressure_bar) -> None:
        for r in reliefs:
            feeding = [p for p in self.line.modules_of("pump") if r.at in self.reachable(p.id)]
            key = self.protection_key(r, "set_bar")
            for pump in feeding:
                for il_id, limit in self.limits_above(pump.id, "bar"):
                    if r.set_bar <= limit:
                        self.warn(
                            "relief_below_interlock",
                            r.id,
                            f"{key} = {r.set_bar:g}: at or below {pump.id}'s software "
                            f"interlock {il_id} ({limit:g} bar), so the relief lifts before "
                            f"the software trips; allowed > {limit:g}",
                        )
            max_flow = sum(p.params.get("max_flow_ml_min", 0.0) for p in feeding)
            capacity = r.params.get("capacity_ml_min")
            if capacity is not None and max_flow > capacity:
                self.warn(
                    "relief_capacity_low",
                    r.id,
                    f"{self.protection_key(r, 'capacity_ml_min')} = {capacity:g}: below the "
                    f"{max_flow:g} mL/min the pumps feeding it can deliver "
                    f"({', '.join(p.id for p in feeding)}); allowed >= {max_flow:g}",
                )
            if pressure_bar is not None and pressure_bar >= r.set_bar:
                self.error(
                    "pressure_above_relief",
                    r.id,
                    f"regulated pressure {pressure_bar:g} bar is at or above relief valve "
                    f"{r.id} ({key} = {r.set_bar:g}); allowed < {r.set_bar:g} bar",
                )
        if pressure_bar is not None:
            for bpr in self.line.modules_of("bpr"):
                upstream = [c for c in self.order if bpr.id in self.reachable(c)]
                for cid in upstream:
                    rating = self.comps[cid].params.get("rating_bar")
                    if rating is not None and pressure_bar > rating:
                        self.error(
                            "pressure_above_rating",
                            cid,
                            f"regulated pressure {pressure_bar:g} bar (held by {bpr.id}) is "
                            f"above {self.key(cid, 'rating_bar')} = {rating:g}; allowed "
                            f"<= {rating:g} bar",
                        )

    def check_cutouts(self, temperature_c: float | None) -> None:
        for reactor in self.line.modules_of("reactor"):
            rid = reactor.id
            cutouts = [
                p for p in self.line.protections if p.kind == "thermal_cutout" and p.at == rid
            ]
            limits = self.limits_above(rid, "degC")
            software = max(limits, key=lambda il: il[1]) if limits else None
            if software is None and self.board(rid) is not None:
                self.warn(
                    "no_software_temperature_limit",
                    rid,
                    f"{self.key(rid, 'board')}: the board config of {rid} has no "
                    'over-temperature interlock (condition "above" on a degC channel)',
                )
            if not cutouts:
                self.error(
                    "cutout_missing",
                    rid,
                    f"reactor {rid} ({self.key(rid)}) has no independent thermal cut-out: "
                    f'add [[protections]] kind = "thermal_cutout", at = "{rid}", trip_c '
                    + (
                        f"above {software[1]:g} (its {software[0]} interlock)"
                        if software
                        else "above its software over-temperature limit"
                    ),
                )
            for cut in cutouts:
                trip = cut.trip_c
                key = self.protection_key(cut, "trip_c")
                reset = cut.params.get("reset_c")
                if reset is not None and reset >= trip:
                    self.error(
                        "cutout_reset_above_trip",
                        rid,
                        f"{self.protection_key(cut, 'reset_c')} = {reset:g}: at or above "
                        f"trip_c {trip:g}; allowed < {trip:g}",
                    )
                if software is None:
                    continue
                il_id, limit = software
                if trip <= limit:
                    self.error(
                        "cutout_below_interlock",
                        rid,
                        f"{key} = {trip:g}: not above {rid}'s software interlock {il_id} "
                        f"({limit:g} degC in {self.line.modules[rid].board}); the cut-out "
                        f"is the independent backup and must trip after it: allowed "
                        f"> {limit:g}",
                    )
                else:
                    self.note(
                        "cutout_margin",
                        rid,
                        f"{rid}: thermal cut-out {cut.id} trips at {trip:g} degC, "
                        f"{trip - limit:g} degC above the software interlock {il_id} "
                        f"({limit:g} degC)",
                    )
            if temperature_c is not None and software is not None:
                il_id, limit = software
                if temperature_c >= limit:
                    self.error(
                        "temperature_above_interlock",
                        rid,
                        f"reactor temperature {temperature_c:g} degC is at or above {rid}'s "
                        f"software interlock {il_id} ({limit:g} degC); allowed < {limit:g}",
                    )

    def solvent_name(self, override: str | None) -> tuple[str | None, str]:
        """(solvent name or None if the line declares none, where it comes from)."""
        return solvent_name(self.line, override)

    def boiling_point(self, name: str, where: str, p_abs: float) -> float | None:
        try:
            return solvent_boiling_point_c(self.line, name, p_abs)
        except UnknownSolventError:
            self.error(
                "unknown_solvent",
                None,
                f"{where} = {name!r}: no vapour-pressure data for this solvent, so its "
                f"boiling point cannot be checked; allowed: {', '.join(known_solvents())} "
                "(or a solvent table with boiling_c and vaporization_kj_mol)",
            )
            return None

    def check_solvent(self, temperature_c, pressure_bar, override) -> None:
        name, where = self.solvent_name(override)
        if temperature_c is None:
            if name is not None and name != "custom":
                self.boiling_point(name, where, ATMOSPHERE_BAR)  # flags unknown names
            return
        if name is None:
            self.warn(
                "solvent_not_declared",
                None,
                "line.solvent is not given: the boiling point at the reactor temperature "
                "cannot be checked; name the solvent (" + ", ".join(known_solvents()) + ")",
            )
            return
        bp_atm = self.boiling_point(name, where, ATMOSPHERE_BAR)
        if bp_atm is None:
            return
        if temperature_c > bp_atm:
            self.check_bpr_holds_reactors(name, bp_atm, temperature_c)
        if pressure_bar is None:
            return
        p_abs = gauge_to_absolute(pressure_bar)
        bp = self.boiling_point(name, where, p_abs)
        if bp is None:
            return
        text = (
            f"{where} = {name!r} boils at {bp:.1f} degC at {pressure_bar:g} bar gauge "
            f"({p_abs:.2f} bar absolute)"
        )
        margin = bp - temperature_c
        if margin <= BOILING_MARGIN_C:
            state = "would boil" if margin <= 0 else f"is only {margin:.1f} degC from boiling"
            self.error(
                "solvent_boils",
                self.single_reactor(),
                f"{self.subject('temperature_c', f'reactor temperature {temperature_c:g} degC')}"
                f"{text}: the coil {state} (the heater overshoots on the way up); allowed: "
                f"a temperature below {bp - BOILING_MARGIN_C:.1f} degC "
                f"({BOILING_MARGIN_C:g} degC of margin){self.pressure_needed(name, temperature_c)}",
                at=self.origin.get("temperature_c"),
            )
        self.check_trip_below_boiling(name, bp, text)

    def subject(self, quantity: str, fallback: str) -> str:
        """Nothing when the finding is located at the key that set ``quantity`` (the
        location names it), else ``fallback`` as the sentence's subject."""
        return "" if quantity in self.origin else f"{fallback}: "

    def pressure_needed(self, name: str, temperature_c: float, margin=BOILING_MARGIN_C) -> str:
        """The regulated pressure that keeps ``name`` boiling ``margin`` above ``temperature_c``."""
        if name == "custom":
            return " or a higher regulated pressure"
        p_abs = solvent_data(name).pressure_bar(temperature_c + margin)
        return f" or a regulated pressure above {p_abs - ATMOSPHERE_BAR:.1f} bar gauge"

    def single_reactor(self) -> str | None:
        reactors = self.line.modules_of("reactor")
        return reactors[0].id if len(reactors) == 1 else None

    def check_trip_below_boiling(self, name: str, bp: float, text: str) -> None:
        """The first over-temperature trip of each reactor must come before the solvent
        boils: otherwise a runaway heater boils the coil while every interlock is quiet."""
        for reactor in self.line.modules_of("reactor"):
            limits = self.limits_above(reactor.id, "degC")
            if not limits:
                continue
            il_id, limit = min(limits, key=lambda il: il[1])
            if limit >= bp:
                self.warn(
                    "trip_above_boiling",
                    reactor.id,
                    f"{reactor.id}'s first over-temperature trip {il_id} ({limit:g} degC in "
                    f"{self.line.modules[reactor.id].board}) is at or above the boiling "
                    f"point: {text}; a heater running away would boil the coil before "
                    f"anything trips; allowed: a trip limit below {bp:.1f} degC"
                    f"{self.pressure_needed(name, limit, margin=0.0)}",
                    at=self.origin.get("pressure_bar"),
                )

    def check_bpr_holds_reactors(self, name, bp_atm, temperature_c) -> None:
        for reactor in self.line.modules_of("reactor"):
            if not self.bpr_downstream(reactor.id):
                self.error(
                    "bpr_missing",
                    reactor.id,
                    f"reactor {reactor.id} runs at {temperature_c:g} degC, above {name}'s "
                    f"normal boiling point ({bp_atm:.1f} degC), but not every path from it "
                    "to a vessel passes a back-pressure regulator; add a bpr downstream",
                )

    def bpr_downstream(self, cid: str) -> bool:
        """Every path from ``cid`` to a vessel passes a BPR."""
        seen, todo = set(), list(self.line.downstream(cid))
        while todo:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            kind = self.comps[c].kind
            if kind == "bpr":
                continue
            if kind == "vessel":
                return False
            todo.extend(self.line.downstream(c))
        return True

    def check_connections(self) -> None:
        """What load_line leaves: pressure held on the reactors, somewhere to collect,
        valves failing to waste."""
        line = self.line
        for reactor in line.modules_of("reactor"):
            if not self.bpr_downstream(reactor.id):
                self.warn(
                    "no_bpr_downstream",
                    reactor.id,
                    f"reactor {reactor.id} has no back-pressure regulator on every path to "
                    "a vessel: it can only run below the solvent's normal boiling point",
                )
        vessels = [p for p in line.parts.values() if p.kind == "vessel"]
        if not any(v.role == "collection" for v in vessels):
            self.warn(
                "no_collection_vessel",
                None,
                'parts: no vessel with role = "collection"; product can only go to waste',
            )
        for valve in line.modules_of("valve"):
            safe = valve.outlets[0]
            ends = {c for c in self.reachable(safe) if self.comps[c].kind == "vessel"}
            if not any(self.comps[v].role == "waste" for v in ends):
                self.warn(
                    "valve_safe_not_waste",
                    valve.id,
                    f"{self.key(valve.id, 'outlets')}[0] = {safe!r}: position 0 is the "
                    "safe position (where the valve goes on a trip) and leads to no waste "
                    "vessel; allowed: the path to waste first",
                )

    def compute_volumes(self, flows: dict[str, float] | None) -> None:
        line, report = self.line, self.report
        for reactor in line.modules_of("reactor"):
            report.reactor_volumes_ml[reactor.id] = component_volume_ml(reactor)
        heated = set(report.reactor_volumes_ml)
        for cid in self.order:
            comp = self.comps[cid]
            limited = self.limited_by.get(cid)
            report.segments.append(
                Segment(
                    cid,
                    comp.kind,
                    component_volume_ml(comp),
                    comp.params.get("rating_bar"),
                    report.max_pressure_bar.get(cid),
                    limited,
                    cid in heated,
                )
            )
        if flows is None:
            return
        pumps = {p.id: p for p in line.modules_of("pump")}
        for pid, flow in flows.items():
            if pid not in pumps:
                self.error(
                    "unknown_pump",
                    pid,
                    f"flow given for {pid!r}, which is not a pump of this line; allowed: "
                    + ", ".join(sorted(pumps)),
                )
                continue
            top = pumps[pid].params.get("max_flow_ml_min")
            if not (isinstance(flow, int | float) and math.isfinite(flow) and flow >= 0):
                self.error("flow_invalid", pid, f"flow for {pid} = {flow!r}: allowed >= 0")
            elif top is not None and flow > top:
                self.error(
                    "flow_above_pump_max",
                    pid,
                    f"flow for {pid} = {flow:g} mL/min: above its max_flow_ml_min "
                    f"({self.key(pid, 'max_flow_ml_min')} = {top:g}); allowed 0..{top:g}",
                )
        for rid, volume in report.reactor_volumes_ml.items():
            through = sum(f for p, f in flows.items() if p in pumps and rid in self.reachable(p))
            if through > 0:
                report.residence_times_s[rid] = volume / through * 60.0
