"""What the query mixins written once for both backends (``run_queries``,
``problem_queries``, ``reconcile_queries``, ``session_queries``) need of a backend: its
placeholder, one read statement, a durable write transaction."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar


class SharedSQL(abc.ABC):
    """The base of every query mixin; ``SQLiteStore`` and ``PostgresStore`` fill it in."""

    #: The placeholder: ``?`` (SQLite) or ``%s`` (PostgreSQL).
    MARK: ClassVar[str]

    @abc.abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One read statement with ``MARK`` placeholders."""

    @abc.abstractmethod
    def _run_write(self) -> Any:
        """A durable write transaction (a context manager giving a connection whose
        ``execute`` takes ``MARK`` placeholders)."""
