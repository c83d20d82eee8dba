"""Putting the view together for the commands: the hub, the line follower, the app and the
server, in the two ways a view follows a line.

* ``BrokerView`` (``skid view``, ``skid run --broker ... --view``): its own MQTT connection
  to the line's broker, stepped on its own thread; the line stop is ``skid stop``'s
  (every module commanded directly, ``linestop.py``).
* ``InProcessView`` (``skid run --emulate --view``, ``skid demo --view``): a client of the
  run's in-process bus, stepped by the coordinator's loop (``on_tick``), which it also
  paces to ``speed`` x wall time so a person can watch; the line stop is the coordinator's
  ``stop`` request (the coordinator aborts every module, in this same process).
"""

from __future__ import annotations

import time

from host.view.app import ViewContext, make_app
from host.view.auth import Sessions
from host.view.feed import FeedThread, ViewFeed
from host.view.hub import Hub
from host.view.layout import line_layout
from host.view.server import ViewServer, check_bind, parse_bind, user_count


def _live_line(line_id: str, line):
    from host.livestate import LiveLine  # h-status's model of the line (contract16)

    return LiveLine(line_id, line)


class ViewOptions:
    """What the commands pass: ``bind`` HOST:PORT, TLS files, the users store, the operator
    key (bytes or None)."""

    def __init__(self, bind: str, tls_cert=None, tls_key=None, users_file=None, operator_key=None):
        from host.users import default_store_path  # lazy: argon2

        self.host, self.port = parse_bind(bind)
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.users_file = users_file or default_store_path()
        self.operator_key = operator_key
        check_bind(self.host, tls_cert, tls_key, user_count(self.users_file))


def _serve(line, hub, feed, options: ViewOptions, line_stop=None) -> ViewServer:
    ctx = ViewContext(
        hub,
        feed,
        line_layout(line),
        Sessions(options.users_file),
        has_key=options.operator_key is not None,
        tls=options.tls_cert is not None,
        line_stop=line_stop,
    )
    server = ViewServer(
        make_app(ctx), options.host, options.port, options.tls_cert, options.tls_key
    )
    server.start()
    return server


class BrokerView:
    """The view of ``line`` (id ``line_id`` on ``broker_url``) served from this process."""

    def __init__(self, line, line_id: str, broker_url: str, options: ViewOptions):
        from host.transport import MqttTransport  # lazy: paho
        from host.view.linestop import line_stop_over_broker

        self.hub = Hub()
        self.transport = MqttTransport(broker_url, f"{line_id}-view-{time.time_ns() % 10**9:x}")
        self.transport.connect()
        self.feed = ViewFeed(
            _live_line(line_id, line), self.transport, line_id, self.hub, options.operator_key
        )

        def line_stop(who, reason, **identity):
            return line_stop_over_broker(line, line_id, broker_url, who, reason, **identity)

        self.thread = FeedThread(self.feed)
        self.thread.start()
        try:
            self.server = _serve(line, self.hub, self.feed, options, line_stop)
        except BaseException:
            self.close()
            raise
        self.url = self.server.url

    def close(self) -> None:
        self.hub.close()
        if getattr(self, "server", None) is not None:
            self.server.stop()
        self.thread.stop()
        self.transport.close()


class InProcessView:
    """The view of an in-process run.  Pass ``on_bus`` to ``host.dryrun.run_in_process``
    (the view subscribes before the modules birth) and ``on_tick`` to the run."""

    def __init__(self, line, options: ViewOptions, speed: float):
        self.line = line
        self.options = options
        self.speed = speed
        self.hub = Hub()
        self.feed: ViewFeed | None = None
        self.server = _serve(line, self.hub, _Deferred(self), options)
        self.url = self.server.url
        self._origin: tuple[float, int] | None = None

    def on_bus(self, bus) -> None:
        client = bus.client(f"{self.line.id}-view")
        self.feed = ViewFeed(
            _live_line(self.line.id, self.line),
            client,
            self.line.id,
            self.hub,
            self.options.operator_key,
        )

    def on_tick(self, coord, plant) -> None:
        """Step the feed at the run's host time, then hold the loop back to ``speed`` x
        wall time (the in-process run otherwise goes as fast as the CPU allows)."""
        if self.feed is not None:
            self.feed.step(coord.host_ms())
        sim_ms = plant.now_ms if plant is not None else coord.host_ms()
        if self._origin is None:
            self._origin = (time.monotonic(), sim_ms)
        wall0, sim0 = self._origin
        ahead_s = (sim_ms - sim0) / 1000.0 / self.speed - (time.monotonic() - wall0)
        if ahead_s > 0:
            time.sleep(ahead_s)

    def close(self) -> None:
        self.hub.close()
        self.server.stop()


class _Deferred:
    """The app's ``feed`` before the run created it: requests wait for it."""

    def __init__(self, view: InProcessView):
        self.view = view

    def request(self, *args, **kwargs):
        feed = self.view.feed
        if feed is None:
            from concurrent.futures import Future

            future: Future = Future()
            future.set_result({"ok": False, "reason": "the run has not started yet"})
            return future
        return feed.request(*args, **kwargs)
