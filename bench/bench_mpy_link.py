"""Worst late tick of a module under MicroPython while its broker fails.

The real node, ``EdgeRunner`` and ``MqttLink`` run under the MicroPython Unix port
(``tests/mpy/link_probe.py``, 100 ms ticks, a numbered EVENT every 200 ms) for each way
the network can fail:

* ``outage``: a private Mosquitto, stopped after the first birth and restarted 3 s later;
* ``silent``: a listener that accepts TCP and never answers (CONNACK never comes);
* ``refused``: nothing listens on the port;
* ``dns``: the broker's name is ``broker.invalid``, and a lookup blocks 1.5 s then fails
  (a DNS server that does not answer).

The value is the runner's ``max_lateness_ms``: how far a tick started after its deadline,
over the whole run.  Target: <= 100 ms in every case.  No peer: the figure is absolute.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import record

TARGET = "<=100 ms"


def _outage(config_bin) -> dict:
    from tests.broker import MosquittoBroker
    from tests.mpy_link import Probe

    broker = MosquittoBroker().start()
    probe = Probe(config_bin, "127.0.0.1", broker.port, seconds=12)
    try:
        probe.wait_for(lambda p: (p.last_stat() or {}).get("births", 0) >= 1, 15, "birth")
        broker.stop()
        time.sleep(3.0)
        broker.start()
        return probe.result()
    finally:
        probe.kill()
        broker.close()


def _unreachable(config_bin, kind) -> dict:
    from tests.mpy_link import SLOW_DNS, Probe, unreachable

    host, port, close = unreachable(kind)
    try:
        return Probe(config_bin, host, port, seconds=8, extra=SLOW_DNS).result()
    finally:
        close()


def run() -> list[dict]:
    from tests.mpy_link import pump_config_bin

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        config_bin = pump_config_bin(Path(tmp) / "config.bin")
        cases = {"outage": lambda: _outage(config_bin)}
        for kind in ("silent", "refused", "dns"):
            cases[kind] = lambda kind=kind: _unreachable(config_bin, kind)
        for case, measure in cases.items():
            res = measure()
            out.append(
                record(
                    f"mpy_unix_link_{case}_worst_late_tick",
                    res["max_late"],
                    "ms",
                    target=TARGET,
                )
            )
    return out
