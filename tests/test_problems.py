"""Problems a person is told about: the receiver opens, counts and resolves them by itself,
and each opening and resolution is one alert, to a real HTTP server standing in for a chat
webhook and to a real SMTP server, sent once and retried while the target refuses it. Runs
on both backends; the upkeep's work is run by the test (``run_once``) where a deployed
receiver's thread would run it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives.asymmetric import ed25519

from receiver import on
from receiver.handlers import signals
from receiver.problems import alerts, kinds
from receiver.problems.board import Outage

from .conftest import free_port, sample
from .test_web_verify import keygen_endpoint, signed
from .waiting import wait_for

pytestmark = pytest.mark.both_backends


class AlertTarget:
    """An HTTP server catching alert posts; answers the statuses it is given, then 200."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = target.statuses.pop(0) if target.statuses else 200
                if status == 200:
                    target.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def keygen_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def target() -> Iterator[AlertTarget]:
    server = AlertTarget()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    signals.reset_registry()
    yield
    signals.reset_registry()


def upkeep(app: Any) -> None:
    """What the upkeep thread does every second: write notes, send due alerts."""
    app.extensions["receiver.upkeep"].run_once(0)


def problems(app: Any, kind: str) -> list[dict[str, Any]]:
    return [problem for problem in app.extensions["receiver.store"].list_problems()
            if problem["kind"] == kind]


def test_401s_on_an_enforcing_endpoint_open_one_problem_with_a_count(make_app, target,
                                                                     keygen_key) -> None:
    app = make_app(ENDPOINTS=keygen_endpoint(keygen_key, enforce=True), ALERT_URL=target.url,
                   PUBLIC_URL="https://hooks.example.com")
    client = app.test_client()
    item = sample("keygen", "license.created")
    for _ in range(25):
        assert client.post("/hooks/keygen", data=item.body).status_code == 401
    upkeep(app)
    for _ in range(5):
        client.post("/hooks/keygen", data=item.body)
    upkeep(app)
    (problem,) = problems(app, kinds.SIGNATURE_REFUSED)
    assert (problem["subject"], problem["status"], problem["count"]) == ("keygen", "open", 30)
    assert problem["link"] == "/deliveries?rejected=1&endpoint=keygen"
    (alert,) = target.received  # one alert, however many refusals
    assert alert["state"] == "opened" and alert["problem"]["id"] == problem["id"]
    assert alert["problem"]["link"] == ("https://hooks.example.com/deliveries?rejected=1"
                                        "&endpoint=keygen")
    assert alert["text"].startswith("[https://hooks.example.com] problem: endpoint keygen")

    # A valid delivery resolves it: one more alert.
    valid = client.post("/hooks/keygen", data=item.body, headers=signed(item.body, keygen_key))
    assert valid.status_code == 200
    upkeep(app)
    (problem,) = problems(app, kinds.SIGNATURE_REFUSED)
    assert problem["status"] == "resolved" and problem["resolved_at"]
    assert [alert["state"] for alert in target.received] == ["opened", "resolved"]
    upkeep(app)
    assert len(target.received) == 2  # sent once


def test_a_handler_that_gives_up_opens_handler_failing_and_a_success_resolves_it(
        make_app, target) -> None:
    state = {"fail": True}

    @on("license.*", name="tests.crm", retries=0)
    def crm(event, **extra):
        if state["fail"]:
            raise RuntimeError("CRM answered 502")

    app = make_app(ALERT_URL=target.url)
    client = app.test_client()
    first = client.post("/hooks", data=sample("keygen", "license.created").body).json
    client.post("/hooks", data=sample("keygen", "license.updated").body)
    upkeep(app)
    (problem,) = problems(app, kinds.HANDLER_FAILING)
    assert (problem["subject"], problem["count"], problem["status"]) == ("tests.crm", 2, "open")
    assert "CRM answered 502" in problem["summary"]
    assert problem["link"].startswith("/handlers?handler=tests.crm")
    assert [alert["state"] for alert in target.received] == ["opened"]

    state["fail"] = False
    replayed = client.post(f"/api/events/{first['event_id']}/replay", json={})
    assert [run["status"] for run in replayed.json["runs"]] == ["ok"]
    upkeep(app)
    (problem,) = problems(app, kinds.HANDLER_FAILING)
    assert problem["status"] == "resolved"
    assert [alert["state"] for alert in target.received] == ["opened", "resolved"]


def test_events_waiting_too_long_open_dispatch_backlog(make_app, target) -> None:
    app = make_app(DISPATCH="worker", ALERT_BACKLOG="0.05", ALERT_URL=target.url)
    store = app.extensions["receiver.store"]
    on("license.*", name="tests.ok")(lambda event, **_: None)
    app.test_client().post("/hooks", data=sample("keygen", "license.created").body)
    wait_for(lambda: store.oldest_waiting_seconds() > 0.05)
    upkeep(app)
    (problem,) = problems(app, kinds.DISPATCH_BACKLOG)
    assert problem["status"] == "open" and problem["link"] == "/?dispatch_status=pending"

    from receiver.handlers.dispatch import Dispatcher

    Dispatcher(store, {**app.config, "DISPATCH": "background"}).dispatch()
    upkeep(app)
    (problem,) = problems(app, kinds.DISPATCH_BACKLOG)
    assert problem["status"] == "resolved"
    assert [alert["state"] for alert in target.received] == ["opened", "resolved"]


def test_a_target_that_answers_500_gets_the_alert_once_when_it_takes_it(
        make_app, target, monkeypatch) -> None:
    """A redirect is not followed (the target is the operator's URL, not wherever it
    points): it counts as a failure like a 500."""
    monkeypatch.setattr(alerts, "ALERT_BACKOFF", (0.0, 0.0))
    target.statuses = [302, 500]
    app = make_app(ALERT_URL=target.url)
    store = app.extensions["receiver.store"]
    problem, opened = store.note_problem(kinds.HANDLER_FAILING, "tests.x", "x", "/handlers",
                                         channels=alerts.channels(app.config))
    assert opened
    upkeep(app)  # 302: kept
    upkeep(app)  # 500: kept
    assert target.received == []
    upkeep(app)  # 200
    upkeep(app)
    assert [alert["problem"]["id"] for alert in target.received] == [problem["id"]]
    (alert,) = store.alerts_of(problem["id"])
    assert alert["attempts"] == 3 and alert["sent_at"]
    assert alert["last_error"] == "OSError: the alert URL answered 500"


def test_acknowledge_keeps_a_problem_out_of_the_open_count(make_app) -> None:
    app = make_app()
    store = app.extensions["receiver.store"]
    problem, _ = store.note_problem(kinds.SIGNATURE_REFUSED, "keygen", "s", "/deliveries")
    assert store.open_problem_counts() == {kinds.SIGNATURE_REFUSED: 1}
    assert store.acknowledge_problem(problem["id"])["status"] == "acknowledged"
    assert store.open_problem_counts() == {}
    again, opened = store.note_problem(kinds.SIGNATURE_REFUSED, "keygen", "s", "/deliveries")
    assert not opened and again["id"] == problem["id"] and again["count"] == 2
    assert again["status"] == "acknowledged"  # until it resolves
    store.resolve_problem(kinds.SIGNATURE_REFUSED, "keygen")
    fresh, opened = store.note_problem(kinds.SIGNATURE_REFUSED, "keygen", "s", "/deliveries")
    assert opened and fresh["id"] != problem["id"]


@pytest.fixture
def mailbox() -> Iterator[tuple[list[Any], int]]:
    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield received, port
    controller.stop()


def test_alerts_are_mailed_as_text_and_html(make_app, mailbox) -> None:
    received, port = mailbox
    app = make_app(ALERT_MAIL_TO="ops@example.com,oncall@example.com", SMTP_HOST="127.0.0.1",
                   SMTP_PORT=port, MAIL_FROM="receiver@example.com")
    store = app.extensions["receiver.store"]
    store.note_problem(kinds.HANDLER_FAILING, "tests.<b>x</b>", "handler <b> gave up",
                       "/handlers", channels=alerts.channels(app.config))
    upkeep(app)
    (envelope,) = received
    assert set(envelope.rcpt_tos) == {"ops@example.com", "oncall@example.com"}
    message = message_from_bytes(envelope.content, policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    html_part = message.get_body(("html",)).get_content()
    assert "handler <b> gave up" in text
    assert "<b>" not in html_part.replace("<body>", "") and "&lt;b&gt;" in html_part


def test_a_node_answering_503_past_the_threshold_alerts_from_memory(make_app, target) -> None:
    app = make_app(ALERT_URL=target.url)
    store = app.extensions["receiver.store"]
    outage = Outage(app.config, "node-1", threshold=0.0)
    outage.unavailable()  # the first 503: remembered
    outage.unavailable()  # still refusing past the threshold: alert, from memory
    wait_for(lambda: target.received, message="no alert from memory")
    assert target.received[0]["state"] == "opened"
    assert target.received[0]["problem"]["kind"] == kinds.DATABASE_UNAVAILABLE
    assert store.list_problems() == []  # the database could not take it then
    outage.available(store)  # no write has succeeded yet: still away
    assert store.list_problems() == []
    outage.wrote()  # a delivery was stored again
    outage.available(store)
    wait_for(lambda: len(target.received) == 2, message="no resolved alert")
    assert target.received[1]["state"] == "resolved"
    (problem,) = store.list_problems()
    assert (problem["kind"], problem["subject"], problem["status"]) == (
        kinds.DATABASE_UNAVAILABLE, "node-1", "resolved")
