"""A run's report for a chemist and a QA reviewer: one self-contained HTML file (inline
SVG, no scripts, no network assets) and a printable PDF beside it.

At the top: the outcome and its reason, the conditions (planned, and measured over the
collection window), where the product went (in spec, off spec, diverted), the deviations
and every other mark on the plots, the signatures, and the collection window's
statistics.  Then the plots (``host.report_plots``, matplotlib): a timeline of the phases
and marks, one plot per unit, the analyzer on its own, the on/off signals as steps.  Then
the record: its integrity and identity (hashes), the module events, the commands the
recipe and the coordinator sent, the operator's actions, phases, gaps and notes, all with
channel names and rounded values.

The PDF is drawn by matplotlib too (``PdfPages``): the same figures and tables, without a
browser on the host (a headless Chromium would print the HTML more prettily, but a skid's
host PC should not need one to write its batch record).
"""

from __future__ import annotations

import html
from pathlib import Path

from host.record import RunRecord, find_run, verify
from host.report_data import (
    RunData,
    command_text,
    decimate,
    event_text,
    guess_unit,
    load,
    round_numbers,
    rounded,
    window_stats,
)
from host.report_plots import figures, pdf_pages, svg

__all__ = ["build_report", "decimate", "guess_unit", "signature_rows", "write_report"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.1em; } h2 { margin-top: 1.4em; border-bottom: 1px solid #ddd; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { color: #b00020; }
.outcome { font-size: 1.25em; padding: 0.5em 0.8em; border-radius: 4px; }
.outcome.ok { background: #e6f4ea; color: #137333; }
.outcome.warn { background: #fef7e0; color: #8a5300; }
.outcome.bad { background: #fce8e6; color: #b00020; }
.bad { color: #b00020; font-weight: bold; }
.ok { color: #137333; font-weight: bold; }
.cols { display: flex; gap: 2em; flex-wrap: wrap; }
figure { margin: 0.8em 0; } figure svg { max-width: 100%; height: auto; }
@media print { body { max-width: none; margin: 0; } figure, table { break-inside: avoid; } }
"""


_ROLE_NOTE = {"setpoint": " (setpoint)", "actuator": " (commanded)"}


def _esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _table(header: list[str], rows: list[list], bad=None, num: tuple = ()) -> str:
    """An HTML table; ``bad(row)`` marks a row red, ``num`` are right-aligned columns."""
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in header) if any(header) else ""
    body = []
    for r in rows:
        cls = ' class="bad"' if bad is not None and bad(r) else ""
        cells = "".join(
            f'<td class="num">{_esc(c)}</td>' if i in num else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(r)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    head = f"<tr>{head}</tr>" if head else ""
    return f"<table>{head}{''.join(body)}</table>"


def _t(ms, t0) -> str:
    return "" if ms is None else f"{(ms - t0) / 1000:.1f}"


def _safe_at_end(summary: dict, short: bool = False) -> str:
    """The end state in words: trapped pressure named with where and how much."""
    residual = summary.get("residual") or []
    if residual:
        where = ", ".join(f"{r['component']} {r['pressure_bar']:g} bar" for r in residual)
        if short:
            return f"NO: pressure left ({where}): vent by hand"
        return (
            f"NO: pressure left in the line ({where}); it could not be vented, so vent it "
            "by hand before opening any fitting"
        )
    safe = summary.get("all_safe_at_end")
    if safe is None:
        return "unknown"
    return "yes: every output safe, no pressure left" if safe else "NO: an output not safe"


# -- the top: outcome, conditions, product, deviations, signatures, statistics -------------


def _outcome(data: RunData) -> list[str]:
    meta = data.meta
    summary = meta.get("summary") or {}
    outcome = meta.get("outcome") or "not finished"
    cls = {"completed": "ok", "completed_with_deviations": "warn"}.get(outcome, "bad")
    reason = summary.get("reason") or ""
    md = meta.get("metadata") or {}
    sub = [f"recipe {meta.get('recipe_name') or '-'} on line {meta.get('line_id')}"]
    sub += [f"{k} {v}" for k, v in sorted(md.items()) if k != "command"]
    sub.append(f"{data.t_end / 60:.1f} min")
    return [
        f"<h1>Run {_esc(meta.get('run_id'))}</h1>",
        f'<p class="sub">{_esc("; ".join(sub))}</p>',
        f'<p class="outcome {cls}"><b>{_esc(outcome.replace("_", " ").upper())}</b>'
        + (f": {_esc(reason)}" if reason else "")
        + "</p>",
        f"<p>Safe at the end: {_esc(_safe_at_end(summary))}</p>",
    ]


def _measured(data: RunData) -> dict[str, str]:
    """module.channel -> "mean ± sd unit" over the collection window."""
    return {
        row[0]: f"{rounded(row[2])} ± {rounded(row[3], 2)} {row[1]}{_ROLE_NOTE.get(row[7], '')}"
        for row in window_stats(data)
    }


def condition_rows(data: RunData) -> list[list]:
    """[quantity, planned, measured in the collection window] from the recorded plan."""
    plan = data.plan or {}
    c = plan.get("conditions") or {}
    meas = _measured(data)
    reactor = c.get("reactor") or ""
    rows = [
        ["residence time", f"{rounded(c.get('residence_time_s'))} s" if c else "", ""],
        [
            f"temperature ({reactor})".replace(" ()", ""),
            f"{rounded(c.get('temperature_c'))} degC" if c else "",
            meas.get(f"{reactor}.temperature", ""),
        ],
        ["pressure (regulated)", f"{rounded(c.get('pressure_bar'))} bar" if c else "", ""],
        ["total flow", f"{rounded(c.get('total_flow_ml_min'))} mL/min" if c else "", ""],
    ]
    pressures = [k for k in meas if k.endswith(".pressure") and k.startswith("bpr")]
    if pressures:
        rows[2][2] = meas[pressures[0]]
    for r in plan.get("reagents") or []:
        pump = r.get("pump") or ""
        rows.append(
            [
                f"{r.get('name')} ({pump})",
                f"{rounded(r.get('flow_ml_min'))} mL/min; feed "
                f"{rounded(r.get('concentration_mol_l'))} M, in the coil "
                f"{rounded(r.get('coil_concentration_mol_l'))} M; "
                f"{rounded(r.get('equivalents'))} equiv"
                + (" (limiting)" if r.get("limiting") else ""),
                meas.get(f"{pump}.flow_measured", meas.get(f"{pump}.flow", "")),
            ]
        )
    return rows


def _conditions(data: RunData) -> list[str]:
    out = ["<h2>Conditions</h2>"]
    if data.plan is None:
        out.append(
            "<p><em>No plan is stored with this run (it was recorded before "
            "<code>skid plan</code> existed): planned conditions unknown.</em></p>"
        )
        rows = [[k, "", v] for k, v in _measured(data).items()]
    else:
        rows = condition_rows(data)
    out.append(_table(["", "planned", "measured over the collection window (mean ± sd)"], rows))
    return out


def _product(data: RunData, segments: list) -> list[str]:
    summary = data.meta.get("summary") or {}
    keys = ("collected_in_spec_ml", "collected_off_spec_ml", "diverted_ml")
    if not segments and all(summary.get(k) is None for k in keys):
        return ["<h2>Collected volume</h2>", "<p><em>no product collected</em></p>"]
    est = " (estimated from the pump setpoints)" if summary.get("volume_estimated") else ""
    totals = [
        [k.removesuffix("_ml").replace("_", " "), f"{summary[k]:.1f} mL"]
        for k in keys
        if summary.get(k) is not None
    ]
    rows = [
        [
            f"{g['start_s'] + data.recipe_t0:.1f}",
            f"{g['end_s'] + data.recipe_t0:.1f}",
            f"{g['volume_ml']:.2f}",
            g["status"],
            g["why"],
            "pump setpoints (estimate)" if g["estimate"] else "measured flow",
        ]
        for g in segments
    ]
    return [
        "<h2>Collected volume</h2>",
        f"<p>Volumes{_esc(est)}:</p>",
        _table(["", "volume"], totals, num=(1,)),
        _table(
            ["from (s)", "to (s)", "volume (mL)", "status", "why", "volume from"],
            rows,
            bad=lambda r: r[3] in ("off_spec", "diverted"),
            num=(0, 1, 2),
        ),
    ]


def _deviations(data: RunData) -> list[str]:
    summary = data.meta.get("summary") or {}
    exc = [
        [
            e["signal"],
            e["limit"],
            rounded(e["start_s"] + data.recipe_t0),
            rounded(e["detected_s"] + data.recipe_t0) if e.get("detected_s") is not None else "",
            rounded(e["end_s"] + data.recipe_t0) if e.get("end_s") is not None else "open",
            rounded(e["worst"]),
            _off_spec(e, data.recipe_t0),
        ]
        for e in summary.get("excursions") or []
    ]
    marks = [[m.number, f"{m.t:.1f}", m.kind, m.label] for m in data.marks]
    return [
        "<h2>Deviations</h2>",
        _table(
            ["signal", "limit", "from (s)", "seen (s)", "to (s)", "worst", "off spec at outlet"],
            exc,
        ),
        "<h3>Marks on the plots</h3>",
        "<p>Trips, aborts, alarms, holds, manual changes, lost modules and deviations, "
        "numbered as on the plots (times since the start).</p>",
        _table(
            ["#", "t (s)", "kind", "what"],
            marks,
            bad=lambda r: r[2] in ("trip", "abort", "deviation"),
            num=(0, 1),
        ),
    ]


def _off_spec(e: dict, t0: float) -> str:
    a, b = e.get("off_spec_from_s"), e.get("off_spec_to_s")
    if a is None:
        return "none"
    return f"{a + t0:.1f} s to " + (f"{b + t0:.1f} s" if b is not None else "the end")


SIGNATURE_HEAD = ["signer", "role", "time (UTC)", "meaning", "covers", "holds"]
CHANGE_HEAD = ["t (s)", "who", "what", "module", "old", "new", "why"]


def signature_rows(rec: RunRecord, broken=()) -> list[list]:
    """[signer, role, time, meaning (and comment), entry and head hash covered, holds] of
    each signature (``skid sign``, host/commands/sign.py); ``broken``: the
    ``verify(...).broken_signatures`` of the record, so a signature a later change broke
    says so."""
    broken_seqs = {b.get("seq") for b in broken}
    rows = []
    for sig in rec.signatures():
        meaning = sig.get("meaning") or ""
        if sig.get("comment"):
            meaning += f": {sig['comment']}"
        rows.append(
            [
                f"{sig.get('full_name') or sig.get('signer')} ({sig.get('signer')})",
                sig.get("role") or "",
                sig.get("signed_utc") or "",
                meaning,
                f"entry {sig.get('covers_seq')}, {str(sig.get('covers_hash') or '')[:16]}",
                "BROKEN by a later change" if sig.get("seq") in broken_seqs else "yes",
            ]
        )
    return rows


def change_rows(rec: RunRecord, t0_ms: int | None) -> list[list]:
    """The audit trail's changes (old and new value, who and why), for review."""
    rows = []
    for c in rec.changes():
        t = "" if t0_ms is None else f"{(c['host_ms'] - t0_ms) / 1000.0:.1f}"
        who = str(c.get("who") or "")
        if c.get("authenticated") is False:
            who += " (not authenticated)"
        what = str(c.get("what") or "")
        if c.get("channel"):
            what += f" {c['channel']}"
        rows.append(
            [t, who, what, c.get("module") or "", rounded(c.get("old")), rounded(c.get("new")),
             c.get("why") or ""]
        )  # fmt: skip
    return rows


def _signatures(rec: RunRecord, verdict) -> list[str]:
    rows = signature_rows(rec, verdict.broken_signatures)
    return [
        "<h2>Signatures</h2>",
        _table(SIGNATURE_HEAD, rows) if rows else "<p><em>Not signed.</em></p>",
    ]


def _audit_review(rec: RunRecord, t0_ms: int | None) -> list[str]:
    rows = change_rows(rec, t0_ms)
    return [
        "<h2>Audit trail review: changes during the run</h2>",
        _table(CHANGE_HEAD, rows) if rows else "<p><em>No changes recorded.</em></p>",
    ]


def stats_rows(data: RunData) -> list[list]:
    return [
        [
            r[0] + _ROLE_NOTE.get(r[7], ""),
            r[1],
            f"{rounded(r[2])} ± {rounded(r[3], 2)}",
            rounded(r[4]),
            rounded(r[5]),
            r[6],
        ]
        for r in window_stats(data)
    ]


def _statistics(data: RunData) -> list[str]:
    wins = ", ".join(f"{a:.0f}-{b:.0f} s" for a, b in data.windows) or "none"
    return [
        "<h2>Collection-window statistics</h2>",
        f"<p>Over the time product went to collection: {_esc(wins)}.</p>",
        _table(
            ["channel", "unit", "mean ± sd", "min", "max", "samples"],
            stats_rows(data),
            num=(2, 3, 4, 5),
        ),
    ]


# -- the record: integrity, identity, events, commands, operator actions ---------------------


def _verdict(result) -> str:
    """The verify result (``host.record.VerifyResult``) in words."""
    if result.ok:
        return f'<p class="ok">Record intact: {_esc(result.reason)}</p>'
    return (
        f'<p class="bad">Record TAMPERED OR DAMAGED: first bad entry {result.first_bad}: '
        f"{_esc(result.reason)}</p>"
    )


def description_rows(meta: dict) -> list[list]:
    md = meta.get("metadata") or {}
    return [
        ["run id", meta.get("run_id")],
        ["line", f"{meta.get('line_id')} (hash {meta.get('line_hash')})"],
        ["recipe", f"{meta.get('recipe_name') or '-'} (hash {meta.get('recipe_hash') or '-'})"],
        *[[f"config hash {m}", h] for m, h in sorted((meta.get("config_hashes") or {}).items())],
        *[[k, v] for k, v in sorted(md.items())],
        ["audit entries", meta.get("entries")],
        ["head hash", meta.get("head_hash")],
    ]


def event_rows(rec: RunRecord, data: RunData) -> list[list]:
    """Module events, without the modules' echo of each command they applied (the
    commands table lists those with their result)."""
    return [
        [
            _t(e["host_ms"], data.t0),
            e["module"],
            e.get("type"),
            e.get("severity"),
            e.get("cause") or "",
            event_text(e, data.order, data.units),
        ]
        for e in rec.events()
        if e.get("type") != "operator_action"
    ]


def command_rows(rec: RunRecord, data: RunData) -> list[list]:
    """Every command sent, in words, with who asked for it (the recipe and coordinator,
    or an operator's manual request at the same moment) and its result."""
    first_ack: dict = {}
    for a in rec.acks():
        first_ack.setdefault((a["module"], a["command_id"]), a)
    manual = {
        o["host_ms"]: o["who"]
        for o in rec.operator_actions()
        if (o["what"] or "").split(" ")[0].rstrip(":") in ("set", "reset", "ack")
    }
    rows = []
    for c in rec.commands():
        a = first_ack.get((c["module"], c["command_id"]))
        result = a["result"] if a else "no ack"
        if a and a.get("reason"):
            result += f": {a['reason']}"
        who = manual.get(c["host_ms"])
        rows.append(
            [
                _t(c["host_ms"], data.t0),
                f"operator {who}" if who else "recipe",
                command_text(c, data.order, data.units),
                result,
            ]
        )
    return rows


def _record_blocks(rec: RunRecord, data: RunData) -> list[tuple[str, list, list]]:
    """(heading, header, rows) of the record's tables, for the HTML and the PDF."""
    t0 = data.t0
    return [
        ("Events", ["t (s)", "module", "type", "severity", "cause", "detail"], event_rows(rec, data)),
        ("Commands (recipe and coordinator)", ["t (s)", "by", "command", "result"],
         command_rows(rec, data)),
        ("Operator actions", ["t (s)", "who", "what", "reason"],
         [[_t(o["host_ms"], t0), o["who"], o["what"], o["reason"]]
          for o in rec.operator_actions()]),
        ("Phases and steps", ["t (s)", "phase", "step"],
         [[_t(p["host_ms"], t0), p["phase"], p.get("text") or p.get("step")]
          for p in rec.phases()]),
        ("Gaps", ["from (s)", "to (s)", "length (s)", "reason"],
         [[_t(g["start_ms"], t0), _t(g["end_ms"], t0),
           f"{(g['end_ms'] - g['start_ms']) / 1000:.1f}", g["reason"]] for g in rec.gaps()]),
        ("Notes", ["t (s)", "kind", "module", "text"],
         [[_t(n["host_ms"], t0), n["kind"], n.get("module") or "", round_numbers(n["text"] or "")]
          for n in rec.notes() if n["kind"] not in ("plan",)]),
    ]  # fmt: skip


_BAD_ROWS = {  # heading -> which rows of its table are shown in red
    "Events": lambda r: r[2] in ("trip", "alarm"),
    "Commands (recipe and coordinator)": lambda r: not str(r[3]).startswith("ok"),
    "Operator actions": lambda r: "refused" in str(r[2]),
}


# -- assembling -----------------------------------------------------------------------------


def _html_blocks(blocks: list) -> list[str]:
    out = []
    for heading, header, rows in blocks:
        bad = _BAD_ROWS.get(heading)
        out += [f"<h2>{_esc(heading)}</h2>", _table(header, rows, bad=bad, num=(0,))]
    return out


def _summary_blocks(rec: RunRecord, data: RunData, verdict) -> list:
    """The top of the report as (heading, header, rows) for the PDF's first page."""
    meta = data.meta
    summary = meta.get("summary") or {}
    outcome = (meta.get("outcome") or "not finished").replace("_", " ").upper()
    keys = ("collected_in_spec_ml", "collected_off_spec_ml", "diverted_ml")
    return [
        ("Outcome", [], [[outcome, summary.get("reason") or ""],
                         ["safe at the end", _safe_at_end(summary, short=True)],
                         ["recipe / line", f"{meta.get('recipe_name')} on {meta.get('line_id')}"],
                         ["duration", f"{data.t_end:.1f} s ({data.t_end / 60:.1f} min)"]]),
        ("Conditions", ["", "planned", "measured (collection window)"],
         condition_rows(data) if data.plan is not None else
         [["no plan stored with this run", "", ""]]),
        ("Collected volume", [], [[k.removesuffix("_ml").replace("_", " "), f"{summary[k]:.1f} mL"]
                                  for k in keys if summary.get(k) is not None]),
        ("Marks on the plots", ["#", "t (s)", "kind", "what"],
         [[m.number, f"{m.t:.1f}", m.kind, m.label] for m in data.marks]),
        ("Signatures", SIGNATURE_HEAD, signature_rows(rec, verdict.broken_signatures)),
        ("Audit trail review", CHANGE_HEAD, change_rows(rec, data.t0)),
        ("Collection-window statistics", ["channel", "unit", "mean ± sd", "min", "max", "n"],
         stats_rows(data)),
    ]  # fmt: skip


def _plots_html(figs: list) -> list[str]:
    out = [
        "<h2>Plots</h2>",
        "<p>Shaded bands: phases (named on the timeline). Numbered lines: the marks listed "
        "above (red: trips and aborts; orange dashed: alarms; blue dotted: manual changes; "
        "grey: holds and lost modules; magenta spans: deviations). Hatched: time nobody "
        "recorded; lines break there and at bad values.</p>",
    ]
    for title, fig in figs:
        out.append(f'<figure aria-label="{_esc(title)}">{svg(fig)}</figure>')
    return out


def _build(rec: RunRecord):
    """(html, data, figures, record tables, verify result)."""
    data = load(rec)
    verdict = verify(rec.path)
    segments = rec.segments()
    figs = figures(data)
    records = _record_blocks(rec, data)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Run {_esc(data.meta.get('run_id'))}</title><style>{_CSS}</style></head><body>",
        *_outcome(data),
        *_conditions(data),
        *_product(data, segments),
        *_deviations(data),
        *_signatures(rec, verdict),
        *_audit_review(rec, data.t0),
        *_statistics(data),
        *_plots_html(figs),
        "<h2>Record</h2>",
        _verdict(verdict),
        _table(["", ""], description_rows(data.meta)),
        *_html_blocks(records),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n", data, figs, records, verdict


def build_report(rec: RunRecord) -> str:
    """The report's HTML for an open record."""
    return _build(rec)[0]


def write_report(path_or_run, out_dir=None, runs_dir="runs", pdf: bool = True) -> Path:
    """Write ``<run_id>.html`` and ``<run_id>.pdf`` into ``out_dir`` (default: beside the
    record) and return the HTML's path."""
    path = find_run(path_or_run, runs_dir)
    rec = RunRecord.open(path, readonly=True)
    try:
        text, data, figs, records, verdict = _build(rec)
        first = _summary_blocks(rec, data, verdict)
        identity = [
            ["verify", "intact" if verdict.ok else f"TAMPERED OR DAMAGED: {verdict.reason}"]
        ]
        records = [("Record", [], identity + description_rows(data.meta)), *records]
        run_id = rec.run_id
    finally:
        rec.close()
    out = Path(out_dir) if out_dir is not None else path.parent
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{run_id}.html"
    target.write_text(text, encoding="utf-8")
    if pdf:
        pdf_pages(out / f"{run_id}.pdf", f"Run {run_id}", first, figs, records)
    return target
