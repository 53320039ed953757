"""Verifiers the user supplies, for senders without a published scheme (LicenseSpring) or
without a built-in one (``generic`` and any other source): a ``"module:function"`` named by an
endpoint's ``verifier`` setting (which also replaces a built-in scheme), or an entry point in
group ``receiver.verifiers`` named after the source.

A user verifier takes ``(delivery, endpoint)`` and answers a ``Verdict`` or a bool; an
exception it raises becomes an ``invalid`` verdict, never a 500."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeAlias

from ..config import Endpoint
from ..events import Delivery
from .common import INVALID, VALID, Verdict, first_line

log = logging.getLogger(__name__)

#: Entry-point group for user verifiers; the entry point's name is the ``source``.
VERIFIER_GROUP = "receiver.verifiers"

#: Sources whose scheme this package implements (a user verifier still wins when configured).
BUILTIN_SCHEMES = ("keygen", "fno", "standard", "zentitle")

UserVerifier: TypeAlias = Callable[[Delivery, Endpoint], Any]

_verifier_specs: dict[str, UserVerifier] = {}
_entry_point_verifiers: dict[str, UserVerifier | None] = {}


def load_verifier(spec: str) -> UserVerifier:
    """Import ``"package.module:function"`` (``module:Class.method`` works too); cached.
    Raises ``ValueError`` naming the problem."""
    cached = _verifier_specs.get(spec)
    if cached is not None:
        return cached
    module_name, colon, attribute = spec.strip().partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r}: {error}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    _verifier_specs[spec] = target
    return target


def entry_point_verifier(source: str) -> UserVerifier | None:
    """The verifier registered in entry-point group ``receiver.verifiers`` under ``source``
    (looked up and loaded once); None when there is none."""
    if source in _entry_point_verifiers:
        return _entry_point_verifiers[source]
    found: UserVerifier | None = None
    for point in entry_points(group=VERIFIER_GROUP):
        if point.name == source:
            try:
                found = point.load()
            except Exception as error:  # a broken plugin: report it, do not crash the caller
                raise ValueError(f"entry point {source!r} in {VERIFIER_GROUP} cannot be loaded: "
                                 f"{type(error).__name__}: {first_line(error)}") from None
            break
    _entry_point_verifiers[source] = found
    return found


def user_verifier(source: str, endpoint: Endpoint) -> tuple[str, UserVerifier] | None:
    """The endpoint's ``verifier``, else the source's entry point unless the source has a
    built-in scheme: ``(name for reasons, function)``, or None. ``ValueError`` when the one
    named cannot be loaded."""
    if endpoint.verifier:
        return endpoint.verifier, load_verifier(endpoint.verifier)
    if source in BUILTIN_SCHEMES:
        return None
    found = entry_point_verifier(source)
    return (f"entry point {source!r}", found) if found is not None else None


def run_user_verifier(name: str, function: UserVerifier, delivery: Delivery,
                      endpoint: Endpoint) -> Verdict:
    """Call a user verifier and turn whatever it does (a Verdict, a bool, anything else, an
    exception) into a Verdict."""
    try:
        answer = function(delivery, endpoint)
    except Exception as error:  # the user's code: record the failure as the verdict
        log.warning("verifier %s raised", name, exc_info=True)
        return Verdict(INVALID, f"verifier raised {type(error).__name__}: "
                                f"{first_line(error)}")
    if isinstance(answer, Verdict):
        return answer
    if isinstance(answer, bool):
        return Verdict(VALID) if answer else Verdict(INVALID, f"verifier {name} refused the "
                                                              "request")
    return Verdict(INVALID, f"verifier {name} returned {type(answer).__name__}, expected a "
                            "Verdict or bool")


def clear_caches() -> None:
    """Forget resolved verifiers (``reset_caches`` calls this; after re-installing plugins)."""
    _verifier_specs.clear()
    _entry_point_verifiers.clear()
