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
- ``tuned``: ``autocheckpoint-1000`` + ``small-catch-up`` + ``fast-headers``;
- ``trace``: as is, but every store call slower than 20 ms is appended to the file named by
  ``BENCH_TRACE`` (pid, thread, call, milliseconds, wall time);
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

    parts = {"tuned": ("autocheckpoint-1000", "small-catch-up", "fast-headers")}.get(
        VARIANT, (VARIANT,))
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
    elif variant == "no-search-catch-up":
        store.Store.catch_up_search = lambda self, batch=5000: 0  # type: ignore[method-assign]
    elif variant == "no-maintenance":
        from receiver import maintenance

        maintenance.Maintenance.start = lambda self: None  # type: ignore[method-assign]
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
