"""Run ``tests/mpy/link_probe.py`` under the MicroPython Unix port, and the unreachable
brokers it is tested against (used by tests/test_link_micropython.py and
bench/bench_mpy_link.py)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

from host.micropython_unix import micropython_binary, micropython_env
from tests.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "mpy" / "link_probe.py"
LINE = "mpyline"
SLOW_DNS = ("slowdns",)
MODULE = "pump1"


def pump_config_bin(path: Path) -> Path:
    """The emulated pump's board file (``config.bin``) written to ``path``."""
    from edge.boardconfig import compile_config, emulate, load_board_config
    from edge.boardconfig.compile import board_file

    cfg = emulate(load_board_config(ROOT / "board_configs" / "pump.toml"))
    path.write_bytes(board_file(compile_config(cfg)))
    return path


class Probe:
    """One ``micropython link_probe.py`` process; its stdout lines are collected."""

    def __init__(self, config_bin, host, port, seconds, every_ms=200, queue=8, extra=()):
        args = [str(config_bin), host, str(port), LINE, str(seconds), str(every_ms), str(queue)]
        args += list(extra)
        self.proc = subprocess.Popen(
            [micropython_binary(), str(PROBE), *args],
            env=micropython_env(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, predicate, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return
            if self.proc.poll() is not None and not predicate(self):
                break
            time.sleep(0.05)
        raise AssertionError(f"{what}: not seen in {timeout_s} s; probe said {self.lines[-5:]}")

    def last_stat(self):
        stats = [ln.split() for ln in self.lines if ln.startswith("stat ")]
        if not stats:
            return None
        s = stats[-1]
        return {
            "up": s[3] == "1",
            "connects": int(s[4]),
            "fails": int(s[5]),
            "births": int(s[6]),
        }

    def result(self, timeout_s=30) -> dict:
        self.proc.wait(timeout_s)
        self._reader.join(5)
        done = [ln.split() for ln in self.lines if ln.startswith("done ")]
        assert done, f"probe ended without a result: {self.lines} {self.proc.stderr.read()}"
        d = [int(x) for x in done[-1][1:]]
        keys = ("max_late", "overruns", "ticks", "connects", "fails", "births", "dropped", "sent")
        return dict(zip(keys, d, strict=True))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class SilentBroker:
    """Accepts TCP connections and never sends a byte (a hung broker, a black hole)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for c in self.accepted:
            c.close()


def unreachable(kind):
    """(host, port, close) of a broker that cannot be reached: ``silent`` accepts and never
    answers, ``refused`` has nothing listening, ``dns`` is a name whose lookup blocks 1.5 s and fails (pass ``SLOW_DNS`` to the probe)."""
    if kind == "silent":
        silent = SilentBroker()
        return "127.0.0.1", silent.port, silent.close
    if kind == "refused":
        return "127.0.0.1", free_port(), lambda: None
    return "broker.invalid", 1883, lambda: None
