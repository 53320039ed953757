"""Full-text search for the PostgreSQL backend: a GIN index filled in the background from a
queue, and the newest queued events matched at search time.

The ingest statement queues each new event's id (``search_queue``, committed with the event;
ids commit out of order, so no watermark would do). The background upkeep calls
``PostgresSearch.index`` over and over: each call takes a few hundred queued ids (``FOR
UPDATE SKIP LOCKED``: indexers never wait on one another) and writes their search vectors
(``event_search``, under a GIN index) in one short transaction.

A search never waits for that work and writes nothing. It asks the GIN index, and matches the
newest ``RECENT_SCAN`` queued events itself, in this process, from their words kept in memory
between searches (at most ``RECENT_BYTES`` of them). Queued events beyond those are not
searchable yet; ``not_yet_searchable`` counts them.

Words are cut here, in Python, for the index and for the query alike, the way SQLite's FTS5
(``unicode61``) cuts them: runs of letters and digits, lower case, Latin letters without
their accent; each field on its own (no phrase spans two). The vector is written as a
``tsvector`` literal and the query as a ``tsquery`` literal, so PostgreSQL's own parser,
whose idea of a letter depends on the server's locale, never splits a word. Within
PostgreSQL's limits (2,046 bytes a word, 16,383 positions, 256 positions a word, 1 MB a
vector), which ``document`` applies, a match here and a match in the index are the same.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from .base import EXACT_COUNT_UP_TO, EXPORT_WINDOW, EventFilters
from .row_queries import EVENT_COLUMNS

#: How many of the newest queued events a search matches itself, and at most how many bytes
#: of their payloads one process keeps the words of (a payload may be megabytes).
RECENT_SCAN = 5000
RECENT_BYTES = 64 * 1024 * 1024
#: Rows per indexing transaction (~50 ms here; the upkeep takes fewer to fit its budget).
INDEX_BATCH = 500
#: Newest ids a search page reads in id order before it asks the GIN index for older ones.
SEARCH_WINDOW = 5_000
#: The fields searched besides the payload's JSON text, in the order FTS5 indexes them.
SEARCH_FIELDS = ("event_type", "vendor_event", "source", "subject_id", "account", "actor",
                 "external_id")

# PostgreSQL's tsvector limits (src/include/tsearch/ts_type.h), kept below with a margin.
MAX_WORD_BYTES = 2046
MAX_POSITION = 16383
MAX_POSITIONS_PER_WORD = 256
MAX_VECTOR_BYTES = 1_000_000

_WORD = re.compile(r"(?:[^\W_]|[\ue000-\uf8ff\U000f0000-\U0010fffd])+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
#: Between two fields in ``document``: a word of its own (an empty position), none of ours.
_GAP = "\x01"
_WORD_OR_GAP = re.compile(_WORD.pattern + "|" + _GAP)
_ASCII_WORD_OR_GAP = re.compile(_ASCII_WORD.pattern + "|" + _GAP)
_QUOTED = re.compile(r'\s+|(".*?")')  # sqlite-utils' quote_fts, which the SQLite backend uses


def _accent_folding() -> dict[int, str | None]:
    """Latin letters with one accent -> the letter; combining accents -> nothing (FTS5's
    ``remove_diacritics``)."""
    table: dict[int, str | None] = dict.fromkeys(range(0x300, 0x370))
    for start, end in ((0xC0, 0x250), (0x1E00, 0x1F00)):
        for code in range(start, end):
            parts = unicodedata.normalize("NFD", chr(code))
            if (len(parts) == 2 and parts[0].isascii() and parts[0].isalpha()
                    and 0x300 <= ord(parts[1]) < 0x370):
                table[code] = parts[0]
    return table


_FOLD = _accent_folding()


def words(text: str) -> list[str]:
    """The words of ``text`` as search compares them."""
    return _split(text, _ASCII_WORD, _WORD)


def _split(text: str, ascii_pattern: re.Pattern[str], pattern: re.Pattern[str]) -> list[str]:
    text = text.lower()
    if text.isascii():
        return ascii_pattern.findall(text)
    return pattern.findall(text.translate(_FOLD))


def search_phrases(q: str) -> list[list[str]]:
    """The query's terms, each a phrase of words, every one of which must match: what
    ``quote_fts`` makes of ``q`` on SQLite (whitespace separates terms, a ``"quoted part"``
    is one term, an unpaired quote is closed, operators are plain words). Terms without a
    word are dropped."""
    if q.count('"') % 2:
        q += '"'
    terms = (words(bit) for bit in _QUOTED.split(q) if bit and bit != '""')
    return [term for term in terms if term]


def _size(word: str) -> int:
    return len(word) if word.isascii() else len(word.encode())


def document(texts: Iterable[str | None]) -> dict[str, list[int]]:
    """Each word of the texts with its positions: what the search vector holds.

    A position is left empty after each text (no phrase spans two fields). Within
    PostgreSQL's limits: longer words are left out, positions past 16,383 count as 16,383, a
    word keeps its first 256 positions, and words that would take the vector past
    ``MAX_VECTOR_BYTES`` are left out.
    """
    joined = (" " + _GAP + " ").join(text for text in texts if text)
    tokens = _split(joined, _ASCII_WORD_OR_GAP, _WORD_OR_GAP)
    positions: dict[str, list[int]] = {}
    if len(tokens) < MAX_POSITION and len(joined) * 11 < MAX_VECTOR_BYTES:
        # The usual document: no position to clamp, and the vector cannot reach its limit
        # (a word costs at most its length + 10 bytes).
        for at, word in enumerate(tokens, 1):
            known = positions.get(word)
            if known is None:
                if len(word) <= MAX_WORD_BYTES // 3 or _size(word) <= MAX_WORD_BYTES:
                    positions[word] = [at]
            elif len(known) < MAX_POSITIONS_PER_WORD:
                known.append(at)
    else:
        size = 0
        for position, word in enumerate(tokens, 1):
            at = min(position, MAX_POSITION)
            known = positions.get(word)
            if known is not None:
                if len(known) < MAX_POSITIONS_PER_WORD and known[-1] != at:
                    known.append(at)
                    size += 2
                continue
            cost = _size(word) + 10  # the word, its entry, position count, first position
            if _size(word) <= MAX_WORD_BYTES and size + cost <= MAX_VECTOR_BYTES:
                positions[word] = [at]
                size += cost
    positions.pop(_GAP, None)
    return positions


def event_texts(row: Sequence[Any]) -> list[str | None]:
    """The searched texts of a row of ``SEARCH_FIELDS`` + ``data``."""
    return [None if value is None else str(value) for value in row]


def tsvector_literal(positions: Mapping[str, list[int]]) -> str:
    """The vector as PostgreSQL reads a ``tsvector`` (words are letters and digits only:
    nothing to escape)."""
    return " ".join([f"'{word}':{at[0]}" if len(at) == 1 else
                     f"'{word}':{','.join(map(str, at))}" for word, at in positions.items()])


def tsquery_literal(phrases: Sequence[Sequence[str]]) -> str | None:
    """Every phrase, each its words in a row; None when a word is too long to be in any
    vector (nothing can match)."""
    if any(_size(word) > MAX_WORD_BYTES for phrase in phrases for word in phrase):
        return None
    return " & ".join("(" + " <-> ".join(f"'{word}'" for word in phrase) + ")"
                      for phrase in phrases)


@dataclass(frozen=True)
class MatchText:
    """A document as this process matches it: the words at positions 1 to 16,382 in order,
    one space apart and an empty position as ``\\x00``, and the words at 16,383 (where every
    later position lands, as in the vector)."""

    text: str
    last: frozenset[str] = frozenset()

    @classmethod
    def of(cls, positions: Mapping[str, list[int]]) -> MatchText:
        highest = max((at[-1] for at in positions.values()), default=0)
        slots = ["\x00"] * min(highest, MAX_POSITION - 1)
        last = set()
        for word, at in positions.items():
            for position in at:
                if position < MAX_POSITION:
                    slots[position - 1] = word
                else:
                    last.add(word)
        return cls(" " + " ".join(slots) + " ", frozenset(last))

    def has(self, phrase: Sequence[str]) -> bool:
        """Whether the words of ``phrase`` are at consecutive positions."""
        if f" {' '.join(phrase)} " in self.text:
            return True
        if phrase[-1] not in self.last:
            return False
        return len(phrase) == 1 or self.text.endswith(f" {' '.join(phrase[:-1])} ")

    def matches(self, phrases: Sequence[Sequence[str]]) -> bool:
        return all(self.has(phrase) for phrase in phrases)


@dataclass(frozen=True)
class Scope:
    """What a search sees besides the GIN index: the queued events it matches itself, newest
    first, with their words."""

    recent: tuple[int, ...]
    texts: Mapping[int, MatchText]
    #: How many queued ids were listed, and whether more may be queued beyond them.
    listed: int = 0
    more: bool = False

    def matching(self, phrases: Sequence[Sequence[str]], *, below: int | None = None,
                 floor: int = 0) -> list[int]:
        """Ids of the recent events that match, newest first, in [``floor``, ``below``)."""
        return [event_id for event_id in self.recent
                if (below is None or event_id < below) and event_id >= floor
                and self.texts[event_id].matches(phrases)]


class SearchedStore(Protocol):
    """What the search needs of ``PostgresStore``: its reads, a write transaction, and the
    WHERE terms of the filters other than ``q``."""

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
             ) -> list[tuple[Any, ...]]: ...

    def one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any: ...

    def transaction(self) -> AbstractContextManager[Any]: ...

    def event_where(self, filters: EventFilters) -> tuple[list[str], list[Any]]: ...

    def newest_event_id(self) -> int: ...


class PostgresSearch:
    """The search side of one ``PostgresStore`` (its pool and its filters)."""

    def __init__(self, store: SearchedStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._texts: dict[int, MatchText] = {}
        self._sizes: dict[int, int] = {}
        self._index_after = 0

    # -- the background side ----------------------------------------------------------

    def index(self, limit: int = INDEX_BATCH, *, min_backlog: int = 0) -> int:
        """Write the search vectors of up to ``limit`` queued events, oldest first, and take
        them off the queue, in one transaction; returns how many ids left the queue (0:
        nothing queued, or fewer than ``min_backlog``).

        Each call starts after the last id it took (the deleted queue entries below it are
        not walked again); when nothing is queued there it starts over from the lowest, which
        finds ids that committed late. The commit does not wait for the WAL flush (ingest's
        commits, which do, share it): a crash of PostgreSQL can lose only whole indexing
        transactions, whose events are then still queued.
        """
        with self._store.transaction() as conn:
            conn.execute("SET LOCAL synchronous_commit = off")
            if min_backlog > 1 and conn.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM search_queue LIMIT %s) AS waiting",
                    (min_backlog,)).fetchone()[0] < min_backlog:  # type: ignore[index]
                return 0
            ids = self._take(conn, limit, after=self._index_after)
            if not ids and self._index_after:
                ids = self._take(conn, limit, after=0)
            if not ids:
                self._index_after = 0
                return 0
            rows = conn.execute(
                f"SELECT id, {', '.join(SEARCH_FIELDS)}, data FROM events WHERE id = ANY(%s)",
                (ids,)).fetchall()
            conn.execute(
                "INSERT INTO event_search (event_id, document) SELECT id, document::tsvector"
                " FROM unnest(%s::bigint[], %s::text[]) AS queued (id, document)"
                " ON CONFLICT (event_id) DO UPDATE SET document = excluded.document",
                ([row[0] for row in rows],
                 [tsvector_literal(document(event_texts(row[1:]))) for row in rows]))
        self._index_after = max(ids)
        return len(ids)

    @staticmethod
    def _take(conn: Any, limit: int, *, after: int) -> list[int]:
        return [row[0] for row in conn.execute(
            "WITH taken AS MATERIALIZED (SELECT event_id FROM search_queue WHERE event_id > %s"
            " ORDER BY event_id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " DELETE FROM search_queue WHERE event_id IN (SELECT event_id FROM taken)"
            " RETURNING event_id", (after, limit))]

    # -- the search side --------------------------------------------------------------

    def scope(self) -> Scope:
        """The newest queued events (up to ``RECENT_SCAN``, and ``RECENT_BYTES`` of text),
        their words fetched for the ones this process has not seen yet."""
        queued = [row[0] for row in self._store.rows(
            "SELECT event_id FROM search_queue ORDER BY event_id DESC LIMIT %s", (RECENT_SCAN,))]
        with self._lock:
            unseen = [event_id for event_id in queued if event_id not in self._sizes]
            if unseen:
                self._sizes.update(self._store.rows(
                    "SELECT id, octet_length(data) FROM events WHERE id = ANY(%s)", (unseen,)))
            recent: list[int] = []
            total = 0
            for event_id in queued:
                total += self._sizes.get(event_id, 0)
                if total > RECENT_BYTES:
                    break
                recent.append(event_id)
            wanted = [event_id for event_id in recent if event_id not in self._texts]
            fetched = {row[0]: MatchText.of(document(event_texts(row[1:])))
                       for row in self._rows_in_chunks(wanted)}
            texts = {event_id: self._texts.get(event_id) or fetched.get(event_id)
                     or MatchText("") for event_id in recent}  # "": purged meanwhile
            self._texts = texts
            self._sizes = {event_id: self._sizes[event_id] for event_id in queued
                           if event_id in self._sizes}
        return Scope(tuple(recent), texts, len(queued), len(queued) == RECENT_SCAN)

    def _rows_in_chunks(self, ids: list[int], chunk: int = 1000) -> Iterator[Any]:
        for start in range(0, len(ids), chunk):
            yield from self._store.rows(
                f"SELECT id, {', '.join(SEARCH_FIELDS)}, data FROM events WHERE id = ANY(%s)",
                (ids[start:start + chunk],))

    def not_yet_searchable(self) -> int:
        """Queued events beyond the ones a search matches itself: counted up to
        ``EXACT_COUNT_UP_TO``, beyond that the span of their ids (an upper bound, read from
        the primary key's two ends instead of counting a million rows)."""
        scope = self.scope()
        queued = scope.listed
        if scope.more:
            low, high = self._store.one("SELECT min(event_id), max(event_id) FROM search_queue")
            span = 0 if low is None else int(high) - int(low) + 1
            queued = span if span > EXACT_COUNT_UP_TO else int(
                self._store.one("SELECT count(*) FROM search_queue")[0])
        return max(queued - len(scope.recent), 0)

    def page(self, filters: EventFilters, *, limit: int,
             cursor: int | None) -> list[tuple[Any, ...]]:
        """Up to ``limit`` + 1 matching rows below ``cursor``, newest first.

        The GIN index part stays flat at a million events for common and rare words alike:
        the planner cannot tell how many events a phrase matches, and trusting it, a rare
        phrase walked the primary key through every event (1.2 s at 1M). So the newest
        ``SEARCH_WINDOW`` ids are searched first, in id order, which fills the page when the
        words are common; what it did not fill comes from the GIN index alone (all matches
        below the window, sorted by id), which is cheap exactly when the words are rare.
        """
        phrases = search_phrases(filters.q or "")
        query = tsquery_literal(phrases)
        if not phrases or query is None:
            return []
        scope = self.scope()  # before the index: an event indexed meanwhile is in both
        rows = self._rows_by_id(scope.matching(phrases, below=cursor), filters, limit + 1)
        where, params = self._store.event_where(filters)
        narrowed = "".join(f" AND {term}" for term in where)
        top = cursor if cursor is not None else self._store.newest_event_id() + 1
        floor = max(top - SEARCH_WINDOW, 0)
        indexed = self._store.rows(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT event_id FROM event_search"
            f" WHERE event_id < %s AND event_id >= %s AND document @@ %s::tsquery){narrowed}"
            " ORDER BY id DESC LIMIT %s", [top, floor, query, *params, limit + 1])
        if len(indexed) <= limit and floor > 0:
            # Matches newest first, each probed on the primary key (a join could walk events
            # from the top down to an old match instead).
            indexed += self._store.rows(
                "WITH hits AS MATERIALIZED (SELECT event_id FROM event_search"
                " WHERE event_id < %s AND document @@ %s::tsquery)"
                " SELECT found.* FROM (SELECT event_id FROM hits ORDER BY event_id DESC) AS hit"
                f" CROSS JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM events"
                f" WHERE id = hit.event_id{narrowed}) AS found"
                " ORDER BY hit.event_id DESC LIMIT %s",
                [floor, query, *params, limit + 1 - len(indexed)])
        return _newest(rows, indexed)[:limit + 1]

    def batches(self, filters: EventFilters, *, cursor: int | None,
                batch: int) -> Iterator[list[tuple[Any, ...]]]:
        """Every matching row below ``cursor``, newest first, in batches of at most
        ``batch``: the index a window of ``EXPORT_WINDOW`` indexed events at a time (each a
        bounded piece of work), the recent events of one scope (what was searchable when the
        export started)."""
        phrases = search_phrases(filters.q or "")
        query = tsquery_literal(phrases)
        if not phrases or query is None:
            return
        recent = self.scope().matching(phrases, below=cursor)
        top = cursor if cursor is not None else self._store.newest_event_id() + 1
        while True:
            edge = self._store.one(
                "SELECT event_id FROM event_search WHERE event_id < %s ORDER BY event_id DESC"
                " OFFSET %s LIMIT 1", (top, EXPORT_WINDOW - 1))
            floor = edge[0] if edge else 0
            ids = {row[0] for row in self._store.rows(
                "SELECT event_id FROM event_search WHERE event_id >= %s AND event_id < %s"
                " AND document @@ %s::tsquery", (floor, top, query))}
            ids.update(event_id for event_id in recent if floor <= event_id < top)
            ordered = sorted(ids, reverse=True)
            if not ordered:
                yield []  # a window without a match: still a bounded piece of work
            for start in range(0, len(ordered), batch):
                yield self._rows_by_id(ordered[start:start + batch], filters, batch)
            if floor == 0:
                return
            top = floor

    def _rows_by_id(self, ids: list[int], filters: EventFilters,
                    limit: int) -> list[tuple[Any, ...]]:
        """The rows of these events that pass the other filters, newest first."""
        if not ids:
            return []
        where, params = self._store.event_where(filters)
        narrowed = "".join(f" AND {term}" for term in where)
        return self._store.rows(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY(%s){narrowed}"
            " ORDER BY id DESC LIMIT %s", [ids, *params, limit])


def _newest(*groups: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows of every group once each (an event indexed between two reads is in two),
    newest first."""
    unique = {row[0]: row for group in groups for row in group}
    return [unique[event_id] for event_id in sorted(unique, reverse=True)]
