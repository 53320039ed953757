"""Storage: the interface callers use (``base``) and one module per backend.

``open_store`` picks the backend from the ``DATABASE`` setting: a file path is SQLite (the
embedded default). Every query lives in the backend modules.
"""

from __future__ import annotations

import re

from ..errors import ConfigError
from .base import DeliveryFilters, EventFilters, Saved, Store
from .sqlite import SQLiteStore

__all__ = ["DeliveryFilters", "EventFilters", "SQLiteStore", "Saved", "Store", "open_store",
           "backend_of"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def backend_of(database: str) -> str:
    """``sqlite`` for a file path; a URL with any other scheme is refused with a sentence."""
    match = _SCHEME.match(database)
    if match is None:
        return "sqlite"
    scheme = match.group(1).lower()
    raise ConfigError(
        f"DATABASE: {scheme}:// URLs are not supported; give a file path for SQLite")


def open_store(database: str, *, busy_timeout_ms: int = 5000,
               max_size: int | None = None) -> Store:
    """The store for the ``DATABASE`` setting (not migrated yet: call ``migrate``)."""
    backend_of(database)
    return SQLiteStore(database, busy_timeout_ms=busy_timeout_ms, max_size=max_size)
