"""Standard Webhooks: ``webhook-id``/``webhook-timestamp``/``webhook-signature`` headers and a
suggested ``{type, timestamp, data}`` body."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..events import Delivery, NormalizedEvent
from .base import as_text, body_hash_id, dig, first_segment, iso_time

SOURCE = "standard"
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
SIGNATURE_HEADERS = ("webhook-signature",)


def matches(delivery: Delivery, document: Any) -> bool:
    return delivery.has_headers(HEADERS)


def normalize(delivery: Delivery, document: Any) -> NormalizedEvent:
    if not isinstance(document, dict):
        raise BadRequest("Standard Webhooks body must be a JSON object")
    event_type = document.get("type")
    if not isinstance(event_type, str) or not event_type:
        event_type = "unknown"
    data = document["data"] if "data" in document else document
    subject_type = first_segment(event_type) if "." in event_type else None
    occurred_at = iso_time(document.get("timestamp"))
    if occurred_at is None:
        occurred_at = iso_time(delivery.header("webhook-timestamp"))
    return NormalizedEvent(
        source=SOURCE,
        event_type=event_type,
        vendor_event=document.get("type") if isinstance(document.get("type"), str) else None,
        external_id=delivery.header("webhook-id") or body_hash_id(delivery),
        occurred_at=occurred_at,
        account=None,
        actor=None,
        subject_type=subject_type,
        subject_id=as_text(dig(data, "id")) if subject_type else None,
        data=data,
    )
