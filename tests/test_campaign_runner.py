"""The campaign runner and session in process, with a scripted strategy and envelope.

``ListStrategy`` and ``refuse_above`` are test doubles for h-kinetics' strategies and
envelope (tests only): they make the conditions and the refusals known in advance, so the
tests can say exactly what must (not) reach the modules.  The real strategies and the real
envelope run in tests/test_campaign_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.faults import line_targets, parse_fault_option
from host.campaign.model import load_campaign
from host.campaign.record import CampaignRecord
from host.campaign.session import run_session
from host.dryrun import InProcessSite
from host.record import RunRecord, verify
from line.loader import load_line

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
SCREEN = ROOT / "examples" / "campaigns" / "demo-screen.toml"


class ListStrategy:
    """Asks the given conditions in order; best = the highest yield told."""

    def __init__(self, conditions):
        self.left = [dict(c) for c in conditions]
        self.told = []

    def ask(self):
        return dict(self.left[0]) if self.left else None

    def tell(self, condition, results, status, reason=""):
        assert self.left and condition == self.left[0], "told what was not asked"
        self.left.pop(0)
        self.told.append((dict(condition), results, status, reason))

    def best(self):
        ok = [t for t in self.told if t[2] == "ok"]
        return max(ok, key=lambda t: t[1]["yield"])[0] if ok else None

    def state(self):
        return {"left": self.left, "told": self.told}

    def restore(self, state):
        self.left = [dict(c) for c in state["left"]]
        self.told = [tuple(t) for t in state["told"]]


def refuse_above(limit_c):
    def check(recipe):
        t = recipe.conditions.temperature_c
        return [f"temperature_c = {t:g} above {limit_c:g} degC"] if t > limit_c else []

    return check


CONDITIONS = [
    {"temperature_c": 60.0, "residence_time_min": 2.0},
    {"temperature_c": 130.0, "residence_time_min": 2.0},  # refused by refuse_above(100)
    {"temperature_c": 80.0, "residence_time_min": 1.0},
]


def _session(tmp_path, strategy, *, faults=(), done=(), record=None, replicates=1, on_tick=None):
    campaign = load_campaign(SCREEN)
    campaign.replicates = replicates
    record = record or CampaignRecord.create(tmp_path / "campaigns", campaign, "demo", "l", "r", 0)

    def site(prep):
        return InProcessSite(prep.line, lambda s: None, recipe_name=prep.recipe.name, faults=faults)

    result = run_session(
        campaign,
        LINE,
        site,
        record,
        strategy=strategy,
        check=refuse_above(100.0),
        done=list(done),
        runs_dir=tmp_path / "runs",
        on_tick=on_tick,
    )
    return result, record


def _setpoints(run_path, module, channel) -> list[float]:
    rec = RunRecord.open(run_path, readonly=True)
    try:
        return [
            c["args"]["value"]
            for c in rec.commands()
            if c["module"] == module
            and c["op"] == "set_setpoint"
            and c["args"].get("channel") == channel
        ]
    finally:
        rec.close()


def test_a_campaign_runs_in_one_run_and_never_sends_a_refused_condition(tmp_path):
    strategy = ListStrategy(CONDITIONS)
    result, record = _session(tmp_path, strategy)
    assert result.outcome == "done", result.reason
    statuses = [(e["index"], e["kind"], e["status"]) for e in result.experiments]
    assert statuses == [
        (1, "design", "ok"),
        (2, "design", "infeasible"),
        (3, "design", "ok"),
        (4, "replicate", "ok"),
    ]
    refused = result.experiments[1]
    assert refused["reason"] == "temperature_c = 130 above 100 degC"
    assert strategy.told[1][2] == "infeasible" and strategy.told[1][1] is None
    # One coordinator run for the whole session; the refused condition never reached a module.
    runs = {e["run_id"] for e in result.experiments}
    assert runs == {result.summary.run_id}
    temps = _setpoints(result.summary.record, "reactor1", "coil_temp")
    assert 60.0 in temps and 80.0 in temps
    assert max(temps) <= 100.0, temps
    # The flows follow the residence time: 10 mL coil, 1 min -> 10 mL/min in total.
    flows_a = _setpoints(result.summary.record, "pump_a", "flow")
    flows_b = _setpoints(result.summary.record, "pump_b", "flow")
    assert any(abs(a + b - 10.0) < 1e-6 for a, b in zip(flows_a, flows_b, strict=False))
    # The line was shut down once, at the end, by the base recipe's end phases.
    phases = [p["phase"] for p in result.summary.phases]
    assert phases[:3] == ["prime", "pressurise", "heat"]
    assert "experiment-1" in phases and "experiment-4-replicate" in phases
    assert phases[-4:] == ["flush", "cool", "depressurise", "stop"]
    ok = [e for e in result.experiments if e["status"] == "ok"]
    for e in ok:
        assert e["line_time_s"] >= 1.5 * e["condition"]["residence_time_min"] * 60.0
        assert e["reagent_ml"] > 0 and 0 < e["absorbance"] < 2.0
    record.close()
    assert verify(record.path).ok


def test_a_trip_fails_the_experiment_stops_the_campaign_and_resume_does_not_repeat(tmp_path):
    line = load_line(LINE)
    modules, channels = line_targets(line)
    clog = parse_fault_option("clog:reactor1@0,rate=0.05", modules, channels)
    hit = []

    def clog_experiment_3(coord, emu):  # the coil clogs as soon as experiment 3 begins
        if coord.sequencer.phase == "experiment-3" and not hit:
            hit.append(emu.now_ms)
            emu.apply_fault(clog)

    strategy = ListStrategy(CONDITIONS + [{"temperature_c": 70.0, "residence_time_min": 1.5}])
    result, record = _session(tmp_path, strategy, replicates=0, on_tick=clog_experiment_3)
    assert hit
    assert result.outcome == "stopped"
    assert result.summary.trips, "the clog must trip the pumps"
    last = result.experiments[-1]
    assert (last["index"], last["status"]) == (3, "failed")
    assert "tripped" in last["reason"] or "over_pressure" in last["reason"], last["reason"]
    assert strategy.told[-1][2] == "failed"
    finished = record.experiments()
    assert [e["status"] for e in finished] == ["ok", "infeasible", "failed"]
    assert record.meta()["outcome"] == "stopped"

    # Resume: a new run, the strategy restored from the record, nothing repeated.
    resumed = ListStrategy([])
    resumed.restore(record.strategy_state())
    again, _ = _session(tmp_path, resumed, done=finished, record=record, replicates=0)
    assert again.outcome == "done", again.reason
    assert [(e["index"], e["condition"]) for e in again.experiments] == [
        (4, {"temperature_c": 70.0, "residence_time_min": 1.5})
    ]
    assert again.summary.run_id != result.summary.run_id
    assert [s["run_id"] for s in record.sessions()] == [
        result.summary.run_id,
        again.summary.run_id,
    ]
    record.close()
    assert verify(record.path).ok


def test_no_feasible_condition_starts_nothing(tmp_path):
    strategy = ListStrategy([{"temperature_c": 130.0, "residence_time_min": 2.0}])
    result, record = _session(tmp_path, strategy)
    assert result.outcome == "no_feasible_condition"
    assert result.summary is None
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    record.close()


@pytest.mark.parametrize("budget", [{"experiments": 1}, {"experiments": 9, "reagent_ml": 20.0}])
def test_budgets_end_the_design(tmp_path, budget):
    campaign = load_campaign(SCREEN)
    campaign.budget = {"time_min": None, "reagent_ml": None, **budget}
    campaign.replicates = 0
    record = CampaignRecord.create(tmp_path / "c", campaign, "demo", "l", "r", 0)
    strategy = ListStrategy([CONDITIONS[0], CONDITIONS[2]])
    result = run_session(
        campaign,
        LINE,
        lambda prep: InProcessSite(prep.line, lambda s: None, recipe_name=prep.recipe.name),
        record,
        strategy=strategy,
        check=refuse_above(100.0),
        runs_dir=tmp_path / "runs",
    )
    record.close()
    assert result.outcome == "done"
    assert [e["index"] for e in result.experiments] == [1]
    assert "budget" in result.reason
