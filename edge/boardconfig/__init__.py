"""Board configuration: TOML files -> validated config -> compact CBOR form for the board.

CPython only (host and Raspberry Pi: it needs ``tomllib``); never bundled onto a
microcontroller, which reads the compiled form with ``edge.compiled_config`` instead.
See docs/board-config.md.

``core`` is the config-validation core every TOML loader uses (board, line, recipe,
fault scenario); ``loader.validate`` runs the section modules (``module``,
``channels``, ``drivers``, ``loops``, ``interlocks``, ``runaway``, ``kinds``) over one
``state.Board``; ``schema`` is the key tables (data) and ``values`` the board-only types.
"""

from edge.boardconfig.compile import compile_config, config_hash, decompile
from edge.boardconfig.loader import (
    BoardConfig,
    ConfigError,
    ConfigErrors,
    emulate,
    load_board_config,
    load_board_config_text,
)

__all__ = [
    "BoardConfig",
    "ConfigError",
    "ConfigErrors",
    "compile_config",
    "config_hash",
    "decompile",
    "emulate",
    "load_board_config",
    "load_board_config_text",
]
