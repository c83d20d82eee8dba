"""The edge runtime: one module's deterministic control and safety core.

``Node.tick(now_ms)`` is the whole control cycle, stepped by a thin async shell on a board
or on a Pi, by the emulator, or by a test that advances time:

1. read every sensor driver and condition the readings (calibration, filter, quality,
   staleness, 1oo2 voting);
2. finish acting states of the module state machine;
3. check the host lease (comms-loss watchdog) and the dead-man monitor;
4. update heater verifiers, then evaluate interlocks: a trip forces its actuators in
   this same tick (before outputs are written), latches, records the first-out cause and
   emits exactly one trip EVENT; evaluate alarms;
5. compute outputs: PID loops and direct setpoints while the module is running, the
   declared safe values otherwise; overlay the interlocks' forced values;
6. write every actuator (which also refreshes its dead-man deadline);
7. publish telemetry every ``telemetry_every`` ticks.

Commands (``handle_command``) and leases (``handle_lease``) are handled between ticks;
they never touch outputs directly: a command changes setpoints or state, and the next
tick turns that into outputs under the interlocks.  Every rejected command changes
nothing and is answered with an ACK carrying the reason.

Outgoing messages go to ``sink`` (the contract is ``edge.sink``:
``publish_birth/telemetry/event/ack(payload)``, never blocking): in a shell it is the
module's ``edge.session.ModuleSession``, which puts them on the link's bounded queues.

Safe state = every actuator at its declared safe value.  The node writes safe values
before anything else at construction (boot), and again whenever the module is not
running.  ``deadman_check(now_ms)`` is meant for an independent context (a hardware timer
on a board, a thread on Linux, the emulator's clock): if the tick loop stalls, it writes
the safe value of every actuator whose dead-man deadline passed; the next tick that does
run latches a ``deadman_expired`` trip.
"""

from edge import states as st
from edge.clock import ticks_diff
from edge.interlocks import INPUT_TRUE, Action, Interlock, InterlockSet
from edge.lease import LEASE_LOST, LEASE_RESTORED, ON_LOSS_HOLD, LeaseWatchdog
from edge.pid import relay_command
from protocol import messages as msg
from protocol import wire
from protocol.auth import HostTimeEstimate
from protocol.constants import (
    QUALITY_BAD,
    QUALITY_GOOD,
    QUALITY_UNCERTAIN,
    RESULT_BUSY,
    RESULT_EXPIRED,
    RESULT_MALFORMED,
    RESULT_NOT_ALLOWED_IN_STATE,
    RESULT_OK,
    RESULT_OUT_OF_RANGE,
    RESULT_REPLAYED,
    RESULT_UNAUTHENTICATED,
    RESULT_UNKNOWN,
)

FIRMWARE_VERSION = "flowskid-0.1.0"

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


# States in which outputs follow loops and setpoints; everywhere else they are safe.
_RUNNING = (st.STARTING, st.EXECUTE, st.COMPLETING, st.HOLDING, st.HELD, st.UNHOLDING)
# Operations other than service commands, and the states that accept them.
_SETPOINT_STATES = (st.IDLE,) + _RUNNING
_ANY_STATE_OPS = ("reset_trip", "ack_alarm", "rebirth", "configure")

CAUSE_LEASE = "lease_expired"
CAUSE_DEADMAN = "deadman_expired"
CAUSE_VERIFY = "heater_fault"
# An unsigned rebirth (SPEC.md 7) is accepted at most this often: each one queues a BIRTH.
UNSIGNED_REBIRTH_MIN_MS = 1000

# bdSeq and the telemetry seq are one byte on the wire (protocol/SPEC.md): they wrap.
SEQ_MASK = const(0xFF)

# The lease timeout of a node built without a lease watchdog (tests, tools): about three
# days, so its lease interlock never trips in practice.
UNLEASED_TIMEOUT_MS = 1 << 28

# Only a deliberate boot starts unlatched: power applied, or a soft reset someone asked
# for.  A watchdog reset, a brown-out or a cause the board cannot name boots latched in
# aborted, since whatever stopped the last run may still be there.
UNLATCHED_RESET_CAUSES = ("power_on", "soft")

# Telemetry source kinds (Node.sources, built by edge.build): what a channel's value is
# read from, and whether set_setpoint may write it.
SRC_SENSOR = const(0)  # a SensorChannel / Redundant1oo2: .value and .quality; read only
SRC_ACTUATOR = const(1)  # an ActuatorSlot: the value last written; set by hand
SRC_SETPOINT = const(2)  # a Loop: its working setpoint


class ActuatorSlot:
    """One actuator as the runtime drives it."""

    __slots__ = (
        "name",
        "driver",
        "lo",
        "hi",
        "safe",
        "deadman_ms",
        "loop",
        "commanded",
        "setpoint_alias",
        "last_write_ms",
        "deadman_fired",
    )

    def __init__(self, name, driver, deadman_ms):
        self.name = name
        self.driver = driver
        self.lo = driver.min
        self.hi = driver.max
        self.safe = driver.safe_value
        self.deadman_ms = deadman_ms
        self.loop = None  # the Loop that drives it, if any
        self.commanded = None  # direct setpoint (no loop), applied while running
        self.setpoint_alias = None
        self.last_write_ms = 0
        self.deadman_fired = False


class Loop:
    """A PID loop: measurement channel -> PID -> actuator; optional heater verifier.

    ``verify_measure`` is the channel the verifier watches (``[runaway] measure``): the
    loop's own measure unless the board config names another sensor (a block or jacket
    probe next to the coil's)."""

    __slots__ = ("name", "pid", "measure", "output", "verifier", "verify_measure", "setpoint_alias")

    def __init__(self, name, pid, measure, output, verifier=None, verify_measure=None):
        self.name = name
        self.pid = pid
        self.measure = measure
        self.output = output
        self.verifier = verifier
        self.verify_measure = measure if verify_measure is None else verify_measure
        self.setpoint_alias = None


class DeadmanMonitor:
    """Channel for the dead-man interlock: ``value`` True when a deadline fired."""

    __slots__ = ("name", "value", "quality", "bad_reason")

    def __init__(self):
        self.name = "deadman"
        self.value = False
        self.quality = QUALITY_GOOD
        self.bad_reason = None


class VerifierChannel:
    """Channel for the heater-verification interlock: ``value`` is a fault code or None."""

    __slots__ = ("name", "verifiers", "value", "quality", "bad_reason")

    def __init__(self, verifiers):
        self.name = "heater_verify"
        self.verifiers = verifiers
        self.value = None
        self.quality = QUALITY_GOOD
        self.bad_reason = None


class Node:
    """A module's runtime, assembled from parts (see edge.build for the board config).

    ``sensors``: list of (channel, driver) pairs, updated in order each tick;
    ``derived``: channels computed from others (1oo2), checked after the sensors;
    ``actuators``: list of ActuatorSlot; ``loops``: list of Loop;
    ``interlocks``: list of Interlock (the lease, dead-man and heater-verification
    interlocks are added here); ``alarms``: an AlarmSet or None.
    ``channels``: the birth channel list (protocol.wire.Channel), and
    ``sources``: for each channel, (SRC_* kind, object) saying where its telemetry value
    comes from — built by edge.build.
    """

    def __init__(
        self,
        module_id,
        kind,
        config_hash,
        tick_ms,
        telemetry_every,
        sensors,
        derived,
        actuators,
        loops,
        interlocks,
        alarms,
        lease,
        channels,
        sources,
        sink,
        now_ms,
        boot_nonce,
        reset_cause="power_on",
        verifier=None,
        host_time=None,
    ):
        # Boot: outputs to their safe values before anything else can happen.
        self.actuators = actuators
        for slot in actuators:
            slot.driver.write(slot.safe)
            slot.last_write_ms = now_ms

        self._by_actuator = {slot.name: slot for slot in actuators}
        self.module_id = module_id
        self.kind = kind
        self.config_hash = config_hash
        self.tick_ms = tick_ms
        self.telemetry_every = telemetry_every
        self.sensors = sensors
        self.derived = derived
        self.loops = loops
        self.alarms = alarms
        self.lease = lease if lease is not None else LeaseWatchdog(UNLEASED_TIMEOUT_MS)
        self.channels = channels
        self.sources = sources
        self.sink = sink
        self.boot_nonce = boot_nonce
        self.reset_cause = reset_cause
        self.verifier = verifier  # protocol.auth.CommandVerifier (commands and leases) or None
        self.host_time = host_time if host_time is not None else HostTimeEstimate()

        self.deadman = DeadmanMonitor()
        self._verify_channel = None
        self.interlocks = self._interlock_set(interlocks, actuators, loops)

        for lp in loops:
            lp.pid.set_manual(lp.output.safe)
        self.sm = st.StateMachine(
            watchdog_reset=reset_cause not in UNLATCHED_RESET_CAUSES,
            on_change=self._on_state_change,
        )
        self._was_running = False
        self.bdseq = 0
        self.seq = 0
        self.event_number = 0
        self.tick_count = 0
        self.now_ms = now_ms
        self.uptime_ms = 0
        self._prev_ms = now_ms
        self.rebirth_pending = False
        self.leases_refused = 0
        self.lease_refusal = None  # why the last refused lease was refused
        # Actuator name -> value a trip forced while the module was running, kept after
        # the trip's reset until an explicit start or unhold: a reset never restarts.
        self._parked = None
        self._last_unsigned_rebirth_ms = None
        self._values = [None] * len(channels)
        self._qualities = [QUALITY_GOOD] * len(channels)
        self._codec = msg.TelemetryCodec(channels)

    def _interlock_set(self, interlocks, actuators, loops):
        """The configured interlocks plus the built-in ones: lease, dead-man and (with
        verified heaters) heater verification, each forcing outputs safe and aborting."""
        all_safe = tuple(slot.name for slot in actuators)
        safe_values = {}
        for slot in actuators:
            safe_values[slot.name] = slot.safe
        extra = [
            Interlock(
                "lease",
                self.lease,
                INPUT_TRUE,
                action=Action(safe=all_safe, state="aborted"),
                cause=CAUSE_LEASE,
            ),
            Interlock(
                "deadman",
                self.deadman,
                INPUT_TRUE,
                action=Action(safe=all_safe, state="aborted"),
                cause=CAUSE_DEADMAN,
            ),
        ]
        verifiers = [lp for lp in loops if lp.verifier is not None]
        if verifiers:
            self._verify_channel = VerifierChannel(verifiers)
            safe = tuple(lp.output.name for lp in verifiers)
            extra.append(
                Interlock(
                    "heater_verify",
                    self._verify_channel,
                    INPUT_TRUE,
                    action=Action(safe=safe, state="aborted"),
                    cause=CAUSE_VERIFY,
                )
            )
        return InterlockSet(list(interlocks) + extra, safe_values)

    # -- messages out ---------------------------------------------------------------------

    def birth(self, bdseq=None):
        """Build (and send) a BIRTH; telemetry seq restarts at 0 after each birth."""
        if bdseq is not None:
            self.bdseq = bdseq & SEQ_MASK
        states = {}
        for code in range(len(st.STATE_NAMES)):
            ops = list(self.sm.allowed_commands(code))
            if code in _SETPOINT_STATES:
                ops.append("set_setpoint")
            ops.extend(_ANY_STATE_OPS)
            states[st.STATE_NAMES[code]] = ops
        payload = msg.build_birth(
            self.module_id,
            self.kind,
            FIRMWARE_VERSION,
            self.config_hash,
            self.reset_cause,
            self.bdseq,
            self.boot_nonce,
            self.channels,
            states,
            self.sm.state_name,
        )
        self.seq = 0
        self.rebirth_pending = False
        self.sink.publish_birth(payload)
        return payload

    def death(self):
        """DEATH for the current session (clean shutdown)."""
        return msg.build_death(self.bdseq)

    def death_for(self, bdseq):
        """DEATH to register as the MQTT will of the session that will use ``bdseq``."""
        return msg.build_death(bdseq & SEQ_MASK)

    def shutdown(self):
        """Orderly stop: every actuator to its safe value now (process exit, SIGTERM)."""
        for slot in self.actuators:
            slot.driver.write(slot.safe)

    def make_event(self, event_type, severity, source=None, cause=None, detail=None, **kw):
        """Number and encode one EVENT (without sending it)."""
        self.event_number += 1
        return msg.build_event(
            self.event_number,
            self._uptime_ms(),
            event_type,
            severity,
            source=source,
            cause=cause,
            detail=detail,
            **kw,
        )

    def _event(self, event_type, severity, source=None, cause=None, detail=None, **kw):
        payload = self.make_event(event_type, severity, source, cause, detail, **kw)
        # Trips are critical: a full link queue evicts anything else first.
        self.sink.publish_event(payload, event_type == "trip")
        return payload

    def dropped_event(self, count):
        """Payload of the EVENT that reports ``count`` events a full queue discarded."""
        return self.make_event("dropped", "warning", count=count, detail="event queue overflow")

    def _uptime_ms(self):
        """Milliseconds since boot, accumulated tick by tick so it keeps counting past
        the tick counter's wrap (about 12 days on a board)."""
        d = ticks_diff(self.now_ms, self._prev_ms)
        return self.uptime_ms + (d if d > 0 else 0)

    def _on_state_change(self, old, new, cause):
        self._event(
            "state_change",
            "info",
            detail="{} -> {} ({})".format(st.STATE_NAMES[old], st.STATE_NAMES[new], cause),
            state=st.STATE_NAMES[new],
        )

    # -- the tick --------------------------------------------------------------------------

    def tick(self, now_ms):
        """One control cycle, the steps of the module docstring in order.  Each step is
        a method (a call costs about a microsecond on a board; none allocates)."""
        d = ticks_diff(now_ms, self._prev_ms)
        if d > 0:
            self.uptime_ms += d
        self._prev_ms = now_ms
        self.now_ms = now_ms
        self.tick_count += 1
        # 1. sensors
        self._read_sensors(now_ms)
        # 2. acting states finish
        self.sm.tick(now_ms)
        running = self.sm.state in _RUNNING
        # 3. lease and dead-man
        self._check_watchdogs(now_ms, running)
        # 4. verifiers, interlocks, alarms
        self._verify_heaters(now_ms, running)
        if self.interlocks.evaluate(now_ms):
            self._on_trips(now_ms)
            running = self.sm.state in _RUNNING
        if self.alarms is not None:
            self._raise_alarms(now_ms)
        # 5. outputs and 6. write
        self._switch_loops(now_ms, running)
        self._write_outputs(now_ms, running)
        if self.deadman.value:
            self.deadman.value = False
        # 7. telemetry
        if self.tick_count % self.telemetry_every == 0:
            self.publish_telemetry()

    def _read_sensors(self, now_ms):
        for ch, drv in self.sensors:
            ch.update(drv.read(now_ms), now_ms, drv.fault)
            ch.check(now_ms)
        for ch in self.derived:
            ch.check(now_ms)

    def _check_watchdogs(self, now_ms, running):
        lease_event = self.lease.check(now_ms, running)
        if lease_event == LEASE_LOST:
            self._event("alarm", "error", source="lease", cause=CAUSE_LEASE, detail="no lease")
            if running and self.lease.on_loss == ON_LOSS_HOLD:
                self.sm.force(st.HOLDING, "lease_lost", now_ms)
        elif lease_event == LEASE_RESTORED:
            self._event("alarm_cleared", "info", source="lease", cause=CAUSE_LEASE)
        fired = False
        for slot in self.actuators:
            if slot.deadman_fired:
                fired = True
                slot.deadman_fired = False
        self.deadman.value = fired

    def _verify_heaters(self, now_ms, running):
        vc = self._verify_channel
        if vc is None:
            return
        for lp in vc.verifiers:
            target = lp.pid.setpoint if (running and lp.pid.auto) else None
            fault = lp.verifier.update(
                target, lp.verify_measure.value, lp.output.driver.value, now_ms
            )
            if fault is not None and vc.value is None:
                vc.value = fault

    def _on_trips(self, now_ms):
        """New trips: one EVENT each, and the state the trips ask for."""
        iset = self.interlocks
        for rec in iset.pop_events():
            self._trip_event(rec)
        target = iset.requested_state
        first = iset.first_out
        cause = first.cause if first is not None else "trip"
        if target == "held":
            self.sm.force(st.HOLDING, cause, now_ms)
        elif target == "stopped":
            self.sm.force(st.STOPPING, cause, now_ms)
        else:
            self.sm.force(st.ABORTING, cause, now_ms)

    def _raise_alarms(self, now_ms):
        alarms = self.alarms
        alarms.evaluate(now_ms)
        for alarm, raised in alarms.pop_changes():
            self._event(
                "alarm" if raised else "alarm_cleared",
                alarm.severity if raised else "info",
                source=alarm.id,
                cause=alarm.cause,
                detail=None if alarm.value is None else "value {:.4g}".format(alarm.value),
            )

    def _switch_loops(self, now_ms, running):
        # Loops run in auto only while the module runs; otherwise they sit in manual at
        # the safe output (still seeing the measurement), so starting is bumpless from
        # the safe value.
        if running == self._was_running:
            return
        for lp in self.loops:
            if running:
                lp.pid.set_auto(now_ms)
            else:
                lp.pid.set_manual(lp.output.safe)
        self._was_running = running

    def _write_outputs(self, now_ms, running):
        forced = self.interlocks.forced_outputs()
        parked = self._parked
        if parked is not None and not running:
            # Out of the running states every output is safe and only start leads back.
            parked = self._parked = None
        for slot in self.actuators:
            value = slot.safe
            pin = forced.get(slot.name)
            if pin is None and parked is not None:
                pin = parked.get(slot.name)
            lp = slot.loop
            if lp is not None:
                pid = lp.pid
                if running:
                    # A loop whose output a trip pins sits in manual at that value: no
                    # wind-up behind the pin, no setpoint for the verifier to miss, and a
                    # bumpless return once an explicit unhold lifts the pin.
                    if pin is None:
                        if not pid.auto:
                            pid.set_auto(now_ms)
                    elif pid.auto or pid.output != pin:
                        pid.set_manual(pin)
                m = lp.measure
                out = pid.update(None if m.quality == QUALITY_BAD else m.value, now_ms)
                if running and out is not None:
                    value = out
            elif running and slot.commanded is not None:
                value = slot.commanded
            if pin is not None:
                value = pin
            # 6. write: also refreshes the dead-man deadline
            slot.driver.write(value)
            slot.last_write_ms = now_ms

    @staticmethod
    def trip_cause(rec):
        """The first-out cause code a trip record reports.  A heater-verification trip's
        channel value is the precise fault code (heater_not_heating, ...)."""
        return rec.value if isinstance(rec.value, str) else rec.cause

    def _trip_event(self, rec):
        cause = self.trip_cause(rec)
        value = rec.value
        if isinstance(value, str):
            detail = rec.interlock_id
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            detail = "{} value {:.4g}".format(rec.interlock_id, value)
        else:
            detail = rec.interlock_id
        if rec.reason:
            detail = "{} ({})".format(detail, rec.reason)
        source = rec.channel if wire.is_name(rec.channel) else None
        self._event("trip", "critical", source=source, cause=cause, detail=detail)

    def publish_telemetry(self):
        values = self._values
        quals = self._qualities
        any_bad = False
        for i in range(len(self.sources)):
            kind, obj = self.sources[i]
            ch = self.channels[i]
            if kind == SRC_SENSOR:
                v = obj.value
                q = obj.quality
            elif kind == SRC_ACTUATOR:
                v = obj.driver.value
                q = QUALITY_GOOD
            else:  # SRC_SETPOINT
                v = obj.pid.setpoint
                q = QUALITY_GOOD
            if v is not None:
                if v < ch.lo:
                    v = ch.lo
                    q = QUALITY_BAD
                elif v > ch.hi:
                    v = ch.hi
                    q = QUALITY_BAD
            elif q == QUALITY_GOOD:
                q = QUALITY_UNCERTAIN
            values[i] = v
            quals[i] = q
            if q != QUALITY_GOOD:
                any_bad = True
        payload = self._codec.build(self.seq, self._uptime_ms(), values, quals if any_bad else None)
        self.seq = (self.seq + 1) & SEQ_MASK
        self.sink.publish_telemetry(payload)
        return payload

    # -- independent safety context ---------------------------------------------------------

    def deadman_check(self, now_ms):
        """From a hardware timer / thread: force safe any actuator whose tick-loop
        refresh is overdue.  Allocation-free; returns how many were forced this call."""
        n = 0
        for slot in self.actuators:
            if slot.driver.value != slot.safe and (
                ticks_diff(now_ms, slot.last_write_ms) > slot.deadman_ms
            ):
                slot.driver.write(slot.safe)
                slot.deadman_fired = True
                n += 1
        return n

    # -- messages in ------------------------------------------------------------------------

    def handle_lease(self, payload, now_ms):
        """A LEASE from the host: when accepted, feeds the watchdog (valid for
        min(board timeout, the lease's ``duration_ms``)) and the host-time estimate.

        A keyed module accepts only a lease with a valid tag for itself, a seq above its
        sender's last and a host time not before that sender's last lease
        (protocol.auth.CommandVerifier.verify_lease): anyone on the broker can publish
        on the lease topic, and a forged lease would keep a module running after its host
        died, or move the host time that command expiry is judged by.  An unkeyed module
        (bench) takes every well-formed lease.  Returns True when accepted; a refused
        lease changes nothing but ``leases_refused`` and ``lease_refusal`` (why).
        """
        try:
            lease = msg.parse_lease(payload)
        except ValueError:
            return self._refuse_lease("malformed")
        if self.verifier is not None:
            why = self.verifier.verify_lease(lease)
            if why is not None:
                return self._refuse_lease(why)
        self.host_time.update(lease.host_time_ms, now_ms)
        self.lease.feed(now_ms, lease.duration_ms)
        return True

    def _refuse_lease(self, why):
        # Counted, not reported per lease: a flood of forged leases must not crowd the
        # event queue.  Lease loss, if it follows, raises its own alarm and trip.
        self.leases_refused += 1
        self.lease_refusal = why
        return False

    def handle_command(self, payload, now_ms):
        """Check and apply one COMMAND; publishes and returns the ACK bytes.

        Order (protocol/SPEC.md): parse -> auth -> expiry -> op/state -> range.  A rejected
        command changes nothing.
        """
        self.now_ms = now_ms
        try:
            cmd = msg.parse_command(payload)
        except ValueError as exc:
            return self._ack(_command_id_of(payload), RESULT_MALFORMED, _short(str(exc)))
        # An unsigned rebirth is the one command a keyed module takes without a tag: it
        # changes nothing but re-publishes the birth, and the birth's boot nonce is what a
        # host that lost track of the module (restarted, joined late) needs to sign at all.
        # It skips the expiry check too: anyone could forge a fresh one, so expiry guards
        # nothing there; a keyed module that never had a signed lease knows no host time (a
        # host cannot sign a lease for it before it has that birth); and a host whose clock
        # lags the module's estimate (a stop from another machine) must still get a birth.
        unsigned_rebirth = cmd.op == "rebirth" and cmd.auth is None
        if self.verifier is not None and not unsigned_rebirth:
            result = self.verifier.verify(payload, cmd)  # the tag covers the received bytes
            if result != RESULT_OK:
                return self._ack(cmd.command_id, result, _AUTH_REASONS.get(result, "rejected"))
        # An abort is never refused as expired: acting on it late errs to the safe side,
        # and it must work whatever the module believes the host time is (a stop issued
        # from another machine whose clock lags the dead coordinator's, or a scaled
        # emulated clock).  It is still authenticated and replay-checked above.
        if (
            not unsigned_rebirth
            and not _is_abort(cmd)
            and self.host_time.is_expired(cmd.expiry_ms, now_ms)
        ):
            if self.host_time.host_now(now_ms) is None:
                reason = "host time unknown (no recent lease)"
            else:
                reason = "expired"
            return self._ack(cmd.command_id, RESULT_EXPIRED, reason)
        result, reason = self._apply(cmd, now_ms)
        # An unsigned rebirth is anyone's to send: it must not fill the event queue either.
        if result == RESULT_OK and not unsigned_rebirth:
            self._event(
                "operator_action",
                "info",
                source=_command_source(cmd),
                detail=_short("{} {}".format(cmd.op, _args_text(cmd.args))),
            )
        return self._ack(cmd.command_id, result, reason)

    def _ack(self, command_id, result, reason):
        payload = msg.build_ack(command_id, result, _short(reason) if reason else None)
        self.sink.publish_ack(payload)
        return payload

    def _apply(self, cmd, now_ms):
        op = cmd.op
        args = cmd.args
        state = self.sm.state
        if op == "set_setpoint":
            if state not in _SETPOINT_STATES:
                return RESULT_NOT_ALLOWED_IN_STATE, "set_setpoint not allowed in " + (
                    self.sm.state_name
                )
            return self._set_setpoint(args["channel"], args["value"])
        if op == "state":
            name = args["command"]
            if name not in st.COMMAND_NAMES:
                return RESULT_UNKNOWN, "service command {} not supported".format(name)
            if (name == "start" or name == "unhold") and self.lease.lost:
                return RESULT_NOT_ALLOWED_IN_STATE, "{} refused: no host lease".format(name)
            if (name == "start" or name == "unhold") and self.interlocks.active:
                # Restarting is a step of its own, after the reset: never both at once.
                return (
                    RESULT_NOT_ALLOWED_IN_STATE,
                    "{} refused: trip {} latched, reset it first".format(
                        name, self.trip_cause(self.interlocks.first_out)
                    ),
                )
            if name == "reset" and self.interlocks.active:
                if self.sm.state not in (st.ABORTED, st.STOPPED, st.COMPLETED):
                    return RESULT_NOT_ALLOWED_IN_STATE, "reset not allowed in " + (
                        self.sm.state_name
                    )
                why = self._reset_trips(now_ms)
                if why is not None:
                    return RESULT_NOT_ALLOWED_IN_STATE, why
            result = self.sm.command(name, now_ms)
            if result != RESULT_OK:
                return result, "{} not allowed in {}".format(name, self.sm.state_name)
            if name == "start" or name == "unhold":
                self._parked = None  # the explicit restart a reset never is
            return RESULT_OK, None
        if op == "reset_trip":
            if not self.interlocks.active:
                return RESULT_OK, "no trips latched"
            why = self._reset_trips(now_ms)
            if why is not None:
                return RESULT_NOT_ALLOWED_IN_STATE, why
            if self._parked is not None:
                return RESULT_OK, "outputs stay as the trip forced them until unhold"
            return RESULT_OK, None
        if op == "ack_alarm":
            if self.alarms is None:
                return RESULT_OK, "no alarms configured"
            n = self.alarms.ack(args.get("target"))
            return RESULT_OK, "{} acknowledged".format(n)
        if op == "rebirth":
            if cmd.auth is None:
                last = self._last_unsigned_rebirth_ms
                if last is not None and ticks_diff(now_ms, last) < UNSIGNED_REBIRTH_MIN_MS:
                    return RESULT_BUSY, "unsigned rebirth at most once per {} ms".format(
                        UNSIGNED_REBIRTH_MIN_MS
                    )
                self._last_unsigned_rebirth_ms = now_ms
            self.rebirth_pending = True
            return RESULT_OK, None
        if op == "configure":
            return self._configure(args["config"], now_ms)
        return RESULT_UNKNOWN, "operation not supported"

    def _reset_trips(self, now_ms):
        """Reset latched trips; None when done, else why it was refused (nothing changed).

        Every cause must have cleared.  A heater-verification fault is judged by its
        verifier (``HeaterVerifier.reset_refusal``): uncontrolled heating must have cooled
        off its peak; a heater that did not heat cannot be shown to be fixed without
        heating again, so that reset is the verifier's to re-arm (and re-detect), but
        only once a check window has passed since the trip.

        A reset never restarts anything: the outputs the trips forced while the module
        was running (a trip to held) stay where the trips put them until an explicit
        ``start`` or ``unhold``.
        """
        iset = self.interlocks
        reasons = [r for r in iset.persisting() if not r.startswith("heater_verify:")]
        vc = self._verify_channel
        if vc is not None:
            for lp in vc.verifiers:
                why = lp.verifier.reset_refusal(now_ms)
                if why is not None:
                    reasons.append("heater_verify: " + why)
        if reasons:
            return "; ".join(reasons)
        if vc is not None:
            vc.value = None
            for lp in vc.verifiers:
                if lp.verifier.fault is not None:
                    # Only a faulted verifier re-arms: resetting a healthy one would
                    # restart its uncontrolled-rise baseline for free.
                    lp.verifier.reset()
        forced = iset.forced_outputs()
        ok, why = iset.reset(now_ms)
        if not ok:  # cannot happen after the check above; kept as a guard
            return why
        if forced and self.sm.state in _RUNNING:
            parked = self._parked if self._parked is not None else {}
            for name in forced:
                parked[name] = forced[name]
            self._parked = parked
        self._event("trip_reset", "info", detail="trips reset by command")
        return None

    def _set_setpoint(self, alias, value):
        if alias >= len(self.sources):
            return RESULT_UNKNOWN, "no channel with alias {}".format(alias)
        kind, obj = self.sources[alias]
        ch = self.channels[alias]
        if kind == SRC_SETPOINT:
            result = obj.pid.set_setpoint(value)
            if result != RESULT_OK:
                return result, "{} = {} outside {}..{}".format(ch.name, value, ch.lo, ch.hi)
            return RESULT_OK, None
        if kind == SRC_ACTUATOR:
            if obj.loop is not None:
                return RESULT_UNKNOWN, "{} is driven by loop {}: set {}".format(
                    ch.name, obj.loop.name, obj.loop.name
                )
            if not (obj.lo <= value <= obj.hi):
                return RESULT_OUT_OF_RANGE, "{} = {} outside {}..{}".format(
                    ch.name, value, obj.lo, obj.hi
                )
            obj.commanded = value
            return RESULT_OK, None
        return RESULT_UNKNOWN, "{} is not a setpoint".format(ch.name)

    def _configure(self, config, now_ms=0):
        """``{"loop": name, "kp"/"ki"/"kd": ...}`` retunes a loop without a bump;
        ``{"loop": name, "relay": ...}`` runs its relay test (edge.pid.relay_command)."""
        name = config.get("loop")
        for lp in self.loops:
            if lp.name == name:
                pid = lp.pid
                if "relay" in config:
                    return relay_command(pid, config, now_ms)
                for key in config:
                    if key not in ("loop", "kp", "ki", "kd"):
                        return RESULT_UNKNOWN, "configure key {} not supported".format(key)
                kp = config.get("kp", pid.kp)
                ki = config.get("ki", pid.ki)
                kd = config.get("kd", pid.kd)
                try:
                    result = pid.set_tunings(kp, ki, kd)
                except (TypeError, ValueError) as exc:
                    return RESULT_OUT_OF_RANGE, str(exc)
                if result != RESULT_OK:
                    return result, "gains must be finite and >= 0"
                return RESULT_OK, None
        return RESULT_OUT_OF_RANGE, "no loop named {}".format(name)

    # -- introspection -----------------------------------------------------------------------

    def outputs(self):
        """name -> current actuator value (tests, emulator)."""
        out = {}
        for slot in self.actuators:
            out[slot.name] = slot.driver.value
        return out

    def all_safe(self):
        for slot in self.actuators:
            if slot.driver.value != slot.safe:
                return False
        return True


_AUTH_REASONS = {
    RESULT_UNAUTHENTICATED: "missing or invalid authentication tag",
    RESULT_REPLAYED: "counter already used",
}
# Reasons and details the node writes into an ACK or EVENT are cut to this many
# characters (the cut ones end in "..."), so a long exception text cannot bloat a message.
MAX_TEXT_CHARS = 120
_ELLIPSIS = "..."


def _short(text):
    if text is None:
        return None
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[: MAX_TEXT_CHARS - len(_ELLIPSIS)] + _ELLIPSIS


def _command_id_of(payload):
    """Best effort: the command id of an unparseable command, else 0 (SPEC)."""
    try:
        from protocol import cbor

        m = cbor.decode(payload, max_size=wire.MAX_MESSAGE_BYTES)
        cid = m.get(wire.K_COMMAND_ID) if isinstance(m, dict) else None
        if isinstance(cid, int) and 0 <= cid <= wire.U32_MAX:
            return cid
    except Exception:  # noqa: BLE001 - anything unreadable is answered with id 0
        pass
    return 0


def _is_abort(cmd):
    return cmd.op == "state" and cmd.args.get("command") == "abort"


def _command_source(cmd):
    if cmd.auth is not None and wire.is_name(cmd.auth.sender):
        return cmd.auth.sender
    return None


def _args_text(args):
    parts = []
    for k in args:
        parts.append("{}={}".format(k, args[k]))
    return " ".join(parts)
