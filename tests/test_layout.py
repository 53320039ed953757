"""The package layout shows the flow: each part of ``receiver`` sits on a floor, imports
point only to its own floor or below, and no modules import one another in a circle. Every
import counts, those made only for type hints and those inside functions included."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "receiver"

#: The floors, lowest first. A module may import modules of its own floor and of the floors
#: below. The package's ``__init__`` docstrings say the same in words.
FLOORS: list[set[str]] = [
    {"receiver.errors", "receiver.events", "receiver.resources", "receiver.login_links"},
    {"receiver.config"},
    {"receiver.dialects"},
    {"receiver.verify"},
    {"receiver.store"},
    {"receiver.read"},
    {"receiver.handlers"},
    {"receiver.problems"},
    {"receiver.ingest"},
    {"receiver.clients"},
    {"receiver.reconcile"},
    {"receiver.web"},
    {"receiver", "receiver.signals"},  # create_app, and the public face of the handler API
    {"receiver.cli", "receiver.gunicorn_hooks", "receiver.__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # ``from pkg import mod`` imports the module; ``from mod import name`` the module.
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES
                       else origin for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def floor_of(name: str) -> int:
    """The floor of the longest prefix of ``name`` that ``FLOORS`` names."""
    candidate = name
    while candidate:
        for number, floor in enumerate(FLOORS):
            if candidate in floor:
                return number
        candidate = candidate.rpartition(".")[0]
    raise LookupError(name)


GRAPH = {name: imported_modules(name) for name in MODULES}


def test_every_module_has_a_floor() -> None:
    for name in MODULES:
        floor_of(name)


def test_imports_point_to_the_same_floor_or_below() -> None:
    upward = [f"{name} (floor {floor_of(name)}) imports {target} (floor {floor_of(target)})"
              for name, targets in GRAPH.items() for target in sorted(targets)
              if floor_of(target) > floor_of(name)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(name):], name]))
        if name in done:
            return
        for target in sorted(GRAPH[name]):
            # A package's __init__ re-exporting its own modules is how a package is built,
            # not a cycle of the flow: only follow imports that leave the importer's package.
            if name.startswith(target + ".") and MODULES[target].name == "__init__.py":
                continue
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])


def test_flask_is_imported_only_by_the_web_the_app_factory_and_the_cli() -> None:
    allowed_floors = {floor_of("receiver.web"), floor_of("receiver"), floor_of("receiver.cli")}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        uses_flask = any(
            (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "flask")
            or (isinstance(node, ast.Import)
                and any(alias.name.split(".")[0] == "flask" for alias in node.names))
            for node in ast.walk(tree))
        if uses_flask:
            assert floor_of(name) in allowed_floors, f"{name} imports flask"


def test_web_blueprints_do_not_import_one_another() -> None:
    """What blueprints share lives in ``web.common``, ``web.csrf``, ``web.chart``,
    ``web.streaming`` and ``web.brake``."""
    shared = {"receiver.web.common", "receiver.web.csrf", "receiver.web.chart",
              "receiver.web.streaming", "receiver.web.brake", "receiver.web"}
    blueprints = {name for name in MODULES if name.startswith("receiver.web.")} - shared
    assert blueprints >= {"receiver.web.api", "receiver.web.access", "receiver.web.ingest",
                          "receiver.web.inspect", "receiver.web.handlers"}
    for name in blueprints | shared - {"receiver.web"}:
        others = GRAPH[name] & (blueprints - {name})
        assert not others, f"{name} imports blueprint(s) {sorted(others)}"


def test_every_package_says_what_it_holds_and_may_import() -> None:
    for path in PACKAGE.rglob("__init__.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring and len(docstring) > 80, f"{path.relative_to(ROOT)} needs a docstring"


def test_layout_check_sees_a_violation() -> None:
    """The checks above would notice: the store importing the web is upward."""
    assert floor_of("receiver.web.api") > floor_of("receiver.store.sqlite")
    assert floor_of("receiver.handlers.builtin.password_reset") == floor_of("receiver.handlers")


def test_repository_holds_only_the_project_shape() -> None:
    """Top level as the design card has it: nothing written by a run gets committed (a test
    database named by a URL once landed as a folder ``postgresql:``)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=False).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    top = {name.split("/", 1)[0] for name in tracked}
    allowed = {".ci", ".gitignore", "CHANGELOG.md", "README.md", "app.py", "pyproject.toml",
               "benchmarks", "docs", "examples", "receiver", "samples", "templates", "tests",
               "tools"}
    assert top <= allowed, f"unexpected top-level entries: {sorted(top - allowed)}"
