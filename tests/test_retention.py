"""Retention: purge removes events with their deliveries, runs and search entries."""

from __future__ import annotations

import datetime as dt

import pytest

from receiver.events import Delivery, NormalizedEvent
from receiver.store import DeliveryFilters, EventFilters
from receiver.store.upkeep import Upkeep, retention_cutoff

from .waiting import wait_for

pytestmark = pytest.mark.both_backends


def add(store, external_id: str, received_at: str, event_type: str = "license.created",
        body: bytes = b"{}") -> int:
    saved = store.save_event(
        Delivery(body=body, received_at=received_at),
        NormalizedEvent(source="generic", event_type=event_type, vendor_event=event_type,
                        external_id=external_id, occurred_at=None, account=None, actor=None,
                        subject_type=event_type.split(".")[0], subject_id=external_id,
                        data={"word": external_id}),
        "unchecked", dispatch_to="w")
    store.record_runs(saved.event_id, [{"handler": "h", "status": "ok", "error": None,
                                        "traceback": None, "started_at": received_at,
                                        "duration_ms": 1.0}], trigger="delivery")
    return saved.event_id


def test_purge_deletes_events_deliveries_runs_and_search_entries(store, backend) -> None:
    old = add(store, "oldzebra", "2020-01-01T00:00:00.000Z")
    new = add(store, "newzebra", "2999-01-01T00:00:00.000Z")
    store.save_rejected(Delivery(body=b"{bad", received_at="2020-01-01T00:00:00.000Z"),
                        status_code=400, error="bad")
    store.catch_up_search()
    counts = store.purge("2025-01-01T00:00:00.000Z")
    assert counts == {"events": 1, "deliveries": 2, "handler_runs": 1}
    assert [e.id for e in store.list_events(EventFilters(), limit=10)[0]] == [new]
    assert store.runs_for_event(old) == []
    assert store.list_events(EventFilters(q="oldzebra"))[0] == []
    assert [e.id for e in store.list_events(EventFilters(q="newzebra"))[0]] == [new]
    assert len(store.list_deliveries(DeliveryFilters())[0]) == 1
    if backend == "sqlite":  # The FTS index stays consistent for the rows it still holds.
        store.conn.execute("INSERT INTO events_fts (events_fts) VALUES ('integrity-check')")


def test_purge_by_event_type_prefix_in_batches(store) -> None:
    for number in range(7):
        add(store, f"ping{number}", "2020-01-01T00:00:00.000Z", "webhook.test")
    kept = add(store, "license", "2020-01-01T00:00:00.000Z", "license.created")
    store.save_rejected(Delivery(body=b"x", received_at="2020-01-01T00:00:00.000Z"),
                        status_code=400, error="bad")
    counts = store.purge("2025-01-01T00:00:00.000Z", event_type="webhook.*", batch=3)
    assert counts["events"] == 7
    assert [e.id for e in store.list_events(EventFilters(), limit=10)[0]] == [kept]
    assert len(store.list_deliveries(DeliveryFilters(rejected=True))[0]) == 1


def test_retention_days_applied_by_upkeep(make_app) -> None:
    app = make_app(RETENTION_DAYS=30)
    store = app.extensions["receiver.store"]
    now = dt.datetime.now(dt.UTC)
    add(store, "ancient", retention_cutoff(31, now))
    recent = add(store, "recent", retention_cutoff(1, now))
    Upkeep(store, app.config).run_once(0)
    assert [e.id for e in store.list_events(EventFilters(), limit=10)[0]] == [recent]


@pytest.mark.sqlite_only
def test_freed_pages_are_reused_without_vacuum(store) -> None:
    body = b"x" * 4000
    for number in range(300):
        add(store, f"a{number}", "2020-01-01T00:00:00.000Z", body=body)
    store.checkpoint()
    pages_full = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.purge("2025-01-01T00:00:00.000Z")
    assert store.conn.execute("PRAGMA freelist_count").fetchone()[0] > 0
    for number in range(300):
        add(store, f"b{number}", "2999-01-01T00:00:00.000Z", body=body)
    store.checkpoint()
    pages_after = store.conn.execute("PRAGMA page_count").fetchone()[0]
    assert pages_after <= pages_full * 1.1



@pytest.mark.sqlite_only
def test_purge_lets_a_waiting_writer_in_between_its_batches(store, db_path) -> None:
    """The write lock (``flock``) is not a queue, so a purge does not take it back at once
    after each batch: it lets writers of other processes in between its batches. A writer
    that starts waiting while a purge runs in another process (as ``receiver purge``
    beside ``receiver serve``) gets its turn long before the purge's last batch."""
    import subprocess
    import sys

    for number in range(400):
        add(store, f"old{number}", "2020-01-01T00:00:00.000Z")
    script = ("import sys; from receiver.store import open_store; "
              "open_store(sys.argv[1]).purge('2025-01-01T00:00:00.000Z', batch=2)")
    purge = subprocess.Popen([sys.executable, "-c", script, db_path])
    try:
        def first_batch_deleted() -> bool:
            if store.event_counts()["events"] < 400:
                return True
            assert purge.poll() is None, "the purge ended before it deleted anything"
            return False

        wait_for(first_batch_deleted, timeout=60, interval=0,
                 message="the purge deleted nothing")
        add(store, "new", "2999-01-01T00:00:00.000Z")
        left_when_written = store.event_counts()["events"] - 1
    finally:
        assert purge.wait(timeout=60) == 0
    assert store.event_counts()["events"] == 1
    assert left_when_written > 200, "the writer waited for most of the purge"


@pytest.mark.sqlite_only
def test_purge_checkpoints_between_batches_not_in_its_commits(store) -> None:
    """Its commits leave the WAL to the checkpoints it runs outside the write lock, and the
    connection gets its safety net back afterwards."""
    from receiver.store.sqlite import AUTOCHECKPOINT_PAGES

    for number in range(30):
        add(store, f"old{number}", "2020-01-01T00:00:00.000Z")
    seen = []
    checkpoint = store.checkpoint

    def counting_checkpoint() -> None:
        seen.append(store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        checkpoint()

    store.checkpoint = counting_checkpoint
    assert store.purge("2025-01-01T00:00:00.000Z", batch=10)["events"] == 30
    assert seen and set(seen) == {0}
    assert len(seen) >= 4  # one before each batch of events, and the refused deliveries
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == AUTOCHECKPOINT_PAGES


@pytest.mark.sqlite_only
def test_one_process_checkpoints_for_the_upkeep(store, db_path) -> None:
    """Every worker's upkeep asks for the checkpoint each tick; only the store holding the
    ``checkpoint`` job copies the WAL back, until its process ends."""
    from receiver.store import open_store

    other = open_store(db_path)
    done: list[str] = []
    store.checkpoint = lambda: done.append("first")
    other.checkpoint = lambda: done.append("other")
    try:
        for _ in range(3):
            store.checkpoint_upkeep()
            other.checkpoint_upkeep()
        assert done == ["first"] * 3
        store.close()  # as when its process ends: the job is free for the next to ask
        other.checkpoint_upkeep()
        assert done[-1] == "other"
    finally:
        other.close()
