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
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho


class BrokerError(RuntimeError):
    """The broker could not be started (the message includes its log)."""


class _PortInUse(Exception):
    """Mosquitto exited at start-up because its port was taken."""


def find_mosquitto() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


# Ports are drawn at random from below the kernel's ephemeral range: there no outgoing
# connection (a test's MQTT client, another pytest-xdist worker's) and no ``bind(0)`` can
# take a port between ``free_port()`` and the broker's bind, or while a broker is stopped
# for a restart on the same port.  What remains (another worker or another suite on the
# machine drawing the same port) is caught by the bind check here and by the retry in
# ``MosquittoBroker.start``.
PORT_LOW = 20_000
_rng = random.SystemRandom()  # not the global ``random``: Hypothesis seeds that per test
_handed_out: set[int] = set()  # never the same port twice in one process


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, and that this process has not handed out before."""
    high = min(_ephemeral_range()[0], 65536) - 1
    if high - PORT_LOW >= 1000:
        for _ in range(200):
            port = _rng.randint(PORT_LOW, high)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    while True:  # an unusual port range: let the kernel choose
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


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
        self._own_port = not port  # chosen here: may be replaced until first served
        self._served = False
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
        """Start and wait until it accepts connections.

        If its port was taken in the meantime (another test process), a port this instance
        chose itself and never served on is replaced by a fresh one; a port given by the
        caller, or one clients already know (a restart), is retried until it comes free or
        ``start_timeout_s`` passes.
        """
        if self.running:
            return self
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                return self._start_once(deadline)
            except _PortInUse:
                if self._own_port and not self._served:
                    self.port = free_port(self.host)
                    self._write_config()
                elif time.monotonic() > deadline:
                    raise BrokerError(
                        f"port {self.port} stayed in use for {self.start_timeout_s} s:\n"
                        + self.log()
                    ) from None
                else:
                    time.sleep(0.1)

    def _start_once(self, deadline: float) -> MosquittoBroker:
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        accepted_at = None  # when something first accepted a connection on the port
        while True:
            if self._proc.poll() is not None:
                self._reap()
                if b"Address already in use" in self.log_path.read_bytes()[log_start:]:
                    raise _PortInUse(self.port)
                raise BrokerError(f"mosquitto exited at start-up:\n{self.log()}")
            if accepted_at is None and self._accepts():
                accepted_at = time.monotonic()
            # The listener may be another process's (the port was taken after it was
            # chosen): ours once mosquitto logs that it runs, or, with a config that does
            # not log notices, once it has stayed up for a second.
            if accepted_at is not None and (
                b" running" in self.log_path.read_bytes()[log_start:]
                or time.monotonic() - accepted_at > 1.0
            ):
                self._served = True
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} "
                    f"within {self.start_timeout_s} s:\n{self.log()}"
                )
            time.sleep(0.02)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

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


def retained_topics(
    port: int, patterns: list[str], host: str = "127.0.0.1", timeout_s: float = 10.0
) -> list[str]:
    """The topics of the retained messages under ``patterns`` on a running broker.

    No settling time: the broker queues a subscription's retained messages as it handles
    the SUBSCRIBE, ahead of anything the same client publishes afterwards; so once a marker
    published after the SUBACK has come back, every retained message has arrived.
    """
    marker = "flowskid-test/marker/" + uuid.uuid4().hex
    found: list[str] = []
    subscribed, marked = threading.Event(), threading.Event()

    def on_message(_client, _userdata, msg):
        if msg.topic == marker:
            marked.set()
        elif msg.retain:
            found.append(msg.topic)

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    try:
        client.subscribe([(p, 1) for p in patterns] + [(marker, 1)])
        assert subscribed.wait(timeout_s), "no SUBACK from the broker"
        client.publish(marker, b"", qos=1)
        assert marked.wait(timeout_s), "the marker message never came back"
    finally:
        client.disconnect()
        client.loop_stop()
    return list(found)
