"""Slow clients against each worker model: do deliveries and ``/-/health`` still answer?

    python benchmarks/slow_clients.py                     # ~2 minutes
    python benchmarks/slow_clients.py --slow 50 --duration 15 --read-timeout 10

For each worker model, ``receiver:create_app()`` is started under gunicorn (2 workers, on a
SQLite file) and ``--slow`` connections are held open all the time: half send a request
line and part of the headers, half the headers of ``POST /hooks`` with ``Content-Length:
1000`` and 10 bytes of body, and then nothing. A connection the server drops is opened again
at once (an attacker does). Meanwhile one client sends a delivery then asks ``/-/health``,
one after the other, each with a 5 s timeout, for ``--duration`` seconds; the table says how
many answered, how many timed out, the median and worst answer time, and how many slow
connections the server dropped.

Models: gunicorn's ``sync`` (the default of ``receiver serve`` before the read timeout), the
receiver's sync worker with the read timeout, gunicorn's ``gthread`` and the receiver's
threaded worker (both 32 threads). Prints a table and writes ``results/slow-clients.json``.
Nothing asserts on time: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    GunicornSettings,
    Server,
    free_port,
    machine,
    machine_line,
    save_json,
    table,
)

HEADERS_ONLY = b"POST /hooks HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
PARTIAL_BODY = (b"POST /hooks HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{\"id\": \"sl")

MODELS = [
    ("gunicorn sync (before)", "sync", 1),
    ("receiver SyncWorker", "receiver.gunicorn_hooks.SyncWorker", 1),
    ("gunicorn gthread x32", "gthread", 32),
    ("receiver ThreadWorker x32", "receiver.gunicorn_hooks.ThreadWorker", 32),
]


class SlowClients:
    """Keeps ``count`` slow connections open, opening a new one for each the server drops."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, number: int) -> socket.socket | None:
        try:
            connection = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            connection.sendall(HEADERS_ONLY if number % 2 else PARTIAL_BODY)
            connection.setblocking(False)
            return connection
        except OSError:
            return None

    def _run(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        for number in range(self.count):
            connection = self._open(number)
            if connection is not None:
                selector.register(connection, selectors.EVENT_READ, number)
        while not self._stop.is_set():
            for key, _ in selector.select(0.2):
                connection = key.fileobj
                assert isinstance(connection, socket.socket)
                try:
                    data = connection.recv(65536)
                except OSError:
                    data = b""
                if data:
                    continue  # an answer (a 408); the close follows
                selector.unregister(connection)
                connection.close()
                self.dropped += 1
                fresh = self._open(key.data)
                if fresh is not None:
                    selector.register(fresh, selectors.EVENT_READ, key.data)
            open_now = len(selector.get_map())
            for number in range(open_now, self.count):  # refused at open: try again
                fresh = self._open(number)
                if fresh is not None:
                    selector.register(fresh, selectors.EVENT_READ, number)
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)


def probe(port: int, duration: float) -> dict[str, Any]:
    """Deliveries and health checks one after the other for ``duration`` seconds."""
    times: list[float] = []
    timeouts = errors = 0
    ended = time.monotonic() + duration
    number = 0
    while time.monotonic() < ended:
        number += 1
        for method, path, body in (("POST", "/hooks", json.dumps({"id": f"p{number}",
                                                                  "type": "probe"})),
                                   ("GET", "/-/health", None)):
            began = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request(method, path, body=body,
                                   headers={"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    errors += 1
                times.append(time.monotonic() - began)
            except TimeoutError:
                timeouts += 1
            except OSError:
                errors += 1
            finally:
                connection.close()
    return {"answered": len(times), "timeouts": timeouts, "errors": errors,
            "median_ms": round(statistics.median(times) * 1000, 1) if times else None,
            "max_ms": round(max(times) * 1000, 1) if times else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", type=int, default=50, help="slow connections held open")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--read-timeout", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    info = machine()
    rows, results = [], []
    for name, worker_class, threads in MODELS:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            server = Server(name, "receiver:create_app()", port, env={
                "RECEIVER_DATABASE": f"{tmp}/slow.db",
                "RECEIVER_READ_TIMEOUT": str(arguments.read_timeout)})
            server.start(GunicornSettings(workers=arguments.workers, worker_class=worker_class,
                                          threads=threads), ready_path="/-/health")
            try:
                with SlowClients(port, arguments.slow) as slow:
                    time.sleep(1)  # the slow connections are in
                    outcome = probe(port, arguments.duration)
                    outcome["slow_dropped"] = slow.dropped
            finally:
                server.stop()
        results.append({"model": name, **outcome})
        rows.append([name, outcome["answered"], outcome["timeouts"], outcome["errors"],
                     outcome["median_ms"], outcome["max_ms"], outcome["slow_dropped"]])
        print(rows[-1], flush=True)
    print(machine_line(info))
    print(f"{arguments.slow} slow connections, {arguments.workers} workers, read timeout "
          f"{arguments.read_timeout} s, {arguments.duration:g} s of probing per model")
    print(table(["model", "answered", "timed out (5 s)", "errors", "median ms", "max ms",
                 "slow dropped"], rows))
    save_json("slow-clients", {"machine": info, "arguments": vars(arguments),
                                    "results": results})


if __name__ == "__main__":
    main()
