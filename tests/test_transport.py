"""host.transport: the in-process bus (deterministic) and MQTT 5 through a real Mosquitto
(bounded waits on conditions), plus `skid status` against a real `skid edge` process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from host.transport import (
    InProcessBus,
    MqttTransport,
    TransportError,
    check_filter,
    topic_matches,
)
from tests.broker import MosquittoBroker, free_port

ROOT = Path(__file__).resolve().parent.parent


# --- topic matching ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, topic, expected",
    [
        ("a/b/c", "a/b/c", True),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),  # '#' includes the parent level
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "a/b", True),
        ("+/b", "/b", True),  # an empty level is a level
        ("#", "$SYS/x", False),  # wildcards never match broker topics
        ("+/x", "$SYS/x", False),
        ("skid/v1/l1/+/ack", "skid/v1/l1/pump_a/ack", True),
        ("skid/v1/l1/+/ack", "skid/v1/l1/host/lease", False),
    ],
)
def test_topic_matching_follows_mqtt(pattern, topic, expected):
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["a/#/b", "a/b#", "a+/b", ""])
def test_invalid_filters_are_rejected_with_the_rule(pattern):
    with pytest.raises(ValueError, match="topic filter"):
        check_filter(pattern)


# --- in-process bus ------------------------------------------------------------------------


def recorder():
    got = []
    return got, lambda topic, payload: got.append((topic, payload))


def test_bus_delivers_only_inside_poll_in_fifo_order_to_matching_subscribers():
    bus = InProcessBus()
    host = bus.client("host")
    module = bus.client("module")
    got, handler = recorder()
    other, other_handler = recorder()
    host.subscribe("skid/v1/l1/+/data", handler)
    host.subscribe("skid/v1/l1/+/event", other_handler)
    for i in range(5):
        module.publish(f"skid/v1/l1/m{i % 2}/data", bytes([i]))
    module.publish("skid/v1/l2/m0/data", b"other line")
    assert got == [] and host.pending() == 5  # queued, not delivered
    assert host.poll(max_messages=2) == 2
    assert [p for _t, p in got] == [b"\x00", b"\x01"]
    assert host.poll() == 3
    assert [p for _t, p in got] == [bytes([i]) for i in range(5)]
    assert other == []
    assert module.published == 6 and host.received == 5
    with pytest.raises(ValueError, match="wildcards"):
        module.publish("skid/v1/l1/+/data", b"")


def test_bus_retained_messages_reach_late_subscribers_and_empty_payload_clears():
    bus = InProcessBus()
    pub = bus.client("pub")
    pub.publish("skid/v1/l1/host/state", b"online", retain=True)
    pub.publish("skid/v1/l1/host/lease", b"not retained")
    late = bus.client("late")
    got, handler = recorder()
    late.subscribe("skid/v1/l1/#", handler)
    late.poll()
    assert got == [("skid/v1/l1/host/state", b"online")]
    pub.publish("skid/v1/l1/host/state", b"", retain=True)  # clears, still delivered
    late.poll()
    assert got[-1] == ("skid/v1/l1/host/state", b"")
    assert bus.retained == {}
    later = bus.client("later")
    got2, handler2 = recorder()
    later.subscribe("#", handler2)
    assert later.poll() == 0 and got2 == []


def test_bus_publishes_the_will_on_abrupt_disconnect_and_takeover_only():
    bus = InProcessBus()
    host = bus.client("host")
    got, handler = recorder()
    host.subscribe("skid/v1/l1/+/death", handler)
    will = ("skid/v1/l1/m1/death", b"dead", 1, False)
    clean = bus.client("m1", will=will)
    clean.close()  # clean: the will is discarded
    host.poll()
    assert got == []
    crash = bus.client("m1", will=will)
    crash.disconnect(abrupt=True)
    assert not crash.connected
    crash.publish("skid/v1/l1/m1/data", b"lost")  # not connected: dropped, counted
    assert crash.dropped == 1
    host.poll()
    assert got == [("skid/v1/l1/m1/death", b"dead")]
    first = bus.client("m2", will=("skid/v1/l1/m2/death", b"old", 1, False))
    bus.client("m2")  # the same client id again: the broker takes the session over
    host.poll()
    assert got[-1] == ("skid/v1/l1/m2/death", b"old") and not first.connected


def test_bus_outage_drops_everything_then_reconnects_and_resends_retained():
    bus = InProcessBus()
    host = bus.client("host")
    got, handler = recorder()
    host.subscribe("skid/#", handler)
    module = bus.client("m1", will=("skid/l/m1/death", b"x", 1, False), auto_reconnect=False)
    host.publish("skid/state", b"up", retain=True)
    host.poll()
    got.clear()
    module.publish("skid/a", b"queued before the outage")
    bus.set_up(False)
    assert not host.connected and not module.connected
    module.publish("skid/b", b"during")
    assert host.poll() == 0 and got == []  # the queue died with the connection; no will
    bus.set_up(True)
    assert host.connected and not module.connected  # only auto-reconnecting clients
    host.poll()
    assert got == [("skid/state", b"up")]  # re-subscribed: retained again
    assert module.reconnect() and module.connected


def test_bus_poll_runs_until_handlers_stop_publishing():
    bus = InProcessBus()
    a = bus.client("a")
    b = bus.client("b")
    seen = []
    a.subscribe("ping", lambda t, p: (seen.append(("a", p)), a.publish("pong", p)))
    b.subscribe("pong", lambda t, p: seen.append(("b", p)))
    b.publish("ping", b"1")
    assert bus.poll() == 2
    assert seen == [("a", b"1"), ("b", b"1")]


# --- MQTT 5 against Mosquitto --------------------------------------------------------------


def wait_until(predicate, timeout_s=10.0, poll=(), what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for transport in poll:
            transport.poll(timeout_s=0.02)
        if predicate():
            return
        if not poll:
            time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class V5Observer:
    """A paho MQTT 5 client recording (topic, payload, properties) in its own thread."""

    def __init__(self, port, pattern="#"):
        self.messages = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="v5-observer", protocol=paho.MQTTv5
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(pattern, 1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "observer did not subscribe"

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), msg.properties))

    def topics(self):
        with self._lock:
            return [t for t, _p, _pr in self.messages]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def url(broker):
    return f"mqtt://127.0.0.1:{broker.port}"


def test_mqtt_transport_round_trip_with_expiry_will_and_counters(broker):
    observer = V5Observer(broker.port)
    host = MqttTransport(url(broker), "t-host", will=("skid/v1/l1/host/state", b"offline", 1, True))
    host.connect(timeout_s=5)
    got, handler = recorder()
    host.subscribe("skid/v1/l1/+/data", handler)
    module = MqttTransport(url(broker), "t-module")
    module.connect(timeout_s=5)
    try:
        wait_until(lambda: host.connected and module.connected)
        time.sleep(0.1)  # the SUBSCRIBE travels before the first publish
        for i in range(20):
            module.publish("skid/v1/l1/m1/data", bytes([i]), qos=1)
        module.publish("skid/v1/l1/m1/cmd", b"command", qos=1, expiry_s=2.5)
        wait_until(lambda: len(got) == 20, poll=[host], what="20 messages")
        assert [p for _t, p in got] == [bytes([i]) for i in range(20)]  # in order
        assert host.received == 20 and module.published == 21 and host.dropped == 0
        wait_until(lambda: "skid/v1/l1/m1/cmd" in observer.topics(), what="the command")
        props = [pr for t, _p, pr in observer.messages if t == "skid/v1/l1/m1/cmd"][0]
        # MQTT 5 message expiry, rounded up to whole seconds (less the time in transit).
        assert 2 <= props.MessageExpiryInterval <= 3
        # Messages are delivered only inside poll(), never from paho's thread.
        module.publish("skid/v1/l1/m1/data", b"late", qos=1)
        wait_until(lambda: host.pending() == 1, what="a queued message")
        assert len(got) == 20
        host.poll()
        assert got[-1] == ("skid/v1/l1/m1/data", b"late")
        # The host's will: published when it disconnects asking for it (as on a crash).
        host.close(send_will=True)
        wait_until(lambda: "skid/v1/l1/host/state" in observer.topics(), what="the host's will")
    finally:
        module.close()
        host.close()
        observer.close()


def test_mqtt_retained_message_expires_for_late_subscribers(broker):
    pub = MqttTransport(url(broker), "t-pub")
    pub.connect(timeout_s=5)
    try:
        pub.publish("skid/v1/l1/host/state", b"short-lived", retain=True, expiry_s=1)
        pub.publish("skid/v1/l1/host/other", b"kept", retain=True)
        time.sleep(2.2)  # past the 1 s expiry: the broker must have discarded it
        late = MqttTransport(url(broker), "t-late")
        got, handler = recorder()
        late.subscribe("skid/v1/l1/host/#", handler)
        late.connect(timeout_s=5)
        wait_until(lambda: got, poll=[late], what="retained messages")
        late.poll(timeout_s=0.3)
        assert got == [("skid/v1/l1/host/other", b"kept")]
        late.close()
    finally:
        pub.close()


def test_mqtt_transport_reconnects_and_resubscribes_after_a_broker_restart(broker):
    host = MqttTransport(url(broker), "t-host", reconnect_min_s=0.2, reconnect_max_s=0.5)
    got, handler = recorder()
    host.subscribe("skid/#", handler)
    host.connect(timeout_s=5)
    try:
        broker.stop()
        wait_until(lambda: not host.connected, what="the disconnect")
        host.publish("skid/x", b"while down")  # not sent: counted, no exception
        assert host.dropped == 1
        broker.start()
        wait_until(lambda: host.connected, timeout_s=15, what="the reconnect")
        assert host.reconnects == 1
        other = MqttTransport(url(broker), "t-other")
        other.connect(timeout_s=5)
        # The subscription was renewed (clean start forgets it): messages flow again.
        wait_until(
            lambda: (other.publish("skid/after", b"1"), bool(got))[1],
            poll=[host],
            what="a message after the restart",
        )
        assert got[0] == ("skid/after", b"1")
        other.close()
    finally:
        host.close()


def test_mqtt_connect_errors_say_why():
    nothing = free_port()
    with pytest.raises(TransportError, match="refused") as exc:
        MqttTransport(f"mqtt://127.0.0.1:{nothing}", "t").connect(timeout_s=2)
    assert exc.value.reason == "refused"

    with pytest.raises(TransportError) as exc:
        MqttTransport("mqtt://no-such-host.invalid:1883", "t").connect(timeout_s=2)
    assert exc.value.reason == "unreachable"

    # A TCP server that never answers MQTT: no CONNACK in time.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(TransportError, match="no CONNACK within 0.5 s") as exc:
            MqttTransport(f"mqtt://127.0.0.1:{port}", "t").connect(timeout_s=0.5)
        assert exc.value.reason == "timeout"

    with pytest.raises(TransportError, match="expected mqtt://HOST") as exc:
        MqttTransport("http://example.org", "t")
    assert exc.value.reason == "usage"


def test_mqtt_credentials_are_optional_and_a_refusal_names_the_reason():
    with MosquittoBroker(users={"host": "s3cret"}) as secured:
        bad = MqttTransport(
            f"mqtt://127.0.0.1:{secured.port}", "t-bad", username="host", password="x"
        )
        with pytest.raises(TransportError, match="refused the connection: ") as exc:
            bad.connect(timeout_s=5)
        assert exc.value.reason == "refused"
        good = MqttTransport(f"mqtt://host:s3cret@127.0.0.1:{secured.port}", "t-good")
        good.connect(timeout_s=5)
        assert good.connected
        good.close()


# --- skid status against a real skid edge process --------------------------------------------


def skid(*args):
    return [sys.executable, "-m", "host.cli", *args]


def test_skid_status_shows_a_live_module_and_exits_1_when_none_answers(broker):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    line = "stline"
    status = subprocess.Popen(
        skid("status", "--broker", url(broker), "--line", line, "--wait", "30", "--json"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    edge = None
    try:
        first = status.stderr.readline()  # subscribed: the module's birth cannot be missed
        assert "listening on line stline" in first, first
        edge = subprocess.Popen(
            skid(
                "edge",
                "board_configs/pump.toml",
                "--emulate",
                "--insecure",
                "--broker",
                url(broker),
                "--line",
                line,
                "--speed",
                "5",
            ),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        out, err = status.communicate(timeout=40)
        assert status.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        (module,) = summary["modules"]
        assert module["id"] == "pump1" and module["kind"] == "pump" and module["born"]
        assert module["online"] and not module["stale"] and module["state"] == "idle"
        assert module["values"]["pressure"]["unit"] == "bar"
        assert module["values"]["flow"]["value"] == 0.0  # idle pump: safe output
        assert module["trips"] == [] and module["config_hash"]

        table = subprocess.run(
            skid("status", "--broker", url(broker), "--line", line, "--wait", "3"),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        # Its birth came before this status started: listed from telemetry alone.
        assert table.returncode == 0, table.stderr
        assert "pump1" in table.stdout and "no birth yet" in table.stdout
    finally:
        if status.poll() is None:
            status.kill()
        if edge is not None:
            edge.send_signal(signal.SIGTERM)
            edge.wait(timeout=15)

    empty = subprocess.run(
        skid("status", "--broker", url(broker), "--line", "nobody", "--wait", "0.5"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert empty.returncode == 1 and "no module of line nobody answered" in empty.stderr

    unreachable = subprocess.run(
        skid("status", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--line", "x"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unreachable.returncode == 1 and "refused" in unreachable.stderr


def test_a_broker_password_never_appears_in_errors_or_reprs():
    from host.transport import MqttTransport, TransportError, parse_url

    with pytest.raises(TransportError) as exc:
        parse_url("http://operator:s3cret-pw@broker:1883")
    assert "s3cret-pw" not in str(exc.value) and "***" in str(exc.value)
    t = MqttTransport("mqtt://operator:s3cret-pw@127.0.0.1:1", "repr-check")
    assert "s3cret-pw" not in repr(t)
