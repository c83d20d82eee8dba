"""Acceptance: every emulator fault that changes what reaches the collector is diverted
or stops the run, on the demo line with its reference recipe (whose collect phase has a
quality specification; no pump has a flow sensor).  Each fault runs once (module-scoped
cache) and several tests read its summary.

Bounds (docs/safety.md, "What reaches the collector"): an excursion is detected within
60 s of the fault (a stopped or leaking feed without a flow sensor included), the outlet
goes to waste at once, and what reached the collector before the valve turned is booked
off spec, never in spec.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from emulator.faults import line_targets, parse_fault_option
from host.dryrun import run_in_process
from host.quality import Ledger, QualityMonitor
from host.recipe import load_recipe
from host.record import RunRecord
from line.loader import load_line

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
RECIPE = ROOT / "examples" / "recipes" / "demo.toml"
FAULT_AT_S = 400.0  # collecting since ~243 s at steady state
DETECT_BOUND_S = 60.0

FAULTS = {
    "pump-stops": "pump-stall:pump_a@400",
    "feed-leak": "leak:tube_a@400,conductance_ml_min_bar=0.5",
    "temperature-excursion": "heater-open:reactor1@400+40",
    "partial-clog": "clog:reactor1@400,rate=0.05,min_open=0.4",
    "analyzer-drift": "sensor-drift:uv1.uv@400,rate=0.002",
}


@functools.cache
def _run(name: str, runs_dir: Path):
    modules, channels = line_targets(load_line(LINE))
    faults = [parse_fault_option(FAULTS[name], modules, channels)] if name in FAULTS else []
    return run_in_process(LINE, RECIPE, runs_dir=runs_dir, faults=faults, seed=0)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("quality-runs")


def test_the_demo_without_a_fault_completes_in_spec(runs_dir):
    s = _run("none", runs_dir)
    assert s.outcome == "completed"
    d = s.as_dict()
    assert d["diverted_ml"] == 0.0 and d["collected_off_spec_ml"] == 0.0
    assert d["collected_in_spec_ml"] == pytest.approx(100.0, abs=0.5)
    assert [seg["status"] for seg in d["segments"]] == ["in_spec"]
    assert d["segments"][0]["estimate"] is True  # the demo pumps have no flow sensor
    assert d["excursions"] == []


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_a_fault_that_changes_the_product_is_diverted_or_stops_the_run(name, runs_dir):
    d = _run(name, runs_dir).as_dict()
    assert d["outcome"] in ("completed_with_deviations", "aborted"), d["reason"]
    exc = d["excursions"]
    assert exc, "no excursion seen"
    first = min(e["detected_s"] for e in exc)
    fault_s = FAULT_AT_S  # the emulator clock and the run clock start together (+- a tick)
    assert 0.0 <= first - fault_s <= DETECT_BOUND_S, (first, fault_s)
    statuses = [seg["status"] for seg in d["segments"]]
    assert "diverted" in statuses
    # Nothing after the fault is booked in spec until the excursions' windows closed.
    for seg in d["segments"]:
        if seg["status"] == "in_spec" and seg["end_s"] > first:
            ends = [e["off_spec_to_s"] for e in exc]
            assert all(t is not None and seg["start_s"] >= t for t in ends), (seg, exc)
    assert d["collected_in_spec_ml"] + d["collected_off_spec_ml"] + d["diverted_ml"] > 0
    assert d["diverted_ml"] > 0


def test_a_transient_excursion_resumes_collection_and_ends_with_deviations(runs_dir):
    s = _run("temperature-excursion", runs_dir)
    d = s.as_dict()
    assert d["outcome"] == "completed_with_deviations"
    statuses = [seg["status"] for seg in d["segments"]]
    assert statuses[0] == "in_spec" and statuses[-1] == "in_spec" and "diverted" in statuses
    assert d["collected_in_spec_ml"] == pytest.approx(100.0, abs=0.5)
    # The coil cools, then the product it makes: the UV follows the temperature out of
    # spec (reactor1's kinetics), and back in once the coil has reheated.
    exc = d["excursions"]
    assert exc[0]["signal"] == "reactor1.temperature"
    assert {e["signal"] for e in exc} <= {"reactor1.temperature", "uv1.uv"}
    resumed = [seg for seg in d["segments"] if seg["status"] == "in_spec"][-1]["start_s"]
    closed = max(e["off_spec_to_s"] for e in exc)
    assert resumed >= closed + 10.0  # resume_after_s after the last window closed


def test_a_persistent_excursion_stops_the_run_after_max_divert(runs_dir):
    d = _run("pump-stops", runs_dir).as_dict()
    assert d["outcome"] == "aborted"
    assert "diverted for 300 s" in d["reason"]


def test_the_record_holds_the_segments_and_the_report_lists_them(runs_dir):
    from host.report import write_report

    s = _run("partial-clog", runs_dir)
    rec = RunRecord.open(s.record, readonly=True)
    try:
        stored = rec.segments()
    finally:
        rec.close()
    assert stored == s.as_dict()["segments"]
    html = Path(write_report(s.record, runs_dir)).read_text()
    assert "Collected volume" in html and "diverted" in html and "pump_a.pressure" in html


def test_exit_code_4_for_a_run_with_deviations():
    from host.cli import EXIT_DEVIATIONS
    from host.commands.run import _finish

    class Args:
        json = False
        report = False

    class S:
        outcome = "completed_with_deviations"
        reason = ""
        trips: list = []
        record = "x"
        refused = False
        all_safe_at_end = True

    assert EXIT_DEVIATIONS == 4
    assert _finish(Args(), S(), "demo", lambda _t: None) == 4


# --- the monitor alone ---------------------------------------------------------------------


def test_the_diversion_window_is_the_excursion_shifted_by_the_transit_quantiles():
    line = load_line(LINE)
    recipe = load_recipe(RECIPE)
    spec = next(p.quality for p in recipe.phases if p.quality)
    flows = {"pump_a": 4.545, "pump_b": 5.455}
    mon = QualityMonitor(spec, line, flows, "reactor1", "valve1")
    values = {"reactor1.temperature": 80.0}

    def value_of(module, channel):
        return values.get(f"{module}.{channel}")

    mon.update(0, value_of)
    values["reactor1.temperature"] = 85.0
    assert mon.update(1000, value_of) == []  # for_s = 1 s: not yet
    (exc,) = mon.update(2000, value_of)
    assert exc.start_ms == 1000 and exc.off_from_ms == 1000 + mon.transits[0][0]
    assert mon.want_divert(2000) is not None
    values["reactor1.temperature"] = 80.5
    mon.update(5000, value_of)
    assert exc.off_to_ms == 5000 + mon.transits[0][1]
    assert mon.transits[0][1] > 60_000  # through the 10 mL coil at 10 mL/min, and more
    assert mon.want_divert(exc.off_to_ms) is not None  # plus resume_after_s
    assert mon.want_divert(exc.off_to_ms + 10_000) is None
    ledger = Ledger()
    edge = exc.off_from_ms  # the first off-spec material at the valve
    ledger.book(0, edge - 1, 1.0, True, True, "")
    ledger.book(edge - 1, edge + 500, 1.0, True, True, "")
    ledger.book(edge + 500, edge + 1500, 1.0, False, True, "")
    segs = ledger.segments(mon, 0)
    assert [s["status"] for s in segs] == ["in_spec", "off_spec", "diverted"]
