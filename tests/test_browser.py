"""The inspector in a real browser: Playwright drives Debian's chromium against a real
``receiver serve`` (gunicorn, sync workers) started by the ``serve`` fixture.

- a delivery posted by the test appears in the open history page without a reload;
- search and filters narrow the list, and the URL carries them;
- replay from an event page records a new handler run of a plugin installed as a real
  entry-point distribution.

Skipped when /usr/bin/chromium is absent (``.ci/run`` installs it with apt). Waits are
Playwright's auto-waiting ``expect``; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import all_samples, sample
from .test_reliability import install_plugin
from .test_web_api import FNO_AUTH, LICENSE_KEY, POSTED, RESET_TOKEN

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium "
           "(apt-get install chromium; .ci/run installs it)")

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="browser tests need the playwright package")
expect = playwright_api.expect

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 15_000  # the upper bound of expect's auto-waiting; live polling runs every 2 s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context per test; a script error or CSP violation fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: errors.append(message.text)
           if message.type == "error" else None)
    yield tab
    context.close()
    assert errors == [], errors


def post(server: Any, source: str, name: str, path: str = "/hooks",
         **headers: str) -> dict[str, Any]:
    item = sample(source, name)
    response = requests.post(server.url + path, data=item.body,
                             headers={**item.headers, **headers}, timeout=10)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_browser_history_shows_new_deliveries_live(serve: Any, page: Any) -> None:
    server = serve()
    page.goto(server.url + "/")
    expect(page.get_by_text("No events yet")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("Live")
    page.evaluate("window.stillTheSamePage = true")

    created = post(server, "keygen", "license.created")
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row).to_contain_text("license.created")
    expect(row).to_contain_text("keygen")
    expect(row.locator('[data-badge="dispatch"]')).to_have_text("done")  # refreshed in place
    expect(page.get_by_text("No events yet")).to_be_hidden()

    post(server, "licensespring", "license.created")
    post(server, "keygen", "license.created")  # a vendor retry: a duplicate
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("licensespring")
    expect(rows.nth(1).locator('[data-field="delivery_count"]')).to_have_text("2")
    assert page.evaluate("window.stillTheSamePage") is True  # never reloaded

    rows.nth(1).get_by_role("link", name="license.created").click()
    expect(page).to_have_url(f"{server.url}/events/{created['event_id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("license.created")


def test_browser_rejected_deliveries_appear_live(serve: Any, page: Any) -> None:
    server = serve()
    post(server, "keygen", "license.created")
    page.goto(server.url + "/deliveries?rejected=1")
    expect(page.get_by_text("No rejected deliveries")).to_be_visible()
    requests.post(server.url + "/hooks", data=b'{"type": "<b>broken</b>",',
                  headers={"Content-Type": "application/json"}, timeout=10)
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("400")
    expect(rows.first).to_contain_text("body is not valid JSON")
    expect(page.locator("#rows b")).to_have_count(0)  # text, never markup


def test_browser_search_and_filters_narrow_the_list(serve: Any, page: Any,
                                                    tmp_path: Path) -> None:
    server = serve()
    for source, name in POSTED:
        post(server, source, name, **({"Authorization": FNO_AUTH} if source == "fno" else {}))
    post(server, "keygen", "license.updated")
    page.goto(server.url + "/")
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(len(POSTED) + 1)
    expect(page.locator("#rows .dispatch-pending")).to_have_count(0)
    screenshot = tmp_path / "history.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot of the history page: {screenshot}")
    assert RESET_TOKEN not in page.content()

    # Full-text search: only non-empty fields go into the URL.
    page.get_by_placeholder("Search bodies and fields").fill("jane.doe@example.com")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(f"{server.url}/?q=jane.doe%40example.com")
    expected = requests.get(server.url + "/api/events?q=jane.doe@example.com").json()["events"]
    assert 0 < len(expected) < len(POSTED)
    expect(rows).to_have_count(len(expected))
    for event in expected:
        expect(page.locator(f'#rows tr[data-id="{event["id"]}"]')).to_be_visible()

    # Filters: source and an event-type prefix.
    page.goto(server.url + "/")
    page.locator("summary", has_text="Filters").click()
    page.locator('select[name="source"]').select_option("keygen")
    page.locator('input[name="event_type"]').fill("license.*")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"/\?source=keygen&event_type=license\.(\*|%2A)$"))
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("license.updated")
    expect(rows.nth(1)).to_contain_text("license.created")
    shared = page.url

    # A chip removes its filter; the other one stays.
    page.get_by_role("link", name=re.compile(r"event type: license\.\*")).click()
    expect(page).to_have_url(f"{server.url}/?source=keygen")
    expect(rows).to_have_count(3)

    # The filtered URL can be shared: a new tab shows the same list.
    other = page.context.new_page()
    other.goto(shared)
    expect(other.locator("#rows tr")).to_have_count(2)
    other.close()

    # The subject link narrows to one license's history.
    page.goto(server.url + "/")
    subject = sample("keygen", "license.created").normalized["subject_id"]
    page.locator('#rows tr[data-id]').filter(has_text="license.updated").get_by_role(
        "link", name=subject).click()
    expect(page).to_have_url(f"{server.url}/?subject_id={subject}")
    expect(rows).to_have_count(2)


PLUGIN = '''\
import os
from pathlib import Path

from receiver import on


@on("license.*")
def sync_crm(event, **extra):
    """Fails the first time (the CRM is down), works after."""
    flag = Path(os.environ["ACME_INSPECT_FLAG"])
    if not flag.exists():
        flag.write_text("failed once")
        raise RuntimeError(f"CRM unreachable while syncing {event.subject_id}")
'''


def test_browser_replay_records_a_new_handler_run(serve: Any, page: Any,
                                                  tmp_path: Path) -> None:
    install_plugin(tmp_path / "site", "acme_inspect", PLUGIN)
    server = serve(env={"PYTHONPATH": str(tmp_path / "site"),
                        "ACME_INSPECT_FLAG": str(tmp_path / "flag"),
                        "RECEIVER_DISPATCH": "sync"})
    answer = post(server, "keygen", "license.created")
    event_id = answer["event_id"]
    page.goto(f"{server.url}/events/{event_id}")
    runs = page.locator("#runs table tbody tr[id^=run-]")
    expect(runs).to_have_count(1)
    expect(runs.first).to_contain_text("acme_inspect.sync_crm")
    expect(runs.first).to_contain_text("error")
    expect(page.locator("#runs p.err")).to_have_text(
        re.compile(r"^RuntimeError: CRM unreachable while syncing e0cf059f"))
    page.locator("#runs summary", has_text="Traceback").click()
    expect(page.locator("#runs pre.raw")).to_contain_text('raise RuntimeError(f"CRM unreachable')

    page.get_by_label(re.compile("Only those whose last run failed")).check()
    page.get_by_role("button", name="Replay").click()

    expect(page).to_have_url(f"{server.url}/events/{event_id}#runs")
    expect(page.get_by_role("status")).to_contain_text("Replayed: 1 handler ran, 1 ok, 0 failed")
    expect(runs).to_have_count(2)
    fresh = page.locator("#runs tr.fresh")
    expect(fresh).to_contain_text("replay")
    expect(fresh).to_contain_text("ok")
    recorded = requests.get(f"{server.url}/api/events/{event_id}").json()
    assert [(run["trigger"], run["status"]) for run in recorded["handler_runs"]] == [
        ("delivery", "error"), ("replay", "ok")]
    assert recorded["dispatch_status"] == "done"

    # Copy as curl puts the command on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    button = page.locator(f'[data-copy="curl-{answer["delivery_id"]}"]')
    expect(button).to_have_text("Copy as curl")
    button.click()
    expect(button).to_have_attribute("data-copied", "yes")  # the label says so for 2 s
    copied = page.evaluate("navigator.clipboard.readText()")
    command = page.locator(f"#curl-{answer['delivery_id']}").text_content()
    assert copied == command and copied.startswith("printf '%s' ")

    page.evaluate("window.scrollTo(0, 0)")
    screenshot = tmp_path / "event.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot of the event page: {screenshot}")


# -- the activity chart, what changed, handler health -------------------------------------------


def test_browser_activity_chart_bar_heights_click_and_live(serve: Any, page: Any,
                                                           tmp_path: Path) -> None:
    from receiver.store import open_store

    from .test_observability import traffic

    server = serve()
    store = open_store(server.database)
    traffic(store)  # minute 0: 2 new + 1 retry; minute 1: 1 new + 1 refused; minute 3: 1 new
    store.close()
    page.goto(server.url + "/?since=2026-03-01T10:00:00Z&until=2026-03-01T10:05:00Z")
    bars = page.locator("#activity a.bar")
    expect(bars).to_have_count(5)
    tallest = 3  # the chart is 120 units high: a delivery is 40

    def heights(start: str) -> dict[str, float]:
        segments = page.locator(f'#activity a[data-start="{start}"] rect.seg')
        return {segments.nth(n).get_attribute("data-outcome"):
                float(segments.nth(n).get_attribute("height"))
                for n in range(segments.count())}

    assert heights("2026-03-01T10:00:00Z") == {"new": 2 * 120 / tallest,
                                               "duplicate": 1 * 120 / tallest}
    assert heights("2026-03-01T10:01:00Z") == {"new": 40.0, "refused": 40.0}
    assert heights("2026-03-01T10:02:00Z") == {}
    assert heights("2026-03-01T10:03:00Z") == {"new": 40.0}
    # The text alternative says the same.
    expect(bars.nth(1)).to_have_attribute(
        "aria-label", "2026-03-01 10:01 UTC: 2 deliveries (1 new, 1 refused (4xx))")
    page.screenshot(path=str(tmp_path / "chart.png"), full_page=True)
    print(f"\nscreenshot of the chart: {tmp_path / 'chart.png'}")

    bars.nth(1).click()
    expect(page).to_have_url(re.compile(
        r"/\?since=2026-03-01T10%3A01%3A00Z&until=2026-03-01T10%3A02%3A00Z$"))
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(1)  # the one event first received in that minute
    expect(rows.first).to_contain_text("entitlement.updated")
    expect(page.locator("#activity a.bar")).to_have_count(1)

    # The live view redraws the chart when deliveries arrive.
    page.goto(server.url + "/deliveries")
    expect(page.locator("#activity figcaption strong")).to_have_text("6")
    post(server, "keygen", "license.created")
    expect(page.locator("#activity figcaption strong")).to_have_text("7")
    expect(page.locator("#rows tr")).to_have_count(7)


def test_browser_shows_what_a_license_update_changed(serve: Any, page: Any) -> None:
    server = serve()
    post(server, "keygen", "license.created")
    updated = post(server, "keygen", "license.updated")
    page.goto(f"{server.url}/events/{updated['event_id']}")
    changes = page.locator("#changes table.changes tbody tr")
    expect(changes.first).to_be_visible()
    expected = requests.get(f"{server.url}/api/events/{updated['event_id']}/changes").json()
    assert expected["previous_id"] is not None and expected["changes"]
    expect(changes).to_have_count(len(expected["changes"]))
    for change in expected["changes"]:
        row = page.locator("#changes tr", has=page.locator(f'td:text-is("{change["path"]}")'))
        expect(row).to_contain_text(change["op"])
    expiry = page.locator("#changes tr", has=page.locator('td:text-is("data.attributes.expiry")'))
    expect(expiry).to_contain_text("2025-06-03T09:43:39.520Z")
    summary = page.locator("#timeline li.current [data-summary]")
    expect(summary).to_contain_text("expiry 2025-06-03T09:43:39.520Z → 2025-06-03T10:03:03.188Z")
    assert LICENSE_KEY not in page.content()


HEALTH_PLUGIN = '''\
import os
from pathlib import Path

from receiver import on


@on("license.*")
def push_to_crm(event, **extra):
    """Fails until the CRM is back (a file says so)."""
    if not Path(os.environ["ACME_CRM_BACK"]).exists():
        raise RuntimeError(f"CRM unreachable for {event.event_type}")
'''


def test_browser_handlers_page_bulk_replay_fixes_the_failures(serve: Any, page: Any,
                                                             tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site, "acme_health", HEALTH_PLUGIN)
    crm_back = tmp_path / "crm-is-back"
    server = serve(env={"PYTHONPATH": str(site), "ACME_CRM_BACK": str(crm_back),
                        "RECEIVER_DISPATCH": "sync"})
    for name in ("license.created", "license.updated", "license.renewed"):
        post(server, "keygen", name)

    page.goto(server.url + "/handlers")
    row = page.locator('tr[data-handler="acme_health.push_to_crm"]')
    expect(row.locator('[data-field="runs"]')).to_have_text("3")
    expect(row.locator('[data-field="failing"]')).to_have_text("3")
    expect(row.locator('[data-field="last_failure"]')).to_contain_text(
        "RuntimeError: CRM unreachable for license.renewed")

    row.get_by_role("link", name="Failed runs…").click()
    expect(page.locator("#replay-count [data-count]")).to_have_text("3")
    crm_back.write_text("up")
    page.get_by_role("button", name="Replay on 3 events").click()

    expect(page).to_have_url(f"{server.url}/handlers#handlers")
    expect(page.locator("#replay-result")).to_contain_text(
        "on 3 events: 3 ok, 0 failed")
    expect(row.locator('[data-field="failing"]')).to_have_text("0")
    expect(row.locator('[data-field="runs"]')).to_have_text("6")
    expect(row.get_by_role("link", name="Failed runs…")).to_have_count(0)
    events = requests.get(server.url + "/api/events").json()["events"]
    assert {event["dispatch_status"] for event in events} == {"done"}


#: The README's picture of the inspector; ``RECEIVER_UPDATE_SCREENSHOT=1`` rewrites it.
README_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "inspector.png"
UPDATE_SCREENSHOT = os.environ.get("RECEIVER_UPDATE_SCREENSHOT") == "1"  # read before cleaning


def test_browser_readme_screenshot_shows_the_history(serve: Any, page: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's screenshot comes from this fixture: one delivery of each sender, a
    duplicate and a refused request, in the history at 1280x800. The test always takes it
    (into a temporary file) and checks it shows the rows; with RECEIVER_UPDATE_SCREENSHOT=1
    it replaces docs/inspector.png."""
    import struct

    server = serve()
    for source, name in [("keygen", "license.created"), ("licensespring", "license.created"),
                         ("keygen", "user.password-reset"), ("keygen", "license.created")]:
        post(server, source, name)
    for item in all_samples():
        if item.source in {"fno", "zentitle", "standard"} and not item.name.startswith("ping"):
            requests.post(server.url + "/hooks", data=item.body, headers=item.headers,
                          timeout=10)
            break
    requests.post(server.url + "/hooks", data=b'{"type": "license.created",',
                  headers={"Content-Type": "application/json"}, timeout=10)

    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(server.url + "/")
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(4)
    expect(rows.first).to_be_visible()
    target = README_SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "inspector.png"
    picture = page.screenshot(path=str(target))
    assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", picture[16:24]) == (1280, 800)
    assert README_SCREENSHOT.exists(), "docs/inspector.png: run with RECEIVER_UPDATE_SCREENSHOT=1"


# -- handler retries ----------------------------------------------------------------------------

RETRY_PLUGIN = '''
from receiver import on


@on("license.*")
def crm_retry(event, attempt, **extra):
    """Fails its first attempt (the CRM answers 502), works from the second on."""
    if attempt < 2:
        raise RuntimeError(f"CRM answered 502 on attempt {attempt}")
'''


def test_browser_retry_now_runs_the_scheduled_attempt(serve: Any, page: Any,
                                                      tmp_path: Path) -> None:
    from .waiting import wait_for

    install_plugin(tmp_path / "site", "acme_retry", RETRY_PLUGIN)
    server = serve(env={"PYTHONPATH": str(tmp_path / "site"), "RECEIVER_DISPATCH": "background",
                        "RECEIVER_HANDLER_BACKOFF": "1h"})
    event_id = post(server, "keygen", "license.created")["event_id"]

    def event() -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(f"{server.url}/api/events/{event_id}",
                                              timeout=10).json()
        return answer

    wait_for(lambda: event()["dispatch_status"] == "retrying",
             message=lambda: f"never retrying: {event()}\n{server.output()}")
    page.goto(f"{server.url}/events/{event_id}")
    expect(page.locator(".page-head .badge.dispatch")).to_have_text("retrying")
    expect(page.locator("#schedule li")).to_have_text(re.compile(
        r"acme_retry\.crm_retry: attempt 2 of 11, next at \d\d:\d\d:\d\d UTC \(in \d+ min\)"))
    runs = page.locator("#runs table tbody tr[id^=run-]")
    expect(runs).to_have_count(1)
    expect(runs.first.locator('[data-field="attempt"]')).to_have_text("attempt 1")
    expect(page.locator("#runs p.err")).to_have_text("RuntimeError: CRM answered 502 on attempt 1")

    page.get_by_role("button", name="Retry now").click()
    expect(page).to_have_url(f"{server.url}/events/{event_id}#runs")
    expect(page.get_by_role("status")).to_contain_text("1 scheduled attempt is due now")
    wait_for(lambda: event()["dispatch_status"] == "done",
             message=lambda: f"the retry did not run: {event()}\n{server.output()}")
    page.reload()
    expect(runs).to_have_count(2)
    expect(runs.nth(1)).to_contain_text("retry")
    expect(runs.nth(1).locator('[data-field="attempt"]')).to_have_text("attempt 2")
    expect(runs.nth(1)).to_contain_text("ok")
    expect(page.locator("#schedule")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry now")).to_have_count(0)


# -- problems --------------------------------------------------------------------------------


def test_browser_header_counts_problems_and_acknowledge_drops_it(serve: Any, page: Any) -> None:
    from receiver.problems import kinds
    from receiver.store import open_store

    server = serve()
    store = open_store(server.database)
    for endpoint in ("keygen", "zentitle"):
        store.note_problem(kinds.SIGNATURE_REFUSED, endpoint,
                           kinds.summary(kinds.SIGNATURE_REFUSED, endpoint),
                           kinds.link(kinds.SIGNATURE_REFUSED, endpoint))
    store.close()
    page.goto(server.url + "/")
    tab = page.locator("#problems-tab")
    expect(tab).to_have_text("Problems 2")
    expect(tab.locator(".problem-count")).to_have_class(re.compile(r"\bwarn\b"))

    tab.click()
    expect(page).to_have_url(server.url + "/problems")
    rows = page.locator("#problems tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("zentitle")  # newest first among the open ones
    expect(rows.first).to_contain_text("endpoint zentitle refuses deliveries")
    expect(rows.first.locator('[data-field="status"]')).to_have_text("open")

    rows.first.get_by_role("button", name="Acknowledge").click()
    expect(page).to_have_url(re.compile(r"/problems#problem-\d+$"))
    expect(tab).to_have_text("Problems 1")
    # Open ones first: keygen is on top now, the acknowledged zentitle below it.
    expect(rows.first).to_contain_text("keygen")
    expect(rows.nth(1).locator('[data-field="status"]')).to_have_text("acknowledged")
    expect(rows.nth(1).get_by_role("button", name="Acknowledge")).to_have_count(0)
    rows.first.get_by_role("link", name="what it is about").click()
    expect(page).to_have_url(re.compile(r"/deliveries\?rejected=1&endpoint=keygen$"))
    expect(tab).to_have_text("Problems 1")


# -- phones, desktop tables, the chart's keyboard, one stream of requests ----------------------

#: Layout facts of the page in front of the browser (never pixels compared with a picture).
LAYOUT = """() => {
  const visible = (el) => el.getClientRects().length > 0;
  const lines = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    return new Set([...range.getClientRects()].filter(r => r.width > 0)
                    .map(r => Math.round(r.top))).size;
  };
  const cells = [...document.querySelectorAll("table.list td")].filter(visible);
  return {
    scrollWidth: document.scrollingElement.scrollWidth,
    innerWidth: window.innerWidth,
    unlabelled: cells.filter(td => td.hasAttribute("data-label")
        && !getComputedStyle(td, "::before").content.includes(td.getAttribute("data-label")))
        .map(td => td.getAttribute("data-label")),
    clipped: cells.filter(td => td.scrollWidth > td.clientWidth + 1)
        .map(td => td.getAttribute("data-label") + ": " + td.textContent.trim().slice(0, 40)),
    headerShown: [...document.querySelectorAll("table.list thead")].some(visible),
    tokens: [...document.querySelectorAll(
        "table.list .c-id a, table.list .c-source [data-field=source], table.list .c-handler .mono"
      )].filter(visible).filter(el => el.textContent.trim() && lines(el) > 1)
        .map(el => el.textContent.trim()),
  };
}"""


def busy_receiver(server: Any) -> dict[str, int]:
    """Deliveries of each kind the pages show: events from three senders (one with a long
    handler name, one a duplicate, one a long event type), an event with a 400-item array, a
    refused request."""
    for source, name in [("keygen", "license.created"), ("licensespring", "license.created"),
                         ("keygen", "user.password-reset"), ("keygen", "license.created")]:
        post(server, source, name)
    long = post(server, "licensespring", "license_user_group.license_user.manager_assigned")
    big = requests.post(server.url + "/hooks", json={
        "type": "license.updated", "data": {"id": "lic_big", "items": list(range(400))}},
        timeout=10).json()
    refused = requests.post(server.url + "/hooks", data=b'{"type": "license.created",',
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert refused.status_code == 400
    return {"big": big["event_id"], "delivery": big["delivery_id"],
            "long": long["event_id"], "long_delivery": long["delivery_id"]}


def test_browser_every_page_fits_a_phone_and_labels_every_value(serve: Any, page: Any) -> None:
    server = serve()
    made = busy_receiver(server)
    page.set_viewport_size({"width": 390, "height": 844})
    paths = ["/", "/deliveries", "/deliveries?rejected=1", f"/deliveries/{made['delivery']}",
             f"/events/{made['big']}", f"/events/{made['long']}",
             f"/deliveries/{made['long_delivery']}", "/handlers", "/problems", "/login"]
    for path in paths:
        page.goto(server.url + path)
        layout = page.evaluate(LAYOUT)
        assert layout["scrollWidth"] <= layout["innerWidth"], (path, layout)
        assert layout["unlabelled"] == [], (path, layout)
        assert layout["clipped"] == [], (path, layout)
        assert not layout["headerShown"], path
    # The filters fold away: the newest row is on the first screen.
    for path in ("/", "/deliveries"):
        page.goto(server.url + path)
        expect(page.locator("#rows tr").first).to_be_in_viewport()
    # The handlers page names each number (it read "29 13 13").
    page.goto(server.url + "/handlers")
    runs = page.locator('tr[data-handler] td[data-field="runs"]').first
    assert page.evaluate("(td) => getComputedStyle(td, '::before').content",
                         runs.element_handle()) == '"Runs: "'


def test_browser_desktop_tables_keep_tokens_whole(serve: Any, page: Any) -> None:
    server = serve()
    made = busy_receiver(server)
    page.set_viewport_size({"width": 1280, "height": 800})
    for path in ("/", "/deliveries", "/handlers"):
        page.goto(server.url + path)
        layout = page.evaluate(LAYOUT)
        assert layout["headerShown"], path
        assert layout["tokens"] == [], (path, layout)  # no id, source or handler name wraps
        assert layout["scrollWidth"] <= layout["innerWidth"], (path, layout)
    # The redeliver form: the Host checkbox sits on the line of its label.
    page.goto(f"{server.url}/deliveries/{made['delivery']}")
    check = page.locator("#redeliver label.check")
    box = check.locator("input[type=checkbox]").bounding_box()
    label = check.bounding_box()
    assert box is not None and label is not None
    assert label["y"] <= box["y"] and box["y"] + box["height"] <= label["y"] + label["height"]
    assert page.evaluate("(el) => getComputedStyle(el).flexDirection",
                         check.element_handle()) == "row"
    # A big body starts folded; in-page links land below the sticky header.
    page.goto(f"{server.url}/events/{made['big']}")
    array = page.locator("#data summary", has_text="400 items").locator("xpath=..")
    expect(array).to_have_count(1)
    expect(array).not_to_have_attribute("open", re.compile(".*"))
    page.get_by_role("link", name=re.compile(r"^Handler runs")).click()
    expect(page).to_have_url(re.compile("#runs$"))
    header_bottom = page.evaluate("document.querySelector('header.top').getBoundingClientRect()"
                                  ".bottom")
    assert page.evaluate("document.getElementById('runs').getBoundingClientRect().top"
                         ) >= header_bottom


def test_browser_activity_chart_is_one_tab_stop_with_an_axis(serve: Any, page: Any) -> None:
    from receiver.store import open_store

    from .test_observability import traffic

    server = serve()
    store = open_store(server.database)
    traffic(store)
    store.close()
    page.goto(server.url + "/?since=2026-03-01T10:00:00Z&until=2026-03-01T10:05:00Z")
    expect(page.locator("#activity a.bar")).to_have_count(5)
    expect(page.locator("#activity svg.chart-y text")).to_have_text(["0", "1", "2", "3"])
    expect(page.locator("#activity figcaption")).to_contain_text(
        "6 deliveries in all, 2026-03-01 10:00 UTC to 2026-03-01 10:04 UTC; one bar per "
        "minute, at most 3 in one minute")

    page.locator("#activity").scroll_into_view_if_needed()
    page.locator("a.chip").last.focus()  # the last thing before the chart
    stops = []
    for _ in range(12):
        page.keyboard.press("Tab")
        where = page.evaluate("""() => { const el = document.activeElement;
            return el.closest('svg.chart') ? 'bar ' + el.getAttribute('data-start')
                 : el.closest('#activity') ? 'chart ' + el.textContent.trim() : 'outside'; }""")
        stops.append(where)
        if where.startswith("chart "):
            break
    bars = [stop for stop in stops if stop.startswith("bar ")]
    assert bars == ["bar 2026-03-01T10:04:00Z"], stops  # the newest bar, once
    assert stops[stops.index(bars[0]) + 1] == "chart As a table", stops
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.getAttribute('data-start')") == (
        "2026-03-01T10:02:00Z")
    page.keyboard.press("Home")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(
        r"/\?since=2026-03-01T10%3A00%3A00Z&until=2026-03-01T10%3A01%3A00Z$"))
    expect(page.locator("#activity figcaption")).to_contain_text(
        "in the minute 2026-03-01 10:00 UTC")

    # The Rejected tab charts what it lists.
    page.goto(server.url + "/deliveries?rejected=1&since=2026-03-01T10:00:00Z"
              "&until=2026-03-01T10:05:00Z")
    expect(page.locator("#activity figcaption strong")).to_have_text("1")
    expect(page.locator("#activity figcaption")).not_to_contain_text("ignores")


def test_browser_refused_request_appears_live_in_the_one_stream(serve: Any, page: Any) -> None:
    from .waiting import wait_for

    server = serve()
    post(server, "keygen", "license.created")
    page.goto(server.url + "/deliveries")
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#live-status")).to_have_text("Live")
    refused = requests.post(server.url + "/hooks", data=b'{"type": "license.created",',
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert refused.status_code == 400
    wait_for(lambda: requests.get(server.url + "/api/deliveries?rejected=1",
                                  timeout=10).json()["deliveries"],
             message="the refused request was not stored")
    post(server, "keygen", "license.created")  # a duplicate, on top of it
    expect(rows).to_have_count(3)
    expect(rows.nth(1).locator('[data-field="status_code"]')).to_have_text("400")
    expect(rows.nth(1).locator('[data-field="error"]')).to_contain_text("not valid JSON")
    expect(rows.first.locator('[data-field="duplicate"]')).to_be_visible()
    expect(rows.nth(2).locator('[data-field="status_code"]')).to_have_text("200")
    # The tabs count every request and the rejected ones.
    page.reload()
    expect(page.get_by_role("link", name=re.compile(r"^Deliveries"))).to_have_text(
        re.compile(r"Deliveries\s+3"))
    expect(page.get_by_role("link", name=re.compile(r"^Rejected"))).to_have_text(
        re.compile(r"Rejected\s+1"))
