"""CSRF tokens for the inspector's forms (docs/reference.md#access): signed with itsdangerous
and tied to the session, so a form posted from another site, another browser or another
session is refused with a 403 that says why.

The session holds a random id; each form carries that id signed with ``SECRET_KEY`` and a
timestamp. A request passes when the signature holds, the token is younger than
``MAX_AGE`` and the id is the one in this request's session.
"""

from __future__ import annotations

import hmac
import secrets

from flask import current_app, g, request, session
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from ..errors import ReceiverError

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SESSION_KEY = "csrf"
SALT = "receiver.csrf"
MAX_AGE = 24 * 3600  # an inspector tab stays open all day


class CSRFError(ReceiverError):
    """A form without a valid token for this session."""

    status = 403


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=SALT)


def csrf_token() -> str:
    """The token to put in this request's forms (made once per request)."""
    token: str | None = g.get("_csrf_token")
    if token is None:
        if not isinstance(session.get(SESSION_KEY), str):
            session[SESSION_KEY] = secrets.token_urlsafe(18)
        token = _serializer().dumps(session[SESSION_KEY])
        g._csrf_token = token
    return token


def check_csrf() -> None:
    """Raise ``CSRFError`` unless the request's form (or header) carries this session's token."""
    sent = request.form.get(FIELD) or request.headers.get(HEADER)
    if not sent:
        raise CSRFError("this form has no CSRF token; reload the page and submit it again")
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str):
        raise CSRFError("the CSRF token does not belong to this session (the session cookie is "
                        "missing or expired); reload the page and submit it again")
    try:
        value = _serializer().loads(sent, max_age=MAX_AGE)
    except SignatureExpired:
        raise CSRFError("the CSRF token of this form has expired; reload the page and submit "
                        "it again") from None
    except BadData:
        raise CSRFError("the CSRF token of this form is not valid; reload the page and submit "
                        "it again") from None
    if not isinstance(value, str) or not hmac.compare_digest(value, expected):
        raise CSRFError("the CSRF token belongs to another session; reload the page and "
                        "submit it again")
