"""Background upkeep, one thread per process: WAL checkpoints, the search index and
retention, all off the request path."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from .errors import StorageUnavailable
from .events import format_time
from .store import Store

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1
SEARCH_EVERY = 10  # ticks: look once a second whether ingest went quiet
RETENTION_EVERY = 6000  # ticks: ten minutes
SEARCH_BATCH = 500
SWEEP_BACKOFF_SECONDS = 2.0


def retention_cutoff(days: int, now: dt.datetime | None = None) -> str:
    """The ISO time before which ``days`` of retention lets data go."""
    now = now or dt.datetime.now(dt.UTC)
    return format_time(now - dt.timedelta(days=days))


class Maintenance:
    def __init__(self, store: Store, settings: Mapping[str, Any]) -> None:
        self.store = store
        self.settings = settings
        self._newest_seen: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def start(self) -> None:
        """Start (or restart after a fork) the upkeep thread."""
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="receiver-maintenance",
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
        commits cheap); index for search only while ingest is quiet, since indexing holds the
        write lock (a search catches the index up itself, so it never misses an event), or
        every second on a backend whose indexing blocks no writer (PostgreSQL)."""
        self.store.checkpoint()
        if tick % SEARCH_EVERY == 0:
            newest = self.store.newest_event_id()
            if newest == self._newest_seen or self.store.index_while_busy:
                self.store.catch_up_search(batch=SEARCH_BATCH)
            self._newest_seen = newest
        days = self.settings.get("RETENTION_DAYS")
        if days and tick % RETENTION_EVERY == 0:
            counts = self.store.purge(retention_cutoff(days))
            if any(counts.values()):
                log.info("retention (%s days): deleted %s", days, counts)

    def _loop(self) -> None:
        tick = 0
        while not self._stop.wait(TICK_SECONDS if tick else 0):
            try:
                self.run_once(tick)
            except StorageUnavailable as error:  # the database is down: try again later
                log.warning("maintenance: %s", error.message)
                self._stop.wait(SWEEP_BACKOFF_SECONDS)
            except Exception:  # retried next tick; a full disk must not kill the thread
                log.exception("maintenance failed")
            tick += 1
