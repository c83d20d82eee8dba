"""Boiling points of common flow-chemistry solvents at pressure.

A heated coil is only single-phase liquid while the solvent's boiling point at the
regulated pressure is above the coil temperature; ``boiling_point_c`` gives that boiling
point so ``skid check`` can refuse a line and recipe that would boil in the reactor.

Vapour pressure is the Antoine equation ``log10(P / bar) = A - B / (T / K + C)``.
Constants are from the NIST Chemistry WebBook (Linstrom and Mallard (eds.), NIST
Standard Reference Database 69, https://webbook.nist.gov/chemistry/, "Phase change
data", Antoine equation parameters), each with the temperature range NIST gives for it;
where NIST has more than one set, the one covering the higher temperatures is listed too.
DMSO has no NIST set above room temperature, so its constants are fitted through three
points (330, 400 and 460 K) of the ChemSep pure-component correlation (DIPPR eq. 101;
ChemSep database, Kooijman and Taylor) instead.

Above the highest Antoine range the vapour pressure is extended by a straight line in
ln P against 1/T from the end of that range to the critical point (Tc, Pc; ChemSep
database / CRC Handbook), and the Antoine set is also extrapolated: Antoine constants are
only trusted to a reduced temperature of about 0.75 (Thomson, Chem. Rev. 38 (1946) 1),
so of the two estimates the lower boiling point is used (the safe side for this check).
Checked against the ChemSep correlations from 1 to 21 bar absolute, the boiling points
agree within 3 K or err low (by at most 5 K), except where the NIST set itself differs
from ChemSep (methanol, ethanol, toluene: up to 3 K high); the check warns within 10 K.  Above Pc there is no
boiling: the boiling point is infinite (the liquid becomes supercritical when heated past
Tc, which a line check must treat separately if it ever matters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ATMOSPHERE_BAR = 1.01325


@dataclass(frozen=True)
class Antoine:
    t_min_k: float
    t_max_k: float
    a: float
    b: float
    c: float

    def pressure_bar(self, t_k: float) -> float:
        return 10.0 ** (self.a - self.b / (t_k + self.c))

    def temperature_k(self, p_bar: float) -> float:
        return self.b / (self.a - math.log10(p_bar)) - self.c


@dataclass(frozen=True)
class SolventData:
    name: str
    title: str
    antoine: tuple[Antoine, ...]  # ordered by temperature
    tc_k: float
    pc_bar: float
    aliases: tuple[str, ...] = ()

    def pressure_bar(self, t_c: float) -> float:
        """Vapour pressure (bar, absolute) at ``t_c`` degC."""
        t_k = t_c + 273.15
        top = self.antoine[-1]
        if t_k <= top.t_max_k:
            return _nearest(self.antoine, t_k).pressure_bar(t_k)
        if t_k >= self.tc_k:
            return self.pc_bar
        t0, p0 = top.t_max_k, top.pressure_bar(top.t_max_k)
        slope = math.log(self.pc_bar / p0) / (1.0 / self.tc_k - 1.0 / t0)
        line = p0 * math.exp(slope * (1.0 / t_k - 1.0 / t0))
        return max(line, top.pressure_bar(t_k))  # the higher: the conservative one

    def boiling_point_c(self, p_abs_bar: float) -> float:
        """Boiling point (degC) at absolute pressure ``p_abs_bar``; inf above Pc."""
        if p_abs_bar <= 0:
            raise ValueError(f"absolute pressure {p_abs_bar} bar is not above 0")
        if p_abs_bar >= self.pc_bar:
            return math.inf
        top = self.antoine[-1]
        p_top = top.pressure_bar(top.t_max_k)
        if p_abs_bar > p_top:
            t0 = top.t_max_k
            slope = math.log(self.pc_bar / p_top) / (1.0 / self.tc_k - 1.0 / t0)
            inv = 1.0 / t0 + math.log(p_abs_bar / p_top) / slope
            # Beyond the data both extensions are estimates: take the lower boiling point.
            return min(1.0 / inv, top.temperature_k(p_abs_bar)) - 273.15
        # The Antoine set whose range holds the answer (sets may overlap or leave gaps).
        candidates = [(s, s.temperature_k(p_abs_bar)) for s in self.antoine]
        for s, t_k in candidates:
            if s.t_min_k <= t_k <= s.t_max_k:
                return t_k - 273.15
        s, t_k = min(candidates, key=lambda st: _distance(st[0], st[1]))
        return t_k - 273.15


def _distance(s: Antoine, t_k: float) -> float:
    return max(s.t_min_k - t_k, t_k - s.t_max_k, 0.0)


def _nearest(sets: tuple[Antoine, ...], t_k: float) -> Antoine:
    return min(sets, key=lambda s: _distance(s, t_k))


def _a(t_min, t_max, a, b, c) -> Antoine:
    return Antoine(t_min, t_max, a, b, c)


# Antoine sets: NIST WebBook (range K, A, B, C); Tc (K) and Pc (bar): ChemSep / CRC.
SOLVENTS: dict[str, SolventData] = {
    s.name: s
    for s in (
        SolventData(
            "water",
            "water",
            (_a(344.0, 373.0, 5.08354, 1663.125, -45.622),),
            647.14,
            220.64,
            ("h2o",),
        ),
        SolventData(
            "acetonitrile",
            "acetonitrile",
            (_a(288.3, 362.3, 4.27873, 1355.374, -37.853),),
            545.5,
            48.3,
            ("mecn", "acn"),
        ),
        SolventData(
            "methanol",
            "methanol",
            (
                _a(288.1, 356.8, 5.20409, 1581.341, -33.50),
                _a(353.5, 512.63, 5.15853, 1569.613, -34.846),
            ),
            512.64,
            80.97,
            ("meoh",),
        ),
        SolventData(
            "ethanol",
            "ethanol",
            (
                _a(292.77, 366.63, 5.24677, 1598.673, -46.424),
                _a(364.8, 513.91, 4.92531, 1432.526, -61.819),
            ),
            513.92,
            61.48,
            ("etoh",),
        ),
        SolventData(
            "thf",
            "tetrahydrofuran",
            (_a(296.29, 372.8, 4.12118, 1202.942, -46.818),),
            540.2,
            51.9,
            ("tetrahydrofuran",),
        ),
        SolventData(
            "toluene",
            "toluene",
            (
                _a(308.52, 384.66, 4.07827, 1343.943, -53.773),
                _a(420.0, 580.0, 4.54436, 1738.123, 0.394),
            ),
            591.75,
            41.08,
        ),
        SolventData(
            "dmf",
            "N,N-dimethylformamide",
            (_a(303.0, 363.0, 3.93068, 1337.716, -82.648),),
            649.6,
            44.2,
            ("dimethylformamide", "n,n-dimethylformamide"),
        ),
        SolventData(
            "dmso",
            "dimethyl sulfoxide",
            (_a(330.0, 460.0, 4.40658, 1737.817, -67.489),),
            729.0,
            56.5,
            ("dimethyl_sulfoxide", "dimethylsulfoxide"),
        ),
        SolventData(
            "ethyl_acetate",
            "ethyl acetate",
            (_a(260.0, 385.0, 4.22809, 1245.702, -55.189),),
            523.2,
            38.3,
            ("etoac", "ethylacetate", "ethyl acetate"),
        ),
        SolventData(
            "dichloromethane",
            "dichloromethane",
            (_a(233.0, 313.0, 4.53691, 1327.016, -20.474),),
            510.0,
            60.8,
            ("dcm", "methylene_chloride"),
        ),
        SolventData(
            "acetone",
            "acetone",
            (_a(259.16, 507.6, 4.42448, 1312.253, -32.445),),
            508.1,
            47.0,
        ),
        SolventData(
            "2-propanol",
            "2-propanol",
            (_a(329.92, 362.41, 4.8610, 1357.427, -75.814),),
            508.3,
            47.62,
            ("ipa", "isopropanol", "2_propanol", "propan-2-ol"),
        ),
    )
}

_BY_ALIAS = {alias: s.name for s in SOLVENTS.values() for alias in (s.name, *s.aliases)}


class UnknownSolventError(KeyError):
    """A solvent name this module has no vapour-pressure data for."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown solvent {name!r}: allowed {', '.join(known_solvents())}")

    def __str__(self) -> str:
        return self.args[0]


def known_solvents() -> list[str]:
    return sorted(SOLVENTS)


def solvent_data(name: str) -> SolventData:
    """The data for ``name`` (case-insensitive; common abbreviations accepted)."""
    key = _BY_ALIAS.get(name.strip().lower().replace(" ", "_"))
    if key is None:
        key = _BY_ALIAS.get(name.strip().lower())
    if key is None:
        raise UnknownSolventError(name)
    return SOLVENTS[key]


def boiling_point_c(name: str, p_abs_bar: float) -> float:
    """Boiling point of solvent ``name`` at ``p_abs_bar`` bar absolute (degC)."""
    return solvent_data(name).boiling_point_c(p_abs_bar)


def gauge_to_absolute(p_gauge_bar: float) -> float:
    return p_gauge_bar + ATMOSPHERE_BAR
