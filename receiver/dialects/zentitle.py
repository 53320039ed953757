"""Zentitle2 (Nalpeiron): ``eventId/eventDate/eventCode/resourceId/callAttempt/payload``.

Its dashboard "Test" button sends an envelope whose payload is empty; that is a test ping.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..events import Delivery, NormalizedEvent
from .base import as_text, first_segment, iso_time
from .ping import ping_event

SOURCE = "zentitle"
SIGNATURE_HEADERS = ("N-Signature",)
ENVELOPE_KEYS = ("eventCode", "eventId", "resourceId")


def matches(delivery: Delivery, document: Any) -> bool:
    if delivery.header("N-Signature") is not None:
        return True
    return isinstance(document, dict) and any(key in document for key in ENVELOPE_KEYS)


def is_empty(payload: Any) -> bool:
    return payload is None or payload == {} or payload == "" or payload == []


def normalize(delivery: Delivery, document: Any) -> NormalizedEvent:
    code = document.get("eventCode")
    payload = document.get("payload")
    if is_empty(payload) and (not code or "test" in str(code).lower()):
        # The Test button: empty payload, resourceId = the listener's id.
        return ping_event(SOURCE, occurred_at=iso_time(document.get("eventDate")),
                          subject_id=as_text(document.get("resourceId")),
                          vendor_event=as_text(code))
    if not isinstance(code, str) or not code:
        raise BadRequest("Zentitle webhook has no eventCode")
    event_id = as_text(document.get("eventId"))
    if event_id is None:
        raise BadRequest("Zentitle webhook has no eventId")
    return NormalizedEvent(
        source=SOURCE,
        event_type=code,
        vendor_event=code,
        external_id=event_id,
        occurred_at=iso_time(document.get("eventDate")),
        account=None,
        actor=None,
        subject_type=first_segment(code),
        subject_id=as_text(document.get("resourceId")),
        data=payload if payload is not None else {},
    )
