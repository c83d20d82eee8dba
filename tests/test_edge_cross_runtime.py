"""Cross-runtime determinism: the same scripted reactor scenario (setpoint steps, a
rejected setpoint, a probe fault, an over-temperature trip, a refused and an accepted
reset) gives the same actuator outputs and events on CPython and on a real MicroPython
interpreter.

Tolerance: both the WebAssembly MicroPython build and CPython compute in IEEE double
precision, so outputs are compared to a relative 1e-9 (exact in practice).  On an rp2 or
ESP32 board floats are single precision: the same comparison would need ~1e-5 relative
on values and could shift a threshold crossing by a tick.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from edge.boardconfig import compile_config, emulate, load_board_config
from edge.boardconfig.compile import board_file
from host.micropython_unix import micropython_binary, micropython_env
from tools.micropython import run_node

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "mpy" / "reactor_scenario.py"


def _blob() -> bytes:
    cfg = emulate(load_board_config(ROOT / "board_configs" / "reactor.toml"))
    return board_file(compile_config(cfg))


def _cpython_lines(blob: bytes) -> list[str]:
    sys.path.insert(0, str(SCENARIO.parent))
    try:
        import reactor_scenario
    finally:
        sys.path.remove(str(SCENARIO.parent))
    return reactor_scenario.run(blob)


def _same(a: str, b: str) -> bool:
    ta, tb = a.split(), b.split()
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb, strict=True):
        if x == y:
            continue
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            return False
        if not math.isclose(fx, fy, rel_tol=1e-9, abs_tol=1e-9):
            return False
    return True


def _script(blob: bytes) -> str:
    return (
        "import reactor_scenario\n"
        "blob = bytes.fromhex(" + repr(blob.hex()) + ")\n"
        "for line in reactor_scenario.run(blob):\n"
        "    print(line)\n"
    )


def _assert_same(expected: list[str], out: str) -> None:
    got = out.strip().splitlines()
    assert len(got) == len(expected)
    pairs = enumerate(zip(expected, got, strict=True))
    diffs = [(i, e, g) for i, (e, g) in pairs if not _same(e, g)]
    assert not diffs, diffs[:5]


def test_reactor_scenario_is_identical_on_the_micropython_unix_port(tmp_path):
    """The same scenario on the Unix port (64-bit, the runtime that runs modules over real
    sockets in broker mode), importing the board packages from source."""
    blob = _blob()
    script = tmp_path / "main.py"
    script.write_text(_script(blob))
    env = micropython_env(ROOT)
    env["MICROPYPATH"] += ":" + str(SCENARIO.parent)
    out = subprocess.run(
        [micropython_binary(), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    _assert_same(_cpython_lines(blob), out.stdout)


def test_reactor_scenario_is_identical_on_cpython_and_micropython():
    blob = _blob()
    expected = _cpython_lines(blob)
    out = run_node(
        _script(blob),
        packages=("protocol", "edge"),
        extra_files={"/lib/reactor_scenario.py": SCENARIO.read_bytes()},
    )
    _assert_same(expected, out)
    # The scenario really exercises what it claims.
    text = "\n".join(expected)
    assert "event 1 state_change None starting" in text
    # The external heating (an exotherm) jumps past 150 degC: the over-temperature
    # interlock watches the unfiltered reading and trips on that sample, then heater
    # verification sees the rise with the heater off: two trips, two events, first-out
    # first.
    trips = [ln.split()[3] for ln in expected if ln.split()[2:3] == ["trip"]]
    assert trips == ["over_temperature", "uncontrolled_heating"]
    # Losing one probe for two seconds is reported (and cleared), not tripped.
    assert "alarm redundancy_lost" in text and "alarm_cleared redundancy_lost" in text
    assert "ack 3 1" in text  # setpoint 500 rejected out_of_range
    assert "ack 5 2" in text  # reset refused while hot
    assert "ack 6 0" in text  # reset accepted after cooling
    heater_at_40 = [ln for ln in expected if ln.startswith("t 40 ")][0]
    assert "execute" in heater_at_40 and "heater 0.0 " not in heater_at_40
