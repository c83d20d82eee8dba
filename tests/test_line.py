"""The line description loader (line/loader.py): the demo line, module configs under the
line's module ids, and errors that name the file, the key, the line and what is allowed."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from line.loader import (
    LineError,
    LineErrors,
    board_channels,
    load_line,
    load_line_text,
    module_config,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "lines" / "demo.toml"

SMALL = """\
[line]
id = "small"
solvent = "water"

[[modules]]
id = "feed_pump"
kind = "pump"
board = "{board}"
rating_bar = 40.0

[[parts]]
id = "coil"
kind = "tube"
inner_diameter_mm = 1.0
length_m = 2.0
rating_bar = 20.0

[[parts]]
id = "bottle"
kind = "vessel"
role = "collection"
volume_ml = 100.0

[[connections]]
from = "feed_pump"
to = "coil"

[[connections]]
from = "coil"
to = "bottle"
"""


def small(board="board_configs/pump.toml", extra="", replace=None):
    text = SMALL.format(board=board) + extra
    if replace:
        text = text.replace(*replace)
    return text


def errors_of(text, base=None):
    with pytest.raises(LineErrors) as info:
        load_line_text(text, "lines/test.toml", base)
    return info.value


def test_demo_line_loads_with_its_flow_graph():
    line = load_line(DEMO)
    assert line.id == "demo" and line.solvent.name == "acetonitrile"
    assert sorted(line.modules) == ["bpr1", "pump_a", "pump_b", "reactor1", "uv1", "valve1"]
    assert {m.kind for m in line.modules.values()} == {
        "pump",
        "reactor",
        "bpr",
        "analyzer",
        "valve",
    }
    order = line.flow_order()
    assert order.index("pump_a") < order.index("mixer") < order.index("reactor1")
    assert (
        order.index("reactor1") < order.index("bpr1") < order.index("uv1") < order.index("valve1")
    )
    assert line.downstream("valve1") == ["waste", "collect"]
    assert line.upstream("mixer") == ["tube_a", "tube_b"]
    reactor = line.modules["reactor1"]
    assert reactor.volume_ml == 10.0 and reactor.material == "pfa"
    assert line.modules["pump_a"].max_flow_ml_min == 10.0  # from the board's flow range
    assert [p.kind for p in line.protections] == ["relief_valve", "thermal_cutout"]
    relief = line.protections[0]
    weakest = min(c.rating_bar for c in line.components().values() if c.kind != "vessel")
    assert 20.0 < relief.set_bar < weakest  # above the pump interlock, below the weakest
    # Lab numbers: 10 mL at 1 mL/min total is ten minutes.
    assert reactor.volume_ml / 1.0 == pytest.approx(10.0)


def test_module_ids_in_the_line_override_the_board_config():
    line = load_line(DEMO)
    cfg_a, hash_a = module_config(line, "pump_a")
    cfg_b, hash_b = module_config(line, "pump_b")
    assert cfg_a["module"]["id"] == "pump_a" and cfg_b["module"]["id"] == "pump_b"
    assert hash_a != hash_b and len(hash_a) == 8
    assert all(ch.get("driver", "emulated") == "emulated" for ch in cfg_a["channels"])
    cfg_a["module"]["id"] = "changed"
    assert module_config(line, "pump_a")[0]["module"]["id"] == "pump_a"  # a fresh copy
    hw = board_channels(line, "reactor1")
    assert hw["temp_a"]["driver"] == "max31865" and hw["temp_a"]["ref_ohms"] == 430.0


def test_board_paths_resolve_against_the_line_file(tmp_path):
    (tmp_path / "boards").mkdir()
    shutil.copy(ROOT / "board_configs" / "pump.toml", tmp_path / "boards" / "p.toml")
    path = tmp_path / "small.toml"
    path.write_text(small(board="boards/p.toml"))
    line = load_line(path)
    assert line.modules["feed_pump"].board == (tmp_path / "boards" / "p.toml").resolve()
    assert module_config(line, "feed_pump")[0]["module"]["id"] == "feed_pump"
    assert load_line_text(small(), "x.toml").modules["feed_pump"].board.name == "pump.toml"


def test_unknown_key_names_file_key_line_and_suggestion():
    err = errors_of(small(replace=("rating_bar = 40.0", "ratng_bar = 40.0")))
    assert isinstance(err, ValueError) and isinstance(err, LineError)
    keys = [e.key for e in err.errors]
    assert "modules[0].ratng_bar" in keys and "modules[0].rating_bar" in keys
    e = err.errors[keys.index("modules[0].ratng_bar")]
    assert e.file == "lines/test.toml" and e.line == 9 and e.value == 40.0
    assert "did you mean 'rating_bar'" in str(e)
    assert str(e).startswith("lines/test.toml:9: modules[0].ratng_bar = 40.0")


def test_bad_reference_in_a_connection():
    err = errors_of(small(replace=('to = "bottle"', 'to = "botle"')))
    assert err.key == "connections[1].to" and err.value == "botle"
    assert "did you mean 'bottle'" in str(err) and "allowed bottle, coil, feed_pump" in str(err)


def test_missing_or_wrong_board():
    err = errors_of(small(board="board_configs/nope.toml"))
    assert err.key == "modules[0].board" and "names no file" in err.problem
    err = errors_of(small(board="board_configs/valve.toml"))
    assert err.key == "modules[0].board" and "is a valve board, not a pump" in err.problem
    err = errors_of(small(replace=('board = "board_configs/pump.toml"\n', "")))
    assert err.key == "modules[0].board" and err.problem == "is required"
    assert "lines/test.toml:5: modules[0].board is required" in str(err)


def test_values_out_of_range_and_wrong_types():
    err = errors_of(small(replace=("length_m = 2.0", "length_m = -2.0")))
    assert err.key == "parts[0].length_m" and err.allowed == "0.001..1000.0"
    err = errors_of(small(replace=('role = "collection"', 'role = "colection"')))
    assert 'did you mean "collection"' in str(err)
    assert 'allowed one of "collection", "waste"' in str(err)
    err = errors_of(small(replace=("length_m = 2.0", 'length_m = "2 m"')))
    assert "has the wrong type: expected a number, got a string" in str(err)


def test_every_problem_in_one_pass():
    text = (
        small(replace=("length_m = 2.0", "length_m = 0.0")).replace(
            'to = "bottle"', 'to = "nowhere"'
        )
        + '\n[[protections]]\nid = "rv"\nkind = "relief_valve"\nat = "bottle"\nset_bar = 5.0\n'
    )
    err = errors_of(text)
    assert {e.key for e in err.errors} >= {
        "parts[0].length_m",
        "connections[1].to",
        "protections[0].at",
    }
    assert str(err).startswith("lines/test.toml: 3 errors:")


@pytest.mark.parametrize(
    "extra, problem",
    [
        ('[[connections]]\nfrom = "bottle"\nto = "coil"\n', "is a vessel with an outflow"),
        ('[[connections]]\nfrom = "coil"\nto = "feed_pump"\n', "is a pump fed from"),
        (
            '[[parts]]\nid = "stub"\nkind = "tube"\ninner_diameter_mm = 1.0\nlength_m = 1.0\n'
            'rating_bar = 10.0\n[[connections]]\nfrom = "coil"\nto = "stub"\n',
            "has 2 outflows",
        ),
    ],
)
def test_flow_graph_consistency(extra, problem):
    err = errors_of(small(extra=extra))
    assert any(problem in e.problem for e in err.errors), str(err)


def test_a_loop_is_refused():
    text = small() + (
        '[[parts]]\nid = "t2"\nkind = "tube"\ninner_diameter_mm = 1.0\nlength_m = 1.0\n'
        "rating_bar = 10.0\n"
    )
    text = text.replace('from = "coil"\nto = "bottle"', 'from = "coil"\nto = "t2"')
    text += '[[connections]]\nfrom = "t2"\nto = "coil"\n'
    err = errors_of(text)
    loop = [e for e in err.errors if e.key == "connections"]
    assert loop and "form a loop" in loop[0].problem and loop[0].value == ["coil", "t2"]


def test_not_toml_and_unknown_sections():
    with pytest.raises(LineErrors, match="is not valid TOML"):
        load_line_text("[line\n", "bad.toml")
    err = errors_of(small(extra="[pumps]\nx = 1\n"))
    assert err.key == "pumps" and "is not a known section" in err.problem
    with pytest.raises(LineErrors, match="cannot be read"):
        load_line(ROOT / "examples" / "lines" / "missing.toml")


def test_solvents_named_and_custom():
    line = load_line_text(small(), "x.toml")
    water = line.solvent
    assert water.viscosity_mPas == 0.89
    assert water.viscosity_at(60.0) == pytest.approx(0.47, rel=0.05)  # CRC: 0.467
    assert water.boiling_point_c(1.01325) == pytest.approx(100.0)
    assert water.boiling_point_c(6.0) == pytest.approx(159.0, abs=3.0)  # steam tables: 158.8
    custom = load_line_text(
        small(
            replace=('solvent = "water"', 'solvent = { name = "toluene", viscosity_mPas = 0.6 }')
        ),
        "x.toml",
    ).solvent
    assert custom.viscosity_mPas == 0.6 and custom.density_g_ml == 0.862
    bare = load_line_text(
        small(
            replace=('solvent = "water"', "solvent = { viscosity_mPas = 2.0, density_g_ml = 1.1 }")
        ),
        "x.toml",
    ).solvent
    assert bare.viscosity_at(80.0) == 2.0 and bare.boiling_point_c(5.0) is None
    err = errors_of(small(replace=('solvent = "water"', 'solvent = "watter"')))
    assert err.key == "line.solvent" and 'did you mean "water"' in str(err)
    err = errors_of(small(replace=('solvent = "water"', "solvent = { density_g_ml = 1.1 }")))
    assert err.key == "line.solvent.viscosity_mPas"


def test_reactor_exotherm_and_cutout():
    text = DEMO.read_text().replace(
        "probe_tau_s = 2.0",
        "probe_tau_s = 2.0\nexotherm = { heat_w = 2.0, t_ref_c = 80.0 }",
    )
    line = load_line_text(text, "demo.toml")
    ex = line.modules["reactor1"].exotherm
    assert ex == {
        "heat_w": 2.0,
        "t_ref_c": 80.0,
        "doubling_c": 10.0,
        "max_w": 20.0,
        "needs_reagents": True,
    }
    cut = line.protections[1]
    assert cut.at == "reactor1" and cut.trip_c == 165.0 and "reset_c" not in cut.params  # latches
    err = errors_of(text.replace('at = "reactor1"', 'at = "bpr1"'))
    assert err.key == "protections[1].at" and err.allowed == "reactor1"
    err = errors_of(text.replace("t_ref_c = 80.0", "t_ref = 80.0"))
    assert "modules[2].exotherm.t_ref" in {e.key for e in err.errors}
    assert not math.isnan(line.ambient_c)


def test_every_material_has_a_wall_compliance():
    from line.hydraulics import WALL_COMPLIANCE_PER_BAR
    from line.model import MATERIALS

    assert set(WALL_COMPLIANCE_PER_BAR) == set(MATERIALS)
