"""The chemistry in a reactor's coil: A, B, P and D reacting in each stirred tank.

The transport (``emulator.transport``) carries the pumps' reagents and, on a line whose
reactor has a ``kinetics`` table, the product ``P`` and the degradant ``D`` too
(``PRODUCT``, ``DEGRADANT``: upper case, so no pump id can take the name).  After each
transport step ``CoilReaction.step`` advances the rate laws of ``line.kinetics`` in every
tank of the coil at the coil's emulated temperature, by the explicit midpoint rule (the
plant's sub-steps are 0.1 s, so rate x step stays far below 1 at any temperature of the
campaign region), or, where the rates are too fast for it (a coil running away), by a
positive implicit Euler step.  Only the coil reacts: the tubes around it are at room temperature
and hold a hundredth of its volume.
"""

from __future__ import annotations

import numpy as np

from line.kinetics import Kinetics

PRODUCT = "P"
DEGRADANT = "D"
MIDPOINT_LIMIT = 0.1  # largest rate x step for the explicit rule (error ~ 1e-4 per step)


class CoilReaction:
    """One reactor's reaction, acting on the transport's tanks of that reactor."""

    def __init__(self, kin: Kinetics, species: list[str], tanks: list[list[float]]):
        self.kin = kin
        self.a = tanks[species.index(kin.a)]
        self.b = tanks[species.index(kin.b)]
        self.p = tanks[species.index(PRODUCT)]
        self.d = tanks[species.index(DEGRADANT)]
        self._t = None
        self._rates = kin.rates(kin.t_ref_c)

    def step(self, dt_s: float, temperature_c: float) -> None:
        """React every tank for ``dt_s`` seconds at ``temperature_c`` (numpy over the
        tanks: a coil has tens of them, and a loop in Python would cost the plant a third
        of its speed)."""
        if temperature_c != self._t:
            self._t = temperature_c
            self._rates = self.kin.rates(temperature_c)
        k1, k2, k3, k4 = self._rates
        h = dt_s / 60.0  # the rate constants are per minute
        a, b, p, d = np.array(self.a), np.array(self.b), np.array(self.p), np.array(self.d)
        b_max = float(b.max()) if len(b) else 0.0
        fastest = k1 * (float(a.max()) + b_max) + k2 + 2.0 * k3 * b_max * b_max + k4
        if fastest * h <= MIDPOINT_LIMIT:
            a, b, p, d = _midpoint(a, b, p, d, h, k1, k2, k3, k4)
        else:
            a, b, p, d = _positive_euler(a, b, p, d, h, k1, k2, k3, k4)
        self.a[:] = a.tolist()
        self.b[:] = b.tolist()
        self.p[:] = p.tolist()
        self.d[:] = d.tolist()


def _midpoint(a, b, p, d, h, k1, k2, k3, k4):
    """The explicit midpoint rule: second order, for rate x step up to MIDPOINT_LIMIT."""
    r1 = k1 * a * b
    r3 = k3 * p * b * b
    am = a + (0.5 * h) * (-r1 - k4 * a)
    bm = b + (0.5 * h) * (-r1 - r3)
    pm = p + (0.5 * h) * (r1 - k2 * p - r3)
    r1 = k1 * am * bm
    r3 = k3 * pm * bm * bm
    return (
        np.maximum(a + h * (-r1 - k4 * am), 0.0),
        np.maximum(b + h * (-r1 - r3), 0.0),
        np.maximum(p + h * (r1 - k2 * pm - r3), 0.0),
        d + h * (k2 * pm + r3),
    )


def _positive_euler(a, b, p, d, h, k1, k2, k3, k4):
    """Each species' losses taken implicitly (Patankar): first order, but positive and
    stable at any rate, e.g. in a coil running away to hundreds of degC."""
    a_new = a / (1.0 + h * (k1 * b + k4))
    made = h * k1 * a_new * b  # P made, and A and B it used
    b_new = b / (1.0 + h * (k1 * a_new + k3 * p * b))
    p_new = (p + made) / (1.0 + h * (k2 + k3 * b_new * b_new))
    return a_new, b_new, p_new, d + (p + made - p_new)
