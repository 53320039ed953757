"""The NDJSON export: the same records as the API, masked the same way, streamed
from the stored JSON text; a last ``complete`` line, so a cut is detected; ``cursor`` resumes;
``receiver export --from`` resumes by itself; and over a real ``receiver serve`` a stream far
longer than gunicorn's ``--timeout`` completes, because the worker heartbeats between chunks.
Every test of the export itself runs on SQLite and PostgreSQL; the ones about gunicorn's
timeout and a cut stream on SQLite alone.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from receiver.cli import cli
from receiver.clients import export as remote_export
from receiver.read import export
from receiver.read.mask import mask_data
from receiver.store import EventFilters, SQLiteStore, Store, open_store, postgres_search
from receiver.store import postgres as postgres_backend
from receiver.store import sqlite as sqlite_backend
from receiver.store.base import EVENT_FIELDS
from receiver.web import streaming

from . import bulk
from .conftest import LICENSE_KEY, RESET_TOKEN, Server, free_port, sample, wait_serving

pytestmark = pytest.mark.both_backends

POSTED = [("keygen", "user.password-reset"), ("keygen", "license.created"),
          ("licensespring", "license.created"), ("fno", "entitlement.updated"),
          ("zentitle", "entitlement.created"), ("standard", "license.created"),
          ("generic", "order.paid")]


def post_samples(client: Any) -> None:
    for source, name in POSTED:
        item = sample(source, name)
        assert client.post("/hooks", data=item.body, headers=item.headers).status_code == 200


def parse(text: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The event records and the complete line (None when the stream does not end with one)."""
    records = [json.loads(line) for line in text.splitlines() if line]
    if records and export.COMPLETE_KEY in records[-1]:
        return records[:-1], records[-1]
    return records, None


# -- the lines ------------------------------------------------------------------------------


def test_export_lines_are_the_api_records_in_field_order(client: Any) -> None:
    post_samples(client)
    events, complete = parse(client.get("/api/export.ndjson").get_data(as_text=True))
    assert complete == {"complete": True, "count": len(POSTED)}
    listed = client.get("/api/events").get_json()["events"]
    for record in listed:  # worked out for API answers only (docs/reference.md)
        record.pop("out_of_order")
    assert events == listed
    assert all(list(event) == list(EVENT_FIELDS) for event in events)


def test_export_masks_as_before_and_reveals_on_request(client: Any) -> None:
    post_samples(client)
    masked = client.get("/api/export.ndjson").get_data(as_text=True)
    assert RESET_TOKEN not in masked and LICENSE_KEY not in masked
    revealed = client.get("/api/export.ndjson?reveal=1").get_data(as_text=True)
    assert RESET_TOKEN in revealed and LICENSE_KEY in revealed
    events, _ = parse(masked)
    for event, original in zip(events, parse(revealed)[0], strict=True):
        assert event["data"] == mask_data(original["data"])


def test_export_of_a_bulk_history_masks_every_key(db_path: str, make_app: Any) -> None:
    bulk.fill(db_path, 700)
    client = make_app().test_client()
    text = client.get("/api/export.ndjson").get_data(as_text=True)
    events, complete = parse(text)
    assert complete == {"complete": True, "count": 700}
    assert "LK-" not in text
    assert sum(1 for event in events if "license_key" in event["data"]) == 100
    assert [event["id"] for event in events] == list(range(700, 0, -1))


def test_export_cursor_resumes_below_the_last_event(client: Any, store: Store) -> None:
    post_samples(client)
    everything, _ = parse(client.get("/api/export.ndjson").get_data(as_text=True))
    cut_after = everything[2]["id"]
    rest, complete = parse(
        client.get(f"/api/export.ndjson?cursor={cut_after}").get_data(as_text=True))
    assert rest == everything[3:]
    assert complete == {"complete": True, "count": len(everything) - 3}


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "99999999999999999999"])
def test_export_bad_cursor_is_400(client: Any, cursor: str) -> None:
    response = client.get(f"/api/export.ndjson?cursor={cursor}")
    assert response.status_code == 400
    assert "cursor" in response.get_json()["error"]


def test_export_heartbeats_around_every_chunk(db_path: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker is never silent for more than a batch of the store or one chunk's write."""
    monkeypatch.setattr(export, "CHUNK_CHARS", 4000)
    bulk.fill(db_path, 1000)
    store = open_store(db_path)
    happened: list[str] = []
    for chunk in export.ndjson(store, EventFilters(),
                               heartbeat=lambda: happened.append("beat")):
        happened.append(chunk)
    store.close()
    chunks = [item for item in happened if item != "beat"]
    longest_line = max(len(line) + 1 for line in "".join(chunks).splitlines())
    assert all(4000 <= len(chunk) < 4000 + longest_line for chunk in chunks[:-1])
    assert parse("".join(chunks))[1] == {"complete": True, "count": 1000}
    for before, chunk, after in zip(happened, happened[1:], happened[2:], strict=False):
        if chunk in chunks[:-1]:
            assert before == after == "beat"


def test_a_streamed_answer_leaves_little_unsent_in_the_kernel() -> None:
    """``bound_unsent`` on the connection gunicorn hands over: its writes wait for the client
    after 128 KiB, not after megabytes of send buffer (the worker's silence is bounded)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        connection, _ = listener.accept()
        with client, connection:
            streaming.bound_unsent({"gunicorn.socket": connection})
            assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == (
                streaming.UNSENT_LIMIT)
    streaming.bound_unsent({})  # not under gunicorn: nothing to do


# -- the store's batches --------------------------------------------------------------------


FILTERS = [
    EventFilters(),
    EventFilters(source="keygen"),
    EventFilters(event_type="license.*"),
    EventFilters(event_type="order.paid", source="fno"),
    EventFilters(subject_id="lic-000042"),
    EventFilters(account="acct-007", since="2024-01-01T00:01:00.000Z"),
    EventFilters(until="2024-01-01T00:00:30.000Z"),
    EventFilters(q="otter"),
    EventFilters(q="otter", source="generic"),
    EventFilters(q="nothing-matches-this"),
]


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
def test_event_batches_match_the_pages_of_list_events(db_path: str, filters: EventFilters,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for backend in (sqlite_backend, postgres_backend, postgres_search):
        monkeypatch.setattr(backend, "EXPORT_WINDOW", 37)  # many windows, some empty
    bulk.fill(db_path, 400, word="otter")
    store = open_store(db_path)
    store.index_search(150)  # search: part indexed, part scanned, nothing in between
    try:
        pages = [event.id for event in store.iter_events(filters, batch=7)]
        batches = list(store.event_batches(filters, batch=10))
        assert all(len(batch) <= 10 for batch in batches)
        assert [row[0] for batch in batches for row in batch] == pages
        below = pages[len(pages) // 2] if pages else 1
        resumed = [row[0] for batch in store.event_batches(filters, cursor=below, batch=10)
                   for row in batch]
        assert resumed == [event_id for event_id in pages if event_id < below]
    finally:
        store.close()


@pytest.mark.parametrize("filters", [EventFilters(source="fno"), EventFilters(q="otter"),
                                     EventFilters(q="otter", source="generic")], ids=repr)
def test_a_cursor_far_past_the_newest_event_costs_no_more_batches(
        db_path: str, filters: EventFilters, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cursor far above the newest id (``cursor=6032059298``) starts at the newest event:
    no walk down through empty id windows from six billion, one query each."""
    for backend in (sqlite_backend, postgres_backend, postgres_search):
        monkeypatch.setattr(backend, "EXPORT_WINDOW", 37)
    bulk.fill(db_path, 120, word="otter")
    store = open_store(db_path)
    store.index_search(60)
    try:
        near = list(store.event_batches(filters, cursor=10**6, batch=10))
        far = list(store.event_batches(filters, cursor=2**62, batch=10))
        assert [row[0] for batch in far for row in batch] == [
            row[0] for batch in near for row in batch]
        assert len(far) == len(near)
    finally:
        store.close()


def test_default_event_batches_give_the_same_rows(db_path: str) -> None:
    """The interface's default (built on list_events, for backends without their own) and
    the backend's override agree, ``data`` text aside."""
    bulk.fill(db_path, 120)
    store = open_store(db_path)
    try:
        for filters in (EventFilters(), EventFilters(source="fno"), EventFilters(q="plain")):
            own = [row for batch in store.event_batches(filters, batch=50) for row in batch]
            default = [row for batch in Store.event_batches(store, filters, batch=50)
                       for row in batch]
            data = EVENT_FIELDS.index("data")
            assert [json.loads(row[data]) for row in own] == [
                json.loads(row[data]) for row in default]
            assert [row[:data] + row[data + 1:] for row in own] == [
                row[:data] + row[data + 1:] for row in default]
    finally:
        store.close()


# -- receiver export ------------------------------------------------------------------------


def test_cli_export_cursor(db_path: str) -> None:
    bulk.fill(db_path, 30)
    result = CliRunner().invoke(cli, ["export", "--db", db_path, "--cursor", "11"])
    assert result.exit_code == 0, result.output
    events, complete = parse(result.output)
    assert [event["id"] for event in events] == list(range(10, 0, -1))
    assert complete == {"complete": True, "count": 10}


# -- over HTTP, through real servers ---------------------------------------------------------


EVENTS = 60_000  # ~23 MB of NDJSON: the server can run at most ~4 MB ahead of the reader
TIMEOUT = "2"  # gunicorn --timeout: far shorter than the export


def start_gunicorn(tmp: Path, database: str, *args: str) -> Server:
    """Plain gunicorn serving ``receiver:create_app()`` (no ``receiver serve``)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env["RECEIVER_DATABASE"] = database
    log = tmp / f"gunicorn-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--timeout", TIMEOUT, *args, "receiver:create_app()"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp)
    return wait_serving(Server(f"http://127.0.0.1:{port}", process, log, database), "gunicorn")


def worker_pids(server: Server) -> list[int]:
    """The gunicorn workers of a server this test started (children of its master)."""
    pid = server.process.pid
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def paced_export(url: str, *, pause: float = 0.005) -> tuple[str, str | None]:
    """GET the export reading at most 16 KiB every ``pause`` seconds (~3 MB/s, six seconds
    or more in all) through a small receive buffer, so the server cannot run far ahead: the
    request lasts about as long as the reading. Returns the text received and why it
    stopped early (None when the server ended the stream)."""
    host, port = url.split("//", 1)[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect((host, int(port)))
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.sock = sock
    received = bytearray()
    try:
        connection.request("GET", "/api/export.ndjson")
        response = connection.getresponse()
        assert response.status == 200
        while block := response.read1(16384):
            received += block
            time.sleep(pause)
        return received.decode(), None
    except (OSError, http.client.HTTPException) as error:
        return received.decode(errors="replace"), repr(error)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def big_history(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("big") / "big.db")
    bulk.fill(path, EVENTS)
    store = SQLiteStore(path)
    store.catch_up_search()
    store.close()  # the last connection: the WAL goes into the file, which tests copy
    return path


def copy_of(database: str, tmp: Path) -> str:
    target = tmp / "served.db"
    target.write_bytes(Path(database).read_bytes())
    return str(target)


@pytest.fixture
def history(backend: str, db_path: str, request: pytest.FixtureRequest) -> str:
    """The test's database holding ``EVENTS`` events, on either backend."""
    if backend == "sqlite":
        big_history = request.getfixturevalue("big_history")
        Path(db_path).write_bytes(Path(big_history).read_bytes())
    else:
        bulk.fill(db_path, EVENTS)
    return db_path


def check_whole(text: str) -> None:
    events, complete = parse(text)
    assert complete == {"complete": True, "count": EVENTS}
    assert [event["id"] for event in events] == list(range(EVENTS, 0, -1))
    assert "LK-" not in text  # every seventh holds a license key: masked


def test_export_over_http_outlives_the_worker_timeout(serve: Any, history: str) -> None:
    server = serve("--workers", "1", "--timeout", TIMEOUT, database=history)
    text, stopped = paced_export(server.url)
    assert stopped is None, server.output()[-3000:]
    check_whole(text)
    assert "WORKER TIMEOUT" not in server.output()


@pytest.mark.parametrize("hooks", [False, True], ids=["plain gunicorn", "with the hooks"])
def test_plain_gunicorn_cuts_the_export_at_its_timeout_unless_given_the_hooks(
        hooks: bool, big_history: str, tmp_path: Path) -> None:
    args = ["-c", "python:receiver.gunicorn_hooks"] if hooks else []
    server = start_gunicorn(tmp_path, copy_of(big_history, tmp_path), *args)
    try:
        text, stopped = paced_export(server.url)
    finally:
        server.stop()
    events, complete = parse(text.rsplit("\n", 1)[0] + "\n" if stopped else text)
    if hooks:
        assert stopped is None
        check_whole(text)
    else:
        # The master killed the silent worker mid-stream: no complete line says so.
        assert "WORKER TIMEOUT" in server.output()
        assert complete is None and 0 < len(events) < EVENTS


def test_killed_worker_is_detected_and_receiver_export_from_resumes(
        serve: Any, history: str) -> None:
    server = serve("--workers", "1", database=history)
    written: list[str] = []
    killed: list[int] = []
    notices: list[str] = []

    def write(text: str) -> None:
        written.append(text)
        if not killed:  # the first block arrived: kill the worker mid-stream
            killed.extend(worker_pids(server))
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    result = remote_export.fetch(server.url, {}, write, notice=notices.append, sleep=time.sleep)
    assert killed and result.resumed >= 1
    assert notices and "export cut after event #" in notices[0]
    text = "".join(written)
    check_whole(text)
    assert result.count == EVENTS


def test_a_cut_stream_fails_the_client_check(serve: Any, big_history: str,
                                             tmp_path: Path) -> None:
    server = serve("--workers", "1", database=copy_of(big_history, tmp_path))
    received = remote_export.Received()
    seen: list[str] = []

    def write(text: str) -> None:
        seen.append(text)
        if len(seen) == 1:
            for pid in worker_pids(server):
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(remote_export.RemoteUnavailable):
        remote_export.read_export(server.url, {}, write, received)
    assert received.complete is None and 0 < received.lines < EVENTS
    last = json.loads("".join(seen).splitlines()[-1])
    assert received.last_id == last["id"]


def test_cli_export_from_a_receiver_with_a_token(serve: Any, tmp_path: Path) -> None:
    database = str(tmp_path / "served.db")
    bulk.fill(database, 250)
    server = serve(env={"RECEIVER_INSPECTOR_TOKEN": "export-token-1"}, database=database)
    target = tmp_path / "out.ndjson"
    command = [sys.executable, "-m", "receiver", "export", "--from", server.url, "-o",
               str(target), "--source", "fno"]
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 1 and "inspector token (401)" in refused.stderr
    wrong = subprocess.run([*command, "--token", "not-it"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "refused the token (401)" in wrong.stderr
    env = {**os.environ, "RECEIVER_FORWARD_TOKEN": "export-token-1"}
    done = subprocess.run([*command, "--reveal"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    events, complete = parse(target.read_text())
    assert [event["id"] for event in events] == [n for n in range(250, 0, -1) if n % 3 == 1]
    assert complete == {"complete": True, "count": len(events)}
    assert "LK-" in target.read_text()  # revealed: the token signs in
    assert f"exported {len(events)} events" in done.stderr


@pytest.fixture
def old_receiver() -> Iterator[str]:
    """An HTTP server answering the export as receivers did before the complete line and
    cursor: every event, whatever the query, and no last line."""
    body = b"".join(b'{"id": %d, "source": "generic"}\n' % n for n in range(30, 0, -1))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_export_from_a_receiver_that_ignores_cursor_stops_instead_of_repeating(
        old_receiver: str) -> None:
    written: list[str] = []
    with pytest.raises(remote_export.ExportError, match="ignores cursor"):
        remote_export.fetch(old_receiver, {}, written.append, sleep=lambda _: None,
                     notice=lambda _: None)
    events, complete = parse("".join(written))
    assert [event["id"] for event in events] == list(range(30, 0, -1)) and complete is None


def test_cli_export_from_reports_a_bad_filter_and_a_wrong_url(serve: Any,
                                                              tmp_path: Path) -> None:
    server = serve()
    result = CliRunner().invoke(cli, ["export", "--from", server.url + "/nothing"])
    assert result.exit_code == 1 and "404" in result.output
    result = CliRunner().invoke(cli, ["export", "--from", "ftp://example.com"])
    assert result.exit_code == 1 and "--from" in result.output
    result = CliRunner().invoke(cli, ["export", "--from", server.url, "--source", "nope"])
    assert result.exit_code == 1 and "source" in result.output
