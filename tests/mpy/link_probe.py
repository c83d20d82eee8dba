"""A module's network path under the MicroPython Unix port, against a real broker.

Runs the real edge runtime: the node built from a compiled board config (emulated
drivers), ``EdgeRunner`` on the real clock (``time.ticks_ms``, asyncio sleeps) and
``MqttLink`` over MicroPython's own sockets.  Every ``event_every_ms`` the node raises
one numbered ``operator_action`` EVENT (``detail`` "probe N"), so the CPython side can
check that events raised during an outage arrive afterwards, in order, and that those
beyond the queue are counted in a ``dropped`` EVENT.

    micropython link_probe.py CONFIG_BIN HOST PORT LINE SECONDS EVENT_EVERY_MS QUEUE [slowdns]

``slowdns``: ``socket.getaddrinfo`` of a name (not an address) blocks for 1.5 s and then
fails, as a board's lookup does when the DNS server does not answer.  (Here a name like
``broker.invalid`` fails at once, which would hide a lookup on the tick path.)

Prints, for the test to parse:

    ready                      the node is built, the loops start
    stat T LATE UP CONNECTS FAILS BIRTHS DROPPED   once a second (T: ms since start)
    done MAX_LATE OVERRUNS TICKS CONNECTS FAILS BIRTHS DROPPED EVENTS_SENT
"""

import asyncio
import sys
import time

from edge.build import build_node
from edge.compiled_config import load_board_file
from edge.runner import EdgeRunner
from edge.session import ModuleSession
from edge.sink import NullSink


class _SlowDnsSocket:
    """``socket`` with a ``getaddrinfo`` that blocks on names (a built-in module's
    attributes cannot be replaced on MicroPython, so ``sys.modules`` gets this)."""

    def __init__(self, real):
        for name in dir(real):
            if not name.startswith("__") and name != "getaddrinfo":
                setattr(self, name, getattr(real, name))
        self._real_getaddrinfo = real.getaddrinfo

    def getaddrinfo(self, host, port, *rest):
        from edge.link.client import is_ip_literal

        if not is_ip_literal(host):
            time.sleep_ms(1500)  # blocks the whole interpreter, as on a board
            raise OSError(-3, "temporary failure in name resolution")
        return self._real_getaddrinfo(host, port, *rest)


def slow_dns():
    import socket

    sys.modules["socket"] = _SlowDnsSocket(socket)


def main(argv):
    path, host, port, line, seconds, every_ms, queue = argv[1:8]
    if "slowdns" in argv[8:]:
        slow_dns()
    port, seconds, every_ms, queue = int(port), float(seconds), int(every_ms), int(queue)
    with open(path, "rb") as f:
        cfg, chash = load_board_file(f.read())
    module_id = cfg["module"]["id"]
    node = build_node(
        cfg,
        None,
        NullSink(),
        time.ticks_ms(),
        b"\x01\x02\x03\x04\x05\x06\x07\x08",
        config_hash=chash,
    )  # the board file is the emulated config: build_node makes its emulated drivers
    session = ModuleSession(node, line, time.ticks_ms)
    link = session.mqtt_link(
        host,
        port,
        line + "-" + module_id,
        keepalive_s=2,
        event_queue_size=queue,
        connect_timeout_ms=1500,
    )
    start = time.ticks_ms()
    raised = [0]

    def raise_events(now):
        n = time.ticks_diff(now, start) // every_ms
        while raised[0] < n:
            raised[0] += 1
            node._event("operator_action", "info", detail="probe {}".format(raised[0]))

    runner = EdgeRunner(
        node, line, time.ticks_ms, link=link, before_tick=raise_events, session=session
    )
    print("ready")

    def stat_line(tag):
        return "{} {} {} {} {} {} {} {}".format(
            tag,
            time.ticks_diff(time.ticks_ms(), start),
            runner.max_lateness_ms,
            1 if link.is_up else 0,
            link.connects,
            link.connect_failures,
            link.births_sent,
            link.dropped,
        )

    async def reporter():
        while True:
            await asyncio.sleep_ms(1000)
            print(stat_line("stat"))

    async def run_all():
        ltask = asyncio.create_task(link.run())
        rtask = asyncio.create_task(reporter())
        ttask = asyncio.create_task(runner.run())
        await asyncio.sleep_ms(int(seconds * 1000))
        runner.stop()
        await ttask
        rtask.cancel()
        ltask.cancel()

    asyncio.run(run_all())
    print(
        "done {} {} {} {} {} {} {} {}".format(
            runner.max_lateness_ms,
            runner.overruns,
            runner.ticks,
            link.connects,
            link.connect_failures,
            link.births_sent,
            link.dropped,
            link.events_sent,
        )
    )


main(sys.argv)
