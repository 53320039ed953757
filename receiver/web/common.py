"""What every blueprint of ``receiver.web`` shares, so that none imports another: the store of
the app, who is signed in, how records are shown (masked unless revealed), error answers
(JSON or a page) and the security headers of pages. Imports no blueprint.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from flask import Blueprint, current_app, g, jsonify, render_template, request, session
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..errors import ReceiverError
from ..events import Event
from ..read import changes, mask
from ..store import ActivityFilters, Store, rollups

RETRY_AFTER_SECONDS = "5"
#: The session key holding the proof that this browser signed in (an HMAC of the token).
SESSION_KEY = "inspector"
#: The session key holding this sign-in's random id (its SHA-256 is the store's row).
SESSION_ID_KEY = "sid"

# -- the store -------------------------------------------------------------------------------


def get_store() -> Store:
    store: Store = current_app.extensions["receiver.store"]
    return store


# -- who is asking ---------------------------------------------------------------------------


def configured_token() -> str | None:
    token: str | None = current_app.config.get("INSPECTOR_TOKEN")
    return token or None


def token_matches(candidate: str | None) -> bool:
    token = configured_token()
    if not token:
        return True
    if not candidate:
        return False
    return hmac.compare_digest(candidate.encode(), token.encode())


def session_proof(token: str) -> str:
    """What the session keeps: an HMAC of the token under the app's secret key."""
    secret = current_app.secret_key or ""
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    return hmac.new(key, b"inspector-session:" + token.encode(), hashlib.sha256).hexdigest()


def session_hash(session_id: str) -> str:
    """What the store keeps of a sign-in's id: its SHA-256 (a copy of the table is no
    cookie)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def signed_in_with_session() -> bool:
    """True when a token is configured and this browser signed in at ``/login`` with it and
    has not signed out (the store's row of its sign-in: one read per request)."""
    token = configured_token()
    if not token:
        return False
    if "_signed_in_with_session" not in g:
        proof, session_id = session.get(SESSION_KEY), session.get(SESSION_ID_KEY)
        g._signed_in_with_session = False  # also when the store fails below
        if (isinstance(proof, str) and isinstance(session_id, str)
                and hmac.compare_digest(proof, session_proof(token))):
            g._signed_in_with_session = get_store().session_alive(session_hash(session_id),
                                                                  proof)
    found: bool = g._signed_in_with_session
    return found


def is_signed_in() -> bool:
    """True when no token is configured, or the request carries it (header or session)."""
    if not configured_token():
        return True
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer " and token_matches(header[7:].strip()):
        return True
    return signed_in_with_session()


def reveal() -> bool:
    """Secrets are masked unless a signed-in user explicitly asks (``?reveal=1``)."""
    return request.args.get("reveal") in ("1", "true", "yes") and is_signed_in()


# -- records as answers ------------------------------------------------------------------------


def masker() -> mask.Masker:
    """The app's masking: the built-in names and ``MASK_NAMES`` (made once per app)."""
    found = current_app.extensions.get("receiver.masker")
    if found is None:
        found = mask.Masker(current_app.config.get("MASK_NAMES") or ())
        current_app.extensions["receiver.masker"] = found
    return found


def event_json(event: Event, *, revealed: bool = False,
               out_of_order: bool | None = None) -> dict[str, Any]:
    """The event record as answers show it (``out_of_order`` added when it was asked)."""
    record = event.as_dict()
    if not revealed:
        record["data"] = masker().data(record["data"])
    if out_of_order is not None:
        record["out_of_order"] = out_of_order
    return record


def event_changes(store: Store, event: Event, *, revealed: bool) -> dict[str, Any]:
    """``GET /api/events/<id>/changes`` and the event page: the difference of the event's
    data against the previous event of its subject, masked unless revealed."""
    previous = store.previous_event(event)
    found = changes.diff(previous.data, event.data) if previous is not None else []
    if not revealed:
        found = [changes.masked(change, masker()) for change in found]
    return {"previous_id": previous.id if previous is not None else None,
            "out_of_order": event.id in store.out_of_order_ids([event.id]),
            "changes": found}


def delivery_json(record: dict[str, Any], *, revealed: bool = False) -> dict[str, Any]:
    record = dict(record)
    record.pop("body", None)
    if not revealed:
        record["headers"] = masker().headers(record["headers"])
        if record.get("query"):
            record["query"] = masker().query(record["query"])
    return record


# -- the header of every page ---------------------------------------------------------------


def open_problem_total() -> int | None:
    """Open problems in all, for the header of a page: asked once per request and only when
    a page's header shows it (never by ingest or the JSON API). None when the reader is not
    signed in or the database does not answer (an error page must still render)."""
    if "_open_problems" not in g:
        total: int | None = None
        if is_signed_in():
            try:
                total = sum(get_store().open_problem_counts().values())
            except ReceiverError:
                total = None
        g._open_problems = total
    found: int | None = g._open_problems
    return found


def request_totals() -> dict[str, int] | None:
    """The counts on the header's tabs: ``events`` (first deliveries of an event),
    ``deliveries`` (every stored request: new, duplicate, refused) and ``rejected``. Read
    from the activity rollups by day (those retention keeps, as it keeps the rows), never
    by counting rows, so a page stays as quick at a million deliveries; once per request.
    None when the reader is not signed in or the database does not answer."""
    if "_request_totals" not in g:
        totals: dict[str, int] | None = None
        if is_signed_in():
            now = dt.datetime.now(dt.UTC)
            try:
                found = rollups.window(now - rollups.STEP["day"] * (rollups.MAX_BUCKETS - 1),
                                       now, "day", now)
                buckets = get_store().activity(found, ActivityFilters())
            except (ReceiverError, ValueError):
                buckets = None
            if buckets is not None:
                new, duplicate, refused = (sum(bucket[name] for bucket in buckets)
                                           for name in ("new", "duplicate", "refused"))
                totals = {"events": new, "deliveries": new + duplicate + refused,
                          "rejected": refused}
        g._request_totals = totals
    found_totals: dict[str, int] | None = g._request_totals
    return found_totals


def page_header_context() -> dict[str, Any]:
    """For ``app.context_processor``: the header's counts, as functions the base template
    calls (a fragment that does not show the header costs no query)."""
    return {"open_problem_total": open_problem_total, "request_totals": request_totals,
            "signed_in": is_signed_in}


# -- errors and page headers --------------------------------------------------------------------


def wants_json() -> bool:
    path = request.path
    return (path.startswith(("/hooks", "/api", "/-/")) or request.is_json
            or request.accept_mimetypes.best == "application/json")


def error_response(status: int, message: str) -> Response:
    response = jsonify({"ok": False, "error": message})
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def add_security_headers(response: Response) -> Response:
    """No inline script or style runs, nothing is framed or cached (pages may show secrets)."""
    if response.mimetype == "text/html":
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def page_error(error: Exception) -> Response | tuple[str, int]:
    """ReceiverError (a bad filter, an unknown id, a refused CSRF token, ...) as a page."""
    if isinstance(error, HTTPException):
        status, message = error.code or 500, error.description or error.name
    elif isinstance(error, ReceiverError):
        status, message = error.status, error.message
    else:  # pragma: no cover - only the two kinds are registered
        raise error
    if wants_json():
        return error_response(status, message)
    return render_template("error.html", status=status, message=message), status


def share_page_behaviour(blueprint: Blueprint) -> None:
    """HTML error pages and security headers for a blueprint of pages (before registering)."""
    blueprint.register_error_handler(ReceiverError, page_error)
    blueprint.register_error_handler(HTTPException, page_error)
    blueprint.after_request(add_security_headers)
