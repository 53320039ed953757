"""Relay a deployed receiver's captured deliveries, byte for byte, to an app on this machine.

``receiver forward`` follows the remote receiver's feed (``GET /api/deliveries?after=<id>&
wait=<s>``, oldest first), fetches each delivery's exact bytes (``/api/deliveries/<id>/raw``)
and POSTs them to a local URL with the original headers, exactly as redeliver does
(``redeliver.forwardable_headers`` and ``redeliver.send``: hop-by-hop and ``Host`` dropped,
``Content-Length`` recomputed). A Keygen or Standard Webhooks signature over those bytes
therefore still verifies in the local app. With ``preserve_host`` the original ``Host`` goes
too, for an app that checks Keygen's signature against its request's host (Keygen's examples).

The last forwarded id goes to a small state file, written atomically after each delivery, so
a laptop that slept or lost its network catches up in order, without duplicates. The remote
is re-polled with exponential backoff while it cannot be reached; a local 5xx or a refused
connection is retried a few times, then reported and skipped, so one bad delivery never
blocks the stream. The HTTP calls are small functions that tests (and callers) replace.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import ReceiverError
from . import redeliver

FEED_PAGE = 100
FEED_WAIT = 25.0  # the feed's longest long-poll (web/api.py MAX_WAIT_SECONDS)
REMOTE_TIMEOUT = 15.0  # seconds for a remote answer, beyond the long-poll's own wait
REMOTE_BACKOFF = (1.0, 30.0)  # first delay and cap while the remote cannot be reached
LOCAL_BACKOFF = (0.5, 30.0)  # first delay and cap between retries of a local 5xx / refusal
EMPTY_ANSWER_PAUSE = 1.0  # an empty page that came back at once: do not spin on it

Sleep = Callable[[float], None]
Echo = Callable[[str], None]
Send = Callable[[str, bytes, Sequence[tuple[str, str]]], dict[str, Any]]


class ForwardError(Exception):
    """Forwarding cannot go on (a refused token, a bad --to or filter): exit non-zero."""


class RemoteUnavailable(Exception):
    """The remote receiver could not be reached or answered 5xx/429: try again later."""


def backoff(attempt: int, first: float, cap: float) -> float:
    """Exponential delay before retry ``attempt`` (0-based): first, 2*first, ... up to cap."""
    return float(min(cap, first * 2 ** min(attempt, 32)))


# -- where forwarding may go ------------------------------------------------------------


def check_target(url: str, allow: Iterable[str]) -> str:
    """``--to`` must be an http(s) URL on a loopback host or one in REDELIVER_ALLOW."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _port_ok(parts):
        raise ForwardError(f"--to must be an absolute http(s) URL such as "
                           f"http://localhost:3000/webhooks; got {url!r}")
    if redeliver.is_loopback(parts.hostname):
        return url
    try:
        redeliver.check_allowed(url, allow)
    except ReceiverError:
        allowed = ", ".join(sorted(name.strip() for name in allow)) or "empty"
        raise ForwardError(f"refusing to forward to {parts.hostname}: it is not a loopback "
                           f"host and not in RECEIVER_REDELIVER_ALLOW ({allowed})") from None
    return url


def remote_base(url: str) -> str:
    """``--from``: the deployed receiver's base URL, without a trailing slash."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _port_ok(parts):
        raise ForwardError(f"--from must be the receiver's base URL such as "
                           f"https://hooks.example.com; got {url!r}")
    if parts.query or parts.fragment:
        raise ForwardError(f"--from must be a base URL without ?query or #fragment; got {url!r}")
    return url.rstrip("/")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _port_ok(parts: urllib.parse.SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return True


# -- the state file ---------------------------------------------------------------------


def default_state_path(from_url: str, to_url: str,
                       environ: Mapping[str, str] | None = None) -> Path:
    """``~/.config/receiver/forward-<hash of from and to>.json`` (``$XDG_CONFIG_HOME`` wins)."""
    environ = os.environ if environ is None else environ
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    digest = hashlib.sha256(f"{from_url.rstrip('/')}\n{to_url}".encode()).hexdigest()[:16]
    return Path(config_home) / "receiver" / f"forward-{digest}.json"


def read_state(path: Path) -> int | None:
    """The last forwarded delivery id, or None when there is no state yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ForwardError(f"cannot read the state file {path}: {error.strerror}") from None
    try:
        last_id = json.loads(text)["last_id"]
    except (ValueError, KeyError, TypeError):
        raise ForwardError(f"the state file {path} is not what forward writes; remove it or "
                           "pass --since ID") from None
    if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
        raise ForwardError(f"the state file {path} has no valid last_id; remove it or pass "
                           "--since ID")
    return last_id


def write_state(path: Path, last_id: int, *, from_url: str, to_url: str) -> None:
    """Replace the state file atomically (temporary file, fsync, rename)."""
    record = {"from": from_url, "to": to_url, "last_id": last_id,
              "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp",
                                                 dir=path.parent)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as error:
        raise ForwardError(f"cannot write the state file {path}: {error}") from None


# -- the remote receiver ----------------------------------------------------------------


def http_get(url: str, headers: Sequence[tuple[str, str]], *,
             timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One GET: status, headers (lower-case names), body. Network trouble is
    ``RemoteUnavailable``."""
    parts = urllib.parse.urlsplit(url)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        return (response.status, {name.lower(): value for name, value in response.getheaders()},
                body)
    except (OSError, http.client.HTTPException) as error:
        raise RemoteUnavailable(f"{parts.netloc}: {describe(error)}") from None
    finally:
        connection.close()


def describe(error: BaseException) -> str:
    """A short sentence for a network error (``connection refused``, ``timed out``)."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error) or type(error).__name__
    if isinstance(error, http.client.HTTPException):
        return f"{type(error).__name__}: {text}"
    return text


@dataclass
class Remote:
    """The deployed receiver's JSON API, as far as forward needs it."""

    base: str
    token: str | None = field(default=None, repr=False)
    get: Callable[..., tuple[int, dict[str, str], bytes]] = http_get

    def _headers(self) -> list[tuple[str, str]]:
        headers = [("Accept", "application/json"), ("User-Agent", "receiver-forward")]
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        return headers

    def _call(self, path: str, *, timeout: float = REMOTE_TIMEOUT) -> tuple[int, bytes]:
        url = self.base + path
        status, headers, body = self.get(url, self._headers(), timeout=timeout)
        if status in (401, 403):
            if self.token:
                raise ForwardError(f"the remote receiver refused the token ({status}); check "
                                   "--token or RECEIVER_FORWARD_TOKEN against its "
                                   "RECEIVER_INSPECTOR_TOKEN")
            raise ForwardError(f"the remote receiver needs its inspector token ({status}): "
                               "pass --token or set RECEIVER_FORWARD_TOKEN")
        if status == 429 or status >= 500:
            raise RemoteUnavailable(f"{self.base} answered {status}")
        if 300 <= status < 400:
            location = headers.get("location", "?")
            raise ForwardError(f"{url} redirects ({status}) to {location}; pass the "
                               "receiver's own base URL as --from")
        return status, body

    def _deliveries(self, query: Mapping[str, str], *, timeout: float = REMOTE_TIMEOUT,
                    ) -> dict[str, Any]:
        """``GET /api/deliveries`` with ``query``: the answer, checked for its shape."""
        status, body = self._call("/api/deliveries?" + urllib.parse.urlencode(query),
                                  timeout=timeout)
        if status == 404:
            raise ForwardError(f"{self.base} has no receiver feed (404 on /api/deliveries); "
                               "--from is the receiver's base URL, such as "
                               "https://hooks.example.com")
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200:
            reason = answer.get("error") if isinstance(answer, dict) else None
            raise ForwardError(f"the remote receiver refused the request ({status}): "
                               f"{reason or 'no reason given'}")
        if not isinstance(answer, dict) or not isinstance(answer.get("deliveries"), list):
            raise ForwardError(f"{self.base}/api/deliveries answered something that is not "
                               "the receiver's JSON; is --from a receiver?")
        return answer

    def feed(self, after: int, filters: Mapping[str, str], *, wait: float,
             limit: int = FEED_PAGE) -> tuple[list[dict[str, Any]], bool]:
        """Deliveries after ``after``, oldest first, with unmasked headers; and whether more
        are waiting. Long-polls up to ``wait`` seconds while there is nothing new."""
        query = {**{k: v for k, v in filters.items() if v}, "after": str(after),
                 "limit": str(limit), "reveal": "1"}
        if wait > 0:
            query["wait"] = f"{wait:g}"
        answer = self._deliveries(query, timeout=wait + REMOTE_TIMEOUT)
        return answer["deliveries"], answer.get("next") is not None

    def newest_id(self) -> int:
        """The id of the newest delivery on the remote (0 when it has none)."""
        answer = self._deliveries({"limit": "1"})
        newest = answer["deliveries"]
        return int(newest[0]["id"]) if newest else 0

    def raw(self, delivery_id: int) -> bytes | None:
        """The exact bytes of one delivery; None when it is gone (purged) on the remote."""
        status, body = self._call(f"/api/deliveries/{delivery_id}/raw")
        if status == 404:
            return None
        if status != 200:
            raise ForwardError(f"the remote receiver answered {status} for the bytes of "
                               f"delivery {delivery_id}")
        return body


# -- sending one delivery to the local app ------------------------------------------------


@dataclass
class LocalAnswer:
    """What the local app made of one delivery, after any retries."""

    status: int | None  # the local answer; None when it never answered
    duration_ms: float | None  # the round trip of the last attempt that got an answer
    attempts: int
    error: str | None = None  # why there was no answer (connection refused, timed out)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver(url: str, body: bytes, headers: Sequence[tuple[str, str]], *, retries: int,
            send: Send = redeliver.send, sleep: Sleep = time.sleep,
            on_retry: Callable[[int, float, LocalAnswer], None] | None = None) -> LocalAnswer:
    """POST to the local app; retry a 5xx or no answer ``retries`` times with backoff.

    A 2xx, 3xx or 4xx is final (a 4xx is the app's verdict on the request, so sending it
    again would not change it)."""
    attempt = 0
    while True:
        try:
            result = send(url, body, headers)
        except (OSError, http.client.HTTPException) as error:
            outcome = LocalAnswer(None, None, attempt + 1, describe(error))
        except ValueError as error:  # a header http.client will not send: no retry helps
            return LocalAnswer(None, None, attempt + 1, f"cannot send it: {error}")
        else:
            outcome = LocalAnswer(int(result["status"]), float(result["duration_ms"]), attempt + 1)
            if outcome.status is not None and outcome.status < 500:
                return outcome
        if attempt >= retries:
            return outcome
        delay = backoff(attempt, *LOCAL_BACKOFF)
        if on_retry is not None:
            on_retry(attempt + 1, delay, outcome)
        sleep(delay)
        attempt += 1


# -- stopping between deliveries ----------------------------------------------------------


class Stopper:
    """SIGINT/SIGTERM stop forwarding between deliveries, never between a local 2xx and the
    state write that records it; while waiting (feed long-poll, backoff) they stop at once.
    A second signal always stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._waiting = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self._waiting or self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[Stopper]:
        previous = {number: signal.signal(number, self.handle)
                    for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """A stretch a signal may cut short (nothing is half done in it)."""
        self.check()
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


# -- the loop -----------------------------------------------------------------------------


@dataclass
class Summary:
    forwarded: int = 0  # the local app answered 2xx
    failed: int = 0  # no 2xx from the local app (after retries for a 5xx/no answer)
    skipped: int = 0  # refused at the remote (not forwarded by default) or purged there
    last_id: int = 0


@dataclass
class Forwarder:
    """Follow ``remote``'s feed after ``last_id`` and send each delivery to ``to_url``."""

    remote: Remote
    to_url: str
    state_path: Path
    last_id: int
    filters: Mapping[str, str] = field(default_factory=dict)
    retries: int = 3
    include_rejected: bool = False
    preserve_host: bool = False
    wait: float = FEED_WAIT
    page: int = FEED_PAGE
    echo: Echo = print
    notice: Echo = print
    send: Send = redeliver.send
    sleep: Sleep = time.sleep
    clock: Callable[[], float] = time.monotonic
    stopper: Stopper = field(default_factory=Stopper)
    summary: Summary = field(default_factory=Summary)

    def run(self, *, once: bool = False, max_polls: int | None = None) -> Summary:
        """Forward until stopped; with ``once``, until the feed is drained (remote trouble
        then ends it after ``retries`` reconnects). ``max_polls`` bounds the loop (tests)."""
        self.summary.last_id = self.last_id
        failures = 0
        polls = 0
        while max_polls is None or polls < max_polls:
            polls += 1
            started = self.clock()
            try:
                with self.stopper.waiting():
                    deliveries, more = self.remote.feed(
                        self.last_id, self.filters, wait=0 if once else self.wait,
                        limit=self.page)
                for record in deliveries:
                    self.forward_one(record)
                    self.stopper.check()
            except RemoteUnavailable as error:
                if once and failures >= self.retries:
                    tries = f"{failures + 1} attempt" + ("s" if failures else "")
                    raise ForwardError(f"the remote receiver cannot be reached ({error}); "
                                       f"gave up after {tries}") from None
                delay = backoff(failures, *REMOTE_BACKOFF)
                failures += 1
                self.notice(f"remote unavailable ({error}); retrying in {delay:g} s")
                self._pause(delay)
                continue
            if failures:
                self.notice(f"reconnected to {self.remote.base}")
                failures = 0
            if once and not more:
                break
            if not deliveries and not once and self.clock() - started < EMPTY_ANSWER_PAUSE / 2:
                self._pause(EMPTY_ANSWER_PAUSE)  # a feed that does not long-poll: do not spin
        return self.summary

    def _pause(self, seconds: float) -> None:
        with self.stopper.waiting():
            self.sleep(seconds)

    def forward_one(self, record: Mapping[str, Any]) -> LocalAnswer | None:
        delivery_id = int(record["id"])
        label = delivery_label(record)
        status_code = int(record.get("status_code") or 0)
        if not 200 <= status_code < 300 and not self.include_rejected:
            self._done(delivery_id)
            self.summary.skipped += 1
            self.echo(f"{label} refused {status_code} by the remote; not forwarded "
                      "(--include-rejected sends it)")
            return None
        body = self.remote.raw(delivery_id)
        if body is None:
            self._done(delivery_id)
            self.summary.skipped += 1
            self.echo(f"{label} is gone from the remote (purged); skipped")
            return None
        headers = redeliver.forwardable_headers(record.get("headers") or [],
                                                preserve_host=self.preserve_host)

        def retrying(attempt: int, delay: float, outcome: LocalAnswer) -> None:
            answer = outcome.status if outcome.status is not None else outcome.error
            self.notice(f"{label} -> {answer}; retry {attempt}/{self.retries} "
                        f"in {delay:g} s")

        outcome = deliver(self.to_url, body, headers, retries=self.retries, send=self.send,
                          sleep=self._pause, on_retry=retrying)
        self._done(delivery_id)
        if outcome.ok:
            self.summary.forwarded += 1
        else:
            self.summary.failed += 1
        self.echo(f"{label} -> {outcome_text(outcome, self.retries)}")
        return outcome

    def _done(self, delivery_id: int) -> None:
        self.last_id = delivery_id
        self.summary.last_id = delivery_id
        write_state(self.state_path, delivery_id, from_url=self.remote.base, to_url=self.to_url)


def delivery_label(record: Mapping[str, Any]) -> str:
    """``#12 keygen POST /hooks/keygen`` (plus ``(duplicate)`` for a vendor's retry)."""
    source = record.get("source") or record.get("endpoint") or "-"
    path = record.get("path") or "/hooks"
    duplicate = " (duplicate)" if record.get("duplicate") else ""
    return f"#{record['id']} {source} {record.get('method') or 'POST'} {path}{duplicate}"


def outcome_text(outcome: LocalAnswer, retries: int) -> str:
    took = f" in {outcome.duration_ms:.1f} ms" if outcome.duration_ms is not None else ""
    tries = f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""
    if outcome.ok:
        return f"{outcome.status}{took}{tries}"
    if outcome.status is None:
        return f"no answer ({outcome.error}){tries}; skipped"
    if outcome.status >= 500:
        return f"{outcome.status}{took}{tries}; skipped"
    return f"{outcome.status}{took}; not retried"


def start_after(remote: Remote, state_path: Path, since: int | None) -> tuple[int, str]:
    """Where to start, and why: ``--since``, else the state file, else the remote's newest
    delivery (a first run forwards what arrives from now on)."""
    if since is not None:
        return since, "--since"
    saved = read_state(state_path)
    if saved is not None:
        return saved, f"state {state_path}"
    return remote.newest_id(), "the remote's newest delivery"


def prepare(from_url: str, to_url: str, *, token: str | None, allow: Iterable[str],
            filters: Mapping[str, str | None], since: int | None, state_path: Path | None,
            retries: int = 3, include_rejected: bool = False, preserve_host: bool = False,
            wait: float = FEED_WAIT, echo: Echo = print,
            notice: Echo = print) -> tuple[Forwarder, str]:
    """Check the URLs, find where to start (and record it), and build the forwarder."""
    base = remote_base(from_url)
    check_target(to_url, allow)
    if _origin(to_url) == _origin(base):
        raise ForwardError("--to points at the receiver --from reads: every forwarded delivery "
                           "would come back as a new one")
    host = urllib.parse.urlsplit(base).hostname or ""
    if token and base.startswith("http://") and not redeliver.is_loopback(host):
        notice(f"warning: the token goes to {host} over plain http; use https")
    state = state_path or default_state_path(base, to_url)
    remote = Remote(base, token or None)
    after, origin = start_after(remote, state, since)
    write_state(state, after, from_url=base, to_url=to_url)
    forwarder = Forwarder(remote, to_url, state, after,
                          filters={name: value for name, value in filters.items() if value},
                          retries=retries, include_rejected=include_rejected,
                          preserve_host=preserve_host, wait=wait, echo=echo, notice=notice)
    return forwarder, origin
