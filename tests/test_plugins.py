"""Plugin discovery through real distributions on sys.path (no patching of importlib)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.config import load_settings
from receiver.events import Event
from receiver.handlers import plugins, signals
from receiver.handlers.plugins import load_plugins

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "receiver-example-handlers"


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    signals.reset_registry()
    plugins.reset_plugins()
    yield
    signals.reset_registry()
    plugins.reset_plugins()


@pytest.fixture
def settings() -> dict[str, Any]:
    return load_settings({}, environ={})


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A directory on sys.path to install distributions into; its modules are forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = Site(tmp_path)
    yield installed
    for module in installed.modules:
        sys.modules.pop(module, None)


class Site:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.modules: list[str] = []

    def module_name(self, stem: str) -> str:
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        self.modules.append(name)
        return name

    def install(self, distribution: str, entry_points: dict[str, str],
                modules: dict[str, str]) -> None:
        """Write modules and a ``<distribution>-1.0.dist-info`` as pip would."""
        for module, source in modules.items():
            (self.path / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.path / f"{distribution.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n"
        )
        lines = [f"{name} = {value}" for name, value in entry_points.items()]
        (info / "entry_points.txt").write_text("[receiver.handlers]\n" + "\n".join(lines) + "\n")


def make_event(event_type: str, source: str = "keygen") -> Event:
    return Event(
        id=3, source=source, event_type=event_type, vendor_event=event_type,
        external_id="e-3", occurred_at=None, received_at="2024-05-01T10:00:00.000Z",
        account="acct-9", actor=None, subject_type=event_type.split(".")[0],
        subject_id="lic-9", endpoint="default", signature_status="valid",
        data={"data": {"id": "lic-9"}},
    )


GOOD = """
    from receiver import on

    SEEN = []

    @on("license.*")
    def remember(event, **extra):
        SEEN.append(event.event_type)
"""


def by_name(report: plugins.PluginReport) -> dict[str, Any]:
    outcomes: list[plugins.Plugin | plugins.PluginFailure] = [*report.loaded, *report.failed]
    return {outcome.name: outcome for outcome in outcomes}


def test_plugins_load_from_real_distribution(site: Site, settings: dict[str, Any]) -> None:
    module = site.module_name("good_plugin")
    site.install("acme-license-hooks", {"acme-hooks": module}, {module: GOOD})

    report = load_plugins(settings)

    plugin = by_name(report)["acme-hooks"]
    assert isinstance(plugin, plugins.Plugin)
    assert (plugin.module, plugin.distribution, plugin.version, plugin.builtin) == \
        (module, "acme-license-hooks", "1.0", False)
    assert [(h.name, h.pattern, h.source) for h in plugin.handlers] == \
        [(f"{module}.remember", "license.*", None)]
    runs = signals.dispatch(make_event("license.created"), settings)
    assert [(run.handler, run.status) for run in runs] == [(f"{module}.remember", "ok")]
    assert sys.modules[module].SEEN == ["license.created"]


def test_plugins_broken_plugin_reported_while_good_one_loads(
    site: Site, settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    good = site.module_name("good_plugin")
    broken = site.module_name("broken_plugin")
    site.install("acme-good", {"good": good}, {good: GOOD})
    site.install("acme-broken", {"broken": broken}, {broken: """
        from receiver import on

        @on("license.created")
        def half_made(event, **extra):
            pass

        raise ImportError("acme-broken needs the libacme package; pip install libacme")
    """})

    with caplog.at_level(logging.ERROR, logger="receiver.handlers.plugins"):
        report = load_plugins(settings)

    found = by_name(report)
    assert isinstance(found["good"], plugins.Plugin)
    failure = found["broken"]
    assert isinstance(failure, plugins.PluginFailure)
    assert failure.error == ("ImportError: acme-broken needs the libacme package; "
                             "pip install libacme")
    assert failure.module == broken and failure.distribution == "acme-broken"
    assert f"{broken}.py" in failure.traceback
    assert not report.ok
    assert "broken" in caplog.text and "libacme" in caplog.text
    # What the broken module registered before failing is undone; the good plugin runs.
    runs = signals.dispatch(make_event("license.created"), settings)
    assert [run.handler for run in runs] == [f"{good}.remember"]
    as_dict = report.as_dict()
    assert [entry["name"] for entry in as_dict["failed"]] == ["broken"]
    assert as_dict["failed"][0]["error"].startswith("ImportError: ")


def test_plugins_syntax_error_and_bad_pattern_reported(
    site: Site, settings: dict[str, Any]
) -> None:
    syntax = site.module_name("syntax_plugin")
    pattern = site.module_name("pattern_plugin")
    site.install("acme-syntax", {"syntax": syntax}, {syntax: "def oops(:\n"})
    site.install("acme-pattern", {"pattern": pattern}, {pattern: """
        from receiver import on

        @on("License.*")
        def shouting(event, **extra):
            pass
    """})
    found = by_name(load_plugins(settings))
    assert found["syntax"].error.startswith("SyntaxError: ")
    assert found["pattern"].error.startswith("ValueError: handler pattern 'License.*'")


def test_plugins_disabled_plugin_not_imported(site: Site, settings: dict[str, Any]) -> None:
    module = site.module_name("disabled_plugin")
    site.install("acme-off", {"acme-off": module}, {module: GOOD})

    report = load_plugins({**settings, "DISABLED_PLUGINS": ["acme-off"]})

    assert report.disabled == ["acme-off"]
    assert "acme-off" not in by_name(report)
    assert module not in sys.modules


def test_plugins_loading_twice_is_a_no_op(site: Site, settings: dict[str, Any]) -> None:
    module = site.module_name("counted_plugin")
    counter = site.path / "imports.txt"
    site.install("acme-counted", {"counted": module}, {module: GOOD + f"""
    with open({str(counter)!r}, "a") as handle:
        handle.write("imported\\n")
    """})

    first = load_plugins(settings)
    second = load_plugins(settings)

    assert counter.read_text() == "imported\n"
    assert first.as_dict() == second.as_dict()
    assert [h.name for h in signals.registered_handlers()].count(f"{module}.remember") == 1


def test_plugins_handlers_come_back_after_registry_reset(
    site: Site, settings: dict[str, Any]
) -> None:
    module = site.module_name("reset_plugin")
    site.install("acme-reset", {"reset": module}, {module: GOOD})
    load_plugins(settings)
    signals.reset_registry()
    assert signals.registered_handlers() == []

    report = load_plugins(settings)

    assert [h.name for h in by_name(report)["reset"].handlers] == [f"{module}.remember"]
    assert [h.plugin for h in signals.handlers_for(make_event("license.created"), settings)] \
        == ["reset"]


def test_plugins_disabling_later_skips_already_loaded_handlers(
    site: Site, settings: dict[str, Any]
) -> None:
    module = site.module_name("later_plugin")
    site.install("acme-later", {"later": module}, {module: GOOD})
    load_plugins(settings)
    event = make_event("license.created")
    assert len(signals.handlers_for(event, settings)) == 1
    # Another app in the same process disables it: its handlers do not run there.
    assert signals.handlers_for(event, {**settings, "DISABLED_PLUGINS": ["later"]}) == []


def test_plugins_builtin_password_reset_loads_through_same_path(
    settings: dict[str, Any]
) -> None:
    report = load_plugins(settings)
    builtin = by_name(report)["password-reset-mail"]
    assert builtin.builtin and builtin.module == "receiver.handlers.builtin.password_reset"
    assert [(h.name, h.pattern, h.source) for h in builtin.handlers] == [
        ("receiver.builtin.password_reset.mail_password_reset_token", "user.password-reset",
         "keygen"),
    ]
    report = load_plugins({**settings, "DISABLED_PLUGINS": "password-reset-mail"})
    assert report.disabled == ["password-reset-mail"]


def test_plugins_report_is_json(site: Site, settings: dict[str, Any]) -> None:
    module = site.module_name("json_plugin")
    site.install("acme-json", {"json": module}, {module: GOOD})
    as_dict = json.loads(json.dumps(load_plugins(settings).as_dict()))
    assert set(as_dict) == {"plugins", "failed", "disabled", "handlers"}
    [entry] = [plugin for plugin in as_dict["plugins"] if plugin["name"] == "json"]
    assert entry["handlers"] == [{"name": f"{module}.remember", "pattern": "license.*",
                                  "source": None, "conditional": False}]
    assert {"name": f"{module}.remember", "pattern": "license.*", "source": None,
            "module": module, "plugin": "json", "conditional": False, "via": "on",
            "retries": None} in as_dict["handlers"]


def test_plugins_example_package_loads_and_runs(
    site: Site, settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """examples/receiver-example-handlers, installed as its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"]["receiver.handlers"]
    monkeypatch.syspath_prepend(str(EXAMPLE))
    site.modules.append("receiver_example_handlers")
    site.install(project["project"]["name"], declared, {})

    report = load_plugins(settings)
    plugin = by_name(report)["example-license-log"]
    assert isinstance(plugin, plugins.Plugin)
    assert sorted(h.pattern for h in plugin.handlers) == ["license.*", "license.expired"]

    with caplog.at_level(logging.INFO, logger="receiver_example_handlers"):
        runs = signals.dispatch(make_event("license.expired"), settings)
    assert [run.status for run in runs] == ["ok", "ok"]
    assert "EXPIRED: license lic-9 of account acct-9" in caplog.text
    assert "keygen license.expired for license lic-9" in caplog.text


def test_plugins_not_loaded_at_import() -> None:
    code = ("import sys, receiver, receiver.handlers.plugins, receiver.signals; "
            "print('receiver.handlers.builtin.password_reset' in sys.modules, "
            "len(receiver.signals.registered_handlers()))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.split() == ["False", "0"]
