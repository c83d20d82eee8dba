"""Pressure and flow along the line: a lumped network solved implicitly every tick.

Each component that is not a vessel is one *node*: ``p`` is the pressure at its inlet
(bar, gauge) and ``C`` its compliance (mL/bar: the liquid's compressibility plus the
swelling of its walls).  Flow leaves a node through the component's own resistance to
the next node, or to a vessel (atmospheric, p = 0):

    q = G (p_i - p_j),   G = 1 / R,   R = 128 mu L / (pi d^4)   (Hagen-Poiseuille, laminar)

Conservation at every node over a tick of ``dt`` (backward Euler, so a stiff network
— a blocked line, a millilitre of liquid behind a 1/16" tube — stays stable at 100 ms):

    C_i (p_i' - p_i) / dt = sum(q_in) - sum(q_out) + q_pump(p_i') - q_relief(p_i') - q_leak

Pumps are flow sources that fall off above their pressure rating (stall), relief valves
pass flow in proportion to the overpressure.  Both are piecewise linear in pressure; the
solver picks each one's piece from the latest pressures and solves again until the
pieces agree (two or three solves at a transition, one otherwise).  The matrix is the
symmetric conductance Laplacian plus C/dt on the diagonal; eliminating nodes from the
pumps downstream produces no fill-in on the tree-shaped lines this handles.

Units inside: mL, s, bar.  Flows are reported in mL/min by the plant.
"""

from __future__ import annotations

from line.hydraulics import compliance_ml_bar, flow_path, poiseuille_resistance
from line.model import Line

STALL_BAND = 0.1  # a pump's flow falls from full to nothing over 10 % above its rating
RELIEF_ACCUMULATION = 0.1  # relief valves pass their capacity at 10 % overpressure
MAX_PIECE_SOLVES = 6


class Network:
    """The line's hydraulic state.  The plant sets the inputs, then calls ``solve(dt)``.

    Inputs (per node index): ``g_out`` outflow conductance (mL/s/bar), ``split`` per-edge
    weights of that conductance (valves), ``g_leak`` conductance to atmosphere,
    ``pump_q`` flow a pump would deliver against no pressure (mL/s), and the static
    pump ratings / relief settings taken from the line.
    """

    def __init__(self, line: Line):
        self.line = line
        comps = line.components()
        order = [c for c in line.flow_order() if comps[c].kind != "vessel"]
        self.ids = order
        self.index = {c: i for i, c in enumerate(order)}
        n = len(order)
        self.n = n
        liquid = line.solvent.compressibility_per_bar
        self.C = [compliance_ml_bar(comps[c], liquid) for c in order]
        self.R0 = []  # laminar resistance at 1 mPa s (bpr: 0, it is a valve)
        for c in order:
            comp = comps[c]
            length, d = flow_path(comp)
            self.R0.append(poiseuille_resistance(1.0, length, d))
        # edges: (from node, to node or -1 = a vessel at 0 bar, position among outlets)
        self.edges: list[tuple[int, int, int]] = []
        self.out_edges: list[list[int]] = [[] for _ in range(n)]
        self.edge_target: list[str] = []
        for c in order:
            comp = comps[c]
            down = comp.outlets if comp.kind == "valve" else line.downstream(c)
            for pos, d in enumerate(down):
                j = self.index.get(d, -1)
                self.out_edges[self.index[c]].append(len(self.edges))
                self.edges.append((self.index[c], j, pos))
                self.edge_target.append(d)
        self.p = [0.0] * n
        self.q_edge = [0.0] * len(self.edges)
        self.g_out = [1.0 / (r * 1.0) for r in self.R0]
        self.split: list[list[float]] = [[1.0] * len(self.out_edges[i]) for i in range(n)]
        self.g_leak = [0.0] * n
        self.q_leak = [0.0] * n
        # pumps: node -> (rating bar); pump_q set each tick
        self.pump_nodes = [self.index[m.id] for m in line.modules_of("pump")]
        self.pump_rating = {self.index[m.id]: m.rating_bar for m in line.modules_of("pump")}
        self.pump_q = {i: 0.0 for i in self.pump_nodes}
        self.pump_delivered = {i: 0.0 for i in self.pump_nodes}
        self.reliefs = []  # (node, set bar, conductance mL/s/bar, protection id)
        for prot in line.protections:
            if prot.kind == "relief_valve":
                g = prot.capacity_ml_min / 60.0 / (RELIEF_ACCUMULATION * prot.set_bar)
                self.reliefs.append((self.index[prot.at], prot.set_bar, g, prot.id))
        self.q_relief = [0.0] * len(self.reliefs)
        self.solves = 0

    # -- the implicit step ------------------------------------------------------------------

    def _pieces(self, p):
        """(pump pieces, relief pieces) for pressures ``p``: which linear piece applies."""
        pumps = []
        for i in self.pump_nodes:
            r = self.pump_rating[i]
            if p[i] <= r:
                pumps.append(0)
            elif p[i] < r * (1.0 + STALL_BAND):
                pumps.append(1)
            else:
                pumps.append(2)
        reliefs = [1 if p[i] > s else 0 for i, s, _, _ in self.reliefs]
        return pumps, reliefs

    def solve(self, dt: float) -> None:
        p_old = self.p
        guess = p_old
        pieces = self._pieces(guess)
        for _ in range(MAX_PIECE_SOLVES):
            p_new = self._linear_solve(dt, p_old, pieces)
            new_pieces = self._pieces(p_new)
            if new_pieces == pieces:
                break
            pieces = new_pieces
        self.p = p_new
        self._flows(p_new, pieces)

    def _linear_solve(self, dt, p_old, pieces):
        n = self.n
        diag = [self.C[i] / dt + self.g_leak[i] for i in range(n)]
        rhs = [self.C[i] / dt * p_old[i] for i in range(n)]
        off: list[dict[int, float]] = [{} for _ in range(n)]
        edges = self.edges
        for i in range(n):
            g_i = self.g_out[i]
            w = self.split[i]
            for k, e in enumerate(self.out_edges[i]):
                g = g_i * w[k]
                if g <= 0.0:
                    continue
                j = edges[e][1]
                diag[i] += g
                if j >= 0:
                    diag[j] += g
                    off[i][j] = off[i].get(j, 0.0) - g
                    off[j][i] = off[j].get(i, 0.0) - g
        pump_pieces, relief_pieces = pieces
        for k, i in enumerate(self.pump_nodes):
            q0 = self.pump_q[i]
            if q0 <= 0.0:
                continue
            piece = pump_pieces[k]
            if piece == 0:
                rhs[i] += q0
            elif piece == 1:  # q = q0 (e - p) / (e - r)
                r = self.pump_rating[i]
                band = r * STALL_BAND
                rhs[i] += q0 * (r + band) / band
                diag[i] += q0 / band
        for k, (i, s, g, _) in enumerate(self.reliefs):
            if relief_pieces[k]:
                diag[i] += g
                rhs[i] += g * s
        # Gaussian elimination in flow order (upstream first), then back substitution.
        done = [False] * n
        for k in range(n):
            dk = diag[k]
            row = off[k]
            for i, a_ik in row.items():
                if done[i]:
                    continue
                f = a_ik / dk
                diag[i] -= f * a_ik
                rhs[i] -= f * rhs[k]
                oi = off[i]
                for j, a_kj in row.items():
                    if j != i and not done[j]:
                        oi[j] = oi.get(j, 0.0) - f * a_kj
            done[k] = True
        x = [0.0] * n
        for k in range(n - 1, -1, -1):
            s = rhs[k]
            for j, a in off[k].items():
                if j > k:
                    s -= a * x[j]
            x[k] = s / diag[k]
        self.solves += 1
        return x

    def _flows(self, p, pieces):
        for e, (i, j, pos) in enumerate(self.edges):
            g = self.g_out[i] * self.split[i][pos]
            self.q_edge[e] = g * (p[i] - (p[j] if j >= 0 else 0.0))
        for i in range(self.n):
            self.q_leak[i] = self.g_leak[i] * p[i]
        pump_pieces, relief_pieces = pieces
        for k, i in enumerate(self.pump_nodes):
            q0 = self.pump_q[i]
            piece = pump_pieces[k]
            if q0 <= 0.0 or piece == 2:
                q = 0.0
            elif piece == 0:
                q = q0
            else:
                r = self.pump_rating[i]
                q = q0 * (r * (1 + STALL_BAND) - p[i]) / (r * STALL_BAND)
            self.pump_delivered[i] = q
        for k, (i, s, g, _) in enumerate(self.reliefs):
            self.q_relief[k] = g * (p[i] - s) if relief_pieces[k] else 0.0

    def outflow(self, i: int) -> float:
        """Net forward flow leaving node ``i`` through its component (mL/s)."""
        return sum(self.q_edge[e] for e in self.out_edges[i])
