"""The host's hot path for module messages: transport handler -> registry -> run record.

Every message of the line goes through ``Ingest.handle(topic, payload, now_ms)``: the
registry updates its view, each decoded telemetry sample is buffered in the run record
(one row per channel) and the peak of every sensor channel is kept; every other registry
event (births, deaths, trips, alarms, gaps, ...) is returned for the caller to act on.

Samples are written by the record's ``flush()`` in one transaction.  ``flush_if_due(wall_ms)``
flushes once the oldest buffered sample has waited ``flush_every_ms`` (wall clock), so a
sample reaches the disk within about that long of its arrival whatever the run's clock
does; a flush with few samples costs little (WAL, synchronous=NORMAL, one chained audit
entry per batch), so the default is short.

``bench/bench_ingest.py`` drives this loop over Mosquitto (the "Ingest benchmark" in
docs/run-record.md).  With ``track_module_ms=True`` each flush also returns the module
times of the samples it committed (the benchmark's publishers put their wall clock there,
which gives publish-to-stored latency).
"""

from __future__ import annotations

import math
from collections.abc import Callable

# A sample is on disk within about this long of its arrival (flush_if_due).
FLUSH_EVERY_MS = 10


class Ingest:
    """Route module messages into ``registry`` and ``record``.

    ``host_ms()`` stamps stored samples (host wall time).  ``peaks`` maps
    ``"module.channel"`` to the largest finite value seen on every sensor channel.
    Counters: ``samples`` (samples buffered in the record), ``flushes``.
    """

    def __init__(
        self,
        registry,
        record,
        host_ms: Callable[[], int],
        *,
        flush_every_ms: int = FLUSH_EVERY_MS,
        track_module_ms: bool = False,
    ):
        if flush_every_ms < 0:
            raise ValueError(f"flush_every_ms {flush_every_ms!r}: allowed >= 0")
        self.registry = registry
        self.record = record
        self.host_ms = host_ms
        self.flush_every_ms = flush_every_ms
        self.peaks: dict[str, float] = {}
        self.samples = 0
        self.flushes = 0
        self._sensors: dict[str, tuple[set[str], str]] = {}  # module -> (sensor names, prefix)
        self._oldest_ms: int | None = None  # host_ms of the oldest unflushed sample
        self._module_ms: list[int] | None = [] if track_module_ms else None

    # -- messages in ----------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, now_ms: int) -> list:
        """One message of the line (the caller's clock ``now_ms`` goes to the registry).
        Samples are stored here; the other registry events are returned, in order."""
        events = self.registry.on_message(topic, payload, now_ms)
        if not events:
            return events
        others = None
        for ev in events:
            if ev.kind == "sample":
                self._store(ev)
            else:
                if ev.kind == "birth":
                    self._sensors.pop(ev.module, None)  # channels may have changed
                if others is None:
                    others = []
                others.append(ev)
        return others or []

    def _store(self, ev) -> None:
        module = ev.module
        data = ev.data
        t = ev.message  # the TELEMETRY; data has its values by channel name
        values = data["values"]
        host_ms = self.host_ms()
        self.record.add_sample(host_ms, module, t.t_ms, t.seq, values, data["quality"])
        self.samples += 1
        if self._oldest_ms is None:
            self._oldest_ms = host_ms
        if self._module_ms is not None:
            self._module_ms.append(t.t_ms)
        sensors, prefix = self._sensors_of(module)
        peaks = self.peaks
        for name in sensors:
            value = values.get(name)
            if value is None or not math.isfinite(value):
                continue
            key = prefix + name
            peak = peaks.get(key)
            if peak is None or value > peak:
                peaks[key] = value

    def _sensors_of(self, module: str) -> tuple[set[str], str]:
        found = self._sensors.get(module)
        if found is None:
            view = self.registry.modules.get(module)
            names = {ch.name for ch in view.channels if ch.role == "sensor"} if view else set()
            found = self._sensors[module] = (names, module + ".")
        return found

    # -- the record -----------------------------------------------------------------------------

    def flush_due(self, wall_ms: int) -> bool:
        """True when the oldest buffered sample has waited ``flush_every_ms``."""
        return self._oldest_ms is not None and wall_ms - self._oldest_ms >= self.flush_every_ms

    def flush(self) -> list[int]:
        """Write what the record buffered (samples and chained entries) in one transaction.
        Returns the module times of the samples committed when tracking, else []."""
        self.record.flush()
        self.flushes += 1
        self._oldest_ms = None
        if self._module_ms is None:
            return []
        committed, self._module_ms = self._module_ms, []
        return committed

    def flush_if_due(self, wall_ms: int) -> list[int] | None:
        """``flush()`` when due (see ``flush_due``), else None."""
        if self.flush_due(wall_ms):
            return self.flush()
        return None
