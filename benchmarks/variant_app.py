"""The receiver with one piece switched off, to measure what that piece costs under load
(``benchmarks/experiments.py``). Nothing here changes the receiver's code: each variant
patches the imported module in the benchmark's own gunicorn process.

``BENCH_VARIANT``:
- ``as-is``: ``receiver.create_app()`` unchanged;
- ``no-search-catch-up``: the maintenance thread does not index the FTS table
  (``Store.catch_up_search`` returns at once); checkpoints still run;
- ``no-maintenance``: no maintenance thread at all (no background checkpoint, no FTS
  catch-up; SQLite's wal_autocheckpoint of 32 MiB still applies);
- ``autocheckpoint-1000``: ``wal_autocheckpoint`` of 1000 pages (2 MiB) instead of 16384
  (32 MiB): the checkpoint a committing request runs when the WAL is full is shorter;
- ``small-catch-up``: the maintenance thread indexes the search table 250 events per
  transaction instead of 5000, so it holds the writers' lock ~20 times shorter at a time;
- ``gentle-catch-up``: the search index caught up by one process at a time (a non-blocking
  ``flock``), 250 events per transaction with a 2 ms pause between transactions, every
  second instead of every 10 s (so each round is small);
- ``checkpoint-100ms``: the maintenance thread's PASSIVE checkpoint every 0.1 s instead of
  every second (the FTS catch-up still every 10 s);
- ``leader-catch-up``: the search index caught up as now (5000 events per transaction,
  every 10 s) but by one process at a time (a non-blocking ``flock``; the other skips);
- ``tuned``: ``checkpoint-100ms`` + ``leader-catch-up``.

Several variants apply together when joined with ``+``.
- ``trace``: as is, but every store call slower than 20 ms is appended to the file named by
  ``BENCH_TRACE`` (pid, thread, call, milliseconds, wall time);
- ``no-store``: ``Store.save_event`` answers without touching the database (what the rest
  of the pipeline costs served; nothing is stored, so not a receiver);
- ``mmap``: ``PRAGMA mmap_size`` of 256 MiB on every connection (database pages read from a
  memory map instead of ``pread``);
- ``fewer-indexes``: the secondary indexes ``events_subject``, ``events_type`` and
  ``deliveries_event`` dropped after start (what three b-trees cost per commit; the API's
  filters would then scan);
- ``no-writer-queue``: writers of different processes meet in SQLite's busy handler (sleeps
  of 1, 2, 5... ms) instead of queueing on the ``flock`` of ``store.WriterQueue``;
- ``try-writer-queue``: the ``flock`` taken without waiting when it is free, a contended
  writer yields the CPU up to 50 times before it blocks on it;
- ``cprofile``: as is, with cProfile on in each worker's main thread (gunicorn's loop
  included); stats are dumped at exit to ``BENCH_PROFILE_DIR/<pid>.prof``;
- ``fast-headers``: header names of the WSGI environ mapped through a dict instead of
  ``replace().title()`` per key, and the receive time formatted once per second
  (the answer is identical).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping
from typing import Any

VARIANT = os.environ.get("BENCH_VARIANT", "as-is")


def _patch() -> None:
    from receiver import events, store
    from receiver.web import ingest

    # "a+b" applies several; "tuned" is the combination the measurements favoured.
    parts = {"tuned": "checkpoint-100ms+leader-catch-up"}.get(VARIANT, VARIANT).split("+")
    for part in parts:
        _patch_one(part, store, events, ingest)


def _patch_one(variant: str, store: Any, events: Any, ingest: Any) -> None:
    if variant == "as-is":
        return
    if variant == "autocheckpoint-1000":
        store.AUTOCHECKPOINT_PAGES = 1000
    elif variant == "small-catch-up":
        original = store.Store.catch_up_search

        def catch_up_search(self: Any, batch: int = 250) -> int:
            return int(original(self, batch=min(batch, 250)))

        store.Store.catch_up_search = catch_up_search
    elif variant == "gentle-catch-up":
        import fcntl

        from receiver import maintenance

        maintenance.SEARCH_EVERY = 1
        leader: dict[str, int] = {}

        def one_batch(self: Any, batch: int) -> int:
            upto = self.conn.execute(
                "SELECT indexed_upto FROM search_state WHERE id = 1").fetchone()[0]
            newest = self.conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0
            if newest <= upto:
                return 0
            with self.write() as conn:
                upto = conn.execute(
                    "SELECT indexed_upto FROM search_state WHERE id = 1").fetchone()[0]
                rows = conn.execute(
                    "INSERT INTO events_fts (rowid, event_type, vendor_event, source, subject_id,"
                    " account, actor, external_id, data) SELECT id, event_type, vendor_event,"
                    " source, subject_id, account, actor, external_id, data FROM events"
                    " WHERE id > ? AND id <= ? RETURNING rowid", (upto, upto + batch)).fetchall()
                conn.execute("UPDATE search_state SET indexed_upto = ? WHERE id = 1",
                             (min(newest, upto + batch),))
            return max(1, len(rows))

        def gentle(self: Any, batch: int = 250) -> int:
            fd = leader.get(self.path)
            if fd is None:
                fd = leader[self.path] = os.open(self.path + ".search-lock",
                                                 os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is catching up
            try:
                done = 0
                while True:
                    count = one_batch(self, min(batch, 250))
                    if not count:
                        return done
                    done += count
                    time.sleep(0.002)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

        store.Store.catch_up_search = gentle
    elif variant == "leader-catch-up":
        import fcntl

        original_catch_up = store.Store.catch_up_search
        lock_fds: dict[str, int] = {}

        def leader_catch_up(self: Any, batch: int = 5000) -> int:
            fd = lock_fds.get(self.path)
            if fd is None:
                fd = lock_fds[self.path] = os.open(self.path + ".search-lock",
                                                   os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is catching up
            try:
                return int(original_catch_up(self, batch))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

        store.Store.catch_up_search = leader_catch_up
    elif variant == "checkpoint-100ms":
        from receiver import maintenance

        every = maintenance.SEARCH_EVERY
        maintenance.TICK_SECONDS = 0.1
        maintenance.SEARCH_EVERY = every * 10 if every > 1 else 10
        maintenance.RETENTION_EVERY = maintenance.RETENTION_EVERY * 10
    elif variant == "no-search-catch-up":
        store.Store.catch_up_search = lambda self, batch=5000: 0  # type: ignore[method-assign]
    elif variant == "no-maintenance":
        from receiver import maintenance

        maintenance.Maintenance.start = lambda self: None  # type: ignore[method-assign]
    elif variant == "no-store":
        counter = iter(range(1, 2**62))

        def save_event(self: Any, delivery: Any, event: Any, *args: Any, **kwargs: Any) -> Any:
            number = next(counter)
            return store.Saved(number, number, event.event_type, False)

        store.Store.save_event = save_event
    elif variant == "mmap":
        connect = store.Store._connect

        def _connect(self: Any) -> Any:
            conn = connect(self)
            conn.execute("PRAGMA mmap_size = 268435456")
            return conn

        store.Store._connect = _connect
    elif variant == "fewer-indexes":
        pass  # done after create_app below
    elif variant == "no-writer-queue":
        store.WriterQueue.__enter__ = lambda self: self._thread_lock.acquire()
        store.WriterQueue.__exit__ = lambda self, *exc: self._thread_lock.release()
    elif variant == "try-writer-queue":
        import fcntl

        def enter(self: Any) -> None:
            self._thread_lock.acquire()
            if self._fd is None or self._pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            for _ in range(50):
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    os.sched_yield()
            fcntl.flock(self._fd, fcntl.LOCK_EX)

        store.WriterQueue.__enter__ = enter
    elif variant == "cprofile":
        import atexit
        import cProfile

        profiler = cProfile.Profile()
        folder = os.environ.get("BENCH_PROFILE_DIR", ".")
        atexit.register(lambda: (profiler.disable(),
                                 profiler.dump_stats(f"{folder}/{os.getpid()}.prof")))
        profiler.enable()
    elif variant == "trace":
        import functools
        import threading

        path = os.environ.get("BENCH_TRACE", "trace.log")

        def traced(name: str, function: Any) -> Any:
            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    spent = (time.perf_counter() - began) * 1000
                    if spent > 20:
                        with open(path, "a") as handle:
                            handle.write(f"{os.getpid()} {threading.current_thread().name} "
                                         f"{name} {spent:.1f} {time.time():.3f}\n")
            return wrapper

        for name in ("checkpoint", "catch_up_search", "save_event", "claim_pending"):
            setattr(store.Store, name, traced(name, getattr(store.Store, name)))
        store.WriterQueue.__enter__ = traced(  # type: ignore[method-assign]
            "writer-lock-wait", store.WriterQueue.__enter__)
    elif variant == "fast-headers":
        names: dict[str, str] = {}

        def environ_headers(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
            headers = []
            for key, value in environ.items():
                name = names.get(key)
                if name is None:
                    if key.startswith("HTTP_"):
                        name = key[5:].replace("_", "-").title()
                    elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                        name = key.replace("_", "-").title()
                    else:
                        name = ""
                    if len(names) < 4096:
                        names[key] = name
                if not name or (not value and not key.startswith("HTTP_")):
                    continue
                headers.append((name, value))
            return headers

        cache: list[Any] = [None, ""]

        def utc_now_iso() -> str:
            now = time.time()
            second = int(now)
            if cache[0] != second:
                cache[0] = second
                cache[1] = dt.datetime.fromtimestamp(second, dt.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.")
            return f"{cache[1]}{int((now - second) * 1000):03d}Z"

        ingest.environ_headers = environ_headers
        original = events.Delivery

        def delivery(**fields: Any) -> Any:
            return original(received_at=utc_now_iso(), **fields)

        ingest.Delivery = delivery  # type: ignore[assignment,misc]
    else:
        raise SystemExit(f"unknown BENCH_VARIANT {variant!r}")


_patch()

from receiver import create_app  # noqa: E402

app = create_app()

if "fewer-indexes" in VARIANT:
    _store = app.extensions["receiver.store"]
    with _store.write() as _conn:
        for _index in ("events_subject", "events_type", "deliveries_event"):
            _conn.execute(f"DROP INDEX IF EXISTS {_index}")
