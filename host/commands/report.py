"""``skid report RUN``: write a run's report as one self-contained HTML file and a PDF.

The outcome and its reason, the conditions, collected and diverted volumes, deviations,
signatures and collection-window statistics; plots against time with phases, trips,
alarms, holds, manual changes and deviations marked; tables of events, commands, operator
actions, phases and notes.  Writes RUN.html and RUN.pdf and prints the HTML's path.  Exit
codes: 0 written, 2 run not found, 1 anything else.
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
        pdf = target.with_suffix(".pdf")
        print(json.dumps({"record": str(path), "report": str(target), "pdf": str(pdf)}))
    else:
        print(target)
    return 0
