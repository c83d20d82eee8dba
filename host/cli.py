"""The `skid` command line.

Each sub-command lives in its own module under ``host/commands/`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.  Commands are discovered, so adding one
touches no other file.

Exit codes (the scripting contract): 0 success/completed, 1 anything else, 2 usage or
configuration error, 3 run aborted and brought to a safe state.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from host import commands as _commands_pkg

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ABORTED = 3
EXIT_DEVIATIONS = 4  # run/demo: completed, but something was diverted or off spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skid",
        description="flowskid: control software for modular continuous-flow chemistry skids.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("skid: interrupted", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
