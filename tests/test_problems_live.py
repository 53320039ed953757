"""Problems and alerts with real processes: ``receiver serve`` under gunicorn (two nodes on
one PostgreSQL database, or SQLite with a ``receiver worker``), a real HTTP server catching
the alert posts, PostgreSQL stopped and started again. Each test waits for a settled state
(every alert in the outbox sent, the problem in its final status), then counts exactly what
the target received: an alert is sent once across nodes and worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ed25519

from receiver.problems import kinds

from .conftest import Server, free_port, sample, wait_serving
from .postgres import PostgresServer, start_throwaway
from .test_problems import AlertTarget
from .test_reliability import install_plugin, licensespring_body, worker_pids
from .test_retries_live import start_worker
from .test_web_verify import PUBLIC_URL, public_hex, signed
from .waiting import wait_for


@pytest.fixture
def target() -> Iterator[AlertTarget]:
    server = AlertTarget()
    yield server
    server.close()


def of_kind(store: Any, kind: str) -> list[dict[str, Any]]:
    return [problem for problem in store.list_problems() if problem["kind"] == kind]


def all_sent(store: Any, problem: dict[str, Any], states: list[str]) -> bool:
    """The problem's outbox holds exactly ``states`` (one URL alert each), all sent."""
    outbox = store.alerts_of(problem["id"])
    return ([alert["state"] for alert in outbox] == states
            and all(alert["sent_at"] for alert in outbox))


def states(target: AlertTarget, kind: str) -> list[str]:
    return [alert["state"] for alert in list(target.received)
            if alert["problem"]["kind"] == kind]


# -- a. a 401 storm over two nodes on PostgreSQL --------------------------------------------


def keygen_toml(key: ed25519.Ed25519PrivateKey) -> str:
    return (f'[endpoints.keygen]\nsource = "keygen"\npublic_key = "{public_hex(key)}"\n'
            f'url = "{PUBLIC_URL}"\nenforce = true\n')


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_401_storm_over_two_nodes_is_one_problem_and_one_alert_each_way(
        serve, db_path, stores, target) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    env = {"RECEIVER_ALERT_URL": target.url}
    nodes = [serve("--workers", "2", env=env, database=db_path, config=keygen_toml(key))
             for _ in range(2)]
    item = sample("keygen", "license.created")

    def storm(node: Server) -> list[int]:
        session = requests.Session()
        return [session.post(node.url + "/hooks/keygen", data=item.body,
                             timeout=30).status_code for _ in range(100)]

    answers: list[list[int]] = [[], []]
    threads = [threading.Thread(target=lambda i=i: answers[i].extend(storm(nodes[i])))
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert answers == [[401] * 100, [401] * 100]

    store = stores(db_path)

    def counted() -> dict[str, Any] | None:
        found = of_kind(store, kinds.SIGNATURE_REFUSED)
        if len(found) == 1 and found[0]["count"] == 200 and all_sent(store, found[0],
                                                                      ["opened"]):
            return found[0]
        return None

    problem = wait_for(counted, timeout=30, interval=0.1, message=lambda: (
        f"not one problem counted 200 with its alert sent: "
        f"{of_kind(store, kinds.SIGNATURE_REFUSED)} {target.received}"))
    assert (problem["subject"], problem["status"]) == ("keygen", "open")
    assert states(target, kinds.SIGNATURE_REFUSED) == ["opened"]
    (opened,) = target.received
    assert opened["problem"]["id"] == problem["id"]
    assert opened["problem"]["link"] == "/deliveries?rejected=1&endpoint=keygen"

    # One valid delivery, on one node, resolves it: one more alert, from one process.
    answer = requests.post(nodes[0].url + "/hooks/keygen", data=item.body,
                           headers=signed(item.body, key), timeout=30)
    assert answer.status_code == 200 and answer.json()["signature_status"] == "valid"

    def resolved() -> dict[str, Any] | None:
        found = of_kind(store, kinds.SIGNATURE_REFUSED)
        if (len(found) == 1 and found[0]["status"] == "resolved"
                and all_sent(store, found[0], ["opened", "resolved"])):
            return found[0]
        return None

    problem = wait_for(resolved, timeout=30, interval=0.1, message=lambda: (
        f"not resolved with its alert sent: {of_kind(store, kinds.SIGNATURE_REFUSED)} "
        f"{target.received}"))
    assert problem["count"] == 200 and problem["resolved_at"]
    assert [alert["state"] for alert in target.received] == ["opened", "resolved"]
    assert target.received[1]["problem"]["id"] == problem["id"]
    for node in nodes:
        assert node.process.poll() is None
        assert "Traceback" not in node.output()


# -- b. PostgreSQL stopped past the threshold: the node alerts from memory --------------------

#: ``receiver serve`` with the outage threshold shortened (the module constant and the
#: default of ``Outage``, bound when the class was made), then the real command. Each call
#: of the outage memory is also written to a file (pid, seconds since this process first
#: saw the database away, whether it alerted), so the test can tell when every worker has
#: passed the threshold, and when every worker has seen the database back: settled states to
#: count the alerts at.
LAUNCHER = """\
import os, sys, time

from receiver.problems import board

board.OUTAGE_SECONDS = float(sys.argv[1])
board.Outage.__init__.__defaults__ = (board.OUTAGE_SECONDS,)
TRACE = os.environ["OUTAGE_TRACE"]
unavailable, available = board.Outage.unavailable, board.Outage.available


def trace(line):
    with open(TRACE, "a") as out:
        out.write(line + "\\n")


def traced_unavailable(self):
    unavailable(self)
    since = self._since
    elapsed = time.monotonic() - since if since is not None else 0.0
    trace(f"unavailable {os.getpid()} {elapsed:.3f} {int(self.alerted)}")


def traced_available(self, store):
    available(self, store)
    trace(f"available {os.getpid()}")


board.Outage.unavailable, board.Outage.available = traced_unavailable, traced_available

from receiver.cli import cli

cli.main(args=["serve", *sys.argv[2:]], prog_name="receiver")
"""

OUTAGE_SECONDS = 2.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A throwaway server for this test alone: it is stopped and started again."""
    try:
        server = start_throwaway(free_port())
    except (FileNotFoundError, KeyError) as error:
        pytest.skip(f"no PostgreSQL binaries ({error})")
    yield server
    server.remove()


def serve_with_short_outage(tmp_path: Path, database: str, env: dict[str, str],
                            *args: str) -> Server:
    launcher = tmp_path / "short_outage.py"
    launcher.write_text(LAUNCHER)
    port = free_port()
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("RECEIVER_") and key != "DATABASE_URL"}
    environment.update({"RECEIVER_DATABASE": database, **env})
    log = tmp_path / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, str(launcher), str(OUTAGE_SECONDS), "--host", "127.0.0.1",
         "--port", str(port), *args],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=environment, cwd=tmp_path)
    return wait_serving(Server(f"http://127.0.0.1:{port}", process, log, database),
                        "receiver serve (short outage)")


def trace_lines(trace: Path) -> list[list[str]]:
    return [line.split() for line in trace.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("workers", [
    1,
    2,  # the workers of one node share the outage: one alert each way, one record
])
def test_postgresql_stopped_past_the_threshold_alerts_from_memory_once(
        tmp_path, own_postgres, stores, target, workers) -> None:
    database = own_postgres.database_url("postgres")
    trace = tmp_path / "outage.trace"
    trace.touch()
    node = serve_with_short_outage(
        tmp_path, database, {"RECEIVER_ALERT_URL": target.url, "RECEIVER_BUSY_TIMEOUT": "2000",
                             "OUTAGE_TRACE": str(trace)},
        "--workers", str(workers))
    try:
        # gunicorn forks its workers after it answers: wait until they are all there.
        def all_workers() -> set[str] | None:
            found = set(map(str, worker_pids(node.process.pid)))
            return found if len(found) == workers else None

        pids = wait_for(all_workers, message=f"gunicorn did not start {workers} workers")
        answers: list[int] = []
        stop = threading.Event()

        def deliveries() -> None:  # one every 0.5 s, all along
            session = requests.Session()
            number = 0
            while not stop.wait(0.5):
                number += 1
                answer = session.post(node.url + "/hooks",
                                      data=licensespring_body(f"outage-{number}"), timeout=30)
                answers.append(answer.status_code)

        sender = threading.Thread(target=deliveries)
        sender.start()
        try:
            wait_for(lambda: answers.count(200) >= 2, timeout=30)
            own_postgres.stop("fast")
            mark = len(answers)

            def all_past_threshold() -> bool:
                # Each worker has decided whether to alert: a call well past the threshold
                # (the trace is written after the call; the margin covers the call itself).
                past = {pid for what, pid, elapsed, _ in
                        (line for line in trace_lines(trace) if line[0] == "unavailable")
                        if float(elapsed) >= OUTAGE_SECONDS + 0.5}
                return past >= pids

            wait_for(all_past_threshold, timeout=60, interval=0.1, message=lambda: (
                f"not every worker past the threshold: {trace_lines(trace)}"))
            # The opened alert arrives, from memory (the database is still away).
            wait_for(lambda: states(target, kinds.DATABASE_UNAVAILABLE), timeout=30,
                     interval=0.1, message=lambda: f"no alert: {answers[mark:]}\n"
                     f"{node.output()[-3000:]}")
            assert 503 in answers[mark:]
            assert all(status == 503 for status in answers[mark + 1:])
            alerted = {line[1] for line in trace_lines(trace)
                       if line[0] == "unavailable" and line[3] == "1"}
            wait_for(lambda: len(states(target, kinds.DATABASE_UNAVAILABLE)) >= len(alerted),
                     timeout=30)
            opened = list(target.received)

            restart = len(trace_lines(trace))
            own_postgres.start()

            def all_back() -> bool:  # each worker has seen the database answer again
                return {line[1] for line in trace_lines(trace)[restart:]
                        if line[0] == "available"} >= pids

            wait_for(all_back, timeout=60, interval=0.1, message=lambda: (
                f"not every worker saw the database back: {trace_lines(trace)}"))
            wait_for(lambda: states(target, kinds.DATABASE_UNAVAILABLE).count("resolved")
                     >= len(alerted), timeout=30, message=lambda: (
                         f"resolved alerts missing: {target.received}"))
            after = len(answers)
            wait_for(lambda: answers[after:].count(200) >= 2, timeout=30)
        finally:
            stop.set()
            sender.join(30)

        store = stores(database)
        recorded = of_kind(store, kinds.DATABASE_UNAVAILABLE)
        resolved = [alert for alert in target.received if alert["state"] == "resolved"]
        assert opened[0]["problem"]["kind"] == kinds.DATABASE_UNAVAILABLE
        assert opened[0]["problem"]["id"] is None  # from memory: the database was away
        assert opened[0]["problem"]["status"] == "open"
        assert resolved and resolved[0]["problem"]["status"] == "resolved"
        assert recorded and recorded[0]["status"] == "resolved" and recorded[0]["resolved_at"]
        assert resolved[0]["problem"]["id"] in {problem["id"] for problem in recorded}
        # Once per node, however many of its worker processes saw the database away.
        assert (len(opened), len(resolved), len(recorded)) == (1, 1, 1), (
            target.received, recorded)
        assert node.process.poll() is None  # the same processes all along
    finally:
        node.stop()


# -- c. SQLite: a backlog while no worker runs ------------------------------------------------

RECORDING_HANDLER = '''\
import os
from receiver import on

@on("*")
def record(event, **extra):
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"{event.id} {os.getpid()}\\n")
'''


def test_a_backlog_opens_one_problem_and_a_worker_resolves_it(serve, tmp_path, stores, target,
                                                             processes) -> None:
    site, handled = tmp_path / "site", tmp_path / "handled.log"
    install_plugin(site, "backlog_hooks", RECORDING_HANDLER)
    handled.touch()
    database = str(tmp_path / "backlog.db")
    env = {"PYTHONPATH": str(site), "HANDLER_LOG": str(handled),
           "RECEIVER_ALERT_URL": target.url, "RECEIVER_ALERT_BACKLOG": "1s",
           "RECEIVER_DISPATCH": "worker"}
    node = serve("--workers", "2", env=env, database=database)
    answer = requests.post(node.url + "/hooks", data=licensespring_body("backlog-1"),
                           timeout=30)
    assert answer.status_code == 200
    event_id = int(answer.json()["event_id"])
    store = stores(database)
    assert store.get_event(event_id).dispatch_status == "pending"

    def opened() -> dict[str, Any] | None:
        found = of_kind(store, kinds.DISPATCH_BACKLOG)
        if len(found) == 1 and all_sent(store, found[0], ["opened"]):
            return found[0]
        return None

    problem = wait_for(opened, timeout=30, interval=0.1, message=lambda: (
        f"no backlog problem: {store.list_problems()} {target.received}"))
    assert (problem["subject"], problem["status"]) == (kinds.DISPATCH, "open")
    assert states(target, kinds.DISPATCH_BACKLOG) == ["opened"]
    assert handled.read_text() == ""  # nothing ran: no worker yet
    assert store.get_event(event_id).dispatch_status == "pending"

    processes.append(start_worker(tmp_path, database, env))
    wait_for(lambda: store.get_event(event_id).dispatch_status == "done", timeout=30,
             message=lambda: f"not run: {store.get_event(event_id)}")

    def resolved() -> dict[str, Any] | None:
        found = of_kind(store, kinds.DISPATCH_BACKLOG)
        if (len(found) == 1 and found[0]["status"] == "resolved"
                and all_sent(store, found[0], ["opened", "resolved"])):
            return found[0]
        return None

    problem = wait_for(resolved, timeout=30, interval=0.1, message=lambda: (
        f"not resolved: {store.list_problems()} {target.received}"))
    assert problem["resolved_at"]
    assert [alert["state"] for alert in target.received] == ["opened", "resolved"]
    assert [alert["problem"]["id"] for alert in target.received] == [problem["id"]] * 2
    assert [line.split()[0] for line in handled.read_text().splitlines()] == [str(event_id)]
    assert target.received[1]["problem"]["status"] == "resolved"
    assert "Traceback" not in node.output()
