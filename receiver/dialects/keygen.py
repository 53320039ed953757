"""Keygen: a JSON:API ``webhook-events`` envelope whose ``payload`` attribute is a JSON string."""

from __future__ import annotations

import json
from typing import Any

from ..errors import BadRequest
from ..events import Delivery, NormalizedEvent
from .base import as_text, body_hash_id, dig, first_segment, iso_time, loads

SOURCE = "keygen"
SIGNATURE_HEADERS = ("Keygen-Signature", "X-Signature")


def matches(delivery: Delivery, document: Any) -> bool:
    if delivery.header("Keygen-Signature") is not None:
        return True
    return dig(document, "data", "type") == "webhook-events"


def normalize(delivery: Delivery, document: Any) -> NormalizedEvent:
    envelope = dig(document, "data")
    if not isinstance(envelope, dict) or envelope.get("type") != "webhook-events":
        raise BadRequest('Keygen webhook body must be a JSON:API document with data.type '
                         '"webhook-events"')
    attributes = envelope.get("attributes")
    if not isinstance(attributes, dict):
        raise BadRequest("Keygen webhook has no data.attributes object")
    event_type = attributes.get("event")
    if not isinstance(event_type, str) or not event_type:
        raise BadRequest("Keygen webhook has no data.attributes.event")
    payload = parse_payload(attributes.get("payload"))
    account = as_text(dig(envelope, "relationships", "account", "data", "id"))
    subject_type = first_segment(event_type)
    external_id = (as_text(dig(envelope, "meta", "idempotencyToken"))
                   or as_text(envelope.get("id")) or body_hash_id(delivery))
    return NormalizedEvent(
        source=SOURCE,
        event_type=event_type,
        vendor_event=event_type,
        external_id=external_id,
        occurred_at=iso_time(attributes.get("created")),
        account=account,
        actor=None,
        subject_type=subject_type,
        subject_id=subject_id(payload, subject_type, account),
        data=payload,
    )


def parse_payload(payload: Any) -> Any:
    """Keygen sends the payload as a string holding JSON; accept an object too."""
    if isinstance(payload, (dict, list)):
        return payload
    if not isinstance(payload, str):
        raise BadRequest("Keygen webhook has no data.attributes.payload string")
    try:
        return loads(payload)
    except json.JSONDecodeError as error:
        raise BadRequest(f"Keygen webhook data.attributes.payload is not valid JSON: "
                         f"{error.msg} at position {error.pos}") from None
    except RecursionError:
        raise BadRequest("Keygen webhook data.attributes.payload is not acceptable JSON: "
                         "nested too deeply") from None
    except ValueError as error:
        raise BadRequest("Keygen webhook data.attributes.payload is not acceptable JSON: "
                         f"{error}") from None


def _singular(resource_type: str) -> str:
    if resource_type.endswith("ies"):
        return resource_type[:-3] + "y"
    if resource_type.endswith("sses"):
        return resource_type[:-2]
    return resource_type[:-1] if resource_type.endswith("s") else resource_type


def subject_id(payload: Any, subject_type: str | None, account: str | None) -> str | None:
    """The id of what the event is about: the payload resource itself when it has the
    event's type, else its relationship of that type (join records such as
    ``license-entitlements``), else the account for ``account.*`` events."""
    resource = dig(payload, "data") if isinstance(payload, dict) else None
    if isinstance(resource, list):
        resource = resource[0] if resource else None
    if not isinstance(resource, dict):
        return account if subject_type == "account" else None
    resource_type = resource.get("type")
    if isinstance(resource_type, str) and _singular(resource_type) == subject_type:
        return as_text(resource.get("id"))
    if subject_type:
        related = as_text(dig(resource, "relationships", subject_type, "data", "id"))
        if related:
            return related
    if subject_type == "account" and account:
        return account
    return as_text(resource.get("id"))
