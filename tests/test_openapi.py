"""``GET /api/openapi.json``: a valid OpenAPI 3.1 description, served as the file in the
package, covering every JSON API and ingest route; schemathesis, driven by it against a real
``receiver serve``, finds no 5xx and no answer that differs from what it describes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from receiver.web.api import OPENAPI_FILE

from .conftest import start_server

DESCRIPTION: dict[str, Any] = json.loads(OPENAPI_FILE.read_text())
DESCRIBED_PREFIXES = ("/api/", "/-/", "/hooks")


def test_description_is_valid_openapi_3_1() -> None:
    validate(DESCRIPTION)
    assert DESCRIPTION["openapi"].startswith("3.1.")


def test_description_version_is_the_package_version() -> None:
    assert DESCRIPTION["info"]["version"] == version("license-webhook-receiver")


def rule_path(rule: str) -> str:
    """``/api/events/<int:event_id>`` as ``/api/events/{event_id}``."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_api_and_ingest_route_is_described_and_nothing_else(app) -> None:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        path = rule_path(rule.rule)
        if path.startswith(DESCRIBED_PREFIXES):
            methods = {method.lower() for method in rule.methods or ()} - {"head", "options"}
            routes.setdefault(path, set()).update(methods)
    described = {path: set(operations) - {"parameters", "summary", "description"}
                 for path, operations in DESCRIPTION["paths"].items()}
    assert described == routes


def test_every_path_parameter_is_declared() -> None:
    for path, operations in DESCRIPTION["paths"].items():
        wanted = set(re.findall(r"{([a-z_]+)}", path))
        for method, operation in operations.items():
            declared = set()
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:
                    parameter = DESCRIPTION["components"]["parameters"][
                        parameter["$ref"].rsplit("/", 1)[1]]
                if parameter["in"] == "path":
                    declared.add(parameter["name"])
            assert declared == wanted, (method, path)


def test_served_as_the_file_and_open_behind_a_token(make_app) -> None:
    client = make_app(INSPECTOR_TOKEN="s3cret").test_client()
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_data() == OPENAPI_FILE.read_bytes()
    assert response.headers["ETag"]
    again = client.get("/api/openapi.json", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/api/events").status_code == 401  # the rest of /api is not open


def test_pages_link_to_the_description(client) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'href="/api/openapi.json"' in page


# -- schemathesis against a live receiver ---------------------------------------------------

TOKEN = "schemathesis-token"
#: Every check but one: ``positive_data_acceptance`` would need the description to know which
#: handler names exist, which hosts redeliver may reach and which body shape each sender
#: has. Those answers are described 4xx instead, and the other checks hold them to it.
EXCLUDED_CHECKS = "positive_data_acceptance"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_schemathesis_finds_nothing(tmp_path: Path, db_path: str) -> None:
    """Examples per operation are bounded so the run stays well under a minute; the seed
    changes every run, and a failure prints it with a curl command that reproduces it. On
    both backends: PostgreSQL refuses some text SQLite takes (NUL)."""
    # Its ignored_auth check sends wrong tokens on every operation and wants 401s, not the
    # brake's 429s (tests/test_access.py tries the brake).
    server = start_server(tmp_path, env={"RECEIVER_INSPECTOR_TOKEN": TOKEN,
                                         "RECEIVER_TOKEN_BRAKE": "0"}, database=db_path)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/api/openapi.json",
             "--header", f"Authorization: Bearer {TOKEN}", "--checks", "all",
             "--exclude-checks", EXCLUDED_CHECKS, "--max-examples", "25", "--workers", "1",
             "--generation-database", "none", "--request-timeout", "20", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "Stateful" in output and "passed" in output
        assert "Traceback" not in server.output(), server.output()
        # It really went through ingest and the API: deliveries and events were stored.
        health = requests.get(server.url + "/-/health", timeout=5).json()
        assert health["deliveries"] > 10 and health["events"] > 0
    finally:
        server.stop()

