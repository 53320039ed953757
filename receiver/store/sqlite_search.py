"""Full-text search for the SQLite backend: an FTS5 index filled in the background, and the
newest events it has not reached yet scanned at search time.

Ingest never touches the index (each b-tree a commit writes costs). The background upkeep
calls ``SearchIndex.index`` over and over: each call indexes a few hundred events past a
watermark (``search_state.indexed_upto``) in one short transaction, then does a bounded step
of merging the index's segments in another. FTS5's own automatic merging is switched off
(migration 2) because it merges whole levels inside whichever transaction fills one, which
held the write lock for up to 0.6 s at a million events.

A search never waits for that work. It reads the index for ids up to the watermark, and
indexes the newest ``RECENT_SCAN`` events past it into a small FTS5 table of its own
connection (``temp.search_recent``, same columns and tokenizer, so a match means the same;
kept between searches and brought up to date incrementally). Events between the two are
not searchable yet; ``not_yet_searchable`` counts them so answers can say so.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import sqlite_utils

from .base import EXACT_COUNT_UP_TO

#: The indexed columns, in the order of the ``events_fts`` table.
FTS_COLUMNS = "event_type, vendor_event, source, subject_id, account, actor, external_id, data"
#: How many of the newest not yet indexed events a search scans itself.
RECENT_SCAN = 5000
#: Rows per indexing transaction (~5 ms here) and index pages per merge step.
INDEX_BATCH = 500
MERGE_PAGES = 100
#: The part of a database size cap that indexing leaves free.
CAP_RESERVE = 0.1


@dataclass(frozen=True)
class Scope:
    """What one search sees: the index up to ``indexed_upto``, the recent table for ids in
    (``recent_after``, ``newest``]; ids between the two are not searchable yet."""

    indexed_upto: int
    recent_after: int
    newest: int

    @property
    def has_recent(self) -> bool:
        return self.newest > self.recent_after


class IndexedStore(Protocol):
    """What the search needs of ``SQLiteStore``: this thread's connection (and its
    ``sqlite_utils`` wrapper, which quotes FTS queries), its write transaction, and the size
    cap."""

    max_size: int | None

    @property
    def conn(self) -> sqlite3.Connection: ...

    @property
    def db(self) -> sqlite_utils.Database: ...

    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...


class SearchIndex:
    """The search side of one ``SQLiteStore`` (its connections and write transactions)."""

    def __init__(self, store: IndexedStore) -> None:
        self._store = store
        self._local = threading.local()
        self._merging = False

    def _connection(self) -> sqlite3.Connection:
        return self._store.conn

    def fts_query(self, q: str) -> str | None:
        """The user's words as an FTS5 query (each word quoted: no operators); None when
        nothing in it can match (only quotes or punctuation). NUL becomes a space: FTS5
        reads its query as a C string and fails on one."""
        query = self._store.db.quote_fts(q.replace("\x00", " "))
        return query if any(char.isalnum() for char in query) else None

    # -- the background side ----------------------------------------------------------

    def index(self, limit: int = INDEX_BATCH, *, min_backlog: int = 0) -> int:
        """Index the next ``limit`` events past the watermark in one transaction, then merge
        a bounded number of index pages in another; returns how many events (0: caught up,
        or fewer than ``min_backlog`` ids past the watermark)."""
        conn = self._connection()
        if not self._room_to_grow(conn):
            return 0
        upto = self._indexed_upto(conn)
        newest = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        indexed = 0
        if newest - upto >= max(min_backlog, 1):
            with self._store.write() as conn:
                upto = self._indexed_upto(conn)
                rows = conn.execute(
                    f"INSERT INTO events_fts (rowid, {FTS_COLUMNS}) SELECT id, {FTS_COLUMNS}"
                    " FROM events WHERE id > ? ORDER BY id LIMIT ? RETURNING rowid",
                    (upto, limit)).fetchall()
                indexed = len(rows)
                top = max((row[0] for row in rows), default=upto)
                conn.execute("UPDATE search_state SET indexed_upto = ? WHERE id = 1", (top,))
        if indexed or self._merging:
            with self._store.write() as conn:
                self.merge_step(conn)
        return indexed

    def merge_step(self, conn: sqlite3.Connection) -> None:
        """Merge up to ``MERGE_PAGES`` pages of the index's segments, in the caller's write
        transaction. Each transaction that adds or deletes rows adds a segment; steps like
        this keep the levels short, so FTS5 never has to merge a whole level at once (a
        "crisis merge", 0.2-0.4 s inside one purge batch at a million events)."""
        before = conn.total_changes
        conn.execute("INSERT INTO events_fts (events_fts, rank) VALUES ('merge', ?)",
                     (MERGE_PAGES,))
        # One change is the command itself; more means it merged, and may go on.
        self._merging = conn.total_changes - before > 1

    def _room_to_grow(self, conn: sqlite3.Connection) -> bool:
        """Under a size cap (``MAX_DATABASE_SIZE``) the last ``CAP_RESERVE`` of it is left to
        deliveries: the index filling it would bring on the 503s early."""
        if not self._store.max_size:
            return True
        cap = conn.execute("PRAGMA max_page_count").fetchone()[0]
        used = (conn.execute("PRAGMA page_count").fetchone()[0]
                - conn.execute("PRAGMA freelist_count").fetchone()[0])
        return bool(cap - used > cap * CAP_RESERVE)

    # -- the search side --------------------------------------------------------------

    def scope(self) -> Scope:
        """The ids a search on this connection sees now; brings its recent table up to
        date (only the events that arrived or were indexed since its last search)."""
        conn = self._connection()
        scope = self._scope(conn)
        known: tuple[sqlite3.Connection, int, int] | None = getattr(self._local, "recent", None)
        if known is None or known[0] is not conn:
            if not scope.has_recent:
                return scope
            conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_recent USING fts5"
                         f" ({FTS_COLUMNS})")
            known = (conn, 0, 0)
            conn.execute("DELETE FROM temp.search_recent")
        _, low, high = known
        if (low, high) == (scope.recent_after, scope.newest):
            return scope
        if high > scope.newest or low > scope.recent_after:  # rows deleted at the top
            conn.execute("DELETE FROM temp.search_recent")
            low = high = scope.recent_after
        if low < scope.recent_after:
            conn.execute("DELETE FROM temp.search_recent WHERE rowid <= ?",
                         (scope.recent_after,))
        conn.execute(f"INSERT INTO temp.search_recent (rowid, {FTS_COLUMNS}) SELECT id,"
                     f" {FTS_COLUMNS} FROM events WHERE id > ? AND id <= ?",
                     (max(high, scope.recent_after), scope.newest))
        conn.commit()  # the statements above opened a transaction (on temp tables only)
        self._local.recent = (conn, scope.recent_after, scope.newest)
        return scope

    def not_yet_searchable(self) -> int:
        """Events past the watermark and older than the newest ``RECENT_SCAN`` of them:
        counted up to ``EXACT_COUNT_UP_TO``; beyond, the span of their ids (ids only grow,
        so it is an upper bound that a purge in the span alone makes loose). Counting a
        million rows read every page of them: 0.8 s, on every search."""
        conn = self._connection()
        scope = self._scope(conn)
        span = scope.recent_after - scope.indexed_upto
        if span <= 0:
            return 0
        if span > EXACT_COUNT_UP_TO:
            return span
        return int(conn.execute("SELECT count(*) FROM events WHERE id > ? AND id <= ?",
                                (scope.indexed_upto, scope.recent_after)).fetchone()[0])

    def page_ids(self, query: str, scope: Scope, *, limit: int,
                 below: int | None = None) -> list[int]:
        """Ids of matching events below ``below``, newest first: the recent table's, then
        the index's (every recent id is above every indexed one)."""
        conn = self._connection()
        ids: list[int] = []
        bound = " AND rowid < ?" if below is not None else ""
        extra: list[Any] = [below] if below is not None else []
        if scope.has_recent:
            ids = [row[0] for row in conn.execute(
                "SELECT rowid FROM temp.search_recent WHERE search_recent MATCH ?"
                f"{bound} ORDER BY rowid DESC LIMIT ?", [query, *extra, limit])]
        if len(ids) < limit:
            ids += [row[0] for row in conn.execute(
                "SELECT rowid FROM events_fts WHERE events_fts MATCH ? AND rowid <= ?"
                f"{bound} ORDER BY rowid DESC LIMIT ?",
                [query, scope.indexed_upto, *extra, limit - len(ids)])]
        return ids

    def match_condition(self, query: str, scope: Scope) -> tuple[str, list[Any]]:
        """A WHERE term on ``events`` (``id IN ...``) for the events matching ``query``."""
        sql = "id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ? AND rowid <= ?"
        params: list[Any] = [query, scope.indexed_upto]
        if scope.has_recent:
            sql += " UNION ALL SELECT rowid FROM temp.search_recent WHERE search_recent MATCH ?"
            params.append(query)
        return sql + ")", params

    def _scope(self, conn: sqlite3.Connection) -> Scope:
        upto = self._indexed_upto(conn)
        newest = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        if newest <= upto:
            return Scope(upto, newest, newest)
        row = conn.execute("SELECT id FROM events WHERE id > ? ORDER BY id DESC LIMIT 1"
                           " OFFSET ?", (upto, RECENT_SCAN)).fetchone()
        return Scope(upto, row[0] if row else upto, newest)

    @staticmethod
    def _indexed_upto(conn: sqlite3.Connection) -> int:
        return int(conn.execute(
            "SELECT indexed_upto FROM search_state WHERE id = 1").fetchone()[0])
