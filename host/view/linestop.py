"""The page's "Line stop" over a broker: what ``skid stop`` does (host/commands/control.py,
``LineStop``): tell the coordinator, and command every module of the line to abort
directly, signed with its key, so it works with the coordinator dead.  Runs on a worker
thread with its own MQTT connection (it waits for the modules' acks)."""

from __future__ import annotations

import uuid

STOP_TIMEOUT_S = 5.0


def line_stop_over_broker(
    line, line_id: str, broker_url: str, who: str, reason: str, **identity
) -> dict:
    """Stop ``line``; {"ok": every module confirmed, "reason": one line per module}."""
    from host.commands.control import LineStop, module_keys
    from host.transport import MqttTransport

    keys, unsigned = module_keys(line)
    transport = MqttTransport(broker_url, f"{line_id}-view-estop-{uuid.uuid4().hex[:6]}")
    try:
        transport.connect()
    except Exception as exc:  # noqa: BLE001 - said to the operator, nothing sent
        return {"ok": False, "reason": f"broker unreachable, nothing sent: {exc}"}
    try:
        stop = LineStop(transport, line, line_id, keys)
        stop.run(who, reason, STOP_TIMEOUT_S, **identity)
    finally:
        transport.close()
    lines = []
    ok = True
    for mid in line.modules:
        p = stop.pending.get(mid)
        note = f" (could not sign: {unsigned[mid]})" if mid in unsigned else ""
        if mid in stop.errors:
            ok = False
            lines.append(f"{mid}: NOT STOPPED: {stop.errors[mid]}{note}")
        elif p is None or not p.done:
            ok = False
            lines.append(f"{mid}: NOT CONFIRMED (it protects itself on lease loss){note}")
        elif p.ok or (p.result == "not_allowed_in_state" and "in aborted" in (p.reason or "")):
            lines.append(f"{mid}: stopped")
        else:
            ok = False
            lines.append(f"{mid}: NOT STOPPED: {p.result} {p.reason or ''}{note}")
    if stop.reply is not None:
        lines.append(f"coordinator: {stop.reply.get('reason', '')}")
    return {"ok": ok, "reason": "; ".join(lines)}
