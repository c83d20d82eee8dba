"""The run status: where a coordinator's run is, retained on ``skid/v1/<line>/host/run``.

A host-to-host CBOR map with text keys (like ``host/control.py``'s payloads; modules never
subscribe), published retained with QoS 1 by the coordinator at ``RUN_STATUS_EVERY_MS`` of
the run's clock and at once when the run's state, phase, step, outlet, trips, setpoints
or a module's state or presence change; a closing message (``online: false``, ``state``
the outcome) ends the run.  A viewer that subscribes late (``skid status``, the web view)
gets the retained one at once, so it knows the recipe, the phase, the setpoints and every
module's channel catalogue (names, units, roles, ranges) before it hears any birth:
births are not retained, and without the catalogue telemetry cannot be decoded.

Fields (every key always present; ``null`` where not known):

* ``run_id``, ``recipe``, ``line`` (the line id in the topics), ``online`` (false in the
  closing message), ``t_ms`` (host epoch ms, the run's clock);
* ``state``: one of ``STATES`` (``attaching`` until every module has been born);
* ``phase``, ``phase_index`` (into ``phases``; null in a shutdown sequence), ``step``,
  ``phases`` [{name, description, conditions: [text]}] with every wait resolved to
  numbers and units ("reactor1.temperature ≥ 78 °C"), ``phase_started_ms``,
  ``phase_elapsed_s``, ``next_phase_in_s``, ``elapsed_s``, ``reason``;
* ``collected_ml``, ``diverted_ml``, ``outlet`` ("collect" | "waste" | null);
* ``setpoints`` {module: {channel: value}}: the last value commanded for each;
* ``trips`` [{module, cause, t_s}] in the order the coordinator learned of them;
* ``modules`` {module: {kind, state, online, period_ms, channels: [{name, unit, role, lo,
  hi, resolution}], loops: {setpoint channel: measured channel}, trips: [cause] (latched,
  first-out first), alarms: [alarm id] (active)}}.

``build_run_status(status) -> bytes`` checks a status map and encodes it;
``parse_run_status(payload) -> dict`` decodes and checks one (``RunStatusError`` naming
the key, the value and what is allowed).  ``RunStatusPublisher`` builds the status from a
coordinator; the coordinator ticks it.
"""

from __future__ import annotations

import math

import cbor2

from host.runtext import current_step_text, phase_list
from protocol.topics import PREFIX, validate_id

RUN_STATUS_EVERY_MS = 1000
STATES = (
    "attaching",
    "running",
    "held",
    "manual",
    "shutting_down",
    "completed",
    "aborted",
    "completed_with_deviations",
)
FINAL_STATES = ("completed", "aborted", "completed_with_deviations")
OUTLETS = ("collect", "waste")
MAX_PAYLOAD = 256 * 1024  # a run status is a few kB; refuse anything absurd

# key -> (types allowed, nullable)
_NUM = (int, float)
FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "run_id": ((str,), False),
    "recipe": ((str,), True),
    "line": ((str,), False),
    "online": ((bool,), False),
    "t_ms": ((int,), False),
    "state": ((str,), False),
    "phase": ((str,), True),
    "phase_index": ((int,), True),
    "step": ((str,), True),
    "phases": ((list,), False),
    "phase_started_ms": ((int,), True),
    "phase_elapsed_s": (_NUM, True),
    "next_phase_in_s": (_NUM, True),
    "elapsed_s": (_NUM, False),
    "reason": ((str,), False),
    "collected_ml": (_NUM, True),
    "diverted_ml": (_NUM, True),
    "outlet": ((str,), True),
    "setpoints": ((dict,), False),
    "trips": ((list,), False),
    "modules": ((dict,), False),
}


class RunStatusError(ValueError):
    """A run status that is malformed: names the key, the value and what is allowed."""


def run_topic(line: str) -> str:
    """``skid/v1/<line>/host/run``."""
    validate_id("line", line)
    return PREFIX + line + "/host/run"


def _fail(key: str, value, allowed: str):
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    raise RunStatusError(f"run status: {key} = {text}: allowed {allowed}")


def check_run_status(status) -> dict:
    """``status`` if it is a well-formed run status, else ``RunStatusError``.  Unknown
    keys are kept (a newer coordinator may add some); known ones must have their type."""
    if not isinstance(status, dict):
        _fail("(top)", type(status).__name__, "a map")
    for key, (types, nullable) in FIELDS.items():
        if key not in status:
            _fail(key, None, "present (every field is, null where not known)")
        value = status[key]
        if value is None and nullable:
            continue
        if isinstance(value, bool) and bool not in types:
            _fail(key, value, _type_names(types))
        if not isinstance(value, types):
            _fail(key, value, _type_names(types) + (" or null" if nullable else ""))
        if isinstance(value, float) and not math.isfinite(value):
            _fail(key, value, "a finite number")
    if status["state"] not in STATES:
        _fail("state", status["state"], " | ".join(STATES))
    if status["outlet"] is not None and status["outlet"] not in OUTLETS:
        _fail("outlet", status["outlet"], "collect | waste | null")
    _check_phases(status["phases"])
    _check_modules(status["modules"])
    for mid, chans in status["setpoints"].items():
        if not isinstance(chans, dict):
            _fail(f"setpoints.{mid}", chans, "a map channel -> number")
        for ch, v in chans.items():
            if isinstance(v, bool) or not isinstance(v, _NUM):
                _fail(f"setpoints.{mid}.{ch}", v, "a number")
    return status


def _type_names(types) -> str:
    names = {int: "an integer", float: "a number", str: "text", bool: "true/false"}
    names.update({list: "a list", dict: "a map"})
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_phases(phases: list) -> None:
    for i, p in enumerate(phases):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            _fail(f"phases[{i}]", p, "a map with a name")
        conditions = p.get("conditions")
        if not isinstance(conditions, list) or not all(isinstance(c, str) for c in conditions):
            _fail(f"phases[{i}].conditions", conditions, "a list of texts")


def _check_modules(modules: dict) -> None:
    for mid, m in modules.items():
        if not isinstance(m, dict) or not isinstance(m.get("channels"), list):
            _fail(f"modules.{mid}", m, "a map with a channel list")
        for j, ch in enumerate(m["channels"]):
            if not isinstance(ch, dict) or not isinstance(ch.get("name"), str):
                _fail(f"modules.{mid}.channels[{j}]", ch, "a map with a name")


def build_run_status(status: dict) -> bytes:
    """The CBOR payload of ``status`` (checked first: ``RunStatusError``)."""
    return cbor2.dumps(check_run_status(status))


def parse_run_status(payload: bytes) -> dict:
    """The run status in ``payload``; ``RunStatusError`` when it is not one."""
    if not isinstance(payload, bytes | bytearray):
        _fail("(payload)", type(payload).__name__, "bytes")
    if len(payload) > MAX_PAYLOAD:
        _fail("(payload)", f"{len(payload)} bytes", f"at most {MAX_PAYLOAD} bytes")
    try:
        status = cbor2.loads(bytes(payload))
    except Exception as exc:  # noqa: BLE001 - cbor2 raises several types
        raise RunStatusError(f"run status is not CBOR: {exc}") from None
    return check_run_status(status)


# --- built from a coordinator ------------------------------------------------------------


def _loops(line) -> dict[str, dict[str, str]]:
    """module -> {setpoint channel (a PID loop's name): the channel it measures}."""
    from line.loader import module_config  # lazy: only coordinators need it

    out: dict[str, dict[str, str]] = {}
    for mid in getattr(line, "modules", {}):
        try:
            data, _ = module_config(line, mid)
        except Exception:  # noqa: BLE001 - a line without board files (tests): no loops
            continue
        loops = {lp["name"]: lp["measure"] for lp in data.get("pid") or [] if lp.get("measure")}
        if loops:
            out[mid] = loops
    return out


def _channel_entry(ch) -> dict:
    return {
        "name": ch.name,
        "unit": ch.unit,
        "role": ch.role,
        "lo": ch.lo,
        "hi": ch.hi,
        "resolution": ch.resolution,
    }


class RunStatusPublisher:
    """Builds and publishes a coordinator's run status (``tick`` from its ``tick``,
    ``close`` from its ``close``): retained, QoS 1, every ``every_ms`` of the run's clock
    and at once on a change of what ``_change_key`` covers."""

    def __init__(self, coord, every_ms: int = RUN_STATUS_EVERY_MS):
        self.coord = coord
        self.every_ms = every_ms
        self.topic = run_topic(coord.line_id)
        self.published = 0
        self._loops = _loops(coord.line)
        self._phases: list[dict] | None = None
        self._key = None
        self._next_ms: int | None = None

    def tick(self, now_ms: int) -> bool:
        """Publish if due or changed; True when it published."""
        key = self._change_key()
        if key == self._key and self._next_ms is not None and now_ms < self._next_ms:
            return False
        self._key = key
        self._next_ms = now_ms + self.every_ms
        self._publish(self.status(now_ms, online=True))
        return True

    def close(self, now_ms: int) -> dict:
        """The closing message (``online`` false, ``state`` the outcome); returned."""
        status = self.status(now_ms, online=False)
        self._publish(status)
        return status

    def _publish(self, status: dict) -> None:
        self.coord.transport.publish(self.topic, build_run_status(status), qos=1, retain=True)
        self.published += 1

    def _change_key(self) -> tuple:
        c = self.coord
        seq = c.sequencer
        modules = tuple(
            (v.state, v.online and not v.stale, len(v.channels), len(v.trips), len(v.alarms))
            for v in c.registry.modules.values()
        )
        return (
            c.phase,
            c.outcome,
            None if seq is None else (seq.state, seq.phase, seq.step),
            len(c.trips),
            self._outlet(),
            tuple(c._setpoints.items()),
            modules,
        )

    def _state(self, online: bool) -> str:
        c = self.coord
        if c.phase == "finished" or not online:
            return c.outcome if c.outcome in STATES else "aborted"
        seq = c.sequencer
        if c.phase == "attaching":
            return "attaching"
        if seq is None:
            return "running"
        return {"idle": "attaching", "aborting": "shutting_down"}.get(seq.state, seq.state)

    def _plan(self):
        seq = self.coord.sequencer
        if seq is not None:
            return seq.plan
        from host.recipe import plan_recipe  # lazy: a run without a recipe never needs it

        try:
            return plan_recipe(self.coord.recipe, self.coord.line)
        except Exception:  # noqa: BLE001 - conditions then stay as written
            return None

    def _outlet(self) -> str | None:
        seq = self.coord.sequencer
        coll = None if seq is None else seq.plan.collector
        if coll is None:
            return None
        value = self.coord.access.value(coll.module, coll.channel)
        if value is None:
            return None
        if coll.collect_position is not None and round(value) == coll.collect_position:
            return "collect"
        waste = coll.positions.get("waste")
        return "waste" if waste is not None and round(value) == waste else None

    def status(self, now_ms: int, online: bool = True) -> dict:
        """The run status at ``now_ms`` (the coordinator's clock)."""
        c = self.coord
        if self._phases is None and c.recipe is not None:
            self._phases = phase_list(c.recipe, self._plan())
        phases = self._phases or []
        host_now = int(c.host_ms())
        status = {
            "run_id": c.record.run_id,
            "recipe": getattr(c.recipe, "name", None),
            "line": c.line_id,
            "online": online,
            "t_ms": host_now,
            "state": self._state(online),
            "phase": None,
            "phase_index": None,
            "step": None,
            "phases": phases,
            "phase_started_ms": None,
            "phase_elapsed_s": None,
            "next_phase_in_s": None,
            "elapsed_s": round((now_ms - c.started_ms) / 1000.0, 3),
            "reason": c.reason or "",
            "collected_ml": None,
            "diverted_ml": None,
            "outlet": self._outlet(),
            "setpoints": self._setpoints(),
            "trips": [
                {"module": t.module, "cause": t.cause, "t_s": round(t.t_s, 3)} for t in c.trips
            ],
            "modules": self._modules(),
        }
        if c.sequencer is not None:
            self._sequencer_fields(status, now_ms, host_now, [p["name"] for p in phases])
        return status

    def _sequencer_fields(self, status: dict, now_ms: int, host_now: int, names: list) -> None:
        seq = self.coord.sequencer
        info = seq.progress(now_ms)
        phase = info["phase"]
        status.update(
            phase=phase,
            phase_index=names.index(phase) if phase in names else None,
            step=current_step_text(self.coord.recipe, seq.plan, phase, info["step"]),
            next_phase_in_s=info["next_phase_in_s"],
            collected_ml=info["collected_ml"],
            diverted_ml=seq.quality_summary().get("diverted_ml"),
            reason=info["reason"] or status["reason"],
        )
        if phase is not None and seq.started_ms is not None:
            phase_elapsed = info["phase_elapsed_s"]
            status["phase_elapsed_s"] = phase_elapsed
            status["phase_started_ms"] = int(host_now - phase_elapsed * 1000)

    def _setpoints(self) -> dict:
        out: dict[str, dict[str, float]] = {}
        for (module, channel), value in self.coord._setpoints.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.setdefault(module, {})[channel] = value
        return out

    def _modules(self) -> dict:
        out = {}
        registry = self.coord.registry
        for mid in self.coord.line.modules:
            view = registry.modules.get(mid)
            if view is None:
                continue
            out[mid] = {
                "kind": view.kind,
                "state": view.state,
                "online": registry.online(mid),
                "period_ms": view.period_ms,
                "channels": [_channel_entry(ch) for ch in view.channels],
                "loops": self._loops.get(mid, {}),
                # Latched trips and active alarms: events are not retained either.
                "trips": [cause for cause, _t in view.trips],
                "alarms": sorted(view.alarms),
            }
        return out
