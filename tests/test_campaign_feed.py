"""``Sequencer.feed`` (the one sequencer change the campaigns need): a running recipe is
extended at a phase boundary by a feeder; None holds it there, [] lets it go on; a
shutdown never asks the feeder.  Against tests/test_sequencer.py's fake LineAccess."""

from __future__ import annotations

from host.recipe import Setpoint, Step, ValueRef, Wait
from tests.test_sequencer import at_temperature, started


def _step(name, flow):
    sp = Setpoint("pump_a", "flow", ValueRef(number=flow, text=str(flow)), "x")
    return Step(name, "x", sets=(sp,), wait=Wait(seconds=5))


class Feeder:
    def __init__(self, batches):
        self.batches = list(batches)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.batches.pop(0) if self.batches else []


def test_the_feeder_extends_the_recipe_before_the_named_phase(tmp_path):
    seq, access, clock = started()
    at_temperature(access)
    feeder = Feeder([None, [("exp-1", _step("one", 1.5))], [("exp-2", _step("two", 2.5))]])
    seq.feed("collect", feeder)
    assert clock.run(60, until=lambda: seq.phase == "exp-1")
    assert feeder.calls == 2  # None held the recipe for a tick, then steps came
    assert clock.run(60, until=lambda: seq.phase == "collect")
    flows = [c[2]["value"] for c in access.commands() if c[2].get("channel") == "flow"]
    assert flows[-2:] == [1.5, 2.5]
    assert feeder.calls == 4  # the last answer, [], let the recipe go on
    phases = [p["phase"] for p in seq.phase_log()]
    assert phases == ["start", "heat", "exp-1", "exp-2", "collect"]


def test_a_shutdown_never_asks_the_feeder():
    seq, access, clock = started()
    feeder = Feeder([[("exp-1", _step("one", 1.5))]])
    seq.feed("collect", feeder)
    seq.on_trip("pump_a", "over_pressure", 0)
    clock.run(30)
    assert feeder.calls == 0
    assert seq.state == "aborted"
