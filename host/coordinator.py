"""The coordinator: one line, one recipe, one run record, stepped by ``tick(now_ms)``.

It owns no I/O of its own: a ``Transport`` (in-process bus or MQTT) brings module
messages in when the caller polls it, and takes leases, host state and commands out.
``tick(now_ms)`` (simulated or scaled milliseconds, the same clock the modules run on)
does, in order:

1. leases: a LEASE every ``lease_every_ms`` while the coordinator lives;
2. the registry's timers (silent modules go stale) and command timeouts;
3. rebirth requests for modules whose session the registry lost track of;
4. attaching: until every module of the line has sent its birth, of the right kind and
   with the config hash the line expects, nothing moves (bounded by ``attach_timeout_ms``);
5. the recipe's sequencer;
6. the run record's sample buffer, flushed every ``flush_every_ms``;
7. the run status (``host/runstatus.py``), retained on ``host/run``: each second of the
   run's clock and at once on a change; a closing one from ``close()``.

``step(now_ms)`` is the loop's turn: ``transport.poll()`` (messages stamped ``now_ms``) then
``tick(now_ms)``.  Messages are routed as they arrive (the poll calls the handlers): births,
deaths, telemetry, events and acks go to the registry and the run record; trips and
module deaths go to the sequencer, which runs the recipe's shutdown sequence for that
hazard (every module has already protected itself: that is the edge's job).

Operator requests (``host/control.py``) arrive on the line's control topic or through
``request(...)`` in-process; each is recorded with who, what, when and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from host import control
from host.commander import Commander
from host.ingest import Ingest
from host.registry import Registry
from host.runstatus import RunStatusPublisher
from host.sequencer import Sequencer
from protocol import auth, host_messages, messages, wire
from protocol.constants import RESULT_NAMES
from protocol.topics import host_topic, line_filter, parse_topic

LEASE_EVERY_MS = 1000
LEASE_DURATION_MS = 3000
FLUSH_EVERY_MS = 500
ATTACH_TIMEOUT_MS = 30_000
# After our own broker link comes back: how long modules have to be heard from again
# before a silent one counts as lost (their messages queued meanwhile arrive first).
RECONNECT_GRACE_MS = 5000
# A module's death or silence counts as its loss if it is still not heard from this long
# after (with our own link up): long enough for a broker restart's wills to be undone.
LOSS_CONFIRM_MS = 2000


@dataclass
class TripSeen:
    module: str
    cause: str
    t_s: float  # since the coordinator started, on the run's clock


@dataclass
class Summary:
    """What a script wants to know about a run (the ``--json`` contract)."""

    run_id: str
    outcome: str  # completed | completed_with_deviations | aborted
    modules: list[dict]
    trips: list[dict]
    peaks: dict[str, float]
    record: str
    reason: str = ""
    phases: list[dict] = field(default_factory=list)
    collected_ml: float | None = None
    duration_s: float = 0.0
    all_safe_at_end: bool | None = None  # known where the host can see the modules' outputs
    refused: bool = False  # ended before the recipe started: nothing was run
    line_id: str = ""  # the line id in the topics (broker runs: --line-id, or generated)
    # Pressure left in the line at the end: [{"component", "pressure_bar"}] (session.py)
    residual: list[dict] | None = None
    # The outlet's volume booked by the sequencer (host/quality.py): collected_in_spec_ml,
    # collected_off_spec_ml, diverted_ml, volume_estimated, segments, excursions.
    quality: dict | None = None

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "line_id": self.line_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "modules": self.modules,
            "trips": self.trips,
            "peaks": self.peaks,
            "record": self.record,
            "phases": self.phases,
            "collected_ml": self.collected_ml,
            "duration_s": round(self.duration_s, 3),
            **({} if self.all_safe_at_end is None else {"all_safe_at_end": self.all_safe_at_end}),
            **({} if self.residual is None else {"residual": self.residual}),
            **({"refused": True} if self.refused else {}),
            **(self.quality or {}),
        }


class LineAccess:
    """What the sequencer may see and do: the registry's view and the commander."""

    def __init__(self, coordinator: Coordinator):
        self.c = coordinator

    def value(self, module: str, channel: str) -> float | None:
        # Unlike Registry.value, an UNCERTAIN reading counts (a 1oo2 pair running on one
        # probe still tells the recipe the coil's temperature); BAD, stale, offline do not.
        view = self.c.registry.modules.get(module)
        if view is None or not view.online or view.stale:
            return None
        if view.quality.get(channel) == "bad":
            return None
        return view.values.get(channel)

    def send(self, module: str, op: str, args: dict | None = None):
        return self.c.send(module, op, args)

    def module_state(self, module: str) -> str | None:
        return self.c.registry.module_state(module)

    def online(self, module: str) -> bool:
        return self.c.registry.online(module)

    def note(self, kind: str, text: str, **data) -> None:
        self.c.note(kind, text, **data)


class Coordinator:
    def __init__(
        self,
        line,
        recipe,
        transport,
        record,
        *,
        line_id: str,
        now_ms: int,
        host_ms: Callable[[], int],
        keys: dict[str, bytes] | None = None,
        expected_hashes: dict[str, bytes | None] | None = None,
        host_id: str = "host",
        lease_every_ms: int = LEASE_EVERY_MS,
        lease_duration_ms: int = LEASE_DURATION_MS,
        attach_timeout_ms: int = ATTACH_TIMEOUT_MS,
        log: Callable[[str], None] | None = None,
        sequencer_factory=None,
        resume_cause: str | None = None,
        operator_key: bytes | None = None,
    ):
        if keys and len(keys) > wire.LEASE_MAX_TAGS:
            raise ValueError(
                f"{len(keys)} keyed modules on line {line_id}: one lease carries the tags of "
                f"at most {wire.LEASE_MAX_TAGS} (protocol/SPEC.md, LEASE)"
            )
        self.line = line
        self.recipe = recipe
        self.transport = transport
        self.record = record
        self.line_id = line_id
        self.host_id = host_id
        self.host_ms = host_ms
        self.log = log or (lambda text: None)
        self.lease_every_ms = lease_every_ms
        self.lease_duration_ms = lease_duration_ms
        self.attach_timeout_ms = attach_timeout_ms
        # Each module's acceptable config hashes (its board config with the line's module
        # id, compiled; with real or emulated drivers): checked at attach, not by the
        # registry, which takes one hash per module.
        self.accepted_hashes = _accepted(expected_hashes or {})
        self.expected = {mid: (c.kind, None) for mid, c in line.modules.items()}
        self.registry = Registry(line_id, self.expected)
        self.resume_cause = resume_cause
        self.operator_key = operator_key  # signs control requests that can move actuators
        self._actor: dict | None = None  # the operator request being applied (request())
        self._setpoints: dict[tuple[str, str], float] = {}  # last commanded, for old values
        self._control_ids: set[str] = set()
        # Acks are routed here (so the record gets them), not subscribed by the commander.
        self.commander = Commander(
            transport, line_id, self.registry, keys or {}, host_ms=host_ms, subscribe=False
        )
        self.access = LineAccess(self)
        self.ingest = Ingest(self.registry, record, host_ms, flush_every_ms=FLUSH_EVERY_MS)
        self.peaks = self.ingest.peaks  # module.channel -> max of every sensor channel
        self._sequencer_factory = sequencer_factory
        self._start_clock(now_ms)
        self._topic_state = host_topic(line_id, "state")
        self._topic_lease = host_topic(line_id, "lease")
        self._topic_control = control.control_topic(line_id)
        self._topic_reply = control.reply_topic(line_id)
        transport.subscribe(line_filter(line_id), self._on_message)
        transport.subscribe(self._topic_control, self._on_control)
        transport.publish(
            self._topic_state, messages.build_state(True, host_ms()), qos=1, retain=True
        )
        record.host_session(host_ms(), host_id)
        self.note("session", f"coordinator attached to line {line_id}")
        # The run status (host/run, retained): what a viewer arriving late needs at once.
        self.run_status = RunStatusPublisher(self)

    def _start_clock(self, now_ms: int) -> None:
        """The run's state at ``now_ms``: attaching, nothing seen, every timer from now."""
        self.started_ms = now_ms
        self.now_ms = now_ms
        self.phase = "attaching"  # attaching | running | finished
        self.refused = False  # finished before the recipe started (nothing was run)
        self.outcome: str | None = None
        self.reason = ""
        self.trips: list[TripSeen] = []
        self.all_safe_at_end: bool | None = None  # set by the loop before close()
        self.residual: list[dict] | None = None  # likewise: pressure trapped at the end
        self._lease_seq = 0
        self._acks_seen: set[tuple[str, int]] = set()
        self._boot_nonces: dict[str, bytes] = {}  # module -> boot nonce of its session
        self._reconnects = getattr(self.transport, "reconnects", 0)
        self._link_down_ms: int | None = None
        self._grace_until = now_ms
        self._suspects: dict[str, int] = {}  # module -> when to decide it is lost
        self._next_lease = now_ms
        self._next_flush = now_ms + FLUSH_EVERY_MS
        self._attach_deadline = now_ms + self.attach_timeout_ms
        self.sequencer = None

    # -- the clock ----------------------------------------------------------------------------

    def step(self, now_ms: int) -> None:
        """One turn of the loop: deliver what arrived (stamped ``now_ms``), then tick."""
        self.now_ms = now_ms
        self.transport.poll()
        self.tick(now_ms)

    def tick(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self._watch_link(now_ms)
        reconnects = getattr(self.transport, "reconnects", 0)
        if reconnects != self._reconnects:
            # Back on the broker after an outage: say so in the record, and announce the
            # host again in case the broker lost its retained state.
            self._reconnects = reconnects
            self.note("reconnected", "coordinator reconnected to the broker")
            self.transport.publish(
                self._topic_state, messages.build_state(True, self.host_ms()), qos=1, retain=True
            )
        if now_ms >= self._next_lease:
            self._lease()
            self._next_lease = now_ms + self.lease_every_ms
        for ev in self.registry.tick(now_ms):
            self._registry_event(ev)
        for pending in self.commander.tick(now_ms):
            self.note(
                "command_timeout",
                f"{pending.module} {pending.op}: no ack",
                module=pending.module,
                command_id=pending.command_id,
            )
        for module in self.registry.rebirth_needed():
            try:
                self.send(module, "rebirth", None)
            except ValueError as exc:  # e.g. a module of another line: noted, not fatal
                self.note("rebirth", f"{module}: {exc}", module=module)
        if self.phase == "attaching":
            self._attach(now_ms)
        if self.phase == "running" and self.sequencer is not None:
            self.sequencer.tick(now_ms)
            self._track_sequencer()
        if now_ms >= self._next_flush or self.ingest.flush_due(self.host_ms()):
            self.ingest.flush()
            self._next_flush = now_ms + FLUSH_EVERY_MS
        self.run_status.tick(now_ms)

    def _lease(self) -> None:
        """One LEASE for the line, with a tag for every keyed module whose birth (boot
        nonce) we have seen: keyed modules ignore leases without their tag.  The seq is
        host time in ms (at least the last + 1), so a restarted coordinator is not taken
        for a replay."""
        host_now = int(self.host_ms())
        self._lease_seq = max(self._lease_seq + 1, host_now)
        signers = []
        for mid, key in self.commander.keys.items():
            view = self.registry.modules.get(mid)
            if view is not None and view.boot_nonce is not None:
                signers.append((mid, key, view.boot_nonce))
        data = auth.sign_lease(
            self.host_id, host_now, self._lease_seq, self.lease_duration_ms, signers
        )
        self.transport.publish(self._topic_lease, data, qos=0)

    # -- attaching ------------------------------------------------------------------------------

    def missing_modules(self) -> list[str]:
        out = []
        for mid in self.line.modules:
            view = self.registry.modules.get(mid)
            if view is None or not view.online:
                out.append(mid)
        return out

    def _attach(self, now_ms: int) -> None:
        missing = self.missing_modules()
        problems = []
        for mid, (kind, _h) in self.expected.items():
            view = self.registry.modules.get(mid)
            if view is None or not view.online:
                continue
            if view.kind != kind:
                problems.append(f"{mid} is a {view.kind}, the line expects a {kind}")
            accepted = self.accepted_hashes.get(mid)
            if accepted and view.config_hash is not None and view.config_hash not in accepted:
                problems.append(
                    f"{mid} runs config {view.config_hash.hex()[:12]}, "
                    "not the one the line expects (re-flash or fix the line file)"
                )
        if problems:
            self._finish_without_running("aborted", "; ".join(problems))
            return
        if missing:
            if now_ms >= self._attach_deadline:
                self._finish_without_running(
                    "aborted",
                    f"modules did not appear within {self.attach_timeout_ms / 1000:g} s: "
                    + ", ".join(missing),
                )
            return
        self.note("attached", "every module of the line is present: " + ", ".join(self.expected))
        self.phase = "running"
        if self.recipe is not None:
            factory = self._sequencer_factory or Sequencer
            self.sequencer = factory(self.recipe, self.line, self.access, now_ms)
            if self.resume_cause is None:
                self.sequencer.start(now_ms)
            else:
                self.sequencer.shut_down("host_restart", self.resume_cause, now_ms)

    def _finish_without_running(self, outcome: str, reason: str) -> None:
        self.refused = True
        self.note("refused", reason)
        self.log(f"coordinator: {reason}")
        self.outcome = outcome
        self.reason = reason
        self.phase = "finished"

    def _track_sequencer(self) -> None:
        seq = self.sequencer
        if seq.state in ("completed", "aborted"):
            self.outcome = seq.state
            self.reason = getattr(seq, "reason", "") or ""
            self.phase = "finished"

    @property
    def finished(self) -> bool:
        return self.phase == "finished"

    # -- messages --------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        # The ingest hot path (measured by bench/bench_ingest.py): the registry routes the
        # topic (host topics and commands yield nothing), samples go to the record and
        # the peaks; every other registry event comes back for us to act on.
        for ev in self.ingest.handle(topic, payload, self.now_ms):
            self._registry_event(ev)
        if topic.endswith("/ack"):  # only acks need the topic parsed here
            try:
                _line, module, _kind = parse_topic(topic)
                ack = host_messages.parse_ack(payload)
            except ValueError:
                return
            key = (module, ack.command_id)
            if key in self._acks_seen:  # a QoS 1 redelivery: recorded once
                return
            self._acks_seen.add(key)
            self.commander.on_ack(module, ack, self.now_ms)
            self.record.add_ack(
                self.host_ms(),
                module,
                ack.command_id,
                RESULT_NAMES[ack.result] if isinstance(ack.result, int) else str(ack.result),
                ack.reason,
            )

    def _registry_event(self, ev) -> None:
        kind = ev.kind
        module = ev.module
        data = ev.data
        host_ms = self.host_ms()
        if kind in _EVENT_KINDS:
            self.record.add_event(host_ms, module, _event_fields(ev.message))
        if kind == "trip":
            cause = ev.message.cause or "unknown"
            t_s = (self.now_ms - self.started_ms) / 1000.0
            self.trips.append(TripSeen(module, cause, t_s))
            self.log(f"coordinator: TRIP {module}: {cause} at {t_s:.1f} s")
            if self.sequencer is not None:
                self.sequencer.on_trip(module, cause, self.now_ms)
            return
        if kind == "birth":
            view = self.registry.modules.get(module)
            nonce = None if view is None else view.boot_nonce
            known = self._boot_nonces.get(module)
            if known is not None and nonce is not None and nonce != known:
                # A new boot mid-run: the module came back idle, whatever the recipe had
                # it doing.  A rebirth we asked for keeps the nonce and is not this.
                self.note("reboot", f"{module} rebooted mid-run", module=module)
                self._module_lost(module)
            if nonce is not None:
                self._boot_nonces[module] = nonce
            if view is not None and view.channels:
                self.record.add_channels(host_ms, module, view.kind, view.channels)
            fields = _birth_fields(ev.message, data["reboot"])
            self.note("birth", f"{module} born", module=module, **_jsonable(fields))
            return
        if kind in ("death", "stale"):
            self.note(
                kind, f"{module} {'died' if kind == 'death' else 'went silent'}", module=module
            )
            # Not at once: a broker going down publishes every module's will before our
            # own connection drops.  Decide once the link has been up for a while and the
            # module is still not heard from.
            self._suspects.setdefault(module, self.now_ms + LOSS_CONFIRM_MS)
            return
        if kind in ("hash_mismatch", "seq_gap", "malformed"):
            self.note(kind, f"{module}: {data.get('reason', kind)}", module=module)

    def _module_lost(self, module: str) -> None:
        if self.sequencer is not None and self.phase == "running":
            self.sequencer.on_module_lost(module, self.now_ms)

    def _watch_link(self, now_ms: int) -> None:
        """Track our own broker link; after an outage, give modules ``RECONNECT_GRACE_MS``
        to be heard again before any that stay silent count as lost."""
        up = getattr(self.transport, "connected", True)
        if not up:
            if self._link_down_ms is None:
                self._link_down_ms = now_ms
                self.note("link_down", "coordinator lost its broker connection")
            return
        if self._link_down_ms is not None:
            self._link_down_ms = None
            self._grace_until = now_ms + RECONNECT_GRACE_MS
            self.note("link_up", "coordinator back on the broker")
            return
        if not self._suspects or now_ms < self._grace_until:
            return
        for module, decide_at in sorted(self._suspects.items()):
            if now_ms < decide_at:
                continue
            del self._suspects[module]
            view = self.registry.modules.get(module)
            if view is None or not view.online or view.stale:
                self._module_lost(module)

    # -- commands and notes ------------------------------------------------------------------------

    def send(self, module: str, op: str, args: dict | None = None):
        pending = self.commander.send(module, op, args, now_ms=self.now_ms)
        self.record.add_command(self.host_ms(), module, pending.command_id, op, args or {})
        if op == "set_setpoint" and args:
            self._record_setpoint(module, args)
        return pending

    def _identity(self) -> dict:
        """Who the operator acting now is, as recorded: role, whether their skid logged
        them in (``authenticated``) and whether the request carried the operator key's tag
        (``signed``: only then is the login claim more than the broker account's word)."""
        a = self._actor
        if a is None:
            return {}
        out = {"authenticated": a["authenticated"], "signed": a["signed"]}
        if a["role"]:
            out["role"] = a["role"]
        return out

    def _record_setpoint(self, module: str, args: dict) -> None:
        """Every setpoint change with old and new value, who and why: an operator's
        (manual, or the recipe's values restored on resume) or the recipe's own."""
        channel, new = args.get("channel"), args.get("value")
        key = (module, str(channel))
        old = self._setpoints.get(key)
        if old is None:
            old = self.registry.value(module, str(channel))
        self._setpoints[key] = new
        if self._actor is not None:
            who, why = self._actor["who"], self._actor["why"]
        else:
            seq = self.sequencer
            who = f"recipe {getattr(self.recipe, 'name', '')}".strip()
            phase = getattr(seq, "phase", None) or ""
            step = getattr(seq, "step", None)
            why = f"{phase} / {step}" if step else phase or "recipe"
        self.record.add_change(
            self.host_ms(),
            "setpoint",
            module,
            old,
            new,
            who,
            why,
            channel=channel,
            **self._identity(),
        )

    def note(self, kind: str, text: str, **data) -> None:
        if kind in ("phase", "step"):
            self.record.add_phase(self.host_ms(), data.get("phase", ""), data.get("step"), text)
        elif kind == "operator":
            self.record.add_operator_action(
                self.host_ms(),
                data.get("who", "?"),
                text,
                data.get("reason", ""),
                **self._identity(),
            )
        else:
            self.record.add_note(self.host_ms(), kind, text, _jsonable(data) or None)
        if kind in ("phase", "reaction", "refused", "operator"):
            self.log(f"t={(self.now_ms - self.started_ms) / 1000:7.1f} s  {text}")

    # -- operator requests --------------------------------------------------------------------------

    def request(
        self,
        action: str,
        who: str,
        reason: str,
        *,
        role: str | None = None,
        authenticated: bool = False,
        signed: bool = False,
        **args,
    ) -> tuple[bool, str]:
        """Apply one operator request; returns (accepted, reason).  ``role`` and
        ``authenticated``: what the operator's skid says of ``who`` (``--user`` logged in);
        ``signed``: the request carried the operator key's tag.  Recorded with every
        operator action and change it causes."""
        self._actor = {
            "who": who,
            "why": reason,
            "role": role,
            "authenticated": bool(authenticated),
            "signed": bool(signed),
        }
        seq = self.sequencer
        before = getattr(seq, "state", None)
        try:
            ok, why = self._request(action, who, reason, **args)
            after = getattr(self.sequencer, "state", None)
            if ok and after != before:
                self.record.add_change(
                    self.host_ms(),
                    "mode",
                    None,
                    before,
                    after,
                    who,
                    reason,
                    action=action,
                    **self._identity(),
                )
            return ok, why
        finally:
            self._actor = None

    def _request(self, action: str, who: str, reason: str, **args) -> tuple[bool, str]:
        seq = self.sequencer
        if self.phase == "attaching" and action in ("abort", "stop"):
            # Nothing has started: make sure nothing will (the recipe must not begin
            # later, when the last module turns up, with nobody watching).
            self.note("operator", f"{action} while attaching", who=who, reason=reason)
            if action == "stop":
                self._abort_every_module()
            self._finish_without_running("aborted", f"{action} by {who}: {reason}")
            return True, "the run will not start"
        if action in ("stop", "reset", "ack") or seq is None:
            # The sequencer records the actions it handles (with its verdict); these not.
            self.note("operator", f"{action} {_args_text(args)}".strip(), who=who, reason=reason)
        if action == "stop":
            # Line-wide emergency stop: every module aborts now (outputs safe, latched),
            # whatever the recipe was doing; the sequencer is told so it stops issuing.
            self._abort_every_module()
            if seq is not None:
                seq.abort(who, reason)
            if self.phase != "finished":
                self.outcome = "aborted"
                self.reason = f"emergency stop by {who}: {reason}"
            return True, "every module commanded to abort"
        if seq is None:
            return False, "no recipe is running"
        if action == "hold":
            return seq.hold(who, reason)
        if action == "resume":
            return seq.resume(who, reason)
        if action == "abort":
            return seq.abort(who, reason)
        if action == "manual":
            return seq.manual(who, reason)
        if action == "auto":
            return seq.resume(who, reason)
        if action == "set":
            return seq.manual_set(args["module"], args["channel"], args["value"], who, reason)
        if action == "reset":
            self.send(args["module"], "reset_trip", {})
            self._record_interlock(args["module"], None, "reset requested")
            return True, "reset sent (the module refuses it while the cause persists)"
        if action == "ack":
            self.send(args["module"], "ack_alarm", {"target": args["alarm"]})
            self._record_interlock(args["module"], args["alarm"], "acknowledged")
            return True, "acknowledgement sent"
        return False, f"action {action!r} unknown"

    def _record_interlock(self, module: str, alarm: str | None, new: str) -> None:
        """A latched trip reset or an alarm acknowledged: old is the module's state."""
        a = self._actor or {"who": "?", "why": ""}
        extra = {"alarm": alarm} if alarm is not None else {}
        self.record.add_change(
            self.host_ms(),
            "interlock",
            module,
            self.registry.module_state(module),
            new,
            a["who"],
            a["why"],
            **extra,
            **self._identity(),
        )

    def _abort_every_module(self) -> None:
        for mid in self.line.modules:
            try:
                self.send(mid, "state", {"command": "abort"})
            except ValueError as exc:  # not announced yet: it protects itself on lease loss
                self.note("estop", f"{mid}: abort not sent: {exc}", module=mid)

    def _on_control(self, topic: str, payload: bytes) -> None:
        try:
            body = control.parse_request(payload)
        except control.ControlError as exc:
            self.note("malformed", f"control request rejected: {exc}")
            return
        args = {k: v for k, v in body.items() if k not in control.ENVELOPE_KEYS}
        signed = False
        now = int(time.time() * 1000)
        if body["action"] not in control.SIGNED_ACTIONS:
            # hold, abort, stop, ack are never refused for their tag: it only tells the
            # record whether the sender held the operator key.
            signed = (
                "tag" in body
                and self.operator_key is not None
                and control.check_signature(body, self.operator_key, now, self._control_ids) is None
            )
        else:
            why = control.check_signature(body, self.operator_key, now, self._control_ids)
            if why is not None:
                self.note(
                    "operator",
                    f"{body['action']}: refused: {why}",
                    who=body["who"],
                    reason=body["reason"],
                )
                self.transport.publish(
                    self._topic_reply, control.build_reply(body["id"], False, why), qos=1
                )
                return
            signed = True
        try:
            ok, why = self.request(
                body["action"],
                body["who"],
                body["reason"],
                role=body.get("role"),
                authenticated=body.get("auth") == "password",
                signed=signed,
                **args,
            )
        except Exception as exc:  # noqa: BLE001 - a bad request must never stop the run
            ok, why = False, f"request rejected: {exc}"
            self.note("malformed", f"control request rejected: {exc}")
        self.transport.publish(self._topic_reply, control.build_reply(body["id"], ok, why), qos=1)

    # -- the end ------------------------------------------------------------------------------------

    def close(self, outcome: str | None = None) -> Summary:
        """Record the outcome, mark the host offline and return the summary."""
        if outcome is not None:
            self.outcome = outcome
        if self.outcome is None:
            self.outcome = "aborted"
            self.reason = self.reason or "the run did not finish"
        summary = self.summary()
        self.record.flush()
        self.record.finish(self.host_ms(), self.outcome, summary.as_dict())
        self.run_status.close(self.now_ms)
        self.transport.publish(
            self._topic_state, messages.build_state(False, self.host_ms()), qos=1, retain=True
        )
        return summary

    def summary(self) -> Summary:
        trips = [{"module": t.module, "cause": t.cause, "t_s": round(t.t_s, 3)} for t in self.trips]
        phases = []
        seq = self.sequencer
        if seq is not None:
            # The sequencer counts from the recipe's start; the summary (like trips) from
            # the run's, which includes attaching.
            offset = ((seq.started_ms or self.started_ms) - self.started_ms) / 1000.0
            for p in seq.phase_log():
                p = dict(p)
                for key in ("start_s", "end_s"):
                    if p.get(key) is not None:
                        p[key] = round(p[key] + offset, 3)
                phases.append(p)
        return Summary(
            run_id=self.record.run_id,
            outcome=self.outcome or "aborted",
            reason=self.reason,
            modules=[{"id": mid, "kind": c.kind} for mid, c in self.line.modules.items()],
            trips=trips,
            peaks={k: round(v, 4) for k, v in sorted(self.peaks.items())},
            record=str(self.record.path),
            phases=phases,
            collected_ml=None if seq is None else getattr(seq, "collected_ml", None),
            duration_s=(self.now_ms - self.started_ms) / 1000.0,
            all_safe_at_end=self.all_safe_at_end,
            refused=self.refused,
            line_id=self.line_id,
            residual=self.residual,
            quality=None if seq is None else seq.quality_summary(),
        )


def _accepted(expected_hashes: dict) -> dict[str, set[bytes]]:
    """module -> its acceptable config hashes, from one hash or a set of them each."""
    out: dict[str, set[bytes]] = {}
    for mid, h in expected_hashes.items():
        if h:
            out[mid] = {h} if isinstance(h, bytes | bytearray) else set(h)
    return out


def _args_text(args: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in args.items())


_EVENT_KINDS = (
    "trip",
    "trip_reset",
    "alarm",
    "alarm_cleared",
    "state",
    "dropped",
    "operator_action",
)


def _event_fields(e) -> dict:
    """The fields of a module's EVENT (``protocol.messages.Event``), for the run record."""
    out = {"type": e.type, "number": e.number, "t_ms": e.t_ms}
    for name in ("severity", "source", "cause", "detail", "count", "state"):
        value = getattr(e, name)
        if value is not None:
            out[name] = value
    return out


def _birth_fields(b, reboot: bool) -> dict:
    """What the run record notes of a module's BIRTH (``protocol.messages.Birth``)."""
    return {
        "birth_kind": b.module_kind,
        "bdseq": b.bdseq,
        "state": b.state,
        "reset_cause": b.reset_cause,
        "config_hash": b.config_hash.hex(),
        "reboot": reboot,
        "channels": [ch.name for ch in b.channels],
    }


def _jsonable(data: dict) -> dict:
    out = {}
    for k, v in data.items():
        if isinstance(v, bytes | bytearray):
            out[k] = bytes(v).hex()
        elif isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, str | int | float | bool) else str(x) for x in v]
        else:
            out[k] = str(v)
    return out
