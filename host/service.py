"""``skid edge`` under systemd: the sd_notify runtime.

``SdNotifier`` speaks systemd's notify protocol (``sd_notify(3)``: one datagram of
``KEY=VALUE`` lines to the unix socket named by ``NOTIFY_SOCKET``) without any
dependency, and ``SystemdWatchdog`` plugs into ``edge.runner.EdgeRunner`` exactly where
the hardware watchdog does: ``feed()`` is called only after a completed tick, so READY=1
goes out after the first completed tick and WATCHDOG=1 only while ticks keep completing.
A stalled tick loop stops the pings and systemd kills and restarts the service after
``WatchdogSec``.  Without ``NOTIFY_SOCKET`` (not under systemd) it is all a no-op.

The installer that writes the unit this runtime runs under is ``host/installer.py``.
"""

from __future__ import annotations

import os
import socket
import sys
import time


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
