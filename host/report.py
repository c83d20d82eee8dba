"""A run's report: one self-contained HTML file (inline SVG, no scripts, no network assets).

Plots group channels by unit (temperatures in degC, pressures in bar, flows in mL/min, then
one plot per other unit) against time since the run started, with phases shaded and named,
trips and alarms drawn as labelled vertical lines, and unrecorded gaps hatched.  Long series
are reduced to about 1,000 points each, keeping every bucket's minimum and maximum so peaks
survive.  Tables list the run's description, events, operator actions, phases, failed or
unanswered commands and gaps.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from host.record import RunRecord, find_run, verify

MAX_POINTS = 1000
WIDTH, HEIGHT = 960, 280
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 16, 34, 36
COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
PHASE_FILLS = ("#e8f0fe", "#fef7e0", "#e6f4ea", "#fce8e6", "#f3e8fd", "#e0f7fa")
GROUP_TITLES = {"degC": "Temperatures", "bar": "Pressures", "mL/min": "Flows"}
GROUP_ORDER = ("degC", "bar", "mL/min")


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


def _nice_step(span: float, target: int) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    step = _nice_step(hi - lo, target)
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


class _Markers:
    """What every plot draws over its data: phase bands, gaps and trip/alarm lines."""

    def __init__(self, phases, gaps, lines):
        self.phases = phases  # (start_s, end_s, name)
        self.gaps = gaps  # (start_s, end_s, reason)
        self.lines = lines  # (t_s, label, color, dashed)


class _Axes:
    """The plot area's scales: seconds to x, values to y (the value range padded 6 %)."""

    def __init__(self, series: dict, t_end: float):
        self.plot_w = WIDTH - MARGIN_L - MARGIN_R
        self.plot_h = HEIGHT - MARGIN_T - MARGIN_B
        self.bottom = MARGIN_T + self.plot_h
        values = [v for pts in series.values() for _, v in pts if v is not None]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 1.0, hi + 1.0
        pad = (hi - lo) * 0.06
        self.lo, self.hi = lo - pad, hi + pad
        self.t_end = max(t_end, 1e-3)
        self.minutes = self.t_end > 300
        self.t_scale = 60.0 if self.minutes else 1.0

    def x(self, t: float) -> float:
        return MARGIN_L + max(0.0, min(t, self.t_end)) / self.t_end * self.plot_w

    def y(self, v: float) -> float:
        return MARGIN_T + (self.hi - v) / (self.hi - self.lo) * self.plot_h


def _svg_bands(ax: _Axes, markers: _Markers) -> list[str]:
    """Phase bands (named when wide enough) and hatched gaps."""
    out = []
    for i, (start, end, name) in enumerate(markers.phases):
        x0, x1 = ax.x(start), ax.x(end)
        out.append(
            f'<rect class="phase" x="{x0:.1f}" y="{MARGIN_T}" width="{max(x1 - x0, 0.5):.1f}" '
            f'height="{ax.plot_h}" fill="{PHASE_FILLS[i % len(PHASE_FILLS)]}"/>'
        )
        if x1 - x0 > 24:
            out.append(
                f'<text x="{x0 + 3:.1f}" y="{MARGIN_T + 11}" font-size="10" fill="#555">'
                f"{_esc(name)}</text>"
            )
    for start, end, reason in markers.gaps:
        x0, x1 = ax.x(start), ax.x(end)
        out.append(
            f'<rect class="gap" x="{x0:.1f}" y="{MARGIN_T}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{ax.plot_h}" fill="url(#hatch)" stroke="#999"><title>gap: {_esc(reason)}'
            "</title></rect>"
        )
    return out


def _svg_axes(ax: _Axes) -> list[str]:
    """Value grid lines, time ticks, the frame and the time axis's label."""
    out = []
    for v in _ticks(ax.lo, ax.hi):
        yy = ax.y(v)
        out.append(
            f'<line x1="{MARGIN_L}" x2="{MARGIN_L + ax.plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{MARGIN_L - 4}" y="{yy + 3:.1f}" font-size="10" text-anchor="end">'
            f"{_fmt(v)}</text>"
        )
    bottom = ax.bottom
    for t in _ticks(0, ax.t_end / ax.t_scale, 10):
        xx = ax.x(t * ax.t_scale)
        out.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#333"/>'
            f'<text x="{xx:.1f}" y="{bottom + 15}" font-size="10" text-anchor="middle">'
            f"{_fmt(t)}</text>"
        )
    out.append(
        f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{ax.plot_w}" height="{ax.plot_h}" '
        'fill="none" stroke="#333"/>'
        f'<text x="{MARGIN_L + ax.plot_w / 2:.0f}" y="{HEIGHT - 4}" font-size="11" '
        f'text-anchor="middle">time since start ({"min" if ax.minutes else "s"})</text>'
    )
    return out


def _line_runs(ax: _Axes, pts: list, gaps: list) -> list[list[str]]:
    """The polyline pieces of one series: None values (bad quality) and unrecorded gaps
    break the line."""
    runs, current = [], []
    prev_t = None
    for t, v in pts:
        across_gap = prev_t is not None and any(prev_t <= g0 and t >= g1 for g0, g1, _ in gaps)
        if (v is None or across_gap) and current:
            runs.append(current)
            current = []
        if v is not None:
            current.append(f"{ax.x(t):.1f},{ax.y(v):.1f}")
        prev_t = t
    if current:
        runs.append(current)
    return runs


def _svg_series(ax: _Axes, series: dict, gaps: list) -> list[str]:
    out = []
    for i, (label, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        for run in _line_runs(ax, pts, gaps):
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="{color}"/>')
            else:
                out.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.3" '
                    f'points="{" ".join(run)}"><title>{_esc(label)}</title></polyline>'
                )
    return out


def _svg_marker_lines(ax: _Axes, lines: list) -> list[str]:
    """Trips and alarms, labels staggered so neighbours stay readable."""
    out = []
    for j, (t, label, color, dashed) in enumerate(lines):
        xx = ax.x(t)
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        ly = MARGIN_T + 24 + (j % 4) * 12
        anchor = "end" if xx > MARGIN_L + ax.plot_w * 0.8 else "start"
        dx = -3 if anchor == "end" else 3
        out.append(
            f'<line class="marker" x1="{xx:.1f}" x2="{xx:.1f}" y1="{MARGIN_T}" y2="{ax.bottom}" '
            f'stroke="{color}" stroke-width="1.5"{dash}/>'
            f'<text x="{xx + dx:.1f}" y="{ly}" font-size="10" fill="{color}" '
            f'text-anchor="{anchor}">{_esc(label)}</text>'
        )
    return out


def _svg_legend(series: dict) -> list[str]:
    out = []
    lx = MARGIN_L + 220
    for i, label in enumerate(series):
        color = COLORS[i % len(COLORS)]
        out.append(
            f'<rect x="{lx}" y="8" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 13}" y="17" font-size="11">{_esc(label)}</text>'
        )
        lx += 24 + 7 * len(label)
    return out


def _plot_svg(title: str, unit: str, series: dict, t_end: float, markers: _Markers) -> str:
    """One plot: ``series`` maps a label to [(t_s, value)]."""
    ax = _Axes(series, t_end)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{MARGIN_L}" y="16" font-size="14" font-weight="bold">'
        f"{_esc(title)}{f' ({_esc(unit)})' if unit else ''}</text>",
    ]
    out += _svg_bands(ax, markers)
    out += _svg_axes(ax)
    out += _svg_series(ax, series, markers.gaps)
    out += _svg_marker_lines(ax, markers.lines)
    out += _svg_legend(series)
    out.append("</svg>")
    return "\n".join(out)


_HATCH = (
    '<svg width="0" height="0" style="position:absolute"><defs><pattern id="hatch" '
    'width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    '<rect width="6" height="6" fill="#f4f4f4"/><line x1="0" y1="0" x2="0" y2="6" '
    'stroke="#aaa" stroke-width="2"/></pattern></defs></svg>'
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.bad { color: #b00020; font-weight: bold; }
.ok { color: #137333; font-weight: bold; }
code { font-size: 12px; }
svg { display: block; margin: 0.5em 0; }
"""


def _table(header: list[str], rows: list[list]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _t(ms, t0) -> str:
    return "" if ms is None else f"{(ms - t0) / 1000:.1f}"


def _safe_at_end(summary: dict) -> str:
    """The end state in words: trapped pressure named with where and how much."""
    residual = summary.get("residual") or []
    if residual:
        where = ", ".join(f"{r['component']} {r['pressure_bar']:g} bar" for r in residual)
        return (
            f"NO: pressure left in the line ({where}); it could not be vented, so vent it "
            "by hand before opening any fitting"
        )
    safe = summary.get("all_safe_at_end")
    if safe is None:
        return "unknown"
    return "yes: every output safe, no pressure left" if safe else "NO: an output not safe"


def _series(rec: RunRecord, t0: int) -> dict[tuple[str, str], list]:
    """(module, channel) -> [(seconds since start, value)], in record order."""
    series: dict[tuple[str, str], list] = {}
    for s in rec.samples():
        key = (s["module"], s["channel"])
        pts = series.get(key)
        if pts is None:
            pts = series[key] = []
        pts.append(((s["host_ms"] - t0) / 1000.0, s["value"]))
    return series


def _phase_bands(phases_rows: list, t0: int, t_end: float) -> list[tuple]:
    """(start_s, end_s, phase): a band per phase, steps inside a phase merged."""
    bands: list[list] = []
    for p in phases_rows:
        start = (p["host_ms"] - t0) / 1000.0
        if bands and bands[-1][2] == p["phase"]:
            continue  # a new step inside the same phase
        if bands:
            bands[-1][1] = start
        bands.append([start, t_end, p["phase"]])
    return [tuple(b) for b in bands]


def _marker_lines(events: list, notes: list, t0: int) -> list[tuple]:
    """(t_s, label, color, dashed) of trips, alarms and module deaths, in time order; a
    coordinator's trip note is left out when the module's own trip event marks it."""
    lines = []
    seen_trips: list[tuple[str | None, str | None, float]] = []
    for e in events:
        t = (e["host_ms"] - t0) / 1000.0
        if e.get("type") == "trip":
            lines.append((t, f"TRIP {e['module']}: {e.get('cause')}", "#c5221f", False))
            seen_trips.append((e["module"], e.get("cause"), t))
        elif e.get("type") == "alarm":
            lines.append((t, f"alarm {e['module']}: {e.get('cause')}", "#e37400", True))
    for n in notes:
        t = (n["host_ms"] - t0) / 1000.0
        data = n.get("data") or {}
        module = n.get("module") or data.get("module")
        if n["kind"] == "trip":
            cause = data.get("cause")
            if any(
                m == module and cause in (None, c) and abs(t - tt) < 5 for m, c, tt in seen_trips
            ):
                continue  # the module's own trip event already marks it
            lines.append((t, f"TRIP {module}: {cause or n['text']}", "#c5221f", False))
        elif n["kind"] == "death":
            lines.append((t, f"death {module}", "#5f6368", True))
    return sorted(lines)


def _plots(series: dict, units: dict, t_end: float, markers: _Markers) -> list[str]:
    """One plot per unit (GROUP_ORDER first), each series decimated."""
    groups: dict[str, dict[str, list]] = {}
    for (module, channel), pts in sorted(series.items()):
        unit = units.get((module, channel))
        if unit is None:
            unit = guess_unit(channel)
        groups.setdefault(unit, {})[f"{module}.{channel}"] = decimate(pts)
    order = [u for u in GROUP_ORDER if u in groups] + sorted(
        u for u in groups if u not in GROUP_ORDER
    )
    plots = []
    for unit in order:
        title = GROUP_TITLES.get(unit, "Other" if unit else "Other (no unit)")
        plots.append(_plot_svg(title, unit, groups[unit], t_end, markers))
    if not plots:  # a run with no telemetry still shows its phases and trips
        plots.append(_plot_svg("No telemetry recorded", "", {}, t_end, markers))
    return plots


def _description_rows(meta: dict, duration: float) -> list[list]:
    md = meta.get("metadata") or {}
    return [
        ["run id", meta.get("run_id")],
        ["line", f"{meta.get('line_id')} (hash {meta.get('line_hash')})"],
        ["recipe", f"{meta.get('recipe_name') or '-'} (hash {meta.get('recipe_hash') or '-'})"],
        *[[f"config hash {m}", h] for m, h in sorted((meta.get("config_hashes") or {}).items())],
        *[[k, v] for k, v in sorted(md.items())],
        ["outcome", meta.get("outcome") or "not finished"],
        ["safe at the end", _safe_at_end(meta.get("summary") or {})],
        ["duration", f"{duration:.1f} s ({duration / 60:.1f} min)"],
        ["audit entries", meta.get("entries")],
        ["head hash", meta.get("head_hash")],
    ]


def _verdict(rec: RunRecord) -> str:
    result = verify(rec.path)
    if result.ok:
        return f'<p class="ok">Record intact: {_esc(result.reason)}</p>'
    return (
        f'<p class="bad">Record TAMPERED OR DAMAGED: first bad entry {result.first_bad}: '
        f"{_esc(result.reason)}</p>"
    )


def _failed_command_rows(commands: list, acks: list, t0: int) -> list[list]:
    """Commands without an ack or with one that is not "ok" (the first ack counts)."""
    first_ack = {}
    for a in acks:
        first_ack.setdefault((a["module"], a["command_id"]), a)
    rows = []
    for c in commands:
        a = first_ack.get((c["module"], c["command_id"]))
        if a is None or a.get("result") != "ok":
            rows.append(
                [
                    _t(c["host_ms"], t0),
                    c["module"],
                    c["command_id"],
                    c["op"],
                    c.get("args"),
                    a["result"] if a else "no ack",
                    (a or {}).get("reason") or "",
                ]
            )
    return rows


_EVENT_KEYS = ("type", "severity", "cause", "detail", "new_state")


def _record_tables(rec: RunRecord, t0: int, events, phases_rows, notes) -> list[str]:
    """The events, operator actions, phases, gaps, failed commands and notes sections."""
    commands = rec.commands()
    cmd_rows = _failed_command_rows(commands, rec.acks(), t0)
    gap_rows = [
        [
            _t(g["start_ms"], t0),
            _t(g["end_ms"], t0),
            f"{(g['end_ms'] - g['start_ms']) / 1000:.1f}",
            g["reason"],
        ]
        for g in rec.gaps()
    ]
    return [
        "<h2>Events</h2>",
        _table(
            ["t (s)", "module", "type", "severity", "cause", "detail", "new state"],
            [[_t(e["host_ms"], t0), e["module"], *map(e.get, _EVENT_KEYS)] for e in events],
        ),
        "<h2>Operator actions</h2>",
        _table(
            ["t (s)", "who", "what", "reason"],
            [
                [_t(o["host_ms"], t0), o["who"], o["what"], o["reason"]]
                for o in rec.operator_actions()
            ],
        ),
        "<h2>Phases and steps</h2>",
        _table(
            ["t (s)", "phase", "step", "text"],
            [[_t(p["host_ms"], t0), p["phase"], p.get("step"), p.get("text")] for p in phases_rows],
        ),
        "<h2>Gaps</h2>",
        _table(["from (s)", "to (s)", "length (s)", "reason"], gap_rows),
        f"<h2>Commands refused or unanswered ({len(cmd_rows)} of {len(commands)})</h2>",
        _table(["t (s)", "module", "id", "op", "args", "result", "reason"], cmd_rows),
        "<h2>Notes</h2>",
        _table(
            ["t (s)", "kind", "module", "text"],
            [[_t(n["host_ms"], t0), n["kind"], n.get("module") or "", n["text"]] for n in notes],
        ),
    ]


def _quality_tables(rec: RunRecord) -> list[str]:
    """The outlet's volume as segments and the quality excursions (times from the
    recipe's start, as in the summary)."""
    summary = rec.meta().get("summary") or {}
    segs = rec.segments()
    if not segs and not summary.get("excursions"):
        return []
    totals = ", ".join(
        f"{k.removesuffix('_ml').replace('_', ' ')} {summary[k]:.1f} mL"
        for k in ("collected_in_spec_ml", "collected_off_spec_ml", "diverted_ml")
        if summary.get(k) is not None
    )
    return [
        "<h2>Collected volume</h2>",
        f"<p>{_esc(totals)}</p>",
        _table(
            ["from (s)", "to (s)", "volume (mL)", "status", "why", "volume from"],
            [
                [
                    f"{g['start_s']:.1f}",
                    f"{g['end_s']:.1f}",
                    f"{g['volume_ml']:.2f}",
                    g["status"],
                    g["why"],
                    "setpoints (estimate)" if g["estimate"] else "measured flow",
                ]
                for g in segs
            ],
        ),
        "<h2>Quality deviations</h2>",
        _table(
            ["signal", "limit", "from (s)", "seen (s)", "to (s)", "worst", "off spec at outlet"],
            [
                [
                    e["signal"],
                    e["limit"],
                    e["start_s"],
                    e["detected_s"],
                    e["end_s"],
                    e["worst"],
                    f"{e['off_spec_from_s']} .. {e['off_spec_to_s']}",
                ]
                for e in summary.get("excursions") or []
            ],
        ),
    ]


def build_report(rec: RunRecord) -> str:
    """The report's HTML for an open record."""
    meta = rec.meta()
    t0 = meta.get("created_ms") or 0
    series = _series(rec, t0)
    t_last = (meta.get("finished_ms") or meta.get("last_ms") or t0) - t0
    t_end = max([t_last / 1000.0] + [pts[-1][0] for pts in series.values() if pts])
    phases_rows = rec.phases()
    gaps = [
        ((g["start_ms"] - t0) / 1000.0, (g["end_ms"] - t0) / 1000.0, g["reason"])
        for g in rec.gaps()
    ]
    events = rec.events()
    notes = rec.notes()
    markers = _Markers(_phase_bands(phases_rows, t0, t_end), gaps, _marker_lines(events, notes, t0))
    plots = _plots(series, rec.channel_units(), t_end, markers)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Run {_esc(meta.get('run_id'))}</title><style>{_CSS}</style></head><body>",
        _HATCH,
        f"<h1>Run {_esc(meta.get('run_id'))}</h1>",
        _verdict(rec),
        _table(["", ""], _description_rows(meta, t_end)),
        *_quality_tables(rec),
        "<h2>Plots</h2>",
        "<p>Shaded bands: phases. Red lines: trips; orange dashed: alarms; grey dashed: module "
        "deaths; hatched: time nobody recorded (host restart).</p>",
        *plots,
        *_record_tables(rec, t0, events, phases_rows, notes),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(path_or_run, out_dir=None, runs_dir="runs") -> Path:
    """Write ``<run_id>.html`` into ``out_dir`` (default: beside the record) and return its
    path."""
    path = find_run(path_or_run, runs_dir)
    rec = RunRecord.open(path, readonly=True)
    try:
        text = build_report(rec)
        run_id = rec.run_id
    finally:
        rec.close()
    out = Path(out_dir) if out_dir is not None else path.parent
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{run_id}.html"
    target.write_text(text, encoding="utf-8")
    return target
