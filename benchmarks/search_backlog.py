"""Search with a backlog (issue 16): a history bulk-loaded without its search index (as a
copy or an import leaves it), served by ``receiver serve`` as the README starts it. Measures,
in one run:

- search answers while the backlog is indexed in the background: latency of
  ``GET /api/events?q=`` for a key among the newest events (scanned at search time), a key in
  the middle of the history (found once indexed) and a common word, and the answer's
  ``not_yet_searchable`` over time;
- how long the background indexing takes to catch up, with ingest running part of the time;
- ingest (``POST /hooks/generic``, wrk) while the backlog is indexed, against ingest once the
  index has caught up: throughput and p99 (the indexing must not stall ingest).

    python benchmarks/search_backlog.py                             # 1,000,000 events
    python benchmarks/search_backlog.py --events 50000 --duration 5 # a smoke run
    python benchmarks/search_backlog.py --postgres auto             # the PostgreSQL backend

``--postgres auto`` starts a throwaway server from the machine's binaries (PostgreSQL's
defaults: fsync on; ``--postgres postgresql://...`` names one where databases may be made)
and fills it with ``history.py``'s rows, every event queued for search as a copy leaves
them. Results go to ``results/search_backlog-postgres.json`` and their own section.

Prints tables, writes ``results/search_backlog.json`` and the ``search-backlog`` section of
``RESULTS.md``. No assertion on time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HERE,
    ReceiverServe,
    machine,
    machine_line,
    postgres_server,
    save_json,
    table,
    write_section,
)
from history import fill, fill_postgres  # noqa: E402
from ingest import make_pool  # noqa: E402
from load import pick_tool, write_pool  # noqa: E402

CONNECTIONS, THREADS = 16, 2
INGEST_RATE = 3000  # requests per second the pools are sized for


def keys(database: str) -> dict[str, str]:
    """The searched words: the key of the newest event, of the middle one, a common type."""
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database) as pg:
            low, high = pg.execute(  # type: ignore[misc]
                "SELECT min(id), max(id) FROM events").fetchone()
            key = "SELECT data::json->>'key' FROM events WHERE id = %s"
            return {"newest event's key": pg.execute(key, (high,)).fetchone()[0],  # type: ignore[index]
                    "middle event's key": pg.execute(  # type: ignore[index]
                        key, ((low + high) // 2,)).fetchone()[0],
                    "renewed (6% of events)": "renewed"}
    conn = sqlite3.connect(database)
    try:
        low, high = conn.execute("SELECT min(id), max(id) FROM events").fetchone()
        key = "SELECT json_extract(data, '$.key') FROM events WHERE id = ?"
        return {"newest event's key": conn.execute(key, (high,)).fetchone()[0],
                "middle event's key": conn.execute(key, ((low + high) // 2,)).fetchone()[0],
                "renewed (6% of events)": "renewed"}
    finally:
        conn.close()


def search(base: str, word: str) -> dict[str, Any]:
    began = time.perf_counter()
    with urllib.request.urlopen(f"{base}/api/events?q={urllib.parse.quote(word)}",
                                timeout=60) as response:
        answer = json.loads(response.read())
    return {"ms": (time.perf_counter() - began) * 1000, "found": len(answer["events"]),
            "not_yet_searchable": answer["not_yet_searchable"]}


class Searcher(threading.Thread):
    """Searches each word every ``every`` seconds until stopped; keeps every answer."""

    def __init__(self, base: str, words: dict[str, str], every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.base, self.words, self.every = base, words, every
        self.samples: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for label, word in self.words.items():
                sample = search(self.base, word)
                sample.update(label=label, t=time.monotonic() - self.started_at)
                self.samples.append(sample)
            self.stop_event.wait(self.every)

    def latest_backlog(self) -> int | None:
        return self.samples[-1]["not_yet_searchable"] if self.samples else None


def ingest(tool: Any, port: int, pool: Path, duration: float) -> dict[str, Any]:
    result: dict[str, Any] = tool.run(port, pool, duration=duration, connections=CONNECTIONS,
                                      threads=THREADS)
    result["rps"] = result["requests"] / result["duration"]
    return result


def latency_rows(samples: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for label in dict.fromkeys(sample["label"] for sample in samples):
        mine = [sample for sample in samples if sample["label"] == label]
        times = sorted(sample["ms"] for sample in mine)
        rows.append([label, str(len(mine)), f"{statistics.median(times):.1f}",
                     f"{times[-1]:.1f}", f"{mine[0]['found']} -> {mine[-1]['found']}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds of ingest load in each phase")
    parser.add_argument("--catch-up-limit", type=float, default=900.0,
                        help="seconds to wait for the index to catch up")
    parser.add_argument("--tool", default="auto", choices=["auto", "wrk", "asyncio"])
    parser.add_argument("--postgres", metavar="auto|URL", default=None,
                        help="measure the PostgreSQL backend: 'auto' starts a throwaway server, "
                             "a postgresql:// URL names one where databases may be made")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch results/ and RESULTS.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    info = machine()
    tool = pick_tool(args.tool)
    print(f"machine: {machine_line(info)}\nload: {tool.describe(CONNECTIONS, THREADS)}")
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver-backlog-")))
        path = str(folder / "backlog.db")
        if args.postgres:
            pg = stack.enter_context(postgres_server(args.postgres))
            path = pg.new_database(migrated=False)
            fixture = fill_postgres(path, args.events, index=False)
        else:
            fixture = fill(path, args.events, index=False)
        print(f"{args.events:,} events made in {fixture['insert_s']:.0f} s, none indexed",
              flush=True)
        words = keys(path)
        pools = {}
        for phase in ("backlog", "caught-up"):
            pools[phase] = folder / f"{phase}.pool"
            write_pool(pools[phase], make_pool("generic", int(INGEST_RATE * args.duration),
                                               phase[:4], None))
        server = ReceiverServe(path, log_path=folder / "serve.log").start()
        searcher = Searcher(server.url, words)
        try:
            searcher.start()
            during = ingest(tool, server.port, pools["backlog"], args.duration)
            print(f"ingest while indexing: {during['rps']:,.0f} req/s, p99 "
                  f"{during['p99_us'] / 1000:.1f} ms", flush=True)
            deadline = time.monotonic() + args.catch_up_limit
            while searcher.latest_backlog() != 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            caught_up_after = searcher.samples[-1]["t"]
            searcher.stop_event.set()
            searcher.join()
            backlog_samples = searcher.samples
            print(f"caught up after {caught_up_after:.0f} s", flush=True)
            after = ingest(tool, server.port, pools["caught-up"], args.duration)
            print(f"ingest once caught up: {after['rps']:,.0f} req/s, p99 "
                  f"{after['p99_us'] / 1000:.1f} ms", flush=True)
            settled = [dict(search(server.url, word), label=label)
                       for _ in range(5) for label, word in words.items()]
        finally:
            server.stop()
        log_errors = (folder / "serve.log").read_text(errors="replace").count("Traceback")
    elapsed = time.monotonic() - started

    first = backlog_samples[0]["not_yet_searchable"]
    heads = ["search", "answers", "median ms", "max ms", "found (first -> last)"]
    during_text = table(heads, latency_rows(backlog_samples))
    after_text = table(heads, latency_rows(settled))
    ingest_text = table(
        ["ingest (wrk, 16 connections)", "req/s", "p50 ms", "p99 ms", "max ms", "errors"],
        [[name, f"{run['rps']:,.0f}", f"{run['p50_us'] / 1000:.1f}",
          f"{run['p99_us'] / 1000:.1f}", f"{run['max_us'] / 1000:.0f}",
          str(run.get("errors", 0) + run.get("status_errors", 0))]
         for name, run in (("while the backlog is indexed", during),
                           ("once the index has caught up", after))])
    timeline = ", ".join(f"{sample['t']:.0f} s: {sample['not_yet_searchable']:,}"
                         for sample in backlog_samples[::max(1, len(backlog_samples) // 24)]
                         if sample["label"] == next(iter(words)))
    summary = (f"First answer: {first:,} events not yet searchable. Caught up after "
               f"{caught_up_after:.0f} s (ingest ran the first {args.duration:.0f} s). "
               f"Tracebacks in the server log: {log_errors}.")
    print(f"\nSearches while the backlog is indexed:\n{during_text}\n\nOnce caught up:\n"
          f"{after_text}\n\n{ingest_text}\n\n{summary}\nnot_yet_searchable over time: "
          f"{timeline}\nIn all {elapsed:.0f} s.")
    if not args.no_write:
        name = "search_backlog-postgres" if args.postgres else "search_backlog"
        where = " on PostgreSQL" if args.postgres else ""
        command = "benchmarks/search_backlog.py" + (" --postgres" if args.postgres else "")
        loaded = ("queued for search (a PostgreSQL 15 server, fsync on)" if args.postgres
                  else "inserted with the search index left empty")
        save_json(name, {
            "machine": info, "events": args.events, "duration": args.duration,
            "samples": backlog_samples, "settled": settled, "ingest_during": during,
            "ingest_after": after, "caught_up_after_s": caught_up_after,
            "elapsed_seconds": round(elapsed, 1)})
        section = f"""## Search{where} with a {args.events:,}-event backlog ({command})

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s.

- Machine: {machine_line(info)}.
- Receiver code measured: commit {info['revision']}.
- `benchmarks/history.py`'s events, {loaded}; `receiver serve` with its defaults (2 sync
  workers). Searches every second over HTTP from the start;
  ingest: {tool.describe(CONNECTIONS, THREADS)}, {args.duration:.0f} s while the backlog is
  indexed and {args.duration:.0f} s once it has caught up.
- {summary}
- `not_yet_searchable` over time: {timeline}.

Searches while the backlog is indexed:

{during_text}

Once caught up:

{after_text}

{ingest_text}
"""
        write_section(name.replace("_", "-"), section)
        print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
