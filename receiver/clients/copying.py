"""``receiver copy``: move a history between stores (SQLite <-> PostgreSQL), rows as they are.

Deliveries keep their exact bytes, events their ids and dedup keys, handler runs their
events. Each batch is one transaction on the target and rows already there are skipped, so
a copy that stopped half-way is resumed by running it again, and a second run copies
nothing. No SQL here: both ends are ``Store`` objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..store import Store
from ..store.base import COPY_TABLES


@dataclass
class CopyReport:
    """Rows inserted per table, and each side's counts once the copy is done."""

    copied: dict[str, int] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)
    target_counts: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> dict[str, int]:
        """Tables where the target holds fewer rows than the source (should be none)."""
        return {table: self.source_counts[table] - self.target_counts.get(table, 0)
                for table in COPY_TABLES
                if self.target_counts.get(table, 0) < self.source_counts[table]}


def copy_history(source: Store, target: Store, *, batch: int = 200,
                 progress: Callable[[int], None] | None = None) -> CopyReport:
    """Copy every table in dependency order (events, deliveries, handler runs), a batch of
    rows per target transaction; ``progress`` is told how many rows each batch read."""
    report = CopyReport(source_counts=source.table_counts())
    for table in COPY_TABLES:
        copied = 0
        after = 0
        while True:
            rows = source.copy_rows(table, after=after, limit=batch)
            if not rows:
                break
            copied += target.insert_copied(table, rows)
            after = int(rows[-1]["id"])
            if progress is not None:
                progress(len(rows))
        report.copied[table] = copied
    report.target_counts = target.table_counts()
    return report
