"""Latency that ``receiver forward`` adds per delivery, remote and local on this machine.

Starts a remote ``receiver serve`` (gthread, with an inspector token), a local HTTP server in
this process, and ``receiver forward`` following the remote's feed as a subprocess. Then it
POSTs deliveries to the remote one at a time, after a random pause (so each lands at a random
point of the feed's long-poll), and times each from the start of the POST to its arrival at
the local server (one clock: both ends are in this process). Prints the median and more.

    python benchmarks/forward_latency.py [--count 200] [--seed 1]

Not a test: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "forward-benchmark"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Arrivals:
    def __init__(self) -> None:
        self.times: dict[bytes, float] = {}
        self.condition = threading.Condition()

    def record(self, body: bytes) -> None:
        now = time.perf_counter()
        with self.condition:
            self.times[body] = now
            self.condition.notify_all()

    def wait_for(self, body: bytes, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self.condition:
            while body not in self.times:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the delivery did not arrive at the local server")
                self.condition.wait(left)
            return self.times[body]


def local_server(arrivals: Arrivals) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrivals.record(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def post(port: int, body: bytes) -> float:
    """POST to the remote; the time its answer took."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/hooks", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the remote answered {response.status}")
    finally:
        connection.close()
    return time.perf_counter() - started


def wait_for_health(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("receiver serve exited")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/-/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("receiver serve did not answer")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-pause", type=float, default=0.3,
                        help="Longest random pause between deliveries (seconds).")
    options = parser.parse_args()
    rng = random.Random(options.seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        remote = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve", "--port", str(port),
             "--worker-class", "gthread", "--threads", "8"],
            env={**env, "RECEIVER_DATABASE": f"{tmp}/remote.db",
                 "RECEIVER_INSPECTOR_TOKEN": TOKEN},
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        arrivals = Arrivals()
        local = local_server(arrivals)
        forwarder = None
        try:
            wait_for_health(port, remote)
            forwarder = subprocess.Popen(
                [sys.executable, "-m", "receiver", "forward", "--from",
                 f"http://127.0.0.1:{port}", "--token", TOKEN, "--to",
                 f"http://127.0.0.1:{local.server_address[1]}/webhooks", "--since", "0",
                 "--state", f"{tmp}/forward.json"],
                env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for n in range(5):  # warm up: imports, connections, the first long-poll
                body = json.dumps({"type": "bench.warmup", "id": f"w{n}"}).encode()
                post(port, body)
                arrivals.wait_for(body)
            total, after_answer, answer = [], [], []
            for n in range(options.count):
                time.sleep(rng.uniform(0, options.max_pause))
                body = json.dumps({"type": "bench.latency", "id": f"evt_{n}"}).encode()
                started = time.perf_counter()
                took = post(port, body)
                arrived = arrivals.wait_for(body)
                total.append((arrived - started) * 1000)
                after_answer.append((arrived - started - took) * 1000)
                answer.append(took * 1000)
        finally:
            if forwarder is not None:
                stop(forwarder)
            stop(remote)
            local.shutdown()

    def figures(values: list[float]) -> str:
        ordered = sorted(values)
        p90 = ordered[int(len(ordered) * 0.9) - 1]
        return (f"median {statistics.median(values):6.1f} ms  p90 {p90:6.1f} ms  "
                f"min {ordered[0]:5.1f} ms  max {ordered[-1]:6.1f} ms")

    print(f"receiver forward, {options.count} deliveries, remote and local on this machine")
    print(f"  POST at the remote -> arrival at the local app: {figures(total)}")
    print(f"  remote's 200 answer -> arrival at the local app: {figures(after_answer)}")
    print(f"  (the remote's own answer to the POST:            {figures(answer)})")
    print(f"added latency per delivery (median): {statistics.median(total):.1f} ms")


if __name__ == "__main__":
    main()
