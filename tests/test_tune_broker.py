"""``skid tune --broker``: the broker link (host/tune_broker.py).

First on the in-process bus with the emulated line's real module sessions (the very
messages a board sends over MQTT, on a simulated clock: no sleeping): the relay test
signed with the module's key, its refusals before anything moves, and a trip.  Then end
to end on a real Mosquitto with every module a process (tests/test_tune_broker_e2e.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.emulation import LineEmulation
from emulator.faults import Fault
from host import tune as tune_core
from host.cli import EXIT_FAILURE, EXIT_USAGE, main
from host.dryrun import EmulationClock
from host.inproc import attach_emulation
from host.transport import InProcessBus
from host.tune_broker import BrokerLink, expected_hash
from line.loader import load_line
from protocol import auth
from protocol.topics import host_topic

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
KEY = bytes(range(32))


class Site:
    """The emulated demo line on an in-process bus, ``reactor1`` keyed with KEY."""

    def __init__(self, key: bytes | None = KEY, link_key: bytes | None = KEY):
        self.line = load_line(LINE)
        self.emu = LineEmulation(self.line, seed=0, keys={"reactor1": key} if key else {})
        self.bus = InProcessBus()
        transport = self.bus.client("tune-host")
        self.link = BrokerLink(
            transport, "demo", "reactor1", "reactor", EmulationClock(self.emu), link_key
        )
        attach_emulation(self.emu, self.bus, "demo")
        self.node = self.emu.nodes["reactor1"]


def _plan(site):
    from edge.boardconfig import load_board_config

    cfg = load_board_config(site.line.modules["reactor1"].board)
    return tune_core.plan_test(site.line, cfg, "coil_temp", None, 0.15, 0.15, 0.0)


def test_the_relay_test_over_the_bus_signed_measures_what_the_emulated_link_does():
    site = Site()
    site.link.attach(expected_hash(site.line, "reactor1", emulated=True))
    site.link.start_module()
    assert site.link.registry.module_state("reactor1") == "execute"
    plan = _plan(site)
    bias = tune_core.hold(site.link, "coil_temp", "temperature", plan, lambda s: None)
    result = tune_core.relay_test(site.link, "coil_temp", "temperature", plan, bias, print)
    # The in-process emulated link on the same line measured Ku 0.76, Pu 14.7 s.
    assert 0.5 < result.ku < 1.1 and 10.0 < result.pu_s < 20.0
    assert len(result.cycles) == tune_core.CYCLES
    # Signed: the module took every command and lease (none refused as unauthenticated).
    assert site.node.leases_refused == 0
    assert site.node.lease.armed


def test_attach_refuses_a_module_running_another_config():
    site = Site()
    with pytest.raises(tune_core.TuneError, match="runs config hash"):
        site.link.attach(b"\x00" * 8)
    assert site.link.leasing is False


def _another_host(site) -> None:
    """A coordinator leasing the line from now on (every simulated second)."""
    coordinator = site.bus.client("coordinator")

    def lease(now_ms):
        if now_ms % 1000 == 0:
            data = auth.sign_lease("coordinator", site.emu.host_ms(), now_ms + 1, 3000, [])
            coordinator.publish(host_topic("demo", "lease"), data, qos=0)

    site.emu.step_hooks.append(lease)


def test_attach_refuses_while_another_host_leases_the_line():
    site = Site()
    _another_host(site)
    with pytest.raises(tune_core.TuneError, match="another host leases line demo"):
        site.link.attach(None)


def test_attach_refuses_a_module_that_cannot_start():
    site = Site()
    site.link.attach(None)
    site.emu.plant.press_estop("reactor1")  # latched abort: start is not allowed
    site.link.advance(2.0)
    site.emu.plant.press_estop("reactor1", pressed=False)
    with pytest.raises(tune_core.TuneError, match="cannot be started"):
        site.link.attach(None)


def test_unsigned_commands_to_a_keyed_module_are_refused_and_start_fails():
    site = Site(link_key=None)
    site.link.attach(None)
    with pytest.raises(tune_core.TuneError, match="refused to start"):
        site.link.start_module()
    assert site.link.registry.module_state("reactor1") == "idle"


def test_a_trip_mid_relay_ends_the_test_and_the_output_is_safe():
    site = Site()
    site.link.attach(None)
    site.link.start_module()
    plan = _plan(site)
    bias = tune_core.hold(site.link, "coil_temp", "temperature", plan, lambda s: None)
    pid = site.node.loops[0].pid
    pressed = []

    def estop(now_ms):
        if pid.relay_state != 0 and not pressed:  # edge.pid.RELAY_OFF
            site.emu.plant.press_estop("reactor1")
            pressed.append(now_ms)

    site.emu.step_hooks.append(estop)
    with pytest.raises(tune_core.TuneError, match="trip during the test"):
        tune_core.relay_test(site.link, "coil_temp", "temperature", plan, bias, lambda s: None)
    assert pressed
    assert site.node.outputs()["heater"] == 0.0
    assert site.link.registry.module_state("reactor1") in ("aborting", "aborted")


def _hold_with(site, action):
    """Start the module and hold the test temperature; ``action(emu)`` runs once, five
    seconds into the hold."""
    site.link.attach(None)
    site.link.start_module()
    at = site.emu.now_ms + 5000
    done = []

    def hook(now_ms):
        if now_ms >= at and not done:
            done.append(now_ms)
            action(site.emu)

    site.emu.step_hooks.append(hook)
    tune_core.hold(site.link, "coil_temp", "temperature", _plan(site), lambda s: None)


def test_someone_else_aborting_the_module_mid_test_ends_it():
    site = Site()
    acks = []

    def abort(emu):  # e.g. `skid stop` from another terminal
        acks.append(emu.command("reactor1", "state", {"command": "abort"}))

    with pytest.raises(tune_core.TuneError, match="left the test: state abort"):
        _hold_with(site, abort)
    assert acks[0].result == 0  # RESULT_OK: the abort was taken
    assert site.node.outputs()["heater"] == 0.0


def test_the_module_going_offline_mid_test_ends_it():
    site = Site()
    with pytest.raises(tune_core.TuneError, match="reactor1 went offline"):
        _hold_with(site, lambda emu: emu.apply_fault(Fault("power-loss", "reactor1", at_s=0.0)))
    assert not site.emu.powered("reactor1")


def test_another_host_leasing_the_line_mid_test_ends_it():
    site = Site()
    with pytest.raises(tune_core.TuneError, match=r"another host \(coordinator\) leases"):
        _hold_with(site, lambda emu: _another_host(site))


def test_the_cli_refuses_a_missing_key_and_names_an_unreachable_broker(capsys):
    argv = ["tune", str(LINE), "reactor1", "coil_temp", "--broker", "mqtt://127.0.0.1:1", "--yes"]
    # board_configs/reactor.toml names keys/reactor1.key, which the repository has not.
    assert main(argv) == EXIT_USAGE
    assert "reactor1.key not found" in capsys.readouterr().err
    assert main([*argv, "--insecure"]) == EXIT_FAILURE
    assert "refused the connection" in capsys.readouterr().err
    assert main(["tune", str(LINE), "reactor1", "coil_temp", "--emulate", "--epoch", "1"]) == 2
    assert "need --broker" in capsys.readouterr().err


def test_the_broker_path_never_loads_the_emulator():
    code = (
        "import sys; import host.cli, host.commands.tune, host.tune_broker; "
        "from host.commands import tune; "
        "bad = sorted(m for m in sys.modules if m == 'emulator' or m.startswith('emulator.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
