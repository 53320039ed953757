"""Reconcile runs and the lookup reconcile compares with, written once for both backends.

Each run of ``receiver reconcile`` or of the periodic reconcile is one row: what was checked
against the vendor's event log, what was missing and what was done (``items``, JSON, the
first ``ITEMS_KEPT``). Only the newest ``RUNS_KEPT`` runs of each endpoint are kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .sql import SharedSQL

RECONCILE_SCHEMA = """
CREATE TABLE reconcile_runs (
    id {id},
    endpoint text NOT NULL,
    vendor text NOT NULL,
    mode text NOT NULL,
    trigger text NOT NULL,
    since text NOT NULL,
    ran_at text NOT NULL,
    finished_at text NOT NULL,
    checked integer NOT NULL,
    missing integer NOT NULL,
    recovered integer NOT NULL,
    vendor_failing integer NOT NULL,
    api_calls integer NOT NULL,
    error text,
    items text NOT NULL
);
CREATE INDEX reconcile_runs_endpoint ON reconcile_runs (endpoint, id);
"""

RUN_FIELDS = ("id", "endpoint", "vendor", "mode", "trigger", "since", "ran_at", "finished_at",
              "checked", "missing", "recovered", "vendor_failing", "api_calls", "error",
              "items")
RUN_COLUMNS = ", ".join(RUN_FIELDS)
ITEMS_KEPT = 200
RUNS_KEPT = 200
#: Idempotency keys looked up per statement.
LOOKUP_BATCH = 500


def run_from_row(row: Sequence[Any]) -> dict[str, Any]:
    run = dict(zip(RUN_FIELDS, row, strict=True))
    run["items"] = json.loads(run["items"])
    return run


class ReconcileQueries(SharedSQL):
    """Mixed into each backend's store: reconcile runs, and which keys are stored."""




    def stored_external_ids(self, source: str, external_ids: Iterable[str]) -> set[str]:
        """Which of ``external_ids`` have an event of ``source`` (the unique index answers
        each batch)."""
        wanted = list(dict.fromkeys(external_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), LOOKUP_BATCH):
            batch = wanted[start:start + LOOKUP_BATCH]
            marks = ", ".join([self.MARK] * len(batch))
            found.update(row[0] for row in self.rows(
                f"SELECT external_id FROM events WHERE source = {self.MARK}"
                f" AND external_id IN ({marks})", (source, *batch)))
        return found

    def record_reconcile(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """Store one run (``RUN_FIELDS`` but ``id``) and let the oldest of its endpoint go."""
        m = self.MARK
        values = {**run, "items": json.dumps(list(run["items"])[:ITEMS_KEPT])}
        names = [name for name in RUN_FIELDS if name != "id"]
        with self._run_write() as conn:
            row = conn.execute(
                f"INSERT INTO reconcile_runs ({', '.join(names)}) VALUES"
                f" ({', '.join([m] * len(names))}) RETURNING {RUN_COLUMNS}",
                [values[name] for name in names]).fetchone()
            conn.execute(
                f"DELETE FROM reconcile_runs WHERE endpoint = {m} AND id <= (SELECT id FROM"
                f" reconcile_runs WHERE endpoint = {m} ORDER BY id DESC LIMIT 1 OFFSET {m})",
                (run["endpoint"], run["endpoint"], RUNS_KEPT))
        return run_from_row(row)

    def latest_reconcile_runs(self) -> list[dict[str, Any]]:
        """The last run of each endpoint, by endpoint name."""
        return [run_from_row(row) for row in self.rows(
            f"SELECT {RUN_COLUMNS} FROM reconcile_runs WHERE id IN"
            " (SELECT max(id) FROM reconcile_runs GROUP BY endpoint) ORDER BY endpoint")]

    def list_reconcile_runs(self, endpoint: str | None = None, *,
                            limit: int = 50) -> list[dict[str, Any]]:
        """Runs newest first, of one endpoint or all."""
        m = self.MARK
        where, params = ("WHERE endpoint = " + m, [endpoint]) if endpoint else ("", [])
        return [run_from_row(row) for row in self.rows(
            f"SELECT {RUN_COLUMNS} FROM reconcile_runs {where} ORDER BY id DESC LIMIT {m}",
            (*params, limit))]
