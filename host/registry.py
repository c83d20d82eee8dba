"""The host's view of the modules of one line, built from what they publish.

``Registry.on_message(topic, payload, now_ms)`` takes every message of the line and
returns what changed as ``RegistryEvent``s; ``tick(now_ms)`` finds modules gone silent.
It never raises on bad input: a message that does not parse comes back as a "malformed"
event naming the topic and the reason.

Rules (Sparkplug B's, adapted to protocol/SPEC.md):

* BIRTH starts a session: kind, channels (telemetry is decoded with them), states, the
  current state, config hash, boot nonce (for signing commands) and bdSeq.  A birth with
  a new boot nonce is a reboot: the module's latched trips and alarms are gone with it.
* DEATH ends the session only when its bdSeq matches the birth's: the will of an older
  connection, delivered late by the broker, is ignored.  A dead module is stale.
* Telemetry carries a sequence number (0..255, 0 after each birth).  Telemetry or events
  from a module whose birth the host has not seen, and any gap in the sequence, mean the
  host's view may be wrong: the module is listed by ``rebirth_needed()`` (the caller sends
  it a ``rebirth`` command).  Event numbers are checked the same way.
* A module from which nothing arrived for ``STALE_AFTER_MS`` + 3 telemetry periods is
  stale; its values are kept for display but ``value()`` reports None for them.
* The config hash of a birth is compared with the expected one (``expected``).

All times are the caller's ``now_ms`` (host time); trips are stamped with it so that
first-out order across modules is the order the host learned of them.
"""

from __future__ import annotations

from collections import deque

from protocol import host_messages, messages
from protocol.constants import QUALITY_GOOD, QUALITY_NAMES
from protocol.topics import (
    TOPIC_ACK,
    TOPIC_BIRTH,
    TOPIC_CMD,
    TOPIC_DATA,
    TOPIC_DEATH,
    TOPIC_EVENT,
    TopicError,
    parse_topic,
)

STALE_AFTER_MS = 3000
DEFAULT_PERIOD_MS = 1000  # telemetry period assumed until two samples arrived
REBIRTH_RETRY_MS = 5000  # ask a module again for a birth no sooner than this

EVENT_KINDS = (
    "birth",
    "death",
    "sample",
    "trip",
    "trip_reset",
    "alarm",
    "alarm_cleared",
    "state",
    "operator_action",
    "dropped",
    "stale",
    "fresh",
    "hash_mismatch",
    "kind_mismatch",
    "unexpected_module",
    "seq_gap",
    "malformed",
)


MAX_PERIOD_MS = 10_000  # telemetry gaps above this do not count as the module's period


class RegistryEvent:
    """One change the registry saw.  ``message`` is the parsed module message behind it
    (``protocol.messages.Birth``, ``Death``, ``Telemetry`` or ``Event``), unchanged; ``data``
    holds only what the registry itself found out (a birth's ``reboot``, a sample's values
    by channel name, a trip's ``first_out``, a state change's ``previous``, the reasons of
    stale/fresh/gap/mismatch/malformed).  Kinds: ``EVENT_KINDS`` (an EVENT's type, except
    that ``state_change`` is reported as ``state``)."""

    __slots__ = ("kind", "module", "t_ms", "message", "data")

    def __init__(self, kind: str, module: str | None, t_ms: int, message=None, data=None):
        self.kind = kind  # one of EVENT_KINDS
        self.module = module
        self.t_ms = t_ms  # host time it was learned
        self.message = message
        self.data = {} if data is None else data

    def __repr__(self) -> str:
        return f"RegistryEvent({self.kind!r}, {self.module!r}, {self.t_ms}, {self.data!r})"


class ModuleView:
    """What the host knows of one module.  ``born`` is False until its birth arrived
    (a module heard from only by telemetry or events)."""

    def __init__(self, module_id: str):
        self.id = module_id
        self.born = False
        self.kind: str | None = None
        self.online = False
        self.stale = False
        self.bdseq: int | None = None
        self.boot_nonce: bytes | None = None
        self.config_hash: bytes | None = None
        self.hash_ok: bool | None = None
        self.firmware: str | None = None
        self.reset_cause: str | None = None
        self.state: str | None = None
        self.states: dict[str, list[str]] = {}
        self.channels: list = []
        self.values: dict[str, float | None] = {}
        self.quality: dict[str, str] = {}
        self.module_t_ms: int | None = None  # module time of the last sample
        self.last_seen_ms: int | None = None
        self.last_data_ms: int | None = None
        self.period_ms = DEFAULT_PERIOD_MS
        self.last_seq: int | None = None
        self.last_event_number: int | None = None
        self.alarms: set[str] = set()
        self.trips: list[tuple[str, int]] = []
        self.births = 0
        self._codec = None
        self._recent_events: deque[tuple[int, int]] = deque(maxlen=32)

    def __repr__(self) -> str:
        status = "online" if self.online else "offline"
        if self.stale:
            status += ", stale"
        return f"ModuleView({self.id!r}, {self.kind}, {status}, state={self.state})"

    def channel(self, name: str):
        for ch in self.channels:
            if ch.name == name:
                return ch
        return None

    def value(self, name: str) -> float | None:
        """The latest good, fresh value of channel ``name``, else None."""
        if self.stale or not self.online or self.quality.get(name) != "good":
            return None
        return self.values.get(name)


def _start_session(view: ModuleView, b, reboot: bool, now_ms: int) -> None:
    """A birth starts a session: take its kind, channels, states and hashes; a reboot
    (new boot nonce) also drops the latched trips and alarms the module had."""
    view.born = True
    view.births += 1
    view.kind = b.module_kind
    view.online = True
    view.bdseq = b.bdseq
    view.config_hash = b.config_hash
    view.firmware = b.firmware
    view.reset_cause = b.reset_cause
    view.states = b.states
    view.state = b.state
    if [ch.name for ch in view.channels] != [ch.name for ch in b.channels]:
        view.values = {ch.name: None for ch in b.channels}
        view.quality = {ch.name: "uncertain" for ch in b.channels}
    view.channels = b.channels
    view._codec = messages.TelemetryCodec(b.channels)
    view.last_seq = None  # the next sample is seq 0
    if reboot:
        view.boot_nonce = b.boot_nonce
        view.alarms = set()
        view.trips = []
        view.last_event_number = None
        view._recent_events.clear()
    view.last_seen_ms = now_ms
    view.last_data_ms = None
    view.period_ms = DEFAULT_PERIOD_MS


class Registry:
    def __init__(self, line_id: str, expected: dict[str, tuple[str, bytes | None]] | None = None):
        self.line_id = line_id
        self.expected = dict(expected or {})
        self.modules: dict[str, ModuleView] = {}
        self._rebirth: set[str] = set()
        self._asked: dict[str, int] = {}
        self._now = 0
        self._topics: dict[str, tuple[str, str] | None] = {}
        self.malformed = 0

    # -- queries -------------------------------------------------------------------------------

    def value(self, module: str, channel: str) -> float | None:
        view = self.modules.get(module)
        return None if view is None else view.value(channel)

    def module_state(self, module: str) -> str | None:
        view = self.modules.get(module)
        return None if view is None else view.state

    def online(self, module: str) -> bool:
        view = self.modules.get(module)
        return view is not None and view.online and not view.stale

    def rebirth_needed(self) -> list[str]:
        """Modules whose view needs a fresh birth (no birth seen, seq gap, dropped events);
        cleared by asking.  A module is listed again at most every REBIRTH_RETRY_MS."""
        out = sorted(self._rebirth)
        for mid in out:
            self._asked[mid] = self._now
        self._rebirth.clear()
        return out

    # -- input ----------------------------------------------------------------------------------

    def _need_rebirth(self, mid: str) -> None:
        asked = self._asked.get(mid)
        if asked is None or self._now - asked >= REBIRTH_RETRY_MS:
            self._rebirth.add(mid)

    def _route(self, topic: str) -> tuple[str, str] | None:
        """(module, kind) of a module topic of this line; None for anything else."""
        cached = self._topics.get(topic, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        try:
            line, module, kind = parse_topic(topic)
        except TopicError:
            route = None
        else:
            route = (module, kind) if line == self.line_id and module is not None else None
        if len(self._topics) > 10_000:
            self._topics.clear()
        self._topics[topic] = route
        return route

    def on_message(self, topic: str, payload: bytes, now_ms: int) -> list[RegistryEvent]:
        """Update the view from one message; returns what changed.  Topics outside this
        line's module topics, commands and acks return []."""
        self._now = now_ms
        route = self._route(topic)
        if route is None:
            return []
        mid, kind = route
        try:
            if kind == TOPIC_DATA:
                return self._telemetry(mid, payload, now_ms)
            if kind == TOPIC_EVENT:
                return self._event(mid, payload, now_ms)
            if kind == TOPIC_BIRTH:
                return self._birth(mid, payload, now_ms)
            if kind == TOPIC_DEATH:
                return self._death(mid, payload, now_ms)
            if kind in (TOPIC_ACK, TOPIC_CMD):
                return []
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            self.malformed += 1
            return [
                RegistryEvent(
                    "malformed", mid, now_ms, data={"topic": topic, "reason": str(exc)[:200]}
                )
            ]
        return []

    def _view(self, mid: str) -> ModuleView:
        view = self.modules.get(mid)
        if view is None:
            view = self.modules[mid] = ModuleView(mid)
        return view

    def _birth(self, mid, payload, now_ms):
        b = host_messages.parse_birth(payload)
        if b.module_id != mid:
            raise ValueError(f"birth of module {b.module_id!r} on the topic of {mid!r}")
        view = self._view(mid)
        reboot = view.boot_nonce != b.boot_nonce
        _start_session(view, b, reboot, now_ms)
        self._rebirth.discard(mid)
        self._asked.pop(mid, None)
        events = [RegistryEvent("birth", mid, now_ms, b, {"reboot": reboot})]
        if view.stale:
            view.stale = False
            events.append(RegistryEvent("fresh", mid, now_ms, data={"reason": "birth"}))
        events.extend(self._check_birth(view, b, now_ms))
        return events

    def _check_birth(self, view: ModuleView, b, now_ms: int) -> list[RegistryEvent]:
        """The birth against what the line expects: kind, config hash, known module."""
        mid = view.id
        want = self.expected.get(mid)
        if want is None:
            view.hash_ok = None
            if self.expected:
                return [RegistryEvent("unexpected_module", mid, now_ms, b)]
            return []
        events = []
        want_kind, want_hash = want
        if want_kind is not None and want_kind != b.module_kind:
            events.append(RegistryEvent("kind_mismatch", mid, now_ms, b, {"expected": want_kind}))
        if want_hash is None:
            view.hash_ok = None
        else:
            view.hash_ok = bytes(want_hash) == b.config_hash
            if not view.hash_ok:
                events.append(
                    RegistryEvent(
                        "hash_mismatch", mid, now_ms, b, {"expected": bytes(want_hash).hex()}
                    )
                )
        return events

    def _death(self, mid, payload, now_ms):
        d = host_messages.parse_death(payload)
        view = self.modules.get(mid)
        # Sparkplug: only the death of the current session counts; an older connection's
        # will arriving after the new birth says nothing about the module now.
        if view is None or not view.online or view.bdseq != d.bdseq:
            return []
        view.online = False
        view.last_seen_ms = now_ms
        events = [RegistryEvent("death", mid, now_ms, d)]
        if not view.stale:
            view.stale = True
            events.append(RegistryEvent("stale", mid, now_ms, data={"reason": "death"}))
        return events

    def _telemetry(self, mid, payload, now_ms):
        view = self._view(mid)
        view.last_seen_ms = now_ms
        if not view.born or not view.online or view._codec is None:
            # Values cannot be decoded without the channels of the current session.
            self._need_rebirth(mid)
            return []
        try:
            t = host_messages.parse_telemetry(payload, view._codec)
        except ValueError:
            self._need_rebirth(mid)  # perhaps channels changed under a birth we missed
            raise
        events = []
        expected = 0 if view.last_seq is None else (view.last_seq + 1) & 0xFF
        if t.seq != expected:
            events.append(
                RegistryEvent(
                    "seq_gap",
                    mid,
                    now_ms,
                    t,
                    {"stream": "telemetry", "expected": expected, "got": t.seq},
                )
            )
            self._need_rebirth(mid)
        view.last_seq = t.seq
        if view.last_data_ms is not None:
            gap = now_ms - view.last_data_ms
            # One late sample (after an outage) must not stretch the stale limit: the
            # period is the shortest recent gap, at most 10 s.
            if 0 < gap <= MAX_PERIOD_MS:
                view.period_ms = gap if view.period_ms is None else min(gap, view.period_ms * 2)
        view.last_data_ms = now_ms
        view.module_t_ms = t.t_ms
        values = {}
        quality = {}
        qnames = QUALITY_NAMES
        for ch, v, q in zip(view.channels, t.values, t.qualities, strict=True):
            values[ch.name] = v
            quality[ch.name] = "good" if q == QUALITY_GOOD else qnames[q]
        view.values = values
        view.quality = quality
        if view.stale:
            view.stale = False
            events.append(RegistryEvent("fresh", mid, now_ms, data={"reason": "telemetry"}))
        # The message's values in channel order, and the same by channel name.
        events.append(
            RegistryEvent("sample", mid, now_ms, t, {"values": values, "quality": quality})
        )
        return events

    def _event(self, mid, payload, now_ms):
        e = host_messages.parse_event(payload)
        view = self._view(mid)
        view.last_seen_ms = now_ms
        events = []
        if not view.born:
            self._need_rebirth(mid)
        key = (e.number, e.t_ms)
        if key in view._recent_events:
            # At-least-once delivery: a QoS 1 event resent after a reconnect.
            return []
        view._recent_events.append(key)
        last = view.last_event_number
        if last is not None and e.number != last + 1:
            # Numbers skipped (events lost) or restarted (a reboot whose birth we missed).
            events.append(
                RegistryEvent(
                    "seq_gap",
                    mid,
                    now_ms,
                    e,
                    {"stream": "event", "expected": last + 1, "got": e.number},
                )
            )
            self._need_rebirth(mid)
        view.last_event_number = e.number
        data = {}
        kind = e.type
        if kind == "trip":
            if all(cause != e.cause for cause, _t in view.trips):
                view.trips.append((e.cause, now_ms))
            data["first_out"] = view.trips[0][0]
        elif kind == "trip_reset":
            view.trips = []
        elif kind == "alarm":
            view.alarms.add(_alarm_id(e))
        elif kind == "alarm_cleared":
            view.alarms.discard(_alarm_id(e))
        elif kind == "state_change":
            data["previous"] = view.state
            view.state = e.state
            kind = "state"
        elif kind == "dropped":
            self._need_rebirth(mid)  # lost events: the state may be wrong
        events.append(RegistryEvent(kind, mid, now_ms, e, data))
        return events

    def tick(self, now_ms: int) -> list[RegistryEvent]:
        """Mark modules stale that sent nothing for STALE_AFTER_MS + 3 telemetry periods."""
        self._now = now_ms
        events = []
        for view in self.modules.values():
            if view.stale or not view.online or view.last_seen_ms is None:
                continue
            silent = now_ms - view.last_seen_ms
            limit = STALE_AFTER_MS + 3 * view.period_ms
            if silent > limit:
                view.stale = True
                events.append(
                    RegistryEvent(
                        "stale", view.id, now_ms, data={"reason": "silent", "silent_ms": silent}
                    )
                )
        return events


def _alarm_id(e) -> str:
    if e.source is not None:
        return str(e.source)
    return e.cause or "alarm"
