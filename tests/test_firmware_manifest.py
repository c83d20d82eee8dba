"""firmware/manifest.py (MicroPython's freeze manifest) lists exactly the board's files.

MicroPython's build runs the manifest as Python with ``include``, ``freeze``, ``module``
and ``package`` defined (tools/manifestfile.py of MicroPython); here the same functions
record what it asks for, so a board file added to edge/ or protocol/ without the manifest
(or a stale entry) fails here rather than in a firmware build.
"""

from __future__ import annotations

from pathlib import Path

from edge.boardconfig.board_files import board_files

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "firmware" / "manifest.py"


def _run_manifest() -> tuple[list[str], list[tuple[str, tuple[str, ...]]]]:
    includes: list[str] = []
    freezes: list[tuple[str, tuple[str, ...]]] = []

    def include(path):
        includes.append(path)

    def freeze(path, script=None, opt=None):
        freezes.append((path, tuple(script) if script is not None else ()))

    exec(
        compile(MANIFEST.read_text(), str(MANIFEST), "exec"), {"include": include, "freeze": freeze}
    )
    return includes, freezes


def test_manifest_freezes_exactly_the_board_files():
    includes, freezes = _run_manifest()
    assert includes == ["$(PORT_DIR)/boards/manifest.py"]  # keep the port's asyncio etc.
    assert len(freezes) == 1
    base, files = freezes[0]
    assert (MANIFEST.parent / base).resolve() == ROOT
    assert list(files) == board_files()
    for rel in files:
        assert (ROOT / rel).is_file(), rel
