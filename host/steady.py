"""Steady-state detection, generic over any signal.

A signal is steady when, over the last ``window_s`` seconds (the samples in it plus the
last one before it, so the samples span the whole window), all its samples lie within a
band: ``max - min <= tolerance``, where the tolerance is the larger of
``tolerance_abs`` and ``tolerance_rel * |mean|`` (give either or both).  A band on the
range also bounds the slope: a ramp of slope ``s`` spans ``s * window_s`` in one window,
so it is never steady when that exceeds the tolerance.

The window must be covered: the detector answers True only once it has seen good
samples for at least ``window_s`` without interruption, and at least ``min_samples`` of
them in the window.  A bad sample (None, NaN, infinite) or time running backwards starts
over: a signal that just came back from a fault has to prove itself for a whole window.

Deterministic and cheap: O(1) amortised per sample (monotonic min/max queues).
"""

from __future__ import annotations

import math
from collections import deque


class SteadyState:
    """``update(t_ms, value) -> bool``: True while the last ``window_s`` are steady."""

    def __init__(
        self,
        window_s: float,
        tolerance_abs: float | None = None,
        tolerance_rel: float | None = None,
        min_samples: int = 5,
    ):
        if not (isinstance(window_s, int | float) and math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s = {window_s!r}: allowed a number > 0")
        if tolerance_abs is None and tolerance_rel is None:
            raise ValueError("give tolerance_abs, tolerance_rel or both")
        for name, tol in (("tolerance_abs", tolerance_abs), ("tolerance_rel", tolerance_rel)):
            if tol is not None and not (math.isfinite(tol) and tol >= 0):
                raise ValueError(f"{name} = {tol!r}: allowed a number >= 0")
        if not (isinstance(min_samples, int) and min_samples >= 2):
            raise ValueError(f"min_samples = {min_samples!r}: allowed an integer >= 2")
        self.window_ms = int(round(window_s * 1000))
        self.tolerance_abs = tolerance_abs
        self.tolerance_rel = tolerance_rel
        self.min_samples = min_samples
        self.reset()

    def reset(self) -> None:
        self._samples: deque[tuple[int, float]] = deque()
        self._max: deque[tuple[int, float]] = deque()  # decreasing values
        self._min: deque[tuple[int, float]] = deque()  # increasing values
        self._sum = 0.0
        self._since: int | None = None  # first good sample since the last reset
        self._last_t: int | None = None
        self.steady = False

    @property
    def span(self) -> float | None:
        """max - min over the current window (None without samples)."""
        if not self._samples:
            return None
        return self._max[0][1] - self._min[0][1]

    @property
    def mean(self) -> float | None:
        if not self._samples:
            return None
        return self._sum / len(self._samples)

    def tolerance(self) -> float:
        """The band width allowed now (depends on the mean for a relative tolerance)."""
        tol = self.tolerance_abs or 0.0
        mean = self.mean
        if self.tolerance_rel is not None and mean is not None:
            tol = max(tol, self.tolerance_rel * abs(mean))
        return tol

    def update(self, t_ms: int, value: float | None) -> bool:
        bad = value is None or not isinstance(value, int | float) or not math.isfinite(value)
        if bad or (self._last_t is not None and t_ms < self._last_t):
            self.reset()
            if bad:
                return False
        value = float(value)
        self._last_t = t_ms
        if self._since is None:
            self._since = t_ms
        self._samples.append((t_ms, value))
        self._sum += value
        while self._max and self._max[-1][1] <= value:
            self._max.pop()
        self._max.append((t_ms, value))
        while self._min and self._min[-1][1] >= value:
            self._min.pop()
        self._min.append((t_ms, value))
        # Keep the newest sample at or before the window's start too, so the samples
        # always span the whole window (a sampled ramp cannot hide in the gap).
        start = t_ms - self.window_ms
        samples = self._samples
        while len(samples) >= 2 and samples[1][0] <= start:
            _, old = samples.popleft()
            self._sum -= old
        oldest = samples[0][0]
        while self._max[0][0] < oldest:
            self._max.popleft()
        while self._min[0][0] < oldest:
            self._min.popleft()
        covered = t_ms - self._since >= self.window_ms
        self.steady = (
            covered
            and len(self._samples) >= self.min_samples
            and self.span <= self.tolerance() + 1e-12
        )
        return self.steady
