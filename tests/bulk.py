"""A large history made quickly: events inserted by one SQL statement, as a bulk load or a
copy leaves them (not indexed for search yet). Every seventh holds a license key."""

from __future__ import annotations

import sqlite3

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


def license_key(n: int) -> str:
    """The key the ``n``-th bulk event holds (every seventh holds one)."""
    return f"LK-{n:012d}"


def fill(path: str, count: int, *, first: int = 1, word: str = "plain") -> None:
    """Add ``count`` events to the migrated database at ``path`` (numbers from ``first``);
    each carries ``word`` in its data, for searches."""
    store = SQLiteStore(path)
    store.migrate()
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(FILL, {"first": first, "last": first + count - 1, "word": word})
        conn.execute("COMMIT")
    finally:
        conn.close()
