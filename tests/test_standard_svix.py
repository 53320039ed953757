"""Standard Webhooks against the senders' own code: PyPI ``standardwebhooks`` and ``svix`` sign
deliveries the receiver checks, and verify what ``receiver trigger standard`` sends, with the
headers spelled ``webhook-*`` (the standard) or ``svix-*`` (Svix)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
import standardwebhooks
import svix
from click.testing import CliRunner

from receiver import verify
from receiver.cli import cli
from receiver.config import Endpoint
from receiver.dialects import standard
from receiver.read.mask import MASK

from .conftest import sample
from .test_config import whsec
from .test_forward import LocalApp, local_app  # noqa: F401 - the fixture, used by name

SECRET = whsec()
BODY = sample("standard", "license.created").body


def std_app(make_app: Any) -> Any:
    return make_app(ENDPOINTS={"std": {"source": "standard", "secrets": [SECRET]}})


def svix_headers(body: bytes, *, msg_id: str | None = None,
                 secret: str = SECRET) -> dict[str, str]:
    """What a Svix sender puts on a delivery, signed by the svix library."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    moment = dt.datetime.now(dt.UTC)
    signature = svix.Webhook(secret).sign(msg_id, moment, body.decode())
    return {"svix-id": msg_id, "svix-timestamp": str(int(moment.timestamp())),
            "svix-signature": signature, "Content-Type": "application/json"}


def standard_headers(body: bytes, *, msg_id: str | None = None) -> dict[str, str]:
    """The same, signed by the standardwebhooks reference library with webhook-* names."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    moment = dt.datetime.now(dt.UTC)
    signature = standardwebhooks.Webhook(SECRET).sign(msg_id, moment, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature, "Content-Type": "application/json"}


@pytest.mark.parametrize("sign", [svix_headers, standard_headers], ids=["svix", "standard"])
def test_svix_and_standardwebhooks_signatures_are_valid(make_app: Any, sign: Any) -> None:
    app = std_app(make_app)
    client, store = app.test_client(), app.extensions["receiver.store"]
    headers = sign(BODY)
    answer = client.post("/hooks/std", data=BODY, headers=headers)
    assert answer.status_code == 200, answer.json
    assert answer.json["signature_status"] == "valid"
    assert answer.json["source"] == "standard"
    event = store.get_event(answer.json["event_id"])
    msg_id = headers.get("svix-id") or headers["webhook-id"]
    assert event.external_id == msg_id  # deduplicated on the message id, either spelling
    assert event.event_type == "license.created"
    stored = store.get_delivery(answer.json["delivery_id"], with_body=True)
    assert stored["body"] == BODY
    assert [name.lower() for name, _ in stored["headers"]].count(
        "svix-signature" if "svix-id" in headers else "webhook-signature") == 1


@pytest.mark.parametrize("sign", [svix_headers, standard_headers], ids=["svix", "standard"])
def test_svix_and_standardwebhooks_tampered_is_401(make_app: Any, sign: Any) -> None:
    app = std_app(make_app)
    client, store = app.test_client(), app.extensions["receiver.store"]
    headers = sign(BODY)
    tampered = BODY.replace(b"license.created", b"license.deleted")
    answer = client.post("/hooks/std", data=tampered, headers=headers)
    assert answer.status_code == 401
    spelling = "svix" if "svix-id" in headers else "webhook"
    assert answer.json["error"] == (f"no configured secret or key matched {spelling}-signature "
                                    "(1 v1, 0 v1a)")
    stored = store.get_delivery(answer.json["delivery_id"])
    assert stored["signature_status"] == "invalid" and stored["event_id"] is None


def test_svix_wrong_secret_and_missing_headers_say_svix(make_app: Any) -> None:
    client = std_app(make_app).test_client()
    wrong = client.post("/hooks/std", data=BODY, headers=svix_headers(BODY, secret=whsec()))
    assert wrong.status_code == 401 and "svix-signature" in wrong.json["error"]
    headers = svix_headers(BODY)
    del headers["svix-id"]
    missing = client.post("/hooks/std", data=BODY, headers=headers)
    assert (missing.status_code, missing.json["error"]) == (401, "missing svix-id header")
    unsigned = client.post("/hooks/std", data=BODY, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert unsigned.json["error"] == "missing webhook-signature (or svix-signature) header"


def test_svix_headers_are_detected_and_deduplicated_with_webhook_spelling(client: Any) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    first = client.post("/hooks", data=BODY, headers=svix_headers(BODY, msg_id=msg_id))
    assert first.json["source"] == "standard"
    assert first.json["signature_status"] == "unchecked"  # nothing configured on /hooks
    # Svix's retry of the same message, and the same message in the standard's spelling.
    again = client.post("/hooks", data=BODY, headers=svix_headers(BODY, msg_id=msg_id))
    spelled = client.post("/hooks", data=BODY, headers=standard_headers(BODY, msg_id=msg_id))
    assert again.json["duplicate"] is True and spelled.json["duplicate"] is True
    assert first.json["event_id"] == again.json["event_id"] == spelled.json["event_id"]


def test_svix_signature_is_masked_in_pages_and_api(client: Any) -> None:
    headers = svix_headers(BODY)
    answer = client.post("/hooks", data=BODY, headers=headers).json
    shown = dict(client.get(f"/api/deliveries/{answer['delivery_id']}").json["headers"])
    assert shown["Svix-Signature"] == MASK
    assert shown["Svix-Id"] == headers["svix-id"]
    page = client.get(f"/deliveries/{answer['delivery_id']}").get_data(as_text=True)
    assert headers["svix-signature"].split(",", 1)[1] not in page


def test_header_spelling_adapter_reads_one_set() -> None:
    svix_only = {"svix-id": "a", "svix-timestamp": "1", "svix-signature": "v1,x"}
    assert standard.standard_headers(svix_only) == (
        {"webhook-id": "a", "webhook-timestamp": "1", "webhook-signature": "v1,x"}, "svix")
    both = {**svix_only, "webhook-id": "b", "webhook-timestamp": "2", "webhook-signature": "v1,y"}
    assert standard.standard_headers(both)[0]["webhook-id"] == "b"
    assert standard.standard_headers({})[1] == "webhook"
    assert standard.rename_headers([("webhook-id", "a"), ("X", "y")], "svix") == [
        ("svix-id", "a"), ("X", "y")]
    with pytest.raises(ValueError, match="spelling"):
        standard.rename_headers([], "stripe")


@pytest.mark.parametrize("spelling", ["webhook", "svix"])
def test_trigger_standard_signature_passes_svix_and_standardwebhooks(
        tmp_path: Any, local_app: LocalApp, spelling: str) -> None:  # noqa: F811
    config = tmp_path / "receiver.toml"
    config.write_text(f'[endpoints.std]\nsource = "standard"\nsecrets = ["{SECRET}"]\n')
    result = CliRunner().invoke(
        cli, ["trigger", "standard", "license.created", "--url", local_app.url,
              "--header-names", spelling],
        env={"RECEIVER_CONFIG": str(config)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [got] = local_app.received
    headers = {name.lower(): value for name, value in got.headers}
    other = "svix" if spelling == "webhook" else "webhook"
    assert f"{spelling}-signature" in headers and f"{other}-signature" not in headers
    assert got.body == BODY
    # The senders' own libraries accept it: svix reads either spelling, the reference
    # library the standard's.
    svix.Webhook(SECRET).verify(got.body, headers)
    as_standard = {name.replace("svix-", "webhook-"): value for name, value in headers.items()}
    assert standardwebhooks.Webhook(SECRET).verify(got.body, as_standard) == json.loads(BODY)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.Webhook(SECRET).verify(got.body + b" ", headers)


def test_trigger_header_names_only_for_standard() -> None:
    result = CliRunner().invoke(cli, ["trigger", "keygen", "license.created", "--url",
                                      "http://127.0.0.1:9/x", "--header-names", "svix"])
    assert result.exit_code == 2 and "only Standard Webhooks" in result.output


def test_sign_standard_svix_spelling_round_trip() -> None:
    endpoint = Endpoint(name="std", source="standard", secrets=(SECRET,))
    headers = verify.sign("standard", BODY, endpoint, spelling="svix")
    assert [name for name, _ in headers] == ["svix-id", "svix-timestamp", "svix-signature"]
    svix.Webhook(SECRET).verify(BODY, dict(headers))
    assert verify.verify_standard(BODY, headers, secrets=[SECRET]).ok
