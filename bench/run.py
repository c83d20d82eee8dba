"""Run every benchmark module in bench/ and write bench/results.json.

Each ``bench/bench_*.py`` exposes ``run() -> list[dict]`` returning records
``{name, value, unit, peer, peer_value, ratio, target}`` (peer fields ``None`` where there is
no peer).  Peers are measured in the same run as our code, so ratios are comparable across
machines even when absolute times are not.  ``met`` is added here when a record's target
can be judged mechanically (``"<=2.0x"``, ``"<=40 B"``, ``"<50 us"``).

Usage: ``python -m bench.run [NAME ...]`` (names filter modules, e.g. ``codec``).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import re
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
FIELDS = ("name", "value", "unit", "peer", "peer_value", "ratio", "target")

_TARGET = re.compile(r"^\s*(<=|<|>=|>)\s*([0-9.]+)\s*(x|%)?")


def judge(record: dict) -> bool | None:
    """True/False when the target's first clause can be checked against value or ratio."""
    target = record.get("target")
    if not target:
        return None
    ok = True
    for clause in str(target).split(" and "):
        m = _TARGET.match(clause)
        if not m:
            return None
        op, num, suffix = m.group(1), float(m.group(2)), m.group(3)
        if suffix == "x":
            subject = record.get("ratio")
        elif suffix == "%":
            subject = None if record.get("ratio") is None else record["ratio"] * 100.0
        else:
            subject = record.get("value")
        if subject is None:
            return None
        ok = (
            ok
            and {
                "<=": subject <= num,
                "<": subject < num,
                ">=": subject >= num,
                ">": subject > num,
            }[op]
        )
    return ok


def discover(names: list[str]) -> list[str]:
    mods = sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))
    if names:
        mods = [m for m in mods if any(n in m for n in names)]
    return mods


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    records: list[dict] = []
    failed = []
    for mod_name in discover(argv):
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{mod_name}")
            produced = module.run()
        except Exception:  # one broken benchmark must not hide the others
            failed.append(mod_name)
            traceback.print_exc()
            continue
        for rec in produced:
            missing = [f for f in FIELDS if f not in rec]
            if missing:
                raise ValueError(f"bench/{mod_name}.py record {rec!r} lacks {missing}")
            rec = dict(rec)
            rec["module"] = mod_name
            rec["met"] = judge(rec)
            records.append(rec)
        print(f"{mod_name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    doc = {
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "processor": platform.processor() or platform.machine(),
            "system": platform.platform(),
        },
        "records": records,
    }
    # results.json is the list of records the issue asks for; machine info goes beside it.
    # A partial run (some names given) replaces only the records of the modules it ran.
    ran = set(discover(argv))
    if argv and RESULTS.exists():
        kept = [r for r in json.loads(RESULTS.read_text()) if r.get("module") not in ran]
        records = kept + records
    RESULTS.write_text(json.dumps(records, indent=2) + "\n")
    (HERE / "results-machine.json").write_text(json.dumps(doc["machine"], indent=2) + "\n")
    _print_table(records)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _print_table(records: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a runtime dependency
        for r in records:
            print(r)
        return
    table = Table(title="flowskid benchmarks")
    for col in ("name", "value", "unit", "peer", "peer value", "ratio", "target", "met"):
        table.add_column(col)
    for r in records:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        table.add_row(
            r["name"],
            _fmt(r["value"]),
            r["unit"],
            _fmt(r["peer"]),
            _fmt(r["peer_value"]),
            _fmt(r["ratio"]),
            _fmt(r["target"]),
            met,
        )
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
