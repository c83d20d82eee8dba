"""The Raspberry Pi service: sd_notify over a real unix datagram socket (in process and
from a real ``skid edge`` run), and ``skid install-service`` (dry run, refusals, writing
into an alternate root, the unit checked by ``systemd-analyze verify``)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from host.cli import main
from host.service import SdNotifier, SystemdWatchdog, WatchdogChain, watchdog_interval_s

ROOT = Path(__file__).resolve().parents[1]
PUMP = ROOT / "board_configs" / "pump.toml"


def pi_config(tmp_path: Path, key: bool = True, **replace) -> Path:
    """board_configs/pump.toml moved to a Raspberry Pi (target linux: no bus pins,
    hardware PWM on BCM 18), with a key file beside it."""
    text = PUMP.read_text().replace('target = "rp2"', 'target = "linux"')
    text = text.replace("[buses.i2c0]\nsda = 4\nscl = 5\n", "").replace("pin = 16\n", "pin = 18\n")
    if key:
        text = text.replace('id = "pump1"', 'id = "pump1"\nkey_file = "keys/pump1.key"')
        (tmp_path / "keys").mkdir(exist_ok=True)
        (tmp_path / "keys" / "pump1.key").write_bytes(bytes(range(32)))
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "pi_pump.toml"
    path.write_text(text)
    return path


def receiver(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    return sock


def datagrams(sock: socket.socket, until: bytes, timeout: float = 30.0) -> list[bytes]:
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        got.append(data)
        if until in data:
            return got
    raise AssertionError(f"{until!r} not received within {timeout} s: {got}")


# --- sd_notify -------------------------------------------------------------------------------


def test_notifier_sends_to_path_and_abstract_sockets(tmp_path):
    sock = receiver(tmp_path / "notify")
    n = SdNotifier(str(tmp_path / "notify"))
    assert n.notify("READY=1", "STATUS=up")
    assert sock.recv(100) == b"READY=1\nSTATUS=up"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"flowskid-test-{os.getpid()}"
    abstract.bind("\0" + name)
    abstract.settimeout(5)
    assert SdNotifier("@" + name).notify("WATCHDOG=1")
    assert abstract.recv(100) == b"WATCHDOG=1"
    for s in (sock, abstract):
        s.close()


def test_notifier_is_a_noop_without_socket_and_never_raises(tmp_path):
    assert not SdNotifier.from_env({}).enabled
    assert SdNotifier.from_env({}).notify("READY=1") is False
    gone = SdNotifier(str(tmp_path / "nobody-listens"))
    assert gone.notify("WATCHDOG=1") is False and gone.errors == 1


def test_watchdog_interval_from_environment():
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000"}) == 2.0
    assert watchdog_interval_s({}) is None
    other = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval_s(other) is None


def test_systemd_watchdog_pings_only_after_completed_ticks(tmp_path):
    """READY=1 on the first completed tick; WATCHDOG=1 at most every WatchdogSec/4 and
    only from feed(): a tick loop that stops feeding stops the pings."""
    sock = receiver(tmp_path / "n")
    sock.settimeout(0.05)
    now = [0.0]
    wd = SystemdWatchdog(SdNotifier(str(tmp_path / "n")), 1.0, "pump1", clock=lambda: now[0])

    def drain():
        out = []
        while True:
            try:
                out.append(sock.recv(200))
            except TimeoutError:
                return out

    assert drain() == []  # nothing before the first tick
    wd.feed()
    assert drain() == [b"READY=1\nSTATUS=pump1", b"WATCHDOG=1"]
    for _ in range(4):  # 50 ms ticks within one quarter period: no extra pings
        now[0] += 0.05
        wd.feed()
    assert drain() == []
    now[0] += 0.06
    wd.feed()
    assert drain() == [b"WATCHDOG=1"]
    now[0] += 5.0  # the tick loop stalls: time passes, nothing is fed, nothing is sent
    assert drain() == []
    wd.stopping()
    assert drain()[0].startswith(b"STOPPING=1")
    sock.close()


def test_chain_feeds_every_watchdog():
    fed = []

    class W:
        def __init__(self, name):
            self.name = name

        def feed(self):
            fed.append(self.name)

    WatchdogChain(W("hardware"), None, W("systemd")).feed()
    assert fed == ["hardware", "systemd"]


def test_skid_edge_notifies_ready_watchdog_and_stopping(tmp_path):
    """A real `skid edge --emulate` process under a fake systemd: NOTIFY_SOCKET and
    WATCHDOG_USEC set, datagrams received on a unix socket."""
    sock = receiver(tmp_path / "notify")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="400000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "edge", str(PUMP), "--emulate", "--insecure"]
        + ["--duration", "1.5"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        got = datagrams(sock, b"STOPPING=1")
    finally:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert got[0].startswith(b"READY=1\n") and b"module pump1" in got[0]
    pings = got.count(b"WATCHDOG=1")
    # 1.5 s of ticks, one ping per 0.1 s at most: about 15 (the first with READY).
    assert 8 <= pings <= 17, got
    assert got[-1].startswith(b"STOPPING=1")
    assert got.index(b"WATCHDOG=1") > 0  # READY came first
    sock.close()


# --- install-service -------------------------------------------------------------------------


def test_dry_run_prints_everything_and_touches_nothing(tmp_path, capsys):
    cfg = pi_config(tmp_path)
    prefix = tmp_path / "etc-flowskid"
    rc = main(
        ["install-service", str(cfg), "--dry-run", "--prefix", str(prefix)]
        + ["--broker", "mqtt://broker.lan:1883", "--line", "demo", "--skid", "/opt/fs/bin/skid"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert not prefix.exists()
    assert not Path("/etc/systemd/system/flowskid-pump1.service").exists()
    assert f"--- {prefix}/pump1.toml (mode 0644, owner root)" in out
    assert cfg.read_text().strip() in out  # the config copy, verbatim
    assert f"--- {prefix}/keys/pump1.key (mode 0400, owner flowskid)" in out
    assert "<32 bytes, secret: not shown>" in out
    assert "--- /etc/systemd/system/flowskid-pump1.service" in out
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=1000ms",  # pump.toml watchdog.timeout_ms
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=flowskid",
        "SupplementaryGroups=gpio i2c spi",
        f"ExecStart=/opt/fs/bin/skid edge {prefix}/pump1.toml --broker mqtt://broker.lan:1883 "
        "--line demo",
        'KERNEL=="watchdog|watchdog[0-9]*", OWNER="flowskid", MODE="0600"',
        "$ systemctl daemon-reload",
        "$ systemctl enable --now flowskid-pump1.service",
    ):
        assert line in out.splitlines(), line


def test_watchdog_sec_follows_the_board_config(tmp_path, capsys):
    cfg = pi_config(tmp_path, key=False, **{"timeout_ms = 1000": "timeout_ms = 4000"})
    assert main(["install-service", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "WatchdogSec=4000ms" in out.splitlines()
    no_hw = pi_config(tmp_path, key=False, **{"hardware = true": "hardware = false"})
    assert main(["install-service", str(no_hw), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "udev" not in out and "/dev/watchdog and feeds it" not in out


def test_invalid_config_is_refused(tmp_path, capsys):
    cfg = pi_config(tmp_path, **{"tick_ms = 50": "tick_ms = 5"})
    assert main(["install-service", str(cfg), "--dry-run"]) == 2
    err = capsys.readouterr().err
    for word in ("pi_pump.toml", "module.tick_ms", "= 5", "10"):
        assert word in err, (word, err)
    # A valid board config for another target: a Pi service runs target linux.
    assert main(["install-service", str(PUMP), "--dry-run"]) == 2
    err = capsys.readouterr().err
    for word in ("pump.toml", "module.target", "'rp2'", "linux"):
        assert word in err, (word, err)


def test_bad_arguments_are_refused(tmp_path, capsys):
    cfg = pi_config(tmp_path)
    assert main(["install-service", str(cfg), "--dry-run", "--broker", "http://x"]) == 2
    assert "--broker" in capsys.readouterr().err
    url = "mqtt://u:secret@broker"
    assert main(["install-service", str(cfg), "--dry-run", "--broker", url]) == 2
    assert "credentials" in capsys.readouterr().err
    (tmp_path / "keys" / "pump1.key").unlink()
    assert main(["install-service", str(cfg), "--dry-run"]) == 2
    assert "module.key_file" in capsys.readouterr().err


def test_not_root_without_dry_run_is_a_clear_error(tmp_path, capsys, monkeypatch):
    cfg = pi_config(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["install-service", str(cfg)]) == 2
    assert "must run as root" in capsys.readouterr().err


def test_root_dir_install_writes_files_with_modes_and_credentials(tmp_path, capsys):
    cfg = pi_config(tmp_path)
    creds = tmp_path / "credentials.toml"
    creds.write_text(
        '[modules.pump_a]\nusername = "demo.pump_a"\npassword = "s3cret-pw"\n'
        '[modules.pump_b]\nusername = "demo.pump_b"\npassword = "other"\n'
    )
    root = tmp_path / "sdcard"
    skid = shutil.which("skid") or str(Path(sys.executable).parent / "skid")
    args = ["install-service", str(cfg), "--line", "demo", "--module-id", "pump_a"]
    args += ["--broker", "mqtt://127.0.0.1:1883", "--credentials", str(creds), "--skid", skid]
    assert main([*args, "--dry-run"]) == 0
    assert "s3cret-pw" not in capsys.readouterr().out
    assert main([*args, "--root", str(root)]) == 0
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and "systemctl enable --now flowskid-pump_a.service" in err
    etc = root / "etc" / "flowskid"
    env = etc / "pump_a.env"
    assert env.read_text() == "SKID_MQTT_USERNAME=demo.pump_a\nSKID_MQTT_PASSWORD=s3cret-pw\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE((etc / "keys" / "pump1.key").stat().st_mode) == 0o400
    assert (etc / "pump_a.toml").read_text() == cfg.read_text()
    unit = root / "etc" / "systemd" / "system" / "flowskid-pump_a.service"
    text = unit.read_text()
    assert f"ExecStart={skid} edge /etc/flowskid/pump_a.toml --module-id pump_a" in text
    assert "EnvironmentFile=-/etc/flowskid/pump_a.env" in text
    # systemd's own parser: no unknown key, no unparsable value (it warns on stderr).
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (package systemd) is needed to check the unit"
    res = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
