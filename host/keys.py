"""Command and operator key files: raw bytes, or the same bytes as hex text.

A module's command key (``module.key_file`` of its board config, relative to the
config) authenticates the host's commands (protocol/SPEC.md section 7); an operator key
signs control requests (``host.control``).  Both files are read the same way.
"""

from __future__ import annotations

from pathlib import Path


def decode_key(data: bytes) -> bytes:
    """A key file's content: hex text (e.g. ``head -c 32 /dev/urandom | xxd -p``) or the
    raw bytes themselves."""
    try:
        return bytes.fromhex(data.strip().decode())
    except (UnicodeDecodeError, ValueError):
        return data


def key_path(config_path: Path, key_file: str) -> Path:
    """Where ``key_file`` lives: as given when absolute, else beside the config."""
    path = Path(key_file)
    return path if path.is_absolute() else config_path.parent / path


def read_key(config_path: Path, key_file: str | None) -> bytes | None:
    """The module's command key (raw bytes, or hex text), or None when none is configured."""
    if not key_file:
        return None
    path = key_path(config_path, key_file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"{config_path}: module.key_file = {key_file!r}: {path} not found "
            "(create it with 32 random bytes, e.g. `head -c 32 /dev/urandom > FILE`, "
            "or run with --insecure)"
        ) from None
    return decode_key(data)
