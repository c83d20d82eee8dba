"""The board's network path on a real MicroPython (the Unix port), against a real broker.

``tests/mpy/link_probe.py`` runs the real node, ``EdgeRunner`` and ``MqttLink`` under the
``micropython`` executable, with MicroPython's own asyncio and sockets.  Here the broker
is started, stopped and restarted by the test; a silent broker (accepts TCP, never
answers), a refused port and an unresolvable name (``broker.invalid``) stand for the
other ways a network fails.  In every case the tick loop must never be late by more than
``LATE_LIMIT_MS``: the link may be down, the control loop may not stall.

The worst late tick of each case is measured by the runner itself (``max_lateness_ms``:
how far a tick started after its deadline) and also written to bench/results.json by
``make bench`` (bench/bench_mpy_link.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from host.micropython_unix import micropython_binary, micropython_env
from protocol import host_messages
from protocol.topics import TOPIC_BIRTH, TOPIC_DEATH, TOPIC_EVENT, module_topic
from tests.broker import MosquittoBroker
from tests.mpy_link import LINE, MODULE, ROOT, SLOW_DNS, Probe, pump_config_bin, unreachable
from tests.mqtt_observer import Observer

LATE_LIMIT_MS = 100


@pytest.fixture(scope="module")
def config_bin(tmp_path_factory) -> Path:
    return pump_config_bin(tmp_path_factory.mktemp("mpy") / "config.bin")


def _events(observer):
    topic = module_topic(LINE, MODULE, TOPIC_EVENT)
    return [host_messages.parse_event(p) for t, p in observer.messages_under(topic)]


def test_outage_reconnects_rebirths_and_delivers_the_outage_events_in_order(config_bin):
    broker = MosquittoBroker(persistence=True).start()
    observer = Observer(broker.port, client_id="mpy-host", persistent=True)
    probe = Probe(config_bin, "127.0.0.1", broker.port, seconds=14, every_ms=200, queue=8)
    try:
        probe.wait_for(lambda p: (p.last_stat() or {}).get("births", 0) >= 1, 15, "first birth")
        broker.stop()
        probe.wait_for(lambda p: not p.last_stat()["up"], 10, "link down")
        time.sleep(3.0)  # ~15 probe events raised while down; the queue holds 8
        broker.start()
        res = probe.result()
        births = observer.messages_under(module_topic(LINE, MODULE, TOPIC_BIRTH))
        events = _events(observer)
    finally:
        probe.kill()
        observer.close()
        broker.close()
    assert res["connects"] >= 2 and res["births"] == res["connects"], res  # birth per connect
    assert len(births) >= 2
    # QoS 1 is at least once: an event whose PUBACK the outage cut off is sent again on
    # reconnect, so a number may arrive twice, next to itself; never out of order.
    numbers = [e.number for e in events]
    assert numbers == sorted(numbers), numbers  # in order
    events = [e for i, e in enumerate(events) if i == 0 or e.number != numbers[i - 1]]
    assert len(numbers) - len(events) <= 2, numbers  # the few in flight, not a replay
    probes = [int(e.detail.split()[1]) for e in events if (e.detail or "").startswith("probe ")]
    assert probes == sorted(probes)
    dropped = [e for e in events if e.type == "dropped"]
    assert res["dropped"] > 0 and dropped, "the outage overflowed the queue: say so"
    assert sum(e.count for e in dropped) == res["dropped"]
    # Every probe event is either delivered or counted as dropped.
    missing = set(range(1, max(probes) + 1)) - set(probes)
    assert 0 < len(missing) <= res["dropped"]
    assert res["max_late"] <= LATE_LIMIT_MS, res


def test_killed_micropython_module_is_announced_by_its_will(config_bin, broker):
    observer = Observer(broker.port, client_id="mpy-watch")
    probe = Probe(config_bin, "127.0.0.1", broker.port, seconds=30)
    try:
        probe.wait_for(lambda p: (p.last_stat() or {}).get("births", 0) >= 1, 15, "birth")
        probe.proc.send_signal(signal.SIGKILL)
        probe.proc.wait(5)
        deadline = time.monotonic() + 15  # keepalive 2 s: the broker notices in ~3 s
        topic = module_topic(LINE, MODULE, TOPIC_DEATH)
        while time.monotonic() < deadline and not observer.messages_under(topic):
            time.sleep(0.05)
        deaths = [host_messages.parse_death(p) for _, p in observer.messages_under(topic)]
    finally:
        probe.kill()
        observer.close()
    assert deaths and deaths[0].bdseq == 0


@pytest.mark.parametrize("kind", ["silent", "refused", "dns"])
def test_tick_loop_stays_on_time_when_the_broker_cannot_be_reached(config_bin, kind):
    host, port, close = unreachable(kind)
    try:
        res = Probe(config_bin, host, port, seconds=6, extra=SLOW_DNS).result()
    finally:
        close()
    assert res["connects"] == 0 and res["births"] == 0
    assert res["ticks"] >= 6000 // 100 - 2  # the loop ran the whole time
    assert res["max_late"] <= LATE_LIMIT_MS, res
    # Backoff: 250 ms doubling to 8 s, so a handful of attempts in 6 s, never a storm.
    assert 2 <= res["fails"] <= 8, res


def test_micropython_binary_is_the_unix_port():
    out = subprocess.run(
        [micropython_binary(), "-c", "import sys, socket, select; print(sys.implementation.name)"],
        capture_output=True,
        text=True,
        timeout=10,
        env=micropython_env(ROOT),
    )
    assert out.stdout.strip() == "micropython", out
    assert os.access(micropython_binary(), os.X_OK)
