"""The run report: self-contained HTML (matplotlib SVG) and a PDF beside it; the outcome,
conditions, volumes, deviations, signatures and collection-window statistics at the top;
marks (trips, alarms, holds, manual changes, aborts, deviations) on every plot; on/off
signals as steps; the analyzer on its own plot; events and commands in words; and
``skid report``."""

from __future__ import annotations

import math
import re
import sqlite3
import xml.etree.ElementTree as ET

from host.cli import main
from host.record import RunRecord
from host.report import build_report, signature_rows, write_report
from host.report_data import (
    command_text,
    decimate,
    event_text,
    guess_unit,
    load,
    plot_groups,
    round_numbers,
    window_stats,
)
from host.report_plots import _broken, _rows, _Time, paginate
from tests.test_record import T0, make_run

SVG_NS = "{http://www.w3.org/2000/svg}"

PLAN = {
    "conditions": {
        "reactor": "reactor1",
        "reactor_volume_ml": 10.0,
        "residence_time_s": 60.0,
        "total_flow_ml_min": 10.0,
        "temperature_c": 80.0,
        "pressure_bar": 5.0,
    },
    "reagents": [
        {
            "name": "amine",
            "pump": "pump_a",
            "concentration_mol_l": 1.0,
            "equivalents": 1.0,
            "flow_ml_min": 4.545454545454545,
            "coil_concentration_mol_l": 0.45454545,
            "limiting": True,
        },
        {
            "name": "acyl",
            "pump": "pump_b",
            "concentration_mol_l": 1.0,
            "equivalents": 1.2,
            "flow_ml_min": 5.454545454545454,
            "coil_concentration_mol_l": 0.54545454,
            "limiting": False,
        },
    ],
}


def _figures(text: str) -> dict[str, ET.Element]:
    """aria-label -> the figure's parsed <svg>."""
    out = {}
    for label, body in re.findall(r'<figure aria-label="([^"]*)">(.*?)</figure>', text, re.S):
        out[label] = ET.fromstring(body)
    return out


def _texts(svg: ET.Element) -> list[str]:
    return ["".join(t.itertext()).strip() for t in svg.iter(f"{SVG_NS}text")]


def _section(text: str, heading: str) -> str:
    start = text.index(f"<h2>{heading}</h2>")
    end = text.find("<h2>", start + 4)
    return text[start : end if end > 0 else None]


def test_report_is_self_contained_html_and_pdf_with_plots_marks_and_tables(tmp_path):
    rec = make_run(tmp_path)
    rec.close()
    path = write_report(rec.path, tmp_path / "html")
    assert path == tmp_path / "html" / f"{rec.run_id}.html"
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # no scripts and nothing fetched: no src/href to anywhere, no <link>, no url(...)
    assert "<script" not in text and "<link" not in text and "url(http" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)

    figs = _figures(text)
    assert list(figs) == ["Phases and marks", "Temperatures", "Pressures"]
    timeline = _texts(figs["Phases and marks"])
    for phase in ("prime", "heat", "shutdown"):
        assert phase in timeline  # every phase named
    # the marks: the alarm, the hold, the trip (the coordinator's note about the same trip
    # is not a second mark) and the shutdown, numbered 1-4 on every plot
    marks = _section(text, "Deviations")
    assert "alarm reactor1: high_temperature" in marks
    assert "hold by ada: sampling port check" in marks
    assert marks.count("trip reactor1") == 1
    assert "shutdown sequence" in marks  # the sequencer's own abort
    for svg in figs.values():
        assert {"1", "2", "3", "4"} <= set(_texts(svg))
    assert "Temperatures (degC)" in _texts(figs["Temperatures"])

    # the outcome and its reason come first; the hashes come later, under "Record"
    assert text.index("ABORTED") < text.index("<h2>Conditions</h2>") < text.index("11" * 32)
    for needle in (rec.run_id, "B-042", "L7", "sampling port check"):
        assert needle in text
    assert "Record intact" in text
    commands = _section(text, "Commands (recipe and coordinator)")
    assert "pump_a.flow = 0.5" in commands and "reactor1: start" in commands
    assert "not_allowed_in_state: no lease" in commands  # the refused command, in red
    assert re.search(r'<tr class="bad">(<td[^>]*>[^<]*</td>){2}<td>reactor1: start', commands)
    assert not re.search(r'<tr class="bad">(<td[^>]*>[^<]*</td>){2}<td>pump_a.flow', commands)
    assert "Not signed." in text

    pdf = path.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type /Page\b", pdf)) >= 3


def test_report_flags_a_tampered_record(tmp_path):
    rec = make_run(tmp_path)
    rec.close()
    conn = sqlite3.connect(str(rec.path), isolation_level=None)
    conn.execute("UPDATE samples SET value = 0 WHERE id = 1")
    text = write_report(rec.path, tmp_path).read_text()
    assert "Record TAMPERED OR DAMAGED" in text


def test_the_lines_break_at_gaps_and_bad_values(tmp_path):
    rec = make_run(tmp_path)
    data = load(rec)
    rec.close()
    (pressure,) = [s for s in data.series if s.key == ("reactor1", "pressure")]
    xs, ys = _broken(pressure.points, data.gaps, _Time(data.t_end))
    assert data.gaps and sum(math.isnan(y) for y in ys) == 1  # broken once, at the gap
    (temp,) = [s for s in data.series if s.key == ("reactor1", "temperature")]
    _, ys = _broken(temp.points, [], _Time(data.t_end))
    assert any(math.isnan(y) for y in ys)  # the bad sample


def _long_run(tmp_path, n=20_000):
    rec = RunRecord.create(
        tmp_path,
        "long",
        line_hash="x",
        recipe_name=None,
        recipe_hash=None,
        config_hashes={},
        metadata={},
        now_ms=0,
    )
    for i in range(n):
        temp = 500.0 if i == 12_345 else 80.0 + (i % 7) * 0.01
        rec.add_sample(i * 100, "reactor1", i * 100, i % 256, {"temperature": temp}, {})
        if i % 5000 == 4999:
            rec.flush()
    rec.add_phase(0, "heat", None, "")
    rec.finish(n * 100, "completed", {})
    rec.close()
    return rec


def test_report_of_a_long_run_stays_small_and_keeps_the_spike(tmp_path):
    rec = _long_run(tmp_path)
    text = write_report(rec.path).read_text()
    figs = _figures(text)
    assert list(figs) == ["Phases and marks", "Temperatures"]  # unit guessed from the name
    ticks = [float(t) for t in _texts(figs["Temperatures"]) if re.fullmatch(r"-?\d+(\.\d+)?", t)]
    assert max(ticks) >= 500  # the single 500 degC spike sets the top of the y axis
    assert len(text) < 400_000
    r = RunRecord.open(rec.path, readonly=True)
    try:
        (series,) = load(r).series
    finally:
        r.close()
    assert 500 <= len(series.points) <= 1000 and len(series.raw) == 20_000


def test_decimate_keeps_minimum_maximum_and_breaks():
    points = [(float(i), float(i % 10)) for i in range(5000)]
    points[2500] = (2500.0, -40.0)
    points[3000] = (3000.0, None)
    out = decimate(points, 1000)
    assert len(out) <= 1002
    values = [v for _, v in out if v is not None]
    assert min(values) == -40.0 and max(values) == 9.0
    assert any(v is None for _, v in out)
    times = [t for t, _ in out]
    assert times == sorted(times)
    assert decimate(points[:10], 1000) == points[:10]


def test_guess_unit_for_channels_without_a_birth():
    assert guess_unit("temp_a") == "degC"
    assert guess_unit("pressure") == "bar"
    assert guess_unit("flow") == "mL/min"
    assert guess_unit("uv") == ""


def test_events_and_commands_show_channel_names_and_rounded_values():
    order = {"pump_a": ["flow", "pressure"], "uv1": ["uv", "lamp_monitor", "lamp"]}
    units = {("pump_a", "flow"): "mL/min", ("uv1", "lamp"): "1"}
    e = {"module": "pump_a", "detail": "set_setpoint channel=0 value=4.545454545454545"}
    assert event_text(e, order, units) == "set_setpoint pump_a.flow = 4.545 mL/min"
    e = {"module": "uv1", "detail": "set_setpoint channel=2 value=1.0"}
    assert event_text(e, order, units) == "set_setpoint uv1.lamp = 1"  # no unit "1"
    c = {"module": "pump_a", "op": "set_setpoint", "args": {"channel": "flow", "value": 5.4545}}
    assert command_text(c, order, units) == "pump_a.flow = 5.455 mL/min"
    c = {"module": "pump_a", "op": "set_setpoint", "args": {"channel": 1, "value": 2.0}}
    assert command_text(c, order, units) == "pump_a.pressure = 2"
    c = {"module": "uv1", "op": "ack_alarm", "args": {"target": "uv_bad"}}
    assert command_text(c, order, units) == "uv1: ack_alarm target=uv_bad"
    assert round_numbers("value 0.79812345 at 12.5 s") == "value 0.7981 at 12.5 s"


def _analyzer_run(tmp_path, plan=True):
    """A run with an analyzer (AU), a lamp (on/off), a pump, a plan, a collection
    segment, a hold and resume, a manual change and an excursion."""
    rec = RunRecord.create(
        tmp_path,
        "demo",
        line_hash="x",
        recipe_name="demo-amide",
        recipe_hash="y",
        config_hashes={},
        metadata={"operator": "ada"},
        now_ms=T0,
    )
    chans = [
        {"name": "uv", "unit": "AU", "role": "sensor"},
        {"name": "lamp", "unit": "1", "role": "actuator"},
    ]
    rec.add_channels(T0, "uv1", "analyzer", chans)
    rec.add_channels(T0, "pump_a", "pump", [{"name": "flow", "unit": "mL/min", "role": "actuator"}])
    rec.add_note(T0, "recipe", "recipe demo-amide starts", {"t_s": 0.0})
    if plan:
        rec.add_note(T0, "plan", "the plan", PLAN)
    rec.add_phase(T0, "collect", None, "phase collect")
    for i in range(100):  # 10 s at 10 Hz; the lamp off for the last second
        values = {"uv": 0.8 + (0.01 if i % 2 else -0.01), "lamp": 1.0 if i < 90 else 0.0}
        rec.add_sample(T0 + i * 100, "uv1", i * 100, i, values, {})
        rec.add_sample(T0 + i * 100, "pump_a", i * 100, i, {"flow": 4.545454545}, {})
    rec.add_operator_action(T0 + 2000, "ada", "hold: accepted: recipe held", "sampling")
    rec.add_operator_action(T0 + 3000, "ada", "resume: accepted: recipe running", "done")
    rec.add_operator_action(T0 + 4000, "ada", "set pump_a.flow = 5.0: accepted: sent", "trim")
    rec.add_command(T0 + 4000, "pump_a", 7, "set_setpoint", {"channel": "flow", "value": 5.0})
    summary = {
        "reason": "every phase done",
        "collected_in_spec_ml": 0.6,
        "collected_off_spec_ml": 0.0,
        "diverted_ml": 0.1,
        "segments": [
            {"start_s": 1.0, "end_s": 8.0, "volume_ml": 0.6, "status": "in_spec", "why": ""},
            {"start_s": 8.0, "end_s": 9.0, "volume_ml": 0.1, "status": "diverted", "why": "x"},
        ],
        "excursions": [
            {
                "signal": "uv1.uv",
                "limit": "uv1.uv within 0.05 of 0.8",
                "start_s": 8.0,
                "detected_s": 8.2,
                "end_s": 8.9,
                "worst": 0.9,
                "off_spec_from_s": None,
                "off_spec_to_s": None,
            }
        ],
    }
    for seg in summary["segments"]:
        seg["estimate"] = True
    rec.finish(T0 + 10_000, "completed_with_deviations", summary)
    return rec


def test_analyzer_on_its_own_plot_and_switches_as_steps(tmp_path):
    rec = _analyzer_run(tmp_path)
    data = load(rec)
    groups = {title: [s.name for s in series] for title, _u, series in plot_groups(data.series)}
    assert groups == {
        "Flows": ["pump_a.flow"],
        "Analyzer absorbance": ["uv1.uv"],
        "On/off signals": ["uv1.lamp"],
    }
    text = build_report(rec)
    rec.close()
    figs = _figures(text)
    assert list(figs) == [
        "Phases and marks",
        "Flows",
        "Analyzer absorbance",
        "On/off signals",
    ]
    assert "uv1 lamp (output)" in _texts(figs["On/off signals"])  # its lane's name
    assert "uv1 uv" in _texts(figs["Analyzer absorbance"])  # the legend: readable name


def test_the_top_shows_conditions_volumes_deviations_and_window_statistics(tmp_path):
    rec = _analyzer_run(tmp_path)
    text = build_report(rec)
    data = load(rec)
    rec.close()
    top = text[: text.index("<h2>Plots</h2>")]
    assert "COMPLETED WITH DEVIATIONS</b>: every phase done" in top
    conditions = _section(top, "Conditions")
    for needle in ("60 s", "80 degC", "5 bar", "10 mL/min", "4.545 mL/min", "1.2 equiv"):
        assert needle in conditions
    assert "(limiting)" in conditions and "0.4545 M" in conditions
    assert "4.545 ± 0 mL/min (commanded)" in conditions  # measured in the window
    assert "collected in spec" in top and "0.6 mL" in top and "diverted" in top
    marks = _section(top, "Deviations")
    assert "deviation: uv1.uv within 0.05 of 0.8" in marks
    assert "hold by ada: sampling" in marks and "set by ada: trim" in marks
    # the statistics cover the collection window only (1-8 s after the recipe's start)
    assert data.windows == [(1.0, 8.0)]
    (uv,) = [r for r in window_stats(data) if r[0] == "uv1.uv"]
    assert uv[6] == 71 and abs(uv[2] - 0.8) < 1e-3 and 0.009 < uv[3] < 0.011
    stats = _section(top, "Collection-window statistics")
    assert "0.7999 ± 0.01" in stats and "pump_a.flow (commanded)" in stats
    # hold: a span from hold to resume; the manual change a line
    (hold,) = [m for m in data.marks if m.kind == "hold"]
    assert (hold.t, hold.end) == (2.0, 3.0)
    assert [m.kind for m in data.marks] == ["hold", "manual", "deviation"]
    # the manual change's command is the operator's, not the recipe's
    commands = _section(text, "Commands (recipe and coordinator)")
    assert "operator ada" in commands and "pump_a.flow = 5 mL/min" in commands


def test_without_a_stored_plan_the_report_says_so(tmp_path):
    rec = _analyzer_run(tmp_path, plan=False)
    text = build_report(rec)
    rec.close()
    assert "No plan is stored with this run" in _section(text, "Conditions")


def test_signatures_section_is_ready_for_signing(tmp_path):
    rec = _analyzer_run(tmp_path)
    assert signature_rows(rec) == []  # nothing signs runs yet (issue 15 item 4)
    rec.close()


def test_labels_in_a_row_never_overlap():
    items = [(1.0, 0.8), (1.2, 0.5), (1.5, 0.4), (3.0, 0.5), (1.1, 0.3)]
    rows = _rows(items)
    placed: dict[int, list] = {}
    for (centre, width), row in zip(items, rows, strict=True):
        for c, w in placed.get(row, []):
            assert abs(centre - c) >= (width + w) / 2
        placed.setdefault(row, []).append((centre, width))
    assert rows[0] == 0 and rows[3] == 0  # far apart: same row


def test_pdf_tables_are_split_over_pages():
    blocks = [("Events", ["t"], [[str(i)] for i in range(130)]), ("Notes", ["t"], [["x"]])]
    pages = paginate(blocks, rows_per_page=50)
    rows = [r for page in pages for _h, _hd, part in page for r in part]
    assert len(rows) == 131 and len(pages) == 3
    for page in pages:
        assert sum(len(part) + 3 for _h, _hd, part in page) <= 50
    assert pages[1][0][0] == "Events (continued)"


def test_cli_report_prints_the_path_and_exit_codes(tmp_path, capsys):
    rec = make_run(tmp_path, restart=False)
    rec.close()
    out = tmp_path / "r"
    assert main(["report", rec.run_id[:12], "--runs-dir", str(tmp_path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == str(out / f"{rec.run_id}.html")
    assert "<svg" in (out / f"{rec.run_id}.html").read_text()
    assert (out / f"{rec.run_id}.pdf").exists()
    assert main(["report", "absent", "--runs-dir", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
