"""Hide secrets in what pages and the API show; storage keeps the exact bytes.

Masked: signature and credential headers, and payload fields that are keys or tokens
(Keygen ``passwordResetToken`` and license ``key``, LicenseSpring ``license_key``, ...).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "keygen-signature",
    "x-signature", "n-signature", "webhook-signature", "svix-signature", "signature",
    "x-hub-signature",
    "x-hub-signature-256", "x-api-key", "api-key",
})
SECRET_FIELDS = re.compile(
    r"(token|secret|password|passwd|license_?key|licensekey|private_?key|api_?key|"
    r"signature|^key$|activation_?code)",
    re.IGNORECASE,
)
MASK = "••••••"


def mask_value(value: Any) -> Any:
    """Keep the last 4 characters of long values so a key can still be recognised."""
    if value is None or isinstance(value, bool) or value == "":
        return value
    text = str(value)
    return MASK + text[-4:] if len(text) >= 16 else MASK


def is_secret_field(name: str) -> bool:
    return bool(SECRET_FIELDS.search(name))


def mask_data(document: Any) -> Any:
    """A copy of a JSON value with secret-looking fields masked, at any depth (iterative:
    a payload nested as deep as the JSON parser allows must not exhaust the stack)."""
    result: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(document, result, 0)]
    while stack:
        value, parent, slot = stack.pop()
        if isinstance(value, dict):
            copy: dict[Any, Any] = {}
            parent[slot] = copy
            for key, item in value.items():
                if is_secret_field(str(key)) and not isinstance(item, (dict, list)):
                    copy[key] = mask_value(item)
                else:
                    copy[key] = None  # keeps the key order; filled from the stack
                    stack.append((item, copy, key))
        elif isinstance(value, list):
            items: list[Any] = [None] * len(value)
            parent[slot] = items
            stack.extend((item, items, index) for index, item in enumerate(value))
        else:
            parent[slot] = value
    return result[0]


def is_secret_header(name: str) -> bool:
    """Known credential headers, and any whose name reads like a secret (``X-License-Key``,
    ``X-Webhook-Token``)."""
    lowered = name.lower()
    return lowered in SECRET_HEADERS or is_secret_field(lowered.replace("-", "_"))


def mask_headers(headers: Iterable[Iterable[str]]) -> list[list[str]]:
    masked = []
    for name, value in headers:
        if is_secret_header(name):
            if name.lower() in ("authorization", "proxy-authorization") and " " in value:
                scheme = value.split(" ", 1)[0]
                value = f"{scheme} {MASK}"
            else:
                value = MASK
        masked.append([name, value])
    return masked


def mask_query(query: str) -> str:
    """A query string with the values of secret-looking parameters masked (``?token=...``);
    the rest is kept as it was sent."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if equals and value and is_secret_field(urllib.parse.unquote_plus(name)):
            value = mask_value(urllib.parse.unquote_plus(value))
        parts.append(name + equals + value)
    return "&".join(parts)


def secret_strings(document: Any) -> list[str]:
    """Every secret value in a JSON document, to scrub from raw text views. Strings that
    hold JSON themselves (Keygen's ``payload``) are searched too. Iterative, like
    ``mask_data``."""
    found: list[str] = []
    stack: list[Any] = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if is_secret_field(str(key)) and isinstance(item, (str, int)) and str(item):
                    found.append(str(item))
                else:
                    stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and value[:1] in ("{", "["):
            try:
                stack.append(json.loads(value))
            except (ValueError, RecursionError):
                pass
    return found


# "licenseKey": "value" in JSON text, or \"licenseKey\":\"value\" inside a JSON string:
# the fallback for bodies that do not parse.
_SECRET_PAIR = re.compile(
    r'\\?"(?P<name>[A-Za-z0-9_\-]+)\\?"\s*:\s*\\?"(?P<value>(?:[^"\\]|\\[^"])*)\\?"')


def mask_body(text: str, extra: Iterable[str] = ()) -> str:
    """A raw body as text with every secret value masked, whether or not it parses."""
    secrets = list(extra)
    try:
        secrets.extend(secret_strings(json.loads(text)))
    except (ValueError, RecursionError):
        pass
    for match in _SECRET_PAIR.finditer(text):
        if is_secret_field(match.group("name")) and match.group("value"):
            secrets.append(match.group("value"))
    return mask_text(text, secrets)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, mask_value(secret))
    return text
