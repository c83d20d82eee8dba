"""Measured flow on the pump board: the SLF3x driver against an exact fake of its bus, the
deviation condition (interlocks and alarms), its board-config keys, and the flow-sensor
pump on the emulated demo line (a stopped or leaking feed pump trips within its bound)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.alarms import Alarm, AlarmSet
from edge.boardconfig import (
    ConfigErrors,
    compile_config,
    decompile,
    load_board_config,
    load_board_config_text,
)
from edge.boardconfig.board_files import files_for_config
from edge.boardconfig.drivers import emulated
from edge.drivers import build_sensor
from edge.drivers.slf3x import (
    CMD_START_IPA,
    CMD_START_WATER,
    CMD_STOP,
    FLAG_AIR_IN_LINE,
    FLAG_HIGH_FLOW,
    Slf3x,
    crc8,
)
from edge.interlocks import Action, Interlock, InterlockSet
from edge.signals import Linear, SensorChannel
from protocol.constants import QUALITY_BAD

ROOT = Path(__file__).resolve().parent.parent
PUMP_FLOW = ROOT / "board_configs" / "pump_flow.toml"
FLOW_LINE = ROOT / "examples" / "lines" / "demo_flow.toml"
RECIPE = ROOT / "examples" / "recipes" / "demo.toml"


# ------------------------------------------------------------------- the bus, byte-exact


class FakeSlf3xBus:
    """An I2C bus with one SLF3x at 0x08 (MicroPython API: ``writeto``, ``readfrom_into``).

    The sensor idles until a start command (0x3608 water / 0x3615 IPA) and NACKs reads
    while idle, as the datasheet's state machine does; a stop command (0x3FF9) or a
    general-call reset (0x00, 0x06) returns it to idle.  Each read returns the frame
    ``flow word, CRC, temperature word, CRC, flags word, CRC``; ``corrupt`` (a byte
    index) flips a bit of that byte once.  ``writes`` records (address, bytes)."""

    def __init__(self, flow=0, temperature=0, flags=0):
        self.flow = flow
        self.temperature = temperature
        self.flags = flags
        self.measuring = None  # the start command, or None while idle
        self.writes = []
        self.reads = 0
        self.corrupt = None
        self.fail = False

    def writeto(self, addr, buf):
        if self.fail:
            raise OSError(5)
        self.writes.append((addr, bytes(buf)))
        if addr == 0x00 and bytes(buf) == b"\x06":
            self.measuring = None
            return
        if addr != 0x08:
            raise OSError(19)
        cmd = (buf[0] << 8) | buf[1]
        if cmd in (CMD_START_WATER, CMD_START_IPA):
            self.measuring = cmd
        elif cmd == CMD_STOP:
            self.measuring = None

    def frame(self):
        out = bytearray()
        for word in (self.flow, self.temperature, self.flags):
            w = word & 0xFFFF
            pair = bytes((w >> 8, w & 0xFF))
            out += pair + bytes((crc8(pair),))
        return out

    def readfrom_into(self, addr, buf):
        if self.fail:
            raise OSError(5)
        if addr != 0x08 or self.measuring is None:
            raise OSError(19)  # NACK
        self.reads += 1
        data = self.frame()
        if self.corrupt is not None:
            data[self.corrupt] ^= 0x01
            self.corrupt = None
        for i in range(len(buf)):
            buf[i] = data[i]


def started(bus, **kw):
    s = Slf3x(bus, **kw)
    assert s.read(0) is None and s.fault == "starting"
    return s


def test_crc8_is_sensirions_crc_of_the_datasheet_example():
    assert crc8(bytearray(b"\xbe\xef")) == 0x92
    assert crc8(bytearray(b"\x00\x00")) == 0x81


@pytest.mark.parametrize("liquid,cmd", [("water", b"\x36\x08"), ("ipa", b"\x36\x15")])
def test_start_command_on_the_wire_then_settle_then_flow(liquid, cmd):
    bus = FakeSlf3xBus(flow=250)  # 250 / 500 = 0.5 mL/min
    s = Slf3x(bus, liquid=liquid, settle_ms=60)
    assert bus.writes == []  # construction does no bus I/O
    assert s.read(1000) is None and s.fault == "starting"
    assert bus.writes == [(0x08, cmd)]
    assert s.read(1059) is None and s.fault == "starting" and bus.reads == 0
    assert s.read(1060) == pytest.approx(0.5) and s.fault is None
    assert bus.reads == 1 and bus.writes == [(0x08, cmd)]  # no second start


def test_scale_factors_sign_and_temperature():
    bus = FakeSlf3xBus(flow=-1000, temperature=4600)
    s = started(bus, settle_ms=0)
    assert s.read(1) == pytest.approx(-2.0)  # 1300F: 500 per mL/min
    assert s.temperature == pytest.approx(23.0)  # 200 per degC
    bus2 = FakeSlf3xBus(flow=1000)
    s2 = started(bus2, model="SLF3S-0600F", settle_ms=0)
    assert s2.read(1) == pytest.approx(0.1)  # 0600F: 10 per uL/min -> 100 uL/min


@pytest.mark.parametrize("byte", range(9))
def test_a_bad_crc_in_any_byte_makes_the_channel_bad_with_reason_crc(byte):
    bus = FakeSlf3xBus(flow=250)
    s = started(bus, settle_ms=0)
    ch = SensorChannel("flow_measured", Linear(1.0, 0.0), 0, 500, -2.0, 12.0)
    ch.update(s.read(1), 1, s.fault)
    assert ch.quality != QUALITY_BAD and ch.value == pytest.approx(0.5)
    bus.corrupt = byte
    raw = s.read(2)
    ch.update(raw, 2, s.fault)
    assert raw is None and s.fault == "crc" and "CRC mismatch" in s.last_error
    assert ch.quality == QUALITY_BAD and ch.bad_reason == "crc"
    assert s.crc_errors == 1
    assert s.read(3) == pytest.approx(0.5)  # the next frame is good again


@pytest.mark.parametrize(
    "flag,fault", [(FLAG_AIR_IN_LINE, "air_in_line"), (FLAG_HIGH_FLOW, "high_flow")]
)
def test_air_in_line_and_high_flow_flags_are_no_measurement(flag, fault):
    bus = FakeSlf3xBus(flow=250, flags=flag | 0x20)
    s = started(bus, settle_ms=0)
    assert s.read(1) is None and s.fault == fault
    bus.flags = 0x20  # exponential smoothing alone is information, not a fault
    assert s.read(2) == pytest.approx(0.5) and s.flags == 0x20


def test_a_sensor_that_lost_power_is_restarted():
    bus = FakeSlf3xBus(flow=250)
    s = started(bus, settle_ms=0)
    assert s.read(1) == pytest.approx(0.5)
    bus.measuring = None  # power cycle: back idle, reads NACK
    assert s.read(2) is None and s.fault == "bus"
    assert s.read(3) is None and s.fault == "starting"  # start command re-sent
    assert bus.writes[-1] == (0x08, b"\x36\x08")
    assert s.read(4) == pytest.approx(0.5)


def test_stop_and_soft_reset_bytes():
    bus = FakeSlf3xBus()
    s = started(bus, settle_ms=0)
    s.stop()
    assert bus.writes[-1] == (0x08, b"\x3f\xf9") and bus.measuring is None
    s.soft_reset()
    assert bus.writes[-1] == (0x00, b"\x06")


def test_rejects_unknown_model_and_liquid():
    with pytest.raises(ValueError, match="model"):
        Slf3x(FakeSlf3xBus(), model="SLF3S-4000B")
    with pytest.raises(ValueError, match="liquid"):
        Slf3x(FakeSlf3xBus(), liquid="acetonitrile")


def test_build_sensor_from_a_spec():
    class Hw:
        bus = FakeSlf3xBus(flow=5)

        def i2c(self, bus_id):
            assert bus_id == 0
            return self.bus

    s = build_sensor({"driver": "slf3x", "i2c": 0, "model": "SLF3S-0600F"}, Hw())
    assert isinstance(s, Slf3x) and s.raw_unit == "mL/min" and s.model == "SLF3S-0600F"


# ------------------------------------------------------------------- the deviation condition


class Value:
    def __init__(self, value, name="x"):
        self.value = value
        self.name = name


def deviation(measured, reference, **kw):
    kw.setdefault("limit", 0.05)
    kw.setdefault("on_delay_ms", 3000)
    il = Interlock(
        "flow_deviation",
        measured,
        "deviation",
        action=Action(safe=("flow",), state="held"),
        cause="flow_deviation",
        reference=reference,
        **kw,
    )
    return il, InterlockSet([il], safe_values={"flow": 0.0})


def test_deviation_trips_only_after_the_on_delay_and_restarts_it_when_back_in_band():
    m, r = Value(0.5, "flow_measured"), Value(0.5, "flow")
    il, iset = deviation(m, r, relative=0.1)  # band 0.05 + 0.05 = 0.1
    assert not iset.evaluate(0)
    m.value = 0.39  # 0.11 off
    assert not iset.evaluate(1000)
    assert not iset.evaluate(3999)
    m.value = 0.41  # 0.09 off: inside, the delay restarts
    assert not iset.evaluate(4000)
    m.value = 0.61  # above too
    assert not iset.evaluate(5000)
    assert not iset.evaluate(7999)
    assert iset.evaluate(8000)
    rec = iset.first_out
    assert rec.cause == "flow_deviation" and rec.value == pytest.approx(0.61)
    assert iset.forced_outputs() == {"flow": 0.0} and iset.requested_state == "held"


def test_deviation_band_is_absolute_plus_relative_to_the_reference():
    m, r = Value(9.0), Value(10.0)
    il, iset = deviation(m, r, limit=0.05, relative=0.1, on_delay_ms=0)
    assert not iset.evaluate(0)  # 1.0 off, band 1.05
    m.value = 8.94  # 1.06 off
    assert iset.evaluate(1)
    m2, r2 = Value(-0.5), Value(-1.0)
    il2, iset2 = deviation(m2, r2, limit=0.0, relative=0.4, on_delay_ms=0)
    assert iset2.evaluate(0)  # |ref| = 1: band 0.4 < 0.5


def test_deviation_reset_waits_for_the_hysteresis_band_and_says_why():
    m, r = Value(0.0, "flow_measured"), Value(0.5, "flow")
    il, iset = deviation(m, r, limit=0.1, hysteresis=0.05, on_delay_ms=0)
    assert iset.evaluate(0)
    m.value = 0.42  # 0.08 off: inside the trip band, outside the reset band (0.05)
    ok, why = iset.reset(10)
    assert not ok
    assert "flow_deviation flow_measured = 0.42, reference flow = 0.5" in why
    assert "clears within +-0.05" in why
    m.value = 0.46
    assert iset.reset(20) == (True, "ok")


def test_a_forced_safe_reference_lets_a_stopped_pump_be_reset():
    """The reference is what was last written: once the trip forced the pump to 0, a
    measured 0 is no deviation, so the trip can be reset (and the fault shows again on
    the next start)."""
    m, r = Value(0.0), Value(0.5)
    il, iset = deviation(m, r, on_delay_ms=0)
    assert iset.evaluate(0)
    r.value = 0.0
    assert iset.reset(1) == (True, "ok")


def test_no_reference_value_is_no_deviation():
    m, r = Value(3.0), Value(None)
    il, iset = deviation(m, r, on_delay_ms=0)
    assert not iset.evaluate(0) and not iset.evaluate(10000)
    r.value = 0.0
    assert iset.evaluate(10001)
    r.value = None  # a loop gone to manual: nothing persists
    assert iset.reset(10002) == (True, "ok")


def test_an_unknown_measurement_persists_but_does_not_trip():
    m, r = Value(None), Value(1.0)
    il, iset = deviation(m, r, on_delay_ms=0)
    assert not iset.evaluate(0)
    m.value = 0.0
    assert iset.evaluate(1)
    m.value = None
    assert not iset.reset(2)[0]


def test_a_bad_flow_channel_trips_sensor_bad():
    ch = SensorChannel("flow_measured", Linear(1.0, 0.0), 0, 500, -2.0, 12.0)
    ch.update(None, 0, "crc")
    il, iset = deviation(ch, Value(0.5), on_delay_ms=0)
    assert iset.evaluate(0) and iset.first_out.cause == "sensor_bad"
    assert iset.first_out.reason == "crc"


def test_deviation_needs_a_reference_and_a_tolerance():
    with pytest.raises(ValueError, match="reference"):
        Interlock("d", Value(0), "deviation", limit=0.1)
    with pytest.raises(ValueError, match="tolerance"):
        Interlock("d", Value(0), "deviation", limit=-0.1, reference=Value(0))
    with pytest.raises(ValueError, match="relative"):
        Interlock("d", Value(0), "deviation", limit=0.1, reference=Value(0), relative=-1)


def test_deviation_alarm_raises_and_clears():
    m, r = Value(0.5), Value(0.5)
    a = Alarm(
        "flow_deviating",
        m,
        "deviation",
        limit=0.05,
        on_delay_ms=1000,
        hysteresis=0.02,
        cause="flow_deviation",
        reference=r,
    )
    alarms = AlarmSet([a])
    m.value = 0.4
    alarms.evaluate(0)
    alarms.evaluate(999)
    assert not a.active
    alarms.evaluate(1000)
    assert a.active and a.cause == "flow_deviation"
    m.value = 0.46  # 0.04 off: within 0.05 but not within 0.05 - 0.02
    alarms.evaluate(1100)
    assert a.active
    m.value = 0.48
    alarms.evaluate(1200)
    assert not a.active
    assert [raised for _, raised in alarms.pop_changes()] == [True, False]


# ------------------------------------------------------------------- board config


PUMP_FLOW_TEXT = PUMP_FLOW.read_text()


def errors_of(text):
    with pytest.raises(ConfigErrors) as info:
        load_board_config_text(text, "board_configs/pump_flow.toml")
    return info.value.errors


def test_shipped_pump_flow_config_loads_compiles_and_builds():
    from edge.build import build_node
    from edge.sink import NullSink

    cfg = load_board_config(PUMP_FLOW)
    assert cfg.kind == "pump"
    ch = cfg.channel("flow_measured")
    assert ch["driver"] == "slf3x" and ch["model"] == "SLF3S-1300F" and ch["liquid"] == "water"
    dev = [il for il in cfg.data["interlocks"] if il["id"] == "flow_deviation"][0]
    assert dev["reference"] == "flow" and dev["relative"] == 0.1 and dev["safe"] == ["flow"]
    compiled = compile_config(cfg)
    assert decompile(compiled) == cfg.data
    data = decompile(compile_config(emulated(decompile(compiled))))
    node = build_node(data, None, NullSink(), 0, b"\x01" * 8)
    il = [i for i in node.interlocks.interlocks if i.id == "flow_deviation"][0]
    flow = [s for s in node.actuators if s.name == "flow"][0]
    assert il.reference.value == flow.driver.value == 0.0  # the applied value
    assert "edge/drivers/slf3x.py" in files_for_config(cfg.data)


def test_the_pump_without_a_flow_sensor_carries_no_slf3x_driver_and_no_new_keys():
    cfg = load_board_config(ROOT / "board_configs" / "pump.toml")
    assert "edge/drivers/slf3x.py" not in files_for_config(cfg.data)
    assert all("reference" not in il for il in cfg.data["interlocks"])


def test_deviation_without_reference_is_an_error():
    text = PUMP_FLOW_TEXT.replace('reference = "flow"            # the value', "# the value")
    errs = errors_of(text)
    assert any(e.key == "interlocks[3].reference" and "is missing" in str(e) for e in errs)


def test_deviation_reference_in_another_unit_is_an_error():
    text = PUMP_FLOW_TEXT.replace(
        'reference = "flow"            # the value', 'reference = "pressure"  # the value'
    )
    errs = errors_of(text)
    assert any(e.key == "interlocks[3].reference" and "actuator" in str(e) for e in errs)


def test_a_reference_to_a_pid_loop_in_the_same_unit_is_accepted():
    from edge.boardconfig.loader import validate  # noqa: F401  (the loader is what is tested)

    text = (ROOT / "board_configs" / "reactor.toml").read_text()
    cfg = load_board_config(ROOT / "board_configs" / "reactor.toml")
    loop = cfg.data["pid"][0]
    text += (
        '\n[[alarms]]\nid = "temp_off_setpoint"\nchannel = "{}"\ncondition = "deviation"\n'
        'reference = "{}"\nlimit = 5.0\non_delay_ms = 60000\ncause = "off_setpoint"\n'
    ).format(loop["measure"], loop["name"])
    got = load_board_config_text(text, "board_configs/reactor.toml")
    alarm = got.data["alarms"][-1]
    assert alarm["reference"] == loop["name"] and alarm["condition"] == "deviation"


def test_slf3x_range_beyond_the_model_and_two_on_one_bus_are_errors():
    text = PUMP_FLOW_TEXT.replace('model = "SLF3S-1300F"', 'model = "SLF3S-0600F"')
    errs = errors_of(text)
    assert any(e.key == "channels.flow_measured.range" and "+-2.0" in str(e) for e in errs)
    second = (
        '\n[channels.flow_2]\nrole = "sensor"\nunit = "mL/min"\ndriver = "slf3x"\ni2c = 0\n'
        "range = [-2.0, 12.0]\n"
    )
    text = PUMP_FLOW_TEXT.replace("[channels.feed]", second + "\n[channels.feed]")
    errs = errors_of(text)
    assert any(e.key == "channels.flow_2.i2c" and "used twice" in str(e) for e in errs)


# ------------------------------------------------------------------- the emulated line


def _run(tmp_path, faults=()):
    """The demo recipe on the flow line; the summary and the audit entries
    (host_ms from the run's start, kind, module, data)."""
    from emulator.faults import line_targets, parse_fault_option
    from host.dryrun import run_in_process
    from host.record import RunRecord
    from line.loader import load_line

    modules, channels = line_targets(load_line(FLOW_LINE))
    summary = run_in_process(
        FLOW_LINE,
        RECIPE,
        runs_dir=tmp_path,
        faults=[parse_fault_option(f, modules, channels) for f in faults],
        log=lambda _m: None,
    )
    rec = RunRecord.open(summary.record, readonly=True)
    try:
        raw = list(rec.entries())
        t0 = raw[0]["host_ms"]
        entries = [(e["host_ms"] - t0, e["kind"], e["module"], e["data"]) for e in raw]
    finally:
        rec.close()
    return summary, entries


def test_a_healthy_flow_line_completes_without_a_flow_alarm(tmp_path):
    summary, entries = _run(tmp_path)
    assert summary.outcome == "completed"
    assert summary.trips == []
    flow_alarms = [e for e in entries if e[1] == "event" and e[3].get("cause") == "flow_deviation"]
    running = [e for e in flow_alarms if e[0] < 840_000]  # before the flush stops the feeds
    assert running == []


@pytest.mark.parametrize(
    "fault",
    ["pump-stall:pump_a@600", "leak:pump_a@600", "leak:pump_b@600"],
)
def test_a_stopped_or_leaking_feed_pump_trips_within_3_5_s_and_the_outlet_goes_to_waste(
    tmp_path, fault
):
    summary, entries = _run(tmp_path, [fault])
    assert summary.outcome == "aborted" and "flow_deviation" in summary.reason
    pump = fault.split(":")[1].split("@")[0]
    assert summary.trips[0]["module"] == pump
    assert summary.trips[0]["cause"] == "flow_deviation"
    assert 600.0 < summary.trips[0]["t_s"] <= 603.5  # on-delay 3 s + sensor and tick lag
    t_trip = summary.trips[0]["t_s"] * 1000
    waste = [
        e
        for e in entries
        if e[1] == "command"
        and e[2] == "valve1"
        and e[3]["args"] == {"channel": "position", "value": 0.0}
        and t_trip <= e[0] <= t_trip + 1000
    ]
    assert waste, "the outlet was not sent to waste within 1 s of the trip"
    # the tripped pump is forced safe (latched): its flow output stays 0 to the end
    latched = [
        e for e in entries if e[1] == "event" and e[2] == pump and e[3].get("type") == "trip"
    ]
    assert latched and latched[0][3]["cause"] == "flow_deviation"
