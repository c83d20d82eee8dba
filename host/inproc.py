"""The modules of a ``LineEmulation`` on an ``InProcessBus``: the embedded default, where
host, modules and plant share one process and one simulated clock.

``attach_emulation(emu, bus, line_id)`` runs every emulated module's real shell session
(``edge.session.ModuleSession``: topic mapping, will/birth handshake, command and lease
routing, exactly what a board runs over MQTT) on an in-process transport, ``BusLink``:

* a connection CONNECTs with the will the session armed (its DEATH), and the session's
  ``on_connect`` births with the matching bdSeq and arms the next connection's will;
* the session's messages go out on the module's birth/data/event/ack topics;
* a command or lease on the bus reaches the session (and so the node) at the next
  ``emu.step()`` (the step hook polls the module connections), and only while the module
  is reachable (``emu.reachable``); a ``rebirth`` command births the node after its tick;
* a module that boots again (power restored) gets a fresh session for its new node, as a
  board's new boot runs a new one (bdSeq from 0).

The emulator's network faults act on these connections: a partitioned or powered-off
module loses its connection and the bus publishes its will at once (a real broker would
notice within its keepalive); a broker outage disconnects everyone without wills
(``InProcessBus.set_up``); when a module's path comes back it reconnects and births.
While a module's path is broken what it publishes is lost, as on a real network.  During
a host crash the modules' messages do not reach the host (nobody is there to receive
them) and the host's leases and commands do not reach the modules.

The host loop is: ``emu.step(); host_transport.poll(); host.tick(now)``.  Subscribe the
host before attaching so it hears the first births (otherwise its registry will ask the
modules for a rebirth).
"""

from __future__ import annotations

from edge.session import ModuleSession
from host.transport import BusClient, InProcessBus
from protocol.topics import validate_id

QOS_BIRTH = 1
QOS_TELEMETRY = 0
QOS_EVENT = 1
QOS_ACK = 1
QOS_WILL = 1


class BusTransport:
    """The transport contract of ``edge.session.ModuleSession`` over one ``BusClient``:
    what a session publishes goes onto the bus now (the bus keeps no queue of a
    module's events, so none is ever dropped); ``inner`` (a sink) gets a copy of what
    went out (a tee)."""

    def __init__(self, client: BusClient):
        self.client = client
        self.will: bytes | None = None  # registered with the next connection
        self.inner = None

    def set_will(self, payload: bytes) -> None:
        self.will = payload

    def publish_dropped_notice(self, topic: str, make_payload) -> bool:
        return False  # nothing was dropped

    def _publish(self, topic: str, payload: bytes, qos: int) -> bool:
        self.client.publish(topic, payload, qos=qos)
        return True

    def publish_birth(self, topic, payload):
        if self._publish(topic, payload, QOS_BIRTH) and self.inner is not None:
            self.inner.publish_birth(payload)

    def publish_telemetry(self, topic, payload):
        if self._publish(topic, payload, QOS_TELEMETRY) and self.inner is not None:
            self.inner.publish_telemetry(payload)

    def publish_event(self, topic, payload, critical=False):
        if self._publish(topic, payload, QOS_EVENT) and self.inner is not None:
            self.inner.publish_event(payload, critical)

    def publish_ack(self, topic, payload):
        if self._publish(topic, payload, QOS_ACK) and self.inner is not None:
            self.inner.publish_ack(payload)


class BusLink(BusTransport):
    """One emulated module's connection to the bus: the transport of its session (what
    ``edge.link.client.MqttLink`` is for ``skid edge``, without its queues: the bus
    delivers or, on a broken path, loses), following the emulation's faults."""

    def __init__(self, attachment: Attachment, module_id: str):
        super().__init__(
            attachment.bus.client(
                f"{attachment.line_id}-{module_id}", will=None, auto_reconnect=False
            )
        )
        self.attachment = attachment
        self.emu = attachment.emu
        self.module_id = module_id
        self.client.disconnect()  # connected by ensure(), with the session's will
        self.session: ModuleSession | None = None
        self.connections = 0

    def start(self, node) -> None:
        """A boot of the module: a fresh session for ``node``, connected (and so born)
        at once when its path is up.  The previous boot's connection dies with it."""
        if self.client.connected:
            self.client.disconnect(abrupt=True)
        first = self.session is None
        session = ModuleSession(node, self.attachment.line_id, self._now, transport=self)
        self.session = session
        self.will = session.will()
        if first:
            for topic, qos in session.subscriptions:
                self.client.subscribe(topic, self._on_message, qos=qos)
        self.ensure()

    def _now(self) -> int:
        return self.emu.now_ms

    # -- the connection --------------------------------------------------------------------------

    def _may_connect(self) -> bool:
        return self.emu.connected(self.module_id) and self.attachment.bus.up

    def _path_open(self) -> bool:
        emu = self.emu
        return emu.broker_up and self.module_id not in emu.partitioned

    def ensure(self) -> None:
        """Follow the module's network path: drop the connection (will) when it breaks,
        reconnect (the session births) when it is back."""
        up = self._may_connect()
        if self.client.connected and not up:
            self.client.disconnect(abrupt=self.attachment.bus.up)
        elif up and not self.client.connected:
            session = self.session
            assert session is not None, "start() a session first"
            self.client.set_will((session.t_death, self.will, QOS_WILL, False))
            if self.client.reconnect():
                self.connections += 1
                session.on_connect()

    def _publish(self, topic: str, payload: bytes, qos: int) -> bool:
        if not self._path_open():
            return False
        if self.emu.host_up:  # else the crashed host cannot receive it
            self.client.publish(topic, payload, qos=qos)
        return True

    # -- messages in -------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        if self.session is not None and self.emu.reachable(self.module_id):
            self.session.on_message(topic, payload)


class Attachment:
    """What ``attach_emulation`` returns: the module links, and ``detach()``."""

    def __init__(self, emu, bus: InProcessBus, line_id: str, tee: bool):
        self.emu = emu
        self.bus = bus
        self.line_id = line_id
        self.links: dict[str, BusLink] = {}
        for mid in emu.nodes:
            link = BusLink(self, mid)
            if tee:
                link.inner = emu.sinks[mid]
            self.links[mid] = link
        emu.on_boot = self.on_boot  # future boots run a session on their link
        emu.step_hooks.append(self.on_step)
        bus.set_up(emu.broker_up)
        for mid, link in self.links.items():
            link.start(emu.nodes[mid])

    def on_boot(self, module_id: str, node) -> None:
        self.links[module_id].start(node)

    def sync(self) -> None:
        self.bus.set_up(self.emu.broker_up)
        for link in self.links.values():
            link.ensure()

    def on_step(self, now_ms: int) -> None:
        """After each emulation step: follow faults, then hand the modules what the host
        sent (their acks are on the bus for the host's next poll)."""
        self.sync()
        for link in self.links.values():
            link.client.poll()

    def detach(self) -> None:
        if self.on_step in self.emu.step_hooks:
            self.emu.step_hooks.remove(self.on_step)
        if self.emu.on_boot == self.on_boot:
            self.emu.on_boot = None
        for link in self.links.values():
            link.client.close()


def attach_emulation(emu, bus: InProcessBus, line_id: str, tee: bool = False) -> Attachment:
    """Connect every module of ``emu`` (a LineEmulation) to ``bus`` under ``line_id``;
    each births now.  ``tee`` keeps the emulation's previous sinks (e.g. RecordingSink)
    receiving a copy of everything the modules publish while their path is up."""
    validate_id("line", line_id)
    return Attachment(emu, bus, line_id, tee)
