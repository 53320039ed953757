"""Filtered history pages are the same whether they come from the ordered window scan or
from the index fallback (newest first, keyset paging)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.events import Delivery, NormalizedEvent
from receiver.store import EventFilters
from receiver.store import sqlite as store_module

TYPES = ["license.created", "license.expired", "licenses.other", "machine.created",
         "user.password-reset"]
SOURCES = ["keygen", "fno", "generic"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    store = store_module.SQLiteStore(str(tmp_path_factory.mktemp("paging") / "receiver.db"))
    store.migrate()
    rows = []
    for number in range(300):
        event_type = TYPES[(number * 7) % len(TYPES)] if number % 50 else "user.password-reset"
        source = SOURCES[(number * 5) % 3] if number % 40 else "fno"
        saved = store.save_event(
            Delivery(body=b"{}"),
            NormalizedEvent(source=source, event_type=event_type, vendor_event=None,
                            external_id=f"e{number}", occurred_at=None, account=None,
                            actor=None, subject_type=None, subject_id=None, data={}),
            "unchecked")
        rows.append((saved.event_id, source, event_type))
    yield store, rows
    store.close()


def matches(row, source, event_type) -> bool:
    _, row_source, row_type = row
    if source and row_source != source:
        return False
    if event_type and event_type.endswith(".*"):
        return row_type.startswith(event_type[:-1])
    return not event_type or row_type == event_type


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from([None, *SOURCES]),
       event_type=st.sampled_from([None, "license.*", "user.password-reset", "machine.*",
                                   "license.created"]),
       window=st.sampled_from([1, 7, 64, 20_000]), limit=st.sampled_from([1, 5, 50]))
def test_pages_match_a_plain_filter(filled, monkeypatch, source, event_type, window, limit):
    store, rows = filled
    monkeypatch.setattr(store_module, "SCAN_WINDOW", window)
    expected = [row[0] for row in sorted(rows, reverse=True)
                if matches(row, source, event_type)]
    seen: list[int] = []
    cursor = None
    filters = EventFilters(source=source, event_type=event_type)
    while True:
        events, next_cursor = store.list_events(filters, limit=limit, cursor=cursor)
        seen += [event.id for event in events]
        if next_cursor is None:
            break
        cursor = int(next_cursor)
    assert seen == expected


def test_search_alone_pages_through_every_match(tmp_path) -> None:
    store = store_module.SQLiteStore(str(tmp_path / "receiver.db"))
    store.migrate()
    wanted = []
    for number in range(40):
        word = "alpha" if number % 3 else "beta"
        saved = store.save_event(
            Delivery(body=b"{}"),
            NormalizedEvent(source="generic", event_type="x.y", vendor_event=None,
                            external_id=f"s{number}", occurred_at=None, account=None,
                            actor=None, subject_type=None, subject_id=None,
                            data={"note": f"{word} {number}"}),
            "unchecked")
        if word == "alpha":
            wanted.append(saved.event_id)
    seen, cursor = [], None
    while True:
        events, cursor_text = store.list_events(EventFilters(q="alpha"), limit=7, cursor=cursor)
        seen += [event.id for event in events]
        if cursor_text is None:
            break
        cursor = int(cursor_text)
    assert seen == sorted(wanted, reverse=True)
    store.close()
