"""``skid status --broker URL --line-id ID``: the live state of a line, during a run or not.

Read-only: it connects, subscribes to the line's topics and listens; it never commands,
leases or asks for a rebirth.  It shows the coordinator's run status (recipe, phase, time
in it and to the next, the phase's conditions, collected and diverted volume, setpoints;
it also carries every module's channels, so values have units although births are not
retained), each module's state, values, alarms and trips, and gaps (broker, coordinator,
module).  --json prints it as one JSON object (docs/cli.md lists every field); --watch
refreshes in place in a terminal, prints one line per change when piped, and with --json
one object per change (NDJSON, at most two a second).

The data model is ``host.livestate.LiveLine``; the rendering ``host/status_view.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from protocol.topics import TopicError, line_filter, validate_id

# One-shot: stop listening early once every module is heard with values, and (with no
# coordinator's run status) nothing new appeared for this long.
QUIET_S = 1.0
JSON_EVERY_S = 0.5  # --json --watch: at most one snapshot per this long
LINE_EVERY_S = 10.0  # --watch piped: a line at least this often, changed or not


def register(sub) -> None:
    p = sub.add_parser(
        "status",
        help="show a line live: run, phase, modules' states and values, alarms, trips (read-only)",
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
        help="listen up to S seconds for the run status and every module (default 3)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep going until Ctrl-C: in place in a terminal, one line per change when piped",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the snapshot as one JSON object (with --watch: one per change, NDJSON)",
    )
    p.set_defaults(func=run)


def _now_ms() -> int:
    return int(time.time() * 1000)


def run(args) -> int:
    from host.livestate import LinkWatch, LiveLine  # lazy: start-up
    from host.transport import MqttTransport, TransportError  # lazy: start-up

    try:
        validate_id("line", args.line_id)
    except TopicError as exc:
        print(f"skid status: --line-id: {exc}", file=sys.stderr)
        return 2
    if args.wait <= 0:
        print("skid status: --wait must be > 0", file=sys.stderr)
        return 2
    live = LiveLine(args.line_id)
    try:
        transport = MqttTransport(args.broker, f"skid-status-{os.getpid()}")
        transport.subscribe(
            line_filter(args.line_id), lambda t, p: live.on_message(t, p, _now_ms())
        )
        transport.connect(timeout_s=min(10.0, max(args.wait, 2.0)))
    except TransportError as exc:
        print(f"skid status: {exc}", file=sys.stderr)
        return 2 if exc.reason == "usage" else 1
    link = LinkWatch(live)
    link.poll(transport, _now_ms())
    print(f"skid status: listening on line {args.line_id} at {args.broker}", file=sys.stderr)
    try:
        if args.watch:
            _watch(transport, live, link, args.json)
        else:
            _listen(transport, live, link, args.wait)
    except KeyboardInterrupt:
        pass
    finally:
        transport.close()
    if args.watch:
        return 0
    snap = live.snapshot(_now_ms())
    heard = any(m["last_seen_ms"] is not None for m in snap["modules"])
    if not heard and snap["run"] is None:
        print(f"skid status: no module of line {args.line_id} answered", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(snap))
    else:
        from rich.console import Console  # lazy: start-up

        from host.status_view import render  # lazy: start-up

        Console().print(render(snap))
    return 0


def _settled(snap: dict, quiet: bool) -> bool:
    """Every module listed is heard with values; without a run status (which lists every
    module of the run) also nothing new for ``QUIET_S``."""
    modules = snap["modules"]
    if not modules or (snap["run"] is None and not quiet):
        return False
    return all(
        m["last_seen_ms"] is not None and any(v["t_ms"] is not None for v in m["values"].values())
        for m in modules
    )


def _listen(transport, live, link, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    count, last_new = 0, time.monotonic()
    while time.monotonic() < deadline:
        transport.poll(timeout_s=0.1)
        link.poll(transport, _now_ms())
        snap = live.snapshot(_now_ms())
        if len(snap["modules"]) != count:
            count, last_new = len(snap["modules"]), time.monotonic()
        if _settled(snap, time.monotonic() - last_new >= QUIET_S):
            return


def _watch(transport, live, link, as_json: bool) -> None:
    # The retained run status and a first telemetry of each module before the first
    # output, so it does not start with a snapshot of nothing.
    _listen(transport, live, link, 3.0)
    if as_json:
        _watch_json(transport, live, link)
    elif sys.stdout.isatty():
        _watch_live(transport, live, link)
    else:
        _watch_lines(transport, live, link)


def _turn(transport, live, link) -> bool:
    """One turn: messages, the link, time; True if the snapshot changed."""
    changed = transport.poll(timeout_s=0.1) > 0
    now = _now_ms()
    link.poll(transport, now)
    return live.tick(now) or changed


def _watch_json(transport, live, link) -> None:
    next_ok = 0.0
    pending = True
    while True:
        pending = _turn(transport, live, link) or pending
        if pending and time.monotonic() >= next_ok:
            print(json.dumps(live.snapshot(_now_ms())), flush=True)
            pending = False
            next_ok = time.monotonic() + JSON_EVERY_S


def _watch_lines(transport, live, link) -> None:
    from host.status_view import change_key, one_line  # lazy: start-up

    last_key, next_line = None, 0.0
    while True:
        _turn(transport, live, link)
        snap = live.snapshot(_now_ms())
        key = change_key(snap)
        if key != last_key or time.monotonic() >= next_line:
            print(one_line(snap), flush=True)
            last_key, next_line = key, time.monotonic() + LINE_EVERY_S


def _watch_live(transport, live, link) -> None:
    from rich.console import Console  # lazy: start-up
    from rich.live import Live  # lazy: start-up

    from host.status_view import render  # lazy: start-up

    with Live(render(live.snapshot(_now_ms())), console=Console(), refresh_per_second=2) as out:
        next_draw = time.monotonic()
        while True:
            _turn(transport, live, link)
            if time.monotonic() >= next_draw:
                out.update(render(live.snapshot(_now_ms())))
                next_draw = time.monotonic() + 0.5
