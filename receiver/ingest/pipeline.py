"""The ingest steps in order: detect, verify, normalize, store. No Flask here.

``receive`` takes a ``Delivery`` and the endpoint it arrived on and returns an ``Answer``:
the HTTP status and JSON body to answer, and what was stored. A refused request is stored
with its reason; a 2xx is only returned after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import dialects
from ..config import SOURCES, Endpoint
from ..errors import ReceiverError, Unauthorized
from ..events import Delivery
from ..handlers import signals
from ..store import Store
from ..verify import Verdict, verify


@dataclass(frozen=True)
class Answer:
    """What to answer the sender, and what was stored: the delivery, the event if any."""

    status: int
    body: dict[str, Any]
    delivery_id: int
    event_id: int | None = None
    to_dispatch: bool = False  # a new event with handlers, leased to the dispatcher


def ping_source(endpoint: Endpoint) -> str:
    """Whose "Test" button sent an empty ping: the endpoint's source, or its name when the
    name is a source slug (``/hooks/zentitle``), else generic."""
    if endpoint.source:
        return endpoint.source
    return endpoint.name if endpoint.name in SOURCES else "generic"


def receive(
    delivery: Delivery,
    endpoint: Endpoint,
    store: Store,
    *,
    settings: Mapping[str, Any] | None = None,
    dispatcher_id: str | None = None,
    verdict: Verdict | None = None,
) -> Answer:
    """Run one delivery through the steps. ``dispatcher_id`` names who will run the event's
    handlers (it gets the lease in the storing transaction); without it, or when no handler
    matches, the event is stored as dispatched. ``verdict`` is one reached elsewhere (a
    document reconcile fetched from the vendor's API): the signature check is skipped."""
    source: str | None = None
    given, verdict = verdict, None
    try:
        source = endpoint.source or dialects.detect_by_headers(delivery)
        document: Any = None
        parsed = False
        if source is None:
            # Nothing names the sender: the body's shape has to.
            if delivery.content.strip():
                document, parsed = dialects.parse_json(delivery.content), True
            source = dialects.detect(delivery, document, fallback=ping_source(endpoint))
        verdict = given or verify(source, delivery, endpoint)
        if endpoint.enforce and verdict.status in ("invalid", "unsigned"):
            raise Unauthorized(verdict.reason or f"signature {verdict.status}")
        # Bytes are parsed only once they passed the check.
        if not parsed and delivery.content.strip():
            document, parsed = dialects.parse_json(delivery.content), True
        event = dialects.normalize(source, delivery, document, parsed)
    except ReceiverError as error:
        delivery_id = store.save_rejected(
            delivery,
            status_code=error.status,
            error=error.message,
            source=source,
            signature_status=verdict.status if verdict else None,
            signature_reason=verdict.reason if verdict else None,
        )
        return Answer(error.status, {"ok": False, "error": error.message,
                                      "delivery_id": delivery_id}, delivery_id)
    settings = settings or {}
    lease_seconds = float(settings.get("DISPATCH_LEASE", 45))
    if settings.get("DISPATCH") == "worker":
        # `receiver worker` processes decide which handlers run (they load the plugins and
        # hold their settings): every new event waits for them, its lease free at once.
        wanted, lease_seconds = dispatcher_id is not None, 0.0
    else:
        wanted = dispatcher_id is not None and bool(signals.handlers_for(event, settings))
    saved = store.save_event(delivery, event, verdict.status, verdict.reason,
                             dispatch_to=dispatcher_id if wanted else None,
                             lease_seconds=lease_seconds)
    return Answer(
        200,
        {
            "ok": True,
            "delivery_id": saved.delivery_id,
            "event_id": saved.event_id,
            "source": event.source,
            "event_type": saved.event_type,
            "duplicate": saved.duplicate,
            "signature_status": verdict.status,
        },
        saved.delivery_id,
        saved.event_id,
        to_dispatch=not saved.duplicate and wanted,
    )


def reject(delivery: Delivery, store: Store, error: ReceiverError, *,
           keep_body: bool = True) -> Answer:
    """Record a request refused before the pipeline could look at it (413, 404)."""
    delivery_id = store.save_rejected(delivery, status_code=error.status, error=error.message,
                                      keep_body=keep_body)
    return Answer(error.status, {"ok": False, "error": error.message,
                                  "delivery_id": delivery_id}, delivery_id)
