"""History reads at 10,000 and 1,000,000 stored events: ``GET /api/events`` first page, a
filtered page, a deep cursor page and a full-text search, timed through the Flask test client
(in-process: routing, filters, SQL, masking, JSON; no socket) and, beside it, the store call
alone (``Store.list_events``). Beside them the activity chart (``GET /api/activity`` by
minute, hour and day), the handler stats of ``/handlers`` and a ``/-/metrics`` scrape, over
one delivery and one handler run per event, rolled up once (``Store.catch_up_rollups``,
timed apart) as the upkeep thread leaves them.

    python benchmarks/history.py                  # ~3 minutes on 2 cores
    python benchmarks/history.py --sizes 10000,100000 --runs 5
    python benchmarks/history.py --postgres auto  # the PostgreSQL backend

``--postgres auto`` starts a throwaway server from the machine's binaries (``--postgres
postgresql://...`` names one where databases may be made); the databases are made by
``PostgresStore.migrate()``, filled with ``generate_series`` + ``INSERT … SELECT`` (the same
rows), queued for search and indexed by ``PostgresStore.catch_up_search()`` (what the
background upkeep writes), then ``VACUUM ANALYZE`` (autovacuum does the same after a bulk
load). Results go to ``results/history-postgres.json`` and their own RESULTS.md section.

The databases are made by ``receiver.store.SQLiteStore(path).migrate()`` and filled by SQL alone
(``WITH RECURSIVE`` sequence ``INSERT … SELECT``, 200,000 rows per transaction), then the
search index is caught up once with ``Store.catch_up_search()`` (timed and reported apart).
Events only: the event list never reads ``deliveries``. Each subject (license) has ~20
events at every size, so a filtered page finds as many rows at 10k as at 1M.

Prints a table, writes ``results/history.json`` and the history section of ``RESULTS.md``.
No assertion on time: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HERE,
    machine,
    machine_line,
    postgres_server,
    save_json,
    table,
    write_section,
)

from receiver import create_app  # noqa: E402
from receiver.store import EventFilters, SQLiteStore  # noqa: E402

SOURCES = ("keygen", "licensespring", "fno", "zentitle", "standard", "generic")
TYPES = ("license.created", "license.updated", "license.renewed", "license.expired",
         "license.suspended", "machine.created", "machine.deleted", "machine.heartbeat.ping",
         "entitlement.created", "entitlement.updated", "user.created", "order.paid",
         "product.updated", "customer.updated", "policy.updated", "release.published")
PLANS = ("starter-monthly", "pro-annual", "team-annual", "enterprise", "trial")
EVENTS_PER_SUBJECT = 20
BATCH = 200_000

FILL = f"""
WITH RECURSIVE seq(n) AS (SELECT :first UNION ALL SELECT n + 1 FROM seq WHERE n < :last)
INSERT INTO events (source, event_type, vendor_event, external_id, occurred_at, received_at,
                    account, actor, subject_type, subject_id, endpoint, signature_status, data,
                    delivery_count, dispatch_status)
SELECT src.name, typ.name, typ.name, printf('evt-%s-%010d', src.name, n),
       strftime('%Y-%m-%dT%H:%M:%fZ', '2024-01-01', '+' || (n * 3) || ' seconds'),
       strftime('%Y-%m-%dT%H:%M:%fZ', '2024-01-01', '+' || (n * 3 + 1) || ' seconds'),
       printf('acct-%04d', n % 200), NULL, substr(typ.name, 1, instr(typ.name, '.') - 1),
       printf('lic-%08d', ((n * 2246822519) % 4294967291) % :subjects), src.name, 'valid',
       json_object('id', n, 'type', 'licenses',
                   'key', printf('KEY-%08X', (n * 2654435761) % 4294967296),
                   'customer', printf('cus_%06d', n % 100000), 'seats', n % 10,
                   'plan', plan.name, 'status', CASE WHEN n % 7 = 0 THEN 'suspended'
                                                     ELSE 'active' END,
                   'metadata', json_object('orderNumber', printf('SO-%d', n),
                                           'region', CASE n % 3 WHEN 0 THEN 'eu-west'
                                                     WHEN 1 THEN 'us-east' ELSE 'ap-south' END),
                   'note', 'renewal processed by the reseller portal'),
       1, 'done'
FROM seq
JOIN bench_sources AS src ON src.i = n % {len(SOURCES)}
JOIN bench_types AS typ ON typ.i = n % {len(TYPES)}
JOIN bench_plans AS plan ON plan.i = n % {len(PLANS)}
"""


def fill(path: str, count: int, *, index: bool = True) -> dict[str, float]:
    """A migrated database with ``count`` events; seconds spent per step. ``index=False``
    leaves the search index empty, as a bulk load or a copy does."""
    timings: dict[str, float] = {}
    began = time.perf_counter()
    store = SQLiteStore(path)
    store.migrate()
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a fixture: durability does not matter here
    conn.execute("PRAGMA cache_size = -1000000")
    conn.execute("PRAGMA temp_store = MEMORY")
    for name, values in (("bench_sources", SOURCES), ("bench_types", TYPES),
                         ("bench_plans", PLANS)):
        conn.execute(f"CREATE TEMP TABLE {name} (i INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany(f"INSERT INTO {name} VALUES (?, ?)", enumerate(values))
    subjects = max(1, count // EVENTS_PER_SUBJECT)
    for first in range(1, count + 1, BATCH):
        conn.execute("BEGIN")
        conn.execute(FILL, {"first": first, "last": min(count, first + BATCH - 1),
                            "subjects": subjects})
        conn.execute("COMMIT")
    timings["insert_s"] = time.perf_counter() - began
    began = time.perf_counter()
    for first in range(1, count + 1, BATCH):
        conn.execute("BEGIN")
        bounds = {"first": first, "last": min(count, first + BATCH - 1)}
        conn.execute(FILL_DELIVERIES, bounds)
        conn.execute(FILL_RUNS, bounds)
        conn.execute("COMMIT")
    timings["deliveries_runs_s"] = time.perf_counter() - began
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()

    store = SQLiteStore(path)
    began = time.perf_counter()
    indexed = store.catch_up_search() if index else 0
    timings["catch_up_search_s"] = time.perf_counter() - began
    timings["indexed"] = indexed
    began = time.perf_counter()
    timings["rolled_up"] = store.catch_up_rollups()
    timings["catch_up_rollups_s"] = time.perf_counter() - began
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    timings["file_mb"] = os.path.getsize(path) / 1e6
    return timings


PG_FILL = f"""
INSERT INTO events (source, event_type, vendor_event, external_id, occurred_at, received_at,
                    account, actor, subject_type, subject_id, endpoint, signature_status, data,
                    delivery_count, dispatch_status)
SELECT source, event_type, event_type, external_id, occurred_at, received_at, account, NULL,
       split_part(event_type, '.', 1), subject_id, source, 'valid', data, 1, 'done'
FROM (
  SELECT n, (ARRAY{list(SOURCES)})[n %% {len(SOURCES)} + 1] AS source,
         (ARRAY{list(TYPES)})[n %% {len(TYPES)} + 1] AS event_type,
         format('evt-%%s-%%s', (ARRAY{list(SOURCES)})[n %% {len(SOURCES)} + 1],
                lpad(n::text, 10, '0')) AS external_id,
         to_char(timestamp '2024-01-01' + make_interval(secs => n * 3),
                 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred_at,
         to_char(timestamp '2024-01-01' + make_interval(secs => n * 3 + 1),
                 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS received_at,
         format('acct-%%s', lpad((n %% 200)::text, 4, '0')) AS account,
         format('lic-%%s', lpad((((n::bigint * 2246822519) %% 4294967291) %% %(subjects)s)::text,
                               8, '0')) AS subject_id,
         json_build_object('id', n, 'type', 'licenses',
             'key', 'KEY-' || upper(lpad(to_hex((n::bigint * 2654435761) %% 4294967296), 8, '0')),
             'customer', format('cus_%%s', lpad((n %% 100000)::text, 6, '0')), 'seats', n %% 10,
             'plan', (ARRAY{list(PLANS)})[n %% {len(PLANS)} + 1],
             'status', CASE WHEN n %% 7 = 0 THEN 'suspended' ELSE 'active' END,
             'metadata', json_build_object('orderNumber', format('SO-%%s', n),
                 'region', CASE n %% 3 WHEN 0 THEN 'eu-west' WHEN 1 THEN 'us-east'
                           ELSE 'ap-south' END),
             'note', 'renewal processed by the reseller portal')::text AS data
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
) AS generated
"""


#: What a bulk load or a copy leaves: every event queued for search (indexed by
#: ``PostgresStore.catch_up_search``, which writes what the background upkeep writes).
PG_QUEUE = """
INSERT INTO search_queue (event_id) SELECT id FROM events WHERE id BETWEEN %(first)s AND %(last)s
"""


def fill_postgres(url: str, count: int, *, index: bool = True) -> dict[str, float]:
    """The same history in a PostgreSQL database (migrated, bulk-filled, analyzed).
    ``index=False`` queues every event for search instead, as a bulk load or a copy does."""
    import psycopg

    from receiver.store.postgres import PostgresStore

    timings: dict[str, float] = {}
    began = time.perf_counter()
    store = PostgresStore(url)
    store.migrate()
    store.close()
    subjects = max(1, count // EVENTS_PER_SUBJECT)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")  # a fixture: durability does not matter
        for first in range(1, count + 1, BATCH):
            conn.execute(PG_FILL,  # type: ignore[arg-type]
                         {"first": first, "last": min(count, first + BATCH - 1),
                          "subjects": subjects})
        timings["insert_s"] = time.perf_counter() - began
        began_runs = time.perf_counter()
        for first in range(1, count + 1, BATCH):
            bounds = {"first": first, "last": min(count, first + BATCH - 1)}
            conn.execute(PG_FILL_DELIVERIES, bounds)  # type: ignore[arg-type]
            conn.execute(PG_FILL_RUNS, bounds)  # type: ignore[arg-type]
        timings["deliveries_runs_s"] = time.perf_counter() - began_runs
        began = time.perf_counter()
        for first in range(1, count + 1, BATCH):
            conn.execute(PG_QUEUE,  # type: ignore[arg-type]
                         {"first": first, "last": min(count, first + BATCH - 1)})
        store = PostgresStore(url)
        timings["indexed"] = store.catch_up_search() if index else 0
        store.close()
        for table in ("events", "event_search", "search_queue"):
            conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]
        timings["catch_up_search_s"] = time.perf_counter() - began
        timings["file_mb"] = conn.execute(
            "SELECT pg_total_relation_size('events')").fetchone()[0] / 1e6  # type: ignore[index]
    store = PostgresStore(url)
    began = time.perf_counter()
    timings["rolled_up"] = store.catch_up_rollups()
    timings["catch_up_rollups_s"] = time.perf_counter() - began
    store.close()
    return timings


# One delivery per event (every tenth a retry: a duplicate delivery of the same event) and
# one handler run per event (every twentieth failed), as the receiver would have stored them.
FILL_DELIVERIES = """
INSERT INTO deliveries (received_at, endpoint, method, path, query, remote_addr, headers, body,
                        body_size, content_type, source, status_code, error, event_id,
                        duplicate, signature_status)
SELECT received_at, endpoint, 'POST', '/hooks/' || endpoint, '', '127.0.0.1', '[]',
       CAST(data AS BLOB), length(data), 'application/json', source, 200, NULL, id,
       CASE WHEN id % 10 = 0 THEN 1 ELSE 0 END, signature_status
FROM events WHERE id BETWEEN :first AND :last
"""
FILL_RUNS = """
INSERT INTO handler_runs (event_id, handler, status, error, traceback, started_at, duration_ms,
                          trigger)
SELECT id, CASE id % 3 WHEN 0 THEN 'crm.sync' WHEN 1 THEN 'mail.notify' ELSE 'audit.log' END,
       CASE WHEN id % 20 = 0 THEN 'error' ELSE 'ok' END,
       CASE WHEN id % 20 = 0 THEN 'RuntimeError: CRM unreachable' END, NULL, received_at,
       (id % 50) + 0.5, 'delivery'
FROM events WHERE id BETWEEN :first AND :last
"""
PG_FILL_DELIVERIES = """
INSERT INTO deliveries (received_at, endpoint, method, path, query, remote_addr, headers, body,
                        body_size, content_type, source, status_code, error, event_id,
                        duplicate, signature_status)
SELECT received_at, endpoint, 'POST', '/hooks/' || endpoint, '', '127.0.0.1', '[]',
       convert_to(data, 'UTF8'), length(data), 'application/json', source, 200, NULL, id,
       id %% 10 = 0, signature_status
FROM events WHERE id BETWEEN %(first)s AND %(last)s
"""
PG_FILL_RUNS = """
INSERT INTO handler_runs (event_id, handler, status, error, traceback, started_at, duration_ms,
                          trigger)
SELECT id, CASE id %% 3 WHEN 0 THEN 'crm.sync' WHEN 1 THEN 'mail.notify' ELSE 'audit.log' END,
       CASE WHEN id %% 20 = 0 THEN 'error' ELSE 'ok' END,
       CASE WHEN id %% 20 = 0 THEN 'RuntimeError: CRM unreachable' END, NULL, received_at,
       (id %% 50) + 0.5, 'delivery'
FROM events WHERE id BETWEEN %(first)s AND %(last)s
"""


def pick_postgres(url: str) -> dict[str, Any]:
    """``pick`` on PostgreSQL."""
    import psycopg

    with psycopg.connect(url) as conn:
        low, high, total = conn.execute(
            "SELECT min(id), max(id), count(*) FROM events").fetchone()  # type: ignore[misc]
        candidates = {row[0] for row in conn.execute(
            "SELECT subject_id FROM events ORDER BY id DESC LIMIT 500")}

        def license_events(subject: str) -> int:
            return int(conn.execute(  # type: ignore[index]
                "SELECT count(*) FROM events WHERE subject_id = %s AND event_type >= 'license.'"
                " AND event_type < 'license/'", (subject,)).fetchone()[0])

        newest = min(sorted(candidates), key=lambda subject: abs(8 - license_events(subject)))
        key = conn.execute("SELECT data::json->>'key' FROM events WHERE id = %s",
                           ((low + high) // 2,)).fetchone()[0]  # type: ignore[index]
    return {"subject": newest, "cursor": low + 120, "key": key, "count": total}


def pick(path: str) -> dict[str, Any]:
    """The values the queries use: a subject with license.* events, a deep cursor near the
    oldest end, a key that one event holds."""
    conn = sqlite3.connect(path)
    try:
        low, high, total = conn.execute("SELECT min(id), max(id), count(*) FROM events").fetchone()
        # Among the subjects of the newest 500 events, one with as close to 8 license.*
        # events as there is, so the filtered page has as many rows at every size.
        candidates = {row[0] for row in conn.execute(
            "SELECT subject_id FROM events ORDER BY id DESC LIMIT 500")}
        newest = min(sorted(candidates), key=lambda subject: abs(8 - conn.execute(
            "SELECT count(*) FROM events WHERE subject_id = ? AND event_type >= 'license.' "
            "AND event_type < 'license/'", (subject,)).fetchone()[0]))
        row = conn.execute("SELECT json_extract(data, '$.key') FROM events WHERE id = ?",
                           ((low + high) // 2,)).fetchone()
        return {"subject": newest, "cursor": low + 120, "key": row[0], "count": total}
    finally:
        conn.close()


def queries(values: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], int | None, bool]]:
    """(label, query string, filters, cursor, asked for by the issue)."""
    subject, cursor, key = values["subject"], values["cursor"], values["key"]
    return [
        ("first page", "", {}, None, True),
        ("filtered: event_type=license.* + subject_id",
         f"event_type=license.*&subject_id={subject}",
         {"event_type": "license.*", "subject_id": subject}, None, True),
        ("deep cursor (oldest end)", f"cursor={cursor}", {}, cursor, True),
        ("search q=<one license key>", f"q={key}", {"q": key}, None, True),
        ("filtered: event_type=license.* only", "event_type=license.*",
         {"event_type": "license.*"}, None, False),
        ("filtered: event_type=license.*, deep cursor", f"event_type=license.*&cursor={cursor}",
         {"event_type": "license.*"}, cursor, False),
        ("filtered: source=fno", "source=fno", {"source": "fno"}, None, False),
        ("filtered: source=fno, deep cursor", f"source=fno&cursor={cursor}",
         {"source": "fno"}, cursor, False),
        ("search q=renewed (6% of events)", "q=renewed", {"q": "renewed"}, None, False),
    ]


def median_ms(call: Callable[[], Any], runs: int) -> float:
    call()  # warm: page cache, statement cache
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1000


def time_size(path: str, runs: int) -> dict[str, Any]:
    values = pick_postgres(path) if path.startswith("postgresql://") else pick(path)
    app = create_app({"DATABASE": path, "TESTING": True, "SECRET_KEY": "benchmark"},
                     background=False)
    client = app.test_client()
    store = app.extensions["receiver.store"]
    out: dict[str, Any] = {"values": values, "queries": {}}
    for label, query, filters, cursor, asked in queries(values):
        url = "/api/events" + (f"?{query}" if query else "")
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.get_data()!r}")
        rows = len(response.get_json()["events"])

        def http(url: str = url) -> None:
            client.get(url).get_data()

        def direct(filters: dict[str, Any] = filters, cursor: int | None = cursor) -> None:
            store.list_events(EventFilters(**filters), limit=50, cursor=cursor)

        out["queries"][label] = {"url": url, "rows": rows, "asked": asked,
                                 "http_ms": median_ms(http, runs),
                                 "store_ms": median_ms(direct, runs)}
    for label, url, call in observability_reads(store, values["count"]):
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.get_data()!r}")
        answer = response.get_json(silent=True)
        rows = len(answer["buckets"]) if isinstance(answer, dict) else 0

        def page(url: str = url) -> None:
            client.get(url).get_data()

        out["queries"][label] = {"url": url, "rows": rows, "asked": True,
                                 "http_ms": median_ms(page, runs),
                                 "store_ms": median_ms(call, runs)}
    store.close()
    return out


def observability_reads(store: Any, count: int) -> list[tuple[str, str, Callable[[], Any]]]:
    """The activity chart, handler stats and a metrics scrape (issue 15): (label, URL, the
    store call alone). The fixture's deliveries end 3 s x ``count`` after 2024-01-01."""
    import datetime as dt

    from receiver.store import ActivityFilters, rollups

    newest = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=3 * count + 2)
    oldest = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

    def iso(moment: dt.datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    reads = []
    for label, since, level, query in (
            ("activity: by minute, last hour", newest - dt.timedelta(hours=1), "minute", ""),
            ("activity: by hour, last 2 days", newest - dt.timedelta(days=2), "hour", ""),
            ("activity: by day, whole history", oldest, "day", ""),
            ("activity: by day, source=fno", oldest, "day", "&source=fno")):
        found = rollups.window(since, newest, level, newest)
        filters = ActivityFilters(source="fno" if query else None)
        reads.append((label, f"/api/activity?bucket={level}&since={iso(since)}"
                             f"&until={iso(newest)}{query}",
                      lambda found=found, filters=filters: store.activity(found, filters)))
    reads.append(("handler stats, all time (/handlers)", "/handlers?window=all",
                  lambda: store.handler_stats()))
    reads.append(("metrics scrape (/-/metrics)", "/-/metrics",
                  lambda: (store.delivery_totals(), store.handler_stats(),
                           store.pending_summary())))
    return reads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000",
                        help="comma-separated event counts (default 10000,1000000)")
    parser.add_argument("--runs", type=int, default=9, help="timed runs per query (median)")
    parser.add_argument("--keep", metavar="DIR", help="build the databases in DIR and keep them")
    parser.add_argument("--postgres", metavar="auto|URL", default=None,
                        help="measure the PostgreSQL backend: 'auto' starts a throwaway server, "
                             "a postgresql:// URL names one where databases may be made")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch results/ and RESULTS.md")
    args = parser.parse_args(argv)
    sizes = [int(size.replace("_", "")) for size in args.sizes.split(",") if size.strip()]
    for key in [key for key in os.environ if key.startswith("RECEIVER_")]:
        del os.environ[key]

    started = time.monotonic()
    info = machine()
    print(f"machine: {machine_line(info)}")
    results: dict[int, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver-history-"))
        pg = stack.enter_context(postgres_server(args.postgres)) if args.postgres else None
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for size in sizes:
            if pg is not None:
                path = pg.new_database(migrated=False)
                fixture = fill_postgres(path, size)
                timed = time_size(path, args.runs)
                timed["fixture"] = fixture
                results[size] = timed
                print(f"{size:>9,} events: inserted in {fixture['insert_s']:.1f} s, indexed "
                      f"for search + VACUUM ANALYZE {fixture['catch_up_search_s']:.1f} s, "
                      f"events {fixture['file_mb']:.0f} MB", flush=True)
                for label, entry in timed["queries"].items():
                    print(f"  {label:<46} {entry['http_ms']:8.2f} ms  (store "
                          f"{entry['store_ms']:.2f} ms, {entry['rows']} rows)", flush=True)
                pg.drop_database(path)
                continue
            path = str(folder / f"history-{size}.db")
            for suffix in ("", "-wal", "-shm", ".lock"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            fixture = fill(path, size)
            print(f"{size:>9,} events: inserted in {fixture['insert_s']:.1f} s, search index "
                  f"caught up in {fixture['catch_up_search_s']:.1f} s "
                  f"({fixture['indexed']:,} rows), rollups in {fixture['catch_up_rollups_s']:.1f} s"
                  f", file {fixture['file_mb']:.0f} MB", flush=True)
            timed = time_size(path, args.runs)
            timed["fixture"] = fixture
            results[size] = timed
            for label, entry in timed["queries"].items():
                print(f"  {label:<46} {entry['http_ms']:8.2f} ms  (store {entry['store_ms']:.2f}"
                      f" ms, {entry['rows']} rows)", flush=True)
    elapsed = time.monotonic() - started

    small, large = min(sizes), max(sizes)
    labels = list(results[small]["queries"])
    rows = []
    for label in labels:
        first, last = results[small]["queries"][label], results[large]["queries"][label]
        rows.append([label + ("" if first["asked"] else " (extra)"),
                     f"{first['http_ms']:.2f}", f"{last['http_ms']:.2f}",
                     f"{last['http_ms'] / first['http_ms']:.2f}",
                     f"{first['store_ms']:.2f}", f"{last['store_ms']:.2f}",
                     f"{last['store_ms'] / first['store_ms']:.2f}",
                     f"{first['rows']}/{last['rows']}"])
    headers = ["GET", f"{small:,} ms", f"{large:,} ms", "ratio",
               f"store {small:,} ms", f"store {large:,} ms", "store ratio", "rows"]
    text = table(headers, rows)
    fixture_rows = [[f"{size:,}", f"{results[size]['fixture']['insert_s']:.1f}",
                     f"{results[size]['fixture']['catch_up_search_s']:.1f}",
                     f"{results[size]['fixture']['catch_up_rollups_s']:.1f}",
                     f"{results[size]['fixture']['file_mb']:.0f}"] for size in sizes]
    fixture_text = table(["events", "bulk insert s",
                          "search index + VACUUM ANALYZE s" if args.postgres
                          else "catch_up_search() s", "catch_up_rollups() s",
                          "events table MB" if args.postgres else "file MB"], fixture_rows)
    print()
    print(text)
    print()
    print(fixture_text)
    print(f"\nIn all {elapsed:.0f} s. Flat (ratio ~1) means keyset paging and indexes work.")
    if not args.no_write:
        name = "history-postgres" if args.postgres else "history"
        save_json(name, {"machine": info, "runs": args.runs,
                              "sizes": {str(size): results[size] for size in sizes},
                              "elapsed_seconds": round(elapsed, 1)})
        values = results[large]["values"]
        title = (f"History{' on PostgreSQL' if args.postgres else ''}: `GET /api/events` at "
                 f"{small:,} and {large:,} events")
        made = ("Databases made by `PostgresStore(url).migrate()` on a PostgreSQL 15 server, "
                f"filled with SQL (`generate_series` + `INSERT … SELECT`, {BATCH:,} rows per "
                "statement; events only), queued for search and indexed by "
                "`PostgresStore.catch_up_search()`, then `VACUUM ANALYZE` "
                "(autovacuum does the same after a bulk load)" if args.postgres else
                "Databases made by `SQLiteStore(path).migrate()` (WAL, 2 KiB pages), filled with "
                f"SQL (`WITH RECURSIVE` + `INSERT … SELECT`, {BATCH:,} rows per transaction; "
                "events only). No `ANALYZE` (the receiver runs none)")
        section = f"""## {title} (benchmarks/history.py)

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s.

- Machine: {machine_line(info)}.
- Receiver code measured: commit {info['revision']}.
- Timed through the Flask test client (in-process `create_app`, no socket: routing, filters,
  SQL, masking, JSON), median of {args.runs} runs after one warm call; "store" is
  `Store.list_events` alone (for the activity, handler and metrics rows: `Store.activity`,
  `Store.handler_stats`, the three reads of a scrape). Page size 50 (the default). One
  delivery (every tenth a duplicate) and one handler run per event, rolled up once.
- {made};
  ~{EVENTS_PER_SUBJECT} events per subject at every size (spread by a hash), 16 event
  types (5 of them `license.*`), 6 sources.
- Queries at {large:,}: subject `{values['subject']}`, cursor `{values['cursor']}` (120 ids from the
  oldest), search key `{values['key']}` (one event).

{text}

Fixture (not part of the timings above):

{fixture_text}
"""
        write_section(name, section)
        print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
