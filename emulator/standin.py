"""A deliberately simple stand-in plant for one module, until the full emulator exists.

It gives an emulated edge node plausible sensor signals so that ``skid edge --emulate``
and the edge tests can run the real runtime: every sensor follows a first-order lag
toward a target derived from the module's own outputs (a reactor's temperature toward
``ambient + gain * heater``, a pump's pressure toward ``k * flow``, ...), and digital
inputs (cut-outs, e-stops) stay inactive.  It reaches the runtime only through the
emulated drivers, never through control or safety code.
"""

from __future__ import annotations

import math

from emulator.electrical import raw_for


class StandinPlant:
    """Drives the emulated sensors of one Node from a first-order response model."""

    def __init__(self, node, ambient=20.0, tau_s=60.0, heater_gain=200.0):
        self.node = node
        self.ambient = ambient
        self.tau_s = tau_s
        self.heater_gain = heater_gain
        self.values: dict[str, float] = {}
        self.overrides: dict[str, float | None] = {}
        self.digital: dict[str, int] = {}
        self._last_ms: int | None = None
        self._range_min = {ch.name: ch.range_min for ch, _ in node.sensors}
        for ch, drv in node.sensors:
            if drv.raw_unit == "0/1":
                self.digital[ch.name] = 0
            else:
                self.values[ch.name] = 0.0
        for name in self.values:  # start at rest: the steady state for safe outputs
            self.values[name] = self._target(name)
        self.write_sensors()

    def _target(self, name: str) -> float:
        outs = self.node.outputs()
        heat = sum(v for k, v in outs.items() if "heat" in k)
        flow = sum(v for k, v in outs.items() if "flow" in k or "pump" in k)
        if "temp" in name:
            return self.ambient + self.heater_gain * heat
        if "press" in name:
            return 1.0 + 2.0 * flow
        lo = self._range_min.get(name)
        return self.values[name] if self.values[name] else (lo or 0.0)

    def step(self, now_ms: int) -> None:
        dt = 0.0 if self._last_ms is None else (now_ms - self._last_ms) / 1000.0
        self._last_ms = now_ms
        a = 1.0 - math.exp(-dt / self.tau_s) if dt > 0 else 0.0
        for name, v in self.values.items():
            self.values[name] = v + (self._target(name) - v) * a
        self.write_sensors()

    def write_sensors(self) -> None:
        for ch, drv in self.node.sensors:
            if ch.name in self.digital:
                drv.set_raw(self.digital[ch.name])
                continue
            value = self.overrides.get(ch.name, self.values[ch.name])
            drv.set_raw(None if value is None else raw_for(ch.calibration, value))
