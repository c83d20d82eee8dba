"""The PID and the state machine give the same results under real MicroPython as on
CPython, for one scripted scenario that exercises ramp, sample gating, the tick wrap, a
lease-loss hold with bumpless return to auto, a tuning change, bad measurements and an
owner-completed stop.

Both interpreters here compute in double precision, so the tolerance is 1e-9 relative.
Boards (rp2, ESP32) use single-precision floats: comparing on-board logs with CPython
needs about 1e-5 relative instead.
"""

import contextlib
import io

import pytest

from tools.micropython import run_node

SCENARIO = """
from edge.clock import TICKS_PERIOD, ticks_wrap
from edge.pid import PID
from edge import states as S


def on_change(old, new, cause):
    print("change", S.STATE_NAMES[old], S.STATE_NAMES[new], cause)


sm = S.StateMachine(owner_completes=(S.STOPPING,), on_change=on_change)
pid = PID(2.0, 0.4, 0.3, 0.0, 100.0, 0.0, 150.0, ramp_rate=1.5, sample_ms=100, setpoint=60.0)
pid.set_manual(0.0)
y = 20.0
base = TICKS_PERIOD - 20000  # the tick counter wraps about 20 s into the run
print("start", sm.command("start", ticks_wrap(base)))
for k in range(420):
    now = ticks_wrap(base + 100 * k + (k % 3) * 2)  # jitter: some steps are gated
    state = sm.tick(now)
    if k == 150:
        print("force", sm.force(S.HOLDING, "lease_lost", now))
    if k == 190:
        print("unhold", sm.command("unhold", now), sm.command("start", now))
    if k == 250:
        print("setpoint", pid.set_setpoint(90.0), pid.set_setpoint(151.0))
        print("tunings", pid.set_tunings(3.0, 0.5, 0.2), pid.set_tunings(-1.0, 0.0, 0.0))
    if k == 380:
        print("stop", sm.command("stop", now))
    if k == 395:
        print("stopped", sm.state_complete(now))
    state = sm.state
    if state == S.EXECUTE and not pid.auto:
        pid.set_auto(now)
    elif state != S.EXECUTE and pid.auto:
        pid.set_manual(0.0 if state in (S.STOPPING, S.STOPPED) else None)
    measured = float("nan") if 300 <= k < 303 else y
    out = pid.update(measured, now)
    applied = 0.0 if out is None else out  # the module's safe output
    y += 0.05 * applied - 0.02 * (y - 20.0)
    print(k, sm.state_name, repr(out), repr(pid.setpoint), repr(pid.integral), repr(y))
print("end", sm.state_name, sm.allowed_commands())
"""


def run_on_cpython(code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__name__": "__main__"})
    return out.getvalue()


def close(a, b):
    if a == b:
        return True
    try:
        return float(a) == pytest.approx(float(b), rel=1e-9, abs=1e-12)
    except ValueError:
        return False


def test_pid_and_state_machine_scenario_matches_cpython():
    expected = run_on_cpython(SCENARIO).splitlines()
    got = run_node(SCENARIO, packages=("protocol", "edge")).splitlines()

    assert len(got) == len(expected)
    for got_line, expected_line in zip(got, expected, strict=True):
        got_tokens, expected_tokens = got_line.split(), expected_line.split()
        assert len(got_tokens) == len(expected_tokens), (got_line, expected_line)
        assert all(close(a, b) for a, b in zip(got_tokens, expected_tokens, strict=True)), (
            got_line,
            expected_line,
        )

    # The scenario really went where it was meant to (so a silent no-op cannot pass).
    text = "\n".join(expected)
    assert "change idle starting start" in text
    assert "change execute holding lease_lost" in text
    assert "change held unholding unhold" in text
    assert "unhold 0 2" in text and "setpoint 0 1" in text and "tunings 0 1" in text
    assert "change stopping stopped done" in text
    assert expected[-1] == "end stopped ('abort', 'reset')"
    steps = [line.split() for line in expected if line.split()[0].isdigit()]
    assert [s[2] for s in steps[300:303]] == ["None"] * 3
    outputs = [float(s[2]) for s in steps if s[2] != "None"]
    assert 0.0 < max(outputs) <= 100.0 and len(set(outputs)) > 100
