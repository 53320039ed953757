"""Odd inputs on every route (API, pages, ingest) get a 2xx or a 4xx that says why, never a
500: NUL bytes, unpaired surrogates, huge and non-finite numbers, times at the ends of the
calendar. The cases below are one input each; the Hypothesis runs draw from
``tests/hostile.py`` for the other inputs of each kind. Every test that touches the
database runs on SQLite and PostgreSQL, with the same answers."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver import on
from receiver.handlers import signals

from .hostile import (
    EDGE_DATES,
    EDGE_TEXT,
    hostile_text,
    json_body,
    query_params,
    query_string,
    shaped_documents,
)

pytestmark = pytest.mark.both_backends


def strict_json(text: str) -> Any:
    """What a client in another language would read: no NaN or Infinity, no lone surrogate."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON answer")

    document = json.loads(text, parse_constant=refuse)
    json.dumps(document, allow_nan=False).encode("utf-8")
    return document


def check_answer(response: Any, *, allowed: tuple[int, ...] = (200, 400, 404)) -> None:
    assert response.status_code in allowed, (response.status_code, response.data[:300])
    if response.mimetype == "application/json":
        answer = strict_json(response.get_data(as_text=True))
        if response.status_code >= 400:
            assert answer["ok"] is False and answer["error"]
    elif response.mimetype == "application/x-ndjson":
        for line in response.get_data(as_text=True).splitlines():
            strict_json(line)


# -- one odd input each -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/events", "/"])
def test_search_with_a_nul_byte_is_a_search(client, path) -> None:
    client.post("/hooks", json={"type": "order.paid", "note": "alpha beta"})
    response = client.get(path + "?q=alpha%00beta")
    assert response.status_code == 200
    if path == "/api/events":
        assert [event["event_type"] for event in response.json["events"]] == ["order.paid"]


@pytest.mark.parametrize("path", ["/api/events", "/", "/api/export.ndjson"])
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_outside_the_utc_calendar_is_a_400(client, path, moment) -> None:
    response = client.get(path, query_string={"since": moment},
                          headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert "since must be an ISO 8601 time from year 1 to 9999" in response.json["error"]


@pytest.mark.parametrize("path", ["/api/events", "/"])
@pytest.mark.parametrize("digits", ["\u00b3", "\u2460\u2461"])
def test_digits_that_are_no_number_are_no_time(client, path, digits) -> None:
    """``"³".isdigit()`` is true, ``int("³")`` raises: not a time, a 400."""
    response = client.get(path, query_string={"until": digits},
                          headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert "until must be an ISO 8601 time" in response.json["error"]
    posted = client.post("/hooks", json={"type": "x.y", "timestamp": digits})
    assert posted.status_code == 200, posted.json


def test_payload_time_outside_the_utc_calendar_is_no_time(client, store) -> None:
    response = client.post("/hooks", json={"type": "x.y",
                                           "timestamp": "0001-01-01T00:00:00+14:00"})
    assert response.status_code == 200
    assert store.get_event(response.json["event_id"]).occurred_at is None


def test_nul_in_the_record_is_a_replacement_character_and_kept_in_data(client, store) -> None:
    """PostgreSQL's text cannot hold U+0000: on every backend the record's text fields hold
    U+FFFD in its place, ``data`` keeps it (JSON text: ``\\u0000``), the raw body its bytes."""
    body = (b'{"event": "license.created", "id": "ls-\\u0000", "company_id": "c\\u00007",'
            b' "ts": 1, "data": {"license": {"id": "lic\\u0000-5", "note": "a\\u0000b"}}}')
    response = client.post("/hooks/licensing%00eu", data=body, content_type="application/json")
    assert response.status_code == 200, response.json
    event = store.get_event(response.json["event_id"])
    assert (event.external_id, event.account, event.subject_id, event.endpoint) == (
        "ls-\ufffd", "c\ufffd7", "lic\ufffd-5", "licensing\ufffdeu")
    assert event.data["license"] == {"id": "lic\x00-5", "note": "a\x00b"}
    delivery = store.get_delivery(response.json["delivery_id"], with_body=True)
    assert delivery["body"] == body and delivery["path"] == "/hooks/licensing\ufffdeu"
    # A filter with the NUL the sender sent finds what was stored.
    for name, value in (("subject_id", "lic\x00-5"), ("account", "c\x007"),
                        ("endpoint", "licensing\x00eu")):
        found = client.get("/api/events", query_string={name: value}).json["events"]
        assert [item["id"] for item in found] == [event.id], name
    assert client.get("/api/deliveries", query_string={"endpoint": "licensing\x00eu"}
                      ).json["deliveries"][0]["id"] == delivery["id"]
    again = client.post("/hooks/licensing%00eu", data=body, content_type="application/json")
    assert again.json["duplicate"] is True and again.json["event_id"] == event.id
    generic = client.post("/hooks", data=b'{"type": "x\\u0000y"}',
                          content_type="application/json")
    assert generic.status_code == 200 and generic.json["event_type"] == "x\ufffdy"


def test_handler_errors_with_nul_are_recorded(make_app) -> None:
    """A handler's exception text comes from anywhere (often the payload)."""
    signals.reset_registry()

    @on("nul.raised", name="tests.nul")
    def raise_with_nul(event: Any, **_: Any) -> None:
        raise ValueError(f"bad {event.data['value']} value")

    try:
        app = make_app(DISPATCH="sync")
        response = app.test_client().post("/hooks", json={"type": "nul.raised",
                                                          "value": "\x00"})
        assert response.status_code == 200
        runs = app.extensions["receiver.store"].runs_for_event(response.json["event_id"])
        assert [(run["handler"], run["error"]) for run in runs] == [
            ("tests.nul", "ValueError: bad \ufffd value")]
        assert "\ufffd" in runs[0]["traceback"]
    finally:
        signals.reset_registry()


def test_unpaired_surrogate_escapes_are_read_as_replacement_characters(client, store) -> None:
    body = (b'{"id": "ls-\\ud800", "event": "license.created", "company_id": 7, "ts": 1,'
            b' "data": {"license": {"id": 5, "note": "cut \\ud83d",'
            b' "\\udfffkey": "ok \\ud83d\\ude00"}}}')
    response = client.post("/hooks", data=body, content_type="application/json")
    assert response.status_code == 200, response.json
    event = store.get_event(response.json["event_id"])
    assert event.external_id == "ls-\ufffd"
    assert event.data["license"] == {"id": 5, "note": "cut \ufffd", "\ufffdkey": "ok \U0001f600"}
    assert store.get_delivery(response.json["delivery_id"], with_body=True)["body"] == body
    for path in (f"/api/events/{event.id}", f"/events/{event.id}",
                 f"/api/deliveries/{response.json['delivery_id']}"):
        check_answer(client.get(path), allowed=(200,))


@pytest.mark.parametrize(("body", "sentence"), [
    (b'{"type": "x", "n": 1e400}', "the number 1e400 is too large for a 64-bit float"),
    (b'{"type": "x", "n": -1e400}', "the number -1e400 is too large for a 64-bit float"),
    (b'{"type": "x", "n": NaN}', "NaN is not a JSON number"),
    (b'{"type": "x", "n": -Infinity}', "-Infinity is not a JSON number"),
])
def test_numbers_json_cannot_carry_are_a_400_naming_them(client, store, body, sentence) -> None:
    response = client.post("/hooks", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"] == f"body is not acceptable JSON: {sentence}"
    assert store.get_delivery(response.json["delivery_id"], with_body=True)["body"] == body


def test_keygen_payload_string_is_read_the_same_way(client) -> None:
    envelope = {"data": {"type": "webhook-events", "id": "d1", "attributes": {
        "event": "license.created", "payload": '{"data": {"id": "x", "n": NaN}}'}}}
    response = client.post("/hooks", json=envelope)
    assert response.status_code == 400
    assert response.json["error"] == ("Keygen webhook data.attributes.payload is not "
                                      "acceptable JSON: NaN is not a JSON number")


@pytest.mark.parametrize(("url", "fragment"), [
    ("http://[::1", "url is not a valid URL (Invalid IPv6 URL)"),
    ("http://127.0.0.1:99999/", "url is not a valid URL (Port out of range"),
    ("http://localhost:-1/", "url is not a valid URL"),
    ("http://localhost/caf\u00e9", "url must be ASCII without spaces or control characters"),
    ("http://localhost/x y", "url must be ASCII without spaces or control characters"),
    ("http://localhost/x\r\nX-Injected: 1", "url must be ASCII without spaces"),
])
def test_redeliver_to_a_url_that_cannot_be_sent_is_a_400(client, url, fragment) -> None:
    delivery_id = client.post("/hooks", json={"type": "x"}).json["delivery_id"]
    response = client.post(f"/api/deliveries/{delivery_id}/redeliver", json={"url": url})
    assert response.status_code == 400
    assert fragment in response.json["error"]
    page = client.get(f"/deliveries/{delivery_id}")
    form = client.post(f"/deliveries/{delivery_id}/redeliver", data={
        "url": url, "csrf_token": _csrf(page.get_data(as_text=True))})
    assert form.status_code == 400 and fragment.split(" (")[0] in form.get_data(as_text=True)


def _csrf(page: str) -> str:
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]


@pytest.mark.parametrize(("body", "error"), [
    (b"null", "replay options must be a JSON object"),
    (b'{"only_failed": "no"}', "only_failed must be true or false"),
    (b'{"only_failed": NaN}', "body is not acceptable JSON: NaN is not a JSON number"),
    (b'{"handlers": [1]}', "handlers must be a list of handler names or null"),
])
def test_replay_options_are_checked(client, body, error) -> None:
    event_id = client.post("/hooks", json={"type": "x"}).json["event_id"]
    response = client.post(f"/api/events/{event_id}/replay", data=body,
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"] == error


def test_event_type_filter_refuses_a_trailing_newline(client) -> None:
    response = client.get("/api/events?event_type=license.created%0A")
    assert response.status_code == 400


# -- the whole class, drawn by Hypothesis ---------------------------------------------------

ROUTES = ["/api/events", "/api/deliveries", "/api/export.ndjson", "/api/events/1",
          "/api/deliveries/1", "/api/deliveries/1/raw", "/-/health", "/-/plugins",
          "/api/openapi.json", "/", "/deliveries", "/events/1", "/deliveries/1", "/login",
          "/logout", "/api/activity", "/activity"]
PARAMETERS = ["source", "event_type", "endpoint", "account", "subject_id", "signature_status",
              "dispatch_status", "q", "since", "until", "limit", "cursor", "after", "wait",
              "status_code", "rejected", "reveal", "next", "token", "bucket", "start"]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", PARAMETERS)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), value=hostile_text,
       accept=st.sampled_from(["application/json", "text/html"]))
def test_any_query_parameter_on_any_route_is_answered(client, name, route, value,
                                                       accept) -> None:
    client.post("/hooks", json={"type": "license.created", "id": 1})  # ids 1 exist
    response = client.get(f"{route}?{query_string({name: value})}", headers={"Accept": accept})
    check_answer(response, allowed=(200, 303, 400, 404))


LISTS = ["/api/events", "/api/deliveries", "/api/export.ndjson", "/", "/deliveries"]


@pytest.mark.parametrize("route", LISTS)
def test_every_edge_value_in_every_parameter_of_the_lists(client, route) -> None:
    """Deterministic: each value of ``EDGE_TEXT`` in each parameter, one at a time."""
    client.post("/hooks", json={"type": "license.created", "note": "alpha beta"})
    for name in PARAMETERS:
        for value in EDGE_TEXT:
            response = client.get(f"{route}?{query_string({name: value})}")
            check_answer(response, allowed=(200, 400))


@FUZZ
@given(route=st.sampled_from(ROUTES), params=query_params(PARAMETERS))
def test_query_parameters_together_are_answered(client, route, params) -> None:
    response = client.get(f"{route}?{query_string(params)}",
                          headers={"Accept": "application/json"})
    check_answer(response, allowed=(200, 303, 400, 404))


@FUZZ
@given(prefix=st.sampled_from(["/api/events/", "/api/deliveries/", "/events/", "/deliveries/",
                               "/hooks/"]),
       segment=hostile_text.filter(lambda text: "/" not in text and text.strip()),
       suffix=st.sampled_from(["", "/raw", "/replay", "/redeliver"]))
def test_any_path_segment_is_answered(client, prefix, segment, suffix) -> None:
    path = prefix + urllib.parse.quote(segment.encode("utf-8", "surrogatepass")) + suffix
    response = client.get(path, headers={"Accept": "application/json"})
    check_answer(response, allowed=(200, 400, 404, 405))


@FUZZ
@given(document=shaped_documents | st.sampled_from([{"type": "\ud800"},
                                                    {"type": "x\x00y", "id": "\x00"}]),
       endpoint=st.sampled_from(["", "/keygen", "/licensespring", "/fno", "/zentitle",
                                 "/standard", "/anything"]))
def test_any_json_document_is_stored_and_shown(client, document, endpoint) -> None:
    response = client.post("/hooks" + endpoint, data=json_body(document),
                           content_type="application/json")
    check_answer(response, allowed=(200, 400))
    delivery_id = response.json["delivery_id"]
    check_answer(client.get(f"/api/deliveries/{delivery_id}"), allowed=(200,))
    assert client.get(f"/deliveries/{delivery_id}").status_code == 200
    if response.status_code == 200:
        event_id = response.json["event_id"]
        check_answer(client.get(f"/api/events/{event_id}"), allowed=(200,))
        assert client.get(f"/events/{event_id}").status_code == 200
        listed = client.get("/api/events", query_string={"event_type": "*", "limit": 1})
        check_answer(listed, allowed=(200,))


#: Where a client's time meets a bucket, a default range or a chart.
DATE_ROUTES = ["/api/activity", "/activity", "/", "/deliveries", "/api/events",
               "/api/deliveries", "/handlers"]
#: What Python says about a time it cannot hold: never an answer's sentence.
INTERNAL_SENTENCES = ("isoformat", "out of range", "overflow", "year 0 is", "year 10000")


@pytest.mark.parametrize("route", DATE_ROUTES)
def test_edge_dates_answer_a_400_of_ours_or_a_sane_answer(client, route) -> None:
    """Each time at the ends of the calendar, alone and in pairs, in every bucket size: a
    200, or a 400 in our own words; never a 500."""
    client.post("/hooks", json={"type": "license.created", "id": 1})
    asked = [{name: moment} for name in ("since", "until", "start") for moment in EDGE_DATES]
    if route == "/api/activity":
        asked += [{"since": since, "until": until} for since in EDGE_DATES
                  for until in EDGE_DATES]
    for params in asked:
        for bucket in ("", "minute", "day"):
            response = client.get(f"{route}?{query_string({**params, 'bucket': bucket})}",
                                  headers={"Accept": "application/json"})
            check_answer(response, allowed=(200, 400))
            if response.status_code == 400 and response.mimetype == "application/json":
                error = response.json["error"]
                assert not any(words in error for words in INTERNAL_SENTENCES), (params, error)
            if route == "/api/activity" and response.status_code == 200:
                starts = [bucket["start"] for bucket in response.json["buckets"]]
                assert starts and all(len(start) == 20 for start in starts), starts


@pytest.mark.parametrize(("query", "sentence"), [
    ("since=9999-12-31T23:00:00Z&until=9999-12-31T23:59:59Z&bucket=minute",
     "since must be before 9999-12-31"),
    ("until=0001-01-01T00:00:00Z", "until must be after 0001-01-01T00:00:00.000Z"),
    ("since=0001-01-01", "day buckets are more than one answer holds"),
])
def test_activity_at_the_ends_of_the_calendar_says_why(client, query, sentence) -> None:
    response = client.get(f"/api/activity?{query}")
    assert response.status_code == 400 and sentence in response.json["error"]


def test_activity_of_the_first_hour_of_the_calendar(client) -> None:
    response = client.get("/api/activity?until=0001-01-01T00:30:00Z&bucket=minute")
    assert response.status_code == 200
    starts = [bucket["start"] for bucket in response.json["buckets"]]
    assert starts[0] == "0001-01-01T00:00:00Z" and starts[-1] == "0001-01-01T00:29:00Z"
