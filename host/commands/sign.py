"""``skid sign RUN --meaning reviewed|approved|rejected --user NAME``: an electronic
signature on a finished run record.

The signer logs in again (password from ``$SKID_PASSWORD`` or a prompt) for every
signature.  The record must verify intact and be finished.  The signature is appended to
the record's hash chain as one entry: signer, full name, role, meaning, comment, UTC time
and the head hash it covers (docs/run-record.md, "Signatures").  Rules: ``reviewed`` needs
a supervisor or QA, ``approved`` and ``rejected`` need QA; the run's operator cannot approve
it; nobody signs the same meaning twice; nothing is signed after a rejection.

Exit codes: 0 signed, 1 refused (authentication, a rule, a record that does not verify),
2 run not found or usage error.
"""

from __future__ import annotations

import json
import sys
import time

from host.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from host.commands.user import add_users_file

_MEANINGS = ("reviewed", "approved", "rejected")  # host.users.MEANINGS (argon2 not loaded)


def register(sub) -> None:
    p = sub.add_parser(
        "sign",
        help="sign a finished run record (reviewed, approved or rejected)",
        description=__doc__,
    )
    p.add_argument("run", metavar="RUN", help="run id, unique prefix of one, or record path")
    p.add_argument("--meaning", required=True, choices=_MEANINGS)
    p.add_argument("--user", required=True, metavar="NAME", help="the signer (logs in)")
    p.add_argument("--comment", default="", help="a comment kept with the signature")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="default: runs")
    add_users_file(p)
    p.add_argument("--json", action="store_true", help="print the signature as JSON")
    p.set_defaults(func=run)


def refusal(meta: dict, existing: list[dict], user: dict, meaning: str) -> str | None:
    """Why ``user`` may not sign this run with ``meaning``, or None.  ``meta`` is the
    record's ``meta()``, ``existing`` its signatures so far."""
    from host.users import SIGN_ROLES  # lazy: start-up (argon2)

    roles = SIGN_ROLES[meaning]
    if user["role"] not in roles:
        return f"{meaning} needs the role {' or '.join(roles)}; {user['name']} is {user['role']}"
    if meta.get("outcome") is None:
        return "the run has not finished: only a finished run is signed"
    operator = (meta.get("metadata") or {}).get("operator")
    if meaning == "approved" and operator == user["name"]:
        return f"{user['name']} ran this run (its operator) and cannot approve it"
    for s in existing:
        if s["signer"] == user["name"] and s["meaning"] == meaning:
            return f"{user['name']} already signed this run as {meaning} (entry {s['seq']})"
        if s["meaning"] == "rejected":
            return f"the run was rejected by {s['signer']} (entry {s['seq']}): nothing more to sign"
    return None


def sign(path, user: dict, meaning: str, comment: str = "") -> dict:
    """Check the record and the rules, then append the signature; the signature's data.
    Raises RecordError (the record) or ValueError (a rule, with why)."""
    from host.record import RunRecord, verify  # lazy: start-up

    result = verify(path)
    if not result.ok:
        raise ValueError(f"the record does not verify: {result.reason}")
    rec = RunRecord.open(path)
    try:
        why = refusal(rec.meta(), rec.signatures(), user, meaning)
        if why is not None:
            raise ValueError(why)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        data = rec.add_signature(user, meaning, comment, stamp)
        data["seq"] = rec.signatures()[-1]["seq"]
        data["head_hash"] = rec.head_hash  # the signature entry's own hash: note it
    finally:
        rec.close()
    return data


def run(args) -> int:
    from host.record import RecordError, find_run  # lazy: start-up
    from host.users import UserError, default_store_path, login  # lazy: start-up

    try:
        path = find_run(args.run, args.runs_dir)
    except RecordError as exc:
        print(f"skid sign: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        user = login(args.users_file or default_store_path(), args.user)
        data = sign(path, user, args.meaning, args.comment)
    except (UserError, RecordError, ValueError) as exc:
        print(f"skid sign: refused: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(
        f"skid sign: {path}: {args.meaning} by {user['name']} ({user['role']}) at "
        f"{data['signed_utc']}, entry {data['seq']}, covering head {data['covers_hash']}",
        file=sys.stderr,
    )
    print(
        f"head hash {data['head_hash']} (keep it for `skid verify --expect-head`)", file=sys.stderr
    )
    if args.json:
        print(json.dumps(data, sort_keys=True))
    return EXIT_OK
