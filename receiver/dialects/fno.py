"""Revenera FlexNet Operations: ``eventHeader`` + ``eventBody``, every value a string."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..events import Delivery, NormalizedEvent
from .base import as_text, body_hash_id, epoch_time

SOURCE = "fno"
SIGNATURE_HEADERS = ("Authorization",)

RESOURCES = {"ENT": "entitlement", "PROD": "product", "DEVICE": "device",
             "CLS_INSTANCE": "cls_instance"}
ACTIONS = {"CREATE": "created", "UPDATE": "updated", "DELETE": "deleted"}
SUBJECT_KEYS = {"entitlement": "entitlementId", "product": "productId", "device": "deviceId",
                "cls_instance": "deviceId"}


def matches(delivery: Delivery, document: Any) -> bool:
    return isinstance(document, dict) and "eventHeader" in document and "eventBody" in document


def normalize(delivery: Delivery, document: Any) -> NormalizedEvent:
    header = document.get("eventHeader")
    body = document.get("eventBody")
    if not isinstance(header, dict):
        raise BadRequest("FNO webhook eventHeader must be an object")
    event = header.get("event")
    if not isinstance(event, str) or not event:
        raise BadRequest("FNO webhook has no eventHeader.event")
    action = header.get("eventType")
    if not isinstance(action, str) or not action:
        raise BadRequest("FNO webhook has no eventHeader.eventType")
    resource = RESOURCES.get(event, event.lower())
    event_type = f"{resource}.{ACTIONS.get(action, action.lower())}"
    body = body if isinstance(body, dict) else {}
    key = SUBJECT_KEYS.get(resource)
    subject = as_text(body.get(key)) if key else None
    if subject is None:
        subject = as_text(body.get("id"))
    return NormalizedEvent(
        source=SOURCE,
        event_type=event_type,
        vendor_event=f"{event}/{action}",
        external_id=body_hash_id(delivery),
        occurred_at=_millis(header.get("timeStamp")),
        account=as_text(header.get("tenant")),
        actor=as_text(header.get("userId")),
        subject_type=resource,
        subject_id=subject,
        data=document.get("eventBody"),
    )


def _millis(value: Any) -> str | None:
    """FNO's ``timeStamp`` is epoch milliseconds carried in a string."""
    try:
        return epoch_time(int(str(value)) / 1000)
    except ValueError:
        return None
