"""receiver.verify: every scheme's round trip, each way a signature can be wrong, vectors made
without our own ``sign()``, key formats, user verifiers, and fuzzing. Pure: no Flask."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import types
from datetime import UTC, datetime
from email.utils import formatdate
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from receiver import verify as verify_module
from receiver.config import Endpoint
from receiver.errors import ConfigError
from receiver.events import Delivery
from receiver.verify import (
    Verdict,
    check_endpoint,
    load_public_key,
    sign,
    sign_fno,
    sign_keygen,
    sign_rsa_body,
    sign_standard,
    verify,
    verify_fno,
    verify_keygen,
    verify_standard,
    verify_zentitle,
)
from receiver.verify import user as user_verifiers

NOW = 1_760_000_000.0
URL = "https://hooks.example.com/hooks/keygen?account=acme"
BODY = b'{"data":{"type":"webhook-events","id":"e1","attributes":{"event":"license.created"}}}'
SECRET_A = "whsec_" + base64.b64encode(b"A" * 32).decode()
SECRET_B = "whsec_" + base64.b64encode(b"B" * 32).decode()


# --------------------------------------------------------------------------- keys and helpers

@pytest.fixture(autouse=True)
def _fresh_caches():
    verify_module.reset_caches()
    yield
    verify_module.reset_caches()


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def ed_key2() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: Any) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def der_b64(key: Any) -> str:
    return base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def raw_hex(key: ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def private_pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def endpoint(**settings: Any) -> Endpoint:
    settings.setdefault("name", "test")
    return Endpoint(**settings)


def delivery(body: bytes = BODY, headers: list[tuple[str, str]] | None = None,
             **fields: Any) -> Delivery:
    return Delivery(body=body, headers=list(headers or []), **fields)


def replace_header(headers: list[tuple[str, str]], name: str, value: str | None
                   ) -> list[tuple[str, str]]:
    kept = [(key, val) for key, val in headers if key.lower() != name.lower()]
    return kept if value is None else [*kept, (name, value)]


def header(headers: list[tuple[str, str]], name: str) -> str:
    return next(val for key, val in headers if key.lower() == name.lower())


# --------------------------------------------------------------------------- Keygen

def keygen_by_hand(body: bytes, key: Any, *, algorithm: str = "ed25519", url: str = URL,
                   now: float = NOW, covered: str = "(request-target) host date digest"
                   ) -> list[tuple[str, str]]:
    """Keygen's documented algorithm, written out without receiver.verify's helpers."""
    date = formatdate(now, usegmt=True)
    digest = "sha-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    rest = url.split("://", 1)[1]
    authority, _, path = rest.partition("/")
    host = authority.split(":")[0]
    lines = {
        "(request-target)": f"(request-target): post /{path}",
        "host": f"host: {host}",
        "date": f"date: {date}",
        "digest": f"digest: {digest}",
    }
    data = "\n".join(lines[name] for name in covered.split()).encode()
    if algorithm == "ed25519":
        signature = key.sign(data)
    elif algorithm == "rsa-pss-sha256":
        signature = key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                               salt_length=padding.PSS.MAX_LENGTH),
                             hashes.SHA256())
    elif algorithm == "rsa-sha256":
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    sig = base64.b64encode(signature).decode()
    return [
        ("Content-Type", "application/json"),
        ("Date", date),
        ("Digest", digest),
        ("Keygen-Signature", f'keyid="acct-1", algorithm="{algorithm}", signature="{sig}", '
                             f'headers="{covered}"'),
    ]


def kg_endpoint(*keys: str, url: str | None = URL, **more: Any) -> Endpoint:
    return endpoint(source="keygen", url=url, public_keys=tuple(keys), **more)


def test_keygen_independent_ed25519_vector_with_hex_key(ed_key):
    headers = keygen_by_hand(BODY, ed_key)
    assert verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)),
                  now=NOW) == Verdict("valid")


@pytest.mark.parametrize("algorithm,key_name", [
    ("ed25519", "ed_key"), ("rsa-pss-sha256", "rsa_key"), ("rsa-sha256", "rsa_key"),
    ("ecdsa-p256", "ec_key"),
])
@pytest.mark.parametrize("form", [pem, der_b64])
def test_keygen_independent_vectors_every_algorithm_and_key_format(request, algorithm, key_name,
                                                                   form):
    key = request.getfixturevalue(key_name)
    headers = keygen_by_hand(BODY, key, algorithm=algorithm)
    assert verify("keygen", delivery(headers=headers), kg_endpoint(form(key)),
                  now=NOW).status == "valid"


@pytest.mark.parametrize("key_name", ["ed_key", "rsa_key", "ec_key"])
def test_keygen_sign_round_trip(request, key_name):
    key = request.getfixturevalue(key_name)
    ep = kg_endpoint(pem(key), signing_key=private_pem(key))
    check_endpoint(ep)
    headers = sign("keygen", BODY, ep, now=NOW)
    assert verify("keygen", delivery(headers=headers), ep, now=NOW) == Verdict("valid")


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "rsa-pss-sha256"])
def test_keygen_sign_rsa_algorithms_round_trip(rsa_key, algorithm):
    headers = sign_keygen(BODY, private_pem(rsa_key), url=URL, now=NOW, algorithm=algorithm)
    assert f'algorithm="{algorithm}"' in header(headers, "Keygen-Signature")
    assert verify_keygen(BODY, headers, keys=[der_b64(rsa_key)], url=URL, now=NOW).ok


def test_keygen_sign_matches_independent_signing_string(ed_key):
    ours = sign_keygen(BODY, ed_key, url=URL, now=NOW)
    theirs = keygen_by_hand(BODY, ed_key)
    # Ed25519 is deterministic: the same signing string gives the same signature.
    assert header(ours, "Keygen-Signature").split('signature="')[1] == \
        header(theirs, "Keygen-Signature").split('signature="')[1]


def test_keygen_tampered_body(ed_key):
    headers = keygen_by_hand(BODY, ed_key)
    verdict = verify("keygen", delivery(BODY + b" ", headers), kg_endpoint(raw_hex(ed_key)),
                     now=NOW)
    assert verdict == Verdict("invalid", "Digest does not match body")


def test_keygen_tampered_body_with_recomputed_digest(ed_key):
    headers = keygen_by_hand(BODY, ed_key)
    forged = b'{"forged":true}'
    digest = "sha-256=" + base64.b64encode(hashlib.sha256(forged).digest()).decode()
    headers = replace_header(headers, "Digest", digest)
    verdict = verify("keygen", delivery(forged, headers), kg_endpoint(raw_hex(ed_key)), now=NOW)
    assert verdict.status == "invalid"
    assert "no configured key matched" in (verdict.reason or "")


def test_keygen_wrong_key(ed_key, ed_key2):
    headers = keygen_by_hand(BODY, ed_key)
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key2)), now=NOW)
    assert verdict.status == "invalid"


def test_keygen_second_key_matches_during_rotation(ed_key, ed_key2, rsa_key):
    headers = keygen_by_hand(BODY, ed_key)
    ep = kg_endpoint(pem(rsa_key), raw_hex(ed_key2), der_b64(ed_key))
    assert verify("keygen", delivery(headers=headers), ep, now=NOW).ok


@pytest.mark.parametrize("configured", [
    "https://other.example.com/hooks/keygen?account=acme",   # wrong host
    "https://hooks.example.com/hooks/other?account=acme",    # wrong path
    "https://hooks.example.com/hooks/keygen",                # query dropped
    "https://hooks.example.com/hooks/keygen?account=other",  # wrong query
])
def test_keygen_wrong_signed_url(ed_key, configured):
    headers = keygen_by_hand(BODY, ed_key)
    verdict = verify("keygen", delivery(headers=headers),
                     kg_endpoint(raw_hex(ed_key), url=configured), now=NOW)
    assert verdict.status == "invalid"


def test_keygen_signs_configured_url_not_request_host(ed_key):
    # Behind ngrok the request reaches us as localhost:8000; Keygen signed the public URL.
    headers = keygen_by_hand(BODY, ed_key) + [("Host", "localhost:8000")]
    d = delivery(headers=headers, path="/hooks/kg", query="")
    assert verify("keygen", d, kg_endpoint(raw_hex(ed_key)), now=NOW).ok


def test_keygen_host_is_signed_without_port(ed_key):
    headers = keygen_by_hand(BODY, ed_key, url="https://hooks.example.com/hooks/keygen")
    ep = kg_endpoint(raw_hex(ed_key), url="https://hooks.example.com:8443/hooks/keygen")
    assert verify("keygen", delivery(headers=headers), ep, now=NOW).ok


def test_keygen_falls_back_to_request_host_and_path_without_url(ed_key):
    headers = keygen_by_hand(BODY, ed_key, url="https://hooks.example.com/hooks/kg?x=1")
    d = delivery(headers=headers + [("Host", "hooks.example.com:443")], path="/hooks/kg",
                 query="x=1")
    assert verify("keygen", d, kg_endpoint(raw_hex(ed_key), url=None), now=NOW).ok
    elsewhere = delivery(headers=headers + [("Host", "localhost:8000")], path="/hooks/kg",
                         query="x=1")
    assert verify("keygen", elsewhere, kg_endpoint(raw_hex(ed_key), url=None),
                  now=NOW).status == "invalid"
    no_host = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key), url=None),
                     now=NOW)
    assert no_host.status == "invalid" and "Host" in (no_host.reason or "")


def test_keygen_unparsable_request_host(ed_key):
    headers = keygen_by_hand(BODY, ed_key) + [("Host", "[bad")]
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key), url=None),
                     now=NOW)
    assert verdict.status == "invalid" and "cannot rebuild the signed URL" in verdict.reason


def test_keygen_missing_signature_header_is_unsigned(ed_key):
    headers = replace_header(keygen_by_hand(BODY, ed_key), "Keygen-Signature", None)
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)), now=NOW)
    assert verdict == Verdict("unsigned", "missing Keygen-Signature header")


def test_keygen_no_key_configured_is_unchecked_or_unsigned(ed_key):
    headers = keygen_by_hand(BODY, ed_key)
    assert verify("keygen", delivery(headers=headers), kg_endpoint(), now=NOW).status == \
        "unchecked"
    assert verify("keygen", delivery(headers=[]), kg_endpoint(), now=NOW).status == "unsigned"


@pytest.mark.parametrize("value,reason", [
    ('keyid="a", algorithm="ed25519", signature="%%%not base64%%%", '
     'headers="(request-target) host date digest"', "not valid base64"),
    ('keyid="a", algorithm="ed25519", headers="(request-target) host date digest"',
     "no signature parameter"),
    ("this is not a signature header", "malformed"),
    ('keyid="a", algorithm="ed25519", signature="', "malformed"),
    ("", "malformed"),
    ('keyid="a", algorithm="ed25519", signature="AAAA", headers="date digest"',
     "does not cover (request-target), host"),
])
def test_keygen_malformed_signature_header(ed_key, value, reason):
    headers = replace_header(keygen_by_hand(BODY, ed_key), "Keygen-Signature", value)
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)), now=NOW)
    assert verdict.status == "invalid"
    assert reason in (verdict.reason or "")


def test_keygen_unknown_algorithm(ed_key):
    headers = keygen_by_hand(BODY, ed_key)
    value = header(headers, "Keygen-Signature").replace("ed25519", "hmac-md5")
    headers = replace_header(headers, "Keygen-Signature", value)
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)), now=NOW)
    assert verdict.status == "invalid"
    assert "unsupported Keygen-Signature algorithm 'hmac-md5'" == verdict.reason


def test_keygen_algorithm_without_fitting_key(ed_key, rsa_key):
    headers = keygen_by_hand(BODY, rsa_key, algorithm="rsa-sha256")
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)), now=NOW)
    assert verdict.status == "invalid"
    assert "rsa-sha256" in (verdict.reason or "") and "Ed25519" in (verdict.reason or "")


def test_keygen_signed_headers_in_a_different_order(ed_key):
    covered = "(request-target) digest date host"
    headers = keygen_by_hand(BODY, ed_key, covered=covered)
    assert verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)), now=NOW).ok


def test_keygen_stale_date():
    key = ed25519.Ed25519PrivateKey.generate()
    headers = keygen_by_hand(BODY, key)
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(key)),
                     now=NOW + 7 * 60)
    assert verdict == Verdict("invalid", "Date is 7 minutes old")


def test_keygen_date_in_the_future(ed_key):
    headers = keygen_by_hand(BODY, ed_key)
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)),
                     now=NOW - 180)
    assert verdict == Verdict("invalid", "Date is 3 minutes in the future")
    within = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)),
                    now=NOW - 30)
    assert within.ok


def test_keygen_tolerance_comes_from_endpoint(ed_key):
    headers = keygen_by_hand(BODY, ed_key)
    ep = kg_endpoint(raw_hex(ed_key), tolerance=900)
    assert verify("keygen", delivery(headers=headers), ep, now=NOW + 7 * 60).ok


@pytest.mark.parametrize("name,value,reason", [
    ("Date", None, "missing Date header"),
    ("Date", "yesterday-ish", "Date header is not an HTTP date"),
    ("Digest", None, "missing Digest header"),
    ("Digest", "md5=abc", "Digest does not match body"),
])
def test_keygen_missing_or_bad_date_and_digest(ed_key, name, value, reason):
    headers = replace_header(keygen_by_hand(BODY, ed_key), name, value)
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)), now=NOW)
    assert verdict.status == "invalid"
    assert (verdict.reason or "").startswith(reason)


def test_keygen_empty_body_digest(ed_key):
    headers = keygen_by_hand(b"", ed_key)
    assert header(headers, "Digest") == "sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert verify("keygen", delivery(b"", headers), kg_endpoint(raw_hex(ed_key)), now=NOW).ok


def test_keygen_header_names_are_case_insensitive(ed_key):
    headers = [(name.lower(), value) for name, value in keygen_by_hand(BODY, ed_key)]
    assert verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)), now=NOW).ok


def test_keygen_legacy_x_signature(rsa_key, ed_key):
    legacy = base64.b64encode(rsa_key.sign(BODY, padding.PKCS1v15(), hashes.SHA256())).decode()
    headers = [("X-Signature", legacy)]
    assert verify("keygen", delivery(headers=headers), kg_endpoint(pem(rsa_key)), now=NOW).ok
    tampered = verify("keygen", delivery(BODY + b"x", headers), kg_endpoint(pem(rsa_key)),
                      now=NOW)
    assert tampered.status == "invalid"
    bad = verify("keygen", delivery(headers=[("X-Signature", "!!")]), kg_endpoint(pem(rsa_key)),
                 now=NOW)
    assert bad == Verdict("invalid", "X-Signature is not valid base64")
    # With only an Ed25519 key there is nothing to check X-Signature with: not signed for us.
    ed_only = verify("keygen", delivery(headers=headers), kg_endpoint(raw_hex(ed_key)), now=NOW)
    assert ed_only.status == "unsigned"
    assert sign_rsa_body(BODY, rsa_key) == [("X-Signature", legacy)]


def test_keygen_signature_preferred_over_legacy(rsa_key):
    headers = keygen_by_hand(BODY, rsa_key, algorithm="rsa-sha256") + [("X-Signature", "AAAA")]
    assert verify("keygen", delivery(headers=headers), kg_endpoint(pem(rsa_key)), now=NOW).ok


def test_keygen_ecdsa_secp256r1_alias(ec_key):
    headers = keygen_by_hand(BODY, ec_key, algorithm="ecdsa-p256")
    value = header(headers, "Keygen-Signature").replace("ecdsa-p256", "ecdsa-secp256r1")
    headers = replace_header(headers, "Keygen-Signature", value)
    assert verify("keygen", delivery(headers=headers), kg_endpoint(pem(ec_key)), now=NOW).ok


# --------------------------------------------------------------------------- key formats

def test_public_key_formats_all_parse_to_the_same_key(ed_key):
    raw = ed_key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    forms = [raw.hex(), raw.hex().upper(), der_b64(ed_key), pem(ed_key),
             "  " + pem(ed_key).replace("\n", "\\n") + " ", base64.b64encode(raw).decode(),
             "whpk_" + base64.b64encode(raw).decode(),
             "\n".join("    " + line for line in pem(ed_key).splitlines())]
    for form in forms:
        parsed = load_public_key(form)
        assert parsed.public_bytes(serialization.Encoding.Raw,
                                   serialization.PublicFormat.Raw) == raw, form


def test_public_keys_are_parsed_once(ed_key, monkeypatch):
    ep = kg_endpoint(pem(ed_key))
    headers = keygen_by_hand(BODY, ed_key)
    check_endpoint(ep)
    calls = []
    real = serialization.load_pem_public_key
    monkeypatch.setattr(serialization, "load_pem_public_key",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(5):
        assert verify("keygen", delivery(headers=headers), ep, now=NOW).ok
    assert calls == []


# --------------------------------------------------------------------------- Standard Webhooks

STD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STD_PAYLOAD = b'{"test": 2432232314}'
STD_TIME = 1614265330


def std_endpoint(*secrets: str, keys: tuple[str, ...] = (), **more: Any) -> Endpoint:
    return endpoint(source="standard", secrets=secrets, public_keys=keys, **more)


def std_headers(signature: str, *, msg_id: str = STD_ID, stamp: int = STD_TIME
                ) -> list[tuple[str, str]]:
    return [("webhook-id", msg_id), ("webhook-timestamp", str(stamp)),
            ("webhook-signature", signature)]


def test_standard_published_vector():
    # standard-webhooks/libraries/python/tests/test_webhooks.py::test_sign_function
    headers = std_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    verdict = verify("standard", delivery(STD_PAYLOAD, headers), std_endpoint(STD_SECRET),
                     now=STD_TIME)
    assert verdict == Verdict("valid")
    # and the library's invalid-signature vector
    wrong = std_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=")
    assert verify("standard", delivery(STD_PAYLOAD, wrong), std_endpoint(STD_SECRET),
                  now=STD_TIME).status == "invalid"


def test_standard_reference_library_signature_verifies():
    webhook = Webhook(SECRET_A)
    stamp = datetime.fromtimestamp(NOW, tz=UTC)
    signature = webhook.sign(msg_id="msg_1", timestamp=stamp, data=BODY.decode())
    headers = std_headers(signature, msg_id="msg_1", stamp=int(NOW))
    assert verify("standard", delivery(headers=headers), std_endpoint(SECRET_A), now=NOW).ok


def test_standard_our_signature_passes_reference_library():
    headers = sign_standard(BODY, SECRET_A)  # now: the library checks against the clock
    assert Webhook(SECRET_A).verify(BODY, dict(headers)) == \
        {"data": {"type": "webhook-events", "id": "e1", "attributes": {"event": "license.created"}}}


def test_standard_sign_round_trip_via_endpoint():
    ep = std_endpoint(SECRET_A)
    check_endpoint(ep)
    headers = sign("standard", BODY, ep, now=NOW, webhook_id="msg_x")
    assert header(headers, "webhook-id") == "msg_x"
    assert verify("standard", delivery(headers=headers), ep, now=NOW).ok


def test_standard_v1a_ed25519_independent(ed_key):
    content = f"msg_9.{int(NOW)}.".encode() + BODY
    signature = "v1a," + base64.b64encode(ed_key.sign(content)).decode()
    whpk = "whpk_" + base64.b64encode(ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
    headers = std_headers(signature, msg_id="msg_9", stamp=int(NOW))
    ep = std_endpoint(keys=(whpk,))
    check_endpoint(ep)
    assert verify("standard", delivery(headers=headers), ep, now=NOW).ok
    assert verify("standard", delivery(BODY + b"!", headers), ep, now=NOW).status == "invalid"


def test_standard_v1a_sign_round_trip(ed_key):
    seed = ed_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    whsk = "whsk_" + base64.b64encode(seed).decode()
    ep = std_endpoint(keys=(raw_hex(ed_key),), signing_key=whsk)
    check_endpoint(ep)
    headers = sign("standard", BODY, ep, now=NOW)
    assert header(headers, "webhook-signature").startswith("v1a,")
    assert verify("standard", delivery(headers=headers), ep, now=NOW).ok


def test_standard_tampered_body_and_wrong_secret():
    headers = sign_standard(BODY, SECRET_A, now=NOW)
    assert verify("standard", delivery(BODY + b" ", headers), std_endpoint(SECRET_A),
                  now=NOW).status == "invalid"
    assert verify("standard", delivery(headers=headers), std_endpoint(SECRET_B),
                  now=NOW).status == "invalid"


def test_standard_second_secret_matches_during_rotation():
    headers = sign_standard(BODY, SECRET_B, now=NOW)
    assert verify("standard", delivery(headers=headers), std_endpoint(SECRET_A, SECRET_B),
                  now=NOW).ok
    both = sign_standard(BODY, [SECRET_A, SECRET_B], now=NOW)
    assert len(header(both, "webhook-signature").split()) == 2
    assert verify("standard", delivery(headers=both), std_endpoint(SECRET_B), now=NOW).ok


def test_standard_unknown_versions_are_skipped():
    good = header(sign_standard(BODY, SECRET_A, now=NOW, webhook_id="m"), "webhook-signature")
    headers = std_headers(f"v2,AAAA garbage v1,!!! {good}", msg_id="m", stamp=int(NOW))
    assert verify("standard", delivery(headers=headers), std_endpoint(SECRET_A), now=NOW).ok
    only_unknown = std_headers("v2,AAAA v3,BBBB", msg_id="m", stamp=int(NOW))
    verdict = verify("standard", delivery(headers=only_unknown), std_endpoint(SECRET_A), now=NOW)
    assert verdict.status == "invalid" and "no well-formed v1 or v1a" in (verdict.reason or "")


@pytest.mark.parametrize("offset,reason", [
    (7 * 60, "webhook-timestamp is 7 minutes old"),
    (-(6 * 60), "webhook-timestamp is 6 minutes in the future"),
])
def test_standard_stale_and_future_timestamp(offset, reason):
    headers = sign_standard(BODY, SECRET_A, now=NOW)
    assert verify("standard", delivery(headers=headers), std_endpoint(SECRET_A),
                  now=NOW + offset) == Verdict("invalid", reason)
    assert verify("standard", delivery(headers=headers), std_endpoint(SECRET_A),
                  now=NOW + offset / 2).ok


@pytest.mark.parametrize("name,value,status,reason", [
    ("webhook-signature", None, "unsigned",
     "missing webhook-signature (or svix-signature) header"),
    ("webhook-id", None, "invalid", "missing webhook-id header"),
    ("webhook-timestamp", None, "invalid", "missing webhook-timestamp header"),
    ("webhook-timestamp", "hello", "invalid", "webhook-timestamp is not a unix timestamp"),
    ("webhook-timestamp", "nan", "invalid", "webhook-timestamp is not a unix timestamp"),
    ("webhook-signature", "v1,", "invalid", "no well-formed"),
    ("webhook-signature", "v1,%%%", "invalid", "no well-formed"),
    ("webhook-signature", "", "invalid", "no well-formed"),
])
def test_standard_missing_and_malformed_headers(name, value, status, reason):
    headers = replace_header(sign_standard(BODY, SECRET_A, now=NOW), name, value)
    verdict = verify("standard", delivery(headers=headers), std_endpoint(SECRET_A), now=NOW)
    assert verdict.status == status
    assert reason in (verdict.reason or "")


def test_standard_nothing_configured():
    headers = sign_standard(BODY, SECRET_A, now=NOW)
    assert verify("standard", delivery(headers=headers), std_endpoint(), now=NOW).status == \
        "unchecked"
    assert verify("standard", delivery(headers=[]), std_endpoint(), now=NOW).status == "unsigned"


def test_standard_unpadded_secret_and_v1_without_secret(ed_key):
    raw = b"0123456789abcdef0123456789"  # 26 bytes: base64 needs padding
    unpadded = "whsec_" + base64.b64encode(raw).decode().rstrip("=")
    headers = sign_standard(BODY, unpadded, now=NOW)
    assert verify("standard", delivery(headers=headers), std_endpoint(unpadded), now=NOW).ok
    only_keys = verify("standard", delivery(headers=headers),
                       std_endpoint(keys=(raw_hex(ed_key),)), now=NOW)
    assert only_keys.status == "invalid" and "only v1" in (only_keys.reason or "")


# --------------------------------------------------------------------------- FNO

def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def fno_endpoint(**more: Any) -> Endpoint:
    return endpoint(source="fno", **more)


BASIC_EP = dict(auth="basic", username="flex", password="s3cret-pa55")
BEARER_EP = dict(auth="bearer", tokens=("tok-old-123456", "tok-new-654321"))


def test_fno_basic_independent_header():
    headers = [("Authorization", basic("flex", "s3cret-pa55"))]
    assert verify("fno", delivery(headers=headers), fno_endpoint(**BASIC_EP)) == Verdict("valid")


@pytest.mark.parametrize("value,status,reason", [
    (basic("flex", "wrong"), "invalid", "Basic username or password does not match"),
    (basic("other", "s3cret-pa55"), "invalid", "Basic username or password does not match"),
    ("Basic !!!notbase64", "invalid", "Authorization Basic credentials are not valid base64"),
    ("Basic " + base64.b64encode(b"no-colon").decode(), "invalid",
     "Authorization Basic credentials are not user:password"),
    ("Bearer tok-new-654321", "invalid", "Authorization uses Bearer, expected Basic"),
    ("Digest username=flex", "invalid", "Authorization is not Basic credentials"),
    ("flex:s3cret-pa55", "invalid", "Authorization is not Basic credentials"),
    (None, "unsigned", "missing Authorization header (expected Basic)"),
    ("   ", "unsigned", "missing Authorization header (expected Basic)"),
])
def test_fno_basic_wrong_missing_malformed(value, status, reason):
    headers = [] if value is None else [("Authorization", value)]
    assert verify("fno", delivery(headers=headers), fno_endpoint(**BASIC_EP)) == \
        Verdict(status, reason)


def test_fno_bearer_any_token_matches():
    for token in BEARER_EP["tokens"]:
        headers = [("authorization", f"Bearer {token}")]
        assert verify("fno", delivery(headers=headers), fno_endpoint(**BEARER_EP)).ok
    lower = [("Authorization", "bearer tok-new-654321")]
    assert verify("fno", delivery(headers=lower), fno_endpoint(**BEARER_EP)).ok


@pytest.mark.parametrize("value,status,reason", [
    ("Bearer nope", "invalid", "Bearer token does not match"),
    ("Bearer", "invalid", "Authorization Bearer header has no token"),
    (basic("flex", "s3cret-pa55"), "invalid", "Authorization uses Basic, expected Bearer"),
    (None, "unsigned", "missing Authorization header (expected Bearer)"),
])
def test_fno_bearer_wrong_missing_malformed(value, status, reason):
    headers = [] if value is None else [("Authorization", value)]
    assert verify("fno", delivery(headers=headers), fno_endpoint(**BEARER_EP)) == \
        Verdict(status, reason)


def test_fno_auth_unset_accepts_either_configured_kind():
    ep = fno_endpoint(username="flex", password="s3cret-pa55", tokens=("tok-new-654321",))
    assert verify("fno", delivery(headers=[("Authorization", basic("flex", "s3cret-pa55"))]),
                  ep).ok
    assert verify("fno", delivery(headers=[("Authorization", "Bearer tok-new-654321")]), ep).ok


def test_fno_without_credentials():
    headers = [("Authorization", basic("flex", "anything"))]
    assert verify("fno", delivery(headers=headers), fno_endpoint(auth="none")).status == \
        "unchecked"
    assert verify("fno", delivery(headers=[]), fno_endpoint(auth="none")).status == "unsigned"
    assert verify("fno", delivery(headers=[]), fno_endpoint()).status == "unsigned"


def test_fno_allow_ips():
    ep = fno_endpoint(allow_ips=("192.0.2.0/24", "2001:db8::/32"), **BASIC_EP)
    good = [("Authorization", basic("flex", "s3cret-pa55"))]
    assert verify("fno", delivery(headers=good, remote_addr="192.0.2.7"), ep).ok
    assert verify("fno", delivery(headers=good, remote_addr="::ffff:192.0.2.7"), ep).ok
    assert verify("fno", delivery(headers=good, remote_addr="2001:db8::5"), ep).ok
    assert verify("fno", delivery(headers=good, remote_addr="10.1.2.3"), ep) == \
        Verdict("invalid", "address 10.1.2.3 is not in allow_ips")
    assert verify("fno", delivery(headers=good, remote_addr=None), ep).status == "invalid"
    assert verify("fno", delivery(headers=good, remote_addr="not-an-ip"), ep).status == "invalid"
    # allowed address, wrong password: still invalid
    bad = [("Authorization", basic("flex", "nope"))]
    assert verify("fno", delivery(headers=bad, remote_addr="192.0.2.7"), ep).status == "invalid"


def test_fno_allow_ips_alone():
    ep = fno_endpoint(allow_ips=("192.0.2.1",))
    assert verify("fno", delivery(remote_addr="192.0.2.1"), ep).ok
    assert verify("fno", delivery(remote_addr="192.0.2.2"), ep).status == "invalid"


def test_fno_sign_round_trip():
    for settings_ in (BASIC_EP, BEARER_EP, dict(auth="basic", username="u", password="p",
                                                signing_key="u:p"),
                      dict(auth="bearer", tokens=("t1",), signing_key="t1")):
        ep = fno_endpoint(**settings_)
        headers = sign("fno", BODY, ep)
        assert verify("fno", delivery(headers=headers), ep).ok, settings_
    assert sign_fno(token="abc") == [("Authorization", "Bearer abc")]
    with pytest.raises(ValueError):
        sign("fno", BODY, fno_endpoint(auth="none"))


def test_fno_pure_function_directly():
    assert verify_fno(b"", {"Authorization": "Bearer x1234"}, tokens=["x1234"]).ok


# --------------------------------------------------------------------------- Zentitle

def n_signature_by_hand(body: bytes, key: rsa.RSAPrivateKey) -> list[tuple[str, str]]:
    return [("N-Signature",
             base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode())]


def zt_endpoint(*keys: str, **more: Any) -> Endpoint:
    return endpoint(source="zentitle", public_keys=keys, **more)


@pytest.mark.parametrize("form", [pem, der_b64])
def test_zentitle_independent_vector(rsa_key, form):
    headers = n_signature_by_hand(BODY, rsa_key)
    assert verify("zentitle", delivery(headers=headers), zt_endpoint(form(rsa_key))) == \
        Verdict("valid")


def test_zentitle_round_trip_and_rotation(rsa_key, rsa_key2):
    ep = zt_endpoint(pem(rsa_key2), pem(rsa_key), signing_key=private_pem(rsa_key))
    check_endpoint(ep)
    headers = sign("zentitle", BODY, ep)
    assert headers == n_signature_by_hand(BODY, rsa_key)  # PKCS#1 v1.5 is deterministic
    assert verify("zentitle", delivery(headers=headers), ep).ok


def test_zentitle_wrong(rsa_key, rsa_key2):
    headers = n_signature_by_hand(BODY, rsa_key)
    assert verify("zentitle", delivery(BODY + b" ", headers), zt_endpoint(pem(rsa_key))
                  ).status == "invalid"
    assert verify("zentitle", delivery(headers=headers), zt_endpoint(pem(rsa_key2))
                  ).status == "invalid"
    assert verify("zentitle", delivery(headers=[("N-Signature", "%%")]),
                  zt_endpoint(pem(rsa_key))) == Verdict("invalid",
                                                        "N-Signature is not valid base64")
    assert verify("zentitle", delivery(headers=[]), zt_endpoint(pem(rsa_key))) == \
        Verdict("unsigned", "missing N-Signature header")
    assert verify("zentitle", delivery(headers=headers), zt_endpoint()).status == "unchecked"
    assert verify("zentitle", delivery(headers=[]), zt_endpoint()).status == "unsigned"
    assert verify_zentitle(BODY, dict(headers), keys=[rsa_key.public_key()]).ok


# --------------------------------------------------------------------------- user verifiers

@pytest.fixture
def plugin_module(monkeypatch):
    module = types.ModuleType("fake_verifiers")

    def accept(delivery, endpoint):
        return delivery.header("X-LS-Signature") == "ok"

    def verdict(delivery, endpoint):
        return Verdict("invalid", "custom says no")

    def explode(delivery, endpoint):
        raise ValueError(f"bad signature for secret {endpoint.secrets[0]}")

    def odd(delivery, endpoint):
        return "yes"

    module.accept = accept  # type: ignore[attr-defined]
    module.verdict = verdict  # type: ignore[attr-defined]
    module.explode = explode  # type: ignore[attr-defined]
    module.odd = odd  # type: ignore[attr-defined]
    module.not_callable = 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_verifiers", module)
    return module


def test_licensespring_unchecked_without_verifier():
    verdict = verify("licensespring", delivery(), endpoint(source="licensespring",
                                                          secrets=("s1", "s2")))
    assert verdict.status == "unchecked"
    assert verify("generic", delivery(), endpoint()).status == "unchecked"


def test_verifier_setting(plugin_module):
    ep = endpoint(source="licensespring", verifier="fake_verifiers:accept")
    check_endpoint(ep)
    assert verify("licensespring", delivery(headers=[("X-LS-Signature", "ok")]), ep).ok
    refused = verify("licensespring", delivery(), ep)
    assert refused.status == "invalid" and "refused" in (refused.reason or "")
    custom = endpoint(source="generic", verifier="fake_verifiers:verdict")
    assert verify("generic", delivery(), custom) == Verdict("invalid", "custom says no")
    odd = verify("generic", delivery(), endpoint(verifier="fake_verifiers:odd"))
    assert odd.status == "invalid" and "returned str" in (odd.reason or "")


def test_verifier_exception_is_invalid_and_scrubbed(plugin_module):
    secret = "ls-very-secret-value"
    ep = endpoint(source="licensespring", secrets=(secret,), verifier="fake_verifiers:explode")
    verdict = verify("licensespring", delivery(), ep)
    assert verdict.status == "invalid"
    assert (verdict.reason or "").startswith("verifier raised ValueError: bad signature")
    assert secret not in (verdict.reason or "")


def test_verifier_entry_point(plugin_module, monkeypatch):
    points = [EntryPoint("licensespring", "fake_verifiers:accept", "receiver.verifiers")]
    seen: list[str] = []

    def fake_entry_points(*, group):
        seen.append(group)
        return points if group == "receiver.verifiers" else []

    monkeypatch.setattr(user_verifiers, "entry_points", fake_entry_points)
    ep = endpoint(source="licensespring")
    check_endpoint(ep)
    assert verify("licensespring", delivery(headers=[("X-LS-Signature", "ok")]), ep).ok
    assert verify("licensespring", delivery(), ep).status == "invalid"
    assert seen == ["receiver.verifiers"]  # looked up once, then cached
    # built-in schemes are not replaced by entry points
    assert verify("generic", delivery(), endpoint()).status == "unchecked"


@pytest.mark.parametrize("spec", ["fake_verifiers:missing", "no_such_module_xyz:f",
                                  "fake_verifiers", "fake_verifiers:not_callable"])
def test_check_endpoint_bad_verifier(plugin_module, spec):
    with pytest.raises(ConfigError, match=r"^endpoints\.test\.verifier: "):
        check_endpoint(endpoint(source="licensespring", verifier=spec))
    assert verify("licensespring", delivery(), endpoint(verifier=spec)).status == "invalid"


# --------------------------------------------------------------------------- check_endpoint, sign

def test_check_endpoint_accepts_good_config(ed_key, rsa_key, ec_key):
    check_endpoint(kg_endpoint(raw_hex(ed_key), der_b64(rsa_key), pem(ec_key)))
    check_endpoint(std_endpoint(SECRET_A, SECRET_B, signing_key=SECRET_A))
    check_endpoint(fno_endpoint(allow_ips=("10.0.0.0/8",), **BASIC_EP))


@pytest.mark.parametrize("make,match", [
    (lambda k: kg_endpoint("not a key"), r"^endpoints\.test\.public_key: 'not a key' cannot be"),
    (lambda k: kg_endpoint(raw_hex(k["ed"]), "abcd" * 10),
     r"^endpoints\.test\.public_key: key 2 of 2 "),
    (lambda k: kg_endpoint(pem(k["ec384"])), r"^endpoints\.test\.public_key: .*secp384r1"),
    (lambda k: zt_endpoint(pem(k["ed"])), r"^endpoints\.test\.public_key: .*needs an RSA key"),
    (lambda k: std_endpoint(keys=(pem(k["rsa"]),)), r"^endpoints\.test\.public_key: .*Ed25519"),
    (lambda k: std_endpoint("whsec_!!!not-base64"), r"^endpoints\.test\.secrets: "),
    (lambda k: kg_endpoint(signing_key="my-private-secret-text"),
     r"^endpoints\.test\.signing_key: not a private key"),
    (lambda k: zt_endpoint(signing_key=private_pem(k["ed"])),
     r"^endpoints\.test\.signing_key: N-Signature needs an RSA"),
    (lambda k: kg_endpoint(tolerance=-1), r"^endpoints\.test\.tolerance: "),
])
def test_check_endpoint_names_the_setting(ed_key, rsa_key, make, match):
    keys = {"ed": ed_key, "rsa": rsa_key, "ec384": ec.generate_private_key(ec.SECP384R1())}
    with pytest.raises(ConfigError, match=match) as caught:
        check_endpoint(make(keys))
    assert "my-private-secret-text" not in str(caught.value)
    assert "!!!not-base64" not in str(caught.value)


def test_unparsable_key_at_verify_time_fails_closed(ed_key):
    headers = keygen_by_hand(BODY, ed_key)
    verdict = verify("keygen", delivery(headers=headers), kg_endpoint("garbage"), now=NOW)
    assert verdict.status == "invalid"


@pytest.mark.parametrize("source,ep", [
    ("keygen", endpoint(source="keygen", url=URL)),
    ("keygen", endpoint(source="keygen", signing_key="0" * 64)),  # no url
    ("zentitle", endpoint(source="zentitle")),
    ("standard", endpoint(source="standard")),
    ("fno", endpoint(source="fno")),
    ("licensespring", endpoint(source="licensespring", secrets=("abc",))),
    ("generic", endpoint()),
])
def test_sign_without_anything_to_sign_with(source, ep):
    with pytest.raises(ValueError):
        sign(source, BODY, ep)


def test_sign_keygen_url_argument_overrides(ed_key):
    seed_hex = ed_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption()).hex()  # Keygen's format
    ep = kg_endpoint(raw_hex(ed_key), url=None, signing_key=seed_hex)
    check_endpoint(ep)
    headers = sign("keygen", BODY, ep, url=URL, now=NOW)
    assert verify_keygen(BODY, headers, keys=[raw_hex(ed_key)], url=URL, now=NOW).ok


# --------------------------------------------------------------------------- secrets never leak

def test_no_reason_ever_contains_a_secret(rsa_key):
    password, token = "hunter2-password", "bearer-token-987654"
    secret = SECRET_A
    eps = [
        fno_endpoint(auth="basic", username="flex", password=password),
        fno_endpoint(auth="bearer", tokens=(token,)),
        std_endpoint(secret),
        zt_endpoint(pem(rsa_key), signing_key=private_pem(rsa_key)),
    ]
    hostile_values = [password, token, secret, secret[6:], basic("flex", password),
                      f"Bearer {token}", f"Basic {password}", f"Bearer{token}",
                      f"{token} {password}", f"v1,{secret[6:]}", f"v9,{secret}"]
    names = ["Authorization", "webhook-signature", "webhook-id", "webhook-timestamp",
             "N-Signature", "Keygen-Signature", "Date", "Digest"]
    forbidden = [password, token, secret, secret[6:], private_pem(rsa_key)]
    for ep in eps:
        for source in ("fno", "standard", "zentitle", "keygen", "licensespring"):
            for name in names:
                for value in hostile_values:
                    headers = [(name, value), ("webhook-id", "m"),
                               ("webhook-timestamp", str(int(NOW)))]
                    verdict = verify(source, delivery(value.encode(), headers), ep, now=NOW)
                    for item in forbidden:
                        assert item not in (verdict.reason or ""), (source, name, value)


# --------------------------------------------------------------------------- fuzzing

HEADER_NAMES = st.sampled_from([
    "Keygen-Signature", "X-Signature", "Date", "Keygen-Date", "Digest", "Host", "Authorization",
    "webhook-id", "webhook-timestamp", "webhook-signature", "N-Signature", "Content-Type",
]) | st.text(max_size=20)
SIGNATURE_LIKE = st.builds(
    lambda alg, sig, hdrs: f'keyid="k", algorithm="{alg}", signature="{sig}", headers="{hdrs}"',
    st.sampled_from(["ed25519", "rsa-sha256", "rsa-pss-sha256", "ecdsa-p256", "x"]),
    st.sampled_from(["", "AAAA", "=" * 5]) | st.text(max_size=100),
    st.sampled_from(["(request-target) host date digest", "date", ""]) | st.text(max_size=30),
)
HEADER_VALUES = (st.text(max_size=200) | SIGNATURE_LIKE
                 | st.sampled_from(["Basic Zm9vOmJhcg==", "Bearer ", "v1,AAAA v1a,BBBB",
                                    "Sun, 06 Nov 1994 08:49:37 GMT", "1614265330", "1e400",
                                    "sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]))


@pytest.fixture(scope="module")
def fuzz_endpoints(ed_key, rsa_key, ec_key) -> list[Endpoint]:
    return [
        kg_endpoint(raw_hex(ed_key), pem(rsa_key), der_b64(ec_key)),
        kg_endpoint(raw_hex(ed_key), url=None),
        kg_endpoint("broken key"),
        std_endpoint(SECRET_A, keys=(raw_hex(ed_key),)),
        std_endpoint("whsec_"),
        fno_endpoint(allow_ips=("10.0.0.0/8",), **BASIC_EP),
        fno_endpoint(**BEARER_EP),
        zt_endpoint(pem(rsa_key)),
        endpoint(),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.sampled_from(["keygen", "standard", "fno", "zentitle", "licensespring", "generic",
                            "other"]),
    which=st.integers(min_value=0, max_value=8),
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
    body=st.binary(max_size=300),
    remote=st.none() | st.sampled_from(["10.1.2.3", "::1", "nope"]) | st.text(max_size=20),
    path=st.text(max_size=30),
    query=st.text(max_size=30),
    now=st.floats(allow_nan=True, allow_infinity=True) | st.just(NOW),
)
def test_verify_never_raises(fuzz_endpoints, source, which, headers, body, remote, path, query,
                             now):
    d = Delivery(body=body, headers=headers, remote_addr=remote, path=path, query=query)
    verdict = verify(source, d, fuzz_endpoints[which], now=now)
    assert isinstance(verdict, Verdict)
    assert verdict.status in ("valid", "invalid", "unsigned", "unchecked")
    assert "internal error" not in (verdict.reason or ""), verdict


@settings(max_examples=200, deadline=None)
@given(headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
       body=st.binary(max_size=200),
       url=st.none() | st.text(max_size=60) | st.just("http://[bad/x"))
def test_pure_verifiers_never_raise(headers, body, url):
    keys = ["0" * 64]
    for verdict in (
        verify_keygen(body, headers, keys=keys, url=url, now=NOW),
        verify_standard(body, headers, secrets=[SECRET_A], public_keys=keys, now=NOW),
        verify_fno(body, headers, remote_addr="10.0.0.1", tokens=["t0k3n"],
                   allow_ips=["10.0.0.0/8"]),
        verify_zentitle(body, headers, keys=keys),
    ):
        assert isinstance(verdict, Verdict)


def test_standard_published_vector_by_hand():
    # A fixed HMAC vector guards the Standard Webhooks content layout independently.
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    content = f"{STD_ID}.{STD_TIME}.".encode() + STD_PAYLOAD
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert expected == "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


# -- Ed25519 through libsodium agrees with OpenSSL -------------------------------------------

_ED_KEYS = [ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
            for seed in (1, 2, 3)]


def _openssl_accepts(key: ed25519.Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except Exception:  # InvalidSignature, or a malformed signature
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(message=st.binary(max_size=2048), signer=st.integers(0, 2), checker=st.integers(0, 2),
       flip=st.one_of(st.none(), st.integers(0, 64 * 8 - 1)),
       flip_message=st.one_of(st.none(), st.integers(0, 2048 * 8 - 1)),
       cut=st.integers(0, 3))
def test_ed25519_valid_agrees_with_cryptography(message, signer, checker, flip, flip_message,
                                                cut) -> None:
    """Valid signatures pass, and a flipped bit in the signature or the message, the wrong
    key or a truncated signature fail, exactly as OpenSSL decides."""
    signature = bytearray(_ED_KEYS[signer].sign(message))
    if flip is not None:
        signature[flip // 8] ^= 1 << (flip % 8)
    if cut:
        del signature[-cut:]
    checked = bytearray(message)
    if flip_message is not None and checked:
        index = (flip_message // 8) % len(checked)
        checked[index] ^= 1 << (flip_message % 8)
    key = _ED_KEYS[checker].public_key()
    expected = _openssl_accepts(key, bytes(signature), bytes(checked))
    assert verify_module.ed25519_valid(key, bytes(signature), bytes(checked)) is expected
    if flip is None and not cut and checked == message and signer == checker:
        assert expected is True


def test_ed25519_valid_refuses_junk_signatures() -> None:
    key = _ED_KEYS[0].public_key()
    for junk in (b"", b"\x00" * 64, b"\xff" * 64, b"\x00" * 65, "not bytes"):
        assert verify_module.ed25519_valid(key, junk, b"message") is False  # type: ignore[arg-type]
