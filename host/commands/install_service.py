"""``skid install-service BOARD_CONFIG``: run a module on a Raspberry Pi as a systemd service.

Writes ``/etc/systemd/system/flowskid-<module>.service`` (Type=notify, systemd watchdog
tied to the tick loop, restart on failure, hardened), copies the board config (and its
key file) to ``/etc/flowskid/``, optionally the module's broker credentials, a udev rule
that gives the service user the hardware watchdog, then enables and starts the service.
``--dry-run`` prints every file and command instead and touches nothing.

Exit codes: 0 done, 2 invalid config or arguments (or not root), 1 anything else.
"""

from __future__ import annotations

import os
import sys

from edge.boardconfig import ConfigError
from host.installer import (
    DEFAULT_PREFIX,
    DEFAULT_USER,
    InstallError,
    apply_plan,
    plan_install,
    render_plan,
)


def register(sub) -> None:
    p = sub.add_parser(
        "install-service",
        help="install a module's edge runtime as a systemd service (Raspberry Pi)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("config", metavar="BOARD_CONFIG", help="board config TOML (target linux)")
    p.add_argument("--dry-run", action="store_true", help="print files and commands only")
    p.add_argument(
        "--user", default=DEFAULT_USER, help=f"service user (default {DEFAULT_USER}; created)"
    )
    p.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"config directory (default {DEFAULT_PREFIX})"
    )
    p.add_argument("--broker", metavar="URL", help="MQTT broker, mqtt://HOST[:PORT]")
    p.add_argument(
        "--line-id",
        "--line",
        dest="line",
        default="line1",
        metavar="ID",
        help="line id (default line1)",
    )
    p.add_argument(
        "--module-id",
        metavar="ID",
        help="module id on the line (e.g. pump_a) when it differs from the config's module.id",
    )
    p.add_argument(
        "--credentials",
        metavar="FILE",
        help="credentials.toml from `skid broker-config`: this module's MQTT username and "
        "password go into PREFIX/<module>.env (mode 0600, never printed)",
    )
    p.add_argument("--skid", metavar="PATH", help="the skid executable (default: this one)")
    p.add_argument(
        "--root",
        metavar="DIR",
        help="write the files below DIR (e.g. a mounted SD card) and only print the "
        "commands to run on the Pi",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        plan = plan_install(
            args.config,
            user=args.user,
            prefix=args.prefix,
            broker=args.broker,
            line=args.line,
            skid=args.skid,
            credentials=args.credentials,
            module_id=args.module_id,
        )
    except (ConfigError, InstallError) as exc:
        print(f"skid install-service: {exc}", file=sys.stderr)
        return 2
    for note in plan.notes:
        print(f"skid install-service: note: {note}", file=sys.stderr)
    if args.dry_run:
        sys.stdout.write(render_plan(plan))
        return 0
    if args.root is None and os.geteuid() != 0:
        print(
            "skid install-service: must run as root to write /etc and call systemctl: "
            "use `sudo skid install-service ...` (or --dry-run to see what it would do)",
            file=sys.stderr,
        )
        return 2
    try:
        apply_plan(plan, root=args.root or "/", run_commands=args.root is None)
    except Exception as exc:  # noqa: BLE001 - OSError, CalledProcessError, KeyError (user)
        print(f"skid install-service: {exc}", file=sys.stderr)
        return 1
    for f in plan.files:
        where = f"{args.root.rstrip('/')}{f.path} " if args.root else ""
        print(f"skid install-service: wrote {where}{f.describe()}", file=sys.stderr)
    if args.root is not None:
        print("skid install-service: now run on the Pi:", file=sys.stderr)
        for cmd in plan.commands:
            print("  " + " ".join(cmd), file=sys.stderr)
    else:
        print(
            f"skid install-service: {plan.unit_name} enabled and started; "
            f"follow it with `journalctl -u {plan.unit_name} -f`",
            file=sys.stderr,
        )
    return 0
