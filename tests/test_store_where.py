"""The list filters' WHERE terms, shared by both backends: their SQL, and what they select
from a real table against the same filters applied in Python."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.store.base import DeliveryFilters, EventFilters
from receiver.store.where import (
    delivery_filter_terms,
    event_filter_terms,
    event_type_condition,
)


def test_event_type_condition_exact_prefix_and_any():
    assert event_type_condition("license.created") == ("event_type = ?", ["license.created"])
    assert event_type_condition("license.*", mark="%s") == (
        "event_type >= %s AND event_type < %s", ["license.", "license/"])
    assert event_type_condition("*") == (None, [])
    assert event_type_condition(None) == (None, [])


def test_prefix_keeps_the_planner_off_indexes_but_not_off_received_at():
    where, params = event_filter_terms(
        EventFilters(source="keygen", event_type="license.*", since="2026-01-01T00:00:00Z"),
        prefix="+")
    assert where == ["+source = ?", "+event_type >= ? AND +event_type < ?",
                     "received_at >= ?"]
    assert params == ["keygen", "license.", "license/", "2026-01-01T00:00:00Z"]


def test_search_is_left_to_the_backend():
    assert event_filter_terms(EventFilters(q="anything"), mark="%s") == ([], [])


def test_delivery_terms_probe_the_event_for_its_type():
    where, params = delivery_filter_terms(
        DeliveryFilters(endpoint="prod", rejected=True, event_type="user.*",
                        until="2026-02-01T00:00:00Z"), mark="%s")
    assert where == [
        "endpoint = %s",
        "status_code >= 400",
        "EXISTS (SELECT 1 FROM events WHERE events.id = deliveries.event_id"
        " AND event_type >= %s AND event_type < %s)",
        "received_at < %s",
    ]
    assert params == ["prod", "user.", "user/", "2026-02-01T00:00:00Z"]


SOURCES = st.sampled_from(["keygen", "fno", "standard"])
TYPES = st.sampled_from(["license.created", "license.updated", "licenses.x", "user.created",
                         "license"])
TIMES = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z",
                         "2026-01-03T00:00:00Z"])
ROWS = st.lists(st.tuples(SOURCES, TYPES, TIMES, st.sampled_from(["a", "b"])), max_size=25)


def _matches(row: tuple[str, str, str, str], filters: EventFilters) -> bool:
    source, event_type, received_at, subject_id = row
    pattern = filters.event_type
    if pattern and pattern != "*":
        if pattern.endswith(".*"):
            if not event_type.startswith(pattern[:-1]):
                return False
        elif event_type != pattern:
            return False
    return ((filters.source is None or source == filters.source)
            and (filters.subject_id is None or subject_id == filters.subject_id)
            and (filters.since is None or received_at >= filters.since)
            and (filters.until is None or received_at < filters.until))


@settings(max_examples=150, deadline=None)
@given(rows=ROWS, source=st.none() | SOURCES, subject_id=st.none() | st.just("a"),
       event_type=st.none() | TYPES | st.sampled_from(["license.*", "user.*", "*"]),
       since=st.none() | TIMES, until=st.none() | TIMES, unindexed=st.booleans())
def test_terms_select_what_the_filters_mean(rows, source, subject_id, event_type, since,
                                            until, unindexed):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, source, event_type,"
                 " received_at, subject_id, endpoint, account, signature_status,"
                 " dispatch_status)")
    conn.execute("CREATE INDEX events_type ON events (event_type)")
    conn.executemany("INSERT INTO events (source, event_type, received_at, subject_id)"
                     " VALUES (?, ?, ?, ?)", rows)
    filters = EventFilters(source=source, subject_id=subject_id, event_type=event_type,
                           since=since, until=until)
    where, params = event_filter_terms(filters, prefix="+" if unindexed else "")
    sql = "SELECT id FROM events" + (" WHERE " + " AND ".join(where) if where else "")
    found = [row_id for (row_id,) in conn.execute(sql + " ORDER BY id", params)]
    assert found == [index + 1 for index, row in enumerate(rows) if _matches(row, filters)]
