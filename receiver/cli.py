"""``receiver``: serve, trigger samples, read the history, replay, export, purge.

Commands that read the history open the local database named by the settings
(``RECEIVER_DATABASE``, ``RECEIVER_CONFIG`` or ``--db``); ``trigger`` talks HTTP to a receiver.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from .config import SOURCES, Endpoint, load_settings
from .errors import ConfigError, ReceiverError
from .events import Event

DEFAULT_PORT = 8000


def _settings(db: str | None = None) -> dict[str, Any]:
    try:
        return load_settings({"DATABASE": db} if db else None)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _open_store(db: str | None, *, create: bool = False) -> Any:
    """The history named by ``--db`` or the settings: an existing SQLite file (or a new one
    with ``create``) or a PostgreSQL URL; a database that cannot be reached is a message."""
    return _open_database(_settings(db)["DATABASE"], create=create)


def _open_database(database: str, *, create: bool = False) -> Any:
    from .store import backend_of, open_store

    try:
        backend = backend_of(database)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if backend == "sqlite" and not create and not Path(database).exists():
        raise click.ClickException(f"no database at {database} (set --db or "
                                   "RECEIVER_DATABASE)")
    try:
        store = open_store(database)
        store.migrate()
    except (ConfigError, ReceiverError) as error:
        raise click.ClickException(getattr(error, "message", str(error))) from None
    return store


db_option = click.option("--db", "db", metavar="PATH|URL", envvar="RECEIVER_DATABASE",
                         help="SQLite file or postgresql:// URL (default: settings DATABASE).")


@click.group()
@click.version_option(package_name="license-webhook-receiver")
def cli() -> None:
    """Webhook receiver and inspector for license-management platforms."""


# -- serve ------------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--worker-class", type=click.Choice(["sync", "gthread"]), default="sync",
              show_default=True)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Threads per worker (gthread).")
@click.option("--timeout", default=30, show_default=True, type=int,
              help="Seconds before gunicorn restarts a silent worker.")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log every request to stderr (every delivery is stored anyway; the log "
              "costs about 11% of ingest throughput).")
@db_option
def serve(host: str, port: int, workers: int, worker_class: str, threads: int, timeout: int,
          access_log: bool, db: str | None) -> None:
    """Run the receiver under gunicorn."""
    from gunicorn.app.base import BaseApplication

    if db:
        os.environ["RECEIVER_DATABASE"] = db
    settings = _settings()
    # Check the endpoints and migrate once in the master so a bad setting stops the start.
    from . import create_app, gunicorn_hooks, verify
    from .store import open_store

    try:
        for endpoint in settings["ENDPOINTS"].values():
            verify.check_endpoint(endpoint)
        store = open_store(settings["DATABASE"])
        try:
            store.migrate()
            secret_key = settings.get("SECRET_KEY") or store.secret_key()
        finally:
            # Closed before gunicorn forks: a connection inherited by a worker and closed
            # there drops that worker's POSIX locks on the file (SQLite: disk I/O errors).
            store.close()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    except ReceiverError as error:  # PostgreSQL cannot be reached
        raise click.ClickException(error.message) from None
    if not is_loopback_host(host) and not settings.get("INSPECTOR_TOKEN"):
        token = secrets.token_urlsafe(24)
        os.environ["RECEIVER_INSPECTOR_TOKEN"] = token
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        click.echo(f"No RECEIVER_INSPECTOR_TOKEN set and {host} is not loopback: made one "
                   f"(scripts send it as Authorization: Bearer):\n    {token}\n"
                   f"{login_link_text(base, secret_key)}", err=True)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self.cfg.set("bind", [bind])
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", worker_class)
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", timeout)
            if access_log:
                self.cfg.set("accesslog", "-")
            # A long export heartbeats, so it outlives --timeout (gunicorn_hooks.py).
            self.cfg.set("post_worker_init", gunicorn_hooks.post_worker_init)

        def load(self) -> Any:
            return create_app()

    from .store import shown as shown_database

    click.echo(f"Receiving webhooks at http://{host}:{port}/hooks "
               f"(database {shown_database(settings['DATABASE'])})", err=True)
    Server().run()


def login_link_text(base_url: str, secret_key: str) -> str:
    """The lines that offer a fresh one-time sign-in link (the token is never in a URL)."""
    from .web.access import LOGIN_LINK_MINUTES, make_login_code

    link = f"{base_url.rstrip('/')}/login/{make_login_code(secret_key)}"
    return (f"Sign in with this one-time link (works once, for {LOGIN_LINK_MINUTES} "
            f"minutes):\n    {link}")


@cli.command("login-link")
@click.option("--base-url", default=f"http://127.0.0.1:{DEFAULT_PORT}", show_default=True,
              help="The receiver's address as your browser reaches it.")
@db_option
def login_link(base_url: str, db: str | None) -> None:
    """Print a one-time sign-in link for the inspector (RECEIVER_INSPECTOR_TOKEN set)."""
    from .store import open_store

    settings = _settings(db)
    if not settings.get("INSPECTOR_TOKEN"):
        raise click.ClickException("RECEIVER_INSPECTOR_TOKEN is not set: the inspector is open "
                                   "and needs no sign-in")
    secret_key = settings.get("SECRET_KEY")
    if not secret_key:  # the key kept beside the database, as the server uses it
        store = open_store(settings["DATABASE"])
        try:
            store.migrate()
            secret_key = store.secret_key()
        finally:
            store.close()
    click.echo(login_link_text(base_url, secret_key))


# -- samples and trigger ----------------------------------------------------------------


def samples_dir() -> Path:
    from . import resource_dir

    return resource_dir("samples")


def load_index() -> list[dict[str, str]]:
    index = samples_dir() / "index.json"
    if not index.exists():
        raise click.ClickException(f"no samples at {samples_dir()}")
    entries: list[dict[str, str]] = json.loads(index.read_text())
    return entries


@cli.command()
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


@cli.command()
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
    from . import redeliver, verify
    from .dialects.standard import rename_headers

    if spelling != "webhook" and source != "standard":
        raise click.BadParameter("only Standard Webhooks senders have another spelling",
                                 param_hint="--header-names")
    settings = _settings()
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


# -- reading the history -----------------------------------------------------------------


def _event_line(event: Event) -> str:
    subject = f"{event.subject_type}:{event.subject_id}" if event.subject_id else "-"
    dupes = f" x{event.delivery_count}" if event.delivery_count > 1 else ""
    return (f"{event.id:>7} {event.received_at} {event.source:<13} {event.event_type:<40} "
            f"{subject} [{event.signature_status}/{event.dispatch_status}]{dupes}")


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name in reversed(("source", "event-type", "endpoint", "account", "subject-id",
                          "signature-status", "dispatch-status", "q", "since", "until")):
        command = click.option(f"--{name}", default=None)(command)
    return command


def _filters(options: dict[str, Any]) -> Any:
    from .web.filters import event_filters

    args = {key: value for key, value in options.items() if value is not None}
    try:
        return event_filters(args)
    except ReceiverError as error:
        raise click.ClickException(error.message) from None


@cli.command()
@filter_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
def events(limit: int, as_json: bool, db: str | None, **options: Any) -> None:
    """List stored events, newest first."""
    from .mask import mask_data

    store = _open_store(db)
    found, _ = store.list_events(_filters(options), limit=limit)
    for event in found:
        if as_json:
            record = event.as_dict()
            record["data"] = mask_data(record["data"])
            click.echo(json.dumps(record))
        else:
            click.echo(_event_line(event))


@cli.command()
@click.argument("event_id", type=int)
@click.option("--reveal", is_flag=True, help="Show secrets unmasked.")
@db_option
def show(event_id: int, reveal: bool, db: str | None) -> None:
    """Show one event with its deliveries and handler runs (JSON)."""
    from .mask import mask_data, mask_headers

    store = _open_store(db)
    try:
        event = store.get_event(event_id)
    except ReceiverError as error:
        raise click.ClickException(error.message) from None
    record = event.as_dict()
    deliveries = store.deliveries_for_event(event_id)
    if not reveal:
        record["data"] = mask_data(record["data"])
        for delivery in deliveries:
            delivery["headers"] = mask_headers(delivery["headers"])
    record["deliveries"] = deliveries
    record["handler_runs"] = store.runs_for_event(event_id)
    click.echo(json.dumps(record, indent=2))


def follow(store: Any, filters: Any, *, since_id: int, interval: float) -> Iterator[Event]:
    """Yield events newer than ``since_id`` as they arrive, oldest first."""
    last = since_id
    while True:
        fresh, _ = store.list_events(filters, limit=500)
        for event in sorted((e for e in fresh if e.id > last), key=lambda e: e.id):
            last = event.id
            yield event
        time.sleep(interval)


@cli.command()
@filter_options
@click.option("--interval", default=0.5, show_default=True, type=float)
@click.option("--last", default=10, show_default=True, type=int,
              help="Show this many recent events first.")
@db_option
def tail(interval: float, last: int, db: str | None, **options: Any) -> None:
    """Follow new events as they arrive (Ctrl-C to stop)."""
    store = _open_store(db)
    filters = _filters(options)
    recent, _ = store.list_events(filters, limit=max(last, 1))
    for event in reversed(recent[:last]):
        click.echo(_event_line(event))
    newest = recent[0].id if recent else 0
    try:
        for event in follow(store, filters, since_id=newest, interval=interval):
            click.echo(_event_line(event))
    except KeyboardInterrupt:
        pass


@cli.command()
@click.argument("event_id", type=int)
@click.option("--only-failed", is_flag=True, help="Only handlers whose last run failed.")
@click.option("--handler", "handlers", multiple=True, help="Only this handler (repeatable).")
@db_option
def replay(event_id: int, only_failed: bool, handlers: tuple[str, ...], db: str | None) -> None:
    """Re-run handlers on a stored event; runs are recorded with trigger=replay."""
    from . import create_app, dispatch

    app = create_app({"DATABASE": db} if db else None, background=False)
    store = app.extensions["receiver.store"]
    try:
        runs = dispatch.replay(store, app.config, event_id, only_failed=only_failed,
                               names=list(handlers) or None)
    except ReceiverError as error:
        raise click.ClickException(error.message) from None
    finally:
        app.extensions["receiver.dispatcher"].stop()
    if not runs:
        click.echo("no handler to run")
    for run in runs:
        line = f"{run['handler']}: {run['status']} ({run['duration_ms']:.1f} ms)"
        click.echo(line + (f" {run['error']}" if run["error"] else ""))
    if any(run["status"] == "error" for run in runs):
        sys.exit(1)


@cli.command("export")
@filter_options
@click.option("--output", "-o", type=click.File("w"), default="-")
@click.option("--reveal", is_flag=True, help="Export secrets unmasked.")
@click.option("--cursor", type=click.IntRange(min=1), default=None, metavar="ID",
              help="Only events below this id: resume an export that was cut after the "
                   "event with this id.")
@click.option("--from", "from_url", metavar="URL",
              help="Export from a running receiver (its base URL, such as "
                   "https://hooks.example.com) instead of the local database; a cut stream "
                   "is resumed after the last event received.")
@click.option("--token", envvar="RECEIVER_FORWARD_TOKEN", metavar="TOKEN",
              help="With --from: its RECEIVER_INSPECTOR_TOKEN (or set RECEIVER_FORWARD_TOKEN).")
@db_option
def export(output: Any, reveal: bool, cursor: int | None, from_url: str | None,
           token: str | None, db: str | None, **options: Any) -> None:
    """Write events as NDJSON, newest first, then {"complete": true, "count": N}."""
    from . import export as exporting

    filters = _filters(options)
    if from_url is None:
        store = _open_store(db)
        for chunk in exporting.ndjson(store, filters, cursor=cursor, revealed=reveal):
            output.write(chunk)
        return
    query = {name.replace("-", "_"): value for name, value in options.items() if value}
    if reveal:
        query["reveal"] = "1"
    try:
        exported = exporting.fetch(from_url, query, output.write, token=token, cursor=cursor,
                                   notice=lambda line: click.echo(line, err=True))
    except exporting.ExportError as error:
        raise click.ClickException(str(error)) from None
    resumed = f", resumed {exported.resumed} times" if exported.resumed else ""
    click.echo(f"exported {exported.count} events from {from_url}{resumed}", err=True)


def parse_age(value: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", value or "")
    if not match:
        raise ValueError(f"expected an age such as 30d, 12h or 2w; got {value!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    try:
        return dt.timedelta(**{unit[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise ValueError(f"{value!r} is longer than the calendar holds") from None


@cli.command()
@click.option("--older-than", "older_than", required=True,
              help="Age such as 30d, 12h, 2w: delete what was first received before that.")
@click.option("--event-type", default=None, help="Only this type (exact or prefix.*).")
@db_option
def purge(older_than: str, event_type: str | None, db: str | None) -> None:
    """Delete old events with their deliveries and handler runs (and old refused deliveries)."""
    from .events import format_time

    try:
        age = parse_age(older_than)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--older-than") from None
    if event_type:
        _filters({"event_type": event_type})
    try:
        cutoff = format_time(dt.datetime.now(dt.UTC) - age)
    except OverflowError:
        raise click.BadParameter(f"{older_than!r} reaches back before year 1",
                                 param_hint="--older-than") from None
    store = _open_store(db)
    counts = store.purge(cutoff, event_type=event_type)
    click.echo(f"deleted {counts['events']} events, {counts['deliveries']} deliveries, "
               f"{counts['handler_runs']} handler runs received before {cutoff}")


@cli.command("plugins")
def plugins_command() -> None:
    """List handler plugins from the receiver.handlers entry points."""
    from . import plugins

    report = plugins.load_plugins(_settings())
    click.echo(json.dumps(report.as_dict(), indent=2))
    if report.as_dict().get("failed"):
        sys.exit(1)


# -- scale-out: workers and copies ----------------------------------------------------------


@cli.command()
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Events run at once (threads).")
@click.option("--poll", default=0.5, show_default=True, type=click.FloatRange(0.05, 60),
              help="Seconds between looks for pending events while there are none.")
@db_option
def worker(concurrency: int, poll: float, db: str | None) -> None:
    """Run handlers of pending events, for receivers with RECEIVER_DISPATCH=worker (any number
    of workers, on any machine). SIGTERM lets running handlers finish, then exits."""
    from . import create_app, dispatch

    overrides: dict[str, Any] = {"DATABASE": db} if db else {}
    settings = _settings(db)
    # Each thread holds a connection while it claims or records; the lease keeper one more.
    overrides["POOL_SIZE"] = max(settings["POOL_SIZE"], concurrency + 2)
    try:
        app = create_app(overrides, background=False)
    except (ConfigError, ReceiverError) as error:
        raise click.ClickException(getattr(error, "message", str(error))) from None
    store = app.extensions["receiver.store"]
    from .store import shown as shown_database

    click.echo(f"Running handlers of pending events in {shown_database(settings['DATABASE'])} "
               f"(concurrency {concurrency}); SIGTERM or Ctrl-C to stop", err=True)
    try:
        ran = dispatch.run_worker(store, app.config, concurrency=concurrency,
                                  poll_seconds=poll)
    finally:
        store.close()
    click.echo(f"worker stopped after {ran} events", err=True)


@cli.command("copy")
@click.option("--from", "source", required=True, metavar="PATH|URL",
              help="The history to read: a SQLite file or a postgresql:// URL.")
@click.option("--to", "target", required=True, metavar="PATH|URL",
              help="Where to write it (made and migrated when new).")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Rows per target transaction.")
def copy_command(source: str, target: str, batch: int) -> None:
    """Copy a history between backends: deliveries with their exact bytes, events, handler
    runs; ids and dedup keys kept. Run it again to resume: rows already there are skipped."""
    from .copying import copy_history

    if source == target:
        raise click.BadParameter("--from and --to name the same database", param_hint="--to")
    source_store = _open_database(source)
    target_store = _open_database(target, create=True)
    try:
        total = sum(source_store.table_counts().values())
        with click.progressbar(length=total, label="copying", file=sys.stderr) as bar:
            report = copy_history(source_store, target_store, batch=batch, progress=bar.update)
    except ReceiverError as error:
        raise click.ClickException(error.message) from None
    finally:
        source_store.close()
        target_store.close()
    for table, copied in report.copied.items():
        click.echo(f"{table}: copied {copied}, source {report.source_counts[table]}, "
                   f"target {report.target_counts[table]}")
    if report.missing:
        raise click.ClickException(
            "the target holds fewer rows than the source ("
            + ", ".join(f"{table}: {count} missing" for table, count in report.missing.items())
            + "); rows with the same ids or dedup keys were already there")


# -- forward ------------------------------------------------------------------------------


@cli.command()
@click.option("--from", "from_url", required=True, metavar="URL",
              help="The deployed receiver's base URL, such as https://hooks.example.com.")
@click.option("--token", envvar="RECEIVER_FORWARD_TOKEN", metavar="TOKEN",
              help="Its RECEIVER_INSPECTOR_TOKEN (or set RECEIVER_FORWARD_TOKEN).")
@click.option("--to", "to_url", required=True, metavar="URL",
              help="Where to POST each delivery: a loopback URL, or a host in "
                   "RECEIVER_REDELIVER_ALLOW.")
@click.option("--endpoint", default=None, help="Only deliveries to /hooks/<endpoint>.")
@click.option("--source", type=click.Choice(SOURCES), default=None,
              help="Only deliveries from this sender.")
@click.option("--event-type", default=None,
              help="Only deliveries of this event type (exact, or a prefix: 'license.*').")
@click.option("--since", type=click.IntRange(min=0), default=None, metavar="ID",
              help="Start after this delivery id (0: the whole history); overrides the state.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False), default=None,
              help="State file with the last forwarded id (default "
                   "~/.config/receiver/forward-<hash of from and to>.json).")
@click.option("--retries", default=3, show_default=True, type=click.IntRange(0, 20),
              help="Retries of a local 5xx or refused connection before it is skipped.")
@click.option("--include-rejected", is_flag=True,
              help="Also forward deliveries the remote refused (4xx).")
@click.option("--preserve-host", is_flag=True,
              help="Send the Host the vendor posted to (Keygen signs it), not --to's.")
@click.option("--once", is_flag=True, help="Forward what is there, then exit.")
@click.option("--wait", default=25.0, show_default=True, type=click.FloatRange(0, 25),
              help="Seconds each feed request long-polls (lower it behind a proxy that cuts "
                   "idle requests).")
def forward(from_url: str, token: str | None, to_url: str, endpoint: str | None,
            source: str | None, event_type: str | None, since: int | None,
            state_path: str | None, retries: int, include_rejected: bool, preserve_host: bool,
            once: bool, wait: float) -> None:
    """Relay a deployed receiver's deliveries, byte for byte, to an app on this machine."""
    from . import forward as forwarding
    from .web.filters import EVENT_TYPE

    if event_type is not None and not EVENT_TYPE.fullmatch(event_type):
        raise click.BadParameter("a dotted type such as license.created, or a prefix such as "
                                 f"license.*; got {event_type!r}", param_hint="--event-type")
    forwarder = None
    try:
        forwarder, origin = forwarding.prepare(
            from_url, to_url, token=token, allow=_settings()["REDELIVER_ALLOW"],
            filters={"endpoint": endpoint, "source": source, "event_type": event_type},
            since=since, state_path=Path(state_path) if state_path else None,
            retries=retries, include_rejected=include_rejected, preserve_host=preserve_host,
            wait=wait, echo=click.echo, notice=lambda line: click.echo(line, err=True))
        click.echo(f"Forwarding {forwarder.remote.base} -> {to_url} after delivery "
                   f"#{forwarder.last_id} ({origin})" + ("" if once else "; Ctrl-C to stop"),
                   err=True)
        with forwarder.stopper.installed():
            summary = forwarder.run(once=once)
    except (forwarding.ForwardError, forwarding.RemoteUnavailable) as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        if forwarder is not None:
            click.echo(f"stopped; the next run resumes after #{forwarder.last_id}", err=True)
        return
    click.echo(f"forwarded {summary.forwarded}, failed {summary.failed}, skipped "
               f"{summary.skipped}; last delivery #{summary.last_id}", err=True)
    if summary.failed:
        sys.exit(1)
