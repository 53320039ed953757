"""``receiver export --from URL``: read a running receiver's NDJSON export
(``read/export.py`` writes it), resuming a cut stream after the last event received."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..read.export import COMPLETE_KEY, complete_line
from .forward import ForwardError, RemoteUnavailable, backoff, describe, remote_base


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
