"""Every request in one stream, filterable by what it came to: ``outcome=accepted``,
``duplicate`` or ``refused`` on ``/deliveries`` and ``GET /api/deliveries``."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .pages import page_of

pytestmark = pytest.mark.both_backends


def post(client: Any, body: dict[str, Any] | bytes) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return int(client.post("/hooks", data=data,
                           headers={"Content-Type": "application/json"}).status_code)


@pytest.fixture
def stream(client: Any) -> dict[str, list[int]]:
    """Two new events, one of them sent again, and one body that is not JSON: the ids of the
    deliveries of each outcome, newest first."""
    assert post(client, {"type": "thing.made", "id": "a"}) == 200
    assert post(client, {"type": "thing.made", "id": "b"}) == 200
    assert post(client, {"type": "thing.made", "id": "a"}) == 200
    assert post(client, b"{not json") == 400
    ids = [d["id"] for d in client.get("/api/deliveries").get_json()["deliveries"]]
    return {"refused": ids[:1], "duplicate": ids[1:2], "accepted": ids[2:]}


@pytest.mark.parametrize("outcome", ["accepted", "duplicate", "refused"])
def test_the_api_filters_deliveries_by_outcome(client: Any, stream: dict[str, list[int]],
                                               outcome: str) -> None:
    answer = client.get(f"/api/deliveries?outcome={outcome}").get_json()
    assert [d["id"] for d in answer["deliveries"]] == stream[outcome]


def test_the_deliveries_page_filters_by_outcome_and_names_it(
        client: Any, stream: dict[str, list[int]]) -> None:
    page = page_of(client, "/deliveries?outcome=duplicate")
    shown = {int(found) for found in re.findall(r'<tr data-id="(\d+)"', page)}
    assert shown == set(stream["duplicate"])
    assert '<option value="duplicate" selected>' in page


def test_an_unknown_outcome_is_a_400_naming_the_choices(client: Any) -> None:
    answer = client.get("/api/deliveries?outcome=lost")
    assert answer.status_code == 400
    assert "accepted, duplicate, refused" in answer.get_json()["error"]


@pytest.mark.sqlite_only
def test_refused_and_duplicate_pages_are_served_by_partial_indexes(store: Any) -> None:
    from receiver.store import DeliveryFilters
    from receiver.store.where import delivery_filter_terms

    for outcome, index in (("duplicate", "deliveries_duplicate"),
                           ("refused", "deliveries_refused")):
        where, params = delivery_filter_terms(DeliveryFilters(outcome=outcome))
        plan = " ".join(str(row) for row in store.rows(
            f"EXPLAIN QUERY PLAN SELECT id FROM deliveries WHERE {' AND '.join(where)}"
            " ORDER BY id DESC LIMIT 50", params))
        assert index in plan
