"""Shared helpers for bench modules."""

from __future__ import annotations


def record(name, value, unit, peer=None, peer_value=None, target=None) -> dict:
    """One result record; ``ratio`` = ours / peer when there is a peer."""
    ratio = None if peer_value is None else round(value / peer_value, 3)
    return {
        "name": name,
        "value": round(value, 4) if isinstance(value, float) else value,
        "unit": unit,
        "peer": peer,
        "peer_value": None if peer_value is None else round(peer_value, 4),
        "ratio": ratio,
        "target": target,
    }
