"""Which files a MicroPython board carries: the one list for bundles, benchmarks and tests.

A board bundle holds the ``.py`` files of ``edge/`` and ``protocol/`` compiled with
``mpy-cross`` (``lib/edge/...mpy``, ``lib/protocol/...mpy``), except code that never runs
on a board, listed in ``NOT_ON_BOARD`` with the reason.  Nothing a board module imports may
be in that list (tests/test_micropython_compat.py checks every import, lazy ones too).
The excluded modules stay MicroPython-compatible where they were (the cross-runtime tests
run the host-side parsers under MicroPython); they are just not needed on a module.

Host side (CPython): used by ``skid bundle`` and by ``make bench`` (edge.mpy_size_bytes).
"""

from __future__ import annotations

from pathlib import Path

# The folder holding the edge and protocol packages (the repository, or site-packages).
ROOT = Path(__file__).resolve().parents[2]
BOARD_PACKAGES = ("edge", "protocol")

# Paths relative to ROOT; a trailing "/" excludes a whole folder.
NOT_ON_BOARD = (
    "edge/boardconfig/",  # TOML loader and config compiler: host and Raspberry Pi (tomllib)
    "edge/linux/",  # Raspberry Pi hardware provider and /dev/watchdog
    "edge/emulated_main.py",  # an emulated module under the MicroPython Unix port
    "edge/plantport.py",  # the emulated plant's wiring (broker-mode emulation)
    "edge/link/broker_packets.py",  # the broker's side of MQTT: fake brokers in tests
    "protocol/host_messages.py",  # parsers of BIRTH, TELEMETRY, EVENT, ACK...: the host's job
    "protocol/frame.py",  # COBS serial framing: no board link uses it (yet)
)

# mpy-cross options for bundles.  None: the default keeps line numbers, so a traceback
# from a board names the line; "-O3" would drop them (about 6 % smaller, every frame then
# reads "line 1").  -O1/-O2 only drop ``assert`` statements, of which board code has none.
MPY_CROSS_ARGS: tuple[str, ...] = ()


def on_board(rel_path: str) -> bool:
    """True if the file at ``rel_path`` ("edge/node.py") belongs in a board bundle."""
    if not rel_path.endswith(".py") or rel_path.split("/", 1)[0] not in BOARD_PACKAGES:
        return False
    for excluded in NOT_ON_BOARD:
        if rel_path == excluded or (excluded.endswith("/") and rel_path.startswith(excluded)):
            return False
    return True


def board_files(root: Path = ROOT) -> list[str]:
    """The relative paths ("edge/node.py", ...) of every source file a board carries."""
    out = []
    for pkg in BOARD_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root).as_posix()
            if on_board(rel):
                out.append(rel)
    return out
