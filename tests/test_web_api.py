"""The JSON API (docs/reference.md): filters, paging, detail, raw bytes, masking, export,
health, the inspector token, replay and redeliver to a real local HTTP server."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from receiver import on
from receiver.events import Delivery, NormalizedEvent
from receiver.handlers import signals

from .conftest import LICENSE_KEY, RESET_TOKEN, sample

pytestmark = pytest.mark.both_backends

JSON = {"Content-Type": "application/json"}
FNO_AUTH = "Bearer fno-very-secret-token-0042"
TOKEN = "inspector-token-123"

POSTED = [
    ("keygen", "user.password-reset"),
    ("keygen", "license.created"),
    ("licensespring", "license.created"),
    ("licensespring", "license.license_user.assigned"),
    ("zentitle", "entitlement.created"),
    ("fno", "entitlement.updated"),
    ("generic", "order.paid"),
    ("standard", "license.created"),
]


def post_sample(client: Any, source: str, name: str, path: str = "/hooks",
                **extra_headers: str) -> dict[str, Any]:
    item = sample(source, name)
    response = client.post(path, data=item.body, headers={**item.headers, **extra_headers})
    assert response.status_code == 200, response.get_json()
    answer: dict[str, Any] = response.get_json()
    return answer


@pytest.fixture
def posted(client: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """One delivery of each sample in POSTED (FNO with an Authorization header)."""
    answers = {}
    for source, name in POSTED:
        extra = {"Authorization": FNO_AUTH} if source == "fno" else {}
        answers[(source, name)] = post_sample(client, source, name, **extra)
    return answers


def get_json(client: Any, url: str, status: int = 200, **kwargs: Any) -> Any:
    response = client.get(url, **kwargs)
    assert response.status_code == status, (url, response.get_data(as_text=True)[:500])
    return response.get_json()


def event_list(client: Any, query: str = "") -> list[dict[str, Any]]:
    answer = get_json(client, "/api/events?limit=500" + (f"&{query}" if query else ""))
    assert answer["next"] is None
    events: list[dict[str, Any]] = answer["events"]
    return events


def as_exported(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """API records as an export writes them: without ``out_of_order`` (worked out for API
    answers only)."""
    return [{key: value for key, value in event.items() if key != "out_of_order"}
            for event in events]


def externals(events: list[dict[str, Any]]) -> set[str]:
    return {event["external_id"] for event in events}


def add_events(store: Any, count: int, prefix: str = "bulk") -> None:
    for n in range(count):
        store.save_event(
            Delivery(body=b"{}", headers=[("Content-Type", "application/json")]),
            NormalizedEvent(source="generic", event_type="bulk.made", vendor_event="bulk.made",
                            external_id=f"{prefix}-{n}", occurred_at=None, account=None,
                            actor=None, subject_type="bulk", subject_id=None, data={"n": n}),
            "unchecked",
        )


@pytest.fixture
def order_handler() -> Iterator[dict[str, Any]]:
    """A handler on generic order.paid that fails until told otherwise (never retried)."""
    before = signals.registry_keys()
    state: dict[str, Any] = {"fail": True, "seen": []}

    @on("order.paid", source="generic", name="tests.web_api.order_handler", retries=0)
    def handle(event: Any, **extra: Any) -> None:
        state["seen"].append(event.id)
        if state["fail"]:
            raise RuntimeError("payment system unreachable")

    yield state
    signals.unregister(signals.registry_keys() - before)


# -- GET /api/events: shape and filters ---------------------------------------------------


EVENT_FIELDS = {"id", "source", "event_type", "vendor_event", "external_id", "occurred_at",
                "received_at", "account", "actor", "subject_type", "subject_id", "endpoint",
                "signature_status", "data", "delivery_count", "dispatch_status", "next_attempt_at"}


def test_api_events_lists_newest_first_with_contract_fields(client: Any, posted: Any) -> None:
    answer = get_json(client, "/api/events")
    assert set(answer) == {"events", "next"}
    assert answer["next"] is None
    events = answer["events"]
    assert len(events) == len(POSTED)
    # out_of_order is worked out when answering (docs/reference.md#the-event-record)
    assert all(set(event) == EVENT_FIELDS | {"out_of_order"} for event in events)
    assert [event["id"] for event in events] == sorted(
        (a["event_id"] for a in posted.values()), reverse=True)
    by_id = {event["id"]: event for event in events}
    for (source, name), answer in posted.items():
        event = by_id[answer["event_id"]]
        expected = sample(source, name).normalized
        for field in ("source", "event_type", "vendor_event", "external_id", "account",
                      "subject_id", "subject_type"):
            assert event[field] == expected[field], (source, name, field)
        assert event["endpoint"] == "default"
        assert event["received_at"].endswith("Z")
        assert event["delivery_count"] == 1


def test_api_events_filter_by_source(client: Any, posted: Any) -> None:
    events = event_list(client, "source=keygen")
    assert {event["event_type"] for event in events} == {"user.password-reset",
                                                          "license.created"}
    assert {event["source"] for event in event_list(client, "source=fno")} == {"fno"}
    assert event_list(client, "source=generic")[0]["event_type"] == "order.paid"


def test_api_events_filter_by_exact_type_and_prefix(client: Any, posted: Any) -> None:
    exact = event_list(client, "event_type=license.created")
    assert {event["source"] for event in exact} == {"keygen", "licensespring", "standard"}
    prefix = event_list(client, "event_type=license.*")
    assert {(e["source"], e["event_type"]) for e in prefix} == {
        ("keygen", "license.created"), ("licensespring", "license.created"),
        ("licensespring", "license.license_user.assigned"), ("standard", "license.created")}
    assert event_list(client, "event_type=license") == []
    assert event_list(client, "event_type=licenses.*") == []
    assert len(event_list(client, "event_type=*")) == len(POSTED)


def test_api_events_filter_by_endpoint(client: Any, posted: Any) -> None:
    channel = post_sample(client, "keygen", "machine.created", path="/hooks/alpha")
    events = event_list(client, "endpoint=alpha")
    assert [event["id"] for event in events] == [channel["event_id"]]
    assert events[0]["endpoint"] == "alpha"
    assert len(event_list(client, "endpoint=default")) == len(POSTED)


def test_api_events_filter_by_account_and_subject(client: Any, posted: Any) -> None:
    keygen_account = sample("keygen", "license.created").normalized["account"]
    events = event_list(client, f"account={keygen_account}")
    assert {event["source"] for event in events} == {"keygen"}
    assert len(events) == 2
    subject = sample("keygen", "license.created").normalized["subject_id"]
    assert [e["event_type"] for e in event_list(client, f"subject_id={subject}")] == [
        "license.created"]
    assert event_list(client, "subject_id=no-such-subject") == []


@pytest.mark.parametrize("status", ["valid", "invalid", "unsigned", "unchecked"])
def test_api_events_filter_by_signature_status(client: Any, posted: Any, status: str) -> None:
    everything = event_list(client)
    expected = {e["id"] for e in everything if e["signature_status"] == status}
    assert {e["id"] for e in event_list(client, f"signature_status={status}")} == expected


def test_api_events_signature_filter_selects_something(client: Any, posted: Any) -> None:
    statuses = {e["signature_status"] for e in event_list(client)}
    assert len(statuses) >= 2  # the parametrized test above is not vacuous
    for status in statuses:
        assert event_list(client, f"signature_status={status}")


def test_api_events_filter_by_dispatch_status(client: Any, order_handler: Any) -> None:
    failed = post_sample(client, "generic", "order.paid")
    done = post_sample(client, "keygen", "license.created")
    assert [e["id"] for e in event_list(client, "dispatch_status=failed")] == [
        failed["event_id"]]
    assert done["event_id"] in {e["id"] for e in event_list(client, "dispatch_status=done")}
    assert event_list(client, "dispatch_status=pending") == []


def test_api_events_full_text_search(client: Any, posted: Any) -> None:
    found = event_list(client, "q=0035g00000XyZ12")  # the user's crmId
    assert [e["event_type"] for e in found] == ["user.password-reset"]
    assert "order.paid" in {e["event_type"] for e in event_list(client, "q=jane.doe@example.com")}
    assert [e["source"] for e in event_list(client, "q=SAMPLE_ORG")] == ["fno"]
    # Saved after the first search: found by the next one.
    later = post_sample(client, "licensespring", "order.created")
    assert later["event_id"] in {e["id"] for e in event_list(client, "q=order")}
    assert event_list(client, "q=AND OR") == []


def test_api_events_since_and_until(client: Any, posted: Any) -> None:
    assert len(event_list(client, "since=2000-01-01T00:00:00Z")) == len(POSTED)
    assert event_list(client, "since=2999-01-01T00:00:00Z") == []
    assert event_list(client, "until=2000-01-01") == []
    assert len(event_list(client, "until=2999-01-01T00:00:00%2B02:00")) == len(POSTED)
    newest = event_list(client)[0]
    assert [e["id"] for e in event_list(client, f"since={newest['received_at']}")][0] == \
        newest["id"]


@pytest.mark.parametrize(("query", "parameter"), [
    ("source=nope", "source"),
    ("limit=abc", "limit"),
    ("limit=0", "limit"),
    ("limit=-5", "limit"),
    ("cursor=x", "cursor"),
    ("since=yesterday", "since"),
    ("until=2024-13-45", "until"),
    ("event_type=a%20b", "event_type"),
    ("event_type=license.**", "event_type"),
    ("signature_status=maybe", "signature_status"),
    ("dispatch_status=later", "dispatch_status"),
])
def test_api_events_bad_filters_are_400_naming_the_parameter(client: Any, query: str,
                                                             parameter: str) -> None:
    answer = get_json(client, f"/api/events?{query}", status=400)
    assert answer["ok"] is False
    assert answer["error"].startswith(parameter)


@pytest.mark.parametrize(("url", "parameter"), [
    pytest.param("/api/events?cursor=%C2%B2", "cursor"),
    pytest.param("/api/events?limit=%C2%B2", "limit"),
    pytest.param("/api/deliveries?status_code=%C2%B2", "status_code"),
    pytest.param("/api/deliveries?after=%C2%B2", "after"),
    pytest.param("/api/deliveries?after=99999999999999999999999", "after"),
    pytest.param("/api/events?cursor=99999999999999999999999", "cursor"),
    ("/api/events?q=%22", "q"),
    ("/api/events?q=%22%22", "q"),
    ("/api/export.ndjson?q=%22", "q"),
])
def test_api_odd_parameters_are_not_500(client: Any, posted: Any, url: str,
                                        parameter: str) -> None:
    response = client.get(url)
    assert response.status_code in (200, 400), response.get_json()
    if response.status_code == 400:
        assert parameter in response.get_json()["error"]


@pytest.mark.parametrize("url", ["/api/events/99999999999999999999999",
                                 "/api/deliveries/99999999999999999999999"])
def test_api_huge_ids_are_404(client: Any, url: str) -> None:
    assert get_json(client, url, status=404)["ok"] is False


# -- paging ---------------------------------------------------------------------------------


def test_api_events_limit_above_500_is_clamped(client: Any, store: Any) -> None:
    add_events(store, 505)
    first = get_json(client, "/api/events?limit=1000")
    assert len(first["events"]) == 500
    assert first["next"] is not None
    rest = get_json(client, f"/api/events?limit=1000&cursor={first['next']}")
    assert len(rest["events"]) == 5
    assert rest["next"] is None
    assert len(get_json(client, "/api/events")["events"]) == 50  # the default


def test_api_events_paging_via_next(client: Any, posted: Any) -> None:
    everything = [e["id"] for e in event_list(client)]
    seen: list[int] = []
    url = "/api/events?limit=3"
    pages = 0
    while True:
        answer = get_json(client, url)
        pages += 1
        seen.extend(e["id"] for e in answer["events"])
        if answer["next"] is None:
            break
        url = f"/api/events?limit=3&cursor={answer['next']}"
    assert pages == 3
    assert seen == everything


def test_api_events_paging_keeps_the_filter(client: Any, posted: Any) -> None:
    first = get_json(client, "/api/events?event_type=license.*&limit=2")
    assert len(first["events"]) == 2 and first["next"]
    second = get_json(client, f"/api/events?event_type=license.*&limit=2&cursor={first['next']}")
    ids = [e["id"] for e in first["events"] + second["events"]]
    assert len(set(ids)) == 4 and second["next"] is None
    assert all(e["event_type"].startswith("license.") for e in second["events"])


# -- GET /api/events/<id> -----------------------------------------------------------------


def test_api_event_detail_has_deliveries_and_runs(client: Any, order_handler: Any) -> None:
    first = post_sample(client, "generic", "order.paid")
    again = post_sample(client, "generic", "order.paid")
    assert again["duplicate"] is True and again["event_id"] == first["event_id"]
    event = get_json(client, f"/api/events/{first['event_id']}")
    assert EVENT_FIELDS <= set(event)
    assert event["delivery_count"] == 2
    assert event["dispatch_status"] == "failed"

    deliveries = event["deliveries"]
    assert [d["id"] for d in deliveries] == [first["delivery_id"], again["delivery_id"]]
    assert [d["duplicate"] for d in deliveries] == [False, True]
    for delivery in deliveries:
        assert not {"body", "body_text", "body_base64"} & set(delivery)
        assert delivery["body_size"] == len(sample("generic", "order.paid").body)
        assert delivery["status_code"] == 200
        assert delivery["event_id"] == first["event_id"]

    runs = event["handler_runs"]
    assert len(runs) == 1  # dispatched once, not again for the duplicate
    assert runs[0]["handler"] == "tests.web_api.order_handler"
    assert runs[0]["status"] == "error"
    assert "payment system unreachable" in runs[0]["error"]
    assert "RuntimeError" in runs[0]["traceback"]
    assert runs[0]["trigger"] == "delivery"
    assert set(runs[0]) >= {"id", "event_id", "handler", "status", "error", "traceback",
                            "started_at", "duration_ms", "trigger"}


def test_api_replay_settles_from_the_latest_run(client: Any, order_handler: Any) -> None:
    event_id = post_sample(client, "generic", "order.paid")["event_id"]
    order_handler["fail"] = False
    response = client.post(f"/api/events/{event_id}/replay", json={"only_failed": True})
    assert response.status_code == 200
    runs = response.get_json()["runs"]
    assert [(r["handler"], r["status"], r["trigger"]) for r in runs] == [
        ("tests.web_api.order_handler", "ok", "replay")]
    event = get_json(client, f"/api/events/{event_id}")
    assert event["dispatch_status"] == "done"
    assert [r["status"] for r in event["handler_runs"]] == ["error", "ok"]
    # Nothing failed any more: only_failed has nothing to run.
    again = client.post(f"/api/events/{event_id}/replay", json={"only_failed": True})
    assert again.get_json() == {"runs": []}


def test_api_replay_unknown_handler_is_400(client: Any, order_handler: Any) -> None:
    event_id = post_sample(client, "generic", "order.paid")["event_id"]
    response = client.post(f"/api/events/{event_id}/replay", json={"handlers": ["nope"]})
    assert response.status_code == 400
    assert "nope" in response.get_json()["error"]


@pytest.mark.parametrize("url", ["/api/events/999", "/api/deliveries/999",
                                 "/api/deliveries/999/raw"])
def test_api_unknown_ids_are_404_json(client: Any, url: str) -> None:
    answer = get_json(client, url, status=404)
    assert answer["ok"] is False
    assert "999" in answer["error"]


def test_api_replay_of_unknown_event_is_404(client: Any) -> None:
    response = client.post("/api/events/999/replay", json={})
    assert response.status_code == 404
    assert response.get_json()["ok"] is False


# -- deliveries -----------------------------------------------------------------------------


def test_api_deliveries_list_and_filters(client: Any, posted: Any) -> None:
    channel = post_sample(client, "keygen", "machine.created", path="/hooks/alpha")
    bad = client.post("/hooks/alpha", data=b"{not json", headers=JSON)
    assert bad.status_code == 400
    bad_id = bad.get_json()["delivery_id"]

    answer = get_json(client, "/api/deliveries?limit=500")
    assert set(answer) == {"deliveries", "next"}
    everything = answer["deliveries"]
    assert len(everything) == len(POSTED) + 2
    assert [d["id"] for d in everything] == sorted((d["id"] for d in everything), reverse=True)
    assert all("body" not in d and "body_text" not in d for d in everything)

    alpha = get_json(client, "/api/deliveries?endpoint=alpha")["deliveries"]
    assert [d["id"] for d in alpha] == [bad_id, channel["delivery_id"]]
    refused = get_json(client, "/api/deliveries?status_code=400")["deliveries"]
    assert [d["id"] for d in refused] == [bad_id]
    assert refused[0]["error"].startswith("body is not valid JSON")
    assert refused[0]["event_id"] is None
    keygen = get_json(client, "/api/deliveries?source=keygen")["deliveries"]
    assert {d["source"] for d in keygen} == {"keygen"}
    assert len(keygen) == 3
    combined = get_json(client, "/api/deliveries?endpoint=alpha&status_code=200")["deliveries"]
    assert [d["id"] for d in combined] == [channel["delivery_id"]]


@pytest.mark.parametrize(("query", "parameter"), [
    ("status_code=abc", "status_code"), ("status_code=99", "status_code"),
    ("source=nope", "source"), ("limit=0", "limit"), ("cursor=x", "cursor"),
    ("after=x", "after"),
])
def test_api_deliveries_bad_filters_are_400(client: Any, query: str, parameter: str) -> None:
    answer = get_json(client, f"/api/deliveries?{query}", status=400)
    assert answer["ok"] is False and parameter in answer["error"]


def test_api_deliveries_paging(client: Any, posted: Any) -> None:
    everything = [d["id"] for d in get_json(client, "/api/deliveries?limit=500")["deliveries"]]
    seen: list[int] = []
    url = "/api/deliveries?limit=3"
    while True:
        answer = get_json(client, url)
        seen.extend(d["id"] for d in answer["deliveries"])
        if answer["next"] is None:
            break
        url = f"/api/deliveries?limit=3&cursor={answer['next']}"
    assert seen == everything


def test_api_delivery_utf8_body_as_text(client: Any) -> None:
    item = sample("zentitle", "entitlement.created")
    answer = post_sample(client, "zentitle", "entitlement.created")
    delivery = get_json(client, f"/api/deliveries/{answer['delivery_id']}")
    assert delivery["body_text"] == item.body.decode("utf-8")
    assert "body_base64" not in delivery
    assert delivery["body_size"] == len(item.body)
    assert delivery["content_type"] == item.headers["Content-Type"]
    assert delivery["method"] == "POST" and delivery["path"] == "/hooks"
    assert ["Content-Type", item.headers["Content-Type"]] in delivery["headers"]


def test_api_delivery_non_utf8_body_as_base64_and_raw(client: Any, store: Any) -> None:
    body = b'{"name": "caf\xe9", "x": "\xff\xfe"}'
    response = client.post("/hooks", data=body,
                           headers={"Content-Type": "application/json; charset=latin-1"})
    assert response.status_code == 400
    answer = response.get_json()
    assert "UTF-8" in answer["error"]
    delivery_id = answer["delivery_id"]

    delivery = get_json(client, f"/api/deliveries/{delivery_id}")
    assert "body_text" not in delivery
    assert base64.b64decode(delivery["body_base64"]) == body
    assert delivery["status_code"] == 400 and delivery["event_id"] is None
    assert delivery["error"] == answer["error"]

    raw = client.get(f"/api/deliveries/{delivery_id}/raw")
    assert raw.status_code == 200
    assert raw.data == body
    assert raw.headers["Content-Type"] == "application/json; charset=latin-1"
    assert store.get_delivery(delivery_id, with_body=True)["body"] == body


def test_api_delivery_raw_returns_exact_bytes(client: Any) -> None:
    item = sample("keygen", "license.created")
    answer = post_sample(client, "keygen", "license.created")
    raw = client.get(f"/api/deliveries/{answer['delivery_id']}/raw")
    assert raw.status_code == 200
    assert raw.data == item.body
    assert raw.headers["Content-Type"] == item.headers["Content-Type"]
    assert raw.headers["X-Content-Type-Options"] == "nosniff"


def test_api_delivery_raw_without_content_type(client: Any) -> None:
    response = client.post("/hooks", data=b'{"type": "thing.happened"}')
    raw = client.get(f"/api/deliveries/{response.get_json()['delivery_id']}/raw")
    assert raw.data == b'{"type": "thing.happened"}'
    assert raw.headers["Content-Type"] == "application/octet-stream"


# -- masking --------------------------------------------------------------------------------


def test_api_masks_password_reset_token(client: Any) -> None:
    answer = post_sample(client, "keygen", "user.password-reset")
    event_text = client.get(f"/api/events/{answer['event_id']}").get_data(as_text=True)
    delivery_text = client.get(f"/api/deliveries/{answer['delivery_id']}").get_data(as_text=True)
    list_text = client.get("/api/events").get_data(as_text=True)
    for text in (event_text, delivery_text, list_text):
        assert RESET_TOKEN not in text
    event = json.loads(event_text)
    assert event["data"]["meta"]["passwordResetToken"] != RESET_TOKEN
    assert event["data"]["meta"]["passwordResetToken"].endswith(RESET_TOKEN[-4:])
    assert "Jane Doe" in event_text  # only the secret is hidden
    raw = client.get(f"/api/deliveries/{answer['delivery_id']}/raw")
    assert RESET_TOKEN.encode() in raw.data


def test_api_masks_license_key(client: Any) -> None:
    answer = post_sample(client, "keygen", "license.created")
    for url in (f"/api/events/{answer['event_id']}", f"/api/deliveries/{answer['delivery_id']}",
                "/api/events", "/api/export.ndjson"):
        assert LICENSE_KEY not in client.get(url).get_data(as_text=True), url
    raw = client.get(f"/api/deliveries/{answer['delivery_id']}/raw")
    assert LICENSE_KEY.encode() in raw.data


def test_api_masks_licensespring_license_key(client: Any) -> None:
    item = sample("licensespring", "license.created")
    key = item.normalized["data"]["license"]["license_key"]
    answer = post_sample(client, "licensespring", "license.created")
    for url in (f"/api/events/{answer['event_id']}", f"/api/deliveries/{answer['delivery_id']}"):
        assert key not in client.get(url).get_data(as_text=True), url


def test_api_masks_fno_authorization_header(client: Any) -> None:
    answer = post_sample(client, "fno", "entitlement.updated", Authorization=FNO_AUTH)
    secret = FNO_AUTH.split(" ", 1)[1]
    for url in (f"/api/events/{answer['event_id']}", f"/api/deliveries/{answer['delivery_id']}",
                "/api/deliveries"):
        text = client.get(url).get_data(as_text=True)
        assert secret not in text, url
    delivery = get_json(client, f"/api/deliveries/{answer['delivery_id']}")
    auth = [value for name, value in delivery["headers"] if name.lower() == "authorization"]
    assert len(auth) == 1 and auth[0].startswith("Bearer ") and secret not in auth[0]


def test_api_reveal_shows_secrets(client: Any) -> None:
    reset = post_sample(client, "keygen", "user.password-reset")
    fno = post_sample(client, "fno", "entitlement.updated", Authorization=FNO_AUTH)
    event = get_json(client, f"/api/events/{reset['event_id']}?reveal=1")
    assert event["data"]["meta"]["passwordResetToken"] == RESET_TOKEN
    delivery = get_json(client, f"/api/deliveries/{reset['delivery_id']}?reveal=1")
    assert RESET_TOKEN in delivery["body_text"]
    fno_delivery = get_json(client, f"/api/deliveries/{fno['delivery_id']}?reveal=1")
    assert ["Authorization", FNO_AUTH] in fno_delivery["headers"]
    assert RESET_TOKEN in client.get("/api/export.ndjson?reveal=1").get_data(as_text=True)


def test_api_masks_secrets_of_a_refused_keygen_delivery(make_app: Any) -> None:
    from .test_config import ed25519_hex

    client = make_app(ENDPOINTS={"keygen": {"source": "keygen",
                                            "public_key": ed25519_hex()}}).test_client()
    item = sample("keygen", "user.password-reset")
    response = client.post("/hooks/keygen", data=item.body, headers=item.headers)
    assert response.status_code == 401  # unsigned, and the endpoint enforces
    delivery_id = response.get_json()["delivery_id"]
    assert RESET_TOKEN not in client.get(f"/api/deliveries/{delivery_id}").get_data(as_text=True)


def test_api_masks_secrets_of_a_malformed_body(client: Any) -> None:
    item = sample("licensespring", "license.created")
    key = item.normalized["data"]["license"]["license_key"]
    response = client.post("/hooks", data=item.body[:-5], headers=item.headers)
    assert response.status_code == 400
    delivery_id = response.get_json()["delivery_id"]
    assert key not in client.get(f"/api/deliveries/{delivery_id}").get_data(as_text=True)


# -- health and export ----------------------------------------------------------------------


def test_api_health_counts(client: Any) -> None:
    assert get_json(client, "/-/health") == {"ok": True, "events": 0, "deliveries": 0}
    post_sample(client, "keygen", "license.created")
    post_sample(client, "keygen", "license.created")  # duplicate: a delivery, not an event
    post_sample(client, "fno", "entitlement.updated")
    client.post("/hooks", data=b"nope", headers=JSON)  # refused: a delivery only
    assert get_json(client, "/-/health") == {"ok": True, "events": 2, "deliveries": 4}


def ndjson(client: Any, query: str = "") -> list[dict[str, Any]]:
    response = client.get("/api/export.ndjson" + (f"?{query}" if query else ""))
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    text = response.get_data(as_text=True)
    assert text.endswith("\n")
    *events, complete = [json.loads(line) for line in text.splitlines()]
    assert complete["complete"] is True and complete["count"] == len(events)
    return events


def test_api_export_streams_one_event_a_line(client: Any, posted: Any) -> None:
    lines = ndjson(client)
    assert len(lines) == len(POSTED)
    assert all(set(line) == EVENT_FIELDS for line in lines)
    assert lines == as_exported(event_list(client))  # same records, order, masking


@pytest.mark.parametrize("query", ["source=keygen", "event_type=license.*",
                                   "signature_status=unchecked", "q=SAMPLE_ORG",
                                   "since=2999-01-01T00:00:00Z"])
def test_api_export_uses_the_list_filters(client: Any, posted: Any, query: str) -> None:
    assert ndjson(client, query) == as_exported(event_list(client, query))


def test_api_export_covers_more_than_one_batch(client: Any, store: Any) -> None:
    add_events(store, 520)
    lines = ndjson(client, "event_type=bulk.made")
    assert len(lines) == 520
    assert len({line["id"] for line in lines}) == 520


def test_api_export_bad_filter_is_400(client: Any) -> None:
    answer = get_json(client, "/api/export.ndjson?source=nope", status=400)
    assert answer["ok"] is False and "source" in answer["error"]


# -- the inspector token --------------------------------------------------------------------


@pytest.fixture
def locked(make_app: Any) -> Any:
    return make_app(INSPECTOR_TOKEN=TOKEN).test_client()


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("url", ["/api/events", "/api/events/1", "/api/deliveries",
                                 "/api/deliveries/1", "/api/deliveries/1/raw",
                                 "/api/export.ndjson", "/-/plugins"])
def test_api_token_required_for_reading(locked: Any, url: str) -> None:
    post_sample(locked, "keygen", "license.created")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        response = locked.get(url, headers=headers)
        assert response.status_code == 401, (url, headers)
        assert response.get_json()["ok"] is False
        assert LICENSE_KEY not in response.get_data(as_text=True)
    assert locked.get(url, headers=BEARER).status_code == 200


def test_api_token_answers_with_bearer(locked: Any) -> None:
    answer = post_sample(locked, "keygen", "license.created")
    events = get_json(locked, "/api/events", headers=BEARER)["events"]
    assert [e["id"] for e in events] == [answer["event_id"]]
    lower = {"Authorization": f"bearer {TOKEN}"}
    assert locked.get("/api/events", headers=lower).status_code == 200


def test_api_token_leaves_ingest_and_health_open(locked: Any) -> None:
    answer = post_sample(locked, "keygen", "license.created")
    assert answer["ok"] is True
    assert get_json(locked, "/-/health") == {"ok": True, "events": 1, "deliveries": 1}


def test_api_token_protects_actions(locked: Any) -> None:
    answer = post_sample(locked, "keygen", "license.created")
    replay = locked.post(f"/api/events/{answer['event_id']}/replay", json={})
    assert replay.status_code == 401
    redeliver = locked.post(f"/api/deliveries/{answer['delivery_id']}/redeliver",
                            json={"url": "http://127.0.0.1:9/"})
    assert redeliver.status_code == 401
    assert locked.post(f"/api/events/{answer['event_id']}/replay", json={},
                       headers=BEARER).status_code == 200


def test_api_token_reveal_needs_the_token(locked: Any) -> None:
    answer = post_sample(locked, "keygen", "user.password-reset")
    assert locked.get(f"/api/events/{answer['event_id']}?reveal=1").status_code == 401
    event = get_json(locked, f"/api/events/{answer['event_id']}?reveal=1", headers=BEARER)
    assert event["data"]["meta"]["passwordResetToken"] == RESET_TOKEN


# -- redeliver ------------------------------------------------------------------------------


class Target:
    """A local HTTP server in a thread that records what it receives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 202
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                target.requests.append({
                    "path": self.path,
                    "headers": list(self.headers.items()),
                    "body": self.rfile.read(length),
                })
                answer = b"accepted by the target"
                self.send_response(target.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "te", "upgrade",
              "proxy-authorization", "x-hop"}


def test_api_redeliver_sends_exact_bytes_and_headers(client: Any, store: Any,
                                                     target: Target) -> None:
    item = sample("fno", "entitlement.updated")
    answer = post_sample(client, "fno", "entitlement.updated", **{
        "Authorization": FNO_AUTH, "X-Request-Id": "req-77", "Connection": "X-Hop",
        "X-Hop": "only-for-this-hop", "Keep-Alive": "timeout=5", "TE": "trailers",
        "Proxy-Authorization": "Basic cHJveHk6cHc=",
    })
    stored = store.get_delivery(answer["delivery_id"], with_body=True)

    response = client.post(f"/api/deliveries/{answer['delivery_id']}/redeliver",
                           json={"url": f"{target.url}/mirror?x=1"})
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["status"] == 202
    assert result["body"].startswith("accepted by the target")

    assert len(target.requests) == 1
    received = target.requests[0]
    assert received["path"] == "/mirror?x=1"
    assert received["body"] == item.body == stored["body"]
    expected = [(name, value) for name, value in stored["headers"]
                if name.lower() not in HOP_BY_HOP]
    got = [(name, value) for name, value in received["headers"]
           if name.lower() not in ("host", "content-length")]
    assert got == expected
    assert ("Authorization", FNO_AUTH) in got  # the original, not the masked one
    names = {name.lower() for name, _ in received["headers"]}
    assert not {"connection", "keep-alive", "te", "x-hop", "proxy-authorization"} & names
    host = [value for name, value in received["headers"] if name.lower() == "host"]
    assert host == [f"127.0.0.1:{target.port}"]
    length = [value for name, value in received["headers"] if name.lower() == "content-length"]
    assert length == [str(len(item.body))]


def test_api_redeliver_preserve_host_sends_the_original_host_once(client: Any,
                                                                   target: Target) -> None:
    answer = post_sample(client, "keygen", "license.created", Host="hooks.example.com")
    url = f"/api/deliveries/{answer['delivery_id']}/redeliver"
    assert client.post(url, json={"url": target.url, "preserve_host": True}).status_code == 200
    assert client.post(url, json={"url": target.url}).status_code == 200
    hosts = [[value for name, value in request["headers"] if name.lower() == "host"]
             for request in target.requests]
    assert hosts == [["hooks.example.com"], [f"127.0.0.1:{target.port}"]]
    refused = client.post(url, json={"url": target.url, "preserve_host": 1})
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "preserve_host must be true or false"


def test_api_redeliver_reports_the_target_status(client: Any, target: Target) -> None:
    target.status = 500
    answer = post_sample(client, "keygen", "license.created")
    result = client.post(f"/api/deliveries/{answer['delivery_id']}/redeliver",
                         json={"url": target.url + "/"}).get_json()
    assert result["status"] == 500
    assert target.requests[0]["body"] == sample("keygen", "license.created").body


def test_api_redeliver_of_a_refused_delivery_sends_its_bytes(client: Any,
                                                             target: Target) -> None:
    body = b"\xff\xfe not json at all"
    refused = client.post("/hooks", data=body, headers={"Content-Type": "text/plain"})
    assert refused.status_code == 400
    result = client.post(f"/api/deliveries/{refused.get_json()['delivery_id']}/redeliver",
                         json={"url": target.url}).get_json()
    assert result["status"] == 202
    assert target.requests[0]["body"] == body


@pytest.mark.parametrize("url", [
    "http://example.com/hooks",
    "http://10.0.0.5/hooks",
    "http://127.0.0.1.nip.io/hooks",
    "http://127.0.0.1@evil.example.com/hooks",
    "http://evil.example.com#@127.0.0.1/",
])
def test_api_redeliver_refuses_hosts_not_allowed(client: Any, url: str,
                                                 target: Target) -> None:
    answer = post_sample(client, "keygen", "license.created")
    response = client.post(f"/api/deliveries/{answer['delivery_id']}/redeliver",
                           json={"url": url})
    assert response.status_code == 403
    assert response.get_json()["ok"] is False
    assert "REDELIVER_ALLOW" in response.get_json()["error"]
    assert target.requests == []


def test_api_redeliver_allow_list_is_a_setting(make_app: Any, target: Target) -> None:
    client = make_app(REDELIVER_ALLOW="hooks.internal").test_client()
    answer = post_sample(client, "keygen", "license.created")
    response = client.post(f"/api/deliveries/{answer['delivery_id']}/redeliver",
                           json={"url": target.url})
    assert response.status_code == 403  # loopback is not on this allow list
    assert target.requests == []


@pytest.mark.parametrize("payload", [{}, {"url": ""}, {"url": 5}, {"url": "ftp://127.0.0.1/"},
                                     {"url": "not a url"}])
def test_api_redeliver_bad_request(client: Any, payload: dict[str, Any]) -> None:
    answer = post_sample(client, "keygen", "license.created")
    response = client.post(f"/api/deliveries/{answer['delivery_id']}/redeliver", json=payload)
    assert response.status_code == 400
    assert response.get_json()["ok"] is False


def test_api_redeliver_to_a_closed_port_reports_the_error(client: Any) -> None:
    from .conftest import free_port

    answer = post_sample(client, "keygen", "license.created")
    url = f"http://127.0.0.1:{free_port()}/hooks"
    response = client.post(f"/api/deliveries/{answer['delivery_id']}/redeliver",
                           json={"url": url})
    assert response.status_code in (200, 502)
    result = response.get_json()
    assert result.get("status") is None
    assert result["error"]
    assert result["url"] == url


def test_api_redeliver_unknown_delivery_is_404(client: Any, target: Target) -> None:
    response = client.post("/api/deliveries/999/redeliver", json={"url": target.url})
    assert response.status_code == 404
    assert target.requests == []


def test_api_actions_need_a_json_content_type(client: Any) -> None:
    """A cross-site form (text/plain, urlencoded) cannot trigger replay on an open receiver."""
    event_id = client.post("/hooks", data=b'{"type": "x.y"}').get_json()["event_id"]
    form = client.post(f"/api/events/{event_id}/replay", data='{"only_failed": false}',
                       content_type="text/plain")
    assert form.status_code == 400 and "application/json" in form.get_json()["error"]
    assert client.post(f"/api/events/{event_id}/replay", json={}).status_code == 200
    empty = client.post(f"/api/events/{event_id}/replay", content_type="application/json")
    assert empty.status_code == 200
    redeliver = client.post("/api/deliveries/1/redeliver", data="url=http://127.0.0.1:1/",
                            content_type="application/x-www-form-urlencoded")
    assert redeliver.status_code == 400


def test_feed_never_holds_a_single_threaded_worker(client: Any, monkeypatch: Any) -> None:
    """Under a sync worker (wsgi.multithread false) a long-poll would stall ingest."""
    from receiver.web import api

    def no_sleep(seconds: float) -> None:
        raise AssertionError("the feed held a sync worker")

    monkeypatch.setattr(api.time, "sleep", no_sleep)
    answer = client.get("/api/deliveries?after=999999&wait=25")
    assert answer.status_code == 200 and answer.get_json()["deliveries"] == []


def test_feed_long_polls_on_a_threaded_server(client: Any, monkeypatch: Any) -> None:
    from receiver.web import api

    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            client.post("/hooks", data=b'{"type": "late.arrival"}')

    monkeypatch.setattr(api.time, "sleep", nap)
    answer = client.get("/api/deliveries?after=0&wait=25",
                        environ_overrides={"wsgi.multithread": True})
    assert len(naps) == 3
    assert [d["source"] for d in answer.get_json()["deliveries"]] == ["generic"]
