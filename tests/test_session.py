"""The one run orchestration (host.session.run_recipe) and its pieces: what a progress
line shows, the broker-mode clock, and a site closed whatever happens.

The end-to-end runs through it are in tests/test_coordinator.py (in process) and
tests/test_run_broker.py (over a broker).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from host.dryrun import EmulationClock, InProcessSite
from host.recipe import load_recipe
from host.session import (
    SharedClock,
    Site,
    prepare,
    run_recipe,
    status_line,
    status_signals,
)
from line.loader import load_line

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
DEMO = ROOT / "examples" / "recipes" / "demo.toml"
QUICK = ROOT / "examples" / "recipes" / "quick.toml"


def test_status_signals_are_the_recipes_waits_and_the_head_pressure_in_line_order():
    line = load_line(LINE)
    # demo.toml waits on bpr1.pressure, reactor1.temperature and (steady) uv1.uv; the
    # head pressure is the first pump's (pump_a), not pump_b's.
    assert status_signals(line, load_recipe(DEMO)) == [
        ("pump_a", "pressure"),
        ("reactor1", "temperature"),
        ("bpr1", "pressure"),
        ("uv1", "uv"),
    ]
    # Without a recipe only the head pressure is left.
    assert status_signals(line, None) == [("pump_a", "pressure")]


def test_status_signals_follow_the_line_not_the_demos_names(tmp_path):
    renamed = tmp_path / "renamed.toml"
    renamed.write_text(re.sub(r"\bpump_a\b", "feed1", LINE.read_text()))
    line = load_line(renamed)
    assert status_signals(line, None) == [("feed1", "pressure")]


def _coord(values: dict, trips=()):
    seq = SimpleNamespace(
        state="running",
        phase="heat",
        progress=lambda now: {"phase": "heat", "step": "warm", "residence_times": 1.25},
    )
    return SimpleNamespace(
        started_ms=1000,
        sequencer=seq,
        phase="running",
        trips=list(trips),
        access=SimpleNamespace(value=lambda mid, ch: values.get(f"{mid}.{ch}")),
    )


def test_status_line_shows_the_signals_with_a_value_in_order():
    coord = _coord({"reactor1.temperature": 79.456, "uv1.uv": 0.8})
    signals = [("pump_a", "pressure"), ("reactor1", "temperature"), ("uv1", "uv")]
    assert status_line(coord, 31_000, signals) == (
        "t=   30.0 s  running: heat  [warm]  1.2 residence times  "
        "reactor1.temperature=79.46 uv1.uv=0.80"
    )
    tripped = _coord({}, trips=[object()])
    assert status_line(tripped, 1000, signals).endswith("[warm]  1.2 residence times  trips: 1")


def test_the_shared_clock_is_simulated_ms_since_the_epoch_and_host_time_follows_it():
    epoch = time.time() - 2.0
    clock = SharedClock(epoch, 10.0, poll_s=0.0)
    before = clock.now_ms()
    clock.advance()
    host = clock.host_ms()
    after = clock.now_ms()
    assert 20_000 <= before <= after <= 21_000
    assert int(epoch * 1000) + before <= host <= int(epoch * 1000) + after


class _Site(Site):
    """A site whose record cannot be opened (a resume of a run that does not exist)."""

    def __init__(self):
        self.line_id = "demo"
        self.clock = SimpleNamespace(now_ms=lambda: 0, host_ms=lambda: 0, advance=lambda: None)
        self.transport = None
        self.hashes = {}
        self.metadata = {}
        self.resume = "no-such-run"
        self.closed: list[bool] = []

    def close(self, clean: bool) -> None:
        self.closed.append(clean)


def test_a_run_that_cannot_open_its_record_still_closes_its_site(tmp_path):
    prep = prepare(LINE, QUICK)
    site = _Site()
    with pytest.raises(Exception):  # noqa: B017 - whatever RunRecord.open raises
        run_recipe(prep, site, runs_dir=tmp_path)
    assert site.closed == [False]


def test_the_in_process_site_runs_the_recipe_on_the_emulations_clock(tmp_path):
    prep = prepare(LINE, QUICK)
    said: list[str] = []
    site = InProcessSite(prep.line, said.append, recipe_name=prep.recipe.name, seed=0)
    assert isinstance(site.clock, EmulationClock) and site.clock.now_ms() == 0
    seen = []
    summary = run_recipe(
        prep,
        site,
        runs_dir=tmp_path,
        log=said.append,
        on_tick=lambda coord, plant: seen.append(plant.now_ms),
    )
    assert summary.outcome == "completed" and summary.all_safe_at_end is True
    assert said[0].startswith("skid: run ") and said[0].endswith(", recipe " + prep.recipe.name)
    # One emulation step per turn: on_tick sees the clock advance by the emulation's tick.
    assert seen[:3] == [site.emu.tick_ms, 2 * site.emu.tick_ms, 3 * site.emu.tick_ms]
