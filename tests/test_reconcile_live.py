"""The periodic reconcile under real gunicorn: two nodes on one database, each with two
workers, recover what Keygen lost by themselves, each event once (docs/nothing-missed.md)."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .fake_keygen import FakeKeygen
from .test_reconcile import REGISTERED, endpoint, toml
from .waiting import wait_for

pytestmark = pytest.mark.both_backends

LOST = 30


@pytest.fixture
def keygen() -> Iterator[FakeKeygen]:
    with FakeKeygen() as fake:
        yield fake


def test_two_nodes_recover_each_lost_event_once(serve: Any, db_path: str, stores: Any,
                                                keygen: FakeKeygen) -> None:
    lost = keygen.add_events(LOST, "license.expired", endpoint_url=REGISTERED, status="FAILED",
                             last_response_body="CONN_REFUSED")
    config = toml(endpoint(keygen))
    env = {"RECEIVER_RECONCILE_EVERY": "1s"}
    nodes = [serve("--workers", "2", env=env, database=db_path, config=config)
             for _ in range(2)]

    def recovered() -> list[dict[str, Any]] | None:
        answer = requests.get(nodes[1].url + "/api/events",
                              params={"signature_status": "fetched", "limit": "100"}, timeout=10)
        events: list[dict[str, Any]] = answer.json()["events"]
        return events if len(events) >= LOST else None

    events = wait_for(recovered, timeout=60, interval=0.2,
                      message=lambda: nodes[0].output() + nodes[1].output())
    assert events is not None
    assert sorted(e["external_id"] for e in events) == sorted(
        item["meta"]["idempotencyToken"] for item in lost)
    assert {e["delivery_count"] for e in events} == {1}

    # Later rounds (once a second) find nothing missing and fetch nothing again.
    def settled() -> dict[str, Any] | None:
        [last] = requests.get(nodes[0].url + "/api/reconcile", timeout=10).json()["endpoints"]
        return last if last["missing"] == 0 and last["error"] is None else None

    last = wait_for(settled, timeout=30, interval=0.2)
    assert last is not None
    assert (last["trigger"], last["checked"], last["vendor_failing"]) == ("schedule", LOST, LOST)
    fetches = collections.Counter(seen.path.rsplit("/", 1)[-1] for seen in keygen.requests
                                  if seen.path.endswith(tuple(i["id"] for i in lost)))
    assert fetches == {item["id"]: 1 for item in lost}
    store = stores(db_path)
    runs = store.list_reconcile_runs("keygen", limit=200)
    assert sum(run["recovered"] for run in runs) == LOST
