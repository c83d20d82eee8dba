"""The chemistry in a reactor: rate laws, the steady yield at the coil outlet, and the
best yield a region of conditions allows.  Pure functions of the line file's numbers:
the host (campaigns: the true yield, the best achievable) and the emulator (reacting
what flows through the coil) share them.

The reactions, with Arrhenius rate constants ``k(T) = k_ref exp(-Ea/R (1/T - 1/T_ref))``::

    R1  A + B -> P     r1 = k1 [A][B]     (second order: the wanted product)
    R2  P     -> D     r2 = k2 [P]        (first order: thermal degradation)
    R3  P + B -> D     r3 = k3 [P][B]^2   (over-reaction, promoted by a second B)
    R4  A     -> S     r4 = k4 [A]        (first order: A decomposes; S is not tracked)

Why four: the best yield of P must lie inside the region of conditions, not on a bound.

* Equivalents.  Slow formation loses P to R2 and A to R4, both ~ 1/[B] relative to R1;
  R3 loses P ~ [B] relative to R1 (it is second order in B; first order would make the
  ratio R3/R1 independent of [B] and more B would always be better).  So some excess of
  B is best, about sqrt((k2 + k4)/k3).
* Temperature.  With the equivalents chosen, the loss scales as sqrt((k2 + k4) k3)/k1.
  R2 has a high activation energy and R3, R4 low ones, so that loss falls with
  temperature while R4 dominates and rises once R2 does: the best temperature lies
  between (without R4 it would keep falling to the coldest, slowest corner).
* Residence time.  P forms, then degrades: the best time is where they balance.

Conditions use the campaign's variable names (``VARIABLES``): ``temperature_c``,
``residence_time_min``, ``equivalents`` (of B on A) and ``concentration_mol_l`` (the
concentration of A in its feed, the recipe's ``reagents.<a>.concentration_mol_l``).  The
two feeds mix as ``host/recipe/plan.py`` sets the flows (each reagent's flow times its
feed concentration proportional to its equivalents), so at the coil inlet::

    [A]0 = ca cb / (cb + e ca),   [B]0 = e [A]0

with ``ca``, ``cb`` the feed concentrations and ``e`` the equivalents.  The yield is
``[P]out / [A]0`` of a plug-flow coil (dispersion is the emulator's business).
"""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass

R_KJ_MOL_K = 8.314462618e-3
VARIABLES = ("temperature_c", "residence_time_min", "equivalents", "concentration_mol_l")
SPECIES = ("A", "B", "P", "D")
INTERFERENT_DEGRADANT = "degradant"  # the interferent is D rather than a reagent

Rates = namedtuple("Rates", "k1 k2 k3 k4")  # L/(mol min), 1/min, L^2/(mol^2 min), 1/min


def arrhenius(k_ref: float, ea_kj_mol: float, t_ref_c: float, temperature_c: float) -> float:
    """``k_ref`` (given at ``t_ref_c``) at ``temperature_c``."""
    inv = 1.0 / (temperature_c + 273.15) - 1.0 / (t_ref_c + 273.15)
    return k_ref * math.exp(-ea_kj_mol / R_KJ_MOL_K * inv)


def derivatives(conc, k: Rates):
    """d[A], d[B], d[P], d[D] per minute of ``conc`` = (A, B, P, D) in mol/L: what the
    emulator integrates in each stirred tank of the coil."""
    a, b, p, _ = conc
    r1 = k.k1 * a * b
    r3 = k.k3 * p * b * b
    return (-r1 - k.k4 * a, -r1 - r3, r1 - k.k2 * p - r3, k.k2 * p + r3)


@dataclass(frozen=True)
class Kinetics:
    """One reactor's reactions (see the module text) and the feeds that supply A and B.

    ``a``/``b``: the pumps feeding A and B; ``feed_a_mol_l``/``feed_b_mol_l``: their feed
    concentrations (the line's pumps).  ``absorptivity_product`` and
    ``absorptivity_interferent`` (L/(mol cm)), ``interferent`` (the pump id of A or B,
    or ``"degradant"``) and ``noise_au`` describe what the analyzer sees downstream."""

    reactor: str
    a: str
    b: str
    t_ref_c: float
    k1_ref_l_mol_min: float
    ea1_kj_mol: float
    k2_ref_per_min: float
    ea2_kj_mol: float
    k3_ref_l2_mol2_min: float = 0.0
    ea3_kj_mol: float = 0.0
    k4_ref_per_min: float = 0.0
    ea4_kj_mol: float = 0.0
    absorptivity_product: float = 0.0
    absorptivity_interferent: float = 0.0
    interferent: str = ""
    noise_au: float = 0.0
    feed_a_mol_l: float = 1.0
    feed_b_mol_l: float = 1.0

    # --- rates and concentrations --------------------------------------------------------

    def rates(self, temperature_c: float) -> Rates:
        """``Rates(k1, k2, k3, k4)`` at ``temperature_c`` (units: ``Rates``)."""
        t = self.t_ref_c
        return Rates(
            arrhenius(self.k1_ref_l_mol_min, self.ea1_kj_mol, t, temperature_c),
            arrhenius(self.k2_ref_per_min, self.ea2_kj_mol, t, temperature_c),
            arrhenius(self.k3_ref_l2_mol2_min, self.ea3_kj_mol, t, temperature_c),
            arrhenius(self.k4_ref_per_min, self.ea4_kj_mol, t, temperature_c),
        )

    def inlet(self, equivalents: float, conc_a_mol_l: float | None = None) -> tuple[float, float]:
        """([A]0, [B]0) in mol/L where the feeds meet, for ``equivalents`` of B and A's
        feed at ``conc_a_mol_l`` (None: the line's feed concentration)."""
        ca = self.feed_a_mol_l if conc_a_mol_l is None else conc_a_mol_l
        cb = self.feed_b_mol_l
        a0 = ca * cb / (cb + equivalents * ca)
        return a0, equivalents * a0

    def outlet(
        self,
        temperature_c: float,
        residence_min: float,
        equivalents: float,
        conc_a_mol_l: float | None = None,
    ) -> dict[str, float]:
        """[A], [B], [P], [D] (mol/L) leaving a plug-flow coil after ``residence_min`` at
        ``temperature_c``: the rate equations integrated by scipy's LSODA (rtol 1e-9)."""
        from scipy.integrate import solve_ivp  # only the callers that integrate pay for it

        a0, b0 = self.inlet(equivalents, conc_a_mol_l)
        k = self.rates(temperature_c)
        if residence_min <= 0:
            return dict(zip(SPECIES, (a0, b0, 0.0, 0.0), strict=True))
        sol = solve_ivp(
            lambda _t, y: derivatives(y, k),
            (0.0, residence_min),
            [a0, b0, 0.0, 0.0],
            method="LSODA",
            rtol=1e-9,
            atol=1e-12,
        )
        return dict(zip(SPECIES, (float(v) for v in sol.y[:, -1]), strict=True))

    def steady_yield(
        self,
        temperature_c: float,
        residence_min: float,
        equivalents: float,
        conc_a_mol_l: float | None = None,
    ) -> float:
        """Yield of P on A (0..1) at the outlet of the plug-flow coil (``outlet``)."""
        a0, _ = self.inlet(equivalents, conc_a_mol_l)
        return self.outlet(temperature_c, residence_min, equivalents, conc_a_mol_l)["P"] / a0

    def yield_at(self, condition: dict) -> float:
        """``steady_yield`` of a condition given by variable names (``VARIABLES``;
        ``concentration_mol_l`` may be absent: the line's feed)."""
        return self.steady_yield(
            condition["temperature_c"],
            condition["residence_time_min"],
            condition["equivalents"],
            condition.get("concentration_mol_l"),
        )

    def absorbance(self, conc: dict[str, float], path_mm: float) -> float:
        """Noise-free absorbance of ``conc`` (species A, B, P, D in mol/L) in a cell of
        ``path_mm``: path x (eps_P [P] + eps_I [interferent])."""
        return (path_mm / 10.0) * (
            self.absorptivity_product * conc.get("P", 0.0)
            + self.absorptivity_interferent * conc.get(self.interferent_species, 0.0)
        )

    def yield_from_absorbance(
        self,
        absorbance: float,
        path_mm: float,
        equivalents: float,
        conc_a_mol_l: float | None = None,
    ) -> float:
        """The yield an analyzer reading implies, as a chemist would work it out: the
        interferent taken as what the reaction left of it if every mole of P used one of
        A and one of B ([I] = [I]0 - [P]; 0 for the degradant).  What R2-R4 took besides
        biases it by eps_I ([D] + ...) / (eps_P - eps_I): well under 1 % of yield with the
        demo's weak interferent."""
        a0, b0 = self.inlet(equivalents, conc_a_mol_l)
        i0 = {"A": a0, "B": b0}.get(self.interferent_species, 0.0)
        eps_p, eps_i = self.absorptivity_product, self.absorptivity_interferent
        if self.interferent_species == "D":
            eps_i = 0.0
        if eps_p <= eps_i:
            raise ValueError("the product must absorb more than the interferent to be measured")
        per_cm = absorbance / (path_mm / 10.0)
        return (per_cm - eps_i * i0) / (eps_p - eps_i) / a0

    @property
    def interferent_species(self) -> str:
        """The species letter (A, B or D) the interferent is."""
        if self.interferent == self.a:
            return "A"
        if self.interferent == self.b:
            return "B"
        return "D"

    # --- the best achievable yield -----------------------------------------------------

    def best_achievable(self, region: dict, feasible=None, fixed: dict | None = None):
        """``(yield, condition)``: the highest steady yield over ``region`` ({variable:
        (lo, hi)}), counting only conditions where ``feasible(condition)`` is true (None:
        all).  Variables not in ``region`` take their value from ``fixed`` (defaults: 1.0
        equivalents, the line's feed of A, ``t_ref_c``, 1 min).

        A vectorised Runge-Kutta scan of the grid (every residence time comes from one
        integration per temperature/equivalents/concentration point) ranks the
        candidates; ``feasible`` is asked about the best of a coarse grid, then about
        the fine points that beat it (a few hundred calls in all: it may plan a whole
        recipe each time); the best feasible ones are refined with ``steady_yield`` by a
        Nelder-Mead search that treats infeasible points as yield 0, so an optimum the
        envelope cuts off ends on the envelope's edge.  Returns (0.0, None) if no
        candidate asked about is feasible."""
        from line.kinetics_search import best_achievable

        return best_achievable(self, region, feasible, fixed)


def from_line(line, reactor: str | None = None) -> Kinetics | None:
    """The ``Kinetics`` of ``reactor`` (None: the first reactor with a ``kinetics``
    table) of a loaded line; None when it has none."""
    for comp in line.modules_of("reactor"):
        if (reactor is None or comp.id == reactor) and "kinetics" in comp.params:
            p = dict(comp.params["kinetics"])
            a, b = p.pop("a"), p.pop("b")
            return Kinetics(
                reactor=comp.id,
                a=a,
                b=b,
                feed_a_mol_l=line.modules[a].params.get("feed_concentration_mol_l", 1.0),
                feed_b_mol_l=line.modules[b].params.get("feed_concentration_mol_l", 1.0),
                **p,
            )
    return None
