"""The campaign strategies (host/campaign/strategies.py): every kind seeded and
reproducible, resumable through state()/restore(), designed screens ordered for the line,
refused conditions told back without using the budget."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from host.campaign.strategies import (
    KINDS,
    Objective,
    Variable,
    make_strategy,
    order_for_line,
)

VARS = [
    Variable("temperature_c", 40.0, 140.0),
    Variable("residence_time_min", 1.0, 20.0),
    Variable("equivalents", 1.0, 3.0),
]
YIELD = [Objective("yield", "max")]


def response(cond: dict) -> float:
    """A smooth hill with its top inside the box (the tests need a response, not chemistry)."""
    return math.exp(
        -(((cond["temperature_c"] - 85.0) / 30.0) ** 2)
        - ((cond["residence_time_min"] - 9.0) / 6.0) ** 2
        - ((cond["equivalents"] - 1.7) / 0.8) ** 2
    )


def run(strategy, n=None, refuse=lambda c: None):
    """Ask/tell up to ``n`` times (None: until done); the conditions asked."""
    asked = []
    while n is None or len(asked) < n:
        cond = strategy.ask()
        if cond is None:
            break
        asked.append(cond)
        reason = refuse(cond)
        if reason:
            strategy.tell(cond, None, "infeasible", reason)
        else:
            strategy.tell(cond, {"yield": response(cond)})
    return asked


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seed_gives_the_same_sequence(kind):
    first = run(make_strategy(kind, VARS, YIELD, seed=7, budget_experiments=12))
    again = run(make_strategy(kind, VARS, YIELD, seed=7, budget_experiments=12))
    other = run(make_strategy(kind, VARS, YIELD, seed=8, budget_experiments=12))
    assert first == again and len(first) == 12
    for cond in first:
        for v in VARS:
            assert v.lo <= cond[v.name] <= v.hi
    if kind != "factorial":  # the factorial design has no randomness to seed
        assert first != other


@pytest.mark.parametrize("kind", KINDS)
def test_state_and_restore_continue_exactly_where_it_stopped(kind):
    whole = make_strategy(kind, VARS, YIELD, seed=3, budget_experiments=14)
    expected = run(whole)
    part = make_strategy(kind, VARS, YIELD, seed=3, budget_experiments=14)
    done = run(part, n=8)
    pending = part.ask()  # asked, then the campaign was interrupted before the result
    saved = json.loads(json.dumps(part.state()))
    resumed = make_strategy(kind, VARS, YIELD, seed=3, budget_experiments=14)
    resumed.restore(saved)
    assert resumed.ask() == pending  # the unfinished experiment is asked again
    rest = run(resumed)
    assert done + rest == expected  # and nothing finished is repeated
    assert resumed.best() == whole.best()
    with pytest.raises(ValueError, match="seed"):
        make_strategy(kind, VARS, YIELD, seed=4, budget_experiments=14).restore(saved)


def test_a_bayes_study_finds_the_top_of_a_hill_better_than_random():
    def best_after(kind, seed):
        s = make_strategy(kind, VARS, YIELD, seed=seed, budget_experiments=25)
        run(s)
        return s.best_record()["results"]["yield"]

    bayes = sorted(best_after("bayes", s) for s in range(5))
    rnd = sorted(best_after("random", s) for s in range(5))
    assert bayes[2] > rnd[2] and bayes[2] > 0.9  # medians over five seeds


def _changes(seq, names):
    """Changes between consecutive conditions: how often each variable moves, and the
    temperature's total travel (cooling a block is the slowest thing on the line)."""
    moves = {n: sum(1 for a, b in itertools.pairwise(seq) if a[n] != b[n]) for n in names}
    travel = sum(abs(a["temperature_c"] - b["temperature_c"]) for a, b in itertools.pairwise(seq))
    return moves, travel


def test_factorial_ordering_saves_changes_and_heats_only_upwards():
    # Listed with temperature last, itertools.product would change it at every step.
    variables = list(reversed(VARS))
    s = make_strategy("factorial", variables, YIELD, seed=0, budget_experiments=100)
    seq = run(s)
    assert len(seq) == 27 and len({tuple(sorted(c.items())) for c in seq}) == 27
    naive = make_strategy("factorial", variables, YIELD, 0, 100, order=False).design
    moves, travel = _changes(seq, [v.name for v in VARS])
    naive_moves, naive_travel = _changes(naive, [v.name for v in VARS])
    assert moves["temperature_c"] == 2 and naive_moves["temperature_c"] == 26
    assert travel == 100.0 < naive_travel
    assert sum(moves.values()) < sum(naive_moves.values())
    temps = [c["temperature_c"] for c in seq]
    assert temps == sorted(temps)  # heat up only: the block cools slowly
    # Serpentine: within a temperature the residence time turns around, not jumps back.
    assert moves["residence_time_min"] == 6  # 2 steps per temperature, 0 at its changes


def test_order_for_line_bins_a_continuous_design():
    s = make_strategy("lhs", VARS, YIELD, seed=1, budget_experiments=16)
    unordered = make_strategy("lhs", VARS, YIELD, seed=1, budget_experiments=16, order=False)
    assert sorted(map(str, s.design)) == sorted(map(str, unordered.design))
    _, travel = _changes(s.design, [v.name for v in VARS])
    _, travel_unordered = _changes(unordered.design, [v.name for v in VARS])
    assert travel < travel_unordered / 2
    assert order_for_line([], VARS) == []


@pytest.mark.parametrize("kind", KINDS)
def test_infeasible_conditions_are_told_back_and_do_not_use_the_budget(kind):
    def too_hot(c):
        return "above the trip limit - 10 K" if c["temperature_c"] > 120.0 else None

    s = make_strategy(kind, VARS, YIELD, seed=5, budget_experiments=10)
    asked = run(s, refuse=too_hot)
    refused = [r for r in s.history if r["status"] == "infeasible"]
    assert s.ran() == sum(1 for r in s.history if r["status"] == "ok")
    assert all(r["reason"] == "above the trip limit - 10 K" for r in refused)
    assert all(r["condition"]["temperature_c"] > 120.0 for r in refused)
    assert s.best()["temperature_c"] <= 120.0
    if kind == "factorial":
        assert s.ran() == 10 and len(refused) == 0  # its ten first are all at 40 or 90 degC
    elif kind == "lhs":
        assert s.ran() + len(refused) == len(asked) == 10  # the design is the design
    else:
        assert s.ran() == 10 and len(asked) == 10 + len(refused)  # refusals do not count


def test_a_refused_condition_teaches_bayes_to_stay_away():
    def refuse(c):
        return "boils" if c["temperature_c"] > 115.0 else None

    s = make_strategy("bayes", VARS, YIELD, seed=2, budget_experiments=30, startup=5)
    run(s, refuse=refuse)
    late = s.history[-20:]
    # A quarter of the box is refused; uniform sampling would hit it 5 times in 20.
    assert sum(r["status"] == "infeasible" for r in late) <= 2  # it learnt where they are
    assert s.best_record()["results"]["yield"] > 0.9


def test_tell_must_answer_the_last_ask_and_name_every_objective():
    s = make_strategy(
        "random", VARS, [Objective("yield"), Objective("reagent_per_gram", "min")], 1, 5
    )
    cond = s.ask()
    assert s.ask() == cond  # not told yet: the same again
    with pytest.raises(ValueError, match="lack the objectives reagent_per_gram"):
        s.tell(cond, {"yield": 0.5})
    with pytest.raises(ValueError, match="does not answer"):
        s.tell(dict(cond, equivalents=2.999), {"yield": 0.5, "reagent_per_gram": 1.0})
    with pytest.raises(ValueError, match="status"):
        s.tell(cond, None, "skipped")
    s.tell(cond, None, "failed", "over_temperature trip")
    assert s.history[-1]["status"] == "failed" and s.ran() == 1


def test_several_objectives_give_a_pareto_front():
    objectives = [Objective("yield", "max"), Objective("reagent_per_gram", "min")]
    for sampler in ("tpe", "nsga2"):
        s = make_strategy("bayes", VARS, objectives, 4, 15, sampler=sampler)
        while (cond := s.ask()) is not None:
            s.tell(cond, {"yield": response(cond), "reagent_per_gram": cond["equivalents"]})
        front = s.pareto()
        assert front and len(s.history) == 15
        for a in front:
            for b in front:
                worse = b["results"]["yield"] < a["results"]["yield"]
                more = b["results"]["reagent_per_gram"] > a["results"]["reagent_per_gram"]
                assert not (worse and more)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="one of factorial, lhs, random, bayes"):
        make_strategy("grid", VARS, YIELD, 0, 5)
    with pytest.raises(ValueError, match="direction"):
        Objective("yield", "up")
    with pytest.raises(ValueError, match="lo 5.0 > hi 1.0"):
        make_strategy("random", [Variable("equivalents", 5.0, 1.0)], YIELD, 0, 5)
    assert Variable("x", 0.0, 1.0, levels=(0.0, 0.25, 1.0)).level_values() == [0.0, 0.25, 1.0]
