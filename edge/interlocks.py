"""Latching interlocks with first-out recording.

An ``Interlock`` watches one channel (anything with ``.value``; ``.quality`` and ``.name``
are used when present) for one condition:

* ``"above"``: value > limit; the cause persists while value > limit - hysteresis.
* ``"below"``: value < limit; persists while value < limit + hysteresis.
* ``"rate_of_rise"``: (value now - value ``window_ms`` ago) / elapsed s > limit (units/s);
  persists while rate > limit - hysteresis.  Needs a full window of usable history (it
  restarts after a BAD period); while the history is short the rate is unknown: no trip,
  and an already latched trip's cause counts as persisting.
* ``"bad_quality"``: channel quality is BAD.
* ``"input_true"``: ``bool(channel.value)``, for e-stops, independent over-temperature
  cut-outs or a ``HeaterVerifier`` (whose ``value`` is its fault code).
* ``"deviation"``: abs(value - reference.value) > limit + relative * abs(reference.value);
  persists while it exceeds that band minus hysteresis.  ``reference`` is anything with
  ``.value``: the setpoint a loop is tracking, or the value last written to an actuator
  (``edge.build``).  A reference of None (nothing commanded: a loop in manual) is no
  deviation, neither to trip nor to refuse a reset: there is no setpoint to miss.

BAD quality on the channel is itself a trip condition (cause ``"sensor_bad"``) unless
``trip_on_bad=False``; with ``trip_on_bad=False`` a BAD channel neither trips a value
condition (its value is the frozen last good one) nor lets a latched trip be reset (its
cause cannot be shown to be gone).

The condition (value or bad quality) must hold continuously for ``on_delay_ms`` before the
trip; with 0 the trip happens in the very tick that first sees it.  ``Condition`` is that
test with its on-delay, shared with the non-latching alarms (``edge.alarms``);
``Interlock`` adds the latch and the ``Action``.

``InterlockSet.evaluate(now_ms)`` runs every tick after the sensors were read and before
outputs are written.  Trips latch until an accepted ``reset``.  The first trip since the
last reset is the first-out; interlocks tripping in the same tick are ranked in
declaration order.  ``forced_outputs()`` is the override map for all latched trips:
an actuator's safe value beats any declared value, and among declared values the
earliest trip wins.
"""

from edge.clock import ticks_diff
from protocol.constants import QUALITY_BAD

ABOVE = "above"
BELOW = "below"
BAD_QUALITY = "bad_quality"
RATE_OF_RISE = "rate_of_rise"
INPUT_TRUE = "input_true"
DEVIATION = "deviation"
CONDITIONS = (ABOVE, BELOW, BAD_QUALITY, RATE_OF_RISE, INPUT_TRUE, DEVIATION)

CAUSE_SENSOR_BAD = "sensor_bad"

_RATE_SLOTS = 8  # ring of history samples per rate_of_rise interlock
DEFAULT_WINDOW_MS = 1000  # rate_of_rise: the window the rate is taken over


def _number(field, value, minimum=None):
    if value is None or not isinstance(value, (int, float)) or value - value != 0:
        raise ValueError("{} must be a finite number, got {!r}".format(field, value))
    if minimum is not None and value < minimum:
        raise ValueError("{} must be >= {}, got {!r}".format(field, minimum, value))


def _fmt(x):
    if isinstance(x, float):
        return "{:.4g}".format(x)
    return str(x)


class Action:
    """What a trip does: force ``safe`` actuators to their safe values, force ``values``
    (name -> value) and request module ``state`` (e.g. "aborted", "held"; the runtime
    applies it, this module only carries it)."""

    def __init__(self, safe=(), values=None, state=None):
        if isinstance(safe, str):
            raise ValueError(
                "safe must be a tuple of actuator names, got the string {!r}".format(safe)
            )
        self.safe = tuple(safe)
        self.values = dict(values) if values else {}
        self.state = state

    def __repr__(self):
        return "Action(safe={}, values={}, state={})".format(self.safe, self.values, self.state)


class TripRecord:
    """One trip: which interlock, why, on what reading and when.

    ``first_out`` is the record of the first trip since the last reset (``self`` for the
    first-out itself): a trip event should carry ``first_out.cause``/``interlock_id``.
    ``reason`` is the channel's ``bad_reason`` for "sensor_bad" trips, else None.
    """

    def __init__(self, interlock, cause, value, reason, t_ms, first_out):
        self.interlock = interlock
        self.interlock_id = interlock.id
        self.cause = cause
        self.channel = interlock.channel_name
        self.value = value
        self.reason = reason
        self.t_ms = t_ms
        self.state = interlock.action.state
        self.first_out = first_out if first_out is not None else self

    @property
    def is_first_out(self):
        return self.first_out is self

    def __repr__(self):
        return "<Trip {} cause={} channel={} value={} reason={} t={} first_out={}>".format(
            self.interlock_id,
            self.cause,
            self.channel,
            self.value,
            self.reason,
            self.t_ms,
            self.first_out.interlock_id,
        )


class Condition:
    """One condition on one channel, with on-delay and hysteresis: what an interlock
    trips on and an alarm is raised on (``edge.alarms``).  See the module docstring for
    the conditions and how BAD quality counts (``trip_on_bad``).

    Per tick: ``sample_rate(now_ms)`` (rate_of_rise history; a no-op otherwise), then
    ``held(now_ms)``: the cause once the condition has held continuously for
    ``on_delay_ms``, else None.  ``cause_now(persist=True)`` is the test with hysteresis
    that tells whether a raised condition still persists.  No allocation per tick.
    """

    def __init__(
        self,
        id,
        channel,
        condition,
        limit=None,
        on_delay_ms=0,
        hysteresis=0,
        cause="over_temperature",
        trip_on_bad=True,
        window_ms=DEFAULT_WINDOW_MS,
        reference=None,
        relative=0.0,
    ):
        if condition not in CONDITIONS:
            raise ValueError(
                "interlock {}: condition must be one of {}, got {!r}".format(
                    id, CONDITIONS, condition
                )
            )
        if condition in (ABOVE, BELOW, RATE_OF_RISE):
            _number("interlock {} limit".format(id), limit)
        if condition == DEVIATION:
            _number("interlock {} limit (tolerance)".format(id), limit, 0)
            _number("interlock {} relative".format(id), relative, 0)
            if reference is None or not hasattr(reference, "value"):
                raise ValueError(
                    "interlock {}: a deviation needs a reference with a value, got {!r}".format(
                        id, reference
                    )
                )
        _number("interlock {} on_delay_ms".format(id), on_delay_ms, 0)
        _number("interlock {} hysteresis".format(id), hysteresis, 0)
        if condition == RATE_OF_RISE:
            _number("interlock {} window_ms".format(id), window_ms, 1)
        self.id = id
        self.channel = channel
        self.channel_name = getattr(channel, "name", None)
        self.condition = condition
        self.limit = limit  # None for conditions without a limit
        self._limit = 0.0 if limit is None else limit  # a float for the arithmetic below
        self.on_delay_ms = on_delay_ms
        self.hysteresis = hysteresis
        self.cause = CAUSE_SENSOR_BAD if condition == BAD_QUALITY else cause
        self.trip_on_bad = trip_on_bad
        self.window_ms = window_ms
        self.reference = reference  # deviation: what the value must follow
        self.relative = relative  # deviation: tolerance fraction of |reference|
        self._has_quality = hasattr(channel, "quality")
        self._since = None  # tick at which the condition started holding (on-delay)
        self.rate = None  # last computed rate of rise (units/s), None when unknown
        if condition == RATE_OF_RISE:
            self._rt = [0] * _RATE_SLOTS
            self._rv = [0.0] * _RATE_SLOTS
            self._rn = 0
            self._rhead = 0
            self._rinterval = max(1, window_ms // (_RATE_SLOTS - 2))

    def held(self, now_ms):
        """The cause once the condition has held continuously for ``on_delay_ms`` (with
        0: in the first tick it holds), else None.  The delay restarts whenever the
        condition stops holding, and after it fired."""
        cause = self._cause_now(False)
        if cause is None:
            self._since = None
            return None
        if self._since is None:
            self._since = now_ms
        if ticks_diff(now_ms, self._since) >= self.on_delay_ms:
            self._since = None
            return cause
        return None

    def _channel_bad(self):
        return self._has_quality and self.channel.quality == QUALITY_BAD

    def _sample_rate(self, now_ms):
        """Record history and compute ``self.rate`` (None without a full window)."""
        v = self.channel.value
        if v is None or self._channel_bad():
            # No reading yet (a sensor still starting, e.g. a MAX31865 settling after
            # boot) is not history: a None kept in the ring would fail the subtraction
            # below once a window old, and the tick with it.
            self._rn = 0
            self.rate = None
            return
        last = (self._rhead - 1) % _RATE_SLOTS
        if self._rn == 0 or ticks_diff(now_ms, self._rt[last]) >= self._rinterval:
            self._rt[self._rhead] = now_ms
            self._rv[self._rhead] = v
            self._rhead = (self._rhead + 1) % _RATE_SLOTS
            if self._rn < _RATE_SLOTS:
                self._rn += 1
        # Newest sample at least a window old: the rate spans ~window_ms.
        self.rate = None
        i = self._rhead
        n = self._rn
        while n > 0:  # a while loop: range() would allocate every tick
            n -= 1
            i = (i - 1) % _RATE_SLOTS
            age = ticks_diff(now_ms, self._rt[i])
            if age >= self.window_ms:
                self.rate = (v - self._rv[i]) * 1000.0 / age
                return

    def _cause_now(self, persist):
        """The cause code if the condition holds now (``persist``: the post-trip test
        with hysteresis, unknown counting as holding), else None."""
        cond = self.condition
        if self._channel_bad():
            if self.trip_on_bad or persist or cond == BAD_QUALITY:
                return CAUSE_SENSOR_BAD
            return None
        if cond == BAD_QUALITY:
            return None
        if cond == INPUT_TRUE:
            return self.cause if self.channel.value else None
        band = self.hysteresis if persist else 0
        if cond == DEVIATION:
            return self._deviates(band, persist)
        if cond == RATE_OF_RISE:
            x = self.rate
            if x is None:
                return self.cause if persist else None
            return self.cause if x > self._limit - band else None
        x = self.channel.value
        if x is None:
            return self.cause if persist else None
        if cond == ABOVE:
            return self.cause if x > self._limit - band else None
        return self.cause if x < self._limit + band else None

    def _deviates(self, band, persist):
        """The cause if the value is off its reference by more than the tolerance
        (minus ``band``, the hysteresis once raised)."""
        reference = self.reference
        r = None if reference is None else reference.value
        if r is None:
            return None  # nothing commanded: nothing to deviate from
        x = self.channel.value
        if x is None:
            return self.cause if persist else None
        d = x - r
        if d < 0:
            d = -d
        tol = self._limit + self.relative * (r if r >= 0 else -r) - band
        return self.cause if d > tol else None

    def cause_now(self, persist=False):
        """Public form of the condition test, for non-latching users (alarms); a
        rate_of_rise condition needs ``sample_rate`` called first in the same tick."""
        return self._cause_now(persist)

    def sample_rate(self, now_ms):
        """Record rate-of-rise history; call once per tick before ``cause_now``."""
        if self.condition == RATE_OF_RISE:
            self._sample_rate(now_ms)

    def trip_value(self):
        """The reading a trip record carries: the rate for rate_of_rise, else the value."""
        if self.condition == RATE_OF_RISE and not self._channel_bad():
            return self.rate
        return self.channel.value

    def persist_reason(self):
        """Why a reset is refused, or None when the cause is gone."""
        cause = self._cause_now(True)
        if cause is None:
            return None
        name = self.channel_name
        cond = self.condition
        if cause == CAUSE_SENSOR_BAD:
            why = "sensor_bad: {} is {}".format(
                name, getattr(self.channel, "bad_reason", None) or "bad"
            )
        elif cond == INPUT_TRUE:
            why = "{} still active, value {}".format(name, _fmt(self.channel.value))
        elif cond == RATE_OF_RISE and self.rate is None:
            why = "rate of {} unknown until a full {} ms window".format(name, self.window_ms)
        elif cond == DEVIATION and self.reference is not None:
            ref = self.reference.value
            why = "{} {} = {}, reference {} = {}, clears within +-{}".format(
                self.cause,
                name,
                _fmt(self.channel.value),
                getattr(self.reference, "name", "?"),
                _fmt(ref),
                _fmt(self._limit + self.relative * abs(ref) - self.hysteresis),
            )
        else:
            if cond == BELOW:
                clear = ">= " + _fmt(self._limit + self.hysteresis)
            else:
                clear = "<= " + _fmt(self._limit - self.hysteresis)
                if cond == RATE_OF_RISE:
                    clear += "/s"
            why = "{} {} = {}, clears at {}".format(
                self.cause, name, _fmt(self.trip_value()), clear
            )
        return "{}: cause persists ({})".format(self.id, why)


class Interlock(Condition):
    """A latching condition: ``InterlockSet`` trips it once ``held``, and the trip does
    ``action`` until an accepted reset."""

    def __init__(
        self,
        id,
        channel,
        condition,
        limit=None,
        on_delay_ms=0,
        hysteresis=0,
        action=None,
        cause="over_temperature",
        trip_on_bad=True,
        window_ms=DEFAULT_WINDOW_MS,
        reference=None,
        relative=0.0,
    ):
        Condition.__init__(
            self,
            id,
            channel,
            condition,
            limit,
            on_delay_ms,
            hysteresis,
            cause,
            trip_on_bad,
            window_ms,
            reference,
            relative,
        )
        if action is None:
            action = Action()
        elif not isinstance(action, Action):
            raise ValueError("interlock {}: action must be an Action, got {!r}".format(id, action))
        self.action = action
        self.tripped = False

    def __repr__(self):
        return "<Interlock {} {} {} limit={} tripped={}>".format(
            self.id, self.channel_name, self.condition, self.limit, self.tripped
        )


_NO_EVENTS = ()
# Severity of the states a trip may request (InterlockSet.requested_state).
_STATE_RANK = {"held": 1, "stopped": 2, "aborted": 3}


class InterlockSet:
    """Evaluates interlocks, latches trips, records first-out, builds forced outputs.

    ``safe_values`` maps every actuator named in an ``Action.safe`` to its safe value.
    New trips are passed to ``on_trip(record)`` if given and queued for ``pop_events()``
    (at most ``max_events`` kept; older ones are dropped and counted in
    ``events_dropped``).  Each trip yields exactly one record.
    """

    def __init__(self, interlocks, safe_values=None, on_trip=None, max_events=32):
        self.interlocks = tuple(interlocks)
        self.safe_values = dict(safe_values) if safe_values else {}
        seen = set()
        for il in self.interlocks:
            if not isinstance(il, Interlock):
                raise ValueError("interlocks must be Interlock objects, got {!r}".format(il))
            if il.id in seen:
                raise ValueError("duplicate interlock id {!r}".format(il.id))
            seen.add(il.id)
            for name in il.action.safe:
                if name not in self.safe_values:
                    raise ValueError(
                        "interlock {}: actuator {!r} has no entry in safe_values {}".format(
                            il.id, name, sorted(self.safe_values)
                        )
                    )
        self._rate_interlocks = tuple(il for il in self.interlocks if il.condition == RATE_OF_RISE)
        self.on_trip = on_trip
        self.max_events = max_events
        self.events_dropped = 0
        self._events = []
        self.trips = []  # TripRecords since the last accepted reset, first-out first
        self.first_out = None
        self.requested_state = None
        self._forced = {}
        self.last_reset_ms = None

    @property
    def active(self):
        """True while any trip is latched."""
        return self.first_out is not None

    def evaluate(self, now_ms):
        """Run every interlock once; returns True if anything newly tripped."""
        for il in self._rate_interlocks:
            il._sample_rate(now_ms)
        changed = False
        for il in self.interlocks:
            if il.tripped:
                continue
            cause = il.held(now_ms)
            if cause is not None:
                self._trip(il, cause, now_ms)
                changed = True
        if changed:
            self._rebuild()
        return changed

    def _trip(self, il, cause, now_ms):
        il.tripped = True
        reason = None
        if cause == CAUSE_SENSOR_BAD:
            reason = getattr(il.channel, "bad_reason", None)
        rec = TripRecord(il, cause, il.trip_value(), reason, now_ms, self.first_out)
        if self.first_out is None:
            self.first_out = rec
        self.trips.append(rec)
        if len(self._events) >= self.max_events:
            self._events.pop(0)
            self.events_dropped += 1
        self._events.append(rec)
        if self.on_trip is not None:
            self.on_trip(rec)

    def _rebuild(self):
        forced = {}
        state = None
        rank = 0
        for rec in self.trips:
            action = rec.interlock.action
            for name in action.values:
                if name not in forced:
                    forced[name] = action.values[name]
            # The most severe state any latched trip asks for, not the first-out's: a
            # module held by one trip must still abort when an abort-worthy trip follows.
            r = _STATE_RANK.get(action.state, 0)
            if r > rank:
                rank = r
                state = action.state
        for rec in self.trips:
            for name in rec.interlock.action.safe:
                forced[name] = self.safe_values[name]
        self._forced = forced
        self.requested_state = state

    def forced_outputs(self):
        """Actuator name -> forced value for all latched trips (shared dict: read only)."""
        return self._forced

    def pop_events(self):
        """New TripRecords since the last call, oldest first."""
        if not self._events:
            return _NO_EVENTS
        events = self._events
        self._events = []
        return events

    def persisting(self):
        """Refusal reasons of the latched interlocks whose cause persists."""
        reasons = []
        for il in self.interlocks:
            if il.tripped:
                why = il.persist_reason()
                if why is not None:
                    reasons.append(why)
        return reasons

    def reset(self, now_ms):
        """Clear all latched trips, unless any latched interlock's cause persists.

        All or nothing: returns ``(True, "ok")`` (or ``(True, "no trips latched")``) or
        ``(False, reason)`` naming every interlock whose cause persists and its reading.
        """
        if self.first_out is None:
            return True, "no trips latched"
        reasons = self.persisting()
        if reasons:
            return False, "; ".join(reasons)
        for il in self.interlocks:
            # Only latched ones: a pending on-delay of another interlock keeps running.
            if il.tripped:
                il.tripped = False
                il._since = None
        self.trips = []
        self.first_out = None
        self.requested_state = None
        self._forced = {}
        self.last_reset_ms = now_ms
        return True, "ok"
