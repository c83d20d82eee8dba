"""``skid demo``: run what exists of flowskid end to end, and say what that is.

Today (before the coordinator, recipes, run record and the physical emulator exist) the
demo runs the real edge runtime of a reactor and a pump module from board_configs/, on
emulated drivers fed by the stand-in plant, on a simulated clock. A small scripted host
sends leases and commands through the real wire format (CBOR messages, decoded again on
the way back): it starts both modules, heats the reactor to 80 degC, runs the pump, then
breaks both reactor temperature probes, and shows the module tripping on its own,
refusing a reset while the fault persists and accepting it once the probes are repaired.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST_EPOCH_MS = 1_790_000_000_000
NONCE = b"demo-0001"[:8]


class _Recorder:
    def __init__(self, name, log):
        self.name = name
        self.log = log
        self.telemetry = None

    def publish_birth(self, payload):
        from protocol import messages

        b = messages.parse_birth(payload)
        self.log(
            f"{b.module_id}: BIRTH kind={b.module_kind} state={b.state} "
            f"channels={len(b.channels)} config={b.config_hash.hex()} ({len(payload)} B)"
        )

    def publish_telemetry(self, payload):
        self.telemetry = payload

    def publish_event(self, payload, critical=False):
        from protocol import messages

        e = messages.parse_event(payload)
        what = e.state or e.cause or e.detail or ""
        if e.type in ("alarm", "alarm_cleared", "trip") and e.source:
            what = f"{e.source}: {what}"
        self.log(f"{self.name}: EVENT #{e.number} {e.type} {what}")

    def publish_ack(self, payload):
        from protocol import messages
        from protocol.constants import RESULT_NAMES

        a = messages.parse_ack(payload)
        reason = f" ({a.reason})" if a.reason else ""
        self.log(f"{self.name}: ACK {a.command_id} {RESULT_NAMES[a.result]}{reason}")


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the emulated modules end to end (what exists so far)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge.boardconfig import compile_config, config_hash, decompile, emulate, load_board_config
    from edge.build import build_node
    from emulator.standin import StandinPlant
    from protocol import messages

    lines: list[str] = []

    def log(text: str) -> None:
        lines.append(text)
        print(text, file=sys.stderr)

    nodes = {}
    plants = {}
    for kind in ("reactor", "pump"):
        blob = compile_config(emulate(load_board_config(ROOT / "board_configs" / f"{kind}.toml")))
        cfg = decompile(blob)
        node = build_node(
            cfg, None, _Recorder(cfg["module"]["id"], log), 0, NONCE, config_hash=config_hash(blob)
        )
        nodes[kind] = node
        plants[kind] = StandinPlant(node)
        node.birth()

    now = 0
    cid = 0

    def command(kind, op, args=None):
        nonlocal cid
        cid += 1
        data = messages.build_command(cid, op, args, HOST_EPOCH_MS + now + 5000)
        nodes[kind].handle_command(data, now)

    def alias(kind, name):
        return [c.name for c in nodes[kind].channels].index(name)

    def advance(seconds):
        nonlocal now
        for _ in range(int(seconds * 10)):
            now += 100
            for kind, node in nodes.items():
                if now % 1000 == 0:
                    node.handle_lease(
                        messages.build_lease("demo", HOST_EPOCH_MS + now, 1, 3000), now
                    )
                plants[kind].step(now)
                node.tick(now)

    def status():
        r, p = nodes["reactor"], nodes["pump"]
        log(
            f"t={now / 1000:6.0f} s  reactor {r.sm.state_name:8s} "
            f"T={r.loops[0].measure.value:6.1f} degC heater={r.outputs()['heater']:.2f}  "
            f"pump {p.sm.state_name:8s} flow={p.outputs()['flow']:.2f} mL/min"
        )

    advance(1)
    log("host: start both modules, reactor to 80 degC, pump to 1.0 mL/min")
    command("reactor", "state", {"command": "start"})
    command("pump", "state", {"command": "start"})
    command("reactor", "set_setpoint", {"channel": alias("reactor", "coil_temp"), "value": 80.0})
    command("pump", "set_setpoint", {"channel": alias("pump", "flow"), "value": 1.0})
    command("reactor", "set_setpoint", {"channel": alias("reactor", "coil_temp"), "value": 500.0})
    for _ in range(6):
        advance(60)
        status()
    log("fault: both reactor temperature probes open-circuit")
    for ch, drv in nodes["reactor"].sensors:
        if ch.name in ("temp_a", "temp_b"):
            drv.set_fault("open")
    advance(2)
    status()
    log("host: reset while the probes are still open (must be refused)")
    command("reactor", "state", {"command": "reset"})
    for ch, drv in nodes["reactor"].sensors:
        if ch.name in ("temp_a", "temp_b"):
            drv.set_fault(None)
    advance(2)
    log("host: probes repaired, reset again")
    command("reactor", "state", {"command": "reset"})
    advance(2)
    status()
    trips = [
        {"module": n.module_id, "cause": c}
        for n in nodes.values()
        for c in ([n.interlocks.first_out.cause] if n.interlocks.first_out else [])
    ]
    log(
        "demo: this ran the real edge runtime (board configs, signal conditioning, PID, "
        "interlocks, state machine, wire format) of 2 modules on emulated drivers with a "
        "simple stand-in plant. Not built yet: the host coordinator, recipes, run record, "
        "reports and the physical line emulator (see the open issues)."
    )
    if args.json:
        print(
            json.dumps(
                {
                    "outcome": "completed",
                    "modules": [{"id": n.module_id, "kind": n.kind} for n in nodes.values()],
                    "latched_trips": trips,
                    "simulated_s": now / 1000,
                }
            )
        )
    return 0
