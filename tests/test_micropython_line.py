"""The reference line over a real Mosquitto with its modules as MicroPython processes.

``--runtime micropython`` runs each module under the MicroPython Unix port
(``edge.emulated_main``: the board's own node, session, MQTT link, sockets and asyncio),
fed by the plant emulator process over ``edge.plantport``.  The same recipe and the same
fault as tests/test_run_broker.py, with the same expectations: a quick recipe completes,
and a clog trips a feed pump first on ``over_pressure`` (same module kind, same first-out
cause, within the same bound).  ``--micropython-modules`` mixes the two runtimes.
"""

from __future__ import annotations

import subprocess

from host.record import RunRecord, verify
from tests.test_run_broker import LINE, QUICK, Skid

# 3x, below test_run_broker's 5x: the Unix port's processes stall longer under a loaded
# machine (the suite's other worker), and a stall of d looks like SPEED x d to the
# dead-man timers (a 5x run tripped pump_b deadman_expired in a full `make test`).
SPEED = 3.0


def _run(broker, tmp_path, *extra: str):
    url = f"mqtt://127.0.0.1:{broker.port}"
    skid = Skid(
        "run", str(LINE), str(QUICK), "--emulate", "--broker", url, "--speed", str(SPEED),
        "--runs-dir", str(tmp_path), "--json", "--no-report", *extra,
    )  # fmt: skip
    return skid, *skid.finish(timeout_s=300)


def _no_module_process_left(summary) -> None:
    line_id = RunRecord.open(summary["record"], readonly=True).meta()["line_id"]
    out = subprocess.run(["pgrep", "-af", "edge.emulated_main"], capture_output=True, text=True)
    assert f"flowskid-{line_id}-" not in out.stdout  # every module process ended with the run


def test_the_quick_recipe_completes_with_every_module_on_micropython(broker, tmp_path):
    skid, code, summary = _run(broker, tmp_path, "--runtime", "micropython")
    assert code == 0, "\n".join(skid.err)
    assert summary["outcome"] == "completed" and summary["trips"] == []
    phases = {p["phase"]: p for p in summary["phases"]}
    assert phases["collect"]["end_s"] - phases["collect"]["start_s"] >= 55.0
    assert summary["peaks"]["reactor1.temperature"] > 38.0
    assert verify(summary["record"]).ok
    _no_module_process_left(summary)
    names = "pump_a, pump_b, reactor1, bpr1, uv1, valve1"
    assert any(f"on MicroPython (Unix port): {names}" in line for line in skid.err), skid.err[:5]


def test_a_clog_trips_a_feed_pump_first_on_micropython_as_on_cpython(broker, tmp_path):
    skid, code, summary = _run(
        broker, tmp_path, "--micropython-modules", "pump_a,pump_b,bpr1",
        "--fault", "clog:reactor1@150,rate=0.2",
    )  # fmt: skip
    assert code == 1, "\n".join(skid.err)  # as on CPython: pressure trapped, exit 1
    first = summary["trips"][0]
    assert first["module"] in ("pump_a", "pump_b") and first["cause"] == "over_pressure"
    assert summary["all_safe_at_end"] is False and summary["residual"], summary
    assert verify(summary["record"]).ok
    assert any("on MicroPython (Unix port): pump_a, pump_b, bpr1" in ln for ln in skid.err)


def test_skid_edge_runs_a_line_module_under_micropython(broker, tmp_path):
    """``skid edge --runtime micropython`` (what a user runs by hand beside ``skid emulate``):
    the module's process becomes the Unix port's, births on the line, and stops cleanly
    (DEATH) when its standard input closes."""
    import os
    import sys
    import time

    from protocol import host_messages
    from protocol.topics import TOPIC_BIRTH, TOPIC_DEATH, module_topic
    from tests.mqtt_observer import Observer
    from tests.test_run_broker import ROOT

    url = f"mqtt://127.0.0.1:{broker.port}"
    epoch = repr(time.time())
    common = ["--broker", url, "--line-id", "mpy1", "--epoch", epoch]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    observer = Observer(broker.port, client_id="mpy-edge-watch")
    plant = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "emulate", str(LINE), *common], cwd=ROOT, env=env
    )
    edge = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "edge", "--runtime", "micropython"]
        + ["--line-file", str(LINE), "--module-id", "pump_a", "--emulate"]
        + ["--plant", "remote", "--insecure", *common],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        births = module_topic("mpy1", "pump_a", TOPIC_BIRTH)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not observer.messages_under(births):
            time.sleep(0.05)
        birth = host_messages.parse_birth(observer.messages_under(births)[0][1])
        assert birth.module_id == "pump_a"
        edge.stdin.close()  # the clean stop
        edge.wait(15)
        out = edge.stdout.read()
        assert edge.returncode == 0
        assert "stopped pump_a: ticks" in out  # the Unix-port process printed its statistics
        deaths = observer.messages_under(module_topic("mpy1", "pump_a", TOPIC_DEATH))
        assert deaths and host_messages.parse_death(deaths[-1][1]).bdseq == birth.bdseq
    finally:
        for p in (edge, plant):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        observer.close()
