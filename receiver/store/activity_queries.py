"""The queries of the activity chart, the metrics, handler health and "what changed",
written once (``?`` placeholders) for both backends: ``SQLiteStore`` and ``PostgresStore``
mix ``ActivityQueries`` in and give it three things, how to run a statement, how to read
several in one snapshot, and how to take the next batch of rows to roll up.

Rollups: ``activity`` counts deliveries by (level, bucket, source, endpoint, event type,
status, duplicate, verdict) and ``handler_activity`` counts handler runs by (level, bucket,
handler, status) with their total and a duration histogram. Levels are ``minute``, ``hour``,
``day`` and ``all``, so a chart reads at most a few thousand rows whatever its range. The
upkeep thread adds what was stored since the last time (``roll_up``); a read adds the rows
not rolled up yet (the tail) to the rollup rows, both seen in one snapshot.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..events import Event
from . import rollups
from .base import (
    ROLLUP_PURGE_BATCH,
    RUN_FIELDS,
    ActivityFilters,
    TimelineLink,
    event_from_row,
    run_from_row,
    storable_text,
)
from .row_queries import EVENT_COLUMNS
from .where import equal_terms, event_type_condition

#: Runs a statement with ``?`` placeholders and returns its rows (empty for a write).
Fetch = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
#: Runs one statement for each parameter row.
ExecuteMany = Callable[[str, Sequence[Sequence[Any]]], None]

HISTOGRAM = [f"h{slot}" for slot in range(len(rollups.DURATION_BOUNDS_MS))]

SCHEMA = f"""
CREATE TABLE activity (
    level TEXT NOT NULL,
    bucket TEXT NOT NULL,
    source TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    duplicate INTEGER NOT NULL,
    signature_status TEXT NOT NULL,
    deliveries BIGINT NOT NULL,
    PRIMARY KEY (level, bucket, source, endpoint, event_type, status_code, duplicate,
                 signature_status)
);
CREATE TABLE handler_activity (
    level TEXT NOT NULL,
    bucket TEXT NOT NULL,
    handler TEXT NOT NULL,
    status TEXT NOT NULL,
    runs BIGINT NOT NULL,
    total_ms DOUBLE PRECISION NOT NULL,
    last_id BIGINT NOT NULL,
    {", ".join(f"{column} BIGINT NOT NULL DEFAULT 0" for column in HISTOGRAM)},
    PRIMARY KEY (level, bucket, handler, status)
);
CREATE TABLE rollup_state (
    name TEXT PRIMARY KEY,
    upto BIGINT NOT NULL
);
INSERT INTO rollup_state (name, upto) VALUES ('deliveries', 0), ('handler_runs', 0);
-- Failed runs only (ok runs write nothing to it): which events a handler fails on now.
CREATE INDEX handler_runs_failed ON handler_runs (handler, id) WHERE status = 'error';
"""

UNROLLED_DELIVERIES = (
    "SELECT d.id, d.received_at, d.source, d.endpoint, e.event_type, d.status_code,"
    " d.duplicate, d.signature_status FROM deliveries AS d"
    " LEFT JOIN events AS e ON e.id = d.event_id WHERE d.id > ?")
UNROLLED_RUNS = ("SELECT id, started_at, handler, status, duration_ms FROM handler_runs"
                 " WHERE id > ?")
UPTO = "SELECT upto FROM rollup_state WHERE name = ?"

ADD_DELIVERIES = (
    "INSERT INTO activity (level, bucket, source, endpoint, event_type, status_code,"
    " duplicate, signature_status, deliveries) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (level, bucket, source, endpoint, event_type, status_code, duplicate,"
    " signature_status) DO UPDATE SET deliveries = activity.deliveries + excluded.deliveries")
ADD_RUNS = (
    f"INSERT INTO handler_activity (level, bucket, handler, status, runs, total_ms, last_id,"
    f" {', '.join(HISTOGRAM)}) VALUES ({', '.join('?' * (7 + len(HISTOGRAM)))})"
    " ON CONFLICT (level, bucket, handler, status) DO UPDATE SET"
    " runs = handler_activity.runs + excluded.runs,"
    " total_ms = handler_activity.total_ms + excluded.total_ms,"
    " last_id = greatest_id,"
    + ", ".join(f" {column} = handler_activity.{column} + excluded.{column}"
                for column in HISTOGRAM))

ORDER_KEY = "coalesce(occurred_at, received_at)"


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values)) or "NULL"


class ActivityQueries(abc.ABC):
    """Mixed into each backend's store; see the module's docstring."""

    #: The SQL of "the larger of the stored and the new last id" in ``ADD_RUNS``.
    GREATEST = "max(handler_activity.last_id, excluded.last_id)"

    # -- what each backend gives ----------------------------------------------------------

    @abc.abstractmethod
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders, on its own."""

    @abc.abstractmethod
    def _snapshot(self) -> AbstractContextManager[Fetch]:
        """Several reads that see one moment of the database."""

    @abc.abstractmethod
    def _writing(self) -> AbstractContextManager[tuple[Fetch, ExecuteMany]]:
        """A write transaction."""

    @abc.abstractmethod
    def _claim_watermark(self, fetch: Fetch, name: str) -> int | None:
        """In the write transaction: the ``rollup_state`` watermark of ``name``, held so no
        other process rolls the same rows; None when another one holds it now."""

    @abc.abstractmethod
    def _roll_bound(self, fetch: Fetch, table: str, upto: int, limit: int) -> int:
        """The highest id of ``table`` past ``upto`` (at most ``limit`` rows on) below
        which no row can still appear."""

    # -- rolling up ---------------------------------------------------------------------

    def roll_up(self, limit: int = 5000) -> int:
        return (self._roll("deliveries", UNROLLED_DELIVERIES, "d.id", limit,
                           self._add_deliveries)
                + self._roll("handler_runs", UNROLLED_RUNS, "id", limit, self._add_runs))

    def _roll(self, name: str, select: str, id_column: str, limit: int,
              add: Callable[[ExecuteMany, list[tuple[Any, ...]]], None]) -> int:
        """Roll the next rows of ``name`` past its watermark; how many (0: caught up, or
        another process is at it)."""
        newest = self._fetch(f"SELECT coalesce(max(id), 0) FROM {name}")[0][0]
        if newest <= self._fetch(UPTO, (name,))[0][0]:
            return 0  # nothing new: no write transaction
        with self._writing() as (fetch, execute):
            upto = self._claim_watermark(fetch, name)
            if upto is None:
                return 0
            bound = self._roll_bound(fetch, name, upto, limit)
            if bound <= upto:
                return 0
            rows = fetch(f"{select} AND {id_column} <= ? ORDER BY {id_column}", (upto, bound))
            add(execute, rows)
            execute("UPDATE rollup_state SET upto = ? WHERE name = ?", [(bound, name)])
        return len(rows)

    def add_unavailable(self, counts: Mapping[tuple[Any, ...], int]) -> None:
        """Add 503s counted in memory; their keys hold the endpoint name as the path gave it,
        so text is stored as every row's is (no U+0000)."""
        if counts:
            rows = [tuple(storable_text(part) if isinstance(part, str) else part
                          for part in key) + (count,) for key, count in counts.items()]
            with self._writing() as (_, execute):
                execute(ADD_DELIVERIES, sorted(rows, key=repr))

    def _add_deliveries(self, execute: ExecuteMany, rows: list[tuple[Any, ...]]) -> None:
        counts = rollups.roll_up_deliveries(rows)
        execute(ADD_DELIVERIES, [(*key, count) for key, count in sorted(counts.items())])

    def _add_runs(self, execute: ExecuteMany, rows: list[tuple[Any, ...]]) -> None:
        tallies = rollups.roll_up_runs(rows)
        execute(ADD_RUNS.replace("greatest_id", self.GREATEST),
                [(*key, tally.count, tally.total_ms, tally.last_id, *tally.histogram)
                 for key, tally in sorted(tallies.items())])

    # -- reading ------------------------------------------------------------------------

    def activity_rows(self, level: str, first: str, end: str, filters: ActivityFilters
                      ) -> tuple[list[tuple[Any, ...]], list[Any]]:
        narrowed, narrowing = equal_terms(filters, ("source", "endpoint"))
        where = ["level = ?", "bucket >= ?", "bucket < ?", *narrowed]
        params: list[Any] = [level, first, end, *narrowing]
        condition, values = event_type_condition(filters.event_type)
        if condition:
            where.append(condition)
            params += values
        with self._snapshot() as fetch:
            rolled = fetch("SELECT bucket, status_code, duplicate, sum(deliveries) FROM activity"
                           f" WHERE {' AND '.join(where)} GROUP BY bucket, status_code,"
                           " duplicate", params)
            tail = self._tail(fetch, "deliveries", UNROLLED_DELIVERIES)
        return rolled, tail

    def delivery_total_rows(self) -> tuple[list[tuple[Any, ...]], list[Any]]:
        with self._snapshot() as fetch:
            rolled = fetch("SELECT source, endpoint, event_type, status_code, duplicate,"
                           " signature_status, deliveries FROM activity WHERE level = 'all'", ())
            tail = self._tail(fetch, "deliveries", UNROLLED_DELIVERIES)
        return rolled, tail

    def run_rows(self, level: str, first: str) -> tuple[list[tuple[Any, ...]], list[Any]]:
        sums = ", ".join(f"sum({column})" for column in HISTOGRAM)
        with self._snapshot() as fetch:
            rolled = fetch(f"SELECT handler, status, sum(runs), sum(total_ms), max(last_id), {sums}"
                           " FROM handler_activity WHERE level = ? AND bucket >= ?"
                           " GROUP BY handler, status", (level, first))
            tail = self._tail(fetch, "handler_runs", UNROLLED_RUNS)
        return rolled, tail

    @staticmethod
    def _tail(fetch: Fetch, name: str, select: str) -> list[tuple[Any, ...]]:
        upto = fetch(UPTO, (name,))[0][0]
        return fetch(select, (upto,))

    def purge_activity(self, before: str, *, event_type: str | None = None,
                       batch: int = ROLLUP_PURGE_BATCH) -> None:
        """About ``batch`` rows per transaction, whole buckets at a time: a month of minute
        rows is hundreds of thousands, which in one transaction held SQLite's write lock
        for 0.8 s at the end of a purge."""
        condition, values = event_type_condition(event_type)
        narrowed = f" AND {condition}" if condition else ""
        tables = [("activity", narrowed, values)]
        if event_type is None:
            tables.append(("handler_activity", "", []))
        for level in rollups.BUCKETS:
            key = rollups.bucket_key(before, level)
            for table, where, params in tables:
                while True:
                    with self._writing() as (fetch, _):
                        # The bucket ``batch`` rows in: delete up to it, ties included.
                        found = fetch(
                            f"SELECT bucket FROM {table} WHERE level = ? AND bucket < ?{where}"
                            " ORDER BY bucket LIMIT 1 OFFSET ?", [level, key, *params, batch])
                        upto = found[0][0] if found else None
                        fetch(f"DELETE FROM {table} WHERE level = ?"
                              f" AND bucket {'<' if upto is None else '<='} ?{where}",
                              [level, key if upto is None else upto, *params])
                    if upto is None:
                        break

    # -- handler health -----------------------------------------------------------------

    def pending_summary(self) -> list[tuple[str, str, int, str]]:
        return [(row[0], row[1], int(row[2]), row[3]) for row in self._fetch(
            "SELECT source, event_type, count(*), min(received_at) FROM events"
            " WHERE dispatch_status = 'pending' GROUP BY source, event_type")]

    def get_runs(self, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        rows = self._fetch(f"SELECT {', '.join(RUN_FIELDS)} FROM handler_runs"
                           f" WHERE id IN ({_marks(run_ids)})", list(run_ids))
        return {row[0]: run_from_row(row) for row in rows}

    def failing_counts(self, handlers: Sequence[str], *, cap: int = 1000) -> dict[str, int]:
        counts = {}
        for handler in handlers:
            # Newest first along the partial index of failed runs, stopping past ``cap``.
            rows = self._fetch(
                "SELECT count(*) FROM (SELECT 1 FROM handler_runs AS r WHERE r.handler = ?"
                " AND r.status = 'error' AND r.id = (SELECT max(id) FROM handler_runs WHERE"
                " event_id = r.event_id AND handler = r.handler) ORDER BY r.id DESC LIMIT ?)"
                " AS failing", (handler, cap + 1))
            counts[handler] = int(rows[0][0])
        return counts

    def failed_event_ids(self, handler: str, *, since: str | None = None) -> list[int]:
        bound = " AND r.started_at >= ?" if since else ""
        rows = self._fetch(
            "SELECT r.event_id FROM handler_runs AS r WHERE r.handler = ? AND r.status ="
            f" 'error'{bound} AND r.id = (SELECT max(id) FROM handler_runs WHERE event_id ="
            " r.event_id AND handler = r.handler) ORDER BY r.event_id DESC",
            [handler, *([since] if since else [])])
        return [row[0] for row in rows]

    # -- what changed -------------------------------------------------------------------

    def previous_event(self, event: Event) -> Event | None:
        if not event.subject_id:
            return None
        key = event.occurred_at or event.received_at
        rows = self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE subject_id = ? AND source = ?"
            f" AND ({ORDER_KEY} < ? OR ({ORDER_KEY} = ? AND id < ?))"
            f" ORDER BY {ORDER_KEY} DESC, id DESC LIMIT 1",
            (event.subject_id, event.source, key, key, event.id))
        return event_from_row(rows[0]) if rows else None

    def out_of_order_ids(self, event_ids: Sequence[int]) -> set[int]:
        if not event_ids:
            return set()
        rows = self._fetch(
            f"SELECT e.id FROM events AS e WHERE e.id IN ({_marks(event_ids)})"
            " AND e.subject_id IS NOT NULL AND e.occurred_at IS NOT NULL AND EXISTS ("
            "SELECT 1 FROM events AS o WHERE o.subject_id = e.subject_id AND o.source ="
            " e.source AND o.id < e.id AND o.occurred_at > e.occurred_at)", list(event_ids))
        return {row[0] for row in rows}

    def timeline_links(self, event: Event, event_ids: Sequence[int]
                       ) -> dict[int, TimelineLink]:
        if not event.subject_id or not event_ids:
            return {}
        rows = self._fetch(
            "SELECT id, previous_id, occurred_at, latest FROM (SELECT id, occurred_at,"
            f" lag(id) OVER (ORDER BY {ORDER_KEY}, id) AS previous_id,"
            " max(occurred_at) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND"
            " 1 PRECEDING) AS latest FROM events WHERE subject_id = ? AND source = ?)"
            f" AS ordered WHERE id IN ({_marks(event_ids)})",
            [event.subject_id, event.source, *event_ids])
        return {row[0]: TimelineLink(row[1], bool(row[2] and row[3] and row[3] > row[2]))
                for row in rows}

