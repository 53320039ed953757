"""``RECEIVER_INSPECTOR_TOKEN`` (docs/reference.md#access): ingest, health and the OpenAPI
description stay open, everything else needs the token as ``Authorization: Bearer`` or the
signed session set by ``/login``.

Without a token everything is open. With one, a browser asking for a page is sent to
``/login`` (and back afterwards); JSON clients get a 401. The session cookie (signed with
``SECRET_KEY``, ``HttpOnly``, ``SameSite=Lax``) holds an HMAC of the token, never the token,
and a random id made at sign-in. The store keeps a row per sign-in (``Store.start_session``,
read by primary key on each request): signing out deletes it, so a cookie copied before
``POST /logout`` is refused after it on every worker and node; a sign-in ends
``PERMANENT_SESSION_LIFETIME`` (31 days) after it was made, however often it is used; and a
changed token signs every browser out (its proof no longer matches, and a serving app
deletes the sessions of other tokens when it starts).

Wrong tokens are braked (``web/brake.py``): a few from one client address within a minute,
and that address's tokens are answered 429 with ``Retry-After`` until it cools down.

The token never travels in a URL (browser history, proxy logs). What ``receiver serve`` and
``receiver login-link`` print instead is a one-time link, ``/login/<code>``: the code is a
random nonce signed with ``SECRET_KEY`` (itsdangerous, with its time), good for
``LOGIN_LINK_MINUTES`` and for one sign-in. Opening it shows a button; the POST behind it
marks the nonce used in the database (``Store.use_login_nonce``), so it works once across
every worker and node, and a link preview or prefetch (a GET) cannot use it up.
"""

from __future__ import annotations

import datetime as dt
import secrets
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from werkzeug.wrappers import Response

from ..errors import ReceiverError
from ..events import format_time
from ..login_links import LOGIN_LINK_MINUTES, LinkRefused, read_login_code
from .brake import FAILURES, TokenBrake
from .common import (
    SESSION_ID_KEY,
    SESSION_KEY,
    configured_token,
    error_response,
    get_store,
    is_signed_in,
    session_hash,
    session_proof,
    share_page_behaviour,
    signed_in_with_session,
    token_matches,
    wants_json,
)
from .csrf import check_csrf

# The OpenAPI description is open too: it is the file shipped in the package, with no data
# or settings in it, and tools read the bearer scheme from it before they have the token.
OPEN_PREFIXES = ("/hooks", "/-/health", "/api/openapi.json", "/login", "/logout", "/static/")
#: Open too when ``RECEIVER_METRICS_OPEN`` is true (a scraper without the token).
METRICS_PATH = "/-/metrics"

bp = Blueprint("access", __name__)
share_page_behaviour(bp)  # the login pages look and answer like the inspector's


class Unauthenticated(ReceiverError):
    status = 401


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, marked ``Secure`` whenever the request came over HTTPS
    (``SESSION_COOKIE_SECURE`` forces it, e.g. behind a proxy that ends TLS)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app)
                    or (has_request_context() and request.is_secure))


def sign_in() -> None:
    """A fresh session (and CSRF id) for the signed-in browser, with a random id of its own
    recorded in the store, so that signing out ends it everywhere."""
    token = configured_token()
    session.clear()
    g.pop("_signed_in_with_session", None)
    if token:
        session_id = secrets.token_urlsafe(24)
        proof = session_proof(token)
        ends = dt.datetime.now(dt.UTC) + current_app.permanent_session_lifetime
        get_store().start_session(session_hash(session_id), proof, format_time(ends))
        session[SESSION_KEY] = proof
        session[SESSION_ID_KEY] = session_id
        session.permanent = True


def sign_out() -> None:
    """End this browser's sign-in in the store (every worker and node refuses its cookie from
    now on) and clear the cookie."""
    session_id = session.get(SESSION_ID_KEY)
    if isinstance(session_id, str):
        get_store().end_session(session_hash(session_id))
    session.clear()
    g.pop("_signed_in_with_session", None)


def end_sessions_of_other_tokens(app: Flask) -> int:
    """At the start of a serving app: sign out every session made with another token than
    this app's (every session when it has none), so a token changed and changed back does
    not bring old sessions back."""
    token = app.config.get("INSPECTOR_TOKEN") or None
    with app.app_context():
        keep = session_proof(token) if token else None
        return get_store().end_sessions(keep_token_proof=keep)


def safe_next(value: str | None) -> str:
    """A local path to return to after signing in; anything else goes to the history."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _wanted_path() -> str:
    return request.full_path.rstrip("?") if request.query_string else request.path


def token_brake() -> TokenBrake:
    brake: TokenBrake = current_app.extensions["receiver.token_brake"]
    return brake


def client_address() -> str:
    """Who the brake counts: the peer, or the client a trusted proxy names
    (``TRUSTED_PROXIES``)."""
    return request.remote_addr or ""


def braked_message(wait: int) -> str:
    return (f"too many wrong inspector tokens from {client_address()}: try again in {wait} "
            "seconds")


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    next_url = safe_next(request.values.get("next"))
    if not configured_token():
        return render_template("login.html", open_access=True, next_url=next_url)
    candidate: str | None = None
    if request.method == "POST":
        check_csrf()
        wait = token_brake().retry_after(client_address())
        if wait is not None:
            page = render_template("login.html", next_url=next_url, error=braked_message(wait))
            return Response(page, 429, {"Retry-After": str(wait)}, mimetype="text/html")
        candidate = request.form.get("token", "")
    elif "token" in request.args:
        return render_template(
            "login.html", next_url=next_url,
            error="The token is not taken from a URL (it would stay in browser history and "
                  "proxy logs): enter it here, or open the one-time link that receiver serve "
                  "or receiver login-link printed."), 400
    if candidate is not None:
        if token_matches(candidate.strip()):
            sign_in()
            return redirect(next_url, 303)
        token_brake().failed(client_address())
        return render_template("login.html", next_url=next_url,
                               error="That is not this receiver's inspector token."), 401
    if signed_in_with_session():
        return redirect(next_url, 303)
    return render_template("login.html", next_url=next_url)


@bp.route("/login/<code>", methods=["GET", "POST"])
def login_link(code: str) -> Response | tuple[str, int] | str:
    """A one-time sign-in link: GET shows a button, its POST signs in and uses the link up."""
    if not configured_token():
        return redirect(url_for("access.login"), 303)
    try:
        nonce = read_login_code(current_app.secret_key or "", code)
    except LinkRefused as error:
        return render_template("login.html", next_url="/", error=error.message), error.status
    if request.method == "GET":
        return render_template("login.html", next_url="/", link_code=code,
                               minutes=LOGIN_LINK_MINUTES)
    check_csrf()
    if not current_app.extensions["receiver.store"].use_login_nonce(nonce):
        return render_template(
            "login.html", next_url="/",
            error="This sign-in link was used already; each link signs in once. Sign in with "
                  "the inspector token, or make a new link with receiver login-link."), 401
    sign_in()
    return redirect("/", 303)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    if request.method == "POST":
        check_csrf()
        sign_out()
        return redirect(url_for("access.login", signed_out=1), 303)
    if not signed_in_with_session():
        return redirect(url_for("access.login"), 303)
    return render_template("logout.html")


def init_app(app: Flask) -> None:
    # Flask's defaults are None and "session"; settings passed in explicitly win. Our own
    # cookie name, because cookies are per host, not per port: another Flask app on
    # localhost would otherwise overwrite the session.
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if app.config.get("SESSION_COOKIE_NAME") == "session":
        app.config["SESSION_COOKIE_NAME"] = "receiver_session"
    app.session_interface = SessionInterface()

    app.register_blueprint(bp)
    app.extensions["receiver.token_brake"] = TokenBrake(
        failures=app.config.get("TOKEN_BRAKE", FAILURES))

    @app.before_request
    def require_token() -> Response | None:
        if request.path.startswith(OPEN_PREFIXES) or request.path == "/favicon.ico":
            return None
        if request.path == METRICS_PATH and current_app.config.get("METRICS_OPEN"):
            return None
        sent = bearer_token() if configured_token() else None
        if sent is not None:
            wait = token_brake().retry_after(client_address())
            if wait is not None:
                return braked(wait)
        if is_signed_in():
            return None
        if sent is not None:
            token_brake().failed(client_address())
        if request.method in ("GET", "HEAD") and not wants_json():
            return redirect(url_for("access.login", next=_wanted_path()), 303)
        raise Unauthenticated("this receiver needs its inspector token: send "
                              "Authorization: Bearer <token> or sign in at /login")

    @app.after_request
    def not_stored(response: Response) -> Response:
        """Nothing behind the token is kept by a browser or a proxy cache: pages, JSON
        answers (revealed secrets, raw bodies), errors. Ingest and static files may be."""
        if not request.path.startswith(("/hooks", "/static/")):
            response.headers["Cache-Control"] = "no-store"
        return response


def braked(wait: int) -> Response:
    """The 429 of a braked address (JSON, or the error page), with ``Retry-After``."""
    message = braked_message(wait)
    if wants_json():
        response = error_response(429, message)
    else:
        response = Response(render_template("error.html", status=429, message=message), 429,
                            mimetype="text/html")
    response.headers["Retry-After"] = str(wait)
    return response
