"""The physical line as data: what is plumbed to what, and the liquid in it.

``Line`` holds the controlled modules and passive parts (``Component``), the independent
protections (``Protection``), the flow graph (``connections``) and the ``Solvent``.
``line.loader.load_line`` builds one from a line file and checks it; the host checks it
further (``host/linecheck.py``), plans recipes against it, and the emulator runs its
physics.  Nothing here reads files or knows about boards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

MODULE_KINDS = ("pump", "reactor", "bpr", "analyzer", "valve")
PART_KINDS = ("tube", "mixer", "vessel")
PROTECTION_KINDS = ("relief_valve", "thermal_cutout")
VESSEL_ROLES = ("collection", "waste")
MATERIALS = ("pfa", "fep", "peek", "ss", "glass")


@dataclass
class Solvent:
    """Liquid properties at 25 degC and what temperature does to them."""

    name: str
    viscosity_mPas: float
    density_g_ml: float
    heat_capacity_j_gk: float = 2.0
    compressibility_per_bar: float = 1e-4
    boiling_c: float | None = None
    vaporization_kj_mol: float | None = None
    viscosity_activation_k: float = 0.0  # Andrade: mu(T) = mu25 exp(B (1/T - 1/298.15))

    def viscosity_at(self, t_c: float) -> float:
        """Viscosity in mPa s at ``t_c``."""
        if not self.viscosity_activation_k:
            return self.viscosity_mPas
        t_k = max(t_c, -50.0) + 273.15
        return self.viscosity_mPas * math.exp(
            self.viscosity_activation_k * (1.0 / t_k - 1.0 / 298.15)
        )

    def boiling_point_c(self, p_abs_bar: float) -> float | None:
        """Boiling point at an absolute pressure (Clausius-Clapeyron); None if unknown."""
        if self.boiling_c is None:
            return None
        if not self.vaporization_kj_mol or p_abs_bar <= 0:
            return self.boiling_c
        tb0 = self.boiling_c + 273.15
        inv = 1.0 / tb0 - 8.314 * math.log(p_abs_bar / 1.01325) / (
            self.vaporization_kj_mol * 1000.0
        )
        return 1.0 / inv - 273.15 if inv > 0 else float("inf")


# name -> (viscosity mPa s, density g/mL, cp J/(g K), compressibility 1/bar, bp degC,
#          dHvap kJ/mol, Andrade B K); CRC Handbook values at 25 degC, rounded.
SOLVENTS: dict[str, tuple[float, ...]] = {
    "water": (0.89, 0.997, 4.18, 4.6e-5, 100.0, 40.7, 1830.0),
    "methanol": (0.54, 0.787, 2.53, 1.25e-4, 64.7, 35.3, 1200.0),
    "ethanol": (1.07, 0.785, 2.44, 1.1e-4, 78.4, 38.6, 1650.0),
    "acetonitrile": (0.34, 0.776, 2.23, 1.1e-4, 81.6, 29.8, 850.0),
    "thf": (0.46, 0.883, 1.72, 9.5e-5, 66.0, 29.8, 900.0),
    "toluene": (0.56, 0.862, 1.70, 9.0e-5, 110.6, 33.2, 1050.0),
    "dmf": (0.79, 0.944, 2.06, 6.5e-5, 153.0, 47.6, 1100.0),
    "dmso": (1.99, 1.095, 1.96, 5.2e-5, 189.0, 52.9, 1500.0),
}


def named_solvent(name: str) -> Solvent:
    mu, rho, cp, beta, bp, hv, b = SOLVENTS[name]
    return Solvent(name, mu, rho, cp, beta, bp, hv, b)


@dataclass
class Component:
    """A module or part; its physical parameters are attributes (``reactor.volume_ml``)."""

    id: str
    kind: str
    category: str  # "module" or "part"
    params: dict = field(default_factory=dict)
    board: Path | None = None  # modules only

    def __getattr__(self, name):
        params = self.__dict__.get("params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(name)

    @property
    def is_module(self) -> bool:
        return self.category == "module"


@dataclass
class Protection:
    id: str
    kind: str
    at: str
    params: dict = field(default_factory=dict)

    def __getattr__(self, name):
        params = self.__dict__.get("params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(name)


@dataclass
class Line:
    id: str
    file: Path | None
    solvent: Solvent
    ambient_c: float
    modules: dict[str, Component]
    parts: dict[str, Component]
    protections: list[Protection]
    connections: list[tuple[str, str]]
    description: str = ""

    def component(self, cid: str) -> Component:
        return self.modules[cid] if cid in self.modules else self.parts[cid]

    def components(self) -> dict[str, Component]:
        out = dict(self.modules)
        out.update(self.parts)
        return out

    def downstream(self, cid: str) -> list[str]:
        return [b for a, b in self.connections if a == cid]

    def upstream(self, cid: str) -> list[str]:
        return [a for a, b in self.connections if b == cid]

    def flow_order(self) -> list[str]:
        """Components from the pumps towards the vessels (a topological order)."""
        ids = list(self.components())
        indeg = {c: 0 for c in ids}
        for _, b in self.connections:
            indeg[b] += 1
        order, ready = [], [c for c in ids if indeg[c] == 0]
        while ready:
            c = ready.pop(0)
            order.append(c)
            for d in self.downstream(c):
                indeg[d] -= 1
                if indeg[d] == 0:
                    ready.append(d)
        return order

    def modules_of(self, kind: str) -> list[Component]:
        return [m for m in self.modules.values() if m.kind == kind]
