"""Host lease (heartbeat) watchdog: the module's comms-loss protection.

The host publishes a LEASE periodically.  Each one the node accepts (edge/node.py: on a
keyed module only an authenticated, fresh one) is fed here with its ``duration_ms``; if
no new one arrives within min(``timeout_ms``, that duration) the lease is lost and the
configured loss action runs without any message from anyone.  A lease may shorten the
board's timeout, never extend it: the board config is the bound a host cannot widen.

* ``"safe"``: the lease interlock trips at once (actuators to their safe values, module
  aborted, latched until a reset);
* ``"hold"``: the module is held on its current setpoints (the runtime forces Holding)
  for at most ``grace_ms``; if no lease returns in that time, the lease interlock trips
  as for ``"safe"``.  A lease that returns within the grace ends the countdown; the
  module stays held until the host unholds it.

The watchdog arms on the first lease: before that the module cannot have been started
(commands are judged against host time from the lease, so every command is expired).
A lease lost while the module is at rest (idle, stopped, completed, aborted: outputs
already safe) only raises an alarm: latching a trip on a module that drives nothing
would force a needless reset on every host restart.

The object doubles as the channel the lease interlock watches (``value`` True = the loss
action is due; ``quality`` always GOOD), so lease loss goes through the one trip path.
"""

from edge.clock import ticks_add, ticks_diff
from protocol.constants import QUALITY_GOOD

ON_LOSS_SAFE = "safe"
ON_LOSS_HOLD = "hold"

# check() results
LEASE_OK = 0
LEASE_LOST = 1  # the lease just expired (once per loss)
LEASE_RESTORED = 2  # a lease arrived after a loss


class LeaseWatchdog:
    __slots__ = (
        "name",
        "timeout_ms",
        "on_loss",
        "grace_ms",
        "value",
        "quality",
        "bad_reason",
        "armed",
        "lost",
        "active_at_loss",
        "_last_ms",
        "_limit_ms",
        "_lost_ms",
        "_restored",
    )

    def __init__(self, timeout_ms, on_loss=ON_LOSS_SAFE, grace_ms=0):
        if on_loss not in (ON_LOSS_SAFE, ON_LOSS_HOLD):
            raise ValueError("lease.on_loss: {!r} not one of safe/hold".format(on_loss))
        if timeout_ms <= 0:
            raise ValueError("lease.timeout_ms: {!r} must be > 0".format(timeout_ms))
        if grace_ms < 0:
            raise ValueError("lease.grace_ms: {!r} must be >= 0".format(grace_ms))
        self.name = "lease"
        self.timeout_ms = timeout_ms
        self.on_loss = on_loss
        self.grace_ms = grace_ms if on_loss == ON_LOSS_HOLD else 0
        self.value = False
        self.quality = QUALITY_GOOD
        self.bad_reason = None
        self.armed = False
        self.lost = False
        self.active_at_loss = False
        self._last_ms = 0
        self._limit_ms = timeout_ms  # of the last lease: min(timeout_ms, its duration)
        self._lost_ms = 0
        self._restored = False

    def feed(self, now_ms, duration_ms=None):
        """A lease arrived; it is valid for min(``timeout_ms``, ``duration_ms``)."""
        self._last_ms = now_ms
        limit = self.timeout_ms
        if duration_ms is not None and duration_ms < limit:
            limit = duration_ms
        self._limit_ms = limit
        self.armed = True
        if self.lost:
            self.lost = False
            self.value = False
            self._restored = True

    def check(self, now_ms, active):
        """Once per tick; ``active``: the module is running (outputs may be energised).
        Returns LEASE_OK, LEASE_LOST (just expired) or LEASE_RESTORED."""
        if self._restored:
            self._restored = False
            return LEASE_RESTORED
        if not self.armed:
            return LEASE_OK
        if not self.lost:
            if ticks_diff(now_ms, self._last_ms) <= self._limit_ms:
                return LEASE_OK
            self.lost = True
            self.active_at_loss = active
            # The grace runs from the expiry itself, not from the tick that noticed it:
            # a tick loop that stalled across the deadline must not stretch the time the
            # outputs stay energised after the loss.
            self._lost_ms = ticks_add(self._last_ms, self._limit_ms)
            if active and ticks_diff(now_ms, self._lost_ms) >= self.grace_ms:
                self.value = True
            return LEASE_LOST
        if active and not self.active_at_loss:
            # Started while the lease was already lost (a command that was still within
            # its expiry): supervise from now on, as if the loss had just happened.
            self.active_at_loss = True
            self._lost_ms = now_ms
        if self.active_at_loss and not self.value:
            if ticks_diff(now_ms, self._lost_ms) >= self.grace_ms:
                self.value = True
        return LEASE_OK
