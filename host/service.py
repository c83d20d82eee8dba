"""Running ``skid edge`` as a systemd service on a Raspberry Pi.

Two halves:

* the process side: ``SdNotifier`` speaks systemd's notify protocol (``sd_notify(3)``: one
  datagram of ``KEY=VALUE`` lines to the unix socket named by ``NOTIFY_SOCKET``) without
  any dependency, and ``SystemdWatchdog`` plugs into ``edge.runner.EdgeRunner`` exactly
  where the hardware watchdog does: ``feed()`` is called only after a completed tick, so
  READY=1 goes out after the first completed tick and WATCHDOG=1 only while ticks keep
  completing.  A stalled tick loop stops the pings and systemd kills and restarts the
  service after ``WatchdogSec``.  Without ``NOTIFY_SOCKET`` (not under systemd) it is
  all a no-op.
* the installer side: ``plan_install`` turns a validated board config into the files
  ``skid install-service`` writes (unit, config copy, key, credentials, udev rule) and the
  commands it runs, so ``--dry-run`` and the real install share one description.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# --- sd_notify ------------------------------------------------------------------------------


class SdNotifier:
    """Sends sd_notify datagrams to ``address`` (the value of ``NOTIFY_SOCKET``).

    ``address`` may be a filesystem path or an abstract socket name starting with '@'.
    With no address every call is a no-op returning False.  Send errors never raise (the
    control loop must not die because systemd is restarting); they are counted in
    ``errors`` and the first one is reported on stderr."""

    def __init__(self, address: str | None):
        self.address = address or None
        self.sent = 0
        self.errors = 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ=None) -> SdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()  # Linux abstract namespace
        return self.address

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (e.g. "READY=1", "STATUS=...") as one datagram."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self._target())
        except OSError as exc:
            self.errors += 1
            if self.errors == 1:
                print(f"skid edge: sd_notify to {self.address}: {exc}", file=sys.stderr)
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ=None) -> float | None:
    """systemd's watchdog period for this process (``WATCHDOG_USEC``), or None when the
    service has no WatchdogSec or the variable is meant for another process
    (``WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class SystemdWatchdog:
    """The systemd side of the tick watchdog: ``feed()`` after every completed tick.

    The first feed sends READY=1 (the node is running: config loaded, hardware open, one
    tick done).  Later feeds send WATCHDOG=1, at most every ``period_s`` (a quarter of
    WatchdogSec: systemd recommends pinging at least every half; a datagram per 50 ms
    tick would be needless work).  ``stopping()`` sends STOPPING=1 when the node shuts
    down.  ``clock`` is injectable for tests."""

    def __init__(
        self,
        notifier: SdNotifier,
        watchdog_s: float | None,
        status: str = "",
        clock=time.monotonic,
    ):
        self.notifier = notifier
        self.period_s = watchdog_s / 4 if watchdog_s else None
        self.status = status
        self.clock = clock
        self.ready = False
        self.pings = 0
        self._last_ping: float | None = None

    def feed(self) -> None:
        if not self.ready:
            self.ready = True
            fields = ["READY=1"]
            if self.status:
                fields.append("STATUS=" + self.status)
            self.notifier.notify(*fields)
            self._ping(self.clock())
            return
        if self.period_s is None:
            return
        now = self.clock()
        if self._last_ping is None or now - self._last_ping >= self.period_s:
            self._ping(now)

    def _ping(self, now: float) -> None:
        if self.period_s is not None and self.notifier.notify("WATCHDOG=1"):
            self.pings += 1
        self._last_ping = now

    def stopping(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=stopping: outputs to their safe values")

    def close(self) -> None:
        self.notifier.close()


class WatchdogChain:
    """Feeds several watchdogs (the hardware one and systemd's) from one ``feed()``."""

    def __init__(self, *watchdogs):
        self.watchdogs = [w for w in watchdogs if w is not None]

    def feed(self) -> None:
        for w in self.watchdogs:
            w.feed()


def systemd_watchdog(status: str = "", environ=None) -> SystemdWatchdog | None:
    """A SystemdWatchdog when this process runs under systemd with NOTIFY_SOCKET, else None."""
    notifier = SdNotifier.from_env(environ)
    if not notifier.enabled:
        return None
    return SystemdWatchdog(notifier, watchdog_interval_s(environ), status)


# --- the installer ----------------------------------------------------------------------------

DEFAULT_PREFIX = "/etc/flowskid"
DEFAULT_USER = "flowskid"
UNIT_DIR = "/etc/systemd/system"
UDEV_RULE = "/etc/udev/rules.d/60-flowskid-watchdog.rules"
# Raspberry Pi OS groups owning /dev/gpiochip*, /dev/gpiomem, /dev/i2c-*, /dev/spidev*.
HARDWARE_GROUPS = ("gpio", "i2c", "spi")
USER_PATTERN = "[a-z_][a-z0-9_-]{0,31}"
# Environment variables `skid edge` reads its broker credentials from (host/edgeproc.py).
ENV_USERNAME = "SKID_MQTT_USERNAME"
ENV_PASSWORD = "SKID_MQTT_PASSWORD"


class InstallError(ValueError):
    """An install-service request that cannot be satisfied (exit 2)."""


@dataclass
class PlannedFile:
    path: str
    content: bytes
    mode: int
    owner: str = "root"
    secret: bool = False  # never printed (key, credentials)

    def describe(self) -> str:
        return f"{self.path} (mode {self.mode:04o}, owner {self.owner})"


@dataclass
class InstallPlan:
    module_id: str
    unit_name: str
    files: list[PlannedFile] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def watchdog_sec_ms(cfg: dict) -> int:
    """systemd's WatchdogSec for a module, in ms.

    The board config's ``watchdog.timeout_ms`` is the bound the module owner set for "the
    tick loop stopped" (the hardware watchdog uses the same bound); the loader guarantees
    it exceeds 2 x tick_ms.  One second is the floor: below that, a Python garbage
    collection pause or a slow SD card write on a Pi would restart a healthy service."""
    return max(1000, int(cfg["watchdog"]["timeout_ms"]))


def default_skid_path() -> str:
    """The ``skid`` entry point of the running installation (the venv's, not PATH's)."""
    candidate = Path(sys.executable).parent / "skid"
    if candidate.exists():
        return str(candidate)
    import shutil

    return shutil.which("skid") or "/usr/local/bin/skid"


def render_unit(
    *,
    module_id: str,
    kind: str,
    line: str,
    broker: str | None,
    config_path: str,
    skid: str,
    user: str,
    watchdog_ms: int,
    hardware_watchdog: bool,
    env_file: str,
    rename: bool = False,
) -> str:
    exec_start = f"{skid} edge {config_path}"
    if rename:
        exec_start += f" --module-id {module_id}"
    if broker:
        exec_start += f" --broker {broker}"
    exec_start += f" --line {line}"
    runtime_dir = f"flowskid-{module_id}"
    # A venv under /home must stay readable; everything else of /home is hidden.
    protect_home = "read-only" if skid.startswith(("/home/", "/root/")) else "yes"
    lines = [
        "# Written by `skid install-service`; see docs/deploy.md (Raspberry Pi service).",
        "[Unit]",
        f"Description=flowskid edge module {module_id} ({kind}) on line {line}",
        "Wants=network-online.target",
        "After=network-online.target",
        "# Give up after 5 failed starts in 60 s (the outputs stay safe: nothing drives them).",
        "StartLimitIntervalSec=60",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "# READY=1 after the first completed tick; WATCHDOG=1 only while ticks complete: a",
        "# stalled tick loop is killed (SIGABRT) and restarted after WatchdogSec.",
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={watchdog_ms}ms",
        "Restart=on-failure",
        "RestartSec=2s",
        "TimeoutStartSec=60s",
        "# SIGTERM: outputs to their safe values, DEATH published, then exit.",
        "TimeoutStopSec=15s",
        f"ExecStart={exec_start}",
        f"EnvironmentFile=-{env_file}",
        "Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
        f"Environment=LG_WD=%t/{runtime_dir}",
        f"User={user}",
    ]
    if user != "root":
        lines.append("SupplementaryGroups=" + " ".join(HARDWARE_GROUPS))
    lines += [
        f"RuntimeDirectory={runtime_dir}",
        f"WorkingDirectory=%t/{runtime_dir}",
        "# /var/lib/flowskid ($STATE_DIRECTORY): the clean-stop marker that lets the node",
        "# boot unlatched only after a clean stop (host/edgeproc.py boot_reset_cause).",
        "StateDirectory=flowskid",
        "# Hardening.  ProtectSystem=strict leaves /dev and /sys writable (the node needs",
        "# /dev/watchdog, /dev/gpiochip*, /dev/i2c-*, /dev/spidev* and /sys/class/pwm);",
        "# the only other path it writes is its RuntimeDirectory (lgpio's notify pipes),",
        "# so no ReadWritePaths= is needed.",
        "ProtectSystem=strict",
        f"ProtectHome={protect_home}",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "# No ProtectClock=/PrivateDevices=/DevicePolicy=: they restrict /dev to a list and",
        "# would cut the node off its watchdog, GPIO, I2C and SPI devices.",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "UMask=0077",
    ]
    if hardware_watchdog:
        lines += [
            "# Hardware watchdog: the node itself opens /dev/watchdog and feeds it after",
            "# every completed tick (watchdog.hardware = true); the device is single-open,",
            "# so do not also set RuntimeWatchdogSec= in /etc/systemd/system.conf.",
        ]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def _key_file(config_path: Path, key_file: str | None, prefix: str, user: str):
    """The key file to copy next to the installed config (relative key_file), or a note."""
    if not key_file:
        return None, (
            "module.key_file is not set: commands are NOT authenticated (see SPEC section 7)"
        )
    if Path(key_file).is_absolute():
        return None, f"module.key_file = {key_file!r} is absolute: put the key there on the Pi"
    rel = Path(key_file)
    if ".." in rel.parts:
        raise InstallError(
            f"{config_path}: module.key_file = {key_file!r}: must stay below the config's "
            "directory (no '..') so it can be installed beside it"
        )
    source = config_path.parent / rel
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InstallError(
            f"{config_path}: module.key_file = {key_file!r}: {source} cannot be read ({exc}); "
            "create it with `head -c 32 /dev/urandom > FILE`"
        ) from None
    return PlannedFile(str(Path(prefix) / rel), data, 0o400, user, secret=True), None


def _credentials_env(path: Path, module_id: str) -> bytes:
    import tomllib

    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InstallError(f"{path}: cannot be read as TOML ({exc})") from None
    entry = doc.get("modules", {}).get(module_id)
    if not isinstance(entry, dict) or not {"username", "password"} <= set(entry):
        have = ", ".join(sorted(doc.get("modules", {}))) or "none"
        raise InstallError(
            f"{path}: modules.{module_id}: missing (needs username and password; "
            f"modules present: {have})"
        )
    return f"{ENV_USERNAME}={entry['username']}\n{ENV_PASSWORD}={entry['password']}\n".encode()


def plan_install(
    config_path: str | Path,
    *,
    user: str = DEFAULT_USER,
    prefix: str = DEFAULT_PREFIX,
    broker: str | None = None,
    line: str = "line1",
    skid: str | None = None,
    credentials: str | Path | None = None,
    module_id: str | None = None,
) -> InstallPlan:
    """Validate and describe an installation; raises ConfigError or InstallError."""
    from edge.boardconfig import load_board_config
    from host.edgeproc import parse_broker_url
    from protocol.topics import TopicError, validate_id

    config_path = Path(config_path)
    cfg = load_board_config(config_path).data  # ConfigError: file, key, value, range
    module = cfg["module"]
    rename = module_id is not None and module_id != module["id"]
    if module_id is None:
        module_id = module["id"]
    try:
        validate_id("module", module_id)
    except TopicError as exc:
        raise InstallError(f"--module-id: {exc}") from None
    if module["target"] != "linux":
        raise InstallError(
            f"{config_path}: module.target = {module['target']!r}: a Raspberry Pi service "
            "runs target 'linux' (allowed: linux; use `skid bundle` for rp2/esp32 boards)"
        )
    if not re.fullmatch(USER_PATTERN, user):
        raise InstallError(f"--user {user!r}: expected a Linux user name {USER_PATTERN}")
    if not prefix.startswith("/"):
        raise InstallError(f"--prefix {prefix!r}: must be an absolute path")
    try:
        validate_id("line", line)
    except TopicError as exc:
        raise InstallError(f"--line: {exc}") from None
    if broker is not None:
        try:
            parse_broker_url(broker)
        except ValueError as exc:
            raise InstallError(f"--broker: {exc}") from None
        if "@" in broker:
            raise InstallError(
                "--broker: no credentials in the URL (they would show in `ps` and the unit); "
                "use --credentials DIR/credentials.toml from `skid broker-config`"
            )
    skid = skid or default_skid_path()
    installed_config = str(Path(prefix) / f"{module_id}.toml")
    env_file = str(Path(prefix) / f"{module_id}.env")
    unit_name = f"flowskid-{module_id}.service"
    hardware_wd = bool(cfg["watchdog"]["hardware"])
    plan = InstallPlan(module_id, unit_name)
    plan.files.append(PlannedFile(installed_config, config_path.read_bytes(), 0o644))
    key, note = _key_file(config_path, module.get("key_file"), prefix, user)
    if key is not None:
        plan.files.append(key)
    if note:
        plan.notes.append(note)
    if credentials is not None:
        plan.files.append(
            PlannedFile(
                env_file, _credentials_env(Path(credentials), module_id), 0o600, secret=True
            )
        )
    elif broker:
        plan.notes.append(
            f"no --credentials: the module connects without a username (anonymous); a "
            f"secured broker (skid broker-config) refuses it until {env_file} holds "
            f"{ENV_USERNAME}=... and {ENV_PASSWORD}=..."
        )
    unit = render_unit(
        module_id=module_id,
        kind=module["kind"],
        line=line,
        broker=broker,
        config_path=installed_config,
        skid=skid,
        user=user,
        watchdog_ms=watchdog_sec_ms(cfg),
        hardware_watchdog=hardware_wd,
        env_file=env_file,
        rename=rename,
    )
    plan.files.append(PlannedFile(f"{UNIT_DIR}/{unit_name}", unit.encode(), 0o644))
    if user != "root":
        plan.commands.append(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user]
        )
    if hardware_wd and user != "root":
        # /dev/watchdog is root-only by default; give it to the service user alone.
        rule = (
            "# Written by `skid install-service`: the flowskid edge service feeds the "
            "hardware watchdog.\n"
            f'KERNEL=="watchdog|watchdog[0-9]*", OWNER="{user}", MODE="0600"\n'
        )
        plan.files.append(PlannedFile(UDEV_RULE, rule.encode(), 0o644))
        plan.commands.append(["udevadm", "control", "--reload-rules"])
        plan.commands.append(["udevadm", "trigger", "--action=change", "--sysname-match=watchdog*"])
    plan.commands.append(["systemctl", "daemon-reload"])
    plan.commands.append(["systemctl", "enable", "--now", unit_name])
    return plan


def render_plan(plan: InstallPlan) -> str:
    """What ``--dry-run`` prints: every file with its path and content (secrets withheld),
    then the commands."""
    out = []
    for f in plan.files:
        out.append(f"--- {f.describe()}")
        if f.secret:
            out.append(f"<{len(f.content)} bytes, secret: not shown>")
        else:
            out.append(f.content.decode().rstrip("\n"))
    out.append("--- commands")
    for cmd in plan.commands:
        line = "$ " + " ".join(cmd)
        if cmd[0] == "useradd":
            line += "    # only if the user does not exist"
        out.append(line)
    return "\n".join(out) + "\n"


def apply_plan(plan: InstallPlan, root: str | Path = "/", run_commands: bool = True) -> None:
    """Write the files (under ``root``; owners set when running as root) and run the
    commands.  Secrets are written with their final mode from the start (no window in
    which they are readable by others)."""
    import pwd
    import subprocess

    root = Path(root)
    is_root = os.geteuid() == 0
    for cmd in plan.commands:
        if cmd[0] == "useradd" and run_commands:
            try:
                pwd.getpwnam(cmd[-1])
            except KeyError:
                subprocess.run(cmd, check=True)
    for f in plan.files:
        target = root / f.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
        try:
            os.fchmod(fd, f.mode)  # before any byte: an existing file keeps its old mode
            os.write(fd, f.content)
            if is_root and run_commands:
                entry = pwd.getpwnam(f.owner)
                os.fchown(fd, entry.pw_uid, entry.pw_gid)
        finally:
            os.close(fd)
    if run_commands:
        for cmd in plan.commands:
            if cmd[0] != "useradd":
                subprocess.run(cmd, check=True)
