"""What the pool's checkout check costs (``PostgresStore._check_if_idle``): one ``SELECT 1``
through the store, with the check and without it, in one run on a throwaway PostgreSQL.

    python benchmarks/pg_pool_check.py            # 20,000 statements each, 3 rotated rounds

The check polls the socket (a server that closed the connection left something to read) and
makes a round trip only for a connection idle longer than ``IDLE_CHECK_SECONDS``; back to
back, as here and under load, it never does. Prints microseconds per statement (medians).
No assertion on time: this is a measurement, not a test.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import postgres_server  # noqa: E402


def per_statement(store: object, count: int) -> float:
    rows = store.rows  # type: ignore[attr-defined]
    rows("SELECT 1")
    began = time.perf_counter()
    for _ in range(count):
        rows("SELECT 1")
    return (time.perf_counter() - began) / count * 1e6


def main() -> None:
    from receiver.store.postgres import PostgresStore

    class Unchecked(PostgresStore):
        def _check_if_idle(self, conn: object) -> None:  # type: ignore[override]
            return None

    count = 20_000
    with postgres_server("auto") as server:
        url = server.new_database(migrated=False)
        stores = {"checked": PostgresStore(url), "unchecked": Unchecked(url)}
        figures: dict[str, list[float]] = {name: [] for name in stores}
        for round_ in range(3):
            names = list(stores)[round_ % 2:] + list(stores)[:round_ % 2]
            for name in names:
                figures[name].append(per_statement(stores[name], count))
        for store in stores.values():
            store.close()
    for name, values in figures.items():
        print(f"{name:>9}: {statistics.median(values):6.1f} us per SELECT 1 "
              f"({', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
