"""Entry point on a MicroPython board (RP2040, ESP32).

A bundle's ``main.py`` is just::

    import edge.boardmain
    edge.boardmain.main()

Order matters for safety: the compiled config is read and the actuators are built first
(building a hardware actuator writes its safe value), before the network or anything
slow.  The hardware watchdog is armed once the node exists and is fed only after each
completed tick; a hardware timer runs the dead-man check independently of the tick loop.
After a watchdog reset the node boots latched in aborted and reports the cause.

Files beside main.py: ``config.bin`` (board file: hash + compiled config) and the optional
``board_secrets.py`` with ``WIFI_SSID``, ``WIFI_PASSWORD``, ``BROKER_HOST``, ``BROKER_PORT``,
``LINE``, ``MQTT_USER``, ``MQTT_PASSWORD`` and ``COMMAND_KEY`` (bytes).  Without a
broker the module still runs its local control and protection.
"""

import asyncio
import os
import time

import machine

from edge.build import build_node
from edge.compiled_config import load_board_file
from edge.drivers.machine_io import MachineHardware
from edge.runner import EdgeRunner, LinkSink, NullSink, death_topic

CONFIG_FILE = "config.bin"


def reset_cause():
    cause = machine.reset_cause()
    if cause == machine.WDT_RESET:
        return "watchdog"
    if cause == machine.PWRON_RESET:
        return "power_on"
    if cause == machine.SOFT_RESET:
        return "soft"
    return "unknown"


def _secrets():
    try:
        import board_secrets  # pyright: ignore[reportMissingImports]  (the board's own file)

        return board_secrets
    except ImportError:
        return None


def main():
    with open(CONFIG_FILE, "rb") as f:
        cfg, chash = load_board_file(f.read())
    buses = cfg["buses"]
    hw = MachineHardware(
        buses["spi_pins"], buses["i2c_pins"], buses["spi_baudrate"], buses["i2c_freq"]
    )
    sec = _secrets()
    key = getattr(sec, "COMMAND_KEY", None) if sec else None
    module_id = cfg["module"]["id"]
    line = getattr(sec, "LINE", "line1") if sec else "line1"
    sink = NullSink()
    node = build_node(
        cfg,
        hw,
        sink,
        time.ticks_ms(),
        os.urandom(8),
        reset_cause=reset_cause(),
        key=key,
        config_hash=chash,
    )
    watchdog = cfg["watchdog"]
    cfg = None  # the node keeps what it needs; free the rest
    wd = None
    if watchdog["hardware"]:
        wd = machine.WDT(timeout=watchdog["timeout_ms"])
    period = min(slot.deadman_ms for slot in node.actuators) // 4 or 10

    def deadman(_timer):
        node.deadman_check(time.ticks_ms())

    timer = machine.Timer(-1)
    timer.init(period=period, mode=machine.Timer.PERIODIC, callback=deadman)
    link = None
    if sec is not None and getattr(sec, "BROKER_HOST", None):
        from edge.link.client import MqttLink, standard_subscriptions

        link = MqttLink(
            sec.BROKER_HOST,
            getattr(sec, "BROKER_PORT", 1883),
            module_id,
            death_topic(line, module_id),
            node.death_for(0),
            standard_subscriptions(line, module_id),
            on_message=lambda topic, payload: runner.on_message(topic, payload),
            on_connect=lambda: runner.on_connect(),
            username=getattr(sec, "MQTT_USER", None),
            password=getattr(sec, "MQTT_PASSWORD", None),
        )
        node.sink = LinkSink(link, line, module_id)
    runner = EdgeRunner(node, line, time.ticks_ms, link=link, watchdog=wd)

    async def run_all():
        tasks = [asyncio.create_task(runner.run())]
        if link is not None:
            tasks.append(asyncio.create_task(link.run()))
        await tasks[0]

    try:
        asyncio.run(run_all())
    finally:
        timer.deinit()
        node.shutdown()
