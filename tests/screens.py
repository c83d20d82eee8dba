"""Where browser tests save their screenshots."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def screenshot_dir() -> Path:
    """``$SKID_SCREENSHOTS`` (``SKID_SCREENSHOTS=docs/img`` refreshes the ones the docs
    show), else a scratch directory, so ``make test`` leaves the checkout clean."""
    default = Path(tempfile.gettempdir()) / "flowskid-screenshots"
    path = Path(os.environ.get("SKID_SCREENSHOTS") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path
