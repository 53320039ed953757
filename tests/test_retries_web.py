"""Handler retries where people look: the event page (the runs with their attempt, the
schedule, "Retry now" and "Cancel retries"), the JSON API, the history filter, /handlers,
the metrics and ``receiver show``. An hour's backoff keeps an event ``retrying`` with its
second attempt scheduled; tests wait for a settled state, never a fixed time."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from receiver import on
from receiver.cli import cli
from receiver.handlers import signals
from receiver.read.schedule import wait_text

from .conftest import sample
from .pages import csrf_of, page_of, text_of
from .test_retries import runs_of, settled

pytestmark = pytest.mark.both_backends

#: Background dispatch, and an hour before a failed handler's next attempt.
PATIENT = {"DISPATCH": "background", "HANDLER_BACKOFF": "1h"}


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    signals.reset_registry()
    yield
    signals.reset_registry()


@pytest.fixture
def flaky() -> None:
    """tests.crm fails its first attempt and succeeds from the second on; tests.once fails
    and has no retries (it gives up at once)."""
    @on("license.*", name="tests.crm")
    def crm(event, attempt, **extra):
        if attempt < 2:
            raise RuntimeError("CRM answered 502")

    @on("license.*", name="tests.once", retries=0)
    def once(event, **extra):
        raise ValueError("bad data")


@pytest.fixture
def app(make_app: Any, flaky: None) -> Any:
    return make_app(**PATIENT)


@pytest.fixture
def store(app: Any) -> Any:
    return app.extensions["receiver.store"]


@pytest.fixture
def retrying(app: Any, store: Any) -> int:
    """An event whose tests.crm failed once and waits an hour for its second attempt."""
    answer = app.test_client().post("/hooks", data=sample("keygen", "license.created").body)
    assert answer.status_code == 200, answer.json
    event_id = int(answer.json["event_id"])
    settled(store, event_id, "retrying")
    return event_id


# -- the event page ----------------------------------------------------------------------------


def test_the_event_page_shows_the_runs_attempts_the_schedule_and_its_buttons(
        app: Any, store: Any, retrying: int) -> None:
    page = page_of(app.test_client(), f"/events/{retrying}")
    text = text_of(page)
    assert re.search(r"tests\.crm : attempt 2 of 11, next at \d\d:\d\d:\d\d UTC "
                     r"\(in \d+ min\)", text), text
    (due,) = store.scheduled_attempts(retrying)
    assert f'<time datetime="{due["due_at"]}">' in page
    assert "RuntimeError: CRM answered 502" in text
    assert "attempt 1 delivery" in text  # the failed first run, with its attempt
    assert "gave up" in text  # tests.once: no retries
    assert "next_attempt_at" in text and "retrying" in text
    assert f'action="/events/{retrying}/retry-now"' in page
    assert f'action="/events/{retrying}/cancel-retries"' in page
    assert ">Retry now</button>" in page and ">Cancel retries</button>" in page


def test_retry_now_from_the_page_runs_the_attempt(app: Any, store: Any,
                                                  retrying: int) -> None:
    client = app.test_client()
    page = page_of(client, f"/events/{retrying}")
    answer = client.post(f"/events/{retrying}/retry-now", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/events/{retrying}#runs")
    assert "1 scheduled attempt is due now" in text_of(page_of(client, f"/events/{retrying}"))
    settled(store, retrying, "failed")  # tests.once gave up at once; tests.crm is ok now
    assert runs_of(store, retrying, "tests.crm") == [("error", 1, "delivery"),
                                                    ("ok", 2, "retry")]
    text = text_of(page_of(client, f"/events/{retrying}"))
    assert "attempt 2 retry ok" in text and "Retry now" not in text


def test_retry_now_from_the_api_answers_the_count_and_the_event(
        app: Any, store: Any, retrying: int) -> None:
    answer = app.test_client().post(f"/api/events/{retrying}/retry-now", json={})
    assert answer.status_code == 200, answer.json
    assert answer.json["changed"] == 1
    assert answer.json["event"]["id"] == retrying
    assert answer.json["event"]["dispatch_status"] in ("retrying", "failed")
    settled(store, retrying, "failed")
    assert runs_of(store, retrying, "tests.crm")[-1] == ("ok", 2, "retry")


@pytest.mark.parametrize("how", ["page", "api"])
def test_cancel_retries_leaves_the_event_failed(app: Any, store: Any, retrying: int,
                                                how: str) -> None:
    client = app.test_client()
    if how == "page":
        page = page_of(client, f"/events/{retrying}")
        answer = client.post(f"/events/{retrying}/cancel-retries",
                             data={"csrf_token": csrf_of(page)})
        assert answer.status_code == 303
        text = text_of(page_of(client, f"/events/{retrying}"))
        assert "Cancelled 1 scheduled attempt" in text and "Retry now" not in text
    else:
        answer = client.post(f"/api/events/{retrying}/cancel-retries", json={})
        assert answer.status_code == 200, answer.json
        assert answer.json["changed"] == 1
        assert answer.json["event"]["dispatch_status"] == "failed"
        assert answer.json["event"]["next_attempt_at"] is None
        again = client.post(f"/api/events/{retrying}/cancel-retries", json={})
        assert again.json["changed"] == 0
    event = store.get_event(retrying)
    assert event.dispatch_status == "failed" and event.next_attempt_at is None
    assert store.scheduled_attempts(retrying) == []
    assert runs_of(store, retrying, "tests.crm") == [("error", 1, "delivery")]


def test_the_forms_need_the_csrf_token_and_the_api_a_json_body(app: Any, store: Any,
                                                               retrying: int) -> None:
    client = app.test_client()
    assert client.post(f"/events/{retrying}/retry-now", data={}).status_code == 403
    assert client.post(f"/events/{retrying}/cancel-retries",
                       data={"csrf_token": "forged"}).status_code == 403
    refused = client.post(f"/api/events/{retrying}/retry-now", data="{}")
    assert refused.status_code == 400 and "application/json" in refused.json["error"]
    assert client.post("/api/events/999999/retry-now", json={}).status_code == 404
    assert client.post(f"/api/events/{retrying}/retry-now",
                       json={"handlers": "tests.crm"}).status_code == 400
    assert client.post(f"/api/events/{retrying}/retry-now",
                       json={"handlers": ["tests.other"]}).json["changed"] == 0
    (still,) = store.scheduled_attempts(retrying)  # nothing above changed the schedule
    assert still["attempt"] == 2 and store.get_event(retrying).next_attempt_at == still["due_at"]


# -- the API, the filter, /handlers, metrics -------------------------------------------------


def test_the_api_detail_lists_the_scheduled_attempts_beside_the_runs(
        app: Any, store: Any, retrying: int) -> None:
    record = app.test_client().get(f"/api/events/{retrying}").json
    assert record["dispatch_status"] == "retrying"
    (scheduled,) = record["scheduled_attempts"]
    assert scheduled == {"handler": "tests.crm", "attempt": 2, "attempts": 11,
                         "due_at": record["next_attempt_at"], "running": False}
    runs = {run["handler"]: run for run in record["handler_runs"]}
    assert (runs["tests.crm"]["attempt"], runs["tests.crm"]["gave_up"]) == (1, False)
    assert (runs["tests.once"]["attempt"], runs["tests.once"]["gave_up"]) == (1, True)


def test_dispatch_status_retrying_filters_the_history(app: Any, store: Any,
                                                      retrying: int) -> None:
    client = app.test_client()
    listed = client.get("/api/events?dispatch_status=retrying").json["events"]
    assert [event["id"] for event in listed] == [retrying]
    assert client.get("/api/events?dispatch_status=done").json["events"] == []
    page = page_of(client, "/?dispatch_status=retrying")
    assert f'data-id="{retrying}"' in page and "dispatch-retrying" in page
    assert "<option selected>retrying</option>" in page
    bad = client.get("/api/events?dispatch_status=waiting")
    assert bad.status_code == 400 and "retrying" in bad.json["error"]


def test_the_handlers_page_counts_retrying_events_and_runs_that_gave_up(
        app: Any, retrying: int) -> None:
    page = page_of(app.test_client(), "/handlers")

    def field(handler: str, name: str) -> str:
        row = page.split(f'data-handler="{handler}"', 1)[1].split("</tr>", 1)[0]
        cell = row.split(f'data-field="{name}"', 1)[1].split("</td>", 1)[0]
        return text_of(cell.partition(">")[2])

    assert (field("tests.crm", "retrying"), field("tests.crm", "gave_up")) == ("1", "0")
    assert (field("tests.once", "retrying"), field("tests.once", "gave_up")) == ("0", "1")
    assert field("tests.crm", "retries") == "10 (default)"
    assert field("tests.once", "retries") == "0"


def test_metrics_count_retrying_events_and_handlers_that_gave_up(app: Any,
                                                                 retrying: int) -> None:
    text = app.test_client().get("/-/metrics").get_data(as_text=True)
    assert "receiver_events_retrying 1.0" in text.splitlines()
    assert 'receiver_handler_gave_up_total{handler="tests.once"} 1.0' in text.splitlines()
    assert 'receiver_handler_gave_up_total{handler="tests.crm"} 0.0' in text.splitlines()
    assert 'receiver_handler_runs_total{handler="tests.crm",status="error"} 1.0' in (
        text.splitlines())


# -- the command line ------------------------------------------------------------------------


def test_receiver_show_tells_the_schedule_and_each_runs_attempt(
        app: Any, db_path: str, retrying: int) -> None:
    result = CliRunner().invoke(cli, ["show", str(retrying), "--db", db_path],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)  # stdout stays the JSON alone
    assert [(s["handler"], s["attempt"]) for s in record["scheduled_attempts"]] == [
        ("tests.crm", 2)]
    assert {run["handler"]: run["attempt"] for run in record["handler_runs"]} == {
        "tests.crm": 1, "tests.once": 1}
    assert re.search(r"^next attempt of tests\.crm: 2 of 11 at \d\d:\d\d:\d\d UTC "
                     r"\(in \d+ min\)$", result.stderr, re.M), result.stderr
    assert re.search(r"^run \d+ tests\.crm attempt 1 \(delivery\) error: RuntimeError: CRM "
                     r"answered 502$", result.stderr, re.M), result.stderr
    listed = CliRunner().invoke(cli, ["events", "--dispatch-status", "retrying",
                                      "--db", db_path], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [str(retrying)]


@pytest.mark.parametrize(("seconds", "said"), [
    (0, "due now"), (0.2, "due now"), (1.2, "in 2 s"), (59, "in 59 s"), (60, "in 1 min"),
    (170, "in 3 min"), (3599, "in 60 min"), (3600, "in 1 h"), (5 * 3600, "in 5 h"),
    (3 * 86400, "in 3 d")])
def test_waits_are_said_in_seconds_minutes_hours_or_days(seconds: float, said: str) -> None:
    assert wait_text(seconds) == said
