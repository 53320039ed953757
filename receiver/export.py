"""The NDJSON export (``GET /api/export.ndjson``, ``receiver export``): one event a line,
newest first, then a line that says the export is complete.

    {"id":1042,"source":"keygen",...,"data":{...},...}     # the event record, secrets masked
    ...
    {"complete":true,"count":1042}                          # + "not_yet_searchable" with q

A stream that does not end with the ``complete`` line was cut (a killed worker, a dropped
connection); ``count`` lets a client check it got every line. The same request with
``cursor=<id of the last event line>`` continues below that event (``receiver export --from``
does so by itself).

Speed: each event's ``data`` is passed on as the stored JSON text. Only a document that may
hold a secret is touched (``mask.mask_json_text``), and the other fields are written by a
format string, so a line costs a few microseconds instead of a parse and a serialization.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from .forward import ForwardError, RemoteUnavailable, backoff, describe, remote_base
from .mask import mask_json_text
from .store import EventFilters, Store
from .store.base import RawEvent

#: Characters per chunk written to the client (at least; a chunk ends with a whole line). A
#: streaming worker heartbeats before and after each write, so it is silent for at most one
#: batch of the store or one chunk's write, which waits for the client to read (with
#: ``gunicorn_hooks.bound_unsent``, about a chunk's worth).
CHUNK_CHARS = 64 * 1024
COMPLETE_KEY = "complete"


def event_line(row: RawEvent, *, revealed: bool = False) -> str:
    """One event as its NDJSON line (with the newline), secrets masked unless ``revealed``.
    ``row`` is in ``EVENT_FIELDS`` order; the fields are written out one by one, since this
    runs once per exported event."""
    (event_id, source, event_type, vendor_event, external_id, occurred_at, received_at,
     account, actor, subject_type, subject_id, endpoint, signature_status, data,
     delivery_count, dispatch_status) = row
    if not revealed:
        data = mask_json_text(data)
    text = encode_basestring_ascii
    return (
        f'{{"id":{event_id:d},"source":{text(source)},"event_type":{text(event_type)},'
        f'"vendor_event":{"null" if vendor_event is None else text(vendor_event)},'
        f'"external_id":{text(external_id)},'
        f'"occurred_at":{"null" if occurred_at is None else text(occurred_at)},'
        f'"received_at":{text(received_at)},'
        f'"account":{"null" if account is None else text(account)},'
        f'"actor":{"null" if actor is None else text(actor)},'
        f'"subject_type":{"null" if subject_type is None else text(subject_type)},'
        f'"subject_id":{"null" if subject_id is None else text(subject_id)},'
        f'"endpoint":{text(endpoint)},"signature_status":{text(signature_status)},'
        f'"data":{data},"delivery_count":{delivery_count:d},'
        f'"dispatch_status":{text(dispatch_status)}}}\n')


def complete_line(count: int, **extra: Any) -> str:
    """The last line of a whole export: ``count`` event lines came before it."""
    return json.dumps({COMPLETE_KEY: True, "count": count, **extra},
                      separators=(",", ":")) + "\n"


def ndjson(store: Store, filters: EventFilters, *, cursor: int | None = None,
           revealed: bool = False, heartbeat: Callable[[], None] | None = None,
           ) -> Iterator[str]:
    """The export as chunks of lines, ending with the ``complete`` line.

    ``heartbeat`` is called before and after each chunk goes out and after each batch of the
    store: gunicorn's sync worker counts as hung when it is silent for ``--timeout`` seconds,
    and a long export is one request whose writes wait for the client to read.
    """
    beat = heartbeat or (lambda: None)
    not_searchable = store.not_yet_searchable() if filters.q else None
    count = 0
    chunk: list[str] = []
    size = 0
    for batch in store.event_batches(filters, cursor=cursor):
        for row in batch:
            line = event_line(row, revealed=revealed)
            chunk.append(line)
            size += len(line)
            if size >= CHUNK_CHARS:
                count += len(chunk)
                beat()
                yield "".join(chunk)
                beat()
                chunk, size = [], 0
        beat()  # also after a batch that matched nothing (a rare filter)
    count += len(chunk)
    extra = {"not_yet_searchable": not_searchable} if not_searchable is not None else {}
    yield "".join(chunk) + complete_line(count, **extra)


# -- reading an export from a running receiver (receiver export --from) -------------------

class ExportError(Exception):
    """The export cannot go on (refused token, bad filter, no receiver there): exit non-zero."""


@dataclass
class Received:
    """What one export request delivered: event lines, the last event's id, and the complete
    line's values when the stream ended with it."""

    lines: int = 0
    last_id: int | None = None  # before the first line: the cursor asked for
    complete: dict[str, Any] | None = None


@dataclass
class Exported:
    count: int
    not_yet_searchable: int | None = None
    resumed: int = 0


_EVENT_ID = re.compile(rb'\{\s*"id"\s*:\s*(\d+)')
READ_BLOCK = 1 << 16
REMOTE_TIMEOUT = 60.0


def fetch(base: str, query: Mapping[str, str], write: Callable[[str], Any], *,
          token: str | None = None, cursor: int | None = None, retries: int = 5,
          notice: Callable[[str], Any] = print, sleep: Callable[[float], Any] = time.sleep,
          ) -> Exported:
    """Copy a remote receiver's export to ``write``, resuming below the last event received
    whenever the stream is cut (no ``complete`` line); ends with one ``complete`` line for
    the whole. Gives up after ``retries`` attempts in a row that brought nothing new."""
    try:
        base = remote_base(base)
    except ForwardError as error:
        raise ExportError(str(error)) from None
    total, failures, resumed = 0, 0, 0
    while True:
        received = Received(last_id=cursor)
        try:
            read_export(base, {**query, **({"cursor": str(cursor)} if cursor else {})},
                        write, received, token=token)
            reason = "the stream ended without its complete line"
        except RemoteUnavailable as error:
            reason = str(error)
        total += received.lines
        cursor = received.last_id
        if received.complete is not None:
            searchable = received.complete.get("not_yet_searchable")
            write(complete_line(total, **({"not_yet_searchable": searchable}
                                          if searchable is not None else {})))
            return Exported(total, searchable, resumed)
        failures = 0 if received.lines else failures + 1
        if failures > retries:
            raise ExportError(f"the export from {base} was cut {failures} times in a row "
                              f"without progress ({reason}); {total} events written, the "
                              f"last #{cursor}: run again with --cursor {cursor}"
                              if cursor else f"the export from {base} failed: {reason}")
        delay = backoff(failures, 0.5, 10.0)
        where = f"after event #{cursor}" if cursor else "before the first event"
        notice(f"export cut {where} ({reason}); resuming in {delay:g} s")
        resumed += 1
        sleep(delay)


def read_export(base: str, query: Mapping[str, str], write: Callable[[str], Any],
                received: Received, *, token: str | None = None) -> None:
    """One ``GET /api/export.ndjson``: event lines go to ``write`` as they arrive and are
    counted in ``received``; a cut or an unreachable remote raises ``RemoteUnavailable``
    (what was received stays counted). A cut line is dropped."""
    url = f"{base}/api/export.ndjson?{urllib.parse.urlencode(query)}"
    parts = urllib.parse.urlsplit(url)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    connection = connection_class(parts.hostname or "", parts.port, timeout=REMOTE_TIMEOUT)
    try:
        connection.putrequest("GET", f"{parts.path}?{parts.query}", skip_accept_encoding=True)
        connection.putheader("Accept", "application/x-ndjson")
        connection.putheader("User-Agent", "receiver-export")
        if token:
            connection.putheader("Authorization", f"Bearer {token}")
        connection.endheaders()
        response = connection.getresponse()
        _check_status(base, response, token)
        pending = b""
        while block := response.read1(READ_BLOCK):
            lines = (pending + block).split(b"\n")
            pending = lines.pop()
            _take_lines(lines, write, received)
        if pending:
            raise RemoteUnavailable("the stream ended inside a line")
    except (OSError, http.client.HTTPException) as error:
        raise RemoteUnavailable(describe(error)) from None
    finally:
        connection.close()


def _take_lines(lines: list[bytes], write: Callable[[str], Any], received: Received) -> None:
    if received.complete is not None and lines:
        raise ExportError("the remote sent lines after its complete line")
    if lines and lines[-1].startswith(b'{"' + COMPLETE_KEY.encode()):
        received.complete = json.loads(lines.pop())
        if received.complete.get("count") != received.lines + len(lines):
            raise ExportError(f"the remote counted {received.complete.get('count')} events "
                              f"but sent {received.lines + len(lines)}")
    if not lines:
        return
    if received.lines == 0 and received.last_id is not None and _event_id(
            lines[0]) >= received.last_id:
        raise ExportError("the remote ignores cursor (an older receiver?): resuming would "
                          "repeat events")
    received.last_id = _event_id(lines[-1])
    write(b"\n".join(lines).decode() + "\n")
    received.lines += len(lines)


def _event_id(line: bytes) -> int:
    match = _EVENT_ID.match(line)
    return int(match.group(1)) if match else int(json.loads(line)["id"])


def _check_status(base: str, response: http.client.HTTPResponse, token: str | None) -> None:
    status = response.status
    if status == 200:
        return
    body = response.read(4096)
    if status in (401, 403) and token:
        raise ExportError(f"{base} refused the token ({status}); check --token or "
                          "RECEIVER_FORWARD_TOKEN against its RECEIVER_INSPECTOR_TOKEN")
    if status in (401, 403):
        raise ExportError(f"{base} needs its inspector token ({status}): pass --token or set "
                          "RECEIVER_FORWARD_TOKEN to its RECEIVER_INSPECTOR_TOKEN")
    if status == 429 or status >= 500:
        raise RemoteUnavailable(f"{base} answered {status}")
    if status == 404:
        raise ExportError(f"{base} has no export (404 on /api/export.ndjson); --from is the "
                          "receiver's base URL, such as https://hooks.example.com")
    try:
        reason = json.loads(body).get("error")
    except (ValueError, AttributeError):
        reason = None
    raise ExportError(f"{base} refused the export ({status}): {reason or 'no reason given'}")
