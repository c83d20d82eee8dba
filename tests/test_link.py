"""The edge MQTT link (edge/link/client.py) against real Mosquitto brokers.

The MicroPython WebAssembly build has no sockets, so the network half of the client runs
on CPython only (here); its tick-facing queue logic also runs under MicroPython in
tests/test_mqtt_packets.py.

Every wait is on a condition with a bounded timeout; the only fixed delay is the length
of the simulated outage, which is part of the scenario, not the basis of an assertion.
An observer (paho-mqtt, own thread) subscribed to ``#`` records what the broker delivers.
"""

import asyncio
import time

import pytest

from edge.link import mqtt_packets as mp
from edge.link.client import MqttLink, standard_subscriptions
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
from tests.broker import MosquittoBroker
from tests.mqtt_observer import Observer as _Observer

LINE, MODULE = "l1", "m1"
BIRTH = module_topic(LINE, MODULE, TOPIC_BIRTH)
DEATH = module_topic(LINE, MODULE, TOPIC_DEATH)
DATA = module_topic(LINE, MODULE, TOPIC_DATA)
EVENT = module_topic(LINE, MODULE, TOPIC_EVENT)
ACK = module_topic(LINE, MODULE, TOPIC_ACK)
CMD = module_topic(LINE, MODULE, TOPIC_CMD)
LEASE = host_topic(LINE, TOPIC_LEASE)
WILL = b"death:will"


# ---------------------------------------------------------------------------- helpers


async def until(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def run(scenario, timeout_s=60):
    asyncio.run(asyncio.wait_for(scenario, timeout_s))


class Observer(_Observer):
    def module_messages(self):
        """Messages the module published, in arrival order."""
        return self.messages_under(f"skid/v1/{LINE}/{MODULE}/", exclude=(CMD,))

    def payloads(self, topic):
        return [p for t, p in self.module_messages() if t == topic]


class Module:
    """A link plus what a module runtime would do in its callbacks."""

    def __init__(self, port, report_drops=False, **kwargs):
        self.births = 0
        self.received = []
        self.report_drops = report_drops
        options = dict(keepalive_s=5, backoff_min_ms=50, backoff_max_ms=400)
        options.update(kwargs)
        self.link = MqttLink(
            "127.0.0.1",
            port,
            "skid-" + MODULE,
            DEATH,
            WILL,
            subscriptions=standard_subscriptions(LINE, MODULE),
            on_message=lambda topic, payload: self.received.append((topic, payload)),
            on_connect=self._on_connect,
            **options,
        )
        self.task = None

    def _on_connect(self):
        self.births += 1
        self.link.publish_birth(BIRTH, b"birth-%d" % self.births)
        if self.report_drops:
            self.link.publish_dropped_notice(EVENT, lambda n: b"dropped %d" % n)

    async def __aenter__(self):
        self.task = asyncio.create_task(self.link.run())
        return self

    async def __aexit__(self, *exc):
        await asyncio.wait_for(self.link.close(timeout_ms=1000), 5)
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
def observer(broker):
    obs = Observer(broker.port)
    yield obs
    obs.close()


@pytest.fixture
def persistent_broker():
    """A broker that keeps sessions across restarts, so the observer misses nothing."""
    with MosquittoBroker(persistence=True) as running:
        yield running


# ---------------------------------------------------------------------------- against Mosquitto


def test_birth_first_commands_telemetry_events_and_clean_death(broker, observer):
    # The host reacts to BIRTH by sending a command at once: the link subscribes before
    # publishing BIRTH, so that command must not be lost.
    observer.react = lambda topic, payload: (
        observer.publish(CMD, b"cmd-after-" + payload) if topic == BIRTH else None
    )

    async def scenario():
        async with Module(broker.port) as module:
            link = module.link
            await until(lambda: observer.payloads(BIRTH), 10, "birth")
            assert link.is_up
            assert observer.module_messages()[0] == (BIRTH, b"birth-1")
            await until(lambda: module.received, 5, "command sent in reaction to birth")
            assert module.received[0] == (CMD, b"cmd-after-birth-1")

            observer.publish(LEASE, b"lease-1", qos=0)
            await until(lambda: (LEASE, b"lease-1") in module.received, 5, "lease")

            assert link.publish_telemetry(DATA, b"t-1")
            assert link.publish_event(EVENT, b"e-1")
            assert link.publish_ack(ACK, b"a-1")
            assert link.publish_event(EVENT, b"e-2", critical=True)
            await until(lambda: len(observer.payloads(EVENT)) == 2, 5, "events")
            await until(lambda: observer.payloads(ACK) and observer.payloads(DATA), 5, "ack+data")
            assert observer.payloads(EVENT) == [b"e-1", b"e-2"]
            assert observer.payloads(ACK) == [b"a-1"]
            assert observer.payloads(DATA) == [b"t-1"]
            await until(lambda: link.stats["events_sent"] == 2, 5, "event PUBACKs")
            assert link.stats["events_queued"] == 0
            assert link.stats["acks_sent"] == 1

            # Raised just before shutdown: still delivered, before the explicit DEATH.
            link.publish_event(EVENT, b"e-last")
            await asyncio.wait_for(link.close(death_payload=b"death:clean"), 5)
            assert not link.is_up
            assert module.task.done()

        await until(lambda: observer.payloads(DEATH), 5, "clean death")
        # A marker published after the close: once it arrives, a will (which the
        # DISCONNECT must have cancelled) would have arrived too.
        observer.publish("skid/v1/l1/host/state", b"marker")
        await until(lambda: ("skid/v1/l1/host/state", b"marker") in observer.messages, 5, "marker")
        assert observer.payloads(DEATH) == [b"death:clean"]
        topics = [t for t, _ in observer.module_messages()]
        assert topics.index(DEATH) > max(i for i, t in enumerate(topics) if t == EVENT)
        assert observer.payloads(EVENT)[-1] == b"e-last"
        assert link.stats["callback_errors"] == 0
        assert link.stats["publish_errors"] == 0

    run(scenario())


def test_tick_loop_never_blocked_while_broker_is_stopped_and_restarted(broker):
    gaps = []
    ticks = 0
    running = True

    async def tick_loop(link):
        nonlocal ticks
        last = time.monotonic()
        while running:
            ticks += 1
            link.publish_telemetry(DATA, b"t-%d" % ticks)
            if ticks % 10 == 0:
                link.publish_event(EVENT, b"e-%d" % ticks)
            await asyncio.sleep(0.01)  # 100 Hz
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def scenario():
        nonlocal running
        async with Module(broker.port) as module:
            link = module.link
            tick_task = asyncio.create_task(tick_loop(link))
            await until(lambda: link.is_up, 10, "first connection")
            await asyncio.to_thread(broker.stop)
            await until(lambda: not link.is_up, 5, "link down")
            ticks_at_down = ticks
            outage_start = time.monotonic()
            await asyncio.sleep(2.0)  # the outage (scenario, not an assertion basis)
            assert ticks - ticks_at_down > 100  # ~200 ticks at 100 Hz while down
            await asyncio.to_thread(broker.start)
            await until(lambda: link.is_up, 10, "reconnection")
            outage_s = time.monotonic() - outage_start
            await until(lambda: link.stats["births_sent"] == 2, 5, "second birth")
            running = False
            await tick_task
            stats = link.stats
        # ~19 ms on an idle machine (10 ms period + scheduling); 80 ms leaves room for a
        # loaded CI box while still catching any blocking backoff, connect or read.
        assert max(gaps) < 0.08, f"tick loop stalled for {max(gaps) * 1000:.0f} ms"
        assert len(gaps) > 150  # ran throughout (~100 Hz for over 2 s)
        assert stats["connects"] == 2
        assert stats["connect_failures"] >= 1  # it kept trying during the outage
        assert stats["telemetry_dropped"] > 100  # telemetry is not buffered while down
        assert outage_s < 6

    run(scenario())


def test_events_raised_during_outage_arrive_in_order_after_reconnect(persistent_broker):
    broker = persistent_broker
    observer = Observer(broker.port, client_id="host-observer", persistent=True)

    async def scenario():
        async with Module(broker.port, event_queue_size=32) as module:
            link = module.link
            await until(lambda: observer.payloads(BIRTH) == [b"birth-1"], 10, "birth-1")
            await asyncio.to_thread(broker.stop)
            await until(lambda: not link.is_up, 5, "link down")
            sent = [b"outage-%02d" % i for i in range(20)]
            for payload in sent:
                assert link.publish_event(EVENT, payload)
            assert link.stats["events_queued"] == 20
            await asyncio.to_thread(broker.start)
            await until(lambda: len(observer.payloads(EVENT)) >= 20, 15, "queued events")
            assert observer.payloads(EVENT) == sent  # in order, none lost, no duplicates
            assert link.dropped == 0
            topics = [t for t, _ in observer.module_messages()]
            # The new BIRTH precedes every event queued during the outage.
            assert observer.payloads(BIRTH) == [b"birth-1", b"birth-2"]
            second_birth = [i for i, t in enumerate(topics) if t == BIRTH][1]
            assert second_birth < topics.index(EVENT)

    try:
        run(scenario())
    finally:
        observer.close()


def test_outage_longer_than_the_buffer_reports_exactly_what_was_dropped(persistent_broker):
    broker = persistent_broker
    observer = Observer(broker.port, client_id="host-observer", persistent=True)

    async def scenario():
        async with Module(broker.port, report_drops=True, event_queue_size=8) as module:
            link = module.link
            await until(lambda: observer.payloads(BIRTH), 10, "birth-1")
            await asyncio.to_thread(broker.stop)
            await until(lambda: not link.is_up, 5, "link down")
            for i in range(13):
                assert link.publish_event(EVENT, b"outage-%02d" % i)
            assert link.dropped == 5  # events 0..4
            await asyncio.to_thread(broker.start)
            await until(lambda: len(observer.payloads(EVENT)) >= 8, 15, "events")
            # on_connect's notice needed a slot: it evicted event 5 and counted it.
            assert link.dropped == 6
            assert observer.payloads(EVENT) == [b"outage-%02d" % i for i in range(6, 13)] + [
                b"dropped 6"
            ]
            assert not link.publish_dropped_notice(EVENT, lambda n: b"dropped %d" % n)

    try:
        run(scenario())
    finally:
        observer.close()


def test_will_is_delivered_when_the_socket_dies_and_birth_follows_reconnect(broker, observer):
    async def scenario():
        async with Module(broker.port) as module:
            link = module.link
            await until(lambda: observer.payloads(BIRTH) == [b"birth-1"], 10, "birth-1")
            link._writer.transport.abort()  # unclean: no DISCONNECT, connection reset
            await until(lambda: observer.payloads(DEATH), 5, "will")
            await until(lambda: observer.payloads(BIRTH) == [b"birth-1", b"birth-2"], 10, "rebirth")
            assert link.is_up
            assert observer.payloads(DEATH) == [WILL]
            topics = [t for t, _ in observer.module_messages()]
            assert topics == [BIRTH, DEATH, BIRTH]
            assert link.stats["connects"] == 2
            # Commands still arrive on the new connection.
            observer.publish(CMD, b"cmd-2")
            await until(lambda: (CMD, b"cmd-2") in module.received, 5, "command")

    run(scenario())


class FreezableProxy:
    """TCP relay to the broker that can stop forwarding without closing (a dead path)."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.frozen = asyncio.Event()
        self.server = None
        self.port = None
        self._tasks = set()

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, client_reader, client_writer):
        if self.frozen.is_set():
            client_writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        for src, dst in ((client_reader, up_writer), (up_reader, client_writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)

    async def _pump(self, reader, writer):
        try:
            while not self.frozen.is_set():
                data = await reader.read(4096)
                if not data or self.frozen.is_set():
                    break
                writer.write(data)
                await writer.drain()
            await asyncio.Event().wait()  # frozen: hold the connection open, silently
        except (OSError, asyncio.CancelledError):
            writer.close()

    async def close(self):
        for task in self._tasks:
            task.cancel()
        self.server.close()


def test_dead_connection_is_detected_within_one_and_a_half_keepalives(broker):
    async def scenario():
        proxy = FreezableProxy(broker.port)
        await proxy.start()
        try:
            async with Module(proxy.port, keepalive_s=1) as module:
                link = module.link
                await until(lambda: link.stats["births_sent"] == 1, 10, "birth")
                proxy.frozen.set()
                frozen_at = time.monotonic()
                await until(lambda: not link.is_up, 5, "dead connection detected")
                detected_after = time.monotonic() - frozen_at
                assert detected_after < 1.5, f"took {detected_after:.2f} s with keepalive 1 s"
                assert "keepalive" in link.stats["last_error"]
                # The path heals: the link reconnects on its own.
                for task in proxy._tasks:
                    task.cancel()
                proxy.frozen.clear()
                await until(lambda: link.stats["births_sent"] == 2, 10, "reconnection")
        finally:
            await proxy.close()

    run(scenario())


def test_refused_credentials_keep_the_link_down_without_raising():
    with MosquittoBroker(users={"module": "right"}) as broker:

        async def scenario():
            async with Module(broker.port, username="module", password=b"wrong") as bad:
                await until(lambda: bad.link.stats["connect_failures"] >= 2, 10, "refusals")
                assert not bad.link.is_up
                assert "refused" in bad.link.stats["last_error"]
            async with Module(broker.port, username="module", password=b"right") as good:
                await until(lambda: good.link.is_up, 10, "authorised connection")

        run(scenario())


# ---------------------------------------------------------------------------- wire order (no network)


class RecordingWriter:
    def __init__(self):
        self.packets = []

    def write(self, data):
        reader = mp.PacketReader()
        reader.feed(data)
        self.packets.append(reader.pop())


def _published(writer):
    out = []
    for ptype, flags, body in writer.packets:
        if ptype == mp.PUBLISH:
            topic, payload, qos, _, _, pid = mp.parse_publish(flags, body)
            out.append((topic, payload, pid))
        else:
            out.append((mp.PACKET_NAMES[ptype],))
    writer.packets.clear()
    return out


def _puback(link, pid):
    link._handle_packet(mp.PUBACK, 0, mp.puback(pid)[2:])


def test_wire_order_birth_barrier_fifo_order_inflight_window_and_telemetry():
    link = MqttLink("127.0.0.1", 1, "m1", DEATH, WILL, subscriptions=[CMD], max_inflight=2)
    link.publish_event(EVENT, b"e-0")  # queued while down
    assert not link.publish_telemetry(DATA, b"t-down")
    link._up = True  # as after CONNACK
    link._subscribe_due = True
    link.publish_birth(BIRTH, b"b")
    link.publish_ack(ACK, b"a-1")
    link.publish_event(EVENT, b"e-2")
    link.publish_telemetry(DATA, b"t-1")
    link.publish_telemetry(DATA, b"t-2")  # replaces t-1: only the latest goes out
    w = RecordingWriter()
    assert link._write_pending(w) == 2
    assert _published(w) == [("SUBSCRIBE",), (BIRTH, b"b", 2)]
    assert link._write_pending(w) == 0  # nothing passes the birth until its PUBACK
    _puback(link, 2)
    link._write_pending(w)
    # Raise order across events and acks, at most two in flight, then telemetry.
    assert _published(w) == [(EVENT, b"e-0", 3), (ACK, b"a-1", 4), (DATA, b"t-2", 0)]
    link.publish_birth(BIRTH, b"rebirth")  # a rebirth request jumps the queue ...
    _puback(link, 3)
    link._write_pending(w)
    # ... but holds nothing back: the session's birth is already acknowledged.
    assert _published(w) == [(BIRTH, b"rebirth", 5), (EVENT, b"e-2", 6)]
    _puback(link, 5)
    link._write_pending(w)
    assert _published(w) == []
    # Connection lost with a-1 and e-2 unacknowledged: both go again, in order, new ids.
    link._after_disconnect()
    link._up = True
    link.publish_birth(BIRTH, b"b2")
    link._write_pending(w)
    _puback(link, 7)
    link._write_pending(w)
    assert _published(w) == [(BIRTH, b"b2", 7), (ACK, b"a-1", 8), (EVENT, b"e-2", 9)]
    assert link.stats["telemetry_replaced"] == 1
    assert link.stats["telemetry_dropped"] == 1
    assert link.stats["events_sent"] == 1 and link.stats["births_sent"] == 3


def test_tick_facing_methods_never_raise_and_drop_policy():
    link = MqttLink("127.0.0.1", 1, "m1", DEATH, WILL, event_queue_size=3, ack_queue_size=2)
    assert not link.publish_event("bad/#", b"x")
    assert not link.publish_event(EVENT, 12)  # not bytes
    assert not link.publish_birth("", b"")
    assert not link.publish_dropped_notice(EVENT, lambda n: b"")  # nothing dropped yet
    assert link.stats["publish_errors"] == 3
    assert "topic must not be empty" in link.stats["last_error"]
    link.publish_event(EVENT, b"trip", critical=True)
    link.publish_event(EVENT, b"alarm-1")
    link.publish_event(EVENT, b"trip-2", critical=True)
    assert link.publish_event(EVENT, b"alarm-2")  # evicts alarm-1, not a trip
    assert link.publish_event(EVENT, b"trip-3", critical=True)  # evicts alarm-2
    assert not link.publish_event(EVENT, b"alarm-3")  # all queued are critical: itself
    assert link.dropped == 3
    assert not link.publish_dropped_notice(EVENT, lambda n: 1 / 0)  # builder fails: nothing
    assert link.dropped == 3
    for i in range(3):
        link.publish_ack(ACK, b"ack-%d" % i)
    assert link.stats["acks_dropped"] == 1 and link.stats["acks_queued"] == 2
    with pytest.raises(ValueError, match="keepalive_s 0"):
        MqttLink("h", 1, "m1", DEATH, WILL, keepalive_s=0)
    with pytest.raises(ValueError, match="event_queue_size 0"):
        MqttLink("h", 1, "m1", DEATH, WILL, event_queue_size=0)


def test_a_flood_of_rebirths_never_holds_back_trips_and_acks():
    """Regression (issue 10 item 8): each rebirth used to replace the birth in flight
    (its PUBACK then matched nothing) and everything queued waited for a birth PUBACK.
    Births requested faster than the broker's round trip kept every trip EVENT and ACK
    off the wire.  Now only the session's first birth is a barrier; one birth is in
    flight at a time, the newest waits behind it, and PUBACKs of births still count."""
    link = MqttLink("127.0.0.1", 1, "m1", DEATH, WILL, max_inflight=4)
    link._up = True
    w = RecordingWriter()
    link.publish_birth(BIRTH, b"b-0")
    link.publish_event(EVENT, b"held-back")
    link._write_pending(w)
    assert _published(w) == [(BIRTH, b"b-0", 1)]  # the session's first birth: a barrier
    link.publish_birth(BIRTH, b"b-1")  # while b-0 is in flight
    link._write_pending(w)
    assert _published(w) == []  # b-0 still in flight, so is the barrier
    _puback(link, 1)
    link._write_pending(w)
    assert _published(w) == [(BIRTH, b"b-1", 2), (EVENT, b"held-back", 3)]
    assert link.births_sent == 1
    # A flood: a new birth every "tick", the broker acknowledging far later.
    for i in range(50):
        link.publish_birth(BIRTH, b"r-%d" % i)
        if i == 10:
            link.publish_event(EVENT, b"trip", critical=True)
            link.publish_ack(ACK, b"ack")
        link._write_pending(w)
    sent = _published(w)
    assert sent == [(EVENT, b"trip", 4), (ACK, b"ack", 5)], "trip and ack wait for no birth"
    _puback(link, 2)  # b-1 acknowledged: the newest waiting birth goes, the rest were replaced
    link._write_pending(w)
    assert _published(w) == [(BIRTH, b"r-49", 6)]
    _puback(link, 6)
    link._write_pending(w)
    assert _published(w) == [] and link._birth is None
    assert link.births_sent == 3


def test_an_unsigned_rebirth_flood_does_not_delay_a_trip_event():
    """End to end (issue 10 item 8): a keyed pump takes an unsigned rebirth every tick
    while a clog trips it; the broker acknowledges 80 ms (more than a tick) after each
    publish.  The trip EVENT must reach the wire in the tick it happens, as without the
    flood.  Deterministic: 1 ms steps, the link's packet handling driven directly."""
    from edge.session import ModuleSession
    from protocol import host_messages, messages
    from tests.edge_harness import KEY, Rig

    rtt_ms = 80
    rig = Rig("pump", key=KEY)
    link = MqttLink("broker", 1883, "pump1", "skid/v1/line1/pump1/death", b"x")
    link._up = True
    rig.start()
    rig.set("flow", 3.0)
    session = ModuleSession(rig.node, "line1", lambda: rig.now, link)
    w = RecordingWriter()
    pending = []  # (due ms, packet id)
    trip_at = trip_sent_at = None
    t0 = rig.now
    for ms in range(4000):
        now = t0 + ms
        for due, pid in [p for p in pending if p[0] <= now]:
            pending.remove((due, pid))
            _puback(link, pid)
        if ms % rig.tick_ms == 0:
            rig.now = now
            if now % 1000 == 0:
                rig.lease()
            flood = messages.build_command(7, "rebirth", None, rig.host_ms() + 5000)
            rig.node.handle_command(flood, now)  # unsigned: no auth block at all
            if ms == 2000:
                rig.plant.overrides["pressure"] = 30.0  # clog: over-pressure trip
            rig.plant.step(now)
            rig.node.tick(now)
            session.after_tick()  # the shell births again after an accepted rebirth
            if trip_at is None and rig.node.interlocks.active:
                trip_at = ms
        link._write_pending(w)
        for ptype, flags, body in w.packets:
            if ptype != mp.PUBLISH:
                continue
            topic, payload, qos, _, _, pid = mp.parse_publish(flags, body)
            if qos:
                pending.append((now + rtt_ms, pid))
            if trip_sent_at is None and topic.endswith("/event"):
                if host_messages.parse_event(payload).type == "trip":
                    trip_sent_at = ms
        w.packets.clear()
    assert trip_at is not None and trip_sent_at is not None, (trip_at, link.stats)
    assert trip_sent_at - trip_at <= rtt_ms, (trip_at, trip_sent_at)
    assert link.stats["events_queued"] == 0 and link.stats["acks_queued"] <= 1
