"""Hide secrets in what pages and the API show; storage keeps the exact bytes.

Masked: signature and credential headers, and payload fields that are keys or tokens
(Keygen ``passwordResetToken`` and license ``key``, LicenseSpring ``license_key``, ...).
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=4096)
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


#: Lower-case words of which every name ``is_secret_field`` accepts holds one (``passw``:
#: password, passwd; ``key``: license_key, private_key, api_key, key).
_SECRET_WORDS = ("token", "secret", "passw", "key", "signature", "activation")
_LITERAL_END = re.compile(r"[\s,}\]]")


def mask_json_text(text: str) -> str:
    """The JSON text of ``mask_data(json.loads(text))``, parsing the text only when it must.

    Exports pass millions of stored documents through here; most hold no secret, and the
    others usually one string field (a license ``key``), so the values are found in the text
    itself. That is sound for ASCII text without backslashes: every ``"`` then delimits a
    string, a string followed by ``:`` is a key, and no case folding is needed. Any other
    text is parsed, masked and serialized again.
    """
    if "\\" in text or not text.isascii():
        return json.dumps(mask_data(json.loads(text)))
    lowered = text.lower()
    replacements: list[tuple[int, int, str]] = []
    for word in _SECRET_WORDS:
        found = lowered.find(word)
        while found != -1:
            opening = text.rfind('"', 0, found)  # the string the word is in (no letters
            closing = text.find('"', found)      # outside strings but true/false/null)
            colon = closing + 1 if text[closing + 1:closing + 2] == ":" else _skip_space(
                text, closing + 1)
            if text[colon:colon + 1] == ":" and is_secret_field(text[opening + 1:closing]):
                masked = _masked_scalar(text, _skip_space(text, colon + 1))
                if masked is not None and masked not in replacements:
                    replacements.append(masked)
            found = lowered.find(word, closing + 1)
    if not replacements:
        return text
    replacements.sort()
    parts, done = [], 0
    for start, end, value in replacements:
        parts += [text[done:start], value]
        done = end
    parts.append(text[done:])
    return "".join(parts)


def _skip_space(text: str, index: int) -> int:
    while text[index:index + 1] in (" ", "\t", "\r", "\n"):
        index += 1
    return index


def _masked_scalar(text: str, start: int) -> tuple[int, int, str] | None:
    """(start, end, masked JSON) of the value at ``start``; None for an object or list (their
    own keys are masked one by one) and for values masking keeps (true, false, null, "")."""
    first = text[start]
    if first == '"':
        end = text.index('"', start + 1) + 1
        if end - start < 18:  # shorter than 16 characters: nothing of it is kept
            return (start, end, f'"{MASK}"') if end - start > 2 else None
        # MASK and the last four characters of an ASCII string that needed no escape (no
        # quote, backslash or control character): a JSON string as it is.
        return start, end, f'"{MASK}{text[end - 5:end - 1]}"'
    if first in "{[":
        return None
    literal_end = _LITERAL_END.search(text, start)
    end = literal_end.start() if literal_end else len(text)
    value = json.loads(text[start:end])
    masked = mask_value(value)
    return None if masked is value else (start, end, json.dumps(masked, ensure_ascii=False))


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
