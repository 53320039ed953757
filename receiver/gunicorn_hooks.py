"""gunicorn server hooks. ``receiver serve`` installs them; under gunicorn itself, load this
module as a config file: ``gunicorn -c python:receiver.gunicorn_hooks 'receiver:create_app()'``.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

#: Where the app finds the worker's heartbeat (``app.extensions``).
HEARTBEAT = "receiver.heartbeat"
#: Unsent bytes a streamed answer may leave in the kernel before a write waits.
UNSENT_LIMIT = 128 * 1024


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


def bound_unsent(environ: Mapping[str, Any]) -> None:
    """Let a streamed answer's writes wait for the client after ``UNSENT_LIMIT`` unsent bytes
    (``TCP_NOTSENT_LOWAT``) instead of after a send buffer the kernel grows to megabytes.

    A worker heartbeats between writes. With a large buffer, a blocked write resumes only
    once the client has drained a megabyte or more: a client reading 3 MB/s left the worker
    silent for 0.6 s at a time (0.08 s with the limit), so one reading under 1 MB/s would
    have it killed at ``--timeout 2``. Bytes in flight do not count against the limit, so a
    distant client is not slowed. No effect outside gunicorn, on a Unix socket, or where the
    option does not exist.
    """
    connection = environ.get("gunicorn.socket")
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if connection is None or option is None or connection.family not in (
            socket.AF_INET, socket.AF_INET6):
        return
    try:
        connection.setsockopt(socket.IPPROTO_TCP, option, UNSENT_LIMIT)
    except OSError:
        pass
