"""Background upkeep, one thread per process: WAL checkpoints, the search index and
retention, all off the request path."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import StorageUnavailable
from ..events import format_time
from . import rollups
from .base import Store

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1
RETENTION_EVERY = 6000  # ticks: ten minutes
SEARCH_BATCH = 500  # events per indexing transaction at most (~5 ms on SQLite)
SEARCH_MIN_BATCH = 50
#: Seconds of each tick spent indexing for search: a quarter while events arrive (ingest
#: keeps the write lock most of the time), three quarters while it is quiet.
SEARCH_BUDGET_BUSY = 0.025
SEARCH_BUDGET_QUIET = 0.075
SEARCH_PAUSE_SECONDS = 60  # after the database refused an indexing write
#: While events arrive, a backlog smaller than this waits (a search scans the newest 5,000
#: unindexed events itself on SQLite): bursts cost ingest no indexing, a steady stream is
#: indexed in batches.
SEARCH_DEFER_WHILE_BUSY = 2000
SWEEP_BACKOFF_SECONDS = 2.0  # after the database was unavailable
ROLLUP_EVERY = 10  # ticks: once a second
ROLLUP_BATCH = 5000  # rows per rollup transaction (a few milliseconds)
#: Seconds of each rollup tick while events arrive, and while it is quiet: a backlog (the
#: history of an upgraded receiver, a copy) catches up without holding up ingest.
ROLLUP_BUDGET = 0.05
ROLLUP_BUDGET_QUIET = 0.5


class UnavailableCounts:
    """503 answers of this process not yet written to the rollup: ``(received_at minute,
    endpoint, source) -> n``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}

    def count(self, received_at: str, endpoint: str, source: str | None) -> None:
        key = (rollups.bucket_key(received_at, "minute"), endpoint, source or "")
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def take(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            taken, self._counts = self._counts, {}
        return taken

    def put_back(self, counts: dict[tuple[str, str, str], int]) -> None:
        with self._lock:
            for key, number in counts.items():
                self._counts[key] = self._counts.get(key, 0) + number

    def peek(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)

    def flush(self, store: Store) -> int:
        """Write the counts to the rollup (kept for the next try if the database still
        refuses); returns how many 503s were written."""
        counts = self.take()
        if not counts:
            return 0
        try:
            store.add_unavailable(rollups.unavailable_counts(counts))
        except BaseException:
            self.put_back(counts)
            raise
        return sum(counts.values())



def retention_cutoff(days: int, now: dt.datetime | None = None) -> str:
    """The ISO time before which ``days`` of retention lets data go."""
    now = now or dt.datetime.now(dt.UTC)
    return format_time(now - dt.timedelta(days=days))


class Upkeep:
    def __init__(self, store: Store, settings: Mapping[str, Any], *,
                 unavailable: UnavailableCounts | None = None,
                 jobs: Sequence[tuple[int, Callable[[], Any]]] = (),
                 on_unavailable: Callable[[], Any] | None = None) -> None:
        """``jobs``: ``(every, job)`` pairs the thread also runs, every that many ticks (the
        problems' notice board and alerts, wired by ``create_app``); ``on_unavailable`` is
        told when the database refused the upkeep."""
        self.store = store
        self.settings = settings
        self.unavailable = unavailable
        self.jobs = list(jobs)
        self.on_unavailable = on_unavailable
        self._newest_seen: int | None = None
        self._quiet = False  # no new event since the last tick
        self._search_paused_until = 0.0
        self._seconds_per_event = 0.0  # indexing, measured on full batches
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def start(self) -> None:
        """Start (or restart after a fork) the upkeep thread."""
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="receiver-upkeep",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and wait for its tick to end (then the store may be closed)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)

    def run_once(self, tick: int = 0) -> None:
        """One tick: checkpoint the WAL (often and PASSIVE, which keeps the WAL short and the
        commits cheap; one process does it); index for search for part of the tick; now and
        then, retention."""
        self.store.checkpoint_upkeep()
        self.index_search()
        if tick % ROLLUP_EVERY == 0:
            self.roll_up()
        days = self.settings.get("RETENTION_DAYS")
        if days and tick % RETENTION_EVERY == 0:
            cutoff = retention_cutoff(days)
            counts = self.store.purge(cutoff)
            self.store.purge_activity(cutoff)
            if any(counts.values()):
                log.info("retention (%s days): deleted %s", days, counts)
        for every, job in self.jobs:
            if tick % every == 0:
                job()

    def roll_up(self) -> int:
        """Write the 503s this process counted, and add what was stored since the last time
        to the activity rollups (one batch of deliveries and one of handler runs: a few
        milliseconds of the write lock). One process of a SQLite receiver does the rollup;
        on PostgreSQL any may, and a row lock makes each row count once."""
        if self.unavailable is not None:
            self.unavailable.flush(self.store)
        if not self.store.claim_upkeep("activity"):
            return 0
        deadline = time.monotonic() + (ROLLUP_BUDGET_QUIET if self._quiet else ROLLUP_BUDGET)
        done = 0
        while (rolled := self.store.roll_up(ROLLUP_BATCH)) and time.monotonic() < deadline:
            done += rolled
        return done + rolled

    def index_search(self) -> int:
        """Work through the search backlog in short transactions (``Store.index_search``)
        for this tick's budget; returns how many events were indexed.

        One process does it (``Store.claim_upkeep``). Each transaction holds the write lock a
        few milliseconds, so an ingest waits at most that long; the budget leaves the lock
        (and the CPU) to ingest most of the tick while events arrive. A transaction takes
        no more events than fit the budget at the rate measured so far (PostgreSQL indexes
        about ten times slower than SQLite: its vectors are built in Python).
        Searches meanwhile see the index plus the newest events, and say how many are not
        searchable yet."""
        newest = self.store.newest_event_id()
        quiet = self._quiet = newest == self._newest_seen
        self._newest_seen = newest
        if time.monotonic() < self._search_paused_until or not self.store.claim_upkeep(
                "search-index"):
            return 0  # paused, or another process of this receiver does it
        budget = SEARCH_BUDGET_QUIET if quiet else SEARCH_BUDGET_BUSY
        deadline = time.monotonic() + budget
        wait_for = 0 if quiet else SEARCH_DEFER_WHILE_BUSY
        done = 0
        try:
            while True:
                batch = self._search_batch(budget)
                began = time.monotonic()
                indexed = self.store.index_search(batch, min_backlog=wait_for)
                if indexed == batch:
                    self._seconds_per_event = (time.monotonic() - began) / batch
                done += indexed
                if not indexed or time.monotonic() >= deadline:
                    break
        except StorageUnavailable as error:  # full or locked: ingest comes first
            log.warning("search indexing paused for %d s: %s", SEARCH_PAUSE_SECONDS,
                        error.message)
            self._search_paused_until = time.monotonic() + SEARCH_PAUSE_SECONDS
        return done

    def _search_batch(self, budget: float) -> int:
        """Events for the next indexing transaction: ``SEARCH_BATCH``, or as many as fit the
        budget (never fewer than ``SEARCH_MIN_BATCH``)."""
        if not self._seconds_per_event:
            return SEARCH_BATCH
        fits = int(budget / self._seconds_per_event)
        return max(SEARCH_MIN_BATCH, min(SEARCH_BATCH, fits))

    def _loop(self) -> None:
        tick = 0
        while not self._stop.wait(TICK_SECONDS if tick else 0):
            try:
                self.run_once(tick)
            except StorageUnavailable as error:  # the database is down: try again later
                log.warning("upkeep: %s", error.message)
                if self.on_unavailable is not None:
                    self.on_unavailable()
                self._stop.wait(SWEEP_BACKOFF_SECONDS)
            except Exception:  # retried next tick; a full disk must not kill the thread
                log.exception("upkeep failed")
            tick += 1
