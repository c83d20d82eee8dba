"""``skid bench [NAME...]``: run the benchmarks (``bench/bench_*.py``) of a source checkout.

Same as ``make bench``: every benchmark (or those whose module name contains a NAME, e.g.
``skid bench ingest``) measures its metric and its peer in the same run and writes
``bench/results.json`` (a partial run replaces only its own records).  Benchmarks live in
the repository, not in the installed package: run this from a checkout.

Exit codes: 0 every benchmark ran, 1 one failed, 2 no checkout found.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from host.cli import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="run the benchmarks (bench/), results in bench/results.json",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("names", nargs="*", help="only benchmarks whose module name contains these")
    p.set_defaults(func=run)


def run(args) -> int:
    if not (ROOT / "bench" / "run.py").is_file():
        print(
            f"skid bench: no bench/ beside {ROOT}: run it from a source checkout", file=sys.stderr
        )
        return EXIT_USAGE
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from bench import run as bench_run  # lazy: bench/ is in a checkout, not the package

    return bench_run.main(list(args.names))
