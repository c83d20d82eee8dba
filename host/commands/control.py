"""Operator commands for a running line: ``hold``, ``resume``, ``abort``, ``manual``,
``auto``, ``command``, ``reset``, ``ack`` and ``stop``.

All but ``stop`` are requests to the coordinator of the running ``skid run`` (over the
broker, ``host/control.py``); it applies them to the recipe, records who asked, when and
why, and replies.  ``stop`` is the line-wide emergency stop: it commands every module of
the line to abort directly (outputs to their safe values, latched until reset) and tells
the coordinator, so it works with the coordinator dead.

Exit codes: 0 accepted, 1 refused or nobody answered, 2 usage error.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from host.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

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
    _common(p)
    p.add_argument("--insecure", action="store_true", help="send unsigned commands")
    p.set_defaults(func=run_stop, action="stop")


def _common(p) -> None:
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST[:PORT]")
    p.add_argument("--line", dest="line_id", help="line id (default: the line file's / 'demo')")
    p.add_argument("--who", default=os.environ.get("USER") or "operator", help="who asks")
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
    from host.transport import MqttTransport

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
    from host import control

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


def run(args) -> int:
    line_id = args.line_id or "demo"
    extra = {}
    for key in ("module", "channel", "value", "alarm"):
        if getattr(args, key, None) is not None:
            extra[key] = getattr(args, key)
    key = None
    if args.operator_key_file:
        from host.control import ControlError, read_operator_key

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
        reply = ask(
            transport, line_id, args.action, args.who, args.reason, args.timeout, key, **extra
        )
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
    from emulator.line import LineError, load_line
    from host.commander import Commander
    from host.edgeproc import read_key
    from host.registry import Registry

    try:
        line = load_line(args.line_file)
    except LineError as exc:
        print(f"skid stop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    line_id = args.line_id or line.id
    keys = {}
    if not args.insecure:
        from edge.boardconfig import load_board_config

        for mid, comp in line.modules.items():
            board = getattr(comp, "board", None)
            if board is None:
                continue
            cfg = load_board_config(board)
            key = read_key(board, cfg["module"].get("key_file"))
            if key is not None:
                keys[mid] = key
    try:
        transport = _connect(args.broker, f"{line_id}-estop")
    except Exception as exc:  # noqa: BLE001
        print(f"skid stop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    registry = Registry(line_id, {mid: (c.kind, None) for mid, c in line.modules.items()})
    try:
        from protocol.topics import host_topic, line_filter

        transport.subscribe(line_filter(line_id), lambda t, p: registry.on_message(t, p, 0))
        clock = HostClock()
        transport.subscribe(host_topic(line_id, "lease"), clock.on_lease)
        # Its own sender name: a keyed module keeps one replay counter per sender, and the
        # running coordinator's must not be able to make an e-stop look like a replay.
        commander = Commander(transport, line_id, registry, keys, sender="estop", host_ms=clock)
        lease_wait_end = time.monotonic() + LEASE_WAIT_S  # overlaps the coordinator's reply
        reply = ask(transport, line_id, "stop", args.who, args.reason, COORDINATOR_REPLY_S)
        # Abort needs a birth (channel aliases; the boot nonce a keyed module verifies
        # against): a module heard from without one is asked to rebirth first.
        pending: dict = {}
        asked: set[str] = set()
        own_lease = None  # EstopLease once we lease the line ourselves
        end = time.monotonic() + args.timeout
        while time.monotonic() < end and not (
            len(pending) == len(line.modules) and all(p.done for p in pending.values())
        ):
            transport.poll()
            if clock.lease_ms is None:
                if time.monotonic() < lease_wait_end:
                    time.sleep(0.02)  # a running coordinator's lease tells us the line's time
                    continue
                # Nobody leases the line: modules know no host time and would refuse every
                # command as expired, so lease it ourselves (they fall back to their
                # lease-loss action when it lapses, on top of the abort).
                own_lease = EstopLease(keys)
                clock.lease_ms = clock()
                clock._at = time.monotonic()
            if own_lease is not None:
                data = own_lease.due(registry, clock())
                if data is not None:
                    transport.publish(host_topic(line_id, "lease"), data, qos=0)
            for mid in line.modules:
                view = registry.modules.get(mid)
                if mid in pending or view is None:
                    continue
                if view.born:
                    pending[mid] = commander.send(mid, "state", {"command": "abort"}, now_ms=_ms())
                elif mid not in asked:
                    asked.add(mid)
                    try:
                        commander.send(mid, "rebirth", None, now_ms=_ms())
                    except ValueError:
                        pass
            commander.tick(_ms())
            time.sleep(0.02)
    finally:
        transport.close()
    ok = True
    for mid in line.modules:
        p = pending.get(mid)
        if p is None or not p.done:
            ok = False
            print(f"skid stop: {mid}: no answer (it protects itself on lease loss)")
        elif not p.ok and p.result == "not_allowed_in_state" and "in aborted" in (p.reason or ""):
            print(f"skid stop: {mid}: ok (already aborted)")  # e.g. by the coordinator first
        else:
            print(f"skid stop: {mid}: {p.result}" + (f" ({p.reason})" if p.reason else ""))
            ok = ok and p.ok
    if reply is not None:
        print(f"skid stop: coordinator: {reply.get('reason', '')}")
    return EXIT_OK if ok else EXIT_FAILURE


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
        from protocol import auth

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


class HostClock:
    """Host time as the modules know it: from the running coordinator's leases when there
    are any (an emulated line may run on a scaled clock), else the wall clock.  Modules
    refuse a command whose expiry has passed on their estimate of host time."""

    def __init__(self):
        self.lease_ms: int | None = None
        self._at = 0.0

    def on_lease(self, _topic: str, payload: bytes) -> None:
        from protocol import messages

        try:
            lease = messages.parse_lease(payload)
        except ValueError:
            return
        self.lease_ms = lease.host_time_ms
        self._at = time.monotonic()

    def __call__(self) -> int:
        if self.lease_ms is None:
            return int(time.time() * 1000)
        return self.lease_ms + int((time.monotonic() - self._at) * 1000)


def _ms() -> int:
    return int(time.monotonic() * 1000)
