"""Hypothesis strategies for the inputs that reach past the HTTP layer and trip the libraries
below it: NUL, unpaired surrogates, huge and non-finite numbers, times at the ends of the
calendar, digits that are not ASCII, text direction marks.

``st.text()`` alone rarely makes them (it never makes a surrogate), which is how a class of
500s went unnoticed: these strategies draw from the edge cases on purpose, and mix them with
ordinary text so filters still find something.
"""

from __future__ import annotations

import gzip
import json
import urllib.parse
from typing import Any

from hypothesis import strategies as st

#: Times at the ends of the calendar: a bucket or a default range shifted past year 1 or
#: year 9999, and year 1 written without its zeros, each once answered a 500.
EDGE_DATES = [
    "0001-01-01", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000001Z", "0001-01-01T00:59:59Z",
    "0001-01-02T00:00:00Z", "9999-12-30T23:59:59Z", "9999-12-31", "9999-12-31T00:00:00Z",
    "9999-12-31T23:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0000-01-01", "10000-01-01",
]

#: Values that each broke, or could break, something below the web layer.
EDGE_TEXT = [*EDGE_DATES,
    "", " ", "\x00", "a\x00b", "\x00license", "\ud800", "\udfff", "x\ud83dy", "\ud83d\ude00",
    "\ufffd", "\ufeff", "\uffff", "\U0010ffff", "\u202eevil", "e\u0301", "\u0663", "\uff11\uff12",
    "\u00b3", "\u00b2\u00b9", "\u2460", "\u00bd", "\u00a0", "\n", "\r\n", "\t", "\x7f", "\x1b[31m",
    "0", "-1", "00000000000000000000001", "9" * 19, "9" * 25, "9223372036854775808",
    "1e999", "-1e999", "NaN", "Infinity", "0x10", "1_000",
    "2024-02-30",
    "2024-05-01T12:00:00Z", "99999999999999999999",
    '"', '""', "'", "*", "license.*", "license.created\n", "NEAR(a b)", "a OR b", "-x", "^",
    "%", "%00", "\\", "<script>alert(1)</script>", "{{7*7}}", "{% raw %}", "../../etc/passwd",
    "a" * 600,
]

any_character = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
edge_text = st.sampled_from(EDGE_TEXT)
#: Two draws in three from the edge cases, the rest any text (surrogates and NUL included).
hostile_text = st.one_of(edge_text, edge_text, st.text(any_character, max_size=12),
                         st.text(max_size=20))


def hostile_numbers() -> st.SearchStrategy[Any]:
    return (st.integers(-(2**70), 2**70) | st.sampled_from([2**63, -(2**63) - 1, 10**30])
            | st.floats(allow_nan=True, allow_infinity=True))


json_documents = st.recursive(
    st.none() | st.booleans() | hostile_numbers() | hostile_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(hostile_text, children, max_size=5),
    max_leaves=20,
)

#: Keys the dialects look for, so the documents reach the mapping code, not only generic.
shaped_documents = st.fixed_dictionaries({}, optional={
    key: json_documents for key in (
        "type", "event", "id", "data", "timestamp", "created", "ts", "company_id", "user_id",
        "eventHeader", "eventBody", "eventId", "eventCode", "eventDate", "resourceId",
        "payload")})


def json_body(document: Any) -> bytes:
    """The bytes a sender would post: ASCII JSON, so surrogates become ``\\ud800`` escapes and
    non-finite floats the ``NaN``/``Infinity`` that some encoders write."""
    return json.dumps(document, ensure_ascii=True, allow_nan=True).encode()


def query_string(params: dict[str, str]) -> str:
    """A query string carrying the parameters' UTF-8 bytes, surrogates included (as the
    invalid bytes a raw client can send): the web layer has to cope with whatever arrives."""
    return urllib.parse.urlencode(
        {name: value.encode("utf-8", "surrogatepass") for name, value in params.items()})


def query_params(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(names), hostile_text, max_size=4)


# -- big shapes that once cost quadratic time -------------------------------------------------


def many_gzip_members(count: int, member: bytes = b"") -> bytes:
    """``count`` gzip members one after the other, each of ``member`` (empty: 20 bytes each,
    so 100,000 members are a 2 MB body that decodes to nothing)."""
    return gzip.compress(member, mtime=0) * count


def many_secret_keys(count: int) -> dict[str, str]:
    """A generic JSON object of ``count`` secret-named fields (``token0``...), each holding a
    distinct value of 20 characters (40,000 of them: a body of about 1.1 MB)."""
    return {f"token{index}": f"SECRET-{index:013d}" for index in range(count)}


#: Secrets below secret-named keys in lists and objects, as some senders nest them.
NESTED_SECRETS: dict[str, Any] = {
    "tokens": ["NESTED-TOKEN-IN-A-LIST-0001", "NESTED-TOKEN-IN-A-LIST-0002"],
    "secret": {"value": "NESTED-SECRET-IN-AN-OBJECT-01", "rotated": {"at": 1700000000123}},
    "api_keys": [{"value": "NESTED-API-KEY-IN-A-LIST-OF-OBJECTS"}, ["NESTED-DEEPER-API-KEY-02"]],
    "plain": {"note": "kept", "id": "evt_nested"},
}
NESTED_SECRET_VALUES = ["NESTED-TOKEN-IN-A-LIST-0001", "NESTED-TOKEN-IN-A-LIST-0002",
                        "NESTED-SECRET-IN-AN-OBJECT-01", "1700000000123",
                        "NESTED-API-KEY-IN-A-LIST-OF-OBJECTS", "NESTED-DEEPER-API-KEY-02"]
