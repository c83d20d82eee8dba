"""Operator control of a running coordinator: ``skid hold``/``resume``/``abort``/``stop``/
``manual``/``auto``/``command`` from another terminal.

A running ``skid run`` subscribes to ``skid/v1/<line>/host/control``; an operator's
``skid`` process publishes one request there and waits for the reply on
``skid/v1/<line>/host/control_reply``, matched by request id.  Payloads are CBOR maps
with text keys (host-to-host traffic; modules never see it).  Who may publish here is the
broker's business (``skid broker-config``: the host account may write
``host/{lease,state,control_reply}``, operator accounts only ``host/control``); every
request names who asks and why, and the run record keeps both.

Modules do not depend on any of this: ``skid stop`` also commands every module directly,
so a line-wide emergency stop works with the coordinator dead.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import cbor2

from host.keys import decode_key
from protocol.topics import PREFIX, validate_id

ACTIONS = ("hold", "resume", "abort", "stop", "manual", "auto", "set", "reset", "ack")
# Requests that can move an actuator away from safe (or let the recipe do so again) must
# carry an HMAC made with the operator key the coordinator was started with: a leaked
# broker account alone can then only hold, abort, stop or acknowledge.
SIGNED_ACTIONS = ("resume", "manual", "auto", "set", "reset")
MAX_REQUEST_AGE_MS = 60_000
TAG_BYTES = 16
# What each action needs besides who/reason.
ACTION_ARGS = {
    "set": ("module", "channel", "value"),
    "reset": ("module",),
    "ack": ("module", "alarm"),
}


# What a request carries besides the action's own arguments: ``role`` and ``auth``
# ("password") say the operator's skid logged ``who`` in (``--user``); covered by the tag.
ENVELOPE_KEYS = ("id", "action", "who", "reason", "t", "tag", "role", "auth")
AUTH_PASSWORD = "password"


class ControlError(ValueError):
    """A control request or reply that is malformed."""


def control_topic(line: str) -> str:
    validate_id("line", line)
    return PREFIX + line + "/host/control"


def reply_topic(line: str) -> str:
    validate_id("line", line)
    return PREFIX + line + "/host/control_reply"


def _tag(key: bytes, body: dict) -> bytes:
    unsigned = {k: v for k, v in body.items() if k != "tag"}
    return hmac.new(key, cbor2.dumps(unsigned, canonical=True), hashlib.sha256).digest()[:TAG_BYTES]


def build_request(
    request_id: str,
    action: str,
    who: str,
    reason: str,
    key: bytes | None = None,
    now_ms: int | None = None,
    **args,
) -> bytes:
    """A control request; with ``key`` it carries the wall-clock time and its HMAC tag."""
    if action not in ACTIONS:
        raise ControlError(f"action {action!r} unknown: allowed {', '.join(ACTIONS)}")
    missing = [a for a in ACTION_ARGS.get(action, ()) if args.get(a) is None]
    if missing:
        raise ControlError(f"action {action} needs {', '.join(missing)}")
    if not who or not reason:
        raise ControlError("every operator action names who asks (--who) and why (--reason)")
    body = {"id": request_id, "action": action, "who": who, "reason": reason}
    body.update({k: v for k, v in args.items() if v is not None})
    if key is not None:
        body["t"] = int(time.time() * 1000) if now_ms is None else int(now_ms)
        body["tag"] = _tag(key, body)
    return cbor2.dumps(body)


def check_signature(body: dict, key: bytes | None, now_ms: int, seen: set[str]) -> str | None:
    """Why a request that needs a signature is not acceptable, or None when it is.
    ``seen`` holds the ids of signed requests already accepted (no replays)."""
    if key is None:
        return (
            f"{body['action']} over the broker needs a signed request: start skid run with "
            "--operator-key-file and give the operator's skid the same key"
        )
    tag, t = body.get("tag"), body.get("t")
    if not isinstance(tag, bytes) or not isinstance(t, int):
        return f"{body['action']} needs a signed request (--operator-key-file)"
    if not hmac.compare_digest(tag, _tag(key, body)):
        return "request signature does not match the operator key"
    if abs(now_ms - t) > MAX_REQUEST_AGE_MS:
        return "request too old or from the future (check the clocks)"
    if body["id"] in seen:
        return "request replayed"
    seen.add(body["id"])
    return None


def read_operator_key(path) -> bytes:
    """The operator key file: raw bytes, or hex text (as ``head -c 32 /dev/urandom``)."""
    key = decode_key(Path(path).read_bytes())
    if len(key) < 16:
        raise ControlError(f"{path}: an operator key needs at least 16 bytes")
    return key


def parse_request(payload: bytes) -> dict:
    try:
        body = cbor2.loads(payload)
    except Exception as exc:  # noqa: BLE001 - cbor2 raises several types
        raise ControlError(f"control request is not CBOR: {exc}") from None
    if not isinstance(body, dict):
        raise ControlError("control request is not a map")
    for key in ("id", "action", "who", "reason"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise ControlError(f"control request: {key} missing or not text")
    if body["action"] not in ACTIONS:
        raise ControlError(
            f"control request: action {body['action']!r} unknown: allowed {', '.join(ACTIONS)}"
        )
    for key in ACTION_ARGS.get(body["action"], ()):
        if key not in body:
            raise ControlError(f"control request: action {body['action']} needs {key}")
    for key in ("module", "channel", "alarm", "role", "auth"):
        if key in body and not isinstance(body[key], str):
            raise ControlError(f"control request: {key} must be text")
    if "value" in body and (
        isinstance(body["value"], bool) or not isinstance(body["value"], int | float)
    ):
        raise ControlError("control request: value must be a number")
    allowed = {"module", "channel", "value", "alarm", *ENVELOPE_KEYS}
    extra = sorted(set(body) - allowed)
    if extra:
        raise ControlError(f"control request: unknown keys {', '.join(map(str, extra))}")
    return body


def build_reply(request_id: str, ok: bool, reason: str = "") -> bytes:
    return cbor2.dumps({"id": request_id, "ok": bool(ok), "reason": reason})


def parse_reply(payload: bytes) -> dict:
    try:
        body = cbor2.loads(payload)
    except Exception as exc:  # noqa: BLE001
        raise ControlError(f"control reply is not CBOR: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise ControlError("control reply malformed")
    return body
