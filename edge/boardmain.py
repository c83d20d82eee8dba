"""Entry point on a MicroPython board (RP2040, ESP32).

A bundle's ``main.py`` is just::

    import edge.boardmain
    edge.boardmain.main()

Order matters for safety: the compiled config is read and the actuators are built first
(building a hardware actuator writes its safe value), before the network or anything
slow.  Then Wi-Fi is started (``WLAN.connect`` returns at once) and the broker's address
is resolved, once, while the module is still idle with every output safe and before the
hardware watchdog is armed: MicroPython's ``getaddrinfo`` blocks the whole board, so it
never runs on the tick path (see ``boot_address``).  The watchdog is armed once the node
exists and is fed only after each completed tick; a hardware timer runs the dead-man
check independently of the tick loop.

Reset causes (``reset_cause``): only a deliberate boot, power applied (PWRON) or a soft
reset (SOFT), starts unlatched.  A watchdog reset, a brown-out, a hard reset (the reset
pin, which a supervisor chip also pulls on a brown-out) or anything else boots latched
in aborted and reports the cause (``edge.node.UNLATCHED_RESET_CAUSES``).

Files beside main.py: ``config.bin`` (board file: hash + compiled config) and the optional
``board_secrets.py`` with ``WIFI_SSID``, ``WIFI_PASSWORD``, ``BROKER_HOST``, ``BROKER_PORT``,
``LINE``, ``MQTT_USER``, ``MQTT_PASSWORD`` and ``COMMAND_KEY`` (bytes), as ``skid bundle``
writes them.  Without a broker the module still runs its local control and protection.
"""

import asyncio
import os
import sys
import time

import machine

from edge.build import build_node
from edge.clock import ticks_diff
from edge.compiled_config import load_board_file
from edge.drivers.machine_io import MachineHardware
from edge.runner import EdgeRunner, deadman_check_period_ms
from edge.session import ModuleSession
from edge.sink import NullSink

CONFIG_FILE = "config.bin"
# How long boot waits for Wi-Fi before resolving the broker's name.  Outputs are safe
# and the module idle meanwhile; after it the module runs without a link if need be.
WIFI_BOOT_WAIT_MS = 8000
_WIFI_POLL_MS = 50
DEFAULT_LINE = "line1"  # the line id in topics when board_secrets names none
MQTT_PORT = 1883  # the broker's port when board_secrets names none
MIN_DEADMAN_PERIOD_MS = 10  # the dead-man timer's shortest period


def reset_cause(m=machine):
    """The birth's reset cause for ``m.reset_cause()``; see the module docstring."""
    cause = m.reset_cause()
    if cause == m.PWRON_RESET:
        return "power_on"
    if cause == m.SOFT_RESET:
        return "soft"
    if cause == m.WDT_RESET:
        return "watchdog"
    if cause == getattr(m, "BROWNOUT_RESET", None):
        return "brownout"
    return "unknown"  # HARD_RESET, DEEPSLEEP_RESET, ...: latched like a watchdog reset


def timer_id(platform=None):
    """The ``machine.Timer`` id for the dead-man timer.  rp2 has only virtual timers
    (id -1); ESP32 has hardware timers 0-3 and current MicroPython refuses -1 there (the
    board would reboot-loop), so timer 0."""
    platform = sys.platform if platform is None else platform
    if platform == "esp32":
        return 0
    return -1


def start_wifi(sec, network=None):
    """Start joining the Wi-Fi of ``board_secrets`` (station mode) and return the WLAN,
    or None without ``WIFI_SSID``.  Never waits: ``connect`` returns at once and the
    interface associates in the background."""
    ssid = getattr(sec, "WIFI_SSID", None) if sec is not None else None
    if not ssid:
        return None
    if network is None:
        import network  # noqa: PLC0415  (only boards with Wi-Fi have it)
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect(ssid, getattr(sec, "WIFI_PASSWORD", ""))
    return wlan


def boot_address(host, port, wlan, getaddrinfo, ticks_ms, sleep_ms, wait_ms=WIFI_BOOT_WAIT_MS):
    """The broker's numeric address, resolved once at boot; None if it cannot be.

    Called with the node built (outputs safe, idle) and before the watchdog is armed and
    the tick loop runs, because ``getaddrinfo`` blocks the board for as long as the DNS
    server takes: an address literal needs no lookup; a name waits at most ``wait_ms``
    for the Wi-Fi, then is looked up once.  From then on the link connects to the number
    and never resolves on the tick path; on None it keeps the name and its resolver (which
    refuses to block on MicroPython, ``edge.link.client``) leaves the link down, so the
    module runs its local control until the next boot."""
    from edge.link.client import is_ip_literal  # noqa: PLC0415  (only with a broker)

    if is_ip_literal(host):
        return host
    if wlan is not None:
        start = ticks_ms()
        while not wlan.isconnected():
            if ticks_diff(ticks_ms(), start) >= wait_ms:
                return None
            sleep_ms(_WIFI_POLL_MS)
    try:
        return getaddrinfo(host, port)[0][-1][0]
    except (OSError, IndexError, TypeError):
        return None


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
    line = getattr(sec, "LINE", DEFAULT_LINE) if sec else DEFAULT_LINE
    node = build_node(
        cfg,
        hw,
        NullSink(),
        time.ticks_ms(),
        os.urandom(8),
        reset_cause=reset_cause(),
        key=key,
        config_hash=chash,
    )
    # Every actuator now holds its safe value: only from here on may anything wait.
    watchdog = cfg["watchdog"]
    cfg = None  # the node keeps what it needs; free the rest
    wlan = start_wifi(sec)
    host = getattr(sec, "BROKER_HOST", None) if sec is not None else None
    port = getattr(sec, "BROKER_PORT", MQTT_PORT) if sec is not None else MQTT_PORT
    address = None
    if host:
        import socket  # noqa: PLC0415

        address = boot_address(host, port, wlan, socket.getaddrinfo, time.ticks_ms, time.sleep_ms)
    wd = None
    if watchdog["hardware"]:
        wd = machine.WDT(timeout=watchdog["timeout_ms"])
    period = deadman_check_period_ms(node) or MIN_DEADMAN_PERIOD_MS

    def deadman(_timer):
        node.deadman_check(time.ticks_ms())

    timer = machine.Timer(timer_id())
    timer.init(period=period, mode=machine.Timer.PERIODIC, callback=deadman)
    session = ModuleSession(node, line, time.ticks_ms)
    link = None
    if host:
        link = session.mqtt_link(
            address or host,
            port,
            module_id,
            username=getattr(sec, "MQTT_USER", None),
            password=getattr(sec, "MQTT_PASSWORD", None),
        )
    runner = EdgeRunner(node, line, time.ticks_ms, link=link, watchdog=wd, session=session)

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
