"""tests/broker.py under parallel test processes: ports outside the kernel's ephemeral
range, and a start that survives its port being taken between choice and bind."""

from __future__ import annotations

import socket
import threading

import paho.mqtt.client as paho
import pytest

from tests import broker as broker_mod
from tests.broker import BrokerError, MosquittoBroker, free_port, retained_topics

pytestmark = pytest.mark.skipif(
    broker_mod.find_mosquitto() is None, reason="mosquitto binary missing (`make mosquitto`)"
)


def occupy(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


def test_free_ports_lie_below_the_ephemeral_range_and_are_never_repeated():
    low, _ = broker_mod._ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(broker_mod.PORT_LOW <= p < low for p in ports), ports


def test_a_port_taken_before_the_first_start_is_replaced():
    b = MosquittoBroker()
    taken = b.port
    with occupy(taken):
        try:
            b.start()
            assert b.port != taken
            assert f"listener {b.port} " in b.config_path.read_text()
            socket.create_connection((b.host, b.port), timeout=2).close()
        finally:
            b.close()


def test_a_restart_keeps_its_port_and_waits_for_it():
    with MosquittoBroker(start_timeout_s=10.0) as b:
        port = b.port
        b.stop()
        blocker = occupy(port)
        threading.Timer(0.3, blocker.close).start()
        b.start()  # mosquitto fails with "Address already in use" until the timer fires
        assert b.port == port
        socket.create_connection((b.host, b.port), timeout=2).close()
        assert "Address already in use" in b.log()


def test_a_given_port_that_stays_taken_is_an_error_naming_it():
    port = free_port()
    with occupy(port):
        b = MosquittoBroker(port=port, start_timeout_s=0.5)
        try:
            with pytest.raises(BrokerError) as exc:
                b.start()
            assert str(port) in str(exc.value)
            assert "Address already in use" in str(exc.value)  # the broker's log
            assert b.port == port
        finally:
            b.close()


def test_retained_topics_finds_every_retained_message_and_nothing_else(broker):
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        # more than mosquitto's 20 in-flight QoS 1 messages: some wait in its queue
        topics = [f"skid/v1/x/m{i}/state" for i in range(30)]
        infos = [pub.publish(t, b"1", qos=1, retain=True) for t in topics]
        infos.append(pub.publish("skid/v1/other/state", b"1", qos=1, retain=True))
        infos.append(pub.publish("skid/v1/x/live", b"1", qos=1))  # not retained
        for info in infos:
            info.wait_for_publish(10)
        assert sorted(retained_topics(broker.port, ["skid/v1/x/#"])) == sorted(topics)
        for t in topics:
            pub.publish(t, b"", qos=1, retain=True).wait_for_publish(10)  # cleared
        assert retained_topics(broker.port, ["skid/v1/x/#"]) == []
        assert retained_topics(broker.port, ["skid/v1/#"]) == ["skid/v1/other/state"]
    finally:
        pub.disconnect()
        pub.loop_stop()
