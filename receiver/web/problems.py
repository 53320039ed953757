"""The problems page (``/problems``, docs/reference.md#pages) and its Acknowledge button.

Open problems first, then acknowledged ones, then the recently resolved (the store's
``list_problems``), each with its alerts: sent, or waiting with the target's last error.
Below them, the last reconcile of each endpoint against its vendor's event log
(``/api/reconcile``) and what it found missing.
Everything shown is escaped like any other text; an alert target's answer is never markup.
The header count of every page is ``common.open_problem_total``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..errors import NotFound
from ..store import MAX_ID
from . import csrf
from .common import get_store, share_page_behaviour

bp = Blueprint("problems", __name__)
share_page_behaviour(bp)


@bp.before_request
def protect_forms() -> None:
    if request.method == "POST":
        csrf.check_csrf()


def problem_rows() -> list[dict[str, Any]]:
    """Each problem with its alerts (``alerts_of``), in the page's order."""
    store = get_store()
    return [{**problem, "alerts": store.alerts_of(problem["id"])}
            for problem in store.list_problems()]


def reconcile_rows() -> list[dict[str, Any]]:
    """The last reconcile run of each endpoint, and the endpoints with an API token that
    have not run yet (``run`` None)."""
    from ..reconcile.schedule import endpoints_to_reconcile

    runs = {run["endpoint"]: run for run in get_store().latest_reconcile_runs()}
    names = sorted({*runs, *(e.name for e in endpoints_to_reconcile(current_app.config))})
    return [{"endpoint": name, "run": runs.get(name)} for name in names]


@bp.get("/problems")
def problems_page() -> str:
    return render_template("problems.html", tab="problems", rows=problem_rows(),
                           reconciles=reconcile_rows(),
                           reconcile_every=span(current_app.config.get("RECONCILE_EVERY")),
                           reconcile_window=span(current_app.config.get("RECONCILE_WINDOW")))


def span(seconds: float | None) -> str | None:
    """``15 min``, ``24 h``: a setting's duration in words."""
    from ..read.schedule import wait_text

    return None if not seconds else wait_text(seconds).removeprefix("in ")


@bp.post("/problems/<int:problem_id>/acknowledge")
def acknowledge(problem_id: int) -> Response:
    """The Acknowledge button: back to the page, at the problem's row."""
    if not 0 < problem_id <= MAX_ID:
        raise NotFound(f"no problem {problem_id}")
    get_store().acknowledge_problem(problem_id)
    return redirect(url_for("problems.problems_page") + f"#problem-{problem_id}", 303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
