"""Signature and credential checks, one pure function per sender scheme, and ``sign()`` beside them.

``verify(source, delivery, endpoint)`` answers a :class:`Verdict` whose ``status`` is the
``signature_status`` of the event record (docs/reference.md, "The event record"):

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
``fetched``
    never answered here: reconcile gives it to events it took from the vendor's API with
    the endpoint's token, over TLS, rather than from a signed request.

Enforcement (the 401) is the pipeline's job; this module only answers. ``verify`` never raises
for anything a client sends, and a ``reason`` never holds a configured secret.

The per-scheme functions (``verify_keygen``, ``verify_standard``, ``verify_fno``,
``verify_zentitle``) take raw body bytes, headers (a mapping or ``(name, value)`` pairs) and
settings, and touch no global state except the key caches. Parsed keys are cached by their
text, so PEM or DER is decoded once per process, not once per request; ``check_endpoint``,
called at start, parses every configured key (filling the caches) and fails with a
``ConfigError`` that names the setting when one cannot be parsed.

One module per scheme, beside the dialect that parses the same sender's bodies
(``receiver/dialects/``): ``keygen``, ``standard``, ``fno``, ``zentitle``; ``user`` runs the
verifiers users plug in (LicenseSpring, generic JSON); ``keys`` parses and caches key material;
``common`` holds the Verdict and the helpers every scheme uses. This module dispatches by source,
scrubs secrets from reasons, checks endpoints at start and signs for ``receiver trigger``.

Each scheme is described in docs/senders.md, under its sender's heading. Assumptions this
package adds are marked *Assumed*.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..config import Endpoint
from ..errors import ConfigError
from ..events import Delivery
from . import keys, user
from .common import (
    FETCHED,
    INVALID,
    STATUSES,
    UNCHECKED,
    UNSIGNED,
    VALID,
    Headers,
    Verdict,
    b64,
    first_line,
    quote,
)
from .fno import allowed_networks, sign_fno, verify_fno
from .keygen import (
    KEYGEN_ALGORITHMS,
    default_keygen_algorithm,
    keygen_digest,
    keygen_signing_string,
    keygen_url,
    sign_keygen,
    verify_keygen,
)
from .keys import (
    ed25519_valid,
    key_kind,
    load_private_key,
    load_public_key,
    parsed_public_keys,
    sign_rsa_body,
)
from .standard import decode_whsec, sign_standard, verify_standard
from .user import (
    BUILTIN_SCHEMES,
    VERIFIER_GROUP,
    UserVerifier,
    entry_point_verifier,
    load_verifier,
    run_user_verifier,
    user_verifier,
)
from .zentitle import verify_zentitle

__all__ = [
    "BUILTIN_SCHEMES", "FETCHED", "INVALID", "KEYGEN_ALGORITHMS", "STATUSES", "UNCHECKED",
    "UNSIGNED",
    "VALID", "VERIFIER_GROUP", "Headers", "UserVerifier", "Verdict", "check_endpoint",
    "decode_whsec", "ed25519_valid", "entry_point_verifier", "keygen_digest",
    "keygen_signing_string", "load_private_key", "load_public_key", "load_verifier",
    "reset_caches", "sign", "sign_fno", "sign_keygen", "sign_rsa_body", "sign_standard",
    "verify", "verify_fno", "verify_keygen", "verify_standard", "verify_zentitle",
]

log = logging.getLogger(__name__)


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
        plugged = user_verifier(source, endpoint)
    except ValueError as error:
        return Verdict(INVALID, f"verifier cannot be used: {first_line(error)}")
    if plugged is not None:
        return run_user_verifier(plugged[0], plugged[1], delivery, endpoint)
    headers = delivery.headers
    if source == "keygen":
        url = keygen_url(delivery, endpoint)
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
        values.append(b64(f"{endpoint.username}:{endpoint.password}".encode()))
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
        shown = quote(text.strip(), 24)
        try:
            key = load_public_key(text)
        except ValueError as error:
            raise ConfigError(f"{where}.public_key: {which}{shown} cannot be parsed ({error}); "
                              "expected 64 hex characters (Ed25519), base64 DER or PEM") from None
        kind = key_kind(key)
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
    parsed_public_keys(tuple(endpoint.public_keys))  # warm the cache verify() reads


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
            default_keygen_algorithm(key)
        except ValueError as error:
            raise ConfigError(f"{where}.signing_key: {error}") from None
    elif source == "zentitle" and not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}.signing_key: N-Signature needs an RSA private key, got "
                          f"{key_kind(key)}")
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
            allowed_networks(tuple(endpoint.allow_ips))
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


def reset_caches() -> None:
    """Forget parsed keys and resolved verifiers (tests; after re-installing plugins)."""
    user.clear_caches()
    keys.clear_caches()
    decode_whsec.cache_clear()
    allowed_networks.cache_clear()
