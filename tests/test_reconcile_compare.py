"""Which vendor events are ours, which are missing, and whether the vendor fails to reach
us: the pure part of reconcile (receiver/reconcile/compare.py)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from receiver.reconcile import compare
from receiver.reconcile.base import DELIVERED, FAILING, IN_FLIGHT, VendorEvent

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
URL = "https://hooks.example.com/hooks/keygen"


def vendor_event(vendor_id: str, token: str | None = None, *, state: str = DELIVERED,
                 url: str = URL, minutes_ago: float = 10) -> VendorEvent:
    created = (NOW - dt.timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    status = {DELIVERED: "DELIVERED", FAILING: "FAILED", IN_FLIGHT: "DELIVERING"}[state]
    return VendorEvent(vendor_id, "license.created", token or f"token-{vendor_id}", url,
                       status, state, created)


def test_urls_compare_as_senders_compare_them() -> None:
    assert compare.url_key("HTTPS://Hooks.Example.com:443/hooks/keygen") == compare.url_key(URL)
    assert compare.url_key("https://hooks.example.com") == compare.url_key(
        "https://hooks.example.com/")
    assert compare.url_key(URL + "?x=1") != compare.url_key(URL)
    assert compare.url_key(URL.replace("keygen", "Keygen")) != compare.url_key(URL)
    assert compare.url_key("https://hooks.example.com:8443/hooks/keygen") != compare.url_key(URL)


def test_only_events_sent_to_the_endpoint_url_are_ours() -> None:
    mine = vendor_event("1")
    other = vendor_event("2", url="https://staging.example.com/hooks/keygen")
    assert compare.ours([mine, other], URL) == [mine]


def test_an_event_without_a_stored_key_is_missing() -> None:
    events = [vendor_event("3"), vendor_event("2"), vendor_event("1")]
    assert compare.missing(events, {"token-2"}, NOW) == [events[0], events[2]]


def test_a_resend_shares_its_key_and_the_newest_of_them_stands_for_it() -> None:
    resent = vendor_event("new", "same", state=FAILING, minutes_ago=5)
    first = vendor_event("old", "same", state=FAILING, minutes_ago=50)
    assert compare.missing([resent, first], set(), NOW) == [resent]
    assert compare.missing([resent, first], {"same"}, NOW) == []


def test_a_delivery_in_flight_is_not_missing_until_the_grace_is_over() -> None:
    sending = vendor_event("1", "key", state=IN_FLIGHT, minutes_ago=1)
    assert compare.missing([sending], set(), NOW) == []
    stuck = vendor_event("1", "key", state=IN_FLIGHT, minutes_ago=30)
    assert compare.missing([stuck], set(), NOW) == [stuck]
    # A resend in flight covers the failed first attempt with the same key.
    assert compare.missing([sending, vendor_event("0", "key", state=FAILING)], set(), NOW) == []


def test_failing_counts_the_failures_since_the_last_delivery_that_got_through() -> None:
    newest_failed = vendor_event("4", state=FAILING)
    events = [vendor_event("5", state=IN_FLIGHT), newest_failed, vendor_event("3", state=FAILING),
              vendor_event("2"), vendor_event("1", state=FAILING)]
    assert compare.failing(events) == 2
    assert compare.failing([vendor_event("9"), *events]) == 0
    assert compare.failing([]) == 0
    tally = compare.Tally(NOW)
    tally.add(events[:2], set())
    tally.add(events[2:], set())  # batches add up as one list would
    assert (tally.failing, tally.newest_failing, tally.checked) == (2, newest_failed, 5)


keys = st.sampled_from(["a", "b", "c", "d"])
states = st.sampled_from([DELIVERED, FAILING, IN_FLIGHT])


@given(st.lists(st.tuples(keys, states, st.integers(0, 600))), st.sets(keys),
       st.integers(1, 5))
def test_missing_names_each_unstored_key_at_most_once_whatever_the_batches(
        rows: list[tuple[str, str, int]], stored: set[str], size: int) -> None:
    events = [vendor_event(str(n), key, state=state, minutes_ago=age)
              for n, (key, state, age) in enumerate(rows)]
    gaps = compare.missing(events, stored, NOW)
    tally = compare.Tally(NOW)
    for start in range(0, len(events), size):
        tally.add(events[start:start + size], stored)
    assert tally.missing == gaps
    tokens = [gap.token for gap in gaps]
    assert len(tokens) == len(set(tokens))
    assert not set(tokens) & stored
    assert set(tokens) <= {event.token for event in events}
