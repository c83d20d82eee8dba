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

import ast
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


# -- the files one board needs ------------------------------------------------------------

# The board's entry point: main.py runs ``edge.boardmain.main()``.
ENTRY = "edge/boardmain.py"


def _drivers(cfg) -> set:
    return {ch.get("driver") for ch in cfg["channels"]}


def _calibrations(cfg) -> set:
    return {(ch.get("calibration") or {}).get("type") for ch in cfg["channels"]}


def _has_pair(cfg) -> bool:
    return any("redundant" in ch and ch.get("driver") is None for ch in cfg["channels"])


# Modules that only some configs need, each imported lazily where the node is built
# (edge.build, edge.drivers): (file, what needs it, test on the compiled config dict).
# Every other module the entry point imports, lazily or not, is always carried: the
# link (a broker comes from board_secrets.py, which can change after the bundle is
# built) and protocol.auth (so does the command key).
FEATURES = (
    ("edge/runaway.py", "heater verification ([runaway])", lambda cfg: bool(cfg.get("runaway"))),
    ("edge/voter.py", "a 1oo2 pair (redundant = [...])", _has_pair),
    ("edge/rtd.py", 'a PT100 calibration (type = "pt100")', lambda c: "pt100" in _calibrations(c)),
    (
        "edge/table.py",
        'a calibration table (type = "table")',
        lambda c: "table" in _calibrations(c),
    ),
    ("edge/drivers/max31865.py", "a max31865 channel", lambda c: "max31865" in _drivers(c)),
    ("edge/drivers/ads1115.py", "an ads1115 channel", lambda c: "ads1115" in _drivers(c)),
    ("edge/drivers/slf3x.py", "an slf3x flow channel", lambda c: "slf3x" in _drivers(c)),
    ("edge/drivers/emulated.py", "an emulated channel", lambda c: "emulated" in _drivers(c)),
)
FEATURE_FILES = tuple(f[0] for f in FEATURES)


def _module_file(name: str, root: Path) -> str | None:
    """ "edge.node" -> "edge/node.py" (or the package's __init__.py); None if not ours."""
    if name.split(".", 1)[0] not in BOARD_PACKAGES:
        return None
    base = name.replace(".", "/")
    for rel in (base + ".py", base + "/__init__.py"):
        if (root / rel).is_file():
            return rel
    return None


def imports_of(rel: str, root: Path = ROOT) -> list[str]:
    """The files of ours that ``rel`` imports, anywhere in the file (lazy imports too), in
    the order they appear, each preceded by its parent packages' ``__init__.py``."""
    tree = ast.parse((root / rel).read_text(encoding="utf-8"), filename=rel)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # ``from edge import states``: a submodule, not a name in the package
            names.extend(node.module + "." + alias.name for alias in node.names)
    out = []
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            found = _module_file(".".join(parts[:i]), root)
            if found is not None and found != rel and found not in out:
                out.append(found)
    return out


def files_for_config(cfg, root: Path = ROOT) -> list[str]:
    """The files a board running ``cfg`` (the compiled config as a plain dict) needs: the
    import closure of the entry point, without the feature modules ``cfg`` does not use.
    Dependencies come before the files that import them (the order in which a test or a
    benchmark can import them one by one), ties in the order of the source.

    Raises ValueError if a board file imports a file that stays off boards."""
    skip = {path for path, _, needed in FEATURES if not needed(cfg)}
    order: list[str] = []
    seen: set[str] = set()

    def visit(rel: str) -> None:
        if rel in seen:
            return
        seen.add(rel)
        if not on_board(rel):
            raise ValueError(f"{rel} is imported by a board file but stays off boards")
        for dep in imports_of(rel, root):
            if dep not in skip:
                visit(dep)
        order.append(rel)

    for pkg_init in ("edge/__init__.py",):
        visit(pkg_init)
    visit(ENTRY)
    return order


def features_of(cfg) -> list[str]:
    """What of FEATURES ``cfg`` uses, as "file (reason)" lines for a report."""
    return [f"{path} ({why})" for path, why, needed in FEATURES if needed(cfg)]
