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
    p.add_argument("config", help="board config TOML (board_configs/*.toml)")
    p.add_argument("--emulate", action="store_true", help="emulated drivers and plant")
    p.add_argument("--broker", metavar="URL", help="MQTT broker, mqtt://HOST[:PORT]")
    p.add_argument("--line", default="line1", help="line id used in topics (default line1)")
    p.add_argument(
        "--speed", type=float, default=1.0, help="simulated time per real time (emulation)"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S simulated seconds")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="ignore the configured command key file (commands unauthenticated)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from edge.boardconfig import ConfigError
    from host.edgeproc import EdgeProcess

    if args.speed != 1.0 and not args.emulate:
        print("skid edge: --speed only makes sense with --emulate", file=sys.stderr)
        return 2
    try:
        proc = EdgeProcess(
            args.config,
            emulated=args.emulate,
            broker=args.broker,
            line=args.line,
            speed=args.speed,
            insecure=args.insecure,
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
    asyncio.run(proc.run(args.duration))
    outputs = ", ".join(f"{k}={v:g}" for k, v in node.outputs().items())
    print(
        f"skid edge: stopped after {proc.runner.ticks} ticks in {node.sm.state_name}; "
        f"outputs safe: {outputs}",
        file=sys.stderr,
    )
    return 0
