"""host.inproc: the emulated demo line speaking through the in-process bus to a host made
of the real Registry and Commander, with the emulator's network faults."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from emulator.emulation import LineEmulation
from host.commander import Commander
from host.inproc import attach_emulation
from host.registry import Registry
from host.transport import InProcessBus
from protocol import auth
from protocol.topics import host_topic, line_filter

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "lines" / "demo.toml"
LINE = "run42"
MODULES = {"pump_a", "pump_b", "reactor1", "bpr1", "uv1", "valve1"}


def fault(kind, module):
    return SimpleNamespace(kind=kind, module=module, channel=None, params={})


class Host:
    """A minimal host loop: lease every second, poll, tick the registry and commander."""

    def __init__(self, subscribe_first=True, keys=None):
        self.emu = LineEmulation(DEMO, seed=1, keys=keys)
        self.bus = InProcessBus()
        self.client = self.bus.client("host")
        self.registry = Registry(
            LINE, {m: (c.kind, self.emu.hashes[m]) for m, c in self.emu.line.modules.items()}
        )
        self.events = []
        self.traffic = []
        self.commander = Commander(self.client, LINE, self.registry, keys, host_ms=self.emu.host_ms)
        self.lease_seq = 0
        if subscribe_first:
            self.subscribe()
        self.attachment = attach_emulation(self.emu, self.bus, LINE)
        if not subscribe_first:
            self.subscribe()
        self.poll()

    def subscribe(self):
        self.client.subscribe(line_filter(LINE), self.on_message)

    def on_message(self, topic, payload):
        self.traffic.append(topic)
        self.events.extend(self.registry.on_message(topic, payload, self.emu.now_ms))

    def poll(self):
        self.client.poll()
        self.events.extend(self.registry.tick(self.emu.now_ms))
        self.commander.tick(self.emu.now_ms)

    def lease(self):
        """As the coordinator leases: seq = host time, a tag per keyed module born."""
        host_now = self.emu.host_ms()
        self.lease_seq = max(self.lease_seq + 1, host_now)
        signers = []
        for mid, key in self.commander.keys.items():
            view = self.registry.modules.get(mid)
            if view is not None and view.boot_nonce is not None:
                signers.append((mid, key, view.boot_nonce))
        data = auth.sign_lease("host", host_now, self.lease_seq, 3000, signers)
        self.client.publish(host_topic(LINE, "lease"), data, qos=0)

    def run(self, seconds, lease=True):
        for _ in range(int(seconds * 1000 / self.emu.tick_ms)):
            if lease and self.emu.now_ms % 1000 == 0:
                self.lease()
            self.emu.step()
            self.poll()

    def send(self, module, op, args=None):
        p = self.commander.send(module, op, args, now_ms=self.emu.now_ms)
        self.run(0.2)
        return p

    def kinds(self, module, kind):
        return [e for e in self.events if e.module == module and e.kind == kind]


def test_births_leases_telemetry_and_commands_travel_over_the_bus():
    h = Host()
    assert set(h.registry.modules) == MODULES  # every module born at attach
    for mid, view in h.registry.modules.items():
        assert view.born and view.online and view.hash_ok is True, mid
        assert view.boot_nonce == h.emu.nonces[mid] and view.bdseq == 0
    h.run(3)
    # Leases reached every node through its cmd/lease subscription.
    for mid, node in h.emu.nodes.items():
        assert node.host_time.host_now(h.emu.now_ms) is not None, mid
        assert not node.lease.lost, mid
    assert h.registry.value("reactor1", "temperature") == pytest.approx(22.0, abs=1.0)
    assert h.registry.rebirth_needed() == []  # no gaps
    start = h.send("pump_a", "state", {"command": "start"})
    assert start.ok, start.reason
    flow = h.send("pump_a", "set_setpoint", {"channel": "flow", "value": 0.5})
    assert flow.ok and h.emu.nodes["pump_a"].outputs()["flow"] == 0.5
    h.run(2)
    assert h.registry.value("pump_a", "flow") == 0.5
    assert h.registry.module_state("pump_a") == "execute"
    assert any(e.message.state == "execute" for e in h.kinds("pump_a", "state"))
    # rebirth: the node births again after its tick (same boot, same bdSeq)
    births = len(h.kinds("pump_a", "birth"))
    assert h.send("pump_a", "rebirth").ok
    assert len(h.kinds("pump_a", "birth")) == births + 1
    assert not h.kinds("pump_a", "birth")[-1].data["reboot"]


def test_a_partitioned_module_is_silent_its_will_arrives_and_it_reconnects_with_a_birth():
    h = Host()
    h.run(2)
    f = fault("partition", "pump_b")
    h.emu.apply_fault(f)
    h.run(0.1)
    (death,) = h.kinds("pump_b", "death")
    assert death.message.bdseq == 0 and not h.registry.online("pump_b")
    h.traffic.clear()
    p = h.commander.send("pump_b", "rebirth", now_ms=h.emu.now_ms, timeout_ms=2000)
    h.run(5)
    from_b = [t for t in h.traffic if "/pump_b/" in t and not t.endswith("/cmd")]
    assert from_b == []  # nothing from it arrives (the host hears its own command)
    assert any("/pump_a/data" in t for t in h.traffic)  # the others carry on
    assert p.timed_out and not p.ok
    assert h.emu.nodes["pump_b"].lease.lost  # no leases reached it either
    h.emu.clear_fault(f)
    h.run(0.2)
    birth = h.kinds("pump_b", "birth")[-1]
    assert birth.message.bdseq == 1 and not birth.data["reboot"]  # a new connection
    assert h.registry.online("pump_b") and h.registry.modules["pump_b"].bdseq == 1


def test_power_loss_publishes_the_death_and_the_reboot_births_with_a_new_nonce():
    h = Host()
    h.run(1)
    f = SimpleNamespace(kind="power-loss", module="valve1", channel=None, params={"duration_s": 2})
    h.emu.apply_fault(f)
    h.run(0.1)
    assert h.kinds("valve1", "death") and h.registry.modules["valve1"].stale
    h.run(3)
    birth = h.kinds("valve1", "birth")[-1]
    assert birth.data["reboot"] and birth.message.reset_cause == "power_on"
    view = h.registry.modules["valve1"]
    assert view.online and not view.stale and view.boot_nonce == h.emu.nonces["valve1"]
    assert h.emu.boots["valve1"] == 2


def test_broker_outage_disconnects_everyone_and_everything_births_again_after():
    h = Host()
    h.run(1)
    f = fault("broker-outage", "line")
    h.emu.apply_fault(f)
    h.run(0.1)
    assert not h.client.connected
    h.traffic.clear()
    h.run(3)
    assert h.traffic == [] and h.kinds("pump_a", "death") == []  # no broker, no wills
    h.emu.clear_fault(f)
    h.run(0.2)
    assert h.client.connected
    births = {e.module for e in h.events if e.kind == "birth" and e.message.bdseq == 1}
    assert births == MODULES


def test_host_crash_cuts_both_directions():
    h = Host()
    expired = h.send("pump_a", "state", {"command": "start"})
    assert expired.result == "expired"  # no lease yet: the module cannot tell the time
    h.run(1)
    assert h.send("pump_a", "state", {"command": "start"}).ok
    f = fault("host-crash", "line")
    h.emu.apply_fault(f)
    h.traffic.clear()
    h.run(4)  # the test's host keeps leasing: as if it had restarted but the network failed
    assert [t for t in h.traffic if "/host/" not in t] == []  # nothing from the modules
    assert h.emu.nodes["pump_a"].sm.state_name == "aborted"  # its lease ran out
    h.emu.clear_fault(f)
    h.run(2)
    # Telemetry resumes mid-sequence: the host's view has a gap and asks for a rebirth.
    assert h.kinds("pump_a", "seq_gap") and "pump_a" in h.registry.rebirth_needed()


def test_a_host_that_subscribes_late_learns_the_modules_by_asking_for_a_rebirth():
    h = Host(subscribe_first=False)
    assert h.registry.modules == {}
    h.run(2)
    missing = h.registry.rebirth_needed()
    assert set(missing) == MODULES
    pendings = [h.commander.send(m, "rebirth", now_ms=h.emu.now_ms) for m in missing]
    h.run(0.3)
    assert all(p.ok for p in pendings)
    assert all(h.registry.modules[m].born for m in MODULES)


def test_signed_commands_reach_keyed_emulated_modules():
    keys = {"pump_a": bytes(range(32))}
    h = Host(keys=keys)
    h.run(1)
    assert h.send("pump_a", "state", {"command": "start"}).ok
    assert h.emu.nodes["pump_a"].verifier.last_counter("coordinator") is not None
