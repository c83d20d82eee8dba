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
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from edge.boardconfig import compile_config, config_hash, decompile, emulate, load_board_config
from edge.build import build_node
from edge.runner import EdgeRunner, LinkSink, NullSink, death_topic

TICKS_MASK = (1 << 30) - 1


class ScaledClock:
    """Tick milliseconds from the monotonic clock, ``speed`` times faster than real time."""

    def __init__(self, speed: float = 1.0):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._t0 = time.monotonic()

    def __call__(self) -> int:
        return int((time.monotonic() - self._t0) * 1000 * self.speed) & TICKS_MASK

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(max(0, ms) / 1000 / self.speed)


def parse_broker_url(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(f"broker URL {url!r}: expected mqtt://HOST[:PORT]")
    return parsed.hostname, parsed.port or 1883


def read_key(config_path: Path, key_file: str | None) -> bytes | None:
    """The module's command key (raw bytes, or hex text), or None when none is configured."""
    if not key_file:
        return None
    path = Path(key_file)
    if not path.is_absolute():
        path = config_path.parent / path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"{config_path}: module.key_file = {key_file!r}: {path} not found "
            "(create it with 32 random bytes, e.g. `head -c 32 /dev/urandom > FILE`, "
            "or run with --insecure)"
        ) from None
    text = data.strip()
    try:
        return bytes.fromhex(text.decode())
    except (UnicodeDecodeError, ValueError):
        return data


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
    ):
        self.config_path = Path(config_path)
        cfg = load_board_config(self.config_path)
        if emulated:
            cfg = emulate(cfg)
        blob = compile_config(cfg)
        self.cfg = decompile(blob)
        self.hash = config_hash(blob)
        module = self.cfg["module"]
        self.module_id = module["id"]
        self.line = line
        key = None
        if not insecure:
            key = read_key(self.config_path, module["key_file"])
        self.clock = ScaledClock(speed)
        hw = None
        if not emulated:
            from edge.linux.hardware import LinuxHardware

            hw = LinuxHardware()
        self.link = None
        if broker:
            from edge.link.client import MqttLink, standard_subscriptions
            from protocol.messages import build_death

            host, port = parse_broker_url(broker)
            self.link = MqttLink(
                host,
                port,
                f"{line}-{self.module_id}",
                death_topic(line, self.module_id),
                build_death(0),
                standard_subscriptions(line, self.module_id),
                on_message=lambda topic, payload: self.runner.on_message(topic, payload),
                on_connect=lambda: self.runner.on_connect(),
            )
            sink = LinkSink(self.link, line, self.module_id)
        self.node = build_node(
            self.cfg,
            hw,
            sink if sink is not None else NullSink(),
            self.clock(),
            os.urandom(8),
            reset_cause="power_on",
            key=key,
            config_hash=self.hash,
        )
        self.plant = None
        if emulated:
            from emulator.standin import StandinPlant

            self.plant = StandinPlant(self.node)
        self.watchdog = None
        if not emulated and self.cfg["watchdog"]["hardware"] and Path("/dev/watchdog").exists():
            from edge.linux.watchdog import LinuxWatchdog

            self.watchdog = LinuxWatchdog(
                timeout_s=max(1, self.cfg["watchdog"]["timeout_ms"] // 1000)
            )
        self.runner = EdgeRunner(
            self.node,
            line,
            self.clock,
            sleep_ms=self.clock.sleep_ms,
            link=self.link,
            watchdog=self.watchdog,
            before_tick=self.plant.step if self.plant else None,
        )
        self._stop_deadman = threading.Event()

    def _deadman_loop(self) -> None:
        period = min(s.deadman_ms for s in self.node.actuators) / 4 / 1000 / self.clock.speed
        while not self._stop_deadman.wait(max(period, 0.005)):
            self.node.deadman_check(self.clock())

    async def run(self, duration_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.runner.stop)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        deadman = None
        if self.node.actuators:
            deadman = threading.Thread(target=self._deadman_loop, daemon=True)
            deadman.start()
        link_task = asyncio.create_task(self.link.run()) if self.link else None
        max_ticks = None
        if duration_s is not None:
            max_ticks = int(duration_s * 1000 / self.node.tick_ms)
        try:
            await self.runner.run(max_ticks=max_ticks)
        finally:
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
