"""``skid status`` over a real Mosquitto broker, during a real emulated run (every module a
``skid edge`` process, the plant a ``skid emulate`` process, 5x real time), started after
every birth: the one-shot table and ``--json``, ``--watch`` piped (one line per change)
and ``--json --watch`` (NDJSON); a coordinator killed and restarted, and a broker stopped
and started, each show as a gap.  Waits are on conditions with bounded timeouts."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from host.launcher import EmulatedLineProcesses
from tests.test_run_broker import Skid

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
QUICK = ROOT / "examples" / "recipes" / "quick.toml"
SPEED = 5.0
MODULES = ["pump_a", "pump_b", "reactor1", "bpr1", "uv1", "valve1"]
SNAPSHOT_KEYS = {"t_ms", "line", "link", "coordinator", "run", "modules", "alarms", "gaps"}
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def status(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", "status", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=ENV,
    )


class TtyWatch:
    """``skid status --watch`` with its stdout on a pseudo-terminal, as in a terminal."""

    def __init__(self, *args: str):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "status", "--watch", *args],
            cwd=ROOT,
            stdout=slave,
            stderr=subprocess.DEVNULL,
            env={**ENV, "TERM": "xterm", "COLUMNS": "160", "LINES": "50"},
        )
        os.close(slave)
        self.out = bytearray()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the process closed the terminal
                return
            if not chunk:
                return
            self.out += chunk

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=15)
        finally:
            os.close(self.master)


class Watch:
    """A ``skid status --watch`` process whose stdout lines are collected as they come."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "status", "--watch", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, test, timeout_s: float, what: str):
        """The first line (parsed as JSON if ``json``) for which ``test`` holds."""
        end = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < end:
            for line in self.lines[seen:]:
                seen += 1
                if test(line):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = "\n".join(self.lines[-5:])
        raise AssertionError(f"{what}: not seen within {timeout_s} s; last lines:\n{tail}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def snapshots_where(pred):
    def test(line: str) -> bool:
        snap = json.loads(line)
        assert set(snap) == SNAPSHOT_KEYS
        return pred(snap)

    return test


def gap(snap: dict, what: str) -> dict | None:
    found = [g for g in snap["gaps"] if g["what"] == what]
    return found[-1] if found else None


def check_one_shot(url: str, line_id: str) -> None:
    """`skid status --json` and the table, mid-run: no module "?", every one online."""
    done = status("--broker", url, "--line-id", line_id, "--json")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(snap) == SNAPSHOT_KEYS and snap["coordinator"]["online"]
    run = snap["run"]
    # Running; on a loaded machine a lapsed lease may already have it shutting down.
    assert run["recipe"] == "quick" and run["phase"], run
    assert run["state"] in ("running", "shutting_down"), run["reason"]
    assert [m["id"] for m in snap["modules"]] == MODULES  # the line's order
    for m in snap["modules"]:
        assert m["online"] and m["state"] not in (None, "?") and m["values"], m
    temperature = next(m for m in snap["modules"] if m["id"] == "reactor1")["values"]["temperature"]
    assert temperature["unit"] == "°C" and isinstance(temperature["setpoint"], float)
    assert isinstance(temperature["value"], float)
    table = status("--broker", url, "--line-id", line_id)
    assert table.returncode == 0, table.stderr
    assert "recipe quick, " in table.stdout and "(sp " in table.stdout
    assert " ? " not in table.stdout and "°C" in table.stdout


def test_status_during_a_run_and_across_a_coordinator_restart(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    with EmulatedLineProcesses(LINE, url, speed=SPEED, log_dir=tmp_path / "logs") as line:
        common = [
            "--broker", url, "--line-id", line.line_id, "--epoch", repr(line.epoch),
            "--speed", str(SPEED), "--runs-dir", str(tmp_path), "--json", "--no-report",
        ]  # fmt: skip
        first = Skid("run", str(LINE), str(QUICK), *common)
        run_id = first.run_id()
        first.wait_for("phase heat", 90.0)
        check_one_shot(url, line.line_id)
        ndjson = Watch("--broker", url, "--line-id", line.line_id, "--json")
        piped = Watch("--broker", url, "--line-id", line.line_id)
        try:
            ndjson.wait_for(
                snapshots_where(lambda s: s["run"] and s["run"]["run_id"] == run_id), 20, "run"
            )
            piped.wait_for(lambda text: " heat " in text, 20, "a piped line")
            first.proc.send_signal(signal.SIGKILL)  # its will: host/state offline
            first.proc.wait(10)
            opened = ndjson.wait_for(
                snapshots_where(lambda s: (gap(s, "coordinator") or {}).get("to_ms") is None
                                and gap(s, "coordinator") is not None),
                20,
                "the coordinator gap opening",
            )  # fmt: skip
            assert not json.loads(opened)["coordinator"]["online"]
            piped.wait_for(lambda text: "coordinator OFFLINE" in text, 20, "offline, piped")
            second = Skid("run", str(LINE), str(QUICK), *common, "--resume", run_id)
            closed = ndjson.wait_for(
                snapshots_where(lambda s: (gap(s, "coordinator") or {}).get("to_ms") is not None),
                60,
                "the coordinator gap closing",
            )
            g = gap(json.loads(closed), "coordinator")
            assert g["to_ms"] > g["from_ms"]
            code, summary = second.finish(timeout_s=180)
            assert summary["run_id"] == run_id, "\n".join(second.err)
            ndjson.wait_for(
                snapshots_where(
                    lambda s: s["run"]["state"] == "aborted" and not s["run"]["online"]
                ),
                20,
                "the closing run status",
            )
        finally:
            assert ndjson.stop() == 0 and piped.stop() == 0
    times = [json.loads(line)["t_ms"] for line in ndjson.lines]
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 490  # rate-limited
    assert all(" | " in text for text in piped.lines)  # one line per change, not a table


def test_a_broker_restart_is_a_gap_and_modules_come_back(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    with EmulatedLineProcesses(LINE, url, speed=SPEED, log_dir=tmp_path / "logs") as line:
        ndjson = Watch("--broker", url, "--line-id", line.line_id, "--json")
        piped = Watch("--broker", url, "--line-id", line.line_id)
        tty = TtyWatch("--broker", url, "--line-id", line.line_id)
        try:

            def all_online(s):
                ids = [m["id"] for m in s["modules"] if m["online"]]
                return sorted(ids) == sorted(MODULES)

            ndjson.wait_for(snapshots_where(all_online), 30, "every module online")
            broker.stop()
            down = ndjson.wait_for(
                snapshots_where(lambda s: not s["link"]["connected"]), 20, "link down"
            )
            assert gap(json.loads(down), "broker")["to_ms"] is None
            piped.wait_for(lambda text: "broker link DOWN" in text, 20, "link down, piped")
            time.sleep(1.0)
            broker.start()
            back = ndjson.wait_for(
                snapshots_where(
                    lambda s: (gap(s, "broker") or {}).get("to_ms") is not None and all_online(s)
                ),
                60,
                "the broker gap closed, every module back",
            )
            snap = json.loads(back)
            assert [g["what"] for g in snap["gaps"]] == ["broker"]  # no module gap beside it
            assert not any(m["stale"] for m in snap["modules"])
        finally:
            assert ndjson.stop() == 0 and piped.stop() == 0 and tty.stop() == 0
    # In a terminal the table is redrawn in place (cursor moved up over the last frame),
    # not printed again line after line as when piped.
    screen = bytes(tty.out).decode("utf-8", "replace")
    assert screen.count("┏━") >= 3 and "\x1b[1A" in screen and "\x1b[2K" in screen
    assert "broker link DOWN" in screen and " | " not in screen


@pytest.fixture(autouse=True)
def _no_stray_processes():
    yield
    time.sleep(0.2)
