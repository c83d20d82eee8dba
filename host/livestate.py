"""The live state of a line as a viewer sees it: ``LiveLine``, fed every message of
``skid/v1/<line>/#`` and its own broker link's ups and downs, gives a JSON-able snapshot
(``skid status``, the web view).  Deterministic: every call takes the caller's ``now_ms``
(host epoch ms); nothing here sleeps, reads a clock or does I/O.

Where each part of the snapshot comes from:

* modules: their births (kind, channels with units, state), telemetry (values, quality),
  events (state changes, alarms, trips, acknowledgements) and deaths.  Births are not
  retained, so a viewer that starts mid-run hears none: the coordinator's retained run
  status (``host/runstatus.py``) carries every module's channel catalogue and state, which
  is enough to decode telemetry and show units at once.  A module heard from (any message)
  and neither dead nor silent is online, birth or not;
* the coordinator: ``host/state`` (online, or its will: offline), its leases and its run
  status (``host/run``), whose fields are the snapshot's ``run``;
* gaps: this viewer's broker link down (``broker``), the coordinator offline or its run
  status not refreshed for ``RUN_STALE_MS`` while the run is not over (``coordinator``),
  a module gone silent or dead (``module:<id>``); each from when it began to when it
  ended (``to_ms`` null while open).  While the link is down only the broker gap opens,
  and silence is judged again from when it came back.

A value is stale when older than 3 telemetry periods of its module (measured from its
telemetry, else the period the run status gives); a module when silent for
``STALE_AFTER_MS`` plus 3 periods (the registry's rule, ``host/registry.py``).
"""

from __future__ import annotations

from collections import deque

from host.runstatus import FINAL_STATES, parse_run_status
from host.runtext import display_unit
from protocol import host_messages, messages
from protocol.constants import QUALITY_GOOD, QUALITY_NAMES
from protocol.topics import PREFIX
from protocol.wire import Channel

STALE_AFTER_MS = 3000  # as host/registry.py: a module silent this long + 3 periods is stale
DEFAULT_PERIOD_MS = 1000  # until the module's period is measured or announced
MAX_PERIOD_MS = 10_000
RUN_STALE_MS = 5000  # the run status not refreshed this long: the coordinator is away
MAX_ALARMS = 200
MAX_GAPS = 50
EVENT_QUIET_MS = 2000  # a module's own events this recent outrank the run status's lists


class _Module:
    """What the viewer knows of one module (see ``LiveLine``)."""

    def __init__(self, mid: str):
        self.id = mid
        self.kind: str | None = None
        self.state: str | None = None
        self.state_heard = False  # state from the module itself (birth, state event)
        self.born = False
        self.dead = False
        self.bdseq: int | None = None
        self.boot_nonce: bytes | None = None
        self.config_hash: bytes | None = None
        self.channels: list = []  # protocol.wire.Channel, in alias order
        self.codec = None
        self.codec_from: str | None = None  # "birth" | "run"
        self.misfit: list | None = None  # channel names of a catalogue that did not fit
        self.values: dict[str, dict] = {}  # name -> {value, quality, t_ms}
        self.period_ms: int | None = None  # measured
        self.run_period_ms: int | None = None  # from the run status
        self.run_online: bool | None = None
        self.loops: dict[str, str] = {}  # setpoint channel -> measured channel
        self.last_seen_ms: int | None = None
        self.last_data_ms: int | None = None
        self.alarms: dict[str, str] = {}  # alarm id -> cause
        self.trips: list[dict] = []  # {cause, t_ms}
        self.events: deque = deque(maxlen=64)  # (number, t_ms): QoS 1 redeliveries
        self.last_event_ms: int | None = None

    def period(self) -> int:
        return self.period_ms or self.run_period_ms or DEFAULT_PERIOD_MS

    def use_channels(self, channels: list, source: str) -> None:
        """Decode telemetry with ``channels`` (from a birth, or the run's catalogue)."""
        if [c.name for c in channels] != [c.name for c in self.channels]:
            self.values = {}
        self.channels = channels
        self.codec = messages.TelemetryCodec(channels) if channels else None
        self.codec_from = source


class LiveLine:
    """The live state of line ``line_id`` (``line``: a ``line.model.Line``, if known,
    orders the modules and lists those not heard from yet)."""

    def __init__(self, line_id: str, line=None):
        self.line_id = line_id
        self.line = line
        self._prefix = PREFIX + line_id + "/"
        self._modules: dict[str, _Module] = {}
        for mid, comp in getattr(line, "modules", {}).items():
            self._module(mid).kind = comp.kind
        self._listeners: list = []
        self.link_connected = False
        self.link_since_ms: int | None = None
        self.coord_online: bool | None = None  # host/state; None: not heard
        self.coord_seen_ms: int | None = None
        self.run: dict | None = None
        self.run_received_ms: int | None = None
        self.alarms: deque = deque(maxlen=MAX_ALARMS)  # newest last; snapshot reverses
        self.gaps: deque = deque(maxlen=MAX_GAPS)
        self._open_gaps: dict[str, dict] = {}
        self._alarm_seq = 0
        self._derived: tuple = ()
        self.malformed = 0
        self.last_error: str | None = None

    # -- input ------------------------------------------------------------------------------

    def add_listener(self, fn) -> None:
        """``fn(kind, data)`` for each "sample" ({module, channel, t_ms, value}) and each
        "event" ({module, t_ms, type, severity, source, cause, detail, state}), called
        inside ``on_message``: it must be quick, and what it raises reaches the caller."""
        self._listeners.append(fn)

    def _emit(self, kind: str, data: dict) -> None:
        for fn in self._listeners:
            fn(kind, data)

    def on_link(self, connected: bool, now_ms: int) -> None:
        """This viewer's broker connection went up (True) or down (False)."""
        if connected == self.link_connected and self.link_since_ms is not None:
            return
        self.link_connected = connected
        self.link_since_ms = now_ms
        if connected:
            self._close_gap("broker", now_ms)
        else:
            self._open_gap("broker", now_ms)

    def on_message(self, topic: str, payload: bytes, now_ms: int) -> bool:
        """One message of the line; True if the snapshot changed.  Malformed messages
        are counted (``malformed``, ``last_error``), never raised."""
        if not topic.startswith(self._prefix):
            return False
        parts = topic[len(self._prefix) :].split("/")
        if len(parts) != 2:
            return False
        who, kind = parts
        try:
            if who == "host":
                changed = self._host(kind, payload, now_ms)
            else:
                changed = self._module_message(who, kind, payload, now_ms)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            self.malformed += 1
            self.last_error = f"{topic}: {exc}"[:300]
            return False
        if kind == "data" and not self._open_gaps:
            return changed  # the hot path: a sample closes no gap, time is ticked anyway
        return self.tick(now_ms) or changed

    def _host(self, kind: str, payload: bytes, now_ms: int) -> bool:
        if kind == "state":
            state = host_messages.parse_state(payload)
            self.coord_online = bool(state.online)
            self.coord_seen_ms = now_ms
            return True
        if kind == "lease":
            self.coord_seen_ms = now_ms
            return False
        if kind == "run":
            status = parse_run_status(payload)  # RunStatusError is a ValueError
            if status.get("line") not in (None, self.line_id):
                raise ValueError(f"run status of line {status.get('line')!r}")
            self.run = status
            self.run_received_ms = now_ms
            self.coord_seen_ms = now_ms
            self._adopt_catalogue(status.get("modules") or {}, now_ms)
            return True
        return False

    def _adopt_catalogue(self, modules: dict, now_ms: int) -> None:
        """What the run status says of each module: used where the module has not told
        the viewer itself (no birth heard, no state event, trips and alarms missed)."""
        for mid, info in modules.items():
            m = self._module(mid)
            m.kind = m.kind or info.get("kind")
            m.loops = dict(info.get("loops") or {})
            m.run_online = info.get("online")
            period = info.get("period_ms")
            m.run_period_ms = period if isinstance(period, int) and period > 0 else None
            if not m.state_heard and info.get("state") is not None:
                m.state = info["state"]
            entries = info.get("channels") or []
            names = [e.get("name") for e in entries if isinstance(e, dict)]
            fresh = names != [c.name for c in m.channels] and names != m.misfit
            if m.codec_from != "birth" and fresh:
                chans = _channels(entries)
                if chans:
                    m.use_channels(chans, "run")
            self._adopt_interlocks(m, info, now_ms)

    def _adopt_interlocks(self, m: _Module, info: dict, now_ms: int) -> None:
        """Latched trips and active alarms the coordinator knows of: events are not
        retained, so a viewer that joined after them learns them here (severity null: the
        coordinator does not say), and what it no longer lists goes (a reset or a clearing
        this viewer missed) -- unless the module's own events were heard within
        ``EVENT_QUIET_MS``: they are newer than the run status."""
        if m.last_event_ms is not None and now_ms - m.last_event_ms <= EVENT_QUIET_MS:
            return  # its own events are newer than what the coordinator had published
        if "trips" not in info or "alarms" not in info:
            return  # a coordinator that does not publish them
        trips = [c for c in info.get("trips") or [] if isinstance(c, str)]
        alarms = [a for a in info.get("alarms") or [] if isinstance(a, str)]
        for cause in trips:
            if all(t["cause"] != cause for t in m.trips):
                t_ms = self._run_trip_ms(m.id, cause, now_ms)
                m.trips.append({"cause": cause, "t_ms": t_ms})
                self._add_alarm(m.id, cause, "trip:" + cause, None, t_ms)
        for aid in alarms:
            if aid not in m.alarms:
                m.alarms[aid] = aid
                self._add_alarm(m.id, aid, aid, None, now_ms)
        gone = ["trip:" + t["cause"] for t in m.trips if t["cause"] not in trips]
        m.trips = [t for t in m.trips if t["cause"] in trips]
        self._end_alarms(m.id, lambda a: a["key"] in gone)
        for aid in [a for a in m.alarms if a not in alarms]:
            del m.alarms[aid]
            self._end_alarms(m.id, lambda a, aid=aid: a["key"] == aid)

    def _run_trip_ms(self, module: str, cause: str, now_ms: int) -> int:
        """When the coordinator learned of a trip, on this viewer's clock (its ``t_s`` in
        the run status, counted back from now), else ``now_ms``."""
        run = self.run or {}
        for t in run.get("trips") or []:
            if isinstance(t, dict) and t.get("module") == module and t.get("cause") == cause:
                t_s, elapsed = t.get("t_s"), run.get("elapsed_s")
                if isinstance(t_s, int | float) and isinstance(elapsed, int | float):
                    return int(now_ms - max(0.0, elapsed - t_s) * 1000)
        return now_ms

    def _module(self, mid: str) -> _Module:
        m = self._modules.get(mid)
        if m is None:
            m = self._modules[mid] = _Module(mid)
        return m

    def _module_message(self, mid: str, kind: str, payload: bytes, now_ms: int) -> bool:
        if kind in ("cmd", "ack"):
            return False
        if kind == "birth":
            return self._birth(mid, payload, now_ms)
        if kind == "death":
            return self._death(mid, payload, now_ms)
        if kind == "data":
            return self._telemetry(mid, payload, now_ms)
        if kind == "event":
            return self._event(mid, payload, now_ms)
        return False

    def _birth(self, mid: str, payload: bytes, now_ms: int) -> bool:
        b = host_messages.parse_birth(payload)
        if b.module_id != mid:
            raise ValueError(f"birth of module {b.module_id!r} on the topic of {mid!r}")
        m = self._module(mid)
        if m.boot_nonce is not None and m.boot_nonce != b.boot_nonce:
            self._module_rebooted(m, now_ms)  # a new boot: its latched trips and alarms are gone
        m.boot_nonce, m.config_hash = b.boot_nonce, b.config_hash
        m.kind, m.state, m.bdseq = b.module_kind, b.state, b.bdseq
        m.state_heard = m.born = True
        m.dead = False
        m.use_channels(list(b.channels), "birth")
        m.last_seen_ms = now_ms
        m.last_data_ms = None
        return True

    def _module_rebooted(self, m: _Module, now_ms: int) -> None:
        m.alarms = {}
        m.trips = []
        m.events.clear()
        for entry in self.alarms:
            if entry["module"] == m.id and entry["active"]:
                entry["active"] = False

    def _death(self, mid: str, payload: bytes, now_ms: int) -> bool:
        d = host_messages.parse_death(payload)
        m = self._module(mid)
        # Only the death of the session we know counts (a late will of an older one not).
        if m.bdseq is not None and m.bdseq != d.bdseq:
            return False
        m.dead = True
        m.last_seen_ms = now_ms
        return True

    def _telemetry(self, mid: str, payload: bytes, now_ms: int) -> bool:
        m = self._module(mid)
        try:
            t = host_messages.parse_telemetry(payload, m.codec)
        except ValueError:
            if m.codec_from != "run":
                raise
            # The catalogue no longer fits (a new config): values wait for a birth.
            m.misfit = [c.name for c in m.channels]
            m.use_channels([], "run")
            t = host_messages.parse_telemetry(payload)
        m.last_seen_ms = now_ms
        m.dead = False
        if m.last_data_ms is not None:
            gap = now_ms - m.last_data_ms
            if 0 < gap <= MAX_PERIOD_MS:  # the shortest recent gap, as the registry
                m.period_ms = gap if m.period_ms is None else min(gap, m.period_ms * 2)
        m.last_data_ms = now_ms
        if m.codec is None:
            return True  # heard (online); values unknown until a birth or the catalogue
        for ch, v, q in zip(m.channels, t.values, t.qualities, strict=True):
            quality = "good" if q == QUALITY_GOOD else QUALITY_NAMES[q]
            m.values[ch.name] = {"value": v, "quality": quality, "t_ms": now_ms}
            self._emit("sample", {"module": mid, "channel": ch.name, "t_ms": now_ms, "value": v})
        return True

    def _event(self, mid: str, payload: bytes, now_ms: int) -> bool:
        e = host_messages.parse_event(payload)
        m = self._module(mid)
        m.last_seen_ms = m.last_event_ms = now_ms
        m.dead = False
        key = (e.number, e.t_ms)
        if key in m.events:
            return False  # a QoS 1 redelivery
        m.events.append(key)
        aid = str(e.source) if e.source is not None else (e.cause or "alarm")
        if e.type == "trip":
            cause = e.cause or "unknown"
            if all(t["cause"] != cause for t in m.trips):
                m.trips.append({"cause": cause, "t_ms": now_ms})
                self._add_alarm(m.id, cause, "trip:" + cause, e.severity, now_ms)
        elif e.type == "trip_reset":
            m.trips = []
            self._end_alarms(m.id, lambda a: a["key"].startswith("trip:"))
        elif e.type == "alarm":
            m.alarms[aid] = e.cause or aid
            self._add_alarm(m.id, e.cause or aid, aid, e.severity, now_ms)
        elif e.type == "alarm_cleared":
            m.alarms.pop(aid, None)
            self._end_alarms(m.id, lambda a: a["key"] == aid)
        elif e.type == "state_change":
            m.state = e.state
            m.state_heard = True
        elif e.type == "operator_action":
            self._acknowledged(m.id, e.detail or "")
        self._emit(
            "event",
            {
                "module": mid,
                "t_ms": now_ms,
                "type": e.type,
                "severity": e.severity,
                "source": None if e.source is None else str(e.source),
                "cause": e.cause,
                "detail": e.detail,
                "state": e.state,
            },
        )
        return True

    # -- the alarm list ------------------------------------------------------------------------

    def _add_alarm(self, module: str, cause: str, key: str, severity, now_ms: int) -> None:
        for a in self.alarms:
            if a["module"] == module and a["key"] == key and a["active"]:
                return  # still the same alarm
        self._alarm_seq += 1
        self.alarms.append(
            {
                "id": f"{module}:{key}:{self._alarm_seq}",
                "t_ms": now_ms,
                "module": module,
                "cause": cause,
                "severity": severity,
                "active": True,
                "acked": False,
                "key": key,
            }
        )

    def _end_alarms(self, module: str, match) -> None:
        for a in self.alarms:
            if a["module"] == module and a["active"] and match(a):
                a["active"] = False

    def _acknowledged(self, module: str, detail: str) -> None:
        """An ``ack_alarm`` the module applied (its operator_action event): ``target=X``
        names the alarm, no target every active one."""
        words = detail.split()
        if not words or words[0] != "ack_alarm":
            return
        target = next((w[7:] for w in words[1:] if w.startswith("target=")), None)
        for a in self.alarms:
            if a["module"] == module and a["active"] and target in (None, a["key"]):
                a["acked"] = True

    # -- time -----------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> bool:
        """Staleness and gaps at ``now_ms``; True if anything derived from time changed."""
        stale_modules = []
        stale_values = []
        for m in self._modules.values():
            if self._module_stale(m, now_ms):
                stale_modules.append(m.id)
            limit = 3 * m.period()
            for name, v in m.values.items():
                if now_ms - v["t_ms"] > limit:
                    stale_values.append((m.id, name))
        coord_away = self._coordinator_away(now_ms)
        if self.link_connected:
            self._set_gap("coordinator", coord_away, now_ms)
            for m in self._modules.values():
                # From when it was last heard.  A death too only once it lasts as long as
                # silence would: a broker going down sends every module's will first.
                silent = m.last_seen_ms is not None and self._module_silent(m, now_ms)
                self._set_gap("module:" + m.id, silent, now_ms, m.last_seen_ms)
        derived = (tuple(stale_modules), tuple(stale_values), coord_away, len(self._open_gaps))
        changed = derived != self._derived
        self._derived = derived
        return changed

    def _since(self, t_ms: int | None) -> int | None:
        """``t_ms``, or when the link last came up if later (silence while the viewer
        was cut off says nothing of the sender)."""
        if t_ms is None:
            return None
        if self.link_since_ms is not None and self.link_connected:
            return max(t_ms, self.link_since_ms)
        return t_ms

    def _module_stale(self, m: _Module, now_ms: int) -> bool:
        return m.dead or self._module_silent(m, now_ms)

    def _module_silent(self, m: _Module, now_ms: int) -> bool:
        seen = self._since(m.last_seen_ms)
        if seen is None:
            return False
        return now_ms - seen > STALE_AFTER_MS + 3 * m.period()

    def _run_over(self) -> bool:
        return self.run is None or not self.run["online"] or self.run["state"] in FINAL_STATES

    def _coordinator_away(self, now_ms: int) -> bool:
        """The coordinator of a run not over is offline (its will) or silent."""
        if self._run_over():
            return False
        if self.coord_online is False:
            return True
        seen = self._since(self.run_received_ms)
        return seen is not None and now_ms - seen > RUN_STALE_MS

    def _set_gap(self, what: str, is_open: bool, now_ms: int, from_ms: int | None = None) -> None:
        if is_open:
            self._open_gap(what, now_ms if from_ms is None else from_ms)
        else:
            self._close_gap(what, now_ms)

    def _open_gap(self, what: str, from_ms: int) -> None:
        if what not in self._open_gaps:
            gap = {"from_ms": from_ms, "to_ms": None, "what": what}
            self._open_gaps[what] = gap
            self.gaps.append(gap)

    def _close_gap(self, what: str, now_ms: int) -> None:
        gap = self._open_gaps.pop(what, None)
        if gap is not None:
            gap["to_ms"] = now_ms

    # -- output ---------------------------------------------------------------------------------

    def snapshot(self, now_ms: int) -> dict:
        """The live state at ``now_ms``: JSON-able, every key always present (docs/cli.md,
        ``skid status``)."""
        self.tick(now_ms)
        return {
            "t_ms": now_ms,
            "line": self.line_id,
            "link": {"connected": self.link_connected, "since_ms": self.link_since_ms},
            "coordinator": {
                "online": self._coordinator_online(now_ms),
                "last_seen_ms": self.coord_seen_ms,
            },
            "run": self._run_snapshot(now_ms),
            "modules": self._modules_snapshot(now_ms),
            "alarms": [_public_alarm(a) for a in reversed(self.alarms)],
            "gaps": [dict(g) for g in self.gaps],
        }

    def _coordinator_online(self, now_ms: int) -> bool:
        if self._coordinator_away(now_ms):
            return False
        if self.coord_online is not None:
            return self.coord_online
        return self.run is not None and self.run["online"] and not self._run_over()

    def _run_snapshot(self, now_ms: int) -> dict | None:
        if self.run is None:
            return None
        run = {k: v for k, v in self.run.items() if k != "modules"}
        run["phase_elapsed_s"] = self.run.get("phase_elapsed_s")
        run["stale"] = self._coordinator_away(now_ms)
        run["received_ms"] = self.run_received_ms
        return run

    def _order(self) -> list[str]:
        """The line's order; without the line, the run status's (the coordinator's line)."""
        known = list(getattr(self.line, "modules", None) or (self.run or {}).get("modules") or {})
        return known + sorted(m for m in self._modules if m not in known)

    def _modules_snapshot(self, now_ms: int) -> list[dict]:
        setpoints = (self.run or {}).get("setpoints") or {}
        first = self._first_out()
        return [
            self._module_snapshot(self._modules[mid], now_ms, setpoints.get(mid) or {}, first)
            for mid in self._order()
        ]

    def _first_out(self) -> tuple[str, str] | None:
        """(module, cause) of the earliest standing trip on the line; at the same time,
        the first in the coordinator's list (the order it learned of them)."""
        order = {
            (t.get("module"), t.get("cause")): i
            for i, t in enumerate((self.run or {}).get("trips") or [])
            if isinstance(t, dict)
        }
        trips = [
            (t["t_ms"], order.get((m.id, t["cause"]), len(order)), m.id, t["cause"])
            for m in self._modules.values()
            for t in m.trips
        ]
        return min(trips)[2:] if trips else None

    def _module_snapshot(self, m: _Module, now_ms: int, setpoints: dict, first) -> dict:
        stale = self._module_stale(m, now_ms)
        if m.last_seen_ms is None:
            # Not heard yet: the word of a coordinator running the run (not a closing one).
            online = bool(m.run_online) and not self._run_over()
            online = online and not self._coordinator_away(now_ms)
        else:
            online = not stale
        measured_sp = {meas: setpoints[sp] for sp, meas in m.loops.items() if sp in setpoints}
        values = {}
        limit = 3 * m.period()
        for ch in m.channels:
            v = m.values.get(ch.name)
            values[ch.name] = {
                "value": None if v is None else v["value"],
                "unit": display_unit(ch.unit),
                "role": ch.role,
                "quality": None if v is None else v["quality"],
                "setpoint": setpoints.get(ch.name, measured_sp.get(ch.name)),
                "t_ms": None if v is None else v["t_ms"],
                "stale": v is None or now_ms - v["t_ms"] > limit,
            }
        return {
            "id": m.id,
            "kind": m.kind,
            "state": m.state,
            "born": m.born,
            "online": online,
            "stale": stale,
            "last_seen_ms": m.last_seen_ms,
            "config_hash": None if m.config_hash is None else bytes(m.config_hash).hex(),
            "values": values,
            "alarms": sorted(set(m.alarms.values())),
            "trips": [
                {"cause": t["cause"], "t_ms": t["t_ms"], "first_out": first == (m.id, t["cause"])}
                for t in m.trips
            ],
        }


def _public_alarm(a: dict) -> dict:
    """The list entry as viewers see it: ``key`` is published as ``alarm``, the module's
    own name for it (what ``skid ack`` and the view's Ack send; ``trip:<cause>`` for a
    trip, which only a reset at the module clears)."""
    out = {k: v for k, v in a.items() if k != "key"}
    out["alarm"] = a["key"]
    return out


def _channels(entries: list) -> list:
    """protocol Channels from a run status catalogue (``[]`` if any entry is unusable)."""
    out = []
    try:
        for i, e in enumerate(entries):
            out.append(
                Channel(
                    e["name"],
                    e.get("unit") or "",
                    e["role"],
                    e["lo"],
                    e["hi"],
                    e.get("resolution"),
                    alias=i,
                )
            )
        messages.TelemetryCodec(out)  # the same checks a birth's channels pass
    except (KeyError, TypeError, ValueError):
        return []
    return out


class LinkWatch:
    """Feeds ``live.on_link`` from a transport polled by its caller (``connected``, and
    ``reconnects``: paho reconnects on its own thread, so a drop and a return between two
    polls shows only in that count; it is then entered as a gap of no length)."""

    def __init__(self, live: LiveLine):
        self.live = live
        self._reconnects: int | None = None

    def poll(self, transport, now_ms: int) -> None:
        up = bool(getattr(transport, "connected", True))
        count = getattr(transport, "reconnects", 0)
        if self._reconnects is not None and count != self._reconnects and self.live.link_connected:
            self.live.on_link(False, now_ms)
        self._reconnects = count
        self.live.on_link(up, now_ms)
