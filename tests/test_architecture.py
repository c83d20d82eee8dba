"""The dependency directions of the project's packages, read from every import statement.

    protocol  <-  edge  <-  line  <-  host
                   ^          ^         |  (only the dry-run entry points below)
                   +------ emulator <---+

* ``protocol`` imports nothing of ours (``protocol/cbor.py`` not even the rest of protocol);
* ``edge`` imports only edge and protocol (it runs on the boards);
* ``line`` (the physical line: model, loader, formulas, solvents) imports only line, edge
  and protocol, so both the host and the emulator can use it;
* ``emulator`` never imports ``host``;
* ``host`` imports ``emulator`` only in the entry points named in ``EMULATOR_ENTRY_POINTS``,
  and the general host modules never import the entry points that load the emulator.

Every ``.py`` file is parsed; imports inside functions and ``if`` blocks count too, and
relative imports are resolved against the file's package.  Dynamic imports
(``importlib.import_module``) are not seen: the project uses one, for the command modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = {"protocol", "edge", "line", "host", "emulator", "tools", "bench", "tests"}

# The host modules that may import the emulator, and why each needs it.
EMULATOR_ENTRY_POINTS = {
    "host/dryrun.py": "the dry runs: in process (skid demo, skid run --emulate) and over a broker",
    "host/launcher.py": "starts an emulated line's processes (skid run --emulate --broker)",
    "host/commands/emulate.py": "skid emulate: the plant emulator process of a broker-mode line",
    "host/commands/run.py": "skid run / skid demo: --fault options name emulator faults",
    "host/edgeproc.py": "skid edge --emulate: the plant behind an emulated module's drivers",
    "host/tune_emulated.py": "skid tune --emulate: the relay test on the emulated module",
}
# Entry points that load the emulator as soon as they are imported: only commands and other
# entry points may import them, so a general host module never pulls the emulator in.
LOADS_EMULATOR = ("host.dryrun", "host.launcher", "host.tune_emulated")

# package -> the packages of ours it may import
ALLOWED = {
    "protocol": {"protocol"},
    "edge": {"edge", "protocol"},
    "line": {"line", "edge", "protocol"},
    "emulator": {"emulator", "line", "edge", "protocol"},
}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _sources(package: str | None = None) -> list[Path]:
    roots = [ROOT / package] if package else [ROOT / p for p in sorted(OUR_PACKAGES)]
    # "mpy" relative to the repository: a clone may itself live in a directory named mpy.
    return sorted(
        p for r in roots for p in r.rglob("*.py") if "mpy" not in p.relative_to(ROOT).parts
    )


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """``(line, dotted module)`` of every import in ``path``, at any depth; ``from a
    import b`` yields ``a.b`` too (``b`` may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(root).as_posix().removesuffix(".py").split("/")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            out.append((node.lineno, module))
            out.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return out


def _ours(path: Path) -> list[tuple[int, str]]:
    return [(n, m) for n, m in imports(path) if m.split(".")[0] in OUR_PACKAGES]


def test_every_package_is_checked():
    for package in (*ALLOWED, "host"):
        assert _sources(package), f"{package}/ has no source files"
    assert "line/loader.py" in {_rel(p) for p in _sources("line")}


@pytest.mark.parametrize("path", [p for pkg in ALLOWED for p in _sources(pkg)], ids=_rel)
def test_package_imports_only_what_it_may(path):
    package = _rel(path).split("/")[0]
    allowed = ALLOWED[package]
    bad = [f"line {n}: {m}" for n, m in _ours(path) if m.split(".")[0] not in allowed]
    assert not bad, (
        f"{_rel(path)} imports {bad}: {package} may import only {', '.join(sorted(allowed))}"
    )


def test_cbor_imports_no_other_project_module():
    assert _ours(ROOT / "protocol" / "cbor.py") == []


@pytest.mark.parametrize("path", _sources("host"), ids=_rel)
def test_host_imports_the_emulator_only_in_dry_run_entry_points(path):
    rel = _rel(path)
    if rel in EMULATOR_ENTRY_POINTS:
        return
    bad = [f"line {n}: {m}" for n, m in _ours(path) if m.split(".")[0] == "emulator"]
    assert not bad, (
        f"{rel} imports the emulator ({bad}); only the dry-run entry points may "
        f"({', '.join(EMULATOR_ENTRY_POINTS)}): move the dry-run piece into one of them"
    )
    if not rel.startswith("host/commands/"):
        pulls = [f"line {n}: {m}" for n, m in _ours(path) if m in LOADS_EMULATOR]
        assert not pulls, f"{rel} imports {pulls}, which load the emulator"


def test_the_entry_points_exist_and_use_the_emulator():
    for rel in EMULATOR_ENTRY_POINTS:
        path = ROOT / rel
        assert path.is_file(), f"EMULATOR_ENTRY_POINTS names a missing file: {rel}"
        assert any(m.startswith("emulator") for _, m in _ours(path)), (
            f"{rel} no longer imports the emulator: take it off EMULATOR_ENTRY_POINTS"
        )


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    fake = tmp_path / "line" / "sub" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from host import recipe\n    from ...emulator import plant\n")
    found = {m for _, m in imports(fake, tmp_path)}
    assert {"host", "host.recipe", "emulator", "emulator.plant"} <= found
