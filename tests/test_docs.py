"""Meta-tests: the code is lint and type clean, and the README documents what exists."""

from __future__ import annotations

import re
import subprocess
import sys

import click

from receiver.cli import cli
from receiver.config import SETTINGS

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "receiver"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_setting_is_in_the_readme() -> None:
    for setting in SETTINGS:
        assert f"`RECEIVER_{setting.name}`" in README, setting.name


def test_every_command_is_in_the_readme() -> None:
    assert isinstance(cli, click.Group)
    for name in cli.commands:
        assert re.search(rf"receiver {re.escape(name)}\b", README), name


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"Install and run the tests.*?```sh\n(.+?)\n```", README, re.S)
    assert command is not None
    assert command.group(1) in (ROOT / ".ci" / "run").read_text()
