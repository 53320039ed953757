"""POST /hooks: every row of the answers table in docs/reference.md#ingest, bad input with a
clear error, nothing lost."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import sample

JSON = {"Content-Type": "application/json"}


def deliveries(store):
    return store.list_deliveries(store_filters(), limit=500)[0]


def store_filters():
    from receiver.store import DeliveryFilters

    return DeliveryFilters()


def assert_refused(client, store, body: bytes, status: int, fragment: str, **kwargs) -> dict:
    response = client.post("/hooks", data=body, **kwargs)
    assert response.status_code == status, response.json
    answer = response.json
    assert answer["ok"] is False and fragment in answer["error"]
    stored = store.get_delivery(answer["delivery_id"], with_body=True)
    assert stored["status_code"] == status and stored["error"] == answer["error"]
    assert stored["event_id"] is None
    return stored


def test_new_event_answer_has_contract_fields(client, store) -> None:
    item = sample("licensespring", "license.created")
    response = client.post("/hooks", data=item.body, headers=item.headers)
    assert response.status_code == 200
    assert response.content_type == "application/json"
    answer = response.json
    assert set(answer) == {"ok", "delivery_id", "event_id", "source", "event_type",
                           "duplicate", "signature_status"}
    assert answer["ok"] is True and answer["duplicate"] is False
    assert answer["signature_status"] == "unchecked"


def test_same_event_twice_is_one_event_two_deliveries(client, store) -> None:
    item = sample("keygen", "license.created")
    first = client.post("/hooks", data=item.body, headers=item.headers).json
    second = client.post("/hooks", data=item.body, headers=item.headers).json
    assert second["duplicate"] is True and first["duplicate"] is False
    assert second["event_id"] == first["event_id"]
    event = store.get_event(first["event_id"])
    assert event.delivery_count == 2
    rows = store.deliveries_for_event(first["event_id"])
    assert [row["duplicate"] for row in rows] == [False, True]
    # Dispatched once: one settle, whatever handlers exist.
    assert event.dispatch_status in ("done", "failed")


def test_keygen_retry_with_new_delivery_id_and_same_token_is_a_duplicate(client) -> None:
    item = sample("keygen", "license.updated")
    document = json.loads(item.body)
    first = client.post("/hooks", data=item.body, headers=item.headers).json
    document["data"]["id"] = "1f1e4f5e-0000-4000-8000-000000000001"
    retried = client.post("/hooks", data=json.dumps(document), headers=item.headers).json
    assert retried["duplicate"] is True and retried["event_id"] == first["event_id"]


def test_zentitle_call_attempt_change_is_still_a_duplicate(client) -> None:
    item = sample("zentitle", "entitlement.created")
    document = json.loads(item.body)
    first = client.post("/hooks", data=item.body, headers=item.headers).json
    document["callAttempt"] = 2
    again = client.post("/hooks", data=json.dumps(document), headers=item.headers).json
    assert again["duplicate"] is True and again["event_id"] == first["event_id"]


@pytest.mark.parametrize("body", [b"", b"{}", b"null", b'""', b"  \n"])
def test_pings_are_recorded_and_never_duplicates(client, store, body: bytes) -> None:
    first = client.post("/hooks", data=body, headers=JSON).json
    second = client.post("/hooks", data=body, headers=JSON).json
    assert first["event_type"] == second["event_type"] == "webhook.test"
    assert first["source"] == "generic"
    assert first["event_id"] != second["event_id"]
    assert not first["duplicate"] and not second["duplicate"]


def test_ping_takes_the_source_of_the_endpoint(client, make_app) -> None:
    assert client.post("/hooks/zentitle", data=b"").json["source"] == "zentitle"
    configured = make_app(ENDPOINTS={"lic": {"source": "licensespring"}}).test_client()
    assert configured.post("/hooks/lic", data=b"{}").json["source"] == "licensespring"


def test_zentitle_test_button_envelope_is_a_ping(client) -> None:
    item = sample("zentitle", "webhook.test")
    answer = client.post("/hooks", data=item.body, headers=item.headers).json
    assert (answer["source"], answer["event_type"]) == ("zentitle", "webhook.test")


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "body is not valid JSON"),
    (b'{"a": 1,}', "body is not valid JSON"),
    (b"[1, 2]", "must be a JSON object, got a JSON array"),
    (b"42", "got a JSON number"),
    (b'"hello"', "got a JSON string"),
    (b"true", "got a JSON boolean"),
    (b"\xff\xfe{\x00}", "not valid UTF-8"),
    (b'{"eventHeader": {"eventType": "UPDATE"}, "eventBody": {}}',
     "FNO webhook has no eventHeader.event"),
    (b'{"eventHeader": "x", "eventBody": {}}', "eventHeader must be an object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"n": ' + b"9" * 5000 + b"}", "not acceptable JSON"),
])
def test_bad_bodies_get_400_and_are_kept(client, store, body: bytes, fragment: str) -> None:
    stored = assert_refused(client, store, body, 400, fragment, headers=JSON)
    assert stored["body"] == body


def test_keygen_payload_that_is_not_json(client, store) -> None:
    item = sample("keygen", "license.created")
    document = json.loads(item.body)
    document["data"]["attributes"]["payload"] = "{oops"
    body = json.dumps(document).encode()
    stored = assert_refused(client, store, body, 400, "payload is not valid JSON",
                            headers=item.headers)
    assert stored["source"] == "keygen"


def test_keygen_envelope_without_event(client, store) -> None:
    item = sample("keygen", "license.created")
    document = json.loads(item.body)
    del document["data"]["attributes"]["event"]
    assert_refused(client, store, json.dumps(document).encode(), 400,
                   "no data.attributes.event", headers=item.headers)


def test_configured_endpoint_fixes_the_dialect(make_app, store) -> None:
    client = make_app(ENDPOINTS={"keygen": {"source": "keygen"}}).test_client()
    item = sample("licensespring", "license.created")
    response = client.post("/hooks/keygen", data=item.body, headers=item.headers)
    assert response.status_code == 400
    assert "Keygen webhook body must be" in response.json["error"]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded",
                                          "application/vnd.api+json", "weird/thing; x=1"])
def test_content_type_does_not_matter_for_json(client, content_type) -> None:
    item = sample("keygen", "machine.created")
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/hooks", data=item.body, headers=headers)
    assert response.status_code == 200
    assert response.json["event_type"] == "machine.created"


def test_form_body_gets_a_clear_error(client, store) -> None:
    assert_refused(client, store, b"a=1&b=2", 400, "body is not valid JSON",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_unknown_json_is_stored_as_generic(client, store) -> None:
    response = client.post("/hooks", data=b'{"hello": "world"}', headers=JSON)
    assert response.status_code == 200
    event = store.get_event(response.json["event_id"])
    assert (event.source, event.event_type, event.data) == ("generic", "unknown",
                                                             {"hello": "world"})
    assert event.external_id.startswith("sha256:")


def test_oversized_body_is_413_with_headers_kept(make_app) -> None:
    app = make_app(MAX_BODY=1000)
    client, store = app.test_client(), app.extensions["receiver.store"]
    body = b'{"x": "' + b"a" * 2000 + b'"}'
    response = client.post("/hooks", data=body, headers={"X-Trace": "t1", **JSON})
    assert response.status_code == 413
    assert "at most 1000 bytes" in response.json["error"]
    stored = store.get_delivery(response.json["delivery_id"], with_body=True)
    assert stored["body"] is None and stored["status_code"] == 413
    assert ["X-Trace", "t1"] in stored["headers"]
    # Exactly at the limit is fine.
    fits = b'{"x": "' + b"a" * (1000 - 9) + b'"}'
    assert len(fits) == 1000
    assert client.post("/hooks", data=fits, headers=JSON).status_code == 200


def test_oversized_chunked_body_without_length_is_413(make_app) -> None:
    app = make_app(MAX_BODY=100)
    client = app.test_client()

    response = client.post("/hooks", input_stream=io.BytesIO(b"x" * 500),
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert "more than 100 bytes" in response.json["error"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow_post(client, store, method) -> None:
    response = client.open("/hooks/keygen", method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert "POST" in response.json["error"]
    assert deliveries(store) == []


def test_strict_endpoints_refuse_unknown_names(make_app) -> None:
    app = make_app(STRICT_ENDPOINTS=True, ENDPOINTS={"keygen": {"source": "keygen"}})
    client, store = app.test_client(), app.extensions["receiver.store"]
    response = client.post("/hooks/nope", data=b"{}", headers=JSON)
    assert response.status_code == 404
    assert "no endpoint named 'nope'" in response.json["error"]
    assert store.get_delivery(response.json["delivery_id"])["endpoint"] == "nope"
    assert client.post("/hooks", data=b"{}").status_code == 200


def test_ad_hoc_endpoint_names_are_channels(client, store) -> None:
    item = sample("fno", "product.updated")
    answer = client.post("/hooks/staging", data=item.body, headers=item.headers).json
    assert store.get_event(answer["event_id"]).endpoint == "staging"


def test_headers_kept_in_order_with_query_and_remote_addr(client, store) -> None:
    response = client.post("/hooks/x?attempt=3", data=b"{}", headers=[
        ("X-First", "1"), ("X-Second", "2"), ("Content-Type", "application/json")])
    stored = store.get_delivery(response.json["delivery_id"])
    names = [name for name, _ in stored["headers"]]
    assert names.index("X-First") < names.index("X-Second")
    assert stored["query"] == "attempt=3" and stored["path"] == "/hooks/x"
    assert stored["remote_addr"] == "127.0.0.1" and stored["method"] == "POST"


def test_database_that_cannot_take_the_write_answers_503(app, client, store) -> None:
    item = sample("licensespring", "license.created")
    client.post("/hooks", data=item.body, headers=item.headers)
    store.conn.execute("PRAGMA query_only = ON")
    try:
        response = client.post("/hooks", data=sample("licensespring", "order.created").body)
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert "cannot take the write" in response.json["error"]
    finally:
        store.conn.execute("PRAGMA query_only = OFF")
    again = client.post("/hooks", data=sample("licensespring", "order.created").body)
    assert again.status_code == 200


header_names = st.sampled_from([
    "Content-Type", "Keygen-Signature", "webhook-id", "webhook-timestamp", "webhook-signature",
    "N-Signature", "Authorization", "Date", "Digest", "X-Anything", "Content-Encoding",
    "svix-id", "svix-timestamp", "svix-signature",
])
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | st.sampled_from([s.body for s in
                                                        [sample("keygen", "license.created"),
                                                         sample("fno", "device.created")]]),
       headers=st.lists(st.tuples(header_names, header_values), max_size=6),
       endpoint=st.sampled_from(["", "/keygen", "/fno", "/zentitle", "/x"]))
def test_random_bytes_and_headers_never_give_500(client, body, headers, endpoint) -> None:
    response = client.post("/hooks" + endpoint, data=body, headers=headers)
    # 415: a Content-Encoding other than gzip or deflate.
    assert response.status_code in (200, 400, 401, 415), response.json
    assert response.json["delivery_id"]
