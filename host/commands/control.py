"""Operator commands for a running line: ``hold``, ``resume``, ``abort``, ``manual``,
``auto``, ``command``, ``reset``, ``ack`` and ``stop``.

All but ``stop`` are requests to the coordinator of the running ``skid run`` (over the
broker, ``host/control.py``); it applies them to the recipe, records who asked, when and
why, and replies.  ``stop`` is the line-wide emergency stop: it commands every module of
the line to abort directly (outputs to their safe values, latched until reset) and tells
the coordinator, so it works with the coordinator dead.

Exit codes: 0 accepted, 1 refused or nobody answered, 2 usage error.  ``stop``: 0 every
module of the line confirmed its abort, 1 some did not (each is named), 2 usage error.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from edge.boardconfig import load_board_config
from host.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from host.commands.user import add_users_file
from host.keys import read_key
from protocol import auth, messages
from protocol.auth import KEY_MAX_LEN, KEY_MIN_LEN
from protocol.topics import TopicError, host_topic, line_filter, validate_id

REPLY_TIMEOUT_S = 5.0
LEASE_WAIT_S = 1.0  # how long `skid stop` listens for a coordinator's lease first
COORDINATOR_REPLY_S = 0.5  # a live coordinator answers in milliseconds
ESTOP_LEASE_MS = 3000

_SIMPLE = {
    "hold": "hold the running recipe (timers pause, product to waste while held)",
    "resume": "resume a held recipe, or return from manual mode",
    "abort": "abort the recipe: run its shutdown sequence",
    "manual": "manual mode: recipe paused, setpoints by `skid command`, interlocks active",
    "auto": "leave manual mode and continue the recipe",
}


def register(sub) -> None:
    for action, text in _SIMPLE.items():
        p = sub.add_parser(action, help=text, description=text)
        _common(p)
        p.set_defaults(func=run, action=action)
    p = sub.add_parser("command", help="set a module's setpoint (manual mode)")
    p.add_argument("module")
    p.add_argument("channel")
    p.add_argument("value", type=float)
    _common(p)
    p.set_defaults(func=run, action="set")
    p = sub.add_parser(
        "reset", help="reset a module's latched trips (refused while the cause persists)"
    )
    p.add_argument("module")
    _common(p)
    p.set_defaults(func=run, action="reset")
    p = sub.add_parser("ack", help="acknowledge a module's alarm")
    p.add_argument("module")
    p.add_argument("alarm")
    _common(p)
    p.set_defaults(func=run, action="ack")
    p = sub.add_parser(
        "stop",
        help="line-wide emergency stop: every module aborts to its safe state",
        description="Commands every module of LINE_FILE to abort (outputs safe, latched) "
        "directly, and tells the coordinator.",
    )
    p.add_argument("line_file", help="the line file (names the modules and their keys)")
    _common(p, "line id on the broker (default: the line file's id)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="send unsigned commands (keyless bench setups; default: signed with each "
        "module's key from its board config)",
    )
    p.set_defaults(func=run_stop, action="stop")


def _common(p, line_help: str = "line id on the broker (default 'demo')") -> None:
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST[:PORT]")
    p.add_argument("--line-id", "--line", dest="line_id", metavar="ID", help=line_help)
    p.add_argument(
        "--user",
        metavar="NAME",
        help="who asks, logged in (password from $SKID_PASSWORD or a prompt; `skid stop` "
        "never prompts): recorded as authenticated",
    )
    p.add_argument(
        "--who",
        help="deprecated (use --user): a name recorded as not authenticated (default $USER)",
    )
    add_users_file(p)
    p.add_argument("--reason", required=True, help="why (recorded in the run record)")
    p.add_argument("--timeout", type=float, default=REPLY_TIMEOUT_S, help="seconds to wait")
    p.add_argument(
        "--operator-key-file",
        default=os.environ.get("SKID_OPERATOR_KEY_FILE"),
        metavar="FILE",
        help="sign the request (needed for resume, manual, auto, command, reset; default "
        "$SKID_OPERATOR_KEY_FILE)",
    )


def _connect(url: str, name: str):
    from host.transport import MqttTransport  # lazy: start-up

    t = MqttTransport(url, f"{name}-{uuid.uuid4().hex[:8]}")
    t.connect()
    return t


def ask(
    transport,
    line_id: str,
    action: str,
    who: str,
    reason: str,
    timeout_s: float,
    key: bytes | None = None,
    **args,
):
    """Publish one control request and wait for the coordinator's reply (or None)."""
    from host import control  # lazy: start-up

    request_id = uuid.uuid4().hex[:12]
    replies: list[dict] = []

    def on_reply(_topic: str, payload: bytes) -> None:
        try:
            body = control.parse_reply(payload)
        except control.ControlError:
            return
        if body["id"] == request_id:
            replies.append(body)

    transport.subscribe(control.reply_topic(line_id), on_reply)
    transport.poll()
    transport.publish(
        control.control_topic(line_id),
        control.build_request(request_id, action, who, reason, key=key, **args),
        qos=1,
    )
    end = time.monotonic() + timeout_s
    while not replies and time.monotonic() < end:
        transport.poll()
        time.sleep(0.02)
    return replies[0] if replies else None


def _identity(args, prompt: bool = True) -> dict:
    """{who, role?, auth?} of the request (``host.users.request_identity``); UserError."""
    from host.users import request_identity  # lazy: start-up (argon2)

    if args.who:
        print(
            f"skid {args.action}: --who is deprecated: {args.who!r} is recorded as not "
            "authenticated; log in with --user NAME",
            file=sys.stderr,
        )
    return request_identity(args.user, args.who, args.users_file, prompt=prompt)


def run(args) -> int:
    from host.users import UserError  # lazy: start-up (argon2)

    line_id = args.line_id or "demo"
    try:
        extra = _identity(args)
    except UserError as exc:
        print(f"skid {args.action}: refused: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    who = extra.pop("who")
    for key in ("module", "channel", "value", "alarm"):
        if getattr(args, key, None) is not None:
            extra[key] = getattr(args, key)
    key = None
    if args.operator_key_file:
        from host.control import ControlError, read_operator_key  # lazy: start-up

        try:
            key = read_operator_key(args.operator_key_file)
        except (OSError, ControlError) as exc:
            print(f"skid {args.action}: --operator-key-file: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        transport = _connect(args.broker, f"{line_id}-operator")
    except Exception as exc:  # noqa: BLE001 - TransportError or a bad URL
        print(f"skid {args.action}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        reply = ask(transport, line_id, args.action, who, args.reason, args.timeout, key, **extra)
    finally:
        transport.close()
    if reply is None:
        print(
            f"skid {args.action}: no coordinator answered on line {line_id} within "
            f"{args.timeout:g} s (is `skid run` running? `skid stop` works without one)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    word = "accepted" if reply.get("ok") else "refused"
    print(f"skid {args.action}: {word}: {reply.get('reason', '')}")
    return EXIT_OK if reply.get("ok") else EXIT_FAILURE


def run_stop(args) -> int:
    """The line-wide emergency stop.  Exit 0 when every module of the line confirmed its
    abort, 1 when some did not (each is named, with why), 2 for a usage error (bad line
    file, line id or broker URL: nothing was sent)."""
    from host.transport import TransportError  # lazy: start-up
    from line.loader import LineError, load_line  # lazy: start-up

    try:
        line = load_line(args.line_file)
        line_id = args.line_id or line.id
        validate_id("line", line_id)
    except (LineError, TopicError) as exc:
        print(f"skid stop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    keys, unsigned = ({}, {}) if args.insecure else module_keys(line)
    identity = _stop_identity(args)
    for mid, why in unsigned.items():
        # Sent unsigned all the same: a module without a key obeys it, a keyed one
        # refuses it (and is then named as not stopped).
        print(f"skid stop: {mid}: cannot sign ({why}): sending it unsigned", file=sys.stderr)
    print(f"skid stop: line {line_id} at {args.broker}", file=sys.stderr)
    try:
        transport = _connect(args.broker, f"{line_id}-estop")
    except TransportError as exc:
        print(f"skid stop: {exc}", file=sys.stderr)
        if exc.reason == "usage":
            return EXIT_USAGE
        return _report_stop(line, {}, unsigned, None, "broker unreachable: nothing sent")
    except Exception as exc:  # noqa: BLE001 - a malformed URL paho rejects
        print(f"skid stop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = None
    trouble = None
    try:
        stop = LineStop(transport, line, line_id, keys)
        stop.run(identity.pop("who"), args.reason, args.timeout, **identity)
    except Exception as exc:  # noqa: BLE001 - an e-stop reports what it achieved, always
        trouble = f"stopped early: {type(exc).__name__}: {exc}"
    finally:
        try:
            transport.close()
        except Exception:  # noqa: BLE001, S110 - nothing more to do with a broken link
            pass
    if stop is None:
        return _report_stop(line, {}, unsigned, None, trouble)
    return _report_stop(line, stop.pending, unsigned, stop.reply, trouble, stop.errors)


def _stop_identity(args) -> dict:
    """Who stops the line: logged in only when ``$SKID_PASSWORD`` is set, and a failed
    login never keeps the stop from going out (recorded as not authenticated)."""
    from host.users import UserError  # lazy: start-up (argon2)

    try:
        return _identity(args, prompt=False)
    except UserError as exc:
        print(f"skid stop: {exc}: recorded as not authenticated", file=sys.stderr)
        return {"who": args.user or args.who or os.environ.get("USER") or "operator"}


def module_keys(line) -> tuple[dict[str, bytes], dict[str, str]]:
    """The command key of every module of ``line`` whose board config names one, from its
    key file: ``(keys, unsigned)``, ``unsigned`` mapping each module whose key could not
    be had to why (config or key file unreadable, wrong length).  Never raises: one bad
    key file must not keep the other modules from being stopped."""
    keys: dict[str, bytes] = {}
    unsigned: dict[str, str] = {}
    for mid, comp in line.modules.items():
        board = getattr(comp, "board", None)
        if board is None:
            continue
        try:
            cfg = load_board_config(board)
            key = read_key(Path(board), cfg.data["module"].get("key_file"))
        except Exception as exc:  # noqa: BLE001 - named below, the others still stopped
            unsigned[mid] = str(exc)
            continue
        if key is None:
            continue  # no key configured: the module takes unsigned commands
        if not KEY_MIN_LEN <= len(key) <= KEY_MAX_LEN:
            unsigned[mid] = (
                f"{board}: key file holds {len(key)} bytes, allowed {KEY_MIN_LEN}..{KEY_MAX_LEN}"
            )
            continue
        keys[mid] = key
    return keys, unsigned


class EstopLease:
    """`skid stop`'s own LEASE when no coordinator leases the line.  A keyed module only
    takes a lease with its tag, made with the boot nonce of its birth: so the lease is
    sent at once (for unkeyed modules and the keyed ones already born) and again, newly
    signed, each time the birth of another keyed module arrives."""

    def __init__(self, keys: dict[str, bytes]):
        self.keys = keys
        self.signed: set[str] | None = None  # keyed modules the last lease carried
        self.seq = 0

    def due(self, registry, host_now: int) -> bytes | None:
        """The lease to send now, or None when the last one still covers every module."""
        nonces = {}
        for mid in self.keys:
            view = registry.modules.get(mid)
            if view is not None and view.boot_nonce is not None:
                nonces[mid] = view.boot_nonce
        if self.signed is not None and set(nonces) <= self.signed:
            return None
        self.signed = set(nonces)
        self.seq = max(self.seq + 1, host_now)  # host time: above an earlier `skid stop`'s
        signers = [(mid, self.keys[mid], nonce) for mid, nonce in nonces.items()]
        return auth.sign_lease("estop", host_now, self.seq, ESTOP_LEASE_MS, signers)


class LineStop:
    """One e-stop of a line over ``transport``: asks the coordinator (if any) to stop,
    and commands every module to abort directly.  ``pending`` maps module id -> the
    Pending abort, ``errors`` module id -> why no abort could be sent, ``reply`` is the
    coordinator's answer or None."""

    def __init__(self, transport, line, line_id: str, keys: dict[str, bytes]):
        from host.commander import Commander  # lazy: start-up
        from host.registry import Registry  # lazy: start-up

        self.transport = transport
        self.line = line
        self.line_id = line_id
        self.keys = keys
        self.registry = Registry(line_id, {mid: (c.kind, None) for mid, c in line.modules.items()})
        self.clock = HostClock()
        self.pending: dict = {}
        self.errors: dict[str, str] = {}
        self.reply: dict | None = None
        self._rebirth_asked: set[str] = set()
        self.own_lease: EstopLease | None = None  # once we lease the line ourselves
        transport.subscribe(line_filter(line_id), self._on_line_message)
        transport.subscribe(host_topic(line_id, "lease"), self.clock.on_lease)
        # Its own sender name: a keyed module keeps one replay counter per sender, and the
        # running coordinator's must not be able to make an e-stop look like a replay.
        self.commander = Commander(
            transport, line_id, self.registry, keys, sender="estop", host_ms=self.clock
        )

    def _on_line_message(self, topic: str, payload: bytes) -> None:
        self.registry.on_message(topic, payload, 0)

    def done(self) -> bool:
        return all(
            mid in self.errors or (mid in self.pending and self.pending[mid].done)
            for mid in self.line.modules
        )

    def run(self, who: str, reason: str, timeout_s: float, **identity) -> None:
        """``identity``: role and auth of ``who`` when logged in (``--user``)."""
        lease_wait_end = time.monotonic() + LEASE_WAIT_S  # overlaps the coordinator's reply
        self.reply = ask(
            self.transport, self.line_id, "stop", who, reason, COORDINATOR_REPLY_S, **identity
        )
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not self.done():
            self.transport.poll()
            if self.clock.lease_ms is None:
                if time.monotonic() < lease_wait_end:
                    time.sleep(0.02)  # a running coordinator's lease tells us the line's time
                    continue
                # Nobody leases the line: modules know no host time and would refuse every
                # command as expired, so lease it ourselves (they fall back to their
                # lease-loss action when it lapses, on top of the abort).
                self.own_lease = EstopLease(self.keys)
                self.clock.leased(self.clock())
            if self.own_lease is not None:
                data = self.own_lease.due(self.registry, self.clock())
                if data is not None:
                    self.transport.publish(host_topic(self.line_id, "lease"), data, qos=0)
            for mid in self.line.modules:
                self._command(mid)
            self.commander.tick(_ms())
            time.sleep(0.02)

    def _command(self, mid: str) -> None:
        """Abort ``mid`` once its birth is known (channel aliases; the boot nonce a keyed
        module verifies against); a module heard from without one is asked to rebirth."""
        view = self.registry.modules.get(mid)
        if mid in self.pending or mid in self.errors or view is None:
            return
        try:
            if view.born:
                self.pending[mid] = self.commander.send(
                    mid, "state", {"command": "abort"}, now_ms=_ms()
                )
            elif mid not in self._rebirth_asked:
                self._rebirth_asked.add(mid)
                self.commander.send(mid, "rebirth", None, now_ms=_ms())
        except ValueError as exc:
            self.errors[mid] = str(exc)


def _report_stop(line, pending, unsigned, reply, trouble=None, errors=None) -> int:
    """One line per module on stdout, confirmed or why not; the exit code."""
    errors = errors or {}
    ok = True
    for mid in line.modules:
        p = pending.get(mid)
        note = f"; could not sign: {unsigned[mid]}" if mid in unsigned else ""
        if mid in errors:
            ok = False
            print(f"skid stop: {mid}: NOT STOPPED: {errors[mid]}{note}")
        elif p is None or not p.done:
            ok = False
            why = trouble or (
                "no answer" if p is not None else "not heard from on the broker (no abort sent)"
            )
            print(
                f"skid stop: {mid}: NOT CONFIRMED: {why} (it protects itself on lease loss){note}"
            )
        elif p.ok:
            print(f"skid stop: {mid}: ok")
        elif p.result == "not_allowed_in_state" and "in aborted" in (p.reason or ""):
            print(f"skid stop: {mid}: ok (already aborted)")  # e.g. by the coordinator first
        else:
            ok = False
            reason = f" ({p.reason})" if p.reason else ""
            print(f"skid stop: {mid}: NOT STOPPED: refused: {p.result}{reason}{note}")
    if reply is not None:
        print(f"skid stop: coordinator: {reply.get('reason', '')}")
    if trouble and ok:
        print(f"skid stop: {trouble}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILURE


class HostClock:
    """Host time as the modules know it: from the running coordinator's leases when there
    are any (an emulated line may run on a scaled clock), else the wall clock.  Modules
    refuse a command whose expiry has passed on their estimate of host time."""

    def __init__(self):
        self.lease_ms: int | None = None
        self._at = 0.0

    def on_lease(self, _topic: str, payload: bytes) -> None:
        try:
            lease = messages.parse_lease(payload)
        except ValueError:
            return
        self.leased(lease.host_time_ms)

    def leased(self, host_ms: int) -> None:
        """Host time was ``host_ms`` just now (a lease heard, or one of our own sent)."""
        self.lease_ms = host_ms
        self._at = time.monotonic()

    def __call__(self) -> int:
        if self.lease_ms is None:
            return int(time.time() * 1000)
        return self.lease_ms + int((time.monotonic() - self._at) * 1000)


def _ms() -> int:
    return int(time.monotonic() * 1000)
