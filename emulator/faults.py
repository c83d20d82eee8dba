"""Fault injection *specification*: what fault, where, when, for how long (CPython only).

This module says which faults exist and checks, parses and schedules them; the plant
emulation gives them their effect (``LineEmulation.apply_fault`` / ``clear_fault``).
A fault reaches the emulator from Python (``make_fault``), from a scenario TOML file
(``load_scenario``) or from the command line (``parse_fault_option``)::

    --fault KIND:TARGET@SECONDS[+DURATION][,key=value...]

    --fault clog:reactor1@120,rate=0.05         progressive clog from t = 120 s
    --fault power-loss:pump_a@60+5              power cut at 60 s, back (reboot) at 65 s
    --fault sensor-drift:reactor1.temp_a@30,rate=0.1
    --fault leak:tube_m@10,conductance_ml_min_bar=2
    --fault exotherm:reactor1@300,heat_w=100,needs_reagents=true
    --fault broker-outage:line@10.5+30

* SECONDS is simulated time since the run started (``>= 0``, may be fractional);
  DURATION (``> 0``) clears the fault automatically that long after it was applied;
  without it the fault stays until the end of the run.  The option may repeat.
* TARGET is a module id of the line (clog and leak: a tube or mixer id too),
  ``module.channel`` for the ``sensor-*`` kinds, or ``line`` for line-wide kinds; a kind
  that does not fit the target's kind (``FAULT_KINDS``) is an error.  A bare module id
  given to a sensor fault means that module's *main sensor* (``MAIN_SENSOR``): the
  channel its primary interlock watches.  When that channel is a 1oo2 vote of two probes
  (a reactor's ``temperature`` of ``temp_a`` and ``temp_b``) a probe can fail but the
  vote cannot, so the fault goes to the first probe: ``reactor1`` and
  ``reactor1.temperature`` mean ``reactor1.temp_a``; ``reactor1.temp_b`` is the other.
* ``key=value`` parameters depend on the kind (``PARAMS``): numbers, or true/false.
  Parameters left out take their fixed default in ``Fault.params``; those without one
  (``sensor-stuck`` ``value``: the reading at that moment) stay out.

A fault can also fire *by condition* (Python and scenario files): ``when =
"reactor1.temperature > 80"`` is checked every step against the emulation's current
values and fires once, the first time it holds.  ``FaultSchedule`` turns a list of
faults into apply/clear events as simulated time advances.

A scenario file (``examples/scenarios/*.toml``)::

    [scenario]
    name = "clog-reactor"            # required
    description = "..."
    duration_s = 180                 # required: simulated seconds to run
    seed = 1                         # default 0
    line = "../lines/demo.toml"      # the line it was written for (relative to the file)

    [[faults]]                       # any number
    kind = "clog"
    target = "reactor1"
    at_s = 60                        # or: when = "reactor1.temperature > 60"
    duration_s = 20                  # optional: cleared that long after it applied
    params = { rate = 0.05 }

    [[expect]]                       # what a detection test checks (``Expectation``)
    trip = { module = "pump_a", cause = "over_pressure", within_s = 45 }
    alarm = { module = "pump_a", cause = ["high_pressure"], within_s = 40 }
    safe = { module = "pump_a", within_s = 15 }
    signal = { when = "bpr1.pressure < 1.0", within_s = 5 }
    safe_within_s = 70               # every module safe

Errors are ``FaultSpecError`` (a ``ValueError``) and list what would have been valid,
with a did-you-mean; errors in a scenario file are ``ScenarioError`` (also an
``edge.boardconfig.ConfigError``) and name the file, line, key and value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge.boardconfig.core import (
    MISSING,
    ConfigError,
    ConfigErrors,
    Context,
    check_keys,
    did_you_mean,
    parse_toml,
    read_text,
)
from edge.boardconfig.schema import MODULE_KINDS

# The one table of fault kinds (kind -> the component kinds it fits: module kinds, the
# passive "tube"/"mixer" parts for clog and leak, or {"line"}) belongs to the emulation
# that gives the faults their effect.  emulator.emulation must therefore not import this
# module at its top (import it inside a function if needed): that would be circular.
from emulator.emulation import FAULT_KINDS
from line.loader import board_channels
from protocol.wire import ID_PATTERN, NAME_PATTERN

LINE = "line"  # the target of line-wide faults

# Faults of one sensor channel: their target may name the channel.
SENSOR_FAULTS = frozenset({"sensor-open", "sensor-short", "sensor-stuck", "sensor-drift"})

# Faults the host side carries out (transport and coordinator), not the plant physics.
HOST_FAULTS = frozenset({"partition", "broker-outage", "host-crash"})

# A bare module id given to a sensor fault: the channel its primary interlock watches
# (pump and bpr: over-pressure; reactor: over-temperature; valve: its position feedback).
# The analyzer has no interlock: its first sensor channel (the reference board's "uv").
MAIN_SENSOR: dict[str, str] = {
    "pump": "pressure",
    "reactor": "temperature",
    "bpr": "pressure",
    "valve": "position_fb",
    "analyzer": "uv",
}

# Channels that are a vote of probes (module kind -> channel -> probes).  A sensor fault
# aimed at one of them hits its first probe: the wire, not the vote, breaks.
VOTED_CHANNELS: dict[str, dict[str, tuple[str, ...]]] = {
    "reactor": {"temperature": ("temp_a", "temp_b")},
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a fault kind: a number (``type`` float) within ``lo``..``hi``
    (``lo_open``: ``lo`` itself excluded; ``nonzero``: not 0), or a ``bool``.
    ``default`` None: optional without a fixed default (the effect decides, see ``doc``)
    and then left out of ``Fault.params``."""

    name: str
    default: float | bool | None
    doc: str
    unit: str = ""
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    nonzero: bool = False
    type: type = float

    def allowed(self) -> str:
        if self.type is bool:
            return "true or false"
        if self.lo == -math.inf and self.hi == math.inf:
            text = "any finite number"
        elif self.hi == math.inf:
            text = "{} {}".format(">" if self.lo_open else ">=", _num(self.lo))
        else:
            low = "> " + _num(self.lo) + " and <= " if self.lo_open else _num(self.lo) + ".."
            text = low + _num(self.hi)
        if self.nonzero:
            text += ", not 0"
        return text + (" " + self.unit if self.unit else "")


def _p(name, default, doc, **limits) -> tuple[str, ParamSpec]:
    return name, ParamSpec(name, default, doc, **limits)


# Parameters of each kind, checked here and read by the effects (emulator.plant and
# emulator.emulation; their FAULT_PARAMS documents the same names).  How long a fault
# lasts is not a parameter: it is the fault's duration_s (``+DURATION``).
PARAMS: dict[str, dict[str, ParamSpec]] = {
    "clog": dict(
        [
            _p(
                "rate",
                None,
                "progressive: open area lost per second; absent or 0: sudden",
                unit="1/s",
                lo=0.0,
                hi=1e3,
            ),
            _p("sudden", False, "true: blocked at once even with a rate", type=bool),
            _p("open", 0.0, "open fraction a sudden clog leaves", lo=0.0, hi=1.0),
            _p("min_open", 0.0, "open fraction a progressive clog stops at", lo=0.0, hi=1.0),
        ]
    ),
    "leak": dict(
        [
            _p(
                "conductance_ml_min_bar",
                0.2,
                "leak flow per bar of line pressure",
                unit="mL/min/bar",
                lo=0.0,
                hi=1e5,
                lo_open=True,
            ),
        ]
    ),
    "heater-stuck-on": {},
    "heater-open": {},
    "exotherm": dict(
        [
            _p("heat_w", 20.0, "reaction heat at t_ref_c", unit="W", lo=0.0, hi=1e6),
            _p(
                "t_ref_c",
                None,
                "temperature of heat_w; absent: the reactor's when applied",
                unit="degC",
                lo=-50.0,
                hi=500.0,
            ),
            _p(
                "doubling_c",
                10.0,
                "temperature rise that doubles the heat",
                unit="K",
                lo=0.1,
                hi=200.0,
            ),
            _p("max_w", None, "cap on the heat; absent: 10 x heat_w", unit="W", lo=0.0, hi=1e7),
            _p("needs_reagents", False, "scale by the reagents present in the coil", type=bool),
            _p(
                "enthalpy_kj_mol",
                None,
                "reaction enthalpy per mol of limiting reagent: the heat is bounded by the "
                "reagents consumed; absent: unbounded",
                unit="kJ/mol",
                lo=0.0,
                hi=1e5,
            ),
        ]
    ),
    "sensor-open": {},
    "sensor-short": {},
    "sensor-stuck": dict(
        [_p("value", None, "reading it sticks at (engineering units); absent: its reading then")]
    ),
    "sensor-drift": dict(
        [_p("rate", 0.1, "error added to the reading per second, in its units/s", nonzero=True)]
    ),
    "pump-stall": {},
    "dry-feed": {},
    # outputs de-energised (board config ``unpowered``); duration: power returns, reboot
    "power-loss": {},
    "partition": {},  # duration: the module's network link is restored
    "broker-outage": {},  # duration: the broker comes back
    "host-crash": {},  # duration: the host process restarts
}

CONDITION_OPS = (">=", "<=", ">", "<")

CLI_SYNTAX = "KIND:TARGET@SECONDS[+DURATION][,key=value...]"


def fault_help() -> str:
    """The fault kinds, what they fit and their parameters: text for ``--help``."""
    lines = [
        "--fault " + CLI_SYNTAX,
        "  SECONDS: simulated time since the run started; DURATION: clear after it",
        "  TARGET: a module id (clog, leak: a tube or mixer too), module.channel (sensor-*), or 'line'",
    ]
    for kind, fits in FAULT_KINDS.items():
        lines.append(f"  {kind:<16} {', '.join(sorted(fits))}")
        for spec in PARAMS[kind].values():
            default = "none" if spec.default is None else _text(spec.default)
            setting = spec.name + "=" + default
            lines.append(f"      {setting:<14} {spec.doc} (allowed {spec.allowed()})")
    return "\n".join(lines)


class FaultSpecError(ValueError):
    """A fault that cannot be what was asked.  ``key`` names the part that is wrong
    (``kind``, ``target``, ``at_s``, ``duration_s``, ``when``, ``params.rate``, ...; None
    for the whole) and ``value`` its value."""

    def __init__(self, message: str, key: str | None = None, value: object = None):
        super().__init__(message)
        self.key = key
        self.value = value


class ScenarioError(ConfigError, FaultSpecError):
    """A problem in a scenario file, located and worded like every config file's (the
    config core's formatter; ``value`` None: no value shown)::

    examples/scenarios/x.toml:7: faults[0].kind = "clg" is not valid: unknown fault kind ...
    """

    def __init__(self, file, key, line, value, problem, allowed=None):
        shown = MISSING if value is None else value
        ConfigError.__init__(self, file, key, line, shown, problem, allowed)


class ScenarioErrors(ConfigErrors, ScenarioError):
    """Every problem found in one scenario file (``errors``)."""


# --- conditions -----------------------------------------------------------------------

_UNSIGNED = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER = r"[-+]?" + _UNSIGNED
_CONDITION_RE = re.compile(
    r"\s*(" + ID_PATTERN + r")\.(" + NAME_PATTERN + r")\s*(>=|<=|>|<)\s*(" + _NUMBER + r")\s*\Z",
    re.ASCII,
)

ValueOf = Callable[[str, str], "float | None"]


@dataclass(frozen=True)
class Condition:
    """``module.channel OP value``; holds when the current reading compares true (a
    missing or NaN reading never does)."""

    module: str
    channel: str
    op: str
    value: float

    def holds(self, value_of: ValueOf) -> bool:
        reading = value_of(self.module, self.channel)
        if reading is None or reading != reading:
            return False
        if self.op == ">":
            return reading > self.value
        if self.op == "<":
            return reading < self.value
        if self.op == ">=":
            return reading >= self.value
        return reading <= self.value

    def __str__(self) -> str:
        return f"{self.module}.{self.channel} {self.op} {_num(self.value)}"


def parse_condition(
    text: object,
    line_modules: Mapping[str, str] | None = None,
    channels: Mapping[str, list[str]] | None = None,
) -> Condition:
    """``"reactor.temperature > 80"`` -> Condition; checks module and channel against the
    line when given (any channel a module reports may be used, voted ones included)."""
    if not isinstance(text, str):
        raise FaultSpecError("condition must be a string 'module.channel OP NUMBER'", "when", text)
    m = _CONDITION_RE.match(text)
    if m is None:
        raise FaultSpecError(
            "bad condition {!r}: expected 'module.channel OP NUMBER' with OP one of {}"
            " (e.g. 'reactor.temperature > 80')".format(text, ", ".join(CONDITION_OPS)),
            "when",
            text,
        )
    module, channel, op, number = m.groups()
    value = float(number)
    if not math.isfinite(value):
        raise FaultSpecError(
            f"bad condition {text!r}: {number} is not a finite number", "when", text
        )
    modules = None if line_modules is None else _modules(line_modules)
    if modules is not None and module not in modules:
        raise FaultSpecError(
            f"bad condition {text!r}: unknown module {module!r}{did_you_mean(module, modules)};"
            f" valid modules: {_listing(modules)}",
            "when",
            text,
        )
    known = None if channels is None else channels.get(module)
    if known is not None and channel not in known:
        raise FaultSpecError(
            f"bad condition {text!r}: module {module!r} has no channel {channel!r}{did_you_mean(channel, known)}; valid channels: {_listing(known)}",
            "when",
            text,
        )
    return Condition(module, channel, op, value)


# --- faults ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` (a key of FAULT_KINDS) on ``module`` (a module id, or "line"),
    ``channel`` (sensor faults: the physical channel, resolved; else None), triggered at
    ``at_s`` (simulated s) *or* ``when`` a Condition first holds, cleared ``duration_s``
    after it was applied (None: never), with complete ``params`` (defaults filled in).

    Constructing one checks everything that does not depend on the line; ``make_fault``
    also checks the target against a line and resolves the channel."""

    kind: str
    module: str
    channel: str | None = None
    at_s: float | None = None
    when: Condition | None = None
    duration_s: float | None = None
    params: dict[str, float | bool] = field(default_factory=dict)

    def __post_init__(self):
        _check_kind(self.kind)
        line_wide = LINE in FAULT_KINDS[self.kind]
        if line_wide and self.module != LINE:
            raise FaultSpecError(
                f"{self.kind} is a line-wide fault: its target is {LINE!r}, not {self.module!r}",
                "target",
                self.module,
            )
        if not line_wide and self.module == LINE:
            raise FaultSpecError(
                f"{self.kind} needs a module as target, not {LINE!r}",
                "target",
                self.module,
            )
        if self.channel is not None and self.kind not in SENSOR_FAULTS:
            raise FaultSpecError(
                f"{self.kind} targets a whole module, not a channel: use {self.module!r}",
                "target",
                f"{self.module}.{self.channel}",
            )
        if (self.at_s is None) == (self.when is None):
            raise FaultSpecError(
                f"fault {self.kind}:{self.target} needs exactly one trigger: a time (at_s) or a condition (when)",
                "at_s",
                self.at_s,
            )
        if self.at_s is not None:
            object.__setattr__(self, "at_s", _seconds(self.at_s, "at_s", minimum_open=False))
        if self.when is not None and not isinstance(self.when, Condition):
            raise FaultSpecError(
                "when must be a Condition (see parse_condition)", "when", self.when
            )
        if self.duration_s is not None:
            object.__setattr__(
                self, "duration_s", _seconds(self.duration_s, "duration_s", minimum_open=True)
            )
        object.__setattr__(self, "params", check_params(self.kind, self.params))

    def __hash__(self):
        return hash(
            (
                self.kind,
                self.module,
                self.channel,
                self.at_s,
                self.when,
                self.duration_s,
                tuple(sorted(self.params.items())),
            )
        )

    @property
    def target(self) -> str:
        return self.module if self.channel is None else f"{self.module}.{self.channel}"

    def option(self) -> str:
        """The ``--fault`` text for this fault (timed faults only), non-default
        parameters included; ``parse_fault_option`` gives the same fault back."""
        if self.at_s is None:
            raise ValueError("a fault triggered by a condition has no --fault form")
        text = f"{self.kind}:{self.target}@{_num(self.at_s)}"
        if self.duration_s is not None:
            text += "+" + _num(self.duration_s)
        for name, spec in PARAMS[self.kind].items():
            value = self.params.get(name)
            if value is not None and value != spec.default:
                text += f",{name}={_text(value)}"
        return text

    def __str__(self) -> str:
        if self.at_s is not None:
            return self.option()
        text = f"{self.kind}:{self.target} when {self.when}"
        if self.duration_s is not None:
            text += f" for {_num(self.duration_s)} s"
        return text


def check_params(kind: str, params: Mapping[str, object] | None) -> dict[str, float | bool]:
    """Validate ``params`` for ``kind`` and fill in the fixed defaults (parameters
    without one stay out).  Values may be numbers and booleans or (from the command
    line) their text."""
    _check_kind(kind)
    specs = PARAMS[kind]
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise FaultSpecError(f"params of {kind} must be a table of name = number", "params", params)
    out: dict[str, float | bool] = {
        name: spec.default for name, spec in specs.items() if spec.default is not None
    }
    for name, raw in params.items():
        if name not in specs:
            if specs:
                hint = f"{did_you_mean(str(name), specs)}; valid parameters of {kind}: {_listing(specs)}"
            else:
                hint = f"; {kind} takes no parameters"
            raise FaultSpecError(f"unknown parameter {name!r}{hint}", f"params.{name}", raw)
        spec = specs[name]
        out[name] = (
            _param_bool(kind, spec, raw) if spec.type is bool else _param_number(kind, spec, raw)
        )
    return out


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _param_bool(kind: str, spec: ParamSpec, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    raise FaultSpecError(
        f"bad value {raw!r} for parameter {spec.name} of {kind}: expected true or false ({spec.doc})",
        "params." + spec.name,
        raw,
    )


def _param_number(kind: str, spec: ParamSpec, raw: object) -> float:
    key = "params." + spec.name
    value: float | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, (int, float)):
        value = float(raw) if abs(raw) < 1e300 else math.inf
    elif isinstance(raw, str) and re.fullmatch(_NUMBER, raw.strip(), re.ASCII):
        value = float(raw)
    if value is None or not math.isfinite(value):
        raise FaultSpecError(
            f"bad value {raw!r} for parameter {spec.name} of {kind}: expected a number, {spec.allowed()} ({spec.doc})",
            key,
            raw,
        )
    low_ok = value > spec.lo if spec.lo_open else value >= spec.lo
    if not low_ok or value > spec.hi or (spec.nonzero and value == 0):
        raise FaultSpecError(
            f"parameter {spec.name} of {kind} = {_num(value)} is out of range: allowed {spec.allowed()} ({spec.doc})",
            key,
            raw,
        )
    return value


def line_targets(line) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``(line_modules, channels)`` of an ``line.model.Line`` for the functions here:
    every component id -> its kind (modules, and the parts clog and leak may hit), and
    each module's sensor and status channels in board-config order (the 1oo2 ones too:
    conditions may watch them)."""
    kinds = {cid: comp.kind for cid, comp in line.components().items()}
    channels = {
        mid: [
            name
            for name, ch in board_channels(line, mid).items()
            if ch.get("role") in ("sensor", "status")
        ]
        for mid in line.modules
    }
    return kinds, channels


def make_fault(
    kind: str,
    target: str,
    *,
    line_modules: Mapping[str, str],
    channels: Mapping[str, list[str]] | None = None,
    at_s: float | None = None,
    when: Condition | str | None = None,
    duration_s: float | None = None,
    params: Mapping[str, object] | None = None,
) -> Fault:
    """A fault checked against a line: ``line_modules`` maps component id -> kind
    (modules; parts too, which only clog and leak fit), ``channels`` (optional) module id
    -> its sensor channel names (a module left out is not checked); ``line_targets(line)``
    gives both.  ``when`` may be a condition's text."""
    _check_kind(kind)
    module, channel = resolve_target(kind, target, line_modules, channels)
    if when is not None and not isinstance(when, Condition):
        when = parse_condition(when, line_modules, channels)
    if isinstance(params, Mapping):
        params = dict(params)
    return Fault(kind, module, channel, at_s, when, duration_s, params)  # type: ignore[arg-type]


def resolve_target(
    kind: str,
    target: str,
    line_modules: Mapping[str, str],
    channels: Mapping[str, list[str]] | None = None,
) -> tuple[str, str | None]:
    """``(module, channel)`` that ``target`` means for a fault of ``kind`` on this line:
    channel None except for sensor faults, where a bare module id or a voted channel
    becomes the physical channel (see MAIN_SENSOR, VOTED_CHANNELS)."""
    _check_kind(kind)
    fits = FAULT_KINDS[kind]
    if not isinstance(target, str):
        raise FaultSpecError("target must be a string", "target", target)
    valid = _valid_targets(kind, line_modules)
    if LINE in fits:
        if target != LINE:
            raise FaultSpecError(
                f"{kind} is a line-wide fault: its target is {LINE!r}, not {target!r}",
                "target",
                target,
            )
        return LINE, None
    module, dot, channel = target.partition(".")
    module_kind = _target_module(kind, target, module, line_modules, valid)
    if kind not in SENSOR_FAULTS:
        if dot:
            raise FaultSpecError(
                f"{kind} targets a whole module, not a channel: use {module!r}",
                "target",
                target,
            )
        return module, None
    known = None if channels is None else channels.get(module)
    return module, _sensor_channel(target, module, module_kind, channel if dot else None, known)


def _target_module(kind, target, module, line_modules, valid) -> str:
    """The kind of ``module`` (``target`` up to its dot), which must be on the line and
    fit a fault of ``kind``."""
    fits = FAULT_KINDS[kind]
    if module == LINE:
        raise FaultSpecError(
            f"{kind} needs a module as target, not {LINE!r}; valid targets: {_listing(valid)}",
            "target",
            target,
        )
    if module not in line_modules:
        raise FaultSpecError(
            "unknown target {!r}{}; valid targets for {}: {}".format(
                module,
                did_you_mean(module, list(line_modules) + [LINE]),
                kind,
                _listing(valid) or "none on this line",
            )
            + (" (or module.channel)" if kind in SENSOR_FAULTS and valid else ""),
            "target",
            target,
        )
    module_kind = line_modules[module]
    if module_kind not in fits:
        raise FaultSpecError(
            f"fault kind {kind} does not fit {module!r} (a {module_kind}): {kind} fits"
            f" {', '.join(sorted(fits))}; valid targets: {_listing(valid) or 'none on this line'}",
            "target",
            target,
        )
    return module_kind


def _sensor_channel(target, module, module_kind, named, known) -> str:
    """The physical channel a sensor fault on ``target`` hits: ``named`` (the part after
    the dot, None without one: the module's main sensor), a voted channel's first probe.
    ``known``: the module's sensor channels, None when not checked."""
    dot = named is not None
    channel = named if named is not None else MAIN_SENSOR.get(module_kind, "")
    probes = VOTED_CHANNELS.get(module_kind, {}).get(channel)
    if probes and (known is None or probes[0] in known):
        return probes[0]
    if known is not None and channel not in known:
        if not dot and module_kind == "analyzer" and known:
            return known[0]
        if not dot:
            raise FaultSpecError(
                f"module {module!r} (a {module_kind}) has no main sensor {channel!r}: name the"
                f" channel as {module}.CHANNEL; valid channels: {_listing(known) or 'none'}",
                "target",
                target,
            )
        raise FaultSpecError(
            f"module {module!r} has no sensor channel {channel!r}"
            f"{did_you_mean(channel, known)}; valid channels: {_listing(known) or 'none'}",
            "target",
            target,
        )
    if known is None and not re.fullmatch(NAME_PATTERN, channel):
        raise FaultSpecError(
            f"bad channel name {channel!r} in target {target!r}: snake_case, 1-32 characters",
            "target",
            target,
        )
    return channel


def parse_fault_option(
    text: str,
    line_modules: Mapping[str, str],
    channels: Mapping[str, list[str]] | None = None,
) -> Fault:
    """One ``--fault KIND:TARGET@SECONDS[+DURATION][,key=value...]`` value -> Fault.
    Errors are FaultSpecError starting with ``--fault TEXT:``."""
    try:
        return _parse_fault_option(text, line_modules, channels)
    except FaultSpecError as exc:
        raise FaultSpecError(f"--fault {text}: {exc}", exc.key, exc.value) from None


_TIME_RE = re.compile(r"(" + _UNSIGNED + r")(?:\s*\+\s*(" + _UNSIGNED + r"))?\Z", re.ASCII)


def _parse_fault_option(text, line_modules, channels) -> Fault:
    if not isinstance(text, str):
        raise FaultSpecError("expected text of the form " + CLI_SYNTAX)
    text = text.strip()
    kind, colon, rest = text.partition(":")
    kind = kind.strip()
    if not colon:
        if kind in FAULT_KINDS:
            raise FaultSpecError(
                "missing :TARGET after the kind: expected " + CLI_SYNTAX, "target", None
            )
        raise FaultSpecError(f"expected {CLI_SYNTAX} (e.g. clog:reactor@120)", None, text)
    _check_kind(kind)
    head, _, param_text = rest.partition(",")
    target, at, when = head.partition("@")
    target = target.strip()
    if not target:
        raise FaultSpecError(
            "missing TARGET after {!r}: expected {}; valid targets: {}".format(
                kind + ":", CLI_SYNTAX, _listing(_valid_targets(kind, line_modules))
            ),
            "target",
            target,
        )
    module, channel = resolve_target(kind, target, line_modules, channels)
    if not at:
        raise FaultSpecError(
            "missing @SECONDS after the target: expected " + CLI_SYNTAX, "at_s", None
        )
    when = when.strip()
    m = _TIME_RE.match(when)
    if (
        m is None
        or not all(math.isfinite(float(x)) for x in m.groups() if x is not None)
        or (m.group(2) is not None and float(m.group(2)) == 0)
    ):
        raise FaultSpecError(
            f"bad time {when!r}: expected SECONDS[+DURATION], simulated seconds since the run"
            " started (>= 0, may be fractional; DURATION > 0), e.g. @120 or @60+5",
            "at_s",
            when,
        )
    at_s = float(m.group(1))
    duration_s = None if m.group(2) is None else float(m.group(2))
    params: dict[str, str] = {}
    if param_text.strip() or text.endswith(","):
        for item in param_text.split(","):
            name, eq, value = item.partition("=")
            name = name.strip()
            if not eq or not name:
                raise FaultSpecError(
                    f"bad parameter {item!r}: expected key=value{_param_hint(kind)}",
                    "params",
                    item,
                )
            if name in params:
                raise FaultSpecError(f"parameter {name} given twice", "params." + name, value)
            params[name] = value.strip()
    return Fault(kind, module, channel, at_s, None, duration_s, params)


# --- schedule -------------------------------------------------------------------------


class FaultSchedule:
    """When each fault applies and clears, as simulated time advances.

    ``due(now_s, value_of)`` is called once per emulation step with non-decreasing
    ``now_s`` and returns the ("apply" | "clear", fault) events since the previous call,
    ordered by when they happened (clears before applies at the same instant, then in
    the order the faults were given).  A timed fault applies at ``at_s``; a conditional
    one at the first call its condition holds; each applies once and, with a
    ``duration_s``, clears that long after.  ``history`` keeps (time, action, fault)."""

    def __init__(self, faults: Iterable[Fault]):
        self.faults: tuple[Fault, ...] = tuple(faults)
        for f in self.faults:
            if not isinstance(f, Fault):
                raise TypeError(f"FaultSchedule takes Fault objects, got {f!r}")
        self._applied_at: list[float | None] = [None] * len(self.faults)
        self._cleared = [False] * len(self.faults)
        self._now: float | None = None
        self.history: list[tuple[float, str, Fault]] = []

    def due(self, now_s: float, value_of: ValueOf | None = None) -> list[tuple[str, Fault]]:
        if not (isinstance(now_s, (int, float)) and math.isfinite(now_s)):
            raise ValueError(f"now_s must be a finite number of seconds, got {now_s!r}")
        if self._now is not None and now_s < self._now:
            raise ValueError(f"time went backwards: now_s = {_num(now_s)} after {_num(self._now)}")
        self._now = now_s
        events: list[tuple[float, int, int, str]] = []
        for i, f in enumerate(self.faults):
            applied = self._applied_at[i]
            if applied is None:
                if f.at_s is not None:
                    if f.at_s > now_s:
                        continue
                    applied = f.at_s
                else:
                    if value_of is None:
                        raise ValueError(f"fault {f} fires by condition: due() needs value_of")
                    assert f.when is not None
                    if not f.when.holds(value_of):
                        continue
                    applied = float(now_s)
                self._applied_at[i] = applied
                events.append((applied, 1, i, "apply"))
            if f.duration_s is not None and not self._cleared[i]:
                clear_at = applied + f.duration_s
                if clear_at <= applied:  # absorbed by a huge time: still after the apply
                    clear_at = math.nextafter(applied, math.inf)
                if clear_at <= now_s:
                    self._cleared[i] = True
                    events.append((clear_at, 0, i, "clear"))
        events.sort()
        out = []
        for t, _, i, action in events:
            self.history.append((t, action, self.faults[i]))
            out.append((action, self.faults[i]))
        return out

    @property
    def active(self) -> list[Fault]:
        """Faults applied and not yet cleared."""
        return [
            f
            for f, at, cleared in zip(self.faults, self._applied_at, self._cleared, strict=True)
            if at is not None and not cleared
        ]

    @property
    def pending(self) -> list[Fault]:
        """Faults not yet applied."""
        return [f for f, at in zip(self.faults, self._applied_at, strict=True) if at is None]

    def applied_at(self, fault_index: int) -> float | None:
        """Simulated time fault ``fault_index`` was applied (None: not yet)."""
        return self._applied_at[fault_index]


# --- scenarios ------------------------------------------------------------------------

EXPECT_KINDS = ("trip", "alarm", "safe", "signal")


@dataclass(frozen=True)
class Expectation:
    """What a detection test checks, ``within_s`` simulated seconds after the scenario's
    first fault was applied:

    * ``trip``: module ``module`` sends a trip event with cause ``cause`` (the
      interlock's cause code; ``sensor_bad`` for a bad-quality interlock; a heater
      verification fault code; ``lease_expired``);
    * ``alarm``: module ``module`` raises an alarm with cause ``cause``;
    * ``safe``: module ``module`` is in a safe state (module None: every module);
    * ``signal``: ``condition`` holds (e.g. ``pump_a.pressure < 0.5``).

    ``cause`` may be a tuple: any one of them will do (which comes first can depend on
    the operating point).  ``accepts(cause)`` tells."""

    kind: str
    within_s: float
    module: str | None = None
    cause: str | tuple[str, ...] | None = None
    condition: Condition | None = None

    def accepts(self, cause: str) -> bool:
        if isinstance(self.cause, tuple):
            return cause in self.cause
        return cause == self.cause

    def __str__(self) -> str:
        causes = self.cause if isinstance(self.cause, str) else " or ".join(self.cause or ())
        what = {
            "trip": f"{self.module} trips {causes}",
            "alarm": f"{self.module} raises alarm {causes}",
            "safe": "{} safe".format(self.module or "every module"),
            "signal": str(self.condition),
        }[self.kind]
        return f"{what} within {_num(self.within_s)} s"


@dataclass(frozen=True)
class Scenario:
    """A scenario file: a named run of ``duration_s`` simulated seconds (random ``seed``)
    with ``faults`` and the ``expectations`` a test harness checks.  ``line``: the line
    file the scenario was written for (resolved against the scenario's folder), if named."""

    name: str
    description: str
    duration_s: float
    seed: int
    faults: tuple[Fault, ...]
    expectations: tuple[Expectation, ...]
    path: Path | None = None
    line: Path | None = None

    def schedule(self) -> FaultSchedule:
        return FaultSchedule(self.faults)


def load_scenario(
    path: str | Path,
    line_modules: Mapping[str, str],
    channels: Mapping[str, list[str]] | None = None,
) -> Scenario:
    """Load and check a scenario TOML file against a line (see ``make_fault`` for the
    arguments).  Every problem is reported in one ScenarioError."""
    file = Path(path)
    try:
        text = read_text(file)
    except ConfigErrors as exc:
        raise _scenario_errors(exc) from None
    return load_scenario_text(text, file, line_modules, channels)


_INVALID = "is not valid: "  # before a FaultSpecError's text, in a scenario file's error
_SCENARIO_KEYS = ("name", "description", "duration_s", "seed", "line")
_FAULT_KEYS = ("kind", "target", "at_s", "when", "duration_s", "params")
_EXPECT_KEYS = ("trip", "alarm", "safe", "signal", "safe_within_s")
_EXPECT_FIELDS = {
    "trip": ("module", "cause", "within_s"),
    "alarm": ("module", "cause", "within_s"),
    "safe": ("module", "within_s"),
    "signal": ("when", "within_s"),
}


def load_scenario_text(
    text: str,
    filename: str | Path,
    line_modules: Mapping[str, str],
    channels: Mapping[str, list[str]] | None = None,
) -> Scenario:
    loader = _ScenarioLoader(text, filename, line_modules, channels)
    return loader.load()


class _ScenarioContext(Context):
    """The config core's context, recording ScenarioErrors (also FaultSpecErrors)."""

    def error(self, key, value, problem, allowed=None, code=None):
        self.errors.append(ScenarioError(self.file, key, self.line(key), value, problem, allowed))


def _scenario_errors(exc: ConfigErrors) -> ScenarioError:
    first = exc.errors[0]
    return ScenarioError(first.file, first.key, first.line, first.value, first.problem)


class _ScenarioLoader:
    def __init__(self, text, filename, line_modules, channels):
        self.ctx = _ScenarioContext(filename, text)
        self.file = filename
        self.line_modules = line_modules
        self.channels = channels
        self.errors = self.ctx.errors

    def error(self, key, value, problem, allowed=None):
        self.ctx.error(key, value, problem, allowed)

    def load(self) -> Scenario:
        try:
            doc = parse_toml(self.ctx)
        except ConfigErrors as exc:
            raise _scenario_errors(exc) from None
        self.unknown_keys(doc, "", ("scenario", "faults", "expect"))
        meta = doc.get("scenario")
        if not isinstance(meta, dict):
            self.error("scenario", meta, "is required", "a [scenario] table")
            meta = {}
        self.unknown_keys(meta, "scenario", _SCENARIO_KEYS)
        name = self.string(meta, "scenario.name", required=True)
        description = self.string(meta, "scenario.description") or ""
        duration_s = self.seconds(meta, "scenario.duration_s", required=True)
        seed = meta.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            self.error("scenario.seed", seed, "must be an integer 0..2**63-1")
        line_name = self.string(meta, "scenario.line")
        line_path = None
        if line_name:
            base = Path(self.file).parent if self.file else Path(".")
            line_path = base / line_name
        faults = [
            f for i, item in enumerate(self.array(doc, "faults")) if (f := self.fault(i, item))
        ]
        expectations = []
        for i, item in enumerate(self.array(doc, "expect")):
            expectations.extend(self.expectations(i, item))
        if self.errors:
            if len(self.errors) == 1:
                raise self.errors[0]
            raise ScenarioErrors(self.errors)
        return Scenario(
            name=name or "",
            description=description,
            duration_s=duration_s or 0.0,
            seed=seed,
            faults=tuple(faults),
            expectations=tuple(expectations),
            path=Path(self.file) if self.file else None,
            line=line_path,
        )

    # -- pieces -------------------------------------------------------------------------
    def unknown_keys(self, table, path, allowed):
        check_keys(self.ctx, path, table, allowed)

    def array(self, doc, key):
        items = doc.get(key, [])
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            self.error(key, None, "is not an array of tables", f"[[{key}]] sections")
            return []
        return items

    def string(self, table, key, required=False):
        short = key.rsplit(".", 1)[-1]
        value = table.get(short)
        if value is None:
            if required:
                self.error(key, None, "is required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.error(key, value, "must be a non-empty string" if required else "must be a string")
            return None
        return value

    def cause(self, table, key):
        value = table.get("cause")
        if isinstance(value, list) and value and all(isinstance(c, str) and c for c in value):
            return tuple(value)
        if isinstance(value, str) and value:
            return value
        self.error(key, value, "is required: a cause code, or a list of them (any one will do)")
        return None

    def seconds(self, table, key, required=False):
        short = key.rsplit(".", 1)[-1]
        value = table.get(short)
        if value is None:
            if required:
                self.error(key, None, "is required (seconds)")
            return None
        try:
            return _seconds(value, short, minimum_open=True)
        except FaultSpecError as exc:
            self.error(key, value, _INVALID + str(exc))
            return None

    def fault(self, i, item):
        prefix = f"faults[{i}]"
        self.unknown_keys(item, prefix, _FAULT_KEYS)
        kind = item.get("kind")
        target = item.get("target")
        if not isinstance(kind, str):
            self.error(
                prefix + ".kind",
                kind,
                f"is required: a fault kind, one of {_listing(FAULT_KINDS)}",
            )
            return None
        if not isinstance(target, str):
            self.error(
                prefix + ".target", target, "is required: a module id, module.channel or 'line'"
            )
            return None
        try:
            return make_fault(
                kind,
                target,
                line_modules=self.line_modules,
                channels=self.channels,
                at_s=item.get("at_s"),
                when=item.get("when"),
                duration_s=item.get("duration_s"),
                params=item.get("params"),
            )
        except FaultSpecError as exc:
            key = prefix + ("" if exc.key is None else "." + exc.key)
            value = exc.value
            if exc.key in ("kind", "target", "at_s", "when", "duration_s"):
                value = item.get(exc.key)
            if exc.key == "at_s" and item.get("at_s") is None and item.get("when") is None:
                key, value = prefix, None
            self.error(key, value, _INVALID + str(exc))
            return None

    def expectations(self, i, item):
        prefix = f"expect[{i}]"
        self.unknown_keys(item, prefix, _EXPECT_KEYS)
        out = []
        if not any(k in item for k in _EXPECT_KEYS):
            self.error(prefix, None, f"names no expectation: give one of {_listing(_EXPECT_KEYS)}")
        if "safe_within_s" in item:
            within = self.seconds(item, prefix + ".safe_within_s")
            if within is not None:
                out.append(Expectation("safe", within))
        for kind, fields in _EXPECT_FIELDS.items():
            if kind not in item:
                continue
            key = f"{prefix}.{kind}"
            table = item[kind]
            if not isinstance(table, dict):
                self.error(
                    key,
                    table,
                    "must be a table {{{}}}".format(", ".join(f + " = ..." for f in fields)),
                )
                continue
            self.unknown_keys(table, key, fields)
            within = self.seconds(table, key + ".within_s", required=True)
            module = cause = condition = None
            if "module" in fields:
                module = self.string(table, key + ".module", required=kind != "safe")
                modules = _modules(self.line_modules)
                if module is not None and module not in modules:
                    self.error(
                        key + ".module",
                        module,
                        "is not a module of the line" + did_you_mean(module, modules),
                        _listing(modules),
                    )
                    module = None
            if "cause" in fields:
                cause = self.cause(table, key + ".cause")
            if "when" in fields:
                text = table.get("when")
                try:
                    condition = parse_condition(text, self.line_modules, self.channels)
                except FaultSpecError as exc:
                    self.error(key + ".when", text, _INVALID + str(exc))
            if within is None or (kind in ("trip", "alarm") and (module is None or cause is None)):
                continue
            if kind == "signal" and condition is None:
                continue
            out.append(Expectation(kind, within, module, cause, condition))
        return out


# --- helpers --------------------------------------------------------------------------


def _check_kind(kind: object) -> None:
    if isinstance(kind, str) and kind in FAULT_KINDS:
        return
    shown = kind if isinstance(kind, str) else repr(kind)
    raise FaultSpecError(
        "unknown fault kind {!r}{}; valid kinds: {}".format(
            shown,
            did_you_mean(str(kind), FAULT_KINDS) if isinstance(kind, str) else "",
            ", ".join(FAULT_KINDS),
        ),
        "kind",
        kind,
    )


def _modules(line_modules: Mapping[str, str]) -> list[str]:
    """The controlled modules among a line's components (not its passive parts)."""
    return [cid for cid, kind in line_modules.items() if kind in MODULE_KINDS]


def _valid_targets(kind: str, line_modules: Mapping[str, str]) -> list[str]:
    fits = FAULT_KINDS[kind]
    if LINE in fits:
        return [LINE]
    return sorted(m for m, k in line_modules.items() if k in fits)


def _seconds(value: object, key: str, minimum_open: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    number = float(value) if ok and abs(value) < 1e300 else math.nan  # type: ignore[arg-type]
    if not math.isfinite(number) or number < 0 or (minimum_open and number == 0):
        raise FaultSpecError(
            "{} must be a number of seconds {} (simulated time), got {!r}".format(
                key, "> 0" if minimum_open else ">= 0", value
            ),
            key,
            value,
        )
    return number


def _listing(options: Iterable[str]) -> str:
    return ", ".join(options)


def _param_hint(kind: str) -> str:
    specs = PARAMS[kind]
    if not specs:
        return f"; {kind} takes no parameters"
    return f"; valid parameters of {kind}: {_listing(specs)}"


def _text(value: float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _num(value)


def _num(x: float) -> str:
    """Shortest text that reads back as the same float (no trailing .0)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text
