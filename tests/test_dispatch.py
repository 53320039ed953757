"""Durable dispatch: handlers run once per new event after the commit, runs are recorded,
replay re-runs them, pending events survive a dead process, and several gunicorn workers
never run one event twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller

from receiver import on
from receiver.events import Delivery
from receiver.handlers import signals
from receiver.store import EventFilters

from .conftest import all_samples, free_port, sample
from .waiting import wait_for

pytestmark = pytest.mark.both_backends


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    signals.reset_registry()
    yield
    signals.reset_registry()


def test_handlers_receive_the_stored_event_for_every_sample(app, client, store) -> None:
    seen: list[Any] = []
    on("*")(lambda event, **extra: seen.append((event, extra)))
    for item in all_samples():
        answer = client.post("/hooks", data=item.body, headers=item.headers).json
        event, extra = seen[-1]
        assert event.id == answer["event_id"]
        assert event.as_dict() | {"dispatch_status": "pending"} == \
            store.get_event(event.id).as_dict() | {"dispatch_status": "pending"}
        assert extra["trigger"] == "delivery" and extra["settings"]["DATABASE"]
    assert len(seen) == len(all_samples())


def test_prefix_source_and_catch_all(client) -> None:
    calls: list[str] = []
    on("license.*", name="t.prefix")(lambda event, **_: calls.append("prefix:" + event.event_type))
    on("license.created", source="licensespring", name="t.ls")(
        lambda event, **_: calls.append("ls"))
    signals.event_received.connect(lambda event, **_: calls.append("all"), weak=False)
    client.post("/hooks", data=sample("keygen", "license.created").body)
    client.post("/hooks", data=sample("licensespring", "license.created").body)
    client.post("/hooks", data=sample("fno", "product.updated").body)
    assert calls == ["prefix:license.created", "all", "prefix:license.created", "ls", "all",
                     "all"]


def test_duplicates_are_never_dispatched_again(client) -> None:
    calls: list[int] = []
    on("*")(lambda event, **_: calls.append(event.id))
    item = sample("zentitle", "entitlement.created")
    for _ in range(3):
        client.post("/hooks", data=item.body, headers=item.headers)
    assert len(calls) == 1


def test_one_failing_handler_is_recorded_while_others_run(client, store) -> None:
    calls: list[str] = []

    @on("license.*", name="tests.flaky")
    def flaky(event, **extra):
        raise RuntimeError("CRM is down")

    on("license.*", name="tests.steady")(lambda event, **_: calls.append("steady"))
    answer = client.post("/hooks", data=sample("keygen", "license.expired").body)
    assert answer.status_code == 200  # handlers never change the status
    event_id = answer.json["event_id"]
    assert calls == ["steady"]
    runs = {run["handler"]: run for run in store.runs_for_event(event_id)}
    assert runs["tests.flaky"]["status"] == "error"
    assert runs["tests.flaky"]["error"] == "RuntimeError: CRM is down"
    assert "raise RuntimeError" in runs["tests.flaky"]["traceback"]
    assert runs["tests.steady"]["status"] == "ok" and runs["tests.steady"]["trigger"] == \
        "delivery"
    # By default a failed handler is tried again later (30 s, then doubling): retrying.
    event = store.get_event(event_id)
    assert event.dispatch_status == "retrying" and event.next_attempt_at is not None
    assert [attempt["handler"] for attempt in store.scheduled_attempts(event_id)] == [
        "tests.flaky"]


def test_replay_only_the_failed_handler(client, store) -> None:
    state = {"fail": True, "steady": 0}

    @on("license.*", name="tests.flaky")
    def flaky(event, **extra):
        if state["fail"]:
            raise RuntimeError("down")

    @on("license.*", name="tests.steady")
    def steady(event, **extra):
        state["steady"] += 1

    event_id = client.post("/hooks", data=sample("keygen", "license.revoked").body).json[
        "event_id"]
    state["fail"] = False
    answer = client.post(f"/api/events/{event_id}/replay", json={"only_failed": True})
    assert answer.status_code == 200
    runs = answer.json["runs"]
    assert [(run["handler"], run["status"], run["trigger"]) for run in runs] == [
        ("tests.flaky", "ok", "replay")]
    assert state["steady"] == 1
    assert store.get_event(event_id).dispatch_status == "done"
    # Nothing failed any more: only_failed runs nothing.
    assert client.post(f"/api/events/{event_id}/replay", json={"only_failed": True}).json == {
        "runs": []}
    # Named replay runs that handler; an unknown name is a 400.
    named = client.post(f"/api/events/{event_id}/replay", json={"handlers": ["tests.steady"]})
    assert [run["handler"] for run in named.json["runs"]] == ["tests.steady"]
    assert client.post(f"/api/events/{event_id}/replay",
                       json={"handlers": ["nope"]}).status_code == 400
    assert client.post("/api/events/99999/replay", json={}).status_code == 404


def test_replay_from_the_cli(app, client, db_path) -> None:
    from click.testing import CliRunner

    from receiver.cli import cli

    on("license.*", name="tests.cli")(lambda event, **_: None)
    event_id = client.post("/hooks", data=sample("keygen", "license.renewed").body).json[
        "event_id"]
    result = CliRunner().invoke(cli, ["replay", str(event_id), "--db", db_path])
    assert result.exit_code == 0, result.output
    assert "tests.cli: ok" in result.output


def test_background_dispatch_does_not_delay_the_answer(make_app) -> None:
    release = threading.Event()
    started = threading.Event()

    @on("*")
    def slow(event, **extra):
        started.set()
        release.wait(10)

    app = make_app(DISPATCH="background")
    store = app.extensions["receiver.store"]
    answer = app.test_client().post("/hooks", data=sample("fno", "device.created").body)
    assert answer.status_code == 200
    assert started.wait(10)
    assert store.get_event(answer.json["event_id"]).dispatch_status == "pending"
    release.set()
    app.extensions["receiver.dispatcher"].drain()
    assert store.get_event(answer.json["event_id"]).dispatch_status == "done"


def test_pending_events_are_dispatched_by_a_new_app(make_app, db_path) -> None:
    """The process died between commit and dispatch: the next start runs the event."""
    from receiver.store import open_store

    calls: list[int] = []
    on("*")(lambda event, **_: calls.append(event.id))
    orphan = open_store(db_path)
    orphan.migrate()
    item = sample("keygen", "license.suspended")
    from receiver import dialects

    delivery = Delivery(body=item.body, headers=list(item.headers.items()))
    event = dialects.normalize("keygen", delivery, json.loads(item.body), parsed=True)
    # Stored leased to a worker that died before running it: the lease has run out.
    saved = orphan.save_event(delivery, event, "unchecked", dispatch_to="dead-worker",
                              lease_seconds=-1)
    assert orphan.get_event(saved.event_id).dispatch_status == "pending"

    app = make_app(DISPATCH="background")
    store = app.extensions["receiver.store"]
    wait_for(lambda: store.get_event(saved.event_id).dispatch_status == "done")
    assert calls == [saved.event_id]


def test_a_live_lease_is_not_taken_over(store, db_path) -> None:
    from receiver import dialects

    item = sample("keygen", "license.created")
    delivery = Delivery(body=item.body)
    event = dialects.normalize("keygen", delivery, json.loads(item.body), parsed=True)
    saved = store.save_event(delivery, event, "unchecked", dispatch_to="worker-a",
                             lease_seconds=-1)
    first = store.claim_pending("worker-a", lease_seconds=60)
    assert [e.id for e in first] == [saved.event_id]
    assert store.claim_pending("worker-b", lease_seconds=60) == []


def test_a_handler_slower_than_the_lease_keeps_its_event(make_app, db_path) -> None:
    """The dispatching worker renews its lease while the handler runs, so another worker's
    sweep never takes a live dispatch over (it would run the handler a second time)."""
    from receiver.store import open_store

    release, started = threading.Event(), threading.Event()
    runs: list[int] = []

    @on("*")
    def slow(event, **extra):
        runs.append(event.id)
        started.set()
        release.wait(20)

    app = make_app(DISPATCH="background", DISPATCH_LEASE=1)
    answer = app.test_client().post("/hooks", data=sample("fno", "device.created").body)
    assert answer.status_code == 200 and started.wait(10)
    other_worker = open_store(db_path)
    try:
        deadline = time.monotonic() + 3.5  # three and a half lease lengths
        while time.monotonic() < deadline:
            assert other_worker.claim_pending("worker-b", lease_seconds=1) == []
            time.sleep(0.1)
    finally:
        release.set()
    app.extensions["receiver.dispatcher"].drain()
    store = app.extensions["receiver.store"]
    assert store.get_event(answer.json["event_id"]).dispatch_status == "done"
    assert runs == [answer.json["event_id"]]
    # Settled: no lease left to renew or take over.
    assert store.lease_owner(answer.json["event_id"]) is None
    other_worker.close()


def test_a_dispatch_taken_over_meanwhile_is_not_run_again(make_app, db_path) -> None:
    """A process that stood still past its lease (stopped, swapped out) finds the event taken
    over when it resumes, and leaves it to the new holder."""
    from receiver import dialects
    from receiver.store import open_store

    runs: list[int] = []
    on("*")(lambda event, **_: runs.append(event.id))
    app = make_app(DISPATCH="sync")
    store = app.extensions["receiver.store"]
    dispatcher = app.extensions["receiver.dispatcher"]
    item = sample("keygen", "license.created")
    delivery = Delivery(body=item.body)
    event = dialects.normalize("keygen", delivery, json.loads(item.body), parsed=True)
    saved = store.save_event(delivery, event, "unchecked", dispatch_to=dispatcher.owner,
                             lease_seconds=-1)
    assert [e.id for e in open_store(db_path).claim_pending("worker-b", lease_seconds=60)] == [
        saved.event_id]
    dispatcher.run_leased(saved.event_id)
    assert runs == []
    assert store.lease_owner(saved.event_id) == "worker-b"


# -- the password-reset mail through the whole app --------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


def load_builtin(app: Any) -> None:
    from receiver.handlers import plugins

    plugins.load_plugins(app.config)


def test_password_reset_mail_reaches_a_real_smtp_server(make_app, smtp) -> None:
    mailbox, port = smtp
    app = make_app(MAIL_RESET_ENABLED=True, SMTP_HOST="127.0.0.1", SMTP_PORT=port,
                   MAIL_RESET_URL="https://app.example.com/reset?token={token}")
    load_builtin(app)
    client = app.test_client()
    item = sample("keygen", "user.password-reset")
    payload = json.loads(json.loads(item.body)["data"]["attributes"]["payload"])
    token = payload["meta"]["passwordResetToken"]
    email = payload["data"]["attributes"]["email"]

    answer = client.post("/hooks/keygen", data=item.body, headers=item.headers)
    assert answer.status_code == 200
    assert len(mailbox.messages) == 1
    envelope = mailbox.messages[0]
    assert envelope.rcpt_tos == [email]
    text = message_from_bytes(envelope.content, policy=policy.default).get_body(
        ("plain",)).get_content()
    assert token in text and "https://app.example.com/reset?token=" in text

    detail = client.get(f"/api/events/{answer.json['event_id']}")
    assert token not in detail.get_data(as_text=True)
    runs = detail.json["handler_runs"]
    assert [(run["handler"].rsplit(".", 1)[-1], run["status"]) for run in runs] == [
        ("mail_password_reset_token", "ok")]


def test_smtp_down_is_a_recorded_error_and_still_200(make_app) -> None:
    app = make_app(MAIL_RESET_ENABLED=True, SMTP_HOST="127.0.0.1", SMTP_PORT=free_port(),
                   SMTP_TIMEOUT=2)
    load_builtin(app)
    answer = app.test_client().post("/hooks", data=sample("keygen", "user.password-reset").body)
    assert answer.status_code == 200
    store = app.extensions["receiver.store"]
    (run,) = store.runs_for_event(answer.json["event_id"])
    assert run["status"] == "error" and "ConnectionRefusedError" in run["error"]
    # An SMTP server that cannot be reached is tried again later.
    assert store.get_event(answer.json["event_id"]).dispatch_status == "retrying"


# -- a user's plugin, installed as a real distribution, under several gunicorn workers -----

USER_HANDLER = '''\
import os, smtplib
from email.message import EmailMessage
from receiver import on

@on("*")
def record(event, **extra):
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"{event.id} {os.getpid()}\\n")

@on("user.password-reset", source="keygen")
def mail_token(event, settings, **extra):
    message = EmailMessage()
    message["From"], message["To"] = "app@example.com", event.data["data"]["attributes"]["email"]
    message["Subject"] = "Reset your password"
    message.set_content("Token: " + event.data["meta"]["passwordResetToken"])
    with smtplib.SMTP(settings["SMTP_HOST"], settings["SMTP_PORT"]) as smtp:
        smtp.send_message(message)
'''


def install_user_plugin(site: Path) -> None:
    (site / "acme_hooks.py").write_text(USER_HANDLER)
    info = site / "acme_hooks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hooks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[receiver.handlers]\nacme = acme_hooks\n")


def test_user_plugin_under_gunicorn_runs_each_event_once(serve, tmp_path, smtp, db_path) -> None:
    mailbox, smtp_port = smtp
    site = tmp_path / "site"
    site.mkdir()
    install_user_plugin(site)
    handler_log = tmp_path / "handled.log"
    handler_log.touch()
    database = db_path

    # Two events left pending by a process that died before dispatching them.
    from receiver import dialects
    from receiver.store import open_store

    orphan = open_store(database)
    orphan.migrate()
    orphans = []
    for name in ("license.created", "machine.created"):
        item = sample("keygen", name)
        delivery = Delivery(body=item.body)
        event = dialects.normalize("keygen", delivery, json.loads(item.body), parsed=True)
        orphans.append(orphan.save_event(delivery, event, "unchecked", dispatch_to="crashed",
                                         lease_seconds=-1).event_id)
    orphan.close()

    env = {"PYTHONPATH": f"{site}", "HANDLER_LOG": str(handler_log),
           "RECEIVER_SMTP_HOST": "127.0.0.1", "RECEIVER_SMTP_PORT": str(smtp_port)}
    server = serve("--workers", "3", env=env, database=database)
    plugins = requests.get(server.url + "/-/plugins").json()
    assert "acme" in json.dumps(plugins)

    bodies = [item for item in all_samples() if item.source in ("licensespring", "zentitle")]
    reset = sample("keygen", "user.password-reset")

    def post(item):
        return requests.post(server.url + "/hooks", data=item.body, headers=item.headers)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, [*bodies, *bodies[:10], reset]))
    assert all(answer.status_code == 200 for answer in answers)
    new_ids = {answer.json()["event_id"] for answer in answers}
    expected = new_ids | set(orphans)

    def handled() -> list[int]:
        return [int(line.split()[0]) for line in handler_log.read_text().splitlines()]

    store = open_store(database)
    try:
        def recorded_runs() -> int:
            return sum(run["handler"] == "acme_hooks.record"
                       for event_id in expected for run in store.runs_for_event(event_id))

        # Settled: every event dispatched, and each run in the log recorded (none under way).
        wait_for(lambda: set(handled()) >= expected, timeout=30,
                 message="not every event was handled")
        wait_for(lambda: not store.list_events(EventFilters(dispatch_status="pending"))[0]
                 and recorded_runs() == len(handled()), timeout=30,
                 message="dispatch did not settle")
        assert sorted(handled()) == sorted(expected), "an event ran twice or not at all"
        wait_for(lambda: mailbox.messages, timeout=10, message="no mail was sent")
        token = json.loads(json.loads(reset.body)["data"]["attributes"]["payload"])["meta"][
            "passwordResetToken"]
        assert token in mailbox.messages[0].content.decode()

        for event_id in expected:
            recorded = [run["handler"] for run in store.runs_for_event(event_id)]
            assert recorded.count("acme_hooks.record") == 1, event_id
    finally:
        store.close()



# -- separate workers: RECEIVER_DISPATCH=worker and `receiver worker` ---------------------


def test_worker_mode_web_node_stores_pending_and_runs_nothing(make_app) -> None:
    from receiver.handlers.dispatch import run_worker

    runs: list[int] = []
    on("*")(lambda event, **_: runs.append(event.id))
    web = make_app(DISPATCH="worker")
    answers = [web.test_client().post("/hooks", data=item.body, headers=item.headers).json
               for item in all_samples()[:5]]
    store = web.extensions["receiver.store"]
    event_ids = [answer["event_id"] for answer in answers]
    assert runs == []
    assert all(store.get_event(event_id).dispatch_status == "pending" for event_id in event_ids)

    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(store, web.config),
                              kwargs={"concurrency": 2, "poll_seconds": 0.05, "stop": stop})
    worker.start()
    try:
        wait_for(lambda: all(store.get_event(event_id).dispatch_status == "done"
                             for event_id in event_ids))
    finally:
        stop.set()
        worker.join(10)
    assert sorted(runs) == sorted(event_ids)
    assert all(len(store.runs_for_event(event_id)) == 1 for event_id in event_ids)


WORKER_HANDLER = '''\
import os, time
from receiver import on

@on("*")
def slow_record(event, **extra):
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"start {event.id} {os.getpid()}\\n")
    time.sleep(float(os.environ.get("HANDLER_SECONDS", "0")))
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"end {event.id} {os.getpid()}\\n")
'''


def start_worker(tmp_path: Path, database: str, env: dict[str, str],
                 *args: str) -> subprocess.Popen[bytes]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("RECEIVER_")}
    environment.update({"RECEIVER_DATABASE": database, **env})
    log = tmp_path / f"worker-{len(list(tmp_path.glob('worker-*.log')))}.log"
    return subprocess.Popen([sys.executable, "-m", "receiver", "worker", "--poll", "0.1", *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=environment,
                            cwd=tmp_path)


def test_worker_processes_run_each_event_once_and_sigterm_finishes_the_handler(
        make_app, db_path, tmp_path) -> None:
    from .test_reliability import install_plugin

    site, handled = tmp_path / "site", tmp_path / "handled.log"
    install_plugin(site, "worker_hooks", WORKER_HANDLER)
    handled.touch()
    web = make_app(DISPATCH="worker")
    client = web.test_client()
    event_ids = [client.post("/hooks", data=json.dumps({"type": "order.paid", "n": n})
                             ).json["event_id"] for n in range(40)]
    env = {"PYTHONPATH": str(site), "HANDLER_LOG": str(handled), "HANDLER_SECONDS": "0.02"}
    workers = [start_worker(tmp_path, db_path, env, "--concurrency", "2") for _ in range(2)]
    store = web.extensions["receiver.store"]
    try:
        wait_for(lambda: not store.list_events(EventFilters(dispatch_status="pending"))[0],
                 timeout=60)
        ended = [int(line.split()[1]) for line in handled.read_text().splitlines()
                 if line.startswith("end")]
        assert sorted(ended) == sorted(event_ids), "an event ran twice or not at all"

        # SIGTERM while a handler runs: it finishes and is recorded, then the worker exits.
        slow_env = {**env, "HANDLER_SECONDS": "2"}
        for process in workers:
            process.terminate()
            assert process.wait(20) == 0
        slow = start_worker(tmp_path, db_path, slow_env)
        workers.append(slow)
        last = client.post("/hooks", data=b'{"type": "order.refunded"}').json["event_id"]
        wait_for(lambda: f"start {last} " in handled.read_text(), timeout=30)
        slow.send_signal(signal.SIGTERM)
        assert slow.wait(20) == 0
        assert f"end {last} " in handled.read_text()
        (run,) = store.runs_for_event(last)
        assert run["status"] == "ok" and store.get_event(last).dispatch_status == "done"
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
