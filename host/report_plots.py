"""The report's figures, drawn with matplotlib (no pyplot: no global state, no display).

* a timeline: the phases as bars, their names in as many rows as they need not to
  overlap, and every mark (trip, alarm, hold, abort, manual change, deviation) numbered;
* one plot per unit (temperatures, pressures, flows, the analyzer, any other unit), phases
  shaded, marks drawn as numbered lines or spans, unrecorded gaps hatched and lines broken
  across them and across bad values, the legend outside the plot so it hides no data;
* the on/off signals (lamps, valves' switches, e-stops, dry-feed inputs) as steps, one
  lane per signal.

``svg(fig)`` gives a figure as inline SVG text (text kept as text, fixed ids, no date),
``pdf_pages`` writes the figures and tables into a PDF (``matplotlib.backends.
backend_pdf.PdfPages``).
"""

from __future__ import annotations

import io
import math
import re

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from host.report_data import Mark, RunData, Series, plot_groups

WIDTH_IN = 10.0
PLOT_H_IN = 2.2  # the plotting area's height
LEFT_IN, RIGHT_IN = 0.85, 2.3  # the legend goes right of the plot
BOTTOM_IN = 0.5  # time ticks and label
TITLE_IN = 0.3
AX_W_IN = WIDTH_IN - LEFT_IN - RIGHT_IN
PHASE_FILLS = ("#e8f0fe", "#fef7e0", "#e6f4ea", "#fce8e6", "#f3e8fd", "#e0f7fa")
PHASE_BARS = ("#aecbfa", "#fde293", "#a8dab5", "#f6aea9", "#d7aefb", "#a1e4f0")
MARK_STYLE = {  # kind -> (color, line style)
    "trip": ("#c5221f", "-"),
    "abort": ("#c5221f", "--"),
    "alarm": ("#e37400", "--"),
    "death": ("#5f6368", "--"),
    "manual": ("#1a73e8", ":"),
    "hold": ("#5f6368", "-"),
    "deviation": ("#d01884", "-"),
}
SPAN_ALPHA = {"hold": 0.15, "deviation": 0.18}
A4 = (8.27, 11.69)
TABLE_FONT = 8.0
ROW_H = 0.0165  # a table row's height, as a fraction of the page
FONT = 8.0
CHAR_IN = 0.56 * FONT / 72.0  # a character's width, roughly, at FONT points
_RC = {
    "svg.fonttype": "none",  # text stays text: searchable, and sized by the page's font
    "svg.hashsalt": "flowskid-report",  # the same run gives the same file
    "pdf.fonttype": 42,
    "font.size": FONT,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
}


class _Time:
    """Seconds to the plots' axis: minutes past five minutes of run."""

    def __init__(self, t_end: float):
        self.end = max(t_end, 1e-3)
        self.minutes = self.end > 300
        self.scale = 60.0 if self.minutes else 1.0
        self.label = f"time since start ({'min' if self.minutes else 's'})"

    def __call__(self, t: float) -> float:
        return t / self.scale

    def inches(self, dt: float) -> float:
        return dt / self.end * AX_W_IN


def _rows(items: list[tuple[float, float]], gap_in: float = 0.08) -> list[int]:
    """A row for each (centre_in, width_in) so that labels in one row do not overlap."""
    ends: list[float] = []
    out = []
    for centre, width in items:
        left = centre - width / 2
        for row, end in enumerate(ends):
            if left >= end + gap_in:
                ends[row] = centre + width / 2
                out.append(row)
                break
        else:
            ends.append(centre + width / 2)
            out.append(len(ends) - 1)
    return out


def timeline(data: RunData) -> Figure:
    """The phases as bars with every name readable, and the marks numbered."""
    tm = _Time(data.t_end)
    labels = [(tm.inches((a + b) / 2), CHAR_IN * (len(name) + 1)) for a, b, name in data.phases]
    rows = _rows(labels)
    n_rows = max(rows, default=0) + 1
    ax_h = 0.3 + 0.17 * n_rows  # the bars, then the names in rows below them
    fig, ax = _figure(ax_h, TITLE_IN + _mark_rows_in(data, tm))
    for i, ((a, b, name), row) in enumerate(zip(data.phases, rows, strict=True)):
        ax.broken_barh([(tm(a), tm(b - a))], (0, 1), color=PHASE_BARS[i % len(PHASE_BARS)])
        ax.text(tm((a + b) / 2), -0.35 - row * 0.75, name, ha="center", va="top", fontsize=FONT)
    for a, b, _reason in data.gaps:
        ax.broken_barh([(tm(a), tm(b - a))], (0, 1), facecolor="white", hatch="///", ec="#999")
    ax.set_ylim(-0.6 - n_rows * 0.75, 1.0)
    _finish_axes(ax, tm, data.marks, labels=True)
    ax.set_yticks([])
    _title(ax, "Phases and marks", data, tm)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return fig


def _figure(ax_h_in: float, top_in: float, bottom_in: float = BOTTOM_IN):
    """A figure whose plotting area sits at the same place and width in every figure, so
    the time axes of all plots line up."""
    h = ax_h_in + top_in + bottom_in
    fig = Figure(figsize=(WIDTH_IN, h))
    ax = fig.add_axes((LEFT_IN / WIDTH_IN, bottom_in / h, AX_W_IN / WIDTH_IN, ax_h_in / h))
    return fig, ax


def _title(ax, text: str, data: RunData, tm: _Time) -> None:
    """The title above the mark numbers."""
    ax.set_title(text, pad=4 + 10 * _mark_rows(data.marks, tm))


def _mark_rows(marks: list[Mark], tm: _Time) -> int:
    rows = _rows([(tm.inches(m.t), CHAR_IN * (len(str(m.number)) + 0.6)) for m in marks], 0.02)
    return max(rows, default=-1) + 1


def _mark_rows_in(data: RunData, tm: _Time) -> float:
    return 10 / 72 * _mark_rows(data.marks, tm)


def _draw_marks(ax, marks: list[Mark], tm: _Time, numbers: bool) -> None:
    """Lines and spans; their numbers above the axes, in rows that do not overlap."""
    rows = _rows([(tm.inches(m.t), CHAR_IN * (len(str(m.number)) + 0.6)) for m in marks], 0.02)
    for m, row in zip(marks, rows, strict=True):
        color, style = MARK_STYLE.get(m.kind, ("#5f6368", "--"))
        if m.end is not None and m.end > m.t:
            ax.axvspan(tm(m.t), tm(m.end), color=color, alpha=SPAN_ALPHA.get(m.kind, 0.15), lw=0)
        ax.axvline(tm(m.t), color=color, ls=style, lw=1.2, zorder=3)
        if numbers:
            ax.annotate(
                str(m.number),
                (tm(m.t), 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 2 + 10 * row),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=FONT - 0.5,
                color=color,
                fontweight="bold",
                annotation_clip=False,
            )


def _finish_axes(ax, tm: _Time, marks: list[Mark], labels: bool) -> None:
    _draw_marks(ax, marks, tm, numbers=labels)
    ax.set_xlim(0, tm(tm.end))
    ax.set_xlabel(tm.label)
    ax.grid(axis="x", color="#e0e0e0", lw=0.6)


def _broken(points: list, gaps: list, tm: _Time) -> tuple[list, list]:
    """x and y with NaN wherever the line must break: bad values and unrecorded gaps."""
    xs: list[float] = []
    ys: list[float] = []
    prev = None
    for t, v in points:
        if prev is not None and any(prev <= g0 and t >= g1 for g0, g1, _ in gaps):
            xs.append(tm(prev))
            ys.append(math.nan)
        xs.append(tm(t))
        ys.append(math.nan if v is None else v)
        prev = t
    return xs, ys


def _shade(ax, data: RunData, tm: _Time) -> None:
    for i, (a, b, _name) in enumerate(data.phases):
        ax.axvspan(tm(a), tm(b), color=PHASE_FILLS[i % len(PHASE_FILLS)], lw=0, zorder=0)
    for a, b, _reason in data.gaps:
        ax.axvspan(tm(a), tm(b), facecolor="#f4f4f4", hatch="///", edgecolor="#aaa", lw=0)


def value_plot(title: str, unit: str, series: list[Series], data: RunData) -> Figure:
    tm = _Time(data.t_end)
    fig, ax = _figure(PLOT_H_IN, TITLE_IN + _mark_rows_in(data, tm))
    _shade(ax, data, tm)
    for i, s in enumerate(series):
        xs, ys = _broken(s.points, data.gaps, tm)
        style = "--" if s.role == "setpoint" else "-"
        ax.plot(xs, ys, style, lw=1.1, color=f"C{i % 10}", label=s.label, zorder=2)
        if len(xs) == 1:
            ax.plot(xs, ys, "o", ms=2, color=f"C{i % 10}")
    _finish_axes(ax, tm, data.marks, labels=True)
    ax.set_ylabel("fraction" if unit == "1" else unit)
    _title(ax, f"{title} ({unit})" if unit and unit not in ("1", "%") else title, data, tm)
    if series:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=FONT)
    return fig


def switch_plot(series: list[Series], data: RunData) -> Figure:
    """One lane per on/off signal that changed during the run, drawn as steps; the ones
    that never changed are named under the plot with their state."""
    tm = _Time(data.t_end)
    still = [s for s in series if not s.changed]
    series = [s for s in series if s.changed]
    text = "never changed: " + ", ".join(
        f"{s.label} {'on' if s.raw and s.raw[0][1] else 'off'}" for s in still
    )
    note = _wrap(text, 125) if still else ""
    bottom = BOTTOM_IN + 0.16 * (note.count("\n") + 1 if note else 0)
    fig, ax = _figure(0.3 * len(series) + 0.1, TITLE_IN + _mark_rows_in(data, tm), bottom)
    _shade(ax, data, tm)
    for i, s in enumerate(series):
        xs, ys = _broken(s.points, data.gaps, tm)
        if xs and not math.isnan(ys[-1]):  # hold the last state to the end of the run
            xs.append(tm(data.t_end))
            ys.append(ys[-1])
        lane = len(series) - 1 - i
        ys = [y * 0.7 + lane for y in ys]
        ax.axhline(lane - 0.15, color="#ccc", lw=0.6)
        ax.plot(xs, ys, drawstyle="steps-post", lw=1.2, color=f"C{i % 10}")
    ax.set_yticks([len(series) - 1 - i + 0.35 for i in range(len(series))])
    ax.set_yticklabels([s.label for s in series])
    ax.yaxis.tick_right()  # the names sit where the other plots have their legend
    ax.set_ylim(-0.2, len(series))
    _finish_axes(ax, tm, data.marks, labels=True)
    _title(ax, "On/off signals (high = on)", data, tm)
    if note:  # left-aligned under the time axis's label, inside the figure
        h = fig.get_size_inches()[1]
        fig.text(LEFT_IN / WIDTH_IN, (bottom - BOTTOM_IN + 0.04) / h, note, va="bottom",
                 fontsize=FONT - 0.5, color="#444")  # fmt: skip
    return fig


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def figures(data: RunData) -> list[tuple[str, Figure]]:
    """(title, figure): the timeline, then one plot per group."""
    with matplotlib.rc_context(_RC):
        out = [("Phases and marks", timeline(data))]
        for title, unit, series in plot_groups(data.series):
            if unit == "" and title.startswith("On/off"):
                out.append((title, switch_plot(series, data)))
            else:
                out.append((title, value_plot(title, unit, series, data)))
        if len(out) == 1:  # a run with no telemetry still shows its phases and marks
            out.append(("No telemetry recorded", value_plot("No telemetry recorded", "", [], data)))
    return out


def svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prologue, no date)."""
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # names matplotlib's URL
    return text[text.index("<svg") :]


def _table_page(pdf: PdfPages, title: str, blocks: list[tuple[str, list, list]]) -> None:
    """An A4 page of headed tables (header, rows of text), drawn as text."""
    fig = Figure(figsize=A4)
    y = 0.96
    fig.text(0.06, y, title, fontsize=13, fontweight="bold", va="top")
    y -= 0.035
    for heading, header, rows in blocks:
        fig.text(0.06, y, heading, fontsize=10.5, fontweight="bold", va="top")
        y -= ROW_H * 1.4
        widths = _widths([header, *rows])
        if header:
            y = _text_row(fig, y, header, widths, bold=True)
        for row in rows or [["none"]]:
            y = _text_row(fig, y, row, widths, bold=False)
        y -= ROW_H * 0.6
    pdf.savefig(fig)


def _widths(rows: list) -> list[float]:
    """Column widths (fractions of the page) in proportion to their longest cell."""
    n = max((len(r) for r in rows), default=1)
    longest = [max([len(str(r[i])) for r in rows if i < len(r)] + [3]) for i in range(n)]
    capped = [min(c, 70) + 2 for c in longest]
    return [0.88 * c / sum(capped) for c in capped]


def _text_row(fig: Figure, y: float, cells: list, widths: list, bold: bool) -> float:
    x = 0.06
    for cell, w in zip(cells, widths, strict=False):
        text = str(cell)
        limit = max(8, int(w * A4[0] / (0.55 * TABLE_FONT / 72.0)))
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        fig.text(x, y, text, fontsize=TABLE_FONT, va="top", fontweight="bold" if bold else "normal")
        x += w
    return y - ROW_H


ROWS_PER_PAGE = int((0.96 - 0.04 - 0.03) / ROW_H)


def paginate(blocks: list[tuple[str, list, list]], rows_per_page: int = ROWS_PER_PAGE) -> list:
    """The blocks split over pages of ``rows_per_page`` text rows each (a heading, its
    header and the space after it count as 3)."""
    pages: list[list] = [[]]
    used = 0
    for heading, header, rows in blocks:
        rows = rows or []
        start = 0
        while True:
            room = rows_per_page - used - 3
            if room < 4 and pages[-1]:
                pages.append([])
                used, room = 0, rows_per_page - 3
            part = rows[start : start + room]
            name = heading if start == 0 else f"{heading} (continued)"
            pages[-1].append((name, header, part))
            used += len(part) + 3
            start += len(part)
            if start >= len(rows):
                break
    return pages


def _pixels(fig: Figure, dpi: int):
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


def _figure_pages(pdf: PdfPages, title: str, figs: list, dpi: int = 200) -> None:
    """The figures stacked on A4 pages at the page's width (as 200 dpi images: a figure
    cannot be placed inside another one as vectors)."""
    margin, top = 0.45, 0.6
    width = A4[0] - 2 * margin
    page, y = None, 0.0
    for _name, fig in figs:
        w_in, h_in = fig.get_size_inches()
        h = h_in * width / w_in
        if page is None or y - h < margin:
            if page is not None:
                pdf.savefig(page)
            page = Figure(figsize=A4)
            page.text(margin / A4[0], 1 - 0.35 / A4[1], f"{title}: plots", fontsize=11,
                      fontweight="bold", va="top")  # fmt: skip
            y = A4[1] - top
        ax = page.add_axes((margin / A4[0], (y - h) / A4[1], width / A4[0], h / A4[1]))
        ax.imshow(_pixels(fig, dpi), interpolation="antialiased")
        ax.set_axis_off()
        y -= h + 0.1
    if page is not None:
        pdf.savefig(page)


def pdf_pages(path, title: str, first: list, figs: list, tables: list) -> None:
    """The PDF: the summary tables, the figures stacked at the page's width, then the
    record's tables."""
    with matplotlib.rc_context(_RC), PdfPages(path, metadata={"Title": title}) as pdf:
        for i, page in enumerate(paginate(first)):
            _table_page(pdf, title if i == 0 else f"{title} (continued)", page)
        _figure_pages(pdf, title, figs)
        for page in paginate(tables):
            _table_page(pdf, f"{title}: record", page)
