"""A short campaign over a real Mosquitto broker: the emulated line as separate processes
(host/launcher.py), coordinated by the same campaign session as in process."""

from __future__ import annotations

import time

from host.campaign.model import load_campaign
from host.campaign.record import CampaignRecord
from host.campaign.session import run_session
from host.launcher import EmulatedLineProcesses
from host.record import verify
from host.session import BrokerSite
from tests.test_campaign_runner import LINE, SCREEN, ListStrategy, _setpoints

# 5x as tests/test_run_broker.py: at 10x a wall-clock stall of the loaded machine looked
# like a lapsed lease to pump_a (lease_expired in a full `make test`).
SPEED = 5.0


def test_a_campaign_runs_over_the_broker(broker, tmp_path):
    campaign = load_campaign(SCREEN)
    campaign.replicates = 0
    record = CampaignRecord.create(tmp_path / "campaigns", campaign, "demo", "l", "r", 0)
    strategy = ListStrategy(
        [
            {"temperature_c": 60.0, "residence_time_min": 1.0},
            {"temperature_c": 180.0, "residence_time_min": 1.0},  # refused: never sent
        ]
    )

    url = f"mqtt://127.0.0.1:{broker.port}"

    def site(prep):
        procs = EmulatedLineProcesses(
            LINE, url, speed=SPEED, log_dir=tmp_path / "logs", epoch=time.time()
        )
        return BrokerSite(prep.line, url, lambda s: None, procs=procs, own_procs=True)

    result = run_session(
        campaign,
        LINE,
        site,
        record,
        strategy=strategy,
        # the real safety envelope (host/campaign/envelope.py)
        runs_dir=tmp_path / "runs",
        max_s=1800.0,
    )
    record.close()
    assert result.outcome == "done", result.reason
    assert [(e["index"], e["status"]) for e in result.experiments] == [(1, "ok"), (2, "infeasible")]
    assert 0 < result.experiments[0]["absorbance"] < 2.0
    assert "trip" in result.experiments[1]["reason"]
    assert max(_setpoints(result.summary.record, "reactor1", "coil_temp")) <= 140.0
    assert verify(record.path).ok
