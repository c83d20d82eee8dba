"""bench/bench_campaign.py: the campaigns stop when the true yield at the recommended
condition reaches the threshold (the strategy then has no more conditions), never
earlier; the grid notes it and goes on."""

from bench.bench_campaign import CAMPAIGN, LINE, StopAt, campaign_for, feed_line
from host.campaign.model import load_campaign
from host.campaign.session import make_campaign_strategy
from line.kinetics import from_line
from line.loader import load_line

KINETICS = from_line(load_line(LINE))


def strategy(kind: str, threshold, keep_going=False) -> StopAt:
    campaign = campaign_for(load_campaign(CAMPAIGN), kind, 3, 10)
    return StopAt(make_campaign_strategy(campaign), KINETICS, threshold, keep_going)


def told(s: StopAt) -> dict:
    cond = s.ask()
    s.tell(cond, {"yield": KINETICS.yield_at(cond)})  # the model's, as if measured
    return cond


def test_no_more_conditions_once_the_recommended_condition_reaches_the_threshold():
    s = strategy("random", None)
    first = told(s)
    s.threshold = KINETICS.yield_at(first) + 1.0  # unreachable: it goes on
    assert s.reached_after is None and s.ask() is not None
    s.tell(s.ask(), {"yield": 0.0})  # worse than the first: the first stays recommended
    assert s.true_best == KINETICS.yield_at(first)
    s.threshold = KINETICS.yield_at(first)  # now reached by the recommended one
    told(s)
    assert s.reached_after == 3
    assert s.ask() is None


def test_the_grid_notes_the_threshold_and_runs_on():
    s = strategy("factorial", 0.0, keep_going=True)
    told(s)
    assert s.reached_after == 1
    assert s.ask() is not None


def test_the_bench_line_has_larger_feeds(tmp_path):
    line = load_line(feed_line(tmp_path, 5000.0))
    feeds = [m.params["feed_volume_ml"] for m in line.modules.values() if m.kind == "pump"]
    assert feeds and all(f == 5000.0 for f in feeds)
