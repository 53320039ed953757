"""The JSON API (docs/reference.md#the-json-api): events, deliveries, raw bytes, replay,
redeliver, export, problems, and the OpenAPI description of it all."""

from __future__ import annotations

import base64
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, send_file

from ..clients import redeliver
from ..dialects.base import parse_json
from ..errors import BadRequest, NotFound
from ..handlers import dispatch
from ..problems.kinds import KINDS
from ..read import export, metrics
from ..read.filters import activity_args, delivery_filters, event_filters, page_args, parse_id
from ..resources import PACKAGE_DIR
from ..store import MAX_ID, Store
from ..store.problem_queries import STATUSES
from . import common
from .common import delivery_json, event_json, get_store, reveal
from .streaming import HEARTBEAT, bound_unsent

bp = Blueprint("api", __name__)

#: The OpenAPI 3.1 description of this API and of ingest, written by hand beside the code.
OPENAPI_FILE = PACKAGE_DIR / "openapi.json"


def json_options() -> Any:
    """The JSON body of an acting POST. Only ``application/json`` is read: a cross-site form
    cannot send it, so an open (tokenless) receiver cannot be made to replay by another site."""
    if not request.is_json:
        raise BadRequest('send a JSON body with Content-Type: application/json, such as {}')
    body = request.get_data()
    if not body.strip():
        return {}
    return parse_json(body)  # the ingest parser: the same sentences, no NaN or surrogates


@bp.get("/api/events")
def list_events() -> Response:
    """A page of events; a search (``q``) also says how many recent events it could not
    see yet (``not_yet_searchable``: the background indexing has not reached them)."""
    filters = event_filters(request.args)
    limit, cursor = page_args(request.args)
    store = get_store()
    events, next_cursor = store.list_events(filters, limit=limit, cursor=cursor)
    revealed = reveal()
    late = store.out_of_order_ids([event.id for event in events])
    answer: dict[str, Any] = {"events": [event_json(event, revealed=revealed,
                                                    out_of_order=event.id in late)
                                         for event in events], "next": next_cursor}
    if filters.q:
        answer["not_yet_searchable"] = store.not_yet_searchable()
    return jsonify(answer)


@bp.get("/api/events/<int:event_id>")
def show_event(event_id: int) -> Response:
    store = get_store()
    event = store.get_event(event_id)
    revealed = reveal()
    record = event_json(event, revealed=revealed,
                        out_of_order=event_id in store.out_of_order_ids([event_id]))
    record["deliveries"] = [delivery_json(d, revealed=revealed)
                            for d in store.deliveries_for_event(event_id)]
    record["handler_runs"] = store.runs_for_event(event_id)
    record["scheduled_attempts"] = store.scheduled_attempts(event_id)
    return jsonify(record)


@bp.get("/api/events/<int:event_id>/changes")
def event_changes(event_id: int) -> Response:
    """What changed against the previous event of the same source and subject."""
    store = get_store()
    found = common.event_changes(store, store.get_event(event_id), revealed=reveal())
    return jsonify({**found, "changes": [change.as_dict() for change in found["changes"]]})


@bp.get("/api/activity")
def activity_counts() -> Response:
    """Deliveries per bucket by outcome, oldest first (receiver/activity.py)."""
    found, filters = activity_args(request.args)
    return jsonify({"bucket": found.level, "buckets": get_store().activity(found, filters)})


@bp.post("/api/events/<int:event_id>/replay")
def replay_event(event_id: int) -> Response:
    options = json_options()
    if not isinstance(options, dict):
        raise BadRequest("replay options must be a JSON object")
    only_failed = options.get("only_failed", False)
    if not isinstance(only_failed, bool):
        raise BadRequest("only_failed must be true or false")
    names = options.get("handlers")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(name, str) for name in names)):
        raise BadRequest("handlers must be a list of handler names or null")
    runs = dispatch.replay(get_store(), current_app.config, event_id,
                           only_failed=only_failed, names=names)
    return jsonify({"runs": runs})


@bp.post("/api/events/<int:event_id>/retry-now")
def retry_event_now(event_id: int) -> Response:
    """Make the event's scheduled attempts (or those of ``handlers``) due now; the
    dispatcher's next sweep runs them."""
    return _change_retries(event_id, "retry-now")


@bp.post("/api/events/<int:event_id>/cancel-retries")
def cancel_event_retries(event_id: int) -> Response:
    """Drop the event's scheduled attempts (or those of ``handlers``)."""
    return _change_retries(event_id, "cancel-retries")


def _change_retries(event_id: int, action: str) -> Response:
    options = json_options()
    if not isinstance(options, dict):
        raise BadRequest(f"{action} options must be a JSON object")
    names = options.get("handlers")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(name, str) for name in names)):
        raise BadRequest("handlers must be a list of handler names or null")
    store = get_store()
    store.get_event(event_id)  # 404 before anything else
    if names is not None:  # only names with an attempt scheduled reach the query
        scheduled = {attempt["handler"] for attempt in store.scheduled_attempts(event_id)}
        names = [name for name in names if name in scheduled]
    if names == []:
        changed = 0
    else:
        changed = (store.retry_now(event_id, names) if action == "retry-now"
                   else store.cancel_retries(event_id, names))
    return jsonify({"changed": changed,
                    "event": event_json(store.get_event(event_id), revealed=reveal())})


MAX_WAIT_SECONDS = 25.0
POLL_SECONDS = 0.05


@bp.get("/api/deliveries")
def list_deliveries() -> Response:
    """Newest first; with ``after=<id>`` a feed, oldest first, of what came after that id.
    ``wait=<seconds>`` (with ``after``, at most 25) long-polls until something arrives."""
    filters = delivery_filters(request.args)
    limit, cursor = page_args(request.args)
    after_id = parse_id(request.args.get("after"), "after (a delivery id)")
    wait = _wait_arg()
    if not request.environ.get("wsgi.multithread"):
        # A sync worker serves one request at a time: holding it would stall ingest. Answer
        # at once; clients poll (receiver forward pauses after an empty answer).
        wait = 0.0
    store = get_store()
    deadline = time.monotonic() + wait
    while True:
        deliveries, next_cursor = store.list_deliveries(filters, limit=limit, cursor=cursor,
                                                        after=after_id)
        if deliveries or after_id is None or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    revealed = reveal()
    return jsonify({"deliveries": [delivery_json(d, revealed=revealed) for d in deliveries],
                    "next": next_cursor})


def _wait_arg() -> float:
    value = request.args.get("wait") or "0"
    try:
        wait = float(value)
    except ValueError:
        raise BadRequest(f"wait must be a number of seconds; got {value!r}") from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise BadRequest(f"wait must be from 0 to {MAX_WAIT_SECONDS:g} seconds; got {value!r}")
    return wait


@bp.get("/api/deliveries/<int:delivery_id>")
def show_delivery(delivery_id: int) -> Response:
    store = get_store()
    record = store.get_delivery(delivery_id, with_body=True)
    body: bytes | None = record["body"]
    revealed = reveal()
    answer = delivery_json(record, revealed=revealed)
    if body is not None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            answer["body_base64"] = base64.b64encode(body).decode()
        else:
            if not revealed:
                text = common.masker().body(text, _event_secrets(store, record))
            answer["body_text"] = text
    return jsonify(answer)


def _event_secrets(store: Store, record: dict[str, Any]) -> list[str]:
    if record.get("event_id") is None:
        return []
    return common.masker().secret_strings(store.get_event(record["event_id"]).data)


@bp.get("/api/deliveries/<int:delivery_id>/raw")
def raw_delivery(delivery_id: int) -> Response:
    """The exact bytes as received, with the original Content-Type (never masked)."""
    record = get_store().get_delivery(delivery_id, with_body=True)
    response = Response(record["body"] or b"", status=200)
    response.headers["Content-Type"] = record["content_type"] or "application/octet-stream"
    response.headers["Content-Disposition"] = f'inline; filename="delivery-{delivery_id}.body"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    return response


@bp.post("/api/deliveries/<int:delivery_id>/redeliver")
def redeliver_delivery(delivery_id: int) -> Response:
    options = json_options()
    url = options.get("url") if isinstance(options, dict) else None
    if not isinstance(url, str) or not url:
        raise BadRequest('redeliver needs {"url": "http://..."}')
    preserve_host = options.get("preserve_host", False)
    if not isinstance(preserve_host, bool):
        raise BadRequest("preserve_host must be true or false")
    record = get_store().get_delivery(delivery_id, with_body=True)
    result = redeliver.redeliver(record, url, allow=current_app.config["REDELIVER_ALLOW"],
                                 preserve_host=preserve_host)
    return jsonify(result)


@bp.get("/api/export.ndjson")
def export_events() -> Response:
    """Every matching event, newest first, then ``{"complete": true, "count": n}``
    (receiver/export.py); ``cursor`` resumes a cut export below the last id received."""
    filters = event_filters(request.args)
    cursor = parse_id(request.args.get("cursor"), "cursor (the id of the last event line)")
    # Handed over by receiver serve (gunicorn_hooks): one long request must not look hung.
    heartbeat = current_app.extensions.get(HEARTBEAT)
    bound_unsent(request.environ)
    lines = export.ndjson(get_store(), filters, cursor=cursor, revealed=reveal(),
                          heartbeat=heartbeat, masker=common.masker())
    return Response(lines, mimetype="application/x-ndjson")


@bp.get("/api/problems")
def list_problems() -> Response:
    """Problems of one ``status``, newest first; without it, open first, then acknowledged,
    then the most recently resolved (the ``/problems`` page)."""
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    return jsonify({"problems": get_store().list_problems(status)})


@bp.post("/api/problems/<int:problem_id>/acknowledge")
def acknowledge_problem(problem_id: int) -> Response:
    """An open problem becomes acknowledged until it resolves; an acknowledged or resolved
    one stays as it is. Only a JSON body is read, as for replay."""
    options = json_options()
    if not isinstance(options, dict):
        raise BadRequest("acknowledge options must be a JSON object, such as {}")
    if not 0 < problem_id <= MAX_ID:
        raise NotFound(f"no problem {problem_id}")
    return jsonify(get_store().acknowledge_problem(problem_id))


@bp.get("/api/reconcile")
def reconcile_runs() -> Response:
    """The last reconcile run of each endpoint against its vendor's event log (``receiver
    reconcile`` or ``RECEIVER_RECONCILE_EVERY``), by endpoint name."""
    return jsonify({"endpoints": get_store().latest_reconcile_runs()})


@bp.get("/api/openapi.json")
def openapi() -> Response:
    """The description as the file it is (ETag and Last-Modified from the file)."""
    return send_file(OPENAPI_FILE, mimetype="application/json")


@bp.get("/-/health")
def health() -> Response:
    counts = get_store().event_counts()
    return jsonify({"ok": True, **counts})


@bp.get("/-/metrics")
def metrics_text() -> Response:
    """Prometheus text (receiver/metrics.py): counts from the database, the ingest latency
    histogram of this node's workers."""
    extensions = current_app.extensions
    body = metrics.exposition(get_store(), extensions["receiver.unavailable"],
                              extensions["receiver.ingest_timer"], problem_kinds=KINDS,
                              endpoints=current_app.config["ENDPOINTS"])
    return Response(body, content_type=metrics.content_type())


@bp.get("/-/plugins")
def plugins() -> Response:
    report = current_app.extensions.get("receiver.plugins")
    return jsonify(report.as_dict() if report is not None else {"plugins": [], "failed": []})

