"""The view under test, built as ``skid run --emulate --view`` builds it.

``view_under_test(line, directory)`` makes an ``InProcessBus``, the view
(``host.view.serve.InProcessView``: the hub, the Starlette app under uvicorn on its own
thread at 127.0.0.1 on a free port, no named users: read-only, as anyone not logged in
sees it) and its follower of the line on the bus (``on_bus``: ``ViewFeed`` around
``LiveLine``).  The benchmark's feeder then plays the modules (``publish`` on the bus) and
the coordinator's loop (``step(now_ms)``, what ``InProcessView.on_tick`` does before it
paces the run, which the benchmark does itself).
"""

from __future__ import annotations

from pathlib import Path

from host.transport import InProcessBus
from host.view.serve import InProcessView, ViewOptions


class ViewUnderTest:
    """``url``; ``publish(topic, payload)``; ``step(now_ms)``; ``queue_stats()``;
    ``close()``."""

    def __init__(self, line, directory: Path):
        self.bus = InProcessBus()
        self.modules = self.bus.client(f"{line.id}-modules")
        options = ViewOptions("127.0.0.1:0", users_file=Path(directory) / "users.toml")
        self.view = InProcessView(line, options, speed=1.0)
        self.view.on_bus(self.bus)
        self.url = self.view.url.rstrip("/")

    def publish(self, topic: str, payload: bytes) -> None:
        self.modules.publish(topic, payload, qos=0)

    def step(self, now_ms: int) -> None:
        self.view.feed.step(now_ms)

    def queue_stats(self) -> list[dict]:
        """Every connected viewer's queue: ``id``, ``length``, ``maxlen``, ``dropped``.
        The hub has no public list of its viewers; this reads it under the hub's lock."""
        hub = self.view.hub
        with hub._lock:
            viewers = list(hub._viewers)
        return [
            {"id": id(v), "length": len(v.queue), "maxlen": v.queue.maxlen, "dropped": v.dropped}
            for v in viewers
        ]

    def close(self) -> None:
        self.view.close()


def view_under_test(line, directory: Path) -> ViewUnderTest:
    return ViewUnderTest(line, directory)
