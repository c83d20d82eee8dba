"""``skid status --broker URL --line-id ID``: what the modules of a line say about themselves.

Read-only: it connects, subscribes to the line's topics and listens; it never commands,
leases or asks for a rebirth.  Births are not retained, so a module whose birth came
before ``skid status`` started is listed from its telemetry and events alone (kind,
channel names and values appear with its next birth).
"""

from __future__ import annotations

import json
import os
import sys
import time

from protocol.topics import TopicError, line_filter, validate_id

# Stop listening early once every module heard from has been seen born and reporting and
# no new module appeared for this long.
QUIET_S = 1.0


def register(sub) -> None:
    p = sub.add_parser(
        "status",
        help="show the modules of a line: state, key values, alarms and trips (read-only)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--broker", required=True, metavar="URL", help="MQTT broker, mqtt://HOST[:PORT]")
    p.add_argument(
        "--line-id",
        "--line",
        dest="line_id",
        required=True,
        metavar="ID",
        help="line id used in the topics (as printed by `skid run`)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=3.0,
        metavar="S",
        help="listen up to S seconds for births and telemetry (default 3)",
    )
    p.add_argument("--watch", action="store_true", help="keep refreshing the table until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=run)


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def module_summary(view, now_ms: int) -> dict:
    channels = {ch.name: ch for ch in view.channels}
    values = {}
    for name, value in view.values.items():
        ch = channels.get(name)
        values[name] = {
            "value": value,
            "unit": ch.unit if ch is not None else "",
            "role": ch.role if ch is not None else None,
            "quality": view.quality.get(name),
        }
    return {
        "id": view.id,
        "kind": view.kind,
        "born": view.born,
        "online": view.online,
        "stale": view.stale,
        "state": view.state,
        "config_hash": view.config_hash.hex() if view.config_hash else None,
        "values": values,
        "alarms": sorted(view.alarms),
        "trips": [{"cause": c, "age_s": round((now_ms - t) / 1000, 1)} for c, t in view.trips],
        "last_seen_s": None
        if view.last_seen_ms is None
        else round((now_ms - view.last_seen_ms) / 1000, 1),
    }


def render_table(registry, now_ms: int):
    from rich.table import Table  # lazy: start-up

    table = Table(title=f"line {registry.line_id}", expand=False)
    for col in ("module", "kind", "link", "state", "values", "alarms", "trips (first-out)"):
        table.add_column(col)
    for mid in sorted(registry.modules):
        view = registry.modules[mid]
        if not view.born:
            link = "[yellow]seen, no birth yet[/]"
        elif view.stale or not view.online:
            link = "[red]stale[/]" if view.online else "[red]dead (stale)[/]"
        else:
            link = "[green]online[/]"
        parts = []
        for ch in view.channels:
            if ch.role == "status":
                continue
            q = view.quality.get(ch.name)
            text = f"{ch.name} {_fmt(view.values.get(ch.name))} {ch.unit}".rstrip()
            if q not in (None, "good"):
                text += f" ({q})"
            parts.append(text)
        trips = ", ".join(c for c, _t in view.trips)
        table.add_row(
            mid,
            view.kind or "?",
            link,
            view.state or "?",
            "\n".join(parts) or "-",
            ", ".join(sorted(view.alarms)) or "-",
            f"[bold red]{trips}[/]" if trips else "-",
        )
    return table


def _settled(registry, last_new_ms: int, now_ms: int) -> bool:
    views = list(registry.modules.values())
    if not views or now_ms - last_new_ms < QUIET_S * 1000:
        return False
    return all(v.born and v.last_data_ms is not None for v in views)


def run(args) -> int:
    from rich.console import Console  # lazy: start-up

    from host.registry import Registry  # lazy: start-up
    from host.transport import MqttTransport, TransportError  # lazy: start-up

    try:
        validate_id("line", args.line_id)
    except TopicError as exc:
        print(f"skid status: --line-id: {exc}", file=sys.stderr)
        return 2
    if args.wait <= 0:
        print("skid status: --wait must be > 0", file=sys.stderr)
        return 2
    registry = Registry(args.line_id)
    seen = {"last_new_ms": _now_ms()}

    def on_message(topic: str, payload: bytes) -> None:
        before = len(registry.modules)
        registry.on_message(topic, payload, _now_ms())
        if len(registry.modules) != before:
            seen["last_new_ms"] = _now_ms()

    try:
        transport = MqttTransport(args.broker, f"skid-status-{os.getpid()}")
        transport.subscribe(line_filter(args.line_id), on_message)
        transport.connect(timeout_s=min(10.0, max(args.wait, 2.0)))
    except TransportError as exc:
        print(f"skid status: {exc}", file=sys.stderr)
        return 2 if exc.reason == "usage" else 1
    print(f"skid status: listening on line {args.line_id} at {args.broker}", file=sys.stderr)
    try:
        if args.watch:
            _watch(transport, registry, Console())
        else:
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline:
                transport.poll(timeout_s=0.1)
                if _settled(registry, seen["last_new_ms"], _now_ms()):
                    break
            transport.poll()
            registry.tick(_now_ms())
    except KeyboardInterrupt:
        pass
    finally:
        transport.close()
    now = _now_ms()
    if not registry.modules:
        print(f"skid status: no module of line {args.line_id} answered", file=sys.stderr)
    elif not args.json and not args.watch:
        Console().print(render_table(registry, now))
    if args.json:
        summary = {
            "line": args.line_id,
            "broker": args.broker,
            "modules": [module_summary(registry.modules[m], now) for m in sorted(registry.modules)],
        }
        print(json.dumps(summary))
    return 0 if registry.modules else 1


def _watch(transport, registry, console) -> None:
    from rich.live import Live  # lazy: start-up

    with Live(render_table(registry, _now_ms()), console=console, refresh_per_second=2) as live:
        next_draw = time.monotonic()
        while True:
            transport.poll(timeout_s=0.1)
            if time.monotonic() >= next_draw:
                registry.tick(_now_ms())
                live.update(render_table(registry, _now_ms()))
                next_draw = time.monotonic() + 0.5
