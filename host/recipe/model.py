"""The recipe model: what a recipe says, as frozen data (``Recipe`` and its parts), and
the errors its loader and checks raise.  Loading is in ``host.recipe.loader``, what a
recipe means on a line in ``host.recipe.plan``."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path

from edge.boardconfig.core import ConfigError

SERVICE_COMMANDS = ("start", "stop", "hold", "unhold", "abort", "reset", "complete")
ON_TIMEOUT = ("abort", "continue", "hold")
# Causes the host itself raises (module trips bring their own cause codes).
HOST_CAUSES = (
    "module_lost",
    "operator_abort",
    "command_failed",
    "wait_timeout",
    "host_restart",
    "quality",  # diverted longer than a quality spec's max_divert_s (host/quality.py)
)
DEFAULT_TIMEOUT_S = 600.0
COMMAND_TIMEOUT_S = 15.0

# --- errors ----------------------------------------------------------------------------


class RecipeIssue(ConfigError):
    """One problem in a recipe: the config core's located error (``file``, ``key``,
    ``line``, ``value``, ``problem``, ``allowed``)."""


class RecipeError(ValueError):
    """Every problem found in one recipe (``issues``: RecipeIssue objects, or plain
    texts for problems found against a line)."""

    def __init__(self, issues, file: str | None = None):
        self.issues = list(issues)
        first = self.issues[0]
        self.file = getattr(first, "file", None) or file or "<recipe>"
        if len(self.issues) == 1:
            text = str(first)
        else:
            text = f"{self.file}: {len(self.issues)} errors:\n" + "\n".join(
                "  " + str(i) for i in self.issues
            )
        super().__init__(text)


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueRef:
    """A setpoint or target: a number, or ``[factor *] quantity [+|- offset]`` (quantity
    names: ``temperature``, ``pressure``, ``total_flow``, ``flow.<reagent>``)."""

    number: float | None = None
    quantity: str | None = None
    factor: float = 1.0
    offset: float = 0.0
    text: str = ""

    def __str__(self):
        return self.text or f"{self.number:g}"


@dataclass(frozen=True)
class Setpoint:
    module: str
    channel: str
    value: ValueRef
    key: str  # where it is in the file (messages)


@dataclass(frozen=True)
class SteadySpec:
    """One signal that must be steady (host.steady.SteadyState's parameters)."""

    module: str
    channel: str
    window_s: float = 60.0
    tolerance_abs: float | None = None
    tolerance_rel: float | None = None

    def describe(self) -> str:
        tols = []
        if self.tolerance_abs is not None:
            tols.append(f"{self.tolerance_abs:g}")
        if self.tolerance_rel is not None:
            tols.append(f"{self.tolerance_rel * 100:g} %")
        return f"{self.module}.{self.channel} (within {' / '.join(tols)} over {self.window_s:g} s)"


@dataclass(frozen=True)
class Wait:
    """Every condition given must hold at once (a conjunction)."""

    seconds: float | None = None
    residence_times: float | None = None
    signal: tuple[str, str] | None = None  # (module, channel)
    target: ValueRef | None = None
    band: float | None = None  # |value - target| <= band
    above: ValueRef | None = None  # value >= above
    below: ValueRef | None = None  # value <= below
    for_s: float = 0.0
    steady: tuple[SteadySpec, ...] = ()
    collected_ml: float | None = None

    def describe(self) -> str:
        parts = []
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} s")
        if self.residence_times is not None:
            parts.append(f"{self.residence_times:g} residence times")
        if self.signal is not None:
            sig = ".".join(self.signal)
            if self.target is not None:
                parts.append(f"{sig} within {self.band:g} of {self.target}")
            if self.above is not None:
                parts.append(f"{sig} >= {self.above}")
            if self.below is not None:
                parts.append(f"{sig} <= {self.below}")
            if self.for_s:
                parts[-1] += f" for {self.for_s:g} s"
        if self.steady:
            parts.append("steady " + ", ".join(s.describe() for s in self.steady))
        if self.collected_ml is not None:
            parts.append(f"{self.collected_ml:g} mL collected")
        return " and ".join(parts)

    @property
    def timed_only(self) -> bool:
        """True when the wait's length is fixed by time alone."""
        return (
            self.signal is None
            and not self.steady
            and self.collected_ml is None
            and self.residence_times is None
        )


@dataclass(frozen=True)
class Step:
    name: str
    key: str  # "phases[2].steps[0]"
    service: str | None = None
    modules: tuple[str, ...] | None = None  # None: every module of the line
    valve: str | None = None  # outlet id or vessel role
    valve_module: str | None = None
    sets: tuple[Setpoint, ...] = ()
    wait: Wait | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    on_timeout: str = "abort"
    abort_sequence: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class QualityLimit:
    """One acceptable range of a collect phase: absolute (``min``/``max``) and/or
    relative to the value the signal had when collection started (``tolerance_abs``,
    ``tolerance_rel`` of it).  Out of range for ``for_s`` is an excursion."""

    module: str
    channel: str
    min: float | None = None
    max: float | None = None
    tolerance_abs: float | None = None
    tolerance_rel: float | None = None
    for_s: float = 1.0
    key: str = ""

    def bounds(self, baseline: float | None) -> tuple[float, float]:
        """(low, high) given the value at the start of collection (None: not yet known)."""
        lo, hi = -math.inf, math.inf
        if self.min is not None:
            lo = self.min
        if self.max is not None:
            hi = self.max
        if baseline is not None:
            widths = []
            if self.tolerance_abs is not None:
                widths.append(self.tolerance_abs)
            if self.tolerance_rel is not None:
                widths.append(self.tolerance_rel * abs(baseline))
            if widths:
                w = max(widths)
                lo, hi = max(lo, baseline - w), min(hi, baseline + w)
        return lo, hi

    @property
    def relative(self) -> bool:
        return self.tolerance_abs is not None or self.tolerance_rel is not None

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.tolerance_abs is not None:
            parts.append(f"within {self.tolerance_abs:g} of its start value")
        if self.tolerance_rel is not None:
            parts.append(f"within {self.tolerance_rel * 100:g} % of its start value")
        return f"{self.module}.{self.channel} {' and '.join(parts)}"


@dataclass(frozen=True)
class QualitySpec:
    """A collect phase's quality specification: its ``limits``; collection resumes after
    an excursion once every limit has held for ``resume_after_s`` plus the transit to the
    outlet valve; diverting longer than ``max_divert_s`` (None: no bound) ends the run
    with the shutdown for cause ``quality``."""

    limits: tuple[QualityLimit, ...]
    resume_after_s: float = 10.0
    max_divert_s: float | None = None
    key: str = ""


@dataclass(frozen=True)
class Phase:
    name: str
    description: str
    steps: tuple[Step, ...]
    quality: QualitySpec | None = None


@dataclass(frozen=True)
class ShutdownSequence:
    name: str
    on: tuple[str, ...]  # cause patterns (fnmatch); "*" answers every cause
    steps: tuple[Step, ...]
    description: str = ""

    def matches(self, cause: str, catch_all: bool) -> bool:
        for pattern in self.on:
            if pattern == "*":
                if catch_all:
                    return True
            elif fnmatch.fnmatchcase(cause, pattern):
                return True
        return False


@dataclass(frozen=True)
class Reagent:
    name: str
    pump: str
    concentration_mol_l: float
    equivalents: float


@dataclass(frozen=True)
class Conditions:
    residence_time_min: float
    temperature_c: float
    pressure_bar: float
    reactor: str | None = None


@dataclass
class Recipe:
    name: str
    line: str
    conditions: Conditions
    reagents: dict[str, Reagent]
    phases: list[Phase]
    shutdowns: list[ShutdownSequence]
    description: str = ""
    solvent: str | None = None
    line_file: Path | None = None
    file: Path | None = None
    text: str = ""

    def shutdown_for(self, cause: str) -> ShutdownSequence:
        """The sequence declared for ``cause``: the first whose ``on`` names it, else the
        catch-all (``on = ["*"]``)."""
        for seq in self.shutdowns:
            if seq.matches(cause, catch_all=False):
                return seq
        for seq in self.shutdowns:
            if seq.matches(cause, catch_all=True):
                return seq
        raise LookupError(f"recipe {self.name}: no shutdown sequence answers {cause!r}")

    def sequence(self, name: str) -> ShutdownSequence:
        for seq in self.shutdowns:
            if seq.name == name:
                return seq
        raise LookupError(f"recipe {self.name}: no shutdown sequence named {name!r}")

    def steps(self):
        """(phase, step) for every step, in order."""
        for phase in self.phases:
            for step in phase.steps:
                yield phase, step
