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
from emulator.runs import check_expectations, detection_time, run_scenario
from line.loader import load_line

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
SCENARIOS = sorted((ROOT / "examples" / "scenarios").glob("*.toml"))


@functools.cache
def _scenario(path):
    modules, channels = line_targets(load_line(LINE))
    return load_scenario(path, modules, channels)


@functools.cache
def _run(path):
    """Each scenario runs once per session (per worker: the tests that read every record
    are in one xdist group); several tests read its record."""
    return run_scenario(_scenario(path), LINE)


SCENARIO_RUNS = pytest.mark.xdist_group("fault-scenario-runs")


@SCENARIO_RUNS
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


@SCENARIO_RUNS
def test_no_scenario_lets_pressure_exceed_a_component_rating():
    from emulator.emulation import LineEmulation

    ratings = LineEmulation(LINE).plant.component_ratings()
    weakest = min(ratings.values())
    for path in SCENARIOS:
        record = _run(path)
        worst = max(v for k, v in record.peaks.items() if k.endswith(".pressure"))
        assert worst < weakest, (path.stem, worst, weakest)


# --- the recipe's shutdown keeps a hot coil liquid ----------------------------------------

RECIPE = ROOT / "examples" / "recipes" / "demo.toml"
HOT_C = 110.0  # the demo recipe run hotter: above the solvent's normal boiling point
HOT_AT_S = 420.0  # timed faults moved here: collecting, coil at HOT_C under 5 bar
# What the demo line still cannot satisfy (measured; each needs a change named here).
# Fixed since: the BPR's loop now closes as fast as the feeds stop (clog-reactor,
# dry-feed, broker-outage, leak-reactor), the cut-out latches and the temperature
# sequence raises the back pressure to 10 bar (heater-stuck-on).
NOT_BY_ORDER = {
    # The scenario's 100 W doubling every 10 K up to 1 kW needs no reagents: unbounded, the
    # coil passes 400 degC.  emulator/thermal.py now bounds the heat by the reagents it
    # consumes when the fault gives enthalpy_kj_mol (tests/test_emulator.py::
    # test_reaction_heat_is_bounded_by_the_reagents_it_consumes), but on the demo line
    # (250 J/K block, 1 M feeds) no bounded exotherm is a runaway the scenario's
    # detections could see: measured from 80 degC, at 0.5 + 0.5 mL/min 200 kJ/mol peaks at
    # 80.6 degC and even 1000 kJ/mol at 85.7; at the recipe's 10 mL/min 1000 kJ/mol peaks
    # at 96.5 degC (uncontrolled_heating only).  The fast-rise alarm (2 degC/s = 500 W) and
    # the over-temperature trip need the unbounded source.  Left for a decision: which
    # source this test and the detection test should use.
    "exotherm": "unbounded heat source; a bounded one on this line cannot run away",
}


@functools.cache
def _recipe_run(path, tmp_root):
    import dataclasses

    from host.dryrun import run_in_process
    from host.record import RunRecord

    text = RECIPE.read_text().replace("temperature_c = 80.0", f"temperature_c = {HOT_C}")
    text = text.replace('line_file = "../lines/demo.toml"', f'line_file = "{LINE}"')
    tmp_root.mkdir(parents=True, exist_ok=True)
    recipe = tmp_root / "demo-hot.toml"
    recipe.write_text(text)
    faults = _scenario(path).faults
    timed = [f.at_s for f in faults if f.at_s is not None]
    shift = HOT_AT_S - min(timed) if timed else 0.0
    faults = [
        dataclasses.replace(f, at_s=f.at_s + shift) if f.at_s is not None else f for f in faults
    ]
    summary = run_in_process(LINE, recipe, runs_dir=tmp_root, faults=faults, log=lambda _m: None)
    rec = RunRecord.open(summary.record, readonly=True)
    try:
        temps = coil_temperatures(
            [r for r in rec.samples("reactor1") if r["channel"] in COIL_CHANNELS]
        )
        pressures = [(r["host_ms"], r["value"]) for r in rec.samples("bpr1", "pressure")]
        reactions = [
            (e["data"]["data"].get("t_s"), e["data"]["data"].get("cause"))
            for e in rec.entries("note")
            if e["data"].get("kind") == "reaction" and e["data"]["data"].get("cause")
        ]
    finally:
        rec.close()
    return temps, pressures, reactions


COIL_CHANNELS = ("temperature", "temp_a", "temp_b")  # the 1oo2 vote and its two probes


def coil_temperatures(samples):
    """[(t_ms, degC)]: the worst case the record allows for the coil's temperature at
    each sample time, from samples of the voted channel and its probes (dicts with
    host_ms, channel, value, quality, in time order).

    A BAD sample is not a reading: its value (often the frozen last one) says nothing
    about the coil, so its channel is unknown until it reads again.  At each time the
    coil is taken at the highest reading of any channel whose latest sample is not BAD
    (good or uncertain: a probe still reading); when none is, at its last such value
    (the coil is assumed still as hot as it was last seen, never cooler)."""
    latest: dict[str, float | None] = {}  # channel -> reading now (None: BAD)
    out: list[tuple[int, float]] = []
    for r in samples:
        latest[r["channel"]] = None if r["quality"] == "bad" else r["value"]
        known = [v for v in latest.values() if v is not None]
        if known:
            out.append((r["host_ms"], max(known)))
        elif out:
            out.append((r["host_ms"], out[-1][1]))
    return out


def boiling_violations(temps, pressures, solvent="acetonitrile"):
    """(t_ms, coil degC, bar gauge, margin) wherever the coil, at or above the solvent's
    normal boiling point, is less than BOILING_MARGIN_C below the boiling point at the
    measured coil pressure.  The coil's pressure is taken at its outlet (bpr1.pressure):
    the lowest along it, so the boiling point it gives is the lowest the coil sees."""
    import bisect

    from host.linecheck import BOILING_MARGIN_C
    from line.solvents import ATMOSPHERE_BAR, boiling_point_c, gauge_to_absolute

    bp_atm = boiling_point_c(solvent, ATMOSPHERE_BAR)
    times = [t for t, _ in pressures]
    out = []
    for t_ms, temp in temps:
        i = bisect.bisect_right(times, t_ms) - 1
        if temp < bp_atm or i < 0:
            continue
        p = max(pressures[i][1], 0.0)
        margin = boiling_point_c(solvent, gauge_to_absolute(p)) - temp
        if margin < BOILING_MARGIN_C:
            out.append((t_ms, temp, p, round(margin, 1)))
    return out


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.xfail(run=False, reason=NOT_BY_ORDER[p.stem]))
        if p.stem in NOT_BY_ORDER
        else p
        for p in SCENARIOS
    ],
    ids=lambda p: p.stem,
)
def test_the_recipe_shutdown_keeps_a_hot_coil_below_boiling(path, tmp_path_factory):
    """The demo recipe at 110 degC with each scenario's faults (timed ones while
    collecting): until the coil is below the solvent's normal boiling point, it stays 10 K
    below the boiling point at its measured pressure.  Every shutdown sequence turns the
    heater off first and lets the pressure go last."""
    temps, pressures, _ = _recipe_run(path, tmp_path_factory.getbasetemp() / "recipe-runs")
    assert temps and pressures
    bad = boiling_violations(temps, pressures)
    assert not bad, bad[:3]


def test_a_leak_at_the_hot_coil_cuts_the_heater_within_its_bound(tmp_path_factory):
    # The leak drops the coil's pressure to ~2 bar under a 5 bar setpoint at 110 degC: no
    # module trips on that, the sequencer's low-pressure watch runs the shutdown (heater
    # off first) once bpr1.pressure has been below half its setpoint for 2 s.
    leak = ROOT / "examples" / "scenarios" / "leak-reactor.toml"
    _, _, reactions = _recipe_run(leak, tmp_path_factory.getbasetemp() / "recipe-runs")
    t_s, cause = reactions[0]
    assert cause == "low_pressure"
    assert 2.0 <= t_s - HOT_AT_S <= LEAK_BOUND_S


LEAK_BOUND_S = 5.0  # docs/safety.md: 2 s below half, seen through 1 s telemetry (twice)


def test_the_coil_temperature_ignores_bad_samples_and_takes_the_worst_case():
    def sample(t, ch, v, q="good"):
        return {"host_ms": t, "channel": ch, "value": v, "quality": q}

    temps = coil_temperatures(
        [
            sample(0, "temp_a", 100.0),
            sample(0, "temp_b", 101.0),
            sample(0, "temperature", 100.5),
            sample(1, "temperature", 100.5, "bad"),  # the vote frozen: unknown
            sample(1, "temp_b", 40.0),  # one probe cool, the other still reads 100
            sample(2, "temp_a", 30.0, "bad"),
            sample(3, "temp_b", 35.0, "bad"),  # nothing good left
            sample(4, "temperature", 30.0, "uncertain"),  # reads again
        ]
    )
    assert temps == [
        (0, 100.0),
        (0, 101.0),
        (0, 101.0),
        (1, 101.0),  # the BAD vote counts for nothing
        (1, 100.0),  # temp_b cool, temp_a still reads 100: the worst case
        (2, 40.0),  # temp_a BAD now: only temp_b reads
        (3, 40.0),  # nothing reads: as hot as last seen
        (4, 30.0),  # the vote reads again (uncertain is a reading)
    ]


def test_the_boiling_check_catches_a_pressure_lost_under_a_hot_coil():
    # 90 degC at 5 bar is fine; the same coil after the BPR opened (0 bar) is not
    temps = [(0, 90.0), (1000, 90.0)]
    assert boiling_violations(temps, [(0, 5.0)]) == []
    assert boiling_violations(temps, [(0, 5.0), (500, 0.0)]) == [(1000, 90.0, 0.0, -8.1)]


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
