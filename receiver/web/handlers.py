"""The handler health page (``/handlers``) and its bulk replay (docs/reference.md#pages).

One row per handler, loaded (plugins, ``@on`` functions, blinker receivers) or seen in the
recorded runs: runs, failures, the last failure with its error, p50/p95 duration over a
chosen window (from the ``handler_activity`` rollup), the events waiting for it, and its
retries: the setting, the events with an attempt scheduled and the runs that gave up. A bulk
replay is two steps: ``GET /handlers/replay`` shows how many events it would touch, the
POST behind its button (CSRF) runs them through ``bulk_replay``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

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

from ..errors import BadRequest
from ..events import format_time
from ..handlers import replay, signals
from ..read.filters import event_filters
from ..store import rollups
from . import csrf
from .common import get_store, share_page_behaviour
from .streaming import HEARTBEAT

bp = Blueprint("handlers", __name__)
share_page_behaviour(bp)

#: The windows the page offers: label -> length (None: since the first run).
WINDOWS: dict[str, dt.timedelta | None] = {
    "1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30), "all": None}
DEFAULT_WINDOW = "24h"
RESULT_KEY = "handlers.result"
#: "Failing now" counts up to this many events, then shows "1,000+" (the bulk replay's
#: confirmation counts them all).
FAILING_CAP = 1000
#: The list filters a bulk replay takes (the history's, search included).
REPLAY_FILTERS = ("q", "source", "event_type", "endpoint", "account", "subject_id",
                  "signature_status", "dispatch_status", "since", "until")


@bp.before_request
def protect_forms() -> None:
    if request.method == "POST":
        csrf.check_csrf()


@dataclass(frozen=True)
class EventKind:
    """A pending (source, event type), as ``Handler.matches`` takes it."""

    source: str
    event_type: str


def window_start(label: str, now: dt.datetime) -> tuple[str, str]:
    """The rollup level and first bucket of a window (rounded down to a whole bucket)."""
    if label not in WINDOWS:
        raise BadRequest(f"window must be one of {', '.join(WINDOWS)}; got {label!r}")
    length = WINDOWS[label]
    if length is None:
        return "all", ""
    since = now - length
    level = rollups.choose_bucket(since, now)
    return level, rollups.bucket_key(format_time(since), level)


def handler_rows(label: str) -> list[dict[str, Any]]:
    """The page's rows: every loaded handler, then any other that ran in the window."""
    store = get_store()
    now = dt.datetime.now(dt.UTC)
    stats = store.handler_stats(*window_start(label, now))
    loaded: dict[str, signals.Handler] = {}
    for handler in signals.registered_handlers():
        loaded.setdefault(handler.name, handler)
    pending = store.pending_summary()
    names = [*loaded, *sorted(set(stats) - set(loaded))]
    failing = store.failing_counts(names, cap=FAILING_CAP)
    retrying = store.retry_counts()
    default_retries = int(current_app.config.get("HANDLER_RETRIES", 10))
    last = store.get_runs([row.last_failure_id for row in stats.values()
                           if row.last_failure_id])
    rows = []
    for name in names:
        current = loaded.get(name)
        waiting = [row for row in pending
                   if current is not None and current.matches(EventKind(row[0], row[1]))]
        oldest = min((row[3] for row in waiting), default=None)
        found = stats.get(name, rollups.HandlerStats(name))
        try:
            enabled = current is None or current.is_enabled(current_app.config)
        except Exception:  # the dispatcher skips a handler whose enabled() raises
            enabled = False
        rows.append({
            "enabled": enabled,
            "name": name, "handler": current, "stats": found,
            "last_failure": last.get(found.last_failure_id or 0),
            "pending": sum(row[2] for row in waiting),
            "failing": failing.get(name, 0),
            "retrying": retrying.get(name, {}).get("retrying", 0),
            "gave_up": retrying.get(name, {}).get("gave_up", 0),
            "retries": current.retries if current is not None and current.retries is not None
            else default_retries,
            "retries_default": current is None or current.retries is None,
            "oldest_seconds": (now - rollups.parse_time(oldest)).total_seconds()
            if oldest else None,
        })
    return rows


@bp.get("/handlers")
def handlers_page() -> str:
    label = request.args.get("window") or DEFAULT_WINDOW
    rows = handler_rows(label)
    return render_template("handlers.html", tab="handlers", rows=rows, window=label,
                           windows=list(WINDOWS), result=session.pop(RESULT_KEY, None),
                           failing_cap=FAILING_CAP)


def replay_plan() -> dict[str, Any]:
    """The bulk replay the query (GET) or the form (POST) asks for, and its events."""
    values = request.values
    name = values.get("handler") or ""
    if not name:
        raise BadRequest("choose the handler to replay (handler=NAME)")
    mode = values.get("mode") or "failed"
    if mode not in ("all", "failed"):
        raise BadRequest(f"mode must be all or failed; got {mode!r}")
    filters = event_filters(values)
    failed_since = values.get("failed_since") or None
    if failed_since:
        try:
            age = rollups.parse_age(failed_since)
        except ValueError as error:
            raise BadRequest(f"failed_since: {error}") from None
        cutoff = format_time(rollups.shifted(dt.datetime.now(dt.UTC), -age))
    else:
        cutoff = None
    ids = replay.select_events(get_store(), current_app.config, name, filters,
                                    only_failed=mode == "failed", failed_since=cutoff)
    kept = {key: values[key] for key in REPLAY_FILTERS if values.get(key)}
    return {"handler": name, "mode": mode, "failed_since": failed_since, "filters": kept,
            "event_ids": ids}


@bp.get("/handlers/replay")
def replay_confirm() -> str:
    """Step one: how many events the replay would run the handler on."""
    return render_template("handler_replay.html", tab="handlers", plan=replay_plan())


@bp.post("/handlers/replay")
def replay_run() -> Response:
    """Step two: run it, then show the outcome on the handlers page."""
    plan = replay_plan()
    heartbeat = current_app.extensions.get(HEARTBEAT)  # a long replay is not a hung worker
    outcome = replay.replay_events(
        get_store(), current_app.config, plan["handler"], plan["event_ids"],
        only_failed=plan["mode"] == "failed",
        progress=(lambda _: heartbeat()) if heartbeat else None)
    session[RESULT_KEY] = {"handler": plan["handler"], "events": len(plan["event_ids"]),
                           **outcome.as_dict()}
    return redirect(url_for("handlers.handlers_page") + "#handlers", 303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
