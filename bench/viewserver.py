"""The live view benchmark's server process: the coordinator's side of the view.

``ViewProcess`` starts, in its own process (so its CPU time is its own), what a
coordinator started with ``--view`` runs beside its control loop: an in-process bus, the
view's follower of the line (``host/view``'s ``ViewFeed`` around ``host/livestate.py``'s
``LiveLine``) and hub, and the Starlette app under uvicorn on its own thread on
127.0.0.1 (a free port), built as ``skid run --view`` builds them (``bench/viewtarget.py``).
The modules and the coordinator's loop are played by a ``Feeder``: it publishes the
synthetic line's real BIRTH/TELEMETRY payloads (``bench/viewfeed.py``) on the bus and
steps the view once per tick, as the coordinator's ``on_tick`` does, timing each step:
that time is what the view adds to the coordinator's tick, the path its leases and
commands take ("the feed's own latency").

Commands (sent by the benchmark over a pipe; each answers one dict):

* ``("births", now_ms)``: every module's BIRTH; sets the line's clock to ``now_ms``;
* ``("live", seconds)``: telemetry at 10 Hz, paced by the wall clock, for ``seconds``
  (stamped with the line's clock: the wall clock, or after a fast-forward where it
  ended); answers the
  process's CPU time over the window (all threads: uvicorn's loop, the feeder), the
  view's step times, how late the feeder's ticks ran, and every viewer queue's longest
  length and drops;
* ``("fast", ticks, drain)``: ``ticks`` ticks of telemetry with simulated times from the
  line's clock on, as fast as the view takes them; with ``drain`` the feeder waits every
  10 simulated seconds until the viewers' queues are empty (so a page receives every
  sample rather than the newest few);
* ``("fill", max_s)``: fast-forward until a viewer's queue is full (a stalled viewer's);
* ``("stats",)``: viewer count and queues now; ``("stop",)``.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from bench.viewfeed import PERIOD_MS, RATE_HZ, SyntheticLine

DRAIN_EVERY_TICKS = 10 * RATE_HZ
DRAIN_MAX_S = 20.0


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, int(p * len(v)))]

    return {"n": len(v), "p50": q(0.5), "p99": q(0.99), "max": v[-1]}


class QueueWatch:
    """Every viewer queue's longest length over a window (sampled after each tick, outside
    the timed hand-overs) and its drops in the window."""

    def __init__(self, view):
        self.view = view
        self.first = {q["id"]: q["dropped"] for q in view.queue_stats()}
        self.longest: dict = {}
        self.last: dict = {}

    def sample(self) -> None:
        for q in self.view.queue_stats():
            self.longest[q["id"]] = max(self.longest.get(q["id"], 0), q["length"])
            self.last[q["id"]] = q

    def result(self) -> list[dict]:
        return [
            {
                "max_length": self.longest[vid],
                "maxlen": q["maxlen"],
                "dropped": q["dropped"] - self.first.get(vid, 0),
            }
            for vid, q in self.last.items()
        ]


class Feeder:
    """Publishes the synthetic line's messages as its modules would
    (``view.publish(topic, payload)``, untimed: the modules' side) and steps the view once
    per tick as the coordinator's loop does (``view.step(now_ms)``, timed: what the view
    adds to the coordinator's tick)."""

    def __init__(self, synthetic: SyntheticLine, view):
        self.synthetic = synthetic
        self.view = view
        self.k = 0  # the next tick's number (telemetry sequence)
        # The line's clock: the wall clock plus this offset.  A fast-forward moves it on,
        # so the live ticks after it continue where it ended (time never runs back).
        self.offset_ms = 0
        self.last_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def births(self, now_ms: int) -> None:
        """Every BIRTH at ``now_ms``, which sets the line's clock."""
        self.offset_ms = now_ms - int(time.time() * 1000)
        self.last_ms = now_ms
        for topic, payload in self.synthetic.births():
            self.view.publish(topic, payload)
        self.view.step(now_ms)

    def _tick(self, now_ms: int, step_ms: list | None) -> None:
        self.last_ms = now_ms
        for topic, payload in self.synthetic.telemetry(self.k, now_ms):
            self.view.publish(topic, payload)
        self.k += 1
        if step_ms is None:
            self.view.step(now_ms)
            return
        began = time.perf_counter()
        self.view.step(now_ms)
        step_ms.append(1000.0 * (time.perf_counter() - began))

    def live(self, seconds: float) -> dict:
        """10 Hz, paced by the wall clock; the measurements of the window."""
        steps: list[float] = []
        lateness: list[float] = []
        queues = QueueWatch(self.view)
        cpu0, start = time.process_time(), time.monotonic()
        for k in range(round(seconds * RATE_HZ)):
            due = start + k / RATE_HZ
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            lateness.append(1000.0 * max(0.0, time.monotonic() - due))
            self._tick(self.now_ms(), steps)
            queues.sample()
        elapsed = time.monotonic() - start
        cpu = time.process_time() - cpu0
        return {
            "cpu_s": cpu,
            "wall_s": elapsed,
            "cpu_share": cpu / elapsed,
            "messages_per_tick": len(self.synthetic.module_ids),
            "step_ms": _quantiles(steps),
            "tick_late_ms": _quantiles(lateness),
            "queues": queues.result(),
        }

    def fast(self, ticks: int, drain: bool) -> dict:
        """``ticks`` ticks from the line's clock on, as fast as the view takes them."""
        started = time.monotonic()
        first_ms = self.last_ms + PERIOD_MS
        waited = 0.0
        for i in range(ticks):
            self._tick(first_ms + i * PERIOD_MS, None)
            if drain and (i + 1) % DRAIN_EVERY_TICKS == 0:
                waited += self._drain()
        if drain:
            waited += self._drain()
        self.offset_ms = self.last_ms - int(time.time() * 1000)
        return {
            "ticks": ticks,
            "wall_s": time.monotonic() - started,
            "drain_wait_s": waited,
            "queues": self.view.queue_stats(),
        }

    def fill(self, max_s: float) -> dict:
        """Fast-forward until a viewer's queue is at its bound (a stalled viewer's, once
        the socket buffers in front of it are full), at most ``max_s`` seconds."""
        started = time.monotonic()
        ticks = 0
        while time.monotonic() - started < max_s:
            if any(q["length"] >= q["maxlen"] for q in self.view.queue_stats()):
                return {"filled": True, "ticks": ticks, "wall_s": time.monotonic() - started}
            self.fast(RATE_HZ, False)
            ticks += RATE_HZ
        return {"filled": False, "ticks": ticks, "wall_s": time.monotonic() - started}

    def _drain(self) -> float:
        began = time.monotonic()
        while any(q["length"] for q in self.view.queue_stats()):
            if time.monotonic() - began > DRAIN_MAX_S:
                break
            time.sleep(0.005)
        return time.monotonic() - began


def _serve(conn, line_path: str) -> None:
    from bench.viewtarget import view_under_test

    synthetic = SyntheticLine(Path(line_path))
    view = view_under_test(synthetic.line, Path(line_path).parent)
    feeder = Feeder(synthetic, view)
    conn.send({"url": view.url, "channels": synthetic.channels})
    while True:
        command = conn.recv()
        name, args = command[0], command[1:]
        if name == "stop":
            view.close()
            conn.send({})
            return
        if name == "births":
            feeder.births(*args)
            conn.send({})
        elif name == "live":
            conn.send(feeder.live(*args))
        elif name == "fast":
            conn.send(feeder.fast(*args))
        elif name == "fill":
            conn.send(feeder.fill(*args))
        elif name == "stats":
            conn.send({"queues": view.queue_stats()})
        else:
            conn.send({"error": f"unknown command {name!r}"})


class ViewProcess:
    """The server process (see the module docstring); ``url`` is the page's address."""

    def __init__(self, line_path: Path):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, str(line_path)), daemon=True)
        self._proc.start()
        hello = self._call_raw(60)
        self.url = hello["url"]
        self.channels = hello["channels"]
        self.pid = self._proc.pid

    def _call_raw(self, timeout_s: float) -> dict:
        if not self._conn.poll(timeout_s):
            self._proc.terminate()
            raise RuntimeError(f"the view server process did not answer within {timeout_s:g} s")
        answer = self._conn.recv()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def call(self, *command, timeout_s: float = 600) -> dict:
        self._conn.send(command)
        return self._call_raw(timeout_s)

    def stop(self) -> None:
        try:
            if self._proc.is_alive():
                self.call("stop", timeout_s=15)
        finally:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)


def serve_in_thread(app) -> tuple[object, threading.Thread, str]:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a thread, as the coordinator
    runs it beside its control loop; returns (server, thread, base URL)."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="view-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"
