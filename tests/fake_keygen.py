"""A fake Keygen on 127.0.0.1: its webhook-events API and its webhook sender.

Written from what Keygen's source does (keygen-sh/keygen-api), not from the client under test:

- ``GET /v1/accounts/<id or slug>/webhook-events``: newest first, ``page[size]`` 1..100
  (default 10) and ``page[number]``, ``links`` {self, first, prev, next, last} as relative
  URLs; payloads read ``"[REDACTED]"`` as Keygen's serializer renders them in a list.
- ``GET .../webhook-events/<id>``: ``{"data": <event with payload>}``.
- ``POST .../webhook-events/<id>/actions/retry``: 201 with a new event (new id, same
  idempotency token), delivered from a background thread after the answer (Sidekiq); 422 when
  the account has no endpoint with that URL any more.
- Errors in JSON:API shape: 401 without the token, 403 for ``forbidden_token`` (a product or
  license token), 404 for an unknown account or event, 400 for a bad ``page[size]``; canned
  answers (``throttle``, ``answer_next``) come first, as a rate limiter in front would.
- A delivery POSTs ``{"data": <event>}`` (status DELIVERING, last* null) signed with Ed25519
  over the *registered* URL's path, query and host (no port), to wherever ``route`` says it
  physically goes; the outcome updates status and last* as Keygen's worker does.

Error codes and details not quoted in Keygen's docs (the 400, 422 and 429 ones) are assumed.
"""

from __future__ import annotations

import base64
import bisect
import collections
import datetime as dt
import hashlib
import http.client
import json
import math
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

API_VERSION = "1.7"
USER_AGENT = f"Keygen/{API_VERSION} (+https://keygen.sh/docs/api/webhooks/)"
JSONAPI = "application/vnd.api+json; charset=utf-8"
REDACTED = "[REDACTED]"
MS = dt.timedelta(milliseconds=1)

Item = dict[str, Any]


def iso(moment: dt.datetime) -> str:
    """Keygen's time format: ``2024-05-01T12:00:00.000Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> dt.datetime:
    moment = dt.datetime.now(dt.UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _error(status: int, title: str, detail: str, code: str | None = None,
           **extra: Any) -> Answer:
    error: dict[str, Any] = {"title": title, "detail": detail}
    if code is not None:
        error["code"] = code
    error.update(extra)
    return Answer(status, _json({"errors": [error]}))


@dataclass(frozen=True)
class SeenRequest:
    """One API request as the fake saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    peer: tuple[str, int]


@dataclass(frozen=True)
class Sent:
    """One webhook delivery the fake made."""

    event_id: str
    url: str  # where it physically went
    headers: list[tuple[str, str]]
    body: bytes
    status: int | None  # the HTTP answer, None without one


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSONAPI


@dataclass(order=True)
class _Row:
    key: tuple[float, int]  # (-created, -sequence): newest first
    item: Item = field(compare=False)


class FakeKeygen:
    """``with FakeKeygen() as keygen:`` serves Keygen's API at ``keygen.url`` for account
    ``keygen.account_id`` (or ``keygen.account_slug``) to bearer ``keygen.token``, and signs
    webhooks with ``keygen.signing_key`` (public half: ``keygen.public_key_hex``)."""

    def __init__(self, *, account_slug: str = "acme") -> None:
        self.account_id = str(uuid.uuid4())
        self.account_slug = account_slug
        self.token = f"admin-{secrets.token_hex(24)}v3"
        #: A token Keygen knows but that may not list webhook events (a product token).
        self.forbidden_token = f"prod-{secrets.token_hex(24)}v3"
        self.signing_key = Ed25519PrivateKey.generate()
        raw = self.signing_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)
        self.public_key_hex = raw.hex()
        #: Every API request seen, in order.
        self.requests: list[SeenRequest] = []
        #: Every webhook delivery made, in order.
        self.deliveries: list[Sent] = []
        #: Exceptions from background deliveries (a test may assert it stays empty).
        self.errors: list[BaseException] = []
        #: Called with each list page's ``links`` to return the links served (tests bend them).
        self.rewrite_links: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.url = ""
        self._rows: list[_Row] = []
        self._by_id: dict[str, Item] = {}
        self._endpoints: set[str] = set()
        self._routes: dict[str, str] = {}
        self._canned: collections.deque[Answer] = collections.deque()
        self._sequence = 0
        self._last_created = _now() - dt.timedelta(days=1)
        self._lock = threading.RLock()
        self._idle = threading.Condition()
        self._pending = 0
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> FakeKeygen:
        fake = self

        class Handler(_Handler):
            keygen = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                  name="fake-keygen", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def close(self) -> None:
        self.wait_idle(5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> FakeKeygen:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    # -- events ---------------------------------------------------------------------------------

    def _moment(self, created: dt.datetime | str | None) -> dt.datetime:
        """``created`` as an aware datetime; None: now, and after every event so far."""
        if created is None:
            moment = max(_now(), self._last_created + MS)
        elif isinstance(created, str):
            moment = dt.datetime.fromisoformat(created)
        else:
            moment = created
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        self._last_created = max(self._last_created, moment)
        return moment

    @staticmethod
    def _license(stamp: str) -> dict[str, Any]:
        raw = secrets.token_hex(12).upper()
        key = "-".join(raw[i:i + 6] for i in range(0, 24, 6))
        return {"data": {"type": "licenses", "id": str(uuid.uuid4()), "attributes": {
            "name": None, "key": key, "status": "ACTIVE", "uses": 0, "expiry": None,
            "created": stamp, "updated": stamp}}}

    def _item(self, *, event: str, payload: Any, endpoint_url: str, status: str,
              moment: dt.datetime, code: int | None, body: str | None,
              token: str | None) -> Item:
        event_id = str(uuid.uuid4())
        stamp = iso(moment)
        if payload is None:
            payload = self._license(stamp)
        text = payload if isinstance(payload, str) else json.dumps(payload,
                                                                  separators=(",", ":"))
        account = f"/v1/accounts/{self.account_id}"
        return {
            "id": event_id,
            "type": "webhook-events",
            "attributes": {
                "endpoint": endpoint_url, "payload": text, "event": event, "status": status,
                "lastResponseCode": code, "lastResponseBody": body, "apiVersion": API_VERSION,
                "created": stamp, "updated": stamp,
            },
            "relationships": {"account": {"data": {"type": "accounts", "id": self.account_id},
                                          "links": {"related": account}}},
            "links": {"self": f"{account}/webhook-events/{event_id}"},
            "meta": {"idempotencyToken": token or secrets.token_hex(32)},
        }

    def _row(self, item: Item, moment: dt.datetime) -> _Row:
        self._sequence += 1
        self._by_id[item["id"]] = item
        self._endpoints.add(item["attributes"]["endpoint"])
        return _Row((-moment.timestamp(), -self._sequence), item)

    def add_event(self, event: str = "license.created", payload: Any = None, *,
                  endpoint_url: str, status: str = "DELIVERED",
                  created: dt.datetime | str | None = None,
                  last_response_code: int | None = None, last_response_body: str | None = None,
                  token: str | None = None) -> Item:
        """Store one event (``payload`` a dict or JSON text; default a small license) and
        register ``endpoint_url`` as one of the account's endpoints. ``created`` defaults to
        now, each such call newer than the one before. Returns the stored item."""
        with self._lock:
            moment = self._moment(created)
            item = self._item(event=event, payload=payload, endpoint_url=endpoint_url,
                              status=status, moment=moment, code=last_response_code,
                              body=last_response_body, token=token)
            bisect.insort(self._rows, self._row(item, moment))
            return item

    def add_events(self, n: int, event: str = "license.created", *, endpoint_url: str,
                   status: str = "DELIVERED", start: dt.datetime | None = None,
                   step: dt.timedelta = dt.timedelta(seconds=1),
                   last_response_code: int | None = None,
                   last_response_body: str | None = None) -> list[Item]:
        """Store ``n`` events created ``step`` apart from ``start`` (default: after every event
        so far); returns them oldest first."""
        with self._lock:
            first = self._moment(start) if start is not None else self._moment(None)
            rows = []
            for index in range(n):
                moment = first + index * step
                item = self._item(event=event, payload=None, endpoint_url=endpoint_url,
                                  status=status, moment=moment, code=last_response_code,
                                  body=last_response_body, token=None)
                rows.append(self._row(item, moment))
            self._last_created = max(self._last_created, first + max(n - 1, 0) * step)
            self._rows.extend(rows)
            self._rows.sort()
            return [row.item for row in rows]

    def event(self, event_id: str) -> Item:
        """The stored item (a copy), payload included."""
        with self._lock:
            return json.loads(_json(self._by_id[event_id]))  # type: ignore[no-any-return]

    def events(self) -> list[Item]:
        """Every stored item, newest first (copies)."""
        with self._lock:
            return json.loads(_json([row.item for row in self._rows]))  # type: ignore[no-any-return]

    def add_endpoint(self, url: str) -> None:
        with self._lock:
            self._endpoints.add(url)

    def remove_endpoint(self, url: str) -> None:
        """The account deletes its webhook endpoint: retrying its events answers 422."""
        with self._lock:
            self._endpoints.discard(url)

    # -- canned answers -------------------------------------------------------------------------

    def answer_next(self, times: int, status: int, *, errors: list[dict[str, Any]] | None = None,
                    body: bytes | None = None, headers: Mapping[str, str] | None = None,
                    content_type: str = JSONAPI) -> None:
        """The next ``times`` API requests get this answer, whatever they ask."""
        if body is None:
            body = _json({"errors": errors or [{"title": "Internal server error",
                                                "detail": "something went wrong"}]})
        with self._lock:
            for _ in range(times):
                self._canned.append(Answer(status, body, dict(headers or {}), content_type))

    def throttle(self, times: int, retry_after: int | str | None = 1) -> None:
        """The next ``times`` API requests answer 429 with ``Retry-After: retry_after`` (None:
        no such header), as Keygen's rate limiter does."""
        headers = {"X-RateLimit-Window": "30s", "X-RateLimit-Count": "61",
                   "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": str(int(time.time()) + 30)}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self.answer_next(times, 429, headers=headers, errors=[{
            "title": "Too many requests", "code": "TOO_MANY_REQUESTS",
            "detail": "Throttle limit has been exceeded for your IP address."}])

    # -- the API --------------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Mapping[str, str],
               peer: tuple[str, int]) -> tuple[Answer, Callable[[], None] | None]:
        """The answer to one API request, and what to do once it is sent."""
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self._lock:
            self.requests.append(SeenRequest(method, parts.path, query,
                                             {k.lower(): v for k, v in headers.items()}, peer))
            if self._canned:
                return self._canned.popleft(), None
        segments = [unquote(part) for part in parts.path.strip("/").split("/")]
        match segments:
            case ["v1", "accounts", account, "webhook-events", *rest]:
                pass
            case _:
                return self._no_route(), None
        refused = self._refuse(account, headers.get("Authorization", ""))
        if refused is not None:
            return refused, None
        match method, rest:
            case "GET", []:
                return self._list(query), None
            case "GET", [event_id]:
                return self._show(event_id), None
            case "POST", [event_id, "actions", "retry"]:
                return self._retry(event_id)
        return self._no_route(), None

    @staticmethod
    def _no_route() -> Answer:
        return _error(404, "Not found", "The requested endpoint was not found (check your HTTP "
                      "method, Accept header, and URL path)", "NOT_FOUND")

    def _refuse(self, account: str, authorization: str) -> Answer | None:
        if account not in (self.account_id, self.account_slug):
            return _error(404, "Not found", f"The requested account '{account}' was not found",
                          "ACCOUNT_NOT_FOUND")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            answer = _error(401, "Unauthorized", "You must be authenticated to complete the "
                            "request", "TOKEN_MISSING")
        elif given.strip() == self.forbidden_token:
            return _error(403, "Access denied", "You do not have permission to complete the "
                          "request (ensure the token or license is allowed to access this "
                          "resource)")
        elif given.strip() != self.token:
            answer = _error(401, "Unauthorized", "Token is invalid", "TOKEN_INVALID")
        else:
            return None
        answer.headers["WWW-Authenticate"] = 'Bearer realm="keygen"'
        return answer

    def _link(self, number: int, size: int) -> str:
        return (f"/v1/accounts/{self.account_id}/webhook-events"
                f"?page[number]={number}&page[size]={size}")

    def _list(self, query: Mapping[str, str]) -> Answer:
        size_text = query.get("page[size]", "10")
        number_text = query.get("page[number]", "1")
        if not size_text.isdigit() or not 1 <= int(size_text) <= 100:
            return _error(400, "Bad request", f"page size must be a number between 1 and 100 "
                          f"(got {size_text})", "PAGE_SIZE_INVALID",
                          source={"parameter": "page[size]"})
        if not number_text.isdigit() or int(number_text) < 1:
            return _error(400, "Bad request", f"page number must be a number greater than 0 "
                          f"(got {number_text})", "PAGE_NUMBER_INVALID",
                          source={"parameter": "page[number]"})
        size, number = int(size_text), int(number_text)
        with self._lock:
            total = len(self._rows)
            page = [_redacted(row.item) for row in self._rows[(number - 1) * size:number * size]]
        last = max(1, math.ceil(total / size))
        links: dict[str, Any] = {
            "self": self._link(number, size), "first": self._link(1, size),
            "prev": self._link(number - 1, size) if number > 1 else None,
            "next": self._link(number + 1, size) if number < last else None,
            "last": self._link(last, size)}
        if self.rewrite_links is not None:
            links = self.rewrite_links(links)
        return Answer(200, _json({"data": page, "links": links}))

    def _not_found(self, event_id: str) -> Answer:
        return _error(404, "Not found", f"The requested webhook event '{event_id}' was not "
                      "found", "NOT_FOUND", source={"parameter": "id"})

    def _show(self, event_id: str) -> Answer:
        with self._lock:
            item = self._by_id.get(event_id)
            return Answer(200, _json({"data": item})) if item else self._not_found(event_id)

    def _retry(self, event_id: str) -> tuple[Answer, Callable[[], None] | None]:
        with self._lock:
            original = self._by_id.get(event_id)
            if original is None:
                return self._not_found(event_id), None
            attributes = original["attributes"]
            if attributes["endpoint"] not in self._endpoints:
                return _error(422, "Unprocessable resource", "webhook endpoint no longer exists",
                              "ENDPOINT_NOT_FOUND", source={"pointer": "/data/attributes/endpoint"}
                              ), None
            item = self.add_event(attributes["event"], attributes["payload"],
                                  endpoint_url=attributes["endpoint"], status="DELIVERING",
                                  token=original["meta"]["idempotencyToken"])
            answer = Answer(201, _json({"data": item}))
        # Counted before the answer goes out: a client that waits for the fake to be idle
        # right after the 201 must not find it idle before the delivery has even started.
        with self._idle:
            self._pending += 1
        return answer, lambda: self._enqueue(item["id"])

    # -- delivering -----------------------------------------------------------------------------

    def route(self, endpoint_url: str, actual_url: str) -> None:
        """Deliveries to the registered ``endpoint_url`` physically go to ``actual_url``
        (unrouted ones fail as ``DNS_ERROR``: the fake never goes to the internet)."""
        with self._lock:
            self._routes[endpoint_url] = actual_url
            self._endpoints.add(endpoint_url)

    def sign(self, body: bytes, endpoint_url: str,
             now: float | None = None) -> list[tuple[str, str]]:
        """Keygen's headers for ``body`` sent to the registered ``endpoint_url``."""
        date = formatdate(time.time() if now is None else now, usegmt=True)
        digest = "sha-256=" + _b64(hashlib.sha256(body).digest())
        parts = urlsplit(endpoint_url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        message = (f"(request-target): post {target}\nhost: {parts.hostname}\n"
                   f"date: {date}\ndigest: {digest}")
        signature = _b64(self.signing_key.sign(message.encode()))
        header = (f'keyid="{self.account_id}", algorithm="ed25519", signature="{signature}", '
                  'headers="(request-target) host date digest"')
        return [("Content-Type", "application/json"), ("User-Agent", USER_AGENT),
                ("Date", date), ("Digest", digest), ("Keygen-Date", date),
                ("Keygen-Digest", digest), ("Keygen-Signature", header),
                ("Keygen-Version", API_VERSION)]

    def deliver(self, event_id: str) -> int | None:
        """POST the event to its endpoint, signed, and record the outcome as Keygen does:
        2xx → DELIVERED, another code → FAILING, refused connection → FAILED
        ``CONN_REFUSED``. Returns the HTTP status, None without one."""
        with self._lock:
            item = self._by_id[event_id]
            sent = {**item, "attributes": {**item["attributes"], "status": "DELIVERING",
                                           "lastResponseCode": None, "lastResponseBody": None}}
            endpoint_url = item["attributes"]["endpoint"]
            actual = self._routes.get(endpoint_url)
        body = _json({"data": sent})
        headers = self.sign(body, endpoint_url)
        status: str
        code: int | None
        text: str | None
        if actual is None:
            status, code, text = "FAILED", None, "DNS_ERROR"
        else:
            status, code, text = _post(actual, body, headers)
        with self._lock:
            item["attributes"].update(status=status, lastResponseCode=code,
                                      lastResponseBody=text, updated=iso(_now()))
            self.deliveries.append(Sent(event_id, actual or endpoint_url, headers, body, code))
        return code

    def _enqueue(self, event_id: str) -> None:
        """Deliver in the background (counted in ``_pending`` by whoever queued it)."""
        thread = threading.Thread(target=self._deliver_later, args=(event_id,),
                                  name="fake-keygen-delivery", daemon=True)
        thread.start()

    def _deliver_later(self, event_id: str) -> None:
        try:
            self.deliver(event_id)
        except BaseException as error:  # recorded for the test to see
            self.errors.append(error)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until queued deliveries are done; False if some still run after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


def _redacted(item: Item) -> Item:
    return {**item, "attributes": {**item["attributes"], "payload": REDACTED}}


def _post(url: str, body: bytes,
          headers: list[tuple[str, str]]) -> tuple[str, int | None, str | None]:
    """POST like Keygen's worker (15 s timeout): (status, lastResponseCode, lastResponseBody)."""
    parts = urlsplit(url)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    connection = connection_class(parts.hostname or "", parts.port, timeout=15)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=dict(headers))
        response = connection.getresponse()
        text = response.read(1024).decode("utf-8", "replace")
    except ConnectionRefusedError:
        return "FAILED", None, "CONN_REFUSED"
    except TimeoutError:
        return "FAILING", None, "REQ_TIMEOUT"
    except ssl.SSLError:
        return "FAILING", None, "SSL_ERROR"
    except socket.gaierror:
        return "FAILED", None, "DNS_ERROR"
    except OSError:
        return "FAILED", None, "CONN_RESET"
    finally:
        connection.close()
    status = "DELIVERED" if 200 <= response.status < 300 else "FAILING"
    return status, response.status, text


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, so a client can reuse its connection across pages."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without this, Nagle's algorithm holds the body
    # until the client's delayed ACK (40 ms a small answer) that no real API server shows.
    disable_nagle_algorithm = True
    keygen: FakeKeygen

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = {name: value for name, value in self.headers.items()}
        answer, after = self.keygen.answer(method, self.path, headers,
                                           (self.client_address[0], self.client_address[1]))
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        finally:
            if after is not None:  # queued whatever became of the answer (counted already)
                after()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads ``keygen.requests`` instead."""
