"""Hide secrets in what pages and the API show; storage keeps the exact bytes.

Masked: signature and credential headers, and payload fields that are keys or tokens
(Keygen ``passwordResetToken`` and license ``key``, LicenseSpring ``license_key``, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "keygen-signature",
    "x-signature", "n-signature", "webhook-signature", "signature", "x-hub-signature",
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
    """A copy of a JSON value with secret-looking fields masked, at any depth."""
    if isinstance(document, dict):
        return {
            key: (mask_value(value) if is_secret_field(str(key))
                  and not isinstance(value, (dict, list)) else mask_data(value))
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [mask_data(item) for item in document]
    return document


def mask_headers(headers: Iterable[Iterable[str]]) -> list[list[str]]:
    masked = []
    for name, value in headers:
        if name.lower() in SECRET_HEADERS:
            if name.lower() in ("authorization", "proxy-authorization") and " " in value:
                scheme = value.split(" ", 1)[0]
                value = f"{scheme} {MASK}"
            else:
                value = MASK
        masked.append([name, value])
    return masked


def secret_strings(document: Any) -> list[str]:
    """Every secret value in a JSON document, to scrub from raw text views. Strings that
    hold JSON themselves (Keygen's ``payload``) are searched too."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if is_secret_field(str(key)) and isinstance(value, (str, int)) and str(value):
                found.append(str(value))
            else:
                found.extend(secret_strings(value))
    elif isinstance(document, list):
        for item in document:
            found.extend(secret_strings(item))
    elif isinstance(document, str) and document[:1] in ("{", "["):
        try:
            found.extend(secret_strings(json.loads(document)))
        except ValueError:
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
