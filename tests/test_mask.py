"""Masking a stored JSON document in its text (``mask_json_text``, what exports use) hides
exactly what ``mask_data`` hides, for any document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.read.mask import MASK, mask_data, mask_json_text

# Names that are secrets, and names that only look a little like one.
names = st.sampled_from([
    "key", "Key", "KEY", "license_key", "licenseKey", "api_key", "apiKey", "private_key",
    "passwordResetToken", "password", "passwd", "client_secret", "signature",
    "activation_code", "monkey", "keygen", "keys", "key_id", "tokens", "note", "id", "plan",
    "signature_status", "sig", "ſecret", "sıgnature", "x\\token", 'quo"ted_key',
]) | st.text(max_size=12)
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=30) | st.sampled_from(["", "short", "KEY-0123456789ABCDEF",
                                                     'with "quotes"', "back\\slash", "ünï"]))
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(names, inner, max_size=5), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(documents, st.booleans())
def test_mask_json_text_hides_what_mask_data_hides(document: Any, compact: bool) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(document, ensure_ascii=False, separators=separators)
    assert json.loads(mask_json_text(text)) == mask_data(document)


@pytest.mark.parametrize("document", [
    {"key": "KEY-17156075", "note": "the key is in a value: key", "nested": {"licenseKey": 42}},
    {"items": [{"token": "abcdefghijklmnopqrst"}, {"signature_status": "valid"}]},
    {"key": {"not": "masked itself"}, "password": None, "secret": True, "api_key": ""},
    {"tokens": ["kept", "as mask_data keeps list items"], "activationCode": 1.5e3},
])
def test_mask_json_text_on_stored_documents(document: dict[str, Any]) -> None:
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    masked = mask_json_text(text)
    assert json.loads(masked) == mask_data(document)
    assert masked.count(MASK) == json.dumps(mask_data(document), ensure_ascii=False).count(MASK)


def test_mask_json_text_passes_documents_without_secrets_through_unchanged() -> None:
    text = '{"id":1,"plan":"pro","note":"keys are elsewhere","monkey":{"keys":[1]}}'
    assert mask_json_text(text) is text
