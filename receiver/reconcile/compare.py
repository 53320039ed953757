"""Which of a vendor's events are ours, which we miss, and whether the vendor's deliveries
to us fail. Pure: the caller gives the events (newest first) and the keys it has stored."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from .base import DELIVERED, FAILING, IN_FLIGHT, VendorEvent

#: A delivery the vendor reports in flight for less than this is not missing yet: it may
#: be arriving now (Keygen waits 15 s for an answer, then records the failure).
IN_FLIGHT_GRACE = dt.timedelta(minutes=2)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_key(url: str) -> tuple[str, str, int | None, str, str]:
    """A URL compared as senders compare it: scheme and host ignore case, a default port is
    no port, an empty path is ``/``; path and query are kept as written."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, (parts.hostname or "").lower(), port, parts.path or "/", parts.query


def ours(events: Iterable[VendorEvent], url: str) -> list[VendorEvent]:
    """The events the vendor sends to ``url`` (the endpoint's registered URL)."""
    wanted = url_key(url)
    return [event for event in events if url_key(event.endpoint_url) == wanted]


def parse_time(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def in_flight(event: VendorEvent, now: dt.datetime) -> bool:
    """The vendor is sending it and started recently enough to still get through."""
    created = parse_time(event.created)
    return event.state == IN_FLIGHT and created is not None and now - created < IN_FLIGHT_GRACE


def missing(events: Sequence[VendorEvent], stored: set[str],
            now: dt.datetime) -> list[VendorEvent]:
    """One event per idempotency key that has no stored event, newest first: the newest of
    the key's events (a resend is a new vendor event with the same key). A key with a
    delivery in flight is not missing yet."""
    by_token: dict[str, list[VendorEvent]] = {}
    for event in events:
        by_token.setdefault(event.token, []).append(event)
    gaps = []
    for token, same in by_token.items():
        if token in stored or any(in_flight(event, now) for event in same):
            continue
        gaps.append(same[0])
    return gaps


def failing(events: Sequence[VendorEvent]) -> list[VendorEvent]:
    """The vendor's failed deliveries to us since its last one that got through, newest
    first: empty once a delivery succeeds again, so the problem this opens resolves when the
    path from the vendor to us works, not a window later."""
    found = []
    for event in events:
        if event.state == DELIVERED:
            break
        if event.state == FAILING:
            found.append(event)
    return found
