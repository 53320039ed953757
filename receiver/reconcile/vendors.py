"""Which vendors keep an event log the receiver can reconcile with, and the endpoint
settings each needs, checked only when a reconcile is asked for (a bad ``api_token_env``
never stops ``receiver serve`` that does not reconcile).

A vendor is a callable ``(endpoint, token, settings) -> Reconciler`` named by its source:
Keygen's is built in; others come from the ``receiver.reconcilers`` entry-point group
(``keygen = "mypackage.reconcile:factory"``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from ..config import RECONCILE_MODES, Endpoint
from ..errors import ConfigError
from .base import Reconciler, VendorError

log = logging.getLogger(__name__)

GROUP = "receiver.reconcilers"
KEYGEN_API = "https://api.keygen.sh"

Factory = Callable[[Endpoint, str, Mapping[str, Any]], Reconciler]


def keygen(endpoint: Endpoint, token: str, settings: Mapping[str, Any]) -> Reconciler:
    """Keygen's API (``api_url``: Keygen EE or self-hosted; default keygen.sh)."""
    from .keygen import KeygenReconciler

    where = f"endpoints.{endpoint.name}"
    if not endpoint.account:
        raise ConfigError(f"{where}.account: reconcile with Keygen needs the account id or "
                          "slug (Settings > Account in Keygen's dashboard)")
    api_url = (endpoint.api_url or KEYGEN_API).rstrip("/")
    if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", api_url):
        raise ConfigError(f"{where}.api_url: expected the API's base URL such as "
                          f"{KEYGEN_API}, got {endpoint.api_url!r}")
    return KeygenReconciler(endpoint.account, token, api_url)


BUILTIN: dict[str, Factory] = {"keygen": keygen}


def vendors() -> dict[str, Factory]:
    """Every vendor with a reconciler: the built-in ones and the installed plugins (one
    that fails to load is logged and left out)."""
    found = dict(BUILTIN)
    for entry in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        try:
            found[entry.name] = entry.load()
        except Exception:
            log.exception("reconciler %s (%s) failed to load", entry.name, entry.value)
    return found


def api_token(endpoint: Endpoint, environ: Mapping[str, str] | None = None) -> str:
    """The endpoint's API token: ``api_token``, else the variable ``api_token_env`` names."""
    where = f"endpoints.{endpoint.name}"
    if endpoint.api_token:
        return endpoint.api_token
    if endpoint.api_token_env:
        value = (os.environ if environ is None else environ).get(endpoint.api_token_env, "")
        if value.strip():
            return value.strip()
        raise ConfigError(f"{where}.api_token_env: the environment variable "
                          f"{endpoint.api_token_env} is not set (or empty)")
    raise ConfigError(f"{where}: reconcile needs an API token of the vendor: api_token, or "
                      "api_token_env naming the environment variable that holds it")


def check_endpoint(endpoint: Endpoint, known: Mapping[str, Factory]) -> None:
    """Raise ``ConfigError`` with a sentence unless the endpoint can be reconciled."""
    where = f"endpoints.{endpoint.name}"
    if not endpoint.configured:
        raise ConfigError(f"no endpoint named {endpoint.name!r} is configured "
                          "([endpoints.<name>] in RECEIVER_CONFIG)")
    if endpoint.source is None:
        raise ConfigError(f"{where}.source: reconcile needs the vendor named "
                          f"(source = \"keygen\"); vendors with an event log: "
                          f"{', '.join(sorted(known))}")
    if endpoint.source not in known:
        raise ConfigError(f"{where}: {endpoint.source} publishes no event-log API to reconcile "
                          f"with (vendors with one: {', '.join(sorted(known))}); see "
                          "docs/senders.md for what to do instead")
    if not endpoint.url:
        raise ConfigError(f"{where}.url: reconcile keeps the vendor's events sent to this "
                          "endpoint's URL; set url to the URL registered at the vendor")
    if endpoint.reconcile not in RECONCILE_MODES:
        raise ConfigError(f"{where}.reconcile: expected one of {', '.join(RECONCILE_MODES)}, "
                          f"got {endpoint.reconcile!r}")


def reconciler_for(endpoint: Endpoint, settings: Mapping[str, Any],
                   environ: Mapping[str, str] | None = None,
                   known: Mapping[str, Factory] | None = None) -> Reconciler:
    """The endpoint's reconciler, or ``ConfigError`` saying which setting is wrong."""
    known = vendors() if known is None else known
    check_endpoint(endpoint, known)
    assert endpoint.source is not None
    try:
        return known[endpoint.source](endpoint, api_token(endpoint, environ), settings)
    except VendorError as error:  # a setting the vendor's client cannot work with
        raise ConfigError(f"endpoints.{endpoint.name}: {error}") from None
