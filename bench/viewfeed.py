"""The live view benchmark's synthetic line: 20 modules, real BIRTH and TELEMETRY payloads.

``line_text()`` writes a line file of 20 controlled modules (a telescoped synthesis:
six feed pumps, five heated coils each followed by a UV cell, a quench pump, two
back-pressure regulators and the product valve), loadable by ``line.loader.load_line`` and drawn by the
view like any other line.  ``SyntheticLine`` boots every module's real edge node once
(``emulator.emulation.LineEmulation``) to take its BIRTH exactly as the firmware sends
it, then makes TELEMETRY with ``protocol.messages.TelemetryCodec`` for any tick: values
swinging inside each channel's range, so every trend moves.  All modules publish at
``RATE_HZ`` (10 Hz), whatever their board's own telemetry rate, as the issue's budget asks.

Messages are ``(topic, payload)`` pairs on the modules' real topics
(``protocol.topics.module_topic``); whoever feeds the view (the benchmark's server
process) decides what time they carry, so an hour can be fed in seconds
(``SyntheticLine.telemetry(k, t_ms)`` with simulated ``t_ms``).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from edge.sink import Sink

RATE_HZ = 10
PERIOD_MS = 1000 // RATE_HZ
STAGES = 5  # heated coils; with 2 + 4 feed pumps, a quench pump, 5 UV cells, 2 BPRs and
# the valve: 20 modules

_PUMP = """
[[modules]]
id = "{id}"
kind = "pump"
board = "board_configs/pump.toml"
rating_bar = 40.0
feed_volume_ml = 250.0
feed_concentration_mol_l = 1.0
response_s = 0.5
pulsation = 0.02
stroke_ul = 100.0
dead_volume_ml = 0.1
"""
_REACTOR = """
[[modules]]
id = "{id}"
kind = "reactor"
board = "board_configs/reactor.toml"
volume_ml = 5.0
inner_diameter_mm = 1.0
rating_bar = 25.0
thermal_mass_j_k = 250.0
ua_w_k = 0.8
heater_w = 200.0
probe_tau_s = 2.0
"""
_ANALYZER = """
[[modules]]
id = "{id}"
kind = "analyzer"
board = "board_configs/analyzer.toml"
rating_bar = 30.0
cell_volume_ul = 10.0
path_mm = 2.0
response_s = 0.2
"""
_BPR = """
[[modules]]
id = "{id}"
kind = "bpr"
board = "board_configs/bpr.toml"
rating_bar = 35.0
open_conductance_ml_min_bar = 20.0
rangeability = 1000.0
dead_volume_ml = 0.05
"""
_VALVE = """
[[modules]]
id = "valve1"
kind = "valve"
board = "board_configs/valve.toml"
rating_bar = 35.0
outlets = ["waste", "collect"]
switch_ms = 150
"""
_MIXER = """
[[parts]]
id = "{id}"
kind = "mixer"
volume_ml = 0.002
inner_diameter_mm = 0.5
rating_bar = 200.0
"""
_VESSELS = """
[[parts]]
id = "waste"
kind = "vessel"
role = "waste"
volume_ml = 1000.0

[[parts]]
id = "collect"
kind = "vessel"
role = "collection"
volume_ml = 1000.0
"""


def line_text(line_id: str = "bench20") -> str:
    """A valid line file of 20 modules (see the module docstring for the flow path)."""
    out = [
        f'[line]\nid = "{line_id}"\ndescription = "view benchmark: five-stage telescoped '
        'synthesis, 20 modules"\nambient_c = 22.0\nsolvent = "acetonitrile"\n'
    ]
    edges: list[tuple[str, str]] = []
    upstream: list[str] = ["pump_1a", "pump_1b"]
    out += [_PUMP.format(id="pump_1a"), _PUMP.format(id="pump_1b")]
    for s in range(1, STAGES + 1):
        if s > 1:
            upstream.append(f"pump_{s}")
            out.append(_PUMP.format(id=f"pump_{s}"))
        mixer, reactor, uv = f"mixer_{s}", f"reactor_{s}", f"uv_{s}"
        out += [_MIXER.format(id=mixer), _REACTOR.format(id=reactor), _ANALYZER.format(id=uv)]
        edges += [(u, mixer) for u in upstream] + [(mixer, reactor), (reactor, uv)]
        upstream = [uv]
    out += [_PUMP.format(id="pump_q"), _MIXER.format(id="mixer_q")]
    out += [_BPR.format(id="bpr_1"), _BPR.format(id="bpr_2"), _VALVE, _VESSELS]
    edges += [
        (upstream[0], "mixer_q"),
        ("pump_q", "mixer_q"),
        ("mixer_q", "bpr_1"),
        ("bpr_1", "bpr_2"),
        ("bpr_2", "valve1"),
    ]
    edges += [("valve1", "waste"), ("valve1", "collect")]
    out += [f'\n[[connections]]\nfrom = "{a}"\nto = "{b}"\n' for a, b in edges]
    return "".join(out)


def write_line(directory: Path, line_id: str = "bench20") -> Path:
    """Write ``line_text`` to ``directory/<line_id>.toml`` (board paths resolve from the
    repository) and return the path."""
    path = Path(directory) / f"{line_id}.toml"
    path.write_text(line_text(line_id))
    return path


class _RawBirths(Sink):
    """An edge sink that keeps each BIRTH payload as sent (the emulator's recording sink
    keeps them parsed)."""

    def __init__(self):
        self.birth = None

    def publish_birth(self, payload):
        self.birth = bytes(payload)


class SyntheticLine:
    """The 20-module line's messages.  ``births()`` once, then ``telemetry(k, t_ms)`` for
    tick ``k`` (every module, ``t_ms`` as the modules' clock reads it)."""

    def __init__(self, line_path: Path):
        from emulator.emulation import LineEmulation
        from line.loader import load_line
        from protocol import host_messages, messages
        from protocol.topics import module_topic

        self.line = load_line(line_path)
        self.line_id = self.line.id
        emu = LineEmulation(self.line, sink_factory=lambda _mid: _RawBirths())
        self.module_ids = list(self.line.modules)
        self._births = [
            (module_topic(self.line_id, mid, "birth"), emu.sinks[mid].birth)
            for mid in self.module_ids
        ]
        self._data_topics = [module_topic(self.line_id, mid, "data") for mid in self.module_ids]
        self._codecs = []
        self._ranges = []
        for _topic, payload in self._births:
            channels = host_messages.parse_birth(payload).channels
            self._codecs.append(messages.TelemetryCodec(channels))
            self._ranges.append([(ch.lo, ch.hi, ch.resolution) for ch in channels])
        self.channels = sum(len(r) for r in self._ranges)

    def births(self) -> list[tuple[str, bytes]]:
        return list(self._births)

    def telemetry(self, k: int, t_ms: int) -> list[tuple[str, bytes]]:
        """Every module's TELEMETRY for tick ``k`` (sequence ``k`` mod 256)."""
        out = []
        seq = k & 0xFF
        for i, codec in enumerate(self._codecs):
            row = [_swing(lo, hi, res, k, i + j) for j, (lo, hi, res) in enumerate(self._ranges[i])]
            out.append((self._data_topics[i], codec.build(seq, t_ms, row)))
        return out


def _swing(lo: float, hi: float, resolution: float | None, k: int, phase: int) -> float:
    """A value inside [lo, hi] that swings with a 60 s period (per-channel phase), on the
    channel's resolution grid so it encodes exactly."""
    mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    value = mid + 0.4 * half * math.sin(2 * math.pi * k / (60 * RATE_HZ) + phase)
    if resolution:
        value = round(round(value / resolution) * resolution, 9)
    return min(hi, max(lo, value))


def demo(directory: str | None = None) -> SyntheticLine:
    """The synthetic line written into ``directory`` (a new temporary one when None)."""
    base = Path(directory or tempfile.mkdtemp(prefix="viewbench-"))
    return SyntheticLine(write_line(base))
