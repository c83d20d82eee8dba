"""``skid edge CONFIG``: run one module's edge runtime as a process on CPython."""

from __future__ import annotations

import asyncio
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "edge",
        help="run one module's edge runtime (a Raspberry Pi, or emulated)",
        description=(
            "Run the edge runtime of one module from its board config. On a Raspberry Pi "
            "it drives the real hardware; with --emulate the drivers are emulated and a "
            "simple stand-in plant feeds them. Without --broker the module runs its local "
            "control and protection only."
        ),
    )
    p.add_argument(
        "config", nargs="?", help="board config TOML (board_configs/*.toml); or --line-file"
    )
    p.add_argument("--emulate", action="store_true", help="emulated drivers and plant")
    p.add_argument("--broker", metavar="URL", help="MQTT broker, mqtt://HOST[:PORT]")
    p.add_argument(
        "--line-id",
        "--line",
        dest="line_id",
        default="line1",
        metavar="ID",
        help="line id used in topics (default line1)",
    )
    p.add_argument(
        "--speed", type=float, default=1.0, help="simulated time per real time (emulation)"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S simulated seconds")
    p.add_argument(
        "--plant",
        choices=("standin", "remote"),
        default="standin",
        help="with --emulate: what feeds the drivers: a simple stand-in in this process "
        "(default), or the plant emulator process of a broker-mode line (`skid emulate`)",
    )
    p.add_argument(
        "--epoch",
        type=float,
        metavar="T",
        help="shared clock origin (Unix seconds): simulated ms = (now - T) x speed x 1000; "
        "every process of a broker-mode line gets the same T",
    )
    p.add_argument(
        "--line-file",
        metavar="LINE",
        help="run a module of this line file (examples/lines/*.toml) with the config the "
        "emulator derives for it (needs --module-id and --emulate; replaces CONFIG)",
    )
    p.add_argument(
        "--module-id",
        metavar="ID",
        help="module id (the line's id for it, e.g. pump_a) instead of the config's",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        metavar="PID",
        help="stop (outputs safe) when process PID is gone: set by the launcher of an "
        "emulated line so no module outlives it",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="ignore the configured command key file (commands unauthenticated)",
    )
    p.add_argument(
        "--runtime",
        choices=("cpython", "micropython"),
        default="cpython",
        help="micropython: run this module of an emulated line (--line-file, --module-id, "
        "--emulate, --plant remote, --broker, --epoch) as a MicroPython Unix-port process "
        "(edge/emulated_main.py) instead of this CPython",
    )
    p.set_defaults(func=run)


def run_micropython(args) -> int:
    """Replace this process with the module under the MicroPython Unix port."""
    import os
    import tempfile
    import time

    from host.brokerurl import parse_broker_url
    from host.micropython_unix import micropython_env, module_command, write_line_module_dir
    from line.loader import load_line

    needed = args.line_file and args.module_id and args.emulate and args.broker
    if not needed or args.plant != "remote":
        print(
            "skid edge: --runtime micropython runs a module of an emulated line: give "
            "--line-file LINE --module-id ID --emulate --plant remote --broker URL",
            file=sys.stderr,
        )
        return 2
    try:
        host, port = parse_broker_url(args.broker)
        directory = write_line_module_dir(
            tempfile.mkdtemp(prefix=f"flowskid-{args.module_id}-"),
            load_line(args.line_file),
            args.module_id,
            broker_host=host,
            broker_port=port,
            line_id=args.line_id,
            epoch=args.epoch if args.epoch is not None else time.time(),
            speed=args.speed,
            insecure=args.insecure,
        )
        cmd = module_command(directory)
    except (OSError, ValueError, KeyError) as exc:
        print(f"skid edge: {exc}", file=sys.stderr)
        return 2
    os.execvpe(cmd[0], cmd, micropython_env())
    return 1  # not reached


def run(args) -> int:
    if args.runtime == "micropython":
        return run_micropython(args)
    from edge.boardconfig import ConfigError
    from host.edgeproc import EdgeProcess

    if args.speed != 1.0 and not args.emulate:
        print("skid edge: --speed only makes sense with --emulate", file=sys.stderr)
        return 2
    if (args.config is None) == (args.line_file is None):
        print("skid edge: give either CONFIG or --line-file LINE --module-id ID", file=sys.stderr)
        return 2
    if args.plant == "remote" and not (args.emulate and args.broker):
        print("skid edge: --plant remote needs --emulate and --broker", file=sys.stderr)
        return 2
    try:
        proc = EdgeProcess(
            args.config,
            emulated=args.emulate,
            broker=args.broker,
            line=args.line_id,
            speed=args.speed,
            insecure=args.insecure,
            plant=args.plant,
            epoch=args.epoch,
            line_file=args.line_file,
            module_id=args.module_id,
        )
    except ConfigError as exc:
        print(f"skid edge: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"skid edge: {exc}", file=sys.stderr)
        return 2
    node = proc.node
    print(
        f"skid edge: module {node.module_id} ({node.kind}) config {proc.hash.hex()} "
        f"{'emulated' if args.emulate else 'hardware'}"
        f"{', broker ' + args.broker if args.broker else ', no broker'}",
        file=sys.stderr,
    )
    if args.parent_pid:
        proc.stop_with_parent(args.parent_pid)
    asyncio.run(proc.run(args.duration))
    if proc.plant_link is not None:
        port = proc.plant
        print(
            f"skid edge: remote plant: {port.sensors_received} readings in, "
            f"{port.outputs_sent} outputs out; of {port.steps} ticks {port.late_steps} came "
            f"a period or more late, the latest {port.max_late_ms} simulated ms past its period",
            file=sys.stderr,
        )
    outputs = ", ".join(f"{k}={v:g}" for k, v in node.outputs().items())
    print(
        f"skid edge: stopped after {proc.runner.ticks} ticks in {node.sm.state_name}; "
        f"outputs safe: {outputs}; tick lateness max {proc.runner.max_lateness_ms} "
        f"simulated ms, {proc.runner.overruns} overruns",
        file=sys.stderr,
    )
    return 0
