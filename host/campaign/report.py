"""``skid campaign report ID``: a campaign's figures, best conditions and CSV.

Written to ``OUT`` (default ``campaigns/<id>-report/``):

* ``response.png`` — each objective against each variable (one panel per pair): ok
  experiments as dots, replicates as diamonds, failed ones as red crosses at the bottom,
  infeasible ones as grey marks at the bottom (never run);
* ``pareto.png`` (with two or more objectives) — the first two objectives of the ok
  experiments, the non-dominated ones joined as the Pareto front;
* ``best.png`` — the best conditions (up to five, ranked by the first objective's mean)
  with their replicate spread (min..max bars, n per bar);
* ``experiments.csv`` — one row per experiment (columns: docs/campaigns.md, ``CSV_COLUMNS``);
* ``index.html`` — the above with the campaign's verification result and tables.

Matplotlib (Agg backend), no display needed.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

from host.campaign.cli import best_condition  # noqa: E402
from host.campaign.model import load_campaign_text  # noqa: E402
from host.campaign.record import CAMPAIGNS_DIR, CampaignRecord  # noqa: E402
from host.record import verify  # noqa: E402

RESULTS = ("yield", "space_time_yield", "reagent_per_gram", "product_mol_l")
CSV_COLUMNS = (
    "index",
    "kind",
    "status",
    "reason",
    "<variables>",
    *RESULTS,
    "absorbance",
    "start_s",
    "end_s",
    "line_time_s",
    "reagent_ml",
    "run_id",
)
LABELS = {
    "yield": "yield of P (fraction of A)",
    "space_time_yield": "space-time yield (mol/(L h))",
    "reagent_per_gram": "feed per gram of P (mL/g)",
    "temperature_c": "temperature (degC)",
    "residence_time_min": "residence time (min)",
    "equivalents": "equivalents of B",
}

SHORT = {"temperature_c": "T degC", "residence_time_min": "tau min", "equivalents": "eq B"}


def _campaign(record: CampaignRecord):
    base = Path(record.meta()["metadata"]["campaign_file"]).resolve().parent
    return load_campaign_text(record.campaign_text(), str(record.path), base)


def write_campaign_report(campaign_id, campaigns_dir=CAMPAIGNS_DIR, out=None) -> list[Path]:
    """Write the report; returns the paths written (index.html first)."""
    record = CampaignRecord.open(campaign_id, campaigns_dir, readonly=True)
    try:
        campaign = _campaign(record)
        experiments = record.experiments()
        sessions = record.sessions()
        cid, path = record.campaign_id, record.path
    finally:
        record.close()
    out_dir = Path(out) if out else path.parent / f"{cid}-report"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_csv(experiments, campaign, out_dir / "experiments.csv")]
    paths.append(plot_response(experiments, campaign, out_dir / "response.png"))
    if len(campaign.objectives) > 1:
        paths.append(plot_pareto(experiments, campaign, out_dir / "pareto.png"))
    paths.append(plot_best(experiments, campaign, out_dir / "best.png"))
    index = _html(cid, campaign, experiments, sessions, verify(path), paths, out_dir)
    return [index, *paths]


def write_csv(experiments: list[dict], campaign, path: Path) -> Path:
    names = [v.name for v in campaign.variables]
    header = ["index", "kind", "status", "reason", *names, *RESULTS]
    header += ["absorbance", "start_s", "end_s", "line_time_s", "reagent_ml", "run_id"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for e in experiments:
            res = e.get("results") or {}
            row = [e["index"], e["kind"], e["status"], e["reason"]]
            row += [e["condition"].get(n) for n in names]
            row += [res.get(n) for n in RESULTS]
            row += [e.get(k) for k in ("absorbance", "start_s", "end_s", "line_time_s")]
            row += [e.get("reagent_ml"), e.get("run_id")]
            w.writerow(["" if v is None else v for v in row])
    return path


def plot_response(experiments: list[dict], campaign, path: Path) -> Path:
    variables = [v.name for v in campaign.variables]
    objectives = [o.name for o in campaign.objectives]
    fig, axes = plt.subplots(
        len(objectives),
        len(variables),
        figsize=(4.2 * len(variables), 3.3 * len(objectives)),
        squeeze=False,
    )
    for i, obj in enumerate(objectives):
        ok = [e for e in experiments if e["status"] == "ok" and obj in e["results"]]
        floor = min((e["results"][obj] for e in ok), default=0.0)
        for j, var in enumerate(variables):
            ax = axes[i][j]
            for kind, marker, label in (
                ("design", "o", "measured"),
                ("replicate", "D", "replicate"),
            ):
                pts = [(e["condition"][var], e["results"][obj]) for e in ok if e["kind"] == kind]
                if pts:
                    ax.scatter(*zip(*pts, strict=True), marker=marker, s=28, label=label)
            for status, color, marker in (("failed", "red", "x"), ("infeasible", "grey", "|")):
                xs = [e["condition"][var] for e in experiments if e["status"] == status]
                if xs:
                    ax.scatter(xs, [floor] * len(xs), c=color, marker=marker, s=60, label=status)
            ax.set_xlabel(LABELS.get(var, var))
            ax.set_ylabel(LABELS.get(obj, obj))
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"campaign {campaign.name}: response against each variable")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto_front(points: list[tuple[float, float]], directions: tuple[str, str]) -> list[int]:
    """Indices of the non-dominated points (``directions``: max/min per coordinate)."""
    sign = [1.0 if d == "max" else -1.0 for d in directions]
    scored = [(p[0] * sign[0], p[1] * sign[1]) for p in points]
    front = []
    for i, (a, b) in enumerate(scored):
        dominated = any(
            (c >= a and d >= b) and (c > a or d > b) for k, (c, d) in enumerate(scored) if k != i
        )
        if not dominated:
            front.append(i)
    return front


def plot_pareto(experiments: list[dict], campaign, path: Path) -> Path:
    o1, o2 = campaign.objectives[0], campaign.objectives[1]
    ok = [e for e in experiments if e["status"] == "ok"]
    pts = [(e["results"][o1.name], e["results"][o2.name]) for e in ok]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    if pts:
        ax.scatter(*zip(*pts, strict=True), s=28, label="experiments")
        front = sorted(pts[i] for i in pareto_front(pts, (o1.direction, o2.direction)))
        ax.plot(*zip(*front, strict=True), "r.-", label="Pareto front")
    ax.set_xlabel(f"{LABELS.get(o1.name, o1.name)} ({o1.direction})")
    ax.set_ylabel(f"{LABELS.get(o2.name, o2.name)} ({o2.direction})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"campaign {campaign.name}: Pareto front")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ranked_conditions(experiments: list[dict], campaign, top: int = 5) -> list[dict]:
    """The ``top`` conditions by their mean first objective (best_condition, repeatedly)."""
    left = [e for e in experiments if e["status"] == "ok"]
    out = []
    while left and len(out) < top:
        best = best_condition(left, campaign)
        out.append(best)
        left = [e for e in left if e["index"] not in best["experiments"]]
    return out


def plot_best(experiments: list[dict], campaign, path: Path) -> Path:
    obj = campaign.objectives[0].name
    ranked = ranked_conditions(experiments, campaign)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for i, b in enumerate(ranked):
        mean, lo, hi = b["mean"][obj], b["min"][obj], b["max"][obj]
        ax.bar(i, mean, color="tab:blue" if i == 0 else "tab:gray")
        ax.errorbar(i, mean, yerr=[[mean - lo], [hi - mean]], color="black", capsize=5)
        ax.text(i, hi, f"n={b['n']}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(ranked)))
    ax.set_xticklabels(
        [
            "\n".join(f"{SHORT.get(k, k)} {v:.3g}" for k, v in b["condition"].items())
            for b in ranked
        ],
        fontsize=8,
    )
    ax.set_ylabel(LABELS.get(obj, obj))
    ax.set_title(f"campaign {campaign.name}: best conditions (bars: min..max of replicates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _html(cid, campaign, experiments, sessions, check, paths, out_dir: Path) -> Path:
    names = [v.name for v in campaign.variables]
    ranked = ranked_conditions(experiments, campaign)
    best_rows = [
        [*(b["condition"][n] for n in names), b["n"]]
        + [
            f"{b['mean'][o.name]:.4g} ({b['min'][o.name]:.4g}..{b['max'][o.name]:.4g})"
            for o in campaign.objectives
        ]
        for b in ranked
    ]
    exp_rows = [
        [e["index"], e["kind"], e["status"], *(e["condition"].get(n) for n in names)]
        + [(e.get("results") or {}).get(o.name) for o in campaign.objectives]
        + [e.get("line_time_s"), e.get("reagent_ml"), e["reason"]]
        for e in experiments
    ]
    imgs = "".join(
        f'<p><img src="{p.name}" alt="{p.stem}"></p>' for p in paths if p.suffix == ".png"
    )
    objs = [o.name for o in campaign.objectives]
    text = f"""<!doctype html><html><head><meta charset="utf-8">
<title>campaign {html.escape(cid)}</title><style>
body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} img{{max-width:100%}}</style></head><body>
<h1>Campaign {html.escape(campaign.name)}</h1>
<p>id {html.escape(cid)}; strategy {campaign.strategy}, seed {campaign.seed};
sessions (runs): {html.escape(", ".join(s["run_id"] for s in sessions) or "none")};
record {"verified: the hash chain holds" if check.ok else "NOT verified: " + html.escape(check.reason)}.</p>
<h2>Best conditions (mean, min..max over replicates)</h2>
{_table(best_rows, [*names, "n", *objs])}
{imgs}
<h2>Experiments</h2>
{_table(exp_rows, ["#", "kind", "status", *names, *objs, "line time s", "reagent mL", "reason"])}
<p>CSV: <a href="experiments.csv">experiments.csv</a> (columns: docs/campaigns.md).</p>
</body></html>"""
    path = out_dir / "index.html"
    path.write_text(text)
    return path
