"""Mosquitto configuration that locks a line's broker down (``skid broker-config``).

One account per module, one for the host (coordinator) and optional operator accounts;
an ACL that gives each exactly the topics of its role (protocol/topics.py, host/control.py):

* module ``M``: write ``.../M/{birth,death,data,event,ack}`` (death is also its MQTT
  will, which Mosquitto checks at CONNECT), read ``.../M/cmd`` and ``.../host/{lease,state}``;
* host: read ``skid/v1/<line>/#``, write every module's ``cmd`` and ``host/{lease,state,
  control_reply,run}``;
* operator: write ``host/control``, read ``host/{control_reply,state,lease,run}`` and every
  module's ``birth, death, data, event, ack`` (``skid status``, ``skid hold`` ...).

Everything else is denied (an ACL file denies what no line grants).  Explicit ``user``
blocks rather than ``pattern`` lines: a pattern applies to every account, so a module
pattern with ``%u`` would also grant the host and operator accounts module rights.

Passwords are random (``secrets.token_urlsafe``: URL, TOML and env-file safe), stored in
Mosquitto's PBKDF2-SHA512 format (``$7$``), hashed by ``mosquitto_passwd -U`` when it is
installed (plain file converted in place, so no password is ever on a command line) or by
``hash_password`` here otherwise.  The plain passwords go only to ``credentials.toml``
(mode 0600) for provisioning; nothing here prints them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from protocol.topics import (
    HOST_SEGMENT,
    PREFIX,
    TOPIC_ACK,
    TOPIC_BIRTH,
    TOPIC_CMD,
    TOPIC_DATA,
    TOPIC_DEATH,
    TOPIC_EVENT,
    TOPIC_LEASE,
    TOPIC_STATE,
    validate_id,
)
from protocol.wire import ID_RULE

DEFAULT_CONF_DIR = "/etc/mosquitto/flowskid"
DEFAULT_PERSISTENCE_DIR = "/var/lib/mosquitto/"
# Mosquitto 2.0's own mosquitto_passwd uses 101 iterations.  The passwords are 144 random
# bits, so the count is not what keeps them from an offline guess; it only costs CPU on
# every connect.
PBKDF2_ITERATIONS = 101
MODULE_WRITES = (TOPIC_BIRTH, TOPIC_DEATH, TOPIC_DATA, TOPIC_EVENT, TOPIC_ACK)
CONTROL = "control"
CONTROL_REPLY = "control_reply"
RUN = "run"  # the coordinator's run status (host/runstatus.py), read by viewers


class BrokerConfigError(ValueError):
    """Bad input to broker-config (exit 2)."""


@dataclass
class Account:
    role: str  # "module", "host" or "operator"
    name: str  # module id, "host" or the operator's name
    username: str
    password: str


def username_for(line: str, role: str, name: str) -> str:
    """``<line>.<module>``, ``<line>.host``, ``<line>.operator.<name>``: '.' is in no id, so
    no two roles can share a username, and it needs no escaping in an mqtt:// URL."""
    if role == "operator":
        return f"{line}.operator.{name}"
    return f"{line}.{name}"


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS):
    """Mosquitto's ``$7$`` (PBKDF2-HMAC-SHA512) password-file hash."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    salt_b64 = base64.b64encode(salt).decode()
    return f"$7${iterations}${salt_b64}${base64.b64encode(digest).decode()}"


def find_mosquitto_passwd() -> str | None:
    for candidate in (shutil.which("mosquitto_passwd"), "/usr/bin/mosquitto_passwd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def make_accounts(line: str, modules: list[str], operators: list[str]) -> list[Account]:
    validate_id("line", line)
    accounts = [
        Account("host", HOST_SEGMENT, username_for(line, "host", HOST_SEGMENT), _password())
    ]
    for mid in modules:
        validate_id("module", mid)
        accounts.append(Account("module", mid, username_for(line, "module", mid), _password()))
    seen = set()
    for name in operators:
        try:
            validate_id("module", name)  # same pattern; "host" reserved
        except ValueError:
            raise BrokerConfigError(
                f"--operators: {name!r}: expected {ID_RULE}, not 'host'"
            ) from None
        if name in seen:
            raise BrokerConfigError(f"--operators: {name!r} given twice")
        seen.add(name)
        accounts.append(
            Account("operator", name, username_for(line, "operator", name), _password())
        )
    return accounts


def _password() -> str:
    return secrets.token_urlsafe(18)  # 144 bits, 24 characters of [A-Za-z0-9_-]


def render_acl(line: str, accounts: list[Account]) -> str:
    base = PREFIX + line + "/"
    host = base + HOST_SEGMENT + "/"
    out = [
        f"# Written by `skid broker-config` for line {line}; see docs/deploy.md.",
        "# Anything not granted here is denied: Mosquitto 2 drops an unauthorised publish",
        "# (MQTT 3.1.1: silently; MQTT 5: PUBACK 'not authorized') and delivers a message",
        "# only to subscribers allowed to read its topic.",
        "",
    ]
    for acc in accounts:
        out.append(f"# {acc.role} {acc.name}")
        out.append(f"user {acc.username}")
        if acc.role == "module":
            mine = base + acc.name + "/"
            out += [f"topic write {mine}{kind}" for kind in MODULE_WRITES]
            out.append(f"topic read {mine}{TOPIC_CMD}")
            out.append(f"topic read {host}{TOPIC_LEASE}")
            out.append(f"topic read {host}{TOPIC_STATE}")
        elif acc.role == "host":
            out.append(f"topic read {base}#")
            out.append(f"topic write {base}+/{TOPIC_CMD}")
            for kind in (TOPIC_LEASE, TOPIC_STATE, CONTROL_REPLY, RUN):
                out.append(f"topic write {host}{kind}")
        else:
            out.append(f"topic write {host}{CONTROL}")
            for kind in (CONTROL_REPLY, TOPIC_STATE, TOPIC_LEASE, RUN):
                out.append(f"topic read {host}{kind}")
            out += [f"topic read {base}+/{kind}" for kind in MODULE_WRITES]
        out.append("")
    return "\n".join(out)


def render_conf(
    line: str,
    *,
    conf_dir: str = DEFAULT_CONF_DIR,
    persistence_dir: str = DEFAULT_PERSISTENCE_DIR,
    port: int = 1883,
    bind: str | None = None,
    tls_port: int | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> str:
    conf = conf_dir.rstrip("/")
    out = [
        f"# Written by `skid broker-config` for line {line}; see docs/deploy.md.",
        "# Password file and ACL apply to every listener.",
        "per_listener_settings false",
        "",
        f"listener {port}" + (f" {bind}" if bind else ""),
    ]
    if tls_port is not None:
        out += [
            "# TLS for the host and operator tools (the edge MQTT link speaks plain TCP).",
            f"listener {tls_port}",
            f"certfile {conf}/{tls_cert}",
            f"keyfile {conf}/{tls_key}",
            "tls_version tlsv1.2",
        ]
    out += [
        "",
        "allow_anonymous false",
        f"password_file {conf}/passwords",
        f"acl_file {conf}/acl",
        "",
        "# The host keeps its session and queued QoS 1 messages across a broker restart;",
        "# saved on shutdown and every 30 s (a crash loses at most that much).",
        "persistence true",
        f"persistence_location {persistence_dir.rstrip('/')}/",
        "autosave_interval 30",
        "",
        "# Small control messages: send at once, no Nagle delay.",
        "set_tcp_nodelay true",
        "connection_messages true",
        "",
    ]
    return "\n".join(out)


def render_credentials(line: str, accounts: list[Account]) -> str:
    out = [
        f"# Written by `skid broker-config` for line {line}: MQTT credentials.  SECRET: keep",
        "# mode 0600; give each board only its own entry (board_secrets.py MQTT_USER /",
        "# MQTT_PASSWORD, or `skid install-service --credentials` on a Raspberry Pi).",
        "",
        f'line = "{line}"',
        "",
    ]
    for acc in accounts:
        section = {"host": "host", "module": f"modules.{acc.name}"}.get(
            acc.role, f"operators.{acc.name}"
        )
        out += [f"[{section}]", f'username = "{acc.username}"', f'password = "{acc.password}"', ""]
    return "\n".join(out)


def write_password_file(path: Path, accounts: list[Account], use_binary: bool = True) -> str:
    """Write the hashed password file; returns how it was hashed."""
    binary = find_mosquitto_passwd() if use_binary else None
    if binary is not None:
        # Plain file first (0600 from creation), converted in place by `mosquitto_passwd
        # -U` (PBKDF2-SHA512 by default in Mosquitto 2): no password on a command line.
        plain = "".join(f"{a.username}:{a.password}\n" for a in accounts)
        _write_private(path, plain)
        subprocess.run([binary, "-U", str(path)], check=True, capture_output=True)
        return "mosquitto_passwd"
    text = "".join(f"{a.username}:{hash_password(a.password)}\n" for a in accounts)
    _write_private(path, text)
    return "python"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@dataclass
class Generated:
    line: str
    accounts: list[Account]
    files: list[Path]
    hashed_by: str


def generate(
    line: str,
    modules: list[str],
    out_dir: str | Path,
    *,
    operators: list[str] = (),
    conf_dir: str = DEFAULT_CONF_DIR,
    persistence_dir: str = DEFAULT_PERSISTENCE_DIR,
    port: int = 1883,
    bind: str | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    tls_port: int = 8883,
    use_mosquitto_passwd: bool = True,
) -> Generated:
    """Write mosquitto.conf, passwords, acl, credentials.toml (and the TLS pair) to
    ``out_dir``; paths inside mosquitto.conf point at ``conf_dir`` (where they go on the
    broker machine)."""
    if (tls_cert is None) != (tls_key is None):
        raise BrokerConfigError("--tls-cert and --tls-key go together")
    for name, value in (("--port", port), ("--tls-port", tls_port)):
        if not 1 <= value <= 65535:
            raise BrokerConfigError(f"{name} {value}: allowed 1..65535")
    if tls_cert is not None and tls_port == port:
        raise BrokerConfigError(f"--tls-port {tls_port}: must differ from --port {port}")
    accounts = make_accounts(line, list(modules), list(operators))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    tls_names = (None, None)
    if tls_cert is not None:
        cert, key = Path(tls_cert), Path(tls_key)
        for p in (cert, key):
            if not p.is_file():
                raise BrokerConfigError(f"{p}: TLS file not found")
        tls_names = (cert.name, key.name)
        shutil.copyfile(cert, out / cert.name)
        _write_private(out / key.name, key.read_text())
        files += [out / cert.name, out / key.name]
    conf = render_conf(
        line,
        conf_dir=conf_dir,
        persistence_dir=persistence_dir,
        port=port,
        bind=bind,
        tls_port=tls_port if tls_cert is not None else None,
        tls_cert=tls_names[0],
        tls_key=tls_names[1],
    )
    (out / "mosquitto.conf").write_text(conf)
    (out / "acl").write_text(render_acl(line, accounts))
    hashed_by = write_password_file(out / "passwords", accounts, use_mosquitto_passwd)
    _write_private(out / "credentials.toml", render_credentials(line, accounts))
    files += [out / n for n in ("mosquitto.conf", "acl", "passwords", "credentials.toml")]
    return Generated(line, accounts, files, hashed_by)
