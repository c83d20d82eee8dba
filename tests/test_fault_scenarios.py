"""Every fault kind, as a plain scenario on the demo line with the real edge runtime of
each module: the detection bound in the scenario file must be met.

The worst detection time of each kind is what docs/safety.md quotes; run
``python -m tests.test_fault_scenarios`` to print them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from emulator.faults import line_targets, load_scenario
from emulator.line import load_line
from emulator.runs import check_expectations, detection_time, run_scenario

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
SCENARIOS = sorted((ROOT / "examples" / "scenarios").glob("*.toml"))


@functools.cache
def _scenario(path):
    modules, channels = line_targets(load_line(LINE))
    return load_scenario(path, modules, channels)


@functools.cache
def _run(path):
    """Each scenario runs once per session; several tests read its record."""
    return run_scenario(_scenario(path), LINE)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_fault_is_detected_within_its_bound(path):
    scenario = _scenario(path)
    assert scenario.faults and scenario.expectations, "a scenario must inject and expect"
    record = _run(path)
    failures = check_expectations(scenario, record)
    assert not failures, (failures, record.trips[:5], record.alarms[:5])


def test_every_fault_kind_has_a_scenario():
    from emulator.emulation import FAULT_KINDS

    kinds = {f.kind for p in SCENARIOS for f in _scenario(p).faults}
    assert kinds == set(FAULT_KINDS)


def test_no_scenario_lets_pressure_exceed_a_component_rating():
    from emulator.emulation import LineEmulation

    ratings = LineEmulation(LINE).plant.component_ratings()
    weakest = min(ratings.values())
    for path in SCENARIOS:
        record = _run(path)
        worst = max(v for k, v in record.peaks.items() if k.endswith(".pressure"))
        assert worst < weakest, (path.stem, worst, weakest)


def detection_table():
    rows = []
    for path in SCENARIOS:
        scenario = _scenario(path)
        record = _run(path)
        onset = record.first_fault_s or 0.0
        for exp in scenario.expectations:
            t = detection_time(exp, record)
            rows.append((path.stem, str(exp), None if t is None else round(t - onset, 1)))
    return rows


if __name__ == "__main__":
    for name, exp, t in detection_table():
        print(f"{name:18s} {t!s:>7s} s   {exp}")
