"""Read a compiled board config on the board (MicroPython and CPython, no TOML parser).

The host validates the TOML file and compiles it (``edge.boardconfig``, CPython only) to
CBOR; the board gets either those bytes plus their hash, or one *board file* = 8-byte
hash followed by the CBOR bytes.  The hash is the first 8 bytes of SHA-256 of the CBOR
bytes and is what the module reports in its birth message.  See docs/board-config.md.
"""

import hashlib

from protocol import cbor

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


FORMAT_VERSION = const(1)
HASH_LEN = const(8)
# Top-level keys every compiled config has (docs/board-config.md, "Compiled form").
SECTIONS = (
    "format",
    "module",
    "lease",
    "watchdog",
    "buses",
    "channels",
    "pid",
    "interlocks",
    "alarms",
    "runaway",
    "estop",
)
# Nesting of the compiled dict: config > channels > channel > calibration > points > point.
_MAX_DEPTH = const(8)


class CompiledConfigError(ValueError):
    """The compiled config is corrupt, of another format version, or not a config."""


def config_hash(data):
    """First 8 bytes of SHA-256 of the compiled bytes."""
    return hashlib.sha256(data).digest()[:HASH_LEN]


def load_compiled(data, expected_hash=None):
    """Decode compiled config bytes to the plain dict; check ``expected_hash`` if given."""
    if expected_hash is not None:
        got = config_hash(data)
        if got != bytes(expected_hash):
            raise CompiledConfigError(
                "config hash mismatch: the bytes hash to {} but {} was expected".format(
                    _hex(got), _hex(expected_hash)
                )
            )
    try:
        cfg = cbor.decode(data, _MAX_DEPTH)
    except ValueError as exc:
        raise CompiledConfigError("compiled config is not valid CBOR: {}".format(exc)) from None
    if not isinstance(cfg, dict):
        raise CompiledConfigError("compiled config must be a map, got " + type(cfg).__name__)
    version = cfg.get("format")
    if version != FORMAT_VERSION:
        raise CompiledConfigError(
            "compiled config format {!r} is not {} (recompile with this firmware's "
            "host tools)".format(version, FORMAT_VERSION)
        )
    for key in SECTIONS:
        if key not in cfg:
            raise CompiledConfigError("compiled config lacks section {!r}".format(key))
    return cfg


def load_board_file(blob):
    """Split a board file (hash + compiled bytes), check it; returns ``(config, hash)``."""
    if len(blob) <= HASH_LEN:
        raise CompiledConfigError("board config file of {} bytes is too short".format(len(blob)))
    expected = bytes(blob[:HASH_LEN])
    return load_compiled(bytes(blob[HASH_LEN:]), expected), expected


def _hex(b):
    return "".join("{:02x}".format(x) for x in bytes(b))
