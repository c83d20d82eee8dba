"""One module's session on the line's broker: the shell code every module runs.

``ModuleSession(node, line, clock, transport)`` is the node's sink (``edge.sink``) and the
glue between the node and a transport.  It owns

* the topic mapping: the node's BIRTH, TELEMETRY, EVENT and ACK go to the module's
  ``birth``/``data``/``event``/``ack`` topics; the transport subscribes to
  ``subscriptions`` (the module's ``cmd`` topic, QoS 1, and the host's ``lease`` topic,
  QoS 0), whose messages ``on_message`` hands to ``node.handle_command`` /
  ``handle_lease`` at the ``clock()`` time;
* the will/birth handshake (Sparkplug B bdSeq): the CONNECT of a session carries
  ``will()``, the DEATH with ``next_bdseq``; ``on_connect`` births with that bdSeq, then
  arms the next connection's will with the following one (so a late DEATH of an old
  connection cannot end a newer one), and reports events the transport had to drop
  during the outage (one "dropped N" EVENT after the birth);
* the shell's duty after each tick (``after_tick``): a ``rebirth`` the node accepted
  births it again (same bdSeq).

The transport is what carries bytes; the contract (``edge.link.client.MqttLink`` keeps it
on a board and a Pi, ``host.inproc`` on the in-process bus of the demo):

* ``publish_birth(topic, payload)``, ``publish_telemetry(topic, payload)``,
  ``publish_event(topic, payload, critical)``, ``publish_ack(topic, payload)``: never
  block, never raise (the node's tick calls them);
* ``set_will(payload)``: the DEATH registered with the next CONNECT (not this one);
* ``publish_dropped_notice(topic, make_payload)``: queue one EVENT for events dropped
  since the last notice (``make_payload(n)`` builds it), or nothing;
* it calls ``on_connect()`` once each (re)connection is accepted, and
  ``on_message(topic, payload)`` for each message on ``subscriptions``.

Without a transport (``None``) the session discards what the node publishes: a module
running its local control and protection without a broker.
"""

from edge.node import SEQ_MASK
from edge.sink import Sink
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

QOS_COMMAND = 1  # a command must arrive (at least once; the node dedupes by id)
QOS_LEASE = 0  # a lost lease is replaced by the next one, a late one is stale


class ModuleSession(Sink):
    def __init__(self, node, line, clock, transport=None):
        self.node = node
        self.line = line
        self.clock = clock
        self.transport = transport
        mid = node.module_id
        self.t_birth = module_topic(line, mid, TOPIC_BIRTH)
        self.t_data = module_topic(line, mid, TOPIC_DATA)
        self.t_event = module_topic(line, mid, TOPIC_EVENT)
        self.t_ack = module_topic(line, mid, TOPIC_ACK)
        self.t_death = module_topic(line, mid, TOPIC_DEATH)
        self.t_cmd = module_topic(line, mid, TOPIC_CMD)
        self.t_lease = host_topic(line, TOPIC_LEASE)
        self.subscriptions = [(self.t_cmd, QOS_COMMAND), (self.t_lease, QOS_LEASE)]
        self.next_bdseq = node.bdseq
        node.sink = self

    def will(self):
        """The DEATH the next CONNECT registers as its will."""
        return self.node.death_for(self.next_bdseq)

    # -- the node's sink ---------------------------------------------------------------------

    def publish_birth(self, payload):
        if self.transport is not None:
            self.transport.publish_birth(self.t_birth, payload)

    def publish_telemetry(self, payload):
        if self.transport is not None:
            self.transport.publish_telemetry(self.t_data, payload)

    def publish_event(self, payload, critical=False):
        if self.transport is not None:
            self.transport.publish_event(self.t_event, payload, critical)

    def publish_ack(self, payload):
        if self.transport is not None:
            self.transport.publish_ack(self.t_ack, payload)

    # -- transport callbacks (run inside the transport's task: must not await) -------------

    def on_connect(self):
        # This CONNECT carried will() = DEATH(next_bdseq): the birth must match it.  Then
        # arm the next connection's will with the following bdSeq.
        node = self.node
        node.birth(self.next_bdseq)
        self.next_bdseq = (self.next_bdseq + 1) & SEQ_MASK
        transport = self.transport
        if transport is not None:
            transport.set_will(node.death_for(self.next_bdseq))
            transport.publish_dropped_notice(self.t_event, node.dropped_event)

    def on_message(self, topic, payload):
        if isinstance(topic, (bytes, bytearray)):
            topic = topic.decode()
        if topic == self.t_cmd:
            self.node.handle_command(payload, self.clock())
        elif topic == self.t_lease:
            self.node.handle_lease(payload, self.clock())

    # -- the shell's part of a tick ---------------------------------------------------------

    def after_tick(self):
        """Call after each ``node.tick``: births again when a ``rebirth`` was accepted."""
        if self.node.rebirth_pending:
            self.node.birth()

    # -- an MQTT transport -----------------------------------------------------------------

    def mqtt_link(self, host, port, client_id=None, **options):
        """An ``edge.link.client.MqttLink`` to ``host:port`` carrying this session (its
        will, subscriptions and callbacks), made the session's transport.  ``options``:
        the link's own (credentials, queue sizes, ...)."""
        # Imported here: a module without a broker never loads the link (RAM on a board).
        from edge.link.client import MqttLink  # noqa: PLC0415

        link = MqttLink(
            host,
            port,
            client_id if client_id is not None else self.node.module_id,
            self.t_death,
            self.will(),
            self.subscriptions,
            on_message=self.on_message,
            on_connect=self.on_connect,
            **options,
        )
        self.transport = link
        return link
