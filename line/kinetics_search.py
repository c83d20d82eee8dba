"""The best achievable yield of a ``line.kinetics.Kinetics`` over a region of conditions.

Two stages, because the feasibility test is the caller's and may be slow:

1. a scan: every grid point of temperature x equivalents x feed concentration is
   integrated at once (numpy arrays, classical Runge-Kutta), and every residence time of
   the grid is read off that one integration as it passes;
2. the candidates, best first, are put to ``feasible``: the coarse grid's until one
   passes, then the fine grid's that beat it (a bounded number); from the best feasible
   ones a bounded Nelder-Mead search (scipy) refines the condition with the exact
   ``steady_yield``, counting an infeasible or out-of-region point as yield 0.  A few
   hundred calls of ``feasible`` in all (``COARSE``, ``MAX_FINE_CHECKS``, ``STARTS``).
"""

from __future__ import annotations

import math

import numpy as np

from line.kinetics import VARIABLES

GRID = {"temperature_c": 41, "equivalents": 33, "concentration_mol_l": 9, "residence_time_min": 96}
RK4_STABLE = 0.25  # largest rate x step: RK4 is accurate to ~1e-6 there
MAX_STEPS = 40000
STARTS = 3  # feasible grid points the refinement starts from
# Bounding the calls of the caller's feasibility test (it may plan a whole recipe): the
# coarse grid is walked first (at most 6 x 9 x 5 points), then at most this many of the
# fine points that beat its best.
COARSE = {"temperature_c": 8, "residence_time_min": 12, "equivalents": 8}
MAX_FINE_CHECKS = 300


def _defaults(kin) -> dict[str, float]:
    return {
        "temperature_c": kin.t_ref_c,
        "residence_time_min": 1.0,
        "equivalents": 1.0,
        "concentration_mol_l": kin.feed_a_mol_l,
    }


def _axes(kin, region: dict, fixed: dict) -> dict[str, np.ndarray]:
    """The grid values of each variable (one value for a fixed one)."""
    for name in region:
        if name not in VARIABLES:
            raise ValueError(f"region: {name!r} is not a variable ({', '.join(VARIABLES)})")
    values = dict(_defaults(kin), **(fixed or {}))
    axes = {}
    for name in VARIABLES:
        if name in region:
            lo, hi = (float(x) for x in region[name])
            if not lo <= hi:
                raise ValueError(f"region: {name} = ({lo}, {hi}) is not a range lo <= hi")
            axes[name] = np.linspace(lo, hi, GRID[name]) if hi > lo else np.array([lo])
        else:
            axes[name] = np.array([float(values[name])])
    return axes


def _rates(kin, temp_c: np.ndarray) -> list[np.ndarray]:
    """k1..k4 at each temperature (the Arrhenius law of ``Kinetics.rates``, vectorised)."""
    inv = 1.0 / (temp_c + 273.15) - 1.0 / (kin.t_ref_c + 273.15)
    pairs = (
        (kin.k1_ref_l_mol_min, kin.ea1_kj_mol),
        (kin.k2_ref_per_min, kin.ea2_kj_mol),
        (kin.k3_ref_l2_mol2_min, kin.ea3_kj_mol),
        (kin.k4_ref_per_min, kin.ea4_kj_mol),
    )
    return [k * np.exp(-ea / 8.314462618e-3 * inv) for k, ea in pairs]


def _deriv(y, k):
    a, b, p = y
    r1 = k[0] * a * b
    r3 = k[2] * p * b * b
    return np.stack((-r1 - k[3] * a, -r1 - r3, r1 - k[1] * p - r3))


def scan(kin, axes: dict[str, np.ndarray]) -> np.ndarray:
    """Rows ``(yield, temperature_c, residence_time_min, equivalents,
    concentration_mol_l)`` for every grid point (Runge-Kutta yields, ~1e-5)."""
    t, e, c = np.meshgrid(
        axes["temperature_c"], axes["equivalents"], axes["concentration_mol_l"], indexing="ij"
    )
    t, e, c = t.ravel(), e.ravel(), c.ravel()
    cb = kin.feed_b_mol_l
    a0 = c * cb / (cb + e * c)
    y = np.stack((a0, e * a0, np.zeros_like(a0)))
    k = _rates(kin, t)
    taus = np.sort(axes["residence_time_min"])
    fastest = float(np.max(k[0] * (y[0] + y[1]) + k[1] + 2.0 * k[2] * y[1] ** 2 + k[3]))
    steps = max(1, math.ceil(taus[-1] * max(fastest, 1e-9) / RK4_STABLE))
    if steps > MAX_STEPS:
        raise ValueError(f"rates too fast to scan ({fastest:g}/min over {taus[-1]:g} min)")
    dt = taus[-1] / steps
    rows, done, now = [], 0, 0.0
    while done < len(taus):
        if taus[done] <= now + 1e-12:
            rows.append(np.stack((y[2] / a0, t, np.full_like(t, taus[done]), e, c), axis=1))
            done += 1
            continue
        h = min(dt, taus[done] - now)
        k1 = _deriv(y, k)
        k2 = _deriv(y + h / 2 * k1, k)
        k3 = _deriv(y + h / 2 * k2, k)
        k4 = _deriv(y + h * k3, k)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        now += h
    return np.concatenate(rows)


def _condition(row) -> dict[str, float]:
    return {
        "temperature_c": float(row[1]),
        "residence_time_min": float(row[2]),
        "equivalents": float(row[3]),
        "concentration_mol_l": float(row[4]),
    }


def _refine(kin, start: dict, region: dict, feasible) -> tuple[float, dict]:
    """Nelder-Mead from ``start`` over the region's variables (scaled to 0..1)."""
    from scipy.optimize import minimize

    names = [n for n in VARIABLES if n in region and region[n][1] > region[n][0]]
    lo = np.array([region[n][0] for n in names], dtype=float)
    span = np.array([region[n][1] - region[n][0] for n in names], dtype=float)

    def cond_of(x):
        out = dict(start)
        out.update({n: float(v) for n, v in zip(names, lo + span * x, strict=True)})
        return out

    def loss(x):
        if np.any(x < 0.0) or np.any(x > 1.0):
            return 0.0
        cond = cond_of(x)
        if feasible is not None and not feasible(cond):
            return 0.0
        return -kin.yield_at(cond)

    x0 = (np.array([start[n] for n in names]) - lo) / span
    best = (kin.yield_at(start), start)
    if not names:
        return best
    # The first simplex spans 5 % of each range, into the region (scipy's default takes 5 %
    # of the start's value: nothing at all for a start on a lower bound).
    simplex = [x0] + [
        x0 + np.eye(len(x0))[i] * (0.05 if x0[i] < 0.5 else -0.05) for i in range(len(x0))
    ]
    res = minimize(
        loss,
        x0,
        method="Nelder-Mead",
        options={"xatol": 1e-4, "fatol": 1e-7, "initial_simplex": np.array(simplex)},
    )
    if -res.fun > best[0]:
        best = (-float(res.fun), cond_of(np.clip(res.x, 0.0, 1.0)))
    return best


def _coarse(rows: np.ndarray, axes: dict[str, np.ndarray]) -> np.ndarray:
    """The rows on a coarse sub-grid (every ``COARSE[name]``-th value of each axis)."""
    keep = np.ones(len(rows), dtype=bool)
    for col, name in enumerate(("temperature_c", "residence_time_min", "equivalents"), 1):
        values = axes[name][:: COARSE[name]]
        keep &= np.isin(rows[:, col], np.append(values, axes[name][-1]))
    return rows[keep]


def _feasible_starts(rows: np.ndarray, axes, feasible) -> list[dict]:
    """Up to ``STARTS`` feasible grid points among the best, found with a bounded number
    of ``feasible`` calls: the best feasible point of the coarse grid, then the fine
    points that beat it, best first: anywhere, and around that coarse point (where the
    best feasible lies when the envelope cuts the optimum off), at most
    ``MAX_FINE_CHECKS`` / 2 of each."""
    rows = rows[np.argsort(-rows[:, 0], kind="stable")]
    if feasible is None:
        return [_condition(r) for r in rows[:STARTS]]
    anchor = next((r for r in _coarse(rows, axes) if feasible(_condition(r))), None)
    if anchor is None:
        better, near = rows, rows[:0]
    else:
        better = rows[rows[:, 0] > anchor[0]]
        close = np.ones(len(better), dtype=bool)
        for col, name in enumerate(("temperature_c", "residence_time_min", "equivalents"), 1):
            a = axes[name]
            step = COARSE[name] * (a[1] - a[0]) if len(a) > 1 else 0.0
            close &= np.abs(better[:, col] - anchor[col]) <= step + 1e-9
        near = better[close]
    found = [anchor] if anchor is not None else []
    for candidates in (better, near):
        for r in candidates[: MAX_FINE_CHECKS // 2]:
            if feasible(_condition(r)):
                found.append(r)
                break
    found.sort(key=lambda r: -r[0])
    return [_condition(r) for r in found[:STARTS]]


def best_achievable(kin, region: dict, feasible=None, fixed: dict | None = None):
    """See ``Kinetics.best_achievable``."""
    axes = _axes(kin, region, fixed or {})
    starts = _feasible_starts(scan(kin, axes), axes, feasible)
    if not starts:
        return 0.0, None
    full = {n: (float(a[0]), float(a[-1])) for n, a in axes.items()}
    results = [_refine(kin, s, full, feasible) for s in starts]
    return max(results, key=lambda r: r[0])
