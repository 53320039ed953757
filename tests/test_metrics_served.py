"""``GET /-/metrics`` of a real ``receiver serve --workers 2``, parsed with
``prometheus_client.parser``: after known traffic the counts equal what was sent, whichever
worker answers the scrape (counts from the database; the ingest histogram adds up both
workers' files in prometheus_client's multiprocess mode)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .test_reliability import install_plugin

pytestmark = pytest.mark.both_backends

PLUGIN = '''\
from receiver import on


@on("order.*", name="shop.sync")
def sync(event, **extra):
    if event.data.get("fail"):
        raise RuntimeError("shop unreachable")
'''


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(url + "/-/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def test_metrics_of_two_workers_equal_what_was_sent(serve: Any, db_path: str,
                                                    tmp_path: Path) -> None:
    install_plugin(tmp_path / "site", "shop_hooks", PLUGIN)
    server = serve("--workers", "2", database=db_path,
                   env={"PYTHONPATH": str(tmp_path / "site"), "RECEIVER_DISPATCH": "sync",
                        "RECEIVER_METRICS_OPEN": "true",
                        "RECEIVER_INSPECTOR_TOKEN": "not-needed-for-metrics"})

    def send(body: bytes, path: str = "/hooks") -> int:
        return requests.post(server.url + path, data=body, timeout=10,
                             headers={"Content-Type": "application/json"}).status_code

    new = [json.dumps({"type": "order.paid", "id": f"o-{n}", "fail": n % 4 == 0}).encode()
           for n in range(24)]
    with ThreadPoolExecutor(8) as pool:  # several connections at once: both workers serve
        statuses = list(pool.map(send, new))
        statuses += list(pool.map(send, new[:6]))  # retries: duplicates
        statuses += list(pool.map(lambda n: send(b'{"broken', "/hooks/shop"), range(5)))
    assert statuses == [200] * 30 + [400] * 5

    found = scrape(server.url)
    assert found[("receiver_deliveries_total", (("endpoint", "default"), ("source", "generic"),
                                                 ("status", "200")))] == 30
    # /hooks/shop is an ad-hoc channel (not configured): folded into one label value, so
    # names anyone may post to cannot grow the series.
    assert found[("receiver_deliveries_total", (("endpoint", "_other"), ("source", ""),
                                                 ("status", "400")))] == 5
    assert found[("receiver_signature_verdicts_total", (
        ("endpoint", "default"), ("source", "generic"), ("verdict", "unchecked")))] == 30
    assert found[("receiver_handler_runs_total", (("handler", "shop.sync"),
                                                   ("status", "ok")))] == 18
    assert found[("receiver_handler_runs_total", (("handler", "shop.sync"),
                                                   ("status", "error")))] == 6
    assert found[("receiver_events_pending", ())] == 0
    assert found[("receiver_ingest_seconds_count", ())] == 35  # both workers' observations
    assert found[("receiver_ingest_seconds_bucket", (("le", "+Inf"),))] == 35
    # Every scrape, whichever worker answers, says the same.
    for _ in range(4):
        again = scrape(server.url)
        assert again[("receiver_ingest_seconds_count", ())] == 35
    assert requests.get(server.url + "/api/events", timeout=5).status_code == 401
