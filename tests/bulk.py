"""A large history made quickly: events inserted by one SQL statement, as a bulk load or a
copy leaves them (not indexed for search yet: past SQLite's watermark, in PostgreSQL's search
queue). Every seventh holds a license key. The same rows on both backends, ids ``first`` on."""

from __future__ import annotations

import sqlite3

from receiver.config import backend_of
from receiver.store import SQLiteStore

FILL = """
WITH RECURSIVE seq(n) AS (SELECT :first UNION ALL SELECT n + 1 FROM seq WHERE n < :last)
INSERT INTO events (source, event_type, vendor_event, external_id, occurred_at, received_at,
                    account, actor, subject_type, subject_id, endpoint, signature_status, data,
                    delivery_count, dispatch_status)
SELECT CASE n % 3 WHEN 0 THEN 'keygen' WHEN 1 THEN 'fno' ELSE 'generic' END,
       CASE n % 4 WHEN 0 THEN 'license.created' WHEN 1 THEN 'license.renewed'
                  WHEN 2 THEN 'machine.created' ELSE 'order.paid' END,
       'bulk', printf('bulk-%09d', n), NULL,
       strftime('%Y-%m-%dT%H:%M:%fZ', '2024-01-01', '+' || n || ' seconds'),
       printf('acct-%03d', n % 50), NULL, 'license', printf('lic-%06d', n % 5000), 'default',
       'unchecked',
       CASE WHEN n % 7 = 0
            THEN json_object('n', n, 'word', :word, 'license_key', printf('LK-%012d', n))
            ELSE json_object('n', n, 'word', :word, 'note', 'bulk loaded') END,
       1, 'done'
FROM seq
"""

# The same rows on PostgreSQL (the data as compact JSON text, as the receiver writes it),
# each id queued for search as the ingest statement and ``receiver copy`` queue them.
PG_FILL = """
WITH made AS (
    INSERT INTO events (id, source, event_type, vendor_event, external_id, occurred_at,
                        received_at, account, actor, subject_type, subject_id, endpoint,
                        signature_status, data, delivery_count, dispatch_status)
    OVERRIDING SYSTEM VALUE
    SELECT n, CASE mod(n, 3) WHEN 0 THEN 'keygen' WHEN 1 THEN 'fno' ELSE 'generic' END,
           CASE mod(n, 4) WHEN 0 THEN 'license.created' WHEN 1 THEN 'license.renewed'
                      WHEN 2 THEN 'machine.created' ELSE 'order.paid' END,
           'bulk', 'bulk-' || lpad(n::text, 9, '0'), NULL,
           to_char(timestamp '2024-01-01' + make_interval(secs => n),
                   'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'acct-' || lpad(mod(n, 50)::text, 3, '0'), NULL, 'license',
           'lic-' || lpad(mod(n, 5000)::text, 6, '0'), 'default', 'unchecked',
           CASE WHEN mod(n, 7) = 0
                THEN format('{"n":%%s,"word":%%s,"license_key":"LK-%%s"}', n,
                            to_json(%(word)s::text), lpad(n::text, 12, '0'))
                ELSE format('{"n":%%s,"word":%%s,"note":"bulk loaded"}', n,
                            to_json(%(word)s::text)) END,
           1, 'done'
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
    RETURNING id
)
INSERT INTO search_queue (event_id) SELECT id FROM made
"""


def license_key(n: int) -> str:
    """The key the ``n``-th bulk event holds (every seventh holds one)."""
    return f"LK-{n:012d}"


def fill(database: str, count: int, *, first: int = 1, word: str = "plain") -> None:
    """Add ``count`` events to the migrated database (a SQLite path or a PostgreSQL URL),
    numbered and with ids from ``first``; each carries ``word`` in its data, for searches."""
    if backend_of(database) == "postgres":
        _fill_postgres(database, count, first=first, word=word)
        return
    store = SQLiteStore(database)
    store.migrate()
    store.close()
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(FILL, {"first": first, "last": first + count - 1, "word": word})
        conn.execute("COMMIT")
    finally:
        conn.close()


def _fill_postgres(url: str, count: int, *, first: int, word: str) -> None:
    import psycopg

    from receiver.store.postgres import PostgresStore

    store = PostgresStore(url)
    store.migrate()
    store.close()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(PG_FILL, {"first": first, "last": first + count - 1,  # type: ignore[arg-type]
                               "word": word})
        conn.execute("SELECT setval(pg_get_serial_sequence('events', 'id'),"
                      " (SELECT max(id) FROM events))")
