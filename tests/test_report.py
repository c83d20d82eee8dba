"""The HTML run report: self-contained, plots grouped by unit with phases, trips and gaps
marked, long series decimated with their extremes kept; and ``skid report``."""

from __future__ import annotations

import re
import sqlite3
import xml.etree.ElementTree as ET

from host.cli import main
from host.record import RunRecord
from host.report import decimate, guess_unit, write_report
from tests.test_record import T0, make_run

SVG_NS = "{http://www.w3.org/2000/svg}"


def _svgs(text: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg xmlns=.*?</svg>", text, flags=re.S)]


def _title(svg: ET.Element) -> str:
    return "".join(svg.find(f"{SVG_NS}text").itertext())


def test_report_is_self_contained_html_with_plots_phases_trip_and_gap(tmp_path):
    rec = make_run(tmp_path)
    rec.close()
    path = write_report(rec.path, tmp_path / "html")
    assert path == tmp_path / "html" / f"{rec.run_id}.html"
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text and "<script" not in text  # no network assets, no scripts

    svgs = _svgs(text)
    titles = [_title(s) for s in svgs]
    assert titles == ["Temperatures (degC)", "Pressures (bar)"]
    temps = svgs[0]
    labels = ["".join(t.itertext()) for t in temps.iter(f"{SVG_NS}text")]
    for phase in ("prime", "heat", "shutdown"):
        assert phase in labels  # every phase band is named
    assert "TRIP reactor1: over_temperature" in labels
    assert "alarm reactor1: high_temperature" in labels
    # the note about the same trip does not draw a second line
    assert sum(label.startswith("TRIP") for label in labels) == 1
    assert len([r for r in temps.iter(f"{SVG_NS}rect") if r.get("class") == "gap"]) == 1
    assert len([r for r in temps.iter(f"{SVG_NS}rect") if r.get("class") == "phase"]) == 3
    polylines = list(temps.iter(f"{SVG_NS}polyline"))
    assert polylines and all(p.get("points") for p in polylines)
    # the pressure line is broken where the host was down, not drawn across the gap
    assert len(list(svgs[1].iter(f"{SVG_NS}polyline"))) == 2

    # metadata and tables
    for needle in (rec.run_id, "B-042", "L7", "aborted", "11" * 32, "sampling port check"):
        assert needle in text
    assert "Record intact" in text
    assert "not_allowed_in_state" in text  # the refused command is listed


def test_report_flags_a_tampered_record(tmp_path):
    rec = make_run(tmp_path)
    rec.close()
    conn = sqlite3.connect(str(rec.path), isolation_level=None)
    conn.execute("UPDATE samples SET value = 0 WHERE id = 1")
    text = write_report(rec.path, tmp_path).read_text()
    assert "Record TAMPERED OR DAMAGED" in text


def test_report_of_a_long_run_stays_small_and_keeps_the_spike(tmp_path):
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
    n = 20_000  # ~33 simulated minutes at 10 Hz
    for i in range(n):
        temp = 500.0 if i == 12_345 else 80.0 + (i % 7) * 0.01
        rec.add_sample(i * 100, "reactor1", i * 100, i % 256, {"temperature": temp}, {})
        if i % 5000 == 4999:
            rec.flush()
    rec.add_phase(0, "heat", None, "")
    rec.finish(n * 100, "completed", {})
    rec.close()
    text = write_report(rec.path).read_text()
    (svg,) = _svgs(text)
    assert _title(svg) == "Temperatures (degC)"  # unit guessed from the channel name
    points = sum(len(p.get("points").split()) for p in svg.iter(f"{SVG_NS}polyline"))
    assert 500 <= points <= 1000
    # the single 500 degC spike sets the top of the y axis
    ticks = [
        float("".join(t.itertext()))
        for t in svg.iter(f"{SVG_NS}text")
        if t.get("text-anchor") == "end" and re.fullmatch(r"[-\d.e]+", "".join(t.itertext()))
    ]
    assert max(ticks) >= 500
    assert len(text) < 200_000


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


def test_cli_report_prints_the_path_and_exit_codes(tmp_path, capsys):
    rec = make_run(tmp_path, restart=False)
    rec.close()
    out = tmp_path / "r"
    assert main(["report", rec.run_id[:12], "--runs-dir", str(tmp_path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == str(out / f"{rec.run_id}.html")
    assert "<svg" in (out / f"{rec.run_id}.html").read_text()
    assert main(["report", "absent", "--runs-dir", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert T0 > 0
