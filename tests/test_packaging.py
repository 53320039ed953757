"""The wheel, not the checkout: ``pip install .`` (non-editable) must ship the templates,
samples and static files that live outside the package in the checkout, the OpenAPI
description, and the entry points. The other tests run against the editable install, which
would hide a file left out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools reuses a build/ directory in the source tree, whose stale
    # files would hide one that the configuration no longer ships.
    source = tmp_path_factory.mktemp("source") / "receiver"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", "*.db", "*.db-*", "*.db.secret"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
         str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("*.whl")
    return built


def test_wheel_ships_every_resource_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [f"receiver/templates/{path.relative_to(ROOT / 'templates')}"
              for path in (ROOT / "templates").rglob("*") if path.is_file()]
    wanted += [f"receiver/samples/{path.relative_to(ROOT / 'samples')}"
               for path in (ROOT / "samples").rglob("*") if path.is_file()]
    wanted += [f"receiver/static/{path.name}" for path in (ROOT / "receiver" / "static").iterdir()]
    wanted.append("receiver/openapi.json")
    assert len(wanted) > 500
    assert sorted(set(wanted) - names) == []


def test_wheel_ships_every_module(wheel: Path) -> None:
    """A subpackage missing from pyproject's ``packages`` list is left out of the wheel."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = [path.relative_to(ROOT).as_posix() for path in (ROOT / "receiver").rglob("*.py")]
    assert "receiver/verify/keygen.py" in modules
    assert sorted(set(modules) - names) == []


def test_wheel_declares_the_command_and_the_builtin_handler(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [name for name in archive.namelist()
                       if name.endswith(".dist-info/entry_points.txt")]
    text = archive.read(entry_points).decode()
    assert "receiver = receiver.cli:cli" in text
    assert "[receiver.handlers]" in text
    assert "password-reset-mail = receiver.handlers.builtin.password_reset" in text


def test_unpacked_wheel_serves_pages_and_samples(wheel: Path, tmp_path: Path) -> None:
    """Import the package from the unpacked wheel (ahead of the checkout on the path) and
    use what lives outside the package in the checkout: page templates, static files and
    the bundled samples."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = textwrap.dedent(f"""
        import json, receiver
        from receiver import create_app
        from receiver.resources import resource_dir
        assert receiver.__file__.startswith({str(site)!r}), receiver.__file__
        app = create_app({{"DATABASE": {str(tmp_path / "r.db")!r}}}, background=False)
        client = app.test_client()
        samples = resource_dir("samples")
        assert str(samples).startswith({str(site)!r}), samples
        body = (samples / "licensespring" / "license.created.json").read_bytes()
        posted = client.post("/hooks", data=body, content_type="application/json")
        assert posted.status_code == 200, posted.get_data(as_text=True)
        page = client.get("/")
        assert page.status_code == 200 and b"license.created" in page.data
        event = client.get(f"/events/{{posted.json['event_id']}}")
        assert event.status_code == 200
        assert client.get("/static/inspector.css").status_code == 200
        described = client.get("/api/openapi.json")
        assert described.status_code == 200 and described.json["openapi"] == "3.1.0"
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(site)}
    env = {name: value for name, value in env.items() if not name.startswith("RECEIVER_")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
