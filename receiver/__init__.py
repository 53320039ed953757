"""License-webhook receiver: ingest, verify, normalize, store, dispatch, inspect.

``create_app`` wires the pieces; it opens the database, loads plugins and starts the
dispatcher, so importing the package has no side effects.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .handlers.retries import GiveUp, RetryLater, retries
from .handlers.signals import on
from .resources import PACKAGE_DIR, resource_dir

__all__ = ["GiveUp", "RetryLater", "create_app", "on", "retries"]

#: Upkeep ticks (0.1 s) between writes of the problems noted and sends of due alerts, and
#: between checks of the dispatch backlog.
PROBLEMS_EVERY = 10
BACKLOG_EVERY = 50
#: Upkeep ticks between looks at whether a periodic reconcile is due.
RECONCILE_EVERY = 10


def create_app(config: Mapping[str, Any] | None = None, *, background: bool = True) -> Flask:
    """Build the app: settings, store, plugins, blueprints, dispatcher.

    ``background=False`` starts no threads (one-off commands such as ``receiver replay``).
    """
    from . import verify, web
    from .config import load_settings
    from .handlers import plugins
    from .handlers.dispatch import Dispatcher
    from .handlers.signals import runs_recorded
    from .problems.alerts import AlertSender
    from .problems.board import Noticeboard
    from .read.metrics import IngestTimer
    from .reconcile.schedule import ReconcileSchedule, check_settings
    from .store import open_store
    from .store.upkeep import UnavailableCounts, Upkeep

    settings = load_settings(config)
    for endpoint in settings["ENDPOINTS"].values():
        verify.check_endpoint(endpoint)
    check_settings(settings)

    app = Flask(__name__, template_folder=str(resource_dir("templates")),
                static_folder=str(PACKAGE_DIR / "static"))
    app.config.update(settings)
    logging.basicConfig(level=logging.INFO)

    store = open_store(app.config["DATABASE"], busy_timeout_ms=app.config["BUSY_TIMEOUT"],
                       max_size=app.config["MAX_DATABASE_SIZE"],
                       pool_size=app.config["POOL_SIZE"],
                       prepared_statements=app.config["PREPARED_STATEMENTS"])
    store.migrate()
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = store.secret_key()
    app.extensions["receiver.store"] = store
    app.extensions["receiver.plugins"] = plugins.load_plugins(app.config)
    dispatcher = Dispatcher(store, app.config)
    app.extensions["receiver.dispatcher"] = dispatcher

    unavailable = app.extensions["receiver.unavailable"] = UnavailableCounts()
    app.extensions["receiver.ingest_timer"] = IngestTimer()
    board = app.extensions["receiver.problems"] = Noticeboard(store, app.config,
                                                             socket.gethostname())
    runs_recorded.connect(board.on_runs_recorded, sender=store)
    sender = AlertSender(store, app.config, lambda: dispatcher.owner)
    reconciling = app.extensions["receiver.reconcile"] = ReconcileSchedule(
        store, app.config, owner=lambda: dispatcher.owner, dispatch=dispatcher.submit)
    upkeep = Upkeep(store, app.config, unavailable=unavailable,
                    jobs=[(PROBLEMS_EVERY, board.flush), (BACKLOG_EVERY, board.check_backlog),
                          (PROBLEMS_EVERY, sender.send_due),
                          (RECONCILE_EVERY, reconciling.tick)],
                    on_unavailable=board.outage.unavailable)
    app.extensions["receiver.upkeep"] = upkeep

    web.init_app(app)
    if background:
        web.access.end_sessions_of_other_tokens(app)
        dispatcher.start()
        if not app.testing:
            upkeep.start()
    return app
