"""Nothing lost under load and faults, against a real gunicorn: every 2xx is stored exactly
once, a killed worker loses nothing, a full or locked database answers 503 and recovers, and
hostile HTTP input gets a 4xx while the server keeps serving."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .waiting import wait_for

DATA = Path(__file__).resolve().parent / "data"


def licensespring_body(event_id: str, padding: int = 600) -> bytes:
    return json.dumps({
        "id": event_id, "event": "license.created", "company_id": 42, "user_id": 7,
        "ts": 1700000000,
        "data": {"license": {"id": abs(hash(event_id)) % 10**9, "license_key": "K-" + event_id,
                             "notes": "x" * padding}},
    }).encode()


def db_counts(database: str) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        return {
            "events": db.execute("SELECT count(*) FROM events").fetchone()[0],
            "deliveries": db.execute("SELECT count(*) FROM deliveries").fetchone()[0],
            "delivery_count": db.execute(
                "SELECT coalesce(sum(delivery_count), 0) FROM events").fetchone()[0],
        }


def worker_pids(master: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            children.append(int(entry.name))
    return children


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("worker_args", [
    ("--workers", "4", "--worker-class", "sync"),
    ("--workers", "4", "--worker-class", "gthread", "--threads", "4"),
], ids=["sync", "gthread"])
def test_concurrent_posts_are_stored_exactly_once(serve, worker_args) -> None:
    server = serve(*worker_args)
    clients, per_client = 20, 100  # 2,000 deliveries, 10% of them duplicates
    statuses: list[int] = []
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        session = requests.Session()
        sent: list[bytes] = []
        for index in range(per_client):
            if index % 10 == 9:
                body = sent[index // 2]  # a vendor retry of something already delivered
            else:
                body = licensespring_body(f"c{number}-{index}")
                sent.append(body)
            response = session.post(server.url + "/hooks/licensespring", data=body,
                                    headers={"Content-Type": "application/json"}, timeout=30)
            with lock:
                statuses.append(response.status_code)
                answers.append(response.json())

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))

    assert len(statuses) == 2000 and set(statuses) == {200}
    assert sum(answer["duplicate"] for answer in answers) == 200
    assert db_counts(server.database) == {"events": 1800, "deliveries": 2000,
                                          "delivery_count": 2000}
    assert len({answer["delivery_id"] for answer in answers}) == 2000
    assert "database is locked" not in server.output()
    assert "Traceback" not in server.output()


SLOW_HANDLER = '''\
import os, time
from receiver import on

@on("*")
def slow(event, **extra):
    time.sleep(0.02)
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"{event.id}\\n")
'''


def install_plugin(site: Path, module: str, source: str) -> None:
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[receiver.handlers]\n{module} = {module}\n")


def test_sigkill_a_worker_while_posting_loses_nothing(serve, tmp_path) -> None:
    site, handled = tmp_path / "site", tmp_path / "handled.log"
    install_plugin(site, "slow_hooks", SLOW_HANDLER)
    handled.touch()
    server = serve("--workers", "3", env={
        "PYTHONPATH": str(site), "HANDLER_LOG": str(handled), "RECEIVER_DISPATCH_LEASE": "2"})
    accepted: dict[int, str] = {}  # delivery id -> sha256 of the bytes we sent
    failures: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(number: int) -> None:
        session = requests.Session()
        for index in range(60):
            body = licensespring_body(f"k{number}-{index}-{uuid.uuid4()}")
            try:
                response = session.post(server.url + "/hooks", data=body, timeout=30)
            except requests.RequestException as error:  # the killed worker's connection
                with lock:
                    failures.append(type(error).__name__)
                session = requests.Session()
                continue
            if 200 <= response.status_code < 300:
                with lock:
                    accepted[response.json()["delivery_id"]] = hashlib.sha256(body).hexdigest()
            else:
                assert response.status_code != 500

    def killer() -> None:
        wait_for(lambda: len(accepted) > 150, timeout=30)
        victim = worker_pids(server.process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        killed.set()

    threading.Thread(target=killer, daemon=True).start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client, range(8)))
    assert killed.is_set()
    assert len(accepted) > 300

    with sqlite3.connect(server.database) as db:
        rows = dict(db.execute("SELECT id, body FROM deliveries WHERE status_code = 200"))
    for delivery_id, digest in accepted.items():
        assert delivery_id in rows, f"2xx delivery {delivery_id} is not in the database"
        assert hashlib.sha256(rows[delivery_id]).hexdigest() == digest

    # Events the dead worker had leased are taken over once the lease runs out.
    def settled() -> bool:
        with sqlite3.connect(server.database) as db:
            return db.execute("SELECT count(*) FROM events WHERE dispatch_status = 'pending'"
                              ).fetchone()[0] == 0
    wait_for(settled, timeout=60)
    with sqlite3.connect(server.database) as db:
        event_ids = {row[0] for row in db.execute("SELECT id FROM events")}
    ran = {int(line) for line in handled.read_text().split()}
    assert ran == event_ids


def test_full_database_answers_503_and_recovers_after_purge(serve) -> None:
    server = serve(env={"RECEIVER_MAX_DATABASE_SIZE": "400KB"})
    session = requests.Session()
    ok = 0
    for index in range(2000):
        response = session.post(server.url + "/hooks",
                                data=licensespring_body(f"full-{index}", 2000))
        if response.status_code == 503:
            break
        assert response.status_code == 200
        ok += 1
    else:
        pytest.fail("the database never filled up")
    assert ok > 10
    assert response.headers["Retry-After"]
    assert "full" in response.json()["error"]
    assert db_counts(server.database)["events"] == ok  # every 200 is stored, no 503 is
    assert session.get(server.url + "/-/health").status_code == 200
    # Still full for a delivery that size (a tiny one may fit in a page's leftover space).
    still = session.post(server.url + "/hooks", data=licensespring_body("still-full", 2000))
    assert still.status_code == 503

    purge = subprocess.run([sys.executable, "-m", "receiver", "purge", "--older-than", "0s",
                            "--db", server.database], capture_output=True, text=True)
    assert purge.returncode == 0, purge.stderr
    again = session.post(server.url + "/hooks", data=licensespring_body("after-purge"))
    assert again.status_code == 200


def test_lock_held_past_busy_timeout_answers_503_then_recovers(serve) -> None:
    server = serve(env={"RECEIVER_BUSY_TIMEOUT": "300"})
    holder = sqlite3.connect(server.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = requests.post(server.url + "/hooks", data=licensespring_body("locked"))
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert "locked" in response.json()["error"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert requests.post(server.url + "/hooks",
                         data=licensespring_body("unlocked")).status_code == 200
    assert db_counts(server.database)["events"] == 1


def raw_request(url: str, payload: bytes, *, pause: float = 0.0, chunks: int = 1,
                timeout: float = 30.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        size = max(1, len(payload) // chunks)
        for start in range(0, len(payload), size):
            try:
                sock.sendall(payload[start:start + size])
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered early and closed: fine
            if pause:
                time.sleep(pause)
        answer = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
                if b"\r\n\r\n" in answer and answer.startswith(b"HTTP/1.1 4"):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def test_hostile_http_input_gets_4xx_and_the_server_keeps_serving(serve) -> None:
    server = serve("--workers", "2", env={"RECEIVER_MAX_BODY": "64KiB"})
    workers = worker_pids(server.process.pid)
    before = max(rss_kib(pid) for pid in workers)
    head = b"POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

    # Declared too large: refused from the headers, without reading the body.
    answer = raw_request(server.url, head + b"Content-Length: 10000000\r\n\r\n" + b"{" * 1000)
    assert status_of(answer) == 413
    # Too large and sent slowly in chunks with no length: refused after MAX_BODY + 1 bytes.
    chunk = b"a" * 8192
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + (
        b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 12 + b"0\r\n\r\n"
    assert status_of(raw_request(server.url, chunked, pause=0.02, chunks=24)) == 413
    # A lying Content-Length: only the declared bytes are read, and they are not JSON.
    answer = raw_request(server.url, head + b"Content-Length: 5\r\n\r\n" + b"[" * 200_000)
    assert status_of(answer) == 400
    # 10,000 headers.
    many = head + b"".join(b"X-H%d: v\r\n" % n for n in range(10_000)) + \
        b"Content-Length: 2\r\n\r\n{}"
    assert 400 <= status_of(raw_request(server.url, many)) < 500
    # Invalid UTF-8 in a header value is kept, not a 500.
    odd = head + b"X-Odd: \xff\xfe\xc3\x28\r\nContent-Length: 2\r\n\r\n{}"
    assert status_of(raw_request(server.url, odd)) == 200

    session = requests.Session()
    deep = session.post(server.url + "/hooks", data=b"[" * 60_000 + b"]" * 60_000)
    assert deep.status_code in (400, 413)
    deep_fits = session.post(server.url + "/hooks", data=b"[" * 30_000 + b"]" * 30_000)
    assert deep_fits.status_code == 400 and "nested too deeply" in deep_fits.json()["error"]
    digits = session.post(server.url + "/hooks", data=b'{"n": ' + b"9" * 50_000 + b"}")
    assert digits.status_code == 400
    # A float JSON cannot carry back out (it would be written as Infinity) is refused.
    huge = session.post(server.url + "/hooks", data=b'{"type": "x.y", "n": 1e999999}')
    assert huge.status_code == 400 and "too large for a 64-bit float" in huge.json()["error"]
    shown = session.get(f"{server.url}/api/deliveries/{huge.json()['delivery_id']}")
    assert shown.status_code == 200 and shown.json()["body_text"].endswith("1e999999}")

    assert session.get(server.url + "/-/health").json()["ok"] is True
    assert session.post(server.url + "/hooks", data=b"{}").status_code == 200
    after = max(rss_kib(pid) for pid in worker_pids(server.process.pid))
    assert after < before + 150 * 1024, (before, after)
    assert "Traceback" not in server.output()


api_routes = st.sampled_from(["/api/events", "/api/deliveries", "/api/export.ndjson",
                              "/api/events/1", "/api/deliveries/1", "/api/deliveries/1/raw"])
api_params = st.dictionaries(
    st.sampled_from(["source", "event_type", "endpoint", "account", "subject_id",
                     "signature_status", "dispatch_status", "q", "since", "until", "limit",
                     "cursor", "after", "wait", "status_code", "rejected", "reveal"]),
    st.text(max_size=30) | st.integers(-10**20, 10**20).map(str), max_size=5)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=api_routes, params=api_params)
def test_json_api_never_answers_500(client, route, params) -> None:
    client.post("/hooks", data=licensespring_body("seed"))  # ids 1 exist (a duplicate later)
    params = {key: value for key, value in params.items() if key != "wait"} | (
        {"wait": "0"} if "wait" in params else {})
    response = client.get(route, query_string=params)
    assert response.status_code in (200, 400, 404), (route, params, response.data[:200])


def test_database_of_the_previous_release_migrates_in_place(tmp_path, make_app) -> None:
    old = tmp_path / "receiver.db"
    shutil.copy(DATA / "receiver-0.1.0.db", old)
    before = db_counts(str(old))
    with sqlite3.connect(old) as db:
        bodies = dict(db.execute("SELECT id, body FROM deliveries"))
        runs = db.execute("SELECT count(*) FROM handler_runs").fetchone()[0]
    app = make_app(DATABASE=str(old))
    client = app.test_client()
    assert db_counts(str(old)) == before and before["events"] == 99
    with sqlite3.connect(old) as db:
        assert dict(db.execute("SELECT id, body FROM deliveries")) == bodies
        assert db.execute("SELECT count(*) FROM handler_runs").fetchone()[0] == runs == 38
        applied = {row[0] for row in db.execute("SELECT name FROM _sqlite_migrations")}
    from receiver.store.sqlite import migrations

    assert applied == {migration.name for migration in migrations._migrations}
    assert client.get("/api/events?q=3395").json["events"]
    assert client.post("/hooks", data=b'{"type": "after.upgrade"}').status_code == 200

