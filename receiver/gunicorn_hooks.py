"""gunicorn server hooks. ``receiver serve`` installs them; under gunicorn itself, load this
module as a config file: ``gunicorn -c python:receiver.gunicorn_hooks 'receiver:create_app()'``.
"""

from __future__ import annotations

from typing import Any

from .web.streaming import HEARTBEAT


def post_worker_init(worker: Any) -> None:
    """Hand the worker's heartbeat to the app it serves.

    gunicorn's master kills a worker silent for ``--timeout`` seconds, and a sync worker is
    silent for the whole of a request. A long streamed export (a million events is half a
    minute) calls the heartbeat between chunks, so it is not taken for a hung worker. The
    gthread worker heartbeats from its own loop; calling this too does no harm.
    """
    extensions = getattr(worker.wsgi, "extensions", None)
    if isinstance(extensions, dict):
        extensions[HEARTBEAT] = worker.notify
