"""LicenseSpring: flat ``id/event/company_id/user_id/ts/data``."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..events import Delivery, NormalizedEvent
from .base import as_text, dig, epoch_time, first_segment, iso_time

SOURCE = "licensespring"
SIGNATURE_HEADERS: tuple[str, ...] = ()


def matches(delivery: Delivery, document: Any) -> bool:
    return isinstance(document, dict) and all(
        key in document for key in ("event", "company_id", "ts"))


def normalize(delivery: Delivery, document: Any) -> NormalizedEvent:
    event_type = document.get("event")
    if not isinstance(event_type, str) or not event_type:
        raise BadRequest("LicenseSpring webhook has no event name")
    event_id = as_text(document.get("id"))
    if event_id is None:
        raise BadRequest("LicenseSpring webhook has no id")
    data = document.get("data")
    subject_type = first_segment(event_type)
    ts = document.get("ts")
    occurred_at = epoch_time(ts) if isinstance(ts, (int, float)) else iso_time(ts)
    return NormalizedEvent(
        source=SOURCE,
        event_type=event_type,
        vendor_event=event_type,
        external_id=event_id,
        occurred_at=occurred_at,
        account=as_text(document.get("company_id")),
        actor=as_text(document.get("user_id")),
        subject_type=subject_type,
        subject_id=subject_id(data, subject_type),
        data=data if data is not None else {},
    )


def subject_id(data: Any, subject_type: str | None) -> str | None:
    """``data.<subject_type>.id``; the docs leave open whether ``data`` is keyed by object
    name, so fall back to ``data.id``."""
    if subject_type:
        keyed = as_text(dig(data, subject_type, "id"))
        if keyed:
            return keyed
    return as_text(dig(data, "id"))
