"""``skid install-service``: a board config turned into a systemd service on a Pi.

``plan_install`` turns a validated board config into the files the command writes (unit,
config copy, key, credentials, udev rule) and the commands it runs, so ``--dry-run`` and
the real install share one description.  The unit runs ``skid edge`` under the sd_notify
runtime of ``host/service.py``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge.boardconfig import load_board_config
from host.brokerurl import ENV_PASSWORD, ENV_USERNAME, parse_broker_url
from protocol.topics import TopicError, validate_id

DEFAULT_PREFIX = "/etc/flowskid"
DEFAULT_USER = "flowskid"
UNIT_DIR = "/etc/systemd/system"
UDEV_RULE = "/etc/udev/rules.d/60-flowskid-watchdog.rules"
# Raspberry Pi OS groups owning /dev/gpiochip*, /dev/gpiomem, /dev/i2c-*, /dev/spidev*.
HARDWARE_GROUPS = ("gpio", "i2c", "spi")
USER_PATTERN = "[a-z_][a-z0-9_-]{0,31}"


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
    return shutil.which("skid") or "/usr/local/bin/skid"


# --- the unit file ----------------------------------------------------------------------------

_HARDENING = [
    "# Hardening.  ProtectSystem=strict leaves /dev and /sys writable (the node needs",
    "# /dev/watchdog, /dev/gpiochip*, /dev/i2c-*, /dev/spidev* and /sys/class/pwm);",
    "# the only other path it writes is its RuntimeDirectory (lgpio's notify pipes),",
    "# so no ReadWritePaths= is needed.",
    "ProtectSystem=strict",
    "ProtectHome={protect_home}",
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

_HARDWARE_WATCHDOG_NOTE = [
    "# Hardware watchdog: the node itself opens /dev/watchdog and feeds it after",
    "# every completed tick (watchdog.hardware = true); the device is single-open,",
    "# so do not also set RuntimeWatchdogSec= in /etc/systemd/system.conf.",
]


def _exec_start(skid, config_path, module_id, rename, broker, line) -> str:
    exec_start = f"{skid} edge {config_path}"
    if rename:
        exec_start += f" --module-id {module_id}"
    if broker:
        exec_start += f" --broker {broker}"
    return exec_start + f" --line {line}"


def _unit_section(module_id: str, kind: str, line: str) -> list[str]:
    return [
        "# Written by `skid install-service`; see docs/deploy.md (Raspberry Pi service).",
        "[Unit]",
        f"Description=flowskid edge module {module_id} ({kind}) on line {line}",
        "Wants=network-online.target",
        "After=network-online.target",
        "# Give up after 5 failed starts in 60 s (the outputs stay safe: nothing drives them).",
        "StartLimitIntervalSec=60",
        "StartLimitBurst=5",
    ]


def _service_section(exec_start, watchdog_ms, env_file, runtime_dir, user) -> list[str]:
    lines = [
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
    return lines + [
        f"RuntimeDirectory={runtime_dir}",
        f"WorkingDirectory=%t/{runtime_dir}",
        "# /var/lib/flowskid ($STATE_DIRECTORY): the clean-stop marker that lets the node",
        "# boot unlatched only after a clean stop (host/edgeproc.py boot_reset_cause).",
        "StateDirectory=flowskid",
    ]


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
    exec_start = _exec_start(skid, config_path, module_id, rename, broker, line)
    runtime_dir = f"flowskid-{module_id}"
    # A venv under /home must stay readable; everything else of /home is hidden.
    protect_home = "read-only" if skid.startswith(("/home/", "/root/")) else "yes"
    lines = _unit_section(module_id, kind, line) + [""]
    lines += _service_section(exec_start, watchdog_ms, env_file, runtime_dir, user)
    lines += [entry.format(protect_home=protect_home) for entry in _HARDENING]
    if hardware_watchdog:
        lines += _HARDWARE_WATCHDOG_NOTE
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


# --- the plan ---------------------------------------------------------------------------------


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


def _check_id(kind: str, option: str, value: str) -> None:
    try:
        validate_id(kind, value)
    except TopicError as exc:
        raise InstallError(f"{option}: {exc}") from None


def _check_request(config_path: Path, module: dict, user: str, prefix: str, line, broker):
    """The command-line options and the config's target, checked (InstallError)."""
    if module["target"] != "linux":
        raise InstallError(
            f"{config_path}: module.target = {module['target']!r}: a Raspberry Pi service "
            "runs target 'linux' (allowed: linux; use `skid bundle` for rp2/esp32 boards)"
        )
    if not re.fullmatch(USER_PATTERN, user):
        raise InstallError(f"--user {user!r}: expected a Linux user name {USER_PATTERN}")
    if not prefix.startswith("/"):
        raise InstallError(f"--prefix {prefix!r}: must be an absolute path")
    _check_id("line", "--line", line)
    if broker is None:
        return
    try:
        parse_broker_url(broker)
    except ValueError as exc:
        raise InstallError(f"--broker: {exc}") from None
    if "@" in broker:
        raise InstallError(
            "--broker: no credentials in the URL (they would show in `ps` and the unit); "
            "use --credentials DIR/credentials.toml from `skid broker-config`"
        )


def _plan_secrets(plan, config_path, module, prefix, user, credentials, broker, env_file):
    """The key file and the broker credentials' EnvironmentFile, or notes on their lack."""
    key, note = _key_file(config_path, module.get("key_file"), prefix, user)
    if key is not None:
        plan.files.append(key)
    if note:
        plan.notes.append(note)
    if credentials is not None:
        content = _credentials_env(Path(credentials), plan.module_id)
        plan.files.append(PlannedFile(env_file, content, 0o600, secret=True))
    elif broker:
        plan.notes.append(
            f"no --credentials: the module connects without a username (anonymous); a "
            f"secured broker (skid broker-config) refuses it until {env_file} holds "
            f"{ENV_USERNAME}=... and {ENV_PASSWORD}=..."
        )


def _plan_commands(plan: InstallPlan, user: str, hardware_wd: bool) -> None:
    """The service user, the watchdog's udev rule, and enabling the unit."""
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
    plan.commands.append(["systemctl", "enable", "--now", plan.unit_name])


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
    config_path = Path(config_path)
    cfg = load_board_config(config_path).data  # ConfigError: file, key, value, range
    module = cfg["module"]
    rename = module_id is not None and module_id != module["id"]
    if module_id is None:
        module_id = module["id"]
    _check_id("module", "--module-id", module_id)
    _check_request(config_path, module, user, prefix, line, broker)
    installed_config = str(Path(prefix) / f"{module_id}.toml")
    env_file = str(Path(prefix) / f"{module_id}.env")
    plan = InstallPlan(module_id, f"flowskid-{module_id}.service")
    plan.files.append(PlannedFile(installed_config, config_path.read_bytes(), 0o644))
    _plan_secrets(plan, config_path, module, prefix, user, credentials, broker, env_file)
    hardware_wd = bool(cfg["watchdog"]["hardware"])
    unit = render_unit(
        module_id=module_id,
        kind=module["kind"],
        line=line,
        broker=broker,
        config_path=installed_config,
        skid=skid or default_skid_path(),
        user=user,
        watchdog_ms=watchdog_sec_ms(cfg),
        hardware_watchdog=hardware_wd,
        env_file=env_file,
        rename=rename,
    )
    plan.files.append(PlannedFile(f"{UNIT_DIR}/{plan.unit_name}", unit.encode(), 0o644))
    _plan_commands(plan, user, hardware_wd)
    return plan


# --- dry run and install -----------------------------------------------------------------


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
