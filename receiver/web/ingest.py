"""``POST /hooks`` and ``POST /hooks/<endpoint>``: request -> Delivery -> pipeline -> respond.

The only module here that touches the HTTP request on the ingest path. It reads the body
itself, at most ``MAX_BODY`` + 1 bytes, so an oversized or lying request never fills memory.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, request

from .. import pipeline
from ..config import Endpoint, ad_hoc_endpoint
from ..errors import NotFound, PayloadTooLarge, ReceiverError
from ..events import Delivery

bp = Blueprint("ingest", __name__)

CHUNK = 64 * 1024


def read_body(max_body: int) -> tuple[bytes, bool]:
    """The body bytes and whether it fit in ``max_body``."""
    declared = request.content_length
    if declared is not None and declared > max_body:
        return b"", False
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(CHUNK, max_body + 1 - size))
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
        if size > max_body:
            return b"", False


def environ_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """Headers as the WSGI server passed them on, in its order (as werkzeug's EnvironHeaders
    but without building that object on the hot path)."""
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


def build_delivery(endpoint_name: str, body: bytes) -> Delivery:
    environ = request.environ
    return Delivery(
        body=body,
        headers=environ_headers(environ),
        endpoint=endpoint_name,
        method=environ["REQUEST_METHOD"],
        path=request.path,
        query=environ.get("QUERY_STRING", ""),
        remote_addr=environ.get("REMOTE_ADDR"),
    )


def json_response(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def endpoint_for(name: str) -> Endpoint | None:
    endpoints: dict[str, Endpoint] = current_app.config["ENDPOINTS"]
    if name in endpoints:
        return endpoints[name]
    if name == "default" or not current_app.config["STRICT_ENDPOINTS"]:
        return ad_hoc_endpoint(name)
    return None


@bp.route("/hooks", methods=["POST"], provide_automatic_options=False,
          defaults={"name": "default"})
@bp.route("/hooks/<name>", methods=["POST"], provide_automatic_options=False)
def receive(name: str) -> Response:
    store = current_app.extensions["receiver.store"]
    dispatcher = current_app.extensions["receiver.dispatcher"]
    max_body = current_app.config["MAX_BODY"]
    body, fits = read_body(max_body)
    delivery = build_delivery(name, body)
    endpoint = endpoint_for(name)
    if not fits:
        size = request.content_length
        said = f"{size} bytes" if size is not None else f"more than {max_body} bytes"
        error: ReceiverError = PayloadTooLarge(
            f"body is {said}; this receiver accepts at most {max_body} bytes (RECEIVER_MAX_BODY)")
        outcome = pipeline.reject(delivery, store, error, keep_body=False)
    elif endpoint is None:
        error = NotFound(f"no endpoint named {name!r} is configured "
                         "(RECEIVER_STRICT_ENDPOINTS is on)")
        outcome = pipeline.reject(delivery, store, error)
    else:
        outcome = pipeline.receive(delivery, endpoint, store, settings=current_app.config,
                                   dispatcher_id=dispatcher.owner)
    if outcome.to_dispatch and outcome.event_id is not None:
        dispatcher.submit(outcome.event_id)
    response = json_response(outcome.status, outcome.body)
    if outcome.status == 413:
        response.headers["Connection"] = "close"
    return response
