"""Commands to modules: build, sign, publish, and match the ACK that answers each.

``Commander.send(module, op, args, now_ms=...)`` checks the module and the arguments
against the module's birth (channel names become the aliases the birth gave them), builds
the COMMAND with a fresh id and an expiry in host time, signs it when a key is configured
for the module (``protocol.auth.sign_command`` with the nonce of the module's current
birth), publishes it on the module's ``cmd`` topic with an MQTT 5 message expiry, and
returns a ``Pending``.  The module's ACK (on its ``ack`` topic, MQTT 3.1.1 friendly)
completes the Pending matched by command id; ``tick(now_ms)`` times out the rest.

Nothing is sent when the module or an argument is unknown: ``send`` raises ValueError
naming what is wrong and what is allowed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from protocol import auth, host_messages, messages
from protocol.constants import OP_NAMES, RESULT_NAMES, SERVICE_COMMANDS
from protocol.topics import TOPIC_ACK, TOPIC_CMD, module_filter, module_topic, parse_topic

U32_MAX = 0xFFFFFFFF


class Pending:
    """One command in flight.  ``result`` is None until the ACK arrives, then the RESULT
    name ("ok", "not_allowed_in_state", ...); ``timed_out`` when none came in time."""

    __slots__ = (
        "module",
        "op",
        "args",
        "command_id",
        "sent_ms",
        "deadline_ms",
        "result",
        "reason",
        "done",
        "ok",
        "timed_out",
        "acked_ms",
    )

    def __init__(self, module, op, args, command_id, sent_ms, deadline_ms):
        self.module = module
        self.op = op
        self.args = args
        self.command_id = command_id
        self.sent_ms = sent_ms
        self.deadline_ms = deadline_ms
        self.result: str | None = None
        self.reason: str | None = None
        self.done = False
        self.ok = False
        self.timed_out = False
        self.acked_ms: int | None = None

    def __repr__(self) -> str:
        status = self.result or ("timeout" if self.timed_out else "pending")
        return f"Pending({self.module} {self.op} {self.args or ''} #{self.command_id}: {status})"


class Commander:
    """``keys`` maps module id -> command key (bytes); modules without one get unsigned
    commands.  ``host_ms()`` is host wall-clock time (ms since the Unix epoch) used for
    expiry and as the floor of each module's signing counter (so a restarted host never
    reuses a counter).  With ``subscribe`` the commander takes acks from
    ``skid/v1/<line>/+/ack`` itself; otherwise the caller routes them to ``on_ack``."""

    def __init__(
        self,
        transport,
        line_id: str,
        registry,
        keys: dict[str, bytes] | None = None,
        sender: str = "coordinator",
        host_ms: Callable[[], int] | None = None,
        subscribe: bool = True,
    ):
        if host_ms is None:
            raise ValueError("Commander needs host_ms: a callable returning host time in ms")
        self.transport = transport
        self.line_id = line_id
        self.registry = registry
        self.keys = dict(keys or {})
        self.sender = sender
        self.host_ms = host_ms
        self.pending: dict[tuple[str, int], Pending] = {}
        self.sent = 0
        self.late_acks = 0
        # Ids start at a random point: a restarted host (same broker session) must not
        # reuse ids whose acks from its predecessor may still be queued for it.
        self._next_id = secrets.randbelow(U32_MAX - 1) + 1
        self._counters: dict[str, int] = {}
        self._now = 0
        if subscribe:
            transport.subscribe(module_filter(line_id, TOPIC_ACK), self._on_ack_message)

    # -- sending ---------------------------------------------------------------------------------

    def _command_id(self) -> int:
        cid = self._next_id
        self._next_id = 1 if cid >= U32_MAX else cid + 1
        return cid

    def _wire_args(self, view, op: str, args: dict | None) -> dict | None:
        if args is None:
            return None
        if not isinstance(args, dict):
            raise ValueError(f"command {op} to {view.id}: args must be a dict, got {args!r}")
        out = dict(args)
        channel = out.get("channel")
        if isinstance(channel, str):
            for ch in view.channels:
                if ch.name == channel:
                    out["channel"] = ch.alias if ch.alias is not None else view.channels.index(ch)
                    break
            else:
                names = ", ".join(ch.name for ch in view.channels) or "none"
                raise ValueError(f"module {view.id} has no channel {channel!r}: allowed {names}")
        if op == "state":
            command = out.get("command")
            if command not in SERVICE_COMMANDS:
                raise ValueError(
                    f"state command {command!r} for {view.id} unknown: allowed "
                    + ", ".join(SERVICE_COMMANDS)
                )
        return out

    def send(
        self,
        module: str,
        op: str,
        args: dict | None = None,
        *,
        now_ms: int | None = None,
        expiry_s: float = 5.0,
        timeout_ms: int = 5000,
    ) -> Pending:
        """Publish one command; ValueError (nothing sent) for an unknown module, op,
        channel or argument.  ``now_ms`` (the caller's clock, default: the last tick's)
        starts the ack timeout."""
        if now_ms is None:
            now_ms = self._now
        self._now = max(self._now, now_ms)
        view = self.registry.modules.get(module)
        # A rebirth is how the host learns a module it heard from without a birth.
        if view is None or not (view.born or op == "rebirth"):
            known = ", ".join(sorted(m for m, v in self.registry.modules.items() if v.born))
            raise ValueError(
                f"no module {module!r} on line {self.line_id} has announced itself (birth): "
                f"known {known or 'none'}"
            )
        if op not in OP_NAMES:
            raise ValueError(f"command op {op!r} unknown: allowed {', '.join(OP_NAMES)}")
        if not expiry_s > 0 or not timeout_ms > 0:
            raise ValueError(f"expiry_s ({expiry_s}) and timeout_ms ({timeout_ms}) must be > 0")
        wire_args = self._wire_args(view, op, args)
        host_now = int(self.host_ms())
        cid = self._command_id()
        data = messages.build_command(cid, op, wire_args, host_now + int(expiry_s * 1000))
        key = self.keys.get(module)
        # A rebirth always goes unsigned: keyed modules accept it (it changes nothing,
        # protocol/SPEC.md 7), and it is how a host that never saw the birth gets the
        # boot nonce it needs to sign anything else.
        if key is not None and op != "rebirth":
            if view.boot_nonce is None:
                raise ValueError(
                    f"module {module} needs signed commands, but its birth (boot nonce) has "
                    "not been seen yet"
                )
            counter = max(self._counters.get(module, 0) + 1, host_now)
            self._counters[module] = counter
            data = auth.sign_command(data, key, module, view.boot_nonce, self.sender, counter)
        pending = Pending(module, op, args, cid, now_ms, now_ms + timeout_ms)
        self.pending[(module, cid)] = pending
        self.sent += 1
        self.transport.publish(
            module_topic(self.line_id, module, TOPIC_CMD), data, qos=1, expiry_s=expiry_s
        )
        return pending

    # -- acks ---------------------------------------------------------------------------------------

    def _on_ack_message(self, topic: str, payload: bytes) -> None:
        try:
            _line, module, _kind = parse_topic(topic)
        except ValueError:
            return
        if module is not None:
            self.on_ack(module, payload, self._now)

    def on_ack(self, module: str, ack, now_ms: int) -> Pending | None:
        """Complete the Pending this ACK (bytes or a parsed Ack) answers; None when it
        answers nothing outstanding (unparseable, unknown id, or already timed out)."""
        if not isinstance(ack, messages.Ack):
            try:
                ack = host_messages.parse_ack(ack)
            except ValueError:
                return None
        pending = self.pending.pop((module, ack.command_id), None)
        if pending is None:
            self.late_acks += 1
            return None
        code = ack.result
        pending.result = RESULT_NAMES[code] if 0 <= code < len(RESULT_NAMES) else str(code)
        pending.reason = ack.reason
        pending.ok = pending.result == "ok"
        pending.done = True
        pending.acked_ms = now_ms
        return pending

    def tick(self, now_ms: int) -> list[Pending]:
        """Time out commands whose ack is overdue; returns the ones that just timed out."""
        self._now = now_ms
        expired = [p for p in self.pending.values() if now_ms >= p.deadline_ms]
        for p in expired:
            del self.pending[(p.module, p.command_id)]
            p.done = True
            p.ok = False
            p.timed_out = True
            p.reason = f"no ack within {p.deadline_ms - p.sent_ms} ms"
        return expired
