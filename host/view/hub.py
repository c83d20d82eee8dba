"""The fan-out between the side that follows the line and the web viewers.

The producer (the coordinator's thread in process, or the view's MQTT thread) calls
``put_snapshot`` and ``put_samples``; each viewer (one SSE connection) gets the messages
through its own bounded queue.  The producer never waits for a viewer: a put appends to
each viewer's ``deque(maxlen=...)`` (a full queue drops its oldest message, counted in
``dropped``) and wakes the viewer with a non-blocking ``call_soon_threadsafe`` at most
once until the viewer has read.  A viewer that never reads therefore costs a bounded
amount of memory and no time.

The hub also keeps the history a newly opened page starts from: every channel's samples
of the last ``HISTORY_S`` seconds, at most one per ``HISTORY_STEP_MS`` (the newest of each
step), and the run's phase changes.
"""

from __future__ import annotations

import json
import threading
from collections import deque

HISTORY_S = 3600
HISTORY_STEP_MS = 1000
VIEWER_QUEUE = 256  # messages; a snapshot or a batch of samples each
MAX_PHASES = 500


class Viewer:
    """One connected page: its queue and how the producer wakes it (``wake`` is called
    from the producer's thread and must not block: ``loop.call_soon_threadsafe``)."""

    def __init__(self, wake, maxlen: int = VIEWER_QUEUE):
        self.queue: deque[str] = deque(maxlen=maxlen)
        self.wake = wake
        self.dropped = 0
        self.woken = False

    def take(self) -> list[str]:
        """Every queued message, oldest first (called by the viewer's own task)."""
        self.woken = False
        out = []
        while self.queue:
            out.append(self.queue.popleft())
        return out


class Hub:
    """Snapshots and samples from one producer to many ``Viewer``s, plus the history."""

    def __init__(self, history_s: int = HISTORY_S, viewer_queue: int = VIEWER_QUEUE):
        self.history_ms = history_s * 1000
        self.viewer_queue = viewer_queue
        self._lock = threading.Lock()
        self._viewers: list[Viewer] = []
        self._history: dict[str, deque] = {}
        self._phases: deque = deque(maxlen=MAX_PHASES)
        self.snapshot_json = "null"
        self.puts = 0
        self.closed = False

    # -- viewers (the server's event loop) ----------------------------------------------------

    def join(self, wake) -> Viewer:
        viewer = Viewer(wake, self.viewer_queue)
        with self._lock:
            self._viewers.append(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        with self._lock:
            if viewer in self._viewers:
                self._viewers.remove(viewer)

    def close(self) -> None:
        """The server is stopping: every viewer is woken to end its stream."""
        self.closed = True
        with self._lock:
            viewers = list(self._viewers)
        for viewer in viewers:
            try:
                viewer.wake()
            except RuntimeError:
                pass

    def viewer_count(self) -> int:
        with self._lock:
            return len(self._viewers)

    def hello(self) -> list[str]:
        """What a new page gets first, as SSE messages: the latest snapshot with the phases,
        then one message per series of its history.  One message per series, not one for
        all: an hour of 20 modules is ~8 MB of JSON, whose single parse blocked the page's
        main thread for ~150 ms (bench/bench_view.py); ~80 kB pieces parse in a few ms."""
        with self._lock:
            history = [(key, list(ring)) for key, ring in self._history.items()]
            phases = list(self._phases)
            snapshot = self.snapshot_json
        first = '{"snapshot": ' + snapshot + ', "hello": ' + json.dumps({"phases": phases}) + "}"
        sep = (",", ":")
        return [first] + [
            json.dumps({"history": {key: rows}}, separators=sep) for key, rows in history
        ]

    # -- the producer ------------------------------------------------------------------------

    def put_snapshot(self, snapshot: dict) -> None:
        """A new snapshot (contract16 schema): kept for new pages and sent to every viewer."""
        text = json.dumps(snapshot, separators=(",", ":"))
        run = snapshot.get("run") or {}
        phase = run.get("phase")
        with self._lock:
            self.snapshot_json = text
            if phase and not self._phases:  # the view started mid-phase
                in_phase_ms = int((run.get("phase_elapsed_s") or 0) * 1000)
                self._phases.append([snapshot["t_ms"] - in_phase_ms, phase])
            elif phase and self._phases[-1][1] != phase:
                # at the snapshot's time: the clock the samples are stamped with (a sped-up
                # emulated line's run status runs on its own scaled clock)
                self._phases.append([snapshot["t_ms"], phase])
            for module in snapshot.get("modules", ()):
                for channel, v in module.get("values", {}).items():
                    if v.get("setpoint") is not None and v.get("t_ms") is not None:
                        self._remember(f"{module['id']}.{channel}:sp", v["t_ms"], v["setpoint"])
        self._send('{"snapshot":' + text + "}")

    def put_samples(self, samples: list) -> None:
        """``samples``: [module, channel, t_ms, value] rows, sent as one message."""
        if not samples:
            return
        with self._lock:
            for module, channel, t_ms, value in samples:
                self._remember(f"{module}.{channel}", t_ms, value)
        self._send(json.dumps({"samples": samples}, separators=(",", ":")))

    def _remember(self, key: str, t_ms: int, value) -> None:
        """Keep ``value`` in ``key``'s ring: the newest of each history step, an hour."""
        ring = self._history.get(key)
        if ring is None:
            ring = self._history[key] = deque(maxlen=self.history_ms // HISTORY_STEP_MS + 2)
        step = int(t_ms) // HISTORY_STEP_MS
        if ring and ring[-1][0] // HISTORY_STEP_MS == step:
            ring[-1] = [int(t_ms), value]
        else:
            ring.append([int(t_ms), value])
        while ring and ring[0][0] < t_ms - self.history_ms:
            ring.popleft()

    def _send(self, message: str) -> None:
        with self._lock:
            viewers = list(self._viewers)
            self.puts += 1
        for viewer in viewers:
            if len(viewer.queue) == viewer.queue.maxlen:
                viewer.dropped += 1  # the append below pushes the oldest out
            viewer.queue.append(message)
            if not viewer.woken:
                viewer.woken = True
                try:
                    viewer.wake()
                except RuntimeError:  # its event loop is closed: the page is gone
                    self.leave(viewer)
