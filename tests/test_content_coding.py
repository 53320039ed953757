"""Compressed bodies (``Content-Encoding: gzip`` / ``deflate``): decoded with a cap, stored as
received, verified over what each scheme signs, normalized like the plain ones; a bomb is a 413
in bounded memory and an unknown coding a 415."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver import verify
from receiver.errors import BadRequest, PayloadTooLarge, ReceiverError, UnsupportedMediaType
from receiver.ingest import content_coding
from receiver.ingest.content_coding import codings, decode_body

from .conftest import Sample, all_samples, sample
from .hostile import many_gzip_members
from .test_config import whsec

PUBLIC_URL = "https://hooks.example.com/hooks/keygen"
MiB = 1024 * 1024


def deflate(data: bytes, *, raw: bool = False) -> bytes:
    """HTTP ``deflate``: a zlib stream; ``raw`` = bare RFC 1951 data, as some senders send."""
    encoder = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return encoder.compress(data) + encoder.flush()


def bomb(size: int, coding: str = "gzip") -> bytes:
    """``size`` zero bytes, compressed a chunk at a time (never held whole)."""
    wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS
    encoder = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(MiB)
    parts = [encoder.compress(chunk) for _ in range(size // MiB)]
    return b"".join(parts) + encoder.flush()


ENCODE = {"gzip": gzip.compress, "deflate": deflate}


# -- the pure function -----------------------------------------------------------------------


def test_decode_body_gzip_deflate_and_their_variants() -> None:
    text = b'{"type": "order.paid", "id": "evt_1"}' * 20
    assert decode_body(text, None, 10_000) is None
    assert decode_body(text, "identity", 10_000) is None
    assert decode_body(gzip.compress(text), "gzip", 10_000) == text
    assert decode_body(gzip.compress(text), "X-GZIP", 10_000) == text
    assert decode_body(deflate(text), "deflate", 10_000) == text
    assert decode_body(deflate(text, raw=True), "deflate", 10_000) == text
    # Applied in order: deflate first, then gzip; undone the other way round.
    assert decode_body(gzip.compress(deflate(text)), "deflate, gzip", 10_000) == text
    # Two gzip members one after the other are one body (as gzip -d reads them).
    assert decode_body(gzip.compress(text[:100]) + gzip.compress(text[100:]), "gzip",
                       10_000) == text
    assert decode_body(b"", "gzip", 10) == b""
    assert codings(" gzip , identity,deflate") == ["gzip", "deflate"]


@pytest.mark.parametrize(("body", "header", "error", "message"), [
    (b"abc", "br", UnsupportedMediaType, "Content-Encoding 'br' is not supported; send the "
                                         "body uncompressed, or compressed with gzip or deflate"),
    (b"abc", "gzip, compress", UnsupportedMediaType, "'compress' is not supported"),
    (b"not gzip at all", "gzip", BadRequest, "body is not valid gzip data"),
    (gzip.compress(b"hello world")[:-6], "gzip", BadRequest, "ends before the end of its gzip"),
    (deflate(b"hello") + b"junk", "deflate", BadRequest, "4 bytes after the end of its deflate"),
    (gzip.compress(b"hello") + b"junk", "gzip", BadRequest, "not valid gzip data"),
    (gzip.compress(b"x" * 101), "gzip", PayloadTooLarge,
     "body decodes (Content-Encoding: gzip) to more than 100 bytes; this receiver accepts at "
     "most 100 bytes (RECEIVER_MAX_BODY)"),
    (b"x", "gzip, gzip, gzip, gzip, gzip", BadRequest, "at most 4 are decoded"),
])
def test_decode_body_refusals(body: bytes, header: str, error: type[ReceiverError],
                              message: str) -> None:
    with pytest.raises(error) as caught:
        decode_body(body, header, 100)
    assert message in caught.value.message
    assert caught.value.status == {UnsupportedMediaType: 415, BadRequest: 400,
                                   PayloadTooLarge: 413}[error]


def test_decode_body_at_exactly_the_limit() -> None:
    assert decode_body(gzip.compress(b"y" * 100), "gzip", 100) == b"y" * 100


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_bomb_stops_at_the_limit_in_bounded_memory(coding: str) -> None:
    compressed = bomb(256 * MiB, coding)  # about 250 KB that expand to 256 MiB
    assert len(compressed) < MiB
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_body(compressed, coding, MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, peak  # the limit plus a chunk, never the 256 MiB


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), header=st.sampled_from(["gzip", "deflate", "gzip, deflate"]))
def test_decode_body_any_bytes_decode_or_raise_a_client_error(body: bytes, header: str) -> None:
    try:
        decoded = decode_body(body, header, 1000)
    except ReceiverError as error:
        assert error.status in (400, 413)
    else:
        assert decoded is not None and len(decoded) <= 1000



class CountingDecoder:
    """A zlib decoder that adds up the bytes handed to it (``fed``)."""

    fed = 0

    def __init__(self, wbits: int) -> None:
        self.decoder = ORIGINAL_DECOMPRESSOBJ(wbits)

    def decompress(self, data: Any, max_length: int = 0) -> bytes:
        CountingDecoder.fed += len(data)
        return self.decoder.decompress(data, max_length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.decoder, name)


ORIGINAL_DECOMPRESSOBJ = zlib.decompressobj


@pytest.mark.parametrize("count", [100_000, 200_000])
def test_many_empty_gzip_members_decode_to_nothing_in_linear_work(
        count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Once a new decoder per member over a copy of the rest of the body: quadratic (each
    # member fed the whole rest), and 200,000 members (4 MB) outlived a worker's timeout.
    body = many_gzip_members(count)
    monkeypatch.setattr(CountingDecoder, "fed", 0)
    monkeypatch.setattr(content_coding.zlib, "decompressobj", CountingDecoder)
    assert decode_body(body, "gzip", 5 * MiB) == b""
    assert CountingDecoder.fed <= 4 * len(body)  # each byte fed a few times at most, not n


def test_many_small_gzip_members_decode_in_order_within_the_limit() -> None:
    members = b"".join(gzip.compress(b"%d," % index) for index in range(50_000))
    assert decode_body(members, "gzip", 5 * MiB) == gzip.decompress(members)
    with pytest.raises(PayloadTooLarge):
        decode_body(members, "gzip", 1000)


member_data = st.binary(max_size=200) | st.sampled_from([b"", b"\0" * 50, b"ab" * 300])
gzip_members = st.lists(st.tuples(member_data, st.sampled_from([0, 1, 6, 9]),
                                  st.integers(0, 3)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(gzip_members, st.integers(0, 3), st.integers(1, 2000))
def test_any_gzip_members_decode_as_gzip_decompress_does(
        members: list[tuple[bytes, int, int]], trailing_zeros: int, limit: int) -> None:
    # Zero bytes between members and after the last, as gzip.decompress skips them.
    body = b"".join(gzip.compress(data, level, mtime=0) + bytes(zeros)
                    for data, level, zeros in members) + bytes(trailing_zeros)
    expected = gzip.decompress(body) if body.strip(b"\0") else None
    if not body:
        assert decode_body(body, "gzip", limit) == b""
    elif expected is None:  # zero bytes only: not gzip data, today as before
        with pytest.raises(BadRequest):
            decode_body(body, "gzip", limit)
    elif len(expected) > limit:
        with pytest.raises(PayloadTooLarge) as refused:
            decode_body(body, "gzip", limit)
        assert refused.value.message == (
            f"body decodes (Content-Encoding: gzip) to more than {limit} bytes; this receiver "
            f"accepts at most {limit} bytes (RECEIVER_MAX_BODY)")
    else:
        assert decode_body(body, "gzip", limit) == expected


@settings(max_examples=200, deadline=None)
@given(member_data, st.sampled_from([0, 1, 6, 9]), st.booleans(), st.integers(0, 3),
       st.integers(1, 2000))
def test_any_deflate_stream_decodes_as_zlib_does(data: bytes, level: int, raw: bool,
                                                 trailing_zeros: int, limit: int) -> None:
    encoder = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    body = encoder.compress(data) + encoder.flush() + bytes(trailing_zeros)
    if len(data) > limit:
        with pytest.raises(PayloadTooLarge):
            decode_body(body, "deflate", limit)
    else:
        assert decode_body(body, "deflate", limit) == data

# -- through the app: every dialect, stored, verified, normalized --------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"keygen": ed25519.Ed25519PrivateKey.generate(),
            "zentitle": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "standard": whsec()}


def pem(key: Any, private: bool = False) -> str:
    if private:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def endpoints(keys: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One enforcing endpoint per source, named after it, with what signs and checks."""
    return {
        "keygen": {"source": "keygen", "public_key": pem(keys["keygen"]), "url": PUBLIC_URL,
                   "signing_key": pem(keys["keygen"], private=True)},
        "zentitle": {"source": "zentitle", "public_key": pem(keys["zentitle"]),
                     "signing_key": pem(keys["zentitle"], private=True)},
        "standard": {"source": "standard", "secrets": [keys["standard"]]},
        "fno": {"source": "fno", "auth": "basic", "username": "flex", "password": "s3cret-pw"},
        "licensespring": {"source": "licensespring"},
        "generic": {"source": "generic"},
    }


SIGNED_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "keygen-signature",
                  "date", "digest", "keygen-date", "keygen-digest", "n-signature",
                  "authorization"}
#: What each scheme's signature covers on a compressed delivery (verify._signed_bodies).
SIGNS_AS_RECEIVED = {"keygen"}


def compressed_request(item: Sample, coding: str, app: Any) -> tuple[bytes, dict[str, str]]:
    """The sample compressed, with the headers its sender would send, signed as it signs."""
    wire = ENCODE[coding](item.body)
    headers = {name: value for name, value in item.headers.items()
               if name.lower() not in SIGNED_HEADERS}
    headers["Content-Encoding"] = coding
    endpoint = app.config["ENDPOINTS"][item.source]
    if item.source in ("keygen", "zentitle", "standard", "fno"):
        signed = wire if item.source in SIGNS_AS_RECEIVED else item.body
        headers.update(verify.sign(item.source, signed, endpoint, url=PUBLIC_URL,
                                   webhook_id=item.headers.get("webhook-id")))
    return wire, headers


EXPECTED_STATUS = {"keygen": "valid", "zentitle": "valid", "standard": "valid", "fno": "valid",
                   "licensespring": "unchecked", "generic": "unchecked"}


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_samples_of_every_dialect_are_stored_verified_and_normalized(
        make_app: Any, keys: dict[str, Any], coding: str) -> None:
    app = make_app(ENDPOINTS=endpoints(keys))
    client, store = app.test_client(), app.extensions["receiver.store"]
    for item in all_samples():
        wire, headers = compressed_request(item, coding, app)
        response = client.post(f"/hooks/{item.source}", data=wire, headers=headers)
        assert response.status_code == 200, (str(item), response.json)
        answer = response.json
        assert answer["signature_status"] == EXPECTED_STATUS[item.source], (str(item), answer)
        expected = item.normalized
        record = store.get_event(answer["event_id"]).as_dict()
        if expected["external_id"] == "ping:*":
            expected = {**expected, "external_id": record["external_id"]}
        assert {key: record[key] for key in expected} == expected, str(item)
        stored = store.get_delivery(answer["delivery_id"], with_body=True)
        assert stored["body"] == wire and stored["body_size"] == len(wire)  # as received
        assert ["Content-Encoding", coding] in stored["headers"]


def test_keygen_digest_over_the_decoded_bytes_passes_too(make_app: Any,
                                                         keys: dict[str, Any]) -> None:
    """A sender that computes its Digest before its HTTP client compresses."""
    app = make_app(ENDPOINTS=endpoints(keys))
    item = sample("keygen", "license.created")
    headers = dict(verify.sign("keygen", item.body, app.config["ENDPOINTS"]["keygen"]))
    headers.update({"Content-Encoding": "gzip", "Content-Type": "application/json"})
    answer = app.test_client().post("/hooks/keygen", data=gzip.compress(item.body),
                                    headers=headers)
    assert answer.status_code == 200 and answer.json["signature_status"] == "valid"


def test_compressed_tampered_signature_is_still_401(make_app: Any, keys: dict[str, Any]) -> None:
    app = make_app(ENDPOINTS=endpoints(keys))
    client = app.test_client()
    item = sample("standard", "license.created")
    headers = dict(verify.sign("standard", item.body, app.config["ENDPOINTS"]["standard"]))
    headers["Content-Encoding"] = "gzip"
    tampered = gzip.compress(item.body.replace(b"license.created", b"license.deleted"))
    answer = client.post("/hooks/standard", data=tampered, headers=headers)
    assert answer.status_code == 401
    assert answer.json["error"].startswith("no configured secret or key matched")


def test_the_same_event_plain_and_compressed_is_one_event(client: Any) -> None:
    body = sample("fno", "entitlement.updated").body  # FNO: deduplicated on the body's hash
    plain = client.post("/hooks", data=body).json
    packed = client.post("/hooks", data=gzip.compress(body),
                         headers={"Content-Encoding": "gzip"}).json
    assert packed["duplicate"] is True and packed["event_id"] == plain["event_id"]


def test_a_bomb_through_ingest_is_413_with_the_received_bytes_kept(make_app: Any) -> None:
    app = make_app(MAX_BODY=MiB)
    client, store = app.test_client(), app.extensions["receiver.store"]
    compressed = bomb(128 * MiB)
    tracemalloc.start()
    try:
        response = client.post("/hooks", data=compressed, headers={"Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert response.json["error"] == (
        f"body decodes (Content-Encoding: gzip) to more than {MiB} bytes; this receiver "
        f"accepts at most {MiB} bytes (RECEIVER_MAX_BODY)")
    assert peak < 8 * MiB, peak
    stored = store.get_delivery(response.json["delivery_id"], with_body=True)
    assert stored["status_code"] == 413 and stored["body"] == compressed
    assert stored["event_id"] is None


def test_unknown_coding_is_415_with_accept_encoding(client: Any, store: Any) -> None:
    response = client.post("/hooks", data=b"\x1b\x00compressed", headers={
        "Content-Encoding": "br", "Content-Type": "application/json"})
    assert response.status_code == 415
    assert response.headers["Accept-Encoding"] == "gzip, deflate"
    assert response.json["error"].startswith("Content-Encoding 'br' is not supported")
    stored = store.get_delivery(response.json["delivery_id"], with_body=True)
    assert stored["status_code"] == 415 and stored["body"] == b"\x1b\x00compressed"


def test_corrupt_gzip_is_400_naming_the_coding(client: Any) -> None:
    response = client.post("/hooks", data=b'{"type": "order.paid"}',
                           headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.json["error"].startswith("body is not valid gzip data")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), header=st.sampled_from(["gzip", "deflate", "br", "gzip, x"]))
def test_fuzzed_compressed_posts_are_never_a_500(client: Any, body: bytes, header: str) -> None:
    response = client.post("/hooks", data=body, headers={"Content-Encoding": header})
    assert response.status_code in (200, 400, 413, 415)


def test_delivery_page_shows_a_compressed_body_decoded_and_masked(client: Any) -> None:
    from .conftest import RESET_TOKEN

    body = sample("keygen", "user.password-reset").body
    compressed = gzip.compress(body)
    answer = client.post("/hooks", data=compressed, headers={
        "Content-Encoding": "gzip", "Content-Type": "application/json"}).json
    page = client.get(f"/deliveries/{answer['delivery_id']}").get_data(as_text=True)
    assert "shown decoded (Content-Encoding: gzip)" in page
    assert "webhook-events" in page and "user.password-reset" in page
    assert RESET_TOKEN not in page
    raw = client.get(f"/api/deliveries/{answer['delivery_id']}/raw")
    assert raw.data == compressed  # /raw: the exact bytes, still compressed


@pytest.mark.parametrize("count", [100_000, 200_000])
def test_many_empty_gzip_members_are_stored_and_their_pages_served(make_app: Any,
                                                                   count: int) -> None:
    app = make_app(MAX_BODY=5 * MiB)
    client, store = app.test_client(), app.extensions["receiver.store"]
    body = many_gzip_members(count)
    answer = client.post("/hooks", data=body, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.json
    stored = store.get_delivery(answer.json["delivery_id"], with_body=True)
    assert stored["body"] == body
    page = client.get(f"/deliveries/{answer.json['delivery_id']}")
    assert page.status_code == 200
    assert "shown decoded (Content-Encoding: gzip)" in page.get_data(as_text=True)
    assert client.get(f"/events/{answer.json['event_id']}").status_code == 200
