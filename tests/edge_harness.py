"""Helpers to run a real edge Node from a shipped board config, with emulated drivers and
the stand-in plant, on a simulated clock (tests advance time; nothing sleeps)."""

from __future__ import annotations

from pathlib import Path

from edge.boardconfig import compile_config, config_hash, decompile, emulate, load_board_config
from edge.build import build_node
from emulator.emulation import RecordingSink
from emulator.standin import StandinPlant
from protocol import auth, messages

ROOT = Path(__file__).resolve().parent.parent
HOST_EPOCH_MS = 1_790_000_000_000  # host wall clock at simulated t=0
NONCE = b"\x01\x02\x03\x04\x05\x06\x07\x08"
KEY = bytes(range(32))


def compiled(kind: str, mutate=None) -> tuple[dict, bytes]:
    cfg = emulate(load_board_config(ROOT / "board_configs" / f"{kind}.toml"))
    blob = compile_config(cfg)
    data = decompile(blob)
    if mutate is not None:
        mutate(data)
    return data, config_hash(blob)


class Rig:
    """One node + stand-in plant + host-side helpers on a simulated clock."""

    def __init__(self, kind="reactor", key=None, reset_cause="power_on", mutate=None, drivers=None):
        """``drivers``: optional ``{channel: driver}`` built by the test instead of from the
        config (``edge.build.build_node``), e.g. actuators whose power-up value is unsafe."""
        self.cfg, self.hash = compiled(kind, mutate)
        self.sink = RecordingSink()
        self.now = 0
        self.key = key
        self.node = build_node(
            self.cfg,
            None,
            self.sink,
            0,
            NONCE,
            reset_cause=reset_cause,
            key=key,
            config_hash=self.hash,
            drivers=drivers,
        )
        self.plant = StandinPlant(self.node)
        self.tick_ms = self.cfg["module"]["tick_ms"]
        self.next_id = 1
        self.counter = 0
        self.lease_seq = 0

    # time
    def tick(self, n=1):
        for _ in range(n):
            self.now += self.tick_ms
            self.plant.step(self.now)
            self.node.tick(self.now)

    def hold_coil(self, temp, ticks=1):
        """Both reactor probes read ``temp`` for ``ticks`` ticks, leased every second."""
        for _ in range(ticks):
            self.plant.overrides["temp_a"] = temp
            self.plant.overrides["temp_b"] = temp
            if self.now % 1000 == 0:
                self.lease()
            self.tick()

    def run_s(self, seconds, lease_every_ms=None):
        ticks = int(seconds * 1000 / self.tick_ms)
        for _ in range(ticks):
            if lease_every_ms and self.now % lease_every_ms == 0:
                self.lease()
            self.tick()

    # host side
    def host_ms(self):
        return HOST_EPOCH_MS + self.now

    def lease(self, duration_ms=3000, host_ms=None, sender="host"):
        """Lease the node as a host does: signed for it when the rig is keyed, seq = host
        time in ms (above the last).  Returns whether the node accepted it."""
        if host_ms is None:
            host_ms = self.host_ms()
        self.lease_seq = max(self.lease_seq + 1, host_ms)
        signers = []
        if self.key is not None:
            signers = [(self.node.module_id, self.key, NONCE)]
        data = auth.sign_lease(sender, host_ms, self.lease_seq, duration_ms, signers)
        return self.node.handle_lease(data, self.now)

    def command(self, op, args=None, expiry_s=5.0, sign=True, sender="coordinator", counter=None):
        cid = self.next_id
        self.next_id += 1
        data = messages.build_command(cid, op, args, self.host_ms() + int(expiry_s * 1000))
        if self.key is not None and sign:
            if counter is None:
                self.counter += 1
                counter = self.counter
            data = auth.sign_command(data, self.key, self.node.module_id, NONCE, sender, counter)
        return self.send(data)

    def send(self, data):
        before = len(self.sink.acks)
        self.node.handle_command(data, self.now)
        assert len(self.sink.acks) == before + 1, "every command gets exactly one ACK"
        return self.sink.acks[-1]

    def alias(self, name):
        for ch in self.node.channels:
            if ch.name == name:
                return self.node.channels.index(ch)
        raise KeyError(name)

    def set(self, name, value):
        return self.command("set_setpoint", {"channel": self.alias(name), "value": value})

    def state(self, command):
        return self.command("state", {"command": command})

    def start(self):
        self.lease()
        ack = self.state("start")
        assert ack.result == 0, ack
        self.tick(2)
        assert self.node.sm.state_name == "execute"
