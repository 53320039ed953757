"""Handler runs and their scheduled attempts, written once for both backends (the
placeholder aside).

A handler that failed and has attempts left gets a row in ``handler_retries``: which event,
which handler, the number of the attempt to run, when it is due (epoch seconds), and a lease
like a pending event's. The row is deleted when that handler runs on the event again, by
the attempt itself, a replay or a cancel, so one row at most per (event, handler). The
event's ``dispatch_status`` follows: ``retrying`` while it has rows, then ``failed`` if a
handler's latest run failed, else ``done``; ``next_attempt_at`` is its earliest due time.

Claiming the due rows differs per backend (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and is
each backend's; the rest is here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..events import Event
from .base import ScheduledAttempt, run_from_row, storable_values
from .row_queries import RUN_COLUMNS
from .sql import SharedSQL

#: The migration both backends run, ``{id}`` being their identity column.
RETRY_SCHEMA = """
ALTER TABLE events ADD COLUMN next_attempt_at text;
ALTER TABLE handler_runs ADD COLUMN attempt integer NOT NULL DEFAULT 1;
ALTER TABLE handler_runs ADD COLUMN gave_up boolean NOT NULL DEFAULT false;
CREATE TABLE handler_retries (
    id {id},
    event_id bigint NOT NULL REFERENCES events (id),
    handler text NOT NULL,
    attempt integer NOT NULL,
    attempts integer NOT NULL,
    due_at double precision NOT NULL,
    lease_owner text,
    lease_expires double precision,
    UNIQUE (event_id, handler)
);
CREATE INDEX handler_retries_due ON handler_retries (due_at);
CREATE INDEX events_retrying ON events (id) WHERE dispatch_status = 'retrying';
CREATE INDEX handler_runs_gave_up ON handler_runs (handler) WHERE gave_up;
"""

#: The columns of a scheduled attempt as ``scheduled_attempts`` returns them.
ATTEMPT_FIELDS = ("handler", "attempt", "attempts", "due_at", "lease_owner")


@dataclass(frozen=True)
class DueAttempt:
    """A scheduled attempt claimed to run now: the event, the handler, its number."""

    event: Event
    handler: str
    attempt: int


class RunQueries(SharedSQL):
    """Mixed into each backend's store: the runs, and the schedule kept beside them."""

    #: An epoch time column (``{}``) as the ISO text every stored time has.
    DUE_TEXT: ClassVar[str]



    def record_runs(self, event_id: int, runs: Sequence[Any], *, trigger: str,
                    owner: str | None = None,
                    scheduled: Sequence[ScheduledAttempt] = ()) -> list[dict[str, Any]]:
        """Store the runs, replace the scheduled attempts of the handlers that ran by
        ``scheduled``, settle the event's status and release its lease, in one transaction.
        Returns the stored runs."""
        m = self.MARK
        insert = ("INSERT INTO handler_runs (event_id, handler, status, error, traceback,"
                  " started_at, duration_ms, trigger, attempt, gave_up) VALUES"
                  f" ({', '.join([m] * 10)}) RETURNING {RUN_COLUMNS}")
        stored: list[dict[str, Any]] = []
        with self._run_write() as conn:
            for run in map(storable_values, runs):
                row = conn.execute(insert, (
                    event_id, run["handler"], run["status"], run.get("error"),
                    run.get("traceback"), run["started_at"], run["duration_ms"], trigger,
                    int(run.get("attempt") or 1), bool(run.get("gave_up")))).fetchone()
                stored.append(run_from_row(row))
            self._reschedule(conn, event_id, [run["handler"] for run in stored], scheduled)
            self._settle(conn, event_id, release=True)
        return stored

    # -- inside a write transaction -------------------------------------------------------

    def _reschedule(self, conn: Any, event_id: int, handlers: Iterable[str],
                    scheduled: Sequence[Any]) -> None:
        """The handlers that just ran lose their scheduled attempt; ``scheduled``
        (``ScheduledAttempt``s) are the new ones."""
        m = self.MARK
        names = sorted(set(handlers))
        if names:
            marks = ", ".join([m] * len(names))
            conn.execute(f"DELETE FROM handler_retries WHERE event_id = {m} AND handler IN"
                         f" ({marks})", [event_id, *names])
        now = time.time()
        for attempt in scheduled:
            conn.execute(
                "INSERT INTO handler_retries (event_id, handler, attempt, attempts, due_at)"
                f" VALUES ({m}, {m}, {m}, {m}, {m})",
                (event_id, attempt.handler, attempt.attempt, attempt.attempts,
                 now + attempt.wait))

    def _settle(self, conn: Any, event_id: int, *, release: bool = False) -> None:
        """The event's status and next attempt from its schedule and latest runs, in one
        statement; with ``release`` its dispatch lease is let go too."""
        m = self.MARK
        lease = ", lease_owner = NULL, lease_expires = NULL" if release else ""
        due_text = self.DUE_TEXT.format("min(due_at)")
        conn.execute(
            f"UPDATE events SET next_attempt_at = (SELECT {due_text} FROM handler_retries"
            f" WHERE event_id = {m}), dispatch_status = CASE WHEN EXISTS (SELECT 1 FROM"
            f" handler_retries WHERE event_id = {m}) THEN 'retrying' WHEN EXISTS (SELECT 1"
            f" FROM handler_runs AS r WHERE r.event_id = {m} AND r.status = 'error' AND r.id ="
            " (SELECT max(id) FROM handler_runs WHERE event_id = r.event_id AND handler ="
            f" r.handler)) THEN 'failed' ELSE 'done' END{lease} WHERE id = {m}",
            (event_id, event_id, event_id, event_id))

    # -- the schedule as the inspector and the CLI use it ---------------------------------

    def scheduled_attempts(self, event_id: int) -> list[dict[str, Any]]:
        """The event's scheduled attempts, soonest first (``due_at`` as ISO text, written
        as ``next_attempt_at`` is)."""
        m = self.MARK
        columns = [self.DUE_TEXT.format("due_at") if name == "due_at" else name
                   for name in ATTEMPT_FIELDS]
        rows = self.rows(f"SELECT {', '.join(columns)} FROM handler_retries"
                         f" WHERE event_id = {m} ORDER BY due_at, handler", (event_id,))
        found = []
        for row in rows:
            record = dict(zip(ATTEMPT_FIELDS, row, strict=True))
            record["running"] = record.pop("lease_owner") is not None
            found.append(record)
        return found

    def attempt_owner(self, event_id: int, handler: str) -> str | None:
        """Who holds the lease of the handler's scheduled attempt on the event, if anyone."""
        m = self.MARK
        found = self.rows(f"SELECT lease_owner FROM handler_retries WHERE event_id = {m}"
                          f" AND handler = {m}", (event_id, handler))
        return found[0][0] if found else None

    def retry_now(self, event_id: int, handlers: Sequence[str] | None = None) -> int:
        """Make the event's scheduled attempts (or those of ``handlers``) due now; how many."""
        return self._change_schedule(f"UPDATE handler_retries SET due_at = {self.MARK}",
                                     [time.time()], event_id, handlers)

    def cancel_retries(self, event_id: int, handlers: Sequence[str] | None = None) -> int:
        """Drop the event's scheduled attempts (or those of ``handlers``): its status settles
        from the latest runs (``failed``). How many were dropped."""
        return self._change_schedule("DELETE FROM handler_retries", [], event_id, handlers)

    def _change_schedule(self, statement: str, params: list[Any], event_id: int,
                         handlers: Sequence[str] | None) -> int:
        """``statement`` on the event's rows (or those of ``handlers``), then its status."""
        m = self.MARK
        terms = f"event_id = {m}"
        values = [*params, event_id]
        if handlers is not None:
            terms += f" AND handler IN ({', '.join([m] * len(handlers))})"
            values += list(handlers)
        with self._run_write() as conn:
            changed = conn.execute(f"{statement} WHERE {terms}", values).rowcount
            if changed:
                self._settle(conn, event_id)
        return int(changed)

    def retry_counts(self) -> dict[str, dict[str, int]]:
        """Per handler: events with an attempt scheduled (``retrying``) and runs that gave
        up (``gave_up``), along the two small indexes."""
        counts: dict[str, dict[str, int]] = {}
        for handler, number in self.rows(
                "SELECT handler, count(*) FROM handler_retries GROUP BY handler"):
            counts.setdefault(handler, {"retrying": 0, "gave_up": 0})["retrying"] = number
        for handler, number in self.rows(
                "SELECT handler, count(*) FROM handler_runs WHERE gave_up GROUP BY handler"):
            counts.setdefault(handler, {"retrying": 0, "gave_up": 0})["gave_up"] = number
        return counts

    def events_retrying(self) -> int:
        """How many events have an attempt scheduled."""
        return int(self.rows(
            "SELECT count(*) FROM events WHERE dispatch_status = 'retrying'")[0][0])
