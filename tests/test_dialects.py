"""The dialect modules are pure: bytes + headers in, record out, or a ReceiverError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver import dialects
from receiver.dialects import base, fno, keygen, licensespring, standard, zentitle
from receiver.errors import ReceiverError
from receiver.events import Delivery, NormalizedEvent

from .conftest import all_samples, sample
from .hostile import json_body as hostile_json_body
from .hostile import json_documents, shaped_documents


def delivery_of(body: bytes, headers: dict[str, str] | None = None) -> Delivery:
    return Delivery(body=body, headers=list((headers or {}).items()))


def normalize_sample(source: str, name: str) -> NormalizedEvent:
    item = sample(source, name)
    delivery = delivery_of(item.body, item.headers)
    document = json.loads(item.body)
    detected = dialects.detect(delivery, document)
    return dialects.normalize(detected, delivery, document, parsed=True)


@pytest.mark.parametrize("item", all_samples(), ids=str)
def test_detect_finds_the_sample_source(item) -> None:
    delivery = delivery_of(item.body, item.headers)
    assert dialects.detect(delivery, json.loads(item.body)) == item.source


def test_detection_order_prefers_headers() -> None:
    # An FNO-shaped body with a Keygen signature header is Keygen's (step 1 before step 3).
    body = sample("fno", "product.updated").body
    assert dialects.detect_by_headers(delivery_of(body, {"Keygen-Signature": "x"})) == "keygen"
    standard_headers = {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    assert dialects.detect_by_headers(delivery_of(body, standard_headers)) == "standard"
    assert dialects.detect_by_headers(delivery_of(body, {"N-Signature": "x"})) == "zentitle"
    assert dialects.detect_by_headers(delivery_of(body)) is None


def test_keygen_payload_string_is_parsed_and_token_found() -> None:
    event = normalize_sample("keygen", "user.password-reset")
    assert event.data["meta"]["passwordResetToken"]
    assert event.subject_type == "user"
    assert event.subject_id == event.data["data"]["id"]


def test_keygen_attached_events_point_at_the_parent() -> None:
    event = normalize_sample("keygen", "license.entitlements.attached")
    first = event.data["data"][0]
    assert event.subject_id == first["relationships"]["license"]["data"]["id"]


def test_keygen_external_id_falls_back_to_delivery_id() -> None:
    document = json.loads(sample("keygen", "license.created").body)
    del document["data"]["meta"]
    event = keygen.normalize(delivery_of(b"{}"), document)
    assert event.external_id == document["data"]["id"]


def test_fno_strings_are_mapped() -> None:
    event = normalize_sample("fno", "entitlement.updated")
    assert (event.event_type, event.vendor_event) == ("entitlement.updated", "ENT/UPDATE")
    assert event.occurred_at == "2023-05-05T12:30:09.743Z"
    assert (event.account, event.actor, event.subject_id) == ("1000", "1000admin", "3395")
    assert event.external_id.startswith("sha256:")


@pytest.mark.parametrize("event, action, expected", [
    ("DEVICE", "CREATE", "device.created"), ("CLS_INSTANCE", "UPDATE", "cls_instance.updated"),
    ("PROD", "DELETE", "product.deleted"), ("ENT", "SPLIT", "entitlement.split"),
    ("NEWTHING", "UPDATE", "newthing.updated"),
])
def test_fno_event_names(event, action, expected) -> None:
    document = {"eventHeader": {"event": event, "eventType": action, "timeStamp": "x"},
                "eventBody": {}}
    normalized = fno.normalize(delivery_of(b"{}"), document)
    assert normalized.event_type == expected and normalized.occurred_at is None


def test_licensespring_accepts_unkeyed_data() -> None:
    document = {"id": "e1", "event": "license.created", "company_id": 7, "user_id": None,
                "ts": 1700000000, "data": {"id": 99}}
    event = licensespring.normalize(delivery_of(b"{}"), document)
    assert (event.subject_id, event.account, event.actor) == ("99", "7", None)
    assert event.occurred_at == "2023-11-14T22:13:20.000Z"


def test_zentitle_ping_variants() -> None:
    for payload in (None, {}, "", []):
        document = {"eventId": "e", "eventCode": None, "resourceId": "listener-1",
                    "payload": payload}
        event = zentitle.normalize(delivery_of(b"{}"), document)
        assert event.event_type == "webhook.test" and event.subject_id == "listener-1"
        assert event.external_id.startswith("ping:")


def test_standard_uses_webhook_id() -> None:
    event = normalize_sample("standard", "license.created")
    assert event.external_id == sample("standard", "license.created").headers["webhook-id"]


@pytest.mark.parametrize("value, expected", [
    ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000Z"),
    ("2024-05-01T14:00:00.123456+02:00", "2024-05-01T12:00:00.123Z"),
    (1700000000, "2023-11-14T22:13:20.000Z"),
    ("1700000000", "2023-11-14T22:13:20.000Z"),
    ("yesterday", None), (None, None), (True, None), (10**30, None), ("", None),
])
def test_iso_time(value, expected) -> None:
    assert base.iso_time(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
shaped = st.fixed_dictionaries({}, optional={
    "data": json_values, "eventHeader": json_values, "eventBody": json_values,
    "eventCode": json_values, "eventId": json_values, "resourceId": json_values,
    "payload": json_values, "event": json_values, "company_id": json_values,
    "ts": json_values, "id": json_values, "type": json_values, "timestamp": json_values,
})


@settings(max_examples=400, deadline=None)
@given(document=shaped | json_values, source=st.sampled_from(sorted(dialects.DIALECTS)))
def test_any_document_gives_an_event_or_a_receiver_error(document, source) -> None:
    body = json.dumps(document).encode()
    delivery = delivery_of(body)
    try:
        event = dialects.normalize(source, delivery, document, parsed=True)
    except ReceiverError as error:
        assert error.status == 400 and error.message
        return
    assert isinstance(event.event_type, str) and event.event_type
    assert isinstance(event.external_id, str) and event.external_id
    for field in ("account", "actor", "subject_id", "subject_type", "occurred_at"):
        assert getattr(event, field) is None or isinstance(getattr(event, field), str)
    json.dumps(event.data)


@settings(max_examples=300, deadline=None)
@given(document=shaped_documents | json_documents,
       source=st.sampled_from(sorted(dialects.DIALECTS)))
def test_any_posted_json_gives_a_storable_event_or_a_receiver_error(document, source) -> None:
    """Bodies with NaN, 1e999, escaped unpaired surrogates, NUL and far-off times: the
    record either is refused with a 400 or holds only what SQLite and JSON can carry."""
    body = hostile_json_body(document)
    try:
        parsed = base.parse_json(body)
        event = dialects.normalize(source, delivery_of(body), parsed, parsed=True)
    except ReceiverError as error:
        assert error.status == 400 and error.message
        return
    record = event.as_dict()
    json.dumps(record, allow_nan=False, ensure_ascii=False).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
def test_parse_json_never_raises_anything_else(body) -> None:
    try:
        base.parse_json(body)
    except ReceiverError as error:
        assert error.status == 400


@given(st.dictionaries(st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature",
                                        "Keygen-Signature", "N-Signature", "X"]),
                       st.text(max_size=5)))
def test_detect_by_headers_is_total(headers) -> None:
    assert dialects.detect_by_headers(delivery_of(b"", headers)) in (
        None, "keygen", "standard", "zentitle")
    assert standard.matches(delivery_of(b"", headers), None) in (True, False)
