"""``skid tune --broker`` end to end: a real Mosquitto, every module of the demo line a
``skid edge`` process and the plant a ``skid emulate`` process (host/launcher.py), on
one clock 5x real time (tests/test_run_broker.py says why 5x).  The reactor is keyed:
every command and lease the tune sends is signed with its key.

1. The relay test runs to its end, proposes gains and writes them (old and new hash).
2. A probe fault during the relay test (both probes read 160 degC: above the 150 degC
   over-temperature trip) trips the module; the tune ends (exit 3) and leaves the
   module aborted with its heater at 0, the board config untouched.

Each tune takes about 320 simulated seconds (a 190 s hold, then ~7 relay cycles of
~15 s): about 65 s of wall time each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.boardconfig import compile_config, load_board_config
from edge.boardconfig.compile import config_hash
from host.launcher import EmulatedLineProcesses
from host.session import SharedClock
from host.transport import MqttTransport
from host.tune_broker import BrokerLink
from tests.broker import find_mosquitto

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
SPEED = 5.0
# The tune starts at this simulated time (after every module's birth); its relay test
# then runs from about +200 s to +315 s.  The fault lands in the middle of that window:
# +-50 simulated s (10 wall s) of slack for the tune process's start-up.
TUNE_AT_S = 40.0
FAULT_AT_S = TUNE_AT_S + 262.0

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")


def keyed_line(tmp_path: Path) -> tuple[Path, Path]:
    """The demo line with its board configs copied beside it and the reactor's key
    (keys/reactor1.key, as board_configs/reactor.toml names it) made.  (line, reactor)"""
    shutil.copytree(ROOT / "board_configs", tmp_path / "board_configs")
    keys = tmp_path / "board_configs" / "keys"
    keys.mkdir()
    (keys / "reactor1.key").write_text(os.urandom(32).hex() + "\n")
    shutil.copy(LINE, tmp_path / "demo.toml")
    return tmp_path / "demo.toml", tmp_path / "board_configs" / "reactor.toml"


def skid(*args: str, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def tune(line_file: Path, url: str, procs: EmulatedLineProcesses, *extra: str):
    while procs.sim_ms() < TUNE_AT_S * 1000:
        time.sleep(0.05)
    out = skid(
        "tune", str(line_file), "reactor1", "coil_temp", "--broker", url,
        "--line-id", procs.line_id, "--epoch", repr(procs.epoch), "--speed", str(SPEED),
        "--yes", "--json", *extra,
        timeout_s=300,
    )  # fmt: skip
    lines = [ln for ln in out.stdout.strip().splitlines() if ln.startswith("{")]
    assert lines, out.stdout + out.stderr
    return out, json.loads(lines[-1])


def reactor_view(url: str, procs: EmulatedLineProcesses):
    """The reactor as a host sees it now (its birth asked for on the line's clock: `skid
    status` knows no --epoch, and the modules would take its rebirth as expired)."""
    transport = MqttTransport(url, f"{procs.line_id}-check")
    transport.connect()
    link = BrokerLink(
        transport, procs.line_id, "reactor1", "reactor", SharedClock(procs.epoch, SPEED)
    )
    try:
        view = link.hear()
        link.advance(2.0)  # a telemetry sample after the birth
        return view
    finally:
        link.close()


def test_tune_over_the_broker_measures_proposes_and_writes(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    line_file, board = keyed_line(tmp_path)
    old_hash = config_hash(compile_config(load_board_config(board))).hex()
    with EmulatedLineProcesses(
        line_file, url, speed=SPEED, insecure=False, log_dir=tmp_path / "logs"
    ) as procs:
        out, summary = tune(line_file, url, procs, "--write")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "(signed)" in out.stdout
        view = reactor_view(url, procs)
    assert summary["outcome"] == "tuned"
    # The emulated coil over the broker: as measured in process (Ku 0.76, Pu 14.7 s).
    assert 0.4 < summary["ku"] < 1.5 and 8.0 < summary["pu_s"] < 25.0
    w = summary["written"]
    assert w["old_hash"] == old_hash != w["new_hash"]
    cfg = load_board_config(board)
    assert config_hash(compile_config(cfg)).hex() == w["new_hash"]
    for k, v in summary["gains"].items():
        assert w["new"][k] == pytest.approx(v)
    # Made safe at the end: stopped, heater off, setpoint back at its minimum.
    assert view.state == "stopped"
    assert view.value("heater") == 0.0
    assert view.value("temperature") is not None


def test_a_trip_during_the_relay_test_over_the_broker_ends_it_safely(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    line_file, board = keyed_line(tmp_path)
    before = board.read_text()
    # Both probes at once (one alone would disagree with the other: a sensor_bad trip).
    faults = [f"sensor-stuck:reactor1.{p}@{FAULT_AT_S:g},value=160" for p in ("temp_a", "temp_b")]
    with EmulatedLineProcesses(
        line_file, url, speed=SPEED, insecure=False, faults=faults, log_dir=tmp_path / "logs"
    ) as procs:
        out, summary = tune(line_file, url, procs, "--write")
        view = reactor_view(url, procs)
    assert out.returncode == 3, out.stdout + out.stderr
    assert summary["outcome"] == "ended"
    assert "trip during the test: over_temperature" in summary["reason"], summary
    # The trip came during the relay test (not the hold before it).
    said = out.stdout
    assert said.index("relay: +-") < said.index("test ended"), said
    assert view.state == "aborted"
    assert view.value("heater") == 0.0
    assert board.read_text() == before  # nothing written
