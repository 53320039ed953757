"""The senders we understand, in the recognition order of docs/senders.md.

Each dialect module offers ``matches(delivery, document) -> bool`` and
``normalize(delivery, document) -> NormalizedEvent``; both are pure.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..errors import BadRequest
from ..events import Delivery, NormalizedEvent
from . import fno, generic, keygen, licensespring, ping, standard, zentitle
from .base import parse_json

__all__ = ["DIALECTS", "detect", "detect_by_headers", "normalize", "parse_json"]

#: Recognition order (docs/senders.md): signature headers and envelopes before loose shapes.
DETECTION_ORDER: tuple[ModuleType, ...] = (keygen, standard, fno, zentitle, licensespring)
DIALECTS: dict[str, ModuleType] = {
    module.SOURCE: module for module in (*DETECTION_ORDER, generic)
}


def detect_by_headers(delivery: Delivery) -> str | None:
    """A dialect named by its signature headers alone, before any parsing."""
    if delivery.header("Keygen-Signature") is not None:
        return keygen.SOURCE
    if standard.matches(delivery, None):
        return standard.SOURCE
    if delivery.header("N-Signature") is not None:
        return zentitle.SOURCE
    return None


def detect(delivery: Delivery, document: Any, fallback: str = generic.SOURCE) -> str:
    """The source of a parsed body; ``fallback`` for test pings, ``generic`` for unknown JSON."""
    if ping.is_ping(delivery.content, document, parsed=True):
        return fallback
    for module in DETECTION_ORDER:
        if module.matches(delivery, document):
            return str(module.SOURCE)
    return generic.SOURCE


def normalize(source: str, delivery: Delivery, document: Any, parsed: bool) -> NormalizedEvent:
    """Turn a body already known to be ``source`` into the event record."""
    if ping.is_ping(delivery.content, document, parsed):
        return ping.ping_event(source)
    if not isinstance(document, dict):
        raise BadRequest(f"body must be a JSON object, got {_json_kind(document)}")
    event: NormalizedEvent = DIALECTS[source].normalize(delivery, document)
    return event


def _json_kind(document: Any) -> str:
    if isinstance(document, list):
        return "a JSON array"
    if isinstance(document, str):
        return "a JSON string"
    if isinstance(document, bool):
        return "a JSON boolean"
    if isinstance(document, (int, float)):
        return "a JSON number"
    return "JSON null"
