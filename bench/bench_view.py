"""The live view's budgets (issue 16), with 20 modules at 10 Hz telemetry.

The line is ``bench/viewfeed.py``'s synthetic 20-module line (a generated line file; real
BIRTH and TELEMETRY payloads from the modules' own firmware and the protocol's codec).
The coordinator's side of the view (``LiveLine``, the view's hub, the Starlette app under
uvicorn) runs in its own process, fed where the coordinator's bus feeds it
(``bench/viewserver.py``).  Two server processes, one after the other:

1. **CPU and the stalled viewer** (no browser running):
   * ``window_s`` (60 s) of telemetry with no viewer, then the same with 10 SSE viewers
     reading everything (``bench/viewclients.py``, their own process).  The server
     process's CPU time (all threads) over each window; the extra for 10 viewers as % of
     one core, target < 5 %.  Peer: the same feed with no viewer, in the same run.
   * ``stall_s`` (20 s) with one viewer that never reads.  The time the view's step
     adds to the coordinator's tick (the path of its leases and commands) and the ticks'
     lateness, against the no-viewer window; the stalled viewer's queue length (bounded by
     the hub's queue size) and its dropped messages.
2. **The page** in Debian's Chromium (Playwright), with the first process stopped:
   * an hour of data fast-forwarded (simulated times ending where the wall clock is, so
     the page's "last hour" is the fed hour however it trims), fed as fast as the page
     takes it (the feeder waits every 10 simulated seconds until the viewers' queues are
     empty, so the page gets every sample); the used JS heap after a forced GC, target
     <= 200 MB;
   * 10 more minutes fast-forwarded the same way; the heap again: no growth (target:
     at most 5 % over the heap after the hour, as GC noise);
   * a second tab opened on that hour (the history arrives with the page's first
     message): its long tasks in its first 5 s, target none over 50 ms, as an operator
     opening the view an hour into a run meets them;
   * then ``window_s`` of live telemetry with the hour in the page: every main-thread task
     over 50 ms (``longtask`` entries), target none.

The machine is shared: the page, the server process, the viewers and anything else
running compete for its cores; long tasks and CPU shares are those of a loaded machine
when it is loaded (``machine_load`` is recorded beside them).

``python -m bench.bench_view [--quick]`` prints the records as JSON (``--quick``: short
windows, 3 simulated minutes instead of the hour; a smoke run, not a measurement).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import record
from bench.viewclients import PageProbe, ReadingViewers, StalledViewer
from bench.viewfeed import PERIOD_MS, RATE_HZ, write_line
from bench.viewserver import ViewProcess

VIEWERS = 10
HEAP_BUDGET_MB = 200
CPU_BUDGET_PCT = 5
LONGTASK_MS = 50
GROWTH_LIMIT = 1.05
FILL_MAX_S = 60.0
OPEN_SETTLE_S = 5.0

FULL = {"window_s": 60.0, "stall_s": 20.0, "hour_s": 3600, "more_s": 600, "quick": False}
QUICK = {"window_s": 4.0, "stall_s": 3.0, "hour_s": 180, "more_s": 60, "quick": True}


def _log(text: str) -> None:
    print(f"bench_view: {text}", file=sys.stderr, flush=True)


def _load() -> float:
    return os.getloadavg()[0]


# --- 1. CPU and the stalled viewer ---------------------------------------------------------


def cpu_and_stall(line_path: Path, cfg: dict) -> dict:
    """The windows of part 1 on one server process."""
    server = ViewProcess(line_path)
    try:
        server.call("births", int(time.time() * 1000))
        server.call("live", 2.0)  # warm up: first snapshots, caches, JIT-free steady state
        _log(f"{cfg['window_s']:g} s with no viewer ...")
        alone = server.call("live", cfg["window_s"])
        _log(f"{cfg['window_s']:g} s with {VIEWERS} reading viewers ...")
        viewers = ReadingViewers(server.url + "/events", VIEWERS)
        try:
            watched = server.call("live", cfg["window_s"])
        finally:
            read = viewers.stop()
        _log(f"{cfg['stall_s']:g} s with one stalled viewer ...")
        stalled_viewer = StalledViewer(server.url + "/events")
        try:
            # The kernel buffers megabytes in front of a stalled socket before the
            # server's writes block and the hub's queue fills: get there fast.
            fill = server.call("fill", FILL_MAX_S)
            stalled = server.call("live", cfg["stall_s"])
        finally:
            stalled_viewer.close()
        return {
            "alone": alone,
            "watched": watched,
            "read": read,
            "stalled": stalled,
            "fill": fill,
            "load": _load(),
        }
    finally:
        server.stop()


# --- 2. the page -------------------------------------------------------------------------------


def page_budgets(line_path: Path, cfg: dict, screenshot: Path | None = None) -> dict:
    """Part 2 on a second server process and a real page."""
    server = ViewProcess(line_path)
    probe = None
    try:
        hour_ticks = cfg["hour_s"] * RATE_HZ
        more_ticks = cfg["more_s"] * RATE_HZ
        # Simulated time ends at the wall clock when the feed is done (estimated; the
        # live window afterwards continues on the wall clock).
        first_ms = int(time.time() * 1000) - (hour_ticks + more_ticks) * PERIOD_MS
        server.call("births", first_ms)
        probe = PageProbe()
        probe.open(server.url + "/")
        probe.wait(2.0)
        _log(f"fast-forwarding {cfg['hour_s']} s of data into the page ...")
        hour = server.call("fast", hour_ticks, True)
        probe.wait(2.0)
        heap_hour = probe.heap_mb()
        _log(f"heap after the hour {heap_hour:.1f} MB; {cfg['more_s']} s more ...")
        more = server.call("fast", more_ticks, True)
        probe.wait(2.0)
        heap_more = probe.heap_mb()
        _log(f"heap after {cfg['more_s']} s more {heap_more:.1f} MB; a page opened now ...")
        opening = probe.opening_longtasks(server.url + "/", OPEN_SETTLE_S)
        _log("live window ...")
        probe.reset_longtasks()
        live = server.call("live", cfg["window_s"])
        longtasks = probe.longtasks()
        if screenshot is not None:
            probe.screenshot(screenshot)
        return {
            "hour": hour,
            "more": more,
            "heap_hour_mb": heap_hour,
            "heap_more_mb": heap_more,
            "live": live,
            "longtasks": longtasks,
            "opening": opening,
            "page_errors": list(probe.errors),
            "load": _load(),
        }
    finally:
        if probe is not None:
            probe.close()
        server.stop()


# --- records ---------------------------------------------------------------------------------


def _cpu_records(part: dict, window_s: float) -> list[dict]:
    alone = 100.0 * part["alone"]["cpu_share"]
    watched = 100.0 * part["watched"]["cpu_share"]
    return [
        record(
            f"view.cpu_pct_{VIEWERS}_viewers",
            watched,
            f"% of one core, server process, {window_s:g} s at 20 modules x {RATE_HZ} Hz",
            peer="the same feed with no viewer",
            peer_value=alone,
        ),
        record(
            f"view.cpu_extra_pct_{VIEWERS}_viewers",
            watched - alone,
            "% of one core more than with no viewer",
            target=f"<{CPU_BUDGET_PCT}",
        ),
    ]


def _stall_records(part: dict) -> list[dict]:
    alone, stalled = part["alone"], part["stalled"]
    queues = stalled["queues"]
    longest = max((q["max_length"] for q in queues), default=0)
    bound = max((q["maxlen"] for q in queues), default=0)
    return [
        record(
            "view.stalled_step_p99_ms",
            stalled["step_ms"]["p99"],
            "ms the view's step adds to the coordinator's tick (p99), one viewer never reading",
            peer="the same feed with no viewer",
            peer_value=alone["step_ms"]["p99"],
            target="<=2.0x",
        ),
        record(
            "view.stalled_tick_late_p99_ms",
            stalled["tick_late_ms"]["p99"],
            "ms the feed's 10 Hz ticks ran late (p99), one viewer never reading",
            peer="the same feed with no viewer",
            peer_value=alone["tick_late_ms"]["p99"],
        ),
        record(
            "view.stalled_queue_max",
            longest,
            f"messages queued for the stalled viewer (queue bound {bound})",
            target=f"<={bound}" if bound else None,
        ),
        record(
            "view.stalled_dropped",
            sum(q["dropped"] for q in queues),
            "oldest messages dropped for the stalled viewer",
        ),
    ]


def _page_records(part: dict, cfg: dict) -> list[dict]:
    lt = part["longtasks"]
    hour = f"{cfg['hour_s'] / 60:g} min"
    return [
        record(
            "view.longtasks_over_50ms",
            lt["count"],
            f"main-thread tasks > {LONGTASK_MS} ms in {cfg['window_s']:g} s live, "
            f"{hour} of data in the page",
            target="<=0",
        ),
        record("view.longtask_max_ms", lt["max_ms"], "ms (0: none over 50 ms)"),
        record(
            "view.opening_longtask_max_ms",
            part["opening"]["max_ms"],
            f"ms, longest task opening the page on {hour} of history (0: none over 50 ms)",
            target=f"<={LONGTASK_MS}",
        ),
        record(
            "view.opening_longtasks_ms_total",
            part["opening"]["total_ms"],
            f"ms in tasks over 50 ms, the first {OPEN_SETTLE_S:g} s of a page opened then",
        ),
        record(
            "view.heap_mb_after_hour",
            part["heap_hour_mb"],
            f"MB used JS heap after forced GC, {hour} of data fast-forwarded",
            target=f"<={HEAP_BUDGET_MB}",
        ),
        record(
            "view.heap_mb_after_more",
            part["heap_more_mb"],
            f"MB after {cfg['more_s'] / 60:g} more min",
            peer="the heap after the hour",
            peer_value=part["heap_hour_mb"],
            target=f"<={GROWTH_LIMIT}x",
        ),
    ]


def measure(cfg: dict, screenshot: Path | None = None) -> dict:
    """Both parts; the raw measurements."""
    with tempfile.TemporaryDirectory(prefix="viewbench-") as tmp:
        line_path = write_line(Path(tmp))
        cpu = cpu_and_stall(line_path, cfg)
        page = page_budgets(line_path, cfg, screenshot)
    return {"cpu": cpu, "page": page}


def records(raw: dict, cfg: dict) -> list[dict]:
    out = _cpu_records(raw["cpu"], cfg["window_s"]) + _stall_records(raw["cpu"])
    out += _page_records(raw["page"], cfg)
    out.append(
        record(
            "view.machine_load",
            max(raw["cpu"]["load"], raw["page"]["load"]),
            f"1-min load average on {os.cpu_count()} cores (other work on the machine)",
        )
    )
    return out


def run(quick: bool = False) -> list[dict]:
    cfg = QUICK if quick else FULL
    raw = measure(cfg)
    _log(json.dumps(raw, default=str)[:4000])
    return records(raw, cfg)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
