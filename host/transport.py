"""How the host talks to modules: one small interface, two implementations.

``InProcessBus`` is a broker stand-in for runs inside one process (``skid demo`` on a
simulated clock): MQTT topic matching with ``+`` and ``#``, retained messages (an empty
retained payload clears the topic), a last will per client published when the client
drops abruptly, and FIFO delivery per client.  ``MqttTransport`` speaks MQTT 5 to a real
broker through paho-mqtt.

Both deliver messages only inside ``poll()``, in the caller's thread: handlers never run
concurrently with the host's logic, so the deterministic core stays single-threaded
(paho's network thread only appends to a queue).  Both carry the same CBOR payloads.

Modules may speak only MQTT 3.1.1, so the host uses MQTT 5 only where modules need no
support for it: message expiry on what it publishes (commands), its own last will, and
clean start.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from urllib.parse import urlparse

from host.brokerurl import ENV_CA, ENV_PASSWORD, ENV_USERNAME, parse_broker_url, redact_url

Handler = Callable[[str, bytes], None]  # (topic, payload)
Will = tuple[str, bytes, int, bool]  # (topic, payload, qos, retain)

# Received messages a transport keeps for poll(); beyond this it drops (counted).
DEFAULT_MAX_QUEUE = 1_000_000


class TransportError(ConnectionError):
    """The broker could not be reached or refused us.

    ``reason`` is one of "refused" (the broker said no, or nothing listens on the port),
    "unreachable" (no route, unknown host), "timeout" (no answer in time) or "usage"
    (a bad URL or argument).
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


# --- topic filters -------------------------------------------------------------------------


def check_filter(pattern: str) -> str:
    """``pattern`` if it is a valid MQTT topic filter, else ValueError saying why."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"topic filter {pattern!r}: must be a non-empty string")
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {pattern!r}: '#' must be a whole, last level")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {pattern!r}: '+' must be a whole level")
    return pattern


def check_topic(topic: str) -> str:
    """``topic`` if it can be published to (no wildcards), else ValueError."""
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic {topic!r}: must be a non-empty string")
    if "+" in topic or "#" in topic:
        raise ValueError(f"topic {topic!r}: wildcards '+' and '#' cannot be published to")
    return topic


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT matching: ``+`` is one level, a final ``#`` is the parent and everything below.

    Wildcards at the first level never match topics starting with '$' (broker topics).
    """
    if pattern == topic:
        return True
    if topic.startswith("$") and pattern[:1] in ("+", "#"):
        return False
    p = pattern.split("/")
    t = topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(p) == len(t)


def filter_covers(outer: str, inner: str) -> bool:
    """Every topic the filter ``inner`` matches, the filter ``outer`` matches too."""
    if outer == inner:
        return True
    o = outer.split("/")
    i = inner.split("/")
    if inner.startswith("$") and o[0] in ("+", "#"):
        return False  # first-level wildcards never match broker topics
    for n, level in enumerate(o):
        if level == "#":
            return True
        if n >= len(i) or i[n] == "#":
            return False
        if level != "+" and level != i[n]:  # a literal never covers a '+'
            return False
    return len(o) == len(i)


class _Dispatcher:
    """Subscriptions of one client and the handlers each topic reaches (cached).

    A broker sends a client one copy of a message for every subscription of the client
    it matches (Mosquitto does), and every copy reaches every matching handler: with
    ``line/#`` and ``line/host/control`` both at the broker, each control request would
    run twice (and the second, a signed one, would read as a replay).  So the broker only
    ever holds ``broker_filters()``: the filters no other filter of the client covers.
    Handlers still see every topic their own filter matches, once per message."""

    def __init__(self):
        self.subscriptions: list[tuple[str, Handler, int]] = []
        self._cache: dict[str, list[Handler]] = {}
        self._copies: dict[str, int] = {}

    def add(self, pattern: str, handler: Handler, qos: int) -> None:
        self.subscriptions.append((pattern, handler, qos))
        self._cache.clear()
        self._copies.clear()

    def broker_filters(self) -> dict[str, int]:
        """Filter -> QoS to hold at the broker: each filter not covered by another one of
        this client, at the highest QoS of the filters it covers."""
        qos: dict[str, int] = {}
        for p, _h, q in self.subscriptions:
            qos[p] = max(q, qos.get(p, 0))
        out = {}
        for p in qos:
            if any(o != p and filter_covers(o, p) for o in qos):
                continue
            out[p] = max(q for c, q in qos.items() if filter_covers(p, c))
        return out

    def copies(self, topic: str) -> int:
        """How many copies of a message on ``topic`` a broker sends this client (one per
        matching broker filter; more than one only for filters that partly overlap, such
        as ``a/+/c`` and ``a/b/+``)."""
        n = self._copies.get(topic)
        if n is None:
            n = sum(1 for p in self.broker_filters() if topic_matches(p, topic))
            if len(self._copies) > 10_000:
                self._copies.clear()
            self._copies[topic] = n
        return n

    def handlers(self, topic: str) -> list[Handler]:
        found = self._cache.get(topic)
        if found is None:
            found = [h for p, h, _q in self.subscriptions if topic_matches(p, topic)]
            if len(self._cache) > 10_000:  # topics are few; bound it anyway
                self._cache.clear()
            self._cache[topic] = found
        return found

    def wants(self, topic: str) -> bool:
        return bool(self.handlers(topic))


def _check_qos(qos: int) -> int:
    if qos not in (0, 1, 2):
        raise ValueError(f"qos {qos!r}: allowed 0, 1, 2")
    return qos


class Transport:
    """What the host needs from a message transport.

    ``publish`` never blocks and never raises for a lost connection (the message is
    counted in ``dropped``); ``poll`` runs handlers for queued messages in the caller's
    thread and returns how many it delivered.  Counters: ``published``, ``received``
    (messages handed to handlers), ``dropped`` (not sent, or not kept for poll).
    """

    connected: bool = False
    published: int = 0
    received: int = 0
    dropped: int = 0

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
    ) -> None:
        raise NotImplementedError

    def subscribe(self, pattern: str, handler: Handler, qos: int = 1) -> None:
        raise NotImplementedError

    def poll(self, max_messages: int | None = None, timeout_s: float = 0.0) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        return {"published": self.published, "received": self.received, "dropped": self.dropped}


# --- in-process bus ---------------------------------------------------------------------------


class InProcessBus:
    """A broker stand-in inside one process (no threads, no clock).

    ``client(client_id, will)`` connects a ``BusClient``.  A publish is queued at once for
    every connected client with a matching subscription; the client's handlers run when
    it (or the bus) polls.  ``set_up(False)`` is a broker outage: every client is
    disconnected without wills and publishes are dropped; ``set_up(True)`` reconnects the
    clients that reconnect on their own (``auto_reconnect``, like paho's loop), which
    subscribe again and receive the retained messages again.  Retained messages survive
    an outage (a broker with persistence).
    """

    def __init__(self, max_queue: int = DEFAULT_MAX_QUEUE):
        self.max_queue = max_queue
        self.up = True
        self.retained: dict[str, tuple[bytes, int]] = {}
        self._clients: dict[str, BusClient] = {}  # connected, by id
        self._known: list[BusClient] = []  # every client ever made (outage recovery)
        self.published = 0
        self.dropped = 0

    def client(
        self, client_id: str, will: Will | None = None, auto_reconnect: bool = True
    ) -> BusClient:
        """A new client, connected (an existing connection with the same id is taken over,
        and that one's will is published, as a broker does)."""
        client = BusClient(self, client_id, will, auto_reconnect)
        self._known.append(client)
        self._connect(client)
        return client

    def clients(self) -> list[BusClient]:
        return list(self._clients.values())

    # -- broker side --------------------------------------------------------------------------

    def _connect(self, client: BusClient) -> bool:
        if not self.up:
            return False
        old = self._clients.get(client.client_id)
        if old is not None and old is not client:
            self._drop(old, publish_will=True)
        self._clients[client.client_id] = client
        client._connected = True
        client._queue.clear()  # clean start
        for pattern in client._dispatch.broker_filters():
            self._send_retained(client, pattern)
        return True

    def _drop(self, client: BusClient, publish_will: bool) -> None:
        if self._clients.get(client.client_id) is client:
            del self._clients[client.client_id]
        client._connected = False
        client._queue.clear()
        if publish_will and client.will is not None and self.up:
            topic, payload, qos, retain = client.will
            self._route(topic, payload, qos, retain)

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if not self.up:
            self.dropped += 1
            return
        self.published += 1
        if retain:
            if payload:
                self.retained[topic] = (payload, qos)
            else:
                self.retained.pop(topic, None)  # an empty retained message clears it
        for client in self._clients.values():
            for _ in range(client._dispatch.copies(topic)):  # as a broker does
                client._enqueue(topic, payload)

    def _send_retained(self, client: BusClient, pattern: str) -> None:
        for topic, (payload, _qos) in self.retained.items():
            if topic_matches(pattern, topic):
                client._enqueue(topic, payload)

    def set_up(self, up: bool) -> None:
        """Broker outage (False) and recovery (True)."""
        if up == self.up:
            return
        if not up:
            for client in list(self._clients.values()):
                self._drop(client, publish_will=False)
            self.up = False
            return
        self.up = True
        for client in self._known:
            if client.auto_reconnect and not client._closed and not client._connected:
                self._connect(client)

    def poll(self, max_messages: int | None = None) -> int:
        """Deliver queued messages of every client (also those their handlers publish)
        until all queues are empty or ``max_messages`` were delivered."""
        total = 0
        while True:
            progressed = 0
            for client in list(self._clients.values()):
                budget = None if max_messages is None else max_messages - total - progressed
                if budget is not None and budget <= 0:
                    return total + progressed
                progressed += client.poll(budget)
            total += progressed
            if not progressed:
                return total


class BusClient(Transport):
    """One connection to an ``InProcessBus``."""

    def __init__(self, bus: InProcessBus, client_id: str, will: Will | None, auto_reconnect: bool):
        if not isinstance(client_id, str) or not client_id:
            raise ValueError(f"client id {client_id!r}: must be a non-empty string")
        self.bus = bus
        self.client_id = client_id
        self.will = _check_will(will)
        self.auto_reconnect = auto_reconnect
        self._dispatch = _Dispatcher()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._connected = False
        self._closed = False
        self.published = 0
        self.received = 0
        self.dropped = 0

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return f"BusClient({self.client_id!r}, {state})"

    @property
    def connected(self) -> bool:  # type: ignore[override]
        return self._connected

    def _enqueue(self, topic: str, payload: bytes) -> None:
        if len(self._queue) >= self.bus.max_queue:
            self.dropped += 1
            return
        self._queue.append((topic, payload))

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
    ) -> None:
        """Route to every matching subscriber now (delivered at their next poll).
        ``expiry_s`` is accepted for the interface; in-process nothing waits long enough
        for it to matter."""
        check_topic(topic)
        _check_qos(qos)
        if not self._connected:
            self.dropped += 1
            return
        self.published += 1
        self.bus._route(topic, bytes(payload), qos, retain)

    def subscribe(self, pattern: str, handler: Handler, qos: int = 1) -> None:
        check_filter(pattern)
        _check_qos(qos)
        before = self._dispatch.broker_filters()
        self._dispatch.add(pattern, handler, qos)
        if self._connected and pattern not in before and pattern in self._dispatch.broker_filters():
            self.bus._send_retained(self, pattern)  # a new broker subscription, as MQTT does

    def poll(self, max_messages: int | None = None, timeout_s: float = 0.0) -> int:
        """Run handlers for queued messages in arrival order (FIFO); ``timeout_s`` is
        ignored (nothing else could add messages while this thread waits)."""
        n = 0
        queue = self._queue
        dispatch = self._dispatch
        while queue and (max_messages is None or n < max_messages):
            topic, payload = queue.popleft()
            n += 1
            self.received += 1
            for handler in dispatch.handlers(topic):
                handler(topic, payload)
        return n

    def pending(self) -> int:
        return len(self._queue)

    def set_will(self, will: Will | None) -> None:
        """The will registered with the next connection (and this one: in-process the
        broker simply takes the new one)."""
        self.will = _check_will(will)

    def disconnect(self, abrupt: bool = False) -> None:
        """Drop the connection; ``abrupt`` (a crash, a lost network) publishes the will,
        a clean disconnect discards it."""
        if self._connected:
            self.bus._drop(self, publish_will=abrupt)

    def reconnect(self) -> bool:
        """Connect again (clean start: subscriptions are renewed and retained messages
        delivered again).  False while the broker is down."""
        if self._connected:
            return True
        self._closed = False
        return self.bus._connect(self)

    def close(self) -> None:
        """Clean disconnect, for good (no will, no automatic reconnect)."""
        self._closed = True
        self.disconnect(abrupt=False)


def _check_will(will: Will | None) -> Will | None:
    if will is None:
        return None
    if not isinstance(will, tuple) or len(will) != 4:
        raise ValueError(f"will {will!r}: expected (topic, payload, qos, retain)")
    topic, payload, qos, retain = will
    check_topic(topic)
    _check_qos(qos)
    return (topic, bytes(payload), qos, bool(retain))


# --- MQTT over a real broker ------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, int, str | None, str | None]:
    """``mqtt[s]://[user[:password]@]host[:port]`` -> (host, port, user, password).

    Without credentials in the URL they come from ``SKID_MQTT_USERNAME`` and
    ``SKID_MQTT_PASSWORD`` (a password in a URL shows in ``ps`` to every local user).
    ``mqtts`` (TLS, default port 8883) is handled by ``MqttTransport``."""
    parsed = urlparse(url)
    try:
        if parsed.scheme == "mqtts":
            if not parsed.hostname:
                raise ValueError(f"broker URL {redact_url(url)!r}: expected mqtts://HOST[:PORT]")
            host, port = parsed.hostname, parsed.port or 8883
        else:
            host, port = parse_broker_url(url)
    except ValueError as exc:
        raise TransportError(str(exc), "usage") from None
    user = parsed.username or os.environ.get(ENV_USERNAME) or None
    password = parsed.password
    if password is None and user is not None:
        password = os.environ.get(ENV_PASSWORD) or None
    return host, port, user, password


# paho-mqtt is imported where it is first used, not at the top: it costs ~95 ms (ssl, dns)
# that in-process runs (skid demo) and `skid --help` never need.


def _mqtt_properties(packet_type: str, **values):
    """MQTT 5 properties of ``packet_type`` ("CONNECT", "PUBLISH", ...) set to ``values``."""
    from paho.mqtt.packettypes import PacketTypes  # lazy: start-up cost, see above
    from paho.mqtt.properties import Properties

    properties = Properties(getattr(PacketTypes, packet_type))
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


def _disconnect_with_will():
    """The DISCONNECT reason code asking the broker to publish our will (0x04)."""
    from paho.mqtt.packettypes import PacketTypes  # lazy: start-up cost, see above
    from paho.mqtt.reasoncodes import ReasonCode

    return ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")


class MqttTransport(Transport):
    """MQTT 5 through paho-mqtt (v2 callback API) against a real broker.

    Clean start, the host's own last will (``will``), MQTT 5 message expiry on publishes
    that pass ``expiry_s``.  After ``connect()`` paho's network thread reconnects on its
    own (backoff ``reconnect_min_s`` .. ``reconnect_max_s``) and every subscription is
    renewed on each connection (clean start forgets them).  Received messages wait in a
    queue until ``poll()``; ``reconnects`` counts connections after the first.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        will: Will | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 10,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 5.0,
        max_queue: int = DEFAULT_MAX_QUEUE,
        session_expiry_s: int = 0,
        resume_session: bool = False,
    ):
        import paho.mqtt.client as paho  # lazy: start-up cost, see _mqtt_properties

        self.url = url
        # > 0: connections resume the client id's session (pick a fresh id for a fresh
        # one), and the broker keeps it (subscriptions, queued QoS 1 messages) this long while we are
        # away — so what modules publish while the host reconnects is not lost.  Across a
        # broker restart that needs the broker's persistence (docs/host-messaging.md).
        self.session_expiry_s = int(session_expiry_s)
        # A restarted host takes over its predecessor's session by connecting with the
        # same client id, and with it whatever the broker queued meanwhile.  (Kept for
        # callers; sessions are always resumed when they exist: see connect().)
        self.resume_session = bool(resume_session)
        self.host, self.port, url_user, url_password = parse_url(url)
        self.client_id = client_id
        self.will = _check_will(will)
        self.keepalive_s = keepalive_s
        self.max_queue = max_queue
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.reconnects = 0
        self._paho = paho
        self._dispatch = _Dispatcher()
        self._at_broker: dict[str, int] = {}  # the filters the broker holds for us
        self._subs_lock = threading.Lock()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._arrived = threading.Event()
        self._connack = threading.Event()
        self._connack_error: str | None = None
        self._connections = 0
        self._started = False
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
        )
        user = username if username is not None else url_user
        if user is not None:
            client.username_pw_set(user, password if password is not None else url_password)
        if self.will is not None:
            topic, payload, qos, retain = self.will
            client.will_set(topic, payload, qos, retain)
        if urlparse(url).scheme == "mqtts":
            # TLS against the system's CAs, or the line's own CA (skid broker-config).
            client.tls_set(ca_certs=os.environ.get(ENV_CA) or None)
        client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        self._client = client

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"MqttTransport({redact_url(self.url)!r}, {self.client_id!r}, {state})"

    @property
    def connected(self) -> bool:  # type: ignore[override]
        return self._client.is_connected()

    # -- paho's thread ---------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connack_error = str(reason_code)
            self._connack.set()
            return
        self._connections += 1
        if self._connections > 1:
            self.reconnects += 1
        with self._subs_lock:
            self._sync_broker_filters(client, resubscribe=True)
        self._connack_error = None
        self._connack.set()

    def _on_message(self, client, userdata, message) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append((message.topic, bytes(message.payload)))
        self._arrived.set()

    # -- the caller's thread --------------------------------------------------------------------

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect (clean start) and start paho's network thread; TransportError with the
        reason when the broker is unreachable, refuses us or does not answer in time."""
        where = f"broker {self.host}:{self.port}"
        client = self._client
        client.connect_timeout = timeout_s
        try:
            if self.session_expiry_s > 0:
                props = _mqtt_properties("CONNECT", SessionExpiryInterval=self.session_expiry_s)
                client.connect(
                    self.host,
                    self.port,
                    self.keepalive_s,
                    # Never a clean start: Mosquitto 2.0 keeps a session across its own
                    # restart only if it was created without one (measured; expiry alone
                    # is not enough).  Use a fresh client id for a fresh session.
                    clean_start=False,
                    properties=props,
                )
            else:
                client.connect(self.host, self.port, self.keepalive_s, clean_start=True)
        except ConnectionRefusedError:
            raise TransportError(
                f"{where} refused the connection (is a broker listening there?)", "refused"
            ) from None
        except socket.gaierror as exc:
            raise TransportError(
                f"{where} unreachable: unknown host ({exc})", "unreachable"
            ) from None
        except TimeoutError:
            raise TransportError(
                f"{where} did not answer within {timeout_s} s", "timeout"
            ) from None
        except OSError as exc:
            raise TransportError(
                f"{where} unreachable: {exc.strerror or exc}", "unreachable"
            ) from None
        client.loop_start()
        self._started = True
        if not self._connack.wait(timeout_s):
            self.close()
            raise TransportError(f"{where} sent no CONNACK within {timeout_s} s", "timeout")
        if self._connack_error is not None:
            error = self._connack_error
            self.close()
            raise TransportError(f"{where} refused the connection: {error}", "refused")

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
    ) -> None:
        check_topic(topic)
        _check_qos(qos)
        properties = None
        if expiry_s is not None:
            # Whole seconds on the wire; round up so a command never dies early.
            properties = _mqtt_properties(
                "PUBLISH", MessageExpiryInterval=max(1, math.ceil(expiry_s))
            )
        if not self._client.is_connected():
            self.dropped += 1
            return
        info = self._client.publish(topic, bytes(payload), qos, retain, properties)
        if info.rc == self._paho.MQTT_ERR_SUCCESS:
            self.published += 1
        else:
            self.dropped += 1

    def subscribe(self, pattern: str, handler: Handler, qos: int = 1) -> None:
        check_filter(pattern)
        _check_qos(qos)
        with self._subs_lock:
            self._dispatch.add(pattern, handler, qos)
            if self._client.is_connected():
                self._sync_broker_filters(self._client, resubscribe=False)

    def _sync_broker_filters(self, client, resubscribe: bool) -> None:
        """Make the broker hold exactly ``broker_filters()`` (see ``_Dispatcher``): the
        new or changed ones subscribed (all of them after a (re)connect), then those now
        covered by a wider filter dropped.  Called with ``_subs_lock`` held."""
        wanted = self._dispatch.broker_filters()
        for pattern, qos in wanted.items():
            if resubscribe or self._at_broker.get(pattern) != qos:
                client.subscribe(pattern, qos)
        for pattern in self._at_broker:
            if pattern not in wanted:
                client.unsubscribe(pattern)
        self._at_broker = wanted

    def poll(self, max_messages: int | None = None, timeout_s: float = 0.0) -> int:
        """Run handlers for the messages received so far, in arrival order; with
        ``timeout_s`` wait that long for the first one when none is queued."""
        queue = self._queue
        if not queue and timeout_s > 0:
            self._arrived.wait(timeout_s)
        self._arrived.clear()
        n = 0
        dispatch = self._dispatch
        while queue and (max_messages is None or n < max_messages):
            topic, payload = queue.popleft()
            n += 1
            self.received += 1
            for handler in dispatch.handlers(topic):
                handler(topic, payload)
        if queue:
            self._arrived.set()
        return n

    def pending(self) -> int:
        return len(self._queue)

    def close(self, send_will: bool = False) -> None:
        """Disconnect and stop the network thread.  A clean disconnect discards the will;
        ``send_will=True`` asks the broker to publish it (MQTT 5 reason code 0x04)."""
        reason = None
        properties = None
        if send_will:
            reason = _disconnect_with_will()
        if self.session_expiry_s > 0:  # a clean goodbye: the broker may forget the session
            properties = _mqtt_properties("DISCONNECT", SessionExpiryInterval=0)
        try:
            self._client.disconnect(reason, properties)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        if self._started:
            self._client.loop_stop()
            self._started = False
