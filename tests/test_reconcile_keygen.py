"""Reading Keygen's webhook event log: ``KeygenReconciler`` against a fake Keygen on 127.0.0.1.

Everything here is real HTTP: the fake (tests/fake_keygen.py) serves Keygen's API and sends
webhooks signed as Keygen does; the receiver's own verifier checks them. 429 waits go to a
recording ``sleep``, so they are asserted by value, never by the clock.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.config import Endpoint
from receiver.events import Delivery
from receiver.reconcile.base import DELIVERED, FAILING, IN_FLIGHT, VendorError
from receiver.reconcile.keygen import KeygenReconciler, parse_event, retry_after_seconds
from receiver.verify import VALID, verify

from .fake_keygen import REDACTED, FakeKeygen, iso

#: Where the account's webhook endpoint is registered at Keygen (and what Keygen signs).
REGISTERED = "https://hooks.example.com/hooks/keygen"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

MakeClient = Callable[..., KeygenReconciler]


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def keygen() -> Iterator[FakeKeygen]:
    with FakeKeygen() as fake:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    """What the client waited, in seconds (the injected ``sleep`` records, never sleeps)."""
    return []


@pytest.fixture
def make_client(keygen: FakeKeygen, sleeps: list[float]) -> Iterator[MakeClient]:
    """``make_client(**options)``: a client for the fake's account and token, closed after."""
    made: list[KeygenReconciler] = []

    def make(account: str | None = None, token: str | None = None, api_url: str | None = None,
             **options: Any) -> KeygenReconciler:
        client = KeygenReconciler(account or keygen.account_id, token or keygen.token,
                                  api_url or keygen.url, sleep=sleeps.append, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@dataclass
class Received:
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Hooks:
    """A stand-in for the receiver's ingest route: records each POST, answers 202."""

    url: str = ""
    received: list[Received] = field(default_factory=list)


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    found = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            found.received.append(Received(self.path, list(self.headers.items()), body))
            self.send_response(202)
            self.send_header("Content-Length", "8")
            self.end_headers()
            self.wfile.write(b"accepted")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield found
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def error_of(call: Callable[[], object]) -> str:
    """The VendorError message ``call`` raises (a list is read to the end)."""
    with pytest.raises(VendorError) as caught:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    return str(caught.value)


# -- listing -----------------------------------------------------------------------------------

def test_paging_follows_links_next_and_stops_at_since(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_events(250, endpoint_url=REGISTERED, start=T0, step=dt.timedelta(minutes=1))
    client = make_client()

    since = T0 + dt.timedelta(minutes=70)
    events = list(client.events_since(since))

    # the 180 events created at or after `since`, newest first
    assert len(events) == 180
    assert events[0].created == iso(T0 + dt.timedelta(minutes=249))
    assert events[-1].created == iso(since)
    assert [e.created for e in events] == sorted((e.created for e in events), reverse=True)
    # page 1 (100 newest) and page 2 (which reaches past `since`); page 3 is never asked for
    assert client.api_calls == 2
    assert [r.query for r in keygen.requests] == [
        {"page[size]": "100", "page[number]": "1"},
        {"page[number]": "2", "page[size]": "100"},
    ]


def test_an_old_since_reads_every_page_until_next_is_null(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_events(250, endpoint_url=REGISTERED, start=T0)
    client = make_client()

    events = list(client.events_since(T0 - dt.timedelta(days=1)))

    assert len(events) == 250
    assert client.api_calls == 3  # 100 + 100 + 50; the last page's links.next is null


def test_the_pages_of_one_listing_share_one_connection(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_events(30, endpoint_url=REGISTERED, start=T0)

    list(make_client(page_size=10).events_since(T0))

    assert len(keygen.requests) == 3
    assert len({r.peer for r in keygen.requests}) == 1


def test_ten_thousand_events_cost_one_page_when_since_is_recent(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_events(10_000, endpoint_url=REGISTERED, start=T0)
    client = make_client()

    events = list(client.events_since(T0 + dt.timedelta(seconds=9_950)))

    assert len(events) == 50
    assert client.api_calls == 1


def test_requests_carry_the_bearer_token_and_ask_for_json_api(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_event(endpoint_url=REGISTERED)

    list(make_client().events_since(T0))

    [seen] = keygen.requests
    assert seen.method == "GET"
    assert seen.path == f"/v1/accounts/{keygen.account_id}/webhook-events"
    assert seen.headers["authorization"] == f"Bearer {keygen.token}"
    assert seen.headers["accept"] == "application/vnd.api+json"


def test_the_account_may_be_named_by_its_slug(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_event(endpoint_url=REGISTERED)

    events = list(make_client(account=keygen.account_slug).events_since(T0))

    assert len(events) == 1
    assert keygen.requests[0].path == f"/v1/accounts/{keygen.account_slug}/webhook-events"


def test_events_of_every_endpoint_url_are_listed_with_their_state(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    delivered = keygen.add_event(endpoint_url=REGISTERED, last_response_code=200)
    refused = keygen.add_event("license.expired", endpoint_url="https://old.example.com/kg",
                               status="FAILED", last_response_body="CONN_REFUSED")
    failing = keygen.add_event("user.password-reset", endpoint_url="https://crm.example.com/h",
                               status="FAILING", last_response_code=500,
                               last_response_body="oops")
    sending = keygen.add_event(endpoint_url=REGISTERED, status="DELIVERING")

    events = {e.vendor_id: e for e in make_client().events_since(T0)}

    assert {e.endpoint_url for e in events.values()} == {
        REGISTERED, "https://old.example.com/kg", "https://crm.example.com/h"}
    assert events[delivered["id"]].state == DELIVERED
    assert events[refused["id"]].state == FAILING
    assert events[refused["id"]].last_response == "CONN_REFUSED"
    assert events[failing["id"]].state == FAILING
    assert events[failing["id"]].last_response == "500"
    assert events[failing["id"]].event == "user.password-reset"
    assert events[sending["id"]].state == IN_FLIGHT
    assert events[sending["id"]].token == sending["meta"]["idempotencyToken"]


def test_the_list_redacts_payloads_so_only_fetch_has_them(keygen: FakeKeygen) -> None:
    keygen.add_event(endpoint_url=REGISTERED)

    listed = httpx.get(f"{keygen.url}/v1/accounts/{keygen.account_id}/webhook-events",
                       headers={"Authorization": f"Bearer {keygen.token}"}).json()

    assert listed["data"][0]["attributes"]["payload"] == REDACTED


# -- fetch and resend --------------------------------------------------------------------------

def test_fetch_returns_the_exact_bytes_with_the_payload(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    payload = {"data": {"type": "licenses", "id": "lic-1", "attributes": {"key": "ABC-123"}}}
    item = keygen.add_event(payload=payload, endpoint_url=REGISTERED)
    url = f"{keygen.url}/v1/accounts/{keygen.account_id}/webhook-events/{item['id']}"

    fetched = make_client().fetch(item["id"])

    assert fetched.body == httpx.get(url, headers={"Authorization": f"Bearer {keygen.token}"},
                                     ).content
    assert fetched.url == url
    assert fetched.content_type == "application/vnd.api+json; charset=utf-8"
    document = json.loads(fetched.body)
    assert json.loads(document["data"]["attributes"]["payload"]) == payload


def test_resend_gets_a_new_id_with_the_same_token_delivered_signed(
        keygen: FakeKeygen, make_client: MakeClient, hooks: Hooks) -> None:
    original = keygen.add_event(endpoint_url=REGISTERED, status="FAILED",
                                last_response_body="CONN_REFUSED")
    keygen.route(REGISTERED, f"{hooks.url}/hooks/keygen")
    client = make_client()

    new_id = client.resend(original["id"])

    assert new_id != original["id"]
    assert keygen.wait_idle(10) and keygen.errors == []
    [received] = hooks.received
    document = json.loads(received.body)
    assert document["data"]["id"] == new_id
    assert document["data"]["meta"] == original["meta"]  # the same idempotency token
    assert document["data"]["attributes"]["status"] == "DELIVERING"
    # Keygen signed the registered URL; the receiver's own verifier accepts it
    endpoint = Endpoint(name="keygen", source="keygen", url=REGISTERED,
                        public_keys=(keygen.public_key_hex,), enforce=True)
    delivery = Delivery(body=received.body, headers=received.headers, endpoint="keygen",
                        path=received.path)
    verdict = verify("keygen", delivery, endpoint)
    assert verdict.status == VALID, verdict.reason
    # and Keygen's log now shows the new event delivered
    events = {e.vendor_id: e for e in client.events_since(T0)}
    assert events[new_id].state == DELIVERED
    assert events[new_id].last_response_code == 202
    assert events[new_id].token == events[original["id"]].token


def test_a_delivery_to_a_closed_port_is_failed_conn_refused(
        keygen: FakeKeygen, make_client: MakeClient, closed_port: int) -> None:
    item = keygen.add_event(endpoint_url=REGISTERED, status="DELIVERING")
    keygen.route(REGISTERED, f"http://127.0.0.1:{closed_port}/hooks/keygen")

    assert keygen.deliver(item["id"]) is None

    [event] = make_client().events_since(T0)
    assert (event.status, event.state, event.last_response) == ("FAILED", FAILING,
                                                                "CONN_REFUSED")


def test_retrying_an_event_whose_endpoint_is_gone_says_so(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    item = keygen.add_event(endpoint_url=REGISTERED, status="FAILED")
    keygen.remove_endpoint(REGISTERED)

    message = error_of(lambda: make_client().resend(item["id"]))

    assert "would not retry" in message and "422" in message
    assert "no longer has a webhook endpoint" in message


# -- refusals ----------------------------------------------------------------------------------

WRONG_TOKEN = "admin-0123456789abcdef-wrong-v3"


@pytest.mark.parametrize(("case", "expected"), [
    ("bad token", ["Keygen refused the API token", "401", "TOKEN_INVALID",
                   "check api_token / api_token_env"]),
    ("forbidden token", ["may not", "403", "admin, environment or read-only token"]),
    ("unknown account", ["Keygen knows no account nobody", "404", "ACCOUNT_NOT_FOUND"]),
    ("unknown event", ["Keygen has no webhook event 'no-such-event'", "404"]),
    ("server error", ["Keygen answered 500 Internal Server Error to GET /v1/accounts/",
                      "try again later"]),
    ("unreachable", ["cannot reach Keygen at http://127.0.0.1:", "refused"]),
])
def test_each_failure_is_one_sentence_naming_its_cause_and_never_the_token(
        keygen: FakeKeygen, make_client: MakeClient, closed_port: int, case: str,
        expected: list[str]) -> None:
    keygen.add_event(endpoint_url=REGISTERED)
    calls: dict[str, Callable[[], object]] = {
        "bad token": lambda: make_client(token=WRONG_TOKEN).events_since(T0),
        "forbidden token": lambda: make_client(token=keygen.forbidden_token).events_since(T0),
        "unknown account": lambda: make_client(account="nobody").events_since(T0),
        "unknown event": lambda: make_client().fetch("no-such-event"),
        "server error": lambda: make_client().events_since(T0),
        "unreachable": lambda: make_client(
            api_url=f"http://127.0.0.1:{closed_port}").events_since(T0),
    }
    if case == "server error":
        keygen.answer_next(1, 500)

    message = error_of(calls[case])

    for part in expected:
        assert part.lower() in message.lower(), message
    assert "\n" not in message
    for token in (keygen.token, keygen.forbidden_token, WRONG_TOKEN):
        assert token not in message


def test_the_token_is_scrubbed_even_when_keygen_echoes_it(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.answer_next(1, 500, errors=[{"title": "Oops", "detail": f"bad {keygen.token}"}])

    message = error_of(lambda: make_client().events_since(T0))

    assert keygen.token not in message and "[token]" in message


def test_a_silent_server_times_out(silent_port: int, make_client: MakeClient) -> None:
    client = make_client(api_url=f"http://127.0.0.1:{silent_port}", timeout=0.2)

    message = error_of(lambda: client.events_since(T0))

    assert message.startswith(f"cannot reach Keygen at http://127.0.0.1:{silent_port}: "
                              "no answer within 0.2 s")


def test_a_redirect_is_not_followed(keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.answer_next(1, 302, headers={"Location": "https://elsewhere.example/v1/x"})

    message = error_of(lambda: make_client().events_since(T0))

    assert "302" in message and "redirects are not followed" in message
    assert len(keygen.requests) == 1


def test_an_answer_that_is_not_json_api_is_refused(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.answer_next(1, 200, body=b"<html>captive portal</html>", content_type="text/html")

    message = error_of(lambda: make_client().events_since(T0))

    assert "is not a JSON:API document" in message and "api_url" in message


def test_an_oversized_answer_is_not_read(keygen: FakeKeygen, make_client: MakeClient) -> None:
    item = keygen.add_event(payload={"data": {"blob": "x" * 5000}}, endpoint_url=REGISTERED)
    client = make_client()
    client.max_body = 1000

    message = error_of(lambda: client.fetch(item["id"]))

    assert "larger than 1,000 bytes" in message


# -- 429 ---------------------------------------------------------------------------------------

def test_429s_are_waited_out_by_their_retry_after(
        keygen: FakeKeygen, make_client: MakeClient, sleeps: list[float]) -> None:
    keygen.add_event(endpoint_url=REGISTERED)
    keygen.throttle(1, retry_after=2)
    keygen.throttle(1, retry_after=3)
    client = make_client()

    events = list(client.events_since(T0))

    assert len(events) == 1
    assert sleeps == [2, 3]
    assert client.api_calls == 3  # the 429s count


@pytest.mark.parametrize(("retry_after", "waited"), [
    ("7", 7), (None, 1), ("soon", 1), ("-3", 1), ("86400", 300)])
def test_retry_after_missing_garbled_or_huge(
        keygen: FakeKeygen, make_client: MakeClient, sleeps: list[float],
        retry_after: str | None, waited: float) -> None:
    keygen.throttle(1, retry_after=retry_after)

    list(make_client().events_since(T0))

    assert sleeps == [waited]


def test_retry_after_may_be_an_http_date() -> None:
    now = T0.timestamp()

    assert retry_after_seconds(formatdate(now + 42, usegmt=True), now=now) == 42
    assert retry_after_seconds(formatdate(now - 42, usegmt=True), now=now) == 0


def test_endless_429s_give_up(
        keygen: FakeKeygen, make_client: MakeClient, sleeps: list[float]) -> None:
    keygen.throttle(50, retry_after=5)
    client = make_client(max_throttled=4)

    message = error_of(lambda: client.events_since(T0))

    assert "429" in message and "4 times in a row" in message
    assert client.api_calls == 4
    assert sleeps == [5, 5, 5]


# -- where links.next may lead -----------------------------------------------------------------

def test_a_next_link_to_another_host_is_refused(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_events(150, endpoint_url=REGISTERED, start=T0)
    keygen.rewrite_links = lambda links: {
        **links, "next": links["next"] and "https://evil.example" + links["next"]}

    message = error_of(lambda: make_client().events_since(T0))

    assert "https://evil.example:443" in message and "refusing to send the API token" in message
    assert len(keygen.requests) == 1


def test_an_absolute_next_link_to_api_url_is_followed(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_events(150, endpoint_url=REGISTERED, start=T0)
    keygen.rewrite_links = lambda links: {
        **links, "next": links["next"] and keygen.url + links["next"]}

    assert len(list(make_client().events_since(T0))) == 150


def test_a_next_link_back_to_a_page_already_read_ends_the_listing(
        keygen: FakeKeygen, make_client: MakeClient) -> None:
    keygen.add_events(150, endpoint_url=REGISTERED, start=T0)
    keygen.rewrite_links = lambda links: {**links, "next": links["self"]}
    client = make_client()

    assert len(list(client.events_since(T0))) == 100
    assert client.api_calls == 1


# -- the fake refuses like Keygen --------------------------------------------------------------

def test_the_fake_refuses_a_page_size_keygen_refuses(keygen: FakeKeygen) -> None:
    answer = httpx.get(f"{keygen.url}/v1/accounts/{keygen.account_id}/webhook-events",
                       params={"page[size]": "101"},
                       headers={"Authorization": f"Bearer {keygen.token}"})

    assert answer.status_code == 400
    assert answer.json()["errors"][0]["source"] == {"parameter": "page[size]"}
    with pytest.raises(ValueError, match="page_size"):
        KeygenReconciler(keygen.account_id, keygen.token, keygen.url, page_size=101)


def test_the_client_never_shows_its_token(make_client: MakeClient, keygen: FakeKeygen) -> None:
    assert keygen.token not in repr(make_client())


# -- parse_event -------------------------------------------------------------------------------

def listed(status: str, code: int | None = None, body: str | None = None,
           **meta: Any) -> dict[str, Any]:
    return {"id": "ev-1", "type": "webhook-events", "meta": meta, "attributes": {
        "endpoint": REGISTERED, "event": "license.created", "status": status,
        "lastResponseCode": code, "lastResponseBody": body,
        "created": "2024-05-01T14:00:00.250+02:00"}}


@pytest.mark.parametrize(("status", "code", "body", "state"), [
    ("DELIVERED", 204, None, DELIVERED),
    ("FAILING", 500, "oops", FAILING),
    ("FAILED", None, "CONN_REFUSED", FAILING),
    ("DELIVERING", None, None, IN_FLIGHT),
    ("QUEUED", 202, None, DELIVERED),  # a status Keygen may add: judged by the response
    ("QUEUED", 404, None, FAILING),
    ("QUEUED", None, "DNS_ERROR", FAILING),
    ("QUEUED", None, None, IN_FLIGHT),
])
def test_parse_event_state(status: str, code: int | None, body: str | None,
                           state: str) -> None:
    assert parse_event(listed(status, code, body)).state == state


def test_parse_event_reads_token_and_time_in_utc() -> None:
    event = parse_event(listed("DELIVERED", idempotencyToken="abc123"))

    assert event.token == "abc123"
    assert event.created == "2024-05-01T12:00:00.250Z"
    assert parse_event(listed("DELIVERED")).token == "ev-1"  # no token: the id


@pytest.mark.parametrize(("change", "named"), [
    (lambda item: item["attributes"].pop("created"), "attributes.created"),
    (lambda item: item["attributes"].update(created="yesterday"), "attributes.created"),
    (lambda item: item["attributes"].update(lastResponseCode="500"), "lastResponseCode"),
    (lambda item: item.update(type="licenses"), "type"),
    (lambda item: item.pop("id"), "no id"),
])
def test_parse_event_names_what_is_malformed(change: Callable[[dict[str, Any]], object],
                                             named: str) -> None:
    item = listed("DELIVERED")
    change(item)

    with pytest.raises(VendorError, match=named):
        parse_event(item)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The valid value nine times in ten, else anything JSON."""
    return st.integers(0, 9).flatmap(lambda roll: json_values if roll == 9 else valid)


zones = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23),
                                             max_value=dt.timedelta(hours=23)))
near_items = st.fixed_dictionaries({
    "id": maybe(st.uuids().map(str)),
    "type": maybe(st.just("webhook-events")),
    "attributes": maybe(st.fixed_dictionaries({
        "endpoint": maybe(st.just(REGISTERED)),
        "event": maybe(st.sampled_from(["license.created", "user.password-reset"])),
        "status": maybe(st.sampled_from(["DELIVERED", "FAILING", "FAILED", "DELIVERING", "X"])),
        "lastResponseCode": maybe(st.none() | st.integers(100, 599)),
        "lastResponseBody": maybe(st.none() | st.sampled_from(["CONN_REFUSED", "", "ok"])),
        "created": maybe(st.datetimes(timezones=zones).map(dt.datetime.isoformat)),
    })),
    "meta": maybe(st.fixed_dictionaries({"idempotencyToken": maybe(st.text(min_size=1))})),
})


@given(st.one_of(json_values, near_items))
def test_parse_event_parses_or_raises_vendor_error(value: Any) -> None:
    try:
        event = parse_event(value)
    except VendorError as error:
        assert str(error)
    else:
        assert event.state in (DELIVERED, FAILING, IN_FLIGHT)
        assert event.token and event.vendor_id
        assert event.created.endswith("Z")
