"""Slow clients cannot stall a real gunicorn: connections that send part of their headers or
part of a body and then nothing hold a thread, not a worker, until the read timeout drops
them, while deliveries and ``/-/health`` keep answering; the worker model ``receiver serve``
picks by itself (threads on PostgreSQL and on public hosts, sync workers for SQLite on
loopback); handlers and the upkeep keep working under threads."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import click
import pytest
import requests

from receiver.cli.serve import THREADS, worker_model

from .test_reliability import install_plugin
from .waiting import wait_for

HEADERS_ONLY = b"POST /hooks HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\nX-Sl"
PARTIAL_BODY = (b"POST /hooks/slow HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{\"id\": \"slow")

HANDLER = '''\
import os
from receiver import on

@on("order.*")
def note(event, **extra):
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"{event.id} {os.getpid()}\\n")
'''


@contextmanager
def slow_connections(url: str, count: int) -> Iterator[list[tuple[socket.socket, bytes]]]:
    """``count`` connections, every other one stopped inside its headers, the others inside
    a body of 1,000 bytes; closed at the end."""
    host, port = url.removeprefix("http://").split(":")
    opened: list[tuple[socket.socket, bytes]] = []
    try:
        for number in range(count):
            connection = socket.create_connection((host, int(port)), timeout=5)
            sent = HEADERS_ONLY if number % 2 else PARTIAL_BODY
            connection.sendall(sent)
            opened.append((connection, sent))
        yield opened
    finally:
        for connection, _ in opened:
            connection.close()


def answer_then_close(connection: socket.socket) -> bytes:
    """What the server sends before it closes the connection (blocks until it does)."""
    connection.settimeout(60)  # generous: the read timeout of the test is a few seconds
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def deliver(url: str, number: int) -> dict:
    body = json.dumps({"id": f"ord-{number}", "type": "order.paid", "amount": number})
    response = requests.post(url + "/hooks/shop", data=body, timeout=5,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.both_backends
def test_slow_clients_are_dropped_while_deliveries_and_health_answer(
        serve, tmp_path, db_path, backend, stores) -> None:
    site, handled = tmp_path / "site", tmp_path / "handled.log"
    install_plugin(site, "note_hooks", HANDLER)
    handled.touch()
    env = {"PYTHONPATH": str(site), "HANDLER_LOG": str(handled),
           "RECEIVER_READ_TIMEOUT": "4"}
    # On PostgreSQL the default is threaded; on SQLite it is threaded on a public host, which
    # a test cannot bind: ask for it.
    args = () if backend == "postgres" else ("--worker-class", "gthread")
    server = serve(*args, env=env, database=db_path)
    assert f"2 workers x {THREADS} threads; read timeout 4 s" in server.output()
    assert "Using worker: receiver.gunicorn_hooks.ThreadWorker" in server.output()

    with slow_connections(server.url, 50) as slow:
        event_ids = []
        for number in range(20):
            event_ids.append(deliver(server.url, number)["event_id"])
            health = requests.get(server.url + "/-/health", timeout=5)
            assert health.status_code == 200 and health.json()["ok"] is True
        assert requests.get(server.url + "/api/events", timeout=5).status_code == 200

        # Each slow client is dropped by the read timeout: a cut body is answered 408, cut
        # headers are closed without an answer.
        for connection, sent in slow:
            answer = answer_then_close(connection)
            if sent is PARTIAL_BODY:
                assert answer.startswith(b"HTTP/1.1 408 "), answer
                assert b"RECEIVER_READ_TIMEOUT" in answer
            else:
                assert answer == b""

    # The cut bodies are refused deliveries (status 408, no event); cut headers never became
    # a request.
    answer = requests.get(server.url + "/api/deliveries?limit=200", timeout=5).json()
    statuses = [delivery["status_code"] for delivery in answer["deliveries"]]
    assert statuses.count(408) == 25 and statuses.count(200) == 20, statuses
    assert all(delivery["event_id"] is None for delivery in answer["deliveries"]
               if delivery["status_code"] == 408)

    store = stores(db_path)
    # Handlers ran in the background dispatch thread of the threaded workers...
    wait_for(lambda: len(handled.read_text().splitlines()) == 20, timeout=30,
             message=lambda: f"handlers ran for {handled.read_text()!r}")
    wait_for(lambda: all(store.get_event(event_id).dispatch_status == "done"
                         for event_id in event_ids), timeout=30)
    # ... and their upkeep thread indexed the events for search.
    wait_for(lambda: requests.get(server.url + "/api/events?q=ord", timeout=5).json()
             .get("not_yet_searchable") == 0, timeout=30)

    # A clean drop: nothing logged as an error, no traceback, no worker restarted.
    output = server.output()
    assert "Traceback" not in output and "[ERROR]" not in output, output
    assert "Socket error" not in output and "WORKER TIMEOUT" not in output, output


def test_the_sync_default_drops_a_silent_client_too(serve) -> None:
    server = serve(env={"RECEIVER_READ_TIMEOUT": "2"})
    assert "2 sync workers; read timeout 2 s" in server.output()
    assert "Using worker: receiver.gunicorn_hooks.SyncWorker" in server.output()
    with slow_connections(server.url, 2) as slow:
        for connection, sent in slow:
            answer = answer_then_close(connection)
            assert answer.startswith(b"HTTP/1.1 408 ") if sent is PARTIAL_BODY \
                else answer == b""
    assert deliver(server.url, 1)["duplicate"] is False
    output = server.output()
    assert "Traceback" not in output and "[ERROR]" not in output, output
    assert "WORKER TIMEOUT" not in output, output


def raw_delivery(number: int) -> bytes:
    body = json.dumps({"id": f"ord-{number}", "type": "order.paid"}).encode()
    return (b"POST /hooks/shop HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def reset_after_answer(url: str, number: int) -> bool:
    """Deliver on a raw connection, read the answer to its end, then send a byte the server
    will never read: whether the server had closed the connection (a reset comes back)
    rather than still draining it, as gunicorn does for up to 2 s after each request."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(raw_delivery(number))
        assert answer_then_close(connection).startswith(b"HTTP/1.1 200 ")
        try:
            connection.sendall(b"x")
            connection.shutdown(socket.SHUT_WR)
            return connection.recv(1) != b""
        except OSError:  # reset, broken pipe, or no longer connected: closed by the server
            return True


def test_a_sync_worker_is_free_once_its_answer_is_sent(serve) -> None:
    """The worker closes a connection it read whole at once, instead of waiting for the
    client to close first (a round trip per request, 2 s for a client that never does)."""
    server = serve("--workers", "1")
    assert any(reset_after_answer(server.url, number) for number in range(5))
    # Bytes the server did not read (a request sent behind the first) are drained as
    # gunicorn does: the first answer arrives whole, never cut by a reset.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(raw_delivery(100) + raw_delivery(101))
        connection.shutdown(socket.SHUT_WR)
        answer = answer_then_close(connection)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1, answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["duplicate"] is False, answer
    assert "Traceback" not in server.output()


def test_a_body_cut_by_a_closed_connection_is_a_refused_delivery(serve) -> None:
    server = serve()
    with slow_connections(server.url, 1) as slow:
        connection, _ = slow[0]
        connection.shutdown(socket.SHUT_WR)  # the client is done sending: 10 of 1,000 bytes
        answer = answer_then_close(connection)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    (delivery,) = requests.get(server.url + "/api/deliveries", timeout=5).json()["deliveries"]
    assert delivery["status_code"] == 400 and delivery["event_id"] is None
    assert re.search(r"before its 1000 bytes came: the connection closed", delivery["error"])
    assert "Traceback" not in server.output()


@pytest.mark.parametrize(("options", "host", "backend", "model"), [
    (("auto", None), "127.0.0.1", "sqlite", ("sync", 1)),
    (("auto", None), "localhost", "sqlite", ("sync", 1)),
    (("auto", None), "0.0.0.0", "sqlite", ("gthread", THREADS)),
    (("auto", None), "::", "sqlite", ("gthread", THREADS)),
    (("auto", None), "127.0.0.1", "postgres", ("gthread", THREADS)),
    (("auto", 1), "0.0.0.0", "postgres", ("sync", 1)),
    (("auto", 8), "127.0.0.1", "sqlite", ("gthread", 8)),
    (("sync", None), "0.0.0.0", "postgres", ("sync", 1)),
    (("gthread", None), "127.0.0.1", "sqlite", ("gthread", THREADS)),
    (("gthread", 1), "127.0.0.1", "sqlite", ("gthread", 1)),
])
def test_the_worker_model_suits_the_backend_and_the_host(options, host, backend, model) -> None:
    assert worker_model(*options, host=host, backend=backend) == model


def test_sync_workers_with_threads_is_refused() -> None:
    with pytest.raises(click.UsageError, match="--threads must be 1"):
        worker_model("sync", 4, host="127.0.0.1", backend="sqlite")


class Stalling:
    """A request body that gives ``data`` and then fails as a read timeout does."""

    def __init__(self, data: bytes, error: OSError) -> None:
        self.data, self.error = data, error

    def read(self, size: int = -1) -> bytes:
        if self.data:
            given, self.data = self.data, b""
            return given
        raise self.error


@pytest.mark.parametrize(("error", "status"), [
    (TimeoutError(), 408), (ConnectionResetError(104, "reset"), 400)])
def test_a_body_cut_in_the_middle_is_refused_and_kept(app, store, error, status) -> None:
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/hooks/cut", method="POST", data=b"x" * 1000,
                             content_type="application/json").get_environ()
    environ["wsgi.input"] = Stalling(b'{"id": "cu', error)
    environ["wsgi.input_terminated"] = True
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app.wsgi_app(environ, lambda *given: answered.append(given)))
    assert answered[0][0].startswith(f"{status} ")
    answer = json.loads(body)
    assert answer["ok"] is False and "1000 bytes" in answer["error"]
    delivery = store.get_delivery(answer["delivery_id"])
    assert delivery["status_code"] == status and delivery["event_id"] is None
    assert delivery["body_size"] == len(b'{"id": "cu')
