"""The SQLite backend (the embedded default): migrations, the ingest write, reads, search,
runs, purge.

One ``SQLiteStore`` per app owns a connection per thread. Writes are short ``BEGIN IMMEDIATE``
transactions; the ingest write is two statements (an upsert of the event that tells a
duplicate apart by its ``RETURNING`` count, and the delivery row). Full-text search is indexed
in the background from a watermark, so indexing never sits on the ingest path
(``sqlite_search``).
"""

from __future__ import annotations

import base64
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlite_utils

from ..errors import StorageUnavailable
from ..events import Delivery, Event, NormalizedEvent, utc_now_iso
from .activity_queries import SCHEMA as ACTIVITY_SCHEMA
from .activity_queries import ActivityQueries, ExecuteMany, Fetch
from .base import (
    BOOLEAN_COLUMNS,
    COPY_COLUMNS,
    DELIVERY_OUTCOME_INDEXES,
    EXPORT_BATCH,
    EXPORT_WINDOW,
    EventFilters,
    RawEvent,
    Saved,
    Store,
    delivery_values,
    event_from_row,
    event_values,
    login_nonce_cutoff,
    storable_text,
    storable_values,
)
from .problem_queries import PROBLEM_COLUMNS, PROBLEM_SCHEMA, ProblemQueries, problem_from_row
from .reconcile_queries import RECONCILE_SCHEMA, ReconcileQueries
from .row_queries import (
    EVENT_COLUMNS,
    RowReads,
    export_start,
    export_windows,
    keyset_page,
    keyset_query,
    purge_refused,
)
from .run_queries import RETRY_SCHEMA, DueAttempt, RunQueries
from .session_queries import SESSION_SCHEMA, SessionQueries
from .sqlite_search import FTS_COLUMNS, INDEX_BATCH, Scope, SearchIndex
from .where import event_filter_terms

migrations = sqlite_utils.Migrations("receiver")

BUSY_TIMEOUT_MS = 5000
PAGE_SIZE = 2048
SCAN_WINDOW = 20_000  # ids scanned in order before a filtered page falls back to an index
AUTOCHECKPOINT_PAGES = 16384  # 32 MiB of WAL
#: How long a purge leaves the write lock free between its batches.
PURGE_PAUSE_SECONDS = 0.005


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            event_type TEXT NOT NULL,
            vendor_event TEXT,
            external_id TEXT NOT NULL,
            occurred_at TEXT,
            received_at TEXT NOT NULL,
            account TEXT,
            actor TEXT,
            subject_type TEXT,
            subject_id TEXT,
            endpoint TEXT NOT NULL,
            signature_status TEXT NOT NULL,
            data TEXT NOT NULL,
            delivery_count INTEGER NOT NULL DEFAULT 1,
            dispatch_status TEXT NOT NULL DEFAULT 'pending',
            lease_owner TEXT,
            lease_expires REAL,
            UNIQUE (source, external_id)
        );
        CREATE INDEX events_subject ON events (subject_id);
        CREATE INDEX events_type ON events (event_type);
        CREATE INDEX events_pending ON events (id) WHERE dispatch_status = 'pending';

        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            received_at TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            query TEXT NOT NULL DEFAULT '',
            remote_addr TEXT,
            headers TEXT NOT NULL,
            body BLOB,
            body_size INTEGER NOT NULL,
            content_type TEXT,
            source TEXT,
            status_code INTEGER NOT NULL,
            error TEXT,
            event_id INTEGER REFERENCES events (id),
            duplicate INTEGER NOT NULL DEFAULT 0,
            signature_status TEXT,
            signature_reason TEXT
        );
        CREATE INDEX deliveries_event ON deliveries (event_id);

        CREATE TABLE handler_runs (
            id INTEGER PRIMARY KEY,
            event_id INTEGER NOT NULL REFERENCES events (id),
            handler TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            traceback TEXT,
            started_at TEXT NOT NULL,
            duration_ms REAL NOT NULL,
            trigger TEXT NOT NULL
        );
        CREATE INDEX handler_runs_event ON handler_runs (event_id);

        CREATE VIRTUAL TABLE events_fts USING fts5 (
            event_type, vendor_event, source, subject_id, account, actor, external_id, data,
            content = 'events', content_rowid = 'id'
        );
        CREATE TABLE search_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            indexed_upto INTEGER NOT NULL
        );
        INSERT INTO search_state (id, indexed_upto) VALUES (1, 0);
        """
    )


@migrations()
def m002_login_links(db: sqlite_utils.Database) -> None:
    """Used one-time sign-in links (``Store.use_login_nonce``)."""
    db.executescript(
        """
        CREATE TABLE login_links (
            nonce TEXT PRIMARY KEY,
            used_at TEXT NOT NULL
        );
        """
    )


@migrations()
def m003_search_merges_in_the_background(db: sqlite_utils.Database) -> None:
    # FTS5 would merge index segments inside whichever indexing transaction fills a level
    # (up to 0.6 s holding the write lock at 1M events); SearchIndex.index merges in steps.
    db.execute("INSERT INTO events_fts (events_fts, rank) VALUES ('automerge', 0)")


@migrations()
def m004_activity(db: sqlite_utils.Database) -> None:
    """Rollups of deliveries and handler runs for the activity chart, metrics and handler
    health (``activity_queries``), filled from the existing rows by the upkeep."""
    db.executescript(ACTIVITY_SCHEMA)


@migrations()
def m005_handler_retries(db: sqlite_utils.Database) -> None:
    """Scheduled attempts of failed handlers, the attempt of each run, ``next_attempt_at``
    (``run_queries``). Events that failed before stay ``failed``: nothing is scheduled."""
    db.executescript(RETRY_SCHEMA.format(id="INTEGER PRIMARY KEY"))


@migrations()
def m006_problems(db: sqlite_utils.Database) -> None:
    """Problems a person is told about, and the outbox of their alerts
    (``problem_queries``)."""
    db.executescript(PROBLEM_SCHEMA.format(id="INTEGER PRIMARY KEY"))


@migrations()
def m007_reconcile_runs(db: sqlite_utils.Database) -> None:
    """Runs of reconcile against the vendors' event logs (``reconcile_queries``)."""
    db.executescript(RECONCILE_SCHEMA.format(id="INTEGER PRIMARY KEY"))


@migrations()
def m008_inspector_sessions(db: sqlite_utils.Database) -> None:
    """One row per inspector sign-in, deleted by signing out (``session_queries``)."""
    db.executescript(SESSION_SCHEMA)


@migrations()
def m009_delivery_outcomes(db: sqlite_utils.Database) -> None:
    """Partial indexes for the refused and duplicate deliveries (``outcome``, ``rejected``):
    a page of them no longer scans every delivery when they are few."""
    db.executescript(DELIVERY_OUTCOME_INDEXES)


_INSERT_EVENT = """
INSERT INTO events (source, event_type, vendor_event, external_id, occurred_at, received_at,
                    account, actor, subject_type, subject_id, endpoint, signature_status, data,
                    dispatch_status, lease_owner, lease_expires)
VALUES (:source, :event_type, :vendor_event, :external_id, :occurred_at, :received_at,
        :account, :actor, :subject_type, :subject_id, :endpoint, :signature_status, :data,
        :dispatch_status, :lease_owner, :lease_expires)
ON CONFLICT (source, external_id) DO UPDATE SET delivery_count = delivery_count + 1
RETURNING id, delivery_count, event_type
"""

_INSERT_DELIVERY = """
INSERT INTO deliveries (received_at, endpoint, method, path, query, remote_addr, headers, body,
                        body_size, content_type, source, status_code, error, event_id,
                        duplicate, signature_status, signature_reason)
VALUES (:received_at, :endpoint, :method, :path, :query, :remote_addr, :headers, :body,
        :body_size, :content_type, :source, :status_code, :error, :event_id, :duplicate,
        :signature_status, :signature_reason)
"""


class SQLiteStore(ActivityQueries, RowReads, RunQueries, ProblemQueries, ReconcileQueries,
                  SessionQueries, Store):
    """Owns the database file: one connection per thread, migrations at open."""

    MARK = "?"
    DUE_TEXT = "strftime('%Y-%m-%dT%H:%M:%fZ', {}, 'unixepoch')"

    def __init__(self, path: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 max_size: int | None = None) -> None:
        self.path = self.database = path
        self.busy_timeout_ms = busy_timeout_ms
        self.max_size = max_size
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = WriteLock(os.path.abspath(path) + ".lock")
        self._search = SearchIndex(self)
        self._upkeep: dict[str, tuple[int, int]] = {}  # job -> (pid, descriptor) held

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self._create_private()
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        if self.max_size:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(self.max_size // page_size, 16)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints run in the background (``checkpoint``); this is only the safety net.
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        conn.execute("PRAGMA foreign_keys = OFF")
        with self._lock:
            self._connections.append(conn)
        return conn

    def _create_private(self) -> None:
        """A new database file is made readable by its owner only (0600), as its ``.secret``
        is: SQLite would make it world-readable under the usual umask, and it gives the
        ``-wal`` and ``-shm`` files the mode of the database file."""
        if self.path == ":memory:" or self.path.startswith("file:") or os.path.exists(
                self.path):
            return
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError:
            pass  # no directory yet, or not ours to make: SQLite says why when it opens it

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite_utils.Database(self.conn, execute_plugins=False)
        return db

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to call from several processes at once (the
        writers' file lock serializes them)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        conn = self.conn
        with self._writer:
            # Small pages: a commit writes every page it touches to the WAL, and an ingest
            # touches six b-trees; 2 KiB pages measured 25% faster than 4 KiB here. Only takes
            # effect on a new file, before WAL is switched on.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            migrations.apply(self.db)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._connections.clear()
        self._local = threading.local()
        for pid, descriptor in self._upkeep.values():
            if pid == os.getpid():
                os.close(descriptor)  # lets another process take the job over
        self._upkeep.clear()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction. A database that cannot take it raises 503.

        Writers queue on a process lock and an OS file lock first, so the next writer wakes
        the moment the last one commits instead of sleeping in SQLite's busy handler.
        """
        try:
            self._writer.__enter__()
        except OSError as error:
            raise StorageUnavailable(f"the database cannot take the write now: {error}") from error
        try:
            with self._transaction() as conn:
                yield conn
        finally:
            self._writer.__exit__()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite may already have rolled back (SQLITE_FULL)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageUnavailable(f"the database cannot take the write now: {error}") from error
        except sqlite3.DatabaseError as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageUnavailable(f"the database cannot take the write now: {error}") from error

    # -- ingest ------------------------------------------------------------------------

    def save_event(
        self,
        delivery: Delivery,
        event: NormalizedEvent,
        signature_status: str,
        signature_reason: str | None = None,
        *,
        dispatch_to: str | None = None,
        lease_seconds: float = 45.0,
    ) -> Saved:
        """Store the delivery and its event in one transaction; a known event counts up.

        ``dispatch_to`` names the dispatcher that will run the event's handlers: the event is
        stored ``pending`` and leased to it in the same transaction, so no second write is
        needed to claim it, and another worker takes it over if the lease runs out. Without
        handlers to run (None) the event is stored ``done``.
        """
        event_params = event_values(event)
        event_params["dispatch_status"] = "pending" if dispatch_to else "done"
        event_params["lease_owner"] = dispatch_to
        event_params["lease_expires"] = time.time() + lease_seconds if dispatch_to else None
        event_params["received_at"] = delivery.received_at
        event_params["endpoint"] = storable_text(delivery.endpoint)
        event_params["signature_status"] = signature_status
        params = delivery_values(delivery)
        params.update(source=event.source, status_code=200, error=None,
                      signature_status=signature_status, signature_reason=signature_reason)
        with self.write() as conn:
            event_id, count, event_type = conn.execute(_INSERT_EVENT, event_params).fetchone()
            params.update(event_id=event_id, duplicate=count > 1)
            delivery_id = conn.execute(_INSERT_DELIVERY, params).lastrowid
        assert delivery_id is not None
        return Saved(delivery_id, event_id, event_type, count > 1)

    def save_rejected(
        self,
        delivery: Delivery,
        *,
        status_code: int,
        error: str,
        source: str | None = None,
        signature_status: str | None = None,
        signature_reason: str | None = None,
        keep_body: bool = True,
    ) -> int:
        """Store a refused request with our answer and the reason; returns the delivery id."""
        params = delivery_values(delivery)
        if not keep_body:
            params["body"] = None
        params.update(storable_values(dict(
            source=source, status_code=status_code, error=error, event_id=None,
            duplicate=False, signature_status=signature_status,
            signature_reason=signature_reason)))
        with self.write() as conn:
            delivery_id = conn.execute(_INSERT_DELIVERY, params).lastrowid
        assert delivery_id is not None
        return delivery_id

    # -- events ------------------------------------------------------------------------

    def list_events(
        self, filters: EventFilters, *, limit: int = 50, cursor: int | None = None
    ) -> tuple[list[Event], str | None]:
        """Newest first, keyset-paged on id (never OFFSET).

        A filter SQLite would serve from an index whose order is not the id's (a ``license.*``
        range, ``source`` through the unique index) makes it read and sort every match: 175 to
        400 ms at a million events. So the newest ``SCAN_WINDOW`` ids are first scanned in id
        order with the index ignored, which fills the page when the filter is common; only
        what the window did not fill comes from the index, and that is cheap exactly when
        the filter is rare. A subject or a search is selective and goes to its index at once.
        """
        if filters.q and filters == EventFilters(q=filters.q):
            return self._search_page(filters.q, limit=limit, cursor=cursor)
        rows: list[Any] = []
        top = cursor
        if filters.subject_id is None and not filters.q and filters.narrows():
            top = cursor if cursor is not None else self.newest_event_id() + 1
            floor = max(top - SCAN_WINDOW, 0)
            rows = self._select_events(filters, limit + 1, below=top, floor=floor,
                                       by_id=True)
            top = floor
        if len(rows) <= limit and (top is None or top > 0):
            rows += self._select_events(filters, limit + 1 - len(rows), below=top)
        return keyset_page(rows, limit, event_from_row)

    def _search_page(self, q: str, *, limit: int, cursor: int | None) -> tuple[
            list[Event], str | None]:
        """A search alone: the page is cut inside the full-text index (newest rowids first),
        so a common word does not fetch every matching event (6.7 -> 0.2 ms at 1M)."""
        query = self._search.fts_query(q)
        if query is None:
            return [], None
        ids = self._search.page_ids(query, self._search.scope(), limit=limit + 1, below=cursor)
        events = [event_from_row(row) for row in self._events_by_id(ids[:limit])]
        next_cursor = str(events[-1].id) if len(ids) > limit and events else None
        return events, next_cursor

    def _events_by_id(self, ids: Sequence[int]) -> list[Any]:
        """The rows of these events, newest first (the ones purged meanwhile left out)."""
        marks = ",".join("?" * len(ids)) or "NULL"
        return self.conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN ({marks}) ORDER BY id DESC",
            list(ids)).fetchall()

    def event_batches(self, filters: EventFilters, *, cursor: int | None = None,
                      batch: int = EXPORT_BATCH) -> Iterator[list[RawEvent]]:
        """Every matching event below ``cursor``, newest first, with ``data`` as stored.

        A search reads one scope for the whole export (what was searchable when it started).
        Common filters walk the ids in windows of ``EXPORT_WINDOW`` with the indexes ignored,
        so no batch sorts the matches (see ``list_events``), and a rare filter costs one
        pass over the table; a subject or a search goes through its index.
        """
        scope = self._search.scope() if filters.q else None
        query = self._search.fts_query(filters.q) if filters.q else None
        if filters.q and query is None:
            return
        if query is not None and scope is not None and filters == EventFilters(q=filters.q):
            while True:
                ids = self._search.page_ids(query, scope, limit=batch, below=cursor)
                yield self._events_by_id(ids)
                if len(ids) < batch:
                    return
                cursor = ids[-1]
        by_window = filters.subject_id is None and not filters.q and filters.narrows()
        lowest = self.conn.execute("SELECT coalesce(min(id), 0) FROM events").fetchone()[0]
        if by_window:
            cursor = export_start(cursor, self.newest_event_id())
        yield from export_windows(
            lambda below, floor: self._select_events(filters, batch, below=below, floor=floor,
                                                     by_id=by_window, scope=scope),
            top=cursor, lowest=lowest, by_window=by_window, window=EXPORT_WINDOW, batch=batch)

    def _select_events(self, filters: EventFilters, limit: int, *, below: int | None,
                       floor: int | None = None, by_id: bool = False,
                       scope: Scope | None = None) -> list[Any]:
        where, params = self._event_where(filters, unindexed=by_id, scope=scope)
        sql, values = keyset_query(EVENT_COLUMNS, "events", where, params, mark="?",
                                   limit=limit, below=below, floor=floor)
        return self.rows(sql, values)

    def _event_where(self, filters: EventFilters, *, unindexed: bool = False,
                     scope: Scope | None = None) -> tuple[list[str], list[Any]]:
        """WHERE terms for the filters; ``unindexed`` writes them as ``+column`` so SQLite
        walks the ids in order instead of an index. A search sees ``scope`` (default: what
        is searchable now)."""
        where, params = event_filter_terms(filters, prefix="+" if unindexed else "")
        if filters.q:
            query = self._search.fts_query(filters.q)
            if query is None:
                where.append("0")  # nothing searchable (only quotes or punctuation)
            else:
                match, values = self._search.match_condition(
                    query, scope or self._search.scope())
                where.append(match)
                params.extend(values)
        return where, params

    def event_counts(self) -> dict[str, int]:
        count_events = self.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        count_deliveries = self.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        return {"events": count_events, "deliveries": count_deliveries}

    # -- search index ------------------------------------------------------------------

    def index_search(self, limit: int = INDEX_BATCH, *, min_backlog: int = 0) -> int:
        """Index the next ``limit`` events past the watermark (one short transaction) and
        merge index segments a bounded step; returns how many events were indexed."""
        return self._search.index(limit, min_backlog=min_backlog)

    def not_yet_searchable(self) -> int:
        return self._search.not_yet_searchable()

    # -- retention ---------------------------------------------------------------------

    def purge(self, before: str, *, event_type: str | None = None, batch: int = 500) -> dict[
            str, int]:
        """Delete events first received before ``before`` (ISO time) with their deliveries,
        handler runs and search entries, and refused deliveries of that age (unless
        ``event_type`` narrows it: exact or ``prefix.*``). Works in short batches so ingest
        keeps going; freed pages are reused by later writes without a VACUUM."""
        with self._purging():
            return self._purge_batches(before, event_type, batch)

    def _purge_batches(self, before: str, event_type: str | None, batch: int
                       ) -> dict[str, int]:
        counts = {"events": 0, "deliveries": 0, "handler_runs": 0}
        where, params = ["received_at < ?"], [before]
        if event_type:
            type_where, type_params = self._event_where(EventFilters(event_type=event_type))
            where += type_where
            params += type_params
        select = f"SELECT id FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT {batch}"
        while True:
            self._between_purge_batches()
            with self.write() as conn:
                ids = [row[0] for row in conn.execute(select, params)]
                if not ids:
                    break
                marks = ",".join("?" * len(ids))
                upto = conn.execute(
                    "SELECT indexed_upto FROM search_state WHERE id = 1").fetchone()[0]
                conn.execute(
                    f"INSERT INTO events_fts (events_fts, rowid, {FTS_COLUMNS}) SELECT 'delete',"
                    f" id, {FTS_COLUMNS} FROM events WHERE id IN ({marks}) AND id <= ?",
                    [*ids, upto])
                conn.execute(f"DELETE FROM handler_retries WHERE event_id IN ({marks})", ids)
                counts["handler_runs"] += conn.execute(
                    f"DELETE FROM handler_runs WHERE event_id IN ({marks})", ids).rowcount
                counts["deliveries"] += conn.execute(
                    f"DELETE FROM deliveries WHERE event_id IN ({marks})", ids).rowcount
                counts["events"] += conn.execute(
                    f"DELETE FROM events WHERE id IN ({marks})", ids).rowcount
            self._between_purge_batches()
            with self.write() as conn:
                self._search.merge_step(conn)
        if event_type is None:
            counts["deliveries"] += purge_refused(self._purge_step, before, mark="?",
                                                  batch=batch)
        return counts

    def _purge_step(self, sql: str, params: Sequence[Any]) -> int:
        """One purge statement in a write of its own, after the pause between batches."""
        self._between_purge_batches()
        with self.write() as conn:
            return conn.execute(sql, params).rowcount

    @contextmanager
    def _purging(self) -> Iterator[None]:
        """No checkpoint in a purge's commits: ``_between_purge_batches`` does them."""
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")

    def _between_purge_batches(self) -> None:
        """Outside the write lock: copy the last batch's pages back from the WAL, then leave
        the lock free for a moment.

        A purge writes the WAL fast, so with checkpoints left to commits one purge commit
        in twenty also copied back 32 MiB, holding the lock 80-480 ms instead of ~6 ms; a
        PASSIVE checkpoint needs no write lock, so here it costs ingest nothing. And
        ``flock`` is not a queue: a process that lets go and asks again at once often wins
        over the ones only being woken, so the pause hands the lock to waiting writers.
        """
        self.checkpoint()
        time.sleep(PURGE_PAUSE_SECONDS)

    def checkpoint(self) -> None:
        """Copy the WAL back into the database off the request path (PASSIVE: never waits
        for readers or writers), so the WAL does not grow under constant writes."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def checkpoint_upkeep(self) -> None:
        """One process of the receiver checkpoints (the ``checkpoint`` job): every worker
        checkpointing the same WAL ten times a second cost 3-4 % of each worker's CPU and
        gave the others nothing (benchmarks/RESULTS.md)."""
        if self.claim_upkeep("checkpoint"):
            self.checkpoint()

    def claim_upkeep(self, job: str) -> bool:
        """Hold ``<database>.<job>.lock`` (``flock``, not waiting) for the rest of this
        process's life; the kernel lets it go when the process dies, and the next process
        to ask takes it over."""
        held = self._upkeep.get(job)
        if held is not None and held[0] == os.getpid():
            return True
        descriptor = os.open(f"{os.path.abspath(self.path)}.{job}.lock",
                             os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another process holds it
            os.close(descriptor)
            return False
        self._upkeep[job] = (os.getpid(), descriptor)
        return True

    # -- handler runs and dispatch -----------------------------------------------------

    def claim_pending(
        self, owner: str, *, lease_seconds: float, limit: int = 20, event_id: int | None = None
    ) -> list[Event]:
        """Lease pending events to ``owner``: each is claimed by exactly one worker at a time.

        A lease that ran out (its worker died mid-dispatch) may be claimed again.
        """
        now = time.time()
        sql = (
            "UPDATE events SET lease_owner = ?, lease_expires = ? WHERE id IN ("
            " SELECT id FROM events WHERE dispatch_status = 'pending'"
            " AND (lease_expires IS NULL OR lease_expires < ?)"
        )
        params: list[Any] = [owner, now + lease_seconds, now]
        if event_id is not None:
            sql += " AND id = ?"
            params.append(event_id)
        sql += f" ORDER BY id LIMIT {int(limit)}) RETURNING {EVENT_COLUMNS}"
        with self.write() as conn:
            rows = conn.execute(sql, params).fetchall()
        return sorted((event_from_row(row) for row in rows), key=lambda event: event.id)

    def renew_leases(self, owner: str, *, lease_seconds: float) -> int:
        """Push back the expiry of every pending event ``owner`` holds, queued or running,
        so a slow handler or a long queue never lets another worker take over a dispatch
        that is alive; returns how many."""
        expires = time.time() + lease_seconds
        with self.write() as conn:
            return conn.execute(
                "UPDATE events SET lease_expires = ? WHERE dispatch_status = 'pending'"
                " AND lease_owner = ?", (expires, owner)).rowcount + conn.execute(
                "UPDATE handler_retries SET lease_expires = ? WHERE lease_owner = ?",
                (expires, owner)).rowcount

    def _run_write(self) -> Any:
        return self.write()

    def claim_alerts(self, owner: str, *, lease_seconds: float,
                     limit: int = 10) -> list[dict[str, Any]]:
        now = time.time()
        if not self.conn.execute(
                "SELECT 1 FROM alert_outbox WHERE sent_at IS NULL AND due_at <= ? AND"
                " (lease_expires IS NULL OR lease_expires < ?) LIMIT 1", (now, now)).fetchone():
            return []
        with self.write() as conn:
            claimed = conn.execute(
                "UPDATE alert_outbox SET lease_owner = ?, lease_expires = ? WHERE id IN ("
                " SELECT id FROM alert_outbox WHERE sent_at IS NULL AND due_at <= ? AND"
                f" (lease_expires IS NULL OR lease_expires < ?) ORDER BY id LIMIT {int(limit)})"
                " RETURNING id, problem_id, state, channel, attempts",
                (owner, now + lease_seconds, now, now)).fetchall()
            alerts = []
            for alert_id, problem_id, state, channel, attempts in sorted(claimed):
                row = conn.execute(f"SELECT {PROBLEM_COLUMNS} FROM problems WHERE id = ?",
                                   (problem_id,)).fetchone()
                alerts.append({"id": alert_id, "state": state, "channel": channel,
                               "attempts": attempts, "problem": problem_from_row(row)})
        return alerts

    def claim_due_attempts(self, owner: str, *, lease_seconds: float,
                           limit: int = 20) -> list[DueAttempt]:
        now = time.time()
        # A read first: nothing due (the usual case) takes no write lock.
        if not self.conn.execute(
                "SELECT 1 FROM handler_retries WHERE due_at <= ? AND (lease_expires IS NULL"
                " OR lease_expires < ?) LIMIT 1", (now, now)).fetchone():
            return []
        with self.write() as conn:
            claimed = conn.execute(
                "UPDATE handler_retries SET lease_owner = ?, lease_expires = ? WHERE id IN ("
                " SELECT id FROM handler_retries WHERE due_at <= ? AND (lease_expires IS NULL"
                f" OR lease_expires < ?) ORDER BY due_at LIMIT {int(limit)})"
                " RETURNING event_id, handler, attempt, due_at",
                (owner, now + lease_seconds, now, now)).fetchall()
            if not claimed:
                return []
            ids = sorted({row[0] for row in claimed})
            events = {row[0]: event_from_row(row) for row in conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN ({','.join('?' * len(ids))})",
                ids).fetchall()}
        return [DueAttempt(events[event_id], handler, attempt)
                for event_id, handler, attempt, _ in sorted(claimed, key=lambda row: row[3])
                if event_id in events]

    def use_login_nonce(self, nonce: str) -> bool:
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO login_links (nonce, used_at) VALUES (?, ?)"
                " ON CONFLICT (nonce) DO NOTHING", (nonce, utc_now_iso()))
            conn.execute("DELETE FROM login_links WHERE used_at < ?", (login_nonce_cutoff(),))
            return cursor.rowcount == 1

    # -- copy ----------------------------------------------------------------------------

    def insert_copied(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert rows another store gave, ids kept (``INSERT OR IGNORE`` skips what is here).
        Events below the search watermark are indexed at once; the rest on catch-up."""
        columns = COPY_COLUMNS[table]
        insert = (f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES"
                  f" ({', '.join('?' * len(columns))}) RETURNING id")
        inserted: list[int] = []
        with self.write() as conn:
            for row in map(storable_values, rows):
                values = [int(row[column]) if column in BOOLEAN_COLUMNS else row[column]
                          for column in columns]
                inserted += [found[0] for found in conn.execute(insert, values).fetchall()]
            if table == "events" and inserted:
                upto = conn.execute(
                    "SELECT indexed_upto FROM search_state WHERE id = 1").fetchone()[0]
                below = [event_id for event_id in inserted if event_id <= upto]
                if below:
                    conn.execute(
                        "INSERT INTO events_fts (rowid, event_type, vendor_event, source,"
                        " subject_id, account, actor, external_id, data) SELECT id, event_type,"
                        " vendor_event, source, subject_id, account, actor, external_id, data"
                        f" FROM events WHERE id IN ({','.join('?' * len(below))})", below)
        return len(inserted)

    def table_counts(self) -> dict[str, int]:
        return {table: int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in COPY_COLUMNS}

    def secret_key(self) -> str:
        """The key kept beside the database, made once (first process wins the race)."""
        path = os.path.abspath(self.path) + ".secret"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):
                with open(path) as handle:
                    key = handle.read().strip()
                if key:
                    return key
                time.sleep(0.02)
            raise
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key

    # -- reads (the queries are in row_queries.py and activity_queries.py) -------------

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    @contextmanager
    def _snapshot(self) -> Iterator[Fetch]:
        """A read transaction: WAL readers see one commit throughout."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield lambda sql, params: conn.execute(sql, params).fetchall()
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[tuple[Fetch, ExecuteMany]]:
        with self.write() as conn:
            def execute(sql: str, rows: Sequence[Sequence[Any]]) -> None:
                conn.executemany(sql, rows)

            yield (lambda sql, params: conn.execute(sql, params).fetchall()), execute

    def _claim_watermark(self, fetch: Fetch, name: str) -> int | None:
        # The writers' lock is held: no other process rolls up now.
        return int(fetch("SELECT upto FROM rollup_state WHERE name = ?", (name,))[0][0])

    def _roll_bound(self, fetch: Fetch, table: str, upto: int, limit: int) -> int:
        # Ids are handed out and committed under the writers' lock, in order: none can
        # appear below the newest one.
        row = fetch(f"SELECT max(id) FROM (SELECT id FROM {table} WHERE id > ? ORDER BY id"
                    " LIMIT ?)", (upto, limit))
        return int(row[0][0] or upto)


class WriteLock:
    """The lock every write transaction takes first: a lock between this process's threads,
    then ``flock`` on a file beside the database between processes (re-opened after a fork).

    SQLite lets one writer in at a time and makes the others sleep and retry in its busy
    handler, so a writer may wake long after the lock was free; waiting here instead, the
    next writer wakes the moment the last one commits.
    """

    def __init__(self, path: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 max_size: int | None = None) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.max_size = max_size
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


