"""The node's output interface: the one contract every receiver of a node's messages keeps.

``edge.node.Node`` publishes through its ``sink``, an object with four methods, each taking
the encoded CBOR payload (bytes) of one message:

* ``publish_birth(payload)``: a BIRTH (at boot and connect, and after a ``rebirth``);
* ``publish_telemetry(payload)``: a TELEMETRY sample (QoS 0: may be dropped);
* ``publish_event(payload, critical=False)``: an EVENT; ``critical`` marks trips, which a
  full queue must keep over anything else;
* ``publish_ack(payload)``: the ACK of a command.

They are called from the tick (or, for acks, from command handling between ticks), so
they must not block, must not await and must not raise: a sink that cannot deliver drops
and counts.  The return value is ignored.

``Sink`` is the contract and discards everything (a module running without a broker);
``edge.session.ModuleSession`` maps the messages onto the module's topics of a transport
(the MQTT link on a board or a Pi, the in-process bus in the demo).  The emulator and the
tests subclass ``Sink`` to record what a node said.
"""


class Sink:
    """Discards what a node publishes; subclass and override what you want to keep."""

    def publish_birth(self, payload):
        pass

    def publish_telemetry(self, payload):
        pass

    def publish_event(self, payload, critical=False):
        pass

    def publish_ack(self, payload):
        pass


NullSink = Sink  # the name the shells use for "no broker"
