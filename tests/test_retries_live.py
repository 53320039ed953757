"""Handler retries with real components: ``receiver serve`` under gunicorn restarted while an
attempt is scheduled, two nodes and a ``receiver worker`` on one PostgreSQL database, a
SIGKILLed worker holding an attempt, and the built-in password-reset mailer against a real
SMTP server that refuses and then accepts. Handlers are user plugins installed as real
distributions (entry points in ``receiver.handlers``) and write one line per call to a file,
so what ran is seen from outside the database too. Tests wait for a settled state (the
event ``done`` or ``failed``, nothing scheduled), never a fixed time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller

from .conftest import Server, sample
from .test_reliability import install_plugin, worker_pids
from .waiting import wait_for

# -- helpers -------------------------------------------------------------------------------


def read_lines(path: Path) -> list[list[str]]:
    """The handler's log, one call a line, split in words (a line cut short by a kill is
    complete anyway: each is one small O_APPEND write)."""
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def runs_of(store: Any, event_id: int) -> list[tuple[str, int, str]]:
    return [(run["status"], run["attempt"], run["trigger"])
            for run in store.runs_for_event(event_id)]


def settled(store: Any, event_id: int, status: str, timeout: float = 30) -> Any:
    """Wait for the event's dispatch status (and nothing scheduled): the state it stays in."""
    def reached() -> Any:
        event = store.get_event(event_id)
        return (event.dispatch_status == status
                and not store.scheduled_attempts(event_id) and event)

    return wait_for(reached, timeout=timeout, message=lambda: (
        f"event {event_id} never became {status}: {store.get_event(event_id)} "
        f"{runs_of(store, event_id)} {store.scheduled_attempts(event_id)}"))


def start_worker(tmp_path: Path, database: str, env: dict[str, str],
                 *args: str) -> subprocess.Popen[bytes]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("RECEIVER_") and key != "DATABASE_URL"}
    environment.update({"RECEIVER_DATABASE": database, **env})
    log = tmp_path / f"worker-{len(list(tmp_path.glob('worker-*.log')))}.log"
    return subprocess.Popen([sys.executable, "-m", "receiver", "worker", "--poll", "0.1", *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=environment,
                            cwd=tmp_path)


def post(server: Server, body: bytes, path: str = "/hooks") -> int:
    answer = requests.post(server.url + path, data=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["event_id"])


def order(number: int) -> bytes:
    return json.dumps({"type": "order.paid", "id": f"order-{number}", "n": number}).encode()


# -- a. a restart while an attempt is scheduled ---------------------------------------------

LATER_HANDLER = '''\
import os
from receiver import RetryLater, on

@on("order.*")
def later(event, attempt, **extra):
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"{event.id} {attempt} {os.getpid()}\\n")
    if attempt == 1:
        raise RetryLater(float(os.environ["RETRY_AFTER"]))
'''


@pytest.mark.both_backends
def test_an_attempt_scheduled_before_a_restart_runs_after_it(serve, tmp_path, db_path,
                                                             stores) -> None:
    site, handled = tmp_path / "site", tmp_path / "handled.log"
    install_plugin(site, "later_hooks", LATER_HANDLER)
    handled.touch()
    # Long enough to stop the first server before the attempt falls due (checked below:
    # the test proves nothing if the first server ran it).
    env = {"PYTHONPATH": str(site), "HANDLER_LOG": str(handled), "RETRY_AFTER": "4"}
    first = serve(env=env, database=db_path)
    event_id = post(first, order(1))
    store = stores(db_path)
    wait_for(lambda: store.get_event(event_id).dispatch_status == "retrying", timeout=20,
        message=lambda: f"not retrying: {store.get_event(event_id)}")
    first.stop()
    assert first.process.returncode is not None
    (scheduled,) = store.scheduled_attempts(event_id)
    assert (scheduled["attempt"], scheduled["running"]) == (2, False), \
        "the first server ran the attempt before it stopped: RETRY_AFTER is too short"
    assert runs_of(store, event_id) == [("error", 1, "delivery")]

    second = serve(env=env, database=db_path)
    event = settled(store, event_id, "done")
    assert event.next_attempt_at is None
    assert runs_of(store, event_id) == [("error", 1, "delivery"), ("ok", 2, "retry")]
    calls = read_lines(handled)
    assert [(int(event), int(attempt)) for event, attempt, _ in calls] == [
        (event_id, 1), (event_id, 2)]
    # The attempt ran in a worker of the second server.
    assert int(calls[1][2]) in worker_pids(second.process.pid)


# -- b. two nodes and a worker on one PostgreSQL database ------------------------------------

THIRD_TIME_HANDLER = '''\
import os
from receiver import on

@on("order.*")
def third_time(event, attempt, **extra):
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"{event.id} {attempt} {os.getpid()}\\n")
    if attempt < 3:
        raise RuntimeError(f"upstream answered 503 (attempt {attempt})")
'''


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_two_nodes_and_a_worker_run_each_attempt_once(serve, tmp_path, db_path, stores,
                                                      processes) -> None:
    site, handled = tmp_path / "site", tmp_path / "handled.log"
    install_plugin(site, "third_hooks", THIRD_TIME_HANDLER)
    handled.touch()
    env = {"PYTHONPATH": str(site), "HANDLER_LOG": str(handled),
           "RECEIVER_HANDLER_BACKOFF": "200ms", "RECEIVER_HANDLER_BACKOFF_MAX": "1s"}
    # Background dispatch on both nodes (2 gunicorn workers each) and a worker with two
    # threads: five processes take due attempts from the same table.
    nodes = [serve("--workers", "2", env=env, database=db_path) for _ in range(2)]
    processes.append(start_worker(tmp_path, db_path, env, "--concurrency", "2"))
    event_ids = [post(nodes[number % 2], order(number)) for number in range(40)]
    assert len(set(event_ids)) == 40
    store = stores(db_path)

    def all_done() -> bool:
        return all(store.get_event(event_id).dispatch_status == "done"
                   for event_id in event_ids)

    wait_for(all_done, timeout=90, interval=0.2, message=lambda: "not all done: " + str(
        Counter(store.get_event(event_id).dispatch_status for event_id in event_ids)))
    assert store.events_retrying() == 0
    for event_id in event_ids:
        assert runs_of(store, event_id) == [
            ("error", 1, "delivery"), ("error", 2, "retry"), ("ok", 3, "retry")], event_id
    lines = read_lines(handled)
    calls = Counter((int(event), int(attempt)) for event, attempt, _ in lines)
    expected = {(event_id, attempt) for event_id in event_ids for attempt in (1, 2, 3)}
    assert set(calls) == expected
    assert [key for key, seen in calls.items() if seen != 1] == [], "an attempt ran twice"
    # Each node ran the first attempt of the events it received: several processes took
    # part (in practice the attempts spread over all five).
    assert len({pid for *_, pid in lines}) >= 2
    assert processes[0].poll() is None  # the worker is alive: it did not crash its way out


# -- c. SIGKILL of the process holding an attempt --------------------------------------------

BLOCKING_HANDLER = '''\
import os, time
from receiver import on

@on("order.*")
def blocks(event, attempt, **extra):
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"start {event.id} {attempt} {os.getpid()}\\n")
    if attempt == 1:
        raise RuntimeError("first attempt fails")
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(os.environ["HANDLER_LOG"], "a") as log:
        log.write(f"end {event.id} {attempt} {os.getpid()}\\n")
'''


@pytest.mark.both_backends
def test_an_attempt_held_by_a_killed_worker_is_run_by_another_after_the_lease(
        make_app, tmp_path, db_path, stores, processes) -> None:
    site, handled, release = tmp_path / "site", tmp_path / "handled.log", tmp_path / "release"
    install_plugin(site, "blocking_hooks", BLOCKING_HANDLER)
    handled.touch()
    env = {"PYTHONPATH": str(site), "HANDLER_LOG": str(handled), "RELEASE": str(release),
           "RECEIVER_DISPATCH_LEASE": "2", "RECEIVER_HANDLER_BACKOFF": "0"}
    web = make_app(DISPATCH="worker")  # stores pending events; runs nothing itself
    answer = web.test_client().post("/hooks", data=order(7))
    assert answer.status_code == 200
    event_id = int(answer.json["event_id"])
    store = stores(db_path)

    victim = start_worker(tmp_path, db_path, env)
    processes.append(victim)

    def started(pid: int) -> bool:
        return ["start", str(event_id), "2", str(pid)] in read_lines(handled)

    wait_for(lambda: started(victim.pid), timeout=30,
             message=lambda: f"attempt 2 never started: {read_lines(handled)}")
    (scheduled,) = store.scheduled_attempts(event_id)
    assert (scheduled["attempt"], scheduled["running"]) == (2, True)
    # A second worker polls meanwhile: the victim's keeper renews the lease (2 s) past its
    # first expiry, so the rescuer does not take a live attempt.
    rescuer = start_worker(tmp_path, db_path, env)
    processes.append(rescuer)
    wait_for(lambda: "Running handlers" in worker_log(tmp_path, 1), timeout=30,
             message=lambda: worker_log(tmp_path, 1))
    first_expiry = lease_expires(store, event_id)
    wait_for(lambda: time.time() > first_expiry + 0.5
             and lease_expires(store, event_id) > first_expiry + 1, timeout=30,
             message="the lease of the running attempt was not renewed")
    assert not started(rescuer.pid), "a live attempt was taken over"
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    release.touch()  # the rescuer's run returns as soon as it starts

    settled(store, event_id, "done")
    assert runs_of(store, event_id) == [("error", 1, "delivery"), ("ok", 2, "retry")]
    lines = [tuple(line) for line in read_lines(handled)]
    assert lines == [("start", str(event_id), "1", str(victim.pid)),
                     ("start", str(event_id), "2", str(victim.pid)),
                     ("start", str(event_id), "2", str(rescuer.pid)),
                     ("end", str(event_id), "2", str(rescuer.pid))]


def worker_log(tmp_path: Path, number: int) -> str:
    return (tmp_path / f"worker-{number}.log").read_text(errors="replace")


def lease_expires(store: Any, event_id: int) -> float:
    """When the lease of the event's scheduled attempt runs out (epoch seconds)."""
    ((expires,),) = store.rows(
        f"SELECT lease_expires FROM handler_retries WHERE event_id = {store.MARK}", (event_id,))
    return float(expires)


# -- d. the built-in password-reset mailer against a real SMTP server ------------------------


class RefusingMailbox:
    """aiosmtpd handler: answers ``refusal`` to RCPT for the first ``refuse`` connections'
    recipients, then accepts; counts every RCPT and keeps every accepted message."""

    def __init__(self, refusal: str, refuse: int) -> None:
        self.refusal = refusal
        self.refuse = refuse
        self.rcpts = 0
        self.envelopes: list[Any] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        self.rcpts += 1
        if self.rcpts <= self.refuse:
            return self.refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    controllers: list[Controller] = []

    def start(mailbox: RefusingMailbox) -> int:
        from .conftest import free_port

        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


MAILER = "receiver.builtin.password_reset.mail_password_reset_token"


def mail_env(port: int) -> dict[str, str]:
    return {"RECEIVER_MAIL_RESET_ENABLED": "1", "RECEIVER_SMTP_HOST": "127.0.0.1",
            "RECEIVER_SMTP_PORT": str(port), "RECEIVER_SMTP_TIMEOUT": "5",
            "RECEIVER_MAIL_FROM": "licensing@example.com",
            "RECEIVER_HANDLER_BACKOFF": "200ms", "RECEIVER_HANDLER_BACKOFF_MAX": "1s"}


def mailer_runs(store: Any, event_id: int) -> list[dict[str, Any]]:
    return [run for run in store.runs_for_event(event_id) if run["handler"] == MAILER]


@pytest.mark.both_backends
def test_the_mailer_retries_a_server_that_says_try_later_and_mails_once(
        serve, db_path, smtp_server, stores) -> None:
    mailbox = RefusingMailbox("451 4.3.0 Mail server temporarily busy, try later", refuse=2)
    server = serve(env=mail_env(smtp_server(mailbox)), database=db_path)
    reset = sample("keygen", "user.password-reset")
    event_id = post(server, reset.body)
    store = stores(db_path)
    settled(store, event_id, "done")
    runs = mailer_runs(store, event_id)
    assert [(run["status"], run["attempt"], run["trigger"], run["gave_up"]) for run in runs] == [
        ("error", 1, "delivery", False), ("error", 2, "retry", False),
        ("ok", 3, "retry", False)]
    assert all("SMTPRecipientsRefused" in run["error"] and "451" in run["error"]
               for run in runs[:2])
    assert mailbox.rcpts == 3
    (envelope,) = mailbox.envelopes  # exactly one mail
    payload = json.loads(json.loads(reset.body)["data"]["attributes"]["payload"])
    assert envelope.rcpt_tos == [payload["data"]["attributes"]["email"]]
    assert payload["meta"]["passwordResetToken"] in envelope.content.decode()


@pytest.mark.both_backends
def test_the_mailer_gives_up_at_once_on_a_refused_recipient(serve, db_path, smtp_server,
                                                             stores) -> None:
    mailbox = RefusingMailbox("550 5.1.1 No such user here", refuse=1_000)
    server = serve(env=mail_env(smtp_server(mailbox)), database=db_path)
    event_id = post(server, sample("keygen", "user.password-reset").body)
    store = stores(db_path)
    settled(store, event_id, "failed")
    (run,) = mailer_runs(store, event_id)
    assert (run["status"], run["attempt"], run["gave_up"]) == ("error", 1, True)
    assert run["error"].startswith("GiveUp: SMTPRecipientsRefused") and "550" in run["error"]
    assert store.retry_counts()[MAILER] == {"retrying": 0, "gave_up": 1}
    assert (mailbox.rcpts, mailbox.envelopes) == (1, [])
