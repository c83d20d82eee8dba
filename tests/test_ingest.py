"""host.ingest: module messages through a real Mosquitto into the run record, nothing lost.

Five emulated reactor modules (the ingest benchmark's publisher, bench/bench_ingest.py)
send their births and then telemetry at 10 Hz for 2 s; the host side is MqttTransport ->
Registry -> RunRecord through ``Ingest``.  No timing assertions: the benchmark measures
speed; this checks that every sample arrives, decoded, in order and in the record.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest

from bench.bench_ingest import (
    RATE_HZ,
    connect_subscribed,
    module_ids,
    publisher_main,
    reactor_template,
)
from host.ingest import Ingest
from host.record import RunRecord, verify
from host.registry import Registry
from host.transport import InProcessBus, MqttTransport
from protocol import host_messages, messages
from protocol.topics import line_filter, module_topic

LINE = "ingesttest"
MODULES = 5
SECONDS = 2.0


def new_record(tmp_path, now_ms=0):
    return RunRecord.create(
        tmp_path,
        LINE,
        line_hash="0" * 64,
        recipe_name=None,
        recipe_hash=None,
        config_hashes={},
        metadata={},
        now_ms=now_ms,
    )


def test_five_modules_at_10_hz_through_mosquitto_every_sample_stored(broker, tmp_path):
    birth, rows = reactor_template()
    channels = [ch.name for ch in host_messages.parse_birth(birth).channels]
    ids = module_ids(MODULES)
    wall_ms = lambda: int(time.time() * 1000)  # noqa: E731
    rec = new_record(tmp_path, wall_ms())
    registry = Registry(LINE)
    ingest = Ingest(registry, rec, wall_ms, flush_every_ms=10, track_module_ms=True)
    others = []
    transport = MqttTransport(f"mqtt://{broker.host}:{broker.port}", "ingest-test-host")
    transport.subscribe(
        line_filter(LINE), lambda t, p: others.extend(ingest.handle(t, p, wall_ms()))
    )
    connect_subscribed(transport, f"bench/{LINE}/probe")

    parent, child = multiprocessing.Pipe()
    phases = [i / MODULES / RATE_HZ for i in range(MODULES)]
    url = f"mqtt://{broker.host}:{broker.port}"
    publisher = threading.Thread(
        target=publisher_main,
        args=(url, LINE, ids, phases, birth, rows, SECONDS, child),
        daemon=True,
    )
    publisher.start()
    try:
        assert parent.poll(15) and parent.recv() == "ready"
        parent.send(time.time() + 0.2)
        expected = MODULES * round(SECONDS * RATE_HZ)
        committed = []
        deadline = time.monotonic() + SECONDS + 15
        while len(committed) < expected and time.monotonic() < deadline:
            transport.poll(timeout_s=0.01)
            committed.extend(ingest.flush_if_due(wall_ms()) or [])
        committed.extend(ingest.flush())
        assert parent.poll(15)
        published = parent.recv()
        parent.send("bye")
    finally:
        publisher.join(20)
        transport.close()
    rec.close()

    assert published["published"] == expected and published["failed"] == 0
    assert [e.kind for e in others] == ["birth"] * MODULES  # no gap, nothing malformed
    assert ingest.samples == expected and len(committed) == expected
    for mid in ids:
        view = registry.modules[mid]
        assert view.online and view.kind == "reactor" and view.last_seq == expected // MODULES - 1

    conn = sqlite3.connect(f"file:{rec.path}?mode=ro", uri=True)
    try:
        stored = conn.execute(
            "SELECT module, seq, module_ms, channel, value FROM samples ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    assert len(stored) == expected * len(channels)
    # Per module: seq 0, 1, 2, ... in order, every channel, the values that were sent.
    per_module = {mid: [] for mid in ids}
    for module, seq, module_ms, channel, value in stored:
        per_module[module].append((seq, module_ms, channel, value))
    for mid, got in per_module.items():
        seqs = [seq for seq, _t, _c, _v in got[:: len(channels)]]
        assert seqs == list(range(expected // MODULES)), mid
        for seq, _t, channel, value in got:
            sent = rows[seq % len(rows)][channels.index(channel)]
            assert value == pytest.approx(sent, rel=1e-9), (mid, seq, channel)
    assert sorted(committed) == sorted(t for _m, _s, t, c, _v in stored if c == channels[0])
    sent_temps = [row[channels.index("temperature")] for row in rows[: expected // MODULES]]
    assert ingest.peaks[f"{ids[0]}.temperature"] == pytest.approx(max(sent_temps), rel=1e-9)
    assert verify(rec.path).ok


def test_flush_waits_for_the_oldest_sample_and_peaks_cover_only_sensors(tmp_path):
    birth, rows = reactor_template()
    b = host_messages.parse_birth(birth)
    codec = messages.TelemetryCodec(b.channels)
    now = [1000]
    rec = new_record(tmp_path)
    registry = Registry(LINE)
    ingest = Ingest(registry, rec, lambda: now[0], flush_every_ms=50, track_module_ms=True)
    bus = InProcessBus()
    host = bus.client("host")
    host.subscribe(line_filter(LINE), lambda t, p: ingest.handle(t, p, now[0]))
    module = bus.client("r0")
    module.publish(module_topic(LINE, b.module_id, "birth"), birth)
    module.publish(module_topic(LINE, b.module_id, "data"), codec.build(0, 7, rows[16]))
    bus.poll()
    assert ingest.samples == 1 and not ingest.flush_due(1049)
    assert ingest.flush_if_due(1049) is None
    now[0] = 1030
    module.publish(module_topic(LINE, b.module_id, "data"), codec.build(1, 8, rows[0]))
    bus.poll()
    assert ingest.flush_due(1050)  # the first sample's age counts, not the last one's
    assert ingest.flush_if_due(1050) == [7, 8]
    assert not ingest.flush_due(5000)  # nothing buffered
    sensors = {ch.name for ch in b.channels if ch.role == "sensor"}
    assert {key.split(".", 1)[1] for key in ingest.peaks} == sensors
    temp = [ch.name for ch in b.channels].index("temperature")
    assert ingest.peaks[f"{b.module_id}.temperature"] == pytest.approx(
        max(rows[16][temp], rows[0][temp]), rel=1e-9
    )
    rec.close()
    with pytest.raises(ValueError, match="flush_every_ms"):
        Ingest(registry, rec, lambda: 0, flush_every_ms=-1)
