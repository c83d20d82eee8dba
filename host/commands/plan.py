"""``skid plan LINE RECIPE``: what a recipe will do on a line, before anything moves.

Prints the derived pump flows and the concentrations in the coil, the residence time
(and its spread), each phase's length and the run time (at least / at most), the feed
each pump draws against what is loaded, the product volume, and the boiling margin at the
regulated pressure, then every error and warning ``skid check`` would give.  Nothing is
started.  ``skid run`` and ``skid demo`` print the same plan at their start and store it
in the run record.  Exit codes: 0 the run would start, 2 it would be refused (or a file
cannot be loaded).  ``--json``: only one JSON object on standard output (docs/cli.md).
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="show what a recipe will do on a line: flows, times, volumes, boiling margin",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("line", help="line file (examples/lines/*.toml)")
    p.add_argument("recipe", help="recipe file (examples/recipes/*.toml)")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from host.plan import make_plan, plan_lines  # lazy: start-up
    from host.recipe import RecipeError, load_recipe  # lazy: start-up
    from line.loader import LineError, load_line  # lazy: start-up

    try:
        line = load_line(args.line)
        recipe = load_recipe(args.recipe)
    except (LineError, RecipeError, OSError) as exc:
        if args.json:
            print(json.dumps({"ok": False, "errors": [str(exc)]}))
        else:
            print(f"skid plan: {exc}", file=sys.stderr)
        return 2
    plan = make_plan(line, recipe)
    if args.json:
        print(json.dumps(plan))
    else:
        print("\n".join(plan_lines(plan)))
    return 0 if plan["ok"] else 2
