"""The two real MicroPython interpreters the suite runs board code on.

These checks make sure the harness in tools/micropython.py really runs MicroPython (not
CPython by accident), that project packages are importable inside it, that the WASI build's
fuel count is repeatable (the benchmarks rely on it) and that the Node build has asyncio.
"""

import pytest

from tools.micropython import MicroPythonError, run_node, run_wasi

PROBE = (
    "import sys\n"
    "from protocol import constants\n"
    "from edge import clock\n"
    "print(sys.implementation.name, constants.PROTOCOL_VERSION,"
    " clock.ticks_diff(5, clock.TICKS_PERIOD - 5))\n"
)


def test_node_build_is_micropython_and_imports_project_packages():
    out = run_node(PROBE, packages=("protocol", "edge"))
    assert out.split() == ["micropython", "1", "10"]


def test_wasi_build_is_micropython_and_imports_project_packages():
    res = run_wasi(PROBE)
    assert res.stdout.split() == ["micropython", "1", "10"]


def test_wasi_fuel_is_repeatable_and_grows_with_work():
    small = "x = 0\nfor i in range(1000):\n    x += i\nprint(x)\n"
    large = "x = 0\nfor i in range(100000):\n    x += i\nprint(x)\n"
    a, b = run_wasi(small), run_wasi(small)
    c = run_wasi(large)
    assert a.stdout.strip() == "499500"
    assert c.stdout.strip() == "4999950000"  # past the ~13k-iteration default limit
    assert a.fuel_used == b.fuel_used
    assert c.fuel_used > 10 * a.fuel_used


def test_node_build_runs_asyncio_with_top_level_await():
    code = (
        "import asyncio\n"
        "order = []\n"
        "async def worker(n):\n"
        "    await asyncio.sleep_ms(n)\n"
        "    order.append(n)\n"
        "await asyncio.gather(worker(20), worker(5))\n"
        "print(order)\n"
    )
    assert run_node(code, packages=(), async_=True).strip() == "[5, 20]"


@pytest.mark.parametrize("runner", [run_wasi, lambda c: run_node(c, packages=())])
def test_exceptions_surface_with_their_traceback(runner):
    with pytest.raises(MicroPythonError, match="ZeroDivisionError"):
        runner("print('before')\n1 // 0\n")


def test_neither_build_has_hardware_classes_or_socket():
    # The WASI build ships a bare `machine` module (mem8/idle/soft_reset) but no Pin, ADC,
    # PWM or WDT; the Node build has no `machine` at all.  Hardware drivers are therefore
    # tested on CPython against exact fakes of the bus, never in these interpreters.
    code = (
        "try:\n"
        "    import machine\n"
        "    print('hw', [n for n in ('Pin', 'ADC', 'PWM', 'WDT', 'SPI', 'I2C') if hasattr(machine, n)])\n"
        "except ImportError:\n"
        "    print('hw', [])\n"
        "try:\n"
        "    import socket\n"
        "    print('socket present')\n"
        "except ImportError:\n"
        "    print('socket absent')\n"
    )
    expected = ["hw []", "socket absent"]
    assert run_wasi(code).stdout.strip().splitlines() == expected
    assert run_node(code, packages=()).strip().splitlines() == expected
