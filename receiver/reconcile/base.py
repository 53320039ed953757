"""What a vendor's event log looks like to the receiver, whichever vendor keeps it.

A *reconciler* reads one account's events from the vendor's API (newest first), fetches
the full document of one, and asks the vendor to send one again; the vendor's factory that
builds it may raise ``ConfigError`` for settings it cannot work with. Keygen's is built in
(``keygen.py``); others come from the ``receiver.reconcilers`` entry-point group, each a
callable ``(endpoint, token, settings) -> Reconciler`` (``vendors.py``). Nothing here
touches the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

#: What a vendor's status says about one event's delivery to us.
DELIVERED = "delivered"  # the vendor got a 2xx
FAILING = "failing"  # the vendor got an error (still retrying, or gave up)
IN_FLIGHT = "in_flight"  # the vendor is sending it now


@dataclass(frozen=True)
class VendorEvent:
    """One webhook event as the vendor's log lists it."""

    vendor_id: str  # the vendor's id of this event (a resend gets a new one)
    event: str  # the vendor's event name (``license.created``)
    token: str  # the idempotency key: our ``external_id`` for the event
    endpoint_url: str  # where the vendor sends it
    status: str  # the vendor's status, verbatim (``DELIVERED``, ``FAILED``...)
    state: str  # DELIVERED, FAILING or IN_FLIGHT
    created: str  # ISO 8601 UTC with ``Z`` (``2026-12-07T12:00:00.000Z``)
    last_response_code: int | None = None
    last_response_body: str | None = None

    @property
    def last_response(self) -> str:
        """What the vendor last heard back, for people: ``401``, ``CONN_REFUSED``, ``-``."""
        if self.last_response_code is not None:
            return str(self.last_response_code)
        body = (self.last_response_body or "").strip()
        return body[:40] if body else "-"


@dataclass(frozen=True)
class Fetched:
    """One event's document as the vendor's API served it, bytes kept: the vendor's copy of
    the event (Keygen's reads its delivery status, ``DELIVERED`` or ``FAILED``), not the body
    of a webhook, and unsigned; the receiver stores it as ``fetched``."""

    body: bytes
    url: str  # the API URL it came from
    content_type: str


class VendorError(Exception):
    """The vendor's API refused or failed: the message is the sentence a person reads
    (bad token, unknown account, unreachable)."""


class Reconciler(Protocol):
    """One endpoint's event log at one vendor."""

    #: The receiver's source name of the events (``keygen``).
    source: str
    #: API requests made so far, those that failed on the network included.
    api_calls: int

    def events_since(self, since: dt.datetime) -> Iterator[VendorEvent]:
        """The account's events created at or after ``since``, newest first, for every
        endpoint URL (the caller keeps those for its own). A generator: ``VendorError`` comes
        while the caller iterates."""
        ...

    def fetch(self, vendor_id: str) -> Fetched:
        """The full document of one event. Raises ``VendorError``."""
        ...

    def resend(self, vendor_id: str) -> str:
        """Ask the vendor to send the event again; returns the new event's vendor id.
        Raises ``VendorError``."""
        ...

    def close(self) -> None:
        """Let go of connections."""
        ...
