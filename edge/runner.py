"""The thin async shell around a Node: schedules ticks, moves bytes, feeds watchdogs.

Everything that decides lives in ``edge.node``; this module only

* calls ``node.tick(now)`` every ``tick_ms`` on the clock it is given (board ticks, the
  host's monotonic clock, or a scaled clock shared by emulated processes), realigning
  after an overrun instead of bursting to catch up (counted in ``overruns``);
* feeds the hardware watchdog only after a tick completed, so a hung tick resets the
  board;
* runs the module's ``edge.session.ModuleSession`` on the link: incoming messages to
  ``node.handle_command`` / ``handle_lease``, the node's outgoing ones to the link's
  non-blocking queues, a fresh BIRTH (and a "dropped N" EVENT if the link had to drop
  events during an outage) on every (re)connect, a BIRTH after an accepted ``rebirth``.

The dead-man check must run from a context that survives a stalled tick loop; the board
entry point attaches it to a hardware timer, ``skid edge`` to a thread.
"""

from edge.clock import ticks_add, ticks_diff
from edge.session import ModuleSession
from edge.sink import NullSink

# The dead-man check runs this many times per shortest actuator deadline, so an expired
# deadline is acted on within a quarter of it.
DEADMAN_CHECKS_PER_DEADLINE = 4


def deadman_check_period_ms(node):
    """How often the independent dead-man check (``node.deadman_check``) should run."""
    return min(slot.deadman_ms for slot in node.actuators) // DEADMAN_CHECKS_PER_DEADLINE


class EdgeRunner:
    """``before_tick(now)`` (optional) runs just before each tick and ``after_tick(now)``
    just after it: the emulated plant's port when the node runs against emulated drivers
    (readings in before, the outputs the tick wrote out after, with no tick of delay).

    ``session``: the node's ``edge.session.ModuleSession``.  By default the node's sink
    if it is one, else a new one on ``link``; with no link, a node whose sink is
    something else (a test's recording sink) keeps it and the runner has no session."""

    def __init__(
        self,
        node,
        line,
        clock,
        sleep_ms=None,
        link=None,
        watchdog=None,
        before_tick=None,
        session=None,
        after_tick=None,
    ):
        self.node = node
        self.line = line
        self.clock = clock
        self.sleep_ms = sleep_ms if sleep_ms is not None else _sleep_ms
        self.link = link
        self.watchdog = watchdog
        self.tick_ms = node.tick_ms
        self.before_tick = before_tick
        self.after_tick = after_tick
        if session is None:
            sink = node.sink
            if isinstance(sink, ModuleSession):
                session = sink
            elif link is not None or type(sink) is NullSink:
                session = ModuleSession(node, line, clock, link)
        self.session = session
        self.overruns = 0
        self.ticks = 0
        self.max_lateness_ms = 0
        self._stop = False

    # -- link callbacks: the session's (kept for callers that hold the runner) -------------

    def on_connect(self):
        if self.session is not None:
            self.session.on_connect()

    def on_message(self, topic, payload):
        if self.session is not None:
            self.session.on_message(topic, payload)

    # -- the tick loop -----------------------------------------------------------------------

    def stop(self):
        self._stop = True

    async def run(self, max_ticks=None):
        node = self.node
        deadline = self.clock()
        while not self._stop:
            now = self.clock()
            late = ticks_diff(now, deadline)
            if late > self.max_lateness_ms:
                self.max_lateness_ms = late
            if self.before_tick is not None:
                self.before_tick(now)
            node.tick(now)
            if self.after_tick is not None:
                self.after_tick(now)
            if self.watchdog is not None:
                self.watchdog.feed()  # only after a completed tick
            if self.session is not None:
                self.session.after_tick()
            elif node.rebirth_pending:  # a node with its own sink, no session
                node.birth()
            self.ticks += 1
            if max_ticks is not None and self.ticks >= max_ticks:
                break
            deadline = ticks_add(deadline, self.tick_ms)
            wait = ticks_diff(deadline, self.clock())
            if wait < 0:
                # Overrun: start the next period now rather than bursting to catch up.
                self.overruns += 1
                deadline = self.clock()
                wait = 0
            await self.sleep_ms(wait)


async def _sleep_ms(ms):
    import asyncio  # here, so the module imports where there is no asyncio (WASI build)

    sleep_ms = getattr(asyncio, "sleep_ms", None)
    if sleep_ms is not None:  # MicroPython
        await sleep_ms(ms)
    else:
        await asyncio.sleep(ms / 1000)
