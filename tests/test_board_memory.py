"""Per-kind bundles and the RAM they need (docs/deploy.md, "Memory").

* ``files_for_config``: a board carries only what its config uses (a pump: no heater
  verification, 1oo2 voter, PT100 calibration or MAX31865 driver), and that set is
  complete: each shipped kind boots and ticks under MicroPython (Node WebAssembly) from
  ONLY its bundle's .mpy files (bench/mpy/board_ram.py, machine stubbed).
* The RAM table ``skid bundle`` checks against (host/board_ram_table.py) is current: it
  covers every shipped kind with exactly today's file set, and a fresh measurement agrees.
* ``skid bundle`` prints the expected headroom, refuses what will not fit (``--force``),
  takes ``--module-id`` and ``--frozen``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.bench_edge import measure_board_ram, shipped_kinds
from edge.boardconfig import compile_config, load_board_config
from edge.boardconfig.board_files import FEATURE_FILES, board_files, files_for_config, on_board
from host import bundle as hb
from host.board_ram_table import MEASURED
from host.cli import main as skid
from tools.micropython import node_available

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "board_configs"
KINDS = shipped_kinds()
FEATURELESS = ("edge/runaway.py", "edge/voter.py", "edge/rtd.py", "edge/drivers/max31865.py")


def _files(name: str) -> list[str]:
    return files_for_config(load_board_config(CONFIGS / name).data)


def test_a_pump_carries_no_heater_verification_voter_rtd_or_max31865():
    pump = _files("pump.toml")
    for rel in FEATURELESS + ("edge/drivers/emulated.py", "edge/table.py"):
        assert rel not in pump, rel
    assert "edge/drivers/ads1115.py" in pump  # its pressure transmitter
    reactor = _files("reactor.toml")
    for rel in FEATURELESS:
        assert rel in reactor, rel
    assert "edge/drivers/ads1115.py" not in reactor
    valve = _files("valve.toml")
    assert not [rel for rel in valve if rel in FEATURE_FILES]


def test_the_file_set_is_board_files_in_dependency_order():
    every = set(board_files())
    for path in KINDS.values():
        files = files_for_config(load_board_config(path).data)
        assert set(files) <= every and all(on_board(rel) for rel in files)
        assert files[-1] == "edge/boardmain.py" and len(files) == len(set(files))
        # dependencies first: the node before what builds it, the codec before messages
        assert files.index("edge/node.py") < files.index("edge/build.py")
        assert files.index("protocol/cbor.py") < files.index("protocol/messages.py")


def test_an_emulated_config_carries_the_emulated_drivers():
    from edge.boardconfig import emulate

    files = files_for_config(emulate(load_board_config(CONFIGS / "pump.toml")).data)
    assert "edge/drivers/emulated.py" in files and "edge/drivers/ads1115.py" not in files


def test_the_ram_table_covers_every_shipped_kind_with_todays_files():
    # A file added to, moved in or removed from a kind's set makes the table stale:
    # re-measure with `python -m bench.bench_edge --ram-table`.
    assert set(MEASURED) == set(KINDS)
    for kind, path in KINDS.items():
        m = MEASURED[kind]
        assert set(m["per_module"]) == set(_files(path.name)), kind
        assert m["imports"] == sum(m["per_module"].values())
        assert m["total"] == m["imports"] + m["runtime"]


@pytest.mark.skipif(not node_available(), reason="needs the Node MicroPython build")
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_boots_from_only_its_bundle_and_the_table_is_current(kind):
    m = measure_board_ram(KINDS[kind], ticks=1000)
    # booted from its own .mpy set alone, ticking in execute, broker away, queues full
    assert "state=execute" in m["summary"] and "tripped=False" in m["summary"]
    assert "events_queued=32" in m["summary"] and "acks_queued=8" in m["summary"]
    table = MEASURED[kind]
    assert abs(m["total"] - table["total"]) <= 0.05 * table["total"], (m, table)
    assert abs(m["runtime"] - table["runtime"]) <= 2048, (m, table)
    # the second 1,000 ticks keep no new objects (the WASI growth run is the bench's)
    assert m["second_1000_ticks"] <= 1024


def _skid(capsys, *args):
    code = skid(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_bundle_reports_ram_and_headroom_from_the_measured_table(tmp_path, capsys):
    code, out, err = _skid(
        capsys,
        "bundle",
        str(CONFIGS / "pump.toml"),
        "--target",
        "rp2",
        "-o",
        str(tmp_path),
        "--json",
    )
    assert code == 0, err
    s = json.loads(out.splitlines()[-1])
    assert s["ram_bytes"] == MEASURED["pump"]["total"] and "measured (pump" in s["ram_how"]
    assert s["heap_headroom_bytes"] == hb.TARGETS["rp2"].heap - s["ram_bytes"]
    assert "RAM after boot" in err and "headroom" in err
    got = {p.relative_to(tmp_path / "lib").as_posix() for p in (tmp_path / "lib").rglob("*.mpy")}
    assert got == {rel[:-3] + ".mpy" for rel in _files("pump.toml")}


def test_a_bundle_that_will_not_fit_the_heap_is_refused_unless_forced(tmp_path, capsys):
    args = ("bundle", str(CONFIGS / "valve.toml"), "--target", "esp32")
    need = MEASURED["valve"]["total"]
    assert need > hb.TARGETS["esp32"].heap  # .mpy imports do not fit a plain ESP32
    code, _, err = _skid(capsys, *args, "-o", str(tmp_path / "a"))
    assert code == 1 and "refused" in err and "--frozen" in err and "--force" in err
    code, _, err = _skid(capsys, *args, "-o", str(tmp_path / "b"), "--force")
    assert code == 0, err
    # frozen: no lib/, the imports cost what the frozen measurement says: it fits
    code, out, err = _skid(capsys, *args, "-o", str(tmp_path / "c"), "--frozen", "--json")
    assert code == 0, err
    s = json.loads(out.splitlines()[-1])
    assert s["frozen"] and not (tmp_path / "c" / "lib").exists()
    assert s["ram_imports_bytes"] == hb.FROZEN_IMPORTS and s["heap_headroom_bytes"] > 0


def test_module_id_names_the_board_and_changes_the_hash(tmp_path):
    from edge.compiled_config import load_board_file

    a = hb.build_bundle(CONFIGS / "pump.toml", "rp2", tmp_path / "a", module_id="pump_a")
    b = hb.build_bundle(CONFIGS / "pump.toml", "rp2", tmp_path / "b", module_id="pump_b")
    cfg_a, _ = load_board_file((tmp_path / "a" / "config.bin").read_bytes())
    assert cfg_a["module"]["id"] == "pump_a" and a.module_id == "pump_a"
    assert a.config_hash != b.config_hash
    assert (tmp_path / "a" / "config.bin").read_bytes()[8:] != compile_config(
        load_board_config(CONFIGS / "pump.toml")
    )
    with pytest.raises(hb.TargetMismatch, match="--module-id"):
        hb.build_bundle(CONFIGS / "pump.toml", "rp2", tmp_path / "c", module_id="Pump A")
