"""Keys, parsed once and cached by their text, and the two signature checks more than one
scheme uses: Ed25519 through libsodium (Keygen, Standard Webhooks ``v1a``) and RSA PKCS#1 v1.5
over the raw body (Keygen's legacy ``X-Signature``, Zentitle's ``N-Signature``).

PEM or DER is decoded once per process, not once per request; ``check_endpoint`` fills these
caches at start and ``reset_caches`` empties them."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509 import load_der_x509_certificate, load_pem_x509_certificate
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from .common import INVALID, VALID, Verdict, b64, b64decode, first_line

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_HEX_PRIVATE = re.compile(r"[0-9a-fA-F]{64}(?:[0-9a-fA-F]{64})?")


def _normalise_pem(text: str) -> bytes:
    if "\\n" in text:  # a PEM pasted into an environment variable
        text = text.replace("\\n", "\n")
    return "\n".join(line.strip() for line in text.strip().splitlines()).encode("ascii")


def key_kind(key: PublicKeyTypes | PrivateKeyTypes) -> str:
    """What a key is ("Ed25519", "RSA", "EC secp256r1"), for reasons and config errors."""
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
        raw = b64decode("".join(text.split()))
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(f"not a public key: {first_line(error)}") from None
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
        raw = b64decode("".join(text.split()))
        if len(raw) in (32, 64):
            return ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
        return serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not a private key: expected PEM, 64 hex characters (Ed25519), "
                         "whsk_ base64 or base64 DER PKCS#8") from None


@functools.lru_cache(maxsize=256)
def parsed_public_keys(texts: tuple[str, ...]) -> tuple[tuple[PublicKeyTypes, ...], int]:
    """Every key that parses, and how many did not (those are reported by check_endpoint)."""
    keys: list[PublicKeyTypes] = []
    bad = 0
    for text in texts:
        try:
            keys.append(load_public_key(text))
        except ValueError:
            bad += 1
    return tuple(keys), bad


def public_keys_of(keys: Sequence[str | PublicKeyTypes]) -> tuple[tuple[PublicKeyTypes, ...], int]:
    """Configured keys (text, or already parsed) as key objects, and how many did not parse;
    all-text lists, the usual case, come from the cache."""
    if all(isinstance(key, str) for key in keys):
        return parsed_public_keys(tuple(keys))  # type: ignore[arg-type]
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


def verify_rsa_body(body: bytes, header: str, keys: Sequence[rsa.RSAPublicKey],
                    name: str) -> Verdict:
    """base64 RSA PKCS#1 v1.5 SHA-256 over the raw body (Keygen legacy, Zentitle)."""
    try:
        signature = b64decode(header)
    except ValueError:
        return Verdict(INVALID, f"{name} is not valid base64")
    for key in keys:
        try:
            key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
            return Verdict(VALID)
        except (InvalidSignature, ValueError):
            continue
    return Verdict(INVALID, f"no configured key matched the {name} (tried {len(keys)})")


def sign_rsa_body(body: bytes, private_key: str | PrivateKeyTypes, *,
                  header: str = "X-Signature") -> list[tuple[str, str]]:
    """base64 RSA PKCS#1 v1.5 SHA-256 over the raw body, in ``header`` (Keygen's legacy
    ``X-Signature``; Zentitle's ``N-Signature``)."""
    key = load_private_key(private_key) if isinstance(private_key, str) else private_key
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{header} needs an RSA private key, got {key_kind(key)}")
    return [(header, b64(key.sign(body, padding.PKCS1v15(), hashes.SHA256())))]


def clear_caches() -> None:
    """Forget every parsed key (``reset_caches`` calls this)."""
    for cached in (load_public_key, load_private_key, parsed_public_keys, _libsodium_key):
        cached.cache_clear()
