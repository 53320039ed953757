"""What a long streamed answer (the export, a bulk replay) needs from the server it runs
under: the worker's heartbeat, handed over by ``receiver.gunicorn_hooks``, and a bounded
send buffer, so a slow client does not make a working worker look hung."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

#: Where the app finds the worker's heartbeat (``app.extensions``).
HEARTBEAT = "receiver.heartbeat"
#: Unsent bytes a streamed answer may leave in the kernel before a write waits.
UNSENT_LIMIT = 128 * 1024


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
