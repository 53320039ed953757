"""Keygen's webhook event log, read through Keygen's API.

``GET /v1/accounts/<account>/webhook-events`` lists the account's events newest first (the
list redacts payloads), ``GET .../webhook-events/<id>`` serves one with its payload, and
``POST .../webhook-events/<id>/actions/retry`` makes Keygen send one again as a new event
with the same idempotency token.

Why httpx: every request has an explicit timeout (connect, read, write, pool); one client
reuses its connection across the pages of a listing; redirects are not followed, so the
bearer token only ever goes to ``api_url`` (next-page links are checked against it too); it is
typed and well kept, and its transports let tests point it anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx

from .base import DELIVERED, FAILING, IN_FLIGHT, Fetched, VendorError, VendorEvent

__all__ = ["DEFAULT_API_URL", "KeygenReconciler", "event_state", "parse_event",
           "retry_after_seconds"]

DEFAULT_API_URL = "https://api.keygen.sh"
JSONAPI = "application/vnd.api+json"
#: What Keygen's serializer puts in ``payload`` when the query did not load it (the list).
REDACTED = "[REDACTED]"
#: The largest answer read, in bytes (after content decoding).
MAX_BODY = 20 * 1024 * 1024
#: The longest single wait a 429 may ask for, in seconds.
MAX_WAIT = 300.0
#: The wait when a 429 has no usable ``Retry-After``.
DEFAULT_WAIT = 1.0

_STATES = {"DELIVERED": DELIVERED, "FAILING": FAILING, "FAILED": FAILING,
           "DELIVERING": IN_FLIGHT}
_DEFAULT_PORTS = {"http": 80, "https": 443}


# -- parsing one listed event ------------------------------------------------------------------

def _show(value: Any, limit: int = 40) -> str:
    """A value for a message: ``repr``, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without zone is taken as UTC)."""
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _iso_utc(moment: dt.datetime) -> str:
    """``2024-05-01T12:00:00.123Z`` (microseconds only when there are some below a ms)."""
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def event_state(status: str, code: int | None, body: str | None) -> str:
    """What Keygen's ``status`` says about the delivery: DELIVERED, FAILING or IN_FLIGHT.
    A status Keygen may add later is judged by the last response: a 2xx is delivered, any
    other code or a body (``CONN_REFUSED``) is failing, nothing yet is in flight."""
    known = _STATES.get(status.strip().upper())
    if known is not None:
        return known
    if code is not None and 200 <= code < 300:
        return DELIVERED
    if code is not None or (body or "").strip():
        return FAILING
    return IN_FLIGHT


def _string(attributes: Mapping[str, Any], name: str, where: str) -> str:
    value = attributes.get(name)
    if not isinstance(value, str) or not value.strip():
        raise VendorError(f"{where} has no attributes.{name} (got {_kind(value)})")
    return value


def _created(attributes: Mapping[str, Any], where: str) -> dt.datetime:
    text = _string(attributes, "created", where)
    try:
        return _parse_time(text)
    except (ValueError, OverflowError):
        raise VendorError(f"{where} has attributes.created {_show(text)}, which is not an "
                          "ISO 8601 time") from None


def _last_response(attributes: Mapping[str, Any], where: str) -> tuple[int | None, str | None]:
    code = attributes.get("lastResponseCode")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise VendorError(f"{where} has attributes.lastResponseCode {_show(code)}, which is "
                          "not a whole number")
    body = attributes.get("lastResponseBody")
    if body is not None and not isinstance(body, str):
        raise VendorError(f"{where} has attributes.lastResponseBody that is {_kind(body)}, "
                          "not a string")
    return code, body


def _token(item: Mapping[str, Any], vendor_id: str, where: str) -> str:
    """``meta.idempotencyToken``, else the event id."""
    meta = item.get("meta")
    if meta is None:
        return vendor_id
    if not isinstance(meta, Mapping):
        raise VendorError(f"{where} has meta that is {_kind(meta)}, not an object")
    token = meta.get("idempotencyToken")
    if token is None:
        return vendor_id
    if not isinstance(token, str):
        raise VendorError(f"{where} has meta.idempotencyToken that is {_kind(token)}, not a "
                          "string")
    return token if token.strip() else vendor_id


def _parse(item: Any) -> tuple[VendorEvent, dt.datetime]:
    if not isinstance(item, Mapping):
        raise VendorError(f"a webhook event in Keygen's answer is {_kind(item)}, not an object")
    vendor_id = item.get("id")
    if not isinstance(vendor_id, str) or not vendor_id.strip():
        raise VendorError(f"a webhook event in Keygen's answer has no id (got {_kind(vendor_id)})")
    where = f"Keygen's webhook event {_show(vendor_id)}"
    kind = item.get("type")
    if kind is not None and kind != "webhook-events":
        raise VendorError(f"{where} has type {_show(kind)}, not 'webhook-events'")
    attributes = item.get("attributes")
    if not isinstance(attributes, Mapping):
        raise VendorError(f"{where} has no attributes object (got {_kind(attributes)})")
    status = _string(attributes, "status", where)
    created = _created(attributes, where)
    code, body = _last_response(attributes, where)
    event = VendorEvent(
        vendor_id=vendor_id,
        event=_string(attributes, "event", where),
        token=_token(item, vendor_id, where),
        endpoint_url=_string(attributes, "endpoint", where),
        status=status,
        state=event_state(status, code, body),
        created=_iso_utc(created),
        last_response_code=code,
        last_response_body=body,
    )
    return event, created


def parse_event(item: Mapping[str, Any]) -> VendorEvent:
    """One item of Keygen's webhook-events list as a :class:`VendorEvent` (``created`` in UTC,
    ``token`` from ``meta.idempotencyToken``, else the id). Pure; a malformed item raises
    ``VendorError`` naming the member that is wrong."""
    return _parse(item)[0]


# -- 429 ---------------------------------------------------------------------------------------

def retry_after_seconds(value: str | None, now: float | None = None) -> float:
    """How long a 429's ``Retry-After`` asks to wait: seconds or an HTTP date; missing or
    garbled → 1 s; never below 0 nor above 300 s."""
    text = (value or "").strip()
    if not text:
        return DEFAULT_WAIT
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return DEFAULT_WAIT
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        seconds = moment.timestamp() - (time.time() if now is None else now)
    else:
        if not math.isfinite(seconds) or seconds < 0:
            return DEFAULT_WAIT
    return min(max(seconds, 0.0), MAX_WAIT)


# -- settings checks ---------------------------------------------------------------------------

def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


def _checked_api_url(api_url: str) -> str:
    text = (api_url or "").strip().rstrip("/")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in _DEFAULT_PORTS or not url.host:
        raise VendorError(f"api_url {_show(api_url, 60)} is not an http(s) URL; Keygen's is "
                          f"{DEFAULT_API_URL}")
    if url.userinfo or url.query or url.fragment:
        raise VendorError("api_url must be a plain http(s) URL, without credentials, query or "
                          "fragment")
    return text


def _check_token(token: str) -> None:
    if not isinstance(token, str) or not token.strip():
        raise VendorError("no Keygen API token: set api_token or api_token_env")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise VendorError("the Keygen API token holds spaces, control or non-ASCII characters; "
                          "check api_token / api_token_env")


def _page_key(url: httpx.URL) -> tuple[Any, ...]:
    """A page's identity, however its query is spelled (``page[size]`` or ``page%5Bsize%5D``,
    either order)."""
    query = tuple(sorted(parse_qsl(url.query.decode("ascii", "replace"),
                                   keep_blank_values=True)))
    return (*_origin(url), url.path, query)


# -- the client --------------------------------------------------------------------------------

class KeygenReconciler:
    """One Keygen account's webhook event log (``Reconciler`` in ``base.py``).

    ``account`` is the account id or slug, ``token`` an API token that may read webhook events
    (admin, environment or read-only). ``sleep`` waits out 429s; after ``max_throttled``
    429s in a row for one request it gives up. ``api_calls`` counts every request sent.
    """

    source = "keygen"
    #: The largest answer read, in bytes; a bigger one is a ``VendorError``.
    max_body = MAX_BODY

    def __init__(self, account: str, token: str, api_url: str = DEFAULT_API_URL, *,
                 timeout: float = 15.0, page_size: int = 100,
                 sleep: Callable[[float], None] = time.sleep, max_throttled: int = 10,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be 1 to 100 (Keygen's limit), got {page_size}")
        if max_throttled < 1:
            raise ValueError(f"max_throttled must be 1 or more, got {max_throttled}")
        if not timeout > 0:
            raise ValueError(f"timeout must be above 0 seconds, got {timeout}")
        if not isinstance(account, str) or not account.strip():
            raise VendorError("no Keygen account: set account to the account id or slug")
        _check_token(token)
        self.account = account.strip()
        self.api_url = _checked_api_url(api_url)
        self.timeout = timeout
        self.page_size = page_size
        self.max_throttled = max_throttled
        self.api_calls = 0
        self._token = token
        self._sleep = sleep
        self._origin = _origin(httpx.URL(self.api_url))
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, transport=transport,
            headers={"Accept": JSONAPI, "User-Agent": "license-webhook-receiver (reconcile)"})

    def __repr__(self) -> str:
        return f"KeygenReconciler(account={self.account!r}, api_url={self.api_url!r})"

    def __enter__(self) -> KeygenReconciler:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the connection."""
        self._client.close()

    # -- the three calls ------------------------------------------------------------------------

    def events_since(self, since: dt.datetime) -> Iterator[VendorEvent]:
        """The account's events created at or after ``since`` (naive means UTC), newest
        first, for every endpoint URL; stops fetching pages at the first older event."""
        cutoff = since.replace(tzinfo=dt.UTC) if since.tzinfo is None else since
        url: httpx.URL | None = httpx.URL(self._events_url(), params={
            "page[size]": str(self.page_size), "page[number]": "1"})
        fetched: set[tuple[Any, ...]] = set()
        while url is not None:
            fetched.add(_page_key(url))
            document = self._document("GET", url)
            items = document["data"]
            if not isinstance(items, list):
                raise self._not_jsonapi("GET", url, f"data is {_kind(items)}, not a list")
            for item in items:
                event, created = _parse(item)
                if created < cutoff:
                    return
                yield event
            url = self._next_page(document, fetched)

    def fetch(self, vendor_id: str) -> Fetched:
        """The full document of one event, payload included, as Keygen's API served it."""
        url = httpx.URL(self._events_url(f"/{self._quoted_id(vendor_id)}"))
        response, body = self._call("GET", url, event_id=vendor_id)
        document = self._decode("GET", url, body)
        event, _ = _parse(document["data"])
        if event.vendor_id != vendor_id:
            raise VendorError(f"Keygen answered webhook event {_show(event.vendor_id)} when "
                              f"asked for {_show(vendor_id)}")
        payload = document["data"]["attributes"].get("payload")
        if not isinstance(payload, str) or payload.strip() in ("", REDACTED):
            raise VendorError(f"Keygen served webhook event {_show(vendor_id)} without its "
                              f"payload (got {_show(payload)})")
        content_type = response.headers.get("Content-Type", JSONAPI)
        return Fetched(body=body, url=str(url), content_type=content_type)

    def resend(self, vendor_id: str) -> str:
        """Ask Keygen to retry the event; returns the new event's id (same idempotency
        token). Keygen delivers it on its own, shortly after."""
        url = httpx.URL(self._events_url(f"/{self._quoted_id(vendor_id)}/actions/retry"))
        _, body = self._call("POST", url, event_id=vendor_id)
        event, _ = _parse(self._decode("POST", url, body)["data"])
        return event.vendor_id

    # -- URLs -----------------------------------------------------------------------------------

    def _events_url(self, suffix: str = "") -> str:
        return (f"{self.api_url}/v1/accounts/{quote(self.account, safe='')}/webhook-events"
                f"{suffix}")

    @staticmethod
    def _quoted_id(vendor_id: str) -> str:
        if not isinstance(vendor_id, str) or not vendor_id.strip():
            raise VendorError(f"no Keygen webhook event id given (got {_show(vendor_id)})")
        return quote(vendor_id.strip(), safe="")

    def _next_page(self, document: Mapping[str, Any],
                   fetched: set[tuple[Any, ...]]) -> httpx.URL | None:
        """``links.next`` resolved against ``api_url``; None on the last page or when it
        points at a page already read. A link to another origin is refused."""
        links = document.get("links")
        if links is None:
            return None
        if not isinstance(links, Mapping):
            raise VendorError(f"Keygen's webhook-events page has links that are {_kind(links)}, "
                              "not an object")
        link = links.get("next")
        if link is None or link == "":
            return None
        if not isinstance(link, str):
            raise VendorError(f"Keygen's webhook-events page has a links.next that is "
                              f"{_kind(link)}, not a URL")
        try:
            url = httpx.URL(self.api_url).join(link)
        except httpx.InvalidURL:
            raise VendorError(f"Keygen's links.next {_show(link, 80)} is not a URL") from None
        if _origin(url) != self._origin:
            scheme, host, port = _origin(url)
            raise VendorError(f"Keygen's next-page link points to {scheme}://{host}:{port}, not "
                              f"to api_url {self.api_url}; refusing to send the API token there")
        return None if _page_key(url) in fetched else url

    # -- one request ----------------------------------------------------------------------------

    def _document(self, method: str, url: httpx.URL) -> dict[str, Any]:
        return self._decode(method, url, self._call(method, url)[1])

    def _call(self, method: str, url: httpx.URL,
              event_id: str | None = None) -> tuple[httpx.Response, bytes]:
        """Send one request (again after each 429, up to ``max_throttled`` of them); a
        non-2xx answer raises the ``VendorError`` that explains it."""
        if _origin(url) != self._origin:  # the token goes to api_url only
            raise VendorError(f"refusing to send the Keygen API token to {url.host}, which is "
                              f"not api_url {self.api_url}")
        throttled = 0
        while True:
            response, body = self._send(method, url)
            if response.status_code != 429:
                break
            throttled += 1
            if throttled >= self.max_throttled:
                raise VendorError(
                    f"Keygen kept answering 429 Too Many Requests ({throttled} times in a row to "
                    f"{method} {url.path}{self._says(body)}); wait a while before reconciling "
                    "again")
            self._sleep(retry_after_seconds(response.headers.get("Retry-After")))
        if not 200 <= response.status_code < 300:
            raise self._refusal(method, url, response, body, event_id)
        return response, body

    def _send(self, method: str, url: httpx.URL) -> tuple[httpx.Response, bytes]:
        request = self._client.build_request(
            method, url, headers={"Authorization": f"Bearer {self._token}"})
        self.api_calls += 1
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as error:
            raise self._unreachable(f"no answer within {self.timeout:g} s "
                                    f"({type(error).__name__})") from error
        except httpx.HTTPError as error:
            raise self._unreachable(str(error) or type(error).__name__) from error
        try:
            return response, self._read(method, url, response)
        finally:
            response.close()

    def _read(self, method: str, url: httpx.URL, response: httpx.Response) -> bytes:
        """The answer's bytes (content coding undone), at most ``max_body`` of them."""
        too_big = VendorError(f"Keygen's answer to {method} {url.path} is larger than "
                              f"{self.max_body:,} bytes; refusing to read it")
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_body:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_body:
                    raise too_big
                chunks.append(chunk)
        except httpx.TimeoutException as error:
            raise self._unreachable(f"the answer stalled for {self.timeout:g} s "
                                    f"({type(error).__name__})") from error
        except (httpx.HTTPError, httpx.StreamError) as error:
            raise self._unreachable(f"the answer broke off ({self._clean(str(error))})") from error
        return b"".join(chunks)

    def _decode(self, method: str, url: httpx.URL, body: bytes) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            start = body[:20].decode("utf-8", "replace")
            raise self._not_jsonapi(method, url, f"it is not JSON: {_show(start)}") from None
        if not isinstance(document, dict) or "data" not in document:
            raise self._not_jsonapi(method, url, "it has no data member")
        return document

    # -- messages -------------------------------------------------------------------------------

    def _clean(self, text: str, limit: int = 200) -> str:
        """Text from elsewhere for a message: one line, cut short, never the token."""
        line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
        line = line.replace(self._token, "[token]")
        return line if len(line) <= limit else line[:limit - 1] + "…"

    def _says(self, body: bytes) -> str:
        """``: TOKEN_INVALID, Token is invalid`` from Keygen's ``errors[0]``, or ``""``."""
        try:
            errors = json.loads(body).get("errors")
            first = errors[0] if isinstance(errors, list) and errors else None
        except (ValueError, RecursionError, AttributeError):
            return ""
        if not isinstance(first, Mapping):
            return ""
        parts = [first.get("code"), first.get("detail") or first.get("title")]
        said = ", ".join(self._clean(part) for part in parts if isinstance(part, str) and part)
        return f": {said}" if said else ""

    def _unreachable(self, why: str) -> VendorError:
        return VendorError(f"cannot reach Keygen at {self.api_url}: {self._clean(why)}")

    def _not_jsonapi(self, method: str, url: httpx.URL, why: str) -> VendorError:
        return VendorError(f"Keygen's answer to {method} {url.path} is not a JSON:API document "
                           f"({self._clean(why)}); check that api_url {self.api_url} is "
                           "Keygen's API")

    def _refusal(self, method: str, url: httpx.URL, response: httpx.Response, body: bytes,
                 event_id: str | None) -> VendorError:
        """The sentence for a non-2xx answer."""
        status = response.status_code
        said = f"({status}{self._says(body)})"
        account_missing = status == 404 and (event_id is None or b"ACCOUNT_NOT_FOUND" in body)
        if status == 401:
            text = (f"Keygen refused the API token {said}; check api_token / api_token_env "
                    f"for account {self.account}")
        elif status == 403:
            text = (f"Keygen says this API token may not read webhook events {said}; use an "
                    "admin, environment or read-only token")
        elif account_missing:
            text = (f"Keygen knows no account {self.account} {said}; check account (the "
                    f"account id or slug) and api_url {self.api_url}")
        elif status == 404:
            text = (f"Keygen has no webhook event {_show(event_id)} in account {self.account} "
                    f"{said}")
        elif status == 422 and method == "POST":
            text = (f"Keygen would not retry webhook event {_show(event_id)} {said}; the "
                    "account probably no longer has a webhook endpoint with that URL")
        elif 300 <= status < 400:
            where = self._clean(response.headers.get("Location", "nowhere"), 80)
            text = (f"Keygen answered {status} to {method} {url.path}, redirecting to {where}; "
                    "set api_url to the address Keygen's API answers at (redirects are not "
                    "followed, so the token stays with api_url)")
        else:
            text = f"Keygen answered {status} {response.reason_phrase} to {method} {url.path}"
            text += f" ({self._says(body)[2:]})" if self._says(body) else ""
            if status >= 500:
                text += "; try again later"
        return VendorError(self._clean(text, limit=400))
