"""Standard Webhooks: ``webhook-id``/``webhook-timestamp``/``webhook-signature`` headers and a
suggested ``{type, timestamp, data}`` body.

Svix, the most deployed sender of the scheme, names the same three headers ``svix-id``,
``svix-timestamp`` and ``svix-signature``. They are read as aliases here, in one place (as the
``svix`` library maps them onto ``webhook-*`` before verifying): detection, dedup on the id,
the timestamp fallback and ``verify.verify_standard`` all go through :func:`standard_headers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from ..events import Delivery, NormalizedEvent
from .base import as_text, body_hash_id, dig, first_segment, iso_time

SOURCE = "standard"
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
SIGNATURE_HEADERS = ("webhook-signature",)
#: The spellings senders use, the standard's first: ``webhook-id`` or ``svix-id`` and so on.
SPELLINGS = ("webhook", "svix")


def _renamed(name: str, spelling: str) -> str:
    """``webhook-id`` in another spelling (``svix-id``)."""
    return spelling + name[len("webhook"):]


def standard_headers(headers: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The three headers under their ``webhook-*`` names, and the spelling they came in.

    ``headers`` has lower-case names. The standard's spelling is read unless the request
    has no ``webhook-signature`` and carries ``svix-*`` headers; one set is read, never a mix.
    """
    spelling = "webhook"
    if "webhook-signature" not in headers and any(
            _renamed(name, "svix") in headers for name in HEADERS):
        spelling = "svix"
    found = {name: headers[_renamed(name, spelling)] for name in HEADERS
             if _renamed(name, spelling) in headers}
    return found, spelling


def rename_headers(pairs: list[tuple[str, str]], spelling: str) -> list[tuple[str, str]]:
    """``webhook-*`` headers renamed to ``spelling`` (``svix``): how Svix would send them."""
    if spelling not in SPELLINGS:
        raise ValueError(f"unknown header spelling {spelling!r}; expected webhook or svix")
    return [(_renamed(name.lower(), spelling) if name.lower() in HEADERS else name, value)
            for name, value in pairs]


def _delivery_headers(delivery: Delivery) -> dict[str, str]:
    wanted = {_renamed(name, spelling) for name in HEADERS for spelling in SPELLINGS}
    found: dict[str, str] = {}
    for name, value in delivery.headers:
        key = name.lower()
        if key in wanted and key not in found:
            found[key] = value
    return standard_headers(found)[0]


def matches(delivery: Delivery, document: Any) -> bool:
    return any(delivery.has_headers([_renamed(name, spelling) for name in HEADERS])
               for spelling in SPELLINGS)


def normalize(delivery: Delivery, document: Any) -> NormalizedEvent:
    if not isinstance(document, dict):
        raise BadRequest("Standard Webhooks body must be a JSON object")
    headers = _delivery_headers(delivery)
    event_type = document.get("type")
    if not isinstance(event_type, str) or not event_type:
        event_type = "unknown"
    data = document["data"] if "data" in document else document
    subject_type = first_segment(event_type) if "." in event_type else None
    occurred_at = iso_time(document.get("timestamp"))
    if occurred_at is None:
        occurred_at = iso_time(headers.get("webhook-timestamp"))
    return NormalizedEvent(
        source=SOURCE,
        event_type=event_type,
        vendor_event=document.get("type") if isinstance(document.get("type"), str) else None,
        external_id=headers.get("webhook-id") or body_hash_id(delivery),
        occurred_at=occurred_at,
        account=None,
        actor=None,
        subject_type=subject_type,
        subject_id=as_text(dig(data, "id")) if subject_type else None,
        data=data,
    )
