"""``skid export RUN``: write a run record as CSV files plus meta.json.

Files: samples.csv (long format, one row per channel value), events.csv, commands.csv (each
command with its ack), operator_actions.csv, phases.csv, audit.csv and meta.json (run
description, verify result, channel units).  Exit codes: 0 written, 2 run not found, 1
anything else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run record as CSV",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("run", metavar="RUN", help="run id, unique prefix of one, or record path")
    p.add_argument("-o", "--out", metavar="DIR", help="output directory (default: RUNS/<run id>)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="default: runs")
    p.add_argument("--json", action="store_true", help="print a JSON result as the last line")
    p.set_defaults(func=run)


def run(args) -> int:
    from host.record import RecordError, export_csv, find_run  # lazy: start-up

    try:
        path = find_run(args.run, args.runs_dir)
    except RecordError as exc:
        print(f"skid export: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else path.parent / path.stem
    try:
        files = export_csv(path, out)
    except RecordError as exc:
        print(f"skid export: {exc}", file=sys.stderr)
        return 1
    print(f"skid export: {len(files)} files in {out}", file=sys.stderr)
    if args.json:
        print(json.dumps({"record": str(path), "out": str(out), "files": [str(f) for f in files]}))
    else:
        for f in files:
            print(f)
    return 0
