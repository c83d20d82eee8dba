"""Electronic signatures on run records (``skid sign``, host/record.py): who may sign
what, the signature row in the hash chain, and a record changed after signing failing
``skid verify`` with the signature it breaks named."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest
from argon2 import PasswordHasher

from host.cli import main
from host.commands.sign import refusal, sign
from host.record import (
    GENESIS_HASH,
    RunRecord,
    canonical_json,
    chain_hash,
    entry_text,
    export_csv,
    signatures,
    verify,
)
from host.users import PASSWORD_ENV, UserStore

T0 = 1_790_000_000_000
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
QUINN = {"name": "quinn", "full_name": "Quinn QA", "role": "qa"}
SAM = {"name": "sam", "full_name": "Sam Super", "role": "supervisor"}


def _record(runs_dir, *, operator="alice", finished=True) -> RunRecord:
    rec = RunRecord.create(
        runs_dir,
        "demo",
        line_hash="11" * 32,
        recipe_name="demo",
        recipe_hash="22" * 32,
        config_hashes={},
        metadata={"operator": operator, "operator_authenticated": "yes"},
        now_ms=T0,
    )
    rec.add_command(T0 + 10, "pump_a", 1, "set_setpoint", {"channel": "flow", "value": 0.5})
    rec.add_change(T0 + 10, "setpoint", "pump_a", None, 0.5, "recipe demo", "prime", channel="flow")
    for i in range(5):
        rec.add_sample(T0 + i * 100, "pump_a", i * 100, i, {"flow": 0.5}, {})
    rec.flush()
    rec.add_operator_action(T0 + 600, "alice", "hold", "look", authenticated=True)
    if finished:
        rec.finish(T0 + 1000, "completed", {"collected_ml": 1.0})
    return rec


@pytest.fixture
def run_path(tmp_path):
    rec = _record(tmp_path)
    path = rec.path
    rec.close()
    return path


def _db(path):
    return sqlite3.connect(str(path), isolation_level=None)


def test_signing_appends_one_chained_entry_covering_the_head(run_path):
    before = verify(run_path)
    data = sign(run_path, QUINN, "approved", "conforms")
    assert data["covers_seq"] == before.entries and data["covers_hash"] == before.head_hash
    after = verify(run_path)
    assert after.ok and after.signatures == 1 and after.entries == before.entries + 1
    assert "1 signature(s)" in after.reason
    (s,) = signatures(run_path)  # the accessor takes a path or an open record
    assert (s["signer"], s["role"], s["meaning"], s["comment"]) == (
        "quinn",
        "qa",
        "approved",
        "conforms",
    )
    assert s["full_name"] == "Quinn QA" and s["signed_utc"].endswith("Z")
    rec = RunRecord.open(run_path, readonly=True)
    try:
        assert signatures(rec) == [s]
        view = rec._conn.execute("SELECT signer, meaning, covers_seq FROM signatures").fetchall()
        assert view == [("quinn", "approved", before.entries)]
    finally:
        rec.close()
    # A second signer signs on top: the first signature still holds.
    sign(run_path, SAM, "reviewed")
    assert verify(run_path).signatures == 2
    out = export_csv(run_path, run_path.parent / "export")
    with (run_path.parent / "export" / "signatures.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["signer"], r["meaning"]) for r in rows] == [
        ("quinn", "approved"),
        ("sam", "reviewed"),
    ]
    with (run_path.parent / "export" / "changes.csv").open(newline="") as f:
        (change,) = csv.DictReader(f)
    assert (change["what"], change["new"], change["who"]) == ("setpoint", "0.5", "recipe demo")
    assert any(p.name == "changes.csv" for p in out)


def test_who_may_sign_what(tmp_path):
    meta = {"outcome": "completed", "metadata": {"operator": "alice"}}
    operator = {"name": "alice", "role": "operator"}
    assert "needs the role supervisor or qa" in refusal(meta, [], operator, "reviewed")
    assert "needs the role qa" in refusal(meta, [], SAM, "approved")
    assert "needs the role qa" in refusal(meta, [], SAM, "rejected")
    assert refusal(meta, [], SAM, "reviewed") is None
    assert refusal(meta, [], QUINN, "approved") is None
    # The approver cannot be the run's operator (here a QA name given with the
    # deprecated --operator).
    by_quinn = {"outcome": "completed", "metadata": {"operator": "quinn"}}
    assert "cannot approve" in refusal(by_quinn, [], QUINN, "approved")
    assert refusal(by_quinn, [], QUINN, "reviewed") is None
    unfinished = {"outcome": None, "metadata": {"operator": "alice"}}
    assert "has not finished" in refusal(unfinished, [], QUINN, "approved")
    earlier = [{"seq": 9, "signer": "quinn", "meaning": "approved"}]
    assert "already signed" in refusal(meta, earlier, QUINN, "approved")
    rejected = [{"seq": 9, "signer": "quinn", "meaning": "rejected"}]
    assert "was rejected" in refusal(meta, rejected, SAM, "reviewed")


def test_sign_refuses_an_unfinished_run_the_operator_and_a_damaged_record(tmp_path):
    rec = _record(tmp_path / "a", finished=False)
    rec.close()
    with pytest.raises(ValueError, match="has not finished"):
        sign(rec.path, QUINN, "approved")
    rec = _record(tmp_path / "b", operator="quinn")
    rec.close()
    with pytest.raises(ValueError, match="cannot approve"):
        sign(rec.path, QUINN, "approved")
    rec = _record(tmp_path / "c")
    rec.close()
    with _db(rec.path) as conn:
        conn.execute("UPDATE samples SET value = 0.7 WHERE id = 1")
    with pytest.raises(ValueError, match="does not verify"):
        sign(rec.path, QUINN, "approved")
    records = sorted(tmp_path.glob("*/*.sqlite"))
    assert len(records) == 3 and all(signatures(p) == [] for p in records)


def _signed(run_path) -> int:
    sign(run_path, QUINN, "approved")
    return verify(run_path).entries  # the signature's seq


def test_an_entry_edited_after_signing_breaks_the_signature(run_path):
    sig = _signed(run_path)
    with _db(run_path) as conn:
        body = conn.execute("SELECT body FROM audit WHERE kind = 'change'").fetchone()[0]
        conn.execute(
            "UPDATE audit SET body = ? WHERE kind = 'change'", (body.replace("0.5", "5.0"),)
        )
    result = verify(run_path)
    assert not result.ok
    assert [b["seq"] for b in result.broken_signatures] == [sig]
    assert f"breaks signature at entry {sig} (approved by quinn" in result.reason


def _rehash_from(conn, start: int) -> None:
    """What a careful forger does: recompute every hash from ``start`` on."""
    prev = GENESIS_HASH
    rows = conn.execute(
        "SELECT seq, host_ms, kind, module, body FROM audit ORDER BY seq"
    ).fetchall()
    for seq, host_ms, kind, module, body in rows:
        if seq >= start:
            digest = chain_hash(prev, entry_text(seq, host_ms, kind, module, body))
            conn.execute(
                "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq)
            )
        prev = conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()[0]


def test_a_record_rewritten_and_rehashed_after_signing_fails_at_the_signature(run_path):
    sig = _signed(run_path)
    with _db(run_path) as conn:
        seq, body = conn.execute("SELECT seq, body FROM audit WHERE kind = 'change'").fetchone()
        data = json.loads(body)
        data["new"] = 5.0
        conn.execute("UPDATE audit SET body = ? WHERE seq = ?", (canonical_json(data), seq))
        _rehash_from(conn, seq)
    result = verify(run_path)
    assert not result.ok and result.first_bad == sig
    assert "the record was rewritten" in result.reason
    assert [b["seq"] for b in result.broken_signatures] == [sig]


def test_an_entry_appended_after_signing_fails_naming_the_signature(run_path):
    sig = _signed(run_path)
    rec = RunRecord.open(run_path)
    rec.add_note(T0 + 2000, "note", "a later remark")
    rec.close()
    result = verify(run_path)
    assert not result.ok and result.first_bad == sig + 1
    assert "appended after signing" in result.reason
    assert [b["seq"] for b in result.broken_signatures] == [sig]


def test_an_edited_signature_or_sample_fails_naming_the_signature(tmp_path):
    for case in ("meaning", "sample"):
        rec = _record(tmp_path / case)
        rec.close()
        sig = _signed(rec.path)
        with _db(rec.path) as conn:
            if case == "meaning":
                conn.execute(
                    "UPDATE audit SET body = replace(body, 'approved', 'reviewed') WHERE seq = ?",
                    (sig,),
                )
            else:
                conn.execute("UPDATE samples SET value = 0.6 WHERE id = 2")
        result = verify(rec.path)
        assert not result.ok, case
        assert [b["seq"] for b in result.broken_signatures] == [sig], case


def test_cli_sign_then_tamper_then_verify_exits_1_naming_the_signature(
    tmp_path, run_path, monkeypatch, capsys
):
    users = tmp_path / "users.json"
    store = UserStore(users, FAST)
    store.add("sam", "supervisor", "sam-password", "Sam Super", None)
    store.add("quinn", "qa", "quinn-password", "Quinn QA", "sam")
    runs = str(run_path.parent)
    common = ["--runs-dir", runs, "--users-file", str(users)]
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    assert main(["sign", run_path.stem, "--meaning", "approved", "--user", "quinn", *common]) == 1
    assert "wrong password" in capsys.readouterr().err
    monkeypatch.setenv(PASSWORD_ENV, "sam-password")
    assert main(["sign", run_path.stem, "--meaning", "approved", "--user", "sam", *common]) == 1
    monkeypatch.setenv(PASSWORD_ENV, "quinn-password")
    argv = ["sign", run_path.stem, "--meaning", "approved", "--user", "quinn", "--json"]
    assert main([*argv, *common]) == 0
    signed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert signed["signer"] == "quinn" and signed["meaning"] == "approved"
    assert main(["verify", str(run_path), "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["signatures"] == 1 and verified["head_hash"] == signed["head_hash"]
    with _db(run_path) as conn:
        conn.execute(
            "UPDATE audit SET body = replace(body, 'look', 'lock') WHERE kind = ?",
            ("operator_action",),
        )
    assert main(["verify", str(run_path), "--json"]) == 1
    captured = capsys.readouterr()
    assert f"signature at entry {signed['seq']} (approved by quinn" in captured.err
    doc = json.loads(captured.out)
    assert doc["broken_signatures"][0]["signer"] == "quinn"
    assert main(["sign", "no-such-run", "--meaning", "reviewed", "--user", "sam", *common]) == 2


def test_the_report_shows_the_signatures_and_the_audit_trail_review(run_path, tmp_path):
    from host.report import build_report

    sig = _signed(run_path)
    rec = RunRecord.open(run_path, readonly=True)
    try:
        html = build_report(rec)
    finally:
        rec.close()
    assert "<h2>Signatures</h2>" in html and "Quinn QA (quinn)" in html
    assert "approved" in html and f"entry {sig - 1}" in html and "BROKEN" not in html
    assert "Audit trail review" in html and "recipe demo" in html and "prime" in html
    # A change after signing: the report says which signature no longer holds.
    with _db(run_path) as conn:
        body = conn.execute("SELECT body FROM audit WHERE kind = 'change'").fetchone()[0]
        conn.execute(
            "UPDATE audit SET body = ? WHERE kind = 'change'", (body.replace("0.5", "5.0"),)
        )
    rec = RunRecord.open(run_path, readonly=True)
    try:
        assert "BROKEN by a later change" in build_report(rec)
    finally:
        rec.close()
