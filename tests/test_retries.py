"""Handlers that finish: a failed handler is tried again by itself with backoff until it
succeeds or gives up, only the failed handler runs again, every attempt is recorded, and the
event says where it stands (``retrying`` with ``next_attempt_at``, then ``done`` or
``failed``). Runs on both backends with sub-second backoffs; tests wait for a settled state,
never a fixed time."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver import GiveUp, RetryLater, on, retries
from receiver.config import load_settings, parse_duration
from receiver.errors import ConfigError
from receiver.handlers import signals
from receiver.handlers.retries import Policy, next_attempt
from receiver.store import EventFilters

from .conftest import sample
from .waiting import wait_for

pytestmark = pytest.mark.both_backends

FAST = {"DISPATCH": "background", "HANDLER_BACKOFF": "0.05", "HANDLER_BACKOFF_MAX": "0.2"}


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    signals.reset_registry()
    yield
    signals.reset_registry()


def post(app: Any, name: str = "license.created") -> int:
    answer = app.test_client().post("/hooks", data=sample("keygen", name).body)
    assert answer.status_code == 200, answer.json
    return int(answer.json["event_id"])


def settled(store: Any, event_id: int, status: str) -> Any:
    return wait_for(lambda: (event := store.get_event(event_id)).dispatch_status == status
                    and event, message=lambda: f"event {event_id} never became {status}: "
                    f"{store.get_event(event_id)} {store.runs_for_event(event_id)}")


def runs_of(store: Any, event_id: int, handler: str) -> list[tuple[str, int, str]]:
    return [(run["status"], run["attempt"], run["trigger"])
            for run in store.runs_for_event(event_id) if run["handler"] == handler]


def test_a_handler_failing_twice_then_succeeding_ends_done(make_app) -> None:
    sibling: list[int] = []

    @on("license.*", name="tests.flaky")
    def flaky(event, attempt, **extra):
        if attempt < 3:
            raise RuntimeError(f"CRM answered 502 ({attempt})")

    on("license.*", name="tests.steady")(lambda event, **_: sibling.append(event.id))
    app = make_app(**FAST)
    store = app.extensions["receiver.store"]
    event_id = post(app)
    event = settled(store, event_id, "done")
    assert runs_of(store, event_id, "tests.flaky") == [
        ("error", 1, "delivery"), ("error", 2, "retry"), ("ok", 3, "retry")]
    assert [run["error"] for run in store.runs_for_event(event_id)
            if run["handler"] == "tests.flaky"][:2] == [
        "RuntimeError: CRM answered 502 (1)", "RuntimeError: CRM answered 502 (2)"]
    assert sibling == [event_id]  # the sibling that succeeded ran once
    assert event.next_attempt_at is None and store.scheduled_attempts(event_id) == []


def test_a_handler_that_always_fails_gives_up_after_its_retries(make_app) -> None:
    gave_up: list[tuple[str, int, dict[str, Any]]] = []
    signals.handler_gave_up.connect(
        lambda sender, event, run: gave_up.append((sender, event.id, run)), weak=False)

    @on("license.*", name="tests.down", retries=2)
    def down(event, **extra):
        raise ConnectionRefusedError("SMTP down")

    app = make_app(**FAST)
    store = app.extensions["receiver.store"]
    event_id = post(app)
    settled(store, event_id, "failed")
    assert runs_of(store, event_id, "tests.down") == [
        ("error", 1, "delivery"), ("error", 2, "retry"), ("error", 3, "retry")]
    assert [run["gave_up"] for run in store.runs_for_event(event_id)] == [False, False, True]
    wait_for(lambda: gave_up, message="handler_gave_up was not sent")
    ((sender, event_of_signal, run),) = gave_up  # sent once
    assert (sender, event_of_signal, run["attempt"]) == ("tests.down", event_id, 3)
    assert store.retry_counts()["tests.down"] == {"retrying": 0, "gave_up": 1}


@pytest.mark.parametrize("how", ["GiveUp", "retries=0"])
def test_give_up_and_no_retries_mean_one_run_and_failed(make_app, how: str) -> None:
    if how == "GiveUp":
        @on("license.*", name="tests.refuses")
        def refuses(event, **extra):
            raise GiveUp("no account on the event")
    else:
        @on("license.*", name="tests.refuses", retries=0)
        def refuses(event, **extra):
            raise ValueError("bad data")

    app = make_app(**FAST)
    store = app.extensions["receiver.store"]
    event_id = post(app)
    settled(store, event_id, "failed")
    (run,) = store.runs_for_event(event_id)
    assert run["gave_up"] is True and run["attempt"] == 1
    if how == "GiveUp":
        assert run["error"] == "GiveUp: no account on the event"
    assert store.scheduled_attempts(event_id) == []


def test_retry_later_sets_the_wait_and_retry_now_runs_it_at_once(make_app) -> None:
    @on("license.*", name="tests.later")
    def later(event, attempt, **extra):
        if attempt == 1:
            raise RetryLater(3600)

    app = make_app(**FAST)
    store = app.extensions["receiver.store"]
    event_id = post(app)
    event = settled(store, event_id, "retrying")
    (scheduled,) = store.scheduled_attempts(event_id)
    assert scheduled["handler"] == "tests.later" and scheduled["attempt"] == 2
    assert scheduled["attempts"] == 11  # the default: 10 retries after the first run
    (first,) = store.runs_for_event(event_id)
    # An hour from the run, not the 0.05 s backoff: the handler's wait is honoured.
    assert event.next_attempt_at == scheduled["due_at"]
    assert scheduled["due_at"] >= _plus_seconds(first["started_at"], 3500)
    assert store.retry_now(event_id) == 1
    settled(store, event_id, "done")
    assert runs_of(store, event_id, "tests.later") == [("error", 1, "delivery"),
                                                      ("ok", 2, "retry")]


def _plus_seconds(moment: str, seconds: float) -> str:
    import datetime as dt

    from receiver.events import format_time

    parsed = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return format_time(parsed + dt.timedelta(seconds=seconds))


def test_replay_cancels_the_schedule_and_starts_a_fresh_count(make_app) -> None:
    state = {"fail": True}

    @on("license.*", name="tests.crm")
    def crm(event, **extra):
        if state["fail"]:
            raise RuntimeError("502")

    app = make_app(DISPATCH="background", HANDLER_BACKOFF="1h")
    store = app.extensions["receiver.store"]
    client = app.test_client()
    event_id = post(app)
    settled(store, event_id, "retrying")
    assert [attempt["attempt"] for attempt in store.scheduled_attempts(event_id)] == [2]

    # A replay that fails again: attempt 1 of a fresh count, the next attempt is 2 again.
    answer = client.post(f"/api/events/{event_id}/replay", json={"only_failed": True})
    assert [(run["trigger"], run["attempt"]) for run in answer.json["runs"]] == [("replay", 1)]
    assert [attempt["attempt"] for attempt in store.scheduled_attempts(event_id)] == [2]

    state["fail"] = False
    answer = client.post(f"/api/events/{event_id}/replay", json={"only_failed": True})
    assert [run["status"] for run in answer.json["runs"]] == ["ok"]
    assert store.scheduled_attempts(event_id) == []
    assert store.get_event(event_id).dispatch_status == "done"


def test_cancel_retries_leaves_the_event_failed(make_app) -> None:
    on("license.*", name="tests.crm")(lambda event, **_: 1 / 0)
    app = make_app(DISPATCH="background", HANDLER_BACKOFF="1h")
    store = app.extensions["receiver.store"]
    event_id = post(app)
    settled(store, event_id, "retrying")
    assert store.events_retrying() == 1
    assert store.cancel_retries(event_id) == 1
    event = store.get_event(event_id)
    assert (event.dispatch_status, event.next_attempt_at) == ("failed", None)
    assert store.events_retrying() == 0 and store.cancel_retries(event_id) == 0


def test_attempts_run_in_a_worker_when_dispatch_is_worker(make_app) -> None:
    from receiver.handlers.dispatch import Dispatcher

    @on("license.*", name="tests.flaky")
    def flaky(event, attempt, **extra):
        if attempt == 1:
            raise RuntimeError("once")

    app = make_app(DISPATCH="worker", HANDLER_BACKOFF="0")
    store = app.extensions["receiver.store"]
    event_id = post(app)
    assert store.get_event(event_id).dispatch_status == "pending"
    worker = Dispatcher(store, {**app.config, "DISPATCH": "background"})
    # One pass takes the new event and the attempts that are due (here at once).
    wait_for(lambda: worker.dispatch() >= 0
             and store.get_event(event_id).dispatch_status == "done")
    assert runs_of(store, event_id, "tests.flaky") == [("error", 1, "delivery"),
                                                      ("ok", 2, "retry")]


def test_an_attempt_taken_over_meanwhile_is_not_run_again(make_app, monkeypatch) -> None:
    """A worker that stood still past its lease finds the attempt another worker took over
    and ran: it does not run it a second time."""
    from receiver.handlers.dispatch import Dispatcher

    calls: list[int] = []

    @on("license.*", name="tests.counted")
    def counted(event, attempt, **extra):
        calls.append(attempt)
        if attempt == 1:
            raise RuntimeError("first")

    app = make_app(HANDLER_BACKOFF="0")
    app.extensions["receiver.dispatcher"].stop()  # no background sweep in this test
    store = app.extensions["receiver.store"]
    event_id = post(app)
    stalled = Dispatcher(store, {**app.config, "DISPATCH": "background"})
    (due,) = wait_for(lambda: store.claim_due_attempts(stalled.owner, lease_seconds=0.3))
    other = Dispatcher(store, {**app.config, "DISPATCH": "background"})
    wait_for(lambda: other.run_due_attempts() == 1)  # after the lease ran out
    assert store.get_event(event_id).dispatch_status == "done"

    monkeypatch.setattr(store, "claim_due_attempts", lambda *args, **kwargs: [due])
    stalled.run_due_attempts()  # the claim it made before it stood still
    assert calls == [1, 2]
    assert runs_of(store, event_id, "tests.counted") == [("error", 1, "delivery"),
                                                        ("ok", 2, "retry")]


def test_a_due_attempt_does_not_wait_behind_a_queue_of_new_events(make_app,
                                                                   monkeypatch) -> None:
    """One pass takes new events and the attempts that are due: neither starves the other."""
    from receiver.handlers import dispatch
    from receiver.handlers.dispatch import Dispatcher

    @on("license.*", name="tests.flaky")
    def flaky(event, attempt, **extra):
        if attempt == 1 and event.event_type == "license.created":
            raise RuntimeError("once")

    app = make_app(DISPATCH="worker", HANDLER_BACKOFF="0")
    store = app.extensions["receiver.store"]
    worker = Dispatcher(store, {**app.config, "DISPATCH": "background"})
    first = post(app)
    assert worker.dispatch(event_id=first) == 1  # its attempt 2 is due at once
    client = app.test_client()
    for number in range(30):  # a queue of new events
        client.post("/hooks", json={"type": "license.updated", "n": number})
    monkeypatch.setattr(dispatch, "ATTEMPT_LOOK_SECONDS", 0.0)
    assert worker.dispatch(limit=10) == 11  # ten new events, and the due attempt
    assert store.get_event(first).dispatch_status == "done"
    waiting = store.list_events(EventFilters(dispatch_status="pending"), limit=100)[0]
    assert len(waiting) == 20


def test_handlers_written_without_attempt_are_called_as_before(make_app) -> None:
    seen: list[dict[str, Any]] = []

    @on("license.*", name="tests.old")
    def old(event, settings, trigger):
        seen.append({"trigger": trigger})

    app = make_app()
    post(app)
    assert seen == [{"trigger": "delivery"}]


def test_blinker_receivers_take_their_retries_from_the_decorator(make_app) -> None:
    @retries(0)
    def notify(event, **extra):
        raise RuntimeError("no")

    signals.signal_for("license.created").connect(notify, weak=False)
    app = make_app(**FAST)
    store = app.extensions["receiver.store"]
    event_id = post(app)
    settled(store, event_id, "failed")
    assert [run["attempt"] for run in store.runs_for_event(event_id)] == [1]


@pytest.mark.sqlite_only
def test_a_failed_history_stays_failed_after_the_upgrade(make_app) -> None:
    """Events failed before retries existed are not retried by the upgrade: nothing is
    scheduled for them."""
    on("license.*", name="tests.crm", retries=0)(lambda event, **_: 1 / 0)
    app = make_app()
    store = app.extensions["receiver.store"]
    event_id = post(app)
    assert store.get_event(event_id).dispatch_status == "failed"
    store.migrate()  # again: idempotent
    assert store.scheduled_attempts(event_id) == [] and store.events_retrying() == 0


# -- the policy and the settings, without a database --------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0),
    ("0.5", 0.5), ("45", 45.0), ("0", 0.0), (" 2 h ", 7200.0)])
def test_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "-1s", "1w", "s", "nan", "1e3"])
def test_a_bad_duration_stops_the_start_naming_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match="RECEIVER_HANDLER_BACKOFF"):
        load_settings(environ={"RECEIVER_HANDLER_BACKOFF": bad})


def test_settings_give_the_defaults_of_the_contract() -> None:
    settings = load_settings(environ={})
    assert (settings["HANDLER_RETRIES"], settings["HANDLER_BACKOFF"],
            settings["HANDLER_BACKOFF_MAX"]) == (10, 30.0, 7200.0)


def test_on_refuses_a_negative_number_of_retries() -> None:
    with pytest.raises(ValueError, match="retries"):
        on("license.*", retries=-1)
    with pytest.raises(ValueError, match="retries"):
        retries(True)


@given(base=st.floats(0, 1e5), cap=st.floats(0, 1e6), attempt=st.integers(1, 500),
       seed=st.integers(0, 2**32))
def test_backoff_doubles_with_jitter_and_never_passes_the_cap(base: float, cap: float,
                                                               attempt: int, seed: int) -> None:
    policy = Policy(retries=1000, backoff=base, backoff_max=cap)
    wait = policy.wait(attempt, random.Random(seed))
    full = min(cap, base * 2.0 ** min(attempt - 1, 64))
    assert 0.75 * full - 1e-9 <= wait <= full <= cap


def test_next_attempt_follows_the_policy() -> None:
    policy = Policy(retries=2, backoff=10, backoff_max=100)
    assert next_attempt(policy, 1, rng=random.Random(1)).wait is not None
    assert next_attempt(policy, 3).gives_up and "all 3 attempts" in str(
        next_attempt(policy, 3).reason)
    assert next_attempt(policy, 1, retry_after=7).wait == 7
    assert next_attempt(policy, 3, retry_after=7).gives_up  # RetryLater still counts
    assert next_attempt(policy, 1, give_up="bad").reason == "GiveUp: bad"
    assert next_attempt(Policy(0, 10, 100), 1).reason == "no retries"
