"""``skid tune --emulate``: the relay test on an emulated line, in this process.

A dry-run entry point (tests/test_architecture.py): the one part of ``skid tune`` that
loads the emulator.  The whole line is emulated (``emulator.emulation.LineEmulation``, the
module's real edge runtime on emulated drivers) on a simulated clock; the host side is the
emulation's minimal host (commands, leases), and the procedure is ``host.tune``'s, the same
as over a broker.  Only the tuned module is started; the rest of the line stays idle.
"""

from __future__ import annotations

from collections.abc import Callable

from emulator.emulation import LineEmulation
from host.tune import Link, TuneError
from protocol.constants import RESULT_OK

LEASE_EVERY_S = 1.0


class EmulatedLink(Link):
    def __init__(self, emu: LineEmulation, module: str):
        if module not in emu.nodes:
            raise TuneError(f"no module {module!r} on the line: {', '.join(emu.nodes)}")
        self.emu = emu
        self.module = module
        self._trips_seen = len(emu.sinks[module].trips())
        # Fault scripts for tests: called with the emulation after every advance.
        self.on_advance: Callable[[LineEmulation], None] | None = None

    def now_s(self) -> float:
        return self.emu.now_ms / 1000.0

    def advance(self, seconds: float) -> None:
        self.emu.run_for(seconds, lease_every_s=LEASE_EVERY_S)
        if self.on_advance is not None:
            self.on_advance(self.emu)

    def value(self, channel: str) -> float | None:
        node = self.emu.nodes[self.module]
        for lp in node.loops:
            if lp.measure.name == channel:
                return lp.measure.value
        for ch in getattr(node, "derived", ()):
            if ch.name == channel:
                return ch.value
        for obj, _drv in node.sensors:
            if obj.name == channel:
                return obj.value
        return None

    def command(self, op: str, args: dict) -> tuple[bool, str]:
        ack = self.emu.command(self.module, op, args)
        if ack is None:
            return False, "the module is not reachable"
        return ack.result in (RESULT_OK, "ok"), ack.reason or ""

    def set_setpoint(self, channel: str, value: float) -> tuple[bool, str]:
        return self.command(
            "set_setpoint", {"channel": self.emu.alias(self.module, channel), "value": value}
        )

    def trip(self) -> str | None:
        trips = self.emu.sinks[self.module].trips()[self._trips_seen :]
        return trips[0].cause if trips else None


def emulated_link(line_path, module: str, seed: int = 0) -> EmulatedLink:
    """The emulated line with ``module`` started and leased, ready for ``host.tune``."""
    emu = LineEmulation(line_path, seed=seed)
    link = EmulatedLink(emu, module)
    emu.run_for(1.0, lease_every_s=LEASE_EVERY_S)
    ok, reason = link.command("state", {"command": "start"})
    if not ok:
        raise TuneError(f"{module} refused to start: {reason}")
    link.advance(1.0)
    return link
