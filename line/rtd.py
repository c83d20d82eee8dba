"""Residence-time distribution of the line, from its geometry: where a parcel of liquid
that passed one component is, and when it reaches another.

Every component is a chain of ``N`` equal stirred tanks (tanks-in-series).  The number
of tanks stands for its axial dispersion: Taylor-Aris for laminar flow in a tube,

    D_ax = D_m + u^2 d^2 / (192 D_m),   Bo = u L / D_ax,   N = 1 + Bo / 2

so a tube is plug flow (its transit V/Q) widened by dispersion; mixers, pump heads,
valves and flow cells are one stirred tank.  A path through components i with volumes
V_i, flows Q_i and tanks N_i has the transit time

    mean = sum(V_i / Q_i),   variance = sum((V_i / Q_i)^2 / N_i)

(each chain of N tanks of total mean tau is a gamma distribution of shape N and
variance tau^2 / N; the means and variances of the chained components add).  Its
quantiles are those of the gamma distribution with that mean and variance (moment
matched: exact for one component, within a few per cent at the 1 % and 99 % quantiles
for a chain; tests/test_rtd.py holds it against the emulator's transport).

The emulator (``emulator/transport.py``) uses the same tanks (``tanks_for``), evaluated
at its fixed nominal flow; ``Rtd`` evaluates them at the line's actual flow, which at
higher flows gives fewer tanks, a wider distribution, and so a wider (conservative)
diversion window.  Units: mL, mL/min, s.
"""

from __future__ import annotations

import math

from line.hydraulics import flow_path, internal_volume_ml
from line.model import Component, Line

MOLECULAR_DIFFUSIVITY_M2_S = 1e-9
MAX_TANKS = 200


def tanks_for(comp: Component, flow_ml_min: float) -> int:
    """Tanks-in-series of ``comp`` at ``flow_ml_min`` (``tanks`` in its params overrides)."""
    override = comp.params.get("tanks")
    if override is not None:
        return override
    if comp.kind not in ("tube", "reactor") or flow_ml_min <= 0:
        return 1
    length, d_mm = flow_path(comp)
    d = d_mm * 1e-3
    u = flow_ml_min * 1e-6 / 60.0 / (math.pi * d * d / 4)
    dm = MOLECULAR_DIFFUSIVITY_M2_S
    d_ax = dm + u * u * d * d / (192.0 * dm)
    bo = u * length / d_ax
    return max(1, min(MAX_TANKS, int(round(1 + bo / 2))))


# --- the gamma distribution ------------------------------------------------------------------


def _gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) (series below a + 1, continued fraction
    above: Numerical Recipes 6.2)."""
    if x <= 0.0:
        return 0.0
    lead = math.exp(-x + a * math.log(x) - math.lgamma(a))
    if x < a + 1.0:
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1.0
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-14:
                break
        return total * lead
    b = x + 1.0 - a
    c = 1.0 / 1e-300
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-14:
            break
    return 1.0 - lead * h


def gamma_quantile(p: float, mean: float, variance: float) -> float:
    """The ``p`` quantile of the gamma distribution with ``mean`` and ``variance``
    (a plug flow, variance 0, is its mean)."""
    if mean <= 0.0:
        return 0.0
    if variance <= 0.0:
        return mean
    shape = mean * mean / variance
    scale = variance / mean
    lo, hi = 0.0, mean
    while _gamma_p(shape, hi / scale) < p:
        hi *= 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _gamma_p(shape, mid / scale) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * mean:
            break
    return 0.5 * (lo + hi)


# --- the line's paths ------------------------------------------------------------------------


class Transit:
    """The transit time of a path at given flows: ``mean_s``, ``variance_s2`` and
    ``quantile(p)`` in seconds."""

    def __init__(self, stages: list[tuple[str, float, float, int]]):
        self.stages = stages  # (component, volume mL, flow mL/min, tanks)
        self.mean_s = 0.0
        self.variance_s2 = 0.0
        for _cid, volume, flow, n in stages:
            tau = volume / flow * 60.0 if flow > 0 else math.inf
            self.mean_s += tau
            self.variance_s2 += tau * tau / n
        self._q: dict[float, float] = {}

    def quantile(self, p: float) -> float:
        if not math.isfinite(self.mean_s):
            return math.inf
        if p not in self._q:
            self._q[p] = gamma_quantile(p, self.mean_s, self.variance_s2)
        return self._q[p]


class Rtd:
    """The line's residence-time model at the flows ``pump_flows`` (pump id -> mL/min):
    ``transit(a, b)`` from the outlet of ``a`` (or its inlet: ``through_a``) to the outlet
    of ``b``.  Each component's flow is the sum of the pumps upstream of it (a line with
    no leak, every valve sending everything one way)."""

    def __init__(self, line: Line, pump_flows: dict[str, float]):
        self.line = line
        self.flows = {cid: 0.0 for cid in line.components()}
        for cid in line.flow_order():
            own = pump_flows.get(cid, 0.0) if line.component(cid).kind == "pump" else 0.0
            self.flows[cid] = own + sum(self.flows[u] for u in line.upstream(cid))

    def path(self, a: str, b: str) -> list[str]:
        """The components from ``a`` to ``b``, both included (raises if ``b`` is not
        downstream of ``a``)."""
        found = self._path(a, b, set())
        if found is None:
            raise ValueError(f"{b} is not downstream of {a}")
        return found

    def _path(self, a: str, b: str, seen: set) -> list[str] | None:
        if a == b:
            return [a]
        seen.add(a)
        for d in self.line.downstream(a):
            if d not in seen:
                rest = self._path(d, b, seen)
                if rest is not None:
                    return [a, *rest]
        return None

    def transit(self, a: str, b: str, *, through_a: bool = False) -> Transit:
        comps = self.line.components()
        ids = self.path(a, b)
        if not through_a:
            ids = ids[1:]
        stages = []
        for cid in ids:
            comp = comps[cid]
            if comp.kind == "vessel":
                continue
            flow = self.flows[cid]
            stages.append((cid, internal_volume_ml(comp), flow, tanks_for(comp, flow)))
        return Transit(stages)
