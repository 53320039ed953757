"""The package layout shows the flow: the web blueprints do not import one another (what they
share lives in ``receiver.web.common``), and no module imports back up a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parent.parent / "receiver" / "web"
SHARED = {"common", "csrf", "filters", "chart"}


def web_imports(path: Path) -> set[str]:
    """The sibling modules of ``receiver.web`` a module imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(alias.name for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in WEB.glob("*.py")}
    return {name: web_imports(path) & set(modules) for name, path in modules.items()}


def test_web_modules_form_no_import_cycle() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(name):], name]))
        if name in done:
            return
        for imported in sorted(edges[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(edges):
        visit(name, [])


def test_shared_web_helpers_import_no_blueprint() -> None:
    edges = graph()
    blueprints = set(edges) - SHARED - {"__init__"}
    assert blueprints >= {"api", "access", "ingest", "inspect"}
    for name in SHARED:
        assert not edges[name] & blueprints, f"{name} imports {edges[name] & blueprints}"
    for name in blueprints:
        others = edges[name] & (blueprints - {name})
        assert not others, f"blueprint {name} imports blueprint(s) {sorted(others)}"


def test_repository_holds_only_the_project_shape() -> None:
    """Top level as the design card has it: nothing written by a run gets committed (a test
    database named by a URL once landed as a folder ``postgresql:``)."""
    import subprocess

    root = WEB.parent.parent
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    top = {name.split("/", 1)[0] for name in tracked}
    allowed = {".ci", ".gitignore", "CHANGELOG.md", "README.md", "app.py", "pyproject.toml",
               "benchmarks", "docs", "examples", "receiver", "samples", "templates", "tests",
               "tools"}
    assert top <= allowed, f"unexpected top-level entries: {sorted(top - allowed)}"
