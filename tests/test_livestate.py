"""host.livestate.LiveLine: fed module and host messages built by protocol.messages and
host.runstatus, time advanced by passing ``now_ms``; nothing sleeps."""

from __future__ import annotations

import json

import cbor2
import pytest

from host.livestate import MAX_ALARMS, RUN_STALE_MS, STALE_AFTER_MS, LiveLine
from host.runstatus import build_run_status, run_topic
from protocol import messages
from protocol.constants import QUALITY_BAD
from protocol.topics import host_topic, module_topic
from protocol.wire import Channel

LINE = "l1"
T0 = 1_790_000_000_000  # host epoch ms
NONCE = b"\x01" * 8
CHANNELS = [
    Channel("temperature", "degC", "sensor", -50.0, 300.0, 0.01),
    Channel("coil_temp", "degC", "setpoint", 0.0, 200.0, 0.1),
    Channel("heater", "1", "actuator", 0.0, 1.0),  # float32 on the wire
]
CODEC = messages.TelemetryCodec(CHANNELS)
STATES = {"idle": ["start"], "execute": ["stop", "set_setpoint", "ack_alarm"]}


def topic(kind, module="reactor1"):
    return module_topic(LINE, module, kind)


def birth(state="idle", nonce=NONCE, bdseq=0):
    return messages.build_birth(
        "reactor1", "reactor", "1.0", b"\x00" * 8, "power_on", bdseq, nonce, CHANNELS, STATES, state
    )


def data(seq, temperature=25.0, qualities=None):
    return CODEC.build(seq, 1000 + seq, [temperature, 80.0, 0.5], qualities)


def event(number, event_type, severity="info", **kw):
    return messages.build_event(number, 500 + number, event_type, severity, **kw)


def run_status(**over):
    status = {
        "run_id": "r1",
        "recipe": "demo",
        "line": LINE,
        "online": True,
        "t_ms": T0,
        "state": "running",
        "phase": "heat",
        "phase_index": 1,
        "step": "heat",
        "phases": [
            {"name": "prime", "description": "", "conditions": ["15 s"]},
            {
                "name": "heat",
                "description": "",
                "conditions": ["reactor1.temperature ≥ 78 °C"],
            },
        ],
        "phase_started_ms": T0 - 10_000,
        "phase_elapsed_s": 10.0,
        "next_phase_in_s": None,
        "elapsed_s": 40.0,
        "reason": "",
        "collected_ml": 0.0,
        "diverted_ml": 0.0,
        "outlet": "waste",
        "setpoints": {"reactor1": {"coil_temp": 80.0}},
        "trips": [],
        "modules": {
            "reactor1": {
                "kind": "reactor",
                "state": "execute",
                "online": True,
                "period_ms": 500,
                "channels": [
                    {
                        "name": c.name,
                        "unit": c.unit,
                        "role": c.role,
                        "lo": c.lo,
                        "hi": c.hi,
                        "resolution": c.resolution,
                    }
                    for c in CHANNELS
                ],
                "loops": {"coil_temp": "temperature"},
            }
        },
    }
    status.update(over)
    return build_run_status(status)


def module(snap, mid="reactor1"):
    return next(m for m in snap["modules"] if m["id"] == mid)


def test_birth_and_telemetry_give_values_with_units_and_quality():
    live = LiveLine(LINE)
    live.on_link(True, T0)
    assert live.on_message(topic("birth"), birth(), T0)
    assert live.on_message(topic("data"), data(0, 25.0, [0, 0, QUALITY_BAD]), T0 + 100)
    snap = live.snapshot(T0 + 200)
    json.dumps(snap)  # JSON-able
    m = module(snap)
    assert m["born"] and m["online"] and not m["stale"] and m["state"] == "idle"
    assert m["kind"] == "reactor"
    t = m["values"]["temperature"]
    assert t["value"] == pytest.approx(25.0) and t["unit"] == "°C" and t["role"] == "sensor"
    assert t["quality"] == "good" and t["t_ms"] == T0 + 100 and not t["stale"]
    assert m["values"]["heater"]["quality"] == "bad" and m["values"]["heater"]["unit"] == ""


def test_a_module_heard_only_by_telemetry_is_online_and_the_run_status_decodes_it():
    """The issue's complaint: mid-run no birth is heard (births are not retained)."""
    live = LiveLine(LINE)
    live.on_link(True, T0)
    live.on_message(topic("data"), data(7), T0)
    m = module(live.snapshot(T0))
    assert m["online"] and not m["born"] and m["values"] == {}  # heard, not decodable yet
    # The retained run status arrives: channel catalogue, state, setpoints.
    live.on_message(run_topic(LINE), run_status(), T0 + 10)
    live.on_message(topic("data"), data(8, 77.5), T0 + 500)
    m = module(live.snapshot(T0 + 600))
    assert m["online"] and m["state"] == "execute" and not m["born"]
    t = m["values"]["temperature"]
    assert t["value"] == pytest.approx(77.5) and t["unit"] == "°C"
    # The loop's setpoint shows on its own channel and on the one it measures.
    assert t["setpoint"] == 80.0 and m["values"]["coil_temp"]["setpoint"] == 80.0
    assert m["values"]["heater"]["setpoint"] is None


def test_a_state_event_beats_the_run_status_and_a_birth_beats_the_catalogue():
    live = LiveLine(LINE)
    live.on_message(topic("event"), event(1, "state_change", state="held"), T0)
    live.on_message(run_topic(LINE), run_status(), T0 + 1)
    assert module(live.snapshot(T0 + 2))["state"] == "held"  # the module's own word
    live.on_message(topic("birth"), birth(state="execute"), T0 + 3)
    snap = live.snapshot(T0 + 4)
    assert module(snap)["state"] == "execute" and module(snap)["born"]


def test_run_snapshot_has_the_status_fields_and_the_phase_elapsed():
    live = LiveLine(LINE)
    live.on_link(True, T0)
    live.on_message(run_topic(LINE), run_status(), T0)
    run = live.snapshot(T0)["run"]
    assert run["recipe"] == "demo" and run["phase"] == "heat" and run["phase_elapsed_s"] == 10.0
    assert run["phases"][1]["conditions"] == ["reactor1.temperature ≥ 78 °C"]
    assert run["setpoints"] == {"reactor1": {"coil_temp": 80.0}} and not run["stale"]
    assert "modules" not in run  # the catalogue is in the snapshot's modules


def test_values_go_stale_after_three_periods_and_modules_after_the_registry_limit():
    live = LiveLine(LINE)
    live.on_link(True, T0)
    live.on_message(topic("birth"), birth(), T0)
    for i in range(3):  # a measured period of 100 ms
        live.on_message(topic("data"), data(i), T0 + 100 * i)
    last = T0 + 200
    assert not module(live.snapshot(last + 300))["values"]["temperature"]["stale"]
    assert live.tick(last + 301)  # the values just went stale
    m = module(live.snapshot(last + 301))
    assert m["values"]["temperature"]["stale"] and m["online"] and not m["stale"]
    m = module(live.snapshot(last + STALE_AFTER_MS + 301))
    assert m["stale"] and not m["online"]
    gaps = live.snapshot(last + STALE_AFTER_MS + 302)["gaps"]
    # The gap runs from when it was last heard.
    assert gaps == [{"from_ms": last, "to_ms": None, "what": "module:reactor1"}]
    live.on_message(topic("data"), data(3), last + 10_000)
    gap = live.snapshot(last + 10_000)["gaps"][0]
    assert gap["to_ms"] == last + 10_000 and not module(live.snapshot(last + 10_000))["stale"]


def test_death_of_the_current_session_only_and_a_gap_once_it_lasts():
    live = LiveLine(LINE)
    live.on_link(True, T0)
    live.on_message(topic("birth"), birth(bdseq=3), T0)
    assert not live.on_message(topic("death"), messages.build_death(2), T0 + 1)  # an old will
    assert module(live.snapshot(T0 + 2))["online"]
    live.on_message(topic("death"), messages.build_death(3), T0 + 3)
    snap = live.snapshot(T0 + 4)
    assert not module(snap)["online"] and module(snap)["stale"]
    # A gap only if it stays dead as long as silence would count (a broker going down
    # sends every module's will before the viewer's own link drops).
    assert snap["gaps"] == []
    limit = STALE_AFTER_MS + 3 * 1000
    assert live.snapshot(T0 + 3 + limit + 1)["gaps"] == [
        {"from_ms": T0 + 3, "to_ms": None, "what": "module:reactor1"}
    ]


def test_wills_sent_by_a_broker_going_down_are_no_module_gap():
    live = LiveLine(LINE)
    live.on_link(True, T0)
    live.on_message(topic("birth"), birth(bdseq=3), T0)
    live.on_message(topic("death"), messages.build_death(3), T0 + 10)  # the broker stops
    live.on_link(False, T0 + 20)
    live.on_link(True, T0 + 5000)
    live.on_message(topic("birth"), birth(bdseq=4), T0 + 6500)  # reconnected, born again
    snap = live.snapshot(T0 + 7000)
    assert [g["what"] for g in snap["gaps"]] == ["broker"] and module(snap)["online"]


def test_trips_alarms_acknowledgement_and_first_out():
    live = LiveLine(LINE)
    events = []
    live.add_listener(lambda kind, d: events.append((kind, d)))
    live.on_message(topic("birth"), birth(state="execute"), T0)
    live.on_message(
        topic("event"), event(1, "alarm", "warning", source="hi_temp", cause="high"), T0 + 10
    )
    live.on_message(topic("event"), event(2, "trip", "critical", cause="overtemp"), T0 + 20)
    live.on_message(topic("event", "pump_a"), event(1, "trip", "critical", cause="estop"), T0 + 30)
    snap = live.snapshot(T0 + 40)
    m = module(snap)
    assert m["alarms"] == ["high"]
    assert m["trips"] == [{"cause": "overtemp", "t_ms": T0 + 20, "first_out": True}]
    assert module(snap, "pump_a")["trips"][0]["first_out"] is False
    assert [a["cause"] for a in snap["alarms"]] == ["estop", "overtemp", "high"]  # newest first
    hi = snap["alarms"][2]
    assert hi["module"] == "reactor1" and hi["severity"] == "warning"
    assert hi["active"] and not hi["acked"] and hi["t_ms"] == T0 + 10
    # The module applied an acknowledgement; then the alarm clears, the trip is reset.
    live.on_message(
        topic("event"),
        event(3, "operator_action", detail="ack_alarm target=hi_temp"),
        T0 + 50,
    )
    assert live.snapshot(T0 + 51)["alarms"][2]["acked"]
    live.on_message(topic("event"), event(4, "alarm_cleared", source="hi_temp"), T0 + 60)
    live.on_message(topic("event"), event(5, "trip_reset"), T0 + 70)
    snap = live.snapshot(T0 + 80)
    assert module(snap)["alarms"] == [] and module(snap)["trips"] == []
    assert [a["active"] for a in snap["alarms"]] == [True, False, False]
    # The listener saw every event, typed, and every sample.
    assert [d["type"] for k, d in events if k == "event"] == [
        "alarm",
        "trip",
        "trip",
        "operator_action",
        "alarm_cleared",
        "trip_reset",
    ]


def test_a_redelivered_event_counts_once_and_the_alarm_list_is_bounded():
    live = LiveLine(LINE)
    e = event(1, "trip", "critical", cause="overtemp")
    assert live.on_message(topic("event"), e, T0)
    assert not live.on_message(topic("event"), e, T0 + 1)  # QoS 1 redelivery
    assert len(live.snapshot(T0)["alarms"]) == 1
    for i in range(MAX_ALARMS + 20):
        live.on_message(
            topic("event"), event(2 + 2 * i, "alarm", "warning", source="a", cause="x"), T0 + i
        )
        live.on_message(topic("event"), event(3 + 2 * i, "alarm_cleared", source="a"), T0 + i)
    assert len(live.snapshot(T0 + 10_000)["alarms"]) == MAX_ALARMS


def test_a_reboot_clears_latched_trips():
    live = LiveLine(LINE)
    live.on_message(topic("birth"), birth(), T0)
    live.on_message(topic("event"), event(1, "trip", "critical", cause="overtemp"), T0 + 1)
    live.on_message(topic("birth"), birth(nonce=b"\x02" * 8), T0 + 2)
    snap = live.snapshot(T0 + 3)
    assert module(snap)["trips"] == [] and not snap["alarms"][0]["active"]


def test_samples_go_to_listeners():
    live = LiveLine(LINE)
    samples = []
    live.add_listener(lambda kind, d: kind == "sample" and samples.append(d))
    live.on_message(topic("birth"), birth(), T0)
    live.on_message(topic("data"), data(0, 42.0), T0 + 5)
    assert samples[0] == {
        "module": "reactor1",
        "channel": "temperature",
        "t_ms": T0 + 5,
        "value": pytest.approx(42.0),
    }
    assert [s["channel"] for s in samples] == ["temperature", "coil_temp", "heater"]


def test_malformed_messages_are_counted_not_raised():
    live = LiveLine(LINE)
    assert not live.on_message(topic("data"), b"\xff\x00", T0)
    live.on_message(topic("birth"), birth(), T0)
    assert not live.on_message(topic("data"), b"not cbor", T0 + 1)
    assert not live.on_message(run_topic(LINE), b"\xa1\x61x\x01", T0 + 2)  # {"x": 1}
    assert live.malformed == 3 and "run status" in live.last_error
    assert not live.on_message("skid/v1/other/reactor1/data", data(0), T0)  # another line


def test_a_broker_outage_is_a_gap_and_silence_is_judged_from_when_it_ended():
    live = LiveLine(LINE)
    live.on_link(True, T0)
    live.on_message(host_topic(LINE, "state"), messages.build_state(True, T0), T0)
    live.on_message(run_topic(LINE), run_status(), T0)
    live.on_message(topic("birth"), birth(), T0)
    live.on_link(False, T0 + 1000)
    snap = live.snapshot(T0 + 30_000)  # a long outage: no coordinator or module gap
    assert [g["what"] for g in snap["gaps"]] == ["broker"]
    assert snap["link"] == {"connected": False, "since_ms": T0 + 1000}
    live.on_link(True, T0 + 31_000)
    snap = live.snapshot(T0 + 31_500)
    assert snap["gaps"] == [{"from_ms": T0 + 1000, "to_ms": T0 + 31_000, "what": "broker"}]
    assert snap["coordinator"]["online"] and module(snap)["online"]  # given time to speak


def test_a_coordinator_restart_is_a_gap_from_its_will_to_its_return():
    live = LiveLine(LINE)
    live.on_link(True, T0)
    state = host_topic(LINE, "state")
    live.on_message(state, messages.build_state(True, T0), T0)
    live.on_message(run_topic(LINE), run_status(), T0)
    assert live.snapshot(T0)["coordinator"] == {"online": True, "last_seen_ms": T0}
    live.on_message(state, messages.build_state(False, 0), T0 + 2000)  # its will
    snap = live.snapshot(T0 + 2001)
    assert not snap["coordinator"]["online"] and snap["run"]["stale"]
    assert snap["gaps"] == [{"from_ms": T0 + 2000, "to_ms": None, "what": "coordinator"}]
    live.on_message(state, messages.build_state(True, T0 + 9000), T0 + 9000)
    live.on_message(run_topic(LINE), run_status(t_ms=T0 + 9000), T0 + 9010)
    snap = live.snapshot(T0 + 9020)
    assert snap["coordinator"]["online"] and not snap["run"]["stale"]
    # Back online, but the gap ends with the first fresh run status (its old one is stale).
    assert snap["gaps"] == [{"from_ms": T0 + 2000, "to_ms": T0 + 9010, "what": "coordinator"}]


def test_a_silent_coordinator_is_a_gap_and_a_finished_run_is_not():
    live = LiveLine(LINE)
    live.on_link(True, T0)
    live.on_message(run_topic(LINE), run_status(), T0)
    assert live.snapshot(T0 + RUN_STALE_MS)["gaps"] == []
    snap = live.snapshot(T0 + RUN_STALE_MS + 1)
    assert snap["gaps"][0]["what"] == "coordinator" and not snap["coordinator"]["online"]
    # The closing message: the run is over; silence after it is no gap.
    live.on_message(run_topic(LINE), run_status(online=False, state="completed"), T0 + 9000)
    snap = live.snapshot(T0 + 60_000)
    assert snap["gaps"][0]["to_ms"] == T0 + 9000 and len(snap["gaps"]) == 1
    assert snap["run"]["state"] == "completed" and not snap["run"]["stale"]


def test_modules_follow_the_line_order_and_unheard_ones_are_listed():
    class Comp:
        def __init__(self, kind):
            self.kind = kind

    class Line:
        modules = {"pump_b": Comp("pump"), "reactor1": Comp("reactor"), "pump_a": Comp("pump")}

    live = LiveLine(LINE, Line())
    live.on_message(topic("data", "zeta"), data(0), T0)
    snap = live.snapshot(T0)
    assert [m["id"] for m in snap["modules"]] == ["pump_b", "reactor1", "pump_a", "zeta"]
    m = module(snap, "pump_a")
    assert m["kind"] == "pump" and not m["online"] and m["state"] is None
    assert m["last_seen_ms"] is None and m["values"] == {}


def test_snapshot_keys_are_always_present():
    snap = LiveLine(LINE).snapshot(T0)
    assert set(snap) == {"t_ms", "line", "link", "coordinator", "run", "modules", "alarms", "gaps"}
    assert snap["run"] is None and snap["coordinator"] == {"online": False, "last_seen_ms": None}
    assert snap["link"] == {"connected": False, "since_ms": None}


def test_a_catalogue_that_does_not_fit_the_telemetry_waits_for_a_birth():
    live = LiveLine(LINE)
    status = run_status()
    # The run status with one channel fewer than the module sends.
    body = cbor2.loads(status)
    body["modules"]["reactor1"]["channels"].pop()
    live.on_message(run_topic(LINE), build_run_status(body), T0)
    assert live.on_message(topic("data"), data(0), T0 + 1)  # heard, not decodable
    live.on_message(run_topic(LINE), build_run_status(body), T0 + 2)  # not taken again
    live.on_message(topic("data"), data(1), T0 + 3)
    m = module(live.snapshot(T0 + 4))
    assert m["online"] and m["values"] == {} and live.malformed == 0
    live.on_message(topic("birth"), birth(), T0 + 5)
    live.on_message(topic("data"), data(2, 30.0), T0 + 6)
    assert module(live.snapshot(T0 + 7))["values"]["temperature"]["value"] == pytest.approx(30.0)


def test_a_late_viewer_learns_latched_trips_and_alarms_from_the_run_status():
    """Events are not retained: the coordinator's lists stand in for those missed."""
    body = cbor2.loads(run_status())
    body["elapsed_s"] = 100.0
    body["trips"] = [
        {"module": "pump_a", "cause": "over_pressure", "t_s": 90.0},
        {"module": "reactor1", "cause": "overtemp", "t_s": 95.0},
    ]
    body["modules"]["reactor1"].update(trips=["overtemp"], alarms=["hi_temp"])
    body["modules"]["pump_a"] = dict(body["modules"]["reactor1"], trips=["over_pressure"])
    body["modules"]["pump_a"]["alarms"] = []
    live = LiveLine(LINE)
    live.on_message(run_topic(LINE), build_run_status(body), T0)
    snap = live.snapshot(T0)
    pump, reactor = module(snap, "pump_a"), module(snap)
    assert pump["trips"] == [{"cause": "over_pressure", "t_ms": T0 - 10_000, "first_out": True}]
    assert reactor["trips"] == [{"cause": "overtemp", "t_ms": T0 - 5000, "first_out": False}]
    assert reactor["alarms"] == ["hi_temp"]
    by_cause = {a["cause"]: a for a in snap["alarms"]}
    assert by_cause["hi_temp"]["active"] and by_cause["hi_temp"]["severity"] is None
    assert by_cause["over_pressure"]["active"]
    # The module's own event (a reset) outranks a run status built before it ...
    live.on_message(topic("event"), event(9, "trip_reset"), T0 + 100)
    live.on_message(run_topic(LINE), build_run_status(body), T0 + 500)
    assert module(live.snapshot(T0 + 600))["trips"] == []
    # ... and once its events are quiet, the coordinator's lists are the word: the reset
    # and the alarm's clearing the viewer saw only through them.
    body["modules"]["reactor1"].update(trips=[], alarms=[])
    live.on_message(run_topic(LINE), build_run_status(body), T0 + 5000)
    snap = live.snapshot(T0 + 5001)
    assert module(snap)["trips"] == [] and module(snap)["alarms"] == []
    assert not {a["cause"]: a for a in snap["alarms"]}["hi_temp"]["active"]
    assert module(snap, "pump_a")["trips"][0]["first_out"]


def test_trips_at_the_same_time_follow_the_coordinators_order_and_a_closed_run_vouches_for_none():
    body = cbor2.loads(run_status())
    body["trips"] = [
        {"module": "pump_b", "cause": "over_pressure", "t_s": 30.0},
        {"module": "pump_a", "cause": "over_pressure", "t_s": 30.0},
    ]
    entry = dict(body["modules"].pop("reactor1"), alarms=[], trips=["over_pressure"])
    body["modules"] = {"pump_a": dict(entry), "pump_b": dict(entry)}
    live = LiveLine(LINE)
    live.on_message(run_topic(LINE), build_run_status(body), T0)
    snap = live.snapshot(T0)
    assert module(snap, "pump_b")["trips"][0]["first_out"]
    assert not module(snap, "pump_a")["trips"][0]["first_out"]
    assert module(snap, "pump_a")["online"]  # not heard: the running coordinator's word
    body.update(online=False, state="aborted")  # the closing message
    live.on_message(run_topic(LINE), build_run_status(body), T0 + 1000)
    assert not module(live.snapshot(T0 + 1001), "pump_a")["online"]
