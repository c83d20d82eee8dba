"""Non-blocking MQTT 3.1.1 link between an edge module and the broker.

``MqttLink.run()`` is one asyncio task that owns the socket: it connects, keeps the
connection alive, reconnects with exponential backoff and jitter, and is the only code
that awaits network I/O.  The control tick loop talks to it through plain methods that
never await, never block and never raise (they return True/False and count what they
could not keep):

* ``publish_telemetry(topic, payload)``: QoS 0.  While up, one pending packet per topic
  (a newer one replaces the unsent older one: ``telemetry_replaced``); while down it is
  dropped (``telemetry_dropped``).  Telemetry is never replayed after an outage: the next
  tick produces fresher data, and stale samples would mislead the host.
* ``publish_event(topic, payload, critical=False)``: QoS 1, appended to a bounded FIFO
  (``event_queue_size``) that survives outages and is delivered in order after a
  reconnect.  Each entry stays queued until its PUBACK.  When the FIFO is full the OLDEST
  non-critical entry is dropped (when every queued entry is critical: the newcomer if it
  is not critical, else the oldest): the newest state matters most, except for trips and first-out alarms,
  which the runtime marks ``critical``.  Each drop is counted in ``dropped``, and
  ``publish_dropped_notice(topic, make_payload)`` queues one critical "dropped N events"
  EVENT for the drops not yet reported (the runtime calls it from ``on_connect``).
* ``publish_ack(topic, payload)``: QoS 1, its own bounded FIFO (drop oldest,
  ``acks_dropped``), so a burst of acknowledgements can never evict an alarm.  Events and
  acks leave in the order they were raised.
* ``publish_birth(topic, payload)``: QoS 1, at most one in flight, ahead of every queued
  event, ack and telemetry packet.  The session's first BIRTH holds everything else back
  until the broker has acknowledged it: the host always learns of a (re)connected module
  before hearing from it.  A replacement BIRTH (a ``rebirth``) holds nothing back, so
  however often it is asked for, trips and acks keep flowing; while one is in flight a
  newer one waits in a single slot (the latest wins) and follows its PUBACK.

On every connection the wire order is: CONNECT (carrying the will: DEATH), SUBSCRIBE
(the module's command and the host's lease topics, so a host that reacts to BIRTH cannot
lose its first command), BIRTH (queued by ``on_connect()``), then the FIFOs in order, then
telemetry.  Sessions are clean: commands or leases published while the module was away
are stale, so the broker must not replay them.  Delivery is at least once: a QoS 1
message in flight when the connection died is sent again after reconnecting, so the host
may see a duplicate (after the original; dedupe on the message's sequence number), and
``on_message`` may likewise see a command twice.

Keepalive: a PINGREQ goes out after ``keepalive_s / 2`` without traffic; a connection
from which nothing arrived for ``keepalive_s`` is declared dead (within ~1.25 keepalive
including the check period), closed, and reconnected.

``close()`` shuts down cleanly: queued QoS 1 messages are flushed (bounded time), DEATH is
published explicitly, then DISCONNECT (which tells the broker not to send the will).

Callbacks (``on_connect()``, ``on_message(topic, payload)``) run inside the link task:
they must be quick and must not await; exceptions from them are counted, not raised.
Everything here must run on the event loop of the tick task (no threads).
MicroPython-compatible (uses ``asyncio.open_connection``).
"""

import asyncio
import random
import time

from edge.clock import ticks_diff
from edge.link import mqtt_packets as mp


def is_ip_literal(host):
    """True for a dotted IPv4 address or an IPv6 literal: connecting to it needs no DNS."""
    if not isinstance(host, str):
        return False
    if ":" in host:
        return True
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit() or int(p) > 255:
            return False
    return True


async def resolve_off_loop(host, port):
    """The default resolver: what to hand ``open_connection`` for a broker *name*.

    CPython's event loop resolves inside ``open_connection`` in a worker thread, off the
    tick path, so the name is returned as is.  MicroPython's loop has no ``getaddrinfo``:
    its ``socket.getaddrinfo`` blocks the whole board (the tick loop included) for as long
    as the DNS server takes, so this refuses rather than block; a board resolves its
    broker once at boot instead (``edge.boardmain.boot_address``)."""
    if getattr(asyncio.get_event_loop(), "getaddrinfo", None) is not None:
        return host
    raise OSError(
        "cannot resolve {!r} without blocking the tick loop (resolve at boot, or give "
        "an address)".format(host)
    )


def _monotonic_ticks_ms():
    # CPython has no ticks_ms(); same 30-bit wrap as the boards.
    return int(time.monotonic() * 1000) & 0x3FFFFFFF  # pyright: ignore[reportAttributeAccessIssue]


ticks_ms = getattr(time, "ticks_ms", _monotonic_ticks_ms)

_READ_CHUNK = 512
MAX_KEEPALIVE_S = 65535  # MQTT's keepalive is a 16-bit count of seconds
MIN_CHECK_MS = 50  # the keepalive check runs every keepalive/4, within these bounds
MAX_CHECK_MS = 1000
CLOSE_TIMEOUT_MS = 2000  # close(): how long queued QoS 1 messages may take to flush
_RETRY_ERRORS = (OSError, ValueError, asyncio.TimeoutError)


class _Qos1Queue:
    """Bounded FIFO of QoS 1 publishes; ``items[:sent]`` are in flight (sent, no PUBACK).

    An entry is ``[seq, packet, pid_offset, critical, pid]``: ``packet`` is a complete
    PUBLISH whose packet id is patched in place at ``pid_offset`` each time it is sent.
    """

    def __init__(self, capacity):
        self.capacity = capacity
        self.items = []
        self.sent = 0
        self.dropped = 0

    def make_room(self, critical):
        """Evict one entry if full: the oldest non-critical one, else (only for a critical
        newcomer) the oldest.  False means the newcomer itself is the one to drop."""
        items = self.items
        if len(items) < self.capacity:
            return True
        victim = -1
        for i in range(len(items)):
            if not items[i][3]:
                victim = i
                break
        self.dropped += 1
        if victim < 0:
            if not critical:
                return False  # every queued entry is critical and the newcomer is not
            victim = 0
        if victim < self.sent:
            self.sent -= 1  # its PUBACK, if it ever comes, will match nothing
        items.pop(victim)
        return True

    def push(self, entry):
        if self.make_room(entry[3]):
            self.items.append(entry)
            return True
        return False

    def next_unsent(self):
        if self.sent < len(self.items):
            return self.items[self.sent]
        return None

    def acked(self, pid):
        items = self.items
        for i in range(self.sent):
            if items[i][4] == pid:
                items.pop(i)
                self.sent -= 1
                return True
        return False

    def rewind(self):
        # After a disconnect everything unacknowledged is sent again, oldest first.
        for i in range(self.sent):
            self.items[i][4] = 0
        self.sent = 0


def _qos1_packet(topic, payload):
    # A PUBLISH with a placeholder packet id and the offset where the real one goes.
    pkt = bytearray(mp.publish(topic, payload, 1, False, False, 0xFFFF))
    decoded = mp.decode_remaining_length(pkt, 1)
    n = decoded[1] if decoded is not None else 1
    return pkt, 1 + n + 2 + ((pkt[1 + n] << 8) | pkt[2 + n])


def _set_pid(entry_packet, offset, pid):
    entry_packet[offset] = pid >> 8
    entry_packet[offset + 1] = pid & 0xFF


def _describe(exc):
    text = str(exc)
    name = type(exc).__name__
    return name + ": " + text if text else name


async def _wait_event(event, timeout_ms):
    """True if ``event`` got set within ``timeout_ms``."""
    try:
        await asyncio.wait_for(event.wait(), timeout_ms / 1000)
        return True
    except asyncio.TimeoutError:
        return False


def _check_options(keepalive_s, positive, backoff_min_ms, backoff_max_ms):
    """Raise ValueError for a keepalive outside MQTT's 16 bits, a ``positive`` (name,
    value) that is not an int >= 1, or a backoff maximum below its minimum."""
    if not isinstance(keepalive_s, int) or keepalive_s < 1 or keepalive_s > MAX_KEEPALIVE_S:
        raise ValueError("keepalive_s {!r} out of range 1..{}".format(keepalive_s, MAX_KEEPALIVE_S))
    for name, value in positive:
        if not isinstance(value, int) or value < 1:
            raise ValueError("{} {!r} must be an int >= 1".format(name, value))
    if not isinstance(backoff_max_ms, int) or backoff_max_ms < backoff_min_ms:
        raise ValueError(
            "backoff_max_ms {!r} must be an int >= backoff_min_ms {}".format(
                backoff_max_ms, backoff_min_ms
            )
        )


def standard_subscriptions(line, module):
    """The module's command topic (QoS 1) and the host lease topic (QoS 0)."""
    from protocol.topics import TOPIC_CMD, TOPIC_LEASE, host_topic, module_topic

    return [(module_topic(line, module, TOPIC_CMD), 1), (host_topic(line, TOPIC_LEASE), 0)]


class MqttLink:
    def __init__(
        self,
        host,
        port,
        client_id,
        will_topic,
        will_payload,
        subscriptions=(),
        on_message=None,
        on_connect=None,
        keepalive_s=10,
        event_queue_size=32,
        backoff_min_ms=250,
        backoff_max_ms=8000,
        username=None,
        password=None,
        ack_queue_size=8,
        max_inflight=4,
        telemetry_topics_max=16,
        connect_timeout_ms=5000,
        max_packet_size=mp.DEFAULT_MAX_PACKET_SIZE,
        resolve=None,
    ):
        _check_options(
            keepalive_s,
            (
                ("event_queue_size", event_queue_size),
                ("ack_queue_size", ack_queue_size),
                ("max_inflight", max_inflight),
                ("telemetry_topics_max", telemetry_topics_max),
                ("backoff_min_ms", backoff_min_ms),
                ("connect_timeout_ms", connect_timeout_ms),
            ),
            backoff_min_ms,
            backoff_max_ms,
        )
        self.host = host
        self.port = port
        # ``resolve(host, port)`` (a coroutine) gives what open_connection gets; called
        # until it succeeds, bounded by connect_timeout_ms, never again after: an address
        # literal skips it.  A resolver that hangs or fails only keeps the link down.
        self._resolve = resolve if resolve is not None else resolve_off_loop
        self._address = host if is_ip_literal(host) else None
        self.client_id = client_id
        self.will_topic = will_topic
        self.keepalive_s = keepalive_s
        self._username = username
        self._password = password
        # Validates client id, will and credentials once, at construction.
        self.set_will(will_payload)
        subs = []
        for sub in subscriptions:
            if isinstance(sub, str):
                subs.append((sub, 1))
            else:
                subs.append((sub[0], sub[1]))
        if subs:
            mp.subscribe(1, subs)  # validate now, not on every connect
        self._subscriptions = subs
        self._on_message = on_message
        self._on_connect = on_connect
        self._backoff_min_ms = backoff_min_ms
        self._backoff_max_ms = backoff_max_ms
        self._connect_timeout_ms = connect_timeout_ms
        self._max_inflight = max_inflight
        self._max_packet_size = max_packet_size
        # A PINGREQ after half the keepalive without traffic; dead after a whole one
        # without hearing anything; checked every quarter (within the bounds below).
        self._ping_ms = keepalive_s * 500
        self._dead_ms = keepalive_s * 1000
        self._check_ms = max(MIN_CHECK_MS, min(keepalive_s * 250, MAX_CHECK_MS))
        self._init_queues(event_queue_size, ack_queue_size, telemetry_topics_max)
        self._init_task_state()
        self._zero_counters()

    def _init_queues(self, event_queue_size, ack_queue_size, telemetry_topics_max):
        self._events = _Qos1Queue(event_queue_size)
        self._acks = _Qos1Queue(ack_queue_size)
        self._birth = None  # [packet, pid_offset] until PUBACKed
        self._birth_pid = 0
        self._birth_next = None  # a newer birth waiting for the one in flight
        self._born = False  # the broker has acknowledged this session's first birth
        self._tele = {}
        self._tele_spare = {}
        self._tele_max = telemetry_topics_max
        self._pubacks_due = []
        self._seq = 0
        self._next_pid = 0
        self._reported_drops = 0

    def _init_task_state(self):
        self._up = False
        self._writer = None  # the session's stream, for diagnostics and fault-injection tests
        self._running = False
        self._stopping = False
        self._shutdown_budget_ms = CLOSE_TIMEOUT_MS
        self._session_error = None
        self._reset_session_flags()
        now = ticks_ms()
        self._last_rx = now
        self._last_tx = now
        self._last_ping = now
        self._wake = asyncio.Event()
        self._session_end = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._closed = asyncio.Event()

    def _zero_counters(self):
        """The counters ``stats`` reports, all zero."""
        self.connects = 0
        self.disconnects = 0
        self.connect_failures = 0
        self.telemetry_sent = 0
        self.telemetry_replaced = 0
        self.telemetry_dropped = 0
        self.events_sent = 0
        self.acks_sent = 0
        self.births_sent = 0
        self.messages_received = 0
        self.publish_errors = 0
        self.callback_errors = 0
        self.subscribe_failures = 0
        self.last_error = None

    # ------------------------------------------------------------ tick-facing (never await)

    @property
    def is_up(self):
        return self._up

    @property
    def dropped(self):
        """Events dropped from the full FIFO since the link was created."""
        return self._events.dropped

    def publish_dropped_notice(self, topic, make_payload):
        """Queue a critical EVENT reporting events dropped since the previous notice.

        ``make_payload(n)`` builds the payload for ``n`` dropped events; ``n`` already
        counts an entry evicted to make room for the notice itself, so the notices add up
        exactly to ``dropped``.  Returns False (and builds nothing) when nothing new was
        dropped.  Call it from ``on_connect`` after ``publish_birth`` (and, if wanted, from
        the tick after a burst).
        """
        queue = self._events
        if queue.dropped == self._reported_drops:
            return False
        try:
            full = len(queue.items) >= queue.capacity
            n = queue.dropped - self._reported_drops + (1 if full else 0)
            pkt, offset = _qos1_packet(topic, make_payload(n))
        except Exception as exc:
            return self._publish_error(exc)
        queue.make_room(True)
        self._reported_drops = queue.dropped
        self._seq += 1
        queue.items.append([self._seq, pkt, offset, True, 0])
        self._wake.set()
        return True

    @property
    def stats(self):
        return {
            "up": self._up,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "connect_failures": self.connect_failures,
            "telemetry_sent": self.telemetry_sent,
            "telemetry_replaced": self.telemetry_replaced,
            "telemetry_dropped": self.telemetry_dropped,
            "events_queued": len(self._events.items),
            "events_sent": self.events_sent,
            "events_dropped": self._events.dropped,
            "acks_queued": len(self._acks.items),
            "acks_sent": self.acks_sent,
            "acks_dropped": self._acks.dropped,
            "births_sent": self.births_sent,
            "messages_received": self.messages_received,
            "publish_errors": self.publish_errors,
            "callback_errors": self.callback_errors,
            "subscribe_failures": self.subscribe_failures,
            "last_error": self.last_error,
        }

    def publish_telemetry(self, topic, payload):
        if not self._up:
            self.telemetry_dropped += 1
            return False
        try:
            pkt = mp.publish(topic, payload)
        except Exception as exc:
            return self._publish_error(exc)
        tele = self._tele
        if topic in tele:
            self.telemetry_replaced += 1
        elif len(tele) >= self._tele_max:
            self.telemetry_dropped += 1
            return False
        tele[topic] = pkt
        self._wake.set()
        return True

    def publish_event(self, topic, payload, critical=False):
        return self._enqueue(self._events, topic, payload, critical)

    def publish_ack(self, topic, payload):
        return self._enqueue(self._acks, topic, payload, False)

    def publish_birth(self, topic, payload):
        try:
            pkt, offset = _qos1_packet(topic, payload)
        except Exception as exc:
            return self._publish_error(exc)
        if self._birth is not None and self._birth_pid:
            # One in flight keeps its packet id (its PUBACK must still count, or a flood
            # of rebirths would never see one); the newest waits behind it.
            self._birth_next = [pkt, offset]
        else:
            self._birth = [pkt, offset]
        self._wake.set()
        return True

    def _enqueue(self, queue, topic, payload, critical):
        try:
            pkt, offset = _qos1_packet(topic, payload)
        except Exception as exc:
            return self._publish_error(exc)
        self._seq += 1
        kept = queue.push([self._seq, pkt, offset, bool(critical), 0])
        self._wake.set()
        return kept

    def _publish_error(self, exc):
        self.publish_errors += 1
        self.last_error = "publish: " + _describe(exc)
        return False

    # ------------------------------------------------------------ link task

    async def run(self):
        """Connect and stay connected until ``close()``; never raises on network errors."""
        self._running = True
        self._closed.clear()
        attempt = 0
        try:
            while not self._stopping:
                conn = None
                try:
                    conn = await self._connect()
                except _RETRY_ERRORS as exc:
                    self.connect_failures += 1
                    self.last_error = "connect: " + _describe(exc)
                if conn is not None:
                    attempt = 0
                    await self._session(conn[0], conn[1], conn[2])
                if self._stopping:
                    break
                delay = self._backoff_ms(attempt)
                attempt += 1
                await _wait_event(self._stop_event, delay)
        finally:
            self._up = False
            self._running = False
            self._closed.set()

    def set_will(self, will_payload):
        """Use ``will_payload`` as the DEATH from the next CONNECT on (Sparkplug-style: the
        runtime bumps bdSeq after each birth, so the will of the next session carries the
        next bdSeq and a late DEATH of an old session cannot end a newer one)."""
        self._connect_packet = mp.connect(
            self.client_id,
            self.keepalive_s,
            True,
            self.will_topic,
            will_payload,
            1,
            False,
            self._username,
            self._password,
        )
        self._death = _qos1_packet(self.will_topic, will_payload)

    async def close(self, death_payload=None, timeout_ms=CLOSE_TIMEOUT_MS):
        """Flush queued QoS 1 messages, publish DEATH, DISCONNECT; wait for ``run()`` to end.

        ``death_payload`` replaces the will payload for this explicit DEATH (e.g. to say
        "clean shutdown").  Bounded by about ``timeout_ms``.
        """
        if death_payload is not None:
            self._death = _qos1_packet(self.will_topic, death_payload)
        self._shutdown_budget_ms = timeout_ms
        self._stopping = True
        self._stop_event.set()
        self._session_end.set()
        if self._running:
            await self._closed.wait()

    def _backoff_ms(self, attempt):
        delay = self._backoff_min_ms << min(attempt, 20)
        if delay > self._backoff_max_ms:
            delay = self._backoff_max_ms
        half = delay // 2
        # "Equal jitter": at least half the delay, so a fleet restarting together spreads out.
        return half + (random.getrandbits(16) * (delay - half)) // 65536

    async def _connect(self):
        timeout_s = self._connect_timeout_ms / 1000
        if self._address is None:
            self._address = await asyncio.wait_for(self._resolve(self.host, self.port), timeout_s)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self._address, self.port), timeout_s
        )
        try:
            writer.write(self._connect_packet)
            await asyncio.wait_for(writer.drain(), timeout_s)
            parser = mp.PacketReader(self._max_packet_size)
            pkt = await asyncio.wait_for(self._read_one(reader, parser), timeout_s)
            if pkt[0] != mp.CONNACK:
                raise mp.MqttProtocolError(
                    "expected CONNACK, got {}".format(mp.PACKET_NAMES.get(pkt[0], pkt[0]))
                )
            code = mp.parse_connack(pkt[2])[1]
            if code != mp.CONNACK_ACCEPTED:
                raise OSError("broker refused connection: " + mp.CONNACK_MESSAGES[code])
        except BaseException:
            await self._close_writer(writer)
            raise
        return reader, writer, parser

    async def _read_one(self, reader, parser):
        while True:
            pkt = parser.pop()
            if pkt is not None:
                return pkt
            data = await reader.read(_READ_CHUNK)
            if not data:
                raise OSError("connection closed by broker")
            parser.feed(data)

    async def _close_writer(self, writer):
        # MicroPython closes the socket in wait_closed(); CPython in close().
        try:
            writer.close()
            await writer.wait_closed()
        except Exception:
            pass

    async def _session(self, reader, writer, parser):
        now = ticks_ms()
        self._last_rx = now
        self._last_tx = now
        self._last_ping = now
        self._session_error = None
        self._session_end.clear()
        self._subscribe_due = bool(self._subscriptions)
        self._writer = writer
        self._up = True
        self.connects += 1
        callback = self._on_connect
        if callback is not None:
            try:
                callback()
            except Exception as exc:
                self.callback_errors += 1
                self.last_error = "on_connect: " + _describe(exc)
        self._wake.set()
        rtask = asyncio.create_task(self._read_loop(reader, parser))
        wtask = asyncio.create_task(self._write_loop(writer))
        try:
            await self._supervise()
            if self._stopping and self._session_error is None:
                await self._shutdown(wtask)
        finally:
            self._up = False
            self.disconnects += 1
            for task in (rtask, wtask):
                task.cancel()
            for task in (rtask, wtask):
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:
                    pass
            await self._close_writer(writer)
            self._writer = None
            self._after_disconnect()

    def _after_disconnect(self):
        self._events.rewind()
        self._acks.rewind()
        self._birth = None  # on_connect queues a fresh one on the next connection
        self._birth_pid = 0
        self._birth_next = None
        self._born = False
        self.telemetry_dropped += len(self._tele)
        self._tele.clear()
        self._pubacks_due.clear()
        self._reset_session_flags()
        self._wake.clear()

    def _reset_session_flags(self):
        """Per-connection protocol flags: clear at construction and after every session."""
        self._subscribe_due = False
        self._ping_due = False
        self._death_due = False
        self._death_pid = 0
        self._death_acked = False
        self._disconnect_due = False
        self._disconnect_sent = False

    def _end_session(self, where, exc):
        if self._session_error is None:
            self._session_error = where + ": " + _describe(exc)
            self.last_error = self._session_error
        self._session_end.set()

    async def _supervise(self):
        ping_ms = self._ping_ms
        while not self._stopping:
            if await _wait_event(self._session_end, self._check_ms):
                return
            now = ticks_ms()
            rx_idle = ticks_diff(now, self._last_rx)
            if rx_idle >= self._dead_ms:
                self._end_session("keepalive", OSError("no packet from broker for %d ms" % rx_idle))
                return
            if ticks_diff(now, self._last_ping) >= ping_ms and (
                rx_idle >= ping_ms or ticks_diff(now, self._last_tx) >= ping_ms
            ):
                self._ping_due = True
                self._wake.set()

    async def _shutdown(self, wtask):
        budget = self._shutdown_budget_ms
        start = ticks_ms()
        while (self._events.items or self._acks.items or self._birth is not None) and (
            self._session_error is None and ticks_diff(ticks_ms(), start) < budget // 2
        ):
            await asyncio.sleep(0.01)
        self._death_due = True
        self._wake.set()
        while not self._death_acked and self._session_error is None:
            if ticks_diff(ticks_ms(), start) >= budget:
                break
            await asyncio.sleep(0.01)
        self._disconnect_due = True
        self._wake.set()
        remaining = budget - ticks_diff(ticks_ms(), start)
        try:
            await asyncio.wait_for(wtask, max(remaining, 100) / 1000)
        except Exception:
            pass

    async def _read_loop(self, reader, parser):
        try:
            while True:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    raise OSError("connection closed by broker")
                self._last_rx = ticks_ms()
                parser.feed(data)
                while True:
                    pkt = parser.pop()
                    if pkt is None:
                        break
                    self._handle_packet(pkt[0], pkt[1], pkt[2])
        except Exception as exc:
            self._end_session("read", exc)

    def _handle_packet(self, ptype, flags, body):
        if ptype == mp.PUBLISH:
            topic, payload, qos, _retain, _dup, pid = mp.parse_publish(flags, body)
            if qos:
                self._pubacks_due.append(pid)
                self._wake.set()
            self.messages_received += 1
            callback = self._on_message
            if callback is not None:
                try:
                    callback(topic, payload)
                except Exception as exc:
                    self.callback_errors += 1
                    self.last_error = "on_message: " + _describe(exc)
        elif ptype == mp.PUBACK:
            pid = mp.parse_puback(body)
            if self._birth_pid and pid == self._birth_pid:
                self._birth = self._birth_next
                self._birth_next = None
                self._birth_pid = 0
                self._born = True
                self.births_sent += 1
            elif self._death_pid and pid == self._death_pid:
                self._death_acked = True
            elif self._events.acked(pid):
                self.events_sent += 1
            elif self._acks.acked(pid):
                self.acks_sent += 1
            self._wake.set()
        elif ptype == mp.PINGRESP:
            mp.parse_empty(ptype, body)
        elif ptype == mp.SUBACK:
            codes = mp.parse_suback(body)[1]
            if mp.SUBACK_FAILURE in codes:
                self.subscribe_failures += 1
                self.last_error = "subscribe refused by broker: return codes {}".format(codes)
        else:
            raise mp.MqttProtocolError(
                "unexpected {} from broker".format(mp.PACKET_NAMES.get(ptype, ptype))
            )

    async def _write_loop(self, writer):
        try:
            while True:
                self._wake.clear()
                if self._write_pending(writer):
                    await writer.drain()
                    self._last_tx = ticks_ms()
                    if self._disconnect_sent:
                        return
                else:
                    await self._wake.wait()
        except Exception as exc:
            self._end_session("write", exc)

    def _new_pid(self):
        pid = self._next_pid + 1
        if pid > 65535:
            pid = 1
        self._next_pid = pid
        return pid

    def _send_qos1(self, writer, pkt, offset):
        pid = self._new_pid()
        _set_pid(pkt, offset, pid)
        writer.write(bytes(pkt))  # a copy: the transport may keep a view of what it got
        return pid

    def _write_pending(self, writer):
        """Write every packet that may go now, in wire priority order; return their count."""
        n = 0
        if self._pubacks_due:
            for pid in self._pubacks_due:
                writer.write(mp.puback(pid))
                n += 1
            self._pubacks_due.clear()
        if self._ping_due:
            self._ping_due = False
            self._last_ping = ticks_ms()
            writer.write(mp.PINGREQ_PACKET)
            n += 1
        if self._subscribe_due:
            self._subscribe_due = False
            writer.write(mp.subscribe(self._new_pid(), self._subscriptions))
            n += 1
        if self._disconnect_due:
            writer.write(mp.DISCONNECT_PACKET)
            self._disconnect_sent = True
            return n + 1
        if self._death_due and not self._death_pid:
            self._death_pid = self._send_qos1(writer, self._death[0], self._death[1])
            n += 1
        birth = self._birth
        if birth is not None:
            if not self._birth_pid:
                self._birth_pid = self._send_qos1(writer, birth[0], birth[1])
                n += 1
            if not self._born:
                return n  # nothing else until the broker has the session's first birth
        events = self._events
        acks = self._acks
        while events.sent + acks.sent < self._max_inflight:
            ev = events.next_unsent()
            ack = acks.next_unsent()
            if ev is None and ack is None:
                break
            if ack is None or (ev is not None and ev[0] < ack[0]):
                queue = events
            else:
                queue = acks
            entry = queue.items[queue.sent]
            entry[4] = self._send_qos1(writer, entry[1], entry[2])
            queue.sent += 1
            n += 1
        tele = self._tele
        if tele:
            self._tele = self._tele_spare
            for topic in tele:
                writer.write(tele[topic])
                n += 1
            self.telemetry_sent += len(tele)
            tele.clear()
            self._tele_spare = tele
        return n
