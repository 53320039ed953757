"""One-time sign-in links: ``receiver serve`` and ``receiver login-link`` mint them for the
terminal, ``web/access`` redeems them. Flask-free, so the CLI needs no web internals.

A link's code is a random nonce signed with its time (itsdangerous); the store remembers the
nonces used, so a link works once and for ``LOGIN_LINK_MINUTES``.
"""

from __future__ import annotations

import secrets

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from .errors import ReceiverError

LOGIN_LINK_SALT = "receiver.login-link"
LOGIN_LINK_MINUTES = 15


def _link_serializer(secret_key: str | bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=LOGIN_LINK_SALT)


def make_login_code(secret_key: str | bytes) -> str:
    """The code of a fresh one-time sign-in link (``/login/<code>``): a random nonce, signed
    with its time. It holds nothing secret; the signature is what makes it a key."""
    return _link_serializer(secret_key).dumps({"n": secrets.token_urlsafe(16)})


class LinkRefused(ReceiverError):
    """A sign-in link that is not ours, too old or used."""

    status = 401


def read_login_code(secret_key: str | bytes, code: str) -> str:
    """The nonce of a sign-in link still in its time; ``LinkRefused`` with the reason."""
    try:
        value = _link_serializer(secret_key).loads(code, max_age=LOGIN_LINK_MINUTES * 60)
    except SignatureExpired:
        raise LinkRefused(f"This sign-in link has expired (links last {LOGIN_LINK_MINUTES} "
                          "minutes). Sign in with the inspector token, or make a new link "
                          "with receiver login-link.") from None
    except BadData:
        raise LinkRefused("This is not a sign-in link of this receiver (it was changed, or "
                          "made with another SECRET_KEY).") from None
    nonce = value.get("n") if isinstance(value, dict) else None
    if not isinstance(nonce, str) or not nonce:
        raise LinkRefused("This is not a sign-in link of this receiver.")
    return nonce
