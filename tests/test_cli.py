"""The ``receiver`` command (docs/reference.md#command-line): samples, events, show, export,
replay, bad arguments, and ``trigger`` against a real ``receiver serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from receiver import on
from receiver.cli import cli
from receiver.handlers import signals

from .conftest import LICENSE_KEY, RESET_TOKEN, all_samples, sample

pytestmark = pytest.mark.both_backends

FNO_AUTH = "Bearer fno-cli-secret-token-0042"
HANDLER = "tests.cli.order_handler"

POSTED = [
    ("keygen", "user.password-reset"),
    ("keygen", "license.created"),
    ("licensespring", "license.created"),
    ("fno", "entitlement.updated"),
    ("zentitle", "entitlement.created"),
    ("generic", "order.paid"),
]

# One sample of each source, for trigger.
ONE_PER_SOURCE = [
    ("keygen", "license.created"),
    ("licensespring", "license.created"),
    ("fno", "entitlement.updated"),
    ("zentitle", "entitlement.created"),
    ("standard", "license.created"),
    ("generic", "order.paid"),
]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, code: int = 0) -> Any:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.output)
    return result


@pytest.fixture
def order_handler() -> Iterator[dict[str, Any]]:
    """A handler on generic order.paid that fails until told otherwise (never retried)."""
    before = signals.registry_keys()
    state: dict[str, Any] = {"fail": True, "seen": []}

    @on("order.paid", source="generic", name=HANDLER, retries=0)
    def handle(event: Any, **extra: Any) -> None:
        state["seen"].append(event.id)
        if state["fail"]:
            raise RuntimeError("ledger offline")

    yield state
    signals.unregister(signals.registry_keys() - before)


@pytest.fixture
def history(client: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """A database with one event of several sources (FNO with an Authorization header)."""
    answers = {}
    for source, name in POSTED:
        item = sample(source, name)
        headers = {**item.headers, **({"Authorization": FNO_AUTH} if source == "fno" else {})}
        response = client.post("/hooks", data=item.body, headers=headers)
        assert response.status_code == 200, response.get_json()
        answers[(source, name)] = response.get_json()
    return answers


# -- samples --------------------------------------------------------------------------------


def test_cli_samples_lists_every_sample(runner: CliRunner) -> None:
    lines = invoke(runner, "samples").output.splitlines()
    listed = [tuple(line.split()) for line in lines]
    assert listed == [(s.source, s.name) for s in all_samples()]


def test_cli_samples_of_one_source(runner: CliRunner) -> None:
    lines = invoke(runner, "samples", "fno").output.splitlines()
    assert [line.split()[1] for line in lines] == [
        s.name for s in all_samples() if s.source == "fno"]
    assert all(line.startswith("fno ") for line in lines)


def test_cli_samples_unknown_source(runner: CliRunner) -> None:
    result = invoke(runner, "samples", "stripe", code=2)
    assert "stripe" in result.output and "keygen" in result.output


# -- events ---------------------------------------------------------------------------------


def test_cli_events_lists_newest_first(runner: CliRunner, db_path: str,
                                       history: dict[Any, Any]) -> None:
    lines = invoke(runner, "events", "--db", db_path).output.splitlines()
    assert len(lines) == len(POSTED)
    ids = [int(line.split()[0]) for line in lines]
    assert ids == sorted((a["event_id"] for a in history.values()), reverse=True)
    by_id = {int(line.split()[0]): line for line in lines}
    line = by_id[history[("keygen", "license.created")]["event_id"]]
    assert " keygen " in line and " license.created " in line
    subject = sample("keygen", "license.created").normalized["subject_id"]
    assert f"license:{subject}" in line


def test_cli_events_reads_the_database_from_the_environment(runner: CliRunner, db_path: str,
                                                           history: Any) -> None:
    result = runner.invoke(cli, ["events"], env={"RECEIVER_DATABASE": db_path})
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == len(POSTED)


@pytest.mark.parametrize(("options", "expected"), [
    (["--source", "keygen"], {("keygen", "user.password-reset"), ("keygen", "license.created")}),
    (["--event-type", "license.*"], {("keygen", "license.created"),
                                     ("licensespring", "license.created")}),
    (["--event-type", "license.created", "--source", "licensespring"],
     {("licensespring", "license.created")}),
    (["--subject-id", "3395"], {("fno", "entitlement.updated")}),
    (["--account", "1203"], {("licensespring", "license.created")}),
    (["--q", "SAMPLE_ORG"], {("fno", "entitlement.updated")}),
    (["--since", "2999-01-01"], set()),
    (["--until", "2999-01-01T00:00:00Z"], set(POSTED)),
    (["--dispatch-status", "pending"], set()),
])
def test_cli_events_filters_as_json(runner: CliRunner, db_path: str, history: Any,
                                    options: list[str], expected: set[tuple[str, str]]) -> None:
    output = invoke(runner, "events", "--db", db_path, "--json", *options).output
    records = [json.loads(line) for line in output.splitlines()]
    by_event = {answer["event_id"]: key for key, answer in history.items()}
    assert {by_event[record["id"]] for record in records} == expected


def test_cli_events_json_records_are_masked(runner: CliRunner, db_path: str,
                                            history: Any) -> None:
    output = invoke(runner, "events", "--db", db_path, "--json").output
    assert RESET_TOKEN not in output and LICENSE_KEY not in output
    records = [json.loads(line) for line in output.splitlines()]
    assert {"id", "source", "event_type", "external_id", "data", "delivery_count",
            "dispatch_status", "signature_status"} <= set(records[0])
    reset = next(r for r in records if r["event_type"] == "user.password-reset")
    assert reset["data"]["meta"]["passwordResetToken"].endswith(RESET_TOKEN[-4:])


def test_cli_events_limit(runner: CliRunner, db_path: str, history: Any) -> None:
    lines = invoke(runner, "events", "--db", db_path, "--limit", "2").output.splitlines()
    assert len(lines) == 2


@pytest.mark.parametrize(("options", "fragment"), [
    (["--source", "nope"], "source"),
    (["--since", "yesterday"], "since"),
    (["--event-type", "a b"], "event_type"),
    (["--signature-status", "maybe"], "signature_status"),
])
def test_cli_events_bad_filters_exit_with_a_message(runner: CliRunner, db_path: str,
                                                    history: Any, options: list[str],
                                                    fragment: str) -> None:
    result = invoke(runner, "events", "--db", db_path, *options, code=1)
    assert "Error:" in result.output and fragment in result.output


def test_cli_events_bad_limit(runner: CliRunner, db_path: str, history: Any) -> None:
    result = invoke(runner, "events", "--db", db_path, "--limit", "0", code=2)
    assert "--limit" in result.output


def test_cli_events_without_a_database(runner: CliRunner, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.db")
    result = invoke(runner, "events", "--db", missing, code=1)
    assert "no database" in result.output and "missing.db" in result.output
    assert not Path(missing).exists()


# -- show -----------------------------------------------------------------------------------


def test_cli_show_is_masked_by_default(runner: CliRunner, db_path: str, history: Any) -> None:
    reset = history[("keygen", "user.password-reset")]
    output = invoke(runner, "show", str(reset["event_id"]), "--db", db_path).output
    assert RESET_TOKEN not in output
    record = json.loads(output)
    assert record["id"] == reset["event_id"]
    assert record["event_type"] == "user.password-reset"
    assert record["data"]["meta"]["passwordResetToken"].endswith(RESET_TOKEN[-4:])
    assert [d["id"] for d in record["deliveries"]] == [reset["delivery_id"]]
    assert "body" not in record["deliveries"][0]
    assert record["handler_runs"] == []


def test_cli_show_masks_authorization_header(runner: CliRunner, db_path: str,
                                             history: Any) -> None:
    fno = history[("fno", "entitlement.updated")]
    output = invoke(runner, "show", str(fno["event_id"]), "--db", db_path).output
    secret = FNO_AUTH.split(" ", 1)[1]
    assert secret not in output
    headers = json.loads(output)["deliveries"][0]["headers"]
    assert [v for n, v in headers if n.lower() == "authorization"][0].startswith("Bearer ")


def test_cli_show_reveal(runner: CliRunner, db_path: str, history: Any) -> None:
    reset = history[("keygen", "user.password-reset")]
    output = invoke(runner, "show", str(reset["event_id"]), "--reveal", "--db", db_path).output
    assert json.loads(output)["data"]["meta"]["passwordResetToken"] == RESET_TOKEN
    fno = history[("fno", "entitlement.updated")]
    output = invoke(runner, "show", str(fno["event_id"]), "--reveal", "--db", db_path).output
    assert ["Authorization", FNO_AUTH] in json.loads(output)["deliveries"][0]["headers"]


def test_cli_show_bad_id(runner: CliRunner, db_path: str, history: Any) -> None:
    result = invoke(runner, "show", "abc", "--db", db_path, code=2)
    assert "abc" in result.output and "integer" in result.output
    missing = invoke(runner, "show", "999", "--db", db_path, code=1)
    assert "no event with id 999" in missing.output


# -- export ---------------------------------------------------------------------------------


def test_cli_export_writes_ndjson(runner: CliRunner, db_path: str, client: Any,
                                  history: Any) -> None:
    output = invoke(runner, "export", "--db", db_path).output
    lines = output.splitlines()
    assert output.endswith("\n") and len(lines) == len(POSTED) + 1
    records = [json.loads(line) for line in lines[:-1]]
    listed = client.get("/api/events").get_json()["events"]
    for record in listed:  # worked out for API answers only (docs/reference.md)
        record.pop("out_of_order")
    assert records == listed  # same masked records
    assert json.loads(lines[-1]) == {"complete": True, "count": len(POSTED)}
    assert RESET_TOKEN not in output and LICENSE_KEY not in output


def test_cli_export_filters_and_file(runner: CliRunner, db_path: str, tmp_path: Path,
                                     history: Any) -> None:
    target = tmp_path / "out.ndjson"
    invoke(runner, "export", "--db", db_path, "--source", "keygen", "-o", str(target))
    *records, complete = [json.loads(line) for line in target.read_text().splitlines()]
    assert complete == {"complete": True, "count": len(records)}
    assert {r["event_type"] for r in records} == {"user.password-reset", "license.created"}
    assert {r["source"] for r in records} == {"keygen"}


def test_cli_export_reveal(runner: CliRunner, db_path: str, history: Any) -> None:
    output = invoke(runner, "export", "--db", db_path, "--reveal").output
    assert RESET_TOKEN in output and LICENSE_KEY in output


def test_cli_export_bad_filter(runner: CliRunner, db_path: str, history: Any) -> None:
    result = invoke(runner, "export", "--db", db_path, "--dispatch-status", "later", code=1)
    assert "dispatch_status" in result.output


# -- replay ---------------------------------------------------------------------------------


def test_cli_replay_runs_handlers_again(runner: CliRunner, db_path: str, client: Any,
                                        store: Any, order_handler: dict[str, Any]) -> None:
    item = sample("generic", "order.paid")
    event_id = client.post("/hooks", data=item.body, headers=item.headers).get_json()["event_id"]
    assert store.get_event(event_id).dispatch_status == "failed"

    failing = invoke(runner, "replay", str(event_id), "--db", db_path, code=1)
    assert f"{HANDLER}: error" in failing.output and "ledger offline" in failing.output

    order_handler["fail"] = False
    result = invoke(runner, "replay", str(event_id), "--only-failed", "--db", db_path)
    assert f"{HANDLER}: ok" in result.output
    runs = store.runs_for_event(event_id)
    assert [(r["status"], r["trigger"]) for r in runs] == [
        ("error", "delivery"), ("error", "replay"), ("ok", "replay")]
    assert store.get_event(event_id).dispatch_status == "done"

    nothing = invoke(runner, "replay", str(event_id), "--only-failed", "--db", db_path)
    assert "no handler to run" in nothing.output
    assert len(store.runs_for_event(event_id)) == 3


def test_cli_replay_only_named_handler(runner: CliRunner, db_path: str, client: Any,
                                       store: Any, order_handler: dict[str, Any]) -> None:
    order_handler["fail"] = False
    item = sample("generic", "order.paid")
    event_id = client.post("/hooks", data=item.body, headers=item.headers).get_json()["event_id"]
    invoke(runner, "replay", str(event_id), "--handler", HANDLER, "--db", db_path)
    assert [r["trigger"] for r in store.runs_for_event(event_id)] == ["delivery", "replay"]
    unknown = invoke(runner, "replay", str(event_id), "--handler", "nope", "--db", db_path,
                     code=1)
    assert "nope" in unknown.output


def test_cli_replay_unknown_event(runner: CliRunner, db_path: str, history: Any) -> None:
    result = invoke(runner, "replay", "999", "--db", db_path, code=1)
    assert "no event with id 999" in result.output
    assert invoke(runner, "replay", "abc", "--db", db_path, code=2).output


def test_cli_purge_older_than(runner: CliRunner, db_path: str, store: Any) -> None:
    from receiver.events import Delivery, NormalizedEvent

    def add(external_id: str, received_at: str, event_type: str) -> None:
        store.save_event(
            Delivery(body=b"{}", received_at=received_at),
            NormalizedEvent(source="generic", event_type=event_type, vendor_event=event_type,
                            external_id=external_id, occurred_at=None, account=None,
                            actor=None, subject_type=event_type.split(".")[0],
                            subject_id=None, data={}),
            "unchecked")

    add("old-order", "2020-01-01T00:00:00.000Z", "order.paid")
    add("old-ping", "2020-01-01T00:00:00.000Z", "webhook.test")
    add("new-order", "2999-01-01T00:00:00.000Z", "order.paid")
    env = {"RECEIVER_DATABASE": db_path}
    result = runner.invoke(cli, ["purge", "--older-than", "30d", "--event-type", "webhook.test"],
                           env=env)
    assert result.exit_code == 0, result.output
    assert store.event_counts() == {"events": 2, "deliveries": 2}
    result = runner.invoke(cli, ["purge", "--older-than", "30d"], env=env)
    assert result.exit_code == 0, result.output
    assert store.event_counts() == {"events": 1, "deliveries": 1}
    bad = runner.invoke(cli, ["purge", "--older-than", "soon"], env=env)
    assert bad.exit_code != 0 and "older-than" in bad.output
    for age, sentence in (("99999999999d", "longer than the calendar holds"),
                          ("900000d", "reaches back before year 1")):
        bad = runner.invoke(cli, ["purge", "--older-than", age], env=env)
        assert bad.exit_code == 2 and sentence in bad.output, bad.output


# -- serve refuses bad settings before starting -------------------------------------------


def test_cli_serve_bad_setting_exits_with_the_key(runner: CliRunner, db_path: str) -> None:
    result = runner.invoke(cli, ["serve", "--port", "1"],
                           env={"RECEIVER_MAX_BODY": "lots", "RECEIVER_DATABASE": db_path})
    assert result.exit_code == 1
    assert "RECEIVER_MAX_BODY" in result.output
    assert not Path(db_path).exists()


def test_cli_serve_bad_endpoint_key_exits_with_the_key(runner: CliRunner, db_path: str,
                                                       tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[endpoints.keygen]\nsource = "keygen"\npublic_key = "zz"\n')
    result = runner.invoke(cli, ["serve", "--port", "1"],
                           env={"RECEIVER_CONFIG": str(config), "RECEIVER_DATABASE": db_path})
    assert result.exit_code == 1
    assert "endpoints.keygen.public_key" in result.output


# -- trigger --------------------------------------------------------------------------------


def test_cli_trigger_unknown_sample_lists_known_names(runner: CliRunner) -> None:
    result = invoke(runner, "trigger", "fno", "entitlement.exploded", "--url",
                    "http://127.0.0.1:9/hooks", code=1)
    assert "entitlement.exploded" in result.output
    for item in all_samples():
        if item.source == "fno":
            assert item.name in result.output


def test_cli_trigger_unknown_source(runner: CliRunner) -> None:
    result = invoke(runner, "trigger", "stripe", "charge.succeeded", code=2)
    assert "stripe" in result.output


def test_cli_trigger_unreachable_receiver(runner: CliRunner) -> None:
    from .conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/hooks"
    result = invoke(runner, "trigger", "generic", "order.paid", "--url", url, code=1)
    assert "could not reach" in result.output and url in result.output


def receiver_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    environment.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "receiver", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environment)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=60)
    return process.returncode, output


def test_cli_trigger_each_source_against_a_real_server(serve: Any) -> None:
    server = serve()
    processes = {
        (source, name): receiver_cli("trigger", source, name, "--url", f"{server.url}/hooks")
        for source, name in ONE_PER_SOURCE
    }
    results = {key: finish(process) for key, process in processes.items()}
    for key, (code, output) in results.items():
        assert code == 0, (key, output, server.output())
        assert output.startswith("200 "), (key, output)

    events = requests.get(f"{server.url}/api/events", timeout=10).json()["events"]
    stored = {(e["source"], e["event_type"]) for e in events}
    for source, name in ONE_PER_SOURCE:
        assert (source, sample(source, name).event_type) in stored, (source, name, stored)
    assert len(events) == len(ONE_PER_SOURCE)
    by_source = {e["source"]: e for e in events}
    for source, name in ONE_PER_SOURCE:
        assert by_source[source]["external_id"] == sample(source, name).normalized[
            "external_id"]

    # The bytes arrived unchanged: the raw delivery is the sample file.
    deliveries = requests.get(f"{server.url}/api/deliveries?source=fno", timeout=10).json()
    raw = requests.get(f"{server.url}/api/deliveries/{deliveries['deliveries'][0]['id']}/raw",
                       timeout=10)
    assert raw.content == sample("fno", "entitlement.updated").body

    # A second trigger of the same sample is a duplicate, not a new event.
    code, output = finish(receiver_cli("trigger", "keygen", "license.created", "--url",
                                       f"{server.url}/hooks"))
    assert code == 0 and '"duplicate": true' in output
    health = requests.get(f"{server.url}/-/health", timeout=10).json()
    assert health == {"ok": True, "events": len(ONE_PER_SOURCE),
                      "deliveries": len(ONE_PER_SOURCE) + 1}

    # trigger of an unknown sample through a subprocess: non-zero, known names listed.
    code, output = finish(receiver_cli("trigger", "zentitle", "entitlement.nope", "--url",
                                       f"{server.url}/hooks"))
    assert code != 0
    assert "entitlement.nope" in output and "entitlement.created" in output
    assert requests.get(f"{server.url}/-/health", timeout=10).json()["deliveries"] == \
        len(ONE_PER_SOURCE) + 1


def pem_private(key: Any) -> str:
    text: str = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    return text


def pem_public(key: Any) -> str:
    text: str = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return text


def test_cli_trigger_signs_for_configured_endpoints(serve: Any, tmp_path: Path) -> None:
    from .test_config import whsec

    keygen_key = ed25519.Ed25519PrivateKey.generate()
    zentitle_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = f"""
[endpoints.keygen]
source = "keygen"
public_key = '''{pem_public(keygen_key)}'''
signing_key = '''{pem_private(keygen_key)}'''

[endpoints.zentitle]
source = "zentitle"
public_key = '''{pem_public(zentitle_key)}'''
signing_key = '''{pem_private(zentitle_key)}'''

[endpoints.std]
source = "standard"
secrets = ["{whsec()}"]

[endpoints.fno]
source = "fno"
auth = "basic"
username = "flex"
password = "fl3x-pw"
"""
    config_path = tmp_path / "signing.toml"
    config_path.write_text(config)
    server = serve(config=config)
    signed = [("keygen", "license.created", "keygen"), ("zentitle", "entitlement.created",
              "zentitle"), ("standard", "license.created", "std"),
              ("fno", "entitlement.updated", "fno")]
    env = {"RECEIVER_CONFIG": str(config_path)}
    processes = [receiver_cli("trigger", source, name, "--url", f"{server.url}/hooks/{endpoint}",
                              env=env) for source, name, endpoint in signed]
    for (source, _, _), process in zip(signed, processes, strict=True):
        code, output = finish(process)
        assert code == 0, (source, output, server.output())
        assert "signed for endpoint" in output
        assert '"signature_status": "valid"' in output, (source, output)

    events = requests.get(f"{server.url}/api/events?signature_status=valid", timeout=10).json()
    assert {e["endpoint"] for e in events["events"]} == {"keygen", "zentitle", "std", "fno"}

    # Unsigned, the enforcing endpoints refuse the same sample: the signature made the difference.
    code, output = finish(receiver_cli("trigger", "fno", "entitlement.updated", "--url",
                                       f"{server.url}/hooks/fno"))
    assert code == 1 and output.startswith("401 ")
