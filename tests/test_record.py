"""The run record: storage, re-opening after a host restart, the hash chain and what
``verify`` detects, CSV export, and the ``skid verify``/``skid export`` commands."""

from __future__ import annotations

import csv
import json
import re
import sqlite3

import pytest

from host.cli import main
from host.record import (
    RecordError,
    RunNotFound,
    RunRecord,
    export_csv,
    find_run,
    verify,
)
from protocol.messages import Event

T0 = 1_700_000_000_000


def _values(i: int) -> dict:
    return {"temperature": 20.0 + i * 0.5, "pressure": 1.0 + i / 10}


def make_run(runs_dir, *, restart: bool = True) -> RunRecord:
    """A small but complete run: samples, events, commands, acks, operator action, phases,
    a trip, a host restart with its gap, and a finish."""
    rec = RunRecord.create(
        runs_dir,
        "demo",
        line_hash="11" * 32,
        recipe_name="demo",
        recipe_hash="22" * 32,
        config_hashes={"reactor1": "33" * 32, "pump_a": "44" * 32},
        metadata={"batch": "B-042", "lot": "L7", "operator": "ada"},
        now_ms=T0,
    )
    rec.host_session(T0, "host-1")
    rec.add_channels(
        T0,
        "reactor1",
        "reactor",
        [{"name": "temperature", "unit": "degC"}, {"name": "pressure", "unit": "bar"}],
    )
    rec.add_phase(T0, "prime", "start_pumps", "prime with solvent")
    rec.add_command(T0 + 10, "pump_a", 1, "set_setpoint", {"channel": "flow", "value": 0.5})
    rec.add_ack(T0 + 30, "pump_a", 1, "ok", None)
    rec.add_command(T0 + 40, "reactor1", 2, "state", {"command": "start"})
    rec.add_ack(T0 + 60, "reactor1", 2, "not_allowed_in_state", "no lease")
    for i in range(20):
        rec.add_sample(T0 + i * 100, "reactor1", 5000 + i * 100, i, _values(i), {})
    rec.add_sample(T0 + 2000, "reactor1", 7000, 20, {"temperature": None}, {"temperature": "bad"})
    rec.flush()
    rec.add_phase(T0 + 2000, "heat", "ramp", "heat to 80 degC")
    rec.add_event(
        T0 + 2100,
        "reactor1",
        {"number": 1, "t_ms": 7100, "type": 0, "severity": 1, "cause": "high_temperature"},
    )
    rec.add_operator_action(T0 + 2200, "ada", "hold", "sampling port check")
    if restart:
        rec.flush()
        rec.close()  # the host dies; a new host re-opens the record and continues
        rec = RunRecord.open(rec.run_id, runs_dir)
        rec.add_gap(T0 + 2200, T0 + 5000, "host restart")
        rec.host_session(T0 + 5000, "host-2")
    rec.add_event(
        T0 + 5100,
        "reactor1",
        Event(2, 10100, 2, 3, None, "over_temperature", "temperature 131.0 > 130", None, None),
    )
    rec.add_note(T0 + 5100, "trip", "reactor1 tripped", {"module": "reactor1"})
    rec.add_phase(T0 + 5200, "shutdown", "cool", "shutdown for over_temperature")
    for i in range(20, 30):
        rec.add_sample(T0 + 5000 + i * 10, "reactor1", 10000 + i * 10, i, _values(i), {})
    rec.finish(T0 + 6000, "aborted", {"trips": [{"module": "reactor1", "cause": "x"}]})
    return rec


@pytest.fixture
def run_path(tmp_path):
    rec = make_run(tmp_path)
    path = rec.path
    rec.close()
    return path


def _db(path):
    return sqlite3.connect(str(path), isolation_level=None)


def test_run_id_names_the_line_and_the_file_lives_in_the_runs_dir(tmp_path, run_path):
    assert run_path.parent == tmp_path
    assert re.fullmatch(r"\d{8}-\d{6}-demo-[0-9a-f]{4}\.sqlite", run_path.name)
    conn = _db(run_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_keeps_everything_across_a_host_restart(run_path):
    rec = RunRecord.open(run_path, readonly=True)
    meta = rec.meta()
    assert meta["run_id"] == run_path.stem
    assert meta["line_id"] == "demo" and meta["line_hash"] == "11" * 32
    assert meta["recipe_name"] == "demo" and meta["recipe_hash"] == "22" * 32
    assert meta["config_hashes"] == {"reactor1": "33" * 32, "pump_a": "44" * 32}
    assert meta["metadata"]["batch"] == "B-042" and meta["metadata"]["lot"] == "L7"
    assert meta["outcome"] == "aborted" and meta["finished_ms"] == T0 + 6000

    samples = list(rec.samples())
    assert len(samples) == 20 * 2 + 1 + 10 * 2
    temps = list(rec.samples("reactor1", "temperature"))
    assert [s["value"] for s in temps[:3]] == [20.0, 20.5, 21.0]
    bad = [s for s in temps if s["quality"] == "bad"]
    assert len(bad) == 1 and bad[0]["value"] is None and bad[0]["module_ms"] == 7000

    events = rec.events()
    assert [e["type"] for e in events] == ["alarm", "trip"]  # codes stored as names
    assert events[1]["cause"] == "over_temperature" and events[1]["severity"] == "critical"
    assert [p["phase"] for p in rec.phases()] == ["prime", "heat", "shutdown"]
    assert rec.gaps()[0]["start_ms"] == T0 + 2200 and rec.gaps()[0]["end_ms"] == T0 + 5000
    assert [s["host_id"] for s in rec.sessions()] == ["host-1", "host-2"]
    assert rec.operator_actions()[0] == {
        "seq": rec.operator_actions()[0]["seq"],
        "host_ms": T0 + 2200,
        "module": None,
        "who": "ada",
        "what": "hold",
        "reason": "sampling port check",
    }
    assert [(a["command_id"], a["result"]) for a in rec.acks()] == [
        (1, "ok"),
        (2, "not_allowed_in_state"),
    ]
    assert rec.channel_units()[("reactor1", "temperature")] == "degC"
    seqs = [e["seq"] for e in rec.audit()]
    assert seqs == list(range(1, len(seqs) + 1))  # one chain across both host sessions
    rec.close()


def test_sql_views_show_the_log_to_plain_sql_users(run_path):
    conn = _db(run_path)
    rows = conn.execute("SELECT module, type, cause FROM events ORDER BY seq").fetchall()
    assert rows == [
        ("reactor1", "alarm", "high_temperature"),
        ("reactor1", "trip", "over_temperature"),
    ]
    assert conn.execute("SELECT who, reason FROM operator_actions").fetchall() == [
        ("ada", "sampling port check")
    ]


def test_verify_passes_an_intact_record(run_path):
    result = verify(run_path)
    assert result.ok, result.reason
    assert result.first_bad is None
    assert result.samples == 61 and result.batches == 2
    assert result.head_hash == RunRecord.open(run_path, readonly=True).meta()["head_hash"]


def _seq_of(conn, kind, n=0):
    return conn.execute("SELECT seq FROM audit WHERE kind = ? ORDER BY seq", (kind,)).fetchall()[n][
        0
    ]


def _batch_seq(conn, batch):
    return conn.execute(
        "SELECT seq FROM audit WHERE kind = 'samples' AND json_extract(body, '$.batch') = ?",
        (batch,),
    ).fetchone()[0]


def test_verify_detects_an_edited_sample_value(run_path):
    conn = _db(run_path)
    conn.execute("UPDATE samples SET value = 25.0 WHERE id = 3")
    batch = conn.execute("SELECT batch FROM samples WHERE id = 3").fetchone()[0]
    result = verify(run_path)
    assert not result.ok
    assert result.first_bad == _batch_seq(conn, batch)
    assert "altered" in result.reason and f"batch {batch}" in result.reason


def test_verify_detects_a_deleted_or_inserted_sample(run_path):
    conn = _db(run_path)
    conn.execute("DELETE FROM samples WHERE id = (SELECT max(id) FROM samples)")
    result = verify(run_path)
    assert not result.ok and "deleted or inserted" in result.reason
    last_batch = conn.execute("SELECT max(batch) FROM samples").fetchone()[0]
    assert result.first_bad == _batch_seq(conn, last_batch)


def test_verify_detects_samples_inserted_under_a_batch_of_their_own(run_path):
    conn = _db(run_path)
    conn.execute(
        "INSERT INTO samples (batch, host_ms, module, module_ms, seq, channel, value, quality) "
        "VALUES (99, 1, 'reactor1', 1, 1, 'temperature', 20.0, 'good')"
    )
    result = verify(run_path)
    assert not result.ok and "batch 99" in result.reason and "inserted" in result.reason


def test_verify_detects_a_deleted_event(run_path):
    conn = _db(run_path)
    seq = _seq_of(conn, "event", 0)
    conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
    result = verify(run_path)
    assert not result.ok
    assert result.first_bad == seq and "missing" in result.reason


def test_verify_detects_an_edited_audit_row(run_path):
    conn = _db(run_path)
    seq = _seq_of(conn, "operator_action")
    body = conn.execute("SELECT body FROM audit WHERE seq = ?", (seq,)).fetchone()[0]
    conn.execute(
        "UPDATE audit SET body = ? WHERE seq = ?",
        (body.replace("sampling port check", "routine"), seq),
    )
    result = verify(run_path)
    assert not result.ok and result.first_bad == seq and "altered" in result.reason


def test_verify_detects_a_single_row_rehashed_without_the_rest(run_path):
    from host.record import canonical_json, chain_hash, entry_text

    conn = _db(run_path)
    seq = _seq_of(conn, "ack", 1)
    host_ms, kind, module, body, prev = conn.execute(
        "SELECT host_ms, kind, module, body, prev_hash FROM audit WHERE seq = ?", (seq,)
    ).fetchone()
    data = json.loads(body)
    data["result"] = "ok"  # pretend the refused start was accepted
    new_body = canonical_json(data)
    new_hash = chain_hash(prev, entry_text(seq, host_ms, kind, module, new_body))
    conn.execute("UPDATE audit SET body = ?, hash = ? WHERE seq = ?", (new_body, new_hash, seq))
    result = verify(run_path)
    assert not result.ok and result.first_bad == seq
    assert "re-hashed" in result.reason


def test_verify_detects_an_edited_meta_table(run_path):
    conn = _db(run_path)
    conn.execute("UPDATE meta SET value = '\"B-999\"' WHERE key = 'recipe_hash'")
    result = verify(run_path)
    assert not result.ok and "recipe_hash" in result.reason


def test_buffered_entries_are_written_by_flush_and_readers_see_them(tmp_path):
    rec = make_run(tmp_path, restart=False)
    rec.add_sample(T0 + 7000, "pump_a", 1, 0, {"pressure": 2.5}, {})
    conn = _db(rec.path)
    before = conn.execute("SELECT count(*) FROM samples WHERE module = 'pump_a'").fetchone()[0]
    rec.flush()
    after = conn.execute("SELECT count(*) FROM samples WHERE module = 'pump_a'").fetchone()[0]
    assert (before, after) == (0, 1)
    rec.close()
    assert verify(rec.path).ok
    with pytest.raises(RecordError, match="closed"):
        rec.add_phase(0, "x", None, "")


def test_create_refuses_an_existing_run_id(tmp_path, run_path):
    with pytest.raises(RecordError, match="already exists"):
        RunRecord.create(
            tmp_path,
            "demo",
            line_hash="",
            recipe_name=None,
            recipe_hash=None,
            config_hashes={},
            metadata={},
            now_ms=0,
            run_id=run_path.stem,
        )


def test_find_run_by_id_prefix_and_path_with_clear_errors(tmp_path, run_path):
    assert find_run(run_path.stem, tmp_path) == run_path
    assert find_run(run_path.stem[:10], tmp_path) == run_path
    assert find_run(str(run_path)) == run_path
    with pytest.raises(RunNotFound, match=re.escape(run_path.stem)):
        find_run("nope", tmp_path)  # the message lists the runs that exist
    with pytest.raises(RunNotFound, match="holds no run records"):
        find_run("nope", tmp_path / "empty")


def _read_csv(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_export_csv_round_trips_the_record(tmp_path, run_path):
    out = tmp_path / "out"
    files = export_csv(run_path, out)
    assert {f.name for f in files} == {
        "samples.csv",
        "events.csv",
        "commands.csv",
        "operator_actions.csv",
        "phases.csv",
        "changes.csv",
        "signatures.csv",
        "audit.csv",
        "meta.json",
    }
    rec = RunRecord.open(run_path, readonly=True)
    stored = list(rec.samples())
    rows = _read_csv(out / "samples.csv")
    assert len(rows) == len(stored)
    for row, s in zip(rows, stored, strict=True):
        assert int(row["host_ms"]) == s["host_ms"] and row["module"] == s["module"]
        assert row["channel"] == s["channel"] and row["quality"] == s["quality"]
        assert (float(row["value"]) if row["value"] else None) == s["value"]
    assert rows[0]["unit"] == "degC" and rows[1]["unit"] == "bar"

    events = _read_csv(out / "events.csv")
    assert [(e["type"], e["cause"]) for e in events] == [
        ("alarm", "high_temperature"),
        ("trip", "over_temperature"),
    ]
    commands = _read_csv(out / "commands.csv")
    assert [(c["command_id"], c["op"], c["result"], c["latency_ms"]) for c in commands] == [
        ("1", "set_setpoint", "ok", "20"),
        ("2", "state", "not_allowed_in_state", "20"),
    ]
    assert json.loads(commands[0]["args"]) == {"channel": "flow", "value": 0.5}
    audit = _read_csv(out / "audit.csv")
    assert [int(a["seq"]) for a in audit] == [e["seq"] for e in rec.audit()]
    assert audit[-1]["hash"] == rec.meta()["head_hash"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["metadata"]["batch"] == "B-042" and meta["verify"]["ok"] is True
    rec.close()


def test_cli_verify_exit_codes_and_json(tmp_path, run_path, capsys):
    assert main(["verify", run_path.stem, "--runs-dir", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["ok"] is True and doc["first_bad"] is None
    head = doc["head_hash"]
    assert main(["verify", str(run_path), "--expect-head", head]) == 0
    capsys.readouterr()
    assert main(["verify", str(run_path), "--expect-head", "ab" * 32, "--json"]) == 1
    assert "not in the chain" in json.loads(capsys.readouterr().out.strip())["reason"]

    conn = _db(run_path)
    seq = _seq_of(conn, "phase", 1)
    conn.execute("UPDATE audit SET host_ms = host_ms + 1 WHERE seq = ?", (seq,))
    assert main(["verify", run_path.stem, "--runs-dir", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["first_bad"] == seq
    assert f"entry {seq}" in captured.err

    assert main(["verify", "no-such-run", "--runs-dir", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_export_writes_csv(tmp_path, run_path, capsys):
    out = tmp_path / "csv"
    assert main(["export", run_path.stem, "--runs-dir", str(tmp_path), "-o", str(out)]) == 0
    assert (out / "samples.csv").is_file() and (out / "meta.json").is_file()
    assert main(["export", "missing", "--runs-dir", str(tmp_path)]) == 2


def test_a_file_that_is_not_a_record_is_reported_not_crashed_on(tmp_path, capsys):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    with pytest.raises(RecordError, match="not a readable run record"):
        RunRecord.open(junk)
    assert not verify(junk).ok
    assert main(["verify", str(junk)]) == 1
    assert main(["report", str(junk)]) == 1
    assert "not a readable run record" in capsys.readouterr().err


def test_a_failed_flush_loses_nothing_and_the_chain_stays_intact(tmp_path):
    rec = RunRecord.create(
        tmp_path, "line1", line_hash="l", recipe_name="r", recipe_hash="h",
        config_hashes={}, metadata={}, now_ms=1_000,
    )  # fmt: skip
    rec.add_sample(1_100, "m1", 10, 0, {"t": 1.0}, {"t": "good"})
    rec.add_note(1_100, "n", "before the failure")

    class FailOnce:
        """The connection, with one commit that fails (disk full, lock timeout)."""

        def __init__(self, conn):
            self.conn, self.failed = conn, False

        def execute(self, sql, *a):
            if sql == "COMMIT" and not self.failed:
                self.failed = True
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *a)

        def __getattr__(self, name):
            return getattr(self.conn, name)

    real = rec._conn
    rec._conn = FailOnce(real)
    with pytest.raises(sqlite3.OperationalError):
        rec.flush()
    rec.add_sample(1_200, "m1", 20, 1, {"t": 2.0}, {"t": "good"})
    rec.add_note(1_200, "n", "after the failure")
    rec.flush()  # retries what failed, then writes the new entries
    rec._conn = real
    rec.close()
    result = verify(rec.path)
    assert result.ok, result.reason
    reopened = RunRecord.open(rec.path, readonly=True)
    try:
        assert [r["value"] for r in reopened.samples(module="m1")] == [1.0, 2.0]
        assert [n["text"] for n in reopened.notes()] == ["before the failure", "after the failure"]
    finally:
        reopened.close()
