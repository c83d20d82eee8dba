"""Serving the web view: where it binds (127.0.0.1 unless told otherwise; a non-local
address only with TLS and named users) and uvicorn on a thread of its own, so the
process's main thread keeps running the coordinator or the line follower."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

DEFAULT_BIND = "127.0.0.1:8600"
LOCAL_NAMES = ("localhost",)


class BindError(ValueError):
    """A ``--bind`` that is malformed, or refused (non-local without TLS and users)."""


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; PORT 0: any free port)."""
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host:
        raise BindError(f"--bind {text!r}: expected HOST:PORT, e.g. {DEFAULT_BIND}")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise BindError(f"--bind {text!r}: port {port!r} is not a number (0..65535)") from None
    if not 0 <= number <= 65535:
        raise BindError(f"--bind {text!r}: port {number} outside 0..65535")
    return host, number


def is_local(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tls_cert, tls_key, user_count: int) -> None:
    """BindError unless binding ``host`` is allowed: a loopback address always; any other
    only with a TLS certificate and key and at least one named user (``skid user add``),
    so nobody off this machine reads the line in clear or acts on it without logging in."""
    if (tls_cert is None) != (tls_key is None):
        raise BindError("--tls-cert and --tls-key go together: give both or neither")
    if is_local(host):
        return
    missing = []
    if tls_cert is None:
        missing.append("TLS (--tls-cert FILE --tls-key FILE)")
    if user_count == 0:
        missing.append("named users to log in (skid user add; --users-file)")
    if missing:
        raise BindError(
            f"refusing to serve the view on {host}, which is not a local address, without "
            + " and ".join(missing)
            + ": bind to 127.0.0.1 (the default) or give them"
        )


class ViewServer:
    """uvicorn serving ``app`` on ``host:port`` from a daemon thread.  The socket is bound
    in ``__init__`` (a taken port fails at once, port 0 gets a free one: ``url``)."""

    def __init__(self, app, host: str, port: int, tls_cert=None, tls_key=None):
        import uvicorn  # lazy: start-up cost of the CLI

        self.tls = tls_cert is not None
        if self.tls:  # fail here, with the file named, rather than in uvicorn's thread
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                str(tls_cert), str(tls_key)
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise BindError(f"cannot serve the view on {host}:{port}: {exc.strerror}") from None
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"{'https' if self.tls else 'http'}://{shown}:{self.port}/"
        config = uvicorn.Config(
            app,
            log_level="warning",
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="skid-view-http", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self, timeout_s: float = 10.0) -> None:
        self.thread.start()
        waited = threading.Event()
        for _ in range(int(timeout_s / 0.02)):
            if self.server.started or not self.thread.is_alive():
                break
            waited.wait(0.02)
        if not self.server.started:
            raise BindError(f"the view server did not start on {self.url}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


def user_count(users_path) -> int:
    from host.users import UserStore  # lazy: argon2

    path = Path(users_path)
    return len([u for u in UserStore(path).users.values() if u.get("active")])
