"""Problems and their alerts, written once for both backends (the placeholder aside).

A problem is something a person has to look at (a handler that gave up, signatures refused,
a backlog, the database away). One row per occurrence of a ``(kind, subject)`` that is not
resolved yet, kept unique by a partial index, so a storm of the same trouble is one row with
a count. Opening and resolving one puts its alerts in ``alert_outbox`` in the same
transaction; the rows are claimed with a lease like pending events, sent, and marked sent, so
every alert goes out once across workers and nodes, later if the target is down.
"""

from __future__ import annotations

import abc
import datetime as dt
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import NotFound
from ..events import utc_now_iso
from .sql import SharedSQL

PROBLEM_SCHEMA = """
CREATE TABLE problems (
    id {id},
    kind text NOT NULL,
    subject text NOT NULL,
    status text NOT NULL DEFAULT 'open',
    summary text NOT NULL,
    count integer NOT NULL DEFAULT 1,
    opened_at text NOT NULL,
    last_seen_at text NOT NULL,
    acknowledged_at text,
    resolved_at text,
    link text NOT NULL
);
CREATE UNIQUE INDEX problems_current ON problems (kind, subject) WHERE status <> 'resolved';
CREATE INDEX problems_status ON problems (status, id);
CREATE TABLE alert_outbox (
    id {id},
    problem_id bigint NOT NULL REFERENCES problems (id),
    state text NOT NULL,
    channel text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    due_at double precision NOT NULL,
    lease_owner text,
    lease_expires double precision,
    sent_at text,
    last_error text
);
CREATE INDEX alert_outbox_due ON alert_outbox (due_at) WHERE sent_at IS NULL;
"""

PROBLEM_FIELDS = ("id", "kind", "subject", "status", "summary", "count", "opened_at",
                  "last_seen_at", "acknowledged_at", "resolved_at", "link")
PROBLEM_COLUMNS = ", ".join(PROBLEM_FIELDS)
STATUSES = ("open", "acknowledged", "resolved")


def problem_from_row(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(PROBLEM_FIELDS, row, strict=True))


class ProblemQueries(SharedSQL):
    """Mixed into each backend's store: problems and the alert outbox."""




    # -- opening, resolving, acknowledging ------------------------------------------------

    def note_problem(self, kind: str, subject: str, summary: str, link: str, *,
                     count: int = 1, channels: Iterable[str] = ()
                     ) -> tuple[dict[str, Any], bool]:
        """Open the problem, or count ``count`` more of the one that is open (or
        acknowledged); an opened one gets an ``opened`` alert per channel. Returns it and
        whether it was opened now."""
        m = self.MARK
        now = utc_now_iso()
        with self._run_write() as conn:
            row = conn.execute(
                "INSERT INTO problems (kind, subject, summary, count, opened_at, last_seen_at,"
                f" link) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m})"
                " ON CONFLICT (kind, subject) WHERE status <> 'resolved' DO UPDATE SET"
                " count = problems.count + excluded.count, last_seen_at ="
                f" excluded.last_seen_at, summary = excluded.summary RETURNING {PROBLEM_COLUMNS}",
                (kind, subject, summary, count, now, now, link)).fetchone()
            problem = problem_from_row(row)
            opened = problem["count"] == count and problem["opened_at"] == now
            if opened:
                self._queue_alerts(conn, problem["id"], "opened", channels)
        return problem, opened

    def resolve_problem(self, kind: str, subject: str, *,
                        channels: Iterable[str] = ()) -> dict[str, Any] | None:
        """Resolve the current problem of ``kind`` and ``subject``, if any, with a
        ``resolved`` alert per channel; returns it."""
        m = self.MARK
        with self._run_write() as conn:
            row = conn.execute(
                f"UPDATE problems SET status = 'resolved', resolved_at = {m} WHERE kind = {m}"
                f" AND subject = {m} AND status <> 'resolved' RETURNING {PROBLEM_COLUMNS}",
                (utc_now_iso(), kind, subject)).fetchone()
            if row is None:
                return None
            problem = problem_from_row(row)
            self._queue_alerts(conn, problem["id"], "resolved", channels)
        return problem

    def acknowledge_problem(self, problem_id: int) -> dict[str, Any]:
        """An open problem becomes acknowledged (until it resolves); others stay as they
        are. ``NotFound`` when there is no such problem."""
        m = self.MARK
        with self._run_write() as conn:
            conn.execute(f"UPDATE problems SET status = 'acknowledged', acknowledged_at = {m}"
                         f" WHERE id = {m} AND status = 'open'", (utc_now_iso(), problem_id))
        return self.get_problem(problem_id)

    def _queue_alerts(self, conn: Any, problem_id: int, state: str,
                      channels: Iterable[str]) -> None:
        m = self.MARK
        for channel in channels:
            conn.execute("INSERT INTO alert_outbox (problem_id, state, channel, due_at)"
                         f" VALUES ({m}, {m}, {m}, {m})",
                         (problem_id, state, channel, time.time()))

    # -- reading --------------------------------------------------------------------------

    def get_problem(self, problem_id: int) -> dict[str, Any]:
        found = self.rows(f"SELECT {PROBLEM_COLUMNS} FROM problems WHERE id = {self.MARK}",
                          (problem_id,))
        if not found:
            raise NotFound(f"no problem {problem_id}")
        return problem_from_row(found[0])

    def list_problems(self, status: str | None = None, *, limit: int = 200,
                      resolved_limit: int = 50) -> list[dict[str, Any]]:
        """One status newest first; without one, open first, then acknowledged, then the
        most recently resolved."""
        m = self.MARK
        if status is not None:
            return [problem_from_row(row) for row in self.rows(
                f"SELECT {PROBLEM_COLUMNS} FROM problems WHERE status = {m}"
                f" ORDER BY id DESC LIMIT {m}", (status, limit))]
        found: list[dict[str, Any]] = []
        for name, most in (("open", limit), ("acknowledged", limit),
                           ("resolved", resolved_limit)):
            found += self.list_problems(name, limit=most)
        return found

    def current_problems(self, kind: str) -> set[str]:
        """The subjects of ``kind`` with a problem not resolved yet."""
        return {row[0] for row in self.rows(
            f"SELECT subject FROM problems WHERE kind = {self.MARK} AND status <> 'resolved'",
            (kind,))}

    def open_problem_counts(self) -> dict[str, int]:
        """Problems open (not acknowledged, not resolved) by kind."""
        return {kind: int(number) for kind, number in self.rows(
            "SELECT kind, count(*) FROM problems WHERE status = 'open' GROUP BY kind")}

    def oldest_waiting_seconds(self) -> float:
        """How long the oldest work waiting to run has waited: a pending event since it was
        received, a scheduled attempt since it fell due. 0 when nothing waits."""
        m = self.MARK
        now = time.time()
        due = self.rows(f"SELECT min(due_at) FROM handler_retries WHERE due_at <= {m}",
                        (now,))[0][0]
        pending = self.rows("SELECT min(received_at) FROM events"
                            " WHERE dispatch_status = 'pending'")[0][0]
        waited = [now - float(due)] if due is not None else []
        if pending is not None:
            received = dt.datetime.fromisoformat(str(pending).replace("Z", "+00:00"))
            waited.append(now - received.timestamp())
        return max([0.0, *waited])

    # -- the outbox -----------------------------------------------------------------------

    @abc.abstractmethod
    def claim_alerts(self, owner: str, *, lease_seconds: float,
                     limit: int = 10) -> list[dict[str, Any]]:
        """Lease alerts that are due to ``owner``: ``id``, ``state``, ``channel``,
        ``attempts`` and the ``problem`` record."""

    def alert_sent(self, alert_id: int) -> None:
        m = self.MARK
        with self._run_write() as conn:
            conn.execute(f"UPDATE alert_outbox SET sent_at = {m}, lease_owner = NULL,"
                         f" lease_expires = NULL, attempts = attempts + 1 WHERE id = {m}",
                         (utc_now_iso(), alert_id))

    def alert_failed(self, alert_id: int, error: str, wait: float) -> None:
        """The target did not take it: try again in ``wait`` seconds."""
        m = self.MARK
        with self._run_write() as conn:
            conn.execute(f"UPDATE alert_outbox SET due_at = {m}, last_error = {m},"
                         " lease_owner = NULL, lease_expires = NULL, attempts = attempts + 1"
                         f" WHERE id = {m}", (time.time() + wait, error[:500], alert_id))

    def alerts_of(self, problem_id: int) -> list[dict[str, Any]]:
        """The alerts of a problem: ``state``, ``channel``, ``attempts``, ``sent_at``,
        ``last_error``."""
        fields = ("state", "channel", "attempts", "sent_at", "last_error")
        return [dict(zip(fields, row, strict=True)) for row in self.rows(
            f"SELECT {', '.join(fields)} FROM alert_outbox WHERE problem_id = {self.MARK}"
            " ORDER BY id", (problem_id,))]
