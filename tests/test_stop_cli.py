"""``skid stop`` (the line-wide emergency stop) and ``--line-id`` on every command.

Unit level: every command that takes a line id parses ``--line-id`` (and ``--line`` where
that meant the id before); ``skid run --emulate --broker`` hands its ``--line-id`` to the
launcher; ``skid stop`` reads each module's key from its board config, names every
module it cannot sign for and never raises over a bad key file; its abort commands are
signed with each module's key; an unreachable broker is exit 1 naming every module.

End to end over a real Mosquitto (the ``broker`` fixture): the commands exactly as
docs/cli.md shows them find a ``skid run --emulate --broker --line-id X`` run, and stop it;
on a keyed emulated line ``skid stop`` signs with each module's key, a missing key file
leaves that module named as not stopped while the others stop (exit 1), and with the key
back every module confirms (exit 0).  Waits are on conditions with bounded timeouts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from host.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, build_parser, main
from host.commands import control
from host.launcher import EmulatedLineProcesses
from line.loader import load_line
from protocol import auth, messages
from protocol.constants import RESULT_OK, RESULT_UNAUTHENTICATED
from protocol.messages import Channel
from protocol.topics import module_topic
from tests.test_run_broker import Skid

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
QUICK = ROOT / "examples" / "recipes" / "quick.toml"
SPEED = 5.0  # see tests/test_run_broker.py: margin for a busy test machine
URL = "mqtt://127.0.0.1:1883"
MODULES = ("pump_a", "pump_b", "reactor1", "bpr1", "uv1", "valve1")
REQ = ["--broker", URL, "--reason", "why"]


# --- --line-id on every command -------------------------------------------------------------

# (argv without the line id, the attribute the id lands in, whether --line is an alias)
COMMANDS = [
    (["hold", *REQ], "line_id", True),
    (["resume", *REQ], "line_id", True),
    (["abort", *REQ], "line_id", True),
    (["manual", *REQ], "line_id", True),
    (["auto", *REQ], "line_id", True),
    (["command", "pump_a", "flow", "1.5", *REQ], "line_id", True),
    (["reset", "pump_a", *REQ], "line_id", True),
    (["ack", "pump_a", "high_pressure", *REQ], "line_id", True),
    (["stop", str(LINE), *REQ], "line_id", True),
    (["status", "--broker", URL], "line_id", True),
    (["edge", "board_configs/pump.toml"], "line_id", True),
    (["install-service", "board_configs/pump.toml"], "line", True),
    (["emulate", str(LINE), "--broker", URL], "line_id", False),
    (["run", str(LINE), str(QUICK), "--broker", URL], "line_id", False),
    (["demo", "--broker", URL], "line_id", False),
    (["broker-config", str(LINE), "-o", "out"], "line_id", False),
]


@pytest.mark.parametrize("argv,attr,alias", COMMANDS, ids=[c[0][0] for c in COMMANDS])
def test_every_command_that_takes_a_line_id_spells_it_line_id(argv, attr, alias):
    parser = build_parser()
    args = parser.parse_args([*argv, "--line-id", "line-7"])
    assert getattr(args, attr) == "line-7"
    if alias:  # --line meant the line id here before: scripts using it keep working
        assert getattr(parser.parse_args([*argv, "--line", "line-8"]), attr) == "line-8"


def test_demo_keeps_line_as_the_line_file():
    args = build_parser().parse_args(["demo", "--line", "my.toml", "--line-id", "x1"])
    assert args.line == "my.toml" and args.line_id == "x1"


def test_the_launcher_starts_each_module_with_a_line_id_flag_skid_edge_takes():
    line = EmulatedLineProcesses(LINE, URL, line_id="lx-1")  # not started: nothing runs
    line.epoch = 0.0
    cmd = line._command("pump_a")
    args = build_parser().parse_args(cmd[cmd.index("host.cli") + 1 :])
    assert args.command == "edge" and args.line_id == "lx-1"


def test_run_emulate_broker_hands_its_line_id_to_the_launcher(monkeypatch, tmp_path):
    seen = {}

    class Launched(Exception):
        pass

    class FakeLauncher:
        def __init__(self, *a, **kw):
            seen.update(kw)
            raise Launched

    import host.dryrun

    monkeypatch.setattr(host.dryrun, "EmulatedLineProcesses", FakeLauncher)
    with pytest.raises(Launched):
        host.dryrun.run_emulated_over_broker(LINE, QUICK, URL, line_id="mine-1", runs_dir=tmp_path)
    assert seen["line_id"] == "mine-1"


def test_run_refuses_a_malformed_line_id_before_anything_starts(tmp_path, capsys):
    code = main(
        ["run", str(LINE), str(QUICK), "--emulate", "--broker", "mqtt://127.0.0.1:9"]
        + ["--line-id", "Bad Id", "--runs-dir", str(tmp_path)]
    )
    assert code == EXIT_USAGE
    assert "--line-id" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no run record


# --- keys: read per module, never fatal -----------------------------------------------------


def keyed_line(tmp_path: Path, pump_key: bool = True) -> Path:
    """The demo line with its board configs copied beside it: the reactor keyed
    (keys/reactor1.key, as in board_configs/reactor.toml) and both pumps keyed
    (keys/pump.key).  Returns the line file."""
    shutil.copytree(ROOT / "board_configs", tmp_path / "board_configs")
    pump = tmp_path / "board_configs" / "pump.toml"
    pump.write_text(
        pump.read_text().replace('id = "pump1"\n', 'id = "pump1"\nkey_file = "keys/pump.key"\n', 1)
    )
    keys = tmp_path / "board_configs" / "keys"
    keys.mkdir()
    (keys / "reactor1.key").write_text(os.urandom(32).hex() + "\n")
    if pump_key:
        (keys / "pump.key").write_bytes(os.urandom(24))  # raw bytes work too
    shutil.copy(LINE, tmp_path / "demo.toml")
    return tmp_path / "demo.toml"


def test_module_keys_reads_each_key_and_names_every_module_it_cannot_sign_for(tmp_path):
    line_file = keyed_line(tmp_path)
    configs = tmp_path / "board_configs"
    bpr = configs / "bpr.toml"
    bpr.write_text(
        bpr.read_text().replace('id = "bpr1"\n', 'id = "bpr1"\nkey_file = "keys/short.key"\n', 1)
    )
    (configs / "keys" / "short.key").write_bytes(b"\x01" * 8)
    uv = configs / "analyzer.toml"
    uv.write_text(
        uv.read_text().replace('kind = "analyzer"\n', 'kind = "analyzer"\nkey_file = "keys"\n', 1)
    )
    (configs / "keys" / "reactor1.key").chmod(0)  # unreadable (unless we are root)
    keys, unsigned = control.module_keys(load_line(line_file))
    pump_key = (configs / "keys" / "pump.key").read_bytes()
    assert keys["pump_a"] == keys["pump_b"] == pump_key
    assert "valve1" not in keys and "valve1" not in unsigned  # no key configured: unsigned ok
    assert "8 bytes, allowed 16..32" in unsigned["bpr1"]
    assert "uv1" in unsigned  # a directory, not a key file
    if os.geteuid() != 0:
        assert "reactor1" in unsigned
    (configs / "keys" / "reactor1.key").unlink()
    keys, unsigned = control.module_keys(load_line(line_file))
    assert "not found" in unsigned["reactor1"] and "pump_a" in keys


class FakeTransport:
    def __init__(self):
        self.published: list[tuple[str, bytes]] = []
        self.subscriptions: list[str] = []

    def subscribe(self, pattern, callback):
        self.subscriptions.append(pattern)

    def publish(self, topic, payload, qos=0, retain=False, expiry_s=None):
        self.published.append((topic, payload))

    def poll(self, timeout_s=0.0):
        pass

    def close(self):
        pass


CHANNELS = [Channel("flow", "mL/min", "actuator", 0.0, 10.0, 0.001)]
STATES = {"idle": ["start", "abort", "rebirth"], "aborted": ["reset"]}


def test_stop_signs_each_abort_with_that_modules_key_and_the_rest_unsigned():
    line = load_line(LINE)
    key = bytes(range(32))
    transport = FakeTransport()
    stop = control.LineStop(transport, line, "l1", {"pump_a": key})
    nonce = b"\x07" * 8
    for mid in ("pump_a", "valve1"):
        birth = messages.build_birth(
            mid, "pump", "1.0.0", b"\0" * 8, "power_on", 0, nonce, CHANNELS, STATES, "idle"
        )
        stop.registry.on_message(module_topic("l1", mid, "birth"), birth, 0)
    stop.clock.leased(1_767_225_600_000)
    for mid in line.modules:
        stop._command(mid)
    sent = {t.split("/")[3]: p for t, p in transport.published}
    assert set(sent) == {"pump_a", "valve1"}  # the others were never heard from
    assert set(stop.pending) == {"pump_a", "valve1"}
    signed = messages.parse_command(sent["pump_a"])
    assert signed.auth is not None and signed.auth.sender == "estop"
    assert auth.CommandVerifier(key, "pump_a", nonce).verify(sent["pump_a"]) == RESULT_OK
    wrong = auth.CommandVerifier(bytes(32), "pump_a", nonce)
    assert wrong.verify(sent["pump_a"]) == RESULT_UNAUTHENTICATED
    assert messages.parse_command(sent["valve1"]).auth is None


def test_stop_with_no_broker_exits_1_naming_every_module(capsys):
    from tests.broker import free_port

    code = main(
        ["stop", str(LINE), "--insecure", "--broker", f"mqtt://127.0.0.1:{free_port()}"]
        + ["--line-id", "nobody", "--reason", "drill"]
    )
    out = capsys.readouterr().out
    assert code == EXIT_FAILURE
    for mid in MODULES:
        assert f"{mid}: NOT CONFIRMED" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["stop", "no/such/line.toml", "--broker", URL, "--reason", "r"],
        ["stop", str(LINE), "--broker", URL, "--line-id", "Bad Id", "--reason", "r"],
        ["stop", str(LINE), "--broker", "http://x", "--reason", "r"],
    ],
    ids=["line-file", "line-id", "broker-url"],
)
def test_stop_usage_errors_exit_2(argv):
    assert main(argv) == EXIT_USAGE


# --- end to end over a real broker ----------------------------------------------------------


def skid(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_run_with_line_id_is_found_by_status_and_stopped_by_the_documented_stop(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    run = Skid(
        "run", "examples/lines/demo.toml", str(QUICK), "--emulate", "--broker", url,
        "--speed", str(SPEED), "--line-id", "cell-7", "--runs-dir", str(tmp_path),
        "--json", "--no-report",
    )  # fmt: skip
    run.wait_for("skid: line id cell-7", 30.0)  # said at start
    run.wait_for("phase prime", 90.0)  # every module attached, the recipe running
    status = skid("status", "--broker", url, "--line-id", "cell-7", "--json")
    assert status.returncode == 0, status.stderr
    seen = json.loads(status.stdout.strip().splitlines()[-1])
    assert {m["id"] for m in seen["modules"]} == set(MODULES)
    # docs/cli.md: skid stop LINE_FILE --broker URL --line-id ID --reason ...
    stop = skid(
        "stop", "examples/lines/demo.toml", "--broker", url, "--line-id", "cell-7",
        "--reason", "drill",
    )  # fmt: skip
    assert stop.returncode == EXIT_OK, stop.stdout + stop.stderr
    for mid in MODULES:
        assert f"skid stop: {mid}: ok" in stop.stdout, stop.stdout
    code, summary = run.finish(timeout_s=120)
    assert code == 3 and summary["outcome"] == "aborted", "\n".join(run.err)
    assert summary["line_id"] == "cell-7"


def test_a_keyed_line_is_stopped_with_each_modules_key_and_a_missing_key_is_named(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    line_file = keyed_line(tmp_path)
    pump_key = tmp_path / "board_configs" / "keys" / "pump.key"
    with EmulatedLineProcesses(
        line_file, url, speed=SPEED, insecure=False, log_dir=tmp_path / "logs"
    ) as line:
        kept = pump_key.read_bytes()
        pump_key.unlink()  # the operator's copy of the pumps' key is missing
        first = skid(
            "stop", str(line_file), "--broker", url, "--line-id", line.line_id,
            "--reason", "drill, key lost",
        )  # fmt: skip
        assert first.returncode == EXIT_FAILURE, first.stdout + first.stderr
        for mid in ("pump_a", "pump_b"):
            assert f"{mid}: cannot sign" in first.stderr
            assert f"{mid}: NOT STOPPED: refused: unauthenticated" in first.stdout
        for mid in ("reactor1", "bpr1", "uv1", "valve1"):  # the reactor signed with its key
            assert f"skid stop: {mid}: ok" in first.stdout, first.stdout
        pump_key.write_bytes(kept)
        second = skid(
            "stop", str(line_file), "--broker", url, "--line-id", line.line_id,
            "--reason", "drill, key back",
        )  # fmt: skip
        assert second.returncode == EXIT_OK, second.stdout + second.stderr
        assert "cannot sign" not in second.stderr
        for mid in MODULES:
            assert f"skid stop: {mid}: ok" in second.stdout, second.stdout


def test_stop_that_fails_midway_still_reports_every_module_and_exits_1(monkeypatch, capsys):
    def broken_run(self, who, reason, timeout_s):
        raise RuntimeError("link lost")

    monkeypatch.setattr(control, "_connect", lambda url, name: FakeTransport())
    monkeypatch.setattr(control.LineStop, "run", broken_run)
    code = main(["stop", str(LINE), "--broker", URL, "--line-id", "l1", "--reason", "drill"])
    out = capsys.readouterr().out
    assert code == EXIT_FAILURE
    for mid in MODULES:
        assert f"{mid}: NOT CONFIRMED: stopped early: RuntimeError: link lost" in out
