"""One-time sign-in links: ``receiver serve`` (on a non-loopback host without a token) and
``receiver login-link`` print ``/login/<code>``, a signed nonce that expires in minutes and
signs in once, across workers; the token itself is never in a URL."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from receiver.cli import cli
from receiver.login_links import LOGIN_LINK_MINUTES, LOGIN_LINK_SALT, make_login_code

from .test_web_api import TOKEN
from .test_web_inspect import csrf_of, get_page, text_of


@pytest.fixture
def locked_app(make_app: Any) -> Any:
    return make_app(INSPECTOR_TOKEN=TOKEN)


def use_link(client: Any, code: str) -> Any:
    page = get_page(client, f"/login/{code}")
    assert "Sign in with this link" in text_of(page)
    return client.post(f"/login/{code}", data={"csrf_token": csrf_of(page)})


def test_login_link_signs_in_once(locked_app: Any) -> None:
    code = make_login_code(locked_app.secret_key)
    browser = locked_app.test_client()
    assert browser.get("/").status_code == 303  # signed out
    get_page(browser, f"/login/{code}")
    assert browser.get("/").status_code == 303  # opening the link (GET) does not sign in
    answer = use_link(browser, code)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    assert browser.get("/").status_code == 200
    assert browser.get("/api/events").status_code == 200

    other = locked_app.test_client()
    again = use_link(other, code)
    assert again.status_code == 401
    assert "This sign-in link was used already" in text_of(again.get_data(as_text=True))
    assert other.get("/").status_code == 303


def test_login_link_used_mark_is_in_the_database(make_app: Any) -> None:
    """Two apps on one database stand for two gunicorn workers: a link used on one is used
    on the other."""
    first, second = make_app(INSPECTOR_TOKEN=TOKEN), make_app(INSPECTOR_TOKEN=TOKEN)
    assert first.secret_key == second.secret_key  # kept beside the database
    code = make_login_code(first.secret_key)
    assert use_link(first.test_client(), code).status_code == 303
    assert use_link(second.test_client(), code).status_code == 401


def old_code(secret_key: Any, age_seconds: int) -> str:
    """A link made ``age_seconds`` ago (signed with that time, as it would have been)."""
    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    return URLSafeTimedSerializer(secret_key, salt=LOGIN_LINK_SALT, signer=Then).dumps(
        {"n": f"nonce-{age_seconds}"})


@pytest.mark.parametrize(("make_code", "message"), [
    (lambda key: old_code(key, LOGIN_LINK_MINUTES * 60 + 5),
     f"This sign-in link has expired (links last {LOGIN_LINK_MINUTES} minutes)"),
    (lambda key: make_login_code(key)[:-3] + "AAA",
     "This is not a sign-in link of this receiver"),
    (lambda key: make_login_code("another receiver's key"), "made with another SECRET_KEY"),
    (lambda key: URLSafeTimedSerializer(key, salt="receiver.csrf").dumps("x"),
     "This is not a sign-in link of this receiver"),
])
def test_login_link_refused_when_old_changed_or_foreign(locked_app: Any, make_code: Any,
                                                        message: str) -> None:
    browser = locked_app.test_client()
    response = browser.get(f"/login/{make_code(locked_app.secret_key)}")
    assert response.status_code == 401
    assert message in text_of(response.get_data(as_text=True))
    assert browser.get("/").status_code == 303


def test_login_link_within_its_minutes_is_fine(locked_app: Any) -> None:
    code = old_code(locked_app.secret_key, LOGIN_LINK_MINUTES * 60 - 30)
    assert use_link(locked_app.test_client(), code).status_code == 303


def test_login_link_on_an_open_receiver_goes_to_login(client: Any, app: Any) -> None:
    response = client.get(f"/login/{make_login_code(app.secret_key)}")
    assert response.status_code == 303 and response.headers["Location"] == "/login"


def test_login_link_post_needs_the_csrf_token(locked_app: Any) -> None:
    browser = locked_app.test_client()
    code = make_login_code(locked_app.secret_key)
    get_page(browser, f"/login/{code}")
    assert browser.post(f"/login/{code}").status_code == 403
    assert use_link(browser, code).status_code == 303  # not used up by the refused POST


def test_store_use_login_nonce_once(store: Any, db_path: str) -> None:
    from receiver.store import open_store

    assert store.use_login_nonce("n-1") is True
    assert store.use_login_nonce("n-1") is False
    other = open_store(db_path)  # another process's connection
    try:
        assert other.use_login_nonce("n-1") is False
        assert other.use_login_nonce("n-2") is True
    finally:
        other.close()
    assert store.use_login_nonce("n-2") is False


def test_cli_login_link_prints_a_link_the_server_accepts(make_app: Any, db_path: str) -> None:
    runner = CliRunner()
    refused = runner.invoke(cli, ["login-link", "--db", db_path])
    assert refused.exit_code == 1 and "RECEIVER_INSPECTOR_TOKEN is not set" in refused.output
    result = runner.invoke(cli, ["login-link", "--db", db_path, "--base-url",
                                 "https://hooks.example.com/"],
                           env={"RECEIVER_INSPECTOR_TOKEN": TOKEN}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "works once, for 15 minutes" in result.output and TOKEN not in result.output
    code = re.search(r"\n    https://hooks\.example\.com/login/(\S+)\n", result.output)
    assert code is not None
    app = make_app(INSPECTOR_TOKEN=TOKEN)  # the same database, so the same SECRET_KEY
    assert use_link(app.test_client(), code.group(1)).status_code == 303


def test_serve_prints_a_one_time_link_not_the_token_in_a_url(serve: Any) -> None:
    server = serve("--host", "0.0.0.0", "--workers", "2")
    output = server.output()
    token = re.search(r"made one \(scripts send it as Authorization: Bearer\):\n\s+(\S+)",
                      output)
    assert token is not None, output
    assert f"token={token.group(1)}" not in output
    found = re.search(r"(http://127\.0\.0\.1:\d+)/login/(\S+)", output)
    assert found is not None, output
    assert token.group(1) not in found.group(0)
    base, code = server.url, found.group(2)
    assert found.group(1) == base

    browser = requests.Session()
    page = browser.get(f"{base}/login/{code}", timeout=10)
    assert page.status_code == 200
    signed = browser.post(f"{base}/login/{code}", data={"csrf_token": csrf_of(page.text)},
                          timeout=10, allow_redirects=False)
    assert signed.status_code == 303
    assert browser.get(f"{base}/api/events", timeout=10).status_code == 200
    # Used: refused by every worker (the mark is in the database), for every new browser.
    for _ in range(4):
        stranger = requests.Session()
        page = stranger.get(f"{base}/login/{code}", timeout=10)
        again = stranger.post(f"{base}/login/{code}", data={"csrf_token": csrf_of(page.text)},
                              timeout=10, allow_redirects=False)
        assert again.status_code == 401
        assert stranger.get(f"{base}/api/events", timeout=10).status_code == 401
    # The printed token still works where a token belongs: a header.
    assert requests.get(f"{base}/api/events", timeout=10, headers={
        "Authorization": f"Bearer {token.group(1)}"}).status_code == 200



@pytest.mark.parametrize("host", ["", " ", "*", "0.0.0.0", "::", "[::]", "example.com",
                                  "192.0.2.7"])
def test_serve_counts_empty_and_wildcard_hosts_as_public(host: str) -> None:
    from receiver.cli.serve import is_loopback_host

    assert not is_loopback_host(host)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"])
def test_serve_counts_loopback_hosts_as_loopback(host: str) -> None:
    from receiver.cli.serve import is_loopback_host

    assert is_loopback_host(host)


def test_serve_on_an_empty_host_makes_a_token_and_refuses_strangers(serve: Any) -> None:
    """``--host ""`` listens on every interface: it gets a token, as 0.0.0.0 does."""
    server = serve("--host", "", "--workers", "1")
    output = server.output()
    token = re.search(r"made one \(scripts send it as Authorization: Bearer\):\n\s+(\S+)",
                      output)
    assert token is not None, output
    assert requests.get(f"{server.url}/api/events", timeout=10).status_code == 401
    assert requests.get(f"{server.url}/api/events", timeout=10, headers={
        "Authorization": f"Bearer {token.group(1)}"}).status_code == 200
