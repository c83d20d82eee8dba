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

import cbor2

from protocol.topics import PREFIX, validate_id

ACTIONS = ("hold", "resume", "abort", "stop", "manual", "auto", "set", "reset", "ack")
# What each action needs besides who/reason.
ACTION_ARGS = {
    "set": ("module", "channel", "value"),
    "reset": ("module",),
    "ack": ("module", "alarm"),
}


class ControlError(ValueError):
    """A control request or reply that is malformed."""


def control_topic(line: str) -> str:
    validate_id("line", line)
    return PREFIX + line + "/host/control"


def reply_topic(line: str) -> str:
    validate_id("line", line)
    return PREFIX + line + "/host/control_reply"


def build_request(request_id: str, action: str, who: str, reason: str, **args) -> bytes:
    if action not in ACTIONS:
        raise ControlError(f"action {action!r} unknown: allowed {', '.join(ACTIONS)}")
    missing = [a for a in ACTION_ARGS.get(action, ()) if args.get(a) is None]
    if missing:
        raise ControlError(f"action {action} needs {', '.join(missing)}")
    if not who or not reason:
        raise ControlError("every operator action names who asks (--who) and why (--reason)")
    body = {"id": request_id, "action": action, "who": who, "reason": reason}
    body.update({k: v for k, v in args.items() if v is not None})
    return cbor2.dumps(body)


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
