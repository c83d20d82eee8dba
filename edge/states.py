"""Module service state machine after ISA-88 / PackML as used by NAMUR MTP services.

States (codes 0..12, index into STATE_NAMES; *not* PackML's numbering)::

    idle --start--> starting ..> execute --complete--> completing ..> completed
    execute/starting/completing/unholding --hold--> holding ..> held --unhold--> unholding ..> execute
    every non-final state but stopping/aborting --stop--> stopping ..> stopped
    any state but aborting/aborted --abort--> aborting ..> aborted
    completed/stopped/aborted --reset--> resetting ..> idle

``..>`` marks the end of an *acting* state (starting, completing, holding, unholding,
stopping, aborting, resetting): the owner calls ``state_complete()`` when the action is
done, or, for acting states not listed in ``owner_completes``, the next ``tick(now_ms)``
finishes it.  Final states are completed, stopped and aborted: only reset leaves them
(and abort from completed/stopped).  Reset goes through resetting from every final state,
MTP-style, instead of PackML's aborted --clear--> clearing --> stopped: one exit path
from the abort latch, one command for the coordinator to learn.

Hold is also accepted in starting, completing and unholding (as in MTP), since a
condition that calls for a hold can arise while those actions run.

Not modelled: Pausing/Paused/Resuming (MTP) and Suspending/Suspended (PackML).  Our
modules run continuous unit operations (pumps, heaters, valves); "stop acting but stay
ready to carry on where you were" is exactly hold, so pause would give the coordinator a
second command with identical module behaviour.  Likewise no Restarting: parameters
apply live in execute.

The safety layer uses ``force()``, which only ever moves toward a safer state (see its
docstring); a module that booted after a watchdog reset starts latched in aborted
(``StateMachine(watchdog_reset=True)``).  Every transition calls
``on_change(old, new, cause)`` so the runtime can emit state_change EVENTs; ``cause``
is the command name, ``"done"`` for the end of an acting state, or the force cause.
"""

from protocol.constants import RESULT_NOT_ALLOWED_IN_STATE, RESULT_OK, RESULT_UNKNOWN

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


IDLE = const(0)
STARTING = const(1)
EXECUTE = const(2)
COMPLETING = const(3)
COMPLETED = const(4)
HOLDING = const(5)
HELD = const(6)
UNHOLDING = const(7)
STOPPING = const(8)
STOPPED = const(9)
ABORTING = const(10)
ABORTED = const(11)
RESETTING = const(12)

STATE_NAMES = (
    "idle",
    "starting",
    "execute",
    "completing",
    "completed",
    "holding",
    "held",
    "unholding",
    "stopping",
    "stopped",
    "aborting",
    "aborted",
    "resetting",
)

CMD_START = const(0)
CMD_COMPLETE = const(1)
CMD_HOLD = const(2)
CMD_UNHOLD = const(3)
CMD_STOP = const(4)
CMD_ABORT = const(5)
CMD_RESET = const(6)

COMMAND_NAMES = ("start", "complete", "hold", "unhold", "stop", "abort", "reset")

ACTING_STATES = (STARTING, COMPLETING, HOLDING, UNHOLDING, STOPPING, ABORTING, RESETTING)
FINAL_STATES = (COMPLETED, STOPPED, ABORTED)

_NO = const(-1)

# _TRANSITIONS[state][command] -> state entered, or _NO when the command is refused.
_TRANSITIONS = (
    # start     complete     hold      unhold     stop      abort     reset
    (STARTING, _NO, _NO, _NO, STOPPING, ABORTING, _NO),  # idle
    (_NO, _NO, HOLDING, _NO, STOPPING, ABORTING, _NO),  # starting
    (_NO, COMPLETING, HOLDING, _NO, STOPPING, ABORTING, _NO),  # execute
    (_NO, _NO, HOLDING, _NO, STOPPING, ABORTING, _NO),  # completing
    (_NO, _NO, _NO, _NO, _NO, ABORTING, RESETTING),  # completed
    (_NO, _NO, _NO, _NO, STOPPING, ABORTING, _NO),  # holding
    (_NO, _NO, _NO, UNHOLDING, STOPPING, ABORTING, _NO),  # held
    (_NO, _NO, HOLDING, _NO, STOPPING, ABORTING, _NO),  # unholding
    (_NO, _NO, _NO, _NO, _NO, ABORTING, _NO),  # stopping
    (_NO, _NO, _NO, _NO, _NO, ABORTING, RESETTING),  # stopped
    (_NO, _NO, _NO, _NO, _NO, _NO, _NO),  # aborting
    (_NO, _NO, _NO, _NO, _NO, _NO, RESETTING),  # aborted
    (_NO, _NO, _NO, _NO, STOPPING, ABORTING, _NO),  # resetting
)

# _DONE[state] -> state an acting state ends in, _NO for the other states.
_DONE = (
    _NO,  # idle
    EXECUTE,  # starting
    _NO,  # execute
    COMPLETED,  # completing
    _NO,  # completed
    HELD,  # holding
    _NO,  # held
    EXECUTE,  # unholding
    STOPPED,  # stopping
    _NO,  # stopped
    ABORTED,  # aborting
    _NO,  # aborted
    IDLE,  # resetting
)

_STATE_COUNT = const(13)
_COMMAND_COUNT = const(7)


def _check_state(name, state):
    if type(state) is not int or not 0 <= state < _STATE_COUNT:
        raise ValueError(
            "{} must be a state code 0..{}, got {!r}".format(name, _STATE_COUNT - 1, state)
        )


def command_code(name_or_code):
    """Command code for a name or code, or -1 when unknown."""
    if type(name_or_code) is int:
        if 0 <= name_or_code < _COMMAND_COUNT:
            return name_or_code
        return _NO
    for i in range(_COMMAND_COUNT):
        if COMMAND_NAMES[i] == name_or_code:
            return i
    return _NO


def allowed_commands(state):
    """Names of the commands accepted in ``state``, in COMMAND_NAMES order."""
    _check_state("state", state)
    row = _TRANSITIONS[state]
    return tuple(COMMAND_NAMES[i] for i in range(_COMMAND_COUNT) if row[i] != _NO)


class StateMachine:
    """The service state of one module.  ``state`` is the code, ``state_name`` its name,
    ``entered_ms`` the tick at which it was entered (None until a call passes a time)."""

    def __init__(self, initial=IDLE, watchdog_reset=False, owner_completes=(), on_change=None):
        if watchdog_reset:
            initial = ABORTED
        _check_state("initial", initial)
        owned = [False] * _STATE_COUNT
        for s in owner_completes:
            _check_state("owner_completes entry", s)
            if _DONE[s] == _NO:
                raise ValueError(
                    "owner_completes entry {!r} ({}) is not an acting state".format(
                        s, STATE_NAMES[s]
                    )
                )
            owned[s] = True
        self._owner_completes = tuple(owned)
        self.state = initial
        self.entered_ms = None
        self.on_change = on_change

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    def is_acting(self):
        return _DONE[self.state] != _NO

    def allowed_commands(self, state=None):
        return allowed_commands(self.state if state is None else state)

    def allowed_table(self):
        """``{state_name: [command names]}`` for every state (published in BIRTH)."""
        return {STATE_NAMES[s]: list(allowed_commands(s)) for s in range(_STATE_COUNT)}

    def _enter(self, new, cause, now_ms):
        old = self.state
        self.state = new
        if now_ms is not None:
            self.entered_ms = now_ms
        if self.on_change is not None:
            self.on_change(old, new, cause)

    def command(self, name_or_code, now_ms=None):
        """Apply a command; RESULT_OK, RESULT_NOT_ALLOWED_IN_STATE or RESULT_UNKNOWN
        (the state is unchanged unless RESULT_OK)."""
        cmd = command_code(name_or_code)
        if cmd == _NO:
            return RESULT_UNKNOWN
        new = _TRANSITIONS[self.state][cmd]
        if new == _NO:
            return RESULT_NOT_ALLOWED_IN_STATE
        self._enter(new, COMMAND_NAMES[cmd], now_ms)
        return RESULT_OK

    def state_complete(self, now_ms=None):
        """The owner finished the current acting state's work: move on.
        RESULT_NOT_ALLOWED_IN_STATE outside acting states."""
        new = _DONE[self.state]
        if new == _NO:
            return RESULT_NOT_ALLOWED_IN_STATE
        self._enter(new, "done", now_ms)
        return RESULT_OK

    def tick(self, now_ms):
        """Finish an acting state that the owner does not complete itself; returns the
        state code.  At most one transition per tick."""
        new = _DONE[self.state]
        if new != _NO and not self._owner_completes[self.state]:
            self._enter(new, "done", now_ms)
        return self.state

    def force(self, target, cause="force", now_ms=None):
        """Safety-layer transition, bypassing the command rules but only toward safety.

        ``target`` is aborting/aborted (trip: applies from every state except the abort
        latch itself), stopping/stopped (from states where stop is allowed, plus
        stopping -> stopped), or holding/held (lease loss: only from states where hold is
        allowed, plus holding -> held; a module that is not running has nothing to hold,
        and forcing idle into held would let ``unhold`` start it).  Returns True if the
        state changed, False if the force did not apply.  Any other target is a
        programming error (ValueError).
        """
        state = self.state
        if target == ABORTING:
            applies = state != ABORTING and state != ABORTED
        elif target == ABORTED:
            applies = state != ABORTED
        elif target == STOPPING:
            applies = _TRANSITIONS[state][CMD_STOP] == STOPPING
        elif target == STOPPED:
            applies = state == STOPPING or _TRANSITIONS[state][CMD_STOP] == STOPPING
        elif target == HOLDING:
            applies = _TRANSITIONS[state][CMD_HOLD] == HOLDING
        elif target == HELD:
            applies = state == HOLDING or _TRANSITIONS[state][CMD_HOLD] == HOLDING
        else:
            raise ValueError(
                "force target must be aborting, aborted, stopping, stopped, holding or "
                "held, got {!r}".format(target)
            )
        if applies:
            self._enter(target, cause, now_ms)
        return applies
