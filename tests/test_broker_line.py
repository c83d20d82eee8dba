"""The demo line in broker mode: one plant process, one ``skid edge`` process per module,
a real Mosquitto, the shared clock at 10x (host.launcher, emulator.remote).

A minimal host in the test leases every simulated second and starts the line through
the real wire format; the reactor's telemetry must rise (the whole chain works: host ->
module -> actuator over MQTT -> plant -> sensor over MQTT -> module -> telemetry), a
physical fault in the plant process must trip a pump, and ``stop()`` must leave neither
processes nor retained messages behind.  Waits are bounded conditions.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from edge.plantport import PlantPort, sim_topic
from emulator.remote import PlantServer, RemotePlantError
from host.launcher import EmulatedLineProcesses, LauncherError
from line.loader import load_line, module_config
from protocol import host_messages, messages
from protocol.constants import RESULT_OK
from protocol.topics import host_topic, module_topic
from tests.broker import retained_topics
from tests.mqtt_observer import Observer

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "lines" / "demo.toml"
HOST_EPOCH_MS = 1_790_000_000_000
OPERATING_POINT = {  # as emulator.runs.OPERATING_POINT (the demo line's)
    "pump": [("flow", 0.5)],
    "bpr": [("pressure_ctl", 5.0)],
    "reactor": [("coil_temp", 80.0)],
    "analyzer": [("lamp", 1.0)],
}


def wait_until(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class MiniHost:
    """Leases every simulated second on the shared clock; commands with birth aliases."""

    def __init__(self, port: int, line: EmulatedLineProcesses):
        self.line = line
        self.lid = line.line_id
        self.observer = Observer(port, client_id=f"test-host-{self.lid}")
        self.cid = 0
        self.stop = threading.Event()
        self.leaser = threading.Thread(target=self._lease_loop, daemon=True)

    def host_ms(self) -> int:
        return HOST_EPOCH_MS + self.line.sim_ms()

    def _lease_loop(self):
        seq = 0
        while not self.stop.is_set():
            seq += 1
            data = messages.build_lease("host", self.host_ms(), seq, 3000)
            self.observer.publish(host_topic(self.lid, "lease"), data, qos=0)
            self.stop.wait(1.0 / self.line.speed)

    def decoded(self, module, kind):
        t = module_topic(self.lid, module, kind)
        return [
            host_messages.parse(p) for topic, p in self.observer.messages_under(t) if topic == t
        ]

    def birth(self, module):
        births = self.decoded(module, "birth")
        return births[-1] if births else None

    def command(self, module, op, args=None):
        self.cid += 1
        data = messages.build_command(self.cid, op, args, self.host_ms() + 60_000)
        self.observer.publish(module_topic(self.lid, module, "cmd"), data)
        return self.cid

    def ack(self, module, cid):
        for a in self.decoded(module, "ack"):
            if a.command_id == cid:
                return a
        return None

    def set_setpoint(self, module, channel, value):
        names = [ch.name for ch in self.birth(module).channels]
        return self.command(
            module, "set_setpoint", {"channel": names.index(channel), "value": value}
        )

    def values(self, module, channel):
        birth = self.birth(module)
        i = [ch.name for ch in birth.channels].index(channel)
        out = []
        data_topic = module_topic(self.lid, module, "data")
        for topic, payload in self.observer.messages_under(data_topic):
            if topic == data_topic:
                v = host_messages.parse(payload, birth.channels).values[i]
                if v is not None:
                    out.append(v)
        return out

    def trips(self):
        out = []
        for mid in self.line.modules:
            out += [(mid, e.cause) for e in self.decoded(mid, "event") if e.type == "trip"]
        return out

    def close(self):
        self.stop.set()
        if self.leaser.is_alive():
            self.leaser.join(timeout=5)
        self.observer.close()


def test_demo_line_over_a_broker_heats_trips_on_a_clog_and_cleans_up(broker, tmp_path):
    # The clog blocks the coil at once, 100 simulated s (10 wall s) after the epoch:
    # late enough for start-up and the temperature rise, early enough for a short test.
    line = EmulatedLineProcesses(
        DEMO,
        f"mqtt://127.0.0.1:{broker.port}",
        speed=10.0,
        faults=["clog:reactor1@100"],
        log_dir=tmp_path,
    )
    assert line.line_id.startswith("demo-") and line.line_id != "demo"
    host = MiniHost(broker.port, line)  # subscribed before the births: none is retained
    try:
        line.start(timeout_s=30)
        pids = list(line.pids().values())
        assert len(pids) == 7  # six modules and the plant
        wait_until(lambda: all(host.birth(m) for m in line.modules), 10, "births seen by host")
        # The hashes are those the in-process emulation runs.
        demo = load_line(DEMO)
        for mid in line.modules:
            assert host.birth(mid).config_hash == module_config(demo, mid)[1]
        # A retained host STATE, as the coordinator publishes: stop() must clear it.
        host.observer.publish(
            host_topic(line.line_id, "state"),
            messages.build_state(True, host.host_ms()),
            qos=1,
            retain=True,
        )
        host.leaser.start()
        time.sleep(0.3)  # a few leases have arrived: the modules know host time
        kinds = {mid: host.birth(mid).module_kind for mid in line.modules}
        acks = {mid: host.command(mid, "state", {"command": "start"}) for mid in line.modules}
        for mid, cid in acks.items():
            ack = wait_until(lambda m=mid, c=cid: host.ack(m, c), 10, f"ack of start {mid}")
            assert ack.result == RESULT_OK, (mid, ack)
        temp0 = wait_until(lambda: host.values("reactor1", "temperature"), 10, "reactor data")[-1]
        for mid in line.modules:
            for channel, value in OPERATING_POINT.get(kinds[mid], ()):
                cid = host.set_setpoint(mid, channel, value)
                ack = wait_until(lambda m=mid, c=cid: host.ack(m, c), 10, f"ack {mid}.{channel}")
                assert ack.result == RESULT_OK, (mid, channel, ack)
        assert line.sim_ms() < 95_000, "start-up too slow for the clog at 100 s"

        # The heater command reaches the plant, the plant's heat reaches the probes.
        wait_until(
            lambda: max(host.values("reactor1", "temperature")) > temp0 + 5.0,
            8,
            "reactor temperature rising",
        )
        assert not host.trips(), host.trips()
        assert line.sim_ms() < 100_000  # the rise came before the clog

        # The clog in the plant process: the pumps' head pressure climbs to their
        # high-pressure interlock.
        trip = wait_until(lambda: host.trips(), 20, "a pump trip after the clog")
        assert trip[0][0] in ("pump_a", "pump_b"), trip
        assert trip[0][1] == "over_pressure", trip
        assert line.sim_ms() >= 100_000
        assert max(host.values(trip[0][0], "pressure")) > 15.0
    finally:
        host.close()
        line.stop()
    for name, proc in line.procs.items():
        assert proc.poll() is not None, f"{name} still running"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (
        retained_topics(broker.port, [f"skid/v1/{line.line_id}/#", f"skidsim/{line.line_id}/#"])
        == []
    )
    # The modules left safe on SIGTERM.
    assert "outputs safe" in line.log_tail("pump_a")


def test_power_loss_kills_the_module_process_and_restarts_it(broker, tmp_path):
    line = EmulatedLineProcesses(
        DEMO,
        f"mqtt://127.0.0.1:{broker.port}",
        speed=10.0,
        faults=["power-loss:valve1@40+10"],
        log_dir=tmp_path,
    )
    with line:
        first = line.procs["valve1"].pid
        # A second BIRTH: the new process connected, told the plant it has power and got
        # readings back (it only starts ticking, and connects its link, after that).
        wait_until(lambda: line.births["valve1"] >= 2, 15, "valve1 reborn after power loss")
        assert line.procs["valve1"].pid != first
        assert [a for _, a, _ in line.power_log] == ["kill", "restart"]
        kill_t, restart_t = line.power_log[0][0], line.power_log[1][0]
        assert 40.0 <= kill_t < 46.0 and 50.0 <= restart_t < 56.0
    assert not any(p.poll() is None for p in line.procs.values())


def test_network_faults_are_refused_in_broker_mode_with_a_clear_error(broker):
    url = f"mqtt://127.0.0.1:{broker.port}"
    with pytest.raises(RemotePlantError, match="partition is a network fault"):
        EmulatedLineProcesses(DEMO, url, faults=["partition:pump_a@10"])
    with pytest.raises(KeyError, match="no module 'pump_c'"):
        EmulatedLineProcesses(DEMO, url).kill("pump_c")


def test_an_unreachable_broker_is_reported_before_anything_starts():
    line = EmulatedLineProcesses(DEMO, "mqtt://127.0.0.1:1", speed=10.0)
    with pytest.raises(LauncherError, match="unreachable"):
        line.start(timeout_s=5)
    assert line.procs == {} and line.log_dir is None


def test_plant_server_and_port_mirror_drivers_without_a_broker():
    """The deterministic cores, wired back to back: the port's actuator values reach the
    plant, the plant's readings and wire faults reach the node's drivers; an empty
    outputs message (a module's will) unbinds it; faults apply on simulated time."""
    from edge.build import build_node
    from edge.sink import NullSink
    from emulator.faults import line_targets, make_fault

    demo = load_line(DEMO)
    modules, channels = line_targets(demo)
    faults = [  # an RTD reads 10 kohm open; a photodiode has no raw value: set_fault
        make_fault(k, t, line_modules=modules, channels=channels, at_s=2.0)
        for k, t in (("sensor-open", "reactor1.temp_a"), ("sensor-open", "uv1.uv"))
    ]
    server = PlantServer(demo, "t1", faults=faults)
    nodes, ports, sent = {}, {}, []
    for mid in ("reactor1", "uv1"):
        cfg, digest = module_config(demo, mid)
        nodes[mid] = build_node(cfg, None, NullSink(), 0, b"\x01" * 8, config_hash=digest)
        ports[mid] = PlantPort(nodes[mid], "t1", lambda t, p: sent.append((t, p)))
    heater = next(s for s in nodes["reactor1"].actuators if s.name == "heater")
    heater.driver.value = 1.0  # as if the firmware drove the heater fully on
    ports["reactor1"].step(0)
    assert sent == []  # readings go in before a tick; outputs go out after it
    ports["reactor1"].after_tick(0)
    assert sent[-1][0] == sim_topic("t1", "reactor1", "outputs")
    ports["reactor1"].after_tick(50)
    assert len(sent) == 1  # unchanged outputs wait for the heartbeat
    ports["reactor1"].after_tick(600)
    assert len(sent) == 2
    for topic, payload in sent:
        server.on_message(topic, payload)
    readings = {}
    for ms in range(100, 30_100, 100):
        for topic, payload in server.step(ms):
            readings[(topic.split("/")[2], ms)] = payload
    assert server.plant.heater_power_w("reactor1") > 100.0
    assert [a for _, a, _ in server.fault_log] == ["apply", "apply"]
    drivers = {mid: {ch.name: d for ch, d in n.sensors} for mid, n in nodes.items()}
    for mid in nodes:
        ports[mid].on_sensors(readings[(mid, 1000)])
        ports[mid].step(1000)
    assert drivers["uv1"]["uv"].injected_fault is None
    cold = drivers["reactor1"]["temp_b"].raw
    assert 100.0 < cold < 110.0  # PT100 ohms near 22 degC
    for mid in nodes:
        ports[mid].on_sensors(readings[(mid, 30_000)])
        ports[mid].step(30_000)
    assert drivers["reactor1"]["temp_a"].raw == 10_000.0
    assert drivers["uv1"]["uv"].injected_fault == "open"
    assert drivers["reactor1"]["temp_b"].raw > cold + 2.0  # the coil warmed
    # The module dies: its will (empty outputs) takes it off the plant.
    server.on_message(sim_topic("t1", "reactor1", "outputs"), b"")
    out = server.step(30_100)
    assert not server.powered["reactor1"]
    assert sim_topic("t1", "reactor1", "sensors") not in [t for t, _ in out]
    assert server.plant.heater_power_w("reactor1") == 0.0


def test_the_shared_clock_counts_simulated_ms_from_the_epoch():
    from edge.clock import shared_ms
    from host.edgeproc import TICKS_MASK, ScaledClock

    epoch = time.time() - 2.0
    clock = ScaledClock(10.0, epoch=epoch)
    assert 20_000 <= clock() <= 21_000
    assert 20_000 <= shared_ms(time.time(), epoch, 10.0) <= 21_000
    assert shared_ms(103.5, 100.0, 10.0) == 35_000
    # Before the epoch the ticks wrap like a board's 30-bit ticks_ms(): ticks_diff
    # arithmetic still sees them 10,000 ms before zero.
    before = ScaledClock(10.0, epoch=time.time() + 1.0)()
    assert TICKS_MASK - 10_000 <= before <= TICKS_MASK - 8_000


def run_skid(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_skid_emulate_and_edge_refuse_bad_broker_mode_options_with_exit_2():
    url = "mqtt://127.0.0.1:1"
    r = run_skid(
        "emulate", str(DEMO), "--broker", url, "--line-id", "x1", "--fault", "host-crash:line@5"
    )
    assert r.returncode == 2 and "host-crash is a network fault" in r.stderr, r.stderr
    r = run_skid(
        "emulate", str(DEMO), "--broker", url, "--line-id", "x1", "--fault", "power-loss:pump_a@5"
    )
    assert r.returncode == 2 and "carried out by the launcher" in r.stderr, r.stderr
    r = run_skid("edge", "--line-file", str(DEMO), "--module-id", "pump_c", "--emulate")
    assert r.returncode == 2 and "no module 'pump_c'" in r.stderr and "pump_a" in r.stderr
    r = run_skid(
        "edge", str(ROOT / "board_configs" / "pump.toml"), "--emulate", "--plant", "remote"
    )
    assert r.returncode == 2 and "--plant remote needs --emulate and --broker" in r.stderr


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a reaper."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_no_process_outlives_a_launcher_that_was_killed(broker, tmp_path):
    import json
    import signal
    import subprocess
    import sys

    script = (
        "import json, sys, time\n"
        "from host.launcher import EmulatedLineProcesses\n"
        f"line = EmulatedLineProcesses({str(DEMO)!r}, 'mqtt://127.0.0.1:{broker.port}', "
        f"log_dir={str(tmp_path)!r}).start()\n"
        "print(json.dumps(line.pids()), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 7
    finally:
        parent.send_signal(signal.SIGKILL)  # no stop(), no atexit: only the children's watch
        parent.wait(10)
    wait_until(lambda: not any(_running(p) for p in pids.values()), 10, "children to exit")
    assert "launcher gone: stopping" in (tmp_path / "pump_a.log").read_text()
