"""``POST /hooks`` and ``POST /hooks/<endpoint>``: request -> Delivery -> pipeline -> respond.

The only code that reads an ingest request. It reads the body itself, at most
``MAX_BODY`` + 1 bytes, so an oversized or lying request never fills memory.

Deliveries are answered by ``IngestMiddleware`` straight from the WSGI environ, in front of
Flask: building Flask's request context, session and response objects measured about a third
of a delivery's cost (benchmarks/). Other methods on ``/hooks`` fall through to the Flask
routes below, which answer 405 with ``Allow: POST`` (and would serve POSTs too if the
middleware were taken away).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.wsgi import get_input_stream

from ..config import Endpoint, ad_hoc_endpoint
from ..errors import BadRequest, NotFound, PayloadTooLarge, ReceiverError
from ..events import Delivery
from ..ingest import pipeline
from ..ingest.content_coding import ACCEPTED, decode_body

log = logging.getLogger(__name__)

bp = Blueprint("ingest", __name__)

CHUNK = 64 * 1024
PREFIX = "/hooks"
JSON_HEADERS = [("Content-Type", "application/json")]
StartResponse = Callable[..., Any]


def endpoint_name(path: str) -> str | None:
    """``default`` for ``/hooks``, the name for ``/hooks/<name>``, else None."""
    if path == PREFIX or path == PREFIX + "/":
        return "default"
    if path.startswith(PREFIX + "/"):
        name = path[len(PREFIX) + 1:]
        if name and "/" not in name:
            return name
    return None


def declared_length(environ: Mapping[str, Any]) -> int | None:
    """Content-Length, unless the body is chunked (then the length is not the sender's)."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    declared = environ.get("CONTENT_LENGTH")
    return int(declared) if declared and declared.isascii() and declared.isdigit() else None


class BodyIncomplete(Exception):
    """The body ended before its ``Content-Length``: the client closed the connection, or
    sent nothing for the server's read timeout (``timed_out``)."""

    def __init__(self, received: bytes, timed_out: bool) -> None:
        super().__init__(len(received))
        self.received = received
        self.timed_out = timed_out


def read_body(environ: dict[str, Any], max_body: int) -> tuple[bytes, bool]:
    """The body bytes and whether it fit in ``max_body``; ``BodyIncomplete`` when it ends
    early (a timeout or a closed connection: gunicorn's reader hands back what came)."""
    declared = declared_length(environ)
    if declared is not None and declared > max_body:
        return b"", False
    if declared is not None:
        # The server's own stream, never read past the declared length: what werkzeug's
        # LimitedStream would do, without its cost on every delivery.
        stream, limit = environ["wsgi.input"], declared
    else:
        stream, limit = get_input_stream(environ, max_content_length=None), max_body + 1
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = stream.read(min(CHUNK, limit - size)) if size < limit else b""
        except OSError as error:  # a read timeout, a reset, a chunked body cut short
            raise BodyIncomplete(b"".join(chunks), isinstance(error, TimeoutError)) from None
        if not chunk:
            if declared is not None and size < declared:
                raise BodyIncomplete(b"".join(chunks), timed_out=False)
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
        if size > max_body:
            return b"", False


def environ_headers(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Headers as the WSGI server passed them on, in its order."""
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key.replace("_", "-").title()
        else:
            continue
        headers.append((name, value))
    return headers


def endpoint_for(app: Flask, name: str) -> Endpoint | None:
    endpoints: dict[str, Endpoint] = app.config["ENDPOINTS"]
    if name in endpoints:
        return endpoints[name]
    if name == "default" or not app.config["STRICT_ENDPOINTS"]:
        return ad_hoc_endpoint(name)
    return None


def receive_environ(app: Flask, environ: dict[str, Any], name: str) -> tuple[int, bytes]:
    """One delivery from its WSGI environ: the status and JSON body to answer."""
    store = app.extensions["receiver.store"]
    dispatcher = app.extensions["receiver.dispatcher"]
    max_body = app.config["MAX_BODY"]
    incomplete: BodyIncomplete | None = None
    try:
        body, fits = read_body(environ, max_body)
    except BodyIncomplete as cut:
        incomplete, body, fits = cut, cut.received, True
    delivery = Delivery(
        body=body,
        headers=environ_headers(environ),
        endpoint=name,
        method=environ["REQUEST_METHOD"],
        path=environ.get("PATH_INFO", PREFIX),
        query=environ.get("QUERY_STRING", ""),
        remote_addr=environ.get("REMOTE_ADDR"),
    )
    endpoint = endpoint_for(app, name)
    refusal: ReceiverError | None = None
    if incomplete is not None:
        refusal = incomplete_refusal(environ, incomplete)
    elif not fits:
        declared = declared_length(environ)
        said = f"{declared} bytes" if declared is not None else f"more than {max_body} bytes"
        refusal = PayloadTooLarge(f"body is {said}; this receiver accepts at most {max_body} "
                                  "bytes (RECEIVER_MAX_BODY)")
    elif endpoint is None:
        refusal = NotFound(f"no endpoint named {name!r} is configured "
                           "(RECEIVER_STRICT_ENDPOINTS is on)")
    else:
        try:  # the size limit holds for the decoded bytes too (a small "zip bomb": 413)
            delivery.decoded = decode_body(body, delivery.header("Content-Encoding"), max_body)
        except ReceiverError as error:
            refusal = error
    try:
        if refusal is not None:
            # Kept: the received bytes when they fit (a bomb's few kilobytes, an unknown coding).
            outcome = pipeline.reject(delivery, store, refusal, keep_body=fits)
        else:
            assert endpoint is not None
            outcome = pipeline.receive(delivery, endpoint, store, settings=app.config,
                                       dispatcher_id=dispatcher.owner)
    except ReceiverError as error:  # the database could not take the write: 503
        # Counted in memory, written to the activity rollup once the database is back.
        app.extensions["receiver.unavailable"].count(
            delivery.received_at, name, endpoint.source if endpoint else None)
        if error.status == 503:
            app.extensions["receiver.problems"].outage.unavailable()
        return error.status, json.dumps({"ok": False, "error": error.message}).encode()
    if outcome.to_dispatch and outcome.event_id is not None:
        dispatcher.submit(outcome.event_id)
    # Noted in memory; the upkeep writes problems off the request path.
    board = app.extensions["receiver.problems"]
    board.outage.wrote()
    if outcome.status == 401:
        board.refused(name)
    elif outcome.body.get("signature_status") == "valid":
        board.valid(name)
    return outcome.status, json.dumps(outcome.body).encode()


def incomplete_refusal(environ: Mapping[str, Any], cut: BodyIncomplete) -> ReceiverError:
    """408 for a client that went silent, 400 for one that closed. Kept as a refused delivery
    with its headers and what had reached the app of the body (the server may hold back the
    last part it read), and the connection is closed."""
    declared = declared_length(environ)
    whole = f"its {declared} bytes" if declared is not None else "its last chunk"
    if cut.timed_out:
        return ReceiverError(f"the body stopped before {whole} came: nothing arrived for the "
                             "read timeout (RECEIVER_READ_TIMEOUT)", status=408)
    return BadRequest(f"the body ended before {whole} came: the connection closed")


def response_headers(status: int, body: bytes) -> list[tuple[str, str]]:
    headers = [*JSON_HEADERS, ("Content-Length", str(len(body)))]
    if status == 503:
        headers.append(("Retry-After", "5"))
    if status in (408, 413):
        headers.append(("Connection", "close"))
    if status == 415:
        headers.append(("Accept-Encoding", ACCEPTED))
    return headers


class IngestMiddleware:
    """Answers ``POST /hooks[/<name>]`` before Flask; everything else goes to Flask."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[
            bytes]:
        name = endpoint_name(environ.get("PATH_INFO", ""))
        if name is None or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        began = time.perf_counter()
        try:
            status, body = receive_environ(self.app, environ, name)
        except Exception:
            log.exception("unexpected error on POST %s", environ.get("PATH_INFO"))
            status = 500
            body = b'{"ok": false, "error": "internal error; the traceback is in the server log"}'
        self.app.extensions["receiver.ingest_timer"].observe(time.perf_counter() - began)
        start_response(f"{status} {_REASONS.get(status, 'Error')}",
                       response_headers(status, body))
        return [body]


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            408: "Request Timeout",
            413: "Payload Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error",
            503: "Service Unavailable"}


@bp.route(PREFIX, methods=["POST"], provide_automatic_options=False,
          defaults={"name": "default"})
@bp.route(PREFIX + "/<name>", methods=["POST"], provide_automatic_options=False)
def receive(name: str) -> Response:
    """The same ingest through Flask, for when the middleware is not in front."""
    status, body = receive_environ(current_app._get_current_object(),  # type: ignore[attr-defined]
                                   request.environ, name)
    return Response(body, status=status, headers=response_headers(status, body))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.wsgi_app = IngestMiddleware(app, app.wsgi_app)  # type: ignore[method-assign]
