"""Any other JSON object: stored and dispatched, never refused for being unknown."""

from __future__ import annotations

from typing import Any

from ..events import Delivery, NormalizedEvent
from .base import body_hash_id, first_segment, iso_time

SOURCE = "generic"
SIGNATURE_HEADERS: tuple[str, ...] = ()
TIME_KEYS = ("occurred_at", "timestamp", "created_at", "created")


def matches(delivery: Delivery, document: Any) -> bool:
    return isinstance(document, dict)


def normalize(delivery: Delivery, document: Any) -> NormalizedEvent:
    name = None
    for key in ("type", "event"):
        if isinstance(document.get(key), str) and document[key]:
            name = document[key]
            break
    event_type = name or "unknown"
    occurred_at = None
    for key in TIME_KEYS:
        occurred_at = iso_time(document.get(key))
        if occurred_at:
            break
    return NormalizedEvent(
        source=SOURCE,
        event_type=event_type,
        vendor_event=name,
        external_id=body_hash_id(delivery),
        occurred_at=occurred_at,
        account=None,
        actor=None,
        subject_type=first_segment(event_type) if "." in event_type else None,
        subject_id=None,
        data=document,
    )
