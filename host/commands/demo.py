"""``skid demo``: the reference line and recipe, emulated, end to end.

Runs ``examples/recipes/demo.toml`` on ``examples/lines/demo.toml``: two reagent pumps,
a heated 10 mL coil, a back-pressure regulator, an in-line UV cell and a product valve.
Every module runs its real edge runtime on emulated drivers against the plant emulator;
the coordinator primes, pressurises, heats, waits for steady state, collects, flushes,
cools and depressurises, records everything and writes a report with plots.

By default all of it runs in this process on a simulated clock (no broker needed, a few
seconds).  ``--broker URL`` runs each module as its own ``skid edge`` process and the plant
as a ``skid emulate`` process on that MQTT broker, ``--speed`` times real time.  Faults
from the emulator can be injected with ``--fault`` (see docs/emulator.md).

Exit codes: 0 completed, 3 aborted and brought to a safe state, 2 usage error, 1 anything
else.  ``--json`` prints one JSON summary object as the last line of stdout.
"""

from __future__ import annotations

from pathlib import Path

from host.commands.run import add_run_options, execute

ROOT = Path(__file__).resolve().parents[2]
DEMO_LINE = ROOT / "examples" / "lines" / "demo.toml"
DEMO_RECIPE = ROOT / "examples" / "recipes" / "demo.toml"


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the emulated reference line and recipe end to end",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--line", default=str(DEMO_LINE), help="line file (default: the demo line)")
    p.add_argument(
        "--recipe", default=str(DEMO_RECIPE), help="recipe file (default: the demo recipe)"
    )
    add_run_options(p)
    p.set_defaults(func=run, emulate=True)


def run(args) -> int:
    args.emulate = True
    return execute(args, args.line, args.recipe, command="demo")
