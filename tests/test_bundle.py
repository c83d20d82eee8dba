"""``skid bundle`` and ``skid flash``: layout, refusal of bad configs, secrets never shown,
mpy-cross architecture flags, sizes, flash command lines, and the generic bundle really
booting from its .mpy files under MicroPython (Node WebAssembly port)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from edge.boardconfig import compile_config, load_board_config
from edge.boardconfig.board_files import files_for_config
from host import bundle as hb
from host.cli import main as skid
from protocol import host_messages
from protocol.topics import TOPIC_BIRTH, module_topic
from tools.micropython import run_node

ROOT = Path(__file__).resolve().parent.parent
REACTOR = ROOT / "board_configs" / "reactor.toml"
BOOT = ROOT / "tests" / "mpy" / "bundle_boot.py"

WIFI_PW = "wifi-pw-Zq7xK2"
MQTT_PW = "mqtt-pw-Rt8vL3"
KEY_HEX = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
SECRET_VALUES = (WIFI_PW, MQTT_PW, KEY_HEX, "plant-ssid-Yw4", "reactor1-user-Uu9")


def _secrets_toml(tmp_path: Path, **over) -> Path:
    values = {
        "ssid": "plant-ssid-Yw4",
        "wifi_pw": WIFI_PW,
        "url": "mqtt://192.168.1.10:1884",
        "user": "reactor1-user-Uu9",
        "mqtt_pw": MQTT_PW,
        "key": KEY_HEX,
    }
    values.update(over)
    path = tmp_path / "secrets.toml"
    path.write_text(
        'line = "line1"\n'
        f'[wifi]\nssid = "{values["ssid"]}"\npassword = "{values["wifi_pw"]}"\n'
        f'[broker]\nurl = "{values["url"]}"\nusername = "{values["user"]}"\n'
        f'password = "{values["mqtt_pw"]}"\n'
        f'[command_key]\nhex = "{values["key"]}"\n'
    )
    return path


def _skid(capsys, *args) -> tuple[int, str, str]:
    code = skid(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def generic_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "generic"
    hb.build_bundle(REACTOR, "generic", out)
    return out


# -- layout, sizes, determinism ----------------------------------------------------------


def test_layout_mirrors_the_board_file_list_and_reports_sizes(tmp_path, capsys):
    out = tmp_path / "new" / "dir"  # created, parents included
    code, stdout, err = _skid(
        capsys, "bundle", str(REACTOR), "--target", "rp2", "-o", str(out), "--json"
    )
    assert code == 0, err
    # Only what the reactor's config needs (tests/test_board_memory.py: per-kind sets).
    expected = {
        "lib/" + rel[:-3] + ".mpy" for rel in files_for_config(load_board_config(REACTOR).data)
    }
    got = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    top = {"main.py", "boot.py", "config.bin", "board_secrets.py"}
    assert got == expected | top
    # Packages keep their structure, __init__ and sub-packages included.
    for rel in (
        "lib/edge/__init__.mpy",
        "lib/edge/drivers/__init__.mpy",
        "lib/edge/link/client.mpy",
        "lib/protocol/__init__.mpy",
        "lib/protocol/messages.mpy",
    ):
        assert rel in got
    assert not any(p.endswith(".py") and p.startswith("lib/") for p in got)
    # Host-only files stay off the board.
    assert "lib/edge/boardconfig/loader.mpy" not in got
    assert "lib/protocol/host_messages.mpy" not in got
    # The config is the compiled board file; main.py starts edge.boardmain.
    compiled = compile_config(load_board_config(REACTOR))
    blob = (out / "config.bin").read_bytes()
    assert (
        blob[8:] == compiled
        and blob[:8].hex() == json.loads(stdout.splitlines()[-1])["config_hash"]
    )
    assert "import edge.boardmain" in (out / "main.py").read_text()
    summary = json.loads(stdout.splitlines()[-1])
    sizes = {rel: (out / rel).stat().st_size for rel in got}
    assert summary["bytes"] == sum(sizes.values())
    parts = summary["parts"]
    assert parts["lib/edge"] == sum(v for k, v in sizes.items() if k.startswith("lib/edge/"))
    assert parts["lib/protocol"] == sum(
        v for k, v in sizes.items() if k.startswith("lib/protocol/")
    )
    assert parts["config"] == len(blob)
    assert summary["free_flash_bytes"] == 848 * 1024
    assert 0 < summary["fraction_of_free_flash"] < 1
    assert summary["secrets"] == "template"
    assert "of 848.0 KiB free" in err and "lib/edge" in err


def test_a_bundle_larger_than_the_free_flash_exits_1(tmp_path, capsys, monkeypatch):
    tiny = dataclasses.replace(hb.TARGETS["rp2"], free_flash=64 * 1024)
    monkeypatch.setitem(hb.TARGETS, "rp2", tiny)
    code, _, err = _skid(capsys, "bundle", str(REACTOR), "--target", "rp2", "-o", str(tmp_path))
    assert code == 1 and "does not fit" in err and "of 64.0 KiB free" in err


def test_output_is_deterministic(tmp_path):
    a = hb.build_bundle(REACTOR, "rp2", tmp_path / "a")
    b = hb.build_bundle(REACTOR, "rp2", tmp_path / "b")
    assert a.files == b.files
    for rel in a.files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # Source names are embedded relative to the repository, not as build paths.
    node = (tmp_path / "a" / "lib" / "edge" / "node.mpy").read_bytes()
    assert b"edge/node.py" in node and str(ROOT).encode() not in node


def test_rebuild_removes_stale_modules(tmp_path):
    stale = tmp_path / "lib" / "edge" / "gone.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("x = 1\n")
    hb.build_bundle(REACTOR, "generic", tmp_path)
    assert not stale.exists()


# -- refusal ------------------------------------------------------------------------------


def test_a_failing_config_is_refused_with_file_key_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "reactor.toml"
    bad.write_text(REACTOR.read_text().replace("safe = 0.0", "safe = 1.5"))
    out = tmp_path / "out"
    code, stdout, err = _skid(
        capsys, "bundle", str(bad), "--target", "rp2", "-o", str(out), "--json"
    )
    assert code == 2
    assert str(bad) in err and "channels.heater.safe = 1.5" in err and "allowed 0.0..1.0" in err
    errors = json.loads(stdout.splitlines()[-1])["errors"]
    assert errors[0]["key"] == "channels.heater.safe" and errors[0]["file"] == str(bad)
    assert not out.exists()  # nothing written


def test_a_config_for_another_board_is_refused(tmp_path, capsys):
    code, _, err = _skid(capsys, "bundle", str(REACTOR), "--target", "esp32", "-o", str(tmp_path))
    assert code == 2
    assert "module.target = 'rp2'" in err and "esp32" in err


# -- secrets ------------------------------------------------------------------------------


def test_secrets_are_written_but_never_shown(tmp_path, capsys):
    secrets = _secrets_toml(tmp_path)
    out = tmp_path / "b"
    code, stdout, err = _skid(
        capsys,
        "bundle",
        str(REACTOR),
        "--target",
        "rp2",
        "-o",
        str(out),
        "--secrets",
        str(secrets),
        "--json",
    )
    assert code == 0, err
    for value in SECRET_VALUES:
        assert value not in stdout and value not in err
    assert json.loads(stdout.splitlines()[-1])["secrets"] == "included"
    path = out / "board_secrets.py"
    assert path.stat().st_mode & 0o077 == 0  # owner-only
    ns: dict = {}
    exec(path.read_text(), ns)
    assert ns["WIFI_SSID"] == "plant-ssid-Yw4" and ns["WIFI_PASSWORD"] == WIFI_PW
    assert (ns["BROKER_HOST"], ns["BROKER_PORT"]) == ("192.168.1.10", 1884)
    assert ns["MQTT_USER"] == "reactor1-user-Uu9" and ns["MQTT_PASSWORD"] == MQTT_PW
    assert ns["LINE"] == "line1" and ns["COMMAND_KEY"] == bytes.fromhex(KEY_HEX)


@pytest.mark.parametrize(
    "over, named",
    [
        ({"key": KEY_HEX[:20]}, "command_key"),  # 10 bytes: too short
        ({"url": f"mqtts://{MQTT_PW}:99999"}, "broker.url"),
        ({"wifi_pw": "short"}, "wifi.password"),
    ],
)
def test_bad_secrets_are_refused_without_showing_other_values(tmp_path, capsys, over, named):
    secrets = _secrets_toml(tmp_path, **over)
    code, stdout, err = _skid(
        capsys,
        "bundle",
        str(REACTOR),
        "--target",
        "rp2",
        "-o",
        str(tmp_path / "b"),
        "--secrets",
        str(secrets),
        "--json",
    )
    assert code == 2
    assert named in err and str(secrets) in err
    for value in (WIFI_PW, MQTT_PW, KEY_HEX, "short"):
        assert value not in stdout and value not in err
    assert not (tmp_path / "b").exists()


def test_secrets_toml_with_a_syntax_error_does_not_echo_its_text(tmp_path, capsys):
    secrets = tmp_path / "s.toml"
    secrets.write_text(f'[wifi]\npassword = "{WIFI_PW}\n')  # unterminated string
    code, stdout, err = _skid(
        capsys,
        "bundle",
        str(REACTOR),
        "--target",
        "rp2",
        "-o",
        str(tmp_path / "b"),
        "--secrets",
        str(secrets),
    )
    assert code == 2 and "not valid TOML" in err and WIFI_PW not in err + stdout


def test_a_ready_board_secrets_py_is_checked_and_copied(tmp_path):
    src = tmp_path / "board_secrets.py"
    src.write_text(f'WIFI_SSID = "x"\nWIFI_PASSWORD = "{WIFI_PW}"\nCOMMAND_KEY = {bytes(16)!r}\n')
    hb.build_bundle(REACTOR, "generic", tmp_path / "b", src)
    assert (tmp_path / "b" / "board_secrets.py").read_bytes() == src.read_bytes()
    src.write_text(f'import os\nWIFI_PASSWORD = "{WIFI_PW}"\n')
    with pytest.raises(hb.SecretsError, match="only NAME = value") as exc:
        hb.build_bundle(REACTOR, "generic", tmp_path / "c", src)
    assert WIFI_PW not in str(exc.value)


def test_without_secrets_a_commented_template_defines_nothing(generic_bundle):
    text = (generic_bundle / "board_secrets.py").read_text()
    assert "WIFI_SSID" in text and "COMMAND_KEY" in text
    ns: dict = {}
    exec(text, ns)
    assert not [k for k in ns if k.isupper()]


# -- mpy-cross flags and .mpy headers -----------------------------------------------------


@pytest.mark.parametrize(
    "target, march, arch", [("rp2", "armv6m", "armv6m"), ("esp32", "xtensawin", "xtensawin")]
)
def test_target_arch_flag_reaches_mpy_cross(tmp_path, target, march, arch):
    exe = hb.mpy_cross_path()
    src = tmp_path / "probe.py"
    out = tmp_path / "probe.mpy"
    cmd = hb.mpy_cross_command(exe, src, out, "probe.py", target)
    assert f"-march={march}" in cmd and cmd[-3:] == ["-o", str(out), str(src)]
    # Native code records the architecture in the header (bytecode alone records none).
    src.write_text("import micropython\n@micropython.native\ndef f(x):\n    return x + 1\n")
    subprocess.run(cmd, check=True)
    header = hb.read_mpy_header(out.read_bytes())
    assert (header.version, header.sub_version, header.arch, header.small_int_bits) == (
        6,
        3,
        arch,
        31,
    )


def test_generic_is_bytecode_only_and_every_bundle_file_has_a_v6_header(tmp_path, generic_bundle):
    exe = hb.mpy_cross_path()
    cmd = hb.mpy_cross_command(exe, tmp_path / "p.py", tmp_path / "p.mpy", "p.py", "generic")
    assert not [c for c in cmd if c.startswith("-march")]
    for path in (generic_bundle / "lib").rglob("*.mpy"):
        data = path.read_bytes()
        assert data[0:1] == b"M", path
        header = hb.read_mpy_header(data)
        assert (header.version, header.arch, header.small_int_bits) == (6, None, 31), path
    assert "mpy v6." in hb.mpy_cross_version()


# -- flashing -----------------------------------------------------------------------------


def test_flash_command_lines_for_a_port(generic_bundle, capsys):
    cmds = hb.flash_commands(generic_bundle, "/dev/ttyACM0")
    for cmd in cmds:
        assert cmd[:3] == ["mpremote", "connect", "/dev/ttyACM0"]
    assert cmds[0][3:] == ["fs", "touch", ":maintenance", "+", "reset"]
    assert cmds[1][3] == "exec" and "rm('lib/edge')" in cmds[1][4]
    assert cmds[2][3:] == [
        "fs",
        "cp",
        "-r",
        str(generic_bundle / "lib" / "edge"),
        str(generic_bundle / "lib" / "protocol"),
        ":lib/",
    ]
    assert cmds[3][3:6] == ["fs", "cp", str(generic_bundle / "boot.py")]
    assert cmds[3][-2] == str(generic_bundle / "main.py") and cmds[3][-1] == ":"
    assert {Path(p).name for p in cmds[3][5:-1]} == {
        "boot.py",
        "config.bin",
        "board_secrets.py",
        "main.py",
    }
    assert cmds[4][3:] == ["fs", "rm", ":maintenance", "+", "reset"]
    assert "\n" not in cmds[1][4]  # one line for the shell
    code, stdout, err = _skid(
        capsys, "flash", str(generic_bundle), "--port", "COM3", "--dry-run", "--json"
    )
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == "mpremote connect COM3 fs touch :maintenance + reset"
    assert len(lines) == 6 and json.loads(lines[-1])["commands"][4][-1] == "reset"


def test_flash_cleanup_removes_only_the_old_packages_under_micropython():
    files = {
        "/lib/edge/node.py": b"x = 1\n",  # a stale source that would shadow node.mpy
        "/lib/edge/drivers/emulated.mpy": b"M",
        "/lib/protocol/cbor.mpy": b"M",
        "/lib/umqtt/simple.py": b"y = 2\n",  # the user's own library stays
    }
    code = hb.CLEAN_COMMAND + "\nimport os\nprint(sorted(os.listdir('/lib')))\n"
    code = "import os\nos.chdir('/')\n" + code
    assert run_node(code, packages=(), extra_files=files).strip() == "['umqtt']"


def test_flash_refuses_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    code, _, err = _skid(capsys, "flash", str(tmp_path), "--port", "/dev/ttyACM0", "--dry-run")
    assert code == 2 and "not a bundle" in err and "main.py" in err


def test_flash_without_mpremote_says_how_to_install_it(generic_bundle, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    code, _, err = _skid(capsys, "flash", str(generic_bundle), "--port", "/dev/ttyACM0")
    assert code == 2 and "pip install mpremote" in err


# -- the bundle really runs ---------------------------------------------------------------


def _guest_files(bundle_dir: Path) -> dict[str, bytes]:
    files = {
        "/" + p.relative_to(bundle_dir).as_posix(): p.read_bytes()
        for p in bundle_dir.rglob("*")
        if p.is_file()
    }
    files["/lib/bundle_boot.py"] = BOOT.read_bytes()
    # bundle_boot feeds the plant through the emulated drivers, which a board config's
    # bundle does not carry (only an emulated config's would): added here, compiled the
    # same way.  tests/test_board_memory.py boots each kind from its bundle alone.
    emulated = bundle_dir.parent / "emulated.mpy"
    src = ROOT / "edge" / "drivers" / "emulated.py"
    cmd = hb.mpy_cross_command(
        hb.mpy_cross_path(), src, emulated, "edge/drivers/emulated.py", "generic"
    )
    subprocess.run(cmd, check=True)
    files["/lib/edge/drivers/emulated.mpy"] = emulated.read_bytes()
    return files


GUEST = """
import os, sys
# Proof the bundle's .mpy files are what runs: no edge/protocol source anywhere on the path.
sources = []
for base in sys.path:
    for pkg in ("edge", "protocol"):
        d = (base or ".") + "/" + pkg
        try:
            names = os.listdir(d)
        except OSError:
            continue
        sources.extend(d + "/" + n for n in names if n.endswith(".py"))
print("sources", len(sources))
print("listing", " ".join(sorted(os.listdir("/lib/edge"))))
for name in ("main.py", "boot.py"):
    with open("/" + name) as f:
        compile(f.read(), name, "exec")  # valid for the real interpreter
import bundle_boot
runner, link, n = bundle_boot.main({trip_at}, {hot}, {seconds})
print("modfile", sys.modules["edge.node"].__file__)
await runner.run(max_ticks=n)
bundle_boot.report(link)
"""


def test_generic_bundle_boots_from_its_mpy_files_and_trips_on_over_temperature(generic_bundle):
    code = GUEST.format(trip_at=6000, hot=160.0, seconds=8)
    out = run_node(code, packages=(), async_=True, extra_files=_guest_files(generic_bundle))
    lines = out.strip().splitlines()
    facts = [line.split(" ", 2) for line in lines]
    assert ["sources", "0"] in [f[:2] for f in facts]
    listing = next(line for line in lines if line.startswith("listing")).split()[1:]
    assert listing and all(n.endswith(".mpy") or "." not in n for n in listing)
    assert next(f for f in facts if f[0] == "mpy")[1] == "6"

    # Safe state right after boot: every actuator at its safe value.
    safe = [line.split() for line in lines if line.startswith("safe ")]
    assert [s[1] for s in safe] == ["heater"]
    assert all(float(s[2]) == float(s[3]) for s in safe)

    # Birth first, as the host sees it: module id, kind, config hash.
    msgs = [(f[1], bytes.fromhex(f[2])) for f in facts if f[0] == "msg"]
    topic, payload = msgs[0]
    assert topic == module_topic("line1", "reactor1", TOPIC_BIRTH)
    birth = host_messages.parse_birth(payload)
    blob = (generic_bundle / "config.bin").read_bytes()
    assert (birth.module_id, birth.module_kind, birth.config_hash) == (
        "reactor1",
        "reactor",
        blob[:8],
    )
    assert birth.state == "idle"

    # It runs: started, heating before the over-temperature, heater safe after the trip.
    outs = [line.split() for line in lines if line.startswith("out ")]
    before = [o for o in outs if int(o[1]) <= 6000 and o[2] == "execute"]
    assert before and max(float(o[4]) for o in before) > 0.0
    after = [o for o in outs if int(o[1]) > 6000]
    assert after and all(float(o[4]) == 0.0 and o[2] == "aborted" for o in after)
    events = [host_messages.parse_event(p) for t, p in msgs if t.endswith("/event")]
    trips = [e for e in events if e.type == "trip"]
    # The coil jumps to 160 degC with the heater at a few per cent: the over-temperature
    # interlock watches the unfiltered reading (board_configs/reactor.toml), so it trips
    # first-out in the tick of the jump, before heater verification could.
    # Heater verification still sees heating it did not cause, and trips second.
    assert [(e.source, e.cause) for e in trips] == [
        ("temperature", "over_temperature"),
        ("heater_verify", "uncontrolled_heating"),
    ]
    assert all(e.severity == "critical" and e.t_ms >= 6000 for e in trips), trips
    assert float(trips[0].detail.split()[-1]) > 150.0
    assert "modfile /lib/edge/node.mpy" in lines
    boot_us = int(next(f for f in facts if f[0] == "boot_us")[1])
    assert 0 < boot_us < 10_000_000
    print(f"boot-to-birth under MicroPython (Node WebAssembly), from .mpy: {boot_us / 1000:.1f} ms")


def test_an_rp2_mpy_with_native_code_is_refused_by_the_webassembly_port(tmp_path):
    # The arch flag is not cosmetic: code compiled for the board's CPU cannot run elsewhere.
    src = tmp_path / "nat.py"
    src.write_text("import micropython\n@micropython.native\ndef f(x):\n    return x + 1\n")
    out = tmp_path / "nat.mpy"
    subprocess.run(hb.mpy_cross_command(hb.mpy_cross_path(), src, out, "nat.py", "rp2"), check=True)
    code = "try:\n    import nat\n    print('loaded')\nexcept ValueError as e:\n    print('refused', e)\n"
    got = run_node(code, packages=(), extra_files={"/lib/nat.mpy": out.read_bytes()}).strip()
    assert got.startswith("refused") and "mpy" in got
