"""What callers of the store use, whatever the backend: the filters they pass, the results
they get back, and ``Store``, the interface every backend implements.

No SQL here; each backend module (``sqlite``, ``postgres``) holds its own.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, overload

from ..errors import NotFound
from ..events import Delivery, Event, NormalizedEvent, format_time
from . import rollups

#: Tables ``receiver copy`` moves between stores, in the order it moves them.
COPY_TABLES = ("events", "deliveries", "handler_runs", "handler_retries")

#: Columns of each table in the order the row converters below expect them.
EVENT_FIELDS = (
    "id", "source", "event_type", "vendor_event", "external_id", "occurred_at", "received_at",
    "account", "actor", "subject_type", "subject_id", "endpoint", "signature_status", "data",
    "delivery_count", "dispatch_status", "next_attempt_at",
)
DELIVERY_FIELDS = (
    "id", "received_at", "endpoint", "method", "path", "query", "remote_addr", "headers",
    "body_size", "content_type", "source", "status_code", "error", "event_id", "duplicate",
    "signature_status", "signature_reason",
)
RUN_FIELDS = ("id", "event_id", "handler", "status", "error", "traceback", "started_at",
              "duration_ms", "trigger", "attempt", "gave_up")
#: Every column ``receiver copy`` moves, per table.
COPY_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": (*EVENT_FIELDS, "lease_owner", "lease_expires"),
    "deliveries": (*DELIVERY_FIELDS, "body"),
    "handler_runs": RUN_FIELDS,
    # Without the lease: a copied attempt is claimed afresh where it lands.
    "handler_retries": ("id", "event_id", "handler", "attempt", "attempts", "due_at"),
}
#: Columns that are booleans on PostgreSQL and 0/1 on SQLite.
BOOLEAN_COLUMNS = frozenset({"duplicate", "gave_up"})

#: A stored event as a row in ``EVENT_FIELDS`` order, ``data`` left as its JSON text: what
#: an export passes on without parsing it.
RawEvent = tuple[Any, ...]

#: Rows per batch of ``Store.event_batches``.
EXPORT_BATCH = 5000
#: Ids an export with common filters reads per batch, in id order (see ``event_batches``).
EXPORT_WINDOW = 50_000
#: Up to this many events not yet searchable are counted (``not_yet_searchable``); beyond,
#: the span of their ids stands for the count.
EXACT_COUNT_UP_TO = 10_000

#: Every stored id is below this: ids are positive 64-bit integers on both backends
#: (SQLite's INTEGER, PostgreSQL's bigint), and a larger one overflows the drivers.
ID_LIMIT = 2**63
#: The largest id a row can have.
MAX_ID = ID_LIMIT - 1


def is_row_id(value: int) -> bool:
    """Whether ``value`` can be a stored row's id (a query with a larger one would fail)."""
    return 0 < value < ID_LIMIT


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@overload
def storable_text(value: str) -> str: ...
@overload
def storable_text(value: None) -> None: ...
def storable_text(value: str | None) -> str | None:
    """Text as every backend keeps it in a text column: U+0000 and unpaired surrogates become
    U+FFFD, the replacement character.

    PostgreSQL's ``text`` cannot hold U+0000 and no UTF-8 holds a lone surrogate; SQLite would
    take both, but the two backends must answer the same. What a request carried is not lost:
    the raw body is kept as bytes, and JSON text (an event's ``data``, a delivery's headers)
    keeps U+0000 escaped as ``\\u0000``."""
    if value is None or (value.isascii() and "\x00" not in value):
        return value
    return _UNSTORABLE.sub("\ufffd", value)


def storable_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every text passed through ``storable_text`` (bytes and numbers as they
    are): a row about to be written."""
    return {name: storable_text(value) if isinstance(value, str) else value
            for name, value in values.items()}


def _storable_fields(filters: Any) -> None:
    """Filter values compared as the store keeps text (a NUL in a filter finds the U+FFFD it
    was stored as, on every backend)."""
    for field in fields(filters):
        value = getattr(filters, field.name)
        if isinstance(value, str):
            object.__setattr__(filters, field.name, storable_text(value))


@dataclass(frozen=True)
class Saved:
    """What the ingest write did: which rows, and whether the event was already known."""

    delivery_id: int
    event_id: int | None
    event_type: str | None
    duplicate: bool


@dataclass(frozen=True)
class EventFilters:
    source: str | None = None
    event_type: str | None = None
    endpoint: str | None = None
    account: str | None = None
    subject_id: str | None = None
    signature_status: str | None = None
    dispatch_status: str | None = None
    q: str | None = None
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        _storable_fields(self)

    def narrows(self) -> bool:
        """Whether any filter other than a subject or a search is set."""
        return any(getattr(self, name) is not None for name in (
            "source", "endpoint", "account", "signature_status", "dispatch_status", "since",
            "until")) or self.event_type not in (None, "*")


#: What a delivery came to (``DeliveryFilters.outcome``).
OUTCOMES = ("accepted", "duplicate", "refused")
#: The SQL term of each outcome, written out (no parameter) so that the partial indexes
#: ``deliveries_duplicate`` and ``deliveries_refused`` serve it on both backends.
OUTCOME_TERMS = {"accepted": "status_code < 400 AND duplicate = FALSE",
                 "duplicate": "duplicate = TRUE",
                 "refused": "status_code >= 400"}
DELIVERY_OUTCOME_INDEXES = """
CREATE INDEX deliveries_duplicate ON deliveries (id) WHERE duplicate = TRUE;
CREATE INDEX deliveries_refused ON deliveries (id) WHERE status_code >= 400;
"""


@dataclass(frozen=True)
class DeliveryFilters:
    endpoint: str | None = None
    status_code: int | None = None
    source: str | None = None
    event_id: int | None = None
    rejected: bool = False
    #: ``accepted`` (a new event), ``duplicate`` (an event seen before) or ``refused`` (400
    #: or more, as ``rejected``); refused and duplicate ones are found by partial indexes.
    outcome: str | None = None
    #: The type of the delivery's event (exact, ``license.*`` or ``*``); refused deliveries,
    #: which have no event, never match a type.
    event_type: str | None = None
    #: Received at or after / before (ISO times): a bucket of the activity chart.
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        _storable_fields(self)


@dataclass(frozen=True)
class ActivityFilters:
    """What narrows the activity chart and the delivery counts: the list filters that both
    deliveries and events have."""

    source: str | None = None
    endpoint: str | None = None
    event_type: str | None = None

    def __post_init__(self) -> None:
        _storable_fields(self)


#: How long a used sign-in link's mark is kept. A link lives minutes (its signature says
#: when it was made); a day covers that and any skew between the nodes' clocks.
LOGIN_NONCE_KEEP = dt.timedelta(days=1)


def login_nonce_cutoff() -> str:
    """Marks of sign-in links used before this time can go (see ``use_login_nonce``)."""
    return format_time(dt.datetime.now(dt.UTC) - LOGIN_NONCE_KEEP)


def event_type_prefix(pattern: str | None) -> tuple[str, str] | str | None:
    """``license.*`` -> the half-open range ``("license.", "license/")`` every type with that
    prefix sorts in; an exact type -> itself; no pattern or ``*`` -> None."""
    if not pattern or pattern == "*":
        return None
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        return prefix, prefix[:-1] + "/"
    return pattern


def delivery_values(delivery: Delivery) -> dict[str, Any]:
    """The delivery's columns as the request gave them (headers as JSON pairs, the body as
    bytes), text made storable (``storable_text``)."""
    return storable_values({
        "received_at": delivery.received_at,
        "endpoint": delivery.endpoint,
        "method": delivery.method,
        "path": delivery.path,
        "query": delivery.query,
        "remote_addr": delivery.remote_addr,
        "headers": json.dumps(delivery.headers, ensure_ascii=False),
        "body": delivery.body,
        "body_size": len(delivery.body),
        "content_type": delivery.content_type,
    })


def event_values(event: NormalizedEvent) -> dict[str, Any]:
    """The event's columns (``data`` as compact JSON text), text made storable."""
    values = event.as_dict()
    values["data"] = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return storable_values(values)


def event_from_row(row: Sequence[Any]) -> Event:
    """An ``Event`` from a row in ``EVENT_FIELDS`` order (``data`` as JSON text)."""
    data = row[13]
    return Event(
        id=row[0], source=row[1], event_type=row[2], vendor_event=row[3], external_id=row[4],
        occurred_at=row[5], received_at=row[6], account=row[7], actor=row[8],
        subject_type=row[9], subject_id=row[10], endpoint=row[11], signature_status=row[12],
        data=json.loads(data) if isinstance(data, (str, bytes)) else data,
        delivery_count=row[14], dispatch_status=row[15], next_attempt_at=row[16],
    )


def raw_from_event(event: Event) -> RawEvent:
    """An ``Event`` as a ``RawEvent`` row (``data`` serialized again)."""
    record = event.as_dict()
    record["data"] = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return tuple(record[name] for name in EVENT_FIELDS)


def delivery_from_row(row: Sequence[Any], *, with_body: bool = False) -> dict[str, Any]:
    """A delivery record from a row in ``DELIVERY_FIELDS`` order (+ the body)."""
    record = dict(zip(DELIVERY_FIELDS, row, strict=False))
    headers = record["headers"]
    if isinstance(headers, (str, bytes)):
        headers = json.loads(headers)
    record["headers"] = [list(pair) for pair in headers]
    record["duplicate"] = bool(record["duplicate"])
    if with_body:
        body = row[len(DELIVERY_FIELDS)]
        record["body"] = bytes(body) if body is not None else None
    return record


def run_from_row(row: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(RUN_FIELDS, row, strict=True))
    record["gave_up"] = bool(record["gave_up"])
    return record


@dataclass(frozen=True)
class ScheduledAttempt:
    """The next attempt of a handler that failed: its number, the wait before it, and the
    attempts the handler has in all (for "attempt 3 of 11")."""

    handler: str
    attempt: int
    wait: float
    attempts: int


#: Rows rolled up per upkeep transaction (deliveries, then handler runs).
ROLLUP_BATCH = 5000
#: Rollup rows ``purge_activity`` deletes per transaction (about: it goes by whole buckets).
ROLLUP_PURGE_BATCH = 5000
#: A delivery read as ``activity.roll_up_deliveries`` takes it.
UnrolledDelivery = tuple[int, str, str | None, str, str | None, int, Any, str | None]
#: A handler run read as ``activity.roll_up_runs`` takes it.
UnrolledRun = tuple[int, str, str, str, float]


@dataclass(frozen=True)
class TimelineLink:
    """Where an event of a subject's timeline stands: the event before it (by
    ``occurred_at``, falling back to receive order) and whether it arrived out of order."""

    previous_id: int | None
    out_of_order: bool


class Store(abc.ABC):
    """The history: deliveries with their exact bytes, events, handler runs, dispatch leases.

    Every method means the same on every backend; callers never see SQL or a connection.
    A write the database cannot take raises ``StorageUnavailable`` (503), a missing row
    ``NotFound`` (404).
    """

    #: The setting that opened it: a file path or a database URL (shown to users).
    database: str

    # -- lifecycle ------------------------------------------------------------------------

    @abc.abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema; safe when several processes start at once."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close every connection this object opened."""

    @abc.abstractmethod
    def secret_key(self) -> str:
        """The key that signs sessions and CSRF tokens, made once and shared by every process
        that opens this database (the first one wins the race)."""

    @abc.abstractmethod
    def use_login_nonce(self, nonce: str) -> bool:
        """Mark the one-time sign-in link carrying ``nonce`` as used: True the first time,
        False every time after, whichever process or node asks (the mark is a row in table
        ``login_links``, primary key ``nonce``: insert it unless present, and answer whether
        this call inserted it, in one statement). The caller has checked the link's signature
        and age; ``nonce`` is random and not a secret. The same write forgets the marks made
        before ``login_nonce_cutoff()``: their links have expired, so their signatures refuse
        them already."""

    @abc.abstractmethod
    def start_session(self, session_hash: str, token_proof: str, expires_at: str) -> None:
        """Record an inspector sign-in (``session_queries``): ``session_hash`` is the
        SHA-256 of the random id the browser's cookie carries, ``token_proof`` the proof of
        the token it signed in with, ``expires_at`` an ISO time. The same write forgets the
        sessions that ended and those of any other token."""

    @abc.abstractmethod
    def session_alive(self, session_hash: str, token_proof: str) -> bool:
        """Whether that sign-in is still on: not signed out, not ended, made with the token
        whose proof is given. One read by primary key (it runs on every signed-in page)."""

    @abc.abstractmethod
    def end_session(self, session_hash: str) -> None:
        """Sign that session out, for every worker and node."""

    @abc.abstractmethod
    def end_sessions(self, *, keep_token_proof: str | None) -> int:
        """Sign out every session made with another token (every session when None, no
        token being set); how many."""

    # -- ingest ---------------------------------------------------------------------------

    @abc.abstractmethod
    def save_event(self, delivery: Delivery, event: NormalizedEvent, signature_status: str,
                   signature_reason: str | None = None, *, dispatch_to: str | None = None,
                   lease_seconds: float = 45.0) -> Saved:
        """Store the delivery and its event in one transaction; a known event (same source
        and external id) counts up and is reported as a duplicate, under any concurrency.

        ``dispatch_to`` names the dispatcher that will run the event's handlers: the event is
        stored ``pending`` and leased to it in the same transaction. Without it the event is
        stored ``done``.
        """

    @abc.abstractmethod
    def save_rejected(self, delivery: Delivery, *, status_code: int, error: str,
                      source: str | None = None, signature_status: str | None = None,
                      signature_reason: str | None = None, keep_body: bool = True) -> int:
        """Store a refused request with our answer and the reason; returns the delivery id."""

    # -- events ---------------------------------------------------------------------------

    @abc.abstractmethod
    def get_event(self, event_id: int) -> Event:
        """One event; ``NotFound`` when there is none."""

    @abc.abstractmethod
    def list_events(self, filters: EventFilters, *, limit: int = 50,
                    cursor: int | None = None) -> tuple[list[Event], str | None]:
        """Newest first, keyset-paged on id (never OFFSET); returns the page and the cursor
        of the next one (None on the last page)."""

    def iter_events(self, filters: EventFilters, batch: int = 500) -> Iterator[Event]:
        """Every event matching the filters, newest first, fetched a page at a time."""
        cursor: int | None = None
        while True:
            events, next_cursor = self.list_events(filters, limit=batch, cursor=cursor)
            yield from events
            if next_cursor is None:
                return
            cursor = int(next_cursor)

    def event_batches(self, filters: EventFilters, *, cursor: int | None = None,
                      batch: int = EXPORT_BATCH) -> Iterator[list[RawEvent]]:
        """Every event matching the filters with an id below ``cursor``, newest first, as
        ``RawEvent`` rows in batches of at most ``batch``: what an export streams.

        Each batch is a bounded piece of work (a streaming worker stays alive between
        batches); a batch may be empty before the last. The default pages through
        ``list_events``; a backend overrides it to hand over the stored JSON text unparsed.
        """
        while True:
            events, next_cursor = self.list_events(filters, limit=batch, cursor=cursor)
            yield [raw_from_event(event) for event in events]
            if next_cursor is None:
                return
            cursor = int(next_cursor)

    @abc.abstractmethod
    def event_counts(self) -> dict[str, int]:
        """``{"events": n, "deliveries": n}``."""

    @abc.abstractmethod
    def newest_event_id(self) -> int:
        """The highest event id, 0 when empty."""

    @abc.abstractmethod
    def subject_timeline(self, event: Event, limit: int = 50) -> list[Event]:
        """Other events about the same subject and source, newest first."""

    # -- upkeep ---------------------------------------------------------------------------

    def index_search(self, limit: int = 500, *, min_backlog: int = 0) -> int:
        """Index for search at most ``limit`` events stored since the last call, in short
        transactions that ingest can interleave with; returns how many (0: caught up).
        With ``min_backlog``, only when at least about that many wait (the upkeep defers
        small backlogs while ingest is busy: a search scans the newest events itself).

        Called over and over by the background upkeep. The default does nothing: for a
        backend whose index is written with each event.
        """
        return 0

    def catch_up_search(self, batch: int = 5000) -> int:
        """Index for search everything stored since the last call; returns how many."""
        done = 0
        while indexed := self.index_search(batch):
            done += indexed
        return done

    def not_yet_searchable(self) -> int:
        """How many stored events a search cannot find now: events the background indexing
        has not reached, beyond the newest ones a search scans directly. 0 when caught up
        (always, for a backend whose index is written with each event)."""
        return 0

    @abc.abstractmethod
    def purge(self, before: str, *, event_type: str | None = None,
              batch: int = 500) -> dict[str, int]:
        """Delete events first received before ``before`` (ISO time) with their deliveries
        and runs, and refused deliveries of that age (unless ``event_type`` narrows it), in
        short batches so ingest keeps going. Returns counts per table."""

    def checkpoint(self) -> None:  # noqa: B027 (optional upkeep; most backends need none)
        """Backend upkeep run often off the request path (SQLite: the WAL)."""

    def checkpoint_upkeep(self) -> None:  # noqa: B027 (optional upkeep; most backends need none)
        """``checkpoint`` from the upkeep thread, in the one process that should run it."""

    def claim_upkeep(self, job: str) -> bool:
        """Whether this process should run the background ``job`` (such as
        ``"search-index"``): the first process to ask holds it until it exits, so however
        many workers there are, one does it. The default lets every process run it."""
        return True

    # -- deliveries -----------------------------------------------------------------------

    @abc.abstractmethod
    def get_delivery(self, delivery_id: int, *, with_body: bool = False) -> dict[str, Any]:
        """One delivery (``body`` as bytes when asked); ``NotFound`` when there is none."""

    @abc.abstractmethod
    def list_deliveries(self, filters: DeliveryFilters, *, limit: int = 50,
                        cursor: int | None = None,
                        after: int | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first (or oldest first after ``after``, for feeds); keyset on id."""

    @abc.abstractmethod
    def deliveries_for_event(self, event_id: int) -> list[dict[str, Any]]:
        """The event's deliveries, oldest first, without bodies."""

    # -- handler runs and dispatch --------------------------------------------------------

    @abc.abstractmethod
    def runs_for_event(self, event_id: int) -> list[dict[str, Any]]:
        """The event's handler runs, oldest first."""

    def latest_runs(self, event_id: int) -> dict[str, dict[str, Any]]:
        """Each handler's most recent run on the event."""
        latest: dict[str, dict[str, Any]] = {}
        for run in self.runs_for_event(event_id):
            latest[run["handler"]] = run
        return latest

    @abc.abstractmethod
    def claim_pending(self, owner: str, *, lease_seconds: float, limit: int = 20,
                      event_id: int | None = None) -> list[Event]:
        """Lease pending events to ``owner``: each is held by exactly one worker at a time;
        a lease that ran out (its worker died) may be claimed again. Oldest first."""

    @abc.abstractmethod
    def renew_leases(self, owner: str, *, lease_seconds: float) -> int:
        """Push back the expiry of every pending event ``owner`` holds; returns how many."""

    @abc.abstractmethod
    def lease_owner(self, event_id: int) -> str | None:
        """Who holds the event's dispatch lease now."""

    @abc.abstractmethod
    def record_runs(self, event_id: int, runs: Sequence[Mapping[str, Any]], *, trigger: str,
                    owner: str | None = None,
                    scheduled: Sequence[ScheduledAttempt] = ()) -> list[dict[str, Any]]:
        """Store handler runs (with their ``attempt`` and ``gave_up``), replace the scheduled
        attempts of the handlers that ran by ``scheduled``, settle the event's dispatch status
        (``retrying``, ``failed``, ``done``); releases the lease. Returns the stored runs."""

    @abc.abstractmethod
    def claim_due_attempts(self, owner: str, *, lease_seconds: float,
                           limit: int = 20) -> list[Any]:
        """Lease scheduled attempts that are due to ``owner`` (``DueAttempt``s, soonest
        first); an attempt whose worker died is claimed again once its lease ran out."""

    # -- problems and their alerts (``problem_queries``) ---------------------------------

    @abc.abstractmethod
    def note_problem(self, kind: str, subject: str, summary: str, link: str, *,
                     count: int = 1, channels: Iterable[str] = ()
                     ) -> tuple[dict[str, Any], bool]:
        """Open a problem or count more of the current one; whether it opened now."""

    @abc.abstractmethod
    def resolve_problem(self, kind: str, subject: str, *,
                        channels: Iterable[str] = ()) -> dict[str, Any] | None:
        """Resolve the current problem of ``kind`` and ``subject``, if any."""

    @abc.abstractmethod
    def acknowledge_problem(self, problem_id: int) -> dict[str, Any]:
        """An open problem becomes acknowledged."""

    @abc.abstractmethod
    def get_problem(self, problem_id: int) -> dict[str, Any]:
        """One problem (``NotFound``)."""

    @abc.abstractmethod
    def list_problems(self, status: str | None = None, *, limit: int = 200,
                      resolved_limit: int = 50) -> list[dict[str, Any]]:
        """Problems of a status, or open, acknowledged, then recently resolved."""

    @abc.abstractmethod
    def current_problems(self, kind: str) -> set[str]:
        """Subjects of ``kind`` whose problem is not resolved."""

    @abc.abstractmethod
    def open_problem_counts(self) -> dict[str, int]:
        """Open problems by kind."""

    @abc.abstractmethod
    def oldest_waiting_seconds(self) -> float:
        """How long the oldest pending event or due attempt has waited."""

    @abc.abstractmethod
    def claim_alerts(self, owner: str, *, lease_seconds: float,
                     limit: int = 10) -> list[dict[str, Any]]:
        """Lease due alerts to ``owner``."""

    @abc.abstractmethod
    def alert_sent(self, alert_id: int) -> None:
        """The target took it."""

    @abc.abstractmethod
    def alert_failed(self, alert_id: int, error: str, wait: float) -> None:
        """The target did not take it: again in ``wait`` seconds."""

    @abc.abstractmethod
    def alerts_of(self, problem_id: int) -> list[dict[str, Any]]:
        """A problem's alerts and whether each went out."""

    # -- reconcile (``reconcile_queries``) ------------------------------------------------

    @abc.abstractmethod
    def stored_external_ids(self, source: str, external_ids: Iterable[str]) -> set[str]:
        """Which of the idempotency keys have an event of ``source``."""

    @abc.abstractmethod
    def record_reconcile(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """Store one reconcile run; returns it with its id."""

    @abc.abstractmethod
    def latest_reconcile_runs(self) -> list[dict[str, Any]]:
        """The last reconcile run of each endpoint."""

    @abc.abstractmethod
    def list_reconcile_runs(self, endpoint: str | None = None, *,
                            limit: int = 50) -> list[dict[str, Any]]:
        """Reconcile runs newest first."""

    @abc.abstractmethod
    def attempt_owner(self, event_id: int, handler: str) -> str | None:
        """Who holds the lease of a scheduled attempt, if anyone."""

    @abc.abstractmethod
    def scheduled_attempts(self, event_id: int) -> list[dict[str, Any]]:
        """The event's scheduled attempts, soonest first."""

    @abc.abstractmethod
    def retry_now(self, event_id: int, handlers: Sequence[str] | None = None) -> int:
        """Make the event's scheduled attempts due now; how many."""

    @abc.abstractmethod
    def cancel_retries(self, event_id: int, handlers: Sequence[str] | None = None) -> int:
        """Drop the event's scheduled attempts (its status settles); how many."""

    @abc.abstractmethod
    def retry_counts(self) -> dict[str, dict[str, int]]:
        """Per handler: events retrying, runs that gave up."""

    @abc.abstractmethod
    def events_retrying(self) -> int:
        """How many events have an attempt scheduled."""

    # -- copying between stores -----------------------------------------------------------

    @abc.abstractmethod
    def copy_rows(self, table: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows of ``table`` (one of ``COPY_TABLES``) with ids above
        ``after``, in id order, every column (bodies as bytes) for ``insert_copied``."""

    @abc.abstractmethod
    def insert_copied(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert rows another store gave with their ids, in one transaction; rows already
        here (same id, or an event with the same source and external id) are skipped, so a
        copy can run again or resume. Returns how many were inserted."""

    @abc.abstractmethod
    def table_counts(self) -> dict[str, int]:
        """Rows per table of ``COPY_TABLES``."""

    # -- activity, changes and handler health ---------------------------------------------
    #
    # Delivery and handler-run counts are kept in rollup tables (``activity``,
    # ``handler_activity``) by the upkeep thread (``roll_up``), never on the request path;
    # a read sums the rollup rows and the few rows not rolled up yet, in one snapshot.

    @abc.abstractmethod
    def roll_up(self, limit: int = ROLLUP_BATCH) -> int:
        """Add up to ``limit`` deliveries and ``limit`` handler runs stored since the last
        call to the rollups, in one short transaction each; returns how many rows (0:
        caught up). Safe with several processes calling it at once: each row counts once."""

    def catch_up_rollups(self, batch: int = ROLLUP_BATCH) -> int:
        """Roll up everything stored so far; returns how many rows."""
        done = 0
        while rolled := self.roll_up(batch):
            done += rolled
        return done

    @abc.abstractmethod
    def add_unavailable(self, counts: Mapping[tuple[Any, ...], int]) -> None:
        """Add 503 answers counted in a process (``activity.unavailable_counts``) to the
        rollup; they were never stored as deliveries."""

    @abc.abstractmethod
    def activity_rows(self, level: str, first: str, end: str, filters: ActivityFilters
                      ) -> tuple[list[tuple[Any, ...]], list[UnrolledDelivery]]:
        """Rollup rows ``(bucket, status_code, duplicate, deliveries)`` of ``level`` with
        buckets from ``first`` up to (not including) ``end``, and the deliveries not rolled
        up yet, read in one snapshot."""

    @abc.abstractmethod
    def delivery_total_rows(self) -> tuple[list[tuple[Any, ...]], list[UnrolledDelivery]]:
        """All-time rollup rows ``(*activity.DELIVERY_KEY, deliveries)`` and the deliveries
        not rolled up yet, in one snapshot."""

    @abc.abstractmethod
    def run_rows(self, level: str, first: str
                 ) -> tuple[list[tuple[Any, ...]], list[UnrolledRun]]:
        """Rollup rows ``(handler, status, runs, total_ms, last_id, h0..h14)`` summed over
        the buckets of ``level`` from ``first`` on (``all``: every time), and the runs not
        rolled up yet, in one snapshot."""

    @abc.abstractmethod
    def purge_activity(self, before: str, *, event_type: str | None = None,
                       batch: int = ROLLUP_PURGE_BATCH) -> None:
        """Forget the minute, hour and day counts before ``before`` (with ``event_type``,
        only of that type), as ``purge`` forgets the rows, about ``batch`` rows per
        transaction; all-time totals stay, so counters never go down."""

    def activity(self, found: rollups.Window, filters: ActivityFilters) -> list[dict[str, Any]]:
        """Deliveries per bucket of ``found`` by outcome, oldest first, zeros included."""
        rolled, tail = self.activity_rows(found.level, found.first_key, found.end_key, filters)
        counts = rollups.roll_up_deliveries(tail, levels=(found.level,))
        rows = list(rolled) + [(key[1], key[5], key[6], count) for key, count in counts.items()
                               if rollups.matches(filters, key[2], key[3], key[4])]
        return rollups.bucket_counts(found, rows)

    def delivery_totals(self) -> dict[tuple[Any, ...], int]:
        """Every delivery ever counted (503s included), by ``activity.DELIVERY_KEY``."""
        rolled, tail = self.delivery_total_rows()
        totals: dict[tuple[Any, ...], int] = {}
        for row in rolled:
            key = tuple(row[:-1])
            totals[key] = totals.get(key, 0) + int(row[-1])
        for full, count in rollups.roll_up_deliveries(tail, levels=("all",)).items():
            totals[full[2:]] = totals.get(full[2:], 0) + count
        return totals

    def handler_stats(self, level: str = "all", first: str = ""
                      ) -> dict[str, rollups.HandlerStats]:
        """Runs, failures, the last failure and the duration histogram of each handler that
        ran, over the buckets of ``level`` from ``first`` on."""
        rolled, tail = self.run_rows(level, first)
        tallies = [(row[0], row[1], rollups.tally_from_row(row[2:])) for row in rolled]
        for key, tally in rollups.roll_up_runs(tail, levels=(level,)).items():
            if level == "all" or key[1] >= first:
                tallies.append((key[2], key[3], tally))
        return rollups.handler_stats(tallies)

    @abc.abstractmethod
    def pending_summary(self) -> list[tuple[str, str, int, str]]:
        """Events waiting for their handlers: ``(source, event_type, count, oldest
        received_at)`` per type."""

    @abc.abstractmethod
    def get_runs(self, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Handler runs by id (those that exist)."""

    @abc.abstractmethod
    def failing_counts(self, handlers: Sequence[str], *, cap: int = 1000) -> dict[str, int]:
        """For each of ``handlers``, how many events its latest run failed on (the events a
        "failed" bulk replay takes), counted up to ``cap + 1`` (newest failures first), so
        the handlers page stays quick however many events fail."""

    @abc.abstractmethod
    def failed_event_ids(self, handler: str, *, since: str | None = None) -> list[int]:
        """Events whose latest run of ``handler`` failed (and started at or after
        ``since``), newest first."""

    @abc.abstractmethod
    def previous_event(self, event: Event) -> Event | None:
        """The event of the same source and subject just before this one by
        ``occurred_at`` (the receive time where an event has none), then by id."""

    @abc.abstractmethod
    def out_of_order_ids(self, event_ids: Sequence[int]) -> set[int]:
        """Those of the events that arrived out of order: an event of the same source and
        subject stored before it has a later ``occurred_at``."""

    @abc.abstractmethod
    def timeline_links(self, event: Event, event_ids: Sequence[int]
                       ) -> dict[int, TimelineLink]:
        """For events of ``event``'s subject and source: the one before each and whether
        it arrived out of order (one pass over the subject's events)."""

    def get_events(self, event_ids: Sequence[int]) -> dict[int, Event]:
        """Events by id (those that exist)."""
        found = {}
        for event_id in set(event_ids):
            try:
                found[event_id] = self.get_event(event_id)
            except NotFound:  # purged meanwhile
                continue
        return found
