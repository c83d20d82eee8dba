"""edge.session.ModuleSession: the shell code every module runs on its transport (the MQTT
link on a board or a Pi, the in-process bus of the demo): topic mapping, the will/birth
handshake, command and lease routing, the rebirth after a tick."""

from __future__ import annotations

from edge.link.client import MqttLink
from edge.runner import EdgeRunner
from edge.session import ModuleSession
from edge.sink import NullSink, Sink
from protocol import host_messages, messages
from protocol.constants import RESULT_OK
from tests.edge_harness import Rig

LINE = "l7"


class FakeTransport:
    """The transport contract, recording what the session hands it."""

    def __init__(self, drops=0):
        self.sent = []  # (topic, kind of message)
        self.wills = []
        self.drops = drops

    def _add(self, topic, payload):
        self.sent.append((topic, host_messages.parse(payload)))

    def publish_birth(self, topic, payload):
        self._add(topic, payload)

    def publish_telemetry(self, topic, payload):
        self._add(topic, payload)

    def publish_event(self, topic, payload, critical=False):
        self._add(topic, payload)

    def publish_ack(self, topic, payload):
        self._add(topic, payload)

    def set_will(self, payload):
        self.wills.append(host_messages.parse_death(payload).bdseq)

    def publish_dropped_notice(self, topic, make_payload):
        if not self.drops:
            return False
        self._add(topic, make_payload(self.drops))
        self.drops = 0
        return True


def session(drops=0):
    rig = Rig("pump")
    transport = FakeTransport(drops)
    return rig, ModuleSession(rig.node, LINE, lambda: rig.now, transport), transport


def test_the_session_is_the_nodes_sink_and_maps_every_message_to_its_topic():
    rig, s, t = session()
    assert rig.node.sink is s
    assert s.subscriptions == [("skid/v1/l7/pump1/cmd", 1), ("skid/v1/l7/host/lease", 0)]
    s.on_connect()
    s.on_message(s.t_lease, messages.build_lease("host", rig.host_ms(), 1, 3000))
    start = messages.build_command(1, "state", {"command": "start"}, rig.host_ms() + 5000)
    s.on_message(s.t_cmd, start)  # an ack, and a state change (event)
    rig.tick(rig.cfg["module"]["telemetry_every"])  # one telemetry
    topics = [topic.rsplit("/", 1)[1] for topic, _ in t.sent]
    assert topics[0] == "birth"
    assert {"birth", "ack", "event", "data"} <= set(topics)
    kinds = {"birth": "Birth", "data": "Telemetry", "event": "Event", "ack": "Ack"}
    for topic, parsed in t.sent:
        assert topic.startswith("skid/v1/l7/pump1/"), topic
        assert type(parsed).__name__ == kinds[topic.rsplit("/", 1)[1]], topic


def test_each_connect_births_with_the_wills_bdseq_and_arms_the_next():
    rig, s, t = session()
    assert host_messages.parse_death(s.will()).bdseq == 0  # the first CONNECT's will
    for expected in (0, 1, 2):
        s.on_connect()
        birth = t.sent[-1][1]
        assert birth.bdseq == expected and rig.node.bdseq == expected
        assert t.wills[-1] == expected + 1  # the next connection's will
        assert host_messages.parse_death(s.will()).bdseq == expected + 1


def test_bdseq_wraps_at_one_byte():
    rig, s, t = session()
    s.next_bdseq = 255
    s.on_connect()
    assert t.sent[-1][1].bdseq == 255 and t.wills[-1] == 0 and s.next_bdseq == 0


def test_events_dropped_during_an_outage_are_reported_once_after_the_birth():
    rig, s, t = session(drops=3)
    s.on_connect()
    kinds = [topic.rsplit("/", 1)[1] for topic, _ in t.sent]
    assert kinds == ["birth", "event"]
    dropped = t.sent[1][1]
    assert dropped.type == "dropped" and dropped.count == 3
    s.on_connect()
    assert [topic.rsplit("/", 1)[1] for topic, _ in t.sent[2:]] == ["birth"]


def test_commands_and_leases_reach_the_node_at_the_clock_time_and_others_are_ignored():
    rig, s, t = session()
    rig.now = 5000
    lease = messages.build_lease("host", rig.host_ms(), 1, 3000)
    s.on_message(s.t_lease.encode(), lease)  # a link may hand the topic as bytes
    assert rig.node.host_time.host_now(5000) is not None
    cmd = messages.build_command(1, "state", {"command": "start"}, rig.host_ms() + 5000)
    s.on_message("skid/v1/l7/pump2/cmd", cmd)  # another module's topic
    assert t.sent == []
    s.on_message(s.t_cmd, cmd)
    ack = t.sent[-1][1]
    assert (
        t.sent[-1][0] == "skid/v1/l7/pump1/ack" and ack.command_id == 1 and ack.result == RESULT_OK
    )


def test_after_tick_births_again_only_after_an_accepted_rebirth():
    rig, s, t = session()
    s.on_connect()
    rig.tick()
    s.after_tick()
    assert [k for k, _ in t.sent].count("skid/v1/l7/pump1/birth") == 1
    rebirth = messages.build_command(2, "rebirth", None, rig.host_ms() + 5000)
    s.on_message(s.t_cmd, rebirth)
    rig.tick()
    s.after_tick()
    births = [p for k, p in t.sent if k.endswith("/birth")]
    assert len(births) == 2 and births[1].bdseq == births[0].bdseq  # same session
    assert not rig.node.rebirth_pending


def test_without_a_transport_the_session_discards():
    rig = Rig("pump")
    s = ModuleSession(rig.node, LINE, lambda: rig.now)
    s.on_connect()
    s.on_message(s.t_cmd, messages.build_command(1, "rebirth", None, rig.host_ms() + 5000))
    rig.tick(10)
    s.after_tick()
    assert rig.node.seq == 0 and not rig.node.rebirth_pending  # born twice, silently
    assert rig.sink.births == [] and rig.sink.acks == []  # nothing reached the old sink


def test_mqtt_link_carries_the_sessions_will_subscriptions_and_callbacks():
    rig, s, _ = session()
    link = s.mqtt_link("127.0.0.1", 1883, "l7-pump1", keepalive_s=5)
    assert isinstance(link, MqttLink) and s.transport is link
    assert link.will_topic == s.t_death and link._subscriptions == s.subscriptions
    assert link._on_connect == s.on_connect and link._on_message == s.on_message
    assert link.keepalive_s == 5


def test_the_runner_uses_the_nodes_session_or_leaves_a_recording_sink_alone():
    rig, s, _ = session()
    assert EdgeRunner(rig.node, LINE, lambda: rig.now).session is s
    other = Rig("pump")  # a test's recording sink, no link: kept
    runner = EdgeRunner(other.node, LINE, lambda: other.now)
    assert runner.session is None and other.node.sink is other.sink
    bare = Rig("pump")
    bare.node.sink = NullSink()  # no broker: the runner runs a session without transport
    assert EdgeRunner(bare.node, LINE, lambda: bare.now).session.transport is None
    assert isinstance(bare.node.sink, ModuleSession) and isinstance(bare.node.sink, Sink)


def test_every_node_sink_in_the_repository_is_an_edge_sink():
    """One sink interface: a class with the node-facing ``publish_birth(self, payload)``
    derives from ``edge.sink.Sink`` (directly or through a class that does), so the
    contract is written once and copies cannot grow back."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    classes = {}  # name -> (base names, defines publish_birth(self, payload), where)
    for folder in ("edge", "protocol", "host", "emulator", "line", "bench", "tests", "tools"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            if "publish_birth" not in text and "Sink" not in text:
                continue  # neither a sink nor a base of one: skip the parse
            for node in ast.walk(ast.parse(text)):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = [
                    b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
                ]
                sinkish = any(
                    isinstance(f, ast.FunctionDef)
                    and f.name == "publish_birth"
                    and [a.arg for a in f.args.args] == ["self", "payload"]
                    for f in node.body
                )
                classes[node.name] = (bases, sinkish, path.relative_to(root))

    def is_sink(name, seen=()):
        if name in ("Sink", "NullSink"):
            return True
        if name not in classes or name in seen:
            return False
        return any(is_sink(b, seen + (name,)) for b in classes[name][0])

    strays = [
        f"{where}: {name}"
        for name, (_, sinkish, where) in classes.items()
        if sinkish and not is_sink(name)
    ]
    assert strays == []
    assert sum(1 for _, sinkish, _ in classes.values() if sinkish) >= 4  # the check sees them
