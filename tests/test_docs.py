"""Meta-tests: the project's own documents describe what exists. Like Datasette's test that
every plugin hook is documented: a setting in ``config.SETTINGS``, a command or option of the
``receiver`` group, a route in ``app.url_map``, a field of a record or a query parameter of
the OpenAPI description that the docs do not mention fails here. So does a relative link in a
Markdown file that leaves the repository or points to nothing, and any absolute path of one
machine anywhere in the repository."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest

import receiver
from receiver import verify
from receiver.cli import cli
from receiver.config import SETTINGS, SOURCES
from receiver.handlers import plugins
from receiver.store.base import DELIVERY_FIELDS, EVENT_FIELDS, RUN_FIELDS
from receiver.store.problem_queries import PROBLEM_FIELDS
from receiver.web.api import OPENAPI_FILE

from .conftest import ROOT, SAMPLES

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
REFERENCE = (DOCS / "reference.md").read_text()
SENDERS = (DOCS / "senders.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"Install and run the tests.*?```sh\n(.+?)\n```", README, re.S)
    assert command is not None
    assert command.group(1) in (ROOT / ".ci" / "run").read_text()


# -- Markdown helpers --------------------------------------------------------------------------

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)


def without_code(text: str) -> str:
    """The text without fenced code blocks (a ``# comment`` there is not a heading)."""
    return FENCE.sub("", text)


def section(text: str, heading: str) -> str:
    """From the heading line to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = re.search(rf"^{re.escape(heading)}[ \t]*$", text, re.M)
    assert start is not None, f"no heading {heading!r}"
    rest = text[start.end():]
    end = re.search(rf"^#{{1,{level}}} ", without_code_keep_length(rest), re.M)
    return rest[:end.start()] if end else rest


def without_code_keep_length(text: str) -> str:
    return FENCE.sub(lambda match: " " * len(match.group(0)), text)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (header and ruler rows included)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and line.rstrip().endswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            rows.append([cell.strip() for cell in cells])
    return rows


# -- settings -------------------------------------------------------------------------------------


def shown_default(value: Any) -> str:
    """A default as the settings table writes it."""
    if value is None or value == []:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{', '.join(value)}`"
    return f"`{value}`"


def test_every_setting_is_in_the_reference_with_its_default() -> None:
    rows = {row[0]: row for row in table_rows(section(REFERENCE, "## Settings"))}
    for setting in SETTINGS:
        row = rows.get(f"`RECEIVER_{setting.name}`")
        assert row is not None, f"RECEIVER_{setting.name} is not in docs/reference.md#settings"
        written = row[2]
        # A duration may be written as people write it: `30s` for 30.0 seconds.
        assert written == shown_default(setting.default) or (
            written.startswith("`") and setting.parse(written.strip("`")) == setting.default
        ), setting.name
        assert row[3], setting.name
    assert "`RECEIVER_CONFIG`" in rows


def test_every_endpoint_key_is_in_the_reference() -> None:
    from receiver.config import _ENDPOINT_KEYS

    text = section(REFERENCE, "## Endpoints")
    for key in _ENDPOINT_KEYS:
        assert f"`{key}`" in text, key


# -- the command line -----------------------------------------------------------------------------


def test_every_command_has_its_section_in_the_reference() -> None:
    assert isinstance(cli, click.Group)
    headings = re.findall(r"^### (receiver [\w-]+)$", section(REFERENCE, "## Command line"),
                          re.M)
    assert sorted(headings) == sorted(f"receiver {name}" for name in cli.commands)


def test_every_command_option_and_argument_is_in_the_reference() -> None:
    commands = section(REFERENCE, "## Command line")
    for parameter in cli.params:
        for option in parameter.opts:
            assert f"`receiver {option}`" in commands, option
    for name, command in cli.commands.items():
        text = section(commands, f"### receiver {name}")
        for parameter in command.params:
            if isinstance(parameter, click.Option):
                for option in [*parameter.opts, *parameter.secondary_opts]:
                    assert re.search(rf"`{re.escape(option)}(?![\w-])", text), (
                        f"receiver {name} {option}")
                if isinstance(parameter.envvar, str):
                    assert f"`{parameter.envvar}`" in REFERENCE, parameter.envvar
            else:
                assert (parameter.name or "").upper() in text, f"receiver {name} {parameter}"


# -- routes, records, parameters --------------------------------------------------------------


def test_every_route_is_in_the_reference(app) -> None:
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"<\1>", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            assert f"`{method} {path}`" in REFERENCE, f"{method} {path}"


@pytest.mark.parametrize(("heading", "fields"), [
    ("## The event record", EVENT_FIELDS),
    ("## Deliveries", DELIVERY_FIELDS),
    ("## Handler runs", RUN_FIELDS),
    ("## Problems", PROBLEM_FIELDS),
])
def test_every_record_field_is_in_the_reference(heading, fields) -> None:
    documented = {row[0] for row in table_rows(section(REFERENCE, heading))}
    assert {f"`{field}`" for field in fields} <= documented


def test_every_query_parameter_of_the_description_is_in_the_reference() -> None:
    description = json.loads(OPENAPI_FILE.read_text())
    documented = {row[0] for row in table_rows(section(REFERENCE, "## Query parameters"))}
    for parameter in description["components"]["parameters"].values():
        if parameter["in"] == "query":
            assert f"`{parameter['name']}`" in documented, parameter["name"]


def test_the_handler_api_is_in_the_reference() -> None:
    text = section(REFERENCE, "## Handler API")
    for name in receiver.__all__:
        assert f"receiver.{name}" in text, name
    for group in (plugins.GROUP, verify.VERIFIER_GROUP):
        assert f"`{group}`" in text, group


# -- senders --------------------------------------------------------------------------------------

SAMPLE_MARK = re.compile(r"<!-- sample: ([a-z]+)/([^ ]+) -->")
JSON_BLOCK = re.compile(r"```json\n(.*?)\n```", re.S)


def test_every_source_has_a_sample_in_senders() -> None:
    shown = {match.group(1) for match in SAMPLE_MARK.finditer(SENDERS)}
    assert shown == set(SOURCES)


def test_sender_samples_are_the_bundled_files() -> None:
    """Each marked sample is followed by its headers, its body and its record, exactly as in
    samples/ (a ping's fresh ``ping:<uuid>`` key stands for the file's ``ping:*``)."""
    for match in SAMPLE_MARK.finditer(SENDERS):
        base = SAMPLES / match.group(1) / match.group(2)
        blocks = [json.loads(block) for block in
                  JSON_BLOCK.findall(SENDERS, match.end())[:3]]
        headers, body, record = blocks
        assert headers == json.loads(base.with_name(base.name + ".headers.json").read_text())
        assert body == json.loads(base.with_name(base.name + ".json").read_text())
        expected = json.loads(base.with_name(base.name + ".normalized.json").read_text())
        if expected["external_id"] == "ping:*":
            assert record["external_id"].startswith("ping:")
            record["external_id"] = "ping:*"
        assert record == expected, base.name


# -- links and paths ------------------------------------------------------------------------------


def tracked_files() -> list[Path]:
    """The repository's files: git's list in a checkout (new files not yet added included,
    ignored ones not), else every file but caches."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
            capture_output=True, check=True).stdout.decode().split("\0")
        return [ROOT / name for name in listed if name and (ROOT / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skipped = {".git", ".venv", "build", "dist", "__pycache__", ".mypy_cache",
                   ".pytest_cache", ".ruff_cache", ".hypothesis"}
        return [path for path in ROOT.rglob("*") if path.is_file()
                and not skipped & set(path.relative_to(ROOT).parts)
                and not path.name.endswith(".egg-info")]


def markdown_files() -> list[Path]:
    return sorted(path for path in tracked_files() if path.suffix == ".md")


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (``-1``, ``-2`` for repeats)."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", without_code(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")
        candidate, count = slug, 0
        while candidate in anchors:
            count += 1
            candidate = f"{slug}-{count}"
        anchors.add(candidate)
    return anchors


LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]\n]+\]:\s*(\S+)", re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def relative_links(path: Path) -> list[str]:
    text = INLINE_CODE.sub("", without_code(path.read_text()))
    links = [match.group(1) or match.group(2) for match in LINK.finditer(text)]
    return [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link, re.I)]


#: Every document of docs/; the README links each of them.
DOCUMENTS = ["docs/senders.md", "docs/handlers.md", "docs/inspector.md", "docs/forward.md",
             "docs/reference.md", "docs/operations.md", "docs/benchmarks.md",
             "docs/CONTRIBUTING.md", "docs/nothing-missed.md"]

def test_readme_and_docs_are_among_the_markdown_files_checked() -> None:
    checked = {path.relative_to(ROOT).as_posix() for path in markdown_files()}
    assert {"README.md", *DOCUMENTS} <= checked
    assert {path.relative_to(ROOT).as_posix() for path in DOCS.glob("*.md")} <= set(DOCUMENTS)


def test_the_readme_is_short_and_links_every_document() -> None:
    assert len(README.splitlines()) < 300
    for document in DOCUMENTS:
        assert f"]({document})" in README, document


@pytest.mark.parametrize("path", markdown_files(),
                         ids=lambda path: path.relative_to(ROOT).as_posix())
def test_relative_links_stay_in_the_repository_and_resolve(path: Path) -> None:
    root = ROOT.resolve()
    for link in relative_links(path):
        target_text, _, anchor = link.partition("#")
        target = (path.parent / target_text).resolve() if target_text else path.resolve()
        assert target == root or root in target.parents, f"{link} leaves the repository"
        assert target.exists(), f"{link} points to nothing"
        if anchor and target.suffix == ".md":
            assert anchor in heading_anchors(target.read_text()), f"{link}: no such heading"


# Put together so that this file does not match itself.
MACHINE_PATH = re.compile("|".join([
    re.escape("/" + "work/"), re.escape("/" + "root/"), re.escape("/" + "home/") + r"[A-Za-z_]",
    re.escape(".." + "/shared"),
]))


def test_no_absolute_machine_path_anywhere_in_the_repository() -> None:
    found = []
    for path in tracked_files():
        text = path.read_bytes().decode("utf-8", "replace")
        for match in MACHINE_PATH.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert found == []
