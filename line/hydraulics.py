"""Steady laminar flow through the line's pieces: the formulas, not the dynamics.

The pressure drop of laminar flow through a round bore (Hagen-Poiseuille)

    dp = R q,   R = 128 mu L / (pi d^4)

the bore each component's flow takes (``flow_path``), the liquid it holds
(``internal_volume_ml``) and how much more it takes up per bar (``compliance_ml_bar``:
the liquid's compressibility plus the swelling of its walls).  The host uses them to
check a line (``host/linecheck.py``); the emulator's dynamic network
(``emulator/hydraulics.py``) builds on them.  Units: mL, s, bar, mm, m.
"""

from __future__ import annotations

import math

from line.model import Component

# Volume change of the wetted part per bar, relative to its volume: how much the
# tubing swells under pressure (thin-walled estimate 2 r / (t E) for 1/16" tubing).
WALL_COMPLIANCE_PER_BAR = {
    "pfa": 7e-4,
    "fep": 6e-4,
    "peek": 6e-5,
    "ss": 2e-6,
    "glass": 1e-6,
}


def hagen_poiseuille_bar(
    viscosity_mPas: float, length_m: float, diameter_mm: float, flow_ml_min: float
) -> float:
    """Pressure drop (bar) of laminar flow through a round tube."""
    return poiseuille_resistance(viscosity_mPas, length_m, diameter_mm) * flow_ml_min / 60.0


def poiseuille_resistance(viscosity_mPas: float, length_m: float, diameter_mm: float) -> float:
    """Laminar resistance in bar per (mL/s)."""
    d = diameter_mm * 1e-3
    r_si = 128.0 * viscosity_mPas * 1e-3 * length_m / (math.pi * d**4)  # Pa per m^3/s
    return r_si * 1e-11  # 1 mL/s = 1e-6 m^3/s, 1 bar = 1e5 Pa


def internal_volume_ml(comp: Component) -> float:
    k = comp.kind
    if k == "tube":
        return math.pi * (comp.inner_diameter_mm * 1e-3 / 2) ** 2 * comp.length_m * 1e6
    if k in ("mixer", "reactor"):
        return comp.volume_ml
    if k == "analyzer":
        return comp.cell_volume_ul / 1000.0
    return comp.dead_volume_ml  # pump, bpr, valve


def flow_path(comp: Component) -> tuple[float, float]:
    """(length m, inner diameter mm) of the bore the flow takes through ``comp``."""
    d = comp.inner_diameter_mm
    if comp.kind in ("tube", "pump"):
        return comp.length_m, d
    area_m2 = math.pi * (d * 1e-3 / 2) ** 2
    return internal_volume_ml(comp) * 1e-6 / area_m2, d


def compliance_ml_bar(comp: Component, liquid_per_bar: float) -> float:
    override = comp.params.get("compliance_ul_bar")
    if override is not None:
        return max(override / 1000.0, 1e-9)
    wall = WALL_COMPLIANCE_PER_BAR[comp.material]
    return max(internal_volume_ml(comp) * (liquid_per_bar + wall), 1e-9)
