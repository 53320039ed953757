"""The NDJSON export (``GET /api/export.ndjson``, ``receiver export``): one event a line,
newest first, then a line that says the export is complete.

    {"id":1042,"source":"keygen",...,"data":{...},...}     # the event record, secrets masked
    ...
    {"complete":true,"count":1042}                          # + "not_yet_searchable" with q

A stream that does not end with the ``complete`` line was cut (a killed worker, a dropped
connection); ``count`` lets a client check it got every line. The same request with
``cursor=<id of the last event line>`` continues below that event (``receiver export --from``,
``clients/export.py``, does so by itself).

Speed: each event's ``data`` is passed on as the stored JSON text. Only a document that may
hold a secret is touched (``mask.Masker.json_text``), and the other fields are written by a
format string, so a line costs a few microseconds instead of a parse and a serialization.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from ..store import EventFilters, Store
from ..store.base import RawEvent
from .mask import DEFAULT, Masker

#: Characters per chunk written to the client (at least; a chunk ends with a whole line). A
#: streaming worker heartbeats before and after each write, so it is silent for at most one
#: batch of the store or one chunk's write, which waits for the client to read (with
#: ``web.streaming.bound_unsent``, about a chunk's worth).
CHUNK_CHARS = 64 * 1024
COMPLETE_KEY = "complete"


def event_line(row: RawEvent, *, revealed: bool = False, masker: Masker = DEFAULT) -> str:
    """One event as its NDJSON line (with the newline), secrets masked unless ``revealed``.
    ``row`` is in ``EVENT_FIELDS`` order; the fields are written out one by one, since this
    runs once per exported event."""
    (event_id, source, event_type, vendor_event, external_id, occurred_at, received_at,
     account, actor, subject_type, subject_id, endpoint, signature_status, data,
     delivery_count, dispatch_status, next_attempt_at) = row
    if not revealed:
        data = masker.json_text(data)
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
        f'"dispatch_status":{text(dispatch_status)},'
        f'"next_attempt_at":{"null" if next_attempt_at is None else text(next_attempt_at)}}}\n')


def complete_line(count: int, **extra: Any) -> str:
    """The last line of a whole export: ``count`` event lines came before it."""
    return json.dumps({COMPLETE_KEY: True, "count": count, **extra},
                      separators=(",", ":")) + "\n"


def ndjson(store: Store, filters: EventFilters, *, cursor: int | None = None,
           revealed: bool = False, heartbeat: Callable[[], None] | None = None,
           masker: Masker = DEFAULT) -> Iterator[str]:
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
            line = event_line(row, revealed=revealed, masker=masker)
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
