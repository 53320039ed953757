"""``RECEIVER_INSPECTOR_TOKEN``: ingest and health stay open, everything else needs the token
as ``Authorization: Bearer`` or the signed session set by ``/login``."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, request, session

from ..errors import ReceiverError

OPEN_PREFIXES = ("/hooks", "/-/health", "/login", "/static/")


class Unauthenticated(ReceiverError):
    status = 401


def token_matches(candidate: str | None) -> bool:
    token = current_app.config.get("INSPECTOR_TOKEN")
    if not token:
        return True
    if not candidate:
        return False
    return hmac.compare_digest(candidate.encode(), token.encode())


def is_signed_in() -> bool:
    """True when no token is configured, or the request carries it (header or session)."""
    if not current_app.config.get("INSPECTOR_TOKEN"):
        return True
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer " and token_matches(header[7:].strip()):
        return True
    return token_matches(session.get("inspector_token"))


def init_app(app: Flask) -> None:

    @app.before_request
    def require_token() -> None:
        if request.path.startswith(OPEN_PREFIXES) or request.path == "/favicon.ico":
            return
        if not is_signed_in():
            raise Unauthenticated("this receiver needs its inspector token: send "
                                  "Authorization: Bearer <token> or sign in at /login")
