"""``skid bundle BOARD_CONFIG --target rp2|esp32|generic -o DIR``: what goes on a board.

Validates the board config (a failing one is refused, exit 2, with every error naming
file, key, value and allowed range), compiles the board's edge and protocol files to
``.mpy`` with mpy-cross for the target, and writes ``main.py``, ``boot.py``, the compiled
config (``config.bin``) and ``board_secrets.py`` (from ``--secrets FILE``, a TOML or a
ready ``board_secrets.py``; without it a commented template) into DIR, created if
missing.  Reports the bundle size against the target's typical free flash.  Secrets are
never printed.  Exit codes: 0 built, 2 bad config, secrets or arguments, 1 anything else.
"""

from __future__ import annotations

import json
import sys

from edge.boardconfig import ConfigErrors
from host.bundle import TARGET_NAMES, BundleError, SecretsError, TargetMismatch, build_bundle

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def register(sub) -> None:
    p = sub.add_parser(
        "bundle",
        help="build a MicroPython board bundle (.mpy files, config, secrets) in a folder",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("config", metavar="BOARD_CONFIG", help="the module's board config (TOML)")
    p.add_argument("--target", required=True, choices=TARGET_NAMES, help="board family")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle folder")
    p.add_argument(
        "--secrets",
        metavar="FILE",
        help="secrets TOML (or a ready board_secrets.py): Wi-Fi, broker, line, command key",
    )
    p.add_argument(
        "--module-id",
        metavar="ID",
        help="module id for this board instead of the config's (pump_a and pump_b from one "
        "pump.toml); the config hash changes with it",
    )
    p.add_argument(
        "--frozen",
        action="store_true",
        help="no lib/: for a firmware with the board packages frozen in (firmware/manifest.py)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write the bundle even if its expected RAM exceeds the target's usable heap",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=run)


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _print_ram(s: dict) -> None:
    print(
        f"  RAM after boot {_kib(s['ram_bytes']):>10} (imports {_kib(s['ram_imports_bytes'])},"
        f" runtime {_kib(s['ram_runtime_bytes'])}; {s['ram_how']})",
        file=sys.stderr,
    )
    print(
        f"  usable heap    {_kib(s['heap_bytes']):>10}: headroom"
        f" {_kib(s['heap_headroom_bytes'])} ({s['heap_assumed']})",
        file=sys.stderr,
    )
    if s["features"]:
        print(f"  optional modules carried: {', '.join(s['features'])}", file=sys.stderr)


def _print_summary(s: dict) -> None:
    """The bundle's files and flash use, on standard error."""
    print(
        f"bundle for {s['module']} (config {s['config_hash']}), target {s['target']}"
        f" ({'-march=' + s['march'] if s['march'] else 'bytecode only'}): {s['bundle']}",
        file=sys.stderr,
    )
    for part, size in s["parts"].items():
        print(f"  {part:<13} {_kib(size):>10}", file=sys.stderr)
    print(
        f"  {'total':<13} {_kib(s['bytes']):>10} in {s['files']} files;"
        f" at most {_kib(s['flash_bytes_upper_bound'])} on flash"
        f" = {100 * s['fraction_of_free_flash']:.0f} % of {_kib(s['free_flash_bytes'])} free",
        file=sys.stderr,
    )
    print(f"  free flash assumed: {s['free_flash_assumed']}", file=sys.stderr)
    if s["secrets"] == "template":
        print(
            "  board_secrets.py is a commented template: the module will run without network",
            file=sys.stderr,
        )


def run(args) -> int:
    try:
        bundle = build_bundle(
            args.config,
            args.target,
            args.output,
            args.secrets,
            module_id=args.module_id,
            frozen=args.frozen,
        )
    except ConfigErrors as exc:
        print(
            f"skid bundle: {args.config}: refused, the config does not validate:", file=sys.stderr
        )
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        if args.json:
            errors = [
                {
                    "file": e.file,
                    "key": e.key,
                    "line": e.line,
                    "problem": e.problem,
                    "allowed": e.allowed,
                    "message": str(e),
                }
                for e in exc.errors
            ]
            print(json.dumps({"ok": False, "errors": errors}))
        return EXIT_USAGE
    except (SecretsError, TargetMismatch) as exc:
        print(f"skid bundle: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "errors": [{"message": str(exc)}]}))
        return EXIT_USAGE
    except BundleError as exc:
        print(f"skid bundle: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "errors": [{"message": str(exc)}]}))
        return EXIT_FAILURE
    s = bundle.summary()
    _print_summary(s)
    _print_ram(s)
    if s["heap_headroom_bytes"] < 0 and not args.force:
        print(
            f"skid bundle: refused: {s['module']} needs about {_kib(s['ram_bytes'])} of heap"
            f" after boot, {_kib(-s['heap_headroom_bytes'])} more than the"
            f" {_kib(s['heap_bytes'])} a {s['target']} board leaves (docs/deploy.md, Memory)."
            " Freeze the board packages into the firmware and bundle with --frozen,"
            " or override with --force",
            file=sys.stderr,
        )
        if args.json:
            print(json.dumps({"ok": False, **s}))
        return EXIT_FAILURE
    if s["fraction_of_free_flash"] > 1:
        print("skid bundle: the bundle does not fit the target's free flash", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, **s}))
        return EXIT_FAILURE
    if args.json:
        print(json.dumps({"ok": True, **s}))
    return EXIT_OK
