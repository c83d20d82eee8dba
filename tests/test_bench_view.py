"""The live view benchmark (bench/bench_view.py): its synthetic line is a real line with
real payloads, and a quick run yields every budget record in bench/results.json's shape.

The quick run is a smoke test of the harness (short windows, three simulated minutes),
not a measurement: the budgets themselves are judged by ``make bench``.
"""

import shutil

import pytest

from bench.run import FIELDS, judge
from bench.viewfeed import PERIOD_MS, SyntheticLine, write_line
from line.loader import load_line
from protocol import host_messages

pytestmark = pytest.mark.xdist_group("view-bench")

BUDGETS = {
    "view.cpu_extra_pct_10_viewers",
    "view.stalled_step_p99_ms",
    "view.stalled_queue_max",
    "view.longtasks_over_50ms",
    "view.opening_longtask_max_ms",
    "view.heap_mb_after_hour",
    "view.heap_mb_after_more",
}


def test_the_synthetic_line_is_a_valid_line_of_20_modules_with_real_payloads(tmp_path):
    path = write_line(tmp_path)
    line = load_line(path)
    assert len(line.modules) == 20
    assert {m.kind for m in line.modules.values()} == {
        "pump",
        "reactor",
        "analyzer",
        "bpr",
        "valve",
    }
    synthetic = SyntheticLine(path)
    births = dict(synthetic.births())
    channels = {}
    for mid in line.modules:
        birth = host_messages.parse_birth(births[f"skid/v1/{line.id}/{mid}/birth"])
        assert birth.module_id == mid
        channels[mid] = birth.channels
    t_ms = 1_790_000_000_000
    first = synthetic.telemetry(0, t_ms)
    later = synthetic.telemetry(150, t_ms + 150 * PERIOD_MS)
    assert [topic for topic, _ in first] == [f"skid/v1/{line.id}/{m}/data" for m in line.modules]
    moved = 0
    for (topic, a), (_, b) in zip(first, later, strict=True):
        mid = topic.split("/")[3]
        ta = host_messages.parse_telemetry(a, channels[mid])
        tb = host_messages.parse_telemetry(b, channels[mid])
        assert (ta.t_ms, tb.t_ms) == (t_ms, t_ms + 150 * PERIOD_MS)
        assert len(ta.values) == len(channels[mid])
        moved += sum(1 for x, y in zip(ta.values, tb.values, strict=True) if x != y)
    assert moved >= synthetic.channels // 2  # the trends move


@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("/usr/bin/chromium")),
    reason="the view benchmark needs Debian's chromium",
)
def test_a_quick_run_gives_every_budget_record_judged():
    from bench.bench_view import run

    records = run(quick=True)
    names = {r["name"] for r in records}
    assert BUDGETS <= names
    for r in records:
        assert set(FIELDS) <= set(r), r
        assert isinstance(r["value"], int | float), r
    for r in records:
        if r["name"] in BUDGETS:
            assert judge(r) in (True, False), r  # every budget can be judged mechanically
    by_name = {r["name"]: r for r in records}
    assert 0 < by_name["view.heap_mb_after_hour"]["value"] < 2000
    assert by_name["view.stalled_queue_max"]["value"] >= 0
