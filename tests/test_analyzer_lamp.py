"""The analyzer's lamp: a bad uv reading (or a dim lamp monitor) while the lamp is switched
off is no fault.  Every normal run used to end with a spurious "uv1: sensor_bad" alarm:
stopping the module switches the lamp off (its safe value), the photodiode reads dark, the
absorbance table reads that as out of range, and the ``uv_bad`` alarm fired a second later.
The board config's ``while_on = "lamp"`` makes both lamp-dependent alarms apply only while
the lamp is lit."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.alarms import Alarm, AlarmSet
from edge.boardconfig.loader import load_board_config, load_board_config_text
from host.dryrun import run_in_process
from host.record import RunRecord
from protocol.constants import QUALITY_BAD

ROOT = Path(__file__).resolve().parent.parent
ANALYZER = ROOT / "board_configs" / "analyzer.toml"


class Value:
    def __init__(self, value, quality=0):
        self.value = value
        self.quality = quality
        self.name = "x"


def test_an_alarm_while_on_an_actuator_is_judged_only_while_it_is_on():
    uv, lamp = Value(0.8), Value(1.0)
    a = Alarm("uv_bad", uv, "bad_quality", on_delay_ms=1000, while_on=lamp)
    alarms = AlarmSet([a])
    uv.quality = QUALITY_BAD
    alarms.evaluate(0)
    alarms.evaluate(1000)
    assert a.active and a.cause == "sensor_bad"  # lamp lit: a bad reading is a fault
    lamp.value = 0.0
    alarms.evaluate(1100)
    assert not a.active  # switched off: the alarm clears at once ...
    alarms.evaluate(5000)
    assert not a.active  # ... and stays clear however long the reading is bad
    lamp.value = 1.0
    alarms.evaluate(5100)
    alarms.evaluate(6099)
    assert not a.active  # back on: the on-delay starts again
    alarms.evaluate(6100)
    assert a.active
    assert [raised for _, raised in alarms.pop_changes()] == [True, False, True]


def test_without_while_on_the_same_alarm_fires_with_the_lamp_off():
    uv = Value(0.8, QUALITY_BAD)
    a = Alarm("uv_bad", uv, "bad_quality", on_delay_ms=1000)
    alarms = AlarmSet([a])
    alarms.evaluate(0)
    alarms.evaluate(1000)
    assert a.active


def test_the_analyzer_board_gates_its_lamp_alarms_on_the_lamp():
    cfg = load_board_config(ANALYZER)
    gated = {a["id"]: a.get("while_on") for a in cfg.data["alarms"]}
    assert gated == {"uv_bad": "lamp", "lamp_weak": "lamp"}


def test_while_on_must_name_an_actuator():
    text = ANALYZER.read_text().replace('while_on = "lamp"\n', 'while_on = "uv"\n', 1)
    with pytest.raises(Exception, match="while_on"):
        load_board_config_text(text)


def test_a_normal_run_ends_without_an_analyzer_alarm(tmp_path):
    """The demo run (emulated, in process): no alarm at all, in particular none from uv1
    after the stop switched its lamp off (without ``while_on``: "uv1 alarm sensor_bad
    value 0.7981" 1.2 s after the stop)."""
    line = ROOT / "examples" / "lines" / "demo.toml"
    recipe = ROOT / "examples" / "recipes" / "demo.toml"
    summary = run_in_process(line, recipe, runs_dir=tmp_path, max_s=1100)
    assert summary.outcome == "completed"
    rec = RunRecord.open(summary.record, readonly=True)
    try:
        alarms = [e for e in rec.events() if e["type"] == "alarm"]
        lamp_off = [
            s["host_ms"] for s in rec.samples("uv1", "lamp") if s["value"] == 0.0 and s["host_ms"]
        ]
        uv_bad = [s for s in rec.samples("uv1", "uv") if s["quality"] == "bad"]
    finally:
        rec.close()
    assert lamp_off and uv_bad  # the lamp did go off and the reading went bad: still silent
    assert alarms == []
