"""Search while the index has a backlog (after a bulk load or a copy): a search reads the
index and scans the newest unindexed events itself, says how many it could not see, and never
writes; the background upkeep indexes the backlog in short batches. On both backends (SQLite:
past the index's watermark; PostgreSQL: in its search queue), with the same answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from receiver.store import EventFilters, Store, open_store, postgres_search, sqlite_search
from receiver.store import postgres as postgres_backend
from receiver.store.postgres import PostgresStore
from receiver.store.upkeep import (
    SEARCH_BATCH,
    SEARCH_BUDGET_BUSY,
    SEARCH_BUDGET_QUIET,
    SEARCH_DEFER_WHILE_BUSY,
    SEARCH_MIN_BATCH,
    Upkeep,
)

from . import bulk
from .conftest import Server
from .waiting import wait_for

pytestmark = pytest.mark.both_backends

RECENT_SCAN = sqlite_search.RECENT_SCAN
PG_RECENT_SCAN = postgres_search.RECENT_SCAN
SCAN = 50  # the newest unindexed events a search scans (RECENT_SCAN), small for the tests


def test_a_backlog_left_while_events_arrive_is_one_searches_scan() -> None:
    assert SEARCH_DEFER_WHILE_BUSY < RECENT_SCAN
    assert PG_RECENT_SCAN == RECENT_SCAN


@pytest.fixture(autouse=True)
def small_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_search, "RECENT_SCAN", SCAN)
    monkeypatch.setattr(postgres_search, "RECENT_SCAN", SCAN)


@pytest.fixture
def loaded(db_path: str) -> Iterator[Store]:
    """300 events, all with the word ``otter``; none indexed yet."""
    bulk.fill(db_path, 300, word="otter")
    store = open_store(db_path)
    store.migrate()
    yield store
    store.close()


def search_ids(store: Store, limit: int = 500, **filters: Any) -> list[int]:
    """Every match, page by page, newest first."""
    found: list[int] = []
    cursor = None
    while True:
        events, next_cursor = store.list_events(EventFilters(q="otter", **filters),
                                                limit=limit, cursor=cursor)
        found += [event.id for event in events]
        if next_cursor is None:
            return found
        cursor = int(next_cursor)


def indexed(store: Store) -> int:
    """How many events the search index holds."""
    if isinstance(store, PostgresStore):
        return int(store.one("SELECT count(*) FROM event_search")[0])
    return int(store.conn.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM events_fts_docsize").fetchone()[0])


def test_search_with_a_backlog_sees_the_index_and_the_newest_events(loaded: Store) -> None:
    assert loaded.index_search(100) == 100
    # Indexed: 1-100. Scanned at search time: the newest 50 (251-300). Between: 150.
    assert search_ids(loaded) == [*range(300, 250, -1), *range(100, 0, -1)]
    assert loaded.not_yet_searchable() == 150


def test_search_pages_cross_from_the_scanned_events_into_the_index(loaded: Store) -> None:
    loaded.index_search(100)
    assert search_ids(loaded, limit=7) == search_ids(loaded, limit=500)
    assert len(search_ids(loaded, limit=7)) == 150


def test_search_with_filters_and_a_backlog(loaded: Store) -> None:
    loaded.index_search(100)
    keygen = search_ids(loaded, source="keygen")  # bulk: every third event (n % 3 == 0)
    assert keygen == [n for n in search_ids(loaded) if n % 3 == 0]
    assert keygen and keygen[0] > 250 and keygen[-1] <= 100


def test_search_with_a_backlog_writes_nothing(loaded: Store) -> None:
    search_ids(loaded)
    loaded.not_yet_searchable()
    assert indexed(loaded) == 0
    if isinstance(loaded, PostgresStore):
        assert loaded.one("SELECT count(*) FROM search_queue")[0] == 300
    else:
        assert loaded.conn.execute(  # type: ignore[attr-defined]
            "SELECT indexed_upto FROM search_state").fetchone()[0] == 0


def test_search_keeps_up_with_new_and_indexed_events(loaded: Store, db_path: str) -> None:
    assert search_ids(loaded) == list(range(300, 250, -1))
    bulk.fill(db_path, 20, first=301, word="otter")  # arrive after the first search
    assert search_ids(loaded) == list(range(320, 270, -1))  # still the newest 50
    assert loaded.not_yet_searchable() == 270
    loaded.index_search(290)  # the index overtakes part of what the search scanned
    assert search_ids(loaded) == list(range(320, 0, -1))  # each once, none missing
    assert loaded.not_yet_searchable() == 0


def test_a_large_backlog_is_estimated_by_its_ids_not_counted(
        loaded: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Counting a million rows read every page of them (0.8 s on SQLite, on every search):
    # beyond EXACT_COUNT_UP_TO the span of the ids stands for the count, an upper bound.
    monkeypatch.setattr(sqlite_search, "EXACT_COUNT_UP_TO", 100)
    monkeypatch.setattr(postgres_search, "EXACT_COUNT_UP_TO", 100)
    loaded.purge("2024-01-01T00:02:00.000Z")  # the oldest 119 events gone
    # SQLite spans the ids past the index's watermark (0): the purged ones are in it;
    # PostgreSQL spans its search queue, whose ends the purge moved.
    spanned = 300 - 119 if isinstance(loaded, PostgresStore) else 300
    assert loaded.not_yet_searchable() == spanned - SCAN
    monkeypatch.setattr(sqlite_search, "EXACT_COUNT_UP_TO", 1000)
    monkeypatch.setattr(postgres_search, "EXACT_COUNT_UP_TO", 1000)
    assert loaded.not_yet_searchable() == 300 - 119 - SCAN


def test_not_yet_searchable_counts_events_not_ids(loaded: Store) -> None:
    loaded.purge("2024-01-01T00:02:00.000Z")  # the first 119 (one a second from 00:00:01)
    assert loaded.not_yet_searchable() == 300 - 119 - SCAN
    assert search_ids(loaded) == list(range(300, 250, -1))


def test_index_search_goes_in_bounded_batches_until_caught_up(loaded: Store) -> None:
    steps = []
    while step := loaded.index_search(64):
        steps.append(step)
        assert indexed(loaded) == sum(steps)
    assert steps == [64, 64, 64, 64, 44]
    assert loaded.not_yet_searchable() == 0
    assert search_ids(loaded) == list(range(300, 0, -1))


@pytest.mark.sqlite_only
def test_fts5_never_merges_inside_an_indexing_transaction(loaded: Store) -> None:
    # SearchIndex.index merges in bounded steps of its own instead.
    config = dict(loaded.conn.execute(  # type: ignore[attr-defined]
        "SELECT k, v FROM events_fts_config"))
    assert config["automerge"] == 0
    while loaded.index_search(10):
        pass
    assert search_ids(loaded) == list(range(300, 0, -1))


def test_upkeep_indexes_the_backlog_a_batch_at_a_time(loaded: Store) -> None:
    limits: list[int] = []
    index_search = loaded.index_search

    def recorded(limit: int = SEARCH_BATCH, *, min_backlog: int = 0) -> int:
        limits.append(limit)
        return index_search(limit, min_backlog=min_backlog)

    loaded.index_search = recorded  # type: ignore[method-assign]
    upkeep = Upkeep(loaded, {})
    total = 0
    for tick in range(50):
        upkeep.run_once(tick)
        total = indexed(loaded)
        if total == 300:
            break
    assert total == 300 and loaded.not_yet_searchable() == 0
    # Full batches, or fewer when a batch would not fit the tick's budget.
    assert limits[0] == SEARCH_BATCH and all(0 < limit <= SEARCH_BATCH for limit in limits)


def test_upkeep_takes_no_more_than_fit_its_budget() -> None:
    upkeep = Upkeep(object(), {})  # type: ignore[arg-type] (no store needed)
    assert upkeep._search_batch(SEARCH_BUDGET_BUSY) == SEARCH_BATCH  # nothing measured
    upkeep._seconds_per_event = 0.0001  # 0.1 ms an event: PostgreSQL's order
    assert upkeep._search_batch(SEARCH_BUDGET_BUSY) == 250
    assert upkeep._search_batch(SEARCH_BUDGET_QUIET) == SEARCH_BATCH
    upkeep._seconds_per_event = 0.01
    assert upkeep._search_batch(SEARCH_BUDGET_BUSY) == SEARCH_MIN_BATCH


def test_one_process_indexes_and_another_takes_over_when_it_is_gone(
        loaded: Store, db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_backend, "UPKEEP_RECHECK_SECONDS", 0)  # take over at once
    other = open_store(db_path)  # as another worker process (or node) would open it
    first, second = Upkeep(loaded, {}), Upkeep(other, {})
    try:
        first.index_search()  # the first look sees events arriving: a small backlog waits
        assert first.index_search() == 300  # ingest is quiet: all of it
        assert loaded.claim_upkeep("search-index")
        assert not other.claim_upkeep("search-index")
        bulk.fill(db_path, 20, first=301, word="otter")
        second.index_search()
        assert second.index_search() == 0
        loaded.close()  # the indexing process is gone
        assert second.index_search() == 20
    finally:
        other.close()


def test_upkeep_leaves_a_small_backlog_while_events_arrive(
        loaded: Store, db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_search, "RECENT_SCAN", RECENT_SCAN)
    monkeypatch.setattr(postgres_search, "RECENT_SCAN", RECENT_SCAN)
    upkeep = Upkeep(loaded, {})
    upkeep.index_search()
    upkeep.index_search()  # quiet: the 300 are indexed
    bulk.fill(db_path, 100, first=301, word="otter")
    assert upkeep.index_search() == 0  # events arrived: 100 wait, a search scans them
    assert search_ids(loaded)[:100] == list(range(400, 300, -1))
    bulk.fill(db_path, SEARCH_DEFER_WHILE_BUSY, first=401, word="otter")
    assert upkeep.index_search() > 0  # still arriving, but past the threshold
    assert upkeep.index_search() > 0 or indexed(loaded) == 2400  # quiet again
    while upkeep.index_search():
        pass
    assert indexed(loaded) == 2400 and loaded.not_yet_searchable() == 0


@pytest.mark.sqlite_only
def test_indexing_leaves_the_end_of_a_size_cap_to_deliveries(db_path: str) -> None:
    bulk.fill(db_path, 300, word="otter")
    store = open_store(db_path, max_size=1)  # already past the cap: no room to grow
    try:
        assert store.index_search(100) == 0
        assert store.not_yet_searchable() == 300 - SCAN
    finally:
        store.close()


# Words that FTS5 (unicode61) and the PostgreSQL backend must cut alike: accents, digits
# that are no ASCII, quoted phrases, phrases that would span two fields.
WORDY = {
    "accent": ({"name": "Café Noir"}, {}),
    "superscript": ({"note": "x²y and ½"}, {}),
    "phrase": ({"note": "alpha beta"}, {}),
    "apart": ({"first": "alpha", "second": "beta"}, {}),
    "fields": ({"note": "nothing"}, {"account": "zeta", "actor": "eta"}),
}
QUERIES = {
    "cafe": {"accent"}, "CAFÉ noir": {"accent"}, "x²y": {"superscript"},
    "x": set(), "½": {"superscript"}, '"alpha beta"': {"phrase"},
    "alpha beta": {"phrase", "apart"}, "beta alpha": {"phrase", "apart"},
    '"beta alpha"': set(), "zeta eta": {"fields"}, '"zeta eta"': set(),
    '"zeta': {"fields"}, "alpha -": {"phrase", "apart"}, 'AND OR "': set(),
}


def test_search_means_the_same_on_both_backends_indexed_or_not(db_path: str) -> None:
    """The same answers on SQLite and PostgreSQL, whether the events are still waiting for
    the index (matched at search time) or indexed."""
    from receiver.events import Delivery, NormalizedEvent

    store = open_store(db_path)
    store.migrate()
    try:
        ids = {}
        for name, (data, fields) in WORDY.items():
            event = NormalizedEvent(
                source="generic", event_type="note.added", vendor_event=None,
                external_id=name, occurred_at=None, account=fields.get("account"),
                actor=fields.get("actor"), subject_type=None, subject_id=None, data=data)
            ids[store.save_event(Delivery(body=b"{}"), event, "unchecked").event_id] = name
        for stage in ("waiting", "indexed"):
            for query, expected in QUERIES.items():
                events, _ = store.list_events(EventFilters(q=query))
                assert {ids[event.id] for event in events} == expected, (stage, query)
            store.catch_up_search()
    finally:
        store.close()


def test_a_served_receiver_indexes_the_backlog_in_the_background(
        db_path: str, serve: Any) -> None:
    """Through ``receiver serve`` (gunicorn workers, their upkeep threads): the backlog
    shrinks to nothing by itself and every event is found."""
    bulk.fill(db_path, 8000, word="otter")
    server: Server = serve("--workers", "2", database=db_path)
    import requests

    def answer(cursor: str | None = None) -> dict[str, Any]:
        query = {"q": "otter", "limit": "500", **({"cursor": cursor} if cursor else {})}
        result: dict[str, Any] = requests.get(server.url + "/api/events", params=query,
                                              timeout=30).json()
        return result

    first = answer()
    assert len(first["events"]) == 500 and first["events"][0]["id"] == 8000
    wait_for(lambda: answer()["not_yet_searchable"] == 0, timeout=120, interval=0.2,
             message=lambda: "the backlog was not indexed:\n" + server.output()[-2000:])
    found, cursor = 0, None
    while True:
        page = answer(cursor)
        assert page["not_yet_searchable"] == 0, server.output()[-2000:]
        found += len(page["events"])
        cursor = page["next"]
        if cursor is None:
            break
    assert found == 8000


# -- what users see ------------------------------------------------------------------------


@pytest.fixture
def client(db_path: str, make_app: Any) -> Any:
    bulk.fill(db_path, 300, word="otter")
    app = make_app()
    app.extensions["receiver.store"].index_search(100)
    return app.test_client()


def test_api_search_says_how_many_events_are_not_yet_searchable(client: Any) -> None:
    answer = client.get("/api/events?q=otter&limit=60").get_json()
    assert answer["not_yet_searchable"] == 150
    assert [event["id"] for event in answer["events"]] == [*range(300, 250, -1),
                                                           *range(100, 90, -1)]
    assert "not_yet_searchable" not in client.get("/api/events").get_json()


def test_history_page_says_how_many_events_are_not_yet_searchable(client: Any) -> None:
    page = " ".join(client.get("/?q=otter").get_data(as_text=True).split())
    assert "150 recent events are not searchable yet" in page
    assert "not searchable yet" not in client.get("/").get_data(as_text=True)


def test_export_of_a_search_says_what_it_could_not_see(client: Any) -> None:
    lines = client.get("/api/export.ndjson?q=otter").get_data(as_text=True).splitlines()
    complete = json.loads(lines[-1])
    assert complete == {"complete": True, "count": 150, "not_yet_searchable": 150}
    assert len(lines) == 151


def test_search_answers_without_a_backlog_say_zero(make_app: Any) -> None:
    client = make_app().test_client()
    assert client.get("/api/events?q=otter").get_json()["not_yet_searchable"] == 0
