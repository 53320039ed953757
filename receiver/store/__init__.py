"""Storage: the interface callers use (``base``) and one module per backend.

``open_store`` picks the backend from the ``DATABASE`` setting: a file path is SQLite (the
embedded default), a ``postgresql://`` (or ``postgres://``) URL is PostgreSQL. Every query
lives in this package: ``base`` (the interface and what both backends share), ``sqlite`` and
``postgres`` (what differs), ``where``, ``row_queries``, ``activity_queries`` and the other
``*_queries`` modules (SQL written once for both), search per backend, ``rollups`` (the pure
arithmetic of the activity counts) and ``upkeep`` (the background thread that keeps indexes,
rollups and retention). May import only ``config``, ``errors`` and ``events``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..config import backend_of
from ..errors import ConfigError
from .base import MAX_ID, ActivityFilters, DeliveryFilters, EventFilters, Saved, Store
from .sqlite import SQLiteStore

__all__ = ["MAX_ID", "ActivityFilters", "DeliveryFilters", "EventFilters", "SQLiteStore",
           "Saved", "Store", "open_store", "shown"]


def shown(database: str) -> str:
    """The setting as it may be printed: a URL's password replaced by ``***``."""
    parts = urlsplit(database)
    if backend_of(database) == "sqlite" or not parts.password:
        return database
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def open_store(database: str, *, busy_timeout_ms: int = 5000, max_size: int | None = None,
               pool_size: int = 4, prepared_statements: bool = True) -> Store:
    """The store for the ``DATABASE`` setting (not migrated yet: call ``migrate``).

    ``busy_timeout_ms`` is how long a write waits (SQLite: for the lock; PostgreSQL: for a
    pooled connection) before it answers 503; ``pool_size`` and ``prepared_statements`` are
    PostgreSQL's, ``max_size`` SQLite's.
    """
    if backend_of(database) == "postgres":
        try:
            from .postgres import PostgresStore
        except ImportError as error:
            raise ConfigError(
                "DATABASE: a postgresql:// URL needs psycopg, which is not installed "
                f"({error}); install it with: pip install 'license-webhook-receiver[postgres]'"
            ) from None
        return PostgresStore(database, pool_size=pool_size, timeout_ms=busy_timeout_ms,
                             prepare=prepared_statements)
    return SQLiteStore(database, busy_timeout_ms=busy_timeout_ms, max_size=max_size)
