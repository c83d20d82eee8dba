"""``skid report RUN``: write a run's report as one self-contained HTML file.

Plots of temperatures, pressures, flows and other channels against time with phases,
trips, alarms and gaps marked; tables of the run's description, events, operator actions,
phases and failed commands.  Prints the file's path.  Exit codes: 0 written, 2 run not
found, 1 anything else.
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a run's HTML report with plots",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("run", metavar="RUN", help="run id, unique prefix of one, or record path")
    p.add_argument(
        "-o", "--out", metavar="DIR", help="output directory (default: beside the record)"
    )
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="default: runs")
    p.add_argument("--json", action="store_true", help="print a JSON result as the last line")
    p.set_defaults(func=run)


def run(args) -> int:
    from host.record import RecordError, find_run  # lazy: start-up
    from host.report import write_report  # lazy: start-up

    try:
        path = find_run(args.run, args.runs_dir)
    except RecordError as exc:
        print(f"skid report: {exc}", file=sys.stderr)
        return 2
    try:
        target = write_report(path, args.out)
    except RecordError as exc:
        print(f"skid report: {exc}", file=sys.stderr)
        return 1
    print(f"skid report: written {target}", file=sys.stderr)
    if args.json:
        print(json.dumps({"record": str(path), "report": str(target)}))
    else:
        print(target)
    return 0
