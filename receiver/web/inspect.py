"""The inspector's HTML pages (docs/reference.md#pages): history, deliveries, an event and a
delivery in full, replay and redeliver forms.

Each page mirrors a JSON API answer and reuses its pieces: the query-string filters of
``filters.py``, the masking of ``mask.py`` and ``api.reveal()``, the store's queries, and
``dispatch.replay`` / ``redeliver.redeliver`` for the two actions. Only presentation lives
here. Secrets are masked unless a signed-in user asks for ``?reveal=1``; forms are POSTed
with a CSRF token and answered with a redirect to the page that shows the result.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from ..clients import redeliver
from ..config import SOURCES
from ..dialects.base import iso_time
from ..errors import BadRequest, NotFound, ReceiverError
from ..events import Event, format_time
from ..handlers import dispatch, signals
from ..ingest.content_coding import decode_body
from ..read import changes, mask, schedule
from ..read.filters import (
    DISPATCH_STATUSES,
    SIGNATURE_STATUSES,
    delivery_filters,
    event_filters,
    page_args,
)
from ..store import DeliveryFilters
from . import chart, csrf
from .common import (
    configured_token,
    event_changes,
    event_json,
    get_store,
    masker,
    reveal,
    share_page_behaviour,
    signed_in_with_session,
)

bp = Blueprint("inspect", __name__)

EVENT_FILTERS = ("q", "source", "event_type", "endpoint", "account", "subject_id",
                 "signature_status", "dispatch_status", "since", "until")
DELIVERY_FILTERS: tuple[str, ...] = ("endpoint", "status_code", "source", "outcome",
                                     "rejected", "since", "until")
if "event_type" in {field.name for field in dataclasses.fields(DeliveryFilters)}:
    DELIVERY_FILTERS += ("event_type",)  # the store filters deliveries by their event's type
BODY_PREVIEW_CHARS = 256 * 1024  # a page shows this much of a body; /raw has all of it
DELIVERIES_IN_FULL = 20          # deliveries of one event shown with headers and body
RESULT_KEY = "inspector.result"
REDELIVER_URL_KEY = "inspector.redeliver_url"
REDELIVER_HOST_KEY = "inspector.redeliver_preserve_host"
RESULT_PREVIEW_CHARS = 1000      # of a redeliver target's answer, kept in the session cookie
JSON_TREE_DEPTH = 12             # deeper values are shown as indented text
JSON_TREE_ITEMS = 200            # items shown per object or array
JSON_TREE_OPEN_DEPTH = 3         # objects and arrays this shallow start expanded...
JSON_TREE_OPEN_ITEMS = 20        # ...when they hold this many items or fewer


share_page_behaviour(bp)


@bp.before_request
def protect_forms() -> None:
    if request.method == "POST":
        csrf.check_csrf()


# -- template helpers ----------------------------------------------------------------------


def with_query(path: str, params: Mapping[str, Any]) -> str:
    """``path?query`` from the non-empty parameters. Query parameters never go through
    ``url_for``'s keywords: the ``endpoint`` filter would collide with its first argument."""
    query = urlencode([(key, str(value)) for key, value in params.items()
                       if value is not None and value != ""])
    return f"{path}?{query}" if query else path


def url_with(**changes: Any) -> str:
    """This page's URL with query parameters changed (None or "" removes one); paging
    restarts unless ``cursor`` is given."""
    params: dict[str, Any] = {key: value for key, value in request.args.items()
                              if key != "cursor"}
    params.update(changes)
    path = url_for(request.endpoint or "inspect.events", **(request.view_args or {}))
    return with_query(path, params)


def history_url(**params: Any) -> str:
    """The history filtered by ``params`` (``endpoint=`` included)."""
    return with_query(url_for("inspect.events"), params)


_static_versions: dict[tuple[str, int], str] = {}


def static_url(filename: str) -> str:
    """``/static/<file>?v=<hash>``: a new file is fetched after an upgrade."""
    path = Path(current_app.static_folder or "") / filename
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return url_for("static", filename=filename)
    if key not in _static_versions:
        _static_versions[key] = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return url_for("static", filename=filename, v=_static_versions[key])


def format_when(value: str | None) -> str:
    """``2026-11-25T09:00:00.123Z`` as ``2026-11-25 09:00:00`` (UTC)."""
    if not value:
        return ""
    return value.replace("T", " ")[:19]


def pretty_json(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return "(too deeply nested to show here: see the raw body)"


def json_string(value: Any) -> str:
    """A JSON scalar as JSON text; the template escapes it like any other text."""
    return json.dumps(value, ensure_ascii=False)


def json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def template_context() -> dict[str, Any]:
    return {
        "csrf_token": csrf.csrf_token,
        "csrf_field": csrf.FIELD,
        "url_with": url_with,
        "history_url": history_url,
        "static_url": static_url,
        "token_required": bool(configured_token()),
        "session_signed_in": signed_in_with_session(),
        "revealed": reveal(),
        "json_tree_depth": JSON_TREE_DEPTH,
        "json_tree_items": JSON_TREE_ITEMS,
        "json_tree_open_depth": JSON_TREE_OPEN_DEPTH,
        "json_tree_open_items": JSON_TREE_OPEN_ITEMS,
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.context_processor(template_context)
    app.jinja_env.filters.update(when=format_when, pretty=pretty_json, jsonstr=json_string,
                                 json_kind=json_kind)
    app.jinja_env.autoescape = True  # every template, whatever its name


# -- views of records ------------------------------------------------------------------------


def active_filters(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(name, request.args[name]) for name in names if request.args.get(name)]


def api_url(endpoint: str, names: tuple[str, ...], limit: int) -> str:
    """The JSON twin of this list, with the same filters (what the live script polls)."""
    return with_query(url_for(endpoint), {**dict(active_filters(names)), "limit": limit})


def body_view(record: Mapping[str, Any], *, revealed: bool,
              secrets: list[str]) -> dict[str, Any]:
    """The body as a page shows it: masked text (or a note that it is binary or missing). A
    body sent compressed is shown decoded (``decoded_from`` names the coding)."""
    body: bytes | None = record.get("body")
    view: dict[str, Any] = {"size": record.get("body_size") or 0, "text": None,
                            "binary": False, "missing": body is None, "truncated": False,
                            "decoded_from": None}
    if body is None:
        return view
    view["size"] = len(body)
    coding = next((value for name, value in record.get("headers") or []
                   if str(name).lower() == "content-encoding"), None)
    try:
        decoded = decode_body(body, coding, current_app.config["MAX_BODY"])
    except ReceiverError:  # refused at ingest for the same reason: show it as it came
        decoded = None
    if decoded is not None:
        body, view["decoded_from"] = decoded, coding
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        view["binary"] = True
        return view
    if not revealed:
        text = masker().body(text, secrets)
    if len(text) > BODY_PREVIEW_CHARS:
        text, view["truncated"] = text[:BODY_PREVIEW_CHARS], True
    view["text"] = text
    return view


#: Characters a terminal may act on when pasted (ESC ends a bracketed paste, C1 controls
#: are escapes too): a body with any of them is sent through base64. Tab and newline are
#: plain text inside single quotes.
_UNSAFE_IN_SHELL_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Every control character: none reaches the command as it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


#: What a URL's path (stored decoded) and query (stored as sent) cannot hold as it is: control
#: characters and spaces, and in the path the characters that would end it or start an escape.
_NOT_IN_PATH = re.compile(r"[\x00-\x20\x7f-\x9f%?#]")
_NOT_IN_QUERY = re.compile(r"[\x00-\x20\x7f-\x9f#]")


def _escaped(found: re.Match[str]) -> str:
    """``%XX`` of the byte the request carried (WSGI reads a path's bytes as Latin-1)."""
    return "".join(f"%{byte:02X}" for byte in found.group().encode("latin-1"))


def request_target(path: str, query: str) -> str:
    """The path and query of the request as a URL with no control character or space in it:
    those (and ``%``, ``?`` and ``#`` of the path) become ``%XX``, so the server reads the same
    path and query back and nothing in them reaches a terminal as it is."""
    target = _NOT_IN_PATH.sub(_escaped, path)
    if query:
        target += "?" + _NOT_IN_QUERY.sub(_escaped, query)
    return target


def shell_word(text: str) -> str:
    """One shell word that is exactly ``text``: ``shlex.quote``, or ``$'...'`` with ``\\xHH``
    escapes when it holds control characters (bash and zsh), so nothing in it reaches the
    terminal or the shell as it is."""
    if not _CONTROL.search(text):
        return shlex.quote(text)
    parts = []
    for char in text:
        if _CONTROL.match(char):
            parts.append("".join(f"\\x{byte:02x}" for byte in char.encode()))
        elif char in "\\'":
            parts.append("\\" + char)
        else:
            parts.append(char)
    return "$'" + "".join(parts) + "'"


def curl_command(record: Mapping[str, Any], *, revealed: bool, secrets: list[str]) -> str:
    """A shell command that sends the delivery again to this receiver: same path and query,
    the original headers (hop-by-hop dropped, as redeliver does) and the exact body bytes
    (``printf '%s'`` for text, ``base64 -d`` for anything else). Masked unless revealed."""
    query = record.get("query") or ""
    headers = record["headers"]
    body: bytes | None = record.get("body")
    if not revealed:
        query = masker().query(query)
        headers = masker().headers(headers)
    url = request.host_url.rstrip("/") + request_target(record.get("path") or "/hooks", query)
    options = []
    if record.get("method") and record["method"] != "POST":
        options.append(f"-X {shell_word(record['method'])}")
    for name, value in redeliver.forwardable_headers(headers):
        # "Name;" sends an empty header; "Name:" would remove it.
        options.append("-H " + shell_word(f"{name}: {value}" if value else f"{name};"))
    if not any(str(name).lower() == "content-type" for name, _ in headers):
        options.append("-H 'Content-Type:'")  # curl would add a form Content-Type
    options.append("--data-binary @-")
    command = " \\\n  ".join([f"curl -sS {shlex.quote(url)}", *options])
    data = body or b""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not revealed:
        text = masker().body(text, secrets)
    if text is not None and not _UNSAFE_IN_SHELL_TEXT.search(text):
        return f"printf '%s' {shlex.quote(text)} |\n{command}"
    encoded = text.encode() if text is not None else data
    lines = base64.encodebytes(encoded).decode().rstrip("\n")
    return f"base64 -d <<'BODY' |\n{lines}\nBODY\n{command}"


def delivery_view(record: Mapping[str, Any], *, revealed: bool,
                  secrets: list[str]) -> dict[str, Any]:
    view = dict(record)
    view.pop("body", None)
    if not revealed:
        view["headers"] = masker().headers(record["headers"])
        view["query"] = masker().query(record.get("query") or "")
    if "body" in record:
        view["body"] = body_view(record, revealed=revealed, secrets=secrets)
        view["curl"] = curl_command(record, revealed=revealed, secrets=secrets)
    return view


def run_view(run: Mapping[str, Any], *, revealed: bool,
             secrets: mask.SecretMatcher) -> dict[str, Any]:
    view = dict(run)
    if not revealed:
        for key in ("error", "traceback"):
            if view.get(key):
                view[key] = secrets.mask(view[key])
    return view


def event_secrets(event_id: int | None) -> list[str]:
    if event_id is None:
        return []
    try:
        return masker().secret_strings(get_store().get_event(event_id).data)
    except NotFound:
        return []


def newest_delivery_id() -> int:
    newest, _ = get_store().list_deliveries(DeliveryFilters(), limit=1)
    return int(newest[0]["id"]) if newest else 0


def take_result(kind: str, record_id: int) -> dict[str, Any] | None:
    """The result of the form just POSTed for this record (shown once)."""
    result = session.get(RESULT_KEY)
    if isinstance(result, dict) and result.get("kind") == kind and result.get("id") == record_id:
        session.pop(RESULT_KEY)
        return result
    return None


# -- history ---------------------------------------------------------------------------------


# -- the activity chart ------------------------------------------------------------------------

#: The list pages a chart belongs to: their route and the filters they keep in links.
CHART_PAGES = {"events": ("inspect.events", EVENT_FILTERS),
               "deliveries": ("inspect.deliveries", DELIVERY_FILTERS)}


def activity_chart(page: str, since: str | None, until: str | None, shown: list[str], *,
                   first_page: bool, start: str | None = None) -> dict[str, Any]:
    """The chart above a list (web/chart.py), its bars linking to the list narrowed to one
    bucket, and the URL the live view redraws it from."""
    endpoint, names = CHART_PAGES[page]
    kept = {name: value for name, value in active_filters(names)
            if name not in ("since", "until")}
    if request.args.get("limit"):
        kept["limit"] = request.args["limit"]
    found = chart.window_for(since, until, shown, dt.datetime.now(dt.UTC),
                             first_page=first_page, start=start)
    path = url_for(endpoint)
    rejected = page == "deliveries" and delivery_filters(request.args).rejected
    view = chart.chart_view(get_store(), found, chart.filters_of(request.args),
                            lambda begin, end: with_query(path, {**kept, "since": begin,
                                                                 "until": end}),
                            outcomes=chart.REJECTED if rejected else chart.STACK)
    view["refresh_url"] = with_query(url_for("inspect.activity_fragment"), {
        "for": page, **{name: value for name, value in active_filters(names)},
        "start": None if since else format_time(found.start)})
    view["list_only"] = [name for name, _ in active_filters(names)
                         if name not in (*chart.CHART_FILTERS, "since", "until", "rejected")]
    return view


@bp.get("/activity")
def activity_fragment() -> str:
    """The chart alone (an HTML fragment), for the live view to redraw it; opened in the
    browser's address bar (a navigation), the chart on a page of its own."""
    page = request.args.get("for") or "events"
    if page not in CHART_PAGES:
        raise BadRequest(f"for must be events or deliveries; got {page!r}")
    filters = (event_filters if page == "events" else delivery_filters)(request.args)
    start = request.args.get("start") or None
    begin = iso_time(start) if start else None
    if start and begin is None:
        raise BadRequest(f"start must be an ISO 8601 time; got {start!r}")
    drawn = activity_chart(page, filters.since, filters.until, [], first_page=True,
                           start=begin)
    if request.headers.get("Sec-Fetch-Mode") == "navigate":
        endpoint, names = CHART_PAGES[page]
        return render_template("activity.html", chart=drawn, tab=page, list_url=with_query(
            url_for(endpoint), dict(active_filters(names))))
    return render_template("_activity.html", chart=drawn)


@bp.get("/")
def events() -> str:
    filters = event_filters(request.args)
    limit, cursor = page_args(request.args)
    store = get_store()
    found, next_cursor = store.list_events(filters, limit=limit, cursor=cursor)
    chart_view = activity_chart("events", filters.since, filters.until,
                                [event.received_at for event in found],
                                first_page=cursor is None)
    return render_template(
        "events.html", tab="events", events=found, limit=limit, first_page=cursor is None,
        not_yet_searchable=store.not_yet_searchable() if filters.q else 0,
        next_url=url_with(cursor=next_cursor) if next_cursor else None,
        active=active_filters(EVENT_FILTERS), sources=SOURCES,
        signature_statuses=SIGNATURE_STATUSES, dispatch_statuses=DISPATCH_STATUSES,
        api_url=api_url("api.list_events", EVENT_FILTERS, limit),
        feed_after=newest_delivery_id(), chart=chart_view,
    )


@bp.get("/deliveries")
def deliveries() -> str:
    filters = delivery_filters(request.args)
    limit, cursor = page_args(request.args)
    found, next_cursor = get_store().list_deliveries(filters, limit=limit, cursor=cursor)
    chart_view = activity_chart("deliveries", filters.since, filters.until,
                                [delivery["received_at"] for delivery in found],
                                first_page=cursor is None)
    return render_template(
        "deliveries.html", chart=chart_view, tab="rejected" if filters.rejected else "deliveries",
        deliveries=found, limit=limit, first_page=cursor is None, rejected=filters.rejected,
        next_url=url_with(cursor=next_cursor) if next_cursor else None,
        active=active_filters(DELIVERY_FILTERS), sources=SOURCES,
        by_event_type="event_type" in DELIVERY_FILTERS,
        feed_url=api_url("api.list_deliveries", DELIVERY_FILTERS, limit),
        feed_after=found[0]["id"] if found else newest_delivery_id(),
    )


# -- one event --------------------------------------------------------------------------------


def render_event(event_id: int, *, replay_error: str | None = None, status: int = 200,
                 ) -> tuple[str, int]:
    store = get_store()
    event: Event = store.get_event(event_id)
    revealed = reveal()
    secrets = masker().secret_strings(event.data)
    listed = store.deliveries_for_event(event_id)
    in_full = [delivery_view(store.get_delivery(d["id"], with_body=True), revealed=revealed,
                             secrets=secrets) for d in listed[:DELIVERIES_IN_FULL]]
    matcher = masker().matcher(secrets)  # once for every run shown
    runs = [run_view(run, revealed=revealed, secrets=matcher)
            for run in store.runs_for_event(event_id)]
    result = take_result("replay", event_id)
    replayed = set(result["run_ids"]) if result else set()
    retries_result = take_result("retries", event_id)
    scheduled = schedule.attempt_views(store.scheduled_attempts(event_id))
    handlers = [handler.name for handler in signals.handlers_for(event, current_app.config)]
    failed = sorted(name for name, run in store.latest_runs(event_id).items()
                    if run["status"] == "error")
    timeline = store.subject_timeline(event)
    return render_template(
        "event.html", tab="events", event=event, record=event_json(event, revealed=revealed),
        deliveries=in_full, more_deliveries=listed[DELIVERIES_IN_FULL:], runs=runs,
        timeline=timeline, timeline_notes=timeline_notes(event, timeline, revealed=revealed),
        changed=event_changes(store, event, revealed=revealed),
        handlers=handlers, failed_handlers=failed,
        replay_result=result, replayed=replayed, replay_error=replay_error,
        scheduled=scheduled, retries_result=retries_result,
        form=request.form if replay_error else {},
    ), status


def timeline_notes(event: Event, timeline: list[Event], *, revealed: bool
                   ) -> dict[int, dict[str, Any]]:
    """Per timeline entry: what changed against the event before it (one line) and whether
    it arrived out of order."""
    store = get_store()
    links = store.timeline_links(event, [other.id for other in timeline])
    known = {other.id: other for other in timeline}
    wanted = [link.previous_id for link in links.values()
              if link.previous_id is not None and link.previous_id not in known]
    known.update(store.get_events(wanted))
    notes = {}
    for other in timeline:
        link = links.get(other.id)
        previous = known.get(link.previous_id) if link and link.previous_id else None
        found = changes.diff(previous.data, other.data) if previous is not None else []
        if not revealed:
            found = [changes.masked(change, masker()) for change in found]
        notes[other.id] = {"summary": changes.summary(found), "first": previous is None,
                           "out_of_order": bool(link and link.out_of_order)}
    return notes


@bp.get("/events/<int:event_id>")
def event(event_id: int) -> tuple[str, int]:
    return render_event(event_id)


@bp.post("/events/<int:event_id>/replay")
def replay(event_id: int) -> Response | tuple[str, int]:
    store = get_store()
    store.get_event(event_id)  # 404 before anything else
    mode = request.form.get("mode") or "all"
    if mode not in ("all", "failed", "chosen"):
        raise BadRequest(f"mode must be all, failed or chosen; got {mode!r}")
    names = request.form.getlist("handler") if mode == "chosen" else None
    if mode == "chosen" and not names:
        return render_event(event_id, status=400,
                            replay_error="Choose at least one handler to replay.")
    try:
        runs = dispatch.replay(store, current_app.config, event_id,
                               only_failed=mode == "failed", names=names)
    except NotFound:
        raise
    except ReceiverError as error:
        return render_event(event_id, status=error.status, replay_error=error.message)
    session[RESULT_KEY] = {"kind": "replay", "id": event_id, "mode": mode,
                           "run_ids": [run["id"] for run in runs]}
    return redirect(url_for("inspect.event", event_id=event_id) + "#runs", 303)


@bp.post("/events/<int:event_id>/retry-now")
def retry_now(event_id: int) -> Response:
    """Make the event's scheduled attempts due now: the dispatcher's next sweep (within a
    couple of seconds) runs them."""
    return _change_retries(event_id, "retry-now")


@bp.post("/events/<int:event_id>/cancel-retries")
def cancel_retries(event_id: int) -> Response:
    """Drop the event's scheduled attempts: it settles as failed."""
    return _change_retries(event_id, "cancel-retries")


def _change_retries(event_id: int, action: str) -> Response:
    store = get_store()
    store.get_event(event_id)  # 404 before anything else

    changed = (store.retry_now(event_id) if action == "retry-now"
               else store.cancel_retries(event_id))
    session[RESULT_KEY] = {"kind": "retries", "id": event_id, "action": action,
                           "changed": changed}
    return redirect(url_for("inspect.event", event_id=event_id) + "#runs", 303)


# -- one delivery -----------------------------------------------------------------------------


def render_delivery(delivery_id: int, *, redeliver_error: str | None = None,
                    status: int = 200) -> tuple[str, int]:
    store = get_store()
    record = store.get_delivery(delivery_id, with_body=True)
    revealed = reveal()
    view = delivery_view(record, revealed=revealed, secrets=event_secrets(record["event_id"]))
    url = (request.form.get("url") if redeliver_error else None) or session.get(
        REDELIVER_URL_KEY) or ""
    preserve_host = (bool(request.form.get("preserve_host")) if redeliver_error
                     else bool(session.get(REDELIVER_HOST_KEY)))
    original_host = next((value for name, value in record["headers"]
                          if str(name).lower() == "host"), None)
    return render_template(
        "delivery.html", tab="rejected" if record["status_code"] >= 400 else "deliveries",
        delivery=view, event=store.get_event(record["event_id"]) if record["event_id"] else None,
        redeliver_result=take_result("redeliver", delivery_id), redeliver_error=redeliver_error,
        redeliver_url=url, allowed_hosts=current_app.config["REDELIVER_ALLOW"],
        redeliver_preserve_host=preserve_host, original_host=original_host,
    ), status


@bp.get("/deliveries/<int:delivery_id>")
def delivery(delivery_id: int) -> tuple[str, int]:
    return render_delivery(delivery_id)


@bp.post("/deliveries/<int:delivery_id>/redeliver")
def redeliver_form(delivery_id: int) -> Response | tuple[str, int]:
    record = get_store().get_delivery(delivery_id, with_body=True)
    url = (request.form.get("url") or "").strip()
    if not url:
        return render_delivery(delivery_id, status=400,
                               redeliver_error="Enter the URL to send this delivery to.")
    preserve_host = bool(request.form.get("preserve_host"))
    try:
        result = redeliver.redeliver(record, url, allow=current_app.config["REDELIVER_ALLOW"],
                                     preserve_host=preserve_host)
    except ReceiverError as error:
        return render_delivery(delivery_id, status=error.status, redeliver_error=error.message)
    body = result.get("body") or ""
    session[REDELIVER_URL_KEY] = url
    session[REDELIVER_HOST_KEY] = preserve_host
    session[RESULT_KEY] = {
        "kind": "redeliver", "id": delivery_id, "url": url, "status": result.get("status"),
        "error": result.get("error"), "duration_ms": result.get("duration_ms"),
        "body": body[:RESULT_PREVIEW_CHARS], "body_cut": len(body) > RESULT_PREVIEW_CHARS,
    }
    return redirect(url_for("inspect.delivery", delivery_id=delivery_id) + "#redeliver", 303)
