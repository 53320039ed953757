"""Where the package's files are: ``templates/`` and ``samples/`` at the top of a checkout
(or their copies in the wheel), ``static/`` and ``openapi.json`` inside the package. Any
layer may ask, without importing the package root and the app factory with it."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Top-level ``templates/`` or ``samples/`` in a checkout, or the copy in the wheel."""
    checkout = PACKAGE_DIR.parent / name
    return checkout if checkout.is_dir() else PACKAGE_DIR / name
