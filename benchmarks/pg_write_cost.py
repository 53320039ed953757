"""What search indexing costs the ingest write on PostgreSQL: queued (lazy, what the receiver
does) against the vector written in the commit, and against no search at all.

    python benchmarks/pg_write_cost.py                 # throwaway server, ~1 minute
    python benchmarks/pg_write_cost.py --postgres postgresql://bench@db/postgres --writes 2000

``PostgresStore.save_event`` in-process on one database, blocks of writes interleaved, from 1
and from 4 threads (each commit waits for the WAL flush; threads share flushes as gunicorn
workers do), with the ingest statement in three variants:
- ``queued``: the real one: the event's id goes to ``search_queue`` in the same statement;
  ``catch_up_search`` indexes it later (its cost per event is timed apart, off ingest);
- ``vector in the commit``: the statement inserts the ``event_search`` row itself (tsvector
  of the record's fields and data, computed by the server, under the GIN index);
- ``no search``: neither.

Prints a table, writes ``results/pg-write-cost.json`` and its RESULTS.md section.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    machine,
    machine_line,
    postgres_server,
    save_json,
    table,
    write_section,
)

from receiver.events import Delivery, NormalizedEvent  # noqa: E402
from receiver.store import postgres  # noqa: E402

BODY = (b'{"data":{"id":"%d","type":"licenses","attributes":{"key":"KEY-%d","status":"ACTIVE",'
        b'"note":"renewal processed by the reseller portal; seats carried over"}}}')


QUEUED = """, queued AS (
    INSERT INTO search_queue (event_id) SELECT id FROM event WHERE delivery_count = 1
)"""
IN_COMMIT = """, indexed AS (
    INSERT INTO event_search (event_id, document)
    SELECT id, to_tsvector('simple', concat_ws(' ', %(event_type)s, %(vendor_event)s,
        %(source)s, %(subject_id)s, %(account)s, %(actor)s, %(external_id)s, %(data)s))
    FROM event WHERE delivery_count = 1
)"""
VARIANTS = ("queued", "vector in the commit", "no search")


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """The ingest statement as ``name`` writes it."""
    statement = postgres._SAVE_EVENT
    assert QUEUED in statement, "the ingest statement changed: update this benchmark"
    replacement = {"queued": QUEUED, "vector in the commit": IN_COMMIT, "no search": ""}[name]
    postgres._SAVE_EVENT = statement.replace(QUEUED, replacement)
    try:
        yield
    finally:
        postgres._SAVE_EVENT = statement


def write_block(store: postgres.PostgresStore, start: int, count: int, threads: int) -> float:
    """Seconds for ``count`` new events written from ``threads`` threads."""
    per_thread = count // threads

    def work(slot: int) -> None:
        for number in range(start + slot * per_thread, start + (slot + 1) * per_thread):
            store.save_event(
                Delivery(body=BODY % (number, number), headers=[("Content-Type", "json")]),
                NormalizedEvent(source="keygen", event_type="license.renewed",
                                vendor_event="license.renewed", external_id=f"w-{number}",
                                occurred_at="2024-06-03T09:43:39.520Z", account="acct-1",
                                actor=None, subject_type="license", subject_id=str(number),
                                data={"id": str(number), "key": f"KEY-{number}",
                                      "note": "renewal processed by the reseller portal"}),
                "valid")

    began = time.perf_counter()
    pool = [threading.Thread(target=work, args=(slot,)) for slot in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000, help="writes per block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", metavar="auto|URL", default="auto")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    info = machine()
    print(f"machine: {machine_line(info)}")
    results: dict[str, dict[str, list[float]]] = {}
    started = time.monotonic()
    with postgres_server(args.postgres) as server:
        url = server.new_database(migrated=False)
        store = postgres.PostgresStore(url, pool_size=5)
        store.migrate()
        number = 0
        for threads in (1, 4):
            for round_ in range(args.rounds):
                shift = round_ % len(VARIANTS)
                for name in VARIANTS[shift:] + VARIANTS[:shift]:
                    with variant(name):
                        seconds = write_block(store, number, args.writes, threads)
                    number += args.writes
                    results.setdefault(f"{threads} thread(s)", {}).setdefault(
                        name, []).append(seconds / args.writes * 1e6)
        # What the queued writes left to index, done the way upkeep does it.
        began = time.perf_counter()
        indexed = store.catch_up_search(batch=500)
        catch_up_us = (time.perf_counter() - began) / max(indexed, 1) * 1e6
        store.close()
        server.drop_database(url)
    rows = []
    report: dict[str, Any] = {"machine": info, "writes": args.writes, "rounds": args.rounds,
                              "us_per_write": results, "catch_up_us_per_event": catch_up_us}
    for threads, by_variant in results.items():
        medians = {name: statistics.median(by_variant[name]) for name in VARIANTS}
        base = medians["no search"]
        rows.append([threads, *(f"{medians[name]:.0f} ({base / medians[name]:.2f})"
                                for name in VARIANTS)])
    text = table(["writers", *(f"us/write {name} (throughput vs no search)"
                               for name in VARIANTS)], rows)
    print()
    print(text)
    print(f"catch_up_search afterwards: {catch_up_us:.0f} us per queued event ({indexed} events)")
    elapsed = time.monotonic() - started
    if not args.no_write:
        save_json("pg-write-cost", report)
        title = "PostgreSQL: the search vector in the ingest commit (pg_write_cost.py)"
        write_section("pg-write-cost", f"""## {title}

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s on
{machine_line(info)}; commit {info['revision']}. `PostgresStore.save_event` in-process,
{args.writes} new events per block, {args.rounds} interleaved rounds (medians), durable
commits (`synchronous_commit = on`). The queued events were indexed afterwards by
`catch_up_search` (batches of 500, as upkeep does) at {catch_up_us:.0f} us per event, off
the request path.

{text}
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
