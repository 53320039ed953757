"""``receiver serve`` (gunicorn) and ``receiver login-link``."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import tempfile
from typing import Any

import click

from ..errors import ConfigError, ReceiverError
from .common import (
    DEFAULT_PORT,
    db_option,
    read_settings,
)

#: Hosts that listen on every interface: public, whatever the machine's addresses are.
WILDCARD_HOSTS = ("", "*", "0.0.0.0", "::")

#: Threads per threaded worker unless ``--threads`` says otherwise: a slow client holds a
#: thread until the read timeout drops it, so a few dozen of them leave threads free for
#: deliveries and pages (an idle thread costs little; a PostgreSQL worker's threads share its
#: pool of RECEIVER_POOL_SIZE connections).
THREADS = 32
WORKER_CLASSES = {"sync": "receiver.gunicorn_hooks.SyncWorker",
                  "gthread": "receiver.gunicorn_hooks.ThreadWorker"}


def worker_model(worker_class: str, threads: int | None, *, host: str,
                 backend: str) -> tuple[str, int]:
    """``(sync | gthread, threads per worker)`` for ``receiver serve``'s options.

    ``auto`` picks threads where they pay or protect: on PostgreSQL (a request waits on the
    server's WAL flush, and threads wait together) and on a host that is not loopback (a slow
    client then costs a thread, not a whole process). SQLite on loopback (a laptop, or a
    buffering proxy on the same machine in front) keeps sync workers, which ingest fastest
    there (benchmarks/RESULTS.md). ``--threads`` alone chooses too: 1 is sync, more threads.
    """
    if worker_class == "auto":
        if threads is not None:
            worker_class = "gthread" if threads > 1 else "sync"
        elif backend == "postgres" or not is_loopback_host(host):
            worker_class = "gthread"
        else:
            worker_class = "sync"
    if worker_class == "sync":
        if threads not in (None, 1):
            raise click.UsageError("--worker-class sync serves one request per worker: "
                                   "--threads must be 1 (or use --worker-class gthread)")
        return "sync", 1
    return "gthread", threads or THREADS


def is_loopback_host(host: str) -> bool:
    """Whether ``--host`` listens on loopback only: ``localhost`` or a loopback address. An
    empty host and the wildcards (``WILDCARD_HOSTS``, ``[::]``) listen on every interface."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--worker-class", type=click.Choice(["auto", "sync", "gthread"]), default="auto",
              show_default=True,
              help="auto: threads (gthread) on PostgreSQL or a non-loopback host, sync "
              "workers for SQLite on loopback.")
@click.option("--threads", default=None, type=click.IntRange(1, 256),
              help=f"Threads per worker (default {THREADS} when threaded, 1 for sync; "
              "more than 1 means gthread).")
@click.option("--timeout", default=30, show_default=True, type=int,
              help="Seconds before gunicorn restarts a silent worker.")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log every request to stderr (every delivery is stored anyway; the log "
              "costs about 11% of ingest throughput).")
@db_option
def serve(host: str, port: int, workers: int, worker_class: str, threads: int | None,
          timeout: int, access_log: bool, db: str | None) -> None:
    """Run the receiver under gunicorn."""
    from gunicorn.app.base import BaseApplication

    if db:
        os.environ["RECEIVER_DATABASE"] = db
    settings = read_settings()
    from ..config import backend_of

    worker_class, threads = worker_model(worker_class, threads, host=host,
                                         backend=backend_of(settings["DATABASE"]))
    # Check the endpoints and migrate once in the master so a bad setting stops the start.
    from .. import create_app, gunicorn_hooks, verify
    from ..reconcile.schedule import check_settings as check_reconcile_settings
    from ..store import open_store

    try:
        for endpoint in settings["ENDPOINTS"].values():
            verify.check_endpoint(endpoint)
        check_reconcile_settings(settings)
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
        shown = "127.0.0.1" if host.strip().strip("[]") in WILDCARD_HOSTS else host
        base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        click.echo(f"No RECEIVER_INSPECTOR_TOKEN set and {host} is not loopback: made one "
                   f"(scripts send it as Authorization: Bearer):\n    {token}\n"
                   f"{login_link_text(base, secret_key)}", err=True)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            name = host.strip().strip("[]")
            name = "0.0.0.0" if name in ("", "*") else name
            bind = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
            self.cfg.set("bind", [bind])
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", WORKER_CLASSES[worker_class])
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", timeout)
            if access_log:
                self.cfg.set("accesslog", "-")
            # A long export heartbeats, so it outlives --timeout (gunicorn_hooks.py).
            self.cfg.set("post_worker_init", gunicorn_hooks.post_worker_init)

        def load(self) -> Any:
            return create_app()

    from ..store import shown as shown_database

    model = (f"{workers} sync workers" if worker_class == "sync"
             else f"{workers} workers x {threads} threads")
    click.echo(f"Receiving webhooks at http://{host}:{port}/hooks "
               f"(database {shown_database(settings['DATABASE'])}; {model}; read timeout "
               f"{settings['READ_TIMEOUT']} s)", err=True)
    metrics_dir = multiprocess_metrics_dir()
    master = os.getpid()
    try:
        Server().run()
    finally:
        # Workers leave through here too (they were forked inside run()): only the master
        # removes the directory.
        if metrics_dir is not None and os.getpid() == master:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(metrics_dir, ignore_errors=True)


def multiprocess_metrics_dir() -> str | None:
    """Put the workers' ingest histogram in prometheus_client's multiprocess mode (each
    worker writes its own file, a scrape adds them up; receiver/metrics.py): a fresh
    directory made here, before any worker imports prometheus_client, and removed at exit.
    A ``PROMETHEUS_MULTIPROC_DIR`` already set is used as it is (and left in place)."""
    from ..read.metrics import MULTIPROCESS_DIR

    if os.environ.get(MULTIPROCESS_DIR):
        os.makedirs(os.environ[MULTIPROCESS_DIR], exist_ok=True)
        return None
    made = tempfile.mkdtemp(prefix="receiver-metrics-")
    os.environ[MULTIPROCESS_DIR] = made
    return made


def login_link_text(base_url: str, secret_key: str) -> str:
    """The lines that offer a fresh one-time sign-in link (the token is never in a URL)."""
    from ..login_links import LOGIN_LINK_MINUTES, make_login_code

    link = f"{base_url.rstrip('/')}/login/{make_login_code(secret_key)}"
    return (f"Sign in with this one-time link (works once, for {LOGIN_LINK_MINUTES} "
            f"minutes):\n    {link}")


@click.command("login-link")
@click.option("--base-url", default=f"http://127.0.0.1:{DEFAULT_PORT}", show_default=True,
              help="The receiver's address as your browser reaches it.")
@db_option
def login_link(base_url: str, db: str | None) -> None:
    """Print a one-time sign-in link for the inspector (RECEIVER_INSPECTOR_TOKEN set)."""
    from ..store import open_store

    settings = read_settings(db)
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
