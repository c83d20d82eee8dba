"""``skid emulate LINE --broker URL --line-id ID``: the plant emulator process of a line
in broker mode (docs/broker-mode.md).

It owns the plant physics of the line and exchanges driver values over MQTT with the
line's modules, each a ``skid edge --emulate --plant remote`` process, on the shared
scaled clock (``--epoch``, ``--speed``).  Physical faults (``--fault``) apply on
simulated time since the epoch.  Runs until SIGTERM/SIGINT or ``--duration``.
Usually started by ``host.launcher.EmulatedLineProcesses`` (``skid demo --broker``).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading
import time

from protocol.topics import TopicError, validate_id

# The emulator and the line loader are imported when the plant process starts (in run):
# host/cli.py imports every command module for `skid --help`, and these would add to its
# start-up time for no use.


def register(sub) -> None:
    p = sub.add_parser(
        "emulate",
        help="the plant emulator process of a line in broker mode",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("line", help="line file (examples/lines/*.toml)")
    p.add_argument("--broker", required=True, metavar="URL", help="MQTT broker, mqtt://HOST[:PORT]")
    p.add_argument("--line-id", required=True, metavar="ID", help="line id used in topics")
    p.add_argument(
        "--speed", type=float, default=10.0, help="simulated time per real time (default 10)"
    )
    p.add_argument(
        "--epoch",
        type=float,
        metavar="T",
        help="shared clock origin, Unix seconds (default: now); the same for every process",
    )
    p.add_argument("--seed", type=int, default=0, help="emulator random seed")
    p.add_argument(
        "--duration", type=float, metavar="S", help="stop S simulated seconds after the epoch"
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:TARGET@SECONDS",
        help="physical fault (repeatable), e.g. clog:reactor1@60; power-loss is done by the "
        "launcher, network faults are not available in broker mode",
    )
    p.add_argument(
        "--status-every",
        type=float,
        default=10.0,
        metavar="S",
        help="status line to stderr every S simulated seconds (default 10; 0: none)",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        metavar="PID",
        help="stop when process PID is gone (set by the launcher of an emulated line)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=run)


def run(args) -> int:
    from emulator.faults import FaultSpecError  # start-up cost: see the imports above
    from emulator.remote import RemotePlantError, serve_plant
    from line.loader import LineError

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        line, server, faults = _plant_server(args)
    except (LineError, FaultSpecError, RemotePlantError, TopicError, ValueError) as exc:
        log(f"skid emulate: {exc}")
        return 2
    epoch = time.time() if args.epoch is None else args.epoch
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.parent_pid:
        threading.Thread(
            target=_watch_parent, args=(args.parent_pid, stop, log), daemon=True
        ).start()
    log(
        f"skid emulate: line {line.id} as {args.line_id} ({len(line.modules)} modules) "
        f"on {args.broker}, {args.speed:g}x, epoch {epoch:.3f}"
        + (f", faults: {', '.join(str(f) for f in faults)}" if faults else "")
    )
    stats = serve_plant(
        server,
        args.broker,
        epoch,
        args.speed,
        stop,
        duration_s=args.duration,
        status=(lambda srv: log(_status_line(srv))) if args.status_every > 0 else None,
        status_every_s=args.status_every or 10.0,
    )
    _report(args, server, stats, log)
    return 0


def _plant_server(args):
    """(line, PlantServer, faults) from the options; raises on any bad one."""
    from emulator.faults import line_targets, parse_fault_option  # start-up cost
    from emulator.remote import PlantServer, parse_broker_url
    from line.loader import load_line

    if args.speed <= 0:
        raise ValueError(f"--speed {args.speed:g}: must be > 0")
    parse_broker_url(args.broker)
    line = load_line(args.line)
    validate_id("line", args.line_id)
    modules, channels = line_targets(line)
    faults = [parse_fault_option(text, modules, channels) for text in args.fault]
    return line, PlantServer(line, args.line_id, seed=args.seed, faults=faults), faults


def _watch_parent(parent_pid: int, stop: threading.Event, log) -> None:
    """Stop when the launcher (our parent) is gone."""
    while not stop.wait(0.5):
        if os.getppid() != parent_pid:
            log("skid emulate: launcher gone: stopping")
            stop.set()


def _status_line(srv) -> str:
    plant = srv.plant
    parts = []
    for rid in plant.reactors:
        parts.append(f"{rid} {plant.temperature_c(rid):.1f} degC")
    for pid in plant.pumps:
        parts.append(f"{pid} {plant.pressure_bar(pid):.2f} bar")
    off = [m for m, on in srv.powered.items() if not on]
    if off:
        parts.append("no power: " + ",".join(off))
    return f"skid emulate: t={(srv.now_ms or 0) / 1000:7.1f} s  " + "  ".join(parts)


def _report(args, server, stats: dict, log) -> None:
    """The faults applied, timing and CPU to stderr; ``--json``: the same as one object."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = usage.ru_utime + usage.ru_stime
    for t_s, action, text in server.fault_log:
        log(f"skid emulate: {action} {text} at {t_s:.1f} s")
    log(
        f"skid emulate: stopped at t={(server.now_ms or 0) / 1000:.1f} s after "
        f"{stats['steps']} steps; max lateness {stats['max_late_ms']:.0f} simulated ms, "
        f"{stats['late_steps']} steps late by a step or more; cpu {cpu_s:.2f} s"
    )
    if not args.json:
        return
    summary = {
        "line_id": args.line_id,
        "simulated_s": round((server.now_ms or 0) / 1000, 3),
        "steps": stats["steps"],
        "max_late_ms": stats["max_late_ms"],
        "late_steps": stats["late_steps"],
        "cpu_s": round(cpu_s, 3),
        "faults": [{"t_s": round(t, 3), "action": a, "fault": f} for t, a, f in server.fault_log],
        "outputs_seen": server.outputs_seen,
    }
    print(json.dumps(summary))
