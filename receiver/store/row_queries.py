"""Queries on the event, delivery and handler-run rows that are the same on both backends
but for the placeholder, written once.

As in ``where`` and ``activity_queries``: ``SQLiteStore`` and ``PostgresStore`` mix
``RowReads`` in and give it their placeholder (``MARK``) and how to run a read (``rows``);
the keyset paging of the lists, the walk of an export's id windows and the purge of refused
deliveries are functions both call with their own terms and transactions.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from ..errors import NotFound
from ..events import Event
from .base import (
    COPY_COLUMNS,
    DELIVERY_FIELDS,
    EVENT_FIELDS,
    ID_LIMIT,
    RUN_FIELDS,
    DeliveryFilters,
    delivery_from_row,
    event_from_row,
    is_row_id,
    run_from_row,
)
from .where import delivery_filter_terms

EVENT_COLUMNS = ", ".join(EVENT_FIELDS)
DELIVERY_COLUMNS = ", ".join(DELIVERY_FIELDS)
RUN_COLUMNS = ", ".join(RUN_FIELDS)

Item = TypeVar("Item")


def keyset_query(columns: str, table: str, where: Sequence[str], params: Sequence[Any], *,
                 mark: str, limit: int, below: int | None = None, above: int | None = None,
                 floor: int | None = None, upto: int | None = None
                 ) -> tuple[str, list[Any]]:
    """A page of ``table`` keyed on id (never OFFSET): rows passing ``where`` with ids below
    ``below`` and at least ``floor``, newest first; with ``above`` (a feed), ids above it
    and at most ``upto``, oldest first. Returns the statement and its parameters."""
    terms, values = list(where), list(params)
    for bound, term in ((below, "id < "), (above, "id > "), (floor, "id >= "),
                        (upto, "id <= ")):
        if bound is not None:
            terms.append(term + mark)
            values.append(bound)
    sql = f"SELECT {columns} FROM {table}"
    if terms:
        sql += " WHERE " + " AND ".join(terms)
    order = "ASC" if above is not None else "DESC"
    return sql + f" ORDER BY id {order} LIMIT {mark}", [*values, limit]


def keyset_page(rows: Sequence[Sequence[Any]], limit: int,
                convert: Callable[[Sequence[Any]], Item]) -> tuple[list[Item], str | None]:
    """The first ``limit`` of ``rows`` (fetched with ``limit + 1``, ids first) converted, and
    the cursor of the next page, None when the extra row says this page is the last."""
    page = rows[:limit]
    items = [convert(row) for row in page]
    return items, str(page[-1][0]) if len(rows) > limit else None


def export_start(cursor: int | None, newest: int) -> int:
    """Where an export walks down from: a cursor past the newest event starts at the newest
    (windows above it are empty, and walking them down from an id such as 6,000,000,000
    never ends)."""
    return min(cursor if cursor is not None else ID_LIMIT, newest + 1)


def export_windows(select: Callable[[int | None, int | None], list[Any]], *,
                   top: int | None, lowest: int, by_window: bool, window: int,
                   batch: int) -> Iterator[list[Any]]:
    """The batches of an export: ``select(below, floor)`` reads up to ``batch`` rows, newest
    first; with ``by_window`` the ids are walked down in windows of ``window`` (each one a
    bounded query, whatever the filters match), else from ``top`` to the end."""
    while True:
        floor = None
        if by_window:
            assert top is not None
            floor = max(top - window, lowest)
        rows = select(top, floor)
        yield rows
        if len(rows) == batch:
            top = rows[-1][0]
        elif floor is not None and floor > lowest:
            top = floor
        else:
            return


def purge_refused(delete: Callable[[str, Sequence[Any]], int], before: str, *, mark: str,
                  batch: int) -> int:
    """Delete refused deliveries (no event) received before ``before``, ``batch`` a
    statement; ``delete`` runs one in a transaction of its own and returns its row count.
    Returns how many."""
    sql = ("DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE"
           f" event_id IS NULL AND received_at < {mark} ORDER BY id LIMIT {int(batch)})")
    total = 0
    while True:
        deleted = delete(sql, (before,))
        total += deleted
        if deleted < batch:
            return total


class RowReads(abc.ABC):
    """The reads of single rows, an event's rows and the copy, for both backends."""

    #: The driver's placeholder: ``?`` (sqlite3) or ``%s`` (psycopg).
    MARK: ClassVar[str]

    @abc.abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read statement (``MARK`` placeholders) and return its rows."""

    def _feed_upto(self, after: int) -> int | None:
        """The highest delivery id a feed may hand out past ``after`` (None: any)."""
        return None

    def get_event(self, event_id: int) -> Event:
        if not is_row_id(event_id):
            raise NotFound(f"no event with id {event_id}")
        rows = self.rows(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = {self.MARK}",
                         (event_id,))
        if not rows:
            raise NotFound(f"no event with id {event_id}")
        return event_from_row(rows[0])

    def newest_event_id(self) -> int:
        return int(self.rows("SELECT coalesce(max(id), 0) FROM events")[0][0])

    def subject_timeline(self, event: Event, limit: int = 50) -> list[Event]:
        """Other events about the same subject (license, machine, entitlement) over time."""
        if not event.subject_id:
            return []
        mark = self.MARK
        rows = self.rows(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE subject_id = {mark} AND source = {mark}"
            f" ORDER BY id DESC LIMIT {mark}", (event.subject_id, event.source, limit))
        return [event_from_row(row) for row in rows]

    def get_delivery(self, delivery_id: int, *, with_body: bool = False) -> dict[str, Any]:
        if not is_row_id(delivery_id):
            raise NotFound(f"no delivery with id {delivery_id}")
        columns = DELIVERY_COLUMNS + (", body" if with_body else "")
        rows = self.rows(f"SELECT {columns} FROM deliveries WHERE id = {self.MARK}",
                         (delivery_id,))
        if not rows:
            raise NotFound(f"no delivery with id {delivery_id}")
        return delivery_from_row(rows[0], with_body=with_body)

    def list_deliveries(self, filters: DeliveryFilters, *, limit: int = 50,
                        cursor: int | None = None, after: int | None = None
                        ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first (or oldest first after ``after``, for feeds, up to what
        ``_feed_upto`` allows); keyset on id."""
        where, params = delivery_filter_terms(filters, mark=self.MARK)
        upto = self._feed_upto(after) if after is not None else None
        sql, values = keyset_query(DELIVERY_COLUMNS, "deliveries", where, params,
                                   mark=self.MARK, limit=limit + 1, below=cursor, above=after,
                                   upto=upto)
        return keyset_page(self.rows(sql, values), limit, delivery_from_row)

    def deliveries_for_event(self, event_id: int) -> list[dict[str, Any]]:
        rows = self.rows(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id ="
                         f" {self.MARK} ORDER BY id", (event_id,))
        return [delivery_from_row(row) for row in rows]

    def runs_for_event(self, event_id: int) -> list[dict[str, Any]]:
        rows = self.rows(f"SELECT {RUN_COLUMNS} FROM handler_runs WHERE event_id ="
                         f" {self.MARK} ORDER BY id", (event_id,))
        return [run_from_row(row) for row in rows]

    def lease_owner(self, event_id: int) -> str | None:
        rows = self.rows(f"SELECT lease_owner FROM events WHERE id = {self.MARK}", (event_id,))
        return rows[0][0] if rows else None

    def copy_rows(self, table: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        columns = COPY_COLUMNS[table]
        rows = self.rows(f"SELECT {', '.join(columns)} FROM {table} WHERE id > {self.MARK}"
                         f" ORDER BY id LIMIT {self.MARK}", (after, limit))
        return [dict(zip(columns, row, strict=True)) for row in rows]
