"""Run one edge node as a CPython process (``skid edge``): on a Raspberry Pi against real
hardware, or against emulated drivers driven by the stand-in plant (``--emulate``).

The node, its build and its async shell are exactly the board's (``edge.build``,
``edge.runner``); this module only supplies what CPython has instead of ``machine``: a
monotonic tick clock (optionally scaled, so several processes can share simulated time),
a thread for the dead-man check, the Linux watchdog, and signal handling that leaves
every actuator safe.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from edge.boardconfig import compile_config, config_hash, decompile, emulate, load_board_config
from edge.build import build_node
from edge.clock import shared_ms, ticks_wrap
from edge.link.client import MqttLink
from edge.linux.hardware import LinuxHardware
from edge.linux.watchdog import LinuxWatchdog
from edge.runner import EdgeRunner
from edge.session import ModuleSession
from edge.sink import NullSink
from host.brokerurl import ENV_PASSWORD, ENV_USERNAME, parse_broker_url
from host.keys import read_key
from host.service import WatchdogChain, systemd_watchdog
from line.loader import load_line, module_config
from protocol.wire import ID_PATTERN

TICKS_MASK = (1 << 30) - 1


class ScaledClock:
    """Tick milliseconds from the monotonic clock, ``speed`` times faster than real time.

    With ``epoch`` (Unix seconds) the ticks are the simulated ms since that shared
    origin, ``(time.time() - epoch) * speed * 1000`` (masked like board ticks), so
    several processes of one emulated line agree on simulated time (broker mode)."""

    def __init__(self, speed: float = 1.0, epoch: float | None = None):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self.epoch = epoch
        self._t0 = time.monotonic()

    def __call__(self) -> int:
        if self.epoch is not None:
            return ticks_wrap(shared_ms(time.time(), self.epoch, self.speed))
        return ticks_wrap(shared_ms(time.monotonic(), self._t0, self.speed))

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(max(0, ms) / 1000 / self.speed)


DEFAULT_STATE_DIR = "/var/lib/flowskid"


class CleanStopMarker:
    """A file written when a run stops cleanly (every output safe, watchdog closed) and
    removed when the next run starts, so its absence at start means the last run did
    not end on purpose: killed, crashed, hung and reset, or the power went."""

    def __init__(self, state_dir: str | Path, module_id: str):
        self.path = Path(state_dir) / f"{module_id}.clean-stop"

    def consume(self) -> bool:
        """Was the last stop clean?  Removes the marker; a marker that cannot be removed
        counts as absent (it would vouch for the next run too)."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            print(f"skid edge: cannot remove {self.path}: {exc}", file=sys.stderr, flush=True)
            return False

    def write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("clean stop\n")
        except OSError as exc:  # the next start then boots latched: safe, and says why
            print(f"skid edge: cannot write {self.path}: {exc}", file=sys.stderr, flush=True)


def boot_reset_cause(clean_stop: bool, watchdog_reset: bool | None) -> str:
    """The birth's reset cause on a Pi.  Only a start after a clean stop is deliberate
    ("power_on": starts idle).  Otherwise the module boots latched in aborted: "watchdog"
    when the watchdog driver says it reset the board, else "unknown" (killed, crashed,
    power cut, a driver that cannot tell); ``edge.node.UNLATCHED_RESET_CAUSES``."""
    if clean_stop:
        return "power_on"
    if watchdog_reset:
        return "watchdog"
    return "unknown"


class EdgeProcess:
    def __init__(
        self,
        config_path: str | Path,
        *,
        emulated: bool = False,
        broker: str | None = None,
        line: str = "line1",
        speed: float = 1.0,
        insecure: bool = False,
        sink=None,
        plant: str = "standin",
        epoch: float | None = None,
        line_file: str | Path | None = None,
        module_id: str | None = None,
        state_dir: str | Path | None = None,
    ):
        """``plant``: with ``emulated``, what feeds the emulated drivers: "standin"
        (``emulator.standin``, in this process) or "remote" (the plant emulator process
        of a broker-mode line, over ``broker``: ``emulator.remote``).  ``epoch``: shared
        clock origin (Unix seconds, see ScaledClock).  ``line_file`` + ``module_id``:
        run the config ``line.loader.module_config`` derives for that module of the
        line (exactly what the in-process emulation runs; ``config_path`` is then
        None); ``module_id`` alone renames the board config's module.  ``state_dir``:
        where the clean-stop marker lives (``boot_reset_cause``); on hardware it
        defaults to $STATE_DIRECTORY (systemd ``StateDirectory=``) or /var/lib/flowskid;
        emulated runs use none unless given (the emulator simulates its own boots)."""
        if plant not in ("standin", "remote"):
            raise ValueError(f"plant {plant!r}: allowed standin, remote")
        if plant == "remote" and not (emulated and broker):
            raise ValueError("plant 'remote' needs emulated drivers and a broker")
        self.cfg, self.hash, self.config_path = _load_config(
            config_path, line_file, module_id, emulated
        )
        self.module_id = self.cfg["module"]["id"]
        self.line = line
        key = None if insecure else read_key(self.config_path, self.cfg["module"]["key_file"])
        self.clock = ScaledClock(speed, epoch)
        if state_dir is None and not emulated:
            state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE_DIR
        self.marker = None if state_dir is None else CleanStopMarker(state_dir, self.module_id)
        # The watchdog is opened before the node so its boot status can decide whether
        # the node boots latched; a failure below closes it again (no reset for a typo).
        self.watchdog = None if emulated else _open_watchdog(self.cfg)
        try:
            self.node = self._build_node(None if emulated else LinuxHardware(), sink, key)
            # The board's session (edge.session): topics, will/birth handshake, routing.
            self.session = ModuleSession(self.node, line, self.clock) if broker else None
            self.link = self._mqtt_link(broker) if broker else None
        except BaseException:
            if self.watchdog is not None:
                self.watchdog.close()
            raise
        self.plant, self.plant_link = _attach_plant(self.node, emulated, plant, line, broker)
        # Under systemd (NOTIFY_SOCKET): READY=1 after the first completed tick, WATCHDOG=1
        # after completed ticks, fed exactly where the hardware watchdog is (host.service).
        self.systemd = systemd_watchdog(f"module {self.module_id} on line {line}")
        self.runner = EdgeRunner(
            self.node,
            line,
            self.clock,
            sleep_ms=self.clock.sleep_ms,
            link=self.link,
            watchdog=WatchdogChain(self.watchdog, self.systemd),
            before_tick=self.plant.step if self.plant else None,
            after_tick=getattr(self.plant, "after_tick", None),
            session=self.session,
        )
        self._stop_deadman = threading.Event()
        self._stopping = False
        self._parent_pid: int | None = None

    def _mqtt_link(self, broker: str) -> MqttLink:
        host, port = parse_broker_url(broker)
        return self.session.mqtt_link(
            host,
            port,
            f"{self.line}-{self.module_id}",
            # Broker credentials (`skid broker-config`): from the environment, which a
            # systemd unit fills from a 0600 EnvironmentFile; never on the command line.
            username=os.environ.get(ENV_USERNAME) or None,
            password=os.environ.get(ENV_PASSWORD) or None,
        )

    def _build_node(self, hw, sink, key):
        """The node, booting with the reset cause the clean-stop marker and the watchdog
        tell (``boot_reset_cause``); "power_on" when there is no marker (emulated)."""
        self.reset_cause = "power_on"
        if self.marker is not None:
            by_watchdog = self.watchdog.caused_last_reset() if self.watchdog else None
            self.reset_cause = boot_reset_cause(self.marker.consume(), by_watchdog)
        return build_node(
            self.cfg,
            hw,
            sink if sink is not None else NullSink(),
            self.clock(),
            os.urandom(8),
            reset_cause=self.reset_cause,
            key=key,
            config_hash=self.hash,
        )

    def _deadman_loop(self) -> None:
        period = min(s.deadman_ms for s in self.node.actuators) / 4 / 1000 / self.clock.speed
        while not self._stop_deadman.wait(max(period, 0.005)):
            self.node.deadman_check(self.clock())

    def stop_with_parent(self, pid: int) -> None:
        """Stop the run once process ``pid`` (the launcher) is gone."""
        self._parent_pid = pid

    def _watch_parent(self, loop) -> None:
        while not self._stopping:
            if os.getppid() != self._parent_pid:
                print("skid edge: launcher gone: stopping", file=sys.stderr, flush=True)
                loop.call_soon_threadsafe(self.stop)
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """End the run (the node goes safe); safe to call from a signal handler."""
        self._stopping = True
        self.runner.stop()

    async def _await_plant(self, warn_after_s: float = 10.0) -> None:
        """Remote plant: start ticking (and connect the link) once the first sensor
        readings arrived; on a board the sensors are there at power-on, and ticking on
        empty drivers would trip.  Says so once if the plant stays silent."""
        warn_at = time.monotonic() + warn_after_s
        while not self.plant.has_sensors and not self._stopping:
            if warn_at is not None and time.monotonic() > warn_at:
                print(
                    f"skid edge: no readings from the plant emulator after {warn_after_s:g} s "
                    f"(is `skid emulate` running for line {self.line}?); still waiting",
                    file=sys.stderr,
                    flush=True,
                )
                warn_at = None
            await asyncio.sleep(0.01)
        self.plant.step(self.clock())  # the readings into the drivers before tick one

    async def run(self, duration_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        if self._parent_pid is not None:
            threading.Thread(target=self._watch_parent, args=(loop,), daemon=True).start()
        if self.plant_link is not None:
            await self._await_plant()
        deadman = None
        if self.node.actuators:
            deadman = threading.Thread(target=self._deadman_loop, daemon=True)
            deadman.start()
        link_task = asyncio.create_task(self.link.run()) if self.link else None
        max_ticks = None
        if duration_s is not None:
            max_ticks = int(duration_s * 1000 / self.node.tick_ms)
        clean = False
        try:
            await self.runner.run(max_ticks=max_ticks)
            clean = True  # stopped on purpose (signal, stop(), duration), not by an error
        finally:
            if self.systemd is not None:
                self.systemd.stopping()
            self._stop_deadman.set()
            self.node.shutdown()
            if self.link is not None:
                await self.link.close(self.node.death())
            if link_task is not None:
                link_task.cancel()
                try:
                    await link_task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                    pass
            if self.watchdog is not None:
                self.watchdog.close()
            if self.systemd is not None:
                self.systemd.close()
            if self.plant_link is not None:
                # Safe outputs were just written; then tell the plant this module is off.
                self.plant.send_outputs(self.clock(), force=True)
                self.plant_link.close(last=(self.plant.outputs_topic, b""))
            if clean and self.marker is not None:
                self.marker.write()  # last: only a run that got this far stopped cleanly


def _check_module_id(module_id: str) -> None:
    if not re.fullmatch(ID_PATTERN, module_id) or module_id == "host":
        raise ValueError(
            f"module id {module_id!r}: expected {ID_PATTERN} (lowercase letters, digits, "
            "_ and -, up to 32 characters; not 'host')"
        )


def _load_config(config_path, line_file, module_id, emulated) -> tuple[dict, bytes, Path]:
    """The decompiled config the node runs, its hash, and its board config's path."""
    if line_file is not None:
        return _line_module(line_file, module_id, emulated)
    if config_path is None:
        raise ValueError("a board config or a line file and module id is needed")
    config_path = Path(config_path)
    cfg = load_board_config(config_path)
    if emulated:
        cfg = emulate(cfg)
    if module_id is not None:
        _check_module_id(module_id)
        cfg.data["module"]["id"] = module_id
    blob = compile_config(cfg)
    return decompile(blob), config_hash(blob), config_path


def _open_watchdog(cfg: dict) -> LinuxWatchdog | None:
    """The hardware watchdog when the config asks for it and the Pi has one."""
    if not cfg["watchdog"]["hardware"] or not Path("/dev/watchdog").exists():
        return None
    return LinuxWatchdog(timeout_s=max(1, cfg["watchdog"]["timeout_ms"] // 1000))


def _attach_plant(node, emulated: bool, plant: str, line: str, broker: str | None):
    """What feeds an emulated module's drivers: (plant, plant link or None)."""
    # The emulator is imported here, not at the top: only `skid edge --emulate` needs it,
    # so a module driving real hardware on a Pi never loads the plant emulator (and this
    # module is not one that loads the emulator on import, tests/test_architecture.py).
    if emulated and plant == "remote":
        from emulator.remote import connect_port  # lazy: --emulate only, see above

        return connect_port(node, line, broker)
    if emulated:
        from emulator.standin import StandinPlant  # lazy: --emulate only, see above

        return StandinPlant(node), None
    return None, None


def _line_module(line_file, module_id, emulated) -> tuple[dict, bytes, Path]:
    """The config ``line.loader.module_config`` derives for ``module_id`` of the line
    at ``line_file``, its hash, and its board config path (for a relative key file)."""
    if not emulated:
        raise ValueError("--line-file runs a module of an emulated line: add --emulate")
    if module_id is None:
        raise ValueError("--line-file needs --module-id (which module of the line to run)")
    line = load_line(line_file)
    if module_id not in line.modules:
        raise ValueError(f"{line_file}: no module {module_id!r}: allowed {', '.join(line.modules)}")
    cfg, digest = module_config(line, module_id)
    return cfg, digest, Path(line.modules[module_id].board)
