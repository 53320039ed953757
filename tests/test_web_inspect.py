"""The inspector's pages (docs/reference.md): history with filters and keyset paging, rejected
deliveries, event and delivery pages, replay and redeliver forms with CSRF, masking, HTML
escaping of hostile payloads, and access with and without ``RECEIVER_INSPECTOR_TOKEN``.

Assertions are on rendered text (``text_of``), and each list page is compared with its JSON
twin: the rows a page shows are the ids the API answers for the same query string.
"""

from __future__ import annotations

import base64
import html
import re
import subprocess
import urllib.parse
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver import on
from receiver.events import Delivery, NormalizedEvent
from receiver.handlers import signals
from receiver.web.inspect import DELIVERY_FILTERS, request_target

from .conftest import ROOT, sample
from .test_web_api import (
    BEARER,
    FNO_AUTH,
    LICENSE_KEY,
    POSTED,
    RESET_TOKEN,
    TOKEN,
    Target,
    add_events,
    post_sample,
)

HOSTILE = "<script>alert(1)</script>"
HOSTILE_TAG = "<img src=x onerror=alert(2)>"
FNO_SECRET = FNO_AUTH.split(" ", 1)[1]
LICENSESPRING_KEY = sample("licensespring", "license.created").normalized["data"]["license"][
    "license_key"]
SECRETS = (RESET_TOKEN, LICENSE_KEY, FNO_SECRET, LICENSESPRING_KEY)


# -- helpers ---------------------------------------------------------------------------------


class _Text(HTMLParser):
    """The text a reader sees: entities decoded; <script>, <style>, <template> and elements
    with the ``hidden`` attribute left out; block elements separated by a space."""

    HIDDEN = {"script", "style", "template"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}
    BLOCK = {"p", "div", "td", "th", "tr", "li", "dt", "dd", "h1", "h2", "h3", "pre",
             "section", "summary", "details", "table", "option", "label", "header", "nav",
             "form", "legend", "fieldset", "ul", "ol", "dl", "main", "br"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []

    def _visible(self) -> bool:
        return not any(hidden for _, hidden in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCK:
            self.parts.append(" ")
        if tag in self.VOID:
            return
        hidden = tag in self.HIDDEN or any(name == "hidden" for name, _ in attrs)
        self.stack.append((tag, hidden))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCK:
            self.parts.append(" ")
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                break

    def handle_data(self, data: str) -> None:
        if self._visible():
            self.parts.append(data)


def text_of(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join("".join(parser.parts).split())


def get_page(client: Any, url: str, status: int = 200, **kwargs: Any) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == status, (url, response.status_code,
                                            response.get_data(as_text=True)[:800])
    assert response.mimetype == "text/html", (url, response.mimetype)
    page: str = response.get_data(as_text=True)
    return page


def row_ids(page: str) -> list[int]:
    """Ids of the rows in the list (the empty row template has no id)."""
    body = page.split('id="rows"', 1)[1].split("</tbody>", 1)[0]
    return [int(found) for found in re.findall(r'<tr data-id="(\d+)"', body)]


def api_ids(client: Any, path: str, query: str, key: str) -> list[int]:
    answer = client.get(f"{path}?{query}").get_json()
    return [item["id"] for item in answer[key]]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))


def link(page: str, text: str) -> str:
    """The href of the first link whose text contains ``text``."""
    for href, inner in re.findall(r'<a[^>]*href="([^"]*)"[^>]*>(.*?)</a>', page, re.S):
        if text in text_of(inner):
            return html.unescape(href)
    raise AssertionError(f"no link {text!r}")


@pytest.fixture
def posted(client: Any) -> dict[tuple[str, str], dict[str, Any]]:
    answers = {}
    for source, name in POSTED:
        extra = {"Authorization": FNO_AUTH} if source == "fno" else {}
        answers[(source, name)] = post_sample(client, source, name, **extra)
    return answers


@pytest.fixture
def registry() -> Iterator[None]:
    before = signals.registry_keys()
    yield
    signals.unregister(signals.registry_keys() - before)


@pytest.fixture
def flaky(registry: None) -> dict[str, Any]:
    """Two handlers on license.*: one that fails until told otherwise (never retried), one
    that works."""
    state: dict[str, Any] = {"fail": True}

    @on("license.*", name="tests.inspect.crm_sync", retries=0)
    def crm_sync(event: Any, **extra: Any) -> None:
        if state["fail"]:
            raise RuntimeError(f"CRM unreachable for {event.subject_id} {HOSTILE}")

    @on("license.*", name="tests.inspect.audit_log")
    def audit_log(event: Any, **extra: Any) -> None:
        pass

    return state


# -- the history -----------------------------------------------------------------------------


def test_inspect_history_lists_events_newest_first(client: Any, posted: Any) -> None:
    page = get_page(client, "/")
    ids = sorted((answer["event_id"] for answer in posted.values()), reverse=True)
    assert row_ids(page) == ids == api_ids(client, "/api/events", "", "events")
    text = text_of(page)
    for source, name in POSTED:
        assert name in text and source in text
    keygen = sample("keygen", "license.created").normalized
    assert keygen["subject_id"] in text
    for status in ("unsigned", "unchecked", "done"):
        assert status in text
    assert "Live" in text and "Older" not in text


def test_inspect_history_row_shows_time_badges_and_duplicates(client: Any) -> None:
    answer = post_sample(client, "keygen", "license.created")
    again = post_sample(client, "keygen", "license.created")
    assert again["duplicate"] is True
    page = get_page(client, "/")
    row = page.split(f'<tr data-id="{answer["event_id"]}">', 1)[1].split("</tr>", 1)[0]
    event = client.get(f"/api/events/{answer['event_id']}").get_json()
    cells = text_of(row)
    assert event["received_at"].replace("T", " ")[:19] in cells
    assert cells.split() == [*event["received_at"].replace("T", " ")[:19].split(), "keygen",
                             "license.created", "license", event["subject_id"], "unsigned",
                             "done", "2"]
    assert 'class="dup"' in row
    assert f'href="/events/{answer["event_id"]}"' in row
    assert 'href="/?source=keygen"' in row


@pytest.mark.parametrize("query", [
    "source=keygen",
    "source=fno",
    "event_type=license.created",
    "event_type=license.*",
    "event_type=*",
    "endpoint=alpha",
    "endpoint=default",
    "account=c7b036bf-b435-4007-9b0e-be1c7aee2af5",
    "subject_id=e0cf059f-5652-4881-a504-664353103e61",
    "signature_status=unsigned",
    "signature_status=unchecked",
    "dispatch_status=done",
    "dispatch_status=pending",
    "q=0035g00000XyZ12",
    "q=jane.doe%40example.com",
    "since=2000-01-01T00:00:00Z",
    "until=2000-01-01",
    "source=keygen&event_type=license.*",
    "q=&source=",
])
def test_inspect_history_filters_match_the_api(client: Any, posted: Any, query: str) -> None:
    post_sample(client, "keygen", "machine.created", path="/hooks/alpha")
    page = get_page(client, f"/?{query}")
    expected = api_ids(client, "/api/events", f"{query}&limit=500", "events")
    assert row_ids(page) == expected
    everything = api_ids(client, "/api/events", "limit=500", "events")
    if query not in ("event_type=*", "since=2000-01-01T00:00:00Z", "q=&source=",
                     "dispatch_status=done"):
        assert len(expected) < len(everything)  # the filter narrowed the list
    text = text_of(page)
    labels = {"q": "search", "event_type": "event type", "subject_id": "subject id",
              "signature_status": "signature", "dispatch_status": "handlers"}
    for name, value in re.findall(r"([a-z_]+)=([^&]+)", query):
        value = value.replace("%40", "@")
        # a chip per filter, named as the form names it, which removes it
        assert f"{labels.get(name, name)}: {value}" in text
    if not expected:
        assert "No event matches these filters" in text


def test_inspect_history_search_names_what_matched(client: Any, posted: Any) -> None:
    text = text_of(get_page(client, "/?q=0035g00000XyZ12"))
    assert "user.password-reset" in text
    assert "order.paid" not in text and "entitlement.updated" not in text
    assert "search: 0035g00000XyZ12" in text
    assert "1 matching event" in text


def test_inspect_history_filter_form_keeps_the_values(client: Any, posted: Any) -> None:
    page = get_page(client, "/?source=keygen&event_type=license.*&q=acme&since=2000-01-01")
    assert "<option selected>keygen</option>" in page
    assert 'name="event_type" value="license.*"' in page
    assert 'name="q" value="acme"' in page
    assert 'name="since" value="2000-01-01"' in page


def test_inspect_history_keyset_paging(client: Any, store: Any) -> None:
    add_events(store, 7)
    everything = api_ids(client, "/api/events", "limit=500", "events")
    first = get_page(client, "/?limit=3&event_type=bulk.made")
    assert row_ids(first) == everything[:3]
    older = link(first, "Older")
    assert older == f"/?limit=3&event_type=bulk.made&cursor={everything[2]}"
    second = get_page(client, older)
    assert row_ids(second) == everything[3:6]
    assert "Newest" in text_of(second)
    assert "data-live" not in second  # live updates only on the newest page
    third = get_page(client, link(second, "Older"))
    assert row_ids(third) == everything[6:]
    assert "Older »" not in text_of(third)
    assert link(third, "Newest") == "/?limit=3&event_type=bulk.made"


def test_inspect_history_removing_a_filter_keeps_the_others(client: Any, posted: Any) -> None:
    page = get_page(client, "/?source=keygen&event_type=license.*&cursor=999")
    assert link(page, "source: keygen") == "/?event_type=license.%2A"
    assert link(page, "event type: license.*") == "/?source=keygen"


@pytest.mark.parametrize(("query", "parameter"), [
    ("source=nope", "source"),
    ("limit=abc", "limit"),
    ("limit=0", "limit"),
    ("cursor=x", "cursor"),
    ("since=yesterday", "since"),
    ("until=2024-13-45", "until"),
    ("event_type=a%20b", "event_type"),
    ("event_type=license.**", "event_type"),
    ("signature_status=maybe", "signature_status"),
    ("dispatch_status=later", "dispatch_status"),
    ("source=%3Cscript%3Ealert(1)%3C/script%3E", "source"),
])
def test_inspect_history_bad_filter_is_a_400_page(client: Any, query: str,
                                                  parameter: str) -> None:
    page = get_page(client, f"/?{query}", status=400)
    text = text_of(page)
    assert "400" in text and "Bad request" in text
    assert re.search(rf"\b{parameter}\b[^.;]*? must be\b", text), text
    assert link(page, "without the query") == "/"
    assert HOSTILE not in page


@pytest.mark.parametrize(("query", "parameter"), [
    ("status_code=abc", "status_code"),
    ("status_code=999", "status_code"),
    ("source=nope", "source"),
    ("cursor=-1", "cursor"),
    ("limit=x", "limit"),
])
def test_inspect_deliveries_bad_filter_is_a_400_page(client: Any, query: str,
                                                     parameter: str) -> None:
    text = text_of(get_page(client, f"/deliveries?{query}", status=400))
    assert f"{parameter} must be" in text or f"{parameter} (a value" in text, text


def test_inspect_history_empty_says_how_to_send(client: Any) -> None:
    text = text_of(get_page(client, "/"))
    assert "No events yet" in text
    assert "http://localhost/hooks" in text
    assert "receiver trigger keygen license.created" in text


def test_inspect_history_page_is_wired_for_live_updates(client: Any, posted: Any) -> None:
    newest_delivery = api_ids(client, "/api/deliveries", "limit=1", "deliveries")[0]
    page = get_page(client, "/?source=keygen&event_type=license.*")
    tbody = re.search(r'<tbody id="rows"([^>]*)>', page)
    assert tbody is not None
    attributes = urllib.parse.unquote(html.unescape(tbody.group(1)))
    assert 'data-live="events"' in attributes
    assert 'data-api="/api/events?source=keygen&event_type=license.*&limit=50"' in attributes
    assert 'data-feed="/api/deliveries"' in attributes
    assert f'data-after="{newest_delivery}"' in attributes
    template = page.split('<template id="row-template">', 1)[1].split("</template>", 1)[0]
    for name in ("received_at", "source", "event_type", "subject_type", "subject_id",
                 "delivery_count"):
        assert f'data-field="{name}"' in template
    assert '<script src="/static/inspector.js?v=' in page
    script = get_script(client)
    assert "/api/deliveries" not in script  # the page names the URLs it polls


def get_script(client: Any) -> str:
    response = client.get("/static/inspector.js")
    assert response.status_code == 200
    script: str = response.get_data(as_text=True)
    response.close()
    return script


def test_inspect_script_never_writes_html() -> None:
    script = (ROOT / "receiver" / "static" / "inspector.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function"):
        assert sink not in script, sink
    assert "textContent" in script
    # Short polls only: the script never asks the API to hold a request open.
    assert "wait" not in re.findall(r'"(\w+)"', script)


def test_inspect_templates_never_mark_data_safe() -> None:
    for template in (ROOT / "templates").glob("*.html"):
        source = template.read_text()
        assert "|safe" not in source.replace(" ", ""), template.name
        assert "autoescape false" not in source, template.name
        assert " style=" not in source, template.name  # CSP: no inline style
        assert "<script>" not in source, template.name  # CSP: no inline script
    assert "Markup(" not in (ROOT / "receiver" / "web" / "inspect.py").read_text()


def test_inspect_pages_send_a_strict_content_security_policy(client: Any, posted: Any) -> None:
    response = client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


# -- deliveries and rejected deliveries --------------------------------------------------------


@pytest.fixture
def rejected(make_app: Any) -> tuple[Any, dict[str, int]]:
    """An app with a 5 KiB body limit that refused three deliveries (400, 413, 401)."""
    from .test_config import ed25519_hex

    app = make_app(MAX_BODY=5 * 1024,
                   ENDPOINTS={"keygen": {"source": "keygen", "public_key": ed25519_hex()}})
    client = app.test_client()
    post_sample(client, "keygen", "license.created")
    ids = {}
    bad = client.post("/hooks", data=b'{"type": "order.paid",',
                      headers={"Content-Type": "application/json"})
    ids["400"] = bad.get_json()["delivery_id"]
    big = client.post("/hooks", data=b"x" * 6000, headers={"Content-Type": "text/plain"})
    ids["413"] = big.get_json()["delivery_id"]
    item = sample("keygen", "user.password-reset")
    unsigned = client.post("/hooks/keygen", data=item.body, headers=item.headers)
    ids["401"] = unsigned.get_json()["delivery_id"]
    assert [bad.status_code, big.status_code, unsigned.status_code] == [400, 413, 401]
    return client, ids


def test_inspect_rejected_tab_lists_refused_deliveries_with_their_error(
        rejected: tuple[Any, dict[str, int]]) -> None:
    client, ids = rejected
    page = get_page(client, "/deliveries?rejected=1")
    assert row_ids(page) == [ids["401"], ids["413"], ids["400"]]
    assert row_ids(page) == api_ids(client, "/api/deliveries", "rejected=1", "deliveries")
    text = text_of(page)
    assert "Rejected deliveries" in text
    assert "body is not valid JSON" in text
    assert "this receiver accepts at most 5120 bytes" in text
    assert "no Keygen-Signature header" in text or "unsigned" in text
    assert 'aria-current="page">Rejected' in page
    assert RESET_TOKEN not in page


def test_inspect_deliveries_lists_every_request(rejected: tuple[Any, dict[str, int]]) -> None:
    client, ids = rejected
    page = get_page(client, "/deliveries")
    assert row_ids(page) == api_ids(client, "/api/deliveries", "", "deliveries")
    assert len(row_ids(page)) == 4
    text = text_of(page)
    assert "event #1" in text and "200" in text and "413" in text


@pytest.mark.parametrize("query", ["status_code=400", "status_code=200", "endpoint=keygen",
                                   "source=keygen", "rejected=1&endpoint=default",
                                   "status_code=404",
                                   pytest.param("event_type=license.*", marks=pytest.mark.skipif(
                                       "event_type" not in DELIVERY_FILTERS,
                                       reason="the store has no event_type filter on "
                                              "deliveries"))])
def test_inspect_deliveries_filters_match_the_api(rejected: tuple[Any, dict[str, int]],
                                                  query: str) -> None:
    client, _ = rejected
    page = get_page(client, f"/deliveries?{query}")
    assert row_ids(page) == api_ids(client, "/api/deliveries", query, "deliveries")
    assert len(row_ids(page)) < 4
    if not row_ids(page):
        assert "No" in text_of(page)


def test_inspect_deliveries_page_is_wired_for_live_updates(
        rejected: tuple[Any, dict[str, int]]) -> None:
    client, ids = rejected
    page = get_page(client, "/deliveries?rejected=1")
    attributes = html.unescape(re.search(r'<tbody id="rows"([^>]*)>', page).group(1))
    assert 'data-feed="/api/deliveries?rejected=1&limit=50"' in attributes
    assert f'data-after="{ids["401"]}"' in attributes


def test_inspect_rejected_delivery_page_shows_the_error_and_masked_body(
        rejected: tuple[Any, dict[str, int]]) -> None:
    client, ids = rejected
    text = text_of(get_page(client, f"/deliveries/{ids['401']}"))
    assert "Answered 401" in text
    assert "Jane Doe" in text  # the body is shown ...
    assert RESET_TOKEN not in text  # ... with its secrets masked
    assert RESET_TOKEN[-4:] in text
    too_big = text_of(get_page(client, f"/deliveries/{ids['413']}"))
    assert "No body stored" in too_big and "Answered 413" in too_big
    bad = text_of(get_page(client, f"/deliveries/{ids['400']}"))
    assert '{"type": "order.paid",' in bad and "event none" in bad


# -- one event ---------------------------------------------------------------------------------


def test_inspect_event_page_shows_the_record_and_data(client: Any) -> None:
    answer = post_sample(client, "keygen", "license.created")
    event = client.get(f"/api/events/{answer['event_id']}").get_json()
    page = get_page(client, f"/events/{answer['event_id']}")
    text = text_of(page)
    for field in ("source", "event_type", "vendor_event", "external_id", "occurred_at",
                  "received_at", "account", "endpoint", "signature_status", "dispatch_status",
                  "delivery_count"):
        assert field in text
        assert str(event[field]) in text, field
    # data: a tree of <details> (collapsible) plus the pretty text
    assert "<details open><summary><span class=\"j-key\">data</span>" in page
    assert "Acme Studio Pro (annual)" in text
    assert '"name": "Acme Studio Pro (annual)"' in text  # the indented JSON text
    assert link(page, "JSON") == f"/api/events/{answer['event_id']}"


def test_inspect_event_page_shows_every_delivery(client: Any) -> None:
    first = post_sample(client, "keygen", "license.created")
    second = post_sample(client, "keygen", "license.created", **{"X-Retry": "1"})
    page = get_page(client, f"/events/{first['event_id']}")
    text = text_of(page)
    for answer in (first, second):
        delivery_id = answer["delivery_id"]
        assert f"#{delivery_id}" in text
        assert f'href="/api/deliveries/{delivery_id}/raw"' in page
        assert f'id="curl-{delivery_id}"' in page
        assert link(page, "delivery page and redeliver") == f"/deliveries/{first['delivery_id']}"
    assert "duplicate" in text
    assert "X-Retry" in text and "Keygen-Version" in text
    assert "Acme Studio Pro (annual)" in text.split("Raw body", 1)[1]  # the raw body


def test_inspect_event_page_shows_runs_with_tracebacks(client: Any, flaky: Any) -> None:
    answer = post_sample(client, "keygen", "license.created")
    page = get_page(client, f"/events/{answer['event_id']}")
    text = text_of(page)
    assert "tests.inspect.crm_sync" in text and "tests.inspect.audit_log" in text
    assert "RuntimeError: CRM unreachable for e0cf059f" in text
    assert "Traceback (most recent call last)" in text
    assert 'raise RuntimeError(f"CRM unreachable' in text
    assert "failed" in text and "delivery" in text
    assert HOSTILE not in page


def test_inspect_event_page_timeline_of_the_subject(client: Any) -> None:
    created = post_sample(client, "keygen", "license.created")
    updated = post_sample(client, "keygen", "license.updated")
    other = post_sample(client, "keygen", "machine.created")
    page = get_page(client, f"/events/{updated['event_id']}")
    timeline = page.split('id="timeline"', 1)[1].split("</section>", 1)[0]
    text = text_of(timeline)
    assert "Timeline of this license" in text
    assert text.index("license.updated (this event)") < text.index("license.created")
    assert f'href="/events/{created["event_id"]}"' in timeline
    assert f'/events/{other["event_id"]}"' not in timeline
    subject = sample("keygen", "license.created").normalized["subject_id"]
    assert link(timeline, "Open in the history") == f"/?subject_id={subject}&source=keygen"
    no_subject = post_sample(client, "generic", "order.paid")
    assert "no timeline" in text_of(get_page(client, f"/events/{no_subject['event_id']}"))


@pytest.mark.parametrize("url", ["/events/999", "/deliveries/999", "/events/99999999999999999999",
                                 "/deliveries/0"])
def test_inspect_unknown_ids_are_a_404_page(client: Any, url: str) -> None:
    text = text_of(get_page(client, url, status=404))
    assert "404" in text and "Not found" in text and "no " in text


def test_inspect_unknown_ids_answer_json_to_json_clients(client: Any) -> None:
    response = client.get("/events/999", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.get_json() == {"ok": False, "error": "no event with id 999"}


def test_inspect_deeply_nested_data_renders(client: Any) -> None:
    depth = 900
    body = '{"type": "deep.one", "x": ' + "[" * depth + '"bottom"' + "]" * depth + "}"
    answer = client.post("/hooks", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    event_id = answer.get_json()["event_id"]
    text = text_of(get_page(client, f"/events/{event_id}"))
    assert "too deeply nested" in text or "bottom" in text
    get_page(client, f"/deliveries/{answer.get_json()['delivery_id']}")


def test_inspect_large_arrays_are_cut_in_the_tree(client: Any) -> None:
    body = '{"type": "many.items", "items": [' + ",".join(str(n) for n in range(1000)) + "]}"
    answer = client.post("/hooks", data=body, headers={"Content-Type": "application/json"})
    text = text_of(get_page(client, f"/events/{answer.get_json()['event_id']}"))
    assert "[…] 1000 items" in text and "… 800 more" in text


# -- one delivery ------------------------------------------------------------------------------


def test_inspect_delivery_page_shows_request_headers_and_body(client: Any) -> None:
    answer = post_sample(client, "keygen", "license.created", **{"X-Trace": "abc-123"})
    page = get_page(client, f"/deliveries/{answer['delivery_id']}?x=1")
    text = text_of(page)
    assert f"Delivery #{answer['delivery_id']}" in text
    assert "POST /hooks" in text and "application/json" in text
    assert "X-Trace abc-123" in text
    assert f"Event #{answer['event_id']} license.created" in text
    assert "Acme Studio Pro (annual)" in text
    assert f'href="/api/deliveries/{answer["delivery_id"]}/raw"' in page
    assert "Download raw" in text
    assert "Redeliver" in text and "localhost, 127.0.0.1, ::1" in text


def test_inspect_delivery_page_of_a_binary_body(client: Any) -> None:
    response = client.post("/hooks", data=b"\xff\xfe\x00binary",
                           headers={"Content-Type": "application/octet-stream"})
    delivery_id = response.get_json()["delivery_id"]
    page = get_page(client, f"/deliveries/{delivery_id}")
    assert "not UTF-8 text" in text_of(page)
    curl = html.unescape(page.split(f'id="curl-{delivery_id}">', 1)[1].split("</pre>", 1)[0])
    assert curl.startswith("base64 -d <<'BODY' |\n//4AYmluYXJ5\nBODY\n")


def curl_of(page: str, delivery_id: int) -> str:
    return html.unescape(page.split(f'id="curl-{delivery_id}">', 1)[1].split("</pre>", 1)[0])


def test_inspect_curl_masks_secrets_unless_revealed(client: Any) -> None:
    answer = post_sample(client, "fno", "entitlement.updated", Authorization=FNO_AUTH)
    masked = curl_of(get_page(client, f"/events/{answer['event_id']}"), answer["delivery_id"])
    assert FNO_SECRET not in masked
    assert "-H 'Authorization: Bearer ••••••'" in masked
    assert masked.startswith("printf '%s' '{") and "curl -sS http://localhost/hooks" in masked
    shown = curl_of(get_page(client, f"/events/{answer['event_id']}?reveal=1"),
                    answer["delivery_id"])
    assert f"-H 'Authorization: {FNO_AUTH}'" in shown


def test_inspect_curl_reproduces_the_delivery(serve: Any) -> None:
    """The copied command, run by bash against a real server, stores the same bytes and
    headers again: quotes, backslashes, newlines, non-ASCII, control bytes and binary."""
    server = serve()
    bodies = [
        ('{"type": "order.paid", "note": "it\'s \\"quoted\\" $HOME `id` \\\\ é ü",\n'
         ' "trailing": "newline"}\n').encode(),
        b'{"type": "order.paid", "tab": "a\tb", "cr": "x\r\ny"}',
        b"\x00\xff not json at all",
    ]
    for body in bodies:
        sent = requests.post(server.url + "/hooks/alpha?via=test&token=t0p-s3cret-value-42",
                             data=body, headers={"Content-Type": "application/json",
                                                 "X-Empty": "", "X-Quote": "it's"})
        original = sent.json()["delivery_id"]
        page = requests.get(f"{server.url}/deliveries/{original}?reveal=1").text
        command = curl_of(page, original)
        masked = curl_of(requests.get(f"{server.url}/deliveries/{original}").text, original)
        assert "t0p-s3cret-value-42" not in masked and "token=••••••" in masked
        run = subprocess.run(["bash", "-c", command], capture_output=True, timeout=30)
        assert run.returncode == 0, run.stderr
        again = requests.get(
            f"{server.url}/api/deliveries?limit=1&reveal=1").json()["deliveries"][0]
        assert again["id"] > original
        raw = requests.get(f"{server.url}/api/deliveries/{again['id']}/raw").content
        assert raw == body
        assert again["path"] == "/hooks/alpha"
        assert again["query"] == "via=test&token=t0p-s3cret-value-42"
        headers = {name: value for name, value in requests.get(
            f"{server.url}/api/deliveries/{again['id']}?reveal=1").json()["headers"]}
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Quote"] == "it's" and headers["X-Empty"] == ""


# -- masking -----------------------------------------------------------------------------------


def all_pages(client: Any, posted: dict[tuple[str, str], dict[str, Any]],
              suffix: str = "") -> dict[str, str]:
    urls = ["/", "/deliveries", "/deliveries?rejected=1"]
    for answer in posted.values():
        urls += [f"/events/{answer['event_id']}", f"/deliveries/{answer['delivery_id']}"]
    joiner = "&" if "?" in suffix else "?"
    return {url: get_page(client, url + (joiner + suffix.lstrip("?&") if suffix else ""))
            for url in urls}


def test_inspect_masks_secrets_in_every_page(client: Any, posted: Any) -> None:
    refused = client.post("/hooks", data=sample("keygen", "user.password-reset").body[:-3],
                          headers={"Content-Type": "application/json"})
    assert refused.status_code == 400
    posted = {**posted, ("refused", ""): {"event_id": posted[("keygen", "license.created")][
        "event_id"], "delivery_id": refused.get_json()["delivery_id"]}}
    for url, page in all_pages(client, posted).items():
        for secret in SECRETS:
            assert secret not in page, (url, secret)
            assert html.escape(secret) not in page, (url, secret)
    reset = posted[("keygen", "user.password-reset")]
    text = text_of(get_page(client, f"/events/{reset['event_id']}"))
    assert "••••••" + RESET_TOKEN[-4:] in text  # masked, recognisable by its end
    assert "Jane Doe" in text
    fno_delivery = posted[("fno", "entitlement.updated")]["delivery_id"]
    fno = text_of(get_page(client, f"/deliveries/{fno_delivery}"))
    assert "Authorization Bearer ••••••" in fno


def test_inspect_reveal_shows_secrets_on_request(client: Any, posted: Any) -> None:
    reset = posted[("keygen", "user.password-reset")]
    page = get_page(client, f"/events/{reset['event_id']}?reveal=1")
    assert RESET_TOKEN in page
    assert "Secrets are shown on this page" in text_of(page)
    assert link(page, "Mask them again") == f"/events/{reset['event_id']}"
    fno = posted[("fno", "entitlement.updated")]
    assert FNO_AUTH in text_of(get_page(client, f"/deliveries/{fno['delivery_id']}?reveal=1"))
    # Links out of a revealed page mask again.
    assert link(page, "Events") == "/"
    assert "reveal" not in link(page, "Timeline")


def test_inspect_masks_secret_looking_headers_and_query(client: Any) -> None:
    response = client.post("/hooks?api_key=qs-secret-0000111122&mode=test",
                           data=b'{"type": "order.paid"}',
                           headers={"Content-Type": "application/json",
                                    "X-License-Key": "hdr-secret-9999888877",
                                    "X-Webhook-Token": "tok-secret-5555444433"})
    delivery_id = response.get_json()["delivery_id"]
    page = get_page(client, f"/deliveries/{delivery_id}")
    for secret in ("qs-secret-0000111122", "hdr-secret-9999888877", "tok-secret-5555444433"):
        assert secret not in page
    assert "api_key=••••••1122&mode=test" in text_of(page)


def test_inspect_masks_secrets_in_handler_errors(client: Any, registry: None) -> None:
    @on("user.password-reset", name="tests.inspect.leaky", retries=0)
    def leaky(event: Any, **extra: Any) -> None:
        raise ValueError(f"could not mail token {event.data['meta']['passwordResetToken']}")

    answer = post_sample(client, "keygen", "user.password-reset")
    page = get_page(client, f"/events/{answer['event_id']}")
    assert "ValueError: could not mail token ••••••" in text_of(page)
    assert RESET_TOKEN not in page
    assert RESET_TOKEN in get_page(client, f"/events/{answer['event_id']}?reveal=1")


# -- HTML escaping of hostile payloads -------------------------------------------------------


def hostile_event(store: Any) -> int:
    """An event with <script> in every text field, a hostile endpoint and headers."""
    delivery = Delivery(
        body=f'{{"{HOSTILE}": "{HOSTILE}", "n": [{{"k": "{HOSTILE_TAG}"}}]}}'.encode(),
        headers=[("Content-Type", "application/json"), (HOSTILE, HOSTILE),
                 ("X-Tag", HOSTILE_TAG)],
        endpoint=HOSTILE_TAG, path=f"/hooks/{HOSTILE_TAG}", query=f"q={HOSTILE}",
        remote_addr=HOSTILE_TAG,
    )
    event = NormalizedEvent(
        source="generic", event_type=HOSTILE, vendor_event=HOSTILE, external_id=HOSTILE,
        occurred_at=None, account=HOSTILE, actor=HOSTILE, subject_type=HOSTILE_TAG,
        subject_id=HOSTILE, data={HOSTILE: HOSTILE, "nested": [{"k": HOSTILE_TAG}]},
    )
    saved = store.save_event(delivery, event, "unchecked", f"reason {HOSTILE}")
    return int(saved.event_id)


def assert_escaped(page: str, url: str) -> None:
    assert HOSTILE not in page, url
    assert "<img src=x" not in page, url
    assert "onerror=alert" not in page.replace("onerror=alert(2)&gt;", ""), url


def test_inspect_escapes_hostile_values_everywhere(client: Any, store: Any) -> None:
    event_id = hostile_event(store)
    delivery_id = client.get(f"/api/events/{event_id}").get_json()["deliveries"][0]["id"]
    raw = client.post(f"/hooks?{HOSTILE}", data=f"{HOSTILE} not json".encode(),
                      headers={"Content-Type": "text/html", "X-Evil": HOSTILE})
    assert raw.status_code == 400
    refused = raw.get_json()["delivery_id"]
    pages = {url: get_page(client, url) for url in (
        "/", "/deliveries", "/deliveries?rejected=1", f"/events/{event_id}",
        f"/events/{event_id}?reveal=1", f"/deliveries/{delivery_id}",
        f"/deliveries/{delivery_id}?reveal=1", f"/deliveries/{refused}",
        f"/?q={HOSTILE}", f"/?account={HOSTILE}&subject_id={HOSTILE_TAG}",
    )}
    for url, page in pages.items():
        assert_escaped(page, url)
    event_text = text_of(pages[f"/events/{event_id}"])
    assert event_text.count(HOSTILE) >= 8  # shown as text: type, ids, data, headers, body
    assert HOSTILE_TAG in event_text
    assert f"{HOSTILE} not json" in text_of(pages[f"/deliveries/{refused}"])  # raw body view
    assert f"X-Evil {HOSTILE}" in text_of(pages[f"/deliveries/{refused}"])  # a header
    assert f"account: {HOSTILE}" in text_of(pages[f"/?account={HOSTILE}&subject_id={HOSTILE_TAG}"])


def test_inspect_escapes_hostile_errors_and_tracebacks(client: Any, flaky: Any) -> None:
    answer = post_sample(client, "keygen", "license.created")
    page = get_page(client, f"/events/{answer['event_id']}")
    assert_escaped(page, "event")
    assert f"CRM unreachable for e0cf059f-5652-4881-a504-664353103e61 {HOSTILE}" in text_of(page)


def test_inspect_escapes_hostile_bad_filters(client: Any) -> None:
    for url in (f"/?since={HOSTILE}", f"/?event_type={HOSTILE}",
                f"/deliveries?status_code={HOSTILE}"):
        page = get_page(client, url, status=400)
        assert_escaped(page, url)
        assert HOSTILE in text_of(page)


# -- replay ------------------------------------------------------------------------------------


def replay(client: Any, event_id: int, **form: Any) -> Any:
    page = get_page(client, f"/events/{event_id}")
    return client.post(f"/events/{event_id}/replay", data={"csrf_token": csrf_of(page), **form})


def test_inspect_replay_form_offers_the_handlers(client: Any, flaky: Any) -> None:
    answer = post_sample(client, "keygen", "license.created")
    page = get_page(client, f"/events/{answer['event_id']}")
    form = page.split('data-replay-form', 1)[1].split("</form>", 1)[0]
    assert 'value="tests.inspect.crm_sync"' in form and 'value="tests.inspect.audit_log"' in form
    assert "Only those whose last run failed (tests.inspect.crm_sync)" in text_of(form)
    assert 'name="csrf_token"' in form


def test_inspect_replay_only_failed_shows_the_new_run(client: Any, flaky: Any) -> None:
    answer = post_sample(client, "keygen", "license.created")
    event_id = answer["event_id"]
    flaky["fail"] = False
    response = replay(client, event_id, mode="failed")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/events/{event_id}#runs"
    page = get_page(client, f"/events/{event_id}")
    text = text_of(page)
    assert "Replayed: 1 handler ran, 1 ok, 0 failed" in text
    runs = client.get(f"/api/events/{event_id}").get_json()["handler_runs"]
    assert [(r["handler"], r["trigger"], r["status"]) for r in runs][-1] == (
        "tests.inspect.crm_sync", "replay", "ok")
    assert f'<tr id="run-{runs[-1]["id"]}" class="fresh">' in page
    assert client.get(f"/api/events/{event_id}").get_json()["dispatch_status"] == "done"
    # The result shows once; a reload does not replay again.
    assert "Replayed" not in text_of(get_page(client, f"/events/{event_id}"))
    assert len(client.get(f"/api/events/{event_id}").get_json()["handler_runs"]) == 3


def test_inspect_replay_all_and_chosen(client: Any, flaky: Any) -> None:
    answer = post_sample(client, "keygen", "license.created")
    event_id = answer["event_id"]
    replay(client, event_id, mode="all")
    text = text_of(get_page(client, f"/events/{event_id}"))
    assert "Replayed: 2 handlers ran, 1 ok, 1 failed" in text
    replay(client, event_id, mode="chosen", handler="tests.inspect.audit_log")
    assert "Replayed: 1 handler ran, 1 ok, 0 failed" in text_of(
        get_page(client, f"/events/{event_id}"))
    runs = client.get(f"/api/events/{event_id}").get_json()["handler_runs"]
    assert [r["handler"] for r in runs if r["trigger"] == "replay"] == [
        "tests.inspect.crm_sync", "tests.inspect.audit_log", "tests.inspect.audit_log"]


def test_inspect_replay_only_failed_with_nothing_failed(client: Any, flaky: Any) -> None:
    flaky["fail"] = False
    answer = post_sample(client, "keygen", "license.created")
    replay(client, answer["event_id"], mode="failed")
    assert "Nothing was replayed: no handler's last run failed." in text_of(
        get_page(client, f"/events/{answer['event_id']}"))


@pytest.mark.parametrize(("form", "status", "message"), [
    ({"mode": "chosen"}, 400, "Choose at least one handler to replay."),
    ({"mode": "chosen", "handler": "no.such.handler"}, 400,
     "no handler named 'no.such.handler' runs for this event"),
    ({"mode": "sideways"}, 400, "mode must be all, failed or chosen"),
])
def test_inspect_replay_form_errors_are_shown(client: Any, flaky: Any, form: dict[str, str],
                                              status: int, message: str) -> None:
    answer = post_sample(client, "keygen", "license.created")
    response = replay(client, answer["event_id"], **form)
    assert response.status_code == status
    assert message in text_of(response.get_data(as_text=True))
    assert len(client.get(f"/api/events/{answer['event_id']}").get_json()["handler_runs"]) == 2


def test_inspect_replay_of_an_unknown_event_is_404(client: Any) -> None:
    answer = post_sample(client, "generic", "order.paid")
    page = get_page(client, f"/deliveries/{answer['delivery_id']}")
    response = client.post("/events/999/replay", data={"csrf_token": csrf_of(page)})
    assert response.status_code == 404
    assert "no event with id 999" in text_of(response.get_data(as_text=True))


def test_inspect_event_without_handlers_says_so(client: Any) -> None:
    answer = post_sample(client, "generic", "order.paid")
    text = text_of(get_page(client, f"/events/{answer['event_id']}"))
    assert "No handler subscribes to order.paid from generic" in text
    assert "No handler ran for this event." in text


# -- redeliver ---------------------------------------------------------------------------------


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


def redeliver(client: Any, delivery_id: int, url: str) -> Any:
    page = get_page(client, f"/deliveries/{delivery_id}")
    return client.post(f"/deliveries/{delivery_id}/redeliver",
                       data={"csrf_token": csrf_of(page), "url": url})


def test_inspect_redeliver_sends_and_shows_the_answer(client: Any, target: Target) -> None:
    answer = post_sample(client, "fno", "entitlement.updated", Authorization=FNO_AUTH)
    response = redeliver(client, answer["delivery_id"], target.url + "/hook?x=1")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/deliveries/{answer['delivery_id']}#redeliver"
    assert target.requests[0]["body"] == sample("fno", "entitlement.updated").body
    assert ("Authorization", FNO_AUTH) in target.requests[0]["headers"]
    page = get_page(client, f"/deliveries/{answer['delivery_id']}")
    text = text_of(page)
    assert f"{target.url}/hook?x=1 answered 202" in text
    assert "accepted by the target" in text
    assert f'value="{target.url}/hook?x=1"' in page  # the URL is remembered
    assert "answered 202" not in text_of(get_page(client, f"/deliveries/{answer['delivery_id']}"))


def test_inspect_redeliver_keeps_the_original_host_when_ticked(client: Any,
                                                                target: Target) -> None:
    answer = post_sample(client, "keygen", "license.created", Host="hooks.example.com")
    page = get_page(client, f"/deliveries/{answer['delivery_id']}")
    assert "Keep the original Host (hooks.example.com)" in text_of(page)
    assert 'name="preserve_host" value="1">' in page  # not ticked by default
    client.post(f"/deliveries/{answer['delivery_id']}/redeliver",
                data={"csrf_token": csrf_of(page), "url": target.url + "/hooks/keygen",
                      "preserve_host": "1"})
    redeliver(client, answer["delivery_id"], target.url + "/hooks/keygen")
    hosts = [[value for name, value in request["headers"] if name.lower() == "host"]
             for request in target.requests]
    assert hosts == [["hooks.example.com"], [f"127.0.0.1:{target.port}"]]
    assert target.requests[0]["body"] == sample("keygen", "license.created").body


def test_inspect_redeliver_reports_an_unreachable_target(client: Any) -> None:
    answer = post_sample(client, "generic", "order.paid")
    redeliver(client, answer["delivery_id"], "http://127.0.0.1:9/")
    assert "Could not reach http://127.0.0.1:9/" in text_of(
        get_page(client, f"/deliveries/{answer['delivery_id']}"))


@pytest.mark.parametrize(("url", "status", "message"), [
    ("http://example.com/hook", 403, "example.com is not in RECEIVER_REDELIVER_ALLOW"),
    ("ftp://127.0.0.1/x", 400, "url must be an absolute http(s) URL"),
    ("", 400, "Enter the URL to send this delivery to."),
])
def test_inspect_redeliver_refusals_are_shown(client: Any, url: str, status: int,
                                              message: str) -> None:
    answer = post_sample(client, "generic", "order.paid")
    response = redeliver(client, answer["delivery_id"], url)
    assert response.status_code == status
    text = text_of(response.get_data(as_text=True))
    assert message in text
    assert "Delivery #" in text  # the delivery page, with the form to try again


# -- CSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "garbage", "tampered"])
def test_inspect_forms_without_a_valid_csrf_token_are_refused(client: Any, flaky: Any,
                                                              target: Target,
                                                              token: str | None) -> None:
    answer = post_sample(client, "keygen", "license.created")
    valid = csrf_of(get_page(client, f"/events/{answer['event_id']}"))
    form: dict[str, str] = {}
    if token == "tampered":
        form["csrf_token"] = valid[:-2] + ("AA" if not valid.endswith("AA") else "BB")
    elif token is not None:
        form["csrf_token"] = token
    for url, extra in ((f"/events/{answer['event_id']}/replay", {"mode": "all"}),
                       (f"/deliveries/{answer['delivery_id']}/redeliver", {"url": target.url}),
                       ("/logout", {})):
        response = client.post(url, data={**form, **extra})
        assert response.status_code == 403, url
        text = text_of(response.get_data(as_text=True))
        assert "403" in text and "CSRF token" in text and "reload the page" in text
    assert len(client.get(f"/api/events/{answer['event_id']}").get_json()["handler_runs"]) == 2
    assert target.requests == []


def test_inspect_csrf_token_of_another_session_is_refused(make_app: Any, flaky: Any) -> None:
    app = make_app()
    mine, theirs = app.test_client(), app.test_client()
    answer = post_sample(mine, "keygen", "license.created")
    their_token = csrf_of(get_page(theirs, f"/events/{answer['event_id']}"))
    get_page(mine, f"/events/{answer['event_id']}")  # a session (and form) of my own
    response = mine.post(f"/events/{answer['event_id']}/replay",
                         data={"csrf_token": their_token, "mode": "all"})
    assert response.status_code == 403
    assert "another session" in text_of(response.get_data(as_text=True))
    cookieless = app.test_client(use_cookies=False)
    response = cookieless.post(f"/events/{answer['event_id']}/replay",
                               data={"csrf_token": their_token, "mode": "all"})
    assert response.status_code == 403
    assert "session cookie is missing" in text_of(response.get_data(as_text=True))


def test_inspect_csrf_refusal_answers_json_to_json_clients(client: Any) -> None:
    answer = post_sample(client, "generic", "order.paid")
    response = client.post(f"/events/{answer['event_id']}/replay", json={})
    assert response.status_code == 403
    assert response.get_json()["ok"] is False
    assert "CSRF token" in response.get_json()["error"]


# -- access --------------------------------------------------------------------------------


@pytest.fixture
def locked(make_app: Any) -> Any:
    return make_app(INSPECTOR_TOKEN=TOKEN).test_client()


def sign_in(client: Any, token: str = TOKEN, next_url: str = "/") -> Any:
    page = get_page(client, "/login")
    return client.post("/login", data={"csrf_token": csrf_of(page), "token": token,
                                       "next": next_url})


@pytest.mark.parametrize("url", ["/", "/deliveries", "/deliveries?rejected=1", "/events/1",
                                 "/deliveries/1", "/events/1?reveal=1", "/?source=keygen"])
def test_inspect_token_pages_redirect_to_login(locked: Any, url: str) -> None:
    answer = post_sample(locked, "keygen", "user.password-reset")
    assert answer["event_id"] == 1
    response = locked.get(url)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/login?next=")
    assert RESET_TOKEN not in response.get_data(as_text=True)
    page = get_page(locked, location)
    assert "Enter the receiver's inspector token" in text_of(page)
    assert 'type="password" name="token"' in page


@pytest.mark.parametrize("url", ["/", "/events/1", "/deliveries"])
def test_inspect_token_json_clients_get_401(locked: Any, url: str) -> None:
    response = locked.get(url, headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert "inspector token" in response.get_json()["error"]


def test_inspect_token_forms_need_sign_in(locked: Any) -> None:
    answer = post_sample(locked, "keygen", "license.created")
    response = locked.post(f"/events/{answer['event_id']}/replay", data={"mode": "all"})
    assert response.status_code == 401
    assert "Sign-in needed" in text_of(response.get_data(as_text=True))


def test_inspect_login_form_signs_in_and_returns(locked: Any) -> None:
    answer = post_sample(locked, "keygen", "user.password-reset")
    response = locked.get(f"/events/{answer['event_id']}?reveal=1")
    assert response.headers["Location"] == "/login?next=/events/1?reveal%3D1"
    wrong = sign_in(locked, "not-the-token", next_url="/events/1?reveal=1")
    assert wrong.status_code == 401
    assert "That is not this receiver's inspector token." in text_of(
        wrong.get_data(as_text=True))
    right = sign_in(locked, next_url="/events/1?reveal=1")
    assert right.status_code == 303
    assert right.headers["Location"] == "/events/1?reveal=1"
    page = get_page(locked, "/events/1?reveal=1")
    assert RESET_TOKEN in page  # a signed-in user may reveal
    assert "Sign out" in text_of(page)
    assert RESET_TOKEN not in get_page(locked, "/events/1")
    assert locked.get("/api/events").status_code == 200  # the session works for the API too


def test_inspect_login_refuses_the_token_in_the_url(locked: Any) -> None:
    """A token in a URL stays in browser history and proxy logs: it is not taken."""
    response = locked.get(f"/login?token={TOKEN}&next=/deliveries")
    assert response.status_code == 400
    assert "The token is not taken from a URL" in text_of(response.get_data(as_text=True))
    assert locked.get("/deliveries").status_code == 303  # still signed out


def test_inspect_session_cookie_holds_no_token(locked: Any) -> None:
    response = sign_in(locked)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("receiver_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    compressed = value.startswith(".")
    payload = value.lstrip(".").split(".")[0]  # itsdangerous: payload.timestamp.signature
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if compressed:
        decoded = zlib.decompress(decoded)
    assert b'"inspector"' in decoded  # the session is readable (signed, not encrypted) ...
    assert TOKEN.encode() not in decoded  # ... so it holds an HMAC of the token, not the token
    assert "Secure" not in cookie  # plain http here; over https the cookie is Secure:
    fresh = locked.application.test_client()
    page = get_page(fresh, "/login", base_url="https://localhost")
    secure = fresh.post("/login", base_url="https://localhost",
                         data={"csrf_token": csrf_of(page), "token": TOKEN})
    assert "; Secure" in secure.headers["Set-Cookie"]


def test_inspect_changing_the_token_signs_browsers_out(make_app: Any, db_path: str) -> None:
    first = make_app(INSPECTOR_TOKEN=TOKEN).test_client()
    sign_in(first)
    assert first.get("/").status_code == 200
    second_app = make_app(INSPECTOR_TOKEN="another-token-456")
    second = second_app.test_client()
    cookie = first.get_cookie("receiver_session")
    assert cookie is not None
    second.set_cookie("receiver_session", cookie.value)
    assert second.get("/").status_code == 303
    same = make_app(INSPECTOR_TOKEN=TOKEN).test_client()
    same.set_cookie("receiver_session", cookie.value)
    assert same.get("/").status_code == 303  # the token back does not bring it back


@pytest.mark.parametrize("target_url", ["//evil.example/", "https://evil.example/",
                                        "/\\evil.example", "/\t/evil.example",
                                        "javascript:alert(1)"])
def test_inspect_login_never_redirects_off_site(locked: Any, target_url: str) -> None:
    response = sign_in(locked, next_url=target_url)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_inspect_logout(locked: Any) -> None:
    sign_in(locked)
    page = get_page(locked, "/")
    response = locked.post("/logout", data={"csrf_token": csrf_of(page)})
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?signed_out=1"
    assert "Signed out." in text_of(get_page(locked, "/login?signed_out=1"))
    assert locked.get("/").status_code == 303
    assert "Sign out of this browser" not in text_of(get_page(locked, "/login"))


def test_inspect_logout_page_offers_a_button(locked: Any) -> None:
    assert locked.get("/logout").status_code == 303  # not signed in: to the login page
    sign_in(locked)
    assert "Sign out of this browser" in text_of(get_page(locked, "/logout"))


def test_inspect_bearer_token_reads_pages(locked: Any) -> None:
    answer = post_sample(locked, "keygen", "user.password-reset")
    page = get_page(locked, f"/events/{answer['event_id']}?reveal=1", headers=BEARER)
    assert RESET_TOKEN in page
    assert "Sign out" not in text_of(page)  # no session to end


def test_inspect_token_leaves_ingest_health_and_static_open(locked: Any) -> None:
    answer = post_sample(locked, "keygen", "license.created")
    assert answer["ok"] is True
    assert locked.get("/-/health").status_code == 200
    assert locked.get("/static/inspector.css").status_code == 200
    assert locked.get("/static/inspector.js").status_code == 200


def test_inspect_without_a_token_everything_is_open(client: Any, posted: Any) -> None:
    for url in ("/", "/deliveries", "/events/1", "/deliveries/1", "/events/1?reveal=1"):
        get_page(client, url)
    text = text_of(get_page(client, "/login"))
    assert "has no inspector token" in text
    assert "Sign out" not in text_of(get_page(client, "/"))


def test_inspect_static_files_are_small_and_local() -> None:
    static = ROOT / "receiver" / "static"
    files = sorted(path.name for path in static.iterdir())
    assert files == ["inspector.css", "inspector.js"]
    for path in static.iterdir():
        content = path.read_text()
        assert len(content.encode()) < 32 * 1024, path.name
        assert "http://" not in content and "https://" not in content, path.name
    for template in (ROOT / "templates").glob("*.html"):
        assert "https://" not in template.read_text(), template.name


def test_inspect_phone_width_is_handled() -> None:
    css = (ROOT / "receiver" / "static" / "inspector.css").read_text()
    assert "@media (max-width: 760px)" in css
    base = (ROOT / "templates" / "base.html").read_text()
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in base


def test_inspect_every_template_is_used() -> None:
    used = set()
    for path in [*(ROOT / "templates").glob("*.html"), *(ROOT / "receiver" / "web").glob("*.py")]:
        used.update(re.findall(r'"(_?[a-z_]+\.html)"', path.read_text()))
    assert {path.name for path in Path(ROOT / "templates").glob("*.html")} <= used


def test_inspect_curl_escapes_control_characters_of_the_request(client: Any) -> None:
    """A path or header with ESC (which ends a terminal's bracketed paste), newline or a C1
    control: the command holds none of them as they are, and says the same request."""
    answer = client.post("/hooks/x%1B%5B201~%0Aid%7F%20%25%3F?a=%1b&b=\x1b&c=%41",
                         json={"type": "license.created", "id": 1},
                         headers={"X-Odd": "a\x1bb'c\\"})
    assert answer.status_code == 200
    delivery_id = answer.get_json()["delivery_id"]
    command = curl_of(get_page(client, f"/deliveries/{delivery_id}"), delivery_id)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", command), repr(command)
    assert "'http://localhost/hooks/x%1B[201~%0Aid%7F%20%25%3F?a=%1b&b=%1B&c=%41'" in command
    assert "-H $'X-Odd: a\\x1bb\\'c\\\\'" in command
    # The URL reads back as the path and query the receiver stored.
    url = re.search(r"curl -sS '([^']+)'", command)
    assert url is not None
    again = client.post(url.group(1).removeprefix("http://localhost"), json={"id": 2})
    first = client.get(f"/api/deliveries/{delivery_id}").get_json()
    second = client.get(f"/api/deliveries/{again.get_json()['delivery_id']}").get_json()
    assert (second["path"], second["query"]) == (first["path"], "a=%1b&b=%1B&c=%41")
    assert first["query"] == "a=%1b&b=\x1b&c=%41"
    # A C1 control (a byte the path carried, read as Latin-1) is its byte again.
    assert request_target("/hooks/\x9b\u00e9", "x=\x85") == "/hooks/%9B\u00e9?x=%85"
