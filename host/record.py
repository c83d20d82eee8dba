"""The run record: one SQLite file per run, with a hash-chained audit log.

Layout (schema version 1; see docs/run-record.md):

* ``audit`` — the log.  Every event, command, ack, operator action, phase, note, gap,
  host session, channel list and the run's start and finish is one row
  ``(seq, host_ms, kind, module, body, prev_hash, hash)`` where ``body`` is the canonical
  JSON of the entry's data and ``hash = sha256(prev_hash || entry)``, ``entry`` being the
  canonical JSON array ``[seq, host_ms, kind, module, data]``.  The first row's
  ``prev_hash`` is 64 zeros.
* ``samples`` — telemetry, one row per channel value, kept out of the chain for speed.
  Each flush writes its rows under a new batch number and appends one ``samples`` audit
  entry holding the batch's row count and a sha256 over its canonical rows, so a sample
  edited, deleted or inserted breaks its batch's digest.
* ``meta`` — a key/value copy of the run's description for plain SQL users; ``verify``
  checks it against the chained ``run`` and ``finish`` entries.
* views ``events``, ``commands``, ``acks``, ``operator_actions``, ``phases``, ``notes`` and
  ``gaps`` over ``audit`` for SQL users (read-only conveniences).

Writes are buffered and written by ``flush()`` in one transaction (WAL, synchronous=NORMAL):
the host stores thousands of samples per second.  A host crash loses at most what was added
since the last flush; the next session records the gap.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from protocol.constants import EVENT_TYPE_NAMES, SEVERITY_NAMES

SCHEMA_VERSION = 1
GENESIS_HASH = "0" * 64
SUFFIX = ".sqlite"

# Audit entry kinds.
KIND_RUN = "run"
KIND_SAMPLES = "samples"
KIND_EVENT = "event"
KIND_COMMAND = "command"
KIND_ACK = "ack"
KIND_OPERATOR = "operator_action"
KIND_PHASE = "phase"
KIND_NOTE = "note"
KIND_GAP = "gap"
KIND_SESSION = "session"
KIND_CHANNELS = "channels"
KIND_FINISH = "finish"
KIND_SEGMENT = "segment"  # the outlet's volume, one entry per segment (host/quality.py)
# A setpoint, interlock, mode or recipe change with old and new value, who and why.
KIND_CHANGE = "change"
# An electronic signature (``skid sign``): signer, role, meaning, time, the head it covers.
KIND_SIGNATURE = "signature"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    host_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    module TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_kind ON audit (kind, seq);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL,
    host_ms INTEGER NOT NULL,
    module TEXT NOT NULL,
    module_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    channel TEXT NOT NULL,
    value REAL,
    quality TEXT NOT NULL
);
CREATE VIEW IF NOT EXISTS events AS SELECT seq, host_ms, module,
    json_extract(body, '$.number') AS number, json_extract(body, '$.t_ms') AS t_ms,
    json_extract(body, '$.type') AS type, json_extract(body, '$.severity') AS severity,
    json_extract(body, '$.source') AS source, json_extract(body, '$.cause') AS cause,
    json_extract(body, '$.detail') AS detail, json_extract(body, '$.count') AS count,
    json_extract(body, '$.new_state') AS new_state
    FROM audit WHERE kind = 'event';
CREATE VIEW IF NOT EXISTS commands AS SELECT seq, host_ms, module,
    json_extract(body, '$.command_id') AS command_id, json_extract(body, '$.op') AS op,
    json_extract(body, '$.args') AS args FROM audit WHERE kind = 'command';
CREATE VIEW IF NOT EXISTS acks AS SELECT seq, host_ms, module,
    json_extract(body, '$.command_id') AS command_id, json_extract(body, '$.result') AS result,
    json_extract(body, '$.reason') AS reason FROM audit WHERE kind = 'ack';
CREATE VIEW IF NOT EXISTS operator_actions AS SELECT seq, host_ms,
    json_extract(body, '$.who') AS who, json_extract(body, '$.what') AS what,
    json_extract(body, '$.reason') AS reason FROM audit WHERE kind = 'operator_action';
CREATE VIEW IF NOT EXISTS phases AS SELECT seq, host_ms,
    json_extract(body, '$.phase') AS phase, json_extract(body, '$.step') AS step,
    json_extract(body, '$.text') AS text FROM audit WHERE kind = 'phase';
CREATE VIEW IF NOT EXISTS notes AS SELECT seq, host_ms,
    json_extract(body, '$.kind') AS kind, json_extract(body, '$.text') AS text,
    json_extract(body, '$.data') AS data FROM audit WHERE kind = 'note';
CREATE VIEW IF NOT EXISTS gaps AS SELECT seq, host_ms,
    json_extract(body, '$.start_ms') AS start_ms, json_extract(body, '$.end_ms') AS end_ms,
    json_extract(body, '$.reason') AS reason FROM audit WHERE kind = 'gap';
CREATE VIEW IF NOT EXISTS segments AS SELECT seq, host_ms,
    json_extract(body, '$.start_s') AS start_s, json_extract(body, '$.end_s') AS end_s,
    json_extract(body, '$.volume_ml') AS volume_ml, json_extract(body, '$.status') AS status,
    json_extract(body, '$.why') AS why, json_extract(body, '$.estimate') AS estimate
    FROM audit WHERE kind = 'segment';
CREATE VIEW IF NOT EXISTS changes AS SELECT seq, host_ms, module,
    json_extract(body, '$.what') AS what, json_extract(body, '$.channel') AS channel,
    json_extract(body, '$.old') AS old, json_extract(body, '$.new') AS new,
    json_extract(body, '$.who') AS who, json_extract(body, '$.why') AS why,
    json_extract(body, '$.authenticated') AS authenticated FROM audit WHERE kind = 'change';
CREATE VIEW IF NOT EXISTS signatures AS SELECT seq, host_ms,
    json_extract(body, '$.signer') AS signer, json_extract(body, '$.role') AS role,
    json_extract(body, '$.meaning') AS meaning, json_extract(body, '$.signed_utc') AS signed_utc,
    json_extract(body, '$.covers_seq') AS covers_seq,
    json_extract(body, '$.covers_hash') AS covers_hash FROM audit WHERE kind = 'signature';
"""

# Protocol enumerations arrive as codes from some callers; the record stores names.
_EVENT_FIELDS = (
    "number",
    "t_ms",
    "type",
    "severity",
    "source",
    "cause",
    "detail",
    "count",
    "new_state",
)


class RecordError(Exception):
    """A run record cannot be created, opened or read."""


class RunNotFound(RecordError, LookupError):
    """No run matches what was asked for (the message lists what exists)."""


def canonical_json(value) -> str:
    """Sorted keys, no spaces, UTF-8 text: the one spelling a hash is computed over.
    Bytes become lowercase hex; non-finite floats become null (SQLite cannot keep NaN)."""
    return json.dumps(
        _jsonable(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def entry_text(seq: int, host_ms: int, kind: str, module: str | None, body: str) -> str:
    """The canonical JSON array an audit entry's hash covers (``body`` already canonical)."""
    return f"[{seq},{host_ms},{json.dumps(kind)},{json.dumps(module, ensure_ascii=False)},{body}]"


def chain_hash(prev_hash: str, text: str) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + text.encode("utf-8")).hexdigest()


def sample_row_text(row) -> bytes:
    """Canonical form of one stored sample row (host_ms, module, module_ms, seq, channel,
    value, quality): fields separated by 0x1f, value as Python's shortest float repr."""
    host_ms, module, module_ms, seq, channel, value, quality = row
    return f"{host_ms}\x1f{module}\x1f{module_ms}\x1f{seq}\x1f{channel}\x1f{value!r}\x1f{quality}\n".encode()


def new_run_id(line_id: str, now_s: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now_s is None else now_s))
    return f"{stamp}-{line_id}-{secrets.token_hex(2)}"


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error:
            pass  # a WAL database without its -shm file needs write access to be read
    conn = sqlite3.connect(str(path), isolation_level=None)
    return conn


def _float_or_none(value) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


class RunRecord:
    """One run's record.  Create it at the start of a run, or re-open it after a host
    restart (appends continue the chain).  Not thread-safe: the coordinator's thread owns it.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, *, writable: bool):
        self.path = Path(path)
        self._conn = conn
        self._writable = writable
        self._samples: list[tuple] = []
        self._pending: list[tuple] = []  # audit rows chained but not yet written
        # A failed flush's sample batches and chained rows, retried by the next flush.
        self._unwritten_groups: list[tuple[int, list[tuple]]] = []
        self._unwritten_pending: list[tuple] = []
        self._closed = False
        row = conn.execute("SELECT value FROM meta WHERE key = 'run_id'").fetchone()
        if row is None:
            raise RecordError(f"{self.path}: not a run record (no run_id in table meta)")
        self.run_id: str = json.loads(row[0])
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self._seq, self._head = (0, GENESIS_HASH) if last is None else (last[0], last[1])
        batch = conn.execute("SELECT max(batch) FROM samples").fetchone()[0]
        last_batch = conn.execute(
            "SELECT max(json_extract(body, '$.batch')) FROM audit WHERE kind = 'samples'"
        ).fetchone()[0]
        self._batch = max(batch or 0, last_batch or 0)

    # --- creation and opening ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        runs_dir,
        line_id: str,
        *,
        line_hash: str,
        recipe_name: str | None,
        recipe_hash: str | None,
        config_hashes: dict[str, str],
        metadata: dict[str, str],
        now_ms: int,
        run_id: str | None = None,
    ) -> RunRecord:
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_id = run_id or new_run_id(line_id)
        path = runs_dir / f"{run_id}{SUFFIX}"
        if path.exists():
            raise RecordError(f"{path}: a run record with id {run_id!r} already exists")
        conn = sqlite3.connect(str(path), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        description = {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "line_id": line_id,
            "line_hash": line_hash,
            "recipe_name": recipe_name,
            "recipe_hash": recipe_hash,
            "config_hashes": dict(config_hashes),
            "metadata": dict(metadata),
            "created_ms": int(now_ms),
        }
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [(k, canonical_json(v)) for k, v in description.items()],
        )
        conn.execute("COMMIT")
        rec = cls(path, conn, writable=True)
        rec._append(now_ms, KIND_RUN, None, description)
        rec.flush()
        return rec

    @classmethod
    def open(cls, path_or_run_id, runs_dir="runs", *, readonly: bool = False) -> RunRecord:
        path = find_run(path_or_run_id, runs_dir)
        conn = _connect(path, readonly)
        try:
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            return cls(path, conn, writable=not readonly)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise RecordError(f"{path}: not a readable run record ({exc})") from exc

    # --- writing ------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._closed:
            raise RecordError(f"{self.path}: the record is closed")
        if not self._writable:
            raise RecordError(f"{self.path}: opened read-only")

    def _append(self, host_ms: int, kind: str, module: str | None, data: dict) -> None:
        self._check_writable()
        host_ms = int(host_ms)
        body = canonical_json(data)
        self._seq += 1
        digest = chain_hash(self._head, entry_text(self._seq, host_ms, kind, module, body))
        self._pending.append((self._seq, host_ms, kind, module, body, self._head, digest))
        self._head = digest

    def add_sample(
        self,
        host_ms: int,
        module: str,
        module_ms: int,
        seq: int,
        values: dict[str, float | None],
        quality: dict[str, str],
    ) -> None:
        """Buffer one telemetry sample (one stored row per channel); ``flush`` writes it."""
        host_ms, module_ms, seq = int(host_ms), int(module_ms), int(seq)
        rows = self._samples
        for channel, value in values.items():
            v = None if value is None else float(value)
            if v is not None and not math.isfinite(v):
                v = None  # SQLite stores NaN as NULL; keep the stored row and its digest equal
            rows.append((host_ms, module, module_ms, seq, channel, v, quality.get(channel, "good")))

    def add_event(self, host_ms: int, module: str, event) -> None:
        """A module's event: a dict of protocol Event fields or a protocol ``Event``."""
        self._append(host_ms, KIND_EVENT, module, _event_data(event))

    def add_command(self, host_ms: int, module: str, command_id: int, op: str, args) -> None:
        self._append(
            host_ms,
            KIND_COMMAND,
            module,
            {"command_id": command_id, "op": op, "args": args if args is not None else {}},
        )

    def add_ack(
        self, host_ms: int, module: str, command_id: int, result: str, reason: str | None
    ) -> None:
        self._append(
            host_ms,
            KIND_ACK,
            module,
            {"command_id": command_id, "result": result, "reason": reason},
        )

    def add_operator_action(
        self, host_ms: int, who: str, what: str, reason: str, **identity
    ) -> None:
        """``identity``: role, authenticated, signed of ``who`` when known (``--user``)."""
        data = {"who": who, "what": what, "reason": reason}
        data.update(identity)
        self._append(host_ms, KIND_OPERATOR, None, data)

    def add_change(
        self,
        host_ms: int,
        what: str,
        module: str | None,
        old,
        new,
        who: str,
        why: str,
        **extra,
    ) -> None:
        """A change someone or something made during the run: ``what`` is ``setpoint``,
        ``interlock``, ``mode`` or ``recipe``; ``old`` and ``new`` its value before and
        after (``old`` None when unknown); ``who`` the user (``authenticated`` in
        ``extra`` says whether they logged in) or ``recipe NAME``; ``why`` the reason."""
        data = {"what": what, "old": old, "new": new, "who": who, "why": why}
        data.update(extra)
        self._append(host_ms, KIND_CHANGE, module, data)

    def add_signature(self, signer: dict, meaning: str, comment: str, signed_utc: str) -> dict:
        """Append one signature covering the chain as it stands (its head hash), and write
        it.  ``signer`` is the authenticated user (name, full_name, role).  The rules of who
        may sign what are ``host/commands/sign.py``'s; this only records."""
        self.flush()
        last = self._conn.execute("SELECT max(host_ms) FROM audit").fetchone()[0] or 0
        data = {
            "signer": signer["name"],
            "full_name": signer.get("full_name") or signer["name"],
            "role": signer["role"],
            "meaning": meaning,
            "comment": comment,
            "signed_utc": signed_utc,
            "covers_seq": self._seq,
            "covers_hash": self._head,
        }
        self._append(last, KIND_SIGNATURE, None, data)
        self.flush()
        return data

    def add_phase(self, host_ms: int, phase: str, step: str | None, text: str) -> None:
        self._append(host_ms, KIND_PHASE, None, {"phase": phase, "step": step, "text": text})

    def add_note(self, host_ms: int, kind: str, text: str, data: dict | None = None) -> None:
        """Births, deaths, trips seen, line-wide reactions: anything worth a line in the log.
        A note's ``data`` may carry ``module``; a birth note may carry ``channels``."""
        module = (data or {}).get("module")
        self._append(
            host_ms,
            KIND_NOTE,
            module if isinstance(module, str) else None,
            {"kind": kind, "text": text, "data": data or {}},
        )

    def add_channels(self, host_ms: int, module: str, kind: str | None, channels) -> None:
        """A module's channel list (from its birth): names, units and ranges, which the
        report uses to group plots.  ``channels``: protocol Channel objects or dicts with
        name, unit and optionally role, lo, hi."""
        listed = []
        for ch in channels:
            if isinstance(ch, dict):
                get = ch.get
            else:
                get = lambda k, _ch=ch: getattr(_ch, k, None)  # noqa: E731
            listed.append(
                {
                    "name": get("name"),
                    "unit": get("unit"),
                    "role": get("role"),
                    "lo": get("lo"),
                    "hi": get("hi"),
                }
            )
        self._append(host_ms, KIND_CHANNELS, module, {"kind": kind, "channels": listed})

    def add_gap(self, start_ms: int, end_ms: int, reason: str) -> None:
        """Time nobody recorded (host restart): appended when the record is re-opened."""
        self._append(
            end_ms,
            KIND_GAP,
            None,
            {"start_ms": int(start_ms), "end_ms": int(end_ms), "reason": reason},
        )

    def host_session(self, host_ms: int, host_id: str) -> None:
        """A host (re)attached to this run; each host process starts one session."""
        self._append(host_ms, KIND_SESSION, None, {"host_id": host_id, "pid": os.getpid()})

    def flush(self) -> None:
        """Write buffered samples (as one batch with its digest) and chained entries, in one
        transaction."""
        if self._closed or not self._writable:
            return
        # What a failed flush could not write is retried first, unchanged: its entries
        # are already in the chain (in memory), so dropping them would break it.
        groups = list(self._unwritten_groups)
        pending = list(self._unwritten_pending)
        samples, self._samples = self._samples, []
        if samples:
            self._batch += 1
            digest = hashlib.sha256()
            for row in samples:
                digest.update(sample_row_text(row))
            first_ms, last_ms = samples[0][0], samples[-1][0]
            self._append(
                last_ms,
                KIND_SAMPLES,
                None,
                {
                    "batch": self._batch,
                    "count": len(samples),
                    "sha256": digest.hexdigest(),
                    "first_ms": first_ms,
                    "last_ms": last_ms,
                },
            )
            groups.append((self._batch, samples))
        new_pending, self._pending = self._pending, []
        pending.extend(new_pending)
        if not pending:
            return
        conn = self._conn
        conn.execute("BEGIN")
        try:
            for batch_row, rows in groups:
                conn.executemany(
                    "INSERT INTO samples (batch, host_ms, module, module_ms, seq, channel, "
                    f"value, quality) VALUES ({int(batch_row)}, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            conn.executemany(
                "INSERT INTO audit (seq, host_ms, kind, module, body, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                pending,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._unwritten_groups = groups
            self._unwritten_pending = pending
            raise
        self._unwritten_groups = []
        self._unwritten_pending = []

    def finish(self, host_ms: int, outcome: str, summary: dict) -> None:
        """The run's end: its segments (the outlet's volume: in spec, off spec, diverted,
        each with why and whether it is an estimate from setpoints) in the audit chain,
        then the outcome and the summary."""
        for seg in summary.get("segments") or ():
            self._append(host_ms, KIND_SEGMENT, None, seg)
        self._append(host_ms, KIND_FINISH, None, {"outcome": outcome, "summary": summary})
        self.flush()
        self._conn.execute("BEGIN")
        self._conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [
                ("outcome", canonical_json(outcome)),
                ("finished_ms", canonical_json(int(host_ms))),
                ("summary", canonical_json(summary)),
            ],
        )
        self._conn.execute("COMMIT")

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def head_hash(self) -> str:
        """Hash of the last chained entry (including entries not yet flushed)."""
        return self._head

    # --- reading ------------------------------------------------------------------------

    def _reading(self) -> sqlite3.Connection:
        if self._closed:
            raise RecordError(f"{self.path}: the record is closed")
        self.flush()
        return self._conn

    def meta(self) -> dict:
        """The run's description from its chained ``run`` entry, plus ``outcome``,
        ``summary`` and ``finished_ms`` once finished, ``head_hash`` and ``entries``."""
        conn = self._reading()
        row = conn.execute("SELECT body FROM audit WHERE kind = 'run' ORDER BY seq LIMIT 1")
        first = row.fetchone()
        out = json.loads(first[0]) if first else {"run_id": self.run_id}
        fin = conn.execute(
            "SELECT host_ms, body FROM audit WHERE kind = 'finish' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if fin:
            body = json.loads(fin[1])
            out.update(outcome=body["outcome"], summary=body["summary"], finished_ms=fin[0])
        else:
            out.update(outcome=None, summary=None, finished_ms=None)
        last = conn.execute("SELECT max(host_ms), max(seq) FROM audit").fetchone()
        out["last_ms"] = last[0]
        out["entries"] = last[1] or 0
        out["head_hash"] = self._head
        out["path"] = str(self.path)
        return out

    def samples(self, module: str | None = None, channel: str | None = None) -> Iterator[dict]:
        """Stored samples in storage order: dicts with host_ms, module, module_ms, seq,
        channel, value, quality."""
        sql = "SELECT host_ms, module, module_ms, seq, channel, value, quality FROM samples"
        where, args = [], []
        if module is not None:
            where.append("module = ?")
            args.append(module)
        if channel is not None:
            where.append("channel = ?")
            args.append(channel)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        keys = ("host_ms", "module", "module_ms", "seq", "channel", "value", "quality")
        for row in self._reading().execute(sql, args):
            yield dict(zip(keys, row, strict=True))

    def segments(self) -> list[dict]:
        """The outlet's volume as segments: {start_s, end_s, volume_ml, status, why,
        estimate}, in order (docs/run-record.md)."""
        return [e["data"] for e in self.entries(KIND_SEGMENT)]

    def entries(self, kind: str | None = None) -> Iterator[dict]:
        """Audit entries (decoded): seq, host_ms, kind, module, data, prev_hash, hash."""
        sql = "SELECT seq, host_ms, kind, module, body, prev_hash, hash FROM audit"
        args: list = []
        if kind is not None:
            sql += " WHERE kind = ?"
            args.append(kind)
        for seq, host_ms, k, module, body, prev, digest in self._reading().execute(
            sql + " ORDER BY seq", args
        ):
            yield {
                "seq": seq,
                "host_ms": host_ms,
                "kind": k,
                "module": module,
                "data": json.loads(body),
                "prev_hash": prev,
                "hash": digest,
            }

    def _flat(self, kind: str) -> list[dict]:
        out = []
        for e in self.entries(kind):
            row = {"seq": e["seq"], "host_ms": e["host_ms"], "module": e["module"]}
            row.update(e["data"])
            out.append(row)
        return out

    def events(self) -> list[dict]:
        """Module events: seq, host_ms, module and the Event fields (names, not codes)."""
        return self._flat(KIND_EVENT)

    def commands(self) -> list[dict]:
        return self._flat(KIND_COMMAND)

    def acks(self) -> list[dict]:
        return self._flat(KIND_ACK)

    def operator_actions(self) -> list[dict]:
        return self._flat(KIND_OPERATOR)

    def phases(self) -> list[dict]:
        """Phase/step changes: seq, host_ms, phase, step, text."""
        return self._flat(KIND_PHASE)

    def notes(self) -> list[dict]:
        return self._flat(KIND_NOTE)

    def gaps(self) -> list[dict]:
        """Unrecorded stretches: seq, host_ms, start_ms, end_ms, reason."""
        return self._flat(KIND_GAP)

    def sessions(self) -> list[dict]:
        return self._flat(KIND_SESSION)

    def changes(self) -> list[dict]:
        """The audit trail of changes: seq, host_ms, module, what, old, new, who, why (and
        channel, role, authenticated where known), in order."""
        return self._flat(KIND_CHANGE)

    def signatures(self) -> list[dict]:
        """The run's signatures in order: seq, host_ms, signer, full_name, role, meaning,
        comment, signed_utc, covers_seq, covers_hash (see ``signatures(record)``)."""
        return self._flat(KIND_SIGNATURE)

    def audit(self) -> list[dict]:
        """Every chained entry, in order (see ``entries`` for a lazy iterator)."""
        return list(self.entries())

    def channel_units(self) -> dict[tuple[str, str], str]:
        """(module, channel) -> unit, from channel lists and birth notes that carry them."""
        units: dict[tuple[str, str], str] = {}
        for e in self.entries():
            if e["kind"] == KIND_CHANNELS:
                chans, module = e["data"].get("channels") or [], e["module"]
            elif e["kind"] == KIND_NOTE and isinstance(e["data"].get("data"), dict):
                chans = e["data"]["data"].get("channels") or []
                module = e["module"] or e["data"]["data"].get("module")
            else:
                continue
            for ch in chans:
                if isinstance(ch, dict) and ch.get("name") and ch.get("unit") is not None:
                    units[(module, ch["name"])] = ch["unit"]
        return units


def signatures(record) -> list[dict]:
    """The signatures of ``record`` (a RunRecord, or a record's path): one dict each, in
    order, with seq, signer, full_name, role, meaning, comment, signed_utc (UTC, ISO 8601),
    covers_seq and covers_hash (the chain's head when it was signed).  Whether each still
    holds is ``verify(path).broken_signatures``."""
    if isinstance(record, RunRecord):
        return record.signatures()
    rec = RunRecord.open(Path(record), readonly=True)
    try:
        return rec.signatures()
    finally:
        rec.close()


def _event_data(event) -> dict:
    if not isinstance(event, dict):  # a protocol Event: its field "state" is the new state
        event = {f: getattr(event, f, None) for f in _EVENT_FIELDS[:-1]} | {
            "new_state": getattr(event, "state", None)
        }
    data = {f: event.get(f) for f in _EVENT_FIELDS}
    if data["new_state"] is None and event.get("state") is not None:
        data["new_state"] = event["state"]
    if isinstance(data["type"], int):
        data["type"] = EVENT_TYPE_NAMES[data["type"]]
    if isinstance(data["severity"], int):
        data["severity"] = SEVERITY_NAMES[data["severity"]]
    for k, v in event.items():  # keep anything extra the caller found worth recording
        if k not in data and k != "state":
            data[k] = v
    return data


# --- verification ---------------------------------------------------------------------


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    first_bad: int | None
    reason: str
    head_hash: str = GENESIS_HASH
    samples: int = 0
    batches: int = 0
    signatures: int = 0
    # The signatures a failure breaks: {seq, signer, meaning, signed_utc} each.
    broken_signatures: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad": self.first_bad,
            "reason": self.reason,
            "head_hash": self.head_hash,
            "samples": self.samples,
            "batches": self.batches,
            "signatures": self.signatures,
            "broken_signatures": list(self.broken_signatures),
        }


def verify(path) -> VerifyResult:
    """Check the audit chain, every sample batch's digest and the meta table.  ``first_bad``
    names the first audit entry (its ``seq``) found altered, missing or inserted; 0 when the
    fault is outside the chain (meta table, samples without a batch entry)."""
    path = Path(path)
    if not path.is_file():
        raise RunNotFound(f"{path}: no such run record")
    conn = _connect(path, readonly=True)
    try:
        return _verify(conn)
    except sqlite3.DatabaseError as exc:
        return VerifyResult(False, 0, 0, f"not a readable run record: {exc}")
    finally:
        conn.close()


class _Chain:
    """What walking the audit chain found: entries, head hash, sample batches recorded
    (batch -> (seq, count, sha256)), the run description and the finish entry."""

    def __init__(self):
        self.head = GENESIS_HASH
        self.n = 0
        self.batches: dict[int, tuple[int, int, str]] = {}
        self.run_entry: dict | None = None
        self.finish_entry: tuple[int, dict] | None = None
        self.signatures: list[tuple[int, dict]] = []
        self.changed_after: int | None = None  # an entry appended after this signature

    def bad(self, seq, reason) -> VerifyResult:
        return VerifyResult(False, self.n, seq, reason, self.head)


def _verify(conn: sqlite3.Connection) -> VerifyResult:
    chain = _Chain()
    failure = _verify_chain(conn, chain)
    if failure is None:
        total, failure = _verify_samples(conn, chain)
    if failure is None:
        failure = _verify_meta(conn, chain)
    if failure is not None:
        return _with_broken_signatures(conn, failure, chain.changed_after)
    signed = f", {len(chain.signatures)} signature(s)" if chain.signatures else ""
    return VerifyResult(
        True,
        chain.n,
        None,
        f"intact: {chain.n} chained entries, {total} samples in {len(chain.batches)} batches"
        + signed,
        chain.head,
        total,
        len(chain.batches),
        len(chain.signatures),
    )


def _signature_name(seq: int, data: dict) -> str:
    return (
        f"signature at entry {seq} ({data.get('meaning')} by {data.get('signer')}, "
        f"{data.get('signed_utc')})"
    )


def _with_broken_signatures(
    conn: sqlite3.Connection, failure: VerifyResult, changed_after: int | None
) -> VerifyResult:
    """A failure names every signature it breaks: each signature at or after the first
    bad entry (all of them when the fault is outside the chain, ``first_bad`` 0), since a
    signature covers everything chained before it; with an entry appended after signing,
    every signature from ``changed_after`` on."""
    first = failure.first_bad or 0 if changed_after is None else changed_after
    broken = []
    for seq, body in conn.execute(
        "SELECT seq, body FROM audit WHERE kind = ? AND seq >= ? ORDER BY seq",
        (KIND_SIGNATURE, first),
    ):
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        broken.append(
            {
                "seq": seq,
                "signer": data.get("signer"),
                "meaning": data.get("meaning"),
                "signed_utc": data.get("signed_utc"),
                "text": _signature_name(seq, data),
            }
        )
    if broken:
        failure.broken_signatures = broken
        failure.reason += "; breaks " + "; ".join(b["text"] for b in broken)
    return failure


def _check_signature_entry(chain: _Chain, seq: int, prev: str, data: dict):
    """A signature covers the chain up to the entry before it: its recorded head must be
    that entry's (a record rewritten and re-hashed before a signature fails here)."""
    if data.get("covers_seq") != seq - 1 or data.get("covers_hash") != prev:
        return chain.bad(
            seq,
            f"{_signature_name(seq, data)} covers entry {data.get('covers_seq')} with head "
            f"{str(data.get('covers_hash'))[:16]}..., but the chain before it is entry "
            f"{seq - 1} with head {prev[:16]}...: the record was rewritten",
        )
    chain.signatures.append((seq, data))
    return None


def _verify_chain(conn: sqlite3.Connection, chain: _Chain) -> VerifyResult | None:
    """Walk the audit log in seq order: every entry chained to the one before and hashing
    to its stored hash; collects what the later checks need into ``chain``."""
    expected_seq = 1
    rows = conn.execute(
        "SELECT seq, host_ms, kind, module, body, prev_hash, hash FROM audit ORDER BY seq"
    )
    for seq, host_ms, kind, module, body, prev, digest in rows:
        chain.n += 1
        if seq != expected_seq:
            if seq > expected_seq:
                missing = (
                    f"entry {expected_seq}"
                    if seq == expected_seq + 1
                    else f"entries {expected_seq}..{seq - 1}"
                )
                return chain.bad(expected_seq, f"{missing} missing (deleted) before entry {seq}")
            return chain.bad(seq, f"entry {seq} out of order")
        failure, data = _check_entry(chain, seq, host_ms, kind, module, body, prev, digest)
        if failure is not None:
            return failure
        if kind == KIND_SIGNATURE:
            failure = _check_signature_entry(chain, seq, prev, data)
            if failure is not None:
                return failure
        elif chain.signatures:
            chain.changed_after = chain.signatures[0][0]
            return chain.bad(seq, f"entry {seq} ({kind}) appended after signing")
        chain.head = digest
        expected_seq += 1
        if kind == KIND_SAMPLES:
            b = data.get("batch")
            if b in chain.batches:
                return chain.bad(seq, f"entry {seq}: sample batch {b} recorded twice")
            chain.batches[b] = (seq, data.get("count"), data.get("sha256"))
        elif kind == KIND_RUN and chain.run_entry is None:
            chain.run_entry = data
        elif kind == KIND_FINISH:
            chain.finish_entry = (host_ms, data)
    if chain.n == 0:
        return VerifyResult(False, 0, 1, "the audit log is empty (entry 1 missing)")
    if chain.run_entry is None:
        return chain.bad(1, "the chain has no run description entry")
    return None


def _check_entry(chain: _Chain, seq, host_ms, kind, module, body, prev, digest):
    """One audit entry: chained to the head so far, its hash and its canonical body.
    (the first failure or None, the entry's parsed body)."""
    if prev != chain.head:
        # Entry seq-1 hashed consistently, but not to what this entry was chained to:
        # if this entry's own hash still covers its stored prev_hash, it is intact and
        # entry seq-1 was rewritten and re-hashed; otherwise this entry's prev_hash moved.
        own = chain_hash(str(prev), entry_text(seq, int(host_ms), str(kind), module, str(body)))
        if own == digest and seq > 1:
            return chain.bad(
                seq - 1,
                f"entry {seq - 1} altered and re-hashed: entry {seq} was chained to a "
                "different hash",
            ), None
        return chain.bad(seq, f"entry {seq} altered: its prev_hash does not match the chain"), None
    try:
        recomputed = chain_hash(prev, entry_text(seq, int(host_ms), str(kind), module, str(body)))
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        return chain.bad(seq, f"entry {seq} ({kind}): unreadable ({exc})"), None
    if recomputed != digest:
        return chain.bad(
            seq, f"entry {seq} ({kind}) altered: its content does not match its hash"
        ), None
    if canonical_json(data) != body:
        return chain.bad(seq, f"entry {seq} ({kind}): body is not canonical JSON"), None
    return None, data


def _check_batch(chain: _Chain, batch, count: int, digest) -> VerifyResult | None:
    """One batch's sample rows against the audit entry that recorded them."""
    if batch not in chain.batches:  # first_bad 0: the fault lies outside the chain
        return chain.bad(
            0,
            f"{count} sample row(s) in batch {batch}, which no audit "
            "entry records (inserted samples)",
        )
    seq, want_count, want_sha = chain.batches[batch]
    if count != want_count:
        return chain.bad(
            seq,
            f"entry {seq}: sample batch {batch} holds {count} rows, "
            f"recorded {want_count} (samples deleted or inserted)",
        )
    if digest.hexdigest() != want_sha:
        return chain.bad(seq, f"entry {seq}: sample batch {batch} altered (digest mismatch)")
    return None


def _verify_samples(conn: sqlite3.Connection, chain: _Chain) -> tuple[int, VerifyResult | None]:
    """Stream the samples in storage order (each batch's rows are contiguous) and check
    every batch; (samples seen, the first failure or None)."""
    total = 0
    seen: set[int] = set()
    current: int | None = None
    digest = hashlib.sha256()
    count = 0
    for row in conn.execute(
        "SELECT batch, host_ms, module, module_ms, seq, channel, value, quality "
        "FROM samples ORDER BY id"
    ):
        b = row[0]
        if b != current:
            failure = None if current is None else _check_batch(chain, current, count, digest)
            if failure:
                return total, failure
            if b in seen:
                seq = chain.batches.get(b, (0,))[0]
                return total, chain.bad(
                    seq, f"sample rows of batch {b} are not contiguous (moved or inserted samples)"
                )
            seen.add(b)
            current, digest, count = b, hashlib.sha256(), 0
        digest.update(sample_row_text(row[1:]))
        count += 1
        total += 1
    failure = None if current is None else _check_batch(chain, current, count, digest)
    if failure:
        return total, failure
    for b, (seq, want_count, _) in sorted(chain.batches.items(), key=lambda kv: kv[1][0]):
        if b not in seen and want_count:
            return total, chain.bad(
                seq, f"entry {seq}: sample batch {b} ({want_count} rows) is missing"
            )
    return total, None


def _verify_meta(conn: sqlite3.Connection, chain: _Chain) -> VerifyResult | None:
    """The meta table is a convenience copy: it must agree with the chain."""
    meta = {k: v for k, v in conn.execute("SELECT key, value FROM meta")}
    assert chain.run_entry is not None  # _verify_chain returned a failure otherwise
    for key, value in chain.run_entry.items():
        if meta.get(key) != canonical_json(value):
            return chain.bad(1, f"meta table key {key!r} differs from the chained run entry")
    if chain.finish_entry is None:
        return None
    fin_ms, fin = chain.finish_entry
    for key, value in (
        ("outcome", fin.get("outcome")),
        ("summary", fin.get("summary")),
        ("finished_ms", fin_ms),
    ):
        if key in meta and meta[key] != canonical_json(value):
            return chain.bad(0, f"meta table key {key!r} differs from the chained finish entry")
    return None


# --- finding runs ---------------------------------------------------------------------


def list_runs(runs_dir="runs") -> list[Path]:
    d = Path(runs_dir)
    return sorted(d.glob(f"*{SUFFIX}")) if d.is_dir() else []


def find_run(run, runs_dir="runs") -> Path:
    """A run record's path from a path, a run id, or a unique prefix of a run id."""
    candidate = Path(run)
    if candidate.is_file():
        return candidate
    runs_dir = Path(runs_dir)
    text = str(run)
    if text.endswith(SUFFIX):
        text = text[: -len(SUFFIX)]
    exact = runs_dir / f"{text}{SUFFIX}"
    if exact.is_file():
        return exact
    existing = list_runs(runs_dir)
    matches = [p for p in existing if p.name.startswith(text)] if text else []
    if len(matches) == 1:
        return matches[0]
    names = [p.name[: -len(SUFFIX)] for p in existing]
    if len(matches) > 1:
        listed = ", ".join(p.name[: -len(SUFFIX)] for p in matches)
        raise RunNotFound(f"run {run!r} is ambiguous in {runs_dir}: matches {listed}")
    if not existing:
        raise RunNotFound(f"run {run!r} not found: {runs_dir} holds no run records")
    shown = ", ".join(names[-10:])
    more = f" (last 10 of {len(names)})" if len(names) > 10 else ""
    raise RunNotFound(f"run {run!r} not found in {runs_dir}; runs there{more}: {shown}")


# --- export ---------------------------------------------------------------------------


_SAMPLE_COLUMNS = [
    "host_ms",
    "t_s",
    "module",
    "module_ms",
    "seq",
    "channel",
    "unit",
    "value",
    "quality",
]
_COMMAND_COLUMNS = [
    "seq",
    "sent_ms",
    "module",
    "command_id",
    "op",
    "args",
    "ack_ms",
    "result",
    "reason",
    "latency_ms",
]


_CHANGE_COLUMNS = [
    "module",
    "what",
    "channel",
    "old",
    "new",
    "who",
    "why",
    "role",
    "authenticated",
    "signed",
]
_SIGNATURE_COLUMNS = [
    "signer",
    "full_name",
    "role",
    "meaning",
    "comment",
    "signed_utc",
    "covers_seq",
    "covers_hash",
]


def _sample_rows(rec: RunRecord, t0: int, units: dict):
    for s in rec.samples():
        yield [
            s["host_ms"],
            f"{(s['host_ms'] - t0) / 1000:.3f}",
            s["module"],
            s["module_ms"],
            s["seq"],
            s["channel"],
            units.get((s["module"], s["channel"]), ""),
            "" if s["value"] is None else repr(s["value"]),
            s["quality"],
        ]


def _command_rows(rec: RunRecord) -> list[list]:
    """Each command joined with its first ack, then the acks of commands this record
    never saw sent."""
    acks: dict[tuple[str | None, int], dict] = {}
    for a in rec.acks():
        acks.setdefault((a["module"], a["command_id"]), a)
    rows = []
    for c in rec.commands():
        a = acks.pop((c["module"], c["command_id"]), None)
        rows.append(
            [
                c["seq"],
                c["host_ms"],
                c["module"],
                c["command_id"],
                c["op"],
                canonical_json(c["args"]),
                _cell(a and a["host_ms"]),
                _cell(a and a["result"]),
                _cell(a and a["reason"]),
                _cell(a and a["host_ms"] - c["host_ms"]),
            ]
        )
    for a in acks.values():
        rows.append(
            [a["seq"], "", a["module"], a["command_id"], "", "", a["host_ms"], a["result"]]
            + [_cell(a["reason"]), ""]
        )
    return rows


def _audit_rows(rec: RunRecord):
    for e in rec.entries():
        yield [
            e["seq"],
            e["host_ms"],
            e["kind"],
            _cell(e["module"]),
            canonical_json(e["data"]),
            e["prev_hash"],
            e["hash"],
        ]


def _write_tables(rec: RunRecord, out: Path, t0: int, units: dict) -> list[Path]:
    """The CSV files of ``export_csv``; the paths written, in order."""
    written: list[Path] = []

    def table(name: str, header: list[str], rows) -> None:
        p = out / name
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        written.append(p)

    table("samples.csv", _SAMPLE_COLUMNS, _sample_rows(rec, t0, units))
    table(
        "events.csv",
        ["seq", "host_ms", "module", *_EVENT_FIELDS],
        (
            [e["seq"], e["host_ms"], e["module"], *(_cell(e.get(f)) for f in _EVENT_FIELDS)]
            for e in rec.events()
        ),
    )
    table("commands.csv", _COMMAND_COLUMNS, _command_rows(rec))
    table(
        "operator_actions.csv",
        ["seq", "host_ms", "who", "what", "reason"],
        (
            [o["seq"], o["host_ms"], o["who"], o["what"], o["reason"]]
            for o in rec.operator_actions()
        ),
    )
    table(
        "phases.csv",
        ["seq", "host_ms", "phase", "step", "text"],
        ([p["seq"], p["host_ms"], p["phase"], _cell(p["step"]), p["text"]] for p in rec.phases()),
    )
    table(
        "changes.csv",
        ["seq", "host_ms", *_CHANGE_COLUMNS],
        (
            [c["seq"], c["host_ms"], *(_cell(c.get(k)) for k in _CHANGE_COLUMNS)]
            for c in rec.changes()
        ),
    )
    table(
        "signatures.csv",
        ["seq", *_SIGNATURE_COLUMNS],
        ([s["seq"], *(_cell(s.get(k)) for k in _SIGNATURE_COLUMNS)] for s in rec.signatures()),
    )
    table(
        "audit.csv",
        ["seq", "host_ms", "kind", "module", "data", "prev_hash", "hash"],
        _audit_rows(rec),
    )
    return written


def export_csv(path, out_dir) -> list[Path]:
    """Write samples.csv (long format: one row per channel value), events.csv,
    commands.csv (each command joined with its ack), operator_actions.csv, phases.csv,
    changes.csv (the audit trail), signatures.csv, audit.csv and meta.json (with the verify
    result) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rec = RunRecord.open(Path(path), readonly=True)
    try:
        meta = rec.meta()
        units = rec.channel_units()
        written = _write_tables(rec, out, meta.get("created_ms") or 0, units)
    finally:
        rec.close()
    result = verify(path)
    meta["verify"] = result.as_dict()
    meta["units"] = {f"{m}.{c}": u for (m, c), u in sorted(units.items())}
    p = out / "meta.json"
    p.write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    written.append(p)
    return written


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return canonical_json(value)
    return value
