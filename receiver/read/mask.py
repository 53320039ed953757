"""Hide secrets in what pages and the API show; storage keeps the exact bytes.

Masked: credential headers and query parameters (``Authorization``, ``X-Hub-Signature-256``,
``X-Shopify-Hmac-Sha256``, ``X-Auth-Key``, ``?sig=``, ``?api_key=``...), and payload fields
that are keys or tokens (Keygen ``passwordResetToken`` and license ``key``, LicenseSpring
``license_key``, ...), with everything below such a field when it holds a list or an object.
``MASK_NAMES`` adds names of its own (a ``Masker`` holds them).

Everything here is linear in what it reads: documents are walked once, a raw text is
scanned once for all its secrets at a time (``SecretMatcher``), whatever their number.
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
    r"signature|^key$|activation_?code|credential|hmac)",
    re.IGNORECASE,
)
#: A header or query parameter whose lower-case name holds one of these is a secret
#: (``X-Shopify-Hmac-Sha256``, ``X-Auth-Token``, ``X-Credentials``, ``X-Session``,
#: ``oauth_token``)...
SECRET_NAME_PARTS = ("token", "secret", "passw", "credential", "hmac", "signature", "cookie",
                     "session", "authoriz", "authentic")
#: ... and so is one with one of these as a whole word (``X-Auth``, ``X-Auth-Key``, ``?sig=``,
#: ``apiKey``; not ``?author=``).
SECRET_NAME_WORDS = frozenset({"auth", "sig", "key", "apikey", "pass", "pwd", "jwt", "otp"})
_NAME_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
MASK = "••••••"
#: Secrets shorter than this are masked where they stand (a field, a header) but not searched
#: for in raw text: replacing every "abc" of a body would mangle it.
MIN_SEARCHED = 4


def mask_value(value: Any) -> Any:
    """Keep the last 4 characters of long values so a key can still be recognised. A value
    masked already (``MASK`` and at most 4 characters) stays as it is, so masking twice is
    masking once."""
    if value is None or isinstance(value, bool) or value == "":
        return value
    text = str(value)
    if text.startswith(MASK) and len(text) <= len(MASK) + 4:
        return value
    return MASK + text[-4:] if len(text) >= 16 else MASK


@functools.lru_cache(maxsize=4096)
def is_secret_field(name: str) -> bool:
    return bool(SECRET_FIELDS.search(name))


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """A header or query-parameter name that reads like a credential: the known headers, any
    name a secret field could have (``X-License-Key``), one that holds a part of
    ``SECRET_NAME_PARTS`` or a word of ``SECRET_NAME_WORDS``."""
    lowered = name.lower()
    if lowered in SECRET_HEADERS or is_secret_field(lowered.replace("-", "_")):
        return True
    if any(part in lowered for part in SECRET_NAME_PARTS):
        return True
    return any(word.lower() in SECRET_NAME_WORDS for word in _NAME_WORD.findall(name))


#: Lower-case words of which every name ``is_secret_field`` accepts holds one (``passw``:
#: password, passwd; ``key``: license_key, private_key, api_key, key).
_SECRET_WORDS = ("token", "secret", "passw", "key", "signature", "activation", "credential",
                 "hmac")
_LITERAL_END = re.compile(r"[\s,}\]]")
_CONTAINER_TOKEN = re.compile(r'"[^"]*"|[\[\]{}]')  # in JSON text without backslashes


class Masker:
    """The masking of one receiver: the built-in names, and ``names`` (``MASK_NAMES``):
    further header, query-parameter and field names, compared whole and in any case."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = frozenset(name.strip().lower() for name in names if name.strip())
        # What mask_json_text looks for: the built-in words anywhere, the extra names as
        # whole JSON strings.
        self._words = re.compile("|".join(
            [*_SECRET_WORDS, *(re.escape(json.dumps(name)) for name in sorted(self.names))]))

    # -- names ------------------------------------------------------------------------------

    def is_secret_field(self, name: str) -> bool:
        return is_secret_field(name) or (bool(self.names) and name.lower() in self.names)

    def is_secret_header(self, name: str) -> bool:
        """Credential headers (``Authorization``, ``X-Hub-Signature-256``,
        ``X-Shopify-Hmac-Sha256``, ``X-Auth-Key``, ``X-Webhook-Token``...) and the extra
        names."""
        return is_secret_name(name) or (bool(self.names) and name.lower() in self.names)

    is_secret_param = is_secret_header  # query parameters follow the same rules

    # -- parsed documents -------------------------------------------------------------------

    def data(self, document: Any) -> Any:
        """A copy of a JSON value with the values of secret-looking fields masked, at any
        depth; a list or an object under such a field has every scalar in it masked."""
        return self._walk(document, hidden=False)

    def _walk(self, document: Any, *, hidden: bool) -> Any:
        # Iterative: a payload nested as deep as the JSON parser allows must not exhaust
        # the stack.
        result: list[Any] = [None]
        stack: list[tuple[Any, Any, Any, bool]] = [(document, result, 0, hidden)]
        while stack:
            value, parent, slot, under_secret = stack.pop()
            if isinstance(value, dict):
                copy: dict[Any, Any] = {}
                parent[slot] = copy
                for key, item in value.items():
                    copy[key] = None  # keeps the key order; filled from the stack
                    stack.append((item, copy, key,
                                  under_secret or self.is_secret_field(str(key))))
            elif isinstance(value, list):
                items: list[Any] = [None] * len(value)
                parent[slot] = items
                stack.extend((item, items, index, under_secret)
                             for index, item in enumerate(value))
            else:
                parent[slot] = mask_value(value) if under_secret else value
        return result[0]

    def mask_all(self, value: Any) -> Any:
        """``value`` with every scalar in it masked (what lies under a secret-named key)."""
        return self._walk(value, hidden=True)

    def secret_strings(self, document: Any) -> list[str]:
        """Every secret value in a JSON document (each scalar under a secret-named key, in
        lists and objects too), to scrub from raw text views. Strings that hold JSON
        themselves (Keygen's ``payload``) are searched too. Iterative."""
        found: list[str] = []
        stack: list[tuple[Any, bool]] = [(document, False)]
        while stack:
            value, under_secret = stack.pop()
            if isinstance(value, dict):
                stack.extend((item, under_secret or self.is_secret_field(str(key)))
                             for key, item in value.items())
            elif isinstance(value, list):
                stack.extend((item, under_secret) for item in value)
            elif under_secret:
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    found.append(str(value))
                    if isinstance(value, str) and value[:1] in ("{", "["):
                        stack.append((_parsed(value), True))
            elif isinstance(value, str) and value[:1] in ("{", "["):
                stack.append((_parsed(value), False))
        return found

    # -- JSON text ---------------------------------------------------------------------------

    def json_text(self, text: str) -> str:
        """The JSON text of ``data(json.loads(text))``, parsing the text only when it must.

        Exports pass millions of stored documents through here; most hold no secret, and
        the others usually one string field (a license ``key``), so the values are found in
        the text itself. That is sound for ASCII text without backslashes: every ``"`` then
        delimits a string, a string followed by ``:`` is a key, and no case folding is
        needed. Any other text is parsed, masked and serialized again. One pass from the
        start: each string is looked at once, a masked list or object is skipped whole.
        """
        if "\\" in text or not text.isascii():
            return json.dumps(self.data(json.loads(text)))
        lowered = text.lower()
        parts: list[str] = []
        done = skip = 0
        for word in self._words.finditer(lowered):
            found = word.start()
            if found < skip:
                continue
            if text[found] == '"':  # an extra name, matched with its quotes
                opening, closing = found, word.end() - 1
            else:  # a word inside a string (no letters outside strings but true/false/null)
                opening, closing = text.rfind('"', 0, found), text.find('"', found)
            skip = closing + 1
            colon = closing + 1 if text[closing + 1:closing + 2] == ":" else _skip_space(
                text, closing + 1)
            if text[colon:colon + 1] != ":" or not self.is_secret_field(
                    text[opening + 1:closing]):
                continue
            masked = self._masked_json_value(text, _skip_space(text, colon + 1))
            if masked is not None:
                start, end, value = masked
                parts += [text[done:start], value]
                done = skip = end
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)

    def _masked_json_value(self, text: str, start: int) -> tuple[int, int, str] | None:
        """(start, end, masked JSON) of the value at ``start``; None for values masking keeps
        (true, false, null, "", and lists or objects that hold nothing else)."""
        first = text[start]
        if first == '"':
            end = text.index('"', start + 1) + 1
            if end - start < 18:  # shorter than 16 characters: nothing of it is kept
                return (start, end, f'"{MASK}"') if end - start > 2 else None
            # MASK and the last four characters of an ASCII string that needed no escape
            # (no quote, backslash or control character): a JSON string as it is.
            return start, end, f'"{MASK}{text[end - 5:end - 1]}"'
        if first in "{[":
            depth, end = 0, len(text)
            for token in _CONTAINER_TOKEN.finditer(text, start):
                mark = token.group()
                if mark in ("{", "["):
                    depth += 1
                elif mark in ("}", "]"):
                    depth -= 1
                    if depth == 0:
                        end = token.end()
                        break
            value = json.loads(text[start:end])
            masked = self.mask_all(value)
            return None if masked == value else (start, end, json.dumps(masked, ensure_ascii=False))
        literal_end = _LITERAL_END.search(text, start)
        end = literal_end.start() if literal_end else len(text)
        value = json.loads(text[start:end])
        masked = mask_value(value)
        return None if masked is value else (start, end, json.dumps(masked, ensure_ascii=False))

    # -- headers and queries ----------------------------------------------------------------

    def headers(self, headers: Iterable[Iterable[str]]) -> list[list[str]]:
        masked = []
        for name, value in headers:
            if self.is_secret_header(name):
                if name.lower() in ("authorization", "proxy-authorization") and " " in value:
                    scheme = value.split(" ", 1)[0]
                    value = f"{scheme} {MASK}"
                else:
                    value = MASK
            masked.append([name, value])
        return masked

    def query(self, query: str) -> str:
        """A query string with the values of secret-looking parameters masked (``?token=``,
        ``?sig=``); the rest is kept as it was sent."""
        if not query:
            return query
        parts = []
        for part in query.split("&"):
            name, equals, value = part.partition("=")
            if equals and value and self.is_secret_param(urllib.parse.unquote_plus(name)):
                value = mask_value(urllib.parse.unquote_plus(value))
            parts.append(name + equals + value)
        return "&".join(parts)

    # -- raw text ----------------------------------------------------------------------------

    def body(self, text: str, extra: Iterable[str] = ()) -> str:
        """A raw body as text with every secret value masked, whether or not it parses:
        ``extra`` (the event's secrets), the body's own (``secret_strings``) and, for text
        that does not parse, ``"name": "value"`` pairs. One matcher, one pass."""
        secrets = list(extra)
        try:
            secrets.extend(self.secret_strings(json.loads(text)))
        except (ValueError, RecursionError):
            pass
        for match in _SECRET_PAIR.finditer(text):
            if match.group("value") and self.is_secret_field(match.group("name")):
                secrets.append(match.group("value"))
        return SecretMatcher(secrets).mask(text)

    def matcher(self, secrets: Iterable[str]) -> SecretMatcher:
        return SecretMatcher(secrets)


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _skip_space(text: str, index: int) -> int:
    while text[index:index + 1] in (" ", "\t", "\r", "\n"):
        index += 1
    return index


# "licenseKey": "value" in JSON text, or \"licenseKey\":\"value\" inside a JSON string:
# the fallback for bodies that do not parse.
_SECRET_PAIR = re.compile(
    r'\\?"(?P<name>[A-Za-z0-9_\-]+)\\?"\s*:\s*\\?"(?P<value>(?:[^"\\]|\\[^"])*)\\?"')
#: Text that is written the same in JSON at any depth of escaping.
_PLAIN = re.compile(r'[ !#-.0-\[\]-~]*')


def _written_forms(secret: str) -> set[str]:
    """How a secret may be written in a raw body: as it is, as a JSON string's contents
    (ASCII-only or not, ``/`` escaped or not, as PHP writes it) and as such contents inside
    a JSON string again (Keygen's ``payload``)."""
    if _PLAIN.fullmatch(secret):
        return {secret}
    once = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    once |= {form.replace("/", "\\/") for form in once}
    twice = {json.dumps(form, ensure_ascii=ascii)[1:-1] for form in once
             for ascii in (True, False)}
    return once | twice


class SecretMatcher:
    """Finds every occurrence of any of a set of secrets in a text in one pass, however many
    secrets: built once per answer, then used on each text it shows.

    The secrets are grouped by their first ``MIN_SEARCHED`` characters and, in a group, by
    length; each position of a text is looked up in that table (or only the positions where
    a group starts, found by a regular expression, when there are few groups), so the work
    is the text's length times the number of lengths a group holds, not times the number of
    secrets. Occurrences that overlap are masked as one.
    """

    MAX_PREFIX_PATTERN = 64  # groups beyond which every position is looked up

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in set(secrets):
            if len(secret) >= MIN_SEARCHED:
                forms |= _written_forms(secret)
        # A secret that is part of the mask itself could never be hidden; an already
        # masked value is no secret.
        self.forms = {form for form in forms if len(form) >= MIN_SEARCHED and not (
            form in MASK or form.startswith(MASK) and len(form) <= len(MASK) + 4)}
        lengths: dict[str, set[int]] = {}
        for form in self.forms:
            lengths.setdefault(form[:MIN_SEARCHED], set()).add(len(form))
        self.by_prefix = {prefix: sorted(found, reverse=True)
                          for prefix, found in lengths.items()}
        self._starts = re.compile("(?=" + "|".join(map(re.escape, self.by_prefix)) + ")") if (
            0 < len(self.by_prefix) <= self.MAX_PREFIX_PATTERN) else None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each run of text that secrets cover, in order."""
        if not self.forms:
            return []
        found: list[tuple[int, int]] = []
        by_prefix, forms, width = self.by_prefix, self.forms, MIN_SEARCHED
        positions: Iterable[int] = (
            [match.start() for match in self._starts.finditer(text)] if self._starts
            else [start for start in range(len(text) - width + 1)
                  if text[start:start + width] in by_prefix])
        for start in positions:
            # The longest secret that starts here.
            for length in by_prefix[text[start:start + width]]:
                if text[start:start + length] in forms:
                    end = start + length
                    if found and start < found[-1][1]:
                        found[-1] = (found[-1][0], max(found[-1][1], end))
                    else:
                        found.append((start, end))
                    break
        return found

    def mask(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        parts, done = [], 0
        for start, end in spans:
            masked = mask_value(text[start:end])
            if self.spans(masked):  # the four characters kept are (part of) a secret
                masked = MASK
            parts += [text[done:start], masked]
            done = end
        parts.append(text[done:])
        return "".join(parts)


#: The masking with the built-in names only; the functions below use it.
DEFAULT = Masker()


def mask_data(document: Any) -> Any:
    return DEFAULT.data(document)


def mask_json_text(text: str) -> str:
    return DEFAULT.json_text(text)


def is_secret_header(name: str) -> bool:
    return DEFAULT.is_secret_header(name)


def mask_headers(headers: Iterable[Iterable[str]]) -> list[list[str]]:
    return DEFAULT.headers(headers)


def mask_query(query: str) -> str:
    return DEFAULT.query(query)


def secret_strings(document: Any) -> list[str]:
    return DEFAULT.secret_strings(document)


def mask_body(text: str, extra: Iterable[str] = ()) -> str:
    return DEFAULT.body(text, extra)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (of ``MIN_SEARCHED`` characters or
    more) masked, in one pass."""
    return SecretMatcher(secrets).mask(text)
