"""Zentitle2: ``N-Signature``, an RSA signature over the raw body (the check itself is
``keys.verify_rsa_body``, shared with Keygen's legacy ``X-Signature``)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from .common import INVALID, UNCHECKED, UNSIGNED, Headers, Verdict, header_map
from .keys import public_keys_of, verify_rsa_body


def verify_zentitle(body: bytes, headers: Headers, *,
                    keys: Sequence[str | PublicKeyTypes]) -> Verdict:
    """Check a Zentitle2 webhook (docs/senders.md, "Zentitle").

    *Assumed* (Zentitle documents only "an RSA signature over the payload" in ``N-Signature``):
    base64 RSA PKCS#1 v1.5 with SHA-256 over the raw body bytes, checked with each RSA key.
    """
    found = header_map(headers)
    header = found.get("n-signature")
    if not keys:
        if header is not None:
            return Verdict(UNCHECKED, "no Zentitle RSA public key configured")
        return Verdict(UNSIGNED, "no N-Signature header (and no public key configured)")
    parsed, _ = public_keys_of(keys)
    rsa_keys = [key for key in parsed if isinstance(key, rsa.RSAPublicKey)]
    if not rsa_keys:
        return Verdict(INVALID, "no usable RSA public key configured for N-Signature")
    if header is None:
        return Verdict(UNSIGNED, "missing N-Signature header")
    return verify_rsa_body(body, header, rsa_keys, "N-Signature")
