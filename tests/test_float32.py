"""Boards compute in single precision (float32): the safety decisions hold there too.

rp2 and ESP32 MicroPython builds have 32-bit floats; the tests elsewhere run the edge
core in double precision (CPython, and the 64-bit MicroPython builds).  Here values are
forced through float32 (``struct`` 'f' round trips) where a board takes them in:

* the config: every float of the compiled board config (limits, hysteresis, ranges,
  calibrations, actuator ranges and safe values), as a float32 board decodes it;
* the sensor boundary: every analog reading the emulated driver hands the runtime;
* the actuator boundary: every value the runtime writes to an output;
* the command boundary: doubles in a command decode to float32, as ``struct`` gives
  them on such a port (``float32_decoding``).

Arithmetic between those points still runs in double precision on CPython: what is
checked is that the decisions do not depend on the extra precision of the inputs.

1. ``Float32Rig`` runs the Hypothesis safety machines of tests/test_safety_properties.py
   (reactor and pump: every invariant there) with those boundaries, at a modest example
   count.  The model widens two tolerances: where it compares a plant value with a
   measurement (invariant 2's settled start and crossing time), by ``TOL``; and a
   setpoint within float32 rounding of a bound may be accepted or refused.  Commands
   carry float32 values (see 4).
2. For every analog channel and redundant pair of every shipped board config, a reading
   decides the same way (quality GOOD/UNCERTAIN/BAD, so range, calibration plausibility,
   NE43 bands and disagreement; each ``above``/``below`` interlock limit and its reset
   threshold) with float32 inputs as with double ones, unless the plant value is within ``TOL`` of the
   threshold (the double-precision decision changes within that distance), and a usable
   value differs by at most ``TOL``.  ``TOL(x) = 2**-22 * (|x| + span)``, span being the
   channel's range (about 2.4e-7 of full scale: a float32 has 24 significant bits and a
   calibration loses at most a few of them).
3. No file in the board bundle holds a float literal that float32 cannot hold (beyond
   +-3.4028235e38, or nonzero below its smallest subnormal): a float32 port would read
   it as inf or 0, and freezing such a file fails.  Host-only modules may (the board
   config loader's 1e300 typo guard is one; edge/boardconfig/ is not on a board).
4. Commands: a number beyond the float32 range reaches a float32 board as inf and the
   command is refused as malformed, changing nothing.  A *signed* command carrying a
   double that float32 cannot hold (a setpoint of 80.1) is accepted, and acted on with
   the float32 value: the tag is checked over the received bytes (protocol/SPEC.md
   section 7), not over a re-encoding of the parsed command (which, with the board's
   float32 value, would differ from what the host signed; found here, fixed since).
"""

from __future__ import annotations

import ast
import copy
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.boardconfig.board_files import ROOT, board_files
from emulator.electrical import raw_for
from protocol import auth, cbor, messages
from protocol.constants import (
    QUALITY_BAD,
    RESULT_MALFORMED,
    RESULT_OK,
    RESULT_OUT_OF_RANGE,
    RESULT_UNAUTHENTICATED,
)
from tests.edge_harness import KEY, NONCE, Rig
from tests.test_safety_properties import SETTINGS, PumpSafety, ReactorSafety, snapshot

F32_MAX = 3.4028234663852886e38
F32_MIN_SUBNORMAL = 1.401298464324817e-45
TOL_REL = 2.0**-22
KINDS = ("reactor", "pump", "bpr", "valve", "analyzer")


def f32(x):
    """``x`` as a float32 board holds it (floats only; ints and None pass unchanged)."""
    if type(x) is not float:
        return x
    try:
        return struct.unpack(">f", struct.pack(">f", x))[0]
    except OverflowError:  # CPython refuses to round to infinity; a board rounds
        return math.copysign(math.inf, x)


def to_float32(obj):
    """Every float in a decompiled config (nested dicts and lists) rounded in place."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in list(items):
        if type(v) is float:
            obj[k] = f32(v)
        elif isinstance(v, (dict, list)):
            to_float32(v)
    return obj


class Float32Rig(Rig):
    """A Rig whose config, sensor readings and actuator writes go through float32."""

    def __init__(self, kind="reactor", key=None, reset_cause="power_on", mutate=None, drivers=None):
        def as_on_board(cfg):
            if mutate is not None:
                mutate(cfg)
            to_float32(cfg)

        super().__init__(kind, key, reset_cause, as_on_board, drivers)
        for _, drv in self.node.sensors:
            set_raw = drv.set_raw
            drv.set_raw = lambda v, set_raw=set_raw: set_raw(f32(v))
        for slot in self.node.actuators:
            write = slot.driver.write
            slot.driver.write = lambda v, write=write: write(f32(v))
        self.plant.write_sensors()  # the readings taken before the wrapping
        handle = self.node.handle_command
        self.node.handle_command = lambda data, now_ms: float32_decoding(handle, data, now_ms)


def _dec_simple_f32(data, i, ai, _dec_simple=cbor._dec_simple):
    v, i = _dec_simple(data, i, ai)
    return (f32(v) if type(v) is float else v), i


def float32_decoding(func, *args):
    """``func(*args)`` with the codec reading doubles as a float32 port does: the bytes
    (and so the signature) are what the host sent, the numbers what the board holds.
    Singles and halves are exact in float32 already; doubles go through ``_dec_simple``."""
    saved = cbor._dec_simple
    cbor._dec_simple = _dec_simple_f32
    try:
        return func(*args)
    finally:
        cbor._dec_simple = saved


def tol(x, span):
    return TOL_REL * (abs(x) + span)


# --- 1. the safety machines on float32 boundaries --------------------------------------------


def within_float32(obj):
    """``obj`` (command args) with every float clamped into the float32 range and
    rounded to float32, as a host talking to a float32 board sends it."""
    if type(obj) is float:
        return f32(max(-F32_MAX, min(F32_MAX, obj)))
    if isinstance(obj, dict):
        return {k: within_float32(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [within_float32(v) for v in obj]
    return obj


class Float32Model:
    """The safety machines' model where float32 changes what it may expect."""

    RIG = Float32Rig

    def value_tol(self, x):
        lo, hi = self.range[self.WATCH[0]]  # type: ignore[attr-defined]
        return tol(x, hi - lo)

    def command(self, op, args, expected, **kw):
        # Numbers go out as float32 values: a number beyond the float32 range reaches a
        # float32 board as inf and is refused as malformed
        # (test_a_number_beyond_float32_is_refused_as_malformed); a signed double that
        # float32 cannot hold is accepted there, rounded
        # (test_a_signed_double_setpoint_is_accepted_by_a_float32_board), but the model's
        # range expectations are simpler for values the board holds exactly.
        if args is None or op != "set_setpoint" or type(args["value"]) is not float:
            return super().command(op, within_float32(args), expected, **kw)  # type: ignore[misc]
        v = args["value"]
        args = within_float32(args)
        # A value within float32 rounding of a bound may land on it: either result.
        _, ch = self.birth_channels[self.SETPOINT]  # type: ignore[attr-defined]
        if (ch.lo <= v <= ch.hi) != (ch.lo <= args["value"] <= ch.hi) and expected & {
            RESULT_OK,
            RESULT_OUT_OF_RANGE,
        }:
            expected = set(expected) | {RESULT_OK, RESULT_OUT_OF_RANGE}
        return super().command(op, args, expected, **kw)  # type: ignore[misc]


class ReactorSafety32(Float32Model, ReactorSafety):
    pass


class PumpSafety32(Float32Model, PumpSafety):
    pass


FLOAT32_SETTINGS = settings(SETTINGS, max_examples=100, stateful_step_count=20)
TestReactorSafety32 = ReactorSafety32.TestCase
TestReactorSafety32.settings = FLOAT32_SETTINGS
TestPumpSafety32 = PumpSafety32.TestCase
TestPumpSafety32.settings = FLOAT32_SETTINGS


@pytest.mark.parametrize(
    "op, args",
    [
        ("configure", {"config": {"loop": "coil_temp", "kp": 1e300}}),
        ("set_setpoint", {"channel": "coil_temp", "value": -1e39}),
    ],
)
@pytest.mark.parametrize("keyed", [False, True])
def test_a_number_beyond_float32_is_refused_as_malformed(op, args, keyed):
    rig = Float32Rig("reactor", key=KEY if keyed else None)
    rig.lease()
    if op == "set_setpoint":
        args = dict(args, channel=rig.alias(args["channel"]))
    before = snapshot(rig.node)
    events = len(rig.sink.events)
    ack = rig.command(op, args)
    assert ack.result == RESULT_MALFORMED and "inf" in (ack.reason or ""), ack
    assert snapshot(rig.node) == before and rig.sink.events[events:] == []
    if keyed:  # refused before authentication: the counter was not consumed
        assert rig.node.verifier.last_counter("coordinator") is None
    # the same command within the float32 range is judged on its merits
    assert rig.command(op, within_float32(args)).result in (RESULT_OK, RESULT_OUT_OF_RANGE)


def test_a_signed_double_setpoint_is_accepted_by_a_float32_board():
    rig = Float32Rig("reactor", key=KEY)
    rig.lease()
    assert rig.set("coil_temp", 80.0).result == RESULT_OK  # exact in float32
    ack = rig.set("coil_temp", 80.1)  # not exact: the board holds it rounded
    assert ack.result == RESULT_OK, ack
    loop = next(lp for lp in rig.node.loops if lp.name == "coil_temp")
    assert loop.pid.target == f32(80.1) != 80.1
    assert rig.node.verifier.last_counter("coordinator") == rig.counter
    # a tampered double is still refused
    data = messages.build_command(
        rig.next_id,
        "set_setpoint",
        {"channel": rig.alias("coil_temp"), "value": 80.1},
        rig.host_ms() + 5000,
    )
    rig.next_id += 1
    signed = auth.sign_command(data, KEY, rig.node.module_id, NONCE, "coordinator", 10**9)
    i = signed.index(struct.pack(">d", 80.1))
    forged = signed[:i] + struct.pack(">d", 90.1) + signed[i + 8 :]
    assert rig.send(forged).result == RESULT_UNAUTHENTICATED
    assert loop.pid.target == f32(80.1)
    assert rig.send(signed).result == RESULT_OK


def test_a_double_reaches_the_float32_node_rounded():
    rig = Float32Rig("reactor")
    rig.lease()
    alias = rig.alias("coil_temp")
    assert rig.set("coil_temp", 80.1).result == RESULT_OK
    loop = next(lp for lp in rig.node.loops if lp.name == "coil_temp")
    assert loop.pid.target == f32(80.1) != 80.1, (alias, loop.pid.target)


def test_the_float32_rig_rounds_config_readings_and_writes():
    rig = Float32Rig("reactor")
    for il in rig.cfg["interlocks"]:
        for v in il.values():
            assert type(v) is not float or f32(v) == v
    rig.plant.overrides["temp_a"] = 150.1
    rig.tick()
    ch, drv = next((c, d) for c, d in rig.node.sensors if c.name == "temp_a")
    assert drv.raw == f32(drv.raw) and drv.raw != raw_for(ch.calibration, 150.1)
    for slot in rig.node.actuators:
        v = slot.driver.value
        assert type(v) is not float or f32(v) == v


# --- 2. every channel's decisions, float32 against double --------------------------------------


def thresholds(cfg, channel):
    """(condition, double threshold, float32 threshold) of the interlocks on ``channel``:
    the trip limit, and the limit -/+ hysteresis a reset must get past."""
    out = []
    for il in cfg["interlocks"]:
        cond = il["condition"]
        if il["channel"] != channel or cond not in ("above", "below"):
            continue
        lim, hyst = il["limit"], il["hysteresis"]
        lim32, hyst32 = f32(lim), f32(hyst)
        back = lim - hyst if cond == "above" else lim + hyst
        back32 = f32(lim32 - hyst32 if cond == "above" else lim32 + hyst32)
        out += [(cond, lim, lim32), (cond, back, back32)]
    return out


def span_of(ch):
    lo, hi = ch.range_min, ch.range_max
    return (hi - lo) if lo is not None and hi is not None else 100.0


def subjects():
    """What decides on analog readings, per shipped kind: each analog sensor channel
    (range, calibration plausibility, NE43 bands, its interlocks) and each redundant pair
    (disagreement, selection, its interlocks), double and float32 side by side."""
    out = []
    for kind in KINDS:
        r64, r32 = Rig(kind), Float32Rig(kind)
        s32 = {ch.name: ch for ch, _ in r32.node.sensors}
        d32 = {d.name: d for d in r32.node.derived}
        for ch, drv in r64.node.sensors:
            if drv.raw_unit != "0/1":
                ths = thresholds(r64.cfg, ch.name)
                out.append((f"{kind}.{ch.name}", ch, s32[ch.name], ths, (span_of(ch),)))
        for d in r64.node.derived:
            if hasattr(d, "max_disagreement"):
                ths = thresholds(r64.cfg, d.name)
                spans = (span_of(d.a), span_of(d.b))
                out.append((f"{kind}.{d.name}", d, d32[d.name], ths, spans))
    return out


SUBJECTS = subjects()


def decide(subject, xs, side32, ths):
    """(quality, value, threshold decisions) of a fresh copy of ``subject`` given the
    plant values ``xs`` (one per sensor behind it), read as a board with float32 inputs
    (``side32``) or in double precision reads them."""
    c = copy.deepcopy(subject)
    if hasattr(c, "max_disagreement"):
        for ch, x in zip((c.a, c.b), xs, strict=True):
            raw = raw_for(ch.calibration, x)
            ch.update(f32(raw) if side32 else raw, 1000)
        quality = c.check(1000)
    else:
        raw = raw_for(c.calibration, xs[0])
        quality = c.update(f32(raw) if side32 else raw, 1000)
    v = c.value if quality != QUALITY_BAD else None
    over = tuple(
        None
        if v is None
        else (v > t32 if side32 else v > t)
        if cond == "above"
        else (v < t32 if side32 else v < t)
        for cond, t, t32 in ths
    )
    return quality, over, v


def plant_value(t, span):
    """A plant value anywhere around the range, or within a few TOL of ``t``."""
    return st.one_of(
        st.floats(t - 0.6 * span, t + 0.6 * span),
        st.floats(t - 4 * tol(t, span), t + 4 * tol(t, span)),
    )


# Where to look for a change of the double-precision decision: each plant value moved by
# its TOL, alone and together (a disagreement changes fastest with the two moved apart).
NUDGES = {
    1: ((-1,), (1,)),
    2: ((-1, -1), (-1, 1), (1, -1), (1, 1), (0, 1), (0, -1), (1, 0), (-1, 0)),
}


@pytest.mark.parametrize("subject", SUBJECTS, ids=[s[0] for s in SUBJECTS])
@given(data=st.data())
@settings(max_examples=120, deadline=None, derandomize=True, database=None)
def test_analog_decisions_match_double_precision_within_tolerance(subject, data):
    name, s64, s32, ths, spans = subject
    chans = (s64.a, s64.b) if hasattr(s64, "max_disagreement") else (s64,)
    near = [t for _, t, _ in ths]
    for ch in chans:
        near += [v for v in (ch.range_min, ch.range_max) if v is not None]
    centre = data.draw(st.sampled_from(near or [0.0]), label="near")
    xs = [data.draw(plant_value(centre, span), label="plant value") for span in spans]
    if len(xs) == 2 and data.draw(st.booleans(), label="disagree near the limit"):
        gap = s64.max_disagreement
        xs[1] = xs[0] + data.draw(
            st.sampled_from([-gap, gap]).flatmap(
                lambda g: st.floats(g - 4 * tol(g, spans[1]), g + 4 * tol(g, spans[1]))
            ),
            label="gap",
        )
    q64, o64, v64 = decide(s64, xs, False, ths)
    q32, o32, v32 = decide(s32, xs, True, ths)
    t = [tol(x, span) for x, span in zip(xs, spans, strict=True)]
    if v64 is not None and v32 is not None:
        assert abs(v32 - v64) <= max(t), (name, xs, v64, v32)
    if (q64, o64) != (q32, o32):
        # the double-precision decision itself changes within TOL of the plant values
        around = {
            decide(s64, [x + d * tx for x, tx, d in zip(xs, t, ds, strict=True)], False, ths)[:2]
            for ds in NUDGES[len(xs)]
        }
        assert around != {(q64, o64)}, (
            f"{name} at {xs!r}: double decides {(q64, o64)}, float32 {(q32, o32)}, "
            f"and nothing within {t} changes the double decision"
        )


# --- 3. no float literal a float32 port cannot hold in a board file ------------------------------


def float_literals(source):
    """(line, value) of every float literal, and of float("...") of a string literal."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and type(node.value) is float:
            yield node.lineno, node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "float"
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            try:
                yield node.lineno, float(node.args[0].value)
            except ValueError:
                pass


def float32_problem(v):
    if v != v or v in (math.inf, -math.inf):
        return None  # float("nan"), float("inf"): meant as such
    if abs(v) > F32_MAX:
        return "beyond the float32 range (+-3.4028235e38): inf on a float32 port"
    if v and abs(v) < F32_MIN_SUBNORMAL:
        return "below the smallest float32 subnormal: 0 on a float32 port"
    return None


def test_board_files_hold_no_float_literal_float32_cannot_hold():
    problems = []
    for rel in board_files():
        for line, v in float_literals((ROOT / rel).read_text()):
            why = float32_problem(v)
            if why:
                problems.append(f"{rel}:{line}: {v!r} {why}")
    assert problems == []


def test_the_literal_check_catches_what_it_promises():
    src = 'A = 1e300\nB = -3.5e38\nC = float("1e39")\nD = 1e-46\nE = 3.4028234663852886e38\n'
    src += 'F = float("inf")\nG = 1.5\n'
    found = {line: float32_problem(v) for line, v in float_literals(src)}
    assert [line for line, why in sorted(found.items()) if why] == [1, 2, 3, 4]
    # the host-only config-validation core holds 1e300: caught if it were ever shipped
    core = (ROOT / "edge" / "boardconfig" / "core.py").read_text()
    assert any(float32_problem(v) for _, v in float_literals(core))
    assert "edge/boardconfig/core.py" not in board_files()
