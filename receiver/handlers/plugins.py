"""Plugins: modules named by entry points in the ``receiver.handlers`` group.

Each entry point names a module whose import registers handlers (``@on`` or blinker
``connect``). ``load_plugins(settings)`` imports them once, at start (never at import time of
this module): built-ins first (``BUILTIN_PLUGINS``, the same entry points the project declares,
so they load even from an uninstalled checkout), then installed ones by name. A plugin that fails
to import is logged and reported, its half-made registrations are undone, and the others still
load. Calling it again in the same process imports nothing new; it reports the same outcome.

Example ``pyproject.toml`` of a plugin package::

    [project.entry-points."receiver.handlers"]
    my-handlers = "my_package.handlers"
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from . import signals

logger = logging.getLogger(__name__)

GROUP = "receiver.handlers"

# Built-in handlers load through the same path as third-party plugins.
BUILTIN_PLUGINS: dict[str, str] = {
    "password-reset-mail": "receiver.handlers.builtin.password_reset",
}


@dataclass
class Plugin:
    """A loaded plugin; ``handlers`` reads the registry, so it is always current."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False

    @property
    def handlers(self) -> list[signals.Handler]:
        return [handler for handler in signals.registered_handlers()
                if handler.plugin == self.name]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "handlers": [{"name": handler.name, "pattern": handler.pattern,
                          "source": handler.source, "conditional": handler.enabled is not None}
                         for handler in self.handlers],
        }


@dataclass
class PluginFailure:
    """A plugin whose import raised: ``error`` is ``"ImportError: ..."``."""

    name: str
    module: str
    distribution: str | None
    error: str
    traceback: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "error": self.error,
            "traceback": self.traceback,
        }


@dataclass
class PluginReport:
    """What ``load_plugins`` did, for ``GET /-/plugins`` and ``receiver plugins``."""

    loaded: list[Plugin] = field(default_factory=list)
    failed: list[PluginFailure] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """``plugins``, ``failed``, ``disabled`` and every registered ``handlers`` (plugins',
        the application's own ``@on`` handlers and blinker receivers)."""
        return {
            "plugins": [plugin.as_dict() for plugin in self.loaded],
            "failed": [failure.as_dict() for failure in self.failed],
            "disabled": list(self.disabled),
            "handlers": [handler.as_dict() for handler in signals.registered_handlers()],
        }


_lock = threading.RLock()
_outcomes: dict[tuple[str, str], Plugin | PluginFailure] = {}


def _entry_points() -> list[tuple[EntryPoint, bool]]:
    """Built-ins first, then installed entry points by name; each (name, value) once."""
    found: dict[tuple[str, str], tuple[EntryPoint, bool]] = {}
    for name, value in BUILTIN_PLUGINS.items():
        found[(name, value)] = (EntryPoint(name=name, value=value, group=GROUP), True)
    installed = sorted(entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value))
    for ep in installed:
        key = (ep.name, ep.value)
        if key in found:
            if found[key][1] and ep.dist is not None:
                found[key] = (ep, True)  # the project's own declaration: keep its version
            continue
        found[key] = (ep, False)
    return list(found.values())


def _distribution(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.name, dist.version


def _load(ep: EntryPoint, builtin: bool) -> Plugin | PluginFailure:
    distribution, version = _distribution(ep)
    before = signals.registry_keys()
    try:
        ep.load()
    except Exception as exc:
        # Undo what the module registered before it failed: a plugin loads whole or not at all.
        signals.unregister(signals.registry_keys() - before)
        message = str(exc)
        error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        logger.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, error,
                     exc_info=True)
        return PluginFailure(name=ep.name, module=ep.value, distribution=distribution,
                             error=error, traceback=traceback.format_exc())
    signals.tag_plugin(signals.registry_keys() - before, ep.name)
    signals.register_module(ep.module, plugin=ep.name)
    plugin = Plugin(name=ep.name, module=ep.value, distribution=distribution, version=version,
                    builtin=builtin)
    logger.info("plugin %s (%s) loaded: %s", ep.name, ep.value,
                ", ".join(f"{h.name} <- {h.pattern}" for h in plugin.handlers) or "no handlers")
    return plugin


def load_plugins(settings: Mapping[str, Any]) -> PluginReport:
    """Import every ``receiver.handlers`` plugin not named in ``settings["DISABLED_PLUGINS"]``.

    Call once at start. Idempotent: a plugin already imported (or already failed) in this
    process is not imported again; its handlers are re-activated if the registry was reset.
    """
    disabled = signals.disabled_plugins(settings)
    report = PluginReport()
    with _lock:
        candidates = _entry_points()
        for ep, builtin in candidates:
            if ep.name in disabled:
                if ep.name not in report.disabled:
                    report.disabled.append(ep.name)
                continue
            key = (ep.name, ep.value)
            outcome = _outcomes.get(key)
            if outcome is None:
                outcome = _outcomes[key] = _load(ep, builtin)
            elif isinstance(outcome, Plugin):
                signals.register_module(ep.module, plugin=ep.name)
            if isinstance(outcome, Plugin):
                report.loaded.append(outcome)
            else:
                report.failed.append(outcome)
    unknown = disabled - {ep.name for ep, _ in candidates}
    if unknown:
        logger.warning("DISABLED_PLUGINS names %s, which no installed plugin has",
                       ", ".join(sorted(unknown)))
    return report


def reset_plugins() -> None:
    """For tests: forget which plugins were loaded (modules stay imported)."""
    with _lock:
        _outcomes.clear()
