"""The edge runtime over a real Mosquitto broker: the node, its async shell and the MQTT
link together, as ``skid edge`` runs them.

Waits are on conditions with bounded timeouts; simulated time runs 5x real time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host.edgeproc import EdgeProcess
from protocol import host_messages, messages
from protocol.constants import RESULT_OK
from protocol.topics import host_topic, module_topic
from tests.broker import MosquittoBroker
from tests.mqtt_observer import Observer

ROOT = Path(__file__).resolve().parent.parent
LINE = "itest"
MODULE = "reactor1"
HOST_EPOCH = 1_790_000_000_000


def topic(kind):
    return module_topic(LINE, MODULE, kind)


def decoded(observer, kind):
    out = []
    for t, payload in observer.messages_under(topic(kind)):
        if t == topic(kind):
            out.append(host_messages.parse(payload))
    return out


async def wait_for(predicate, timeout_s=15.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Host:
    """The test plays the host: leases and commands through the broker."""

    def __init__(self, observer):
        self.observer = observer
        self.cid = 0
        self.t0 = time.monotonic()

    def host_ms(self):
        return HOST_EPOCH + int((time.monotonic() - self.t0) * 1000)

    def lease(self):
        self.observer.publish(
            host_topic(LINE, "lease"),
            messages.build_lease("host", self.host_ms(), 1, 3000),
            qos=0,
        )

    def command(self, op, args=None):
        self.cid += 1
        data = messages.build_command(self.cid, op, args, self.host_ms() + 60_000)
        self.observer.publish(topic("cmd"), data)
        return self.cid

    def ack(self, cid):
        for a in decoded(self.observer, "ack"):
            if a.command_id == cid:
                return a
        return None


async def keep_leasing(host, stop):
    while not stop.is_set():
        host.lease()
        await asyncio.sleep(0.1)


def test_node_births_obeys_commands_and_keeps_events_across_a_broker_outage():
    broker = MosquittoBroker(persistence=True).start()
    observer = Observer(broker.port, client_id="itest-host", persistent=True)
    host = Host(observer)
    proc = EdgeProcess(
        ROOT / "board_configs" / "reactor.toml",
        emulated=True,
        broker=f"mqtt://127.0.0.1:{broker.port}",
        line=LINE,
        speed=5.0,
        insecure=True,
    )

    async def scenario():
        run = asyncio.create_task(proc.run())
        stop_leases = asyncio.Event()
        leases = asyncio.create_task(keep_leasing(host, stop_leases))
        await wait_for(lambda: decoded(observer, "birth"), what="birth")
        birth = decoded(observer, "birth")[0]
        assert birth.module_id == MODULE and birth.bdseq == 0 and birth.state == "idle"
        assert birth.config_hash == proc.hash

        await asyncio.sleep(0.3)  # leases have arrived: host time known
        cid = host.command("state", {"command": "start"})
        await wait_for(lambda: host.ack(cid), what="ack of start")
        assert host.ack(cid).result == RESULT_OK
        await wait_for(lambda: decoded(observer, "data"), what="telemetry")

        # Broker outage: no leases reach the module; it holds (lease loss, on_loss=hold)
        # and raises events that must arrive afterwards, in order, none lost.
        stop_leases.set()
        await leases
        before = len(decoded(observer, "event"))
        broker.stop()
        await wait_for(lambda: proc.node.sm.state_name == "held", what="module held")
        raised_offline = proc.node.event_number
        broker.start()
        await wait_for(lambda: len(decoded(observer, "birth")) >= 2, timeout_s=20, what="rebirth")
        stop_leases.clear()
        leases = asyncio.create_task(keep_leasing(host, stop_leases))
        await wait_for(
            lambda: (
                decoded(observer, "event")
                and decoded(observer, "event")[-1].number >= raised_offline
            ),
            timeout_s=20,
            what="events raised offline",
        )
        events = decoded(observer, "event")
        numbers = [e.number for e in events]
        assert numbers == list(range(1, len(numbers) + 1)), numbers  # in order, no gap
        assert len(events) > before
        offline = events[before:]
        assert any(e.type == "alarm" and e.cause == "lease_expired" for e in offline)
        assert any(e.type == "state_change" and e.state == "held" for e in offline)
        births = decoded(observer, "birth")
        assert births[1].bdseq == 1  # a new session, a new bdSeq
        stop_leases.set()
        await leases
        proc.runner.stop()
        await asyncio.wait_for(run, 10)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
        # Clean shutdown: an explicit DEATH for the current session, outputs safe.
        deaths = decoded(observer, "death")
        assert deaths and deaths[-1].bdseq == 1
        assert proc.node.all_safe()
    finally:
        observer.close()
        broker.close()


def test_killed_edge_process_is_announced_by_its_will(broker):
    observer = Observer(broker.port, client_id="itest-watch")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host.cli",
            "edge",
            str(ROOT / "board_configs" / "pump.toml"),
            "--emulate",
            "--insecure",
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--line",
            LINE,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        pump_topic = module_topic(LINE, "pump1", "birth")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not observer.messages_under(pump_topic):
            time.sleep(0.05)
        assert observer.messages_under(pump_topic), child.stderr.read1().decode()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        death_topic = module_topic(LINE, "pump1", "death")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not observer.messages_under(death_topic):
            time.sleep(0.05)
        deaths = [host_messages.parse(p) for _, p in observer.messages_under(death_topic)]
        assert deaths and deaths[0].bdseq == 0  # the will of the first session
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        observer.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_terminated_edge_process_leaves_outputs_safe_and_says_so(sig):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host.cli",
            "edge",
            str(ROOT / "board_configs" / "pump.toml"),
            "--emulate",
            "--insecure",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)
    child.send_signal(sig)
    _, err = child.communicate(timeout=15)
    assert child.returncode == 0, err.decode()
    assert "outputs safe: flow=0" in err.decode()
