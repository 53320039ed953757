"""Handler registry and dispatch: patterns, sources, blinker receivers, one failure at a time."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver import on as exported_on
from receiver.config import load_settings
from receiver.events import Event
from receiver.handlers import signals
from receiver.handlers.signals import (
    dispatch,
    event_received,
    handlers_for,
    on,
    registered_handlers,
    run_handlers,
    signal_for,
)

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    signals.reset_registry()
    yield
    signals.reset_registry()


@pytest.fixture
def settings() -> dict[str, Any]:
    return load_settings({}, environ={})


def make_event(event_type: str, source: str = "keygen", **data: Any) -> Event:
    return Event(
        id=7, source=source, event_type=event_type, vendor_event=event_type,
        external_id="evt-1", occurred_at="2024-05-01T10:00:00.000Z",
        received_at="2024-05-01T10:00:01.000Z", account="acct-1", actor=None,
        subject_type=event_type.split(".")[0], subject_id="lic-1", endpoint="default",
        signature_status="valid", data={"data": {"id": "lic-1", **data}},
    )


def names(handlers: list[signals.Handler]) -> list[str]:
    return [handler.name for handler in handlers]


def test_signals_on_is_exported_from_package() -> None:
    assert exported_on is on


def test_signals_handler_receives_event_object(settings: dict[str, Any]) -> None:
    seen: list[tuple[Event, dict[str, Any]]] = []

    @on("license.created")
    def record(event: Event, **extra: Any) -> None:
        seen.append((event, extra))

    event = make_event("license.created", key="ABC-123")
    runs = dispatch(event, settings)

    assert len(seen) == 1
    received, extra = seen[0]
    assert received is event
    assert received.data["data"]["key"] == "ABC-123"
    assert received.payload is received.data
    # attempt: handlers that take **extra are told which attempt this is.
    assert extra == {"settings": settings, "trigger": "delivery", "attempt": 1}
    [run] = runs
    assert run.handler == f"{__name__}.test_signals_handler_receives_event_object.<locals>.record"
    assert run.status == "ok" and run.error is None and run.traceback is None
    assert ISO_MS.fullmatch(run.started_at)
    assert isinstance(run.duration_ms, float) and run.duration_ms >= 0
    assert run.trigger == "delivery"
    assert set(run.as_dict()) == {"handler", "status", "error", "traceback", "started_at",
                                  "duration_ms", "trigger", "attempt"}


def test_signals_replay_trigger_is_passed(settings: dict[str, Any]) -> None:
    triggers: list[str] = []

    @on("*")
    def record(event: Event, *, trigger: str, **extra: Any) -> None:
        triggers.append(trigger)

    [run] = dispatch(make_event("license.created"), settings, trigger="replay")
    assert triggers == ["replay"] and run.trigger == "replay"
    with pytest.raises(ValueError, match="trigger"):
        run_handlers(make_event("x"), [], settings=settings, trigger="manual")


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("license.created", True),
        ("license.users.attached", True),
        ("license.check-in-overdue", True),
        ("licenses.created", False),
        ("license", False),
        ("machine.created", False),
    ],
)
def test_signals_prefix_pattern(settings: dict[str, Any], event_type: str, expected: bool) -> None:
    @on("license.*")
    def any_license(event: Event, **extra: Any) -> None:
        pass

    selected = handlers_for(make_event(event_type), settings)
    assert (any_license in [handler.fn for handler in selected]) is expected


def test_signals_catch_all_pattern(settings: dict[str, Any]) -> None:
    seen: list[str] = []

    @on("*")
    def everything(event: Event, **extra: Any) -> None:
        seen.append(f"{event.source}:{event.event_type}")

    for event in (make_event("license.created"), make_event("webhook.test", "zentitle"),
                  make_event("unknown", "generic")):
        dispatch(event, settings)
    assert seen == ["keygen:license.created", "zentitle:webhook.test", "generic:unknown"]


def test_signals_exact_pattern_with_source_filter(settings: dict[str, Any]) -> None:
    @on("user.password-reset", source="keygen")
    def keygen_only(event: Event, **extra: Any) -> None:
        pass

    @on("user.password-reset")
    def any_source(event: Event, **extra: Any) -> None:
        pass

    def selected(event: Event) -> list[Any]:
        return [handler.fn for handler in handlers_for(event, settings)]

    assert selected(make_event("user.password-reset", "keygen")) == [keygen_only, any_source]
    assert selected(make_event("user.password-reset", "licensespring")) == [any_source]
    assert selected(make_event("user.password-resets", "keygen")) == []
    assert selected(make_event("user.created", "keygen")) == []


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("license created", "whitespace"),
        (" license.created", "whitespace"),
        ("lic*", r"'\*'"),
        ("*.created", r"'\*'"),
        ("license.*.attached", r"'\*'"),
        ("**", r"'\*'"),
        ("License.Created", "upper-case"),
        ("license.", "dotted"),
        (".license", "dotted"),
        ("license..created", "dotted"),
        ("license/created", "dotted"),
    ],
)
def test_signals_malformed_pattern_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):

        @on(pattern)
        def handler(event: Event, **extra: Any) -> None:
            pass

    assert registered_handlers() == []


def test_signals_pattern_error_names_examples() -> None:
    with pytest.raises(ValueError) as caught:
        on("lic*")
    assert "'lic*'" in str(caught.value) and "'license.*'" in str(caught.value)


def test_signals_unknown_source_refused() -> None:
    with pytest.raises(ValueError, match="keygn"):
        on("license.created", source="keygn")


def test_signals_failing_handler_recorded_others_run(
    settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @on("license.*")
    def first(event: Event, **extra: Any) -> None:
        ran.append("first")

    @on("license.created")
    def broken(event: Event, **extra: Any) -> None:
        ran.append("broken")
        raise ValueError("license key ABC is not in our shop")

    @on("*")
    def last(event: Event, **extra: Any) -> None:
        ran.append("last")

    with caplog.at_level(logging.WARNING, logger="receiver.handlers.signals"):
        runs = dispatch(make_event("license.created"), settings)

    assert ran == ["first", "broken", "last"]
    assert [run.status for run in runs] == ["ok", "error", "ok"]
    failed = runs[1]
    assert failed.handler.endswith(".broken")
    assert failed.error == "ValueError: license key ABC is not in our shop"
    assert failed.traceback is not None
    assert failed.traceback.startswith("Traceback (most recent call last)")
    assert "raise ValueError" in failed.traceback
    assert "license key ABC" in caplog.text


def test_signals_error_without_message_is_the_class_name(settings: dict[str, Any]) -> None:
    @on("*")
    def broken(event: Event, **extra: Any) -> None:
        raise KeyError

    [run] = dispatch(make_event("license.created"), settings)
    assert run.status == "error" and run.error == "KeyError"


def blinker_typed(sender: Any, **extra: Any) -> None:
    calls.append(("typed", sender, extra))


def blinker_catch_all(sender: Any, **extra: Any) -> None:
    calls.append(("all", sender, extra))


calls: list[tuple[str, Any, dict[str, Any]]] = []


def test_signals_direct_blinker_receivers_run(settings: dict[str, Any]) -> None:
    calls.clear()
    signal_for("license.created").connect(blinker_typed)  # weak, as blinker defaults
    event_received.connect(blinker_catch_all)

    event = make_event("license.created")
    runs = dispatch(event, settings)

    assert [(kind, sender) for kind, sender, _ in calls] == [("typed", event), ("all", event)]
    assert calls[0][2] == {"settings": settings, "trigger": "delivery", "attempt": 1}
    assert [run.handler for run in runs] == [f"{__name__}.blinker_typed",
                                              f"{__name__}.blinker_catch_all"]
    assert all(run.status == "ok" for run in runs)

    calls.clear()
    dispatch(make_event("license.deleted"), settings)
    assert [kind for kind, _, _ in calls] == ["all"]


def test_signals_blinker_receiver_failure_does_not_stop_others(settings: dict[str, Any]) -> None:
    ran: list[str] = []

    def broken(sender: Any, **extra: Any) -> None:
        raise RuntimeError("receiver down")

    def fine(sender: Any, **extra: Any) -> None:
        ran.append("fine")

    signal_for("machine.created").connect(broken, weak=False)
    signal_for("machine.created").connect(fine, weak=False)
    runs = dispatch(make_event("machine.created"), settings)
    assert [run.status for run in runs] == ["error", "ok"]
    assert runs[0].error == "RuntimeError: receiver down"
    assert ran == ["fine"]


def test_signals_blinker_sender_is_the_source(settings: dict[str, Any]) -> None:
    seen: list[str] = []

    def keygen_only(sender: Event, **extra: Any) -> None:
        seen.append(sender.source)

    signal_for("license.created").connect(keygen_only, sender="keygen", weak=False)
    dispatch(make_event("license.created", "keygen"), settings)
    dispatch(make_event("license.created", "licensespring"), settings)
    assert seen == ["keygen"]
    listed = [h for h in registered_handlers() if h.fn is keygen_only]
    assert [(h.pattern, h.source, h.via) for h in listed] == [("license.created", "keygen",
                                                               "blinker")]


def test_signals_connected_to_context_manager(settings: dict[str, Any]) -> None:
    seen: list[Event] = []

    def recorder(sender: Event, **extra: Any) -> None:
        seen.append(sender)

    event = make_event("license.renewed")
    with event_received.connected_to(recorder):
        dispatch(event, settings)
    dispatch(event, settings)
    assert seen == [event]


def test_signals_same_callable_runs_once_in_stable_order(settings: dict[str, Any]) -> None:
    order: list[str] = []

    def make(label: str) -> Any:
        def handler(event: Event, **extra: Any) -> None:
            order.append(label)

        return handler

    shared = make("shared")
    on("license.*", name="shared")(shared)
    on("license.created", name="shared")(shared)
    on("*", name="b")(make("b"))
    on("license.created", name="c")(make("c"))
    signal_for("license.created").connect(shared, weak=False)
    event_received.connect(shared, weak=False)

    for _ in range(3):
        assert names(handlers_for(make_event("license.created"), settings)) == \
            ["shared", "b", "c"]
    dispatch(make_event("license.created"), settings)
    assert order == ["shared", "b", "c"]


def test_signals_stacked_decorators(settings: dict[str, Any]) -> None:
    @on("license.created")
    @on("license.renewed")
    def handler(event: Event, **extra: Any) -> None:
        pass

    for event_type in ("license.created", "license.renewed"):
        assert [h.fn for h in handlers_for(make_event(event_type), settings)] == [handler]
    assert handlers_for(make_event("license.deleted"), settings) == []
    assert sorted(h.pattern for h in registered_handlers()) == ["license.created",
                                                                "license.renewed"]


def test_signals_conditional_handler_skipped_when_disabled(settings: dict[str, Any]) -> None:
    ran: list[str] = []

    @on("user.password-reset", enabled=lambda s: s["MAIL_RESET_ENABLED"])
    def conditional(event: Event, **extra: Any) -> None:
        ran.append("conditional")

    event = make_event("user.password-reset")
    off = {**settings, "MAIL_RESET_ENABLED": False}
    assert handlers_for(event, off) == []
    assert dispatch(event, off) == []
    assert ran == []

    enabled = {**settings, "MAIL_RESET_ENABLED": True}
    assert [h.fn for h in handlers_for(event, enabled)] == [conditional]
    assert [run.status for run in dispatch(event, enabled)] == ["ok"]
    assert ran == ["conditional"]
    [listed] = registered_handlers()
    assert listed.as_dict()["conditional"] is True


def test_signals_raising_predicate_skips_only_that_handler(
    settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    @on("*", enabled=lambda s: s["NO_SUCH_SETTING"])
    def fragile(event: Event, **extra: Any) -> None:
        pass

    @on("*")
    def sturdy(event: Event, **extra: Any) -> None:
        pass

    assert [h.fn for h in handlers_for(make_event("license.created"), settings)] == [sturdy]
    assert "fragile" in caplog.text


def test_signals_handlers_of_disabled_plugins_skipped(settings: dict[str, Any]) -> None:
    @on("*")
    def from_plugin(event: Event, **extra: Any) -> None:
        pass

    signals.tag_plugin(signals.registry_keys(), "audit-log")
    event = make_event("license.created")
    assert [h.plugin for h in handlers_for(event, settings)] == ["audit-log"]
    assert handlers_for(event, {**settings, "DISABLED_PLUGINS": ["audit-log"]}) == []


def test_signals_handlers_for_names(settings: dict[str, Any]) -> None:
    on("*", name="one")(lambda event, **extra: None)
    on("*", name="two")(lambda event, **extra: None)
    event = make_event("license.created")
    assert names(handlers_for(event, settings)) == ["one", "two"]
    assert names(handlers_for(event, settings, names=["two"])) == ["two"]
    assert names(handlers_for(event, settings, names=[])) == []


def test_signals_same_name_different_function_refused() -> None:
    on("license.created", name="audit")(lambda event, **extra: None)
    with pytest.raises(ValueError, match="already registered as 'audit'"):
        on("license.deleted", name="audit")(
            lambda event, **extra: None
        )


def test_signals_reregistering_same_code_replaces(settings: dict[str, Any]) -> None:
    results: list[int] = []

    def define(number: int) -> Any:
        @on("license.created")
        def handler(event: Event, **extra: Any) -> None:
            results.append(number)

        return handler

    define(1)
    define(2)  # same code location: what importlib.reload does
    dispatch(make_event("license.created"), settings)
    assert results == [2]
    assert len(registered_handlers()) == 1


def test_signals_blinker_receivers_with_same_qualname_get_distinct_names(
    settings: dict[str, Any]
) -> None:
    for _ in range(2):
        event_received.connect(lambda sender, **extra: None, weak=False)
    assert names(handlers_for(make_event("license.created"), settings)) == [
        f"{__name__}.{test_signals_blinker_receivers_with_same_qualname_get_distinct_names.__name__}"
        ".<locals>.<lambda>",
        f"{__name__}.{test_signals_blinker_receivers_with_same_qualname_get_distinct_names.__name__}"
        ".<locals>.<lambda>#2",
    ]


def test_signals_signal_for_is_one_named_signal_per_type() -> None:
    signal = signal_for("license.created")
    assert signal is signal_for("license.created")
    assert signal.name == "license.created"
    assert signal is not signal_for("license.deleted")
    assert event_received.name == "event-received"
    for bad in ("license.*", "*", ""):
        with pytest.raises(ValueError):
            signal_for(bad)


def test_signals_unknown_event_type_creates_no_signal(settings: dict[str, Any]) -> None:
    handlers_for(make_event("attacker.chosen-type-1234", "generic"), settings)
    assert "attacker.chosen-type-1234" not in signals._signals


def test_signals_registered_handlers_lists_both_ways() -> None:
    @on("license.*", source="keygen")
    def decorated(event: Event, **extra: Any) -> None:
        pass

    def connected(sender: Any, **extra: Any) -> None:
        pass

    event_received.connect(connected, weak=False)
    listed = [handler.as_dict() for handler in registered_handlers()]
    assert listed == [
        {"name": f"{__name__}.test_signals_registered_handlers_lists_both_ways.<locals>."
                 "decorated",
         "pattern": "license.*", "source": "keygen", "module": __name__, "plugin": None,
         "conditional": False, "via": "on", "retries": None},
        {"name": f"{__name__}.test_signals_registered_handlers_lists_both_ways.<locals>."
                 "connected",
         "pattern": "*", "source": None, "module": __name__, "plugin": None,
         "conditional": False, "via": "blinker", "retries": None},
    ]


def test_signals_reset_registry_forgets_everything(settings: dict[str, Any]) -> None:
    on("*")(lambda event, **extra: None)
    signal_for("license.created").connect(blinker_typed)
    signals.reset_registry()
    assert registered_handlers() == []
    assert handlers_for(make_event("license.created"), settings) == []


segment = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)


@given(st.lists(segment, min_size=1, max_size=4), st.integers(min_value=0, max_value=4))
def test_signals_prefix_matches_exactly_the_types_below(parts: list[str], cut: int) -> None:
    event_type = ".".join(parts)
    prefix = ".".join(parts[:cut])
    assert signals.check_pattern(event_type) == event_type
    assert signals.pattern_matches(event_type, event_type)
    assert signals.pattern_matches("*", event_type)
    if 0 < cut < len(parts):
        assert signals.check_pattern(prefix + ".*")
        assert signals.pattern_matches(prefix + ".*", event_type)
    assert not signals.pattern_matches(event_type + ".*", event_type)
    assert not signals.pattern_matches(parts[0] + ".*", parts[0] + "s.created")


def test_signals_name_reusable_after_reset(settings: dict[str, Any]) -> None:
    on("*", name="audit")(lambda event, **extra: None)
    signals.reset_registry()
    on("*", name="audit")(
        lambda event, **extra: None
    )
    assert names(handlers_for(make_event("license.created"), settings)) == ["audit"]
