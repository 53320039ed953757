"""PostgreSQL: several receivers on one database, a node killed under load, PostgreSQL
stopped under load, nodes migrating together, the feed across concurrent commits, and
``receiver copy`` between the backends. Against a real server (tests/postgres.py)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from click.testing import CliRunner

from receiver import create_app, on
from receiver.cli import cli
from receiver.errors import StorageUnavailable
from receiver.events import Delivery, NormalizedEvent
from receiver.handlers import signals
from receiver.store import DeliveryFilters, EventFilters, open_store
from receiver.store.postgres import MIGRATIONS, PostgresStore

from .conftest import all_samples, free_port
from .postgres import PostgresServer, start_throwaway
from .test_reliability import install_plugin, licensespring_body
from .waiting import wait_for

RECORDING_HANDLER = '''\
import os
from receiver import on

@on("*")
def record(event, **extra):
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"{event.id} {os.getpid()}\\n")
'''


@pytest.fixture
def database(postgres: PostgresServer) -> Any:
    url = postgres.new_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture
def plugin_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A handler plugin installed for served nodes; each run is a line in the log."""
    site, handled = tmp_path / "site", tmp_path / "handled.log"
    install_plugin(site, "node_hooks", RECORDING_HANDLER)
    handled.touch()
    return {"PYTHONPATH": str(site), "HANDLER_LOG": str(handled)}, handled


def handled_ids(log: Path) -> list[int]:
    return [int(line.split()[0]) for line in log.read_text().splitlines()]


def stored(url: str) -> tuple[PostgresStore, list[int]]:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    return store, [event.id for event in store.iter_events(EventFilters())]


# -- several receivers on one database --------------------------------------------------


def test_two_nodes_store_each_event_once_and_run_it_once(serve, database, plugin_env) -> None:
    env, handled = plugin_env
    nodes = [serve("--workers", "2", env=env, database=database) for _ in range(2)]
    bodies = [licensespring_body(f"two-nodes-{n}") for n in range(150)]
    # Every delivery goes to both nodes at once: a vendor retry landing on two machines.
    jobs = [(node, body) for body in bodies for node in nodes]
    random.Random(7).shuffle(jobs)

    def post(job: tuple[Any, bytes]) -> dict[str, Any]:
        node, body = job
        answer = requests.post(node.url + "/hooks/licensespring", data=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return {"body": body, **answer.json()}

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, jobs))

    by_body: dict[bytes, list[dict[str, Any]]] = {}
    for answer in answers:
        by_body.setdefault(answer["body"], []).append(answer)
    for pair in by_body.values():
        assert len({answer["event_id"] for answer in pair}) == 1
        assert sorted(answer["duplicate"] for answer in pair) == [False, True]
    store, event_ids = stored(database)
    try:
        assert len(event_ids) == 150
        assert store.table_counts()["deliveries"] == 300
        assert all(event.delivery_count == 2 for event in store.iter_events(EventFilters()))
        def recorded_runs() -> int:
            return sum(run["handler"] == "node_hooks.record"
                       for event_id in event_ids for run in store.runs_for_event(event_id))

        # Settled: every event dispatched, and each run in the log recorded (none under way).
        wait_for(lambda: set(handled_ids(handled)) >= set(event_ids), timeout=30,
                 message="not every event was handled")
        wait_for(lambda: not store.list_events(EventFilters(dispatch_status="pending"))[0]
                 and recorded_runs() == len(handled_ids(handled)), timeout=30,
                 message="dispatch did not settle")
        assert sorted(handled_ids(handled)) == sorted(event_ids), "an event ran twice"
    finally:
        store.close()
    for node in nodes:
        assert "Traceback" not in node.output()


def test_a_killed_node_loses_nothing_and_its_leases_move_on(serve, database,
                                                           plugin_env) -> None:
    env, handled = plugin_env
    env = {**env, "RECEIVER_DISPATCH_LEASE": "2"}
    doomed = serve("--workers", "2", env=env, database=database, own_group=True)
    survivor = serve("--workers", "2", env=env, database=database)
    accepted: dict[int, str] = {}
    lock = threading.Lock()
    killed = threading.Event()

    def client(number: int) -> None:
        session = requests.Session()
        for index in range(50):
            node = doomed if (index + number) % 2 and not killed.is_set() else survivor
            body = licensespring_body(f"kill-{number}-{index}-{uuid.uuid4()}")
            try:
                answer = session.post(node.url + "/hooks", data=body, timeout=30)
            except requests.RequestException:  # the killed node's connections
                session = requests.Session()
                continue
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 200:
                with lock:
                    accepted[answer.json()["delivery_id"]] = hashlib.sha256(body).hexdigest()

    def killer() -> None:
        wait_for(lambda: len(accepted) > 100, timeout=30)
        os.killpg(doomed.process.pid, signal.SIGKILL)
        killed.set()

    threading.Thread(target=killer, daemon=True).start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client, range(8)))
    assert killed.is_set() and len(accepted) > 200

    store, event_ids = stored(database)
    try:
        for delivery_id, digest in accepted.items():
            delivery = store.get_delivery(delivery_id, with_body=True)
            assert hashlib.sha256(delivery["body"]).hexdigest() == digest
        # What the dead node had leased is run by the survivor once the lease runs out.
        wait_for(lambda: not store.list_events(EventFilters(dispatch_status="pending"))[0],
                 timeout=60)
        assert set(handled_ids(handled)) == set(event_ids)
    finally:
        store.close()


def test_nodes_starting_together_on_an_empty_database_migrate_once(serve, postgres) -> None:
    url = postgres.new_database(migrated=False)
    try:
        with ThreadPoolExecutor(3) as pool:
            nodes = list(pool.map(lambda _: serve(database=url), range(3)))
        for node in nodes:
            assert requests.post(node.url + "/hooks", data=b'{"type": "a.b"}').status_code == 200
        with psycopg.connect(url) as conn:
            versions = conn.execute(
                "SELECT version FROM receiver_migrations ORDER BY version").fetchall()
        assert versions == [(version,) for version, _, _ in MIGRATIONS]
        keys = {requests.get(node.url + "/-/health").status_code for node in nodes}
        assert keys == {200}
    finally:
        for node in nodes:
            node.stop()
        postgres.drop_database(url)


def test_nodes_share_the_secret_key_kept_in_the_database(database) -> None:
    stores = [open_store(database) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    keys: list[str] = []

    def read(store: Any) -> None:
        barrier.wait()
        keys.append(store.secret_key())

    threads = [threading.Thread(target=read, args=(store,)) for store in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(keys) == 6 and len(set(keys)) == 1 and len(keys[0]) >= 32
        assert stores[0].secret_key() == keys[0]
    finally:
        for store in stores:
            store.close()


# -- PostgreSQL stopped, refusing, unreachable -------------------------------------------


@pytest.fixture
def own_postgres(postgres: PostgresServer) -> Any:
    """A server of this test's own, which it may stop and start."""
    if postgres.data_dir is None:
        pytest.skip("stopping PostgreSQL needs the throwaway server (RECEIVER_TEST_POSTGRES "
                    "names a shared one)")
    server = start_throwaway(free_port())
    yield server
    server.remove()


def test_postgresql_stopped_under_load_answers_503_then_serves_again(serve,
                                                                     own_postgres) -> None:
    node = serve("--workers", "2", env={"RECEIVER_BUSY_TIMEOUT": "2000"},
                 database=own_postgres.database_url("postgres"))
    answers: list[tuple[int, float, str | None, bytes, dict[str, Any]]] = []
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            body = licensespring_body(f"outage-{uuid.uuid4()}")
            started = time.monotonic()
            answer = session.post(node.url + "/hooks", data=body, timeout=30)
            answers.append((answer.status_code, time.monotonic() - started,
                            answer.headers.get("Retry-After"), body, answer.json()))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(answers) > 50, timeout=30)
        own_postgres.stop("fast")
        wait_for(lambda: sum(1 for answer in answers if answer[0] == 503) > 10, timeout=30)
        page = requests.get(node.url + "/api/events", timeout=30)
        assert page.status_code == 503 and "database is unavailable" in page.json()["error"]
        assert page.headers["Retry-After"]
        html = requests.get(node.url + "/", timeout=30)
        assert html.status_code == 503 and "database is unavailable" in html.text
        own_postgres.start()
        mark = len(answers)
        wait_for(lambda: any(answer[0] == 200 for answer in answers[mark:]), timeout=60)
        mark = len(answers)
        wait_for(lambda: len(answers) > mark + 30, timeout=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert node.process.poll() is None  # the same processes, no restart
    statuses = [answer[0] for answer in answers]
    assert set(statuses) <= {200, 503}
    assert statuses[-20:] == [200] * 20
    assert all(answer[2] for answer in answers if answer[0] == 503)
    assert max(answer[1] for answer in answers) < 10  # never a hang
    store = open_store(own_postgres.database_url("postgres"))
    try:
        for status, _, _, body, payload in answers:
            if status == 200:  # every acknowledged delivery was committed
                assert store.get_delivery(payload["delivery_id"], with_body=True)["body"] == body
    finally:
        store.close()
    assert "Traceback" not in node.output()


def test_after_a_restart_of_postgresql_no_request_meets_a_dead_pooled_connection(
        serve, own_postgres) -> None:
    """Every worker's pool holds connections that died with the server: once the node
    answers 200 again, the next requests (pages, API, deliveries) all succeed."""
    node = serve("--workers", "2", env={"RECEIVER_BUSY_TIMEOUT": "2000",
                                        "RECEIVER_POOL_SIZE": "4"},
                 database=own_postgres.database_url("postgres"))
    session = requests.Session()

    def load(count: int) -> list[int]:
        """Deliveries and reads from several clients at once, so every worker fills its pool."""
        def one(number: int) -> int:
            if number % 3 == 0:
                return requests.get(node.url + "/api/events?limit=5", timeout=30).status_code
            if number % 3 == 1:
                return requests.get(node.url + "/", timeout=30).status_code
            body = licensespring_body(f"restart-{uuid.uuid4()}")
            return requests.post(node.url + "/hooks", data=body, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(count)))

    assert set(load(60)) == {200}
    own_postgres.stop("fast")  # nothing asks meanwhile: the pooled connections stay, dead
    own_postgres.start()

    seen: list[int] = []

    def serves_again() -> bool:
        body = licensespring_body(f"first-{uuid.uuid4()}")
        seen.append(session.post(node.url + "/hooks", data=body, timeout=30).status_code)
        return seen[-1] == 200

    wait_for(serves_again, timeout=60, interval=0.2)
    after = load(48)
    assert after == [200] * 48, (seen, after)
    assert "Traceback" not in node.output()


def test_unreachable_postgresql_is_storage_unavailable_within_seconds() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/none", timeout_ms=1000)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        store.save_rejected(Delivery(body=b"x"), status_code=400, error="bad")
    assert "database is unavailable" in caught.value.message
    with pytest.raises(StorageUnavailable):
        store.migrate()
    assert time.monotonic() - started < 10
    store.close()


def test_cli_on_an_unreachable_database_says_so() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    result = CliRunner().invoke(cli, ["events", "--db", url])
    assert result.exit_code == 1
    assert "database is unavailable" in result.output and "Traceback" not in result.output


# -- the feed never steps over a delivery still being committed ---------------------------


def test_feed_waits_for_a_delivery_committed_out_of_id_order(database) -> None:
    store = PostgresStore(database)
    try:
        first = store.save_rejected(Delivery(body=b"1"), status_code=400, error="bad")
        with psycopg.connect(database) as slow:  # a transaction that is slow to commit
            gap = slow.execute(
                "INSERT INTO deliveries (received_at, endpoint, method, path, headers,"
                " body_size, status_code) VALUES ('2024-01-01T00:00:00.000Z', 'default',"
                " 'POST', '/hooks', '[]', 0, 400) RETURNING id").fetchone()[0]
            later = store.save_rejected(Delivery(body=b"3"), status_code=400, error="bad")
            assert later > gap > first
            feed, _ = store.list_deliveries(DeliveryFilters(), after=first)
            assert feed == []  # `later` waits: `gap` may still commit
            slow.commit()
        feed, _ = store.list_deliveries(DeliveryFilters(), after=first)
        assert [row["id"] for row in feed] == [gap, later]

        # A rolled-back id stays missing; the feed steps over it once it is old.
        with psycopg.connect(database) as aborted:
            aborted.execute("INSERT INTO deliveries (received_at, endpoint, method, path,"
                            " headers, body_size, status_code) VALUES ('x', 'd', 'POST', '/',"
                            " '[]', 0, 400)")
            aborted.rollback()
        last = store.save_rejected(Delivery(body=b"5"), status_code=400, error="bad")
        assert store.list_deliveries(DeliveryFilters(), after=later)[0] == []
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("UPDATE deliveries SET stored_at = stored_at - interval '1 hour'"
                         " WHERE id = %s", (last,))
        assert [row["id"] for row in store.list_deliveries(DeliveryFilters(),
                                                           after=later)[0]] == [last]
    finally:
        store.close()


# -- receiver copy ----------------------------------------------------------------------


def build_history(path: str) -> None:
    """Every sample, a duplicate, refused and non-UTF-8 deliveries, handler runs."""
    app = create_app({"DATABASE": path, "DISPATCH": "sync", "TESTING": True})
    before = signals.registry_keys()
    on("*", name="tests.build_history")(lambda event, **_: None)
    client = app.test_client()
    for item in all_samples():
        assert client.post("/hooks", data=item.body, headers=item.headers).status_code in (
            200, 401)
    first = all_samples()[0]
    client.post("/hooks", data=first.body, headers=first.headers)
    client.post("/hooks", data=b"{not json")
    client.post("/hooks", data=b"\xff\xfe\x00binary", headers={"Content-Type": "x/y"})
    app.extensions["receiver.dispatcher"].stop()
    app.extensions["receiver.store"].close()
    signals.unregister(signals.registry_keys() - before)  # the next tests run without it


def snapshot(database: str) -> dict[str, list[dict[str, Any]]]:
    store = open_store(database)
    try:
        tables: dict[str, list[dict[str, Any]]] = {}
        for table in ("events", "deliveries", "handler_runs"):
            rows = store.copy_rows(table, after=0, limit=100_000)
            for row in rows:
                if "duplicate" in row:
                    row["duplicate"] = bool(row["duplicate"])
                if row.get("body") is not None:
                    row["body"] = hashlib.sha256(bytes(row["body"])).hexdigest()
            tables[table] = rows
        return tables
    finally:
        store.close()


def test_copy_sqlite_to_postgresql_and_back_keeps_bytes_ids_and_counts(tmp_path,
                                                                       database) -> None:
    original = str(tmp_path / "original.db")
    build_history(original)
    before = snapshot(original)
    assert {row["source"] for row in before["events"]} >= {
        "keygen", "licensespring", "fno", "zentitle", "standard", "generic"}
    assert before["handler_runs"] and any(row["duplicate"] for row in before["deliveries"])
    runner = CliRunner()

    result = runner.invoke(cli, ["copy", "--from", original, "--to", database])
    assert result.exit_code == 0, result.output
    assert f"events: copied {len(before['events'])}" in result.output
    assert snapshot(database) == before

    again = runner.invoke(cli, ["copy", "--from", original, "--to", database])
    assert again.exit_code == 0, again.output
    for table in ("events", "deliveries", "handler_runs"):
        assert f"{table}: copied 0," in again.output

    back = str(tmp_path / "back.db")
    result = runner.invoke(cli, ["copy", "--from", database, "--to", back, "--batch", "7"])
    assert result.exit_code == 0, result.output
    assert snapshot(back) == before

    # Copied events are searchable and new ones take ids above the copied ones.
    for target in (database, back):
        store = open_store(target)
        try:
            assert store.list_events(EventFilters(q="licensespring"))[0]
            saved = store.save_rejected(Delivery(body=b"new"), status_code=400, error="x")
            assert saved > max(row["id"] for row in before["deliveries"])
        finally:
            store.close()


def test_copy_refuses_an_unknown_scheme_and_a_missing_file(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["copy", "--from", str(tmp_path / "none.db"), "--to",
                                 str(tmp_path / "b.db")])
    assert result.exit_code == 1 and "no database at" in result.output
    result = runner.invoke(cli, ["copy", "--from", "mysql://x/y", "--to", str(tmp_path / "b.db")])
    assert result.exit_code == 1 and "mysql:// URLs are not supported" in result.output


def test_settings_read_database_url_when_receiver_database_is_unset() -> None:
    from receiver.config import load_settings

    url = "postgresql://app@db.internal:5432/hooks"
    assert load_settings(environ={"DATABASE_URL": url})["DATABASE"] == url
    both = {"DATABASE_URL": url, "RECEIVER_DATABASE": "local.db"}
    assert load_settings(environ=both)["DATABASE"] == "local.db"
    with pytest.raises(Exception, match="DATABASE_URL: mysql:// URLs are not supported"):
        load_settings(environ={"DATABASE_URL": "mysql://x/y"})
    with pytest.raises(Exception, match="RECEIVER_DATABASE: redis:// URLs are not supported"):
        load_settings(environ={"RECEIVER_DATABASE": "redis://x"})
    assert load_settings(environ={"RECEIVER_POOL_SIZE": "8"})["POOL_SIZE"] == 8
    with pytest.raises(Exception, match="RECEIVER_POOL_SIZE: expected 1 or more"):
        load_settings(environ={"RECEIVER_POOL_SIZE": "0"})


def test_health_on_postgresql(serve, database) -> None:
    node = serve(database=database)
    assert requests.post(node.url + "/hooks", data=json.dumps({"type": "a.b"})).status_code == 200
    assert requests.get(node.url + "/-/health").json() == {"ok": True, "events": 1,
                                                           "deliveries": 1}


def test_search_pages_match_a_plain_filter_across_the_window(database, monkeypatch) -> None:
    """Search pages read the newest ids in order, then the GIN index below them, and the
    queued events above: with a window of 5 ids, every page boundary and all three paths
    meet; the pages equal the plain answer (newest first, no gaps, no repeats)."""
    from receiver.store import postgres_search

    monkeypatch.setattr(postgres_search, "SEARCH_WINDOW", 5)
    store = PostgresStore(database)
    try:
        expected: dict[str, list[int]] = {"zebra": [], "zebra fno": []}
        for number in range(60):
            words = "zebra" if number % 7 in (0, 1) or number > 50 else "plain"
            source = "fno" if number % 2 else "keygen"
            saved = store.save_event(
                Delivery(body=b"{}"),
                NormalizedEvent(source=source, event_type="license.created",
                                vendor_event=None, external_id=f"w-{number}", occurred_at=None,
                                account=None, actor=None, subject_type="license",
                                subject_id=str(number), data={"note": f"{words} {number}"}),
                "unchecked")
            if words == "zebra":
                expected["zebra"].append(saved.event_id)
                if source == "fno":
                    expected["zebra fno"].append(saved.event_id)
            if number == 40:  # these in the index, the rest matched as recent events
                store.catch_up_search()
        for label, filters in (("zebra", EventFilters(q="zebra")),
                               ("zebra fno", EventFilters(q="zebra", source="fno"))):
            for limit in (1, 3, 4, 50):
                seen: list[int] = []
                cursor = None
                while True:
                    page, cursor_text = store.list_events(filters, limit=limit, cursor=cursor)
                    seen += [event.id for event in page]
                    if cursor_text is None:
                        break
                    cursor = int(cursor_text)
                assert seen == sorted(expected[label], reverse=True), (label, limit)
    finally:
        store.close()


def test_one_time_login_nonce_is_used_once_across_nodes(database) -> None:
    """For the one-time sign-in links (``Store.use_login_nonce``): the first call on any node
    wins."""
    first, second = PostgresStore(database), PostgresStore(database)
    try:
        assert first.use_login_nonce("n-1") is True
        assert second.use_login_nonce("n-1") is False
        assert first.use_login_nonce("n-1") is False
        assert second.use_login_nonce("n-2") is True
    finally:
        first.close()
        second.close()


def test_health_counts_large_tables_by_estimate(database) -> None:
    store = PostgresStore(database)
    try:
        store.save_rejected(Delivery(body=b"x"), status_code=400, error="bad")
        assert store.event_counts() == {"events": 0, "deliveries": 1}
        with psycopg.connect(database, autocommit=True) as conn:
            try:  # what autovacuum would record for a big table
                conn.execute("UPDATE pg_class SET reltuples = 250000"
                             " WHERE oid = 'events'::regclass")
            except psycopg.errors.InsufficientPrivilege:
                pytest.skip("needs a superuser to fake the planner's estimate")
        assert store.event_counts() == {"events": 250000, "deliveries": 1}
    finally:
        store.close()


def test_upkeep_is_held_by_one_process_and_its_session_is_probed(database, monkeypatch) -> None:
    """``claim_upkeep``: one session holds each job (as one process would); the server probes
    that session, so a node that vanishes frees the job within seconds; closing frees it."""
    from receiver.store import postgres as backend

    monkeypatch.setattr(backend, "UPKEEP_RECHECK_SECONDS", 0)
    first, second = PostgresStore(database), PostgresStore(database)
    try:
        assert first.claim_upkeep("search-index") and first.claim_upkeep("search-index")
        assert not second.claim_upkeep("search-index")
        assert first.claim_upkeep("another-job") and not second.claim_upkeep("another-job")
        session = first._upkeep._conn
        assert session is not None and session.execute(
            "SHOW tcp_keepalives_idle").fetchone()[0] in ("10", "10s")
        first.close()
        assert second.claim_upkeep("search-index")
    finally:
        first.close()
        second.close()
