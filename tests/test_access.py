"""Access behind ``RECEIVER_INSPECTOR_TOKEN`` (docs/reference.md#access): sessions that end
when signed out or when the token changes, on every worker (two apps on one database stand
for two gunicorn workers or nodes); ``Cache-Control: no-store`` on everything behind the
token; the brake on wrong tokens, with a clock the test moves (nothing sleeps)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from receiver.web.brake import COOLDOWN, FAILURES, WINDOW, TokenBrake

from .test_web_api import BEARER, RESET_TOKEN, TOKEN, post_sample
from .test_web_inspect import csrf_of, get_page

pytestmark = pytest.mark.both_backends

COOKIE = "receiver_session"


def sign_in(client: Any, token: str = TOKEN) -> Any:
    page = get_page(client, "/login")
    return client.post("/login", data={"csrf_token": csrf_of(page), "token": token})


def cookie_of(client: Any) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return str(cookie.value)


def browser_with(app: Any, cookie: str) -> Any:
    browser = app.test_client()
    browser.set_cookie(COOKIE, cookie)
    return browser


# -- sessions ---------------------------------------------------------------------------------


def test_a_cookie_copied_before_logout_is_refused_after_it(make_app: Any) -> None:
    first, second = make_app(INSPECTOR_TOKEN=TOKEN), make_app(INSPECTOR_TOKEN=TOKEN)
    browser = first.test_client()
    assert sign_in(browser).status_code == 303
    copied = cookie_of(browser)
    thief = browser_with(second, copied)  # another worker, or another node
    assert thief.get("/api/events").status_code == 200
    page = get_page(browser, "/")
    assert browser.post("/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
    for app in (first, second):
        stale = browser_with(app, copied)
        assert stale.get("/api/events").status_code == 401
        assert stale.get("/").status_code == 303
    # Signing in again makes a new session; the old cookie stays refused.
    assert sign_in(browser).status_code == 303
    assert cookie_of(browser) != copied
    assert browser.get("/api/events").status_code == 200
    assert browser_with(second, copied).get("/api/events").status_code == 401


def test_each_sign_in_has_its_own_session(make_app: Any) -> None:
    app = make_app(INSPECTOR_TOKEN=TOKEN)
    laptop, phone = app.test_client(), app.test_client()
    sign_in(laptop)
    sign_in(phone)
    assert cookie_of(laptop) != cookie_of(phone)
    page = get_page(laptop, "/")
    laptop.post("/logout", data={"csrf_token": csrf_of(page)})
    assert laptop.get("/api/events").status_code == 401
    assert phone.get("/api/events").status_code == 200  # signed out of one browser only


def test_a_new_token_signs_everyone_out_even_when_changed_back(make_app: Any) -> None:
    old = make_app(INSPECTOR_TOKEN=TOKEN)
    browser = old.test_client()
    sign_in(browser)
    copied = cookie_of(browser)
    assert browser.get("/api/events").status_code == 200
    make_app(INSPECTOR_TOKEN="a-new-token-456")  # a worker starts with the new token
    assert browser.get("/api/events").status_code == 401  # the old worker refuses it too
    back = make_app(INSPECTOR_TOKEN=TOKEN)  # and the old token again
    assert browser_with(back, copied).get("/api/events").status_code == 401
    assert browser_with(back, copied).get("/").status_code == 303


def test_a_session_ends_with_its_lifetime_however_often_it_is_used(make_app: Any) -> None:
    app = make_app(INSPECTOR_TOKEN=TOKEN, PERMANENT_SESSION_LIFETIME=dt.timedelta(days=1))
    browser = app.test_client()
    sign_in(browser)
    store = app.extensions["receiver.store"]
    [(expires_at,)] = store.rows("SELECT expires_at FROM inspector_sessions")
    ends = dt.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    assert dt.timedelta(hours=23) < ends - dt.datetime.now(dt.UTC) <= dt.timedelta(days=1)
    assert browser.get("/api/events").status_code == 200
    with store._run_write() as conn:  # the day has passed
        conn.execute("UPDATE inspector_sessions SET expires_at = '2000-01-01T00:00:00.000Z'")
    assert browser.get("/api/events").status_code == 401


def test_the_store_keeps_no_session_id_and_forgets_ended_sessions(make_app: Any) -> None:
    app = make_app(INSPECTOR_TOKEN=TOKEN)
    store = app.extensions["receiver.store"]
    browser = app.test_client()
    sign_in(browser)
    content = app.session_interface.get_signing_serializer(app).loads(cookie_of(browser))
    session_id = content["sid"]
    [(stored,)] = store.rows("SELECT id FROM inspector_sessions")
    assert session_id and stored != session_id and session_id not in stored
    with store._run_write() as conn:
        conn.execute("UPDATE inspector_sessions SET expires_at = '2000-01-01T00:00:00.000Z'")
    sign_in(app.test_client())  # a sign-in forgets the sessions that ended
    assert len(store.rows("SELECT id FROM inspector_sessions")) == 1


# -- no-store ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "/api/events", "/api/events/1", "/api/events/1?reveal=1", "/api/deliveries/1",
    "/api/deliveries/1/raw", "/api/deliveries/1?reveal=1", "/api/activity", "/-/metrics",
    "/", "/events/1?reveal=1", "/deliveries/1", "/api/events/999999"])
def test_every_answer_behind_the_token_is_not_stored(make_app: Any, url: str) -> None:
    client = make_app(INSPECTOR_TOKEN=TOKEN).test_client()
    post_sample(client, "keygen", "user.password-reset")
    response = client.get(url, headers=BEARER)
    assert response.status_code in (200, 404)
    assert response.headers["Cache-Control"] == "no-store"
    refused = client.get(url)  # the 401 or the redirect to sign in, too
    assert refused.headers["Cache-Control"] == "no-store"


def test_reveal_and_raw_are_not_stored_without_a_token_either(client: Any) -> None:
    post_sample(client, "keygen", "user.password-reset")
    for url in ("/api/events/1?reveal=1", "/api/deliveries/1/raw"):
        response = client.get(url)
        assert response.status_code == 200 and RESET_TOKEN in response.get_data(as_text=True)
        assert response.headers["Cache-Control"] == "no-store"


def test_ingest_and_static_files_keep_their_own_caching(make_app: Any) -> None:
    client = make_app(INSPECTOR_TOKEN=TOKEN).test_client()
    answer = client.post("/hooks", json={"type": "license.created", "id": 1})
    assert answer.status_code == 200 and "no-store" not in answer.headers.get(
        "Cache-Control", "")
    static = client.get("/static/inspector.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get(
        "Cache-Control", "")


# -- the brake on wrong tokens ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def braked_app(make_app: Any) -> tuple[Any, Clock]:
    app = make_app(INSPECTOR_TOKEN=TOKEN)
    clock = Clock()
    app.extensions["receiver.token_brake"].clock = clock
    return app, clock


def from_address(app: Any, address: str) -> Any:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_wrong_tokens_brake_their_address_only(braked_app: tuple[Any, Clock]) -> None:
    app, clock = braked_app
    guesser, other = from_address(app, "192.0.2.1"), from_address(app, "198.51.100.2")
    for guess in range(FAILURES):
        response = guesser.get("/api/events", headers={"Authorization": f"Bearer no-{guess}"})
        assert response.status_code == 401
    braked = guesser.get("/api/events", headers=BEARER)  # even the right token waits
    assert braked.status_code == 429
    assert int(braked.headers["Retry-After"]) == COOLDOWN
    assert "too many wrong inspector tokens" in braked.get_json()["error"]
    assert braked.headers["Cache-Control"] == "no-store"
    # Another address: the right token works, a wrong one is a plain 401.
    assert other.get("/api/events", headers=BEARER).status_code == 200
    assert other.get("/api/events", headers={"Authorization": "Bearer no"}).status_code == 401
    # Ingest, health and requests without a token are not braked.
    assert guesser.post("/hooks", json={"type": "license.created", "id": 2}).status_code == 200
    assert guesser.get("/-/health").status_code == 200
    assert guesser.get("/api/events").status_code == 401
    clock.now += COOLDOWN - 1
    assert guesser.get("/api/events", headers=BEARER).headers["Retry-After"] == "1"
    clock.now += 1  # cooled down
    assert guesser.get("/api/events", headers=BEARER).status_code == 200


def test_wrong_tokens_at_the_login_form_brake_too(braked_app: tuple[Any, Clock]) -> None:
    app, _ = braked_app
    guesser = from_address(app, "192.0.2.1")
    for guess in range(FAILURES):
        assert sign_in(guesser, f"no-{guess}").status_code == 401
    braked = sign_in(guesser)
    assert braked.status_code == 429 and braked.headers["Retry-After"] == str(int(COOLDOWN))
    assert "too many wrong inspector tokens" in braked.get_data(as_text=True)
    assert guesser.get("/api/events").status_code == 401  # not signed in
    assert sign_in(from_address(app, "198.51.100.2")).status_code == 303


def test_a_signed_in_browser_is_not_braked(braked_app: tuple[Any, Clock]) -> None:
    app, _ = braked_app
    colleague = from_address(app, "192.0.2.1")
    sign_in(colleague)
    guesser = from_address(app, "192.0.2.1")  # behind the same address
    for guess in range(FAILURES + 1):
        guesser.get("/api/events", headers={"Authorization": f"Bearer no-{guess}"})
    assert colleague.get("/api/events").status_code == 200


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    brake = TokenBrake(clock=clock)
    for _ in range(FAILURES - 1):
        brake.failed("192.0.2.1")
    clock.now += WINDOW + 1
    brake.failed("192.0.2.1")
    assert brake.retry_after("192.0.2.1") is None
    for _ in range(FAILURES - 1):
        brake.failed("192.0.2.1")
    assert brake.retry_after("192.0.2.1") == COOLDOWN


def test_the_brake_remembers_a_bounded_number_of_addresses() -> None:
    clock = Clock()
    brake = TokenBrake(clock=clock, max_clients=100, failures=2)
    brake.failed("first")
    brake.failed("first")
    for number in range(500):
        brake.failed(f"198.51.100.{number}")
    assert len(brake) == 100
    assert brake.retry_after("first") is None  # the oldest went first


# -- the database file ------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_the_sqlite_files_are_readable_by_their_owner_only(make_app: Any, db_path: str) -> None:
    """As its ``.secret`` is: the history holds bodies and headers with secrets in them."""
    import os
    import stat

    client = make_app().test_client()
    assert client.post("/hooks", json={"type": "license.created", "id": 1}).status_code == 200
    for suffix in ("", "-wal", "-shm", ".secret"):
        mode = stat.S_IMODE(os.stat(db_path + suffix).st_mode)
        assert mode == 0o600, (suffix, oct(mode))


def test_a_brake_of_zero_never_brakes(make_app: Any) -> None:
    app = make_app(INSPECTOR_TOKEN=TOKEN, TOKEN_BRAKE=0)
    guesser = from_address(app, "192.0.2.1")
    for guess in range(FAILURES * 3):
        response = guesser.get("/api/events", headers={"Authorization": f"Bearer no-{guess}"})
        assert response.status_code == 401
    assert guesser.get("/api/events", headers=BEARER).status_code == 200
