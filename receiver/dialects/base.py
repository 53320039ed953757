"""Helpers the dialect modules share: JSON parsing with clear errors, times, ids."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from typing import Any

from ..errors import BadRequest
from ..events import Delivery, format_time


def parse_json(body: bytes) -> Any:
    """Parse a body as UTF-8 JSON, raising ``BadRequest`` with a sentence that names the
    problem (position, encoding, nesting) rather than a stack trace."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"body is not valid UTF-8 (byte 0x{body[error.start]:02x} at position "
            f"{error.start}); JSON webhooks must be UTF-8"
        ) from None
    try:
        return loads(text)
    except json.JSONDecodeError as error:
        raise BadRequest(
            f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise BadRequest("body is not acceptable JSON: nested too deeply") from None
    except ValueError as error:  # e.g. an integer with more digits than Python allows
        raise BadRequest(f"body is not acceptable JSON: {error}") from None


# "\\ud800" to "\\udfff" in JSON text: an escape that may leave a surrogate unpaired.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATES = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"the number {text[:40]} is too large for a 64-bit float")
    return number


def loads(text: str) -> Any:
    """``json.loads`` limited to what can be stored and sent on as JSON again.

    Python's parser also takes ``NaN`` and ``Infinity`` (not JSON) and reads ``1e999`` as an
    infinity that no JSON encoder can write back: both raise ``ValueError`` here. An escaped
    unpaired surrogate (``"\\ud800"``, which JavaScript writes for a cut emoji) is valid JSON
    but not text that UTF-8, SQLite or a page can hold: it is read as U+FFFD. The stored raw
    body keeps the original bytes either way.
    """
    document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    if _SURROGATE_ESCAPE.search(text):
        document = without_surrogates(document)
    return document


def without_surrogates(document: Any) -> Any:
    """The parsed document with every unpaired surrogate, in keys and values, replaced by
    U+FFFD. Iterative, in place: documents nest as deep as the parser allows."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return _SURROGATES.sub(REPLACEMENT, value)
        if isinstance(value, (dict, list)):
            pending.append(value)
        return value

    pending: list[Any] = []
    document = clean(document)
    while pending:
        container = pending.pop()
        if isinstance(container, list):
            container[:] = [clean(item) for item in container]
        else:
            items = [(clean(key), clean(value)) for key, value in container.items()]
            container.clear()
            container.update(items)
    return document


def body_hash_id(delivery: Delivery) -> str:
    """Idempotency key for senders that give none: the hash of the exact bytes (decoded, so
    the same event sent compressed and plain is one event)."""
    return "sha256:" + hashlib.sha256(delivery.content).hexdigest()


def as_text(value: Any) -> str | None:
    """Ids and names as strings (ints become strings); empty and non-scalars are None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return text if text != "" else None


def first_segment(event_type: str) -> str | None:
    head = event_type.split(".", 1)[0]
    return head or None


def iso_time(value: Any) -> str | None:
    """An ISO 8601 string or epoch seconds as our time format; None when it is neither."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return epoch_time(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # "³".isdigit() too, but it is no number
        return epoch_time(int(text))
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    try:
        return format_time(moment)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first UTC moment Python has
        return None


def epoch_time(seconds: float) -> str | None:
    try:
        return format_time(dt.datetime.fromtimestamp(seconds, dt.UTC))
    except (OverflowError, OSError, ValueError):
        return None


def dig(document: Any, *path: str) -> Any:
    """``document[path[0]][path[1]]...`` or None when any step is missing or not a dict."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document
