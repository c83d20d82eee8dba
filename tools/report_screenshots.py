"""Screenshots of the run report for docs/run-record.md (docs/img/report-*.png).

Runs two emulated demo runs in process: the normal demo, and one where an operator holds,
resumes and changes a setpoint by hand before a clog trips the line.  Writes each run's
report (HTML and PDF), then photographs the HTML in headless Chromium (Playwright, the
Debian ``chromium``: no browser download) and the PDF's pages with ``pdftoppm``.

    .venv/bin/python -m tools.report_screenshots [OUT_DIR]     # default docs/img

A run made before ``skid run`` stored its plan has no ``plan`` note: the report then
cannot show the planned conditions, so this tool stores one (as ``skid run`` does) when
the run has none.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from emulator.faults import line_targets, parse_fault_option
from host.dryrun import run_in_process
from host.recipe import load_recipe, plan_recipe
from host.report import write_report
from line.loader import load_line

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
RECIPE = ROOT / "examples" / "recipes" / "demo.toml"
CHROMIUM = "/usr/bin/chromium"


def plan_data(line, recipe) -> dict:
    """The conditions and reagents part of ``skid plan --json`` (host/plan.py's format)."""
    rp = plan_recipe(recipe, line)
    cond = recipe.conditions
    least = min(recipe.reagents.values(), key=lambda r: r.equivalents).name
    return {
        "conditions": {
            "reactor": rp.reactor,
            "reactor_volume_ml": rp.reactor_volume_ml,
            "residence_time_s": rp.residence_time_s,
            "total_flow_ml_min": rp.total_flow_ml_min,
            "temperature_c": cond.temperature_c,
            "pressure_bar": cond.pressure_bar,
        },
        "reagents": [
            {
                "name": r.name,
                "pump": r.pump,
                "concentration_mol_l": r.concentration_mol_l,
                "equivalents": r.equivalents,
                "flow_ml_min": rp.flows[r.name],
                "coil_concentration_mol_l": rp.mix_concentration_mol_l[r.name],
                "limiting": r.name == least,
            }
            for r in recipe.reagents.values()
        ],
        "pump_flows_ml_min": dict(rp.pump_flows),
    }


def _script(plan: dict, actions: list[tuple[float, str, dict]]):
    """An on_tick hook: store the plan if the run has none, then the operator's actions
    at their times (seconds since the start)."""
    todo = sorted(actions, key=lambda a: a[0])
    state = {"plan": False}

    def on_tick(coord, _plant):
        if not state["plan"]:
            state["plan"] = True
            if not any(n["kind"] == "plan" for n in coord.record.notes()):
                coord.record.add_note(coord.host_ms(), "plan", "the run's plan", plan)
        t = (coord.now_ms - coord.started_ms) / 1000.0
        while todo and todo[0][0] <= t:
            _, action, args = todo.pop(0)
            coord.request(action, "alice", args.pop("reason"), **args)

    return on_tick


def make_runs(runs: Path) -> list[Path]:
    line = load_line(LINE)
    plan = plan_data(line, load_recipe(RECIPE))
    normal = run_in_process(LINE, RECIPE, runs_dir=runs, on_tick=_script(plan, []))
    actions = [
        (300.0, "hold", {"reason": "sampling port check"}),
        (330.0, "resume", {"reason": "sample taken"}),
        (400.0, "manual", {"reason": "trim the acyl chloride feed"}),
        (
            405.0,
            "set",
            {"module": "pump_b", "channel": "flow", "value": 5.6, "reason": "more acyl chloride"},
        ),
        (430.0, "auto", {"reason": "back to the recipe"}),
    ]
    faulty = run_in_process(
        LINE,
        RECIPE,
        runs_dir=runs,
        faults=[parse_fault_option("clog:reactor1@600,rate=0.05", *line_targets(line))],
        on_tick=_script(plan, actions),
    )
    return [Path(normal.record), Path(faulty.record)]


def shoot_html(html: Path, png: Path, height: int | None = None, heading: str = "") -> None:
    """The page from its top (or from the <h2> ``heading``), ``height`` pixels of it (None:
    all of it)."""
    from playwright.sync_api import sync_playwright  # test/dev dependency only

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1150, "height": 900})
        page.goto(html.as_uri())
        if height is None:
            page.screenshot(path=str(png), full_page=True)
        else:
            top = 0.0
            if heading:
                box = page.locator("h2", has_text=heading).first.bounding_box()
                top = box["y"] if box else 0.0
            clip = {"x": 0, "y": top, "width": 1150, "height": height}
            page.screenshot(path=str(png), full_page=True, clip=clip)
        browser.close()


def shoot_pdf(pdf: Path, prefix: Path, pages: str = "1-3") -> list[Path]:
    first, last = pages.split("-")
    subprocess.run(
        ["pdftoppm", "-r", "70", "-png", "-f", first, "-l", last, str(pdf), str(prefix)],
        check=True,
    )
    return sorted(prefix.parent.glob(prefix.name + "-*.png"))


def main(argv: list[str]) -> int:
    """``[OUT_DIR [WORK_DIR]]``: WORK_DIR keeps the runs, reports and full-page shots."""
    out = Path(argv[0]) if argv else ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(argv[1]) if len(argv) > 1 else Path(tmp)
        runs.mkdir(parents=True, exist_ok=True)
        for name, record in zip(("normal", "aborted"), make_runs(runs), strict=True):
            html = write_report(record, runs / name)
            shoot_html(html, out / f"report-{name}-top.png", height=1400)
            shoot_html(html, out / f"report-{name}-plots.png", 1700, heading="Plots")
            shoot_html(html, runs / f"{name}-full.png")
            pages = runs / f"{name}-pages"
            pages.mkdir()
            for i, page in enumerate(shoot_pdf(html.with_suffix(".pdf"), pages / "p"), 1):
                shutil.copy(page, out / f"report-{name}-pdf-{i}.png")
            print(html, "->", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
