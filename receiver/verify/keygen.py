"""Keygen: ``Keygen-Signature`` (draft-cavage HTTP signatures over the request target, host,
``Date`` and ``Digest``) with Ed25519, RSA-PSS, RSA PKCS#1 v1.5 or ECDSA P-256 keys, and the
legacy ``X-Signature`` over the body. The dialect that parses the envelope is
``dialects.keygen``."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Sequence
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from ..config import Endpoint
from ..events import Delivery
from .common import (
    INVALID,
    UNCHECKED,
    UNSIGNED,
    VALID,
    Headers,
    Verdict,
    b64,
    b64decode,
    consteq,
    freshness,
    header_map,
    quote,
    wire_bytes,
)
from .keys import (
    ed25519_valid,
    key_kind,
    load_private_key,
    public_keys_of,
    verify_rsa_body,
)

KEYGEN_ALGORITHMS = ("ed25519", "rsa-pss-sha256", "rsa-sha256", "ecdsa-p256")
#: Other names seen for the same algorithms (keygen-go calls ECDSA P-256 ``ecdsa-secp256r1``).
_KEYGEN_ALIASES = {"ecdsa-secp256r1": "ecdsa-p256"}
_KEYGEN_COVERED = ("(request-target)", "host", "date", "digest")
_SIGNATURE_PARAM = re.compile(
    r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"([^"]*)"|([^,"\s]*))\s*(?:,|$)')


def _parse_signature_params(header: str) -> dict[str, str] | None:
    """``k="v", k2="v2"`` → dict (lower-case names); None when the header is malformed."""
    params: dict[str, str] = {}
    position = 0
    header = header.strip()
    while position < len(header):
        match = _SIGNATURE_PARAM.match(header, position)
        if match is None or match.end() == position:
            return None
        name = match.group(1).lower()
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params.setdefault(name, value)
        position = match.end()
    return params or None


def keygen_digest(body: bytes) -> str:
    """``sha-256=`` + base64(sha256(body)), the ``Digest`` header Keygen sends."""
    return "sha-256=" + b64(hashlib.sha256(body).digest())


def _keygen_target(url: str) -> tuple[str, str]:
    """(host without port, path[?query]) of the URL Keygen posts to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, path


def _keygen_verify_one(key: PublicKeyTypes, algorithm: str, signature: bytes,
                       message: bytes) -> bool:
    try:
        if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            return ed25519_valid(key, signature, message)
        if algorithm == "rsa-pss-sha256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message,
                       padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                   salt_length=padding.PSS.AUTO),
                       hashes.SHA256())
        elif algorithm == "rsa-sha256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif (algorithm == "ecdsa-p256" and isinstance(key, ec.EllipticCurvePublicKey)
              and isinstance(key.curve, ec.SECP256R1)):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _keygen_key_fits(key: PublicKeyTypes, algorithm: str) -> bool:
    if algorithm == "ed25519":
        return isinstance(key, ed25519.Ed25519PublicKey)
    if algorithm.startswith("rsa-"):
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def verify_keygen(
    body: bytes,
    headers: Headers,
    *,
    keys: Sequence[str | PublicKeyTypes],
    url: str | None,
    now: float | None = None,
    tolerance: float = 300,
    future_skew: float = 60,
    method: str = "post",
) -> Verdict:
    """Check a Keygen webhook (docs/senders.md, "Keygen").

    ``url`` is the endpoint URL as registered at Keygen: its host (without port) and its path
    and query are what Keygen signed, whatever ``Host`` the request reached us with (ngrok and
    proxies change it). ``verify()`` passes the endpoint's ``url`` setting and, when that is
    not configured, rebuilds one from the request's ``Host`` header and path.

    ``Keygen-Signature`` is checked with the algorithm it names (``ed25519``, ``rsa-pss-sha256``,
    ``rsa-sha256``, ``ecdsa-p256``) against every configured key of a fitting type; any match
    passes (rotation). The signing string is built from the header's ``headers`` list in its
    order (Keygen sends ``(request-target) host date digest``); the list must cover those four.
    ``Date`` (else ``Keygen-Date``) older than ``tolerance`` s or ahead by more than
    ``future_skew`` s is refused, and ``Digest`` must be the SHA-256 of ``body``.

    Without ``Keygen-Signature``, a legacy ``X-Signature`` (RSA PKCS#1 v1.5 SHA-256 over the
    raw body, base64; no replay protection) is checked when an RSA key is configured.
    """
    now = time.time() if now is None else now
    found = header_map(headers)
    parsed, bad = public_keys_of(keys)
    header = found.get("keygen-signature")
    legacy = found.get("x-signature")
    if not keys:
        if header is not None or legacy is not None:
            return Verdict(UNCHECKED, "no Keygen public key configured")
        return Verdict(UNSIGNED, "no Keygen-Signature header (and no public key configured)")
    if not parsed:
        return Verdict(INVALID, f"none of the {bad} configured public keys can be parsed")
    if header is None:
        rsa_keys = [key for key in parsed if isinstance(key, rsa.RSAPublicKey)]
        if legacy is not None and rsa_keys:
            return verify_rsa_body(body, legacy, rsa_keys, "X-Signature")
        if legacy is not None:
            return Verdict(UNSIGNED, "missing Keygen-Signature header (X-Signature is ignored: "
                                     "no RSA public key configured)")
        return Verdict(UNSIGNED, "missing Keygen-Signature header")

    params = _parse_signature_params(header)
    if params is None:
        return Verdict(INVALID, 'Keygen-Signature header is malformed (expected k="v" pairs)')
    if not params.get("signature"):
        return Verdict(INVALID, "Keygen-Signature header has no signature parameter")
    algorithm = params.get("algorithm", "ed25519").strip().lower()
    algorithm = _KEYGEN_ALIASES.get(algorithm, algorithm)
    if algorithm not in KEYGEN_ALGORITHMS:
        return Verdict(INVALID, f"unsupported Keygen-Signature algorithm "
                                f"{quote(params['algorithm'])}")
    try:
        signature = b64decode(params["signature"])
    except ValueError:
        return Verdict(INVALID, "Keygen-Signature signature is not valid base64")
    covered = params.get("headers", " ".join(_KEYGEN_COVERED)).lower().split()
    missing = [name for name in _KEYGEN_COVERED if name not in covered]
    if missing:
        return Verdict(INVALID, f"Keygen-Signature does not cover {', '.join(missing)}")

    digest = found.get("digest", found.get("keygen-digest"))
    if digest is None:
        return Verdict(INVALID, "missing Digest header")
    expected = keygen_digest(body)
    prefix, _, value = digest.strip().partition("=")
    if prefix.lower() != "sha-256" or not consteq(value, expected[len("sha-256="):]):
        return Verdict(INVALID, "Digest does not match body")

    date = found.get("date", found.get("keygen-date"))
    if date is None:
        return Verdict(INVALID, "missing Date header")
    try:
        sent = _utc_timestamp(parsedate_to_datetime(date))
    except (TypeError, ValueError, OverflowError, IndexError):
        return Verdict(INVALID, f"Date header is not an HTTP date: {quote(date)}")
    stale = freshness("Date", sent, now, tolerance, future_skew)
    if stale:
        return Verdict(INVALID, stale)

    if url is None:
        return Verdict(INVALID, "cannot rebuild the signed URL: no url configured and no Host "
                                "header")
    try:
        host, target = _keygen_target(url)
    except ValueError:
        return Verdict(INVALID, f"cannot rebuild the signed URL from {quote(url, 60)}")
    lines: list[str] = []
    for name in covered:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        elif name == "host":
            lines.append(f"host: {host}")
        elif name == "date":
            lines.append(f"date: {date}")
        elif name == "digest":
            lines.append(f"digest: {digest}")
        elif name in found:
            lines.append(f"{name}: {found[name]}")
        else:
            return Verdict(INVALID, f"Keygen-Signature covers header {quote(name)}, which is "
                                    f"missing")
    message = wire_bytes("\n".join(lines))
    fitting = [key for key in parsed if _keygen_key_fits(key, algorithm)]
    if not fitting:
        kinds = ", ".join(sorted({key_kind(key) for key in parsed}))
        return Verdict(INVALID, f"Keygen-Signature uses {algorithm} but the configured public "
                                f"keys are {kinds}")
    for key in fitting:
        if _keygen_verify_one(key, algorithm, signature, message):
            return Verdict(VALID)
    return Verdict(INVALID, f"no configured key matched the {algorithm} signature "
                            f"(tried {len(fitting)}; check url and public_key)")


def _utc_timestamp(moment: dt.datetime) -> float:
    """A parsed HTTP date as epoch seconds; a date without zone (``-0000``) is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def keygen_signing_string(*, method: str, url: str, date: str, digest: str) -> bytes:
    """The bytes Keygen signs for a webhook to ``url`` (host without port, path and query)."""
    host, target = _keygen_target(url)
    return wire_bytes(f"(request-target): {method.lower()} {target}\nhost: {host}\n"
                      f"date: {date}\ndigest: {digest}")


def default_keygen_algorithm(key: PrivateKeyTypes) -> str:
    """The algorithm Keygen signs with for this kind of key; ``ValueError`` when none."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-pss-sha256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise ValueError(f"Keygen cannot sign with a {key_kind(key)} key")


def sign_keygen(
    body: bytes,
    private_key: str | PrivateKeyTypes,
    *,
    url: str,
    now: float | None = None,
    algorithm: str | None = None,
    keyid: str = "00000000-0000-4000-8000-000000000000",
    method: str = "post",
) -> list[tuple[str, str]]:
    """The headers Keygen adds to a webhook: ``Date``, ``Keygen-Date``, ``Digest``,
    ``Keygen-Digest`` and ``Keygen-Signature``. ``algorithm`` defaults by key type: Ed25519 →
    ``ed25519``, RSA → ``rsa-pss-sha256``, EC P-256 → ``ecdsa-p256``."""
    key = load_private_key(private_key) if isinstance(private_key, str) else private_key
    algorithm = (algorithm or default_keygen_algorithm(key)).lower()
    algorithm = _KEYGEN_ALIASES.get(algorithm, algorithm)
    date = formatdate(time.time() if now is None else now, usegmt=True)
    digest = keygen_digest(body)
    message = keygen_signing_string(method=method, url=url, date=date, digest=digest)
    if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    elif algorithm == "rsa-pss-sha256" and isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                  salt_length=padding.PSS.MAX_LENGTH),
                             hashes.SHA256())
    elif algorithm == "rsa-sha256" and isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    elif (algorithm == "ecdsa-p256" and isinstance(key, ec.EllipticCurvePrivateKey)
          and isinstance(key.curve, ec.SECP256R1)):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        raise ValueError(f"cannot sign {algorithm!r} with a {key_kind(key)} key")
    header = (f'keyid="{keyid}", algorithm="{algorithm}", signature="{b64(signature)}", '
              f'headers="(request-target) host date digest"')
    return [("Date", date), ("Keygen-Date", date), ("Digest", digest), ("Keygen-Digest", digest),
            ("Keygen-Signature", header)]


def keygen_url(delivery: Delivery, endpoint: Endpoint) -> str | None:
    """The URL Keygen signed: the endpoint's ``url`` setting, else one rebuilt from the
    request's ``Host`` header, path and query (None without a ``Host``)."""
    if endpoint.url:
        return endpoint.url
    host = delivery.header("Host")
    if not host:
        return None
    path = delivery.path or "/"
    return f"http://{host.strip()}{path}" + (f"?{delivery.query}" if delivery.query else "")
