"""``skid flash DIR --port PORT``: copy a bundle onto a MicroPython board and reset it.

Uses ``mpremote`` (PyPI).  The steps: stop the node (a ``maintenance`` file keeps main.py
from starting and arming the watchdog), remove the previous edge/protocol packages, copy
the new ones and the top-level files, remove the maintenance file and hard-reset.
``--dry-run`` prints the mpremote command lines without running them.
Exit codes: 0 flashed (or printed), 2 not a bundle or mpremote missing, 1 a step failed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

from host.bundle import BundleError, check_bundle_dir, flash_commands

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def register(sub) -> None:
    p = sub.add_parser(
        "flash",
        help="copy a bundle onto a MicroPython board with mpremote and reset it",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("bundle", metavar="DIR", help="a folder built by `skid bundle`")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyACM0 or COM3")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=run)


def _show(cmd: list[str]) -> str:
    return shlex.join(cmd)


def run(args) -> int:
    try:
        check_bundle_dir(args.bundle)
    except BundleError as exc:
        print(f"skid flash: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        cmds = flash_commands(args.bundle, args.port)
        for cmd in cmds:
            print(_show(cmd))
        if args.json:
            print(json.dumps({"ok": True, "dry_run": True, "commands": cmds}))
        return EXIT_OK
    exe = shutil.which("mpremote")
    if exe is None:
        print(
            "skid flash: mpremote not found: install it with `pip install mpremote` "
            "(or use --dry-run to see the commands)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    cmds = flash_commands(args.bundle, args.port, mpremote=exe)
    for i, cmd in enumerate(cmds, 1):
        print(f"[{i}/{len(cmds)}] {_show(cmd)}", file=sys.stderr)
        proc = subprocess.run(cmd)
        if proc.returncode != 0:
            print(
                f"skid flash: step {i} failed (exit {proc.returncode}); the board may be left "
                "in maintenance (node not running): re-run `skid flash`",
                file=sys.stderr,
            )
            if args.json:
                print(json.dumps({"ok": False, "failed_step": i, "commands": cmds}))
            return EXIT_FAILURE
    print(
        f"skid flash: {args.bundle} flashed on {args.port}; the board is restarting",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps({"ok": True, "dry_run": False, "commands": cmds}))
    return EXIT_OK
