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


def test_demo_runs_the_emulated_line_end_to_end_and_reports_json(capsys):
    assert main(["demo", "--json", "--duration", "300"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["outcome"] == "completed" and summary["trips"] == []
    assert {m["kind"] for m in summary["modules"]} == {
        "pump",
        "reactor",
        "bpr",
        "analyzer",
        "valve",
    }
    assert len(summary["modules"]) == 6
    # Every sensor channel has a peak; the reactor heated and the BPR held pressure.
    assert summary["peaks"]["reactor1.temperature"] > 60.0
    assert 4.0 < summary["peaks"]["bpr1.pressure"] < 6.0
    assert "Not built yet" in captured.err  # says honestly what it did not run


def test_demo_with_a_clog_stops_the_line_safely_with_exit_3(capsys):
    code = main(["demo", "--json", "--duration", "300", "--fault", "clog:reactor1@150,rate=0.05"])
    assert code == 3
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["outcome"] == "aborted" and summary["all_safe_at_end"]
    first = summary["trips"][0]
    assert first["module"] in ("pump_a", "pump_b") and first["cause"] == "over_pressure"
    assert 150.0 < first["t_s"] < 200.0
    assert summary["peaks"]["pump_a.pressure"] < 25.0  # under the weakest rating


@pytest.mark.parametrize(
    "fault, message",
    [
        ("clg:reactor1@10", "did you mean 'clog'"),
        ("heater-open:pump_a@10", "does not fit"),
        ("clog:nowhere@10", "valid targets"),
    ],
)
def test_demo_rejects_bad_faults_with_exit_2(capsys, fault, message):
    assert main(["demo", "--fault", fault]) == 2
    assert message in capsys.readouterr().err


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
