"""Reconcile with Keygen's event log: the events Keygen lost while the receiver could not
take them come back, once (docs/nothing-missed.md).

Each test runs a fake Keygen (tests/fake_keygen.py: its API and its webhook sender) and the
receiver on a real HTTP server; Keygen "loses" events by delivering them to a closed port,
as it does when the receiver is down (``CONN_REFUSED``, never retried).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from receiver import on
from receiver.cli import cli
from receiver.handlers import signals
from receiver.problems import kinds

from .conftest import free_port
from .fake_keygen import FakeKeygen

pytestmark = pytest.mark.both_backends

REGISTERED = "https://hooks.example.com/hooks/keygen"
STAGING = "https://staging.example.com/hooks/keygen"


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    signals.reset_registry()
    yield
    signals.reset_registry()


@pytest.fixture
def keygen() -> Iterator[FakeKeygen]:
    with FakeKeygen() as fake:
        yield fake


def endpoint(keygen: FakeKeygen, **changes: Any) -> dict[str, Any]:
    """The [endpoints.keygen] table of a receiver that reconciles with the fake Keygen (a
    change to None leaves the key out)."""
    table = {"source": "keygen", "url": REGISTERED, "public_key": keygen.public_key_hex,
             "account": keygen.account_id, "api_token": keygen.token, "api_url": keygen.url,
             **changes}
    return {key: value for key, value in table.items() if value is not None}


def toml(table: dict[str, Any]) -> str:
    return "[endpoints.keygen]\n" + "".join(f"{key} = {json.dumps(value)}\n"
                                            for key, value in table.items())


class Live:
    """The receiver's app served over HTTP on loopback, Keygen's deliveries routed to it."""

    def __init__(self, app: Any, keygen: FakeKeygen) -> None:
        self.app = app
        self.store = app.extensions["receiver.store"]
        self.server = make_server("127.0.0.1", free_port(), app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.keygen = keygen
        self.up()

    def up(self) -> None:
        self.keygen.route(REGISTERED, self.url + "/hooks/keygen")

    def down(self) -> None:
        """The receiver cannot be reached: a port nothing listens on."""
        self.keygen.route(REGISTERED, f"http://127.0.0.1:{free_port()}/hooks/keygen")

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live(make_app: Any, keygen: FakeKeygen) -> Iterator[Live]:
    served = Live(make_app(ENDPOINTS={"keygen": endpoint(keygen)}), keygen)
    yield served
    served.stop()


@pytest.fixture
def run(tmp_path: Path, db_path: str, keygen: FakeKeygen,
        monkeypatch: pytest.MonkeyPatch) -> Any:
    """``receiver reconcile ARGS`` on the test's database; returns the click result."""
    def invoke(*args: str, table: dict[str, Any] | None = None) -> Any:
        config = tmp_path / "receiver.toml"
        config.write_text(toml(table if table is not None else endpoint(keygen)))
        monkeypatch.setenv("RECEIVER_CONFIG", str(config))
        return CliRunner().invoke(cli, ["reconcile", *args, "--db", db_path])

    return invoke


def outage(live: Live, keygen: FakeKeygen) -> tuple[list[str], list[str]]:
    """Two events delivered, two lost while the receiver is down, one for another URL:
    returns the delivered and the lost vendor ids."""
    delivered = [keygen.add_event(endpoint_url=REGISTERED)["id"] for _ in range(2)]
    for event_id in delivered:
        assert keygen.deliver(event_id) == 200
    live.down()
    lost = [keygen.add_event("license.suspended", endpoint_url=REGISTERED)["id"]
            for _ in range(2)]
    for event_id in lost:
        assert keygen.deliver(event_id) is None
    keygen.add_event(endpoint_url=STAGING, status="FAILED", last_response_body="CONN_REFUSED")
    live.up()
    return delivered, lost


def token_of(keygen: FakeKeygen, vendor_id: str) -> str:
    return str(keygen.event(vendor_id)["meta"]["idempotencyToken"])


def test_dry_run_lists_exactly_the_lost_events_and_exits_1(live: Live, keygen: FakeKeygen,
                                                           run: Any) -> None:
    _, lost = outage(live, keygen)
    result = run("--dry-run", "--json")
    assert result.exit_code == 1, result.output
    [report] = json.loads(result.stdout)["endpoints"]
    assert [item["vendor_id"] for item in report["items"]] == lost[::-1]  # newest first
    assert {item["action"] for item in report["items"]} == {"listed"}
    assert {item["last_response"] for item in report["items"]} == {"CONN_REFUSED"}
    assert report["checked"] == 4 and report["missing"] == 2 and report["recovered"] == 0
    assert live.store.stored_external_ids("keygen", [token_of(keygen, i) for i in lost]) == set()


def api(live: Live, path: str) -> Any:
    answer = live.app.test_client().get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def test_fetch_stores_each_lost_event_once_and_runs_its_handlers_once(
        live: Live, keygen: FakeKeygen, run: Any) -> None:
    ran: list[str] = []

    @on("license.suspended", name="tests.reconciled")
    def count(event: Any, **_: Any) -> None:
        ran.append(event.external_id)

    _, lost = outage(live, keygen)
    result = run("--fetch")
    assert result.exit_code == 0, result.output
    assert "2 missing, 2 recovered" in result.stdout
    tokens = sorted(token_of(keygen, vendor_id) for vendor_id in lost)
    assert sorted(ran) == tokens

    fetched = api(live, "/api/events?signature_status=fetched")["events"]
    assert sorted(event["external_id"] for event in fetched) == tokens
    assert {event["event_type"] for event in fetched} == {"license.suspended"}
    assert {event["dispatch_status"] for event in fetched} == {"done"}
    for event in fetched:
        [delivery] = api(live, f"/api/events/{event['id']}")["deliveries"]
        assert delivery["method"] == "GET" and delivery["signature_status"] == "fetched"
        origin = dict(delivery["headers"])["X-Receiver-Fetched-From"]
        assert origin.startswith(f"{keygen.url}/v1/accounts/{keygen.account_id}/webhook-events/")

    again = run("--json")
    assert again.exit_code == 0, again.output
    [report] = json.loads(again.stdout)["endpoints"]
    assert report["missing"] == 0 and report["items"] == []
    assert sorted(ran) == tokens  # nothing ran twice


def test_retry_makes_keygen_send_them_again_signed_and_valid(live: Live, keygen: FakeKeygen,
                                                               run: Any) -> None:
    _, lost = outage(live, keygen)
    result = run("--retry", "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)["endpoints"]
    assert {item["action"] for item in report["items"]} == {"retried"}
    assert keygen.wait_idle()
    tokens = sorted(token_of(keygen, vendor_id) for vendor_id in lost)
    arrived = [event for event in api(live, "/api/events?source=keygen")["events"]
               if event["external_id"] in tokens]
    assert sorted(event["external_id"] for event in arrived) == tokens
    assert {event["signature_status"] for event in arrived} == {"valid"}
    assert run().exit_code == 0  # the resends are stored: nothing missing


def test_the_endpoint_setting_chooses_the_mode(live: Live, keygen: FakeKeygen,
                                               run: Any) -> None:
    outage(live, keygen)
    result = run("--json", table=endpoint(keygen, reconcile="retry"))
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)["endpoints"]
    assert report["mode"] == "retry"


def test_the_table_names_each_missing_event_and_what_was_done(live: Live, keygen: FakeKeygen,
                                                              run: Any) -> None:
    _, lost = outage(live, keygen)
    result = run("--dry-run")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("keygen (keygen, dry run): 4 vendor events since ")
    assert lines[1].split() == ["VENDOR", "ID", "EVENT", "VENDOR", "STATUS", "LAST", "RESPONSE",
                                "DONE"]
    assert [line.split()[:5] for line in lines[2:]] == [
        [vendor_id, "license.suspended", "FAILED", "CONN_REFUSED", "missing"]
        for vendor_id in lost[::-1]]


def test_each_run_is_recorded_and_vendor_failing_follows_keygen(live: Live, keygen: FakeKeygen,
                                                               run: Any) -> None:
    outage(live, keygen)
    assert run("--fetch").exit_code == 0
    [last] = api(live, "/api/reconcile")["endpoints"]
    assert {key: last[key] for key in ("endpoint", "vendor", "checked", "missing", "recovered",
                                       "vendor_failing", "error")} == {
        "endpoint": "keygen", "vendor": "keygen", "checked": 4, "missing": 2, "recovered": 2,
        "vendor_failing": 2, "error": None}
    [problem] = api(live, "/api/problems?status=open")["problems"]
    assert (problem["kind"], problem["subject"]) == (kinds.VENDOR_FAILING, "keygen")
    assert "CONN_REFUSED" in problem["summary"]
    page = live.app.test_client().get("/problems").get_data(as_text=True)
    assert 'id="reconcile-keygen"' in page
    metrics = live.app.test_client().get("/-/metrics").get_data(as_text=True)
    for line in ('receiver_reconcile_missing{endpoint="keygen"} 2.0',
                 'receiver_reconcile_unrecovered{endpoint="keygen"} 0.0',
                 'receiver_reconcile_vendor_failing{endpoint="keygen"} 2.0',
                 'receiver_reconcile_failed{endpoint="keygen"} 0.0'):
        assert line in metrics.splitlines()

    # The receiver is reachable again and Keygen gets through: resolved on the next run.
    assert keygen.deliver(keygen.add_event(endpoint_url=REGISTERED)["id"]) == 200
    assert run().exit_code == 0
    assert api(live, "/api/problems?status=open")["problems"] == []
    assert api(live, "/api/reconcile")["endpoints"][0]["vendor_failing"] == 0


def test_events_for_another_url_are_left_alone(live: Live, keygen: FakeKeygen,
                                               run: Any) -> None:
    keygen.add_event(endpoint_url=STAGING, status="FAILED", last_response_body="CONN_REFUSED")
    result = run("--fetch", "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)["endpoints"]
    assert report["checked"] == 0 and report["missing"] == 0
    assert api(live, "/api/events")["events"] == []


def test_a_429_is_waited_out(live: Live, keygen: FakeKeygen, run: Any) -> None:
    outage(live, keygen)
    keygen.throttle(1, retry_after=1)
    result = run("--fetch")
    assert result.exit_code == 0, result.output
    # One page and two fetches, and the page asked again after the 429.
    assert [seen.method for seen in keygen.requests] == ["GET"] * 4
    assert keygen.requests[0].path == keygen.requests[1].path


@pytest.mark.parametrize(("change", "says"), [
    ({"api_token": "not-the-token"}, "api_token"),
    ({"account": "nobody"}, "nobody"),
])
def test_a_refusal_of_keygen_exits_2_with_a_sentence(live: Live, keygen: FakeKeygen, run: Any,
                                                    change: dict[str, str], says: str) -> None:
    outage(live, keygen)
    result = run("--fetch", table=endpoint(keygen, **change))
    assert result.exit_code == 2, result.output
    assert says in result.stderr and "Traceback" not in result.output
    assert "not-the-token" not in result.output
    [last] = api(live, "/api/reconcile")["endpoints"]
    assert last["error"] and last["missing"] == 0
    # What Keygen could not tell says nothing about its deliveries: no problem either way.
    assert api(live, "/api/problems")["problems"] == []


@pytest.mark.parametrize(("change", "says"), [
    ({"account": None}, "endpoints.keygen.account"),
    ({"api_token": None, "api_token_env": "KEYGEN_TOKEN"}, "KEYGEN_TOKEN is not set"),
    ({"api_token": None}, "api_token"),
    ({"url": None}, "endpoints.keygen.url"),
    ({"reconcile": "sometimes"}, "endpoints.keygen.reconcile"),
    ({"api_url": "ftp://keygen"}, "endpoints.keygen.api_url"),
])
def test_a_missing_or_bad_setting_exits_2_naming_it(keygen: FakeKeygen, run: Any,
                                                    change: dict[str, Any], says: str) -> None:
    result = run(table=endpoint(keygen, **change))
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert keygen.requests == []


def test_the_token_may_come_from_the_environment(live: Live, keygen: FakeKeygen, run: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYGEN_TOKEN", keygen.token)
    table = endpoint(keygen, api_token=None, api_token_env="KEYGEN_TOKEN")
    assert run(table=table).exit_code == 0
    assert {seen.headers.get("authorization") for seen in keygen.requests} == {
        f"Bearer {keygen.token}"}


def test_serve_is_not_stopped_by_reconcile_settings_it_does_not_use(
        make_app: Any, keygen: FakeKeygen) -> None:
    app = make_app(ENDPOINTS={"keygen": endpoint(keygen, api_token=None, reconcile="later",
                                                  api_token_env="UNSET_VARIABLE")})
    assert app.test_client().get("/-/health").status_code == 200


def test_serve_with_periodic_reconcile_checks_the_settings_at_start(
        make_app: Any, keygen: FakeKeygen) -> None:
    from receiver.errors import ConfigError

    with pytest.raises(ConfigError, match="endpoints.keygen.account"):
        make_app(RECONCILE_EVERY=60, ENDPOINTS={"keygen": endpoint(keygen, account=None)})


def test_the_periodic_reconcile_recovers_by_itself(make_app: Any, keygen: FakeKeygen) -> None:
    app = make_app(RECONCILE_EVERY=900, ENDPOINTS={"keygen": endpoint(keygen)})
    served = Live(app, keygen)
    try:
        _, lost = outage(served, keygen)
        schedule = app.extensions["receiver.reconcile"]
        schedule.tick()  # what the upkeep does once a second
        schedule.join(20)
        schedule.tick()  # not due again for 15 minutes: no second round
        schedule.join(20)
        runs = served.store.list_reconcile_runs("keygen")
        assert [(r["trigger"], r["mode"], r["recovered"]) for r in runs] == [
            ("schedule", "fetch", 2)]
        tokens = sorted(token_of(keygen, vendor_id) for vendor_id in lost)
        fetched = api(served, "/api/events?signature_status=fetched")["events"]
        assert sorted(event["external_id"] for event in fetched) == tokens
    finally:
        served.stop()


def test_a_token_keygen_could_never_take_is_a_setting_error(keygen: FakeKeygen,
                                                           run: Any) -> None:
    result = run(table=endpoint(keygen, api_token="two words"))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: endpoints.keygen: ")
    assert "two words" not in result.output and keygen.requests == []


def test_receiver_serve_with_periodic_reconcile_refuses_a_bad_setting_in_a_sentence(
        tmp_path: Path, db_path: str, keygen: FakeKeygen,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "receiver.toml"
    config.write_text(toml(endpoint(keygen, account=None)))
    monkeypatch.setenv("RECEIVER_CONFIG", str(config))
    monkeypatch.setenv("RECEIVER_RECONCILE_EVERY", "15m")
    monkeypatch.setenv("RECEIVER_DATABASE", db_path)
    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])
    assert result.exit_code == 1
    assert "endpoints.keygen.account" in result.output and "Traceback" not in result.output
