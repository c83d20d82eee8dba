"""Where the reagents are: concentration fronts travelling and dispersing along the line.

Every component is a chain of equal stirred tanks (tanks-in-series).  The number of
tanks stands for its axial dispersion: Taylor-Aris for laminar flow in a tube,

    D_ax = D_m + u^2 d^2 / (192 D_m),   Bo = u L / D_ax,   N = 1 + Bo / 2

evaluated at ``NOMINAL_FLOW_ML_MIN`` (fixed, so the grid does not change with the flow;
override with ``tanks`` per component).  Mixers, pump heads, valves and flow cells are
one stirred tank.  A front therefore reaches the analyzer after sum(V)/Q with variance
sum((V_i/Q)^2 / N_i): a smoothed step, not a jump.  The host's residence-time model
(``line/rtd.py``) is the same tanks evaluated at the actual flow; tests/test_rtd.py
holds the two against each other with a tracer pulse.

Each tank is updated implicitly, upstream first (c' = (c + a c_in') / (1 + a),
a = Q dt / V), which is unconditionally stable for any flow and tick.  Species are the
pumps' reagents, named by pump id, in mol/L, then the ``extra_species`` no pump feeds
(what a reactor makes: ``emulator.reaction``).
"""

from __future__ import annotations

from emulator.hydraulics import Network
from line.hydraulics import internal_volume_ml
from line.model import Component, Line
from line.rtd import tanks_for as rtd_tanks

NOMINAL_FLOW_ML_MIN = 1.0


def tanks_for(comp: Component, flow_ml_min: float = NOMINAL_FLOW_ML_MIN) -> int:
    """The component's tanks (``line.rtd.tanks_for``, the host's model), at the nominal flow."""
    return rtd_tanks(comp, flow_ml_min)


class Transport:
    def __init__(self, line: Line, net: Network, extra_species=()):
        self.line = line
        self.net = net
        self.pump_species = [m.id for m in line.modules_of("pump")]
        self.species = self.pump_species + list(extra_species)
        comps = line.components()
        self.stages = []  # per node: (volume mL, tanks)
        self.tanks: list[list[list[float]]] = []  # node -> species -> tank concentrations
        for cid in net.ids:
            comp = comps[cid]
            n = tanks_for(comp)
            self.stages.append((internal_volume_ml(comp), n))
            self.tanks.append([[0.0] * n for _ in self.species])
        self.feed = {}  # pump node -> concentration vector of what it pumps
        for s, pid in enumerate(self.pump_species):
            vec = [0.0] * len(self.species)
            vec[s] = line.modules[pid].feed_concentration_mol_l
            self.feed[net.index[pid]] = vec
        # inflow edges per node
        self.in_edges: list[list[int]] = [[] for _ in net.ids]
        for e, (_, j, _) in enumerate(net.edges):
            if j >= 0:
                self.in_edges[j].append(e)
        self.vessel_amount: dict[str, list[float]] = {}  # vessel -> mol per species

    def outlet(self, i: int) -> list[float]:
        return [tanks[-1] for tanks in self.tanks[i]]

    def mean(self, i: int) -> list[float]:
        return [sum(t) / len(t) for t in self.tanks[i]]

    def step(self, dt: float, feed_ok: dict[int, bool]) -> None:
        net = self.net
        q_edge = net.q_edge
        ns = len(self.species)
        for i in range(net.n):
            if i in self.feed:
                q = net.pump_delivered[i]
                c_in = self.feed[i] if feed_ok.get(i, True) else None
            else:
                q = 0.0
                mix = [0.0] * ns
                for e in self.in_edges[i]:
                    qe = q_edge[e]
                    if qe > 0.0:
                        q += qe
                        src = self.tanks[net.edges[e][0]]
                        for s in range(ns):
                            mix[s] += qe * src[s][-1]
                c_in = [m / q for m in mix] if q > 0.0 else None
            if q <= 0.0 or c_in is None:
                continue
            volume, n = self.stages[i]
            a = q * dt / (volume / n)
            keep = 1.0 / (1.0 + a)
            for s in range(ns):
                tanks = self.tanks[i][s]
                c = c_in[s]
                for k in range(n):
                    c = (tanks[k] + a * c) * keep
                    tanks[k] = c
        for e, (i, j, _) in enumerate(net.edges):
            if j < 0 and q_edge[e] > 0.0:
                amounts = self.vessel_amount.setdefault(net.edge_target[e], [0.0] * ns)
                out = self.tanks[i]
                vol_l = q_edge[e] * dt / 1000.0
                for s in range(ns):
                    amounts[s] += out[s][-1] * vol_l
