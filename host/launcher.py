"""Start and stop the processes of an emulated line in broker mode (docs/broker-mode.md).

    with EmulatedLineProcesses("examples/lines/demo.toml", "mqtt://127.0.0.1:1883") as line:
        ...  # modules are up: their BIRTHs are on skid/v1/<line.line_id>/<module>/birth

One ``skid emulate`` process owns the plant; each module of the line is one ``skid edge
--emulate --plant remote --line-file LINE --module-id ID`` process (the exact config
the in-process emulation runs).  All share one clock origin (``epoch``, Unix seconds)
and ``speed``: simulated ms = (time.time() - epoch) x speed x 1000 (``sim_ms()``).
Simulated time starts at ``start()``, so process start-up (a few wall seconds) is
included in it.

Each run gets its own line id (default ``demo-<4 hex>``); ``stop()`` ends every process
(SIGTERM, then SIGKILL after a bound) and clears every retained message under
``skid/v1/<line_id>/#`` and ``skidsim/<line_id>/#``.  Each process's output goes to a
log file in ``log_dir`` (kept after the run, for diagnosis).

Faults: physical kinds go to the emulator process; ``power-loss`` is done here: the
module's process is SIGKILLed at its time (its wills tell the broker and the plant) and
started again ``duration_s`` later.  Network faults (partition, broker-outage,
host-crash) are refused: run them in-process.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import paho.mqtt.client as paho

from edge.clock import shared_ms
from emulator.faults import Fault, line_targets, parse_fault_option
from emulator.remote import (
    PROCESS_FAULTS,
    SIM_PREFIX,
    check_plant_faults,
    parse_broker_url,
)
from host.micropython_unix import (
    micropython_binary,
    micropython_env,
    module_command,
    write_line_module_dir,
)
from line.loader import load_line
from protocol.topics import validate_id

ROOT = Path(__file__).resolve().parents[1]
EMULATOR = "emulator"  # the plant process's name in ``procs`` and its log file


class LauncherError(RuntimeError):
    """A process of the line did not come up (the message holds its log's tail)."""


def fresh_line_id(prefix: str = "demo") -> str:
    return f"{prefix}-{secrets.token_hex(2)}"


class EmulatedLineProcesses:
    def __init__(
        self,
        line_file: str | Path,
        broker_url: str,
        line_id: str | None = None,
        speed: float = 10.0,
        faults: Iterable[str | Fault] = (),
        insecure: bool = True,
        log: Callable[[str], None] | None = None,
        seed: int = 0,
        epoch: float | None = None,
        log_dir: str | Path | None = None,
        micropython_modules: Iterable[str] = (),
    ):
        """``micropython_modules``: modules run as MicroPython Unix-port processes
        (``edge.emulated_main``, the board's own link and asyncio) instead of ``skid
        edge`` under CPython; ``host.micropython_unix``."""
        self.line_file = Path(line_file).resolve()
        self.line = load_line(self.line_file)
        self.broker_url = broker_url
        self.host, self.port = parse_broker_url(broker_url)
        self.line_id = line_id or fresh_line_id()
        validate_id("line", self.line_id)
        if not speed > 0:
            raise ValueError(f"speed {speed!r}: must be > 0")
        self.speed = float(speed)
        self.insecure = insecure
        self.seed = seed
        self.log = log or (lambda text: None)
        self.modules = list(self.line.modules)
        self.micropython_modules = set(micropython_modules)
        unknown = sorted(self.micropython_modules - set(self.modules))
        if unknown:
            raise ValueError(
                f"--micropython-modules {','.join(unknown)}: no such module in line "
                f"{self.line.id}; allowed {', '.join(self.modules)}"
            )
        if self.micropython_modules:
            micropython_binary()  # a clear error now if the Unix port is missing
        modules, channels = line_targets(self.line)
        parsed = [
            f if isinstance(f, Fault) else parse_fault_option(f, modules, channels) for f in faults
        ]
        for f in parsed:
            if f.at_s is None:
                raise ValueError(f"fault {f}: broker mode takes timed faults only (KIND:TARGET@S)")
        self.plant_faults = [f for f in parsed if f.kind not in PROCESS_FAULTS]
        self.power_faults = [f for f in parsed if f.kind in PROCESS_FAULTS]
        check_plant_faults(self.plant_faults)  # network kinds: a clear error now
        self._epoch = epoch
        self.epoch: float | None = None
        self._log_dir = None if log_dir is None else Path(log_dir)
        self.log_dir: Path | None = None  # made at start()
        self.procs: dict[str, subprocess.Popen] = {}
        self.births: dict[str, int] = {m: 0 for m in self.modules}
        self.power_log: list[tuple[float, str, str]] = []  # (t_s, kill/restart, module)
        self._log_files: dict[str, object] = {}
        self._lock = threading.Lock()
        self._monitor = None
        self._stop_faults = threading.Event()
        self._fault_thread: threading.Thread | None = None
        self._started = False

    # -- clock --------------------------------------------------------------------------

    def sim_ms(self) -> int:
        """Simulated ms since the epoch (the modules' and the plant's time)."""
        if self.epoch is None:
            raise RuntimeError("not started")
        return shared_ms(time.time(), self.epoch, self.speed)

    def log_path(self, name: str) -> Path:
        if self.log_dir is None:
            raise RuntimeError("not started: no log directory yet")
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- processes ------------------------------------------------------------------------

    def _micropython_dir(self, name: str) -> Path:
        """Write the module's config.bin and settings (host.micropython_unix)."""
        return write_line_module_dir(
            self.log_path(name).with_suffix(".mpy"),
            self.line,
            name,
            broker_host=self.host,
            broker_port=self.port,
            line_id=self.line_id,
            epoch=self.epoch,
            speed=self.speed,
            insecure=self.insecure,
        )

    def _command(self, name: str) -> list[str]:
        if name in self.micropython_modules:
            return module_command(self._micropython_dir(name))
        base = [sys.executable, "-m", "host.cli"]
        common = ["--speed", repr(self.speed), "--epoch", repr(self.epoch)]
        common += ["--parent-pid", str(os.getpid())]  # no process outlives the launcher
        if name == EMULATOR:
            cmd = base + ["emulate", str(self.line_file), "--broker", self.broker_url]
            cmd += ["--line-id", self.line_id, "--seed", str(self.seed)] + common
            for f in self.plant_faults:
                cmd += ["--fault", f.option()]
            return cmd
        cmd = base + ["edge", "--line-file", str(self.line_file), "--module-id", name]
        cmd += ["--emulate", "--plant", "remote", "--broker", self.broker_url]
        cmd += ["--line-id", self.line_id] + common
        if self.insecure:
            cmd.append("--insecure")
        return cmd

    def _spawn(self, name: str) -> subprocess.Popen:
        old = self._log_files.pop(name, None)
        if old is not None:
            old.close()
        logf = open(self.log_path(name), "ab")  # noqa: SIM115 - closed in _reap/stop
        self._log_files[name] = logf
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        micropython = name in self.micropython_modules
        if micropython:
            env = micropython_env(ROOT, env)
        proc = subprocess.Popen(
            self._command(name),
            cwd=str(ROOT),
            env=env,
            # A MicroPython module stops cleanly when its standard input closes (it has
            # no signal handlers), and so also when the launcher dies.
            stdin=subprocess.PIPE if micropython else subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items() if p.poll() is None}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> EmulatedLineProcesses:
        """Spawn the emulator and every module; return once every module's BIRTH has
        been seen on the broker.  Raises LauncherError (and stops what it started)."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        _running.add(self)
        self._monitor = _BirthMonitor(self.host, self.port, self.line_id, self._on_birth)
        try:
            self._monitor.connect(timeout_s=min(10.0, timeout_s))
            if self._log_dir is not None:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                self.log_dir = self._log_dir
            else:
                self.log_dir = Path(tempfile.mkdtemp(prefix=f"flowskid-{self.line_id}-"))
            self.epoch = time.time() if self._epoch is None else self._epoch
            self.log(
                f"launcher: line {self.line.id} as {self.line_id}: {len(self.modules)} module "
                f"processes + plant on {self.broker_url}, {self.speed:g}x; logs in {self.log_dir}"
            )
            if self.micropython_modules:
                names = ", ".join(m for m in self.modules if m in self.micropython_modules)
                self.log(f"launcher: on MicroPython (Unix port): {names}")
            self._spawn(EMULATOR)
            for mid in self.modules:
                self._spawn(mid)
            self.wait_births({m: 1 for m in self.modules}, timeout_s)
        except BaseException:
            self.stop()
            raise
        if self.power_faults:
            self._fault_thread = threading.Thread(target=self._power_faults, daemon=True)
            self._fault_thread.start()
        self.log(
            f"launcher: all {len(self.modules)} modules born at t={self.sim_ms() / 1000:.1f} s"
        )
        return self

    def _on_birth(self, module: str) -> None:
        with self._lock:
            if module in self.births:
                self.births[module] += 1

    def wait_births(self, at_least: dict[str, int], timeout_s: float) -> None:
        """Wait until each module has sent at least that many BIRTHs (counted since
        start); a process that exits meanwhile raises LauncherError with its log."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                missing = [m for m, n in at_least.items() if self.births[m] < n]
            if not missing:
                return
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None and (name == EMULATOR or name in missing):
                    raise LauncherError(
                        f"{name} exited with code {proc.returncode} during start-up; "
                        f"{self.log_path(name)}:\n{self.log_tail(name)}"
                    )
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {m}:\n{self.log_tail(m, 10)}" for m in missing)
                raise LauncherError(
                    f"no BIRTH within {timeout_s:g} s from {', '.join(missing)} "
                    f"(line {self.line_id}, logs in {self.log_dir}):\n{tails}"
                )
            time.sleep(0.05)

    def kill(self, module: str) -> None:
        """SIGKILL one module's process (a power cut): no clean shutdown, its wills fire."""
        proc = self._module_proc(module)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, module: str, wait_s: float | None = None) -> None:
        """Start a module's process again (after ``kill`` or a crash); with ``wait_s``,
        return once its new BIRTH has been seen."""
        proc = self._module_proc(module)
        if proc.poll() is None:
            raise RuntimeError(f"{module} is still running: kill() it first")
        with self._lock:
            seen = self.births[module]
        self._spawn(module)
        if wait_s is not None:
            self.wait_births({module: seen + 1}, wait_s)

    def _module_proc(self, module: str) -> subprocess.Popen:
        if module not in self.births:
            raise KeyError(
                f"no module {module!r} in line {self.line.id}: allowed {', '.join(self.modules)}"
            )
        proc = self.procs.get(module)
        if proc is None:
            raise RuntimeError("not started")
        return proc

    def _power_faults(self) -> None:
        events = []
        for f in self.power_faults:
            events.append((f.at_s, "kill", f.module))
            if f.duration_s is not None:
                events.append((f.at_s + f.duration_s, "restart", f.module))
        events.sort(key=lambda e: (e[0], e[1] == "kill"))
        for at_s, action, module in events:
            wall = self.epoch + at_s / self.speed
            if self._stop_faults.wait(max(0.0, wall - time.time())):
                return
            try:
                if action == "kill":
                    self.kill(module)
                else:
                    self.restart(module)
            except (RuntimeError, OSError) as exc:
                self.log(f"launcher: power-loss {action} {module} failed: {exc}")
                continue
            self.power_log.append((self.sim_ms() / 1000.0, action, module))
            self.log(f"launcher: power-loss: {action} {module} at t={self.sim_ms() / 1000:.1f} s")

    def stop(self, timeout_s: float = 5.0) -> int:
        """End every process (SIGTERM; SIGKILL after ``timeout_s``), then clear the
        retained messages of this line id; returns how many were cleared."""
        _running.discard(self)
        self._stop_faults.set()
        if self._fault_thread is not None:
            self._fault_thread.join(timeout=5)
        procs = list(self.procs.items())
        # Modules first (they go safe and say so), then the plant.
        procs.sort(key=lambda item: item[0] == EMULATOR)
        for _, proc in procs:
            if proc.poll() is None:
                if proc.stdin is not None:
                    proc.stdin.close()  # a MicroPython module's clean stop
                else:
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"launcher: {name} ignored SIGTERM for {timeout_s:g} s: SIGKILL")
                proc.kill()
                proc.wait(timeout=10)
        for f in self._log_files.values():
            f.close()
        self._log_files.clear()
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        cleared = 0
        if self._started:
            try:
                cleared = clear_retained(
                    self.host,
                    self.port,
                    [f"skid/v1/{self.line_id}/#", f"{SIM_PREFIX}/{self.line_id}/#"],
                )
            except OSError as exc:
                self.log(f"launcher: could not clear retained messages: {exc}")
        return cleared

    def __enter__(self) -> EmulatedLineProcesses:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# Launchers started and not stopped: stopped at interpreter exit (a forgotten stop()
# must not leave module processes running; they also watch their parent's pid).
_running: set[EmulatedLineProcesses] = set()


@atexit.register
def _stop_all() -> None:
    for launcher in list(_running):
        launcher.stop()


class _BirthMonitor:
    """Counts BIRTHs of the line's modules (paho network thread)."""

    def __init__(self, host: str, port: int, line_id: str, on_birth: Callable[[str], None]):
        self.host = host
        self.port = port
        self.pattern = f"skid/v1/{line_id}/+/birth"
        self._on_birth = on_birth
        self._subscribed = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"launcher-{line_id}-{os.getpid()}",
            protocol=paho.MQTTv311,
        )
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self.pattern, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self._on_birth(m.topic.split("/")[3])

    def connect(self, timeout_s: float) -> None:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise LauncherError(f"broker {self.host}:{self.port} unreachable: {exc}") from None
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.close()
            raise LauncherError(f"broker {self.host}:{self.port}: no SUBACK within {timeout_s} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def clear_retained(host: str, port: int, patterns: list[str], settle_s: float = 0.3) -> int:
    """Publish an empty retained message on every topic under ``patterns`` that holds a
    retained one; returns how many were cleared."""
    found: set[str] = set()
    subscribed = threading.Event()
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=f"clear-retained-{os.getpid()}-{secrets.token_hex(2)}",
        protocol=paho.MQTTv311,
    )

    def on_message(c, u, msg):
        if msg.retain and msg.payload:
            found.add(msg.topic)

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe([(p, 1) for p in patterns])
        if not subscribed.wait(10):
            raise OSError(f"broker {host}:{port}: no SUBACK while clearing retained messages")
        time.sleep(settle_s)  # retained messages follow the SUBACK at once
        infos = [client.publish(t, b"", qos=1, retain=True) for t in sorted(found)]
        for info in infos:
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(found)
