"""A paho-mqtt observer for broker tests: records every message on ``#``."""

from __future__ import annotations

import threading

import paho.mqtt.client as paho


class Observer:
    """A paho-mqtt client (network thread) recording every message on ``#``.

    ``persistent=True`` keeps its session across broker restarts (with a broker that
    persists sessions), so it misses nothing published while it was reconnecting.
    """

    def __init__(self, port, client_id="observer", persistent=False):
        self.messages = []
        self.react = None  # called as react(topic, payload) in paho's thread
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=paho.MQTTv311,
        )
        self.client.on_connect = lambda c, u, flags, rc, props: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("observer did not subscribe")

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))
        if self.react is not None:
            self.react(msg.topic, bytes(msg.payload))

    def messages_under(self, prefix, exclude=()):
        """Messages whose topic starts with ``prefix``, in arrival order."""
        with self._lock:
            return [m for m in self.messages if m[0].startswith(prefix) and m[0] not in exclude]

    def publish(self, topic, payload, qos=1, retain=False):
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
