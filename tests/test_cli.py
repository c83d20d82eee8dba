"""The `skid` command line: help, the demo's honest end-to-end run, and `skid edge` errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "edge" in out


def test_every_command_module_registers_a_handler():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"demo", "edge"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert p.get_default("func") is not None, name


def test_demo_runs_end_to_end_and_reports_json(capsys):
    assert main(["demo", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["outcome"] == "completed"
    assert {m["kind"] for m in summary["modules"]} == {"reactor", "pump"}
    assert summary["latched_trips"] == []  # reset accepted after the probes were repaired
    err = captured.err
    assert "trip temperature: sensor_bad" in err  # the module tripped on its own
    assert "not_allowed_in_state" in err  # the reset refused while the probes were open
    assert "out_of_range" in err  # the 500 degC setpoint
    assert "Not built yet" in err  # says honestly what it did not run


def test_skid_edge_reports_config_errors_with_file_line_and_exit_2(tmp_path):
    bad = tmp_path / "reactor.toml"
    text = (ROOT / "board_configs" / "reactor.toml").read_text()
    bad.write_text(text.replace("safe = 0.0", "safe = 1.5", 1))
    proc = subprocess.run(
        [sys.executable, "-m", "host.cli", "edge", str(bad), "--emulate", "--insecure"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "reactor.toml:" in proc.stderr and "channels.heater.safe = 1.5" in proc.stderr
    assert "0.0..1.0" in proc.stderr


def test_skid_edge_names_a_missing_key_file(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "host.cli",
            "edge",
            str(ROOT / "board_configs" / "reactor.toml"),
            "--emulate",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "key_file" in proc.stderr and "--insecure" in proc.stderr
