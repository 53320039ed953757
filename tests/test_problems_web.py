"""Problems where people look: ``GET /api/problems`` and its acknowledge, the ``/problems``
page (its order, its alerts, escaping, the Acknowledge form), the count in every page's
header, ``receiver problems`` and the ``receiver_problems_open`` gauge. Problems are made
with the store's ``note_problem``, as the receiver's notice board makes them."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from click.testing import CliRunner
from markupsafe import escape

from receiver.cli import cli
from receiver.problems import kinds

from .pages import csrf_of, page_of, text_of

pytestmark = pytest.mark.both_backends

SCRIPT = "<script>alert('boom')</script>"


def note(store: Any, kind: str, subject: str, summary: str | None = None,
         **options: Any) -> dict[str, Any]:
    problem, opened = store.note_problem(kind, subject,
                                         summary or kinds.summary(kind, subject),
                                         kinds.link(kind, subject), **options)
    assert opened
    return problem


@pytest.fixture
def problems(store: Any) -> dict[str, dict[str, Any]]:
    """One of each state: resolved first, then acknowledged, then two open (ids in that
    order, so the page's order is not the ids')."""
    resolved = note(store, kinds.HANDLER_FAILING, "tests.crm")
    store.resolve_problem(kinds.HANDLER_FAILING, "tests.crm")
    acknowledged = note(store, kinds.SIGNATURE_REFUSED, "keygen")
    store.acknowledge_problem(acknowledged["id"])
    older = note(store, kinds.DISPATCH_BACKLOG, kinds.DISPATCH)
    newer = note(store, kinds.VENDOR_FAILING, "zentitle", count=3)
    return {"resolved": store.get_problem(resolved["id"]),
            "acknowledged": store.get_problem(acknowledged["id"]),
            "older": older, "newer": newer}


def header_count(page: str) -> str | None:
    tab = re.search(r'<a id="problems-tab"[^>]*>(.*?)</a>', page, re.S)
    assert tab, "the header has no Problems link"
    count = re.search(r'data-count="(\d+)"', tab.group(1))
    return count.group(1) if count else None


# -- the JSON API ------------------------------------------------------------------------------


def test_api_lists_open_then_acknowledged_then_resolved(client: Any, problems: Any) -> None:
    answer = client.get("/api/problems")
    assert answer.status_code == 200
    listed = answer.json["problems"]
    assert [p["id"] for p in listed] == [problems["newer"]["id"], problems["older"]["id"],
                                         problems["acknowledged"]["id"],
                                         problems["resolved"]["id"]]
    assert listed[0] == {**problems["newer"], "count": 3}
    assert set(listed[0]) == {"id", "kind", "subject", "status", "summary", "count",
                              "opened_at", "last_seen_at", "acknowledged_at", "resolved_at",
                              "link"}


def test_api_filters_by_status_newest_first(client: Any, store: Any, problems: Any) -> None:
    def ids(status: str) -> list[int]:
        answer = client.get(f"/api/problems?status={status}")
        assert answer.status_code == 200
        assert {p["status"] for p in answer.json["problems"]} <= {status}
        return [p["id"] for p in answer.json["problems"]]

    assert ids("open") == [problems["newer"]["id"], problems["older"]["id"]]
    assert ids("acknowledged") == [problems["acknowledged"]["id"]]
    assert ids("resolved") == [problems["resolved"]["id"]]
    assert client.get("/api/problems?status=").json == client.get("/api/problems").json
    refused = client.get("/api/problems?status=closed")
    assert refused.status_code == 400
    assert refused.json["error"] == ("status must be one of open, acknowledged, resolved; "
                                     "got 'closed'")


def test_api_acknowledge(client: Any, store: Any, problems: Any) -> None:
    problem_id = problems["newer"]["id"]
    answer = client.post(f"/api/problems/{problem_id}/acknowledge", json={})
    assert answer.status_code == 200
    assert answer.json["status"] == "acknowledged" and answer.json["acknowledged_at"]
    assert answer.json == store.get_problem(problem_id)
    again = client.post(f"/api/problems/{problem_id}/acknowledge", json={})
    assert again.json == answer.json  # stays acknowledged, the first time kept
    # Until it resolves; acknowledging a resolved one leaves it resolved.
    resolved = client.post(f"/api/problems/{problems['resolved']['id']}/acknowledge", json={})
    assert resolved.status_code == 200 and resolved.json == problems["resolved"]
    assert store.resolve_problem(kinds.VENDOR_FAILING, "zentitle")["status"] == "resolved"
    # An empty JSON body is {}.
    empty = client.post(f"/api/problems/{problem_id}/acknowledge", data="",
                        content_type="application/json")
    assert empty.status_code == 200 and empty.json["status"] == "resolved"


def test_api_acknowledge_refusals(client: Any, store: Any, problems: Any) -> None:
    problem_id = problems["older"]["id"]
    for unknown in (999_999, 0, 2**64):
        missing = client.post(f"/api/problems/{unknown}/acknowledge", json={})
        assert missing.status_code == 404, unknown
        assert missing.json["ok"] is False
    not_json = client.post(f"/api/problems/{problem_id}/acknowledge", data="{}")
    assert not_json.status_code == 400 and "application/json" in not_json.json["error"]
    not_object = client.post(f"/api/problems/{problem_id}/acknowledge", json=[1])
    assert not_object.status_code == 400
    assert store.get_problem(problem_id)["status"] == "open"  # nothing above changed it


def test_api_needs_the_token_like_the_rest(make_app: Any) -> None:
    app = make_app(INSPECTOR_TOKEN="s3cret")
    store = app.extensions["receiver.store"]
    problem = note(store, kinds.SIGNATURE_REFUSED, "keygen")
    client = app.test_client()
    assert client.get("/api/problems").status_code == 401
    assert client.post(f"/api/problems/{problem['id']}/acknowledge",
                       json={}).status_code == 401
    bearer = {"Authorization": "Bearer s3cret"}
    assert client.get("/api/problems", headers=bearer).json["problems"][0]["id"] == problem["id"]
    answer = client.post(f"/api/problems/{problem['id']}/acknowledge", json={}, headers=bearer)
    assert answer.json["status"] == "acknowledged"
    # Pages are sent to sign in, and the header of the login page counts nothing.
    assert client.get("/problems").status_code == 303
    assert 'id="problems-tab"' not in page_of(client, "/login")  # no navigation signed out


# -- the page ----------------------------------------------------------------------------------


def test_page_order_and_row(client: Any, problems: Any) -> None:
    page = page_of(client, "/problems")
    rows = re.findall(r'<tr id="problem-(\d+)" data-problem="\d+" data-status="(\w+)"', page)
    assert rows == [(str(problems["newer"]["id"]), "open"),
                    (str(problems["older"]["id"]), "open"),
                    (str(problems["acknowledged"]["id"]), "acknowledged"),
                    (str(problems["resolved"]["id"]), "resolved")]
    newer = page.split(f'<tr id="problem-{problems["newer"]["id"]}"')[1].split("</tr>")[0]
    text = text_of(newer)
    assert "vendor_failing" in text and "zentitle" in text
    assert kinds.summary(kinds.VENDOR_FAILING, "zentitle") in text
    assert '<td data-label="Count" data-field="count">3</td>' in newer
    assert problems["newer"]["opened_at"].replace("T", " ")[:19] in text
    link = html.escape(kinds.link(kinds.VENDOR_FAILING, "zentitle"))
    assert f'<a href="{link}">what it is about</a>' in newer
    assert ">Acknowledge</button>" in newer
    resolved = page.split(f'<tr id="problem-{problems["resolved"]["id"]}"')[1].split("</tr>")[0]
    assert problems["resolved"]["resolved_at"].replace("T", " ")[:19] in text_of(resolved)
    assert "Acknowledge" not in resolved
    acknowledged = page.split(
        f'<tr id="problem-{problems["acknowledged"]["id"]}"')[1].split("</tr>")[0]
    assert "Acknowledge</button>" not in acknowledged
    assert 'href="/api/problems"' in page  # the JSON twin


def test_page_empty_says_nothing_is_wrong(client: Any) -> None:
    page = page_of(client, "/problems")
    assert "Nothing is wrong" in text_of(page)
    assert header_count(page) == "0"
    assert "problem-count warn" not in page


def test_page_shows_alerts_and_escapes_what_it_did_not_write(client: Any,
                                                             store: Any) -> None:
    problem = note(store, kinds.SIGNATURE_REFUSED, "keygen", summary=f"refused {SCRIPT}",
                   channels=["url", "mail"])
    claimed = store.claim_alerts("test", lease_seconds=60)
    assert [alert["channel"] for alert in claimed] == ["url", "mail"]
    store.alert_failed(claimed[0]["id"], f"HTTPError: 500 {SCRIPT}", 3600)
    store.alert_sent(claimed[1]["id"])
    page = page_of(client, "/problems")
    assert "<script>" not in page
    assert str(escape(f"refused {SCRIPT}")) in page
    assert str(escape(f"HTTPError: 500 {SCRIPT}")) in page
    row = text_of(page.split(f'<tr id="problem-{problem["id"]}"')[1].split("</tr>")[0])
    assert f"opened via url: waiting after 1 try HTTPError: 500 {SCRIPT}" in row
    assert "opened via mail: sent" in row


def test_page_acknowledge_form(client: Any, store: Any, problems: Any) -> None:
    problem_id = problems["older"]["id"]
    page = page_of(client, "/problems")
    assert f'action="/problems/{problem_id}/acknowledge"' in page
    assert header_count(page) == "2"
    answer = client.post(f"/problems/{problem_id}/acknowledge",
                         data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/problems#problem-{problem_id}")
    assert store.get_problem(problem_id)["status"] == "acknowledged"
    page = page_of(client, "/problems")
    assert f'data-problem="{problem_id}" data-status="acknowledged"' in page
    assert header_count(page) == "1"
    missing = client.post("/problems/999999/acknowledge", data={"csrf_token": csrf_of(page)})
    assert missing.status_code == 404


def test_page_acknowledge_needs_the_csrf_token(client: Any, store: Any, problems: Any) -> None:
    problem_id = problems["older"]["id"]
    assert client.post(f"/problems/{problem_id}/acknowledge", data={}).status_code == 403
    assert client.post(f"/problems/{problem_id}/acknowledge",
                       data={"csrf_token": "forged"}).status_code == 403
    assert store.get_problem(problem_id)["status"] == "open"


# -- the header of every page -----------------------------------------------------------------


def test_every_page_header_counts_open_problems(client: Any, store: Any,
                                                problems: Any) -> None:
    for url in ("/", "/deliveries", "/deliveries?rejected=1", "/handlers", "/problems"):
        page = page_of(client, url)
        assert header_count(page) == "2", url
        assert re.search(r'<a id="problems-tab" href="/problems"', page), url
        assert 'class="badge problem-count warn"' in page, url
    assert "Problems 2" in text_of(page_of(client, "/"))
    error = client.get("/events/999999")  # an error page has the header too
    assert error.status_code == 404 and header_count(error.get_data(as_text=True)) == "2"
    store.resolve_problem(kinds.DISPATCH_BACKLOG, kinds.DISPATCH)
    store.resolve_problem(kinds.VENDOR_FAILING, "zentitle")
    page = page_of(client, "/")
    assert header_count(page) == "0" and "problem-count warn" not in page


def test_the_header_count_is_one_query_and_not_asked_by_the_api(app: Any, client: Any,
                                                                store: Any, problems: Any,
                                                                monkeypatch: Any) -> None:
    asked: list[int] = []
    counts = store.open_problem_counts

    def counting() -> dict[str, int]:
        asked.append(1)
        return counts()

    monkeypatch.setattr(store, "open_problem_counts", counting)
    page_of(client, "/handlers")
    assert len(asked) == 1
    for url in ("/api/events", "/api/problems", "/-/health", "/activity?for=events"):
        assert client.get(url).status_code == 200, url
    client.post("/hooks", data=b"{}", content_type="application/json")
    assert len(asked) == 1


# -- the command line and the metric ----------------------------------------------------------


def test_cli_problems_table(db_path: str, problems: Any) -> None:
    result = CliRunner().invoke(cli, ["problems", "--db", db_path])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "KIND", "SUBJECT", "STATUS", "COUNT", "LAST", "SEEN",
                                "SUMMARY"]
    assert [int(line.split()[0]) for line in lines[1:]] == [
        problems[name]["id"] for name in ("newer", "older", "acknowledged", "resolved")]
    newer = lines[1]
    assert newer.split()[1:5] == ["vendor_failing", "zentitle", "open", "3"]
    assert problems["newer"]["last_seen_at"].replace("T", " ")[:19] in newer
    assert newer.endswith(kinds.summary(kinds.VENDOR_FAILING, "zentitle"))
    only = CliRunner().invoke(cli, ["problems", "--db", db_path, "--status", "acknowledged"])
    assert only.exit_code == 0 and len(only.output.splitlines()) == 2
    assert "signature_refused" in only.output.splitlines()[1]


def test_cli_problems_json_and_empty(db_path: str, store: Any, problems: Any) -> None:
    result = CliRunner().invoke(cli, ["problems", "--db", db_path, "--json", "--status",
                                      "open"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert records == [{**problems["newer"], "count": 3}, problems["older"]]
    none = CliRunner().invoke(cli, ["problems", "--db", db_path, "--status", "resolved",
                                    "--json"])
    assert none.exit_code == 0 and [json.loads(line) for line in none.output.splitlines()] == [
        problems["resolved"]]
    bad = CliRunner().invoke(cli, ["problems", "--db", db_path, "--status", "closed"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_cli_problems_when_nothing_is_wrong(db_path: str, store: Any) -> None:
    result = CliRunner().invoke(cli, ["problems", "--db", db_path])
    assert result.exit_code == 0 and result.output == "no problems: nothing is wrong\n"
    as_json = CliRunner().invoke(cli, ["problems", "--db", db_path, "--json"])
    assert as_json.exit_code == 0 and as_json.output == ""


def test_metric_counts_open_problems_by_kind(client: Any, store: Any, problems: Any) -> None:
    lines = client.get("/-/metrics").get_data(as_text=True).splitlines()
    samples = {line.split()[0]: line.split()[1] for line in lines
               if line.startswith("receiver_problems_open{")}
    assert samples == {f'receiver_problems_open{{kind="{kind}"}}':
                       "1.0" if kind in (kinds.DISPATCH_BACKLOG, kinds.VENDOR_FAILING)
                       else "0.0" for kind in kinds.KINDS}
    assert "# TYPE receiver_problems_open gauge" in lines
