"""Signature and credential checks, one pure function per sender scheme, and ``sign()`` beside them.

``verify(source, delivery, endpoint)`` answers a :class:`Verdict` whose ``status`` is the
``signature_status`` of CONTRACT §1:

``valid``
    a configured key, secret or credential matched.
``invalid``
    the request carries a signature or credential that is wrong or malformed, or fails a rule
    the scheme sets (stale ``Date``, request from outside ``allow_ips``).
``unsigned``
    the request carries no signature or credential for the scheme.
``unchecked``
    nothing is configured to check this scheme with, but the request is signed (or the scheme
    is unknown, as for LicenseSpring).

Enforcement (the 401) is the pipeline's job; this module only answers. ``verify`` never raises
for anything a client sends, and a ``reason`` never holds a configured secret.

The per-scheme functions (``verify_keygen``, ``verify_standard``, ``verify_fno``,
``verify_zentitle``) take raw body bytes, headers (a mapping or ``(name, value)`` pairs) and
settings, and touch no global state except the key caches. Parsed keys are cached by their
text, so PEM or DER is decoded once per process, not once per request; ``check_endpoint``,
called at start, parses every configured key (filling the caches) and fails with a
``ConfigError`` that names the setting when one cannot be parsed.

Schemes are described in DIALECTS.md. Assumptions this module adds are marked *Assumed*.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import importlib
import ipaddress
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from importlib.metadata import entry_points
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509 import load_der_x509_certificate, load_pem_x509_certificate
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from .config import Endpoint
from .dialects.standard import rename_headers, standard_headers
from .errors import ConfigError
from .events import Delivery

log = logging.getLogger(__name__)

VALID = "valid"
INVALID = "invalid"
UNSIGNED = "unsigned"
UNCHECKED = "unchecked"
STATUSES = (VALID, INVALID, UNSIGNED, UNCHECKED)

#: Entry-point group for user verifiers; the entry point's name is the ``source``.
VERIFIER_GROUP = "receiver.verifiers"

#: Sources whose scheme this module implements (a user verifier still wins when configured).
BUILTIN_SCHEMES = ("keygen", "fno", "standard", "zentitle")

Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]
UserVerifier: TypeAlias = Callable[[Delivery, Endpoint], Any]


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: a CONTRACT ``signature_status`` and, unless valid, why.

    ``reason`` is a sentence for people ("Digest does not match body"); it never holds a
    configured secret.
    """

    status: str
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown signature status {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == VALID


# ---------------------------------------------------------------------------------------------
# small helpers

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_HEX_PRIVATE = re.compile(r"[0-9a-fA-F]{64}(?:[0-9a-fA-F]{64})?")


def _header_map(headers: Headers) -> dict[str, str]:
    """Lower-cased names; the first value of a repeated header wins (as ``Delivery.header``)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key not in found:
            found[key] = value
    return found


def _wire_bytes(text: str) -> bytes:
    """The bytes a header value had on the wire: WSGI hands headers over decoded as latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _b64decode(text: str) -> bytes:
    """Strict standard base64 (padding optional); raises ValueError."""
    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _describe_span(seconds: float) -> str:
    """420 → "7 minutes"; 45 → "45 seconds"."""
    seconds = abs(seconds)
    if seconds < 120:
        count, unit = int(seconds), "second"
    elif seconds < 2 * 3600:
        count, unit = int(seconds // 60), "minute"
    elif seconds < 2 * 86400:
        count, unit = int(seconds // 3600), "hour"
    else:
        count, unit = int(seconds // 86400), "day"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _freshness(label: str, moment: float, now: float, too_old: float,
               too_new: float) -> str | None:
    """A reason when ``moment`` is older than ``too_old`` s or ahead by more than ``too_new`` s."""
    age = now - moment
    if age > too_old:
        return f"{label} is {_describe_span(age)} old"
    if -age > too_new:
        return f"{label} is {_describe_span(age)} in the future"
    return None


def _quote(text: str, limit: int = 40) -> str:
    """Client-supplied text, shortened, for a reason."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _consteq(left: str | bytes, right: str | bytes) -> bool:
    if isinstance(left, str):
        left = left.encode("utf-8", "surrogatepass")
    if isinstance(right, str):
        right = right.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(left, right)


# ---------------------------------------------------------------------------------------------
# keys: parsed once, cached by their text


def _normalise_pem(text: str) -> bytes:
    if "\\n" in text:  # a PEM pasted into an environment variable
        text = text.replace("\\n", "\n")
    return "\n".join(line.strip() for line in text.strip().splitlines()).encode("ascii")


def _key_kind(key: PublicKeyTypes | PrivateKeyTypes) -> str:
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "Ed25519"
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return "RSA"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return f"EC {key.curve.name}"
    return type(key).__name__


@functools.lru_cache(maxsize=512)
def load_public_key(text: str) -> PublicKeyTypes:
    """Parse a public key given as 64 hex characters (raw Ed25519), ``whpk_`` + base64 (Standard
    Webhooks), base64 DER (SubjectPublicKeyInfo, or raw 32-byte Ed25519), PEM (``PUBLIC KEY``,
    ``RSA PUBLIC KEY`` or a certificate). Cached by text; raises ``ValueError``."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            pem = _normalise_pem(text)
            if b"CERTIFICATE-----" in pem:
                return load_pem_x509_certificate(pem).public_key()
            return serialization.load_pem_public_key(pem)
        if _HEX_KEY.fullmatch(text):
            return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
        if text.startswith("whpk_"):
            text = text[len("whpk_"):]
        raw = _b64decode("".join(text.split()))
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(f"not a public key: {_first_line(error)}") from None
    if len(raw) == 32:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    try:
        return serialization.load_der_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    try:
        return load_der_x509_certificate(raw).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("base64 text that is not a DER public key") from None


@functools.lru_cache(maxsize=256)
def load_private_key(text: str) -> PrivateKeyTypes:
    """Parse a private key for signing: PEM (PKCS#8, PKCS#1, SEC1), 64 hex characters (an
    Ed25519 seed, as Keygen stores it) or 128 (seed + public key, libsodium), ``whsk_`` + base64
    (Standard Webhooks), or base64 DER PKCS#8. Cached; raises ``ValueError`` without echoing
    the key."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            return serialization.load_pem_private_key(_normalise_pem(text), password=None)
        if _HEX_PRIVATE.fullmatch(text):
            return ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text[:64]))
        if text.startswith("whsk_"):
            text = text[len("whsk_"):]
        raw = _b64decode("".join(text.split()))
        if len(raw) in (32, 64):
            return ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
        return serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not a private key: expected PEM, 64 hex characters (Ed25519), "
                         "whsk_ base64 or base64 DER PKCS#8") from None


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:120]


@functools.lru_cache(maxsize=256)
def _parsed_public_keys(texts: tuple[str, ...]) -> tuple[tuple[PublicKeyTypes, ...], int]:
    """Every key that parses, and how many did not (those are reported by check_endpoint)."""
    keys: list[PublicKeyTypes] = []
    bad = 0
    for text in texts:
        try:
            keys.append(load_public_key(text))
        except ValueError:
            bad += 1
    return tuple(keys), bad


def _public_keys(keys: Sequence[str | PublicKeyTypes]) -> tuple[tuple[PublicKeyTypes, ...], int]:
    if all(isinstance(key, str) for key in keys):
        return _parsed_public_keys(tuple(keys))  # type: ignore[arg-type]
    parsed: list[PublicKeyTypes] = []
    bad = 0
    for key in keys:
        if isinstance(key, str):
            try:
                parsed.append(load_public_key(key))
            except ValueError:
                bad += 1
        else:
            parsed.append(key)
    return tuple(parsed), bad


@functools.lru_cache(maxsize=256)
def decode_whsec(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after the ``whsec_`` prefix (the
    prefix is optional, padding too, as in the reference library). Raises ``ValueError``."""
    text = secret.strip()
    if text.startswith("whsec_"):
        text = text[len("whsec_"):]
    try:
        key = _b64decode(text)
    except ValueError:
        raise ValueError("not a whsec_ secret: the part after whsec_ is not base64") from None
    if not key:
        raise ValueError("not a whsec_ secret: it is empty")
    return key


@functools.lru_cache(maxsize=64)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


# ---------------------------------------------------------------------------------------------
# Keygen

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
    return "sha-256=" + _b64(hashlib.sha256(body).digest())


def _keygen_target(url: str) -> tuple[str, str]:
    """(host without port, path[?query]) of the URL Keygen posts to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, path


@functools.lru_cache(maxsize=256)
def _libsodium_key(raw: bytes) -> VerifyKey:
    return VerifyKey(raw)


def ed25519_valid(key: ed25519.Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Check an Ed25519 signature with libsodium (PyNaCl): 46 us against OpenSSL's 110 us
    through ``cryptography`` on the benchmark machine, and Keygen signs every delivery with
    it. Keys are still parsed (PEM, DER, hex) by ``cryptography``."""
    try:
        _libsodium_key(key.public_bytes_raw()).verify(message, signature)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


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
    """Check a Keygen webhook (DIALECTS.md §1).

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
    found = _header_map(headers)
    parsed, bad = _public_keys(keys)
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
            return _verify_rsa_body(body, legacy, rsa_keys, "X-Signature")
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
                                f"{_quote(params['algorithm'])}")
    try:
        signature = _b64decode(params["signature"])
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
    if prefix.lower() != "sha-256" or not _consteq(value, expected[len("sha-256="):]):
        return Verdict(INVALID, "Digest does not match body")

    date = found.get("date", found.get("keygen-date"))
    if date is None:
        return Verdict(INVALID, "missing Date header")
    try:
        sent = _utc_timestamp(parsedate_to_datetime(date))
    except (TypeError, ValueError, OverflowError, IndexError):
        return Verdict(INVALID, f"Date header is not an HTTP date: {_quote(date)}")
    stale = _freshness("Date", sent, now, tolerance, future_skew)
    if stale:
        return Verdict(INVALID, stale)

    if url is None:
        return Verdict(INVALID, "cannot rebuild the signed URL: no url configured and no Host "
                                "header")
    try:
        host, target = _keygen_target(url)
    except ValueError:
        return Verdict(INVALID, f"cannot rebuild the signed URL from {_quote(url, 60)}")
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
            return Verdict(INVALID, f"Keygen-Signature covers header {_quote(name)}, which is "
                                    f"missing")
    message = _wire_bytes("\n".join(lines))
    fitting = [key for key in parsed if _keygen_key_fits(key, algorithm)]
    if not fitting:
        kinds = ", ".join(sorted({_key_kind(key) for key in parsed}))
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


def _verify_rsa_body(body: bytes, header: str, keys: Sequence[rsa.RSAPublicKey],
                     name: str) -> Verdict:
    """base64 RSA PKCS#1 v1.5 SHA-256 over the raw body (Keygen legacy, Zentitle)."""
    try:
        signature = _b64decode(header)
    except ValueError:
        return Verdict(INVALID, f"{name} is not valid base64")
    for key in keys:
        try:
            key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
            return Verdict(VALID)
        except (InvalidSignature, ValueError):
            continue
    return Verdict(INVALID, f"no configured key matched the {name} (tried {len(keys)})")


def keygen_signing_string(*, method: str, url: str, date: str, digest: str) -> bytes:
    """The bytes Keygen signs for a webhook to ``url`` (host without port, path and query)."""
    host, target = _keygen_target(url)
    return _wire_bytes(f"(request-target): {method.lower()} {target}\nhost: {host}\n"
                       f"date: {date}\ndigest: {digest}")


def _default_keygen_algorithm(key: PrivateKeyTypes) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-pss-sha256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise ValueError(f"Keygen cannot sign with a {_key_kind(key)} key")


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
    algorithm = (algorithm or _default_keygen_algorithm(key)).lower()
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
        raise ValueError(f"cannot sign {algorithm!r} with a {_key_kind(key)} key")
    header = (f'keyid="{keyid}", algorithm="{algorithm}", signature="{_b64(signature)}", '
              f'headers="(request-target) host date digest"')
    return [("Date", date), ("Keygen-Date", date), ("Digest", digest), ("Keygen-Digest", digest),
            ("Keygen-Signature", header)]


def sign_rsa_body(body: bytes, private_key: str | PrivateKeyTypes, *,
                  header: str = "X-Signature") -> list[tuple[str, str]]:
    """base64 RSA PKCS#1 v1.5 SHA-256 over the raw body, in ``header`` (Keygen's legacy
    ``X-Signature``; Zentitle's ``N-Signature``)."""
    key = load_private_key(private_key) if isinstance(private_key, str) else private_key
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{header} needs an RSA private key, got {_key_kind(key)}")
    return [(header, _b64(key.sign(body, padding.PKCS1v15(), hashes.SHA256())))]


# ---------------------------------------------------------------------------------------------
# Standard Webhooks


def verify_standard(
    body: bytes,
    headers: Headers,
    *,
    secrets: Sequence[str] = (),
    public_keys: Sequence[str | PublicKeyTypes] = (),
    now: float | None = None,
    tolerance: float = 300,
) -> Verdict:
    """Check a Standard Webhooks request (DIALECTS.md §5).

    Signed content is ``<webhook-id>.<webhook-timestamp>.<body>``. Each space-separated entry of
    ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>`` (keyed with each ``whsec_`` secret)
    or ``v1a,<base64 Ed25519>`` (checked with each Ed25519 key in ``public_keys``, usually
    ``whpk_…``); other versions are skipped; any match passes. The timestamp may be at most
    ``tolerance`` seconds away from ``now`` in either direction. Svix's ``svix-id``,
    ``svix-timestamp`` and ``svix-signature`` are read as the same three headers
    (``dialects.standard.standard_headers``); reasons name the spelling the request used.
    """
    now = time.time() if now is None else now
    found, spelling = standard_headers(_header_map(headers))
    signature_header = found.get("webhook-signature")
    hmac_keys: list[bytes] = []
    for secret in secrets:
        try:
            hmac_keys.append(decode_whsec(secret))
        except ValueError:
            continue
    parsed, _ = _public_keys(public_keys)
    ed_keys = [key for key in parsed if isinstance(key, ed25519.Ed25519PublicKey)]
    if not secrets and not public_keys:
        if signature_header is not None:
            return Verdict(UNCHECKED, "no whsec_ secret or whpk_ key configured")
        return Verdict(UNSIGNED, "no webhook-signature header (and no secret configured)")
    if not hmac_keys and not ed_keys:
        return Verdict(INVALID, "none of the configured secrets or keys can be used")
    if signature_header is None:
        return Verdict(UNSIGNED, "missing webhook-signature (or svix-signature) header")
    for name in ("id", "timestamp"):
        if f"webhook-{name}" not in found:
            return Verdict(INVALID, f"missing {spelling}-{name} header")
    msg_id, stamp = found["webhook-id"], found["webhook-timestamp"]
    try:
        sent = float(stamp)
    except ValueError:
        sent = math.nan
    if not math.isfinite(sent):
        return Verdict(INVALID, f"{spelling}-timestamp is not a unix timestamp: {_quote(stamp)}")
    stale = _freshness(f"{spelling}-timestamp", sent, now, tolerance, tolerance)
    if stale:
        return Verdict(INVALID, stale)

    content = _wire_bytes(msg_id) + b"." + _wire_bytes(stamp) + b"." + body
    v1 = v1a = 0
    expected = [hmac.new(key, content, hashlib.sha256).digest() for key in hmac_keys]
    for entry in signature_header.split():
        version, comma, encoded = entry.partition(",")
        if not comma or version not in ("v1", "v1a"):
            continue
        try:
            signature = _b64decode(encoded)
        except ValueError:
            continue
        if not signature:
            continue
        if version == "v1":
            v1 += 1
            if any(hmac.compare_digest(digest, signature) for digest in expected):
                return Verdict(VALID)
        else:
            v1a += 1
            if any(ed25519_valid(key, signature, content) for key in ed_keys):
                return Verdict(VALID)
    if not v1 and not v1a:
        return Verdict(INVALID, f"{spelling}-signature holds no well-formed v1 or v1a signature")
    if v1 and not expected and not v1a:
        return Verdict(INVALID, f"{spelling}-signature holds only v1 (HMAC) signatures and no "
                                "whsec_ secret is configured")
    if v1a and not ed_keys and not v1:
        return Verdict(INVALID, f"{spelling}-signature holds only v1a (Ed25519) signatures and "
                                "no whpk_ key is configured")
    return Verdict(INVALID, f"no configured secret or key matched {spelling}-signature "
                            f"({v1} v1, {v1a} v1a)")


def sign_standard(
    body: bytes,
    secret: str | Sequence[str],
    *,
    webhook_id: str | None = None,
    now: float | None = None,
    spelling: str = "webhook",
) -> list[tuple[str, str]]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for ``body`` (``svix-*``
    with ``spelling="svix"``, as Svix sends them). A ``whsec_`` secret makes a ``v1`` entry, a
    ``whsk_`` private key a ``v1a`` one; several secrets make several entries (rotation)."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("Standard Webhooks signing needs a whsec_ secret or whsk_ key")
    msg_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    stamp = str(int(time.time() if now is None else now))
    content = _wire_bytes(msg_id) + b"." + stamp.encode("ascii") + b"." + body
    entries = []
    for item in secrets:
        if item.strip().startswith("whsk_"):
            key = load_private_key(item)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise ValueError("a whsk_ key must be an Ed25519 key")
            entries.append("v1a," + _b64(key.sign(content)))
        else:
            entries.append("v1," + _b64(hmac.new(decode_whsec(item), content,
                                                 hashlib.sha256).digest()))
    return rename_headers([("webhook-id", msg_id), ("webhook-timestamp", stamp),
                           ("webhook-signature", " ".join(entries))], spelling)


# ---------------------------------------------------------------------------------------------
# Revenera FlexNet Operations: Basic / Bearer credentials, optional IP allow-list


def _address_allowed(remote_addr: str | None, allow_ips: Sequence[str]) -> str | None:
    """None when allowed, else the reason."""
    if remote_addr is None:
        return "remote address unknown; allow_ips is configured"
    try:
        address = ipaddress.ip_address(remote_addr.strip())
    except ValueError:
        return f"remote address {_quote(remote_addr)} is not an IP address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in _networks(tuple(allow_ips)):
        if address.version == network.version and address in network:
            return None
    return f"address {address} is not in allow_ips"


def verify_fno(
    body: bytes,
    headers: Headers,
    *,
    remote_addr: str | None = None,
    auth: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tokens: Sequence[str] = (),
    allow_ips: Sequence[str] = (),
) -> Verdict:
    """Check a FlexNet Operations notification (DIALECTS.md §3). FNO signs nothing (``body``
    is unused); it sends ``Authorization: Basic`` (``username``/``password``) or ``Bearer``
    (any of ``tokens``), compared in constant time. ``auth`` = ``basic``/``bearer`` accepts only
    that kind, ``none`` checks no credentials, unset accepts whichever is configured.
    ``allow_ips`` (CIDRs) is checked first; a request from outside is invalid. An endpoint
    with only ``allow_ips`` answers valid for an allowed address."""
    found = _header_map(headers)
    if allow_ips:
        refused = _address_allowed(remote_addr, allow_ips)
        if refused:
            return Verdict(INVALID, refused)
    kind = (auth or "").lower()
    basic = kind in ("", "basic") and password is not None
    bearer = kind in ("", "bearer") and bool(tokens)
    authorization = found.get("authorization")
    if not basic and not bearer:
        if allow_ips:
            return Verdict(VALID)
        if authorization is not None:
            return Verdict(UNCHECKED, "no credentials configured (auth is "
                                      f"{'none' if kind == 'none' else 'not set'})")
        return Verdict(UNSIGNED, "no Authorization header (and no credentials configured)")
    expected = "Basic" if not bearer else "Bearer" if not basic else "Basic or Bearer"
    if authorization is None or not authorization.strip():
        return Verdict(UNSIGNED, f"missing Authorization header (expected {expected})")
    scheme, _, credentials = authorization.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "basic" and basic:
        try:
            decoded = _b64decode(credentials)
        except ValueError:
            return Verdict(INVALID, "Authorization Basic credentials are not valid base64")
        user, colon, secret = decoded.partition(b":")
        if not colon:
            return Verdict(INVALID, "Authorization Basic credentials are not user:password")
        user_ok = _consteq(user, username or "")
        password_ok = _consteq(secret, password or "")
        if user_ok and password_ok:
            return Verdict(VALID)
        return Verdict(INVALID, "Basic username or password does not match")
    if scheme == "bearer" and bearer:
        if not credentials:
            return Verdict(INVALID, "Authorization Bearer header has no token")
        matched = False
        for token in tokens:
            matched |= _consteq(credentials, token)
        return Verdict(VALID) if matched else Verdict(INVALID, "Bearer token does not match")
    if scheme in ("basic", "bearer"):
        return Verdict(INVALID, f"Authorization uses {scheme.capitalize()}, expected {expected}")
    return Verdict(INVALID, f"Authorization is not {expected} credentials")


def sign_fno(*, username: str | None = None, password: str | None = None,
             token: str | None = None) -> list[tuple[str, str]]:
    """The ``Authorization`` header FNO sends: Bearer when ``token`` is given, else Basic."""
    if token:
        return [("Authorization", f"Bearer {token}")]
    if username is not None and password is not None:
        pair = f"{username}:{password}".encode()
        return [("Authorization", f"Basic {_b64(pair)}")]
    raise ValueError("FNO signing needs a token, or a username and password")


# ---------------------------------------------------------------------------------------------
# Zentitle


def verify_zentitle(body: bytes, headers: Headers, *,
                    keys: Sequence[str | PublicKeyTypes]) -> Verdict:
    """Check a Zentitle2 webhook (DIALECTS.md §4).

    *Assumed* (Zentitle documents only "an RSA signature over the payload" in ``N-Signature``):
    base64 RSA PKCS#1 v1.5 with SHA-256 over the raw body bytes, checked with each RSA key.
    """
    found = _header_map(headers)
    header = found.get("n-signature")
    if not keys:
        if header is not None:
            return Verdict(UNCHECKED, "no Zentitle RSA public key configured")
        return Verdict(UNSIGNED, "no N-Signature header (and no public key configured)")
    parsed, _ = _public_keys(keys)
    rsa_keys = [key for key in parsed if isinstance(key, rsa.RSAPublicKey)]
    if not rsa_keys:
        return Verdict(INVALID, "no usable RSA public key configured for N-Signature")
    if header is None:
        return Verdict(UNSIGNED, "missing N-Signature header")
    return _verify_rsa_body(body, header, rsa_keys, "N-Signature")


# ---------------------------------------------------------------------------------------------
# user verifiers (LicenseSpring and anything without a published scheme)

_verifier_specs: dict[str, UserVerifier] = {}
_entry_point_verifiers: dict[str, UserVerifier | None] = {}


def load_verifier(spec: str) -> UserVerifier:
    """Import ``"package.module:function"`` (``module:Class.method`` works too); cached.
    Raises ``ValueError`` naming the problem."""
    cached = _verifier_specs.get(spec)
    if cached is not None:
        return cached
    module_name, colon, attribute = spec.strip().partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r}: {error}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    _verifier_specs[spec] = target
    return target


def entry_point_verifier(source: str) -> UserVerifier | None:
    """The verifier registered in entry-point group ``receiver.verifiers`` under ``source``
    (looked up and loaded once); None when there is none."""
    if source in _entry_point_verifiers:
        return _entry_point_verifiers[source]
    found: UserVerifier | None = None
    for point in entry_points(group=VERIFIER_GROUP):
        if point.name == source:
            try:
                found = point.load()
            except Exception as error:  # a broken plugin: report it, do not crash the caller
                raise ValueError(f"entry point {source!r} in {VERIFIER_GROUP} cannot be loaded: "
                                 f"{type(error).__name__}: {_first_line(error)}") from None
            break
    _entry_point_verifiers[source] = found
    return found


def reset_caches() -> None:
    """Forget parsed keys and resolved verifiers (tests; after re-installing plugins)."""
    _verifier_specs.clear()
    _entry_point_verifiers.clear()
    for cached in (load_public_key, load_private_key, _parsed_public_keys, decode_whsec,
                   _networks, _libsodium_key):
        cached.cache_clear()


def _user_verifier(source: str, endpoint: Endpoint) -> tuple[str, UserVerifier] | None:
    if endpoint.verifier:
        return endpoint.verifier, load_verifier(endpoint.verifier)
    if source in BUILTIN_SCHEMES:
        return None
    found = entry_point_verifier(source)
    return (f"entry point {source!r}", found) if found is not None else None


def _run_user_verifier(name: str, function: UserVerifier, delivery: Delivery,
                       endpoint: Endpoint) -> Verdict:
    try:
        answer = function(delivery, endpoint)
    except Exception as error:  # the user's code: record the failure as the verdict
        log.warning("verifier %s raised", name, exc_info=True)
        return Verdict(INVALID, f"verifier raised {type(error).__name__}: "
                                f"{_first_line(error)}")
    if isinstance(answer, Verdict):
        return answer
    if isinstance(answer, bool):
        return Verdict(VALID) if answer else Verdict(INVALID, f"verifier {name} refused the "
                                                              "request")
    return Verdict(INVALID, f"verifier {name} returned {type(answer).__name__}, expected a "
                            "Verdict or bool")


# ---------------------------------------------------------------------------------------------
# the entry points the pipeline and the CLI call


def _keygen_url(delivery: Delivery, endpoint: Endpoint) -> str | None:
    if endpoint.url:
        return endpoint.url
    host = delivery.header("Host")
    if not host:
        return None
    path = delivery.path or "/"
    return f"http://{host.strip()}{path}" + (f"?{delivery.query}" if delivery.query else "")


def _signed_bodies(delivery: Delivery, *, as_received_first: bool) -> tuple[bytes, ...]:
    """The bytes a body signature may cover, the scheme's own choice first.

    A compressed delivery (``Content-Encoding``) has two: the bytes as received and the
    decoded ones. Keygen's ``Digest`` is over the bytes as sent (RFC 3230: the digest of the
    content-coded instance), Standard Webhooks and Zentitle sign the payload before the HTTP
    client compresses it. The other one is tried second, for a sender that computes its
    signature at the other layer: either way the signature binds the decoded bytes, since
    they follow from the received ones."""
    if delivery.decoded is None:
        return (delivery.body,)
    pair = (delivery.body, delivery.decoded)
    return pair if as_received_first else pair[::-1]


def _any_body(check: Callable[[bytes], Verdict], bodies: Sequence[bytes]) -> Verdict:
    """The first valid verdict over ``bodies``, else the verdict over the first of them."""
    first: Verdict | None = None
    for body in bodies:
        verdict = check(body)
        if verdict.ok:
            return verdict
        first = first or verdict
    assert first is not None
    return first


def _verify(source: str, delivery: Delivery, endpoint: Endpoint, now: float) -> Verdict:
    try:
        plugged = _user_verifier(source, endpoint)
    except ValueError as error:
        return Verdict(INVALID, f"verifier cannot be used: {_first_line(error)}")
    if plugged is not None:
        return _run_user_verifier(plugged[0], plugged[1], delivery, endpoint)
    headers = delivery.headers
    if source == "keygen":
        url = _keygen_url(delivery, endpoint)
        return _any_body(lambda body: verify_keygen(
            body, headers, keys=endpoint.public_keys, url=url, now=now,
            tolerance=endpoint.tolerance, future_skew=endpoint.future_skew,
            method=delivery.method or "post"), _signed_bodies(delivery, as_received_first=True))
    if source == "standard":
        return _any_body(lambda body: verify_standard(
            body, headers, secrets=endpoint.secrets, public_keys=endpoint.public_keys, now=now,
            tolerance=endpoint.tolerance), _signed_bodies(delivery, as_received_first=False))
    if source == "fno":
        return verify_fno(delivery.body, headers, remote_addr=delivery.remote_addr,
                          auth=endpoint.auth, username=endpoint.username,
                          password=endpoint.password, tokens=endpoint.tokens,
                          allow_ips=endpoint.allow_ips)
    if source == "zentitle":
        return _any_body(lambda body: verify_zentitle(body, headers, keys=endpoint.public_keys),
                         _signed_bodies(delivery, as_received_first=False))
    if source == "licensespring":
        return Verdict(UNCHECKED, "LicenseSpring publishes no signature scheme; configure a "
                                  "verifier to check it")
    return Verdict(UNCHECKED, f"no verifier configured for {source} deliveries")


def _secrets_of(endpoint: Endpoint) -> list[str]:
    values = [*endpoint.secrets, *endpoint.tokens, endpoint.password or "",
              endpoint.signing_key or ""]
    for secret in endpoint.secrets:
        text = secret.strip()
        values.append(text[len("whsec_"):] if text.startswith("whsec_") else text)
    if endpoint.username is not None and endpoint.password:
        values.append(_b64(f"{endpoint.username}:{endpoint.password}".encode()))
    return sorted({value for value in values if len(value) >= 4}, key=len, reverse=True)


def _scrub(verdict: Verdict, endpoint: Endpoint) -> Verdict:
    reason = verdict.reason
    if not reason:
        return verdict
    changed = reason
    for secret in _secrets_of(endpoint):
        if secret in changed:
            changed = changed.replace(secret, "[redacted]")
    if len(changed) > 300:
        changed = changed[:299] + "…"
    return verdict if changed == reason else Verdict(verdict.status, changed)


def verify(source: str, delivery: Delivery, endpoint: Endpoint,
           now: float | None = None) -> Verdict:
    """Check ``delivery`` by the scheme of ``source`` with what ``endpoint`` configures.

    A verifier named by the endpoint's ``verifier`` setting replaces the built-in check for any
    source; entry points in group ``receiver.verifiers`` serve sources without a built-in
    scheme (``licensespring``, ``generic``, others). Never raises for client input: an
    unexpected error is logged and answered ``invalid``.
    """
    moment = time.time() if now is None else now
    try:
        verdict = _verify(source, delivery, endpoint, moment)
    except Exception:  # a bug here must not become a 500 for the sender
        log.exception("verifying a %s delivery to endpoint %s failed", source, endpoint.name)
        verdict = Verdict(INVALID, "verification failed with an internal error (logged)")
    return _scrub(verdict, endpoint)


def _check_public_keys(endpoint: Endpoint, where: str) -> None:
    total = len(endpoint.public_keys)
    for index, text in enumerate(endpoint.public_keys, start=1):
        which = f"key {index} of {total} " if total > 1 else ""
        shown = _quote(text.strip(), 24)
        try:
            key = load_public_key(text)
        except ValueError as error:
            raise ConfigError(f"{where}.public_key: {which}{shown} cannot be parsed ({error}); "
                              "expected 64 hex characters (Ed25519), base64 DER or PEM") from None
        kind = _key_kind(key)
        source = endpoint.source
        if source == "keygen" and not (
                isinstance(key, (ed25519.Ed25519PublicKey, rsa.RSAPublicKey))
                or (isinstance(key, ec.EllipticCurvePublicKey)
                    and isinstance(key.curve, ec.SECP256R1))):
            raise ConfigError(f"{where}.public_key: {which}{shown} is {kind}; Keygen signs with "
                              "Ed25519, RSA or EC P-256")
        if source == "zentitle" and not isinstance(key, rsa.RSAPublicKey):
            raise ConfigError(f"{where}.public_key: {which}{shown} is {kind}; Zentitle's "
                              "N-Signature needs an RSA key")
        if source == "standard" and not isinstance(key, ed25519.Ed25519PublicKey):
            raise ConfigError(f"{where}.public_key: {which}{shown} is {kind}; Standard Webhooks "
                              "v1a needs an Ed25519 (whpk_) key")
    _parsed_public_keys(tuple(endpoint.public_keys))  # warm the cache verify() reads


def _check_signing_key(endpoint: Endpoint, where: str) -> None:
    text = endpoint.signing_key
    source = endpoint.source
    if not text or source not in ("keygen", "zentitle", "standard"):
        return
    if source == "standard" and not text.strip().startswith("whsk_"):
        try:
            decode_whsec(text)
        except ValueError as error:
            raise ConfigError(f"{where}.signing_key: {error}") from None
        return
    try:
        key = load_private_key(text)
    except ValueError as error:
        raise ConfigError(f"{where}.signing_key: {error}") from None
    if source == "keygen":
        try:
            _default_keygen_algorithm(key)
        except ValueError as error:
            raise ConfigError(f"{where}.signing_key: {error}") from None
    elif source == "zentitle" and not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}.signing_key: N-Signature needs an RSA private key, got "
                          f"{_key_kind(key)}")
    elif source == "standard" and not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{where}.signing_key: a whsk_ key must be Ed25519")


def check_endpoint(endpoint: Endpoint) -> None:
    """Parse every key and secret of ``endpoint`` (filling the caches ``verify`` reads) and
    resolve its ``verifier``; raise ``ConfigError("endpoints.<name>.<setting>: …")`` for the
    first that cannot be used. Messages show public keys' first characters, never secrets."""
    where = f"endpoints.{endpoint.name}"
    _check_public_keys(endpoint, where)
    if endpoint.source == "standard":
        total = len(endpoint.secrets)
        for index, secret in enumerate(endpoint.secrets, start=1):
            try:
                decode_whsec(secret)
            except ValueError as error:
                which = f" (entry {index} of {total})" if total > 1 else ""
                raise ConfigError(f"{where}.secrets{which}: {error}") from None
    _check_signing_key(endpoint, where)
    if endpoint.allow_ips:
        try:
            _networks(tuple(endpoint.allow_ips))
        except ValueError as error:
            raise ConfigError(f"{where}.allow_ips: {error}") from None
    for name in ("tolerance", "future_skew"):
        if getattr(endpoint, name) < 0:
            raise ConfigError(f"{where}.{name}: must be 0 or more seconds")
    if endpoint.verifier:
        try:
            load_verifier(endpoint.verifier)
        except ValueError as error:
            raise ConfigError(f"{where}.verifier: {error}") from None
    elif endpoint.source and endpoint.source not in BUILTIN_SCHEMES:
        try:
            entry_point_verifier(endpoint.source)
        except ValueError as error:
            raise ConfigError(f"{where}.source: {error}") from None


def sign(
    source: str,
    body: bytes,
    endpoint: Endpoint,
    *,
    url: str | None = None,
    now: float | None = None,
    webhook_id: str | None = None,
    spelling: str = "webhook",
) -> list[tuple[str, str]]:
    """The headers the real sender would add to ``body`` for ``endpoint`` (for ``receiver
    trigger`` and tests). Signs with ``endpoint.signing_key``: a Keygen private key, a
    Zentitle RSA private key, a Standard Webhooks ``whsec_``/``whsk_`` secret (headers named
    ``webhook-*``, or ``svix-*`` with ``spelling="svix"``), FNO credentials
    (``user:password`` or a bearer token). Symmetric schemes fall back to what the endpoint
    verifies with (the first ``secrets`` entry; ``username``/``password`` or the first token).
    Content-Type and the like are the caller's. Raises ``ValueError`` when there is nothing to
    sign with."""
    key = endpoint.signing_key
    if source == "keygen":
        target = url or endpoint.url
        if not key:
            raise ValueError(f"endpoint {endpoint.name!r} has no signing_key (a Keygen private "
                             "key) to sign with")
        if not target:
            raise ValueError("Keygen signs the endpoint URL: configure url or pass url=")
        return sign_keygen(body, key, url=target, now=now)
    if source == "standard":
        secret = key or (endpoint.secrets[0] if endpoint.secrets else None)
        if not secret:
            raise ValueError(f"endpoint {endpoint.name!r} has no signing_key or secrets to "
                             "sign with")
        return sign_standard(body, secret, webhook_id=webhook_id, now=now, spelling=spelling)
    if source == "zentitle":
        if not key:
            raise ValueError(f"endpoint {endpoint.name!r} has no signing_key (an RSA private "
                             "key) to sign with")
        return sign_rsa_body(body, key, header="N-Signature")
    if source == "fno":
        auth = (endpoint.auth or "").lower()
        if key:
            if auth == "bearer" or (auth != "basic" and ":" not in key):
                return sign_fno(token=key)
            user, colon, password = key.partition(":")
            if not colon:
                raise ValueError("an FNO Basic signing_key is user:password")
            return sign_fno(username=user, password=password)
        if auth != "bearer" and endpoint.username is not None and endpoint.password is not None:
            return sign_fno(username=endpoint.username, password=endpoint.password)
        if auth != "basic" and endpoint.tokens:
            return sign_fno(token=endpoint.tokens[0])
        raise ValueError(f"endpoint {endpoint.name!r} has no FNO credentials to send")
    raise ValueError(f"{source} has no signature scheme to sign with")
