"""What writing the search vector in the ingest commit costs on PostgreSQL.

    python benchmarks/pg_write_cost.py                 # throwaway server, ~1 minute
    python benchmarks/pg_write_cost.py --postgres postgresql://bench@db/postgres --writes 2000

``PostgresStore.save_event`` (the real ingest statement: events row with its tsvector in a
GIN index, plus the deliveries row, one statement) against the same statement with an empty
tsvector and no document built in Python, in-process on one database, blocks of writes
interleaved, from 1 and from 4 threads (each commit waits for the WAL flush; threads share
flushes as gunicorn workers do). The alternative to the vector in the commit, an index caught
up lazily from a watermark as on SQLite, would save the difference measured here; it is not
safe on PostgreSQL (ids commit out of order), see README "Scale out".

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


@contextlib.contextmanager
def without_search() -> Iterator[None]:
    """The ingest statement with an empty vector, and no document built."""
    statement, document = postgres._SAVE_EVENT, postgres.search_document
    postgres._SAVE_EVENT = statement.replace("to_tsvector('simple', %(search)s)",
                                             "''::tsvector")
    postgres.search_document = lambda *_: ""  # type: ignore[assignment]
    try:
        yield
    finally:
        postgres._SAVE_EVENT, postgres.search_document = statement, document


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
                variants = ["vector in the commit", "no vector"]
                for variant in variants if round_ % 2 == 0 else variants[::-1]:
                    context = without_search() if variant == "no vector" else \
                        contextlib.nullcontext()
                    with context:
                        seconds = write_block(store, number, args.writes, threads)
                    number += args.writes
                    results.setdefault(f"{threads} thread(s)", {}).setdefault(
                        variant, []).append(seconds / args.writes * 1e6)
        store.close()
        server.drop_database(url)
    rows = []
    report: dict[str, Any] = {"machine": info, "writes": args.writes, "rounds": args.rounds,
                              "us_per_write": results}
    for threads, by_variant in results.items():
        with_vector = statistics.median(by_variant["vector in the commit"])
        without = statistics.median(by_variant["no vector"])
        rows.append([threads, f"{with_vector:.0f}", f"{without:.0f}",
                     f"{with_vector - without:+.0f}", f"{without / with_vector:.2f}"])
    text = table(["writers", "us/write, vector in commit", "us/write, no vector",
                  "difference", "throughput with vector / without"], rows)
    print()
    print(text)
    elapsed = time.monotonic() - started
    if not args.no_write:
        save_json("pg-write-cost", report)
        title = "PostgreSQL: the search vector in the ingest commit (pg_write_cost.py)"
        write_section("pg-write-cost", f"""## {title}

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s on
{machine_line(info)}; commit {info['revision']}. `PostgresStore.save_event` in-process,
{args.writes} new events per block, {args.rounds} interleaved rounds (medians), durable
commits (`synchronous_commit = on`).

{text}
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
