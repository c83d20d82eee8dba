"""What a run's report shows, read from its record: the series by plot, the marks over
them, the conditions, the collection window's statistics, and the events and commands in
words.  ``host.report`` lays it out as HTML and PDF, ``host.report_plots`` draws it.

Times are seconds since the record was created (``t0``); the quality segments and
excursions of the summary count from the recipe's start, which is shifted onto the same
axis here (the ``recipe`` note's time).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

from host.record import RunRecord

MAX_POINTS = 1000
PLAN_NOTE = "plan"  # the note ``skid run`` stores the run's plan in (host/plan.py)
GROUP_TITLES = {
    "degC": "Temperatures",
    "bar": "Pressures",
    "mL/min": "Flows",
    "AU": "Analyzer absorbance",
    "mAU": "Analyzer absorbance",
    "V": "Voltages",
    "1": "Outputs (fraction of full scale)",
    "%": "Outputs",
}
GROUP_ORDER = ("degC", "bar", "mL/min", "AU", "mAU")  # then any other unit
STAT_UNITS = ("degC", "bar", "mL/min", "AU", "mAU")
SWITCH_UNITS = ("", "1")  # actuators and status inputs that are on or off


def guess_unit(channel: str) -> str:
    """A unit for a channel no birth described, from its name (the reference boards' names)."""
    name = channel.lower()
    if name.startswith("temp") or "temperature" in name:
        return "degC"
    if "pressure" in name:
        return "bar"
    if "flow" in name:
        return "mL/min"
    return ""


def decimate(points: list[tuple[float, float]], max_points: int = MAX_POINTS) -> list:
    """At most ``max_points`` points: each of max_points/2 buckets keeps its minimum and
    maximum, in time order, so spikes stay visible."""
    if len(points) <= max_points:
        return points
    buckets = max(1, max_points // 2)
    size = math.ceil(len(points) / buckets)
    out: list = []
    for i in range(0, len(points), size):
        chunk = points[i : i + size]
        good = [p for p in chunk if p[1] is not None]
        if len(good) < len(chunk):  # bad-quality values break the line: keep one break
            out.append((chunk[0][0], None))
        if not good:
            continue
        lo = min(good, key=lambda p: p[1])
        hi = max(good, key=lambda p: p[1])
        if lo is hi:
            out.append(lo)
        else:
            out.extend((lo, hi) if lo[0] <= hi[0] else (hi, lo))
    return out


def rounded(v, digits: int = 4) -> str:
    """A value for people: 4 significant digits, no trailing noise (4.545454 -> 4.545)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "" if v is None else str(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


_LONG_NUMBER = re.compile(r"-?\d+\.\d{4,}(?:e-?\d+)?")


def round_numbers(text: str) -> str:
    """Every long decimal in ``text`` rounded to 4 significant digits."""
    return _LONG_NUMBER.sub(lambda m: rounded(float(m.group())), text)


@dataclass
class Mark:
    """Something to draw over the plots: a line (``end`` None) or a span."""

    t: float
    label: str
    kind: str  # trip | alarm | death | hold | abort | manual | deviation
    end: float | None = None
    number: int = 0  # its number on the plots and in the marks table


_ROLE_SUFFIX = {"setpoint": " (setpoint)", "actuator": " (output)"}


@dataclass
class Series:
    key: tuple[str, str]  # (module, channel)
    unit: str
    switch: bool  # drawn as steps, on its own plot
    points: list  # [(t_s, value)], decimated for drawing
    raw: list  # [(t_s, value)], every sample (for the statistics)
    role: str = ""  # sensor, setpoint, actuator, status ("" unknown)

    @property
    def label(self) -> str:
        """For a legend: ``reactor1 coil temp (setpoint)``."""
        return f"{self.key[0]} {self.key[1].replace('_', ' ')}{_ROLE_SUFFIX.get(self.role, '')}"

    @property
    def name(self) -> str:
        """As in recipes and tables: ``reactor1.coil_temp``."""
        return f"{self.key[0]}.{self.key[1]}"

    @property
    def changed(self) -> bool:
        values = {v for _, v in self.raw if v is not None}
        return len(values) > 1


@dataclass
class RunData:
    meta: dict
    t0: int
    t_end: float
    recipe_t0: float  # the recipe's start, seconds after t0
    series: list[Series]
    phases: list[tuple[float, float, str]]  # (start, end, name)
    gaps: list[tuple[float, float, str]]
    marks: list[Mark] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)  # collection
    plan: dict | None = None
    units: dict = field(default_factory=dict)  # (module, channel) -> unit
    order: dict = field(default_factory=dict)  # module -> channel names by index


def _channel_info(rec: RunRecord) -> tuple[dict, dict, dict]:
    """(module, channel) -> unit and -> role, and module -> its channel names in order
    (a command's or event's channel index names one of them)."""
    units: dict = {}
    roles: dict = {}
    order: dict[str, list[str]] = {}
    for e in rec.entries("channels"):
        module = e["module"]
        names = order[module] = []
        for ch in e["data"].get("channels") or []:
            if isinstance(ch, dict) and ch.get("name"):
                names.append(ch["name"])
                units[(module, ch["name"])] = ch.get("unit") or ""
                roles[(module, ch["name"])] = ch.get("role") or ""
    for n in rec.notes():  # births list the names in index order too
        data = n.get("data") or {}
        if n["kind"] == "birth" and n.get("module") and isinstance(data.get("channels"), list):
            order.setdefault(n["module"], [c for c in data["channels"] if isinstance(c, str)])
    for key, unit in rec.channel_units().items():
        units.setdefault(key, unit)
    return units, roles, order


def _is_switch(unit: str, role: str, pts: list) -> bool:
    if unit not in SWITCH_UNITS or role in ("sensor", "setpoint"):
        return False
    return all(v in (0.0, 1.0) for _, v in pts if v is not None)


def _series(rec: RunRecord, t0: int, units: dict, roles: dict) -> list[Series]:
    raw: dict[tuple[str, str], list] = {}
    for s in rec.samples():
        raw.setdefault((s["module"], s["channel"]), []).append(
            ((s["host_ms"] - t0) / 1000.0, s["value"])
        )
    out = []
    for key, pts in sorted(raw.items()):
        unit = units.get(key)
        if unit is None:
            unit = guess_unit(key[1])
        role = roles.get(key, "")
        out.append(Series(key, unit, _is_switch(unit, role, pts), decimate(pts), pts, role))
    return out


def plot_groups(series: list[Series]) -> list[tuple[str, str, list[Series]]]:
    """(title, unit, series) per plot: temperatures, pressures, flows, then the analyzer
    and any other unit, then the on/off signals together."""
    groups: dict[str, list[Series]] = {}
    for s in series:
        if not s.switch:
            groups.setdefault(s.unit, []).append(s)
    order = [u for u in GROUP_ORDER if u in groups] + sorted(
        (u for u in groups if u not in GROUP_ORDER), key=lambda u: (u not in GROUP_TITLES, u)
    )
    out = [
        (GROUP_TITLES.get(u, f"Other ({u})" if u else "Other (no unit)"), u, groups[u])
        for u in order
    ]
    switches = [s for s in series if s.switch]
    if switches:
        out.append(("On/off signals", "", switches))
    return out


def _phase_bands(rows: list, t0: int, t_end: float) -> list[tuple]:
    """(start_s, end_s, phase): a band per phase, steps inside a phase merged."""
    bands: list[list] = []
    for p in rows:
        start = (p["host_ms"] - t0) / 1000.0
        if bands and bands[-1][2] == p["phase"]:
            continue  # a new step inside the same phase
        if bands:
            bands[-1][1] = start
        bands.append([start, t_end, p["phase"]])
    return [tuple(b) for b in bands]


def _recipe_start(rec: RunRecord, t0: int) -> float:
    for n in rec.notes():
        if n["kind"] == "recipe":
            return (n["host_ms"] - t0) / 1000.0
    return 0.0


def recorded_plan(rec: RunRecord) -> dict | None:
    """The plan ``skid run`` stored with the run (a ``plan`` note), or None."""
    for n in rec.notes():
        if n["kind"] == PLAN_NOTE and isinstance(n.get("data"), dict):
            return n["data"]
    return None


def load(rec: RunRecord) -> RunData:
    """Everything the report shows, from an open record."""
    meta = rec.meta()
    t0 = meta.get("created_ms") or 0
    units, roles, order = _channel_info(rec)
    series = _series(rec, t0, units, roles)
    t_last = ((meta.get("finished_ms") or meta.get("last_ms") or t0) - t0) / 1000.0
    t_end = max([t_last] + [s.points[-1][0] for s in series if s.points])
    data = RunData(
        meta=meta,
        t0=t0,
        t_end=t_end,
        recipe_t0=_recipe_start(rec, t0),
        series=series,
        phases=_phase_bands(rec.phases(), t0, t_end),
        gaps=[
            ((g["start_ms"] - t0) / 1000.0, (g["end_ms"] - t0) / 1000.0, g["reason"])
            for g in rec.gaps()
        ],
        plan=recorded_plan(rec),
        units=units,
        order=order,
    )
    data.marks = marks(rec, data, order)
    data.windows = collection_windows(rec, data)
    return data


# -- marks --------------------------------------------------------------------------------


def _event_marks(events: list, t0: int) -> tuple[list[Mark], list]:
    out, trips = [], []
    for e in events:
        t = (e["host_ms"] - t0) / 1000.0
        if e.get("type") == "trip":
            out.append(Mark(t, f"trip {e['module']}: {e.get('cause')}", "trip"))
            trips.append((e["module"], e.get("cause"), t))
        elif e.get("type") == "alarm":
            out.append(Mark(t, f"alarm {e['module']}: {e.get('cause')}", "alarm"))
    return out, trips


def _note_marks(notes: list, t0: int, trips: list) -> list[Mark]:
    """Coordinator trip notes (unless the module's own trip event marks it) and deaths."""
    out = []
    for n in notes:
        t = (n["host_ms"] - t0) / 1000.0
        data = n.get("data") or {}
        module = n.get("module") or data.get("module")
        if n["kind"] == "trip":
            cause = data.get("cause")
            if any(m == module and cause in (None, c) and abs(t - tt) < 5 for m, c, tt in trips):
                continue  # the module's own trip event already marks it
            out.append(Mark(t, f"trip {module}: {cause or n['text']}", "trip"))
        elif n["kind"] == "death":
            out.append(Mark(t, f"{module} lost", "death"))
    return out


_OPERATOR_KINDS = {"hold": "hold", "abort": "abort", "stop": "abort", "set": "manual"}
_OPERATOR_KINDS |= {"manual": "manual", "reset": "manual", "auto": "manual"}


def _operator_marks(actions: list, t0: int, t_end: float) -> list[Mark]:
    """Holds as spans until the next resume, aborts and emergency stops as lines, manual
    changes as lines; refused requests are not marked (the table lists them)."""
    out: list[Mark] = []
    hold: Mark | None = None  # the open hold or manual mode: a span until resume
    for o in actions:
        t = (o["host_ms"] - t0) / 1000.0
        what = o["what"] or ""
        verb = what.split(":")[0].split()[0] if what.strip() else ""
        if "refused" in what:
            continue
        if verb == "resume" and hold is not None:
            hold.end, hold = t, None
            continue
        kind = _OPERATOR_KINDS.get(verb)
        if kind is None:
            continue
        mark = Mark(t, f"{verb} by {o['who']}" + (f": {o['reason']}" if o["reason"] else ""), kind)
        if verb in ("hold", "manual"):
            mark.end, hold = t_end, mark
        out.append(mark)
    return out


def _deviation_marks(summary: dict, recipe_t0: float) -> list[Mark]:
    out = []
    for e in summary.get("excursions") or []:
        start, end = e.get("start_s"), e.get("end_s")
        if start is None:
            continue
        limit = str(e.get("limit") or "")
        signal = str(e.get("signal") or "")
        label = f"deviation: {limit if limit.startswith(signal) else f'{signal} {limit}'}"
        out.append(Mark(start + recipe_t0, label, "deviation", end=(end or start) + recipe_t0))
    return out


def _shutdown_marks(phases: list[tuple[float, float, str]]) -> list[Mark]:
    """The start of each shutdown sequence (a trip, a lost module, an abort, a deviation
    or a time limit runs one: its phase is named ``shutdown`` or ``shutdown:CAUSE``)."""
    out = []
    for start, _end, name in phases:
        if name == "shutdown" or name.startswith("shutdown:"):
            cause = name.partition(":")[2]
            out.append(Mark(start, "shutdown sequence" + (f" ({cause})" if cause else ""), "abort"))
    return out


def marks(rec: RunRecord, data: RunData, order: dict) -> list[Mark]:
    """Every mark of the run in time order, numbered from 1."""
    found, trips = _event_marks(rec.events(), data.t0)
    found += _note_marks(rec.notes(), data.t0, trips)
    found += _operator_marks(rec.operator_actions(), data.t0, data.t_end)
    found += _deviation_marks(data.meta.get("summary") or {}, data.recipe_t0)
    found += _shutdown_marks(data.phases)
    found.sort(key=lambda m: (m.t, m.kind))
    for i, m in enumerate(found, 1):
        m.number = i
    return found


# -- the collection window and its statistics ---------------------------------------------


def collection_windows(rec: RunRecord, data: RunData) -> list[tuple[float, float]]:
    """When product went to collection: the segments that were not diverted, else the
    phases named "collect"."""
    wins = [
        (g["start_s"] + data.recipe_t0, g["end_s"] + data.recipe_t0)
        for g in rec.segments()
        if g.get("status") != "diverted"
    ]
    if not wins:
        wins = [(a, b) for a, b, name in data.phases if name == "collect"]
    return wins


def window_stats(data: RunData) -> list[list]:
    """[channel, unit, mean, sd, min, max, n, role] of every measured T, p, flow and analyzer
    channel over the collection window, from every sample (not the decimated ones)."""
    return [row for row in (_stats_row(s, data.windows) for s in data.series) if row]


def _stats_row(s: Series, windows: list) -> list | None:
    if s.switch or s.unit not in STAT_UNITS or not windows:
        return None
    vals = [v for t, v in s.raw if v is not None and any(a <= t <= b for a, b in windows)]
    if not vals:
        return None
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return [
        s.name,
        s.unit,
        statistics.fmean(vals),
        sd,
        min(vals),
        max(vals),
        len(vals),
        s.role,
    ]


# -- events and commands in words -----------------------------------------------------------


def channel_name(order: dict, module: str, channel) -> str:
    """``module.channel`` for a channel given by name or by its index."""
    if isinstance(channel, int) or (isinstance(channel, str) and channel.isdigit()):
        names = order.get(module) or []
        i = int(channel)
        channel = names[i] if 0 <= i < len(names) else f"channel {i}"
    return f"{module}.{channel}"


_INDEXED = re.compile(r"^(\w+) channel=(\d+) value=(\S+)$")


def _shown_unit(unit: str) -> str:
    return "" if unit in SWITCH_UNITS else unit


def event_text(e: dict, order: dict, units: dict) -> str:
    """An event's detail for people: channel names, rounded values."""
    detail = e.get("detail") or ""
    m = _INDEXED.match(detail)
    if m:
        name = channel_name(order, e["module"], int(m.group(2)))
        unit = _shown_unit(units.get(tuple(name.split(".", 1)), ""))
        value = rounded(float(m.group(3))) if m.group(3) != "None" else m.group(3)
        return f"{m.group(1)} {name} = {value} {unit}".rstrip()
    return round_numbers(detail)


def command_text(c: dict, order: dict, units: dict) -> str:
    """A command for people: ``pump_a.flow = 4.545 mL/min``, ``start``, ``ack_alarm uv_bad``."""
    args = c.get("args") or {}
    if c["op"] == "set_setpoint" and "channel" in args:
        name = channel_name(order, c["module"], args["channel"])
        unit = _shown_unit(units.get(tuple(name.split(".", 1)), ""))
        return f"{name} = {rounded(args.get('value'))} {unit}".rstrip()
    if c["op"] == "state":
        return f"{c['module']}: {args.get('command')}"
    rest = " ".join(f"{k}={rounded(v)}" for k, v in sorted(args.items()))
    return f"{c['module']}: {c['op']} {rest}".rstrip()
