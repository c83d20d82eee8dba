"""Property-based safety suite: Hypothesis state machines against real edge Nodes.

``ReactorSafety`` and ``PumpSafety`` each build a fresh ``tests.edge_harness.Rig`` (a Node
from a shipped board config, emulated drivers, the stand-in plant, a simulated clock) and
interleave time, leases, link losses, commands (valid; out of range; not allowed in the
state; unknown; unsigned, forged, tampered, replayed and expired when the module has a
key; malformed bytes), sensor wire faults, plant jumps and ramps, e-stop / cut-out / feed
inputs and tick-loop stalls (only the independent ``deadman_check`` timer runs).
``LineClogs`` runs the whole demo line (every module's edge runtime, the hydraulic
emulator) through clogs, flow changes, restarts and host outages.  ``PidLimits`` drives
``edge.pid.PID`` alone.  After every tick and every step the invariants below are checked
against a small model written from the board configs and docs/safety.md:

1. A measurement above its trip limit, or BAD, puts the tripped actuator at its safe
   value in that very tick (the docs promise the same tick; the issue allows the next),
   and it stays there until a reset is accepted, which happens only once the cause
   cleared (value at or below limit - hysteresis, quality not BAD).
2. (a) The same for the pumps of the emulated line against their *measured* head
   pressure.  (b) Stand-in plant, pump and reactor: a value ramping up at r units/s from
   a settled sensor has the actuator safe at every tick later than ``crossing + on_delay
   + filter_tau`` (a first-order filter lags a ramp by at most r * tau; tau 0 for an
   interlock on the ``unfiltered`` value).  (c) Emulated
   line: no component's peak pressure exceeds its own rating (pumps, the pressure
   sources, excepted), for every clog (any component, sudden or progressive, any rate).
3. Once the lease expired, every actuator is safe at every tick from
   ``last lease + timeout + grace + 1 tick`` on (lease supervision runs in the tick; a
   stalled tick loop is covered by invariant 7).
4. A rejected command changes no output and no state (the anti-replay counter excepted:
   a command that passed authentication consumes its counter, by design, see
   tests/test_node.py), emits no EVENT and gets exactly one ACK; every command gets the
   result code the model predicts.
5. PID outputs and integrators never leave the output limits (in the nodes, and in
   ``PidLimits`` with hostile measurements, clocks, gains and modes).
6. Every trip produces exactly one trip EVENT (critical), in declaration order within a
   tick, the first since a reset carrying the first-out cause; exactly the interlocks the
   model says are due trip (no spurious, no missed trips); EVENT numbers run 1, 2, 3, ...
   with non-decreasing times; an abort forced by a trip is announced after the trip.
7. During a stall, any actuator not refreshed for more than its ``deadman_ms`` is safe
   after each timer call; while ticks run the timer never fires; the tick after a firing
   latches a ``deadman_expired`` trip.
8. A reset never restarts: an actuator a trip forced safe stays safe, through any reset,
   until an accepted ``start`` or ``unhold`` (both refused while a trip is latched).

The model of a reset (``persisting``): every latched interlock's cause must have cleared;
heater verification's ``uncontrolled_heating`` once the watched temperature fell at least
the verifier's hysteresis below its peak since the trip, its other faults once
``check_gain_time_ms`` passed since the trip.  An unsigned rebirth is taken at most once
a second (``busy`` otherwise) and announces nothing.

Budget: 500 examples per machine, at most 30 steps (15 for the line), derandomised;
``FLOWSKID_SOAK=1`` runs 20,000 examples of up to 60 steps (``make soak``).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from edge import states as sm
from edge.clock import ticks_add
from edge.pid import PID
from protocol import cbor, host_messages, messages, wire
from protocol.constants import (
    QUALITY_BAD,
    RESULT_BUSY,
    RESULT_EXPIRED,
    RESULT_MALFORMED,
    RESULT_NAMES,
    RESULT_NOT_ALLOWED_IN_STATE,
    RESULT_OK,
    RESULT_OUT_OF_RANGE,
    RESULT_REPLAYED,
    RESULT_UNAUTHENTICATED,
    RESULT_UNKNOWN,
)
from tests.edge_harness import KEY, Rig

ROOT = Path(__file__).resolve().parent.parent
DEMO_LINE = ROOT / "examples" / "lines" / "demo.toml"

SOAK = bool(os.environ.get("FLOWSKID_SOAK"))
SETTINGS = settings(
    max_examples=20_000 if SOAK else 500,
    stateful_step_count=60 if SOAK else 30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

HOST_TIME_MAX_AGE_MS = 600_000  # protocol.auth.HostTimeEstimate default
HOST_LEASE_PERIOD_MS = 1000  # a live host leases once a second
SENDERS = ("coordinator", "operator")
HEATER_FAULTS = ("heater_not_heating", "temperature_runaway", "uncontrolled_heating")
# Service commands the protocol can carry but the module does not implement.
UNSUPPORTED = ("suspend", "unsuspend", "clear", "pause", "resume", "restart")
UNKNOWN_STATUS = object()  # an interlock whose state the model cannot tell


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in v.items())
    if isinstance(v, set):
        return frozenset(v)
    return v


def _fields(obj, skip=()):
    """Every attribute of ``obj`` (slots and __dict__), shallowly frozen."""
    if obj is None:
        return None
    out = []
    for cls in type(obj).__mro__:
        slots = getattr(cls, "__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in skip and hasattr(obj, name):
                out.append((name, _freeze(getattr(obj, name))))
    for name, value in getattr(obj, "__dict__", {}).items():
        if name not in skip:
            out.append((name, _freeze(value)))
    return tuple(out)


def snapshot(node):
    """All module state a command could touch, except the anti-replay counters (see 4.)."""
    parts = [
        _fields(node, skip=("now_ms",)),
        _fields(node.sm),
        _fields(node.lease),
        _fields(node.host_time),
        _fields(node.interlocks),
        _fields(node.deadman),
        _fields(getattr(node, "_verify_channel", None)),
        node.outputs(),
    ]
    parts += [_fields(il) for il in node.interlocks.interlocks]
    for slot in node.actuators:
        parts += [_fields(slot), _fields(slot.driver)]
    for lp in node.loops:
        parts += [_fields(lp), _fields(lp.pid), _fields(lp.verifier)]
    for ch, drv in node.sensors:
        parts += [_fields(ch), _fields(drv)]
    if node.alarms is not None:
        parts.append(_fields(node.alarms))
        parts += [_fields(a) for a in node.alarms.alarms]
    return parts


def _diff(before, after):
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        if a != b:
            return f"part {i}: {a!r}\n   -> {b!r}"
    return None


# -- node machines -------------------------------------------------------------------------


class NodeSafetyMachine(RuleBasedStateMachine):
    """Shared rules, model and invariants; subclasses name the board config."""

    KIND = ""
    SETPOINT = ""  # the commandable setpoint channel (a loop's or a direct actuator's)
    WATCH = ("", ())  # (measured channel, plant values that feed it) for invariants 1/2
    RAMP_RATES = (0.5, 50.0)  # units/s for plant ramps of the watched value
    LEASES = (None,)  # lease config variants drawn per example; None = as shipped
    RIG = Rig  # tests/test_float32.py runs the same machines on a float32 Rig

    def value_tol(self, x):
        """How far a measurement may sit from the plant value ``x`` beyond the double
        precision conversion (0 here; the float32 variant widens it)."""
        return 0.0

    rig: Rig  # built by the initialize rule (invariants and preconditions run after it)
    last_lease: int | None
    ramp: dict | None
    since: dict[str, int | None]

    # -- set-up ------------------------------------------------------------------------------

    @initialize(data=st.data(), keyed=st.booleans())
    def build(self, data, keyed):
        variant = data.draw(st.sampled_from(self.LEASES), label="lease variant")

        def mutate(cfg):
            if variant is not None:
                cfg["lease"]["on_loss"], cfg["lease"]["grace_ms"] = variant

        self.rig = rig = self.RIG(self.KIND, key=KEY if keyed else None, mutate=mutate)
        node = rig.node
        cfg = rig.cfg
        self.keyed = keyed
        self.T = rig.tick_ms
        lease = cfg["lease"]
        self.lease_timeout = lease["timeout_ms"]
        self.lease_grace = lease["grace_ms"] if lease["on_loss"] == "hold" else 0
        birth = host_messages.parse_birth(node.birth())
        self.allowed = birth.states
        self.birth_channels = {c.name: (i, c) for i, c in enumerate(birth.channels)}
        self.ch = {ch.name: ch for ch, _ in node.sensors}
        self.ch.update({ch.name: ch for ch in node.derived})
        self.drivers = {ch.name: drv for ch, drv in node.sensors}
        self.digital = sorted(rig.plant.digital)
        self.analog = sorted(rig.plant.values)
        self.range = {c["name"]: tuple(c["range"]) for c in cfg["channels"]}
        self.tau = {c["name"]: c.get("filter_tau_ms") or 0 for c in cfg["channels"]}
        # The interlocks the model can judge, in declaration order (config, then e-stop).
        self.specs = [dict(il) for il in cfg["interlocks"]]
        if cfg.get("estop"):
            es = cfg["estop"]
            self.specs.append(
                {
                    "id": "estop",
                    "channel": es["channel"],
                    "condition": "input_true",
                    "limit": None,
                    "hysteresis": 0,
                    "on_delay_ms": 0,
                    "cause": es["cause"],
                    "trip_on_bad": True,
                    "safe": es["safe"],
                    "state": es["state"],
                }
            )
        self.spec_by_id = {s["id"]: s for s in self.specs}
        # The state each trip moves the module to (lease, dead-man and heater
        # verification abort: docs/safety.md).
        self.declared_state = {sid: "aborted" for sid in ("lease", "deadman", "heater_verify")}
        self.declared_state.update({s["id"]: s.get("state") for s in self.specs})
        self.order = [il.id for il in node.interlocks.interlocks]
        assert self.order[: len(self.specs)] == [s["id"] for s in self.specs]
        watch_ch, _ = self.WATCH
        self.watch = next(
            s for s in self.specs if s["channel"] == watch_ch and s["condition"] == "above"
        )
        self.watch_slot = next(a for a in node.actuators if a.name == self.watch["safe"][0])
        # model
        self.last_tick = rig.now
        self.last_lease = None
        self.lease_lost = False  # a tick has seen the lease expired since the last lease
        self.lease_fed_since_trip = True
        self.deadman_fired = False  # the timer forced an actuator since the last tick
        self.since = {s["id"]: None for s in self.specs}
        self.latched = set()  # known interlocks latched (model)
        self.trip_events = []  # trip EVENTs since the last accepted reset
        self.events_checked = 0
        self.hot = False  # invariant 1 latch
        self.ramp = None
        self.counters = {}  # sender -> last counter the verifier accepted (model)
        self.last_unsigned_rebirth = None  # when one was last accepted
        # Invariant 8: actuators a trip forced safe, until an accepted start/unhold.
        self.parked = set()
        self.all_actuators = {slot.name for slot in node.actuators}
        self.tripped_outputs = {s["id"]: set(s["safe"]) for s in self.specs}
        self.tripped_outputs["lease"] = self.all_actuators
        self.tripped_outputs["deadman"] = self.all_actuators
        ra = cfg.get("runaway")
        self.runaway = ra
        if ra:
            self.tripped_outputs["heater_verify"] = {ra["output"]}
        self.heater_trip = None  # {"cause", "t", "peak", "temp"} while heater_verify latched
        self.check_events()

    # -- time ----------------------------------------------------------------------------------

    def tick(self):
        rig = self.rig
        t = rig.now + self.T
        if self.ramp is not None:
            value = self.ramp_value(t)
            for name in self.ramp["names"]:
                rig.plant.overrides[name] = value
        rig.tick()
        self.after_tick()

    @rule(n=st.integers(1, 50), host_alive=st.booleans())
    def advance(self, n, host_alive):
        for _ in range(n):
            if host_alive and (
                self.last_lease is None or self.rig.now - self.last_lease >= HOST_LEASE_PERIOD_MS
            ):
                self.lease()
            self.tick()

    @rule()
    def lease(self):
        rig = self.rig
        rig.lease()
        self.last_lease = rig.now
        self.lease_lost = False
        self.lease_fed_since_trip = True

    @rule(data=st.data(), period=st.sampled_from([1, 10, 50]))
    def stall(self, data, period):
        """The tick loop hangs; only the independent dead-man timer runs (invariant 7)."""
        deadman = min(slot.deadman_ms for slot in self.rig.node.actuators)
        duration = data.draw(
            st.one_of(st.integers(1, 3 * deadman), st.integers(deadman - 20, deadman + 60)),
            label="stall ms",
        )
        self.stall_for(duration, period)

    @precondition(lambda self: self.last_lease is not None)
    @rule(data=st.data())
    def stall_across_lease_deadline(self, data):
        """Races at deadlines: the host is silent, the module ticks up to just before the
        lease expires (or its grace ends), then the tick loop stalls across it."""
        deadline = self.last_lease + self.lease_timeout
        if data.draw(st.booleans(), label="grace end") or deadline <= self.rig.now:
            deadline += self.lease_grace
        lead = data.draw(st.integers(0, 3 * self.T), label="stall starts before, ms")
        while self.rig.now + self.T < deadline - lead:
            self.tick()
        deadman = min(slot.deadman_ms for slot in self.rig.node.actuators)
        self.stall_for(data.draw(st.integers(1, deadman + 50), label="stall ms"), 10)

    def stall_for(self, duration, period):
        rig = self.rig
        node = rig.node
        start = rig.now
        t = start
        while t < start + duration:
            t = min(t + period, start + duration)
            if node.deadman_check(t):
                self.deadman_fired = True
            for slot in node.actuators:
                if t - self.last_tick > slot.deadman_ms:
                    assert slot.driver.value == slot.safe, (
                        f"inv 7: {slot.name} = {slot.driver.value} at t={t}, "
                        f"{t - self.last_tick} ms after the last tick "
                        f"(dead-man {slot.deadman_ms} ms)"
                    )
        rig.now = t

    # -- plant and wiring -----------------------------------------------------------------------

    def true_value(self, name):
        plant = self.rig.plant
        v = plant.overrides.get(name, plant.values[name])
        return plant.values[name] if v is None else v

    @rule(data=st.data())
    def jump(self, data):
        """A plant value jumps (or the wire reads nothing: None)."""
        name = data.draw(st.sampled_from(self.analog), label="channel")
        lo, hi = self.range[name]
        span = hi - lo
        value = data.draw(
            st.one_of(st.floats(lo - 0.1 * span, hi + 0.1 * span), st.none()), label="value"
        )
        self.rig.plant.overrides[name] = value
        self.ramp = None

    @rule(data=st.data())
    def jump_watched(self, data):
        """Every plant value behind the watched measurement jumps together."""
        lo, hi = self.range[self.WATCH[0]]
        limit = self.watch["limit"]
        value = data.draw(
            st.one_of(
                st.floats(limit - 20.0, limit + 20.0),
                st.floats(lo, hi),
            ),
            label="value",
        )
        for name in self.WATCH[1]:
            self.rig.plant.overrides[name] = value
        self.ramp = None

    @rule()
    def release_plant(self):
        self.rig.plant.overrides.clear()
        self.ramp = None

    @rule(data=st.data())
    def ramp_watched(self, data):
        """The watched value starts rising at a constant rate (a clog, an exotherm)."""
        lo, hi = self.RAMP_RATES
        rate = data.draw(st.floats(lo, hi), label="rate units/s")
        names = self.WATCH[1]
        x0 = max(self.true_value(n) for n in names)
        ch = self.ch[self.WATCH[0]]
        # An unfiltered interlock does not wait for the filter (tau 0 for the bound).
        tau = 0 if self.watch.get("unfiltered") else max(self.tau[n] for n in names)
        v = self.watched_value(self.watch)
        limit = self.watch["limit"]
        # Invariant 2 needs a settled start: the filter lags at most rate * tau behind.
        settled = (
            ch.quality != QUALITY_BAD
            and v is not None
            and x0 - v <= rate * tau / 1000.0 + 1e-9 + self.value_tol(x0)  # + rounding
            and x0 < limit
        )
        t0 = self.rig.now
        late = self.value_tol(limit)  # the node may see the crossing this much later
        crossing = t0 + (limit - x0 + late) * 1000.0 / rate if settled else None
        lo, hi = self.range[self.WATCH[0]]
        cap = hi + 0.2 * (hi - lo)
        self.ramp = {
            "names": names,
            "x0": x0,
            "t0": t0,
            "rate": rate,
            "cap": cap,
            "crossing": crossing,
            "tau": tau,
        }

    def ramp_value(self, t):
        r = self.ramp
        assert r is not None
        return min(r["x0"] + r["rate"] * (t - r["t0"]) / 1000.0, r["cap"])

    @rule(data=st.data())
    def wire_fault(self, data):
        name = data.draw(st.sampled_from(sorted(self.drivers)), label="sensor")
        fault = data.draw(st.sampled_from(["open", "short", None]), label="fault")
        self.drivers[name].set_fault(fault)
        self.ramp = None

    @rule(data=st.data())
    def digital_input(self, data):
        """E-stop, cut-out, feed-empty contacts."""
        name = data.draw(st.sampled_from(self.digital), label="input")
        self.rig.plant.digital[name] = data.draw(st.sampled_from([0, 1]), label="level")

    @rule(data=st.data())
    def contact_trip_then_reset(self, data):
        """A contact trips the module (held, stopped or aborted, as declared), clears, and
        the operator resets the trip: nothing the trip stopped may restart (invariant 8)."""
        rig = self.rig
        name = data.draw(st.sampled_from(self.digital), label="input")
        rig.plant.digital[name] = 1
        for _ in range(4000 // self.T):  # past any on-delay of the shipped configs
            self.advance_one()
        rig.plant.digital[name] = 0
        for _ in range(data.draw(st.integers(1, 5), label="ticks before reset")):
            self.advance_one()
        self.reset_trip(data)
        for _ in range(data.draw(st.integers(1, 20), label="ticks after reset")):
            self.advance_one()

    def advance_one(self):
        """One tick with a live host."""
        if self.last_lease is None or self.rig.now - self.last_lease >= HOST_LEASE_PERIOD_MS:
            self.lease()
        self.tick()

    # -- commands ------------------------------------------------------------------------------

    def host_time_known(self):
        return (
            self.last_lease is not None
            and 0 <= self.rig.now - self.last_lease <= HOST_TIME_MAX_AGE_MS
        )

    def gate(self, auth, expiry_s, op=None, args=None):
        """Result of the checks every op passes first, or None when they pass.  An
        unsigned rebirth is exempt from authentication and expiry (it changes nothing;
        SPEC.md 7); an abort is exempt from expiry (late errs to the safe side; SPEC.md 8)."""
        if self.unsigned_rebirth(op, auth):
            return None
        if self.keyed and auth in ("unsigned", "forged", "tampered"):
            return RESULT_UNAUTHENTICATED
        if self.keyed and auth == "replayed":
            return RESULT_REPLAYED
        if op == "state" and args is not None and args.get("command") == "abort":
            return None
        if not self.host_time_known() or expiry_s < 0:
            return RESULT_EXPIRED
        return None

    def unsigned_rebirth(self, op, auth):
        """A rebirth that travels without an auth block (every command of a module
        without a key travels so)."""
        return op == "rebirth" and (auth == "unsigned" or not self.keyed)

    def persisting(self):
        """Latched causes that still hold (a reset must be refused)."""
        node = self.rig.node
        out = []
        for il in node.interlocks.interlocks:
            if not il.tripped:
                continue
            spec = self.spec_by_id.get(il.id)
            if spec is not None and self.cause_persists(spec):
                out.append(il.id)
            elif il.id == "lease" and not self.lease_fed_since_trip:
                out.append(il.id)
            elif il.id == "heater_verify" and self.heater_fault_persists():
                out.append(il.id)
        return out

    def watched_value(self, spec):
        """The value an interlock judges: the channel's, or before its filter with
        ``unfiltered = true`` (docs/board-config.md)."""
        ch = self.ch[spec["channel"]]
        return ch.unfiltered if spec.get("unfiltered") else ch.value

    def heater_fault_persists(self):
        """The reset rule of heater verification (see the module docstring)."""
        h = self.heater_trip
        assert h is not None, "heater_verify latched without a trip the model saw"
        if h["cause"] == "uncontrolled_heating":
            t = h["temp"]
            return t is None or not (t <= h["peak"] - self.runaway["hysteresis"] and t < h["peak"])
        return self.rig.now - h["t"] < self.runaway["check_gain_time_ms"]

    def track_heater_trip(self, new_trips):
        """The watched temperature since a heater-verification trip (after a tick)."""
        if self.runaway is None:
            return
        ch = self.ch[self.runaway["measure"]]
        v = ch.value
        if v is not None and v - v != 0:
            v = None
        if "heater_verify" in new_trips:
            event = [e for e in self.trip_events if e.source == "heater_verify"][-1]
            self.heater_trip = {"cause": event.cause, "t": self.rig.now, "peak": v, "temp": v}
        elif self.heater_trip is not None:
            h = self.heater_trip
            h["temp"] = v
            if v is not None and (h["peak"] is None or v > h["peak"]):
                h["peak"] = v

    def cause_persists(self, spec):
        ch = self.ch[spec["channel"]]
        if ch.quality == QUALITY_BAD:
            return True
        cond = spec["condition"]
        v = self.watched_value(spec)
        if cond == "bad_quality":
            return False
        if cond == "input_true":
            return bool(v)
        if v is None:
            return True
        if cond == "above":
            return v > spec["limit"] - spec["hysteresis"]
        if cond == "below":
            return v < spec["limit"] + spec["hysteresis"]
        return True  # rate_of_rise: not modelled, assume it holds

    def command(self, op, args, expected, auth="signed", expiry_s=5.0, sender="coordinator"):
        """Send one command; check the result against the model and invariant 4."""
        rig = self.rig
        node = rig.node
        gate = self.gate(auth, expiry_s, op, args)
        silent = self.unsigned_rebirth(op, auth)
        if gate is not None:
            expected = {gate}
        elif silent and self.last_unsigned_rebirth is not None:
            if rig.now - self.last_unsigned_rebirth < 1000:
                expected = {RESULT_BUSY}
        before = snapshot(node)
        events_before = len(rig.sink.events)
        was_active = node.interlocks.active
        counter = None
        if self.keyed and auth == "replayed":
            counter = self.counters[sender]
        if auth == "forged":
            rig.key, real = bytes(32), rig.key
            try:
                ack = rig.command(op, args, expiry_s=expiry_s, sender=sender)
            finally:
                rig.key = real
        elif auth == "tampered":
            signed = self.signed_bytes(op, args, expiry_s, sender)
            m = cbor.decode(signed)
            m[wire.K_EXPIRY] += 1  # still well formed, no longer what was signed
            ack = rig.send(cbor.encode(m))
        else:
            ack = rig.command(
                op, args, expiry_s=expiry_s, sign=auth != "unsigned", sender=sender, counter=counter
            )
        used = counter if counter is not None else rig.counter
        assert ack.result in expected, (
            f"inv 4 model: {op} {args} ({auth}): got {RESULT_NAMES[ack.result]} "
            f"{ack.reason!r}, expected {sorted(RESULT_NAMES[r] for r in expected)}"
        )
        if ack.result == RESULT_OK and was_active and not node.interlocks.active:
            self.accepted_reset()
        if ack.result == RESULT_OK and silent:
            self.last_unsigned_rebirth = rig.now
        if ack.result == RESULT_OK and op == "state" and args["command"] in ("start", "unhold"):
            self.parked = set()
        self.after_command(ack, before, events_before, silent)
        passed_auth = ack.result not in (RESULT_UNAUTHENTICATED, RESULT_REPLAYED)
        if self.keyed and auth in ("signed", "replayed") and passed_auth:
            self.counters[sender] = used
        if self.keyed:
            for s in SENDERS:
                assert self.accepted_counter(s) == self.counters.get(s), (s, self.counters)
        return ack

    def accepted_counter(self, sender):
        verifier = self.rig.node.verifier
        assert verifier is not None
        return verifier.last_counter(sender)

    def signed_bytes(self, op, args, expiry_s, sender):
        from protocol import auth as pauth
        from tests.edge_harness import NONCE

        rig = self.rig
        rig.counter += 1
        data = messages.build_command(rig.next_id, op, args, rig.host_ms() + int(expiry_s * 1000))
        rig.next_id += 1
        if not self.keyed:
            return data
        return pauth.sign_command(data, KEY, rig.node.module_id, NONCE, sender, rig.counter)

    def after_command(self, ack, before, events_before, silent=False):
        rig = self.rig
        new = rig.sink.events[events_before:]
        assert not [e for e in new if e.type == "trip"], "a command emitted a trip EVENT"
        if ack.result != RESULT_OK:
            # Invariant 4: nothing changed, nothing was announced.
            assert new == [], f"rejected command emitted {new}"
            diff = _diff(before, snapshot(rig.node))
            assert diff is None, (
                f"inv 4: rejected command ({RESULT_NAMES[ack.result]} {ack.reason!r}) "
                f"changed {diff}"
            )
        else:
            # An unsigned rebirth announces nothing (anyone may send it).
            assert [e.type for e in new].count("operator_action") == (0 if silent else 1), new
        self.check_events()
        self.check_parked()

    def draw_envelope(self, data):
        """How a command travels: mostly clean (fresh, signed when the module has a key),
        one in four hostile (unsigned, forged, tampered, replayed, expired, far expiry)."""
        sender = data.draw(st.sampled_from(SENDERS), label="sender")
        if data.draw(st.integers(0, 3), label="envelope") != 0:
            return {"auth": "signed", "sender": sender, "expiry_s": 5.0}
        auths = ["signed"]
        if self.keyed:
            auths += ["unsigned", "forged", "tampered"]
            if self.counters:
                auths.append("replayed")
        auth = data.draw(st.sampled_from(auths), label="auth")
        if auth == "replayed" and sender not in self.counters:
            sender = next(iter(self.counters))
        expiry_s = data.draw(
            st.one_of(st.just(5.0), st.floats(-10.0, -0.01), st.floats(0.5, 60.0)),
            label="expiry s",
        )
        return {"auth": auth, "sender": sender, "expiry_s": expiry_s}

    @rule(data=st.data())
    def set_setpoint(self, data):
        alias, ch = self.birth_channels[self.SETPOINT]
        span = ch.hi - ch.lo
        value = data.draw(
            st.one_of(
                st.floats(ch.lo, ch.hi),
                st.floats(ch.hi, ch.hi + 10 * span, exclude_min=True),
                st.floats(ch.lo - 10 * span, ch.lo, exclude_max=True),
                st.sampled_from([ch.lo, ch.hi, 1e300, -1e300]),
            ),
            label="value",
        )
        env = self.draw_envelope(data)
        state = self.rig.node.sm.state_name
        if "set_setpoint" not in self.allowed[state]:
            expected = {RESULT_NOT_ALLOWED_IN_STATE}
        elif ch.lo <= value <= ch.hi:
            expected = {RESULT_OK}
        else:
            expected = {RESULT_OUT_OF_RANGE}
        self.command("set_setpoint", {"channel": alias, "value": value}, expected, **env)

    @rule(data=st.data())
    def set_not_a_setpoint(self, data):
        names = [n for n in self.birth_channels if n != self.SETPOINT]
        name = data.draw(st.sampled_from(names), label="channel")
        state = self.rig.node.sm.state_name
        if "set_setpoint" not in self.allowed[state]:
            expected = {RESULT_NOT_ALLOWED_IN_STATE}
        else:
            # A sensor, or an actuator a loop drives.  (Directly set actuators are
            # SETPOINT; a module with two of them would need both listed.)
            expected = {RESULT_UNKNOWN}
        alias = self.birth_channels[name][0]
        self.command("set_setpoint", {"channel": alias, "value": 1.0}, expected)

    def expect_state_command(self, name):
        node = self.rig.node
        state = node.sm.state_name
        if name in UNSUPPORTED:
            return {RESULT_UNKNOWN}
        if name not in self.allowed[state]:
            return {RESULT_NOT_ALLOWED_IN_STATE}
        if name in ("start", "unhold") and self.lease_lost:
            return {RESULT_NOT_ALLOWED_IN_STATE}
        if name in ("start", "unhold") and (self.latched or self.other_latched):
            return {RESULT_NOT_ALLOWED_IN_STATE}  # restart only after the reset
        if name == "reset" and node.interlocks.active and self.persisting():
            return {RESULT_NOT_ALLOWED_IN_STATE}
        return {RESULT_OK}

    def state_command_as(self, name, env):
        return self.command("state", {"command": name}, self.expect_state_command(name), **env)

    @rule(data=st.data())
    def state_command(self, data):
        state = self.rig.node.sm.state_name
        allowed = [c for c in sm.COMMAND_NAMES if c in self.allowed[state]]
        refused = [c for c in sm.COMMAND_NAMES if c not in allowed]
        pools: list[st.SearchStrategy[str]] = [st.sampled_from(UNSUPPORTED)]
        if allowed:
            pools.insert(0, st.sampled_from(allowed))
        if refused:
            pools.insert(1, st.sampled_from(refused))
        name = data.draw(st.one_of(*pools), label="command")
        self.state_command_as(name, self.draw_envelope(data))

    @precondition(lambda self: self.rig.node.sm.state_name == "idle")
    @rule(data=st.data())
    def start_running(self, data):
        """The usual operator path: host up, start, a setpoint."""
        clean = {"auth": "signed", "sender": "coordinator", "expiry_s": 5.0}
        self.lease()
        self.state_command_as("start", clean)
        self.tick()
        self.tick()
        alias, ch = self.birth_channels[self.SETPOINT]
        value = data.draw(st.floats(ch.lo, ch.hi), label="setpoint")
        expected = {
            RESULT_OK
            if "set_setpoint" in self.allowed[self.rig.node.sm.state_name]
            else RESULT_NOT_ALLOWED_IN_STATE
        }
        self.command("set_setpoint", {"channel": alias, "value": value}, expected, **clean)

    @precondition(lambda self: self.rig.node.sm.state_name in ("aborted", "stopped", "completed"))
    @rule()
    def recover(self):
        """The usual way back: causes removed, host up, reset."""
        self.repair()
        self.lease()
        for _ in range(3):
            self.tick()
        clean = {"auth": "signed", "sender": "operator", "expiry_s": 5.0}
        self.state_command_as("reset", clean)
        self.tick()
        self.tick()

    @rule()
    def repair(self):
        """Every external cause goes away: plant back to its model, wires and contacts
        healthy (latched trips stay latched until a reset)."""
        rig = self.rig
        rig.plant.overrides.clear()
        for drv in self.drivers.values():
            drv.set_fault(None)
        for name in self.digital:
            rig.plant.digital[name] = 0
        self.ramp = None

    @rule(seconds=st.integers(1, 75))
    def link_loss(self, seconds):
        """The host (or the network) goes silent while the module keeps ticking."""
        for _ in range(seconds * 1000 // self.T):
            self.tick()

    @rule(data=st.data())
    def reset_trip(self, data):
        env = self.draw_envelope(data)
        expected = {RESULT_NOT_ALLOWED_IN_STATE} if self.persisting() else {RESULT_OK}
        self.command("reset_trip", None, expected, **env)

    def accepted_reset(self):
        """Invariant 1: a reset is accepted only after the cause cleared."""
        node = self.rig.node
        assert not node.interlocks.active
        if self.hot:
            ch = self.ch[self.watch["channel"]]
            v = self.watched_value(self.watch)
            assert ch.quality != QUALITY_BAD and v <= (
                self.watch["limit"] - self.watch["hysteresis"]
            ), f"inv 1: reset accepted while {ch.name} = {v} (quality {ch.quality})"
        self.hot = False
        for sid in self.latched:
            self.since[sid] = None
        self.latched = set()
        self.other_latched = set()
        self.trip_events = []
        self.heater_trip = None

    @rule(data=st.data())
    def service_op(self, data):
        op = data.draw(st.sampled_from(["ack_alarm", "rebirth"]), label="op")
        env = self.draw_envelope(data)
        self.command(op, None, {RESULT_OK}, **env)

    @rule(data=st.data())
    def malformed(self, data):
        """Bytes that are not a valid COMMAND (noise, truncation, wrong kind, bad types)."""
        rig = self.rig
        kind = data.draw(
            st.sampled_from(["noise", "truncated", "lease", "nan", "string_value", "no_expiry"]),
            label="kind",
        )
        alias = self.birth_channels[self.SETPOINT][0]
        valid = self.signed_bytes("set_setpoint", {"channel": alias, "value": 1.0}, 5.0, "operator")
        m = cbor.decode(valid)
        if kind == "noise":
            payload = data.draw(st.binary(max_size=48), label="bytes")
        elif kind == "truncated":
            cut = data.draw(st.integers(0, len(valid) - 1), label="cut")
            payload = valid[:cut]
        elif kind == "lease":
            payload = messages.build_lease("host", rig.host_ms(), 1, 3000)
        elif kind == "nan":
            m[wire.K_ARGS][wire.KA_VALUE] = float("nan")
            payload = cbor.encode(m)
        elif kind == "string_value":
            m[wire.K_ARGS][wire.KA_VALUE] = "1.0"
            payload = cbor.encode(m)
        else:
            del m[wire.K_EXPIRY]
            payload = cbor.encode(m)
        before = snapshot(rig.node)
        events_before = len(rig.sink.events)
        ack = rig.send(payload)
        assert ack.result == RESULT_MALFORMED, (kind, payload.hex(), ack)
        self.after_command(ack, before, events_before)
        if self.keyed:
            for s in SENDERS:
                assert self.accepted_counter(s) == self.counters.get(s)

    # -- the model after each tick ---------------------------------------------------------------

    def status(self, spec):
        """(due, cause) for a known interlock this tick, updating its on-delay timer."""
        ch = self.ch[spec["channel"]]
        cond = spec["condition"]
        cause = None
        if ch.quality == QUALITY_BAD:
            if spec["trip_on_bad"] or cond == "bad_quality":
                cause = "sensor_bad"
        elif cond == "input_true":
            cause = spec["cause"] if ch.value else None
        elif cond == "above" and self.watched_value(spec) is not None:
            cause = spec["cause"] if self.watched_value(spec) > spec["limit"] else None
        elif cond == "below" and self.watched_value(spec) is not None:
            cause = spec["cause"] if self.watched_value(spec) < spec["limit"] else None
        elif cond == "rate_of_rise":
            return UNKNOWN_STATUS, None
        sid = spec["id"]
        if cause is None:
            self.since[sid] = None
            return False, None
        since = self.since[sid]
        if since is None:
            since = self.since[sid] = self.rig.now
        return self.rig.now - since >= spec["on_delay_ms"], cause

    def after_tick(self):
        rig = self.rig
        node = rig.node
        now = rig.now
        # lease model
        if self.last_lease is not None and now - self.last_lease > self.lease_timeout:
            self.lease_lost = True
        # which interlocks are due, per the model, in declaration order
        expected = []  # (id, cause or set of causes) of the trips this tick must produce
        for spec in self.specs:
            if spec["id"] in self.latched:
                continue
            due, cause = self.status(spec)
            if due is True:
                expected.append((spec["id"], {cause}))
            elif due is UNKNOWN_STATUS:
                expected.append((spec["id"], None))
        tripped = {il.id: il.tripped for il in node.interlocks.interlocks}
        new_trips = [
            i
            for i in self.order
            if tripped[i] and i not in self.latched and i not in self.other_latched
        ]
        for sid, _ in expected:
            if sid in self.spec_by_id and _ is not None:
                assert tripped[sid], f"inv 6: {sid} due (cause {_}) but not tripped"
        due_ids = {sid for sid, _ in expected}
        for sid in new_trips:
            if sid in self.spec_by_id:
                assert sid in due_ids, f"inv 6: spurious trip of {sid}"
            elif sid == "deadman":
                assert self.deadman_fired, "inv 6: deadman trip without a dead-man firing"
            elif sid == "lease":
                assert self.lease_lost, "inv 6: lease trip while the lease is fine"
        if self.deadman_fired:
            assert tripped["deadman"], "inv 7: the tick after a dead-man firing did not latch it"
        self.deadman_fired = False
        causes = dict(expected)
        causes["lease"] = {"lease_expired"}
        causes["deadman"] = {"deadman_expired"}
        causes["heater_verify"] = set(HEATER_FAULTS)
        if "lease" in new_trips:
            self.lease_fed_since_trip = False
        self.latched = {i for i in self.spec_by_id if tripped[i]}
        self.other_latched = {i for i in self.order if tripped[i] and i not in self.spec_by_id}
        self.check_events(new_trips, causes)
        for sid in new_trips:
            self.parked |= self.tripped_outputs.get(sid, set())
        self.track_heater_trip(new_trips)
        aborting = [i for i in self.order if tripped[i] and self.declared_state[i] == "aborted"]
        if aborting:
            assert node.sm.state_name in ("aborting", "aborted"), (
                f"inv 6: latched {aborting} declare state aborted, but the module is "
                f"{node.sm.state_name} (latched: {[i for i in self.order if tripped[i]]})"
            )
        self.check_watch()
        self.check_parked()
        self.check_lease_bound()
        self.check_ranges()
        # The independent timer never fires while ticks run (invariant 7).
        assert node.deadman_check(now + self.T - 1) == 0
        self.last_tick = now

    other_latched = frozenset()

    def check_events(self, new_trips=(), causes: dict | None = None):
        """Invariant 6 on the events published since the last check."""
        sink = self.rig.sink
        new = sink.events[self.events_checked :]
        prev = sink.events[self.events_checked - 1] if self.events_checked else None
        for e in new:
            expected_number = prev.number + 1 if prev is not None else 1
            assert e.number == expected_number, f"inv 6: event {e} after {prev}"
            if prev is not None:
                assert e.t_ms >= prev.t_ms, f"inv 6: event time went back: {e} after {prev}"
            prev = e
        self.events_checked = len(sink.events)
        trips = [e for e in new if e.type == "trip"]
        assert len(trips) == len(new_trips), (
            f"inv 6: {len(new_trips)} new trips {new_trips} but trip events {trips}"
        )
        for sid, e in zip(new_trips, trips, strict=True):
            allowed = (causes or {}).get(sid)
            if allowed is not None:
                assert e.cause in allowed, (
                    f"inv 6: trip of {sid} carries {e.cause}, expected {allowed}"
                )
        if trips:
            first_in_tick = new.index(trips[0])
            for i, e in enumerate(new):
                if e.type == "state_change" and e.state == "aborting":
                    assert i > first_in_tick, f"inv 6: abort announced before its trip: {new}"
        self.trip_events += trips
        assert len(sink.critical) == len(sink.trips()), "trip EVENTs are critical"
        node = self.rig.node
        iset = node.interlocks
        assert len(self.trip_events) == len(iset.trips), (self.trip_events, iset.trips)
        if iset.first_out is not None:
            first = iset.first_out
            cause = first.value if isinstance(first.value, str) else first.cause
            assert self.trip_events[0].cause == cause, (
                f"inv 6: first trip event {self.trip_events[0]} is not the first-out {first}"
            )

    def check_watch(self):
        """Invariants 1 and 2 after a tick."""
        ch = self.ch[self.watch["channel"]]
        v = self.watched_value(self.watch)
        if ch.quality == QUALITY_BAD or (v is not None and v > self.watch["limit"]):
            self.hot = True
        slot = self.watch_slot
        if self.hot:
            assert slot.driver.value == slot.safe, (
                f"inv 1: {ch.name} = {v} (quality {ch.quality}) exceeded/bad "
                f"since an earlier tick, "
                f"but {slot.name} = {slot.driver.value}"
            )
        r = self.ramp
        if r is not None and r["crossing"] is not None:
            bound = r["crossing"] + self.watch["on_delay_ms"] + r["tau"] + 1
            if self.rig.now >= bound:
                assert slot.driver.value == slot.safe, (
                    "inv 2: {} ramping at {:.4g}/s crossed {} at t={:.1f} ms; at t={} "
                    "(> crossing + on-delay + filter tau) {} = {}".format(
                        ch.name,
                        r["rate"],
                        self.watch["limit"],
                        r["crossing"],
                        self.rig.now,
                        slot.name,
                        slot.driver.value,
                    )
                )

    def check_parked(self):
        """Invariant 8: what a trip forced safe stays safe until start or unhold."""
        for slot in self.rig.node.actuators:
            if slot.name in self.parked:
                assert slot.driver.value == slot.safe, (
                    f"inv 8: a trip forced {slot.name} safe and no start/unhold followed, "
                    f"but it is {slot.driver.value} in {self.rig.node.sm.state_name} "
                    f"(latched: {self.rig.node.interlocks.active})"
                )

    def check_lease_bound(self):
        """Invariant 3 at a tick."""
        if self.last_lease is None:
            return
        node = self.rig.node
        late = self.rig.now - self.last_lease - (self.lease_timeout + self.lease_grace + self.T)
        if late >= 0:
            assert node.all_safe(), (
                f"inv 3: last lease at {self.last_lease}, timeout {self.lease_timeout} "
                f"+ grace {self.lease_grace} + tick {self.T} passed {late} ms ago, "
                f"outputs {node.outputs()} in {node.sm.state_name}"
            )

    def check_ranges(self):
        """Invariant 5 in the node (and every actuator inside its declared range)."""
        node = self.rig.node
        for lp in node.loops:
            pid = lp.pid
            lo, hi = pid.out_min, pid.out_max
            assert pid.output is None or lo <= pid.output <= hi, (lp.name, pid.output)
            assert lo <= pid.integral <= hi, (lp.name, pid.integral)
        for slot in node.actuators:
            assert slot.lo <= slot.driver.value <= slot.hi, (slot.name, slot.driver.value)

    # -- invariants between steps -------------------------------------------------------------

    @invariant()
    def watched_actuator_safe_while_latched(self):
        if self.hot:
            slot = self.watch_slot
            assert slot.driver.value == slot.safe, "inv 1 between steps"

    @invariant()
    def parked_outputs_safe(self):
        self.check_parked()

    @invariant()
    def outputs_in_range(self):
        self.check_ranges()


class ReactorSafety(NodeSafetyMachine):
    KIND = "reactor"
    SETPOINT = "coil_temp"
    WATCH = ("temperature", ("temp_a", "temp_b"))
    RAMP_RATES = (0.5, 50.0)
    LEASES = (None, ("safe", 0), ("hold", 500), ("hold", 3000))

    @rule(data=st.data())
    def configure(self, data):
        gain = st.one_of(
            st.floats(0.0, 2.0),
            st.floats(0.0, 1e300),
            st.floats(-1e3, -1e-9),
        )
        config = {"loop": data.draw(st.sampled_from(["coil_temp", "coil_temp", "nope"]))}
        for key in ("kp", "ki", "kd"):
            if data.draw(st.booleans(), label="set " + key):
                config[key] = data.draw(gain, label=key)
        env = self.draw_envelope(data)
        values = [config[k] for k in ("kp", "ki", "kd") if k in config]
        if config["loop"] != "coil_temp":
            expected = {RESULT_OUT_OF_RANGE}
        elif any(v < 0 for v in values):
            expected = {RESULT_OUT_OF_RANGE}
        else:
            expected = {RESULT_OK}
        self.command("configure", {"config": config}, expected, **env)


class PumpSafety(NodeSafetyMachine):
    KIND = "pump"
    SETPOINT = "flow"
    WATCH = ("pressure", ("pressure",))
    RAMP_RATES = (0.5, 200.0)
    LEASES = (None, ("hold", 500), ("hold", 2000))


TestReactorSafety = ReactorSafety.TestCase
TestReactorSafety.settings = SETTINGS
TestPumpSafety = PumpSafety.TestCase
TestPumpSafety.settings = SETTINGS


# -- PID machine -----------------------------------------------------------------------------

any_float = st.floats(allow_nan=True, allow_infinity=True)


class PidLimits(RuleBasedStateMachine):
    """Invariant 5 on edge.pid.PID alone, with hostile measurements, clocks and commands."""

    @initialize(
        out_min=st.floats(-100.0, 100.0),
        out_span=st.floats(1e-3, 1e3),
        sp_min=st.floats(-1e3, 1e3),
        sp_span=st.floats(0.0, 1e3),
        kp=st.floats(0.0, 1e6),
        ki=st.floats(0.0, 1e6),
        kd=st.floats(0.0, 1e6),
        ramp=st.one_of(st.none(), st.floats(1e-3, 1e3)),
        sample_ms=st.one_of(st.none(), st.integers(1, 500)),
        reverse=st.booleans(),
        start=st.integers(0, (1 << 30) - 1),
    )
    def build(
        self, out_min, out_span, sp_min, sp_span, kp, ki, kd, ramp, sample_ms, reverse, start
    ):
        out_max = out_min + out_span
        self.pid = PID(
            kp,
            ki,
            kd,
            out_min,
            out_max,
            sp_min,
            sp_min + sp_span,
            ramp_rate=ramp,
            reverse=reverse,
            sample_ms=sample_ms,
        )
        self.now = start

    @rule(
        measurement=st.one_of(st.floats(-1e3, 1e3), any_float, st.none()),
        dt=st.one_of(
            st.integers(0, 2000),
            st.integers(2000, 100_000),
            st.integers(-100, -1),
            st.just(1 << 29),
        ),
    )
    def update(self, measurement, dt):
        pid = self.pid
        self.now = ticks_add(self.now, dt)
        integral = pid.integral
        out = pid.update(measurement, self.now)
        finite = measurement is not None and math.isfinite(measurement)
        if not pid.auto:
            assert out == pid._manual_output
        elif not finite:
            assert out is None and pid.integral == integral

    @rule(sp=st.one_of(st.floats(-2e3, 3e3), any_float))
    def set_setpoint(self, sp):
        pid = self.pid
        before = (pid.target, pid.setpoint)
        result = pid.set_setpoint(sp)
        ok = math.isfinite(sp) and pid.setpoint_min <= sp <= pid.setpoint_max
        assert result == (RESULT_OK if ok else RESULT_OUT_OF_RANGE)
        if ok:
            assert pid.target == sp
        else:
            assert (pid.target, pid.setpoint) == before

    @rule(kp=any_float, ki=any_float, kd=any_float)
    def set_tunings(self, kp, ki, kd):
        pid = self.pid
        before = (pid.kp, pid.ki, pid.kd, pid.integral, pid.output)
        result = pid.set_tunings(kp, ki, kd)
        ok = all(math.isfinite(g) and g >= 0 for g in (kp, ki, kd))
        assert result == (RESULT_OK if ok else RESULT_OUT_OF_RANGE)
        if not ok:
            assert (pid.kp, pid.ki, pid.kd, pid.integral, pid.output) == before

    @rule(output=st.one_of(st.none(), st.floats(-200.0, 1200.0), any_float))
    def set_manual(self, output):
        pid = self.pid
        before = (pid.auto, pid._manual_output, pid.output)
        result = pid.set_manual(output)
        if output is not None and not (
            math.isfinite(output) and pid.out_min <= output <= pid.out_max
        ):
            assert result == RESULT_OUT_OF_RANGE
            assert (pid.auto, pid._manual_output, pid.output) == before
        else:
            assert result == RESULT_OK and not pid.auto

    @rule()
    def set_auto(self):
        assert self.pid.set_auto(self.now) == RESULT_OK

    @rule()
    def reset(self):
        self.pid.reset()

    @invariant()
    def within_limits(self):
        pid = self.pid
        lo, hi = pid.out_min, pid.out_max
        assert pid.output is None or lo <= pid.output <= hi, pid.output
        assert lo <= pid.integral <= hi, pid.integral
        assert pid.setpoint_min <= pid.setpoint <= pid.setpoint_max, pid.setpoint
        assert pid.setpoint_min <= pid.target <= pid.setpoint_max, pid.target


TestPidLimits = PidLimits.TestCase
TestPidLimits.settings = SETTINGS


# -- a whole emulated line: clogs against pressure ratings (invariant 2) ------------------------

_WARM_LINE = {}


def warm_line():
    """The demo line at its operating point (built once: 40 simulated seconds)."""
    if "emu" not in _WARM_LINE:
        from emulator.emulation import LineEmulation
        from emulator.runs import DemoHost

        emu = LineEmulation(DEMO_LINE, seed=0, tick_ms=None)  # every module at its own rate
        DemoHost(emu).start()
        emu.run_for(40.0, lease_every_s=1.0)
        _WARM_LINE["emu"] = emu
    return _WARM_LINE["emu"]


def fresh_line(seed):
    """An independent copy of the warm line with its own noise (a copy is ~10x cheaper
    than warming up again).  The plant's sensor sources are closures over the plant, so
    every module is bound again to the copied plant."""
    emu = copy.deepcopy(warm_line())
    emu.plant.rng.seed(seed)
    for mid, node in emu.nodes.items():
        emu.plant.bind(mid, node)
    return emu


def clog(emu, target, params, open_now=None):
    emu.apply_fault(SimpleNamespace(kind="clog", module=target, channel=None, params=params))
    if open_now is not None:  # a progressive clog that has already narrowed this far
        emu.plant.clogs[target]["open"] = open_now


class LineClogs(RuleBasedStateMachine):
    """Invariant 2 on the demo line (every module's real edge runtime, the hydraulic
    emulator): clogs of any component at any rate, sudden or progressive, with pump
    flows, restarts and host outages interleaved.

    * 2a: from the tick whose *measured* head pressure (what the pump's interlock sees)
      exceeds the trip limit, or is BAD, the pump's flow output is safe;
    * 2c: no component's peak pressure exceeds its own rating.  Pressure is judged per
      component, not against the line's weakest rating: a clog upstream of the relief
      valve dead-heads a pump into its own segment (tube_a, 50 bar) and never reaches the
      25 bar reactor behind the clog.  Pumps are the pressure sources (their rating is the
      head they can make) and are not judged against themselves.
    """

    @initialize(seed=st.integers(0, 1 << 16))
    def build(self, seed):
        self.emu = emu = fresh_line(seed)
        self.host_alive = True
        self.next_lease = emu.now_ms
        self.pumps = {}
        for mid, node in emu.nodes.items():
            if node.kind != "pump":
                continue
            trip = next(
                il
                for il in node.interlocks.interlocks
                if il.condition == "above" and il.channel_name == "pressure"
            )
            slot = next(a for a in node.actuators if a.name == trip.action.safe[0])
            self.pumps[mid] = (trip, slot)
        self.ratings = emu.plant.component_ratings()
        self.weakest = min(self.ratings.values())
        from emulator.emulation import FAULT_KINDS

        self.clog_targets = sorted(
            c for c, comp in emu.line.components().items() if comp.kind in FAULT_KINDS["clog"]
        )
        self.check()

    def step(self):
        emu = self.emu
        if self.host_alive and emu.now_ms >= self.next_lease:
            emu.lease_all()
            self.next_lease = emu.now_ms + HOST_LEASE_PERIOD_MS
        emu.step()
        self.check()

    def check(self):
        emu = self.emu
        for mid, (trip, slot) in self.pumps.items():
            ch = trip.channel
            if ch.quality == QUALITY_BAD or (ch.value is not None and ch.value > trip.limit):
                assert slot.driver.value == slot.safe, (
                    f"inv 2a: {mid} measures {ch.name} = {ch.value} (limit {trip.limit}) "
                    f"but drives {slot.name} = {slot.driver.value}"
                )
        plant = emu.plant
        over = {
            c: (round(plant.peak_pressure_bar(c), 2), r)
            for c, r in self.ratings.items()
            if c not in self.pumps and plant.peak_pressure_bar(c) > r
        }
        if over:
            raise AssertionError(
                f"inv 2c: a component's peak pressure exceeds its own rating at "
                f"t={emu.now_ms} ms: (peak, rating) {over}; active faults {emu.active_faults()}"
            )

    @rule(n=st.integers(1, 50))
    def advance(self, n):
        for _ in range(n):
            self.step()

    @rule(seconds=st.integers(1, 10))
    def run_until_a_trip(self, seconds):
        """Let a clog develop until a pump trips (then 2 s more for the peak)."""
        emu = self.emu
        end = emu.now_ms + seconds * 1000
        while emu.now_ms < end:
            self.step()
            if any(emu.nodes[mid].interlocks.active for mid in self.pumps):
                end = min(end, emu.now_ms + 2000)

    @rule(
        data=st.data(),
        rate=st.one_of(st.none(), st.floats(1e-3, 10.0)),
        open_now=st.floats(0.0, 1.0),
        min_open=st.floats(0.0, 0.5),
    )
    def start_clog(self, data, rate, open_now, min_open):
        """rate None: sudden (open area left: open_now); else progressive from open_now."""
        target = data.draw(st.sampled_from(self.clog_targets), label="target")
        if target in self.emu.plant.clogs:
            return
        if rate is None:
            clog(self.emu, target, {"sudden": True, "open": open_now})
        else:
            clog(self.emu, target, {"rate": rate, "min_open": min_open}, max(open_now, min_open))

    @rule()
    def clear_clogs(self):
        for f in list(self.emu.active_faults()):
            self.emu.clear_fault(f)

    @rule(data=st.data(), value=st.floats(0.0, 10.0))
    def set_flow(self, data, value):
        mid = data.draw(st.sampled_from(sorted(self.pumps)), label="pump")
        self.emu.set_setpoint(mid, "flow", value)

    @rule(data=st.data())
    def restart_pump(self, data):
        """The operator resets a tripped pump and starts it again (refused while the
        pressure is still high)."""
        mid = data.draw(st.sampled_from(sorted(self.pumps)), label="pump")
        emu = self.emu
        emu.lease_all()
        if emu.nodes[mid].sm.state_name in ("aborted", "stopped", "completed"):
            emu.state(mid, "reset")
            for _ in range(3):
                self.step()
        emu.state(mid, "start")
        for _ in range(3):
            self.step()
        emu.set_setpoint(mid, "flow", data.draw(st.floats(0.1, 2.0), label="flow"))

    @rule(alive=st.booleans())
    def host(self, alive):
        self.host_alive = alive


TestLineClogs = LineClogs.TestCase
TestLineClogs.settings = settings(SETTINGS, stateful_step_count=15 if not SOAK else 40)


# -- minimal cases of what the machines found ----------------------------------------------------


def test_estop_while_held_by_a_trip_still_aborts():
    """Invariant 6, the minimal case a PumpSafety soak found (there: a lease loss while
    held by a feed_empty trip).  Every trip moves the module to its declared state: an
    e-stop (declared aborted) that trips while a feed_empty trip (declared held) is
    latched must abort the module.  Otherwise the module stays in held, a running state,
    and a later ``reset_trip`` puts the flow straight back without a ``start``."""
    rig = Rig("pump")
    rig.start()
    assert rig.set("flow", 2.0).result == RESULT_OK
    rig.plant.digital["feed"] = 1  # feed empty: trips after its 2 s on-delay, holds
    for _ in range(45):
        if rig.now % 1000 == 0:
            rig.lease()
        rig.tick()
    assert [e.cause for e in rig.sink.trips()] == ["feed_empty"]
    assert rig.node.sm.state_name == "held" and rig.node.all_safe()
    rig.plant.digital["estop"] = 1
    rig.lease()
    rig.tick()
    assert [e.cause for e in rig.sink.trips()] == ["feed_empty", "estop"]
    assert rig.node.all_safe()
    assert rig.node.sm.state_name in ("aborting", "aborted"), (
        f"inv 6: the e-stop trip (declared state aborted) left the module in "
        f"{rig.node.sm.state_name}: the forced state follows the first-out trip only"
    )


def test_lease_hold_grace_counts_from_the_expiry_even_after_a_short_stall():
    """Invariant 3, the minimal case PumpSafety found (there with the pump and a 100 ms
    stall).  The hold grace must run from the lease expiry.  A tick loop that stalls
    across the expiry for less than ``deadman_ms`` (so the dead-man rightly stays quiet)
    must not stretch the time the outputs stay energised after the loss: the tick that
    finally notices the loss has to count the grace from ``last lease + timeout``, not
    from itself."""

    def hold_500(cfg):
        cfg["lease"]["on_loss"] = "hold"
        cfg["lease"]["grace_ms"] = 500

    rig = Rig("reactor", mutate=hold_500)
    rig.lease()
    last_lease = rig.now
    assert rig.state("start").result == RESULT_OK
    rig.tick(2)
    assert rig.set("coil_temp", 140.0).result == RESULT_OK
    rig.tick(25)  # t = 2.7 s: heating; the lease expires at 3.0 s
    assert rig.node.outputs()["heater"] > 0.0
    stall_ms = 900  # < deadman_ms (1000): the dead-man timer rightly stays quiet
    for t in range(rig.now + 10, rig.now + stall_ms + 1, 10):
        rig.node.deadman_check(t)
    rig.now += stall_ms
    bound = last_lease + 3000 + 500 + rig.tick_ms  # timeout + grace + one tick
    late = []
    for _ in range(20):
        rig.tick()
        if rig.now >= bound and not rig.node.all_safe():
            late.append((rig.now, rig.node.outputs()["heater"]))
    assert not late, (
        f"inv 3: lease expired at {last_lease + 3000} ms, hold grace 500 ms: heater must be "
        f"safe from {bound} ms, "
        f"but it was still driven at (t ms, duty) {late}: the grace restarted at the first tick "
        f"after the {stall_ms} ms stall"
    )


def test_clog_between_a_pump_and_the_relief_valve_stays_within_each_rating():
    """Invariant 2c on the demo line, the case LineClogs keeps finding.  A clog in
    ``tube_a`` dead-heads pump_a upstream of the line's only relief valve (at the mixer).
    The head pressure rises ~90 bar/s; the transmitter (50 ms) lags it (the interlock
    watches the reading before the board's filter), so the 20 bar interlock stops the pump
    a tick or two after the line pressure crossed 20 bar, and the pump runs down (0.5 s response) into
    the closed segment up to its stall pressure (110 % of its 40 bar rating), far above the
    line's weakest rating (25 bar)."""
    emu = fresh_line(1)
    trip, slot = next(
        (il, a)
        for il in emu.nodes["pump_a"].interlocks.interlocks
        for a in emu.nodes["pump_a"].actuators
        if il.condition == "above" and il.channel_name == "pressure"
    )
    ratings = emu.plant.component_ratings()
    weakest = min(ratings.values())
    clog(emu, "tube_a", {"rate": 0.05})
    crossed = tripped = None
    for _ in range(1200):  # 60 s
        if emu.now_ms % 1000 == 0:
            emu.lease_all()
        emu.step()
        p = emu.plant.pressure_bar("pump_a")
        if crossed is None and p > trip.limit:
            crossed = (emu.now_ms, p)
        if tripped is None and slot.driver.value == slot.safe:
            tripped = (emu.now_ms, p)
    assert crossed is not None and tripped is not None, (crossed, tripped)
    peaks = {c: round(emu.plant.peak_pressure_bar(c), 2) for c in ("pump_a", "tube_a", "mixer")}
    # The dead-headed segment sees the pump's full head, so its parts must be rated for
    # it (tube_a: 50 bar); the reactor behind the clog (25 bar) must see nothing of it.
    over = {
        c: (round(emu.plant.peak_pressure_bar(c), 2), r)
        for c, r in ratings.items()
        if not c.startswith("pump_") and emu.plant.peak_pressure_bar(c) > r
    }
    assert not over, (over, peaks, crossed, tripped)
    assert emu.plant.peak_pressure_bar("reactor1") < weakest, peaks
    assert emu.plant.peak_pressure_bar("tube_a") > ratings["reactor1"], (
        "the case this test is about: the segment really is dead-headed above 25 bar",
        peaks,
    )
