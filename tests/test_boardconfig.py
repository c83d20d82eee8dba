"""Board configuration: the shipped files, the validator's errors, the compiled form."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from edge_harness import Rig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import compiled_config
from edge.boardconfig import (
    ConfigError,
    ConfigErrors,
    compile_config,
    config_hash,
    decompile,
    emulate,
    load_board_config,
    load_board_config_text,
    schema,
)
from edge.boardconfig.compile import board_file
from protocol import cbor
from protocol.constants import RESULT_OK, RESULT_OUT_OF_RANGE
from tools.micropython import run_node

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "board_configs"
KINDS = ("pump", "reactor", "bpr", "valve", "analyzer")
REACTOR = (CONFIG_DIR / "reactor.toml").read_text()
REACTOR_FILE = "board_configs/reactor.toml"


def errors_of(text, filename=REACTOR_FILE):
    with pytest.raises(ConfigErrors) as info:
        load_board_config_text(text, filename)
    return info.value.errors


def mutate(old, new, text=REACTOR):
    assert text.count(old) == 1, f"test fixture: {old!r} must occur once"
    return text.replace(old, new)


def line_no(text, needle, nth=1):
    """1-based line of the nth line containing ``needle``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth - 1]


def only_error(text):
    errs = errors_of(text)
    assert len(errs) == 1, "\n".join(str(e) for e in errs)
    return errs[0]


# --- shipped files ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_config_loads_and_compiles(kind):
    cfg = load_board_config(CONFIG_DIR / (kind + ".toml"))
    assert cfg.kind == kind
    compiled = compile_config(cfg)
    assert decompile(compiled) == cfg.data
    _construct(decompile(compiled))  # what the validator accepts, the board accepts
    _construct(decompile(compile_config(emulate(cfg))))
    assert len(config_hash(compiled)) == 8
    # aliases are declaration order, loop setpoints after the channels
    aliases = [c["alias"] for c in cfg.data["channels"]] + [p["alias"] for p in cfg.data["pid"]]
    assert aliases == list(range(len(aliases)))
    assert [c["name"] for c in cfg.data["channels"]] == list(
        tomllib.loads((CONFIG_DIR / (kind + ".toml")).read_text())["channels"]
    )
    # every actuator has a safe value inside its range
    for ch in cfg.data["channels"]:
        if ch["role"] == "actuator":
            assert ch["range"][0] <= ch["safe"] <= ch["range"][1]


def test_shipped_configs_are_realistic_hardware():
    reactor = load_board_config(CONFIG_DIR / "reactor.toml")
    assert reactor.target == "rp2" and reactor.tick_ms == 100
    assert reactor.channel("temperature")["range"] == [0.0, 250.0]
    assert reactor.channel("temperature")["resolution"] == 0.01
    assert reactor.channel("heater")["safe"] == 0.0
    over = [i for i in reactor.data["interlocks"] if i["id"] == "over_temperature"][0]
    assert (over["limit"], over["hysteresis"], over["safe"]) == (150.0, 5.0, ["heater"])
    pump = load_board_config(CONFIG_DIR / "pump.toml")
    pressure = pump.channel("pressure")
    assert pressure["driver"] == "ads1115" and pressure["calibration"] == {
        "type": "4-20mA",
        "lo_value": 0.0,
        "hi_value": 40.0,
    }
    assert (
        pump.channel("flow")["range"] == [0.0, 10.0] and pump.channel("flow")["resolution"] == 0.001
    )
    assert not any(c.get("driver") == "emulated" for c in pump.channels)


def test_hash_is_stable_and_ignores_spelling():
    a = compile_config(load_board_config_text(REACTOR, "a.toml"))
    assert compile_config(load_board_config_text(REACTOR, "b.toml")) == a
    # comments, 150 vs 150.0, spelled-out defaults and key order do not change the config
    respelled = mutate("limit = 150.0", "limit = 150")
    respelled = mutate(
        "[channels.heater]\nrole", "[channels.heater]\ndeadman_ms = 1000\nrole", respelled
    )
    respelled = mutate(
        'cause = "over_temperature"', 'cause = "over_temperature"  # trip', respelled
    )
    respelled = mutate(
        'id = "reactor1"\nkind = "reactor"', 'kind = "reactor"\nid = "reactor1"', respelled
    )
    assert config_hash(compile_config(load_board_config_text(respelled, "c.toml"))) == config_hash(
        a
    )
    changed = mutate("limit = 150.0", "limit = 149.0")
    assert config_hash(compile_config(load_board_config_text(changed, "d.toml"))) != config_hash(a)


def test_emulated_variant_keeps_channels_and_has_its_own_hash():
    cfg = load_board_config(CONFIG_DIR / "reactor.toml")
    emu = emulate(cfg)
    assert [c["name"] for c in emu.channels] == [c["name"] for c in cfg.channels]
    assert [c["alias"] for c in emu.channels] == [c["alias"] for c in cfg.channels]
    raw_units = {c["name"]: c.get("raw_unit") for c in emu.channels if "driver" in c}
    assert raw_units == {
        "temp_a": "ohm",
        "temp_b": "ohm",
        "heater": None,
        "cutout": "0/1",
        "estop": "0/1",
    }
    assert all(c["driver"] == "emulated" for c in emu.channels if "driver" in c)
    assert "pin" not in emu.channel("heater") and "cs" not in emu.channel("temp_a")
    assert emu.channel("temp_a")["calibration"]["type"] == "pt100"  # calibration kept
    assert emu.data["watchdog"]["hardware"] is False
    assert emu.data["buses"]["spi_pins"] == {}
    assert emu.data["interlocks"] == cfg.data["interlocks"]
    assert config_hash(compile_config(emu)) != config_hash(compile_config(cfg))
    assert emu.emulated and not cfg.emulated
    pump = emulate(load_board_config(CONFIG_DIR / "pump.toml"))
    assert pump.channel("pressure")["raw_unit"] == "mA"  # ads1115 with a shunt read mA


class _FakeHardware:
    """Any hardware provider or bus: every method accepts anything."""

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in ("adc", "pwm", "pin_in", "pin_out", "spi", "i2c"):
            return lambda *a, **k: _FakeHardware()
        return lambda *a, **k: 0


_PID_ARGS = (
    "kp",
    "ki",
    "kd",
    "out_min",
    "out_max",
    "setpoint_min",
    "setpoint_max",
    "ramp_rate",
    "reverse",
    "sample_ms",
    "setpoint",
)
_VERIFIER_ARGS = (
    "hysteresis",
    "max_error",
    "heating_gain",
    "check_gain_time_ms",
    "full_power",
    "off_level",
    "uncontrolled_rise",
)


def _construct(data):
    """Feed a compiled dict to edge's real drivers, signals, PID, interlocks and verifier
    (each raises ValueError on an argument it does not accept)."""
    from edge.drivers import build_actuator, build_sensor
    from edge.interlocks import Action, Interlock, InterlockSet
    from edge.pid import PID
    from edge.rtd import Pt100
    from edge.runaway import HeaterVerifier
    from edge.signals import Current4to20, Linear, SensorChannel
    from edge.table import Table
    from edge.voter import Redundant1oo2

    calibrations = {"linear": Linear, "4-20mA": Current4to20, "pt100": Pt100, "table": Table}
    hw = _FakeHardware()  # one board: ADS1115 chips are shared between their channels
    built = {}
    for ch in data["channels"]:
        if ch["role"] == "actuator":
            built[ch["name"]] = build_actuator(ch, hw)
            continue
        if "redundant" in ch:
            a, b = (built[n] for n in ch["redundant"])
            built[ch["name"]] = Redundant1oo2(
                a, b, ch["max_disagreement"], ch["name"], ch["select"], ch["degraded_max_ms"]
            )
            continue
        assert build_sensor(ch, hw) is not None
        cal = None
        if "calibration" in ch:
            c = dict(ch["calibration"])
            cal = calibrations[c.pop("type")](**c)
        built[ch["name"]] = SensorChannel(
            ch["name"],
            cal,
            ch.get("filter_tau_ms", 0),
            ch.get("stale_ms"),
            ch["range"][0],
            ch["range"][1],
            uncertain_ms=ch.get("uncertain_ms"),
            stuck_ms=ch.get("stuck_ms"),
            stuck_band=ch.get("stuck_band", 0.0),
            stuck_bad=ch.get("on_stuck") == "bad",
        )
    for p in data["pid"]:
        PID(**{k: p[k] for k in _PID_ARGS})
    interlocks = [
        Interlock(
            i["id"],
            built[i["channel"]],
            i["condition"],
            i["limit"],
            i["on_delay_ms"],
            i["hysteresis"],
            Action(i["safe"], i["values"], i["state"]),
            i["cause"],
            i["trip_on_bad"],
            i["window_ms"],
        )
        for i in data["interlocks"]
    ]
    InterlockSet(
        interlocks, {c["name"]: c["safe"] for c in data["channels"] if c["role"] == "actuator"}
    )
    if data["runaway"]:
        HeaterVerifier(**{k: data["runaway"][k] for k in _VERIFIER_ARGS})


def test_compiled_specs_fit_the_real_constructors():
    for kind in KINDS:
        cfg = load_board_config(CONFIG_DIR / (kind + ".toml"))
        for variant in (cfg, emulate(cfg)):
            _construct(decompile(compile_config(variant)))


def test_compiled_form_decodes_identically_under_micropython():
    blobs = {
        k: board_file(compile_config(load_board_config(CONFIG_DIR / (k + ".toml")))) for k in KINDS
    }
    code = "\n".join(
        [
            "import binascii",
            "from edge.compiled_config import load_board_file, CompiledConfigError",
            "from protocol import cbor",
            "blobs = {}",
        ]
        + [f"blobs[{k!r}] = binascii.unhexlify({b.hex()!r})" for k, b in blobs.items()]
        + [
            "for k in sorted(blobs):",
            "    cfg, h = load_board_file(blobs[k])",
            "    print(k, binascii.hexlify(h).decode(), binascii.hexlify(cbor.encode(cfg)).decode(),",
            "          cfg['module']['id'], len(cfg['channels']))",
            "bad = bytearray(blobs['pump'])",
            "bad[-1] ^= 1",
            "try:",
            "    load_board_file(bytes(bad))",
            "    print('accepted corrupt')",
            "except CompiledConfigError as e:",
            "    print('rejected', 'mismatch' in str(e))",
        ]
    )
    out = run_node(code, packages=("protocol", "edge")).split("\n")
    lines = [line for line in out if line]
    for line, kind in zip(lines, sorted(KINDS), strict=False):
        name, h, reencoded, module_id, n = line.split()
        cfg = load_board_config(CONFIG_DIR / (kind + ".toml"))
        compiled = compile_config(cfg)
        assert name == kind
        assert bytes.fromhex(h) == config_hash(compiled)
        assert bytes.fromhex(reencoded) == compiled  # same dict: canonical re-encoding matches
        assert module_id == cfg.module_id and int(n) == len(cfg.channels)
    assert lines[-1] == "rejected True"


def test_compiled_config_checks_on_cpython():
    compiled = compile_config(load_board_config(CONFIG_DIR / "valve.toml"))
    h = config_hash(compiled)
    assert compiled_config.load_compiled(compiled, h) == decompile(compiled)
    with pytest.raises(compiled_config.CompiledConfigError, match="hash mismatch"):
        compiled_config.load_compiled(compiled, b"\0" * 8)
    with pytest.raises(compiled_config.CompiledConfigError, match="format"):
        compiled_config.load_compiled(cbor.encode({"format": 99}))
    with pytest.raises(compiled_config.CompiledConfigError, match="too short"):
        compiled_config.load_board_file(b"1234")
    assert compiled_config.load_board_file(board_file(compiled)) == (decompile(compiled), h)


# --- one test per error class -------------------------------------------------------------------


def test_unknown_key_with_did_you_mean():
    text = mutate("resolution = 0.001\nsafe = 0.0", "resolution = 0.001\nsaef = 0.0")
    errs = errors_of(text)
    unknown = [e for e in errs if e.key == "channels.heater.saef"][0]
    assert unknown.line == line_no(text, "saef = 0.0")
    assert unknown.value == 0.0
    assert "did you mean 'safe'?" in str(unknown)
    assert str(unknown).startswith(f"{REACTOR_FILE}:{unknown.line}: channels.heater.saef = 0.0 ")
    # the real key is then missing too: both are reported
    assert any(e.key == "channels.heater.safe" for e in errs)


def test_wrong_type():
    text = mutate("tick_ms = 100", 'tick_ms = "100"')
    e = only_error(text)
    assert (e.file, e.key, e.line, e.value) == (
        REACTOR_FILE,
        "module.tick_ms",
        line_no(text, "tick_ms"),
        "100",
    )
    assert str(e) == (
        REACTOR_FILE + f':{e.line}: module.tick_ms = "100" has the wrong type: expected '
        "an integer, got a string: allowed 10..1000 ms"
    )


def test_missing_safe_value():
    text = mutate("resolution = 0.001\nsafe = 0.0", "resolution = 0.001")
    e = only_error(text)
    assert e.key == "channels.heater.safe" and e.value is None
    assert e.line == line_no(text, "[channels.heater]")  # the table header
    assert "is missing: every actuator needs a safe value: allowed 0.0..1.0" in str(e)


def test_out_of_range_names_the_range():
    text = mutate("resolution = 0.001\nsafe = 0.0", "resolution = 0.001\nsafe = 1.5")
    e = only_error(text)
    assert str(e) == "{}:{}: channels.heater.safe = 1.5 is out of range: allowed 0.0..1.0".format(
        REACTOR_FILE, line_no(text, "safe = 1.5")
    )
    assert (e.key, e.value, e.allowed) == ("channels.heater.safe", 1.5, "0.0..1.0")
    e = only_error(mutate("tick_ms = 100", "tick_ms = 5"))
    assert "module.tick_ms = 5 is out of range: allowed 10..1000 ms" in str(e)


def test_pin_used_twice_names_both_keys():
    text = mutate("pin = 14", "pin = 15")
    e = only_error(text)
    assert e.key == "channels.cutout.pin" and e.value == 15
    assert e.line == line_no(text, "pin = 15", 2)
    assert "channels.heater.pin (line {})".format(line_no(text, "pin = 15")) in str(e)
    # a bus pin counts too
    e = only_error(mutate("pin = 14", "pin = 18"))
    assert e.key == "channels.cutout.pin" and "buses.spi0.sck" in str(e)


def test_interlock_naming_an_unknown_channel():
    text = mutate(
        'channel = "temperature"\ncondition = "above"\nlimit = 150.0',
        'channel = "temprature"\ncondition = "above"\nlimit = 150.0',
    )
    e = only_error(text)
    assert (e.key, e.value, e.line) == (
        "interlocks[0].channel",
        "temprature",
        line_no(text, '"temprature"'),
    )
    assert "names an unknown channel (did you mean 'temperature'?)" in str(e)


def test_wrong_role():
    text = mutate(
        'channel = "temperature"\ncondition = "above"\nlimit = 150.0',
        'channel = "heater"\ncondition = "above"\nlimit = 150.0',
    )
    e = only_error(text)
    assert (e.key, e.value) == ("interlocks[0].channel", "heater")
    assert (
        "is an actuator channel, not a sensor channel: allowed temp_a, temp_b, temperature"
        in str(e)
    )
    e = only_error(mutate('measure = "temperature"', 'measure = "heater"'))
    assert e.key == "pid.coil_temp.measure" and "not a sensor" in str(e)
    e = only_error(mutate('output = "heater"', 'output = "temp_a"'))
    assert e.key == "pid.coil_temp.output" and "not an actuator" in str(e)


def test_bad_kind():
    text = mutate('kind = "reactor"', 'kind = "reactr"')
    e = only_error(text)
    assert (e.key, e.value, e.line) == ("module.kind", "reactr", line_no(text, "reactr"))
    assert 'did you mean "reactor"?' in str(e)
    assert '"pump", "reactor", "bpr", "valve", "analyzer"' in str(e)


def test_many_errors_reported_at_once():
    text = mutate("tick_ms = 100", "tick_ms = 0")
    text = mutate("resolution = 0.001\nsafe = 0.0", "resolution = 0.001\nsafe = 2.0", text)
    text = mutate("pin = 14", "pin = 13", text)
    text = mutate('kind = "reactor"', 'kind = "reactr"', text)
    with pytest.raises(ConfigError) as info:
        load_board_config_text(text, REACTOR_FILE)
    keys = [e.key for e in info.value.errors]
    assert keys == ["module.kind", "module.tick_ms", "channels.heater.safe", "channels.estop.pin"]
    message = str(info.value)
    assert message.startswith(REACTOR_FILE + ": 4 errors:\n")
    assert all(str(e) in message for e in info.value.errors)
    assert isinstance(info.value, ValueError)


# --- further checks ---------------------------------------------------------------------------------


def test_toml_syntax_error_has_its_line():
    text = mutate("tick_ms = 100", "tick_ms = = 100")
    e = only_error(text)
    assert e.line == line_no(text, "tick_ms") and "is not valid TOML" in str(e)


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_board_config(tmp_path / "absent.toml")


def test_lease_hold_needs_a_bounded_grace():
    e = only_error(mutate("grace_ms = 60000", ""))
    assert e.key == "lease.grace_ms" and 'on_loss = "hold"' in str(e)
    e = only_error(mutate("grace_ms = 60000", "grace_ms = 3600000"))
    assert "allowed 1..600000 ms" in str(e)
    e = only_error(mutate('on_loss = "hold"', 'on_loss = "safe"'))
    assert e.key == "lease.grace_ms" and "does not apply" in str(e)


def test_timing_keys_must_cover_ticks():
    e = only_error(mutate("timeout_ms = 2000", "timeout_ms = 200"))
    assert e.key == "watchdog.timeout_ms" and "allowed > 200 ms (2 x tick_ms)" in str(e)
    e = only_error(mutate("timeout_ms = 2000", "timeout_ms = 9000"))
    assert "beyond the rp2 watchdog: allowed at most 8388 ms" in str(e)


def test_interlock_checks():
    e = only_error(mutate("limit = 150.0", "limit = 300.0"))
    assert e.key == "interlocks[0].limit" and "allowed 0.0..250.0 degC" in str(e)
    e = only_error(
        mutate(
            'id = "cutout"\nchannel = "cutout"\ncondition = "input_true"\nforce_safe = ["heater"]',
            'id = "cutout"\nchannel = "cutout"\ncondition = "input_true"\n'
            'limit = 1.0\nforce_safe = ["heater"]',
        )
    )
    assert e.key == "interlocks[1].limit" and 'does not apply to condition "input_true"' in str(e)
    text = mutate('force_safe = ["heater"]\nstate = "aborted"', 'state = "aborted"')
    errs = errors_of(text)
    assert errs[0].key == "interlocks[0]" and "forces nothing" in str(errs[0])
    e = only_error(
        mutate(
            'force_safe = ["heater"]\nstate = "aborted"',
            'force_values = { heater = 2.0 }\nstate = "aborted"',
        )
    )
    assert e.key == "interlocks[0].force_values.heater" and "allowed 0.0..1.0" in str(e)
    e = only_error(mutate('id = "high_temperature"', 'id = "over_temperature"'))
    assert e.key == "alarms[0].id" and "used twice" in str(e)


def test_estop_id_is_reserved_and_estop_forces_every_actuator():
    e = only_error(mutate('id = "cutout"', 'id = "estop"'))
    assert e.key == "interlocks[1].id" and "reserved" in str(e)
    cfg = load_board_config(CONFIG_DIR / "bpr.toml")
    assert cfg.data["estop"] == {
        "channel": "estop",
        "state": "aborted",
        "cause": "estop",
        "safe": ["valve"],
    }
    e = only_error(mutate('[estop]\nchannel = "estop"', '[estop]\nchannel = "heater"'))
    assert e.key == "estop.channel" and "not a status input" in str(e)


def test_command_line(capsys, tmp_path):
    from edge.boardconfig.__main__ import main

    assert main([str(CONFIG_DIR / "valve.toml"), "--emulate"]) == 0
    out = capsys.readouterr().out
    emu_hash = config_hash(compile_config(emulate(load_board_config(CONFIG_DIR / "valve.toml"))))
    assert emu_hash.hex() in out and "[emulated]" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(mutate('kind = "reactor"', 'kind = "reactr"'))
    assert main([str(bad)]) == 1
    assert "module.kind" in capsys.readouterr().err


def test_kind_requirements():
    # reactor: the over-temperature interlock must force the heater safe
    e = only_error(
        mutate(
            'limit = 150.0\nhysteresis = 5.0\nforce_safe = ["heater"]',
            "limit = 150.0\nhysteresis = 5.0\nforce_values = { heater = 0.5 }",
        )
    )
    assert e.key == "interlocks" and "over-temperature forces the heater safe" in str(e)
    errs = errors_of(mutate("[runaway]\npid", "[runaways]\npid"))
    assert {x.key for x in errs} == {"runaways", "runaway"}
    # pump without a high-pressure interlock
    pump = (CONFIG_DIR / "pump.toml").read_text()
    text = mutate(
        'id = "high_pressure"\nchannel = "pressure"\ncondition = "above"',
        'id = "high_pressure"\nchannel = "pressure"\ncondition = "below"',
        pump,
    )
    e = only_error(text)
    assert "high head pressure stops the pump" in str(e)
    # pump flow must be safe at 0 (even on hardware that would hold it unpowered) and a
    # reactor needs its cut-out input
    e = only_error(
        mutate(
            "resolution = 0.001\nsafe = 0.0",
            "resolution = 0.001\nsafe = 1.0\nunpowered = 1.0",
            pump,
        )
    )
    assert e.key == "channels.flow.safe" and "must be 0.0" in str(e)
    text = mutate('[channels.cutout]\nrole = "status"', '[channels.cutoff]\nrole = "status"')
    keys = {x.key for x in errors_of(text)}
    assert "channels.cutout" in keys


def test_driver_and_pin_capabilities():
    e = only_error(
        mutate(
            '[channels.heater]\nrole = "actuator"\nunit = "1"',
            '[channels.heater]\nrole = "actuator"\nunit = "1"\nshunt_ohms = 1',
        )
    )
    assert e.key == "channels.heater.shunt_ohms" and "parameter of ads1115" in str(e)
    valve = (CONFIG_DIR / "valve.toml").read_text()
    e = only_error(mutate("pin = 25", "pin = 36", valve))
    assert e.key == "channels.position.pin" and "input-only" in str(e)
    e = only_error(mutate("pin = 25", "pin = 7", valve))
    assert "6-11 drive the SPI flash" in str(e)
    # rp2 PWM: GPIO 15 and 31 do not exist, GPIO 15 and 14 share slice 7
    e = only_error(mutate("pin = 15\nfreq = 1000", "pin = 31\nfreq = 1000"))
    assert "allowed GPIO 0-29" in str(e)
    bpr = (CONFIG_DIR / "bpr.toml").read_text()
    text = mutate(
        "[channels.estop]",
        '[channels.spare]\nrole = "actuator"\nunit = "1"\n'
        'driver = "pwm"\npin = 14\nfreq = 500\nrange = [0.0, 1.0]\nsafe = 0.0\n\n'
        "[channels.estop]",
        bpr,
    )
    e = only_error(text)
    assert e.key == "channels.spare.freq" and "same PWM slice 7" in str(e)
    analyzer = (CONFIG_DIR / "analyzer.toml").read_text()
    e = only_error(mutate('driver = "pin_out"\npin = 17', 'driver = "pwm"\npin = 17', analyzer))
    assert "no hardware PWM on linux" in str(e)
    e = errors_of(mutate("channel = 1\n", "channel = 0\n", analyzer))[0]
    assert e.key == "channels.lamp_monitor.channel" and "channels.uv.channel" in str(e)


def test_linux_spi_kernel_chip_select():
    analyzer = (CONFIG_DIR / "analyzer.toml").read_text()
    rtd = (
        '\n[channels.{}]\nrole = "sensor"\nunit = "degC"\ndriver = "max31865"\nspi = {}\n'
        'wires = 2\ncalibration = {{ type = "pt100" }}\nrange = [0.0, 100.0]\n'
    )
    cfg = load_board_config_text(analyzer + rtd.format("cell_a", '"0.1"') + rtd.format("cell_b", 0))
    assert (cfg.channel("cell_a")["spi"], cfg.channel("cell_a")["cs"]) == ("0.1", None)
    text = analyzer + rtd.format("cell_a", '"0.0"') + rtd.format("cell_b", 0)
    e = only_error(text)
    assert e.key == "channels.cell_b.spi" and "/dev/spidev0.0 is already channels.cell_a" in str(e)
    e = only_error(mutate("spi = 0\ncs = 17", 'spi = "0.1"\ncs = 17'))
    assert e.key == "channels.temp_a.spi" and "only on linux" in str(e)
    e = only_error(mutate("spi = 0\ncs = 17", "spi = 0"))
    assert e.key == "channels.temp_a.cs" and "is missing" in str(e)


def test_calibration_checks():
    pump = (CONFIG_DIR / "pump.toml").read_text()
    e = only_error(mutate("shunt_ohms = 150.0\n", "", pump))
    assert e.key == "channels.pressure.calibration.type" and "needs readings in mA" in str(e)
    e = only_error(mutate("shunt_ohms = 150.0", "shunt_ohms = 250.0", pump))
    assert "clips" in str(e) and "4.096 V" in str(e)
    e = only_error(
        mutate("cs = 17\nwires = 3\nref_ohms = 430.0", "cs = 17\nwires = 3\nref_ohms = 150.0")
    )
    assert e.key == "channels.temp_a.ref_ohms" and "194.1 ohm at the range top 250.0" in str(e)
    analyzer = (CONFIG_DIR / "analyzer.toml").read_text()
    text = mutate("[0.791, 0.5]", "[0.2, 0.5]", analyzer)
    e = only_error(text)
    assert e.key == "channels.uv.calibration.points[13]"  # the 14th point, 0.5 AU
    assert e.line == line_no(text, "[0.2, 0.5]") and "strictly increasing" in str(e)


def test_redundant_channel_checks():
    text = mutate('redundant = ["temp_a", "temp_b"]', 'redundant = ["temp_a", "heater"]')
    e = only_error(text)
    assert e.key == "channels.temperature.redundant[1]" and "declared before" in str(e)
    e = only_error(mutate('select = "max"', 'select = "max"\npin = 3'))
    assert e.key == "channels.temperature.pin" and "no driver" in str(e)


def test_signal_time_limits_compile_with_their_defaults():
    data = load_board_config_text(REACTOR, REACTOR_FILE).data
    chans = {c["name"]: c for c in data["channels"]}
    # uncertain_ms defaults to the channel's stale_ms; stuck detection is off unless asked.
    assert chans["temp_a"]["uncertain_ms"] == chans["temp_a"]["stale_ms"] == 1000
    assert chans["temp_a"]["stuck_ms"] is None and chans["temp_a"]["on_stuck"] == "alarm"
    assert chans["temperature"]["degraded_max_ms"] == 600000
    over = [i for i in data["interlocks"] if i["id"] == "over_temperature"][0]
    assert over["unfiltered"] is True
    assert all(a["unfiltered"] is False for a in data["alarms"])
    text = mutate("degraded_max_ms = 600000 ", "#")
    chans = {c["name"]: c for c in load_board_config_text(text, REACTOR_FILE).data["channels"]}
    assert chans["temperature"]["degraded_max_ms"] == 3600000
    text = mutate("cs = 17\n", "cs = 17\nuncertain_ms = 300\n")
    chans = {c["name"]: c for c in load_board_config_text(text, REACTOR_FILE).data["channels"]}
    assert chans["temp_a"]["uncertain_ms"] == 300 and chans["temp_b"]["uncertain_ms"] == 1000
    for kind, trip in (("pump", "high_pressure"), ("bpr", "over_pressure")):
        data = load_board_config(CONFIG_DIR / (kind + ".toml")).data
        assert [i["unfiltered"] for i in data["interlocks"] if i["id"] == trip] == [True]
    pump = load_board_config(CONFIG_DIR / "pump.toml").data
    pressure = [c for c in pump["channels"] if c["name"] == "pressure"][0]
    assert (pressure["stuck_ms"], pressure["stuck_band"], pressure["on_stuck"]) == (
        60000,
        0.02,
        "alarm",
    )


def test_signal_time_limit_errors_are_located():
    in_temp_a = "cs = 17\n"  # a line of temp_a
    e = only_error(mutate(in_temp_a, in_temp_a + "uncertain_ms = 100\n"))
    assert e.key == "channels.temp_a.uncertain_ms" and e.value == 100
    assert e.line == line_no(mutate(in_temp_a, in_temp_a + "uncertain_ms = 100\n"), "uncertain_ms")
    assert "allowed >= 200 ms (2 x tick_ms)" in str(e)
    e = only_error(mutate(in_temp_a, in_temp_a + "uncertain_ms = 0\n"))
    assert e.key == "channels.temp_a.uncertain_ms" and "1..600000 ms" in str(e)
    text = mutate(in_temp_a, in_temp_a + "stuck_band = 0.1\n")
    e = only_error(text)
    assert e.key == "channels.temp_a.stuck_band" and "without stuck_ms" in str(e)
    assert e.line == line_no(text, "stuck_band")
    e = only_error(mutate(in_temp_a, in_temp_a + 'stuck_ms = 5000\non_stuck = "trip"\n'))
    assert e.key == "channels.temp_a.on_stuck" and 'one of "alarm", "bad"' in str(e)
    e = only_error(mutate(in_temp_a, in_temp_a + "stuck_ms = 100\n"))
    assert e.key == "channels.temp_a.stuck_ms" and "2 x tick_ms" in str(e)
    e = only_error(mutate(in_temp_a, in_temp_a + "stuck_ms = 5000\nstuck_band = -0.1\n"))
    assert e.key == "channels.temp_a.stuck_band" and ">= 0.0" in str(e)
    # The pair's keys and the probes' keys do not mix.
    e = only_error(mutate(in_temp_a, in_temp_a + "degraded_max_ms = 5000\n"))
    assert e.key == "channels.temp_a.degraded_max_ms" and "only applies to redundant" in str(e)
    e = only_error(mutate('select = "max"', 'select = "max"\nstuck_ms = 5000'))
    assert e.key == "channels.temperature.stuck_ms" and "redundant" in str(e)
    e = only_error(mutate("degraded_max_ms = 600000", "degraded_max_ms = 100000000"))
    assert e.key == "channels.temperature.degraded_max_ms" and "1..86400000 ms" in str(e)
    e = only_error(mutate("degraded_max_ms = 600000", "degraded_max_ms = 100"))
    assert "2 x tick_ms" in str(e)
    # unfiltered is for value conditions only.
    e = only_error(
        mutate(
            'condition = "bad_quality"\non_delay_ms = 500',
            'condition = "bad_quality"\non_delay_ms = 500\nunfiltered = true',
        )
    )
    assert (
        e.key == "interlocks[2].unfiltered"
        and 'does not apply to condition "bad_quality"' in str(e)
    )
    e = only_error(mutate("unfiltered = true ", "unfiltered = 1 "))
    assert e.key == "interlocks[0].unfiltered" and "true or false" in str(e)


# --- protections a config must not defeat (issue 10, item 9) ------------------------------

SETPOINT_RANGE = "setpoint_range = [20.0, 140.0]"
RAMP = "ramp_rate = 0.5               # degC/s"
BPR = (CONFIG_DIR / "bpr.toml").read_text()


def test_setpoint_range_above_the_over_temperature_trip_is_refused():
    # Shipped: trip at 150 degC with 5 degC hysteresis, so setpoints up to 145 degC.
    assert load_board_config_text(mutate(SETPOINT_RANGE, "setpoint_range = [20.0, 145.0]"))
    text = mutate(SETPOINT_RANGE, "setpoint_range = [20.0, 195.0]")
    e = only_error(text)
    assert e.code == "setpoint_above_trip"
    assert str(e) == (
        "{}:{}: pid.coil_temp.setpoint_range = [20.0, 195.0] reaches above the trip of "
        "interlocks[0] over_temperature (temperature above 150.0) [setpoint_above_trip]: "
        "allowed setpoint_max <= 145.0 degC (trip limit 150.0 - hysteresis 5.0)"
    ).format(REACTOR_FILE, line_no(text, "setpoint_range"))
    # inside the reset band: a module tripped there could not be reset at its setpoint
    e = only_error(mutate(SETPOINT_RANGE, "setpoint_range = [20.0, 146.0]"))
    assert e.code == "setpoint_above_trip" and e.value == [20.0, 146.0]


def test_setpoint_range_default_and_related_channels_count_too():
    # No setpoint_range: the measure's range (0..250) is the range the host may set.
    e = only_error(mutate(SETPOINT_RANGE + "  #", "#"))
    assert e.code == "setpoint_above_trip" and e.key == "pid.coil_temp"
    assert "[0.0, 250.0] (the measure's range)" in str(e)
    # An interlock on one probe of the loop's 1oo2 vote watches the same quantity.
    text = mutate(
        'id = "over_temperature"\nchannel = "temperature"',
        'id = "over_temperature"\nchannel = "temp_a"',
    )
    text = mutate(SETPOINT_RANGE, "setpoint_range = [20.0, 148.0]", text)
    e = only_error(text)
    assert e.code == "setpoint_above_trip" and "temp_a above 150.0" in str(e)


def test_setpoint_range_without_hysteresis_must_stay_below_the_limit():
    text = mutate("limit = 150.0\nhysteresis = 5.0", "limit = 140.0\nhysteresis = 0.0")
    e = only_error(text)
    assert e.code == "setpoint_above_trip" and e.allowed.startswith("setpoint_max < 140.0 degC")
    text = mutate("limit = 150.0\nhysteresis = 5.0", "limit = 140.5\nhysteresis = 0.0")
    assert load_board_config_text(text)


LOW_TRIP = """
[[interlocks]]
id = "too_cold"
channel = "temperature"
condition = "below"
limit = 25.0
hysteresis = 2.0
force_safe = ["heater"]
cause = "too_cold"
"""


def test_setpoint_range_below_a_low_trip_is_refused():
    text = mutate(
        '[[alarms]]\nid = "high_temperature"', LOW_TRIP + '\n[[alarms]]\nid = "high_temperature"'
    )
    e = only_error(text)
    assert e.code == "setpoint_below_trip" and e.key == "pid.coil_temp.setpoint_range"
    assert "reaches below the trip of interlocks[3] too_cold" in str(e)
    assert e.allowed == "setpoint_min >= 27.0 degC (trip limit 25.0 + hysteresis 2.0)"
    text = mutate(SETPOINT_RANGE, "setpoint_range = [27.0, 140.0]", text)
    assert load_board_config_text(mutate("setpoint = 20.0", "setpoint = 27.0", text))


def test_alarms_do_not_bound_the_setpoint_range():
    # high_temperature (an alarm at 140 degC) only reports; 145 degC is still allowed.
    assert load_board_config_text(mutate(SETPOINT_RANGE, "setpoint_range = [20.0, 145.0]"))


def test_loop_output_above_off_level_disables_uncontrolled_heating_detection():
    # repro edge-safety/08 (b): out_min 0.05 > off_level 0.0 hid an exotherm.
    text = mutate(RAMP, "output_range = [0.05, 1.0]")
    e = only_error(text)
    assert e.code == "output_min_above_off_level"
    assert e.key == "pid.coil_temp.output_range" and e.line == line_no(text, "output_range")
    assert e.value == [0.05, 1.0] and e.allowed.startswith("out_min <= 0.0")
    # raising off_level to the loop's minimum is the other fix
    assert load_board_config_text(mutate("off_level = 0.0", "off_level = 0.05", text))


def test_loop_output_below_full_power_disables_heater_not_heating():
    # repro edge-safety/08 (a): out_max 0.85 < full_power 0.9 hid an open heater.
    e = only_error(mutate(RAMP, "output_range = [0.0, 0.85]"))
    assert e.code == "output_max_below_full_power" and e.allowed.startswith("out_max >= 0.9")
    assert load_board_config_text(mutate(RAMP, "output_range = [0.0, 0.9]"))


def test_safe_value_that_needs_power_is_refused():
    # A normally-closed BPR valve (0 V = closed) whose safe value is "fully open".
    text = mutate("invert = true ", "invert = false", BPR)
    e = only_error(text)
    assert e.code == "safe_value_needs_power"
    assert e.key == "channels.valve.safe" and e.line == line_no(text, "safe = 1.0")
    assert "goes to 0.0 (pwm at duty 0 is lo = 0.0)" in str(e)
    assert e.allowed.startswith("0.0 (the de-energised value)")
    # The shipped, fail-open valve: duty 0 is hi = 1.0 = fully open = safe.
    cfg = load_board_config_text(BPR)
    assert cfg.channel("valve")["unpowered"] == 1.0 == cfg.channel("valve")["safe"]
    # A pin_out load is off at 0; a normally-open valve on it declares unpowered = 1.
    analyzer = (CONFIG_DIR / "analyzer.toml").read_text()
    lamp = "resolution = 1.0\nsafe = 0.0"
    e = only_error(mutate(lamp, "resolution = 1.0\nsafe = 1.0", analyzer))
    assert e.code == "safe_value_needs_power" and "a pin_out load is off at 0" in str(e)
    ok = load_board_config_text(
        mutate(lamp, "resolution = 1.0\nsafe = 1.0\nunpowered = 1.0", analyzer)
    )
    assert ok.channel("lamp")["unpowered"] == 1.0


def test_unpowered_is_compiled_and_survives_emulation():
    for kind in KINDS:
        cfg = load_board_config(CONFIG_DIR / f"{kind}.toml")
        for c in (cfg, emulate(cfg)):
            for ch in c.channels:
                if ch["role"] == "actuator":
                    assert ch["unpowered"] == ch["safe"]
                    assert (
                        decompile(compile_config(c))["channels"][ch["alias"]]["unpowered"]
                        == (ch["unpowered"])
                    )


def test_shipped_reactor_refuses_a_setpoint_above_its_trip():
    # repro edge-safety/07 (a): 195 degC against a 150 degC trip used to be accepted.
    rig = Rig("reactor")
    rig.start()
    assert rig.set("coil_temp", 195.0).result == RESULT_OUT_OF_RANGE
    assert rig.set("coil_temp", 146.0).result == RESULT_OUT_OF_RANGE
    assert rig.set("coil_temp", 140.0).result == RESULT_OK


def test_docs_tables_match_the_schema():
    doc = (ROOT / "docs" / "board-config.md").read_text()
    assert schema.render_doc(doc) == doc, "run: python -m edge.boardconfig --write-doc"
    for section in (
        "module",
        "lease",
        "watchdog",
        "channels",
        "pid",
        "interlocks",
        "alarms",
        "runaway",
        "estop",
    ):
        assert f"<!-- schema:{section} -->" in doc
    assert "## Compiled form" in doc


# --- robustness ---------------------------------------------------------------------------------

_NUMBER = re.compile(r'(?<![\w."])[-+]?(?:0x[0-9A-Fa-f]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w."])')
_HEADER = re.compile(r"^\s*\[{1,2}[A-Za-z_]")


def _number_spans(text):
    spans = []
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.split("#", 1)[0]
        if not _HEADER.match(body):
            start = body.find("=") + 1 if "=" in body else 0
            spans.extend((pos + m.start(), pos + m.end()) for m in _NUMBER.finditer(body, start))
        pos += len(line)
    return spans


_SHIPPED = {k: (CONFIG_DIR / (k + ".toml")).read_text() for k in KINDS}
_LITERALS = st.one_of(
    st.integers(-(2**64), 2**64).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda x: (
            "nan"
            if x != x
            else ("inf" if x == float("inf") else "-inf" if x == float("-inf") else repr(x))
        )
    ),
    st.sampled_from(
        ["0", "1", "-1", "0.0", "2", "29", "30", "0x4b", "1e300", "true", '"7"', "[1, 2]", "[]"]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(KINDS),
    st.lists(st.tuples(st.integers(0, 10**6), _LITERALS), min_size=1, max_size=3),
)
def test_mutated_numbers_load_or_raise_config_error(kind, edits):
    """Never another exception; and an accepted config builds on the board."""
    text = _SHIPPED[kind]
    for where, literal in edits:
        spans = _number_spans(text)
        a, b = spans[where % len(spans)]
        text = text[:a] + literal + text[b:]
    try:
        cfg = load_board_config_text(text, kind + ".toml")
    except ConfigError as exc:
        assert exc.errors and all(e.file == kind + ".toml" for e in exc.errors)
        return
    compiled = compile_config(cfg)
    assert decompile(compiled) == cfg.data
    _construct(decompile(compiled))  # what the validator accepts, the board accepts
    _construct(decompile(compile_config(emulate(cfg))))


def test_an_invalid_unit_on_a_loop_measure_is_reported_not_a_crash():
    # The loop's unit used to be the validator's BAD marker here, and the setpoint
    # cross-check crashed (TypeError) instead of reporting the unit.
    text = mutate('unit = "degC"\nredundant', 'unit = "degF"\nredundant')
    text = mutate(SETPOINT_RANGE, "setpoint_range = [20.0, 195.0]", text)
    errs = errors_of(text)
    assert [(e.key, e.code) for e in errs[:2]] == [
        ("channels.temperature.unit", None),
        ("pid.coil_temp.setpoint_range", "setpoint_above_trip"),
    ]
    assert 'is not a valid choice (did you mean "degC"?)' in str(errs[0])
    assert str(errs[1]).endswith(
        "allowed setpoint_max <= 145.0 (trip limit 150.0 - hysteresis 5.0)"
    )
    assert not any("runaway protection watches" in str(e) for e in errs)
