"""The problems page (``/problems``, docs/reference.md#pages) and its Acknowledge button.

Open problems first, then acknowledged ones, then the recently resolved (the store's
``list_problems``), each with its alerts: sent, or waiting with the target's last error.
Everything shown is escaped like any other text; an alert target's answer is never markup.
The header count of every page is ``common.open_problem_total``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, redirect, render_template, request, url_for
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


@bp.get("/problems")
def problems_page() -> str:
    return render_template("problems.html", tab="problems", rows=problem_rows())


@bp.post("/problems/<int:problem_id>/acknowledge")
def acknowledge(problem_id: int) -> Response:
    """The Acknowledge button: back to the page, at the problem's row."""
    if not 0 < problem_id <= MAX_ID:
        raise NotFound(f"no problem {problem_id}")
    get_store().acknowledge_problem(problem_id)
    return redirect(url_for("problems.problems_page") + f"#problem-{problem_id}", 303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
