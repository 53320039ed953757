"""Revenera FlexNet Operations: no signature, ``Authorization`` Basic or Bearer credentials
compared in constant time, and an optional allow-list of sender addresses (``allow_ips``)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import TypeAlias

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
    header_map,
    quote,
)

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=64)
def allowed_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """The parsed ``allow_ips`` CIDRs (cached; ``check_endpoint`` reports one that fails)."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def _address_allowed(remote_addr: str | None, allow_ips: Sequence[str]) -> str | None:
    """None when allowed, else the reason."""
    if remote_addr is None:
        return "remote address unknown; allow_ips is configured"
    try:
        address = ipaddress.ip_address(remote_addr.strip())
    except ValueError:
        return f"remote address {quote(remote_addr)} is not an IP address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in allowed_networks(tuple(allow_ips)):
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
    """Check a FlexNet Operations notification (docs/senders.md, "Revenera FlexNet Operations
    (FNO)"). FNO signs nothing (``body`` is unused); it sends ``Authorization: Basic``
    (``username``/``password``) or ``Bearer`` (any of ``tokens``), compared in constant time.
    ``auth`` = ``basic``/``bearer`` accepts only that kind, ``none`` checks no credentials,
    unset accepts whichever is configured. ``allow_ips`` (CIDRs) is checked first; a request
    from outside is invalid. An endpoint with only ``allow_ips`` answers valid for an allowed
    address."""
    found = header_map(headers)
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
            decoded = b64decode(credentials)
        except ValueError:
            return Verdict(INVALID, "Authorization Basic credentials are not valid base64")
        user, colon, secret = decoded.partition(b":")
        if not colon:
            return Verdict(INVALID, "Authorization Basic credentials are not user:password")
        user_ok = consteq(user, username or "")
        password_ok = consteq(secret, password or "")
        if user_ok and password_ok:
            return Verdict(VALID)
        return Verdict(INVALID, "Basic username or password does not match")
    if scheme == "bearer" and bearer:
        if not credentials:
            return Verdict(INVALID, "Authorization Bearer header has no token")
        matched = False
        for token in tokens:
            matched |= consteq(credentials, token)
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
        return [("Authorization", f"Basic {b64(pair)}")]
    raise ValueError("FNO signing needs a token, or a username and password")
