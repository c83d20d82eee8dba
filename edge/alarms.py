"""Non-latching alarms: a condition raises an alarm EVENT and clears it again.

Alarms warn; they force nothing (that is what interlocks are for).  Each alarm watches an
``edge.interlocks.Condition``, the interlocks' own condition test (above / below /
bad_quality / rate_of_rise / input_true / deviation, with on-delay and hysteresis), but does not latch: it is active while the condition holds
(after its on-delay) and clears when the condition is gone with hysteresis.  An operator
acknowledges alarms (``ack_alarm``); acknowledgement is recorded, not required to clear.

Built-in alarms (``Alarm.flag``) watch a boolean attribute a signal object maintains
itself, e.g. ``SensorChannel.stuck`` or ``Redundant1oo2.degraded``: raised in the first
tick the flag is set (after ``on_delay_ms``), cleared when it is not.

``while_on``: an alarm may apply only while an actuator is on (its applied value >= 0.5):
the analyzer's "uv reading bad" means nothing while its lamp is switched off, as it is
whenever the module is stopped.  While the actuator is off the alarm is not evaluated, an
active one clears, and its on-delay starts again when the actuator comes back on.
"""

from edge.interlocks import DEFAULT_WINDOW_MS, INPUT_TRUE, Condition


class Alarm:
    __slots__ = ("id", "detector", "severity", "active", "acked", "value", "cause", "while_on")

    def __init__(
        self,
        id,
        channel,
        condition,
        limit=None,
        on_delay_ms=0,
        hysteresis=0,
        severity="warning",
        cause="alarm",
        window_ms=DEFAULT_WINDOW_MS,
        trip_on_bad=None,
        detector=None,
        reference=None,
        relative=0.0,
        while_on=None,
    ):
        self.id = id
        self.while_on = while_on  # anything with .value: evaluated only while >= 0.5
        if detector is not None:
            self.detector = detector
        else:
            self.detector = Condition(
                id,
                channel,
                condition,
                limit=limit,
                on_delay_ms=on_delay_ms,
                hysteresis=hysteresis,
                cause=cause,
                # By default only a bad_quality alarm fires on a BAD channel (the others
                # would double-report what the sensor_bad interlock/alarm already says).
                trip_on_bad=(condition == "bad_quality") if trip_on_bad is None else trip_on_bad,
                window_ms=window_ms,
                reference=reference,
                relative=relative,
            )
        self.severity = severity
        self.active = False
        self.acked = False
        self.value = None
        self.cause = None  # why it was raised: its own cause, or "sensor_bad"

    @classmethod
    def flag(cls, id, channel, attr, cause, severity="warning"):
        """A built-in alarm raised while ``getattr(channel, attr)`` is true; its value is
        the channel's value."""
        return cls(
            id, channel, None, severity=severity, detector=FlagDetector(channel, attr, cause)
        )


class FlagDetector(Condition):
    """The condition of a built-in alarm: a flag the channel computes itself (no
    on-delay); the value it reports is the channel's."""

    def __init__(self, channel, attr, cause):
        Condition.__init__(self, attr, channel, INPUT_TRUE, cause=cause)
        self.attr = attr

    def _cause_now(self, persist):
        return self.cause if getattr(self.channel, self.attr) else None

    def trip_value(self):
        return self.channel.value


class AlarmSet:
    """Evaluates alarms each tick; ``pop_changes()`` yields (alarm, raised) pairs."""

    def __init__(self, alarms):
        self.alarms = tuple(alarms)
        self._changes = []

    def evaluate(self, now_ms):
        for a in self.alarms:
            det = a.detector
            det.sample_rate(now_ms)
            gate = a.while_on
            if gate is not None and not (gate.value is not None and gate.value >= 0.5):
                det._since = None  # not evaluated; the on-delay starts again once it is on
                if a.active:
                    a.active = False
                    self._changes.append((a, False))
                continue
            if a.active:
                if det.cause_now(True) is None:
                    a.active = False
                    a.value = det.trip_value()
                    self._changes.append((a, False))
                continue
            cause = det.held(now_ms)
            if cause is not None:
                a.active = True
                a.cause = cause
                a.acked = False
                a.value = det.trip_value()
                self._changes.append((a, True))

    def pop_changes(self):
        if not self._changes:
            return ()
        changes = self._changes
        self._changes = []
        return changes

    def ack(self, target=None):
        """Acknowledge the active alarm ``target`` (its id) or all active ones; returns
        how many were acknowledged (0 when ``target`` names no active alarm)."""
        n = 0
        for a in self.alarms:
            if a.active and not a.acked and (target is None or a.id == target):
                a.acked = True
                n += 1
        return n
