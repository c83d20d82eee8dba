"""``skid run`` over a real Mosquitto broker, every module a separate ``skid edge`` process
and the plant a ``skid emulate`` process, all on one clock 10x real time.

A full (quick) recipe reaches steady state and collects; a clog mid-run trips a pump and
the line shuts down in order with the first-out cause in the record; the coordinator is
killed and restarted (it re-attaches, the record shows the gap); the broker is restarted
mid-run (nothing the modules raised meanwhile is lost).  Waits are on conditions with
bounded timeouts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from host.launcher import EmulatedLineProcesses
from host.record import RunRecord, verify
from tests.broker import MosquittoBroker, retained_topics

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
QUICK = ROOT / "examples" / "recipes" / "quick.toml"
# 5x, not the default 10x: at speed S a wall-clock stall of d looks like S x d to the
# modules' dead-man checks (a pump's is 500 ms), and a test machine running the suite can
# stall a process for tens of milliseconds.  docs/broker-mode.md has measured margins.
SPEED = 5.0


class Skid:
    """A ``skid`` subprocess whose stderr lines are collected as they come."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host.cli", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout_s: float) -> str:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for line in list(self.err):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen within {timeout_s} s:\n" + "\n".join(self.err))

    def finish(self, timeout_s: float) -> tuple[int, dict]:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("skid did not finish:\n" + "\n".join(self.err)) from None
        self._reader.join(5.0)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # only the summary: small enough never to block
        lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
        assert lines, "no JSON summary:\n" + "\n".join(self.err)
        return self.proc.returncode, json.loads(lines[-1])

    def run_id(self) -> str:
        line = self.wait_for("skid: run ", 60.0)
        return line.split("skid: run ", 1)[1].split(":", 1)[0]


def events_by_module(record_path) -> dict[str, list[int]]:
    rec = RunRecord.open(record_path, readonly=True)
    try:
        out: dict[str, list[int]] = {}
        for e in rec.events():
            if e.get("number") is not None:
                out.setdefault(e["module"], []).append(e["number"])
        return out
    finally:
        rec.close()


def test_a_full_recipe_reaches_steady_state_and_collects_over_the_broker(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    skid = Skid(
        "run", str(LINE), str(QUICK), "--emulate", "--broker", url, "--speed", str(SPEED),
        "--runs-dir", str(tmp_path), "--json", "--no-report",
    )  # fmt: skip
    code, summary = skid.finish(timeout_s=240)
    assert code == 0, "\n".join(skid.err)
    assert summary["outcome"] == "completed" and summary["trips"] == []
    phases = {p["phase"]: p for p in summary["phases"]}
    assert phases["collect"]["end_s"] - phases["collect"]["start_s"] >= 55.0
    assert summary["peaks"]["reactor1.temperature"] > 38.0
    assert verify(summary["record"]).ok
    # Its own line id, every retained message it created cleared, no process left.
    line_id = RunRecord.open(summary["record"], readonly=True).meta()["line_id"]
    assert line_id.startswith("demo-") and line_id != "demo"
    assert retained_topics(broker.port, [f"skid/v1/{line_id}/#"]) == []
    left = subprocess.run(["pgrep", "-f", f"--line-id {line_id}"], capture_output=True)
    assert left.stdout.strip() == b""


def test_a_clog_mid_run_trips_a_pump_and_the_record_holds_the_first_out_cause(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    skid = Skid(
        "run", str(LINE), str(QUICK), "--emulate", "--broker", url, "--speed", str(SPEED),
        "--runs-dir", str(tmp_path), "--json", "--no-report",
        "--fault", "clog:reactor1@150,rate=0.2",
    )  # fmt: skip
    code, summary = skid.finish(timeout_s=240)
    # The shutdown ran, but pressure stays trapped behind the clog: not a safe end (exit 1),
    # and the summary names where (docs/cli.md, residual).
    assert code == 1, "\n".join(skid.err)
    first = summary["trips"][0]
    assert first["module"] in ("pump_a", "pump_b") and first["cause"] == "over_pressure"
    assert summary["all_safe_at_end"] is False and summary["residual"], summary
    rec = RunRecord.open(summary["record"], readonly=True)
    try:
        trips = [e for e in rec.events() if e.get("type") == "trip"]
        assert trips[0]["module"] == first["module"] and trips[0]["cause"] == "over_pressure"
        reactions = [n["text"] for n in rec.notes() if n["kind"] == "reaction"]
        assert reactions and "over_pressure" in reactions[0]
    finally:
        rec.close()
    assert verify(summary["record"]).ok


def test_the_coordinator_killed_and_restarted_reattaches_and_the_record_shows_the_gap(
    broker, tmp_path
):
    url = f"mqtt://127.0.0.1:{broker.port}"
    with EmulatedLineProcesses(LINE, url, speed=SPEED, log_dir=tmp_path / "logs") as line:
        common = [
            "--broker", url, "--line-id", line.line_id, "--epoch", repr(line.epoch),
            "--speed", str(SPEED), "--runs-dir", str(tmp_path), "--json", "--no-report",
        ]  # fmt: skip
        first = Skid("run", str(LINE), str(QUICK), *common)
        run_id = first.run_id()
        first.wait_for("phase heat", 60.0)
        time.sleep(0.5)  # the record commits every 0.5 simulated s: let it hold the phase
        first.proc.send_signal(signal.SIGKILL)  # no shutdown sequence, no goodbye
        first.proc.wait(10)
        time.sleep(1.0)  # 5 simulated seconds without a coordinator: pumps' leases lapse
        second = Skid("run", str(LINE), str(QUICK), *common, "--resume", run_id)
        code, summary = second.finish(timeout_s=120)
    assert code == 3, "\n".join(second.err)
    assert summary["run_id"] == run_id and summary["outcome"] == "aborted"
    assert "restarted" in summary["reason"] and summary["all_safe_at_end"]
    rec = RunRecord.open(summary["record"], readonly=True)
    try:
        gaps = rec.gaps()
        assert len(gaps) == 1 and gaps[0]["end_ms"] > gaps[0]["start_ms"]
        assert len(rec.sessions()) == 2
        phases = [p["phase"] for p in rec.phases()]
        assert "heat" in phases and any(p.startswith("shutdown") for p in phases)
    finally:
        rec.close()
    assert verify(summary["record"]).ok


def test_a_broker_restart_mid_run_loses_no_event(tmp_path):
    persistent = MosquittoBroker(persistence=True).start()
    try:
        url = f"mqtt://127.0.0.1:{persistent.port}"
        skid = Skid(
            "run", str(LINE), str(QUICK), "--emulate", "--broker", url, "--speed", str(SPEED),
            "--runs-dir", str(tmp_path), "--json", "--no-report",
        )  # fmt: skip
        skid.wait_for("phase heat", 60.0)
        persistent.restart()
        code, summary = skid.finish(timeout_s=240)
    finally:
        persistent.close()
    assert code in (0, 3), "\n".join(skid.err)
    assert summary["all_safe_at_end"]
    if summary["outcome"] == "aborted":
        # Only the outage itself may have stopped it: modules whose lease lapsed while
        # the broker was away tripped (and said so once it was back).
        assert summary["trips"], summary["reason"]
        assert summary["trips"][0]["cause"] == "lease_expired", summary["trips"]
    assert verify(summary["record"]).ok
    rec = RunRecord.open(summary["record"], readonly=True)
    try:
        assert any(n["kind"] == "reconnected" for n in rec.notes())
    finally:
        rec.close()
    # Every module's events arrived, in order, none missing across the restart.
    for module, numbers in events_by_module(summary["record"]).items():
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), module


@pytest.fixture(autouse=True)
def _no_stray_processes():
    yield
    # The launcher's processes stop themselves when their parent is gone; give them a
    # moment, so one test's leftovers never load the next.
    time.sleep(0.2)


def test_operator_hold_resume_and_line_wide_stop_from_other_terminals(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    key = tmp_path / "operator.key"
    key.write_text(os.urandom(32).hex())
    skid = Skid(
        "run", str(LINE), str(QUICK), "--emulate", "--broker", url, "--speed", str(SPEED),
        "--runs-dir", str(tmp_path), "--json", "--no-report", "--operator-key-file", str(key),
    )  # fmt: skip
    line_id = skid.wait_for(" as demo-", 60.0).split(" as ", 1)[1].split()[0]
    skid.wait_for("phase heat", 60.0)

    def operator(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "host.cli", *args, "--broker", url, "--line", line_id],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    held = operator("hold", "--who", "dana", "--reason", "check a fitting")
    assert held.returncode == 0 and "accepted" in held.stdout, held.stderr
    skid.wait_for("hold: accepted", 10.0)
    unsigned = operator("resume", "--who", "mallory", "--reason", "leaked account")
    assert unsigned.returncode == 1 and "refused" in unsigned.stdout
    resumed = operator(
        "resume", "--who", "dana", "--reason", "fitting tight", "--operator-key-file", str(key)
    )
    assert resumed.returncode == 0 and "accepted" in resumed.stdout, resumed.stderr
    stop = operator("stop", str(LINE), "--insecure", "--who", "dana", "--reason", "drill")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert stop.stdout.count(": ok") == 6  # every module acknowledged its abort
    code, summary = skid.finish(timeout_s=120)
    assert code == 3 and summary["outcome"] == "aborted" and "dana" in summary["reason"]
    assert summary["all_safe_at_end"]
    rec = RunRecord.open(summary["record"], readonly=True)
    try:
        whos = {(a["who"], a["reason"]) for a in rec.operator_actions()}
        assert {("dana", "check a fitting"), ("dana", "fitting tight"), ("dana", "drill")} <= whos
    finally:
        rec.close()


def test_line_wide_stop_works_with_no_coordinator_running(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    with EmulatedLineProcesses(LINE, url, speed=SPEED, log_dir=tmp_path / "logs") as line:
        stop = subprocess.run(
            [
                sys.executable, "-m", "host.cli", "stop", str(LINE), "--insecure",
                "--broker", url, "--line", line.line_id, "--reason", "drill, no host",
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert stop.stdout.count(": ok") == 6
        assert "coordinator" not in stop.stdout  # nobody answered for the recipe
