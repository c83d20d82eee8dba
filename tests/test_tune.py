"""``skid tune`` end to end on the emulated demo line (host/tune.py, host/tune_emulated.py).

The real reactor module (edge runtime on emulated drivers) runs the relay on the board;
the host procedure holds, authorises the relay, measures Ku/Pu and writes the gains.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.boardconfig import compile_config, load_board_config
from edge.boardconfig.compile import config_hash
from edge.pid import RELAY_OFF
from host import tune as tune_core
from host import tune_emulated
from host.cli import main
from host.commands import tune as tune_cmd
from host.tune_emulated import emulated_link

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def line_copy(tmp_path):
    """The demo line with its reactor board config copied to tmp (--write edits the copy)."""
    board = tmp_path / "reactor.toml"
    shutil.copy(ROOT / "board_configs" / "reactor.toml", board)
    text = (ROOT / "examples" / "lines" / "demo.toml").read_text()
    text = text.replace('"board_configs/reactor.toml"', f'"{board}"')
    text = text.replace('board = "board_configs/', f'board = "{ROOT}/board_configs/')
    line = tmp_path / "demo.toml"
    line.write_text(text)
    return line, board


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_tune_emulated_measures_proposes_and_writes(line_copy, capsys):
    line, board = line_copy
    before_text = board.read_text()
    old_hash = config_hash(compile_config(load_board_config(board))).hex()
    argv = ["tune", str(line), "reactor1", "coil_temp", "--emulate", "--yes", "--write", "--json"]
    assert main(argv) == 0
    out = _last_json(capsys)
    assert out["outcome"] == "tuned"
    # The emulated coil: an integrating heat balance behind a 2 s probe lag.
    assert 0.2 < out["ku"] < 3.0 and 5.0 < out["pu_s"] < 40.0
    g = out["gains"]
    assert g == tune_core.propose(out["ku"], out["pu_s"])
    assert g["kp"] == pytest.approx(out["ku"] / 2.2, rel=0.01)
    # Written: new values in the file, comments kept, hash changed and reported.
    w = out["written"]
    assert w["old_hash"] == old_hash != w["new_hash"]
    cfg = load_board_config(board)
    assert config_hash(compile_config(cfg)).hex() == w["new_hash"]
    loop = tune_core.loop_table(cfg, "coil_temp")
    for k, v in g.items():
        assert loop[k] == pytest.approx(v)
    text = board.read_text()
    comments = [ln for ln in before_text.splitlines() if ln.lstrip().startswith("#")]
    assert all(c in text for c in comments)
    assert "setpoint_range = [20.0, 140.0]  # <= the over-temperature trip" in text


def test_a_trip_during_the_relay_ends_the_test_safely(line_copy, monkeypatch, capsys):
    line, board = line_copy
    before = board.read_text()
    seen = {}

    def link_with_fault(path, module, seed=0):
        link = emulated_link(path, module, seed=seed)
        pid = link.emu.nodes[module].loops[0].pid

        def inject(emu):
            if pid.relay_state != RELAY_OFF and "fault" not in seen:
                emu.plant.press_estop(module)  # the operator hits the e-stop mid-test
                seen["fault"] = emu.now_ms
            seen["node"] = emu.nodes[module]

        link.on_advance = inject
        return link

    # host.commands.tune imports it when --emulate runs (it loads the emulator).
    monkeypatch.setattr(tune_emulated, "emulated_link", link_with_fault)
    argv = ["tune", str(line), "reactor1", "coil_temp", "--emulate", "--yes", "--write", "--json"]
    assert main(argv) == tune_cmd.EXIT_ENDED
    out = _last_json(capsys)
    assert out["outcome"] == "ended" and "trip" in out["reason"]
    assert "fault" in seen
    node = seen["node"]
    assert node.loops[0].pid.relay_state == RELAY_OFF
    assert node.outputs()["heater"] == 0.0  # safe value, and the module stopped
    assert board.read_text() == before  # nothing written


def test_the_test_temperature_stays_below_boiling_and_trip_margins():
    line = tune_cmd.load_line(ROOT / "examples" / "lines" / "demo.toml")
    cfg = load_board_config(ROOT / "board_configs" / "reactor.toml")
    plan = tune_core.plan_test(line, cfg, "coil_temp", None, 0.15, 0.15, 0.0)
    # acetonitrile boils at ~81.6 degC at 1 atm: ceiling 10 K below; the trip is at 150.
    assert plan.ceiling_c == pytest.approx(plan.boiling_c - tune_core.BOILING_MARGIN_C)
    assert plan.at_c <= plan.ceiling_c - 5.0
    with pytest.raises(tune_core.TuneError, match="not inside"):
        tune_core.plan_test(line, cfg, "coil_temp", 75.0, 0.15, 0.15, 0.0)
    with pytest.raises(tune_core.TuneError, match="amplitude"):
        tune_core.plan_test(line, cfg, "coil_temp", 50.0, 0.5, 0.15, 0.0)
    # Under 5 bar the solvent boils higher; the trip margin then bounds it.
    high = tune_core.plan_test(line, cfg, "coil_temp", 100.0, 0.15, 0.15, 5.0)
    assert high.ceiling_c == min(140.0, 150.0 - tune_core.TRIP_MARGIN_C, high.boiling_c - 10.0)


def test_the_board_relay_drops_to_minimum_at_its_ceiling():
    link = emulated_link(ROOT / "examples" / "lines" / "demo.toml", "reactor1")
    pid = link.emu.nodes["reactor1"].loops[0].pid
    ok, _ = link.set_setpoint("coil_temp", 30.0)
    assert ok
    link.advance(60.0)
    # A ceiling just above the setpoint: the relay's high half-cycle reaches it.
    cfg = {"loop": "coil_temp", "relay": "start", "relay_amplitude": 0.3}
    cfg.update(relay_hysteresis=0.1, relay_ceiling=30.5, relay_bias=0.3)
    ok, reason = link.command("configure", {"config": cfg})
    assert ok, reason
    link.advance(60.0)
    st = tune_core.parse_status(
        link.command("configure", {"config": {"loop": "coil_temp", "relay": "status"}})[1]
    )
    assert st["state"] == "ceiling" and st["output"] == 0.0
    assert link.emu.nodes["reactor1"].outputs()["heater"] == 0.0
    assert pid.relay_state != RELAY_OFF


def test_write_gains_refuses_a_result_that_does_not_load(tmp_path):
    board = tmp_path / "reactor.toml"
    shutil.copy(ROOT / "board_configs" / "reactor.toml", board)
    before = board.read_text()
    with pytest.raises(tune_core.TuneError, match="does not load"):
        tune_core.write_gains(board, "coil_temp", {"kp": 0.3, "sp_weight": 2.0})
    assert board.read_text() == before
