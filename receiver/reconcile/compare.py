"""Which of a vendor's events are ours, which we miss, and whether the vendor's deliveries
to us fail. Pure: the caller gives the events (newest first, in batches) and which of their
keys it has stored."""

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


class Tally:
    """The vendor's events to one URL gone through newest first, a batch at a time, keeping
    only what the run reports: memory grows with the events missing, not with the window.

    ``missing``: one event per idempotency key with no stored event, newest first (the
    newest of the key's events: a resend is a new vendor event with the same key); a key
    with a delivery in flight is not missing yet. ``failing``: the vendor's failed
    deliveries since its last one that got through (0 once a delivery succeeds again, so the
    problem it opens resolves when the path from the vendor to us works, not a window
    later), ``newest_failing`` the newest of them."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.checked = 0
        self.failing = 0
        self.newest_failing: VendorEvent | None = None
        self._got_through = False
        self._missing: dict[str, VendorEvent] = {}
        self._in_flight: set[str] = set()

    @property
    def missing(self) -> list[VendorEvent]:
        return list(self._missing.values())

    def add(self, events: Iterable[VendorEvent], stored: set[str]) -> None:
        """The next (older) events to our URL; ``stored``: which of their keys have an
        event here."""
        for event in events:
            self.checked += 1
            if not self._got_through:
                if event.state == DELIVERED:
                    self._got_through = True
                elif event.state == FAILING:
                    self.failing += 1
                    self.newest_failing = self.newest_failing or event
            if event.token in stored:
                continue
            if in_flight(event, self.now):
                self._in_flight.add(event.token)
                self._missing.pop(event.token, None)
            elif event.token not in self._in_flight and event.token not in self._missing:
                self._missing[event.token] = event


def missing(events: Sequence[VendorEvent], stored: set[str],
            now: dt.datetime) -> list[VendorEvent]:
    """The missing events of ``events`` (newest first), as ``Tally`` finds them."""
    tally = Tally(now)
    tally.add(events, stored)
    return tally.missing


def failing(events: Sequence[VendorEvent]) -> int:
    """How many deliveries failed since the last one that got through, as ``Tally``
    counts them."""
    tally = Tally(dt.datetime.now(dt.UTC))
    tally.add(events, {event.token for event in events})
    return tally.failing
