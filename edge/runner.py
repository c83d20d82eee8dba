"""The thin async shell around a Node: schedules ticks, moves bytes, feeds watchdogs.

Everything that decides lives in ``edge.node``; this module only

* calls ``node.tick(now)`` every ``tick_ms`` on the clock it is given (board ticks, the
  host's monotonic clock, or a scaled clock shared by emulated processes), realigning
  after an overrun instead of bursting to catch up (counted in ``overruns``);
* feeds the hardware watchdog only after a tick completed, so a hung tick resets the
  board;
* hands incoming MQTT messages to ``node.handle_command`` / ``handle_lease`` and the
  node's outgoing messages to the link's non-blocking queues (``LinkSink``);
* on every (re)connect publishes a fresh BIRTH and, if the link had to drop events during
  an outage, one "dropped N" EVENT after it.

The dead-man check must run from a context that survives a stalled tick loop; the board
entry point attaches it to a hardware timer, ``skid edge`` to a thread.
"""

from edge.clock import ticks_add, ticks_diff
from protocol.topics import (
    TOPIC_ACK,
    TOPIC_BIRTH,
    TOPIC_CMD,
    TOPIC_DATA,
    TOPIC_DEATH,
    TOPIC_EVENT,
    TOPIC_LEASE,
    host_topic,
    module_topic,
)


class LinkSink:
    """Maps the node's outgoing messages onto the module's topics of an MqttLink."""

    def __init__(self, link, line, module):
        self.link = link
        self.t_birth = module_topic(line, module, TOPIC_BIRTH)
        self.t_data = module_topic(line, module, TOPIC_DATA)
        self.t_event = module_topic(line, module, TOPIC_EVENT)
        self.t_ack = module_topic(line, module, TOPIC_ACK)

    def publish_birth(self, payload):
        self.link.publish_birth(self.t_birth, payload)

    def publish_telemetry(self, payload):
        self.link.publish_telemetry(self.t_data, payload)

    def publish_event(self, payload, critical=False):
        self.link.publish_event(self.t_event, payload, critical)

    def publish_ack(self, payload):
        self.link.publish_ack(self.t_ack, payload)


class NullSink:
    """Discards what a node publishes: a module running without a broker."""

    def publish_birth(self, payload):
        pass

    def publish_telemetry(self, payload):
        pass

    def publish_event(self, payload, critical=False):
        pass

    def publish_ack(self, payload):
        pass


def death_topic(line, module):
    return module_topic(line, module, TOPIC_DEATH)


class EdgeRunner:
    """``before_tick(now)`` (optional) runs just before each tick: the emulator's plant
    step when the node runs against emulated drivers."""

    def __init__(
        self, node, line, clock, sleep_ms=None, link=None, watchdog=None, before_tick=None
    ):
        self.node = node
        self.line = line
        self.clock = clock
        self.sleep_ms = sleep_ms if sleep_ms is not None else _sleep_ms
        self.link = link
        self.watchdog = watchdog
        self.tick_ms = node.tick_ms
        self.before_tick = before_tick
        self.next_bdseq = node.bdseq
        self.overruns = 0
        self.ticks = 0
        self.max_lateness_ms = 0
        self._stop = False
        self._cmd_topic = module_topic(line, node.module_id, TOPIC_CMD)
        self._lease_topic = host_topic(line, TOPIC_LEASE)

    # -- link callbacks (run inside the link task; must not await) -------------------------

    def on_connect(self):
        # The will sent with this CONNECT carries next_bdseq: the birth must match it.
        # Then arm the next session's will with the following bdSeq (Sparkplug B).
        node = self.node
        node.birth(self.next_bdseq)
        self.next_bdseq = (self.next_bdseq + 1) & 0xFF
        link = self.link
        if link is not None:
            link.set_will(node.death_for(self.next_bdseq))
            link.publish_dropped_notice(node.sink.t_event, node.dropped_event)

    def on_message(self, topic, payload):
        if isinstance(topic, (bytes, bytearray)):
            topic = topic.decode()
        now = self.clock()
        if topic == self._cmd_topic:
            self.node.handle_command(payload, now)
        elif topic == self._lease_topic:
            self.node.handle_lease(payload, now)

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
            if self.watchdog is not None:
                self.watchdog.feed()  # only after a completed tick
            if node.rebirth_pending:
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
