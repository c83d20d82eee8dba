"""The view's side of the line: a ``host.livestate.LiveLine`` fed from a transport, its
snapshots and samples handed to the ``Hub``, and the page's actions sent as control
requests (``host/control.py``), exactly as ``skid hold/resume/abort/ack/stop`` send them.

``ViewFeed`` is stepped by whoever owns the transport: in ``skid run/demo --view`` in
process, the coordinator's loop (``on_tick``: the in-process bus is not thread-safe); in
``skid view`` and broker runs, the view's own thread (``FeedThread``) with its own MQTT
connection.  Nothing in a step waits: the hub's puts never block (hub.py), and an action
from the page is queued (thread-safe) and published at the next step; its reply resolves a
``concurrent.futures.Future`` the web request waits on.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future

from host import control
from protocol.topics import line_filter

SNAPSHOT_EVERY_MS = 250  # wall time between snapshots while something changes
SAMPLES_EVERY_MS = 250
TICK_EVERY_MS = 200
REPLY_TIMEOUT_S = 10.0


class ViewFeed:
    """One line followed for the view.  ``live``: a LiveLine; ``transport``: connected,
    not yet subscribed; ``operator_key``: signs requests (needed for resume);
    ``wall_ms()``: the wall clock that paces snapshots (injectable for tests)."""

    def __init__(self, live, transport, line_id: str, hub, operator_key=None, wall_ms=None):
        self.live = live
        self.transport = transport
        self.line_id = line_id
        self.hub = hub
        self.operator_key = operator_key
        self.wall_ms = wall_ms or (lambda: int(time.monotonic() * 1000))
        self._now_ms = 0
        self._dirty = True
        self._urgent = False
        self._last_snapshot = -(10**12)
        self._last_samples = -(10**12)
        self._last_tick = -(10**12)
        self._samples: list = []
        self._inbox: deque = deque()  # (request id, payload, future), from any thread
        self._waiting: dict[str, tuple[Future, float]] = {}
        self._connected: bool | None = None
        self.event_seen_ms: list[tuple[int, dict]] = []  # wall ms an event reached us (tests)
        live.add_listener(self._on_live)
        transport.subscribe(line_filter(line_id), self._on_message)
        transport.subscribe(control.reply_topic(line_id), self._on_reply)

    # -- from the transport (the owner's thread) -------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        if self.live.on_message(topic, payload, self._now_ms):
            self._dirty = True

    def _on_live(self, kind: str, data: dict) -> None:
        if kind == "sample":
            self._samples.append([data["module"], data["channel"], data["t_ms"], data["value"]])
        elif kind == "event":
            self._urgent = True  # a trip or an alarm goes out at once, not at the next beat
            if len(self.event_seen_ms) < 1000:
                self.event_seen_ms.append((int(time.time() * 1000), dict(data)))

    def _on_reply(self, _topic: str, payload: bytes) -> None:
        try:
            body = control.parse_reply(payload)
        except control.ControlError:
            return
        waiting = self._waiting.pop(body["id"], None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result({"ok": bool(body.get("ok")), "reason": body.get("reason", "")})

    # -- the page's actions (any thread) -----------------------------------------------------

    def request(self, action: str, who: str, reason: str, **args) -> Future:
        """Queue a control request (``args``: role, auth, module, alarm, ...); the future
        gets the coordinator's reply {ok, reason}.  ControlError for a malformed one."""
        request_id = uuid.uuid4().hex[:12]
        payload = control.build_request(
            request_id, action, who, reason, key=self.operator_key, **args
        )
        future: Future = Future()
        self._inbox.append((request_id, payload, future))
        return future

    # -- the owner's loop --------------------------------------------------------------------

    def step(self, now_ms: int) -> None:
        """One turn: messages in, actions out, staleness, and what is due to the hub."""
        self._now_ms = now_ms
        self._follow_link(now_ms)
        self.transport.poll()
        while self._inbox:
            request_id, payload, future = self._inbox.popleft()
            self._waiting[request_id] = (future, time.monotonic() + REPLY_TIMEOUT_S)
            self.transport.publish(control.control_topic(self.line_id), payload, qos=1)
        self._expire_waiting()
        wall = self.wall_ms()
        if wall - self._last_tick >= TICK_EVERY_MS:
            self._last_tick = wall
            if self.live.tick(now_ms):
                self._dirty = True
        if self._samples and (self._urgent or wall - self._last_samples >= SAMPLES_EVERY_MS):
            self._last_samples = wall
            samples, self._samples = self._samples, []
            self.hub.put_samples(samples)
        if self._urgent or (self._dirty and wall - self._last_snapshot >= SNAPSHOT_EVERY_MS):
            self._last_snapshot = wall
            self._dirty = self._urgent = False
            self.hub.put_snapshot(self.live.snapshot(now_ms))

    def _follow_link(self, now_ms: int) -> None:
        connected = bool(self.transport.connected)
        if connected != self._connected:
            self._connected = connected
            self.live.on_link(connected, now_ms)
            self._dirty = True

    def _expire_waiting(self) -> None:
        now = time.monotonic()
        for request_id, (future, deadline) in list(self._waiting.items()):
            if now > deadline:
                del self._waiting[request_id]
                if not future.done():
                    future.set_result({"ok": False, "reason": "no coordinator answered"})


class FeedThread:
    """Steps a ``ViewFeed`` on its own thread (``skid view``: its own MQTT connection),
    with host epoch ms as ``now_ms``.  ``stop()`` ends it."""

    def __init__(self, feed: ViewFeed, poll_s: float = 0.05):
        self.feed = feed
        self.poll_s = poll_s
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="skid-view-feed", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        transport = self.feed.transport
        try:
            while not self._stop.is_set():
                if transport.pending() == 0:
                    transport.poll(max_messages=0, timeout_s=self.poll_s)
                self.feed.step(int(time.time() * 1000))
        except BaseException as exc:  # noqa: BLE001 - kept for the server to report
            self.error = exc
            raise

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
