"""Masking of the shapes an outside probe sent: 40,000 secret fields in one body (once a pass
per secret over the whole text: 500 after 30 s), secrets in lists and objects (once shown in
clear), credential headers and query parameters the rules missed, and ``MASK_NAMES``."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.cli import cli
from receiver.read import changes
from receiver.read.mask import (
    MASK,
    Masker,
    SecretMatcher,
    is_secret_header,
    mask_body,
    mask_data,
    mask_json_text,
    mask_query,
)

from .hostile import NESTED_SECRET_VALUES, NESTED_SECRETS, json_documents, many_secret_keys

# -- 40,000 secret fields ----------------------------------------------------------------------


class CountingMatcher(SecretMatcher):
    """Counts the matchers built."""

    built = 0

    def __init__(self, secrets: Any) -> None:
        CountingMatcher.built += 1
        super().__init__(secrets)


def test_many_secret_fields_are_masked_in_the_api_the_page_and_the_export(client: Any) -> None:
    document = {"type": "probe.many", **many_secret_keys(40_000)}
    body = json.dumps(document)
    assert len(body) > 1_000_000
    answer = client.post("/hooks", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.json
    delivery_id, event_id = answer.json["delivery_id"], answer.json["event_id"]

    shown = client.get(f"/api/deliveries/{delivery_id}")
    assert shown.status_code == 200
    assert shown.json["body_text"].count(MASK) == 40_000
    page = client.get(f"/events/{event_id}")
    assert page.status_code == 200
    exported = client.get("/api/export.ndjson")
    assert exported.status_code == 200
    for text in (shown.get_data(as_text=True), page.get_data(as_text=True),
                 exported.get_data(as_text=True)):
        assert "SECRET-" not in text  # what every secret starts with; the last 4 kept
    line = json.loads(exported.get_data(as_text=True).splitlines()[0])
    assert line["data"]["token39999"] == MASK + "9999"


def test_the_body_of_many_secrets_is_scanned_by_one_matcher(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    from receiver.read import mask

    monkeypatch.setattr(CountingMatcher, "built", 0)
    monkeypatch.setattr(mask, "SecretMatcher", CountingMatcher)
    text = json.dumps(many_secret_keys(40_000))
    masked = mask_body(text, extra=["SECRET-0000000000001"])
    assert CountingMatcher.built == 1
    assert masked.count(MASK) == 40_000 and "SECRET-" not in masked


def test_a_matcher_masks_every_occurrence_and_overlaps_as_one() -> None:
    matcher = SecretMatcher(["abcdefgh", "efghijkl", "0123456789ABCDEFGHIJ", "xyz"])
    assert matcher.mask("..abcdefghijkl..") == f"..{MASK}.."  # overlapping: one span
    assert matcher.mask("0123456789ABCDEFGHIJ and abcdefgh") == (
        f"{MASK}GHIJ and {MASK}")
    assert matcher.mask("xyz is too short to search") == "xyz is too short to search"
    assert matcher.mask("") == ""
    # The four characters kept must not show another secret.
    assert SecretMatcher(["WXYZ", "0123456789abcdefWXYZ"]).mask("0123456789abcdefWXYZ") == MASK


# -- secrets in lists and objects ------------------------------------------------------------


def test_nested_secrets_are_masked_in_data_raw_text_and_stored_json() -> None:
    masked = mask_data(NESTED_SECRETS)
    assert masked["tokens"] == [MASK + "0001", MASK + "0002"]
    assert masked["secret"] == {"value": MASK + "T-01", "rotated": {"at": MASK}}
    assert masked["api_keys"] == [{"value": MASK + "ECTS"}, [MASK + "Y-02"]]
    assert masked["plain"] == NESTED_SECRETS["plain"]
    for text in (json.dumps(masked), mask_body(json.dumps(NESTED_SECRETS)),
                 mask_body(json.dumps(NESTED_SECRETS, indent=2)),
                 mask_json_text(json.dumps(NESTED_SECRETS, separators=(",", ":")))):
        assert not any(secret in text for secret in NESTED_SECRET_VALUES), text
    assert json.loads(mask_json_text(json.dumps(NESTED_SECRETS))) == masked


def test_nested_secrets_are_masked_in_changes() -> None:
    old = {"secret": {"value": "OLD-SECRET-VALUE-000001"}, "tokens": ["OLD-TOKEN-000001"]}
    new = {"secret": {"value": "NEW-SECRET-VALUE-000002"}, "tokens": ["NEW-TOKEN-000002"],
           "api_keys": [{"value": "ADDED-API-KEY-0000003"}]}
    shown = json.dumps([changes.masked(change).as_dict() for change in changes.diff(old, new)])
    for secret in ("OLD-SECRET-VALUE-000001", "NEW-SECRET-VALUE-000002", "OLD-TOKEN-000001",
                   "NEW-TOKEN-000002", "ADDED-API-KEY-0000003"):
        assert secret not in shown
    assert "secret.value" in shown and "tokens[0]" in shown
    assert "OLD-SECRET-VALUE-000001" in json.dumps(
        [change.as_dict() for change in changes.diff(old, new)])  # revealed: as they are


def test_nested_secrets_are_masked_on_pages_api_changes_and_export(client: Any) -> None:
    def post(document: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"type": "license.updated", "data": {"id": "lic_nested"},
                           **document})
        answer = client.post("/hooks", data=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200, answer.json
        return dict(answer.json)

    post({"tokens": ["EARLIER-TOKEN-000000000"], "secret": {"value": "EARLIER-SECRET-00000"}})
    answer = post(NESTED_SECRETS)
    event_id, delivery_id = answer["event_id"], answer["delivery_id"]
    texts = {
        "event api": client.get(f"/api/events/{event_id}"),
        "delivery api": client.get(f"/api/deliveries/{delivery_id}"),
        "changes api": client.get(f"/api/events/{event_id}/changes"),
        "event page": client.get(f"/events/{event_id}"),
        "delivery page": client.get(f"/deliveries/{delivery_id}"),
        "export": client.get("/api/export.ndjson"),
    }
    for name, response in texts.items():
        assert response.status_code == 200, name
        text = response.get_data(as_text=True)
        for secret in [*NESTED_SECRET_VALUES, "EARLIER-TOKEN-000000000", "EARLIER-SECRET-00000"]:
            assert secret not in text, (name, secret)
    revealed = client.get(f"/api/events/{event_id}?reveal=1").get_data(as_text=True)
    assert all(secret in revealed for secret in NESTED_SECRET_VALUES)


# -- headers and query parameters -----------------------------------------------------------

NEW_HEADERS = {"X-Shopify-Hmac-Sha256": "c2hvcGlmeS1obWFjLXZhbHVl", "X-Auth-Key": "auth-key-1234",
               "X-Auth": "auth-value-5678", "X-Credentials": "user:pa55w0rd",
               "X-Session": "session-id-9999", "X-Partner-Pin": "PIN-424242"}


@pytest.mark.parametrize("name", [*NEW_HEADERS, "Authorization", "Cookie", "X-Hub-Signature-256",
                                  "X-Api-Key", "X-Webhook-Token", "X-Amz-Security-Token",
                                  "X-Csrf-Token", "X-Signature-Ed25519", "X-Sig", "X-JWT"])
def test_credential_headers_are_secret(name: str) -> None:
    if name == "X-Partner-Pin":
        assert not is_secret_header(name) and Masker(["x-partner-pin"]).is_secret_header(name)
    else:
        assert is_secret_header(name)


@pytest.mark.parametrize("name", ["Content-Type", "User-Agent", "X-Keygen-Event", "Keygen-Date",
                                  "Webhook-Id", "X-Request-Id", "Digest", "X-Forwarded-For",
                                  "Host", "Content-Length", "Accept-Encoding", "X-Author",
                                  "X-Authored-By"])
def test_ordinary_headers_are_not(name: str) -> None:
    assert not is_secret_header(name)


def test_credential_query_parameters_are_masked() -> None:
    query = ("sig=abcdef0123456789&api_key=k-123456&oauth_token=t&Signature=x&page=2&keygen=1"
             "&author=ann&auth=a-123456")
    assert mask_query(query) == (
        f"sig={MASK}6789&api_key={MASK}&oauth_token={MASK}&Signature={MASK}&page=2&keygen=1"
        f"&author=ann&auth={MASK}")


def test_new_header_and_query_names_are_masked_in_the_api_and_on_pages(make_app: Any) -> None:
    client = make_app(MASK_NAMES="x-partner-pin, Customer_PIN").test_client()
    answer = client.post("/hooks?sig=SIG-0123456789abcdef&api_key=APIKEY-0123456789&via=t"
                         "&customer_pin=778899",
                         data=json.dumps({"type": "probe.headers", "customer_pin": 31415}),
                         headers={"Content-Type": "application/json", **NEW_HEADERS})
    delivery_id, event_id = answer.json["delivery_id"], answer.json["event_id"]
    record = client.get(f"/api/deliveries/{delivery_id}").json
    headers = dict(record["headers"])
    for name in NEW_HEADERS:
        assert headers[name] == MASK, name
    assert record["query"] == f"sig={MASK}cdef&api_key={MASK}6789&via=t&customer_pin={MASK}"
    listed = client.get("/api/deliveries?limit=1").json["deliveries"][0]
    assert listed["query"] == record["query"] and dict(listed["headers"]) == headers
    assert client.get(f"/api/events/{event_id}").json["data"]["customer_pin"] == MASK
    for path in (f"/deliveries/{delivery_id}", f"/events/{event_id}"):
        page = client.get(path).get_data(as_text=True)
        for value in [*NEW_HEADERS.values(), "SIG-0123456789abcdef", "APIKEY-0123456789",
                      "778899"]:
            assert value not in page, (path, value)
    revealed = client.get(f"/api/deliveries/{delivery_id}?reveal=1").json
    assert dict(revealed["headers"])["X-Partner-Pin"] == "PIN-424242"
    # Without the setting the partner's PIN is no secret.
    plain = make_app().test_client()
    again = plain.post("/hooks", data=b'{"type": "probe.plain"}', headers=NEW_HEADERS).json
    shown = dict(plain.get(f"/api/deliveries/{again['delivery_id']}").json["headers"])
    assert shown["X-Partner-Pin"] == "PIN-424242" and shown["X-Auth"] == MASK


def test_mask_names_reach_the_cli_show_events_and_export(make_app: Any, db_path: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_app().test_client()
    answer = client.post("/hooks?partner_ref=REF-0099", headers={"X-Partner-Ref": "REF-0042"},
                         data=json.dumps({"type": "probe.cli", "partner_ref": "REF-0007",
                                          "tokens": ["CLI-NESTED-TOKEN-01"]})).json
    monkeypatch.setenv("RECEIVER_MASK_NAMES", "partner_ref,X-Partner-Ref")
    runner = CliRunner()
    outputs = [runner.invoke(cli, args, catch_exceptions=False).output for args in (
        ["show", str(answer["event_id"]), "--db", db_path],
        ["events", "--json", "--db", db_path],
        ["export", "--db", db_path])]
    for output in outputs:
        assert "REF-0007" not in output and "CLI-NESTED-TOKEN-01" not in output, output
    assert "REF-0042" not in outputs[0] and "REF-0099" not in outputs[0]
    monkeypatch.delenv("RECEIVER_MASK_NAMES")
    plain = runner.invoke(cli, ["show", str(answer["event_id"]), "--db", db_path]).output
    assert "REF-0007" in plain and "CLI-NESTED-TOKEN-01" not in plain


# -- properties ------------------------------------------------------------------------------

SECRET_KEYS = ["token", "apiKey", "license_key", "password", "client_secret", "key",
               "passwordResetToken", "signature", "credentials", "hmac"]
#: Secrets drawn from characters the rest of a document never holds (capitals, digits and
#: symbols that need escaping), so "it does not appear" means the masking hid it.
secret_values = st.text(string.ascii_uppercase + string.digits + '"\\/\n\u00e9\u4e2d\U0001f600',
                        min_size=4, max_size=24).filter(lambda value: value.strip())
plain_text = st.text(string.ascii_lowercase + " .-_", max_size=10)
plain_documents = st.recursive(
    st.none() | st.booleans() | plain_text,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(plain_text.filter(lambda name: not Masker().is_secret_field(name)),
                      inner, max_size=3),
    max_leaves=10)


@st.composite
def documents_with_a_secret(draw: st.DrawFn) -> tuple[Any, str]:
    """A document of any shape with a secret under a secret-named key somewhere in it: as
    the key's value, in a list or an object below it, at any depth."""
    secret = draw(secret_values)
    held: Any = secret
    for _ in range(draw(st.integers(0, 3))):  # wrapped in lists and objects below the key
        held = draw(st.sampled_from([[held], {"value": held}, {"x": None, "inner": [1, held]}]))
    placed: Any = {draw(st.sampled_from(SECRET_KEYS)): held}
    for _ in range(draw(st.integers(0, 4))):  # and the key itself anywhere in a document
        around = draw(plain_documents)
        if isinstance(around, dict):
            around = {**around, draw(st.sampled_from(["a", "b", "data"])): placed}
        elif isinstance(around, list):
            index = draw(st.integers(0, len(around)))
            around = [*around[:index], placed, *around[index:]]
        else:
            around = {"data": placed, "other": around}
        placed = around
    return placed, secret


@settings(max_examples=400, deadline=None)
@given(documents_with_a_secret(), st.booleans(), st.booleans())
def test_a_secret_anywhere_never_appears_masked(found: tuple[Any, str], ascii_only: bool,
                                               compact: bool) -> None:
    document, secret = found
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(document, ensure_ascii=ascii_only, separators=separators)
    written = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}

    masked_data = mask_data(document)
    assert secret not in json.dumps(masked_data, ensure_ascii=False)
    for masked_text in (mask_body(text), mask_json_text(text), mask_body(json.dumps(
            {"payload": text}, ensure_ascii=ascii_only))):
        assert not any(form in masked_text for form in written), masked_text
    assert json.loads(mask_json_text(text)) == masked_data
    # Masking twice is masking once.
    assert mask_data(masked_data) == masked_data
    assert mask_body(mask_body(text)) == mask_body(text)
    assert json.loads(mask_json_text(mask_json_text(text))) == json.loads(mask_json_text(text))


@settings(max_examples=200, deadline=None)
@given(json_documents)
def test_masking_any_document_is_idempotent(document: Any) -> None:
    text = json.dumps(document, ensure_ascii=False, allow_nan=True)
    once = mask_data(document)
    assert json.dumps(mask_data(once)) == json.dumps(once)
    assert mask_body(mask_body(text)) == mask_body(text)
