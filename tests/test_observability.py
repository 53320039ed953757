"""On both backends: the activity rollups and ``/api/activity``, what changed and
``out_of_order``, handler health and bulk replay (page and CLI), ``/-/metrics`` access."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from receiver import on
from receiver.cli import cli
from receiver.handlers import signals
from receiver.store import ActivityFilters, rollups

from .test_store import make_delivery, make_event

pytestmark = pytest.mark.both_backends

JSON = {"Content-Type": "application/json"}


def at(minute: int, second: int = 0) -> str:
    return f"2026-03-01T10:{minute:02d}:{second:02d}.000Z"


def window(start: str = "2026-03-01T10:00:00Z", end: str = "2026-03-01T10:05:00Z",
           level: str | None = None) -> rollups.Window:
    return rollups.window(rollups.parse_time(start), rollups.parse_time(end), level,
                           dt.datetime.now(dt.UTC))


def traffic(store: Any) -> None:
    """Known deliveries: minute 0 two new keygen events and a retry, minute 1 a new fno
    event and a refused request, minute 3 a new keygen event on endpoint ``kg``."""
    store.save_event(make_delivery(received_at=at(0, 1)), make_event("a"), "valid")
    store.save_event(make_delivery(received_at=at(0, 2)), make_event("b"), "valid")
    store.save_event(make_delivery(received_at=at(0, 3)), make_event("a"), "valid")
    store.save_event(make_delivery(received_at=at(1, 5)),
                     make_event("c", "entitlement.updated", source="fno"), "unsigned")
    store.save_rejected(make_delivery(received_at=at(1, 6)), status_code=400, error="bad")
    store.save_event(make_delivery(received_at=at(3, 0), endpoint="kg"),
                     make_event("d", "license.renewed"), "invalid")


def outcomes(buckets: list[dict[str, Any]]) -> list[tuple[int, int, int, int]]:
    return [(b["new"], b["duplicate"], b["refused"], b["unavailable"]) for b in buckets]


# -- the rollups ------------------------------------------------------------------------------


def test_activity_counts_deliveries_by_outcome_before_and_after_rolling_up(store: Any) -> None:
    traffic(store)
    expected = [(2, 1, 0, 0), (1, 0, 1, 0), (0, 0, 0, 0), (1, 0, 0, 0), (0, 0, 0, 0)]
    assert outcomes(store.activity(window(), ActivityFilters())) == expected  # tail only
    assert store.roll_up(limit=4) == 4  # part rolled, part still in the tail
    assert outcomes(store.activity(window(), ActivityFilters())) == expected
    store.catch_up_rollups()
    assert store.roll_up() == 0
    assert outcomes(store.activity(window(), ActivityFilters())) == expected
    hourly = store.activity(window(level="hour"), ActivityFilters())
    assert hourly == [{"start": "2026-03-01T10:00:00Z", "new": 4, "duplicate": 1, "refused": 1,
                       "unavailable": 0}]


def test_activity_filters_by_source_endpoint_and_type(store: Any) -> None:
    traffic(store)
    store.roll_up(limit=3)
    found = window()
    assert outcomes(store.activity(found, ActivityFilters(source="fno")))[1] == (1, 0, 0, 0)
    assert [b["new"] for b in store.activity(found, ActivityFilters(endpoint="kg"))] == [
        0, 0, 0, 1, 0]
    # A type never matches refused deliveries (they have no event).
    by_type = outcomes(store.activity(found, ActivityFilters(event_type="license.*")))
    assert by_type == [(2, 1, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (1, 0, 0, 0), (0, 0, 0, 0)]


def test_unavailable_answers_are_counted_and_totals_never_shrink(store: Any) -> None:
    traffic(store)
    store.add_unavailable(rollups.unavailable_counts({(at(2), "default", ""): 3}))
    assert outcomes(store.activity(window(), ActivityFilters()))[2] == (0, 0, 0, 3)
    store.catch_up_rollups()
    totals = store.delivery_totals()
    assert totals[("", "default", "", 503, 0, "")] == 3
    assert totals[("keygen", "default", "license.created", 200, 1, "valid")] == 1
    assert sum(totals.values()) == 9
    store.purge_activity(at(2))  # retention forgets the buckets, not the totals
    assert outcomes(store.activity(window(), ActivityFilters()))[:2] == [(0, 0, 0, 0)] * 2
    assert sum(store.delivery_totals().values()) == 9


def test_purge_activity_goes_a_few_buckets_per_transaction(store: Any) -> None:
    """With one rollup row per batch, every bucket before the cutoff still goes (one
    transaction each), per type too; later buckets and the all-time totals stay."""
    traffic(store)
    store.catch_up_rollups()
    store.purge_activity(at(3), event_type="entitlement.*", batch=1)
    assert outcomes(store.activity(window(), ActivityFilters())) == [
        (2, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 0), (1, 0, 0, 0), (0, 0, 0, 0)]
    store.purge_activity(at(3), batch=1)
    assert outcomes(store.activity(window(), ActivityFilters())) == [
        (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (1, 0, 0, 0), (0, 0, 0, 0)]
    assert sum(store.delivery_totals().values()) == 6

def test_unavailable_answers_to_an_endpoint_named_with_nul_are_stored_as_text(
        store: Any) -> None:
    """The endpoint name comes from the path (``/hooks/a%00b``); PostgreSQL's text cannot
    hold U+0000, so it is kept as every row keeps it: U+FFFD."""
    store.add_unavailable(rollups.unavailable_counts({(at(1), "a\x00b", ""): 2}))
    store.catch_up_rollups()
    assert store.delivery_totals()[("", "a\ufffdb", "", 503, 0, "")] == 2
    found = store.activity(window(), ActivityFilters(endpoint="a\x00b"))
    assert outcomes(found)[1] == (0, 0, 0, 2)


def test_deliveries_filter_by_since_and_until(store: Any) -> None:
    from receiver.store import DeliveryFilters

    traffic(store)
    found, _ = store.list_deliveries(DeliveryFilters(since=at(1), until=at(2)))
    assert [d["status_code"] for d in found] == [400, 200]


# -- what changed -----------------------------------------------------------------------------


def license_update(store: Any, external_id: str, occurred_at: str, status: str,
                   expiry: str, key: str = "K" * 20) -> int:
    saved = store.save_event(
        make_delivery(), make_event(external_id, "license.updated", subject_id="lic-1",
                                    occurred_at=occurred_at,
                                    data={"attributes": {"status": status, "expiry": expiry,
                                                         "key": key}}), "valid")
    return int(saved.event_id)


def test_previous_event_out_of_order_and_timeline_links(store: Any) -> None:
    first = license_update(store, "u1", "2026-01-01T00:00:00.000Z", "ACTIVE", "2026-01-01")
    third = license_update(store, "u3", "2026-01-03T00:00:00.000Z", "SUSPENDED", "2027-01-01")
    second = license_update(store, "u2", "2026-01-02T00:00:00.000Z", "ACTIVE", "2026-06-01")
    assert store.previous_event(store.get_event(first)) is None
    assert store.previous_event(store.get_event(third)).id == second  # by occurred_at
    assert store.previous_event(store.get_event(second)).id == first
    assert store.out_of_order_ids([first, second, third]) == {second}
    links = store.timeline_links(store.get_event(first), [first, second, third])
    assert links[third].previous_id == second and not links[third].out_of_order
    assert links[second].previous_id == first and links[second].out_of_order
    assert links[first].previous_id is None


def test_api_changes_and_out_of_order_on_records(client: Any, store: Any) -> None:
    first = license_update(store, "u1", "2026-01-02T00:00:00.000Z", "ACTIVE", "2026-01-01",
                           key="AAAAAAAAAAAAAAAA1111")
    later = license_update(store, "u2", "2026-01-01T00:00:00.000Z", "SUSPENDED", "2027-01-01",
                           key="BBBBBBBBBBBBBBBB2222")
    answer = client.get(f"/api/events/{later}/changes").get_json()
    assert answer["previous_id"] is None  # it happened before the one stored first
    assert answer["out_of_order"] is True
    answer = client.get(f"/api/events/{first}/changes").get_json()
    assert answer == {"previous_id": later, "out_of_order": False, "changes": [
        {"path": "attributes.status", "op": "changed", "old": "SUSPENDED", "new": "ACTIVE"},
        {"path": "attributes.expiry", "op": "changed", "old": "2027-01-01",
         "new": "2026-01-01"},
        {"path": "attributes.key", "op": "changed", "old": "••••••2222", "new": "••••••1111"}]}
    revealed = client.get(f"/api/events/{first}/changes?reveal=1").get_json()
    assert revealed["changes"][2]["new"] == "AAAAAAAAAAAAAAAA1111"
    listed = {e["id"]: e["out_of_order"] for e in client.get("/api/events").get_json()["events"]}
    assert listed == {first: False, later: True}
    assert client.get(f"/api/events/{later}").get_json()["out_of_order"] is True
    assert client.get("/api/events/99999/changes").status_code == 404


def test_event_page_shows_the_changes_and_the_timeline_summary(client: Any, store: Any) -> None:
    license_update(store, "u1", "2026-01-01T00:00:00.000Z", "ACTIVE", "2026-01-01")
    second = license_update(store, "u2", "2026-01-02T00:00:00.000Z", "SUSPENDED", "2027-01-01")
    page = client.get(f"/events/{second}").get_data(as_text=True)
    assert "status ACTIVE → SUSPENDED, expiry 2026-01-01 → 2027-01-01" in page
    assert "attributes.status" in page and "K" * 20 not in page


# -- /api/activity ------------------------------------------------------------------------------


def test_api_activity_answers_the_contract_shape(client: Any, store: Any) -> None:
    traffic(store)
    answer = client.get("/api/activity?bucket=minute&since=2026-03-01T10:00:00Z"
                        "&until=2026-03-01T10:02:00Z&source=keygen").get_json()
    assert answer == {"bucket": "minute", "buckets": [
        {"start": "2026-03-01T10:00:00Z", "new": 2, "duplicate": 1, "refused": 0,
         "unavailable": 0},
        {"start": "2026-03-01T10:01:00Z", "new": 0, "duplicate": 0, "refused": 0,
         "unavailable": 0}]}
    chosen = client.get("/api/activity?since=2026-03-01&until=2026-03-03").get_json()
    assert chosen["bucket"] == "hour" and len(chosen["buckets"]) == 48


@pytest.mark.parametrize("query", ["bucket=week", "since=yesterday", "source=nobody",
                                   "since=2026-03-02&until=2026-03-01",
                                   "bucket=minute&since=2020-01-01&until=2026-01-01",
                                   "event_type=no%20spaces"])
def test_api_activity_bad_parameters_are_400(client: Any, query: str) -> None:
    response = client.get(f"/api/activity?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["ok"] is False


def test_history_chart_bars_link_to_their_bucket(client: Any, store: Any) -> None:
    traffic(store)
    page = client.get("/?since=2026-03-01T10:00:00Z&until=2026-03-01T10:05:00Z"
                      ).get_data(as_text=True)
    assert 'data-start="2026-03-01T10:00:00Z" data-total="3"' in page
    assert ("href=\"/?since=2026-03-01T10%3A01%3A00Z&amp;until=2026-03-01T10%3A02%3A00Z\""
            in page)
    fragment = client.get("/activity?for=deliveries&source=fno&since=2026-03-01T10:00:00Z"
                          "&until=2026-03-01T10:05:00Z")
    assert fragment.status_code == 200
    assert 'data-start="2026-03-01T10:01:00Z" data-total="1"' in fragment.get_data(as_text=True)


# -- handler health -----------------------------------------------------------------------------


@pytest.fixture
def flaky() -> Iterator[dict[str, Any]]:
    """A handler on license.* that fails while ``fail`` is set."""
    before = signals.registry_keys()
    state = {"fail": True}

    @on("license.*", name="tests.obs.flaky", retries=0)
    def handle(event: Any, **extra: Any) -> None:
        if state["fail"]:
            raise RuntimeError(f"CRM down for {event.subject_id}")

    yield state
    signals.unregister(signals.registry_keys() - before)


def ingest(client: Any, store: Any, external_id: str, event_type: str = "license.created") -> int:
    """Store an event leased to the app's dispatcher and run it (DISPATCH=sync)."""
    app = client.application
    saved = store.save_event(make_delivery(), make_event(external_id, event_type), "valid",
                             dispatch_to=app.extensions["receiver.dispatcher"].owner)
    app.extensions["receiver.dispatcher"].submit(saved.event_id)
    return int(saved.event_id)


def test_handler_stats_pending_and_failed_events(client: Any, store: Any, flaky: Any) -> None:
    first = ingest(client, store, "h1")
    second = ingest(client, store, "h2")
    store.roll_up(limit=1)
    stats = store.handler_stats()["tests.obs.flaky"]
    assert (stats.runs, stats.failures) == (2, 2)
    last = store.get_runs([stats.last_failure_id])[stats.last_failure_id]
    assert last["event_id"] == second and last["error"].startswith("RuntimeError: CRM down")
    assert stats.p50_ms is not None and stats.p50_ms <= stats.p95_ms
    assert store.failed_event_ids("tests.obs.flaky") == [second, first]
    assert store.failed_event_ids("tests.obs.flaky", since="2999-01-01T00:00:00.000Z") == []
    assert store.failing_counts(["tests.obs.flaky", "other"]) == {"tests.obs.flaky": 2,
                                                                 "other": 0}
    assert store.failing_counts(["tests.obs.flaky"], cap=1) == {"tests.obs.flaky": 2}
    assert store.failing_counts(["tests.obs.flaky"], cap=0) == {"tests.obs.flaky": 1}
    store.save_event(make_delivery(), make_event("p1"), "valid", dispatch_to="elsewhere")
    assert [(row[0], row[1], row[2]) for row in store.pending_summary()] == [
        ("keygen", "license.created", 1)]


def test_handlers_page_and_bulk_replay_fix_the_failures(client: Any, store: Any,
                                                       flaky: Any) -> None:
    for number in range(3):
        ingest(client, store, f"b{number}")
    page = client.get("/handlers?window=1h").get_data(as_text=True)
    row = page[page.index('data-handler="tests.obs.flaky"'):]
    assert 'data-field="runs">3<' in row and "CRM down for subject-b2" in row
    assert 'data-field="failing">3<' in row
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("receiver.web.handlers.FAILING_CAP", 2)
        page = client.get("/handlers?window=1h").get_data(as_text=True)
    assert 'data-field="failing">2+<' in page[page.index('data-handler="tests.obs.flaky"'):]
    confirm = client.get("/handlers/replay?handler=tests.obs.flaky&mode=failed")
    assert "<strong data-count>3</strong>" in confirm.get_data(as_text=True)
    flaky["fail"] = False
    refused = client.post("/handlers/replay", data={"handler": "tests.obs.flaky",
                                                    "mode": "failed"})
    assert refused.status_code == 403  # no CSRF token
    token = confirm.get_data(as_text=True).split('name="csrf_token" value="')[1]
    done = client.post("/handlers/replay", data={
        "handler": "tests.obs.flaky", "mode": "failed", "csrf_token": token.split('"')[0]},
        follow_redirects=True).get_data(as_text=True)
    assert "on 3 events: 3 ok, 0 failed" in done
    assert store.failed_event_ids("tests.obs.flaky") == []
    assert store.failing_counts(["tests.obs.flaky"]) == {"tests.obs.flaky": 0}
    page = client.get("/handlers?window=1h").get_data(as_text=True)
    assert 'data-field="failing">0<' in page[page.index('data-handler="tests.obs.flaky"'):]
    stats = store.handler_stats()["tests.obs.flaky"]
    assert (stats.runs, stats.failures) == (6, 3)
    runs = store.runs_for_event(store.newest_event_id())
    assert [run["trigger"] for run in runs if run["handler"] == "tests.obs.flaky"] == [
        "delivery", "replay"]
    assert client.get("/handlers/replay?handler=nobody").status_code == 400
    assert client.get("/handlers?window=2y").status_code == 400


def test_cli_bulk_replay_of_failed_runs(make_app: Any, db_path: str, flaky: Any) -> None:
    app = make_app()
    client = app.test_client()
    store = app.extensions["receiver.store"]
    ids = [ingest(client, store, f"c{number}") for number in range(2)]
    ingest(client, store, "other", "machine.created")  # not the handler's: left alone
    flaky["fail"] = False
    runner = CliRunner()
    result = runner.invoke(cli, ["replay", "--handler", "tests.obs.flaky", "--failed-since",
                                 "1h", "--db", db_path], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "tests.obs.flaky: 2 ok, 0 failed, 0 skipped" in result.output
    assert all(store.get_event(event_id).dispatch_status == "done" for event_id in ids)
    again = runner.invoke(cli, ["replay", "--handler", "tests.obs.flaky", "--event-type",
                                "license.created", "--db", db_path], catch_exceptions=False)
    assert "2 ok" in again.output
    usage = runner.invoke(cli, ["replay", "--db", db_path])
    assert usage.exit_code == 2 and "one --handler NAME" in usage.output
    bad = runner.invoke(cli, ["replay", "--handler", "tests.obs.flaky", "--failed-since",
                              "soon", "--db", db_path])
    assert bad.exit_code == 2 and "--failed-since" in bad.output


# -- /-/metrics ---------------------------------------------------------------------------------


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_need_the_token_unless_open(make_app: Any) -> None:
    closed = make_app(INSPECTOR_TOKEN="t0ken").test_client()
    assert closed.get("/-/metrics").status_code == 401
    answer = closed.get("/-/metrics", headers={"Authorization": "Bearer t0ken"})
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    opened = make_app(INSPECTOR_TOKEN="t0ken", METRICS_OPEN=True).test_client()
    assert opened.get("/-/metrics").status_code == 200
    assert opened.get("/api/events").status_code == 401


def test_metrics_fold_endpoints_that_are_not_configured(make_app: Any) -> None:
    """Anyone may post to ``/hooks/<any name>``: the names that are not configured share one
    label value, so the series are bounded by the configuration."""
    client = make_app(ENDPOINTS={"kg": {"source": "generic"}}).test_client()
    for name in ("kg", "kg", "", "made-up-1", "made-up-2", "made-up-3"):
        path = f"/hooks/{name}" if name else "/hooks"
        assert client.post(path, json={"type": "license.created", "id": path}).status_code == 200
    client.application.extensions["receiver.unavailable"].count(at(4), "made-up-4", None)
    text = client.get("/-/metrics").get_data(as_text=True)
    assert "made-up" not in text
    found = samples_of(text)
    endpoints = {dict(labels)["endpoint"] for (name, labels) in found
                 if name == "receiver_deliveries_total"}
    assert endpoints == {"kg", "default", "_other"}
    assert found[("receiver_deliveries_total", (("endpoint", "_other"), ("source", "generic"),
                                                 ("status", "200")))] == 3
    assert found[("receiver_deliveries_total", (("endpoint", "_other"), ("source", ""),
                                                 ("status", "503")))] == 1
    assert found[("receiver_deliveries_total", (("endpoint", "kg"), ("source", "generic"),
                                                 ("status", "200")))] == 2


def test_metrics_count_from_the_database(client: Any, store: Any, flaky: Any) -> None:
    traffic(store)
    ingest(client, store, "m1")
    client.application.extensions["receiver.unavailable"].count(at(4), "default", None)
    found = samples_of(client.get("/-/metrics").get_data(as_text=True))
    assert found[("receiver_deliveries_total", (("endpoint", "default"), ("source", "keygen"),
                                                 ("status", "200")))] == 4
    assert found[("receiver_deliveries_total", (("endpoint", "default"), ("source", ""),
                                                 ("status", "503")))] == 1
    assert found[("receiver_signature_verdicts_total", (  # kg is not configured here
        ("endpoint", "_other"), ("source", "keygen"), ("verdict", "invalid")))] == 1
    assert found[("receiver_handler_runs_total", (("handler", "tests.obs.flaky"),
                                                   ("status", "error")))] == 1
    assert found[("receiver_events_pending", ())] == 0
    assert found[("receiver_ingest_seconds_count", ())] == 0  # the test client skips ingest
