"""Tests for edge/states.py: the ISA-88/MTP service state machine."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import states as S
from edge.states import COMMAND_NAMES, STATE_NAMES, StateMachine
from protocol.constants import RESULT_NOT_ALLOWED_IN_STATE, RESULT_OK, RESULT_UNKNOWN

# The model written out by hand, independently of the module's table:
# (state, command) -> acting state entered; anything missing is refused.
EXPECTED = {
    ("idle", "start"): "starting",
    ("idle", "stop"): "stopping",
    ("idle", "abort"): "aborting",
    ("starting", "hold"): "holding",
    ("starting", "stop"): "stopping",
    ("starting", "abort"): "aborting",
    ("execute", "complete"): "completing",
    ("execute", "hold"): "holding",
    ("execute", "stop"): "stopping",
    ("execute", "abort"): "aborting",
    ("completing", "hold"): "holding",
    ("completing", "stop"): "stopping",
    ("completing", "abort"): "aborting",
    ("completed", "abort"): "aborting",
    ("completed", "reset"): "resetting",
    ("holding", "stop"): "stopping",
    ("holding", "abort"): "aborting",
    ("held", "unhold"): "unholding",
    ("held", "stop"): "stopping",
    ("held", "abort"): "aborting",
    ("unholding", "hold"): "holding",
    ("unholding", "stop"): "stopping",
    ("unholding", "abort"): "aborting",
    ("stopping", "abort"): "aborting",
    ("stopped", "abort"): "aborting",
    ("stopped", "reset"): "resetting",
    ("aborted", "reset"): "resetting",
    ("resetting", "stop"): "stopping",
    ("resetting", "abort"): "aborting",
}
# Acting state -> where it ends.
EXPECTED_DONE = {
    "starting": "execute",
    "completing": "completed",
    "holding": "held",
    "unholding": "execute",
    "stopping": "stopped",
    "aborting": "aborted",
    "resetting": "idle",
}
FINAL = ("completed", "stopped", "aborted")


def code(name):
    return STATE_NAMES.index(name)


def test_state_and_command_codes_are_dense_and_named():
    assert len(STATE_NAMES) == 13 and len(set(STATE_NAMES)) == 13
    assert [getattr(S, n.upper()) for n in STATE_NAMES] == list(range(13))
    assert [getattr(S, "CMD_" + n.upper()) for n in COMMAND_NAMES] == list(range(7))
    assert sorted(STATE_NAMES[s] for s in S.ACTING_STATES) == sorted(EXPECTED_DONE)


def test_the_hand_written_model_matches_the_brief():
    # abort from everything but aborting/aborted; stop from every non-final state but
    # stopping/stopped/aborting/aborted.
    for name in STATE_NAMES:
        assert ((name, "abort") in EXPECTED) == (name not in ("aborting", "aborted"))
        assert ((name, "stop") in EXPECTED) == (
            name not in FINAL and name not in ("stopping", "aborting")
        )


@pytest.mark.parametrize("state_name", STATE_NAMES)
@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_full_transition_table(state_name, command):
    changes = []
    sm = StateMachine(initial=code(state_name), on_change=lambda *a: changes.append(a))
    expected = EXPECTED.get((state_name, command))
    by_code = StateMachine(initial=code(state_name))

    result = sm.command(command, 1000)
    assert by_code.command(COMMAND_NAMES.index(command), 1000) == result

    if expected is None:
        assert result == RESULT_NOT_ALLOWED_IN_STATE
        assert sm.state_name == state_name
        assert sm.entered_ms is None
        assert changes == []
        return
    assert result == RESULT_OK
    assert sm.state_name == expected == by_code.state_name
    assert sm.entered_ms == 1000
    assert changes == [(code(state_name), code(expected), command)]
    # Every commanded state is an acting state that ends on the next tick by default.
    assert sm.is_acting()
    assert sm.tick(1100) == code(EXPECTED_DONE[expected])
    assert sm.entered_ms == 1100
    assert changes[-1] == (code(expected), code(EXPECTED_DONE[expected]), "done")


@pytest.mark.parametrize("state_name", STATE_NAMES)
def test_allowed_commands_and_table_match_behaviour(state_name):
    sm = StateMachine()
    accepted = tuple(
        c
        for c in COMMAND_NAMES
        if StateMachine(initial=code(state_name)).command(c, 0) == RESULT_OK
    )
    assert sm.allowed_commands(code(state_name)) == accepted
    assert sm.allowed_table()[state_name] == list(accepted)
    assert StateMachine(initial=code(state_name)).allowed_commands() == accepted
    assert accepted == tuple(c for c in COMMAND_NAMES if (state_name, c) in EXPECTED)


def test_allowed_table_covers_every_state():
    table = StateMachine().allowed_table()
    assert set(table) == set(STATE_NAMES)
    assert table["aborting"] == []
    assert table["aborted"] == ["reset"]


@pytest.mark.parametrize("bad", ["restart", "START", "", None, 7, -1, 2.0, True, b"start"])
def test_unknown_command_is_rejected_without_change(bad):
    changes = []
    sm = StateMachine(initial=S.EXECUTE, on_change=lambda *a: changes.append(a))
    assert sm.command(bad, 5) == RESULT_UNKNOWN
    assert sm.state == S.EXECUTE and changes == [] and sm.entered_ms is None


def test_normal_run_start_to_completed_and_back_to_idle():
    sm = StateMachine()
    assert sm.command("start", 0) == RESULT_OK and sm.state_name == "starting"
    assert sm.tick(10) == S.EXECUTE
    assert sm.tick(20) == S.EXECUTE  # stable states do not move on tick
    assert sm.command("hold", 30) == RESULT_OK
    sm.tick(40)
    assert sm.state_name == "held"
    assert sm.command("unhold", 50) == RESULT_OK
    sm.tick(60)
    assert sm.command("complete", 70) == RESULT_OK
    sm.tick(80)
    assert sm.state_name == "completed"
    assert sm.command("start", 90) == RESULT_NOT_ALLOWED_IN_STATE
    assert sm.command("reset", 100) == RESULT_OK
    sm.tick(110)
    assert sm.state_name == "idle"


def test_owner_completes_acting_states_it_lists():
    sm = StateMachine(owner_completes=(S.STARTING, S.STOPPING))
    sm.command("start", 0)
    for t in range(1, 50):
        assert sm.tick(t) == S.STARTING  # the owner has work to do: waits
    assert sm.state_complete(50) == RESULT_OK
    assert sm.state == S.EXECUTE and sm.entered_ms == 50
    assert sm.state_complete(60) == RESULT_NOT_ALLOWED_IN_STATE
    sm.command("hold", 70)
    assert sm.tick(80) == S.HELD  # holding not listed: finishes on its own
    sm.command("stop", 90)
    assert sm.tick(100) == S.STOPPING
    sm.state_complete()
    assert sm.state == S.STOPPED


def test_state_complete_outside_acting_state_is_refused():
    for s in (S.IDLE, S.EXECUTE, S.HELD, S.COMPLETED, S.STOPPED, S.ABORTED):
        sm = StateMachine(initial=s)
        assert sm.state_complete() == RESULT_NOT_ALLOWED_IN_STATE
        assert sm.state == s


def test_watchdog_reset_boots_latched_in_aborted():
    sm = StateMachine(watchdog_reset=True)
    assert sm.state_name == "aborted"
    assert sm.allowed_commands() == ("reset",)
    assert sm.command("start", 0) == RESULT_NOT_ALLOWED_IN_STATE
    assert sm.tick(1) == S.ABORTED  # the latch never clears by itself
    assert sm.command("reset", 2) == RESULT_OK
    assert sm.tick(3) == S.IDLE


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"initial": 13}, "initial"),
        ({"initial": "idle"}, "initial"),
        ({"owner_completes": (S.EXECUTE,)}, "not an acting state"),
        ({"owner_completes": (99,)}, "owner_completes"),
    ],
)
def test_constructor_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StateMachine(**kwargs)


# -- force(): the safety layer ---------------------------------------------------------


def test_trip_forces_abort_from_every_state_but_the_latch():
    for s in range(13):
        changes = []
        sm = StateMachine(initial=s, on_change=lambda *a, c=changes: c.append(a))
        applied = sm.force(S.ABORTING, "trip:overtemp", 77)
        if s in (S.ABORTING, S.ABORTED):
            assert not applied and sm.state == s and changes == []
        else:
            assert applied and sm.state == S.ABORTING and sm.entered_ms == 77
            assert changes == [(s, S.ABORTING, "trip:overtemp")]
        assert StateMachine(initial=s).force(S.ABORTED) == (s != S.ABORTED)


def test_lease_loss_holds_only_running_states():
    running = {S.STARTING, S.EXECUTE, S.COMPLETING, S.UNHOLDING}
    for s in range(13):
        sm = StateMachine(initial=s)
        assert sm.force(S.HOLDING, "lease_lost") == (s in running)
        assert sm.state == (S.HOLDING if s in running else s)
        sm = StateMachine(initial=s)
        assert sm.force(S.HELD, "lease_lost") == (s in running or s == S.HOLDING)
    # Idle must never become held: unhold would then start the module.
    sm = StateMachine()
    sm.force(S.HELD)
    assert sm.command("unhold", 0) == RESULT_NOT_ALLOWED_IN_STATE


def test_force_stop_follows_stop_rules():
    for s in range(13):
        stop_allowed = (STATE_NAMES[s], "stop") in EXPECTED
        assert StateMachine(initial=s).force(S.STOPPING) == stop_allowed
        assert StateMachine(initial=s).force(S.STOPPED) == (stop_allowed or s == S.STOPPING)


@pytest.mark.parametrize("target", [S.IDLE, S.EXECUTE, S.STARTING, S.RESETTING, 42, "aborted"])
def test_force_into_a_non_safe_state_is_a_programming_error(target):
    with pytest.raises(ValueError, match="force target"):
        StateMachine().force(target)


# -- random sequences ----------------------------------------------------------------------

operation = st.one_of(
    st.tuples(st.just("command"), st.sampled_from(COMMAND_NAMES + ("bogus", 9))),
    st.tuples(st.just("command_code"), st.integers(-2, 8)),
    st.tuples(st.just("tick")),
    st.tuples(st.just("complete")),
    st.tuples(
        st.just("force"),
        st.sampled_from((S.ABORTING, S.ABORTED, S.HOLDING, S.HELD, S.STOPPING, S.STOPPED)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    initial=st.integers(0, 12),
    owner=st.sets(st.sampled_from(S.ACTING_STATES)),
    ops=st.lists(operation, max_size=80),
)
def test_random_sequences_stay_defined_and_rejections_change_nothing(initial, owner, ops):
    changes = []
    sm = StateMachine(
        initial=initial, owner_completes=tuple(owner), on_change=lambda *a: changes.append(a)
    )
    for t, op in enumerate(ops):
        before = sm.state
        before_entered = sm.entered_ms
        before_changes = len(changes)
        kind = op[0]
        if kind in ("command", "command_code"):
            result = sm.command(op[1], t)
            name = op[1] if kind == "command" else None
            if kind == "command_code" and 0 <= op[1] < 7:
                name = COMMAND_NAMES[op[1]]
            if name not in COMMAND_NAMES:
                assert result == RESULT_UNKNOWN
            elif name in sm.allowed_commands(before):
                assert result == RESULT_OK
                assert STATE_NAMES[sm.state] == EXPECTED[(STATE_NAMES[before], name)]
            else:
                assert result == RESULT_NOT_ALLOWED_IN_STATE
            changed = result == RESULT_OK
        elif kind == "tick":
            sm.tick(t)
            changed = STATE_NAMES[before] in EXPECTED_DONE and before not in owner
        elif kind == "complete":
            changed = sm.state_complete(t) == RESULT_OK
            assert changed == (STATE_NAMES[before] in EXPECTED_DONE)
        else:
            changed = sm.force(op[1], "safety", t)
        assert 0 <= sm.state < len(STATE_NAMES)
        assert sm.state_name == STATE_NAMES[sm.state]
        if changed:
            assert sm.state != before
            assert changes[-1][:2] == (before, sm.state)
            assert len(changes) == before_changes + 1 and sm.entered_ms == t
        else:
            assert sm.state == before and sm.entered_ms == before_entered
            assert len(changes) == before_changes
        if kind == "tick" and changed:
            assert STATE_NAMES[sm.state] == EXPECTED_DONE[STATE_NAMES[before]]
    # The reported changes form one unbroken chain.
    for (_, new, _), (old, _, _) in zip(changes, changes[1:], strict=False):
        assert new == old


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.sampled_from(COMMAND_NAMES + ("tick",)), max_size=60))
def test_abort_latch_only_clears_by_reset(ops):
    sm = StateMachine(watchdog_reset=True)
    for t, op in enumerate(ops):
        was = sm.state
        if op == "tick":
            sm.tick(t)
        else:
            sm.command(op, t)
        if was == S.ABORTED and sm.state != S.ABORTED:
            assert op == "reset" and sm.state == S.RESETTING
