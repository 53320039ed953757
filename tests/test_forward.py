"""``receiver forward``: a real remote ``receiver serve`` (with an inspector token), a real
local HTTP server in the test, and the CLI as a subprocess; the retry and backoff logic is
unit-tested with an injected sleep (nothing here sleeps on purpose but the local 500s)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from receiver import verify
from receiver.clients import forward
from receiver.clients.forward import (
    Forwarder,
    ForwardError,
    LocalAnswer,
    RemoteUnavailable,
    Stopper,
)
from receiver.store import DeliveryFilters

from .conftest import sample
from .waiting import wait_for

TOKEN = "forward-test-token"
PUBLIC_URL = "https://hooks.example.com/hooks/keygen"
# gthread: a forwarder's long-poll holds a thread, not the only worker that ingests.
SERVE_ARGS = ("--worker-class", "gthread", "--threads", "8")


# -- a real local app ------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class LocalApp:
    """``http.server`` in a thread: records every request's bytes and headers, and answers
    the statuses in ``script`` first, then 200."""

    url: str
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [item.body for item in self.received]


@pytest.fixture
def local_app() -> Iterator[LocalApp]:
    app = LocalApp("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with app.lock:
                app.received.append(Received(self.path, list(self.headers.items()), body))
                status = app.script.pop(0) if app.script else 200
            answer = json.dumps({"status": status}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    with running(Handler) as base:
        app.url = base + "/webhooks"
        yield app


@contextlib.contextmanager
def running(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port in a thread (quietly); yields its base URL."""

    class Quiet(handler):  # type: ignore[valid-type,misc]
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- an app written from Keygen's published webhook examples ---------------------------------


def keygen_example_verify(method: str, path: str, headers: Mapping[str, str], body: bytes,
                          verify_key_hex: str) -> str | None:
    """Keygen's own handler example (example-webhook-handler, example-password-reset-
    fulfillment), step by step: parse ``Keygen-Signature``, insist on ed25519, compare the
    SHA-256 ``Digest`` of the raw body, sign-string from the request's method, path (without
    the query, as Express's ``req.path``), ``Host`` header and ``Date``, verify with the
    account's Ed25519 key. None when it passes, else why not."""
    header = headers.get("keygen-signature")
    if header is None:
        return "signature is missing"
    pairs = [re.match(r'([^=]+)="([^"]+)"', part) for part in re.split(r"\s*,\s*", header)]
    params = {match.group(1): match.group(2) for match in pairs if match}
    if params.get("algorithm") != "ed25519":
        return f"algorithm did not match: {params.get('algorithm')}"
    digest = "sha-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    if digest != headers.get("digest"):
        return "digest did not match"
    data = "\n".join([f"(request-target): {method.lower()} {path}",
                      f"host: {headers.get('host')}", f"date: {headers.get('date')}",
                      f"digest: {digest}"])
    key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(verify_key_hex))
    try:
        key.verify(base64.b64decode(params["signature"]), data.encode())
    except (InvalidSignature, KeyError, ValueError):
        return f"signature did not match (host {headers.get('host')!r}, path {path!r})"
    return None


@dataclass
class KeygenExampleApp:
    """The example app on a loopback port, route ``/hooks/keygen`` (the path Keygen posts to
    on the public receiver): 200 when the signature checks out, 400 when not (as Keygen's
    examples answer)."""

    url: str
    verify_key_hex: str
    verdicts: list[str | None] = field(default_factory=list)


@pytest.fixture
def keygen_example_app(keygen_key: ed25519.Ed25519PrivateKey) -> Iterator[KeygenExampleApp]:
    app = KeygenExampleApp("", public_hex(keygen_key))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            headers = {name.lower(): value for name, value in self.headers.items()}
            verdict = (keygen_example_verify("POST", path, headers, body, app.verify_key_hex)
                       if path == "/hooks/keygen" else f"no route {path}")
            app.verdicts.append(verdict)
            self.send_response(200 if verdict is None else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with running(Handler) as base:
        app.url = base + "/hooks/keygen"
        yield app


# -- running the CLI ------------------------------------------------------------------------


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No RECEIVER_* from the shell, and a HOME of the test's own for the default state."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RECEIVER_") and k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


def forward_args(remote: Any, local: LocalApp, *args: str, token: str | None = TOKEN,
                 ) -> list[str]:
    command = [sys.executable, "-m", "receiver", "forward", "--from", remote.url,
               "--to", local.url, *args]
    if token is not None:
        command += ["--token", token]
    return command


def run_forward(tmp_path: Path, remote: Any, local: LocalApp, *args: str,
                token: str | None = TOKEN, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(forward_args(remote, local, *args, token=token),
                          capture_output=True, text=True, timeout=60,
                          env=cli_env(tmp_path, **env))


def post(remote: Any, path: str, body: bytes, headers: Mapping[str, str] | None = None,
         ) -> dict[str, Any]:
    answer = requests.post(remote.url + path, data=body, timeout=10,
                           headers=dict(headers or {"Content-Type": "application/json"}))
    record: dict[str, Any] = answer.json()
    record["status"] = answer.status_code
    return record


def order(n: int, tag: str) -> bytes:
    """A generic delivery; ``tag`` keeps tests on the shared remote from being duplicates."""
    return json.dumps({"type": "order.paid", "id": f"evt_{tag}_{n}", "n": n}).encode()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One remote receiver with an inspector token for the module's end-to-end tests; each
    test starts after the newest delivery there (``since``)."""
    from .conftest import start_server

    server = start_server(tmp_path_factory.mktemp("remote"), *SERVE_ARGS,
                          env={"RECEIVER_INSPECTOR_TOKEN": TOKEN})
    yield server
    server.stop()


def newest(remote: Any) -> str:
    answer = requests.get(remote.url + "/api/deliveries?limit=1", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return str(answer["deliveries"][0]["id"] if answer["deliveries"] else 0)


@pytest.fixture(scope="module")
def keygen_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_hex(key: ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw).hex()


# -- end to end -------------------------------------------------------------------------------


def test_forward_keygen_delivery_arrives_byte_identical_and_verifies(
        serve: Any, local_app: LocalApp, tmp_path: Path, keygen_key: Any) -> None:
    config = (f'[endpoints.keygen]\nsource = "keygen"\npublic_key = "{public_hex(keygen_key)}"\n'
              f'url = "{PUBLIC_URL}"\n')
    remote = serve(*SERVE_ARGS, env={"RECEIVER_INSPECTOR_TOKEN": TOKEN}, config=config)
    body = sample("keygen", "license.created").body
    headers = dict(verify.sign_keygen(body, keygen_key, url=PUBLIC_URL))
    headers.update({"Content-Type": "application/json", "X-Custom": "kept",
                    "Connection": "keep-alive, X-Custom-Hop", "X-Custom-Hop": "dropped"})
    answer = post(remote, "/hooks/keygen", body, headers)
    assert answer["status"] == 200 and answer["signature_status"] == "valid"

    result = run_forward(tmp_path, remote, local_app, "--once", "--since", "0",
                         "--state", str(tmp_path / "state.json"))
    assert result.returncode == 0, result.stderr
    assert len(local_app.received) == 1
    got = local_app.received[0]
    assert got.body == body
    assert got.path == "/webhooks"
    assert got.header("Keygen-Signature") == headers["Keygen-Signature"]
    assert got.header("Digest") == headers["Digest"] and got.header("Date") == headers["Date"]
    assert got.header("X-Custom") == "kept" and got.header("X-Custom-Hop") is None
    assert got.header("Content-Length") == str(len(body))
    assert got.header("Host") == local_app.url.split("/")[2]  # ours, not the remote's
    verdict = verify.verify_keygen(got.body, got.headers, keys=[public_hex(keygen_key)],
                                   url=PUBLIC_URL)
    assert verdict.status == "valid", verdict
    line = result.stdout.strip()
    assert line.startswith(f"#{answer['delivery_id']} keygen POST /hooks/keygen -> 200 in ")
    assert line.endswith(" ms")
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["last_id"] == answer["delivery_id"] and state["from"] == remote.url


def keygen_remote(serve: Any, keygen_key: ed25519.Ed25519PrivateKey) -> Any:
    config = (f'[endpoints.keygen]\nsource = "keygen"\npublic_key = "{public_hex(keygen_key)}"\n'
              f'url = "{PUBLIC_URL}"\n')
    return serve(*SERVE_ARGS, env={"RECEIVER_INSPECTOR_TOKEN": TOKEN}, config=config)


def post_as_keygen(remote: Any, keygen_key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    """A signed Keygen delivery, posted with the public Host Keygen would send."""
    body = sample("keygen", "user.password-reset").body
    headers = dict(verify.sign_keygen(body, keygen_key, url=PUBLIC_URL))
    headers.update({"Content-Type": "application/json", "Host": "hooks.example.com"})
    answer = post(remote, "/hooks/keygen", body, headers)
    assert answer["status"] == 200 and answer["signature_status"] == "valid", answer
    return answer


def test_forward_preserve_host_lets_keygens_example_app_verify(
        serve: Any, keygen_example_app: KeygenExampleApp, tmp_path: Path,
        keygen_key: Any) -> None:
    remote = keygen_remote(serve, keygen_key)
    answer = post_as_keygen(remote, keygen_key)

    def forward_to_example(*extra: str) -> subprocess.CompletedProcess[str]:
        state = tmp_path / f"state-{len(keygen_example_app.verdicts)}.json"
        return subprocess.run(
            [sys.executable, "-m", "receiver", "forward", "--from", remote.url, "--to",
             keygen_example_app.url, "--token", TOKEN, "--once", "--since", "0",
             "--state", str(state), *extra],
            capture_output=True, text=True, timeout=60, env=cli_env(tmp_path))

    plain = forward_to_example()
    assert plain.returncode == 1, plain.stderr
    assert plain.stdout.startswith(f"#{answer['delivery_id']} keygen POST /hooks/keygen -> 400")
    assert plain.stdout.strip().endswith("; not retried")
    port = keygen_example_app.url.split("/")[2]
    assert keygen_example_app.verdicts == [
        f"signature did not match (host {port!r}, path '/hooks/keygen')"]

    kept = forward_to_example("--preserve-host")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert kept.stdout.startswith(f"#{answer['delivery_id']} keygen POST /hooks/keygen -> 200")
    assert keygen_example_app.verdicts[1:] == [None]


def test_redeliver_preserve_host_lets_keygens_example_app_verify(
        serve: Any, keygen_example_app: KeygenExampleApp, keygen_key: Any) -> None:
    remote = keygen_remote(serve, keygen_key)
    answer = post_as_keygen(remote, keygen_key)
    url = f"{remote.url}/api/deliveries/{answer['delivery_id']}/redeliver"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    results = [requests.post(url, json={"url": keygen_example_app.url, **option},
                             headers=auth, timeout=30).json()
               for option in ({}, {"preserve_host": False}, {"preserve_host": True})]
    assert [result["status"] for result in results] == [400, 400, 200]
    assert keygen_example_app.verdicts[2] is None
    assert "signature did not match" in (keygen_example_app.verdicts[0] or "")
    refused = requests.post(url, json={"url": keygen_example_app.url, "preserve_host": "yes"},
                            headers=auth, timeout=30)
    assert refused.status_code == 400
    assert refused.json()["error"] == "preserve_host must be true or false"


def test_forward_stop_and_restart_loses_nothing_and_repeats_nothing(
        remote: Any, local_app: LocalApp, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    post(remote, "/hooks", order(0, tag))  # before the first run: a first run starts after it
    env = cli_env(tmp_path)
    log = (tmp_path / "forward-1.out").open("w")

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(forward_args(remote, local_app, "--wait", "1"), text=True,
                                stdout=log, stderr=subprocess.STDOUT, env=env)

    first = start()
    try:
        wait_for(lambda: (tmp_path / "home" / ".config" / "receiver").is_dir())
        for n in (1, 2, 3):
            post(remote, "/hooks", order(n, tag))
        wait_for(lambda: len(local_app.received) == 3)
        first.send_signal(signal.SIGINT)
        assert first.wait(15) == 0
        for n in (4, 5, 6):  # while the laptop sleeps
            post(remote, "/hooks", order(n, tag))
        second = start()
        try:
            wait_for(lambda: len(local_app.received) == 6)
            post(remote, "/hooks", order(7, tag))
            wait_for(lambda: len(local_app.received) == 7)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(15) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert local_app.bodies() == [order(n, tag) for n in range(1, 8)]
    # A third run finds nothing new.
    again = run_forward(tmp_path, remote, local_app, "--once")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "" and len(local_app.received) == 7
    output = (tmp_path / "forward-1.out").read_text()
    assert output.count("-> 200 in ") == 7 and "the next run resumes after #" in output


def test_forward_local_500_then_200_gets_the_delivery(remote: Any, local_app: LocalApp,
                                                      tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    since = newest(remote)
    first = post(remote, "/hooks", order(1, tag))
    second = post(remote, "/hooks", order(2, tag))
    local_app.script = [500, 503]
    result = run_forward(tmp_path, remote, local_app, "--once", "--since", since)
    assert result.returncode == 0, result.stdout + result.stderr
    assert local_app.bodies() == [order(1, tag)] * 3 + [order(2, tag)]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"#{first['delivery_id']} generic POST /hooks -> 200 in ")
    assert lines[0].endswith("after 3 attempts")
    assert lines[1].startswith(f"#{second['delivery_id']} generic POST /hooks -> 200 in ")
    assert "-> 500; retry 1/3 in 0.5 s" in result.stderr
    assert "-> 503; retry 2/3 in 1 s" in result.stderr


def test_forward_local_failures_are_reported_and_skipped(remote: Any, local_app: LocalApp,
                                                          tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    since = newest(remote)
    ids = [post(remote, "/hooks", order(n, tag))["delivery_id"] for n in (1, 2, 3)]
    local_app.script = [500, 500, 404]  # #1: 500 twice (retries 1); #2: 404, not retried
    result = run_forward(tmp_path, remote, local_app, "--once", "--since", since,
                         "--retries", "1")
    assert result.returncode == 1  # --once: non-zero when a delivery had no 2xx
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"#{ids[0]} ") and lines[0].endswith("after 2 attempts; skipped")
    assert lines[1].startswith(f"#{ids[1]} ") and lines[1].endswith("; not retried")
    assert lines[2].startswith(f"#{ids[2]} ") and " -> 200 in " in lines[2]
    assert "forwarded 1, failed 2" in result.stderr
    # Nothing listens on the local port: refused, retried, skipped; the stream goes on.
    closed = LocalApp(f"http://127.0.0.1:{free_port_number()}/webhooks")
    post(remote, "/hooks", order(4, tag))
    refused = run_forward(tmp_path, remote, closed, "--once", "--since", str(ids[2]),
                          "--retries", "0")
    assert refused.returncode == 1
    assert "-> no answer (connection refused); skipped" in refused.stdout


def free_port_number() -> int:
    from .conftest import free_port

    return free_port()


def test_forward_filters_by_endpoint_source_and_event_type(
        remote: Any, local_app: LocalApp, tmp_path: Path) -> None:
    since = newest(remote)
    sent = {
        "keygen-license": post(remote, "/hooks/keygen",
                               sample("keygen", "license.created").body),
        "keygen-user": post(remote, "/hooks/keygen",
                            sample("keygen", "user.password-reset").body),
        "fno": post(remote, "/hooks/fno", sample("fno", "entitlement.updated").body),
        "ls-license": post(remote, "/hooks/ls", sample("licensespring", "license.created").body),
        "bad": post(remote, "/hooks/keygen", b"not json"),
    }
    assert sent["bad"]["status"] == 400
    bodies = {name: requests.get(f"{remote.url}/api/deliveries/{record['delivery_id']}/raw",
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
                                 ).content for name, record in sent.items()}

    def forwarded(*args: str) -> set[str]:
        local_app.received.clear()
        state = tmp_path / f"state-{len(list(tmp_path.glob('state-*')))}.json"
        result = run_forward(tmp_path, remote, local_app, "--once", "--since", since,
                             "--state", str(state), *args)
        assert result.returncode == 0, result.stderr
        return {name for name, body in bodies.items() if body in local_app.bodies()}

    assert forwarded("--endpoint", "keygen") == {"keygen-license", "keygen-user"}
    assert forwarded("--source", "fno") == {"fno"}
    assert forwarded("--event-type", "license.*") == {"keygen-license", "ls-license"}
    assert forwarded("--event-type", "user.password-reset") == {"keygen-user"}
    assert forwarded("--source", "keygen", "--event-type", "license.*") == {"keygen-license"}
    assert forwarded() == {"keygen-license", "keygen-user", "fno", "ls-license"}
    assert forwarded("--endpoint", "keygen", "--include-rejected") == {
        "keygen-license", "keygen-user", "bad"}


def test_forward_wrong_or_missing_token_is_a_clear_error(remote: Any, local_app: LocalApp,
                                                         tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    since = newest(remote)
    post(remote, "/hooks", order(1, tag))
    wrong = run_forward(tmp_path, remote, local_app, "--once", "--since", since, token="nope")
    assert wrong.returncode != 0
    assert "the remote receiver refused the token (401)" in wrong.stderr
    missing = run_forward(tmp_path, remote, local_app, "--once", token=None)
    assert missing.returncode != 0
    assert "needs its inspector token (401)" in missing.stderr
    from_env = run_forward(tmp_path, remote, local_app, "--once", "--since", since,
                           token=None, RECEIVER_FORWARD_TOKEN=TOKEN)
    assert from_env.returncode == 0, from_env.stderr
    assert local_app.bodies() == [order(1, tag)]


def test_forward_refuses_a_to_that_is_not_loopback_or_allowed(remote: Any,
                                                              tmp_path: Path) -> None:
    elsewhere = LocalApp("http://app.example.com/webhooks")
    refused = run_forward(tmp_path, remote, elsewhere, "--once")
    assert refused.returncode != 0
    assert ("refusing to forward to app.example.com: it is not a loopback host and not in "
            "RECEIVER_REDELIVER_ALLOW") in refused.stderr
    # Allowed: a first run starts after the newest delivery, so nothing is sent there.
    allowed = run_forward(tmp_path, remote, elsewhere, "--once",
                          RECEIVER_REDELIVER_ALLOW="app.example.com")
    assert allowed.returncode == 0, allowed.stderr
    assert "forwarded 0, failed 0, skipped 0" in allowed.stderr
    bad = run_forward(tmp_path, remote, LocalApp("ftp://localhost/x"), "--once")
    assert bad.returncode != 0 and "--to must be an absolute http(s) URL" in bad.stderr
    loop = run_forward(tmp_path, remote, LocalApp(remote.url + "/hooks"), "--once")
    assert loop.returncode != 0 and "--to points at the receiver --from reads" in loop.stderr


def test_forward_remote_that_is_not_a_receiver(local_app: LocalApp, tmp_path: Path) -> None:
    not_a_receiver = LocalApp(f"http://127.0.0.1:{free_port_number()}")
    result = run_forward(tmp_path, not_a_receiver, local_app, "--once", "--since", "0",
                         "--retries", "0", token=None)
    assert result.returncode != 0
    assert "the remote receiver cannot be reached" in result.stderr
    assert "connection refused" in result.stderr


# -- the feed's server side -----------------------------------------------------------------


def test_forward_feed_filters_deliveries_by_event_type(make_app: Any) -> None:
    app = make_app()
    client, store = app.test_client(), app.extensions["receiver.store"]
    posted = [client.post("/hooks/keygen", data=sample("keygen", name).body,
                          content_type="application/json").get_json()
              for name in ("license.created", "user.password-reset", "license.created")]
    refused = client.post("/hooks/keygen", data=b"{").get_json()
    license_ids = [posted[0]["delivery_id"], posted[2]["delivery_id"]]  # a duplicate too
    assert posted[2]["duplicate"] is True

    def ids(**filters: Any) -> list[int]:
        return [row["id"] for row in store.list_deliveries(DeliveryFilters(**filters),
                                                           limit=500, after=0)[0]]

    assert ids(event_type="license.*") == license_ids
    assert ids(event_type="license.created") == license_ids
    assert ids(event_type="user.*") == [posted[1]["delivery_id"]]
    assert ids(event_type="licens.*") == []
    assert refused["delivery_id"] in ids(event_type="*")
    answer = client.get("/api/deliveries?event_type=license.*").get_json()
    assert [d["id"] for d in answer["deliveries"]] == license_ids[::-1]
    feed = client.get(f"/api/deliveries?event_type=license.*&after={license_ids[0]}")
    assert [d["id"] for d in feed.get_json()["deliveries"]] == license_ids[1:]
    bad = client.get("/api/deliveries?event_type=license.%2A.x")
    assert bad.status_code == 400 and "event_type" in bad.get_json()["error"]


# -- retries and backoff, without sleeping ---------------------------------------------------


def test_forward_backoff_doubles_up_to_the_cap() -> None:
    assert [forward.backoff(n, 1.0, 30.0) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert [forward.backoff(n, 0.5, 30.0) for n in range(3)] == [0.5, 1.0, 2.0]
    assert forward.backoff(10_000, 1.0, 30.0) == 30


def scripted_send(answers: list[int | Exception]) -> tuple[Any, list[bytes]]:
    sent: list[bytes] = []

    def send(url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> dict[str, Any]:
        sent.append(body)
        answer = answers.pop(0) if answers else 200
        if isinstance(answer, Exception):
            raise answer
        return {"status": answer, "duration_ms": 1.5, "body": ""}

    return send, sent


def test_forward_deliver_retries_5xx_and_refusals_with_backoff() -> None:
    send, sent = scripted_send([500, ConnectionRefusedError(111, "refused"), 200])
    sleeps: list[float] = []
    retried: list[tuple[int, float, LocalAnswer]] = []
    outcome = forward.deliver("http://127.0.0.1:9/x", b"{}", [], retries=3, send=send,
                              sleep=sleeps.append,
                              on_retry=lambda n, d, o: retried.append((n, d, o)))
    assert outcome.ok and outcome.attempts == 3 and outcome.status == 200
    assert sleeps == [0.5, 1.0] and len(sent) == 3
    assert [(n, o.status, o.error) for n, _, o in retried] == [
        (1, 500, None), (2, None, "connection refused")]


def test_forward_deliver_does_not_retry_what_cannot_be_sent() -> None:
    send, sent = scripted_send([ValueError("Invalid header value b'a\\nb'")])
    outcome = forward.deliver("http://127.0.0.1:9/x", b"{}", [], retries=3, send=send,
                              sleep=pytest.fail)
    assert outcome.status is None and outcome.attempts == 1 and len(sent) == 1
    assert outcome.error is not None and outcome.error.startswith("cannot send it")


def test_forward_deliver_gives_up_after_retries() -> None:
    send, sent = scripted_send([ConnectionRefusedError(111, "refused")] * 10)
    sleeps: list[float] = []
    outcome = forward.deliver("http://127.0.0.1:9/x", b"{}", [], retries=3, send=send,
                              sleep=sleeps.append)
    assert not outcome.ok and outcome.status is None and outcome.attempts == 4
    assert outcome.error == "connection refused"
    assert sleeps == [0.5, 1.0, 2.0] and len(sent) == 4
    assert forward.outcome_text(outcome, 3) == (
        "no answer (connection refused) after 4 attempts; skipped")


@pytest.mark.parametrize("status", [400, 401, 404, 422, 301])
def test_forward_deliver_does_not_retry_4xx(status: int) -> None:
    send, sent = scripted_send([status, 200])
    sleeps: list[float] = []
    outcome = forward.deliver("http://127.0.0.1:9/x", b"{}", [], retries=3, send=send,
                              sleep=sleeps.append)
    assert outcome.status == status and outcome.attempts == 1 and not outcome.ok
    assert sleeps == [] and len(sent) == 1
    assert forward.outcome_text(outcome, 3).endswith("; not retried")


class FakeRemote:
    """The feed as a list; ``failures`` makes the next polls raise RemoteUnavailable."""

    base = "https://hooks.example.com"

    def __init__(self, records: list[dict[str, Any]], failures: int = 0) -> None:
        self.records = records
        self.failures = failures
        self.polls: list[int] = []
        self.missing: set[int] = set()

    def feed(self, after: int, filters: Mapping[str, str], *, wait: float,
             limit: int) -> tuple[list[dict[str, Any]], bool]:
        self.polls.append(after)
        if self.failures:
            self.failures -= 1
            raise RemoteUnavailable("hooks.example.com: connection refused")
        fresh = [r for r in self.records if r["id"] > after]
        return fresh[:limit], len(fresh) > limit

    def raw(self, delivery_id: int) -> bytes | None:
        if delivery_id in self.missing:
            return None
        return f"body-{delivery_id}".encode()


def record(delivery_id: int, status_code: int = 200) -> dict[str, Any]:
    return {"id": delivery_id, "source": "generic", "endpoint": "default", "path": "/hooks",
            "method": "POST", "status_code": status_code, "duplicate": False,
            "headers": [["Host", "hooks.example.com"], ["Content-Type", "application/json"],
                        ["Content-Length", "9"], ["X-Id", str(delivery_id)]]}


def make_forwarder(remote: FakeRemote, tmp_path: Path, answers: list[int | Exception],
                   **options: Any) -> tuple[Forwarder, list[bytes], list[float], list[str]]:
    send, sent = scripted_send(answers)
    sleeps: list[float] = []
    lines: list[str] = []
    forwarder = Forwarder(remote, "http://127.0.0.1:9/x", tmp_path / "state.json",
                          options.pop("last_id", 0), send=send, sleep=sleeps.append,
                          echo=lines.append, notice=lines.append, **options)
    return forwarder, sent, sleeps, lines


def test_forward_reconnects_with_backoff_capped_and_catches_up_in_order(tmp_path: Path,
                                                                        ) -> None:
    remote = FakeRemote([record(n) for n in (3, 5, 8)], failures=8)
    forwarder, sent, sleeps, lines = make_forwarder(remote, tmp_path, [], page=2)
    summary = forwarder.run(max_polls=10)
    assert sleeps == [1, 2, 4, 8, 16, 30, 30, 30]
    assert sent == [b"body-3", b"body-5", b"body-8"]
    assert remote.polls[8:] == [0, 5]  # pages of two, in order, from the last id
    assert summary.forwarded == 3 and summary.last_id == 8
    assert forward.read_state(tmp_path / "state.json") == 8
    assert "reconnected to https://hooks.example.com" in lines


def test_forward_once_gives_up_on_an_unreachable_remote(tmp_path: Path) -> None:
    forwarder, _, sleeps, _ = make_forwarder(FakeRemote([], failures=100), tmp_path, [],
                                             retries=2)
    with pytest.raises(ForwardError, match="gave up after 3 attempts"):
        forwarder.run(once=True, max_polls=50)
    assert sleeps == [1, 2]


def test_forward_skips_rejected_gone_and_failing_deliveries_without_blocking(
        tmp_path: Path) -> None:
    remote = FakeRemote([record(1), record(2, 401), record(3), record(4), record(5)])
    remote.missing = {3}
    forwarder, sent, sleeps, lines = make_forwarder(remote, tmp_path, [503, 503, 200, 500, 500],
                                                    retries=1, last_id=0)
    summary = forwarder.run(once=True)
    # 1: 503, 503 -> skipped; 2: refused at the remote; 3: purged; 4: 200; 5: 500 x2.
    assert sent == [b"body-1", b"body-1", b"body-4", b"body-5", b"body-5"]
    assert (summary.forwarded, summary.failed, summary.skipped) == (1, 2, 2)
    assert summary.last_id == 5 and forward.read_state(tmp_path / "state.json") == 5
    assert sleeps == [0.5, 0.5]  # one retry each for #1 and #5
    assert lines == [
        "#1 generic POST /hooks -> 503; retry 1/1 in 0.5 s",
        "#1 generic POST /hooks -> 503 in 1.5 ms after 2 attempts; skipped",
        "#2 generic POST /hooks refused 401 by the remote; not forwarded "
        "(--include-rejected sends it)",
        "#3 generic POST /hooks is gone from the remote (purged); skipped",
        "#4 generic POST /hooks -> 200 in 1.5 ms",
        "#5 generic POST /hooks -> 500; retry 1/1 in 0.5 s",
        "#5 generic POST /hooks -> 500 in 1.5 ms after 2 attempts; skipped",
    ]


def headers_sent(tmp_path: Path, records: list[dict[str, Any]],
                 **options: Any) -> list[Sequence[tuple[str, str]]]:
    """Forward ``records`` once (every send answered 204) and return the headers sent."""
    seen: list[Sequence[tuple[str, str]]] = []

    def send(url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> dict[str, Any]:
        seen.append(headers)
        return {"status": 204, "duration_ms": 0.4, "body": ""}

    forwarder = Forwarder(FakeRemote(records), "http://127.0.0.1:9/x", tmp_path / "s.json", 0,
                          send=send, echo=lambda line: None, **options)
    assert forwarder.run(once=True).forwarded == len(records)
    return seen


def test_forward_include_rejected_and_headers_as_redeliver(tmp_path: Path) -> None:
    assert headers_sent(tmp_path, [record(7, 400)], include_rejected=True) == [
        [("Content-Type", "application/json"), ("X-Id", "7")]]


def test_forward_state_file_round_trip_default_path_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    assert forward.read_state(path) is None
    forward.write_state(path, 41, from_url="https://a", to_url="http://localhost:1/x")
    forward.write_state(path, 42, from_url="https://a", to_url="http://localhost:1/x")
    assert forward.read_state(path) == 42
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left
    path.write_text("{not json")
    with pytest.raises(ForwardError, match="not what forward writes"):
        forward.read_state(path)
    path.write_text('{"last_id": -1}')
    with pytest.raises(ForwardError, match="no valid last_id"):
        forward.read_state(path)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    one = forward.default_state_path("https://a/", "http://localhost:1/x", env)
    assert one == forward.default_state_path("https://a", "http://localhost:1/x", env)
    assert one.parent == tmp_path / "xdg" / "receiver" and one.name.startswith("forward-")
    assert one != forward.default_state_path("https://a", "http://localhost:2/x", env)


def test_forward_start_point_since_then_state_then_newest(tmp_path: Path) -> None:
    class Newest:
        def newest_id(self) -> int:
            return 17

    state = tmp_path / "state.json"
    assert forward.start_after(Newest(), state, None)[0] == 17
    forward.write_state(state, 9, from_url="https://a", to_url="http://localhost/x")
    assert forward.start_after(Newest(), state, None)[0] == 9
    assert forward.start_after(Newest(), state, 0)[0] == 0


@pytest.mark.parametrize("url, allow, ok", [
    ("http://localhost:3000/webhooks", [], True),
    ("http://127.0.0.1:3000/webhooks", [], True),
    ("http://[::1]:3000/webhooks", [], True),
    ("http://127.8.0.1/webhooks", [], True),
    ("https://dev.internal/webhooks", ["dev.internal"], True),
    ("https://dev.internal/webhooks", ["localhost", "127.0.0.1"], False),
    ("http://10.0.0.5/webhooks", [], False),
    ("localhost:3000/webhooks", [], False),
    ("http://localhost:99999/webhooks", [], False),
])
def test_forward_check_target(url: str, allow: list[str], ok: bool) -> None:
    if ok:
        assert forward.check_target(url, allow) == url
    else:
        with pytest.raises(ForwardError):
            forward.check_target(url, allow)


def test_forward_remote_answers_become_clear_errors() -> None:
    def answering(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
        return lambda url, request_headers, timeout: (status, headers or {}, body)

    def fails(status: int, body: bytes = b"{}", token: str | None = "t", **headers: str) -> str:
        remote = forward.Remote("https://r", token, get=answering(status, body, headers))
        with pytest.raises(ForwardError) as caught:
            remote.feed(0, {}, wait=0)
        return str(caught.value)

    assert fails(401).startswith("the remote receiver refused the token (401)")
    assert fails(401, token=None).startswith("the remote receiver needs its inspector token")
    assert "no receiver feed (404" in fails(404)
    assert "event_type must be" in fails(400, b'{"ok": false, "error": "event_type must be"}')
    assert "not the receiver's JSON" in fails(200, b"<html>")
    assert "redirects (302) to https://elsewhere" in fails(302, location="https://elsewhere")
    for status in (429, 502, 503):
        remote = forward.Remote("https://r", "t", get=answering(status, b""))
        with pytest.raises(RemoteUnavailable):
            remote.feed(0, {}, wait=0)
    sent: list[tuple[str, Any]] = []

    def recording(url: str, headers: Any, timeout: float) -> Any:
        sent.append((url, headers))
        return 200, {}, b'{"deliveries": [], "next": null}'

    forward.Remote("https://r", "t", get=recording).feed(
        5, {"endpoint": "keygen", "event_type": "license.*"}, wait=25)
    url, headers = sent[0]
    assert url == ("https://r/api/deliveries?endpoint=keygen&event_type=license.%2A&after=5"
                   "&limit=100&reveal=1&wait=25")
    assert ("Authorization", "Bearer t") in headers


def test_forward_stopper_defers_a_signal_until_the_delivery_is_recorded() -> None:
    stopper = Stopper()
    stopper.handle(signal.SIGINT, None)  # mid-delivery: only noted
    assert stopper.requested
    with pytest.raises(KeyboardInterrupt):
        stopper.check()
    waiting = Stopper()
    with pytest.raises(KeyboardInterrupt), waiting.waiting():
        waiting.handle(signal.SIGTERM, None)  # while waiting: at once
    twice = Stopper()
    twice.handle(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        twice.handle(signal.SIGINT, None)  # a second signal: at once


def test_forwardable_headers_keep_one_host_only_when_asked() -> None:
    from receiver.clients.redeliver import forwardable_headers

    received = [["Host", "hooks.example.com"], ["Connection", "keep-alive, X-Hop"],
                ["X-Hop", "1"], ["Digest", "sha-256=x"], ["host", "second.example.com"]]
    assert forwardable_headers(received) == [("Digest", "sha-256=x")]
    assert forwardable_headers(received, preserve_host=True) == [
        ("Host", "hooks.example.com"), ("Digest", "sha-256=x")]


def test_forwarder_preserve_host_passes_the_host_to_send(tmp_path: Path) -> None:
    received = {**record(3), "headers": [["Host", "hooks.example.com"],
                                         ["Content-Type", "application/json"]]}
    assert headers_sent(tmp_path, [received], preserve_host=True) == [
        [("Host", "hooks.example.com"), ("Content-Type", "application/json")]]
    assert headers_sent(tmp_path, [received]) == [[("Content-Type", "application/json")]]
