"""The modules of a ``LineEmulation`` on an ``InProcessBus``: the embedded default, where
host, modules and plant share one process and one simulated clock.

``attach_emulation(emu, bus, line_id)`` gives every emulated module a bus connection that
behaves like ``skid edge``'s MQTT link (edge.runner / edge.link):

* each connection registers the module's DEATH as its will, subscribes to the module's
  ``cmd`` topic and the host's ``lease`` topic, then publishes a BIRTH whose bdSeq
  matches the will (a new bdSeq per connection, as ``EdgeRunner.on_connect`` does);
* the node's messages go out on its birth/data/event/ack topics;
* a command or lease on the bus reaches ``node.handle_command/handle_lease`` at the next
  ``emu.step()`` (the step hook polls the module connections), and only while the module
  is reachable (``emu.reachable``); a ``rebirth`` command births the node after its tick.

The emulator's network faults act on these connections: a partitioned or powered-off
module loses its connection and the bus publishes its will at once (a real broker would
notice within its keepalive); a broker outage disconnects everyone without wills
(``InProcessBus.set_up``); when a module's path comes back it reconnects and births.
During a host crash the modules' messages do not reach the host (nobody is there to
receive them) and the host's leases and commands do not reach the modules.

The host loop is: ``emu.step(); host_transport.poll(); host.tick(now)``.  Subscribe the
host before attaching so it hears the first births (otherwise its registry will ask the
modules for a rebirth).
"""

from __future__ import annotations

from host.transport import BusClient, InProcessBus
from protocol import messages
from protocol.topics import (
    TOPIC_ACK,
    TOPIC_BIRTH,
    TOPIC_CMD,
    TOPIC_DATA,
    TOPIC_DEATH,
    TOPIC_EVENT,
    TOPIC_LEASE,
    host_topic,
    module_topic,
)


class ModuleLink:
    """One emulated module's connection to the bus (what MqttLink is for ``skid edge``),
    and the sink its node publishes through."""

    def __init__(self, attachment: Attachment, module_id: str):
        self.attachment = attachment
        self.emu = attachment.emu
        self.module_id = module_id
        line = attachment.line_id
        self.t_birth = module_topic(line, module_id, TOPIC_BIRTH)
        self.t_data = module_topic(line, module_id, TOPIC_DATA)
        self.t_event = module_topic(line, module_id, TOPIC_EVENT)
        self.t_ack = module_topic(line, module_id, TOPIC_ACK)
        self.t_death = module_topic(line, module_id, TOPIC_DEATH)
        self.client: BusClient = attachment.bus.client(
            f"{line}-{module_id}", will=None, auto_reconnect=False
        )
        self.client.disconnect()  # connected by ensure(), with its will and a birth
        self.client.subscribe(module_topic(line, module_id, TOPIC_CMD), self._on_command)
        self.client.subscribe(host_topic(line, TOPIC_LEASE), self._on_lease, qos=0)
        self.next_bdseq = 0
        self.connections = 0
        self.inner = None  # an earlier sink kept receiving copies (tee)

    # -- the connection --------------------------------------------------------------------------

    def _may_connect(self) -> bool:
        return self.emu.connected(self.module_id) and self.attachment.bus.up

    def _open(self, bdseq: int) -> bool:
        """CONNECT with DEATH(bdseq) as the will; the session's birth must carry bdseq."""
        self.client.set_will((self.t_death, messages.build_death(bdseq), 1, False))
        if not self.client.reconnect():
            return False
        self.next_bdseq = (bdseq + 1) & 0xFF
        self.connections += 1
        return True

    def ensure(self) -> None:
        """Follow the module's network path: drop the connection (will) when it breaks,
        reconnect and birth when it is back."""
        up = self._may_connect()
        if self.client.connected and not up:
            self.client.disconnect(abrupt=self.attachment.bus.up)
        elif up and not self.client.connected:
            bdseq = self.next_bdseq
            if self._open(bdseq):
                self.emu.nodes[self.module_id].birth(bdseq)

    # -- the node's sink ----------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        if not self.emu.host_up:
            return  # the crashed host cannot receive it
        self.client.publish(topic, payload, qos=qos)

    def publish_birth(self, payload):
        if not self.client.connected and self._may_connect():
            # A (re)boot: this birth is the new connection's, so the will matches it.
            self._open(self.emu.nodes[self.module_id].bdseq)
        self._publish(self.t_birth, payload, 1)
        if self.inner is not None:
            self.inner.publish_birth(payload)

    def publish_telemetry(self, payload):
        self._publish(self.t_data, payload, 0)
        if self.inner is not None:
            self.inner.publish_telemetry(payload)

    def publish_event(self, payload, critical=False):
        self._publish(self.t_event, payload, 1)
        if self.inner is not None:
            self.inner.publish_event(payload, critical)

    def publish_ack(self, payload):
        self._publish(self.t_ack, payload, 1)
        if self.inner is not None:
            self.inner.publish_ack(payload)

    # -- messages in -------------------------------------------------------------------------

    def _on_command(self, topic: str, payload: bytes) -> None:
        emu = self.emu
        if emu.reachable(self.module_id):
            emu.nodes[self.module_id].handle_command(payload, emu.now_ms)

    def _on_lease(self, topic: str, payload: bytes) -> None:
        emu = self.emu
        if emu.reachable(self.module_id):
            emu.nodes[self.module_id].handle_lease(payload, emu.now_ms)


class Attachment:
    """What ``attach_emulation`` returns: the module links, and ``detach()``."""

    def __init__(self, emu, bus: InProcessBus, line_id: str, tee: bool):
        self.emu = emu
        self.bus = bus
        self.line_id = line_id
        self.links: dict[str, ModuleLink] = {}
        for mid in emu.nodes:
            link = ModuleLink(self, mid)
            if tee:
                link.inner = emu.sinks[mid]
            self.links[mid] = link
            # Future boots publish through the link; the current node's gate too.
            emu.sinks[mid] = link
            emu.nodes[mid].sink.inner = link
        emu.step_hooks.append(self.on_step)
        self.sync()

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
        for link in self.links.values():
            link.client.close()


def attach_emulation(emu, bus: InProcessBus, line_id: str, tee: bool = False) -> Attachment:
    """Connect every module of ``emu`` (a LineEmulation) to ``bus`` under ``line_id``;
    each births now.  ``tee`` keeps the emulation's previous sinks (e.g. RecordingSink)
    receiving a copy of everything the modules publish."""
    from protocol.topics import validate_id

    validate_id("line", line_id)
    return Attachment(emu, bus, line_id, tee)
