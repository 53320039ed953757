"""License-webhook receiver: ingest, verify, normalize, store, dispatch, inspect.

``create_app`` wires the pieces; it opens the database, loads plugins and starts the
dispatcher, so importing the package has no side effects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from .signals import on

__all__ = ["create_app", "on"]

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Top-level ``templates/`` or ``samples/`` in a checkout, or the copy in the wheel."""
    checkout = PACKAGE_DIR.parent / name
    return checkout if checkout.is_dir() else PACKAGE_DIR / name


def create_app(config: Mapping[str, Any] | None = None, *, background: bool = True) -> Flask:
    """Build the app: settings, store, plugins, blueprints, dispatcher.

    ``background=False`` starts no threads (one-off commands such as ``receiver replay``).
    """
    from . import plugins, verify, web
    from .config import load_settings
    from .dispatch import Dispatcher
    from .maintenance import Maintenance
    from .metrics import IngestTimer, UnavailableCounts
    from .store import open_store

    settings = load_settings(config)
    for endpoint in settings["ENDPOINTS"].values():
        verify.check_endpoint(endpoint)

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
    maintenance = Maintenance(store, app.config, unavailable=unavailable)
    app.extensions["receiver.maintenance"] = maintenance

    web.init_app(app)
    if background:
        dispatcher.start()
        if not app.testing:
            maintenance.start()
    return app
