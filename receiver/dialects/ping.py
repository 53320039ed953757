"""The "Test" button of several vendors: an empty body, ``{}``, ``null`` or ``""``.

Every ping is recorded and none is a duplicate of another: each gets a fresh key.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..events import NormalizedEvent

EVENT_TYPE = "webhook.test"


def is_ping(body: bytes, document: Any = None, parsed: bool = False) -> bool:
    if not body.strip():
        return True
    return parsed and (document is None or document == {} or document == "")


def ping_event(
    source: str,
    *,
    occurred_at: str | None = None,
    subject_id: str | None = None,
    vendor_event: str | None = None,
) -> NormalizedEvent:
    return NormalizedEvent(
        source=source,
        event_type=EVENT_TYPE,
        vendor_event=vendor_event,
        external_id=f"ping:{uuid.uuid4()}",
        occurred_at=occurred_at,
        account=None,
        actor=None,
        subject_type="webhook",
        subject_id=subject_id,
        data={},
    )

