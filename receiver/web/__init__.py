"""Blueprints and the one place errors become responses (JSON for the API and ingest).

``ingest``, ``api``, ``inspect``, ``handlers``, ``problems`` and ``access`` are the blueprints;
what they share lives in ``common`` (with ``csrf``, ``chart`` and ``streaming``), which
imports none of them. Only this package reads Flask's ``request``; it may import every
package below it (``ingest``, ``handlers``, ``problems``, ``read``, ``clients``,
``store``...), and nothing below imports it.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from ..errors import ReceiverError, StorageUnavailable
from . import access, api, handlers, ingest, inspect, problems
from .common import error_response, page_header_context, wants_json

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    ingest.init_app(app)
    app.register_blueprint(api.bp)
    inspect.init_app(app)
    handlers.init_app(app)
    problems.init_app(app)
    access.init_app(app)
    app.context_processor(page_header_context)  # the open problems in every page's header
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # Outermost, so ingest (FNO allow_ips, the stored remote_addr) sees the sender's
        # address. The Host header is left as received: it is part of the stored request,
        # and a Keygen endpoint names its public URL in `url` (verify/keygen.py).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies,  # type: ignore[method-assign]
                                x_proto=proxies, x_host=0, x_port=0, x_prefix=0)

    @app.errorhandler(ReceiverError)
    def handle_receiver_error(error: ReceiverError) -> Response:
        if isinstance(error, StorageUnavailable):
            log.warning("storage unavailable: %s", error.message)
            current_app.extensions["receiver.problems"].outage.unavailable()
        return error_response(error.status, error.message)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 405:
            message = (f"method {request.method} is not allowed on {request.path}; "
                       "webhooks are sent with POST" if request.path.startswith("/hooks")
                       else f"method {request.method} is not allowed on {request.path}")
        else:
            message = error.description or error.name
        if not wants_json():
            return error.get_response()
        response = error_response(status, message)
        for name in ("Allow", "WWW-Authenticate"):
            value = error.get_response().headers.get(name)
            if value:
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal error; the traceback is in the server log")
