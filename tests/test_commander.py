"""host.commander against a real edge Node (tests/edge_harness.Rig) over the in-process
bus: ids, aliases from the birth, signing with and without a key, acks, timeouts."""

from __future__ import annotations

import pytest

from edge.session import ModuleSession
from host.commander import Commander
from host.inproc import BusTransport
from host.registry import Registry
from host.transport import InProcessBus
from protocol import auth, messages
from protocol.topics import host_topic, line_filter
from tests.edge_harness import KEY, Rig

LINE = "cmdline"


class Setup:
    def __init__(self, key=None, host_key=None, kind="reactor"):
        self.bus = InProcessBus()
        self.rig = Rig(kind, key=key)
        node = self.rig.node
        self.module = node.module_id
        self.module_client = self.bus.client(f"{LINE}-{self.module}")
        # The module's real shell session, on the in-process bus.
        self.session = ModuleSession(
            node, LINE, lambda: self.rig.now, BusTransport(self.module_client)
        )
        for topic, qos in self.session.subscriptions:
            self.module_client.subscribe(topic, self.session.on_message, qos=qos)
        self.host = self.bus.client("host")
        self.registry = Registry(LINE)
        self.host.subscribe(
            line_filter(LINE), lambda t, p: self.registry.on_message(t, p, self.rig.now)
        )
        self.host_key = host_key
        keys = {self.module: host_key} if host_key is not None else None
        self.commander = Commander(self.host, LINE, self.registry, keys, host_ms=self.rig.host_ms)
        node.birth()
        self.lease()

    def lease(self):
        """As the coordinator leases: signed with the host's key for the boot nonce of the
        birth the registry saw (a keyed module ignores anything else)."""
        self.bus.poll()  # the birth reaches the registry first
        host_now = self.rig.host_ms()
        self.lease_seq = max(getattr(self, "lease_seq", 0) + 1, host_now)
        signers = []
        view = self.registry.modules.get(self.module)
        if self.host_key is not None and view is not None and view.boot_nonce is not None:
            signers.append((self.module, self.host_key, view.boot_nonce))
        data = auth.sign_lease("host", host_now, self.lease_seq, 3000, signers)
        self.host.publish(host_topic(LINE, "lease"), data)
        self.bus.poll()

    def send(self, op, args=None, **kw):
        pending = self.commander.send(self.module, op, args, now_ms=self.rig.now, **kw)
        self.bus.poll()  # the module handles it, the ack comes back
        return pending


def test_commands_ack_by_id_and_channel_names_become_birth_aliases():
    s = Setup()
    assert s.registry.modules["reactor1"].born
    start = s.send("state", {"command": "start"})
    assert start.done and start.ok and start.result == "ok" and start.reason is None
    s.rig.tick(2)
    assert s.rig.node.sm.state_name == "execute"
    sp = s.send("set_setpoint", {"channel": "coil_temp", "value": 80.0})
    assert sp.ok and sp.args == {"channel": "coil_temp", "value": 80.0}
    assert s.rig.node.loops[0].pid.target == 80.0  # alias 6 reached the loop
    assert sp.command_id == start.command_id + 1  # unique per host session
    refused = s.send("set_setpoint", {"channel": "coil_temp", "value": 500.0})
    assert refused.done and not refused.ok and refused.result == "out_of_range"
    assert "coil_temp" in refused.reason
    assert s.commander.pending == {}


def test_unknown_module_op_channel_or_service_command_raises_before_sending():
    s = Setup()
    published = s.host.published
    with pytest.raises(ValueError, match=r"no module 'pump9'.*known reactor1"):
        s.commander.send("pump9", "rebirth", now_ms=0)
    with pytest.raises(ValueError, match="has no channel 'coil'.*coil_temp"):
        s.commander.send("reactor1", "set_setpoint", {"channel": "coil", "value": 1.0}, now_ms=0)
    with pytest.raises(ValueError, match="op 'explode' unknown"):
        s.commander.send("reactor1", "explode", now_ms=0)
    with pytest.raises(ValueError, match="state command 'go' .* unknown: allowed start"):
        s.commander.send("reactor1", "state", {"command": "go"}, now_ms=0)
    with pytest.raises(ValueError, match="command.args"):
        s.commander.send("reactor1", "rebirth", {"value": 1}, now_ms=0)
    assert s.host.published == published and s.commander.pending == {}


def test_a_keyed_module_accepts_signed_commands_with_increasing_counters():
    s = Setup(key=KEY, host_key=KEY)
    first = s.send("state", {"command": "start"})
    assert first.ok, first.reason
    s.rig.tick(2)
    second = s.send("set_setpoint", {"channel": "coil_temp", "value": 60.0})
    assert second.ok, second.reason
    counter = s.rig.node.verifier.last_counter("coordinator")
    assert counter >= s.rig.host_ms()  # host time: survives a host restart


def test_unsigned_or_wrongly_signed_commands_are_refused_by_a_keyed_module():
    unsigned = Setup(key=KEY)
    p = unsigned.send("state", {"command": "start"})
    assert p.done and p.result == "unauthenticated"
    # ... except a rebirth, the one command that changes nothing (protocol/SPEC.md 7).
    p = unsigned.send("rebirth")
    assert p.done and p.ok
    wrong = Setup(key=KEY, host_key=bytes(32))
    p = wrong.send("state", {"command": "start"})
    assert p.result == "unauthenticated"


def test_signing_uses_the_nonce_of_the_current_birth():
    s = Setup(key=KEY, host_key=KEY)
    # The module reboots with another nonce; until its birth arrives the host signs for
    # the old boot and is refused, afterwards it is accepted.
    new_nonce = b"\x09" * 8
    s.rig.node.verifier.new_boot(new_nonce)
    s.rig.node.boot_nonce = new_nonce
    assert s.send("state", {"command": "start"}).result == "unauthenticated"
    s.rig.node.birth()
    s.bus.poll()
    assert s.registry.modules["reactor1"].boot_nonce == new_nonce
    assert s.send("state", {"command": "start"}).ok


def test_expired_and_timed_out_commands():
    s = Setup()
    # The module judges expiry by host time from its leases: a host clock that runs 10 s
    # ahead makes a 5 s command arrive expired.
    # (Not a rebirth or an abort: those are never refused as expired, SPEC.md 7 and 8.)
    s.commander.host_ms = lambda: s.rig.host_ms() - 10_000
    p = s.send("ack_alarm", {})
    assert p.result == "expired"
    s.commander.host_ms = s.rig.host_ms
    # A module that is gone never answers: the command times out.
    s.module_client.disconnect(abrupt=True)
    p = s.commander.send("reactor1", "rebirth", now_ms=1000, timeout_ms=2000)
    s.bus.poll()
    assert not p.done and s.commander.tick(2999) == []
    (late,) = s.commander.tick(3000)
    assert late is p and p.done and p.timed_out and not p.ok and p.result is None
    assert "no ack within 2000 ms" in p.reason
    # An ack nobody waits for (late, or foreign) is ignored.
    assert s.commander.on_ack("reactor1", messages.build_ack(p.command_id, 0), 3100) is None
    assert s.commander.on_ack("reactor1", b"junk", 3100) is None
    assert s.commander.late_acks == 1


def test_rebirth_may_go_to_a_module_heard_from_without_a_birth():
    s = Setup()
    s.registry.modules.clear()  # as if the host had missed the birth
    s.rig.tick(s.rig.cfg["module"]["telemetry_every"])  # telemetry: seen, not born
    s.bus.poll()
    assert not s.registry.modules["reactor1"].born
    with pytest.raises(ValueError, match="has announced itself"):
        s.commander.send("reactor1", "state", {"command": "start"}, now_ms=0)
    assert s.send("rebirth").ok
    s.rig.tick()
    s.session.after_tick()  # the shell births the node after its tick
    s.bus.poll()
    assert s.registry.modules["reactor1"].born

    # A keyed module heard from without a birth: the rebirth goes unsigned, is accepted,
    # and the birth it brings carries the nonce every later (signed) command needs.
    keyed = Setup(key=KEY, host_key=KEY)
    keyed.registry.modules["reactor1"].born = False
    keyed.registry.modules["reactor1"].boot_nonce = None
    with pytest.raises(ValueError, match="has announced itself"):
        keyed.commander.send("reactor1", "state", {"command": "start"}, now_ms=0)
    p = keyed.send("rebirth")
    assert p.done and p.ok, p.reason
    keyed.session.after_tick()
    keyed.bus.poll()
    view = keyed.registry.modules["reactor1"]
    assert view.born and view.boot_nonce is not None
    assert keyed.send("state", {"command": "start"}).ok
