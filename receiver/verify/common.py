"""What every scheme shares: the :class:`Verdict` and its statuses, header lookup, strict
base64, freshness of a signed timestamp, constant-time comparison and the short quotes reasons
use. Pure and small: no keys, no configuration."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

VALID = "valid"
INVALID = "invalid"
UNSIGNED = "unsigned"
UNCHECKED = "unchecked"
#: Not from a signed request: taken from the vendor's API with our token (reconcile).
FETCHED = "fetched"
STATUSES = (VALID, INVALID, UNSIGNED, UNCHECKED, FETCHED)

#: Request headers as a mapping or as ``(name, value)`` pairs (repeats kept).
Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: a record's ``signature_status`` and, unless valid, why.

    ``reason`` is a sentence for people ("Digest does not match body"); it never holds a
    configured secret.
    """

    status: str
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown signature status {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == VALID


def header_map(headers: Headers) -> dict[str, str]:
    """Lower-cased names; the first value of a repeated header wins (as ``Delivery.header``)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key not in found:
            found[key] = value
    return found


def wire_bytes(text: str) -> bytes:
    """The bytes a header value had on the wire: WSGI hands headers over decoded as latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def b64decode(text: str) -> bytes:
    """Strict standard base64 (padding optional); raises ValueError."""
    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def b64(data: bytes) -> str:
    """Standard base64 as text, for header values."""
    return base64.b64encode(data).decode("ascii")


def _describe_span(seconds: float) -> str:
    """420 → "7 minutes"; 45 → "45 seconds"."""
    seconds = abs(seconds)
    if seconds < 120:
        count, unit = int(seconds), "second"
    elif seconds < 2 * 3600:
        count, unit = int(seconds // 60), "minute"
    elif seconds < 2 * 86400:
        count, unit = int(seconds // 3600), "hour"
    else:
        count, unit = int(seconds // 86400), "day"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def freshness(label: str, moment: float, now: float, too_old: float,
              too_new: float) -> str | None:
    """A reason when ``moment`` is older than ``too_old`` s or ahead by more than ``too_new`` s."""
    age = now - moment
    if age > too_old:
        return f"{label} is {_describe_span(age)} old"
    if -age > too_new:
        return f"{label} is {_describe_span(age)} in the future"
    return None


def quote(text: str, limit: int = 40) -> str:
    """Client-supplied text, shortened, for a reason."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def consteq(left: str | bytes, right: str | bytes) -> bool:
    """Equal in constant time, so a wrong credential leaks nothing through timing."""
    if isinstance(left, str):
        left = left.encode("utf-8", "surrogatepass")
    if isinstance(right, str):
        right = right.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(left, right)


def first_line(error: BaseException) -> str:
    """An exception's first line, at most 120 characters, for a reason or a config error."""
    return (str(error).splitlines() or [type(error).__name__])[0][:120]
