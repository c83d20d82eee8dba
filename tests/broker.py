"""A private Mosquitto broker for tests: start, stop, kill and restart on the same port.

    with MosquittoBroker() as broker:          # or the ``broker`` pytest fixture
        client.connect(broker.host, broker.port)
        broker.stop(); broker.start()          # outage; same port afterwards

Each instance writes its config (and optional password/ACL files, persistence database)
into its own temporary directory, listens only on 127.0.0.1, and is always cleaned up by
``close()`` (the context manager and the fixture call it).  Later tests reuse it with
``users={"name": "password"}`` (password file via ``mosquitto_passwd``), ``acl="..."``
(ACL file text), ``persistence=True`` and ``extra_config=[...]`` lines.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """The broker could not be started (the message includes its log)."""


def find_mosquitto() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MosquittoBroker:
    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        users: dict[str, str] | None = None,
        acl: str | None = None,
        allow_anonymous: bool | None = None,
        persistence: bool = False,
        extra_config: tuple[str, ...] | list[str] = (),
        start_timeout_s: float = 10.0,
        binary: str | None = None,
    ):
        self.binary = binary or find_mosquitto()
        if self.binary is None:
            raise BrokerError(
                "mosquitto binary not found: install the Debian package 'mosquitto' "
                "(`make mosquitto`)"
            )
        self.host = host
        self.port = port or free_port(host)
        self.users = dict(users or {})
        self.acl = acl
        self.allow_anonymous = (not self.users) if allow_anonymous is None else allow_anonymous
        self.persistence = persistence
        self.extra_config = list(extra_config)
        self.start_timeout_s = start_timeout_s
        self.dir = Path(tempfile.mkdtemp(prefix="flowskid-mosquitto-"))
        self.config_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self._write_config()

    # -------------------------------------------------------------- configuration

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto would switch to user 'mosquitto', which cannot read the
            # private temp dir (password/ACL files, persistence database).
            lines.append("user root")
        if self.persistence:
            lines.append(f"persistence_location {self.dir}/")
        if self.users:
            pwfile = self.dir / "passwords"
            pwfile.write_text("")
            passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for name, password in self.users.items():
                subprocess.run(
                    [passwd, "-b", str(pwfile), name, password],
                    check=True,
                    capture_output=True,
                )
            lines.append(f"password_file {pwfile}")
        if self.acl is not None:
            aclfile = self.dir / "acl"
            aclfile.write_text(self.acl)
            lines.append(f"acl_file {aclfile}")
        lines.extend(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    # -------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> MosquittoBroker:
        if self.running:
            return self
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                self._reap()
                raise BrokerError(f"mosquitto exited at start-up:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} "
                    f"within {self.start_timeout_s} s:\n{self.log()}"
                )
            time.sleep(0.02)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate (SIGTERM: clients see their connection closed); wait for the exit."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown (and no persistence save)."""
        self._end(signal.SIGKILL, 5.0)

    def restart(self) -> MosquittoBroker:
        """Stop, then start again on the same port."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the broker and delete its directory (idempotent)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _end(self, sig: int, timeout_s: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._reap()

    def _reap(self) -> None:
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"MosquittoBroker({self.host}:{self.port}, {state})"
