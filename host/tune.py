"""Commissioning a module's PID loop: relay-feedback autotune (``skid tune``).

Astrom & Hagglund's relay test.  With the module running, the loop first holds the test
temperature with its present gains; then, on the operator's authorisation, the board
replaces the PID by a relay (``edge.pid``, "Relay test"): heater ``bias + d`` until the
measurement rises ``hysteresis`` above the setpoint, ``bias - d`` until it falls
``hysteresis`` below, ``bias`` being the duty that held it.  The loop oscillates at (about)
its ultimate period ``Pu`` with amplitude ``a``; the describing function of a relay with
hysteresis gives the ultimate gain ``Ku = 4 d / (pi * sqrt(a**2 - hysteresis**2))``.

Safety during the test: the relay amplitude is bounded (``MAX_AMPLITUDE`` of the output
span, and ``bias +- d`` inside the output range, else the board refuses); the test
temperature and every sample must stay at least ``BOILING_MARGIN_C`` below the solvent's
boiling point at the stated pressure and ``TRIP_MARGIN_C`` below the lowest
over-temperature interlock of the loop's sensor: above that ``ceiling`` the host ends the
test, and the board's relay itself drops to the minimum output (``RELAY_CEILING``) without
waiting for the host.  The interlocks, alarms and the heater verifier stay active (the
module keeps running normally); a trip pins the output, which ends the relay on the board,
and the host then stops the test (``TuneError`` with the trip's cause).  At the end the
PID takes over again at the test temperature; the caller then returns the setpoint to its
minimum and stops the module.

Tuning rule: Tyreus-Luyben (1992) for PI/PID from ``Ku``/``Pu``: ``kp = Ku / 2.2``,
``Ti = 2.2 Pu``, ``Td = Pu / 6.3``.  Ziegler-Nichols' rule aims at a quarter-amplitude
decay (about 50 % overshoot on a step): far too lively for a reactor.  Tyreus and Luyben
derived theirs for the lag-dominant and integrating loops of chemical plants, which a
heated block with its probe lag is (it integrates heater power), trading speed for
damping: about 2.5x the integral time and a third less gain than Ziegler-Nichols.  We
then add what the board's PID offers (edge.pid): the derivative's filter
``d_filter_ms = Td / 2`` (the derivative is on the measurement, so it needs a filter
against sensor noise: a time constant of Td/2 keeps its phase lead up to about the
ultimate frequency while cutting noise at the tick rate by ~20x), and setpoint weight
``sp_weight = 0.5``: half the P on setpoint changes, so the end of a setpoint ramp or step
does not overshoot, while disturbances meet the full gain.  The bench
(bench/bench_control.py) measures the result on the emulated demo line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge.boardconfig import compile_config, load_board_config
from edge.boardconfig.compile import config_hash
from host.linecheck import BOILING_MARGIN_C
from line.model import Line

TRIP_MARGIN_C = 10.0  # the test stays this far below the over-temperature trip
MAX_AMPLITUDE = 0.3  # of the output span: bounded relay amplitude
DEFAULT_AMPLITUDE = 0.15
MIN_AMPLITUDE = 0.03
DEFAULT_HYSTERESIS = 0.15  # degC: about 3 noise sd of one probe sample
CYCLES = 6  # relay cycles measured; the first is discarded
HOLD_BAND_C = 0.5
HOLD_S = 120.0
HOLD_TIMEOUT_S = 900.0
RELAY_TIMEOUT_S = 600.0
ATMOSPHERE_BAR = 1.01325
TL_GAIN = 2.2
TL_TI = 2.2
TL_TD = 6.3
D_FILTER_FRACTION = 0.5
SP_WEIGHT = 0.5
GAIN_KEYS = ("kp", "ki", "kd", "d_filter_ms", "sp_weight")
_STATUS = re.compile(
    r"relay (\w+) cycles (\d+) period_ms (-?\d+) amplitude ([-0-9.e+]+) output (\S+) bias (\S+)"
)


class TuneError(Exception):
    """The test could not run or was ended (a trip, the ceiling, a timeout, a refusal)."""


@dataclass
class RelayResult:
    ku: float
    pu_s: float
    amplitude_c: float
    relay_amplitude: float
    hysteresis_c: float
    cycles: list[tuple[float, float]] = field(default_factory=list)  # (period s, amplitude)


@dataclass
class TestPlan:
    at_c: float
    ceiling_c: float
    amplitude: float
    hysteresis_c: float
    trip_c: float | None
    boiling_c: float | None
    out_min: float = 0.0
    out_max: float = 1.0


def loop_table(cfg, loop: str) -> dict:
    for p in cfg.data["pid"]:
        if p["name"] == loop:
            return p
    names = ", ".join(p["name"] for p in cfg.data["pid"]) or "none"
    raise TuneError(f"no loop {loop!r} in the board config (loops: {names})")


def trip_limit(cfg, loop: str) -> float | None:
    """The lowest "above" interlock limit on the loop's measured channel (or its sources)."""
    p = loop_table(cfg, loop)
    channels = {p["measure"]}
    for ch in cfg.data["channels"]:
        if ch["name"] == p["measure"]:
            channels.update(ch.get("redundant") or ())
    limits = [
        il["limit"]
        for il in cfg.data["interlocks"]
        if il["condition"] == "above" and il["channel"] in channels
    ]
    return min(limits) if limits else None


def plan_test(line: Line, cfg, loop: str, at_c, amplitude, hysteresis, pressure_bar) -> TestPlan:
    """The test temperature and its ceiling; TuneError when ``at_c`` is not safely below."""
    p = loop_table(cfg, loop)
    trip = trip_limit(cfg, loop)
    p_abs = ATMOSPHERE_BAR + (pressure_bar or 0.0)
    boiling = line.solvent.boiling_point_c(p_abs) if line.solvent is not None else None
    caps = [p["setpoint_max"]]
    if trip is not None:
        caps.append(trip - TRIP_MARGIN_C)
    if boiling is not None:
        caps.append(boiling - BOILING_MARGIN_C)
    ceiling = min(caps)
    if at_c is None:
        at_c = round(min(ceiling - 10.0, p["setpoint_min"] + 0.6 * (ceiling - p["setpoint_min"])))
    span = p["out_max"] - p["out_min"]
    if not 0.0 < amplitude <= MAX_AMPLITUDE * span:
        raise TuneError(f"relay amplitude {amplitude} outside (0, {MAX_AMPLITUDE * span:g}]")
    if not p["setpoint_min"] <= at_c <= ceiling - 5.0:
        raise TuneError(
            f"test temperature {at_c} degC is not inside [{p['setpoint_min']}, "
            f"{ceiling - 5.0:g}]: the ceiling {ceiling:g} degC keeps {BOILING_MARGIN_C:g} K "
            f"below boiling ({boiling and round(boiling, 1)} degC at {p_abs:.2f} bar abs) and "
            f"{TRIP_MARGIN_C:g} K below the trip ({trip} degC)"
        )
    return TestPlan(
        float(at_c), ceiling, amplitude, hysteresis, trip, boiling, p["out_min"], p["out_max"]
    )


def ultimate(d: float, a: float, eps: float) -> float:
    """Ku of a relay of amplitude ``d`` and hysteresis ``eps`` giving oscillation ``a``."""
    if a <= eps:
        raise TuneError(f"oscillation {a:.4g} not above the hysteresis {eps:g}: no result")
    return 4.0 * d / (math.pi * math.sqrt(a * a - eps * eps))


def propose(ku: float, pu_s: float) -> dict:
    """Tyreus-Luyben PID gains for the board's PID (per-second gains; see the docstring)."""
    kp = ku / TL_GAIN
    ti = TL_TI * pu_s
    td = pu_s / TL_TD
    return {
        "kp": _sig(kp),
        "ki": _sig(kp / ti),
        "kd": _sig(kp * td),
        "d_filter_ms": float(round(D_FILTER_FRACTION * td * 1000.0)),
        "sp_weight": SP_WEIGHT,
    }


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def parse_status(reason: str) -> dict:
    m = _STATUS.search(reason or "")
    if not m:
        raise TuneError(f"module answered {reason!r}, not a relay status")
    out = m.group(5)
    return {
        "state": m.group(1),
        "cycles": int(m.group(2)),
        "period_ms": int(m.group(3)),
        "amplitude": float(m.group(4)),
        "output": None if out == "None" else float(out),
        "bias": float(m.group(6)),
    }


# --- the procedure, over a link to the module ------------------------------------------------


class Link:
    """What the procedure needs of a module (emulated: host.tune_emulated; over a
    broker: host.tune_broker).  ``advance`` lets time pass while leasing the module."""

    def now_s(self) -> float:
        raise NotImplementedError

    def advance(self, seconds: float) -> None:
        raise NotImplementedError

    def value(self, channel: str) -> float | None:
        raise NotImplementedError

    def command(self, op: str, args: dict) -> tuple[bool, str]:
        raise NotImplementedError

    def set_setpoint(self, channel: str, value: float) -> tuple[bool, str]:
        raise NotImplementedError

    def trip(self) -> str | None:
        """The cause of a trip since the test started, or None."""
        raise NotImplementedError

    def lost(self) -> str | None:
        """Why the test cannot go on other than a trip (the module went offline,
        rebooted, or was stopped or aborted by someone else), or None."""
        return None

    def close(self) -> None:
        """After the test and the make-safe: release the module (stop leasing)."""


def _relay(link: Link, loop: str, what: str, **extra) -> dict:
    ok, reason = link.command("configure", {"config": {"loop": loop, "relay": what, **extra}})
    if not ok:
        raise TuneError(f"relay {what} refused: {reason}")
    return parse_status(reason)


def hold(link: Link, loop: str, measure: str, plan: TestPlan, say) -> float:
    """Bring the loop to the test temperature with its present gains and wait until steady;
    returns the mean output over the steady ``HOLD_S``: the relay's bias.  (The mean
    output, not the integral: a noisy output clipped at a limit holds the temperature
    with a mean above its integral.)"""
    ok, reason = link.set_setpoint(loop, plan.at_c)
    if not ok:
        raise TuneError(f"setpoint {plan.at_c} refused: {reason}")
    say(
        f"holding {plan.at_c:g} degC with the present gains (within {HOLD_BAND_C:g} for {HOLD_S:g} s)"
    )
    start = link.now_s()
    inside_since = None
    outputs: list[float] = []
    while link.now_s() - start < HOLD_TIMEOUT_S:
        link.advance(1.0)
        _guard(link, measure, plan)
        pv = link.value(measure)
        out = _relay(link, loop, "status")["output"]
        if pv is not None and out is not None and abs(pv - plan.at_c) <= HOLD_BAND_C:
            inside_since = link.now_s() if inside_since is None else inside_since
            outputs.append(out)
            if link.now_s() - inside_since >= HOLD_S:
                return sum(outputs) / len(outputs)
        else:
            inside_since = None
            outputs = []
    raise TuneError(f"the loop did not settle at {plan.at_c:g} degC in {HOLD_TIMEOUT_S:g} s")


def _guard(link: Link, measure: str, plan: TestPlan) -> None:
    cause = link.trip()
    if cause:
        raise TuneError(f"trip during the test: {cause}; the board made the output safe")
    gone = link.lost()
    if gone:
        raise TuneError(f"{gone}; it protects itself on lease loss")
    pv = link.value(measure)
    if pv is not None and pv >= plan.ceiling_c:
        raise TuneError(f"{measure} {pv:.2f} degC reached the test ceiling {plan.ceiling_c:g}")


def relay_test(
    link: Link, loop: str, measure: str, plan: TestPlan, bias: float, say
) -> RelayResult:
    """Run the relay until ``CYCLES`` cycles; always stops the relay before returning.

    The relay centres on ``bias``, the output that held the test temperature; its amplitude is
    the planned one, less where the bias is nearer an output limit (never below
    ``MIN_AMPLITUDE``: then the test is refused)."""
    d = min(plan.amplitude, bias - plan.out_min, plan.out_max - bias)
    if d < MIN_AMPLITUDE:
        raise TuneError(
            f"the holding output {bias:.3g} is too near an output limit for a relay test"
        )
    plan.amplitude = math.floor(d * 1e4) / 1e4  # never past the limit by rounding
    _relay(
        link,
        loop,
        "start",
        relay_bias=bias,
        relay_amplitude=plan.amplitude,
        relay_hysteresis=plan.hysteresis_c,
        relay_ceiling=plan.ceiling_c,
    )
    say(
        f"relay: +-{plan.amplitude:g} around the holding duty, hysteresis {plan.hysteresis_c:g} degC"
    )
    cycles: dict[int, tuple[float, float]] = {}
    try:
        start = link.now_s()
        while link.now_s() - start < RELAY_TIMEOUT_S:
            link.advance(0.5)
            _guard(link, measure, plan)
            st = _relay(link, loop, "status")
            if st["state"] == "ceiling":
                raise TuneError(f"the board's relay hit the ceiling {plan.ceiling_c:g} degC")
            if st["state"] != "running":
                raise TuneError("the relay stopped on the board (a trip or a mode change)")
            if st["cycles"] > 0:
                cycles[st["cycles"]] = (st["period_ms"] / 1000.0, st["amplitude"])
            if len(cycles) > CYCLES:
                break
        else:
            raise TuneError(f"fewer than {CYCLES} relay cycles in {RELAY_TIMEOUT_S:g} s")
    finally:
        try:
            link.command("configure", {"config": {"loop": loop, "relay": "stop"}})
        except Exception:  # the module may be gone; the caller makes it safe
            pass
    used = [cycles[k] for k in sorted(cycles)][1:]  # the first cycle is still transient
    pu = sum(c[0] for c in used) / len(used)
    a = sum(c[1] for c in used) / len(used)
    ku = ultimate(plan.amplitude, a, plan.hysteresis_c)
    return RelayResult(ku, pu, a, plan.amplitude, plan.hysteresis_c, used)


# --- writing the gains ---------------------------------------------------------------------------


def write_gains(path: Path, loop: str, gains: dict) -> dict:
    """Edit ``[pid.LOOP]`` in the board config at ``path`` in place: each key's value is
    replaced (its comment and layout kept), missing keys are added after the last gain.
    Returns ``{"old": {...}, "new": {...}, "old_hash", "new_hash"}``; the file must still
    load, else it is left as it was and TuneError is raised."""
    path = Path(path)
    text = path.read_text()
    before = load_board_config(path)
    old_hash = config_hash(compile_config(before)).hex()
    p = loop_table(before, loop)
    old = {k: p.get(k) for k in gains}
    lines = text.splitlines(keepends=True)
    start, end = _table_span(lines, f"pid.{loop}")
    last_gain = start
    done = set()
    for i in range(start + 1, end):
        m = re.match(r"([ \t]*)(\w+)([ \t]*=[ \t]*)([^#\n]*?)([ \t]*)(#.*)?(\n?)$", lines[i])
        if m and m.group(2) in gains:
            key = m.group(2)
            value = _toml(gains[key])
            pad = m.group(5) if m.group(6) else ""
            width = len(m.group(4)) + len(pad)
            pad = " " * max(1, width - len(value)) if m.group(6) else ""
            lines[i] = f"{m.group(1)}{key}{m.group(3)}{value}{pad}{m.group(6) or ''}{m.group(7)}"
            done.add(key)
            last_gain = i
        elif m and m.group(2) in GAIN_KEYS:
            last_gain = i
    added = [f"{k} = {_toml(v)}\n" for k, v in gains.items() if k not in done]
    lines[last_gain + 1 : last_gain + 1] = added
    new_text = "".join(lines)
    path.write_text(new_text)
    try:
        after = load_board_config(path)
    except Exception as exc:
        path.write_text(text)
        raise TuneError(f"the edited board config does not load ({exc}); left unchanged") from exc
    new = {k: loop_table(after, loop).get(k) for k in gains}
    new_hash = config_hash(compile_config(after)).hex()
    return {"old": old, "new": new, "old_hash": old_hash, "new_hash": new_hash}


def _toml(v) -> str:
    return repr(float(v)) if isinstance(v, float | int) and not isinstance(v, bool) else repr(v)


def _table_span(lines: list[str], name: str) -> tuple[int, int]:
    start = None
    for i, ln in enumerate(lines):
        s = ln.strip()
        if start is None and s == f"[{name}]":
            start = i
        elif start is not None and s.startswith("["):
            end = i
            while end > start + 1 and lines[end - 1].strip() == "":
                end -= 1
            return start, end
    if start is None:
        raise TuneError(f"no [{name}] table in the board config")
    return start, len(lines)
