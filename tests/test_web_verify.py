"""Signature enforcement through the app: 401s are stored as invalid, nothing runs, and a
Keygen signature over the public URL survives a proxy that rewrites Host."""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver import verify

from .conftest import sample

PUBLIC_URL = "https://hooks.example.com/hooks/keygen"


@pytest.fixture(scope="module")
def keygen_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_hex(key: ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw).hex()


def private_pem(key: ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def keygen_endpoint(key: ed25519.Ed25519PrivateKey, **extra) -> dict:
    return {"keygen": {"source": "keygen", "public_key": public_hex(key), "url": PUBLIC_URL,
                       **extra}}


def signed(body: bytes, key: ed25519.Ed25519PrivateKey, url: str = PUBLIC_URL) -> dict:
    headers = dict(verify.sign_keygen(body, key, url=url))
    headers["Content-Type"] = "application/json"
    return headers


def test_keygen_valid_signature_is_accepted(make_app, keygen_key) -> None:
    client = make_app(ENDPOINTS=keygen_endpoint(keygen_key)).test_client()
    item = sample("keygen", "license.created")
    answer = client.post("/hooks/keygen", data=item.body, headers=signed(item.body, keygen_key))
    assert answer.status_code == 200
    assert answer.json["signature_status"] == "valid"


def test_tampered_body_is_401_stored_invalid_and_no_event(make_app, keygen_key) -> None:
    app = make_app(ENDPOINTS=keygen_endpoint(keygen_key))
    client, store = app.test_client(), app.extensions["receiver.store"]
    item = sample("keygen", "license.created")
    headers = signed(item.body, keygen_key)
    tampered = bytearray(item.body)
    tampered[200] ^= 1
    response = client.post("/hooks/keygen", data=bytes(tampered), headers=headers)
    assert response.status_code == 401
    assert "Digest" in response.json["error"]
    stored = store.get_delivery(response.json["delivery_id"], with_body=True)
    assert stored["signature_status"] == "invalid" and stored["event_id"] is None
    assert stored["body"] == bytes(tampered)
    assert store.list_events(_filters(), limit=5)[0] == []


def test_missing_signature_is_401_unsigned(make_app, keygen_key) -> None:
    app = make_app(ENDPOINTS=keygen_endpoint(keygen_key))
    response = app.test_client().post("/hooks/keygen",
                                      data=sample("keygen", "license.created").body)
    assert response.status_code == 401
    stored = app.extensions["receiver.store"].get_delivery(response.json["delivery_id"])
    assert stored["signature_status"] == "unsigned"


def test_not_enforced_records_the_verdict_and_accepts(make_app, keygen_key) -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    app = make_app(ENDPOINTS=keygen_endpoint(keygen_key, enforce=False))
    item = sample("keygen", "license.created")
    response = app.test_client().post("/hooks/keygen", data=item.body,
                                      headers=signed(item.body, other))
    assert response.status_code == 200 and response.json["signature_status"] == "invalid"
    event = app.extensions["receiver.store"].get_event(response.json["event_id"])
    assert event.signature_status == "invalid"


def test_fno_basic_credentials_enforced(make_app) -> None:
    endpoints = {"fno": {"source": "fno", "auth": "basic", "username": "flex",
                         "password": "s3cret-pass"}}
    app = make_app(ENDPOINTS=endpoints)
    client = app.test_client()
    body = sample("fno", "entitlement.updated").body
    good = dict(verify.sign_fno(username="flex", password="s3cret-pass"))
    assert client.post("/hooks/fno", data=body, headers=good).json["signature_status"] == "valid"
    bad = dict(verify.sign_fno(username="flex", password="wrong"))
    refused = client.post("/hooks/fno", data=body, headers=bad)
    assert refused.status_code == 401
    assert "s3cret-pass" not in refused.get_data(as_text=True)


FNO_BEHIND_PROXY = {"fno": {"source": "fno", "auth": "none",
                            "allow_ips": ["203.0.113.0/24"]}}


@pytest.mark.parametrize(("proxies", "forwarded", "status", "stored_addr"), [
    # No proxy trusted: the peer (here the proxy at 127.0.0.1) is what allow_ips sees, and
    # a header a sender wrote itself is never believed.
    (0, "203.0.113.7", 401, "127.0.0.1"),
    # One proxy: the address it appended, the last entry, is the sender's.
    (1, "203.0.113.7", 200, "203.0.113.7"),
    (1, "203.0.113.7, 198.51.100.9", 401, "198.51.100.9"),
    # Two proxies: the second-last entry (the first proxy's view of the sender).
    (2, "203.0.113.7, 10.0.0.2", 200, "203.0.113.7"),
])
def test_fno_allow_ips_behind_trusted_proxies(make_app, proxies, forwarded, status,
                                              stored_addr) -> None:
    app = make_app(ENDPOINTS=FNO_BEHIND_PROXY, TRUSTED_PROXIES=proxies)
    body = sample("fno", "entitlement.updated").body
    response = app.test_client().post(
        "/hooks/fno", data=body, environ_base={"REMOTE_ADDR": "127.0.0.1"},
        headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded,
                 "X-Forwarded-Proto": "https"})
    assert response.status_code == status, response.json
    stored = app.extensions["receiver.store"].get_delivery(response.json["delivery_id"])
    assert stored["remote_addr"] == stored_addr
    # The request is kept as it arrived, forwarding headers included.
    assert ["X-Forwarded-For", forwarded] in stored["headers"]


def test_trusted_proxies_setting_refuses_a_negative_count(make_app) -> None:
    from receiver.errors import ConfigError

    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        make_app(TRUSTED_PROXIES="-1")


def test_standard_rotation_second_secret_matches(make_app) -> None:
    old, new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "QUJD" * 8
    app = make_app(ENDPOINTS={"std": {"source": "standard", "secrets": [new, old]}})
    body = sample("standard", "license.created").body
    headers = dict(verify.sign_standard(body, old, webhook_id="msg_rotation"))
    response = app.test_client().post("/hooks/std", data=body, headers=headers)
    assert response.status_code == 200 and response.json["signature_status"] == "valid"


def test_secrets_never_in_api_answers(make_app) -> None:
    endpoints = {"fno": {"source": "fno", "auth": "bearer", "token": "tok-0123456789abcdef"}}
    app = make_app(ENDPOINTS=endpoints)
    client = app.test_client()
    body = sample("fno", "product.updated").body
    client.post("/hooks/fno", data=body, headers={"Authorization": "Bearer tok-0123456789abcdef"})
    client.post("/hooks/fno", data=body, headers={"Authorization": "Bearer tok-0123456789abcdeX"})
    for path in ("/api/deliveries", "/api/deliveries/1", "/api/deliveries/2", "/api/events/1"):
        assert "0123456789abcde" not in client.get(path).get_data(as_text=True), path


header_names = st.sampled_from(["Keygen-Signature", "Date", "Digest", "X-Signature",
                                "webhook-id", "webhook-timestamp", "webhook-signature",
                                "N-Signature", "Authorization"])


@pytest.fixture(scope="module")
def enforcing_client(tmp_path_factory, keygen_key):
    from receiver import create_app

    app = create_app({
        "DATABASE": str(tmp_path_factory.mktemp("fuzz") / "receiver.db"), "DISPATCH": "sync",
        "ENDPOINTS": {
            **keygen_endpoint(keygen_key),
            "fno": {"source": "fno", "auth": "bearer", "token": "t0ken-abcdefgh"},
            "std": {"source": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
            "zentitle": {"source": "zentitle"},
        },
    })
    yield app.test_client()
    app.extensions["receiver.upkeep"].stop()  # its thread uses the store's connections
    app.extensions["receiver.store"].close()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=st.lists(st.tuples(header_names,
                                  st.text(st.characters(min_codepoint=32, max_codepoint=255),
                                          max_size=80)), max_size=6),
       endpoint=st.sampled_from(["keygen", "fno", "std", "zentitle"]))
def test_random_signature_headers_never_give_500(enforcing_client, headers, endpoint) -> None:
    body = sample("keygen", "license.created").body
    response = enforcing_client.post(f"/hooks/{endpoint}", data=body, headers=headers)
    assert response.status_code in (200, 400, 401)


def _filters():
    from receiver.store import EventFilters

    return EventFilters()


class HostRewritingProxy(http.server.BaseHTTPRequestHandler):
    """A reverse proxy in front of the receiver, as ngrok or a load balancer: the Host the
    receiver sees is not the public host Keygen signed."""

    upstream = ""

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        target = urllib.parse.urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        connection.putrequest("POST", self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in ("host", "connection"):
                connection.putheader(name, value)
        connection.putheader("Host", f"internal-lb:{target.port}")
        connection.putheader("X-Forwarded-Host", "hooks.example.com")
        connection.endheaders(body)
        answer = connection.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


def test_keygen_through_a_proxy_that_changes_host(serve, keygen_key) -> None:
    config = (f'[endpoints.keygen]\nsource = "keygen"\npublic_key = "{public_hex(keygen_key)}"\n'
              f'url = "{PUBLIC_URL}"\n')
    server = serve(config=config)
    HostRewritingProxy.upstream = server.url
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostRewritingProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}/hooks/keygen"
    try:
        item = sample("keygen", "license.created")
        ok = requests.post(proxy_url, data=item.body, headers=signed(item.body, keygen_key))
        assert ok.status_code == 200, ok.text
        assert ok.json()["signature_status"] == "valid"

        flipped = bytearray(sample("keygen", "license.updated").body)
        headers = signed(bytes(flipped), keygen_key)
        flipped[-5] ^= 1
        refused = requests.post(proxy_url, data=bytes(flipped), headers=headers)
        assert refused.status_code == 401
        stored = requests.get(f"{server.url}/api/deliveries/{refused.json()['delivery_id']}")
        assert stored.json()["signature_status"] == "invalid"
        assert ["Host", f"internal-lb:{urllib.parse.urlsplit(server.url).port}"] in \
            stored.json()["headers"]
    finally:
        proxy.shutdown()
