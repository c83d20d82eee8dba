"""Compile a validated board config to the compact form the board loads.

The compact form is the CBOR encoding (``protocol.cbor``: canonical, map keys sorted,
floats in their shortest exact width) of ``BoardConfig.data``, the normalised plain
dict; see docs/board-config.md "Compiled form" for every key.  Because the encoding is
canonical, equal configs give equal bytes and so equal hashes, however the TOML was
written (key order, ``40`` vs ``40.0``, comments, defaults spelled out or not).

``config_hash`` is the first 8 bytes of the SHA-256 of the compiled bytes; the module
reports it in its birth message.  The hash covers everything, drivers and pins included,
so an ``emulate``d config has its own hash.

On the board, ``edge.compiled_config`` reads the same bytes without any TOML parser.
"""

from __future__ import annotations

from edge.compiled_config import FORMAT_VERSION
from edge.compiled_config import config_hash as _hash
from protocol import cbor

_SCALARS = (type(None), bool, int, float, str)


def _plain(value, path="config"):
    # Anything but plain CBOR-able data here is a loader bug; fail loudly, not on the board.
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _plain(v, "{}[{}]".format(path, i))
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError("{}: key {!r} is not a str or int".format(path, k))
            _plain(v, "{}.{}".format(path, k))
        return
    raise TypeError("{}: {!r} is not plain data".format(path, value))


def compile_config(cfg) -> bytes:
    """The compact CBOR form of ``cfg`` (a ``BoardConfig`` or its ``data`` dict)."""
    data = cfg.data if hasattr(cfg, "data") else cfg
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise ValueError("not a normalised board config: compile a BoardConfig from the loader")
    _plain(data)
    return cbor.encode(data)


def config_hash(compiled: bytes) -> bytes:
    """First 8 bytes of SHA-256 of the compiled form: the hash births carry."""
    return _hash(bytes(compiled))


def decompile(compiled: bytes) -> dict:
    """The plain dict back from the compiled bytes (as the board sees it)."""
    return cbor.decode(compiled)


def board_file(compiled: bytes) -> bytes:
    """The file written to the board: the 8-byte hash, then the compiled bytes, so the
    board checks the file before trusting it (``edge.compiled_config.load_board_file``)."""
    return config_hash(compiled) + bytes(compiled)
