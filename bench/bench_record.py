"""Run-record ingest: how many telemetry samples per second ``host.record.RunRecord``
stores, against a bare SQLite insert of the same rows measured in the same run.

The load is the issue's target shape: 500 modules at 10 Hz, each sample carrying 3
channels (15,000 stored rows per second of plant time), flushed every 0.5 s of plant time
(2,500 samples per flush) as the coordinator does.  Ours includes building the rows, the
batch digest, the chained audit entry and the WAL commit (synchronous=NORMAL); the peer
does only ``executemany`` of the same rows in one transaction per flush, same pragmas.
Also timed: ``verify`` over the resulting file.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from bench.common import record
from host.record import RunRecord, verify

MODULES = 500
RATE_HZ = 10
SECONDS = 12  # plant seconds of load per measurement
FLUSH_EVERY = 5  # ticks (0.5 s)
VALUES = {"temperature": 80.123456, "pressure": 5.0123, "flow": 0.5}
QUALITY: dict[str, str] = {}


def _ours(runs_dir: Path) -> tuple[float, Path]:
    rec = RunRecord.create(
        runs_dir,
        "bench",
        line_hash="0" * 64,
        recipe_name=None,
        recipe_hash=None,
        config_hashes={},
        metadata={},
        now_ms=0,
    )
    names = [f"module_{m:03d}" for m in range(MODULES)]
    started = time.perf_counter()
    for tick in range(SECONDS * RATE_HZ):
        t = tick * 100
        for name in names:
            rec.add_sample(t, name, t, tick & 255, VALUES, QUALITY)
        if tick % FLUSH_EVERY == FLUSH_EVERY - 1:
            rec.flush()
    rec.flush()
    elapsed = time.perf_counter() - started
    rec.close()
    return MODULES * SECONDS * RATE_HZ / elapsed, rec.path


def _peer(path: Path) -> float:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE samples (id INTEGER PRIMARY KEY, host_ms INTEGER, module TEXT, "
        "module_ms INTEGER, seq INTEGER, channel TEXT, value REAL, quality TEXT)"
    )
    names = [f"module_{m:03d}" for m in range(MODULES)]
    rows: list[tuple] = []
    sql = (
        "INSERT INTO samples (host_ms, module, module_ms, seq, channel, value, quality) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    started = time.perf_counter()
    for tick in range(SECONDS * RATE_HZ):
        t = tick * 100
        for name in names:
            for ch, v in VALUES.items():
                rows.append((t, name, t, tick & 255, ch, v, "good"))
        if tick % FLUSH_EVERY == FLUSH_EVERY - 1:
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            rows = []
    elapsed = time.perf_counter() - started
    conn.close()
    return MODULES * SECONDS * RATE_HZ / elapsed


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ours, peer = 0.0, 0.0
        for i in range(3):  # best of 3 each
            rate, path = _ours(tmp_path / f"ours{i}")
            ours = max(ours, rate)
            peer = max(peer, _peer(tmp_path / f"peer{i}.sqlite"))
        started = time.perf_counter()
        result = verify(path)
        verify_rate = result.samples / (time.perf_counter() - started)
        assert result.ok, result.reason
    us_ours, us_peer = 1e6 / ours, 1e6 / peer
    return [
        record(
            "run record ingest (500 modules x 10 Hz, 3 channels)",
            ours,
            "samples/s",
            target=">=5000",
        ),
        record(
            "run record cost per sample (3 channels)",
            us_ours,
            "us",
            peer="bare sqlite3 executemany",
            peer_value=us_peer,
            target="<=3.0x",
        ),
        record("run record verify", verify_rate, "stored rows/s", target=">=50000"),
    ]
