"""``skid verify RUN``: check a run record's hash-chained audit log and sample digests.

Exit codes: 0 intact, 1 altered or damaged (the first bad entry is named, and every
signature of ``skid sign`` the change breaks), 2 run not found.
The head hash printed on success identifies the whole record as it stands: keep it
somewhere the record's owner cannot rewrite (a lab notebook, a batch record, an e-mail) and
pass it back with ``--expect-head`` to prove nothing was rewritten or cut off since.
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="check a run record for tampering (hash chain and sample digests)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("run", metavar="RUN", help="run id, unique prefix of one, or record path")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="default: runs")
    p.add_argument(
        "--expect-head",
        metavar="HASH",
        help="a head hash noted earlier: the chain must still contain it",
    )
    p.add_argument("--json", action="store_true", help="print a JSON result as the last line")
    p.set_defaults(func=run)


def run(args) -> int:
    from host.record import RecordError, find_run, verify  # lazy: start-up

    try:
        path = find_run(args.run, args.runs_dir)
        result = verify(path)
    except RecordError as exc:
        print(f"skid verify: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        return 2
    doc = {"record": str(path), **result.as_dict()}
    ok = result.ok
    if ok and args.expect_head:
        seq = _entry_with_hash(path, args.expect_head.strip().lower())
        doc["expected_head_at"] = seq
        if seq is None:
            ok = False
            doc.update(
                ok=False,
                reason=f"the expected head hash {args.expect_head} is not in "
                "the chain: the record was rewritten or cut off",
            )
        elif seq != result.entries:
            doc["reason"] += (
                f"; expected head is entry {seq}, {result.entries - seq} appended since"
            )
    if ok:
        print(f"skid verify: {path}: {doc['reason']}", file=sys.stderr)
        print(f"head hash {result.head_hash}", file=sys.stderr)
    else:
        where = f"entry {result.first_bad}: " if result.first_bad else ""
        print(f"skid verify: {path}: FAILED: {where}{doc['reason']}", file=sys.stderr)
        for broken in result.broken_signatures:
            print(f"skid verify: BROKEN {broken['text']}", file=sys.stderr)
    if args.json:
        print(json.dumps(doc))
    else:
        print(result.head_hash if ok else f"FAILED {doc['first_bad']}")
    return 0 if ok else 1


def _entry_with_hash(path, digest: str) -> int | None:
    from host.record import RunRecord  # lazy: start-up

    rec = RunRecord.open(path, readonly=True)
    try:
        for e in rec.entries():
            if e["hash"] == digest:
                return e["seq"]
    finally:
        rec.close()
    return None
