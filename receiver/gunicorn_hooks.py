"""gunicorn server hooks and worker classes. ``receiver serve`` installs them; under gunicorn
itself, load this module as a config file and name a worker class:
``gunicorn -c python:receiver.gunicorn_hooks -k receiver.gunicorn_hooks.ThreadWorker
--threads 32 'receiver:create_app()'``.

The worker classes are gunicorn's own with a read timeout: a client that sends nothing for
``RECEIVER_READ_TIMEOUT`` seconds while its request line, headers or body are being read is
dropped. gunicorn has no such timeout: a sync worker waits on a silent client until the
master kills the worker (``--timeout``), a thread of the threaded worker for ever.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.workers import gthread, sync

from .web.streaming import HEARTBEAT

#: Seconds without a byte from the client before its connection is dropped, unless the app's
#: ``READ_TIMEOUT`` setting says otherwise.
READ_TIMEOUT = 10


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


class ReadTimedOut(NoMoreData, TimeoutError):
    """The client sent nothing for the read timeout. A ``NoMoreData``, so gunicorn closes
    the connection quietly when it happens in the request line or headers; a
    ``TimeoutError``, which the ingest middleware answers with a 408 when it happens in a
    body (``receiver.web.ingest``)."""

    def __str__(self) -> str:
        return "the client sent nothing for the read timeout"


class TimedConnection(socket.socket):
    """An accepted connection whose blocking reads give up after the read timeout.

    The timeout is the kernel's (``SO_RCVTIMEO``): gunicorn switches its sockets between
    blocking and non-blocking, which resets a Python-level timeout but not this one, and
    writes (a long export to a slow reader) are left alone. A blocking read that times out
    fails with ``EAGAIN``, raised here as ``ReadTimedOut``.

    Closing, gunicorn half-closes and then reads until the client closes too (up to 2 s), so
    that unread request bytes cannot make the kernel reset the connection under the answer.
    A sync worker serves no one while it waits: a round trip per request, two seconds for a
    client that never closes. When nothing is left unread at the half-close (the request
    was read whole, as every answered delivery's is), the wait is skipped: the close sends
    no reset then. Bytes still there are drained as gunicorn does."""

    __slots__ = ("_done",)

    @classmethod
    def adopt(cls, connection: socket.socket, seconds: float) -> TimedConnection:
        timed = cls(connection.family, connection.type, connection.proto,
                    fileno=connection.detach())
        whole = int(seconds)
        timed.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                         struct.pack("ll", whole, int((seconds - whole) * 1_000_000)))
        timed._done = False
        return timed

    def shutdown(self, how: int) -> None:
        super().shutdown(how)
        if how == socket.SHUT_WR:
            try:
                self._done = not super().recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:  # nothing unread (EAGAIN: the client has not closed yet), or gone
                self._done = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._done:
            return b""  # half-closed with nothing unread: see the class's docstring
        try:
            return super().recv(bufsize, flags)
        except BlockingIOError:
            if self.gettimeout() is None:  # blocking: SO_RCVTIMEO ran out
                raise ReadTimedOut() from None
            raise  # non-blocking: nothing there yet, as usual


def read_timeout_of(wsgi: Any) -> float:
    config = getattr(wsgi, "config", None)
    value = config.get("READ_TIMEOUT") if isinstance(config, dict) else None
    return float(value) if value else float(READ_TIMEOUT)


class SyncWorker(sync.SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker (one request at a time per process) with the read timeout."""

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.read_timeout = read_timeout_of(self.wsgi)

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        super().handle(listener, TimedConnection.adopt(client, self.read_timeout), addr)


class ThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker with the read timeout, which stops accepting while every
    thread is busy.

    gunicorn's own keeps accepting and queues each new connection behind the busy threads:
    a worker whose threads all wait on slow clients would hold a health check or a delivery
    it accepted until one of them times out, while another worker has threads free. This
    one leaves the connection in the listen queue for a worker with a free thread. It also
    closes a finished connection in the thread that served it, not in the event loop.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0  # connections handed to the thread pool and not finished
        self.read_timeout = float(READ_TIMEOUT)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.read_timeout = read_timeout_of(self.wsgi)

    def handle(self, conn: Any) -> Any:
        if not conn.initialized and not isinstance(conn.sock, TimedConnection):
            conn.sock = TimedConnection.adopt(conn.sock, self.read_timeout)
        result = super().handle(conn)
        if not result and result is not gthread._DEFER:
            # Closed here, in this thread. gunicorn closes it in its event loop, lingering up
            # to 2 s for the client to close its side: a few dozen dropped slow clients that
            # never do stopped that loop long enough for the master to kill the worker.
            conn.close(graceful=True)
        return result

    # The methods below run in the worker's main thread (gunicorn's event loop).

    def enqueue_req(self, conn: Any) -> None:
        self.in_flight += 1
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.in_flight -= 1
        super().finish_request(conn, fs)

    def accept(self, listener: Any) -> None:
        super().accept(listener)
        if self.in_flight >= self.cfg.threads:
            super().set_accept_enabled(False)  # the loop enables it again (below)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.in_flight < self.cfg.threads)
