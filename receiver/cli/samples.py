"""``receiver samples`` and ``receiver trigger``: the bundled vendor samples, sent signed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..config import SOURCES, Endpoint
from .common import (
    DEFAULT_PORT,
    read_settings,
)


def samples_dir() -> Path:
    from ..resources import resource_dir

    return resource_dir("samples")


def load_index() -> list[dict[str, str]]:
    index = samples_dir() / "index.json"
    if not index.exists():
        raise click.ClickException(f"no samples at {samples_dir()}")
    entries: list[dict[str, str]] = json.loads(index.read_text())
    return entries


@click.command()
@click.argument("source", required=False, type=click.Choice(SOURCES))
def samples(source: str | None) -> None:
    """List the bundled vendor samples that trigger can send."""
    for entry in load_index():
        if source is None or entry["source"] == source:
            click.echo(f"{entry['source']:<14} {entry['name']}")


def find_sample(source: str, name: str) -> tuple[bytes, dict[str, str]]:
    for entry in load_index():
        if entry["source"] == source and name in (entry["name"], entry["event_type"]):
            base = samples_dir() / source / entry["name"]
            body = base.with_name(base.name + ".json").read_bytes()
            headers = json.loads(base.with_name(base.name + ".headers.json").read_text())
            return body, headers
    known = ", ".join(e["name"] for e in load_index() if e["source"] == source)
    raise click.ClickException(f"no {source} sample named {name!r}; known: {known}")


def pick_endpoint(settings: dict[str, Any], source: str, name: str | None) -> Endpoint | None:
    endpoints: dict[str, Endpoint] = settings["ENDPOINTS"]
    if name is not None:
        if name not in endpoints:
            return None
        return endpoints[name]
    for endpoint in endpoints.values():
        if endpoint.source == source:
            return endpoint
    return None


@click.command()
@click.argument("source", type=click.Choice(SOURCES))
@click.argument("event_type")
@click.option("--url", help="Where to POST (default: this machine's receiver, the endpoint "
              "configured for SOURCE, else /hooks).")
@click.option("--endpoint", "endpoint_name", help="Configured endpoint whose keys sign it.")
@click.option("--header-names", "spelling", type=click.Choice(["webhook", "svix"]),
              default="webhook", show_default=True,
              help="standard: name the headers webhook-id/-timestamp/-signature (the "
                   "standard), or svix-id/-timestamp/-signature (as Svix sends them).")
def trigger(source: str, event_type: str, url: str | None, endpoint_name: str | None,
            spelling: str) -> None:
    """Send a bundled sample, signed the way the sender signs when a signing key is set."""
    from .. import verify
    from ..clients import redeliver
    from ..dialects.standard import rename_headers

    if spelling != "webhook" and source != "standard":
        raise click.BadParameter("only Standard Webhooks senders have another spelling",
                                 param_hint="--header-names")
    settings = read_settings()
    body, headers = find_sample(source, event_type)
    endpoint = pick_endpoint(settings, source, endpoint_name)
    if url is None:
        path = f"/hooks/{endpoint.name}" if endpoint else (
            f"/hooks/{endpoint_name}" if endpoint_name else "/hooks")
        url = f"http://127.0.0.1:{DEFAULT_PORT}{path}"
    pairs = rename_headers(list(headers.items()), spelling)
    if endpoint is not None and (endpoint.signing_key or endpoint.secrets or endpoint.tokens
                                 or endpoint.password):
        signed_names = {"date", "digest", "keygen-date", "keygen-digest", "keygen-signature",
                        "webhook-id", "webhook-timestamp", "webhook-signature", "svix-id",
                        "svix-timestamp", "svix-signature"}
        try:
            signature = verify.sign(source, body, endpoint, url=endpoint.url or url,
                                    spelling=spelling)
        except ValueError as error:
            raise click.ClickException(f"cannot sign: {error}") from None
        pairs = [(k, v) for k, v in pairs if k.lower() not in signed_names] + signature
        click.echo(f"signed for endpoint {endpoint.name!r}", err=True)
    try:
        result = redeliver.send(url, body, pairs)
    except OSError as error:
        raise click.ClickException(f"could not reach {url}: {error}") from None
    click.echo(f"{result['status']} {url} {result['body'].strip()}")
    if not 200 <= result["status"] < 300:
        sys.exit(1)
