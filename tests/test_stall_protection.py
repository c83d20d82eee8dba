"""What protects a module when its tick loop stalls, in the contexts that really run it.

``Node.deadman_check`` itself is tested in test_node.py; here we test that each entry
point wires it to a context that survives a stalled tick loop, and that the watchdogs are
fed only after a completed tick (docs/safety.md, "Tick loop stalls"):

* on a MicroPython board, ``edge.boardmain.main`` against a fake ``machine`` module
  (``Pin``, ``WDT``, ``Timer``) and a fake tick clock: the timer fires while a tick hangs;
* in ``skid edge`` (``host.edgeproc.EdgeProcess``), its dead-man thread, with the clock
  injected so the deadline is reached when the test says, and bounded waits;
* ``edge.runner.EdgeRunner`` with a recording watchdog: a tick that raises or hangs is
  never followed by a feed.

Nothing sleeps on the logic side: the board test runs entirely on the fake clock; the
``skid edge`` test waits on conditions with bounded timeouts for the real thread.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
import types

import pytest

from edge.boardconfig import compile_config, load_board_config
from edge.boardconfig.compile import board_file
from edge.runner import EdgeRunner
from emulator.emulation import RecordingSink
from protocol import host_messages, messages
from protocol.constants import RESULT_OK
from tests.edge_harness import HOST_EPOCH_MS, ROOT, Rig

VALVE = ROOT / "board_configs" / "valve.toml"
PUMP = ROOT / "board_configs" / "pump.toml"


class Stalled(Exception):
    """Raised by a test driver to end a run whose tick it stalled."""


class Scenario:
    """Host side of a node the test cannot reach over a broker: leases and commands with
    host time consistent with the node's clock."""

    def __init__(self, node, clock):
        self.node = node
        self.clock = clock
        self.cid = 0

    def host_ms(self):
        return HOST_EPOCH_MS + self.clock()

    def lease(self):
        self.node.handle_lease(messages.build_lease("host", self.host_ms(), 1, 3000), self.clock())

    def command(self, op, args):
        self.cid += 1
        data = messages.build_command(self.cid, op, args, self.host_ms() + 60_000)
        ack = host_messages.parse(self.node.handle_command(data, self.clock()))
        assert ack.result == RESULT_OK, ack
        return ack

    def start_with(self, channel, value):
        self.lease()
        self.command("state", {"command": "start"})
        alias = [c.name for c in self.node.channels].index(channel)
        self.command("set_setpoint", {"channel": alias, "value": value})


# -- a MicroPython board: edge.boardmain against a fake machine module ------------------------


class FakeClock:
    """``time.ticks_ms`` of the fake board; advancing it fires the due hardware timers,
    as the timer interrupt would, whatever the tick loop is doing."""

    def __init__(self):
        self.now = 1000
        self.timers = []

    def __call__(self):
        return self.now

    def advance(self, ms, step=1):
        for _ in range(ms // step):
            self.now += step
            for timer in self.timers:
                timer.due(self.now)


def fake_machine(clock):
    """A ``machine`` module with what boardmain and the valve's pin drivers use."""
    m = types.ModuleType("machine")
    m.PWRON_RESET, m.WDT_RESET, m.SOFT_RESET = 1, 3, 5
    m.reset_cause = lambda: m.PWRON_RESET
    m.pins = {}
    m.watchdogs = []

    class Pin:
        IN, OUT = 0, 1

        def __init__(self, pin_id, mode=None):
            self.id = pin_id
            self.level = 1  # inputs idle high: the valve's active-low e-stop is released
            self.reads = 0
            self.on_read = None
            m.pins[pin_id] = self

        def value(self, level=None):
            if level is None:
                self.reads += 1
                if self.on_read is not None:
                    self.on_read()
                return self.level
            self.level = level

    class WDT:
        def __init__(self, id=0, timeout=5000):
            self.timeout = timeout
            self.feeds = 0
            m.watchdogs.append(self)

        def feed(self):
            self.feeds += 1

    class Timer:
        PERIODIC, ONE_SHOT = 1, 0

        def __init__(self, timer_id=-1, **kw):
            self.id = timer_id
            self.callback = None
            self.period = 0
            self.mode = None
            self.calls = 0
            clock.timers.append(self)
            if kw:
                self.init(**kw)

        def init(self, period=1000, mode=1, callback=None, **kw):
            self.period = period
            self.mode = mode
            self.callback = callback
            self.next_ms = clock.now + period

        def due(self, now):
            if self.callback is not None and now >= self.next_ms:
                self.next_ms += self.period
                self.calls += 1
                self.callback(self)

        def deinit(self):
            self.callback = None

    m.Pin, m.WDT, m.Timer = Pin, WDT, Timer
    return m


@pytest.fixture
def board(tmp_path, monkeypatch, request):
    """``edge.boardmain`` importable against a fake machine, fake ticks and a config.bin
    (the valve: one relay output, two pin inputs)."""
    clock = FakeClock()
    machine = fake_machine(clock)
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setattr(time, "ticks_ms", clock, raising=False)
    (tmp_path / "config.bin").write_bytes(board_file(compile_config(load_board_config(VALVE))))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("edge.boardmain", None)
    boardmain = importlib.import_module("edge.boardmain")
    request.addfinalizer(lambda: sys.modules.pop("edge.boardmain", None))
    built = []
    real_build = boardmain.build_node
    monkeypatch.setattr(
        boardmain, "build_node", lambda *a, **kw: built.append(real_build(*a, **kw)) or built[-1]
    )
    return types.SimpleNamespace(main=boardmain.main, machine=machine, clock=clock, built=built)


def test_board_timer_forces_outputs_safe_while_a_tick_hangs_and_the_watchdog_starves(
    board, monkeypatch
):
    clock, machine = board.clock, board.machine
    safe_level = 1  # the valve's relay (pin 25) is active low: safe (waste, 0) is level 1
    record = {}

    def stall_inside_a_tick():
        # The tick loop hangs in a sensor read; only the timer interrupt still runs.
        relay = machine.pins[25]
        slot = board.built[0].actuators[0]
        wdt = machine.watchdogs[0]
        record["feeds"] = wdt.feeds
        record["ticks"] = board.built[0].tick_count
        record["levels"] = []
        while relay.level != safe_level and clock.now - slot.last_write_ms < 10 * slot.deadman_ms:
            clock.advance(10)
            record["levels"].append((clock.now - slot.last_write_ms, relay.level))
        record["safe_after_ms"] = clock.now - slot.last_write_ms
        record["feeds_during_stall"] = wdt.feeds - record["feeds"]
        raise Stalled()

    steps = []

    async def sleep_ms(ms):
        # The board's asyncio.sleep_ms: time passes on the fake clock (timers fire).
        clock.advance(ms)
        node = board.built[0]
        host = Scenario(node, clock)
        steps.append(ms)
        host.lease()
        if len(steps) == 2:
            host.start_with("position", 1)
        if len(steps) == 10:
            assert node.outputs()["position"] == 1 and machine.pins[25].level != safe_level
            machine.pins[35].on_read = stall_inside_a_tick  # the e-stop input's next read
        await asyncio.sleep(0)

    monkeypatch.setattr(asyncio, "sleep_ms", sleep_ms, raising=False)
    with pytest.raises(Stalled):
        board.main()

    node = board.built[0]
    deadman_ms = node.actuators[0].deadman_ms
    (timer,) = clock.timers
    # The timer is wired to the dead-man check, periodic, at a fraction of the deadline.
    assert timer.mode == machine.Timer.PERIODIC and 0 < timer.period <= deadman_ms // 2
    assert timer.calls > 0
    # While the ticks ran, the timer never forced anything; during the stall it did, once
    # the deadline passed, within one timer period of it.
    assert all(level != safe_level for since, level in record["levels"] if since <= deadman_ms)
    assert deadman_ms < record["safe_after_ms"] <= deadman_ms + timer.period
    assert node.actuators[0].deadman_fired  # the next tick would latch deadman_expired
    # The hardware watchdog: armed from the config, fed once per completed tick, and never
    # during the hung tick, nor after the tick that raised.
    (wdt,) = machine.watchdogs
    assert wdt.timeout == 2000
    assert record["feeds"] == record["ticks"] - 1 == len(steps)
    assert record["feeds_during_stall"] == 0 and wdt.feeds == record["feeds"]
    assert machine.pins[25].level == safe_level  # and main's exit path left it safe


# -- skid edge: the dead-man thread of EdgeProcess ---------------------------------------------


class ManualClock:
    """Stands in for edgeproc.ScaledClock: ticks advance only through ``sleep_ms`` (the
    tick loop's waits) or ``advance``, so the deadline is crossed when the test says."""

    instances = []

    def __init__(self, speed=1.0, epoch=None):
        self.speed = speed
        self.now = 0
        ManualClock.instances.append(self)

    def __call__(self):
        return self.now

    def advance(self, ms):
        self.now += ms

    async def sleep_ms(self, ms):
        self.now += max(0, ms)
        await asyncio.sleep(0)


class RecordingWatchdog:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


def wait_until(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_skid_edge_deadman_thread_forces_a_stalled_module_safe(monkeypatch):
    import host.edgeproc as edgeproc

    ManualClock.instances.clear()
    monkeypatch.setattr(edgeproc, "ScaledClock", ManualClock)
    sink = RecordingSink()
    proc = edgeproc.EdgeProcess(PUMP, emulated=True, insecure=True, sink=sink)
    clock = ManualClock.instances[0]
    assert proc.runner.clock is clock
    watchdog = RecordingWatchdog()
    proc.runner.watchdog = watchdog  # where the Linux and systemd watchdogs are fed
    node = proc.node
    slot = node.actuators[0]
    host = Scenario(node, clock)
    plant_step = proc.runner.before_tick
    checks = []  # the dead-man thread's calls, counted
    real_check = node.deadman_check

    def deadman_check(now_ms):
        checks.append(now_ms)
        return real_check(now_ms)

    node.deadman_check = deadman_check
    record = {}

    def before_tick(now):
        plant_step(now)
        host.lease()
        n = node.tick_count
        if n == 2:
            host.start_with("flow", 2.0)
        elif n == 20:
            assert node.outputs()["flow"] == 2.0
            stall()
        elif n == 25:
            proc.stop()

    def stall():
        # This tick hangs (the event loop is blocked here); the dead-man thread runs on.
        feeds = watchdog.feeds
        clock.advance(slot.deadman_ms - 50)  # just short of the deadline
        seen = len(checks)
        # Several runs of the thread's check: nothing may be forced before the deadline.
        record["thread_ran"] = wait_until(lambda: len(checks) >= seen + 3)
        record["early"] = node.outputs()["flow"]
        clock.advance(100)  # past the deadline
        record["forced"] = wait_until(lambda: node.outputs()["flow"] == 0.0)
        record["feeds_during_stall"] = watchdog.feeds - feeds

    proc.runner.before_tick = before_tick
    asyncio.run(asyncio.wait_for(proc.run(), 30))

    assert record["thread_ran"], "the dead-man thread is not running during the stall"
    assert record["early"] == 2.0, "forced before the dead-man deadline"
    assert record["forced"], "the dead-man thread did not force the stalled output safe"
    assert record["feeds_during_stall"] == 0
    # The loop came back: the dead-man firing latched as a trip, outputs stay safe.
    trips = sink.trips()
    assert trips and trips[0].cause == "deadman_expired", trips
    assert node.all_safe()
    assert watchdog.feeds == node.tick_count  # after each tick completed, the slow one too
    assert proc._stop_deadman.is_set()  # the thread is told to end with the run


# -- the runner: the watchdog is fed only after a completed tick -------------------------------


def runner_with_watchdog(fail_on_tick, failure):
    rig = Rig("pump")
    rig.start()
    watchdog = RecordingWatchdog()
    ticks_at_feed = []
    watchdog.feed = lambda: ticks_at_feed.append(rig.node.tick_count)
    _, pressure = next((ch, drv) for ch, drv in rig.node.sensors if ch.name == "pressure")
    real_read = pressure.read

    def read(now_ms):
        if rig.node.tick_count == fail_on_tick:
            failure(ticks_at_feed)
        return real_read(now_ms)

    pressure.read = read
    clock = ManualClock()
    clock.now = rig.now
    runner = EdgeRunner(rig.node, "line1", clock, sleep_ms=clock.sleep_ms, watchdog=watchdog)
    return rig, runner, ticks_at_feed


def test_runner_feeds_the_watchdog_after_each_completed_tick_and_not_after_one_that_raises():
    def boom(feeds):
        raise Stalled()

    rig, runner, feeds = runner_with_watchdog(fail_on_tick=8, failure=boom)
    first = rig.node.tick_count + 1
    with pytest.raises(Stalled):
        asyncio.run(runner.run(max_ticks=50))
    # One feed per completed tick, each after that tick's work; none for the tick that
    # raised (tick 8), so the hardware watchdog resets the board.
    assert feeds == list(range(first, 8))
