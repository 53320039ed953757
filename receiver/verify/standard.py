"""Standard Webhooks (and Svix, read through the same three headers): ``v1`` HMAC-SHA256 with
``whsec_`` secrets, ``v1a`` Ed25519 with ``whpk_`` keys, over ``<id>.<timestamp>.<body>``.

Header names and their Svix spelling live with the dialect (``dialects.standard``)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import time
import uuid
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ..dialects.standard import rename_headers, standard_headers
from .common import (
    INVALID,
    UNCHECKED,
    UNSIGNED,
    VALID,
    Headers,
    Verdict,
    b64,
    b64decode,
    freshness,
    header_map,
    quote,
    wire_bytes,
)
from .keys import ed25519_valid, load_private_key, public_keys_of


@functools.lru_cache(maxsize=256)
def decode_whsec(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after the ``whsec_`` prefix (the
    prefix is optional, padding too, as in the reference library). Raises ``ValueError``."""
    text = secret.strip()
    if text.startswith("whsec_"):
        text = text[len("whsec_"):]
    try:
        key = b64decode(text)
    except ValueError:
        raise ValueError("not a whsec_ secret: the part after whsec_ is not base64") from None
    if not key:
        raise ValueError("not a whsec_ secret: it is empty")
    return key


def verify_standard(
    body: bytes,
    headers: Headers,
    *,
    secrets: Sequence[str] = (),
    public_keys: Sequence[str | PublicKeyTypes] = (),
    now: float | None = None,
    tolerance: float = 300,
) -> Verdict:
    """Check a Standard Webhooks request (docs/senders.md, "Standard Webhooks").

    Signed content is ``<webhook-id>.<webhook-timestamp>.<body>``. Each space-separated entry of
    ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>`` (keyed with each ``whsec_`` secret)
    or ``v1a,<base64 Ed25519>`` (checked with each Ed25519 key in ``public_keys``, usually
    ``whpk_…``); other versions are skipped; any match passes. The timestamp may be at most
    ``tolerance`` seconds away from ``now`` in either direction. Svix's ``svix-id``,
    ``svix-timestamp`` and ``svix-signature`` are read as the same three headers
    (``dialects.standard.standard_headers``); reasons name the spelling the request used.
    """
    now = time.time() if now is None else now
    found, spelling = standard_headers(header_map(headers))
    signature_header = found.get("webhook-signature")
    hmac_keys: list[bytes] = []
    for secret in secrets:
        try:
            hmac_keys.append(decode_whsec(secret))
        except ValueError:
            continue
    parsed, _ = public_keys_of(public_keys)
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
        return Verdict(INVALID, f"{spelling}-timestamp is not a unix timestamp: {quote(stamp)}")
    stale = freshness(f"{spelling}-timestamp", sent, now, tolerance, tolerance)
    if stale:
        return Verdict(INVALID, stale)

    content = wire_bytes(msg_id) + b"." + wire_bytes(stamp) + b"." + body
    v1 = v1a = 0
    expected = [hmac.new(key, content, hashlib.sha256).digest() for key in hmac_keys]
    for entry in signature_header.split():
        version, comma, encoded = entry.partition(",")
        if not comma or version not in ("v1", "v1a"):
            continue
        try:
            signature = b64decode(encoded)
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
    content = wire_bytes(msg_id) + b"." + stamp.encode("ascii") + b"." + body
    entries = []
    for item in secrets:
        if item.strip().startswith("whsk_"):
            key = load_private_key(item)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise ValueError("a whsk_ key must be an Ed25519 key")
            entries.append("v1a," + b64(key.sign(content)))
        else:
            entries.append("v1," + b64(hmac.new(decode_whsec(item), content,
                                                hashlib.sha256).digest()))
    return rename_headers([("webhook-id", msg_id), ("webhook-timestamp", stamp),
                           ("webhook-signature", " ".join(entries))], spelling)
