"""host.runstatus: the run status's checks, its resolved conditions, and the coordinator
publishing it (retained, each second and on every change, a closing message) on the
in-process bus during a real emulated run, read by a ``LiveLine`` that joins mid-run.
Everything runs on the simulated clock; nothing sleeps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cbor2
import pytest

from emulator.faults import line_targets, parse_fault_option
from host.dryrun import run_in_process
from host.livestate import LiveLine
from host.recipe import load_recipe, plan_recipe
from host.runstatus import FIELDS, RunStatusError, build_run_status, parse_run_status, run_topic
from host.runtext import find_step, phase_list, step_text, wait_text
from line.loader import load_line
from protocol.topics import line_filter

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
QUICK = ROOT / "examples" / "recipes" / "quick.toml"
DEMO = ROOT / "examples" / "recipes" / "demo.toml"


def minimal(**over) -> dict:
    status = {key: None for key, (_types, nullable) in FIELDS.items() if nullable}
    status.update(
        run_id="r1",
        line="l1",
        online=True,
        t_ms=1,
        state="running",
        phases=[],
        elapsed_s=0.0,
        reason="",
        setpoints={},
        trips=[],
        modules={},
    )
    status.update(over)
    return status


def test_a_status_round_trips_and_unknown_keys_are_kept():
    status = minimal(newer_field=[1, 2], setpoints={"bpr1": {"pressure_ctl": 5.0}})
    assert parse_run_status(build_run_status(status)) == status


@pytest.mark.parametrize(
    ("over", "names"),
    [
        ({"state": "paused"}, ["state", "'paused'", "running"]),
        ({"outlet": "drain"}, ["outlet", "'drain'", "collect | waste"]),
        ({"t_ms": "soon"}, ["t_ms", "'soon'", "an integer"]),
        ({"online": 1}, ["online", "1", "true/false"]),
        ({"elapsed_s": float("nan")}, ["elapsed_s", "nan", "finite"]),
        ({"setpoints": {"bpr1": {"p": "high"}}}, ["setpoints.bpr1.p", "'high'", "a number"]),
        ({"phases": [{"name": "a", "conditions": "x"}]}, ["phases[0].conditions", "texts"]),
        ({"modules": {"m": {"kind": "pump"}}}, ["modules.m", "channel list"]),
    ],
)
def test_a_bad_status_is_refused_naming_key_value_and_what_is_allowed(over, names):
    with pytest.raises(RunStatusError) as err:
        build_run_status(minimal(**over))
    for name in names:
        assert name in str(err.value)


def test_missing_keys_and_non_cbor_are_refused():
    status = minimal()
    del status["phase"]
    with pytest.raises(RunStatusError, match="phase = None: allowed present"):
        parse_run_status(cbor2.dumps(status))
    with pytest.raises(RunStatusError, match="not CBOR"):
        parse_run_status(b"\xff\xff")
    with pytest.raises(RunStatusError, match="a map"):
        parse_run_status(cbor2.dumps([1, 2]))


def test_run_topic_is_a_host_topic_of_the_line():
    assert run_topic("demo") == "skid/v1/demo/host/run"
    with pytest.raises(ValueError, match="line id"):
        run_topic("a/b")


def test_conditions_are_resolved_to_numbers_with_units():
    """The issue's complaint: "temperature - 2" in what the operator reads."""
    line = load_line(LINE)
    recipe = load_recipe(DEMO)
    plan = plan_recipe(recipe, line)
    phases = {p["name"]: p for p in phase_list(recipe, plan)}
    assert phases["heat"]["conditions"] == ["reactor1.temperature ≥ 78 °C"]
    assert phases["pressurise"]["conditions"] == ["bpr1.pressure = 5 ± 0.5 bar for 5 s"]
    assert phases["cool"]["conditions"] == ["reactor1.temperature ≤ 60 °C"]
    steady = phases["steady-state"]["conditions"][0]
    assert "reactor1.temperature steady within 1.5 °C over 30 s" in steady
    assert phases["collect"]["conditions"] == ["100 mL collected"]
    assert "temperature -" not in json.dumps(phases)
    # A step named by the loader from its actions is named again, resolved; a step the
    # author named keeps its name.
    heat_step = find_step(recipe, "heat", heat_name := recipe.phases[2].steps[0].name)
    assert "temperature - 2" in heat_name
    assert step_text(heat_step, plan, recipe) == (
        "reactor1.coil_temp=80 °C; wait reactor1.temperature ≥ 78 °C"
    )
    named = dataclasses.replace(heat_step, name="bring the coil to temperature")
    assert step_text(named, plan, recipe) == "bring the coil to temperature"
    # Without a plan the text stays as written rather than failing.
    heat = next(p for p in recipe.phases if p.name == "heat")
    assert wait_text(heat.steps[0].wait, None, recipe) == ("reactor1.temperature ≥ temperature - 2")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick recipe in process; every host/run publish with the coordinator's clock,
    every phase change seen by on_tick, and a LiveLine that joins after the births."""
    published: list[tuple[int, bool, dict]] = []
    phase_changes: list[tuple[int, str]] = []
    viewer = {}

    def on_tick(coord, _plant):
        transport = coord.transport
        if not published and not hasattr(transport, "_spy"):
            original = transport.publish

            def spy(topic, payload, qos=0, retain=False, **kw):
                if topic == run_topic(coord.line_id):
                    assert qos == 1
                    published.append((coord.now_ms, retain, parse_run_status(payload)))
                return original(topic, payload, qos=qos, retain=retain, **kw)

            transport.publish = transport._spy = spy
            viewer["spy_from_ms"] = coord.now_ms
        seq = coord.sequencer
        if seq is not None and (not phase_changes or phase_changes[-1][1] != seq.phase):
            phase_changes.append((coord.now_ms, seq.phase))
        if seq is not None and seq.phase == "heat" and "live" not in viewer:
            # A viewer arriving mid-run: every birth is long gone.
            live = viewer["live"] = LiveLine(coord.line_id, coord.line)
            client = transport.bus.client("viewer")
            viewer["client"] = client
            client.subscribe(
                line_filter(coord.line_id),
                lambda t, p: live.on_message(t, p, coord.host_ms()),
            )
            live.on_link(True, coord.host_ms())
        if "live" in viewer:
            viewer["client"].poll()
            if seq is not None and seq.phase == "collect" and "collecting" not in viewer:
                viewer["collecting"] = viewer["live"].snapshot(coord.host_ms())

    log: list[str] = []
    summary = run_in_process(
        LINE, QUICK, runs_dir=tmp_path_factory.mktemp("runs"), on_tick=on_tick, log=log.append
    )
    viewer["log"] = log
    return summary, published, phase_changes, viewer


def test_the_status_is_retained_published_each_second_and_on_every_phase_change(quick_run):
    summary, published, phase_changes, viewer = quick_run
    assert summary.outcome == "completed"
    assert all(retain for _t, retain, _s in published)
    times = [t for t, _r, _s in published]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 1000 + 50
    # At once on a change: a status naming the new phase in the tick it was entered.
    watched = [(t, phase) for t, phase in phase_changes if t > viewer["spy_from_ms"]]
    assert [p for _t, p in watched][:3] == ["pressurise", "heat", "steady-state"]
    for t, phase in watched:
        assert any(pt == t and s["phase"] == phase for pt, _r, s in published), phase
    running = [s for _t, _r, s in published if s["online"]]
    # Completed once the sequencer is done, while the coordinator lets final events land.
    states = [s["state"] for s in running]
    assert states == sorted(states, key=["attaching", "running", "completed"].index)
    assert [p["name"] for p in running[-1]["phases"]][:2] == ["prime", "pressurise"]


def test_the_closing_status_is_the_last_and_carries_the_outcome(quick_run):
    summary, published, _changes, _viewer = quick_run
    _t, _r, last = published[-1]
    assert not last["online"] and last["state"] == summary.outcome == "completed"
    assert last["run_id"] == summary.run_id and last["recipe"] == "quick"
    assert last["collected_ml"] == pytest.approx(summary.collected_ml, abs=0.01)
    assert sum(1 for _t, _r, s in published if not s["online"]) == 1


def test_the_status_carries_setpoints_and_every_modules_catalogue(quick_run):
    _summary, published, _changes, _viewer = quick_run
    # The last of the collect phase: the valve has long reached its collect position.
    collecting = [s for _t, _r, s in published if s["phase"] == "collect"][-1]
    assert collecting["outlet"] == "collect" and collecting["state"] == "running"
    assert collecting["setpoints"]["reactor1"]["coil_temp"] == 40.0
    assert collecting["setpoints"]["bpr1"]["pressure_ctl"] == 3.0
    reactor = collecting["modules"]["reactor1"]
    assert reactor["kind"] == "reactor" and reactor["online"] and reactor["state"] == "execute"
    units = {c["name"]: c["unit"] for c in reactor["channels"]}
    assert units["temperature"] == "degC"
    assert reactor["loops"] == {"coil_temp": "temperature"}
    assert collecting["phase_started_ms"] <= collecting["t_ms"]
    assert collecting["phase_elapsed_s"] >= 0


def test_a_viewer_joining_mid_run_sees_every_module_online_with_units(quick_run):
    """The issue: `skid status` during a run listed every module as "?", online false."""
    _summary, _published, _changes, viewer = quick_run
    snap = viewer["collecting"]
    assert snap["run"]["phase"] == "collect" and snap["coordinator"]["online"]
    for m in snap["modules"]:
        assert m["online"] and not m["born"] and m["state"] not in (None, "?"), m["id"]
        assert m["values"], m["id"]
    reactor = next(m for m in snap["modules"] if m["id"] == "reactor1")
    t = reactor["values"]["temperature"]
    assert t["unit"] == "°C" and t["setpoint"] == 40.0 and t["value"] > 35.0


def test_progress_lines_show_resolved_waits_and_units(quick_run):
    """The issue: progress lines had no units and unresolved expressions."""
    _summary, _published, _changes, viewer = quick_run
    progress = [line for line in viewer["log"] if line.startswith("t=")]
    heat = next(line for line in progress if "running: heat" in line)
    assert "wait reactor1.temperature = 40 ± 2 °C for 10 s" in heat, heat
    assert "reactor1.temperature=" in heat and " °C" in heat and " bar" in heat
    assert not any("of temperature" in line or "of pressure" in line for line in progress)


def test_a_viewer_joining_after_a_trip_sees_it_on_the_right_module_first_out(tmp_path):
    """Trip events are not retained: the run status carries the latched trips."""
    modules, channels = line_targets(load_line(LINE))
    clog = parse_fault_option("clog:reactor1@60,rate=0.2", modules, channels)
    seen: dict = {}

    def on_tick(coord, _plant):
        if (
            coord.trips
            and "joined" not in seen
            and coord.now_ms > seen.setdefault("trip_ms", coord.now_ms + 3000)
        ):
            seen["joined"] = LiveLine(coord.line_id, coord.line)
            client = coord.transport.bus.client("late-viewer")
            client.subscribe(
                line_filter(coord.line_id),
                lambda t, p: seen["joined"].on_message(t, p, coord.host_ms()),
            )
            seen["client"] = client
        if "client" in seen and "snap" not in seen:
            seen["client"].poll()
            snap = seen["joined"].snapshot(coord.host_ms())
            if snap["run"] is not None:
                seen["snap"] = snap
                seen["first"] = coord.trips[0]

    run_in_process(LINE, QUICK, faults=[clog], runs_dir=tmp_path, on_tick=on_tick)
    snap, first = seen["snap"], seen["first"]
    tripped = {m["id"]: m["trips"] for m in snap["modules"] if m["trips"]}
    assert first.module in tripped, tripped
    firsts = [(mid, t["cause"]) for mid, ts in tripped.items() for t in ts if t["first_out"]]
    assert firsts == [(first.module, first.cause)]
    active = [a for a in snap["alarms"] if a["active"] and a["module"] == first.module]
    assert any(a["cause"] == first.cause for a in active), snap["alarms"]
