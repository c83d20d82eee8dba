"""edge/boardmain.py (the MicroPython entry point) with fake ``machine``, ``network`` and
``socket`` modules: timer ids per port, reset causes, Wi-Fi and the broker lookup at boot,
and the order that keeps outputs safe before anything waits on the network.

Boot runs on a fake clock that advances only when boot sleeps; the link tests use fake
resolvers and wait on conditions with bounded timeouts (a refused local port, no broker)."""

from __future__ import annotations

import importlib
import sys
import types

import pytest
from edge_harness import ROOT, Rig

from edge.boardconfig import compile_config, emulate, load_board_config
from edge.boardconfig.compile import board_file


class FakeClock:
    def __init__(self):
        self.now = 0

    def ticks_ms(self):
        return self.now

    def sleep_ms(self, ms):
        self.now += ms


def fake_machine(platform, log, cause_name="PWRON_RESET"):
    m = types.ModuleType("machine")
    m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET, m.DEEPSLEEP_RESET, m.SOFT_RESET = 1, 2, 3, 4, 5
    m.reset_cause = lambda: getattr(m, cause_name)

    class Timer:
        PERIODIC = 1

        def __init__(self, timer_id):
            # As MicroPython: rp2 has only the virtual timer -1; esp32 only 0..3.
            ok = timer_id == -1 if platform == "rp2" else 0 <= timer_id <= 3
            if not ok:
                raise ValueError("invalid Timer number")
            log.append(("timer", timer_id))

        def init(self, period, mode, callback):
            self.callback = callback

        def deinit(self):
            pass

    class WDT:
        def __init__(self, timeout):
            log.append(("watchdog", timeout))

        def feed(self):
            pass

    m.Timer, m.WDT = Timer, WDT
    return m


class FakeWlan:
    def __init__(self, log, connected_after_polls):
        self.log = log
        self.polls = connected_after_polls
        self.connected = False

    def active(self, on):
        self.log.append(("wlan.active", on))

    def connect(self, ssid, password):
        self.log.append(("wlan.connect", ssid, password))

    def isconnected(self):
        self.polls -= 1
        return self.polls < 0


def fake_network(log, connected_after_polls=3):
    net = types.ModuleType("network")
    net.STA_IF = 0
    net.WLAN = lambda iface: FakeWlan(log, connected_after_polls)
    return net


@pytest.fixture
def boardmain(monkeypatch):
    """edge.boardmain imported against a fake ``machine`` (rp2 unless changed)."""
    log = []
    monkeypatch.setitem(sys.modules, "machine", fake_machine("rp2", log))
    sys.modules.pop("edge.boardmain", None)
    mod = importlib.import_module("edge.boardmain")
    yield mod, log
    sys.modules.pop("edge.boardmain", None)


# --- timer ids and reset causes ------------------------------------------------------------


def test_deadman_timer_id_per_port(boardmain):
    bm, _ = boardmain
    assert bm.timer_id("rp2") == -1  # rp2: virtual timers only
    assert bm.timer_id("esp32") == 0  # esp32: hardware timers 0-3, -1 refused


@pytest.mark.parametrize(
    "name, cause, latched",
    [
        ("PWRON_RESET", "power_on", False),
        ("SOFT_RESET", "soft", False),
        ("WDT_RESET", "watchdog", True),
        ("HARD_RESET", "unknown", True),
        ("DEEPSLEEP_RESET", "unknown", True),
    ],
)
def test_only_a_deliberate_boot_starts_unlatched(boardmain, name, cause, latched):
    bm, log = boardmain
    assert bm.reset_cause(fake_machine("rp2", log, name)) == cause
    rig = Rig("reactor", reset_cause=cause)
    assert rig.node.sm.state_name == ("aborted" if latched else "idle")


def test_brownout_boots_latched():
    rig = Rig("reactor", reset_cause="brownout")
    assert rig.node.sm.state_name == "aborted"


# --- the broker address, resolved once at boot ------------------------------------------------


def test_boot_address_needs_no_lookup_for_an_address(boardmain):
    bm, _ = boardmain

    def no_dns(*_):
        raise AssertionError("an address literal must not be looked up")

    clock = FakeClock()
    assert bm.boot_address("192.168.1.10", 1883, None, no_dns, clock.ticks_ms, clock.sleep_ms) == (
        "192.168.1.10"
    )


def test_boot_address_waits_a_bounded_time_for_wifi_then_gives_up(boardmain):
    bm, log = boardmain
    clock = FakeClock()
    wlan = FakeWlan(log, connected_after_polls=10**9)  # never associates
    looked_up = []
    got = bm.boot_address(
        "broker.lan", 1883, wlan, lambda *a: looked_up.append(a), clock.ticks_ms, clock.sleep_ms
    )
    assert got is None and not looked_up
    assert clock.now == bm.WIFI_BOOT_WAIT_MS


def test_boot_address_resolves_a_name_once_wifi_is_up(boardmain):
    bm, log = boardmain
    clock = FakeClock()
    wlan = FakeWlan(log, connected_after_polls=3)
    got = bm.boot_address(
        "broker.lan",
        1883,
        wlan,
        lambda host, port: [(2, 1, 0, "", ("10.0.0.7", port))],
        clock.ticks_ms,
        clock.sleep_ms,
    )
    assert got == "10.0.0.7" and clock.now == 3 * 50


def test_boot_address_survives_a_failing_lookup(boardmain):
    bm, log = boardmain

    def dns_down(host, port):
        raise OSError(-2, "EAI_FAIL")

    clock = FakeClock()
    got = bm.boot_address(
        "broker.lan", 1883, FakeWlan(log, 0), dns_down, clock.ticks_ms, clock.sleep_ms
    )
    assert got is None


# --- main(): the whole boot with fakes ---------------------------------------------------------


class StopBoot(Exception):
    pass


def boot(monkeypatch, tmp_path, platform, secrets=None, dns=None):
    """Run edge.boardmain.main() on fake hardware until the tick loop would start; returns
    the ordered log of what boot touched."""
    log = []
    monkeypatch.setitem(sys.modules, "machine", fake_machine(platform, log))
    monkeypatch.setitem(sys.modules, "network", fake_network(log))
    monkeypatch.setattr(sys, "platform", platform)
    if secrets is not None:
        monkeypatch.setitem(sys.modules, "board_secrets", types.SimpleNamespace(**secrets))
    else:
        monkeypatch.setitem(sys.modules, "board_secrets", None)  # ImportError
    sys.modules.pop("edge.boardmain", None)
    bm = importlib.import_module("edge.boardmain")
    clock = FakeClock()
    monkeypatch.setattr(
        bm, "time", types.SimpleNamespace(ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms)
    )
    import socket

    def getaddrinfo(host, port, *rest):
        log.append(("dns", host))
        if dns is None:
            raise OSError(-2, "EAI_FAIL")
        return [(2, 1, 0, "", (dns, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    real_build = bm.build_node

    def build_node(*args, **kwargs):
        node = real_build(*args, **kwargs)
        log.append(("node", node.all_safe(), kwargs["reset_cause"]))
        boot.node = node
        return node

    monkeypatch.setattr(bm, "build_node", build_node)

    class Runner:
        def __init__(self, node, line, clock, link=None, watchdog=None, session=None):
            log.append(("runner", link is not None and link._address))
            self.link = link

        async def run(self):
            if self.link is not None:
                await self.link.close(timeout_ms=10)  # stop its task before the loop ends
            raise StopBoot

    monkeypatch.setattr(bm, "EdgeRunner", Runner)
    cfg = emulate(load_board_config(ROOT / "board_configs" / "valve.toml"))
    cfg.data["watchdog"]["hardware"] = True
    (tmp_path / "config.bin").write_bytes(board_file(compile_config(cfg)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StopBoot):
        bm.main()
    sys.modules.pop("edge.boardmain", None)
    return log


SECRETS = {"WIFI_SSID": "plant", "WIFI_PASSWORD": "pw", "BROKER_HOST": "broker.lan"}


@pytest.mark.parametrize("platform, timer", [("rp2", -1), ("esp32", 0)])
def test_boot_order_outputs_safe_then_wifi_then_lookup_then_watchdog(
    monkeypatch, tmp_path, platform, timer
):
    log = boot(monkeypatch, tmp_path, platform, SECRETS, dns="10.0.0.7")
    names = [e[0] for e in log]
    assert log[0] == ("node", True, "power_on")  # outputs safe before anything else
    assert names.index("wlan.connect") < names.index("dns") < names.index("watchdog")
    assert ("wlan.connect", "plant", "pw") in log
    assert ("timer", timer) in log  # the esp32 fake refuses -1, as MicroPython does
    assert log[-1] == ("runner", "10.0.0.7")  # the link connects to the number: no DNS later


def test_boot_without_dns_runs_local_control_and_never_looks_up_on_the_tick_path(
    monkeypatch, tmp_path
):
    log = boot(monkeypatch, tmp_path, "rp2", SECRETS, dns=None)
    assert [e for e in log if e[0] == "dns"] == [("dns", "broker.lan")]  # once, at boot
    assert log[-1] == ("runner", None)  # the link keeps the name; it will not block


def test_boot_without_secrets_starts_no_network(monkeypatch, tmp_path):
    log = boot(monkeypatch, tmp_path, "esp32")
    names = [e[0] for e in log]
    assert "wlan.connect" not in names and "dns" not in names
    assert log[-1] == ("runner", False)


# --- the link never resolves on the tick path ---------------------------------------------------


async def until(predicate, timeout_s=10.0):
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def link_for(resolver, host="broker.lan"):
    from edge.link.client import MqttLink

    return MqttLink(
        host,
        1,  # nothing listens: every connection is refused
        "m1",
        "skid/v1/l1/m1/death",
        b"x",
        resolve=resolver,
        connect_timeout_ms=50,
        backoff_min_ms=1,
        backoff_max_ms=2,
    )


def test_a_hanging_resolver_does_not_hold_up_the_tick_loop():
    import asyncio

    started = []

    async def hangs(host, port):
        started.append(host)
        await asyncio.Event().wait()  # a DNS server that never answers

    async def scenario():
        link = link_for(hangs)
        task = asyncio.create_task(link.run())
        ticks = 0
        for _ in range(100):  # the tick loop: yields each tick, never waits on the link
            ticks += 1
            await asyncio.sleep(0)
        task.cancel()
        return ticks, link

    ticks, link = asyncio.run(scenario())
    assert started == ["broker.lan"] and ticks == 100 and link.connect_failures == 0


def test_a_failing_resolver_keeps_the_link_down_and_is_retried_until_it_answers():
    import asyncio

    calls = []

    async def flaky(host, port):
        calls.append(host)
        if len(calls) < 3:
            raise OSError(-3, "EAI_AGAIN")  # DNS outage
        return "127.0.0.1"

    async def scenario():
        link = link_for(flaky)
        task = asyncio.create_task(link.run())
        await until(lambda: link.connect_failures >= 5)
        await link.close(timeout_ms=10)
        await task
        return link

    link = asyncio.run(scenario())
    # two failed lookups, then one good one; later reconnects reuse the address
    assert calls == ["broker.lan"] * 3
    assert link.connect_failures >= 5


def test_an_address_literal_is_never_resolved():
    import asyncio

    async def never(host, port):
        raise AssertionError("no lookup for an address")

    async def scenario():
        link = link_for(never, host="127.0.0.1")
        task = asyncio.create_task(link.run())
        await until(lambda: link.connect_failures >= 2)
        await link.close(timeout_ms=10)
        await task

    asyncio.run(scenario())


def test_the_default_resolver_refuses_to_block_on_micropython(monkeypatch):
    """MicroPython's event loop has no getaddrinfo, and its socket.getaddrinfo blocks the
    board: the default resolver raises OSError instead of calling it."""
    import socket

    from edge.link import client

    def blocking(*_):
        raise AssertionError("socket.getaddrinfo would block the tick loop")

    monkeypatch.setattr(socket, "getaddrinfo", blocking)
    monkeypatch.setattr(client.asyncio, "get_event_loop", lambda: types.SimpleNamespace())
    coro = client.resolve_off_loop("broker.lan", 1883)
    with pytest.raises(OSError, match="without blocking the tick loop"):
        coro.send(None)
