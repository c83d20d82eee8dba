"""The `skid` command line: help, the demo end to end (scripting contract), and `skid edge`
errors."""

from __future__ import annotations

import json
import signal
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


def test_demo_runs_the_recipe_end_to_end_and_keeps_the_json_contract(capsys, tmp_path):
    assert main(["demo", "--json", "--runs-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["outcome"] == "completed" and summary["trips"] == []
    assert summary["run_id"] and Path(summary["record"]).is_file()
    assert Path(summary["record"]).parent == tmp_path
    assert {m["kind"] for m in summary["modules"]} == {
        "pump",
        "reactor",
        "bpr",
        "analyzer",
        "valve",
    }
    assert len(summary["modules"]) == 6
    # Every sensor channel has a peak; the reactor heated and the BPR held pressure.
    for key in ("reactor1.temperature", "pump_a.pressure", "bpr1.pressure", "uv1.uv"):
        assert key in summary["peaks"]
    assert 78.0 < summary["peaks"]["reactor1.temperature"] < 95.0
    assert 4.5 < summary["peaks"]["bpr1.pressure"] < 6.0
    # Progress went to stderr, and the report with plots was written beside the record.
    assert "phase collect" in captured.err
    html = Path(summary["record"]).with_suffix(".html")
    assert html.is_file() and "<svg" in html.read_text()


def test_demo_with_a_clog_shuts_the_line_down_and_reports_the_trapped_pressure(capsys, tmp_path):
    code = main(
        [
            "demo",
            "--json",
            "--no-report",
            "--runs-dir",
            str(tmp_path),
            "--fault",
            "clog:reactor1@420,rate=0.05",
        ]
    )
    # The shutdown ran (outputs safe), but the pumps' 22 bar stays trapped behind the
    # clog: not a safe end (exit 1), and the summary says where.
    assert code == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["outcome"] == "aborted" and summary["all_safe_at_end"] is False
    assert {r["component"] for r in summary["residual"]} == {"pump_a", "pump_b"}
    first = summary["trips"][0]
    assert first["module"] in ("pump_a", "pump_b") and first["cause"] == "over_pressure"
    assert 420.0 < first["t_s"] < 480.0
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


def test_ctrl_c_during_a_run_runs_the_shutdown_sequence_and_exits_3(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "demo", "--json", "--no-report"]
        + ["--runs-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:  # the run is under way: interrupt it as an operator would
        if "phase heat" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 3, rest
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["outcome"] == "aborted" and "SIGINT" in summary["reason"]
    assert summary["all_safe_at_end"] and summary["trips"] == []
    assert "shutdown" in rest  # the recipe's shutdown sequence ran
