"""MicroPython compatibility gate for the board-side packages (edge/, protocol/).

* every .py file compiles with mpy-cross (the compiler that builds board bundles);
* the source uses no CPython-only modules or syntax that mpy-cross would accept but a
  board could not run (dataclasses, typing at run time, enum, ...);
* (the dependency directions between packages are tests/test_architecture.py's).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOARD_PACKAGES = ("edge", "protocol")
# CPython-side code inside edge/: Raspberry Pi drivers (edge/linux/) and the TOML board
# config loader (edge/boardconfig/, used by the host and on a Pi).  Both are kept out of
# MicroPython bundles and may use CPython-only modules, but must still compile, because
# the gate and the before-stop hook compile every file.
CPYTHON_SIDE = (ROOT / "edge" / "linux", ROOT / "edge" / "boardconfig")

CPYTHON_ONLY_MODULES = {
    "dataclasses",
    "typing",
    "typing_extensions",
    "enum",
    "abc",
    "functools",
    "itertools",
    "collections.abc",
    "hmac",
    "threading",
    "multiprocessing",
    "subprocess",
    "pathlib",
    "tomllib",
    "json",  # MicroPython has json, but board code speaks CBOR; keep it out of the core
}


def board_files():
    files = []
    for pkg in BOARD_PACKAGES:
        files.extend(sorted((ROOT / pkg).rglob("*.py")))
    return files


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_there_is_board_code_to_check():
    names = {_rel(p) for p in board_files()}
    assert "protocol/constants.py" in names
    assert "edge/clock.py" in names


@pytest.mark.parametrize("path", board_files(), ids=_rel)
def test_compiles_with_mpy_cross(path, tmp_path):
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    proc = subprocess.run(
        [str(mpy_cross), "-o", str(tmp_path / "out.mpy"), str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"{_rel(path)} does not compile for MicroPython:\n{proc.stderr}"
    assert (tmp_path / "out.mpy").stat().st_size > 0


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module


def _inside_type_checking_guard(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if any(child is target for child in ast.walk(node)):
                return True
    return False


@pytest.mark.parametrize("path", board_files(), ids=_rel)
def test_no_cpython_only_constructs(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    cpython_side = any(d in path.parents for d in CPYTHON_SIDE)
    for node, name in _imports(tree):
        if name in CPYTHON_ONLY_MODULES and not cpython_side:
            if not _inside_type_checking_guard(tree, node):
                problems.append(f"line {node.lineno}: imports {name!r} (not on MicroPython)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Match):
            problems.append(f"line {node.lineno}: 'match' statement")
        if isinstance(node, ast.ClassDef):
            for deco in node.decorator_list:
                if "dataclass" in ast.unparse(deco):
                    problems.append(f"line {node.lineno}: @dataclass")
    assert not problems, f"{_rel(path)}:\n" + "\n".join(problems)


# --- The board file list (edge/boardconfig/board_files.py) -------------------------------


def _module_files(module: str) -> list[str]:
    """Source files that importing ``module`` ("edge.link.client") loads, relative to ROOT:
    the package __init__ files on the way and the module itself."""
    parts = module.split(".")
    out = []
    for i in range(1, len(parts) + 1):
        base = "/".join(parts[:i])
        if (ROOT / base / "__init__.py").exists():
            out.append(base + "/__init__.py")
        elif (ROOT / (base + ".py")).exists():
            out.append(base + ".py")
    return out


def _board_imports(rel: str):
    """(line, file) for every edge/protocol file the board file ``rel`` imports, at module
    level or lazily inside a function, including ``from package import submodule``.
    An import marked ``# host only`` (in code only the host calls) is not counted."""
    source = (ROOT / rel).read_text()
    lines = source.splitlines()
    tree = ast.parse(source, filename=rel)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [node.module + "." + a.name for a in node.names]
        else:
            continue
        if "# host only" in lines[node.lineno - 1]:
            continue
        for module in modules:
            if module.split(".")[0] in ("edge", "protocol"):
                for f in _module_files(module):
                    yield node.lineno, f


def test_board_list_excludes_only_existing_paths():
    from edge.boardconfig.board_files import NOT_ON_BOARD

    for excluded in NOT_ON_BOARD:
        assert (ROOT / excluded).exists(), f"NOT_ON_BOARD names a missing path: {excluded}"


def test_board_files_import_only_board_files():
    from edge.boardconfig.board_files import board_files as on_board_files
    from edge.boardconfig.board_files import on_board

    files = on_board_files()
    assert "edge/boardmain.py" in files and "protocol/messages.py" in files
    assert "protocol/host_messages.py" not in files and "edge/linux/hardware.py" not in files
    problems = []
    for rel in files:
        for line, target in _board_imports(rel):
            if not on_board(target):
                problems.append(f"{rel}:{line} imports {target}, which boards do not carry")
    assert not problems, "\n".join(problems)
