"""The values that flow through the pipeline: a raw delivery in, a normalized event out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def utc_now_iso() -> str:
    """Now as ISO 8601 UTC with milliseconds and ``Z`` (the format of every stored time)."""
    return format_time(dt.datetime.now(dt.UTC))


def format_time(moment: dt.datetime) -> str:
    """``2026-12-07T06:20:00.123Z``: UTC, milliseconds cut (not rounded), a four-digit year
    (``isoformat`` writes year 1 as ``0001``, which every ISO parser reads back; strftime's
    ``%Y`` writes ``1``). A naive time is taken as UTC. Twice per delivery: kept cheap."""
    if moment.tzinfo is not None and moment.tzinfo is not dt.UTC:
        moment = moment.astimezone(dt.UTC)
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"


@dataclass
class Delivery:
    """One HTTP request as it reached an ingest route: exact bytes, headers in order.

    ``body`` is what came over the wire (stored as the delivery's raw body); ``decoded`` is
    that body with its ``Content-Encoding`` (gzip, deflate) undone, None when it had none.
    Dialects parse ``content``: the decoded bytes when there are any, else ``body``.
    """

    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    endpoint: str = "default"
    method: str = "POST"
    path: str = "/hooks"
    query: str = ""
    remote_addr: str | None = None
    received_at: str = field(default_factory=utc_now_iso)
    decoded: bytes | None = None

    @property
    def content(self) -> bytes:
        """The body the sender meant: decoded when it was sent compressed."""
        return self.body if self.decoded is None else self.decoded

    def header(self, name: str) -> str | None:
        """First value of a header, case-insensitively, or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def has_headers(self, names: Iterable[str]) -> bool:
        present = {key.lower() for key, _ in self.headers}
        return all(name.lower() in present for name in names)

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")


@dataclass
class NormalizedEvent:
    """One event in the shape of the event record (docs/reference.md), before it has an id or
    a receive time."""

    source: str
    event_type: str
    vendor_event: str | None
    external_id: str
    occurred_at: str | None
    account: str | None
    actor: str | None
    subject_type: str | None
    subject_id: str | None
    data: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "event_type": self.event_type,
            "vendor_event": self.vendor_event,
            "external_id": self.external_id,
            "occurred_at": self.occurred_at,
            "account": self.account,
            "actor": self.actor,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "data": self.data,
        }


@dataclass
class Event:
    """A stored event as handlers and the API see it (docs/reference.md, the event record)."""

    id: int
    source: str
    event_type: str
    vendor_event: str | None
    external_id: str
    occurred_at: str | None
    received_at: str
    account: str | None
    actor: str | None
    subject_type: str | None
    subject_id: str | None
    endpoint: str
    signature_status: str
    data: Any
    delivery_count: int = 1
    dispatch_status: str = "pending"
    #: When a failed handler's next attempt is due (``dispatch_status`` ``retrying``).
    next_attempt_at: str | None = None

    @property
    def payload(self) -> Any:
        """Alias of ``data``: Keygen users know it as the parsed ``payload``."""
        return self.data

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "event_type": self.event_type,
            "vendor_event": self.vendor_event,
            "external_id": self.external_id,
            "occurred_at": self.occurred_at,
            "received_at": self.received_at,
            "account": self.account,
            "actor": self.actor,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "endpoint": self.endpoint,
            "signature_status": self.signature_status,
            "data": self.data,
            "delivery_count": self.delivery_count,
            "dispatch_status": self.dispatch_status,
            "next_attempt_at": self.next_attempt_at,
        }
