"""Platinum RTD calibration (``calibration.type = "pt100"``) and the IEC 60751 curve.

Split from ``edge.signals`` so that only boards whose config has a PT100/PT1000 channel
carry and load this file (``edge.build`` imports it lazily).
"""

import math

from edge.signals import REASON_OPEN, REASON_SHORT, Calibration, _require_number

# IEC 60751 Callendar-Van Dusen coefficients.
CVD_A = 3.9083e-3
CVD_B = -5.775e-7
CVD_C = -4.183e-12  # only below 0 degC


def cvd_resistance(t_c, r0=100.0):
    """Resistance of a platinum RTD at ``t_c`` degC (IEC 60751), for tests and tables."""
    r = 1.0 + CVD_A * t_c + CVD_B * t_c * t_c
    if t_c < 0:
        r += CVD_C * (t_c - 100.0) * t_c * t_c * t_c
    return r0 * r


class Pt100(Calibration):
    """Platinum RTD, raw in ohms -> degC by Callendar-Van Dusen.

    0..850 degC (R >= R0): the quadratic R = R0 (1 + A T + B T^2) solved exactly for T, in
    the cancellation-free form T = 2 (R/R0 - 1) / (A + sqrt(A^2 + 4 B (R/R0 - 1))), which
    keeps its precision in single-precision floats.  Below 0 degC the quadratic root is
    refined by Newton steps on the full equation (with the C term), so the usual
    -200..0 degC range is accurate too.

    Raw above ``r_open`` (default 4 * R0: 400 ohm for a Pt100, beyond 850 degC) is an open
    circuit; below ``r_short`` (default 0.18 * R0: 18 ohm, about -200 degC) a short.
    ``r0=1000`` gives a Pt1000.
    """

    def __init__(self, r0=100.0, r_short=None, r_open=None):
        _require_number("r0", r0)
        if r0 <= 0:
            raise ValueError("r0 must be > 0 ohm, got {}".format(r0))
        if r_short is None:
            r_short = 0.18 * r0
        if r_open is None:
            r_open = 4.0 * r0
        _require_number("r_short", r_short)
        _require_number("r_open", r_open)
        if not 0 < r_short < r0 < r_open:
            raise ValueError(
                "need 0 < r_short < r0 < r_open, got r_short={} r0={} r_open={}".format(
                    r_short, r0, r_open
                )
            )
        self.r0 = r0
        self.r_short = r_short
        self.r_open = r_open

    def raw_ok(self, raw):
        return self.r_short <= raw <= self.r_open

    def bad_reason(self, raw):
        return REASON_SHORT if raw < self.r_short else REASON_OPEN

    def convert(self, raw):
        x = raw / self.r0 - 1.0
        t = 2.0 * x / (CVD_A + math.sqrt(CVD_A * CVD_A + 4.0 * CVD_B * x))
        if t < 0:
            # The C term is -4.2e-12 (t - 100) t^3: tiny near 0, ~2.5 degC at -200 degC.
            n = 4
            while n > 0:
                n -= 1
                t2 = t * t
                f = CVD_A * t + CVD_B * t2 + CVD_C * (t - 100.0) * t2 * t - x
                df = CVD_A + 2.0 * CVD_B * t + CVD_C * (4.0 * t - 300.0) * t2
                t -= f / df
        return t
