"""The store: migrations, the idempotent ingest write, keyset paging, filters, full-text
search, dispatch leases and handler runs, the secret key, and a database that cannot write."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.errors import NotFound, StorageUnavailable
from receiver.events import Delivery, NormalizedEvent
from receiver.store import DeliveryFilters, EventFilters, SQLiteStore, Store

# -- helpers ------------------------------------------------------------------------------


def make_event(external_id: str, event_type: str = "license.created", *,
               source: str = "keygen", **fields: Any) -> NormalizedEvent:
    values: dict[str, Any] = {
        "source": source,
        "event_type": event_type,
        "vendor_event": event_type,
        "external_id": external_id,
        "occurred_at": "2024-06-03T09:43:39.520Z",
        "account": "acct-1",
        "actor": None,
        "subject_type": event_type.split(".", 1)[0],
        "subject_id": f"subject-{external_id}",
        "data": {"id": external_id, "note": "plain"},
    }
    values.update(fields)
    return NormalizedEvent(**values)


def make_delivery(body: bytes = b'{"hello": "world"}', **fields: Any) -> Delivery:
    values: dict[str, Any] = {
        "body": body,
        "headers": [("Content-Type", "application/json"), ("X-Trace", "1"), ("X-Trace", "2")],
        "remote_addr": "127.0.0.1",
    }
    values.update(fields)
    return Delivery(**values)


def save(store: Store, external_id: str, event_type: str = "license.created", *,
         signature_status: str = "unchecked", delivery: Delivery | None = None,
         dispatch_to: str | None = "ingest-worker", **fields: Any) -> Any:
    """Store an event with handlers to run, leased to a worker whose lease already ran out
    (so any owner may claim it), as after a crash between commit and dispatch."""
    return store.save_event(delivery or make_delivery(),
                            make_event(external_id, event_type, **fields), signature_status,
                            dispatch_to=dispatch_to, lease_seconds=-1)


def ids(events: list[Any]) -> list[int]:
    return [event.id for event in events]


def run(handler: str, status: str = "ok", error: str | None = None) -> dict[str, Any]:
    return {"handler": handler, "status": status, "error": error,
            "traceback": "Traceback ...\n" if error else None,
            "started_at": "2024-06-03T09:43:40.000Z", "duration_ms": 1.5}


def sql(store: Store, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement on either backend (``?`` placeholders): tests that look at rows
    the interface does not show (leases) or move the clock."""
    if isinstance(store, SQLiteStore):
        with store.write() as conn:
            return conn.execute(query, params).fetchall()
    with store.connection() as conn:  # type: ignore[attr-defined]
        cursor = conn.execute(query.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []


def tables(store: Store) -> set[str]:
    rows = store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


@pytest.fixture
def fresh_store(tmp_path: Path) -> Iterator[Store]:
    """A store of its own (for tests that need a second file or a broken one)."""
    store = SQLiteStore(str(tmp_path / "own.db"))
    store.migrate()
    yield store
    store.close()


# -- migrations ---------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_store_migrate_creates_the_schema(store: Store) -> None:
    assert {"events", "deliveries", "handler_runs", "events_fts", "search_state"} <= tables(store)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.sqlite_only
def test_store_migrate_is_idempotent_and_keeps_rows(store: Store) -> None:
    saved = save(store, "evt-1")
    before = store.conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    store.migrate()
    store.migrate()
    after = store.conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    assert before == after
    assert store.get_event(saved.event_id).external_id == "evt-1"
    assert store.conn.execute("SELECT count(*) FROM search_state").fetchone()[0] == 1


def test_store_two_stores_migrating_one_file_both_work(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    first, second = SQLiteStore(path), SQLiteStore(path)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def migrate(store: Store) -> None:
        barrier.wait()
        try:
            store.migrate()
        except BaseException as error:  # noqa: B036 - reported below
            errors.append(error)

    threads = [threading.Thread(target=migrate, args=(store,)) for store in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        a = save(first, "from-first")
        b = save(second, "from-second")
        assert second.get_event(a.event_id).external_id == "from-first"
        assert first.get_event(b.event_id).external_id == "from-second"
        # And a third open of an already migrated file changes nothing.
        third = SQLiteStore(path)
        third.migrate()
        assert third.event_counts() == {"events": 2, "deliveries": 2}
        third.close()
    finally:
        first.close()
        second.close()


# -- the ingest write ---------------------------------------------------------------------


def test_store_event_without_handlers_is_stored_done(store: Store) -> None:
    saved = store.save_event(make_delivery(), make_event("evt-done"), "unchecked")
    assert store.get_event(saved.event_id).dispatch_status == "done"
    assert store.claim_pending("any", lease_seconds=60) == []


def test_store_save_event_stores_event_and_delivery(store: Store) -> None:
    delivery = make_delivery(body=b'{"exact": "bytes"}', endpoint="keygen", path="/hooks/keygen",
                             query="a=1", received_at="2024-06-03T10:00:00.000Z")
    saved = store.save_event(delivery, make_event("evt-1", data={"k": "v"}), "valid",
                             "signature matches", dispatch_to="ingest-worker")
    assert saved.duplicate is False
    assert saved.event_type == "license.created"

    event = store.get_event(saved.event_id)
    assert event.as_dict() == {
        "id": saved.event_id, "source": "keygen", "event_type": "license.created",
        "vendor_event": "license.created", "external_id": "evt-1",
        "occurred_at": "2024-06-03T09:43:39.520Z", "received_at": "2024-06-03T10:00:00.000Z",
        "account": "acct-1", "actor": None, "subject_type": "license",
        "subject_id": "subject-evt-1", "endpoint": "keygen", "signature_status": "valid",
        "data": {"k": "v"}, "delivery_count": 1, "dispatch_status": "pending",
        "next_attempt_at": None,
    }
    record = store.get_delivery(saved.delivery_id, with_body=True)
    assert record["body"] == b'{"exact": "bytes"}'
    assert record["body_size"] == len(b'{"exact": "bytes"}')
    assert record["headers"] == [["Content-Type", "application/json"], ["X-Trace", "1"],
                                 ["X-Trace", "2"]]
    assert record["content_type"] == "application/json"
    assert (record["endpoint"], record["path"], record["query"]) == ("keygen", "/hooks/keygen",
                                                                      "a=1")
    assert (record["status_code"], record["error"], record["event_id"]) == (200, None,
                                                                             saved.event_id)
    assert record["duplicate"] is False
    assert record["signature_status"] == "valid"
    assert record["source"] == "keygen"
    assert "body" not in store.get_delivery(saved.delivery_id)


def test_store_save_event_twice_is_one_event_two_deliveries(store: Store) -> None:
    first = save(store, "evt-dup", delivery=make_delivery(
        received_at="2024-06-03T10:00:00.000Z"))
    second = save(store, "evt-dup", delivery=make_delivery(
        received_at="2024-06-03T10:05:00.000Z"), signature_status="valid")
    assert first.event_id == second.event_id
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.delivery_id != first.delivery_id

    event = store.get_event(first.event_id)
    assert event.delivery_count == 2
    assert event.received_at == "2024-06-03T10:00:00.000Z"  # the first delivery's time
    deliveries = store.deliveries_for_event(first.event_id)
    assert [d["id"] for d in deliveries] == [first.delivery_id, second.delivery_id]
    assert [d["duplicate"] for d in deliveries] == [False, True]
    assert store.event_counts() == {"events": 1, "deliveries": 2}


def test_store_same_external_id_other_source_is_another_event(store: Store) -> None:
    a = save(store, "shared-id", source="keygen")
    b = save(store, "shared-id", source="licensespring")
    assert a.event_id != b.event_id
    assert not a.duplicate and not b.duplicate


def test_store_concurrent_saves_of_one_event(store: Store) -> None:
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        barrier.wait()
        try:
            results.append(save(store, "evt-race", delivery=make_delivery(
                body=f'{{"n": {n}}}'.encode())))
        except BaseException as error:  # noqa: B036 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({saved.event_id for saved in results}) == 1
    assert sorted(saved.duplicate for saved in results) == [False] + [True] * (threads_count - 1)
    rows = sql(store, "SELECT count(*), max(delivery_count) FROM events")[0]
    assert tuple(rows) == (1, threads_count)
    duplicates = sql(store, "SELECT count(*), sum(CASE WHEN duplicate THEN 1 ELSE 0 END),"
                     " count(DISTINCT body) FROM deliveries")[0]
    assert tuple(duplicates) == (threads_count, threads_count - 1, threads_count)


def test_store_save_rejected_keeps_bytes_and_reason(store: Store) -> None:
    delivery_id = store.save_rejected(make_delivery(body=b"\xff\xfe not json"), status_code=400,
                                      error="body is not valid UTF-8", source="keygen",
                                      signature_status="unsigned")
    record = store.get_delivery(delivery_id, with_body=True)
    assert record["body"] == b"\xff\xfe not json"
    assert (record["status_code"], record["error"]) == (400, "body is not valid UTF-8")
    assert record["event_id"] is None
    assert record["signature_status"] == "unsigned"
    assert store.event_counts() == {"events": 0, "deliveries": 1}


def test_store_save_rejected_without_body_keeps_size(store: Store) -> None:
    delivery_id = store.save_rejected(make_delivery(body=b"x" * 10), status_code=413,
                                      error="too large", keep_body=False)
    record = store.get_delivery(delivery_id, with_body=True)
    assert record["body"] is None
    assert record["status_code"] == 413


def test_store_unknown_ids_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as caught:
        store.get_event(999)
    assert caught.value.status == 404
    with pytest.raises(NotFound):
        store.get_delivery(999)


# -- keyset paging ------------------------------------------------------------------------


def test_store_keyset_paging_over_120_events(store: Store) -> None:
    saved = [save(store, f"evt-{n:03d}").event_id for n in range(120)]
    pages: list[list[int]] = []
    cursor: int | None = None
    nexts: list[str | None] = []
    while True:
        events, next_cursor = store.list_events(EventFilters(), limit=50, cursor=cursor)
        pages.append(ids(events))
        nexts.append(next_cursor)
        if next_cursor is None:
            break
        cursor = int(next_cursor)
        assert len(pages) < 10
    assert [len(page) for page in pages] == [50, 50, 20]
    assert nexts[-1] is None and all(nexts[:-1])
    flat = [event_id for page in pages for event_id in page]
    assert len(set(flat)) == 120
    assert flat == sorted(saved, reverse=True)  # newest first, no overlap, no gap


def test_store_paging_exact_multiple_ends_with_no_next(store: Store) -> None:
    for n in range(10):
        save(store, f"evt-{n}")
    first, next_cursor = store.list_events(EventFilters(), limit=5)
    assert next_cursor is not None
    second, last = store.list_events(EventFilters(), limit=5, cursor=int(next_cursor))
    assert len(first) == len(second) == 5
    assert last is None
    assert set(ids(first)).isdisjoint(ids(second))


def test_store_paging_keeps_filters_across_pages(store: Store) -> None:
    for n in range(30):
        save(store, f"evt-{n}", source="keygen" if n % 3 else "licensespring")
    seen: list[int] = []
    cursor: int | None = None
    while True:
        events, next_cursor = store.list_events(EventFilters(source="licensespring"), limit=4,
                                                cursor=cursor)
        assert {event.source for event in events} == {"licensespring"}
        seen.extend(ids(events))
        if next_cursor is None:
            break
        cursor = int(next_cursor)
    assert len(seen) == len(set(seen)) == 10


def test_store_iter_events_walks_every_page(store: Store) -> None:
    for n in range(12):
        save(store, f"evt-{n}")
    assert len(list(store.iter_events(EventFilters(), batch=5))) == 12


# -- filters ------------------------------------------------------------------------------


@pytest.fixture
def varied(store: Store) -> dict[str, int]:
    """A handful of events that differ in every filtered column."""
    rows = {
        "kg-license": dict(event_type="license.created", source="keygen", account="acct-a",
                           subject_id="lic-1", at="2024-01-01T00:00:00.000Z",
                           signature_status="valid"),
        "kg-license-usage": dict(event_type="license.usage.incremented", source="keygen",
                                 account="acct-a", subject_id="lic-1",
                                 at="2024-02-01T00:00:00.000Z", signature_status="invalid"),
        "ls-licenses": dict(event_type="licenses.x", source="licensespring", account="acct-b",
                            subject_id="lic-2", at="2024-03-01T00:00:00.000Z",
                            signature_status="unsigned"),
        "zt-license-bare": dict(event_type="license", source="zentitle", account="acct-b",
                                subject_id="lic-3", at="2024-04-01T00:00:00.000Z",
                                signature_status="unchecked"),
        "fno-ent": dict(event_type="entitlement.updated", source="fno", account="acct-c",
                        subject_id="ent-1", at="2024-05-01T00:00:00.000Z",
                        signature_status="valid"),
        "gen-dash": dict(event_type="license-ish.thing", source="generic", account=None,
                         subject_id=None, at="2024-06-01T00:00:00.000Z",
                         signature_status="unchecked"),
    }
    made: dict[str, int] = {}
    for name, row in rows.items():
        saved = store.save_event(
            make_delivery(received_at=row["at"], endpoint="fno" if row["source"] == "fno"
                          else "default"),
            make_event(name, row["event_type"], source=row["source"], account=row["account"],
                       subject_id=row["subject_id"]),
            row["signature_status"], dispatch_to="ingest-worker",
        )
        made[name] = saved.event_id
    store.record_runs(made["fno-ent"], [run("h", "error", "boom")], trigger="delivery")
    store.record_runs(made["kg-license"], [run("h")], trigger="delivery")
    return made


def found(store: Store, **filters: Any) -> set[str]:
    events, _ = store.list_events(EventFilters(**filters), limit=500)
    return {event.external_id for event in events}


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, {"kg-license", "kg-license-usage", "ls-licenses", "zt-license-bare", "fno-ent",
          "gen-dash"}),
    ({"source": "keygen"}, {"kg-license", "kg-license-usage"}),
    ({"source": "standard"}, set()),
    ({"event_type": "license.created"}, {"kg-license"}),
    ({"event_type": "license"}, {"zt-license-bare"}),
    ({"event_type": "license.*"}, {"kg-license", "kg-license-usage"}),
    ({"event_type": "license.usage.*"}, {"kg-license-usage"}),
    ({"event_type": "licenses.*"}, {"ls-licenses"}),
    ({"event_type": "*"}, {"kg-license", "kg-license-usage", "ls-licenses", "zt-license-bare",
                           "fno-ent", "gen-dash"}),
    ({"endpoint": "fno"}, {"fno-ent"}),
    ({"account": "acct-b"}, {"ls-licenses", "zt-license-bare"}),
    ({"subject_id": "lic-1"}, {"kg-license", "kg-license-usage"}),
    ({"signature_status": "valid"}, {"kg-license", "fno-ent"}),
    ({"signature_status": "unchecked"}, {"zt-license-bare", "gen-dash"}),
    ({"dispatch_status": "failed"}, {"fno-ent"}),
    ({"dispatch_status": "done"}, {"kg-license"}),
    ({"dispatch_status": "pending"}, {"kg-license-usage", "ls-licenses", "zt-license-bare",
                                      "gen-dash"}),
    ({"since": "2024-03-01T00:00:00.000Z"}, {"ls-licenses", "zt-license-bare", "fno-ent",
                                             "gen-dash"}),
    ({"until": "2024-03-01T00:00:00.000Z"}, {"kg-license", "kg-license-usage"}),
    ({"since": "2024-02-01T00:00:00.000Z", "until": "2024-04-01T00:00:00.000Z"},
     {"kg-license-usage", "ls-licenses"}),
    ({"source": "keygen", "signature_status": "invalid", "event_type": "license.*"},
     {"kg-license-usage"}),
])
def test_store_event_filters(store: Store, varied: dict[str, int], filters: dict[str, Any],
                             expected: set[str]) -> None:
    assert found(store, **filters) == expected


def test_store_prefix_filter_excludes_lookalikes(store: Store, varied: dict[str, int]) -> None:
    types = {event.event_type for event in
             store.list_events(EventFilters(event_type="license.*"), limit=500)[0]}
    assert types == {"license.created", "license.usage.incremented"}
    assert "licenses.x" not in types and "license" not in types
    assert "license-ish.thing" not in types


# -- full-text search ---------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_store_search_finds_events_saved_after_the_watermark(store: Store) -> None:
    save(store, "early", data={"word": "aardvark"})
    assert store.catch_up_search() == 1
    upto = store.conn.execute("SELECT indexed_upto FROM search_state").fetchone()[0]
    assert upto >= 1
    # Saved after the index caught up: found by the next search without a separate step,
    # and the search itself writes nothing (the background upkeep indexes).
    late = save(store, "late", data={"word": "aardvark zebra"})
    assert late.event_id > upto
    assert found(store, q="aardvark") == {"early", "late"}
    assert found(store, q="zebra") == {"late"}
    assert store.conn.execute("SELECT indexed_upto FROM search_state").fetchone()[0] == upto
    assert store.catch_up_search() == 1
    assert found(store, q="zebra") == {"late"}


def test_store_catch_up_search_counts_and_batches(store: Store) -> None:
    for n in range(7):
        save(store, f"evt-{n}", data={"colour": "turquoise"})
    assert store.catch_up_search(batch=3) == 7
    assert store.catch_up_search() == 0
    assert len(found(store, q="turquoise")) == 7


def test_store_search_covers_record_fields(store: Store) -> None:
    save(store, "evt-fields", "machine.heartbeat.dead", account="acct-zz9", actor="robot-7",
         subject_id="mach-42", data={"nothing": "here"})
    save(store, "evt-other", data={"nothing": "here"})
    assert found(store, q="acct-zz9") == {"evt-fields"}
    assert found(store, q="mach-42") == {"evt-fields"}
    assert found(store, q="robot-7") == {"evt-fields"}
    assert found(store, q="heartbeat") == {"evt-fields"}
    assert found(store, q="evt-other") == {"evt-other"}


def test_store_search_combines_with_filters_and_paging(store: Store) -> None:
    for n in range(6):
        save(store, f"evt-{n}", source="keygen" if n % 2 else "fno", data={"w": "quokka"})
    save(store, "evt-none", source="keygen", data={"w": "wombat"})
    events, next_cursor = store.list_events(EventFilters(q="quokka", source="keygen"), limit=2)
    assert len(events) == 2 and next_cursor is not None
    rest, last = store.list_events(EventFilters(q="quokka", source="keygen"), limit=2,
                                   cursor=int(next_cursor))
    assert len(rest) == 1 and last is None
    assert {e.external_id for e in events + rest} == {"evt-1", "evt-3", "evt-5"}


@pytest.mark.parametrize("query", [
    'AND OR "',
    "NOT",
    "NEAR(",
    "*",
    "-",
    "a:b",
    "data:foo",
    "^",
    "(",
    "'",
    "license.created",
    "jane.doe@example.com",
    '"',
    '""',
])
def test_store_search_quotes_fts_syntax(store: Store, query: str) -> None:
    save(store, "evt-1", data={"email": "jane.doe@example.com"})
    events, next_cursor = store.list_events(EventFilters(q=query))
    assert next_cursor is None
    if query == "jane.doe@example.com":
        assert ids(events) != []


# -- dispatch leases and handler runs ----------------------------------------------------


def test_store_claim_pending_gives_an_event_to_one_owner(store: Store) -> None:
    event_id = save(store, "evt-claim").event_id
    claimed = store.claim_pending("worker-a", lease_seconds=60)
    assert ids(claimed) == [event_id]
    assert store.claim_pending("worker-b", lease_seconds=60) == []
    assert store.claim_pending("worker-a", lease_seconds=60) == []  # not even the owner twice
    owner = sql(store, "SELECT lease_owner FROM events WHERE id = ?", (event_id,))[0][0]
    assert owner == "worker-a"


def test_store_claim_pending_after_the_lease_runs_out(store: Store) -> None:
    event_id = save(store, "evt-lease").event_id
    assert ids(store.claim_pending("worker-a", lease_seconds=60)) == [event_id]
    # Time travel: worker-a died and its lease ran out.
    sql(store, "UPDATE events SET lease_expires = lease_expires - 3600 WHERE id = ?", (event_id,))
    assert ids(store.claim_pending("worker-b", lease_seconds=60)) == [event_id]
    assert store.claim_pending("worker-c", lease_seconds=60) == []


def test_store_claim_pending_with_a_negative_lease(store: Store) -> None:
    event_id = save(store, "evt-neg").event_id
    assert ids(store.claim_pending("worker-a", lease_seconds=-1)) == [event_id]
    assert ids(store.claim_pending("worker-b", lease_seconds=60)) == [event_id]


def test_store_event_leased_at_save_waits_for_its_lease(store: Store) -> None:
    saved = store.save_event(make_delivery(), make_event("evt-leased"), "unchecked",
                             dispatch_to="ingest-1", lease_seconds=60)
    event = store.get_event(saved.event_id)
    assert event.dispatch_status == "pending"
    assert store.claim_pending("sweeper", lease_seconds=60) == []
    # A duplicate delivery neither re-leases nor frees it.
    again = store.save_event(make_delivery(), make_event("evt-leased"), "unchecked",
                             dispatch_to="ingest-2", lease_seconds=-1)
    assert again.duplicate is True
    assert store.claim_pending("sweeper", lease_seconds=60) == []
    owner = sql(store, "SELECT lease_owner FROM events WHERE id = ?", (saved.event_id,))[0][0]
    assert owner == "ingest-1"
    # ingest-1 died: once its lease ran out a sweeper takes the event over.
    sql(store, "UPDATE events SET lease_expires = lease_expires - 3600 WHERE id = ?",
        (saved.event_id,))
    assert ids(store.claim_pending("sweeper", lease_seconds=60)) == [saved.event_id]


def test_store_claim_pending_by_id_and_limit(store: Store) -> None:
    made = [save(store, f"evt-{n}").event_id for n in range(5)]
    assert ids(store.claim_pending("w", lease_seconds=60, event_id=made[3])) == [made[3]]
    assert ids(store.claim_pending("w", lease_seconds=60, limit=2)) == made[:2]
    assert ids(store.claim_pending("w", lease_seconds=60)) == [made[2], made[4]]


def test_store_claim_pending_skips_settled_events(store: Store) -> None:
    event_id = save(store, "evt-done").event_id
    store.record_runs(event_id, [run("h")], trigger="delivery", owner="w")
    assert store.claim_pending("w", lease_seconds=-1) == []
    assert store.claim_pending("w", lease_seconds=-1, event_id=event_id) == []


def test_store_concurrent_claims_never_share_an_event(store: Store) -> None:
    made = {save(store, f"evt-{n}").event_id for n in range(40)}
    workers = 6
    barrier = threading.Barrier(workers)
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claim(owner: str) -> None:
        barrier.wait()
        mine: list[int] = []
        try:
            while batch := store.claim_pending(owner, lease_seconds=60, limit=3):
                mine.extend(ids(batch))
        except BaseException as error:  # noqa: B036 - reported below
            errors.append(error)
        claims[owner] = mine

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    everything = [event_id for mine in claims.values() for event_id in mine]
    assert sorted(everything) == sorted(made)  # each exactly once


def test_store_record_runs_stores_runs_and_releases_the_lease(store: Store) -> None:
    event_id = save(store, "evt-runs").event_id
    store.claim_pending("w", lease_seconds=60)
    runs = store.record_runs(event_id, [run("a.ok"), run("b.fail", "error", "boom")],
                             trigger="delivery", owner="w")
    assert [(r["handler"], r["status"], r["error"], r["trigger"]) for r in runs] == [
        ("a.ok", "ok", None, "delivery"), ("b.fail", "error", "boom", "delivery")]
    assert all(r["event_id"] == event_id for r in runs)
    assert runs[1]["traceback"].startswith("Traceback")
    assert store.runs_for_event(event_id) == runs
    assert store.get_event(event_id).dispatch_status == "failed"
    lease = sql(store, "SELECT lease_owner, lease_expires FROM events WHERE id = ?",
                (event_id,))[0]
    assert tuple(lease) == (None, None)


def test_store_record_runs_without_handlers_is_done(store: Store) -> None:
    event_id = save(store, "evt-none").event_id
    assert store.record_runs(event_id, [], trigger="delivery") == []
    assert store.get_event(event_id).dispatch_status == "done"


def test_store_dispatch_status_follows_each_handlers_latest_run(store: Store) -> None:
    event_id = save(store, "evt-latest").event_id
    store.record_runs(event_id, [run("a"), run("b", "error", "boom")], trigger="delivery")
    assert store.get_event(event_id).dispatch_status == "failed"
    # Replaying only b, successfully: a's ok and b's newest ok -> done.
    store.record_runs(event_id, [run("b")], trigger="replay")
    assert store.get_event(event_id).dispatch_status == "done"
    latest = store.latest_runs(event_id)
    assert {name: r["status"] for name, r in latest.items()} == {"a": "ok", "b": "ok"}
    assert latest["b"]["trigger"] == "replay"
    # A replay of a that now fails makes it failed again.
    store.record_runs(event_id, [run("a", "error", "again")], trigger="replay")
    assert store.get_event(event_id).dispatch_status == "failed"
    assert len(store.runs_for_event(event_id)) == 4


# -- the secret key -----------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_store_secret_key_is_made_once_and_stable(db_path: str, store: Store) -> None:
    key = store.secret_key()
    assert len(key) >= 32
    assert store.secret_key() == key
    other = SQLiteStore(db_path)
    try:
        assert other.secret_key() == key
    finally:
        other.close()
    path = Path(os.path.abspath(db_path) + ".secret")
    assert path.read_text().strip() == key
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.sqlite_only
def test_store_secret_key_is_what_the_app_uses(make_app: Any, db_path: str) -> None:
    first = make_app()
    second = make_app()
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert Path(db_path + ".secret").read_text().strip() == first.config["SECRET_KEY"]


def test_store_secret_key_race_gives_one_key(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    stores = [SQLiteStore(path) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    keys: list[str] = []

    def read(store: Store) -> None:
        barrier.wait()
        keys.append(store.secret_key())

    threads = [threading.Thread(target=read, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 6 and len(set(keys)) == 1


# -- deliveries ---------------------------------------------------------------------------


def test_store_list_deliveries_filters_and_pages(store: Store) -> None:
    for n in range(5):
        save(store, f"evt-{n}", delivery=make_delivery(endpoint="keygen"))
    store.save_rejected(make_delivery(endpoint="fno"), status_code=401, error="no", source="fno")
    store.save_rejected(make_delivery(endpoint="default"), status_code=400, error="bad")

    def delivery_ids(**filters: Any) -> list[int]:
        rows, _ = store.list_deliveries(DeliveryFilters(**filters), limit=500)
        return [row["id"] for row in rows]

    assert len(delivery_ids()) == 7
    assert len(delivery_ids(endpoint="keygen")) == 5
    assert len(delivery_ids(status_code=401)) == 1
    assert len(delivery_ids(source="fno")) == 1
    assert len(delivery_ids(rejected=True)) == 2
    every = delivery_ids()
    assert every == sorted(every, reverse=True)

    page, next_cursor = store.list_deliveries(DeliveryFilters(), limit=3)
    seen = [row["id"] for row in page]
    while next_cursor is not None:
        page, next_cursor = store.list_deliveries(DeliveryFilters(), limit=3,
                                                  cursor=int(next_cursor))
        seen.extend(row["id"] for row in page)
    assert seen == every
    # The feed: oldest first after an id.
    after, _ = store.list_deliveries(DeliveryFilters(), limit=500, after=every[2])
    assert [row["id"] for row in after] == sorted(every)[-2:]


# -- a database that cannot take the write ------------------------------------------------


@pytest.mark.sqlite_only
def test_store_read_only_database_is_storage_unavailable(store: Store) -> None:
    store.conn.execute("PRAGMA query_only = 1")
    try:
        with pytest.raises(StorageUnavailable) as caught:
            save(store, "evt-ro")
        assert caught.value.status == 503
        with pytest.raises(StorageUnavailable):
            store.save_rejected(make_delivery(), status_code=400, error="x")
        assert not store.conn.in_transaction
    finally:
        store.conn.execute("PRAGMA query_only = 0")
    assert save(store, "evt-ro").duplicate is False  # nothing half-written before


def fill_up(store: Store) -> None:
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")


@pytest.mark.sqlite_only
def test_store_full_database_is_storage_unavailable(store: Store) -> None:
    kept = save(store, "evt-kept")
    fill_up(store)
    big = make_delivery(body=b"x" * 200_000)
    with pytest.raises(StorageUnavailable) as caught:
        save(store, "evt-full", delivery=big)
    assert caught.value.status == 503
    with pytest.raises(StorageUnavailable):
        store.save_rejected(big, status_code=400, error="x")
    assert not store.conn.in_transaction
    # Nothing of the failed writes is left, and the store works once there is room.
    assert store.event_counts() == {"events": 1, "deliveries": 1}
    store.conn.execute("PRAGMA max_page_count = 1073741823")
    assert save(store, "evt-full", delivery=big).event_id != kept.event_id


@pytest.mark.sqlite_only
def test_store_full_database_message_says_full(store: Store) -> None:
    fill_up(store)
    with pytest.raises(StorageUnavailable) as caught:
        save(store, "evt-full", delivery=make_delivery(body=b"x" * 200_000))
    assert "full" in caught.value.message


@pytest.mark.sqlite_only
def test_store_full_database_answers_503_with_retry_after(app: Any, store: Store) -> None:
    fill_up(store)
    client = app.test_client()
    body = b'{"type": "order.paid", "filler": "' + b"x" * 200_000 + b'"}'
    response = client.post("/hooks", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["ok"] is False
    assert store.event_counts() == {"events": 0, "deliveries": 0}



def test_store_forgets_marks_of_links_long_expired(store: Store) -> None:
    """``login_links`` does not grow without end: a mark older than ``LOGIN_NONCE_KEEP`` (its
    link expired long ago, so its signature refuses it) goes with the next link used; a
    recent one stays and still refuses its link."""
    sql(store, "INSERT INTO login_links (nonce, used_at) VALUES (?, ?)",
        ("used-last-january", "2026-01-01T00:00:00.000Z"))
    assert store.use_login_nonce("used-now") is True
    assert store.use_login_nonce("used-now") is False  # kept
    assert sql(store, "SELECT nonce FROM login_links") == [("used-now",)]
