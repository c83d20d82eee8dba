"""In-spec product only: a collect phase's quality specification watched, excursions
turned into diversion windows through the line's residence-time model, and the outlet's
volume booked as segments.  Deterministic: driven by the sequencer's clock, never sleeps.

``QualityMonitor(spec, line, flows, collector)`` watches each limit of the phase's
``QualitySpec`` (docs/recipes.md, "Quality specifications").  A limit out of range for
its ``for_s`` is an *excursion*, dated from the first sample out of range.  The material
it affected is what passed through the reactor during it (a signal at the reactor, a
pump, the BPR: anything but an analyzer), or through the analyzer (analyzer signals);
the line's residence-time model (``line/rtd.py``) says when that material is at the
outlet valve: off-spec from the excursion's start plus the 1 % quantile of the transit
from the measuring point's outlet, to its end plus the 99 % quantile of the transit
through it.  While an excursion lasts or the valve sees off-spec material, the outlet is
diverted to waste; collection resumes once every limit has held again for
``resume_after_s`` plus that transit.

``Ledger`` books every tick's volume at the outlet (while a quality phase runs, or the
outlet is at collection): to collection in spec, to collection off spec (material that
reached the collector before the valve could turn: the detection and switching delay
exceeded the transit), or diverted, each with why.  Volumes come from the pumps' flow
sensors where a pump has one (a sensor channel in mL/min), else from their setpoints,
and then each segment says it is an estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from line.rtd import Rtd

START_QUANTILE = 0.01
END_QUANTILE = 0.99


@dataclass
class Excursion:
    limit: str  # the limit's description
    signal: str
    start_ms: int
    detected_ms: int
    end_ms: int | None = None
    worst: float | None = None
    low: float = -math.inf
    high: float = math.inf
    off_from_ms: int = 0  # at the outlet valve
    off_to_ms: int | None = None  # None: not known yet (the excursion lasts)
    tail_ms: int = 0  # 99 % transit added to the end

    @property
    def why(self) -> str:
        return f"{self.signal} at {self.worst:.4g}, outside {self.low:.4g}..{self.high:.4g}"

    def as_dict(self, t0_ms: int) -> dict:
        def s(ms):
            return None if ms is None else round((ms - t0_ms) / 1000.0, 3)

        return {
            "signal": self.signal,
            "limit": self.limit,
            "start_s": s(self.start_ms),
            "detected_s": s(self.detected_ms),
            "end_s": s(self.end_ms),
            "worst": None if self.worst is None else round(self.worst, 4),
            "low": None if math.isinf(self.low) else round(self.low, 4),
            "high": None if math.isinf(self.high) else round(self.high, 4),
            "off_spec_from_s": s(self.off_from_ms),
            "off_spec_to_s": s(self.off_to_ms),
        }


class QualityMonitor:
    def __init__(self, spec, line, flows: dict[str, float], reactor: str, valve: str):
        self.spec = spec
        rtd = Rtd(line, flows)
        self.transits = []  # per limit: (start quantile ms, end quantile ms)
        for lim in spec.limits:
            origin = lim.module if line.component(lim.module).kind == "analyzer" else reactor
            after = rtd.transit(origin, valve)
            through = rtd.transit(origin, valve, through_a=True)
            self.transits.append(
                (
                    _ms(after.quantile(START_QUANTILE)),
                    _ms(through.quantile(END_QUANTILE)),
                )
            )
        self.baselines: list[float | None] = [None] * len(spec.limits)
        self.out_since: list[int | None] = [None] * len(spec.limits)
        self.open: list[Excursion | None] = [None] * len(spec.limits)
        self.excursions: list[Excursion] = []
        self.in_spec_since: int | None = None
        self.diverting_since: int | None = None
        self.changed = False  # a new excursion: the ledger re-books what it covers

    def update(self, now_ms: int, value_of) -> list[Excursion]:
        """Judge every limit at ``now_ms`` (``value_of(module, channel)``, None: not
        known, which is not an excursion); return the excursions that started now."""
        started = []
        all_in = True
        for i, lim in enumerate(self.spec.limits):
            value = value_of(lim.module, lim.channel)
            if value is None:
                continue
            if self.baselines[i] is None and lim.relative:
                self.baselines[i] = value
            low, high = lim.bounds(self.baselines[i])
            out = not (low <= value <= high)
            exc = self.open[i]
            if out:
                all_in = False
                since = self.out_since[i]
                if since is None:
                    since = self.out_since[i] = now_ms
                if exc is None and now_ms - since >= lim.for_s * 1000.0:
                    exc = self._start(i, lim, since, now_ms, low, high)
                    started.append(exc)
                if exc is not None and (exc.worst is None or _further(value, exc)):
                    exc.worst = value
            else:
                self.out_since[i] = None
                if exc is not None:
                    exc.end_ms = now_ms
                    exc.off_to_ms = now_ms + exc.tail_ms
                    self.open[i] = None
        if not all_in or any(e is not None for e in self.open):
            self.in_spec_since = None
        elif self.in_spec_since is None:
            self.in_spec_since = now_ms
        return started

    def _start(self, i, lim, since, now_ms, low, high) -> Excursion:
        first, last = self.transits[i]
        exc = Excursion(
            lim.describe(),
            f"{lim.module}.{lim.channel}",
            since,
            now_ms,
            low=low,
            high=high,
            off_from_ms=since + first,
            tail_ms=last,
        )
        self.open[i] = exc
        self.excursions.append(exc)
        self.changed = True
        return exc

    def off_spec_at(self, t_ms: int) -> Excursion | None:
        """The excursion whose material is at the outlet valve at ``t_ms``, if any."""
        for exc in self.excursions:
            if exc.off_from_ms <= t_ms and (exc.off_to_ms is None or t_ms <= exc.off_to_ms):
                return exc
        return None

    def want_divert(self, now_ms: int) -> str | None:
        """Why the outlet must go to waste now, or None: collection may go on."""
        if any(e is not None for e in self.open):
            exc = next(e for e in self.open if e is not None)
            return f"excursion: {exc.why}"
        if not self.excursions:
            return None
        last_end = max(e.off_to_ms or now_ms for e in self.excursions)
        tail = max(e.tail_ms for e in self.excursions)
        back = self.in_spec_since
        need = self.spec.resume_after_s * 1000.0 + tail
        if back is None or now_ms - back < need or now_ms < last_end:
            return "back in spec: waiting " + f"{self.spec.resume_after_s:g} s plus the transit"
        return None


def _further(value: float, exc: Excursion) -> bool:
    """Whether ``value`` is further out of the excursion's range than its worst so far."""
    if exc.worst is None:
        return True

    def dist(v):
        return max(exc.low - v, v - exc.high, 0.0)

    return dist(value) > dist(exc.worst)


def _ms(seconds: float) -> int:
    return int(math.ceil(seconds * 1000.0)) if math.isfinite(seconds) else 10**12


# --- the ledger ------------------------------------------------------------------------------


class Ledger:
    """The outlet's volume, tick by tick, booked as segments at the end."""

    def __init__(self):
        self.ticks: list[tuple[int, int, float, str, bool, str]] = []
        # (from ms, to ms, mL, where: "collect" | "waste", estimate, why diverted)

    def book(self, t0: int, t1: int, ml: float, collect: bool, estimate: bool, why: str) -> None:
        self.ticks.append((t0, t1, ml, "collect" if collect else "waste", estimate, why))

    def segments(self, monitor: QualityMonitor | None, origin_ms: int) -> list[dict]:
        """Consecutive ticks of one status merged: {start_s, end_s, volume_ml, status
        (in_spec | off_spec | diverted | collected when no spec judged it), why,
        estimate}."""
        out: list[dict] = []
        for t0, t1, ml, where, estimate, why in self.ticks:
            exc = None if monitor is None else monitor.off_spec_at(t1)
            if where == "collect":
                if monitor is None:
                    status, text = "collected", "no quality specification"
                elif exc is not None:
                    status, text = "off_spec", f"reached the collector off spec: {exc.why}"
                else:
                    status, text = "in_spec", ""
            else:
                status = "diverted"
                text = f"off spec: {exc.why}" if exc is not None else why
            last = out[-1] if out else None
            if (
                last is not None
                and last["status"] == status
                and last["why"] == text
                and last["estimate"] == estimate
                and abs(last["_end"] - t0) <= 1
            ):
                last["volume_ml"] += ml
                last["_end"] = t1
                continue
            out.append(
                {
                    "status": status,
                    "why": text,
                    "estimate": estimate,
                    "volume_ml": ml,
                    "_start": t0,
                    "_end": t1,
                }
            )
        for seg in out:
            seg["start_s"] = round((seg.pop("_start") - origin_ms) / 1000.0, 3)
            seg["end_s"] = round((seg.pop("_end") - origin_ms) / 1000.0, 3)
            seg["volume_ml"] = round(seg["volume_ml"], 3)
        return out


def totals(segments: list[dict]) -> dict[str, float]:
    """collected_in_spec_ml, collected_off_spec_ml, diverted_ml of ``segments``."""
    out = {"collected_in_spec_ml": 0.0, "collected_off_spec_ml": 0.0, "diverted_ml": 0.0}
    for seg in segments:
        if seg["status"] in ("in_spec", "collected"):
            out["collected_in_spec_ml"] += seg["volume_ml"]
        elif seg["status"] == "off_spec":
            out["collected_off_spec_ml"] += seg["volume_ml"]
        else:
            out["diverted_ml"] += seg["volume_ml"]
    return {k: round(v, 3) for k, v in out.items()}
