"""Scale-out commands: ``receiver worker`` runs handlers apart from the web nodes,
``receiver copy`` moves a history between backends."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import ConfigError, ReceiverError
from .common import (
    db_option,
    open_database,
    read_settings,
)


@click.command()
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Events run at once (threads).")
@click.option("--poll", default=0.5, show_default=True, type=click.FloatRange(0.05, 60),
              help="Seconds between looks for pending events while there are none.")
@db_option
def worker(concurrency: int, poll: float, db: str | None) -> None:
    """Run handlers of pending events, for receivers with RECEIVER_DISPATCH=worker (any number
    of workers, on any machine). SIGTERM lets running handlers finish, then exits."""
    from .. import create_app
    from ..handlers import dispatch

    overrides: dict[str, Any] = {"DATABASE": db} if db else {}
    settings = read_settings(db)
    # Each thread holds a connection while it claims or records; the lease keeper one more.
    overrides["POOL_SIZE"] = max(settings["POOL_SIZE"], concurrency + 2)
    try:
        app = create_app(overrides, background=False)
    except (ConfigError, ReceiverError) as error:
        raise click.ClickException(getattr(error, "message", str(error))) from None
    store = app.extensions["receiver.store"]
    from ..store import shown as shown_database

    click.echo(f"Running handlers of pending events in {shown_database(settings['DATABASE'])} "
               f"(concurrency {concurrency}); SIGTERM or Ctrl-C to stop", err=True)
    try:
        ran = dispatch.run_worker(store, app.config, concurrency=concurrency,
                                  poll_seconds=poll)
    finally:
        store.close()
    click.echo(f"worker stopped after {ran} events", err=True)


@click.command("copy")
@click.option("--from", "source", required=True, metavar="PATH|URL",
              help="The history to read: a SQLite file or a postgresql:// URL.")
@click.option("--to", "target", required=True, metavar="PATH|URL",
              help="Where to write it (made and migrated when new).")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Rows per target transaction.")
def copy_command(source: str, target: str, batch: int) -> None:
    """Copy a history between backends: deliveries with their exact bytes, events, handler
    runs; ids and dedup keys kept. Run it again to resume: rows already there are skipped."""
    from ..clients.copying import copy_history

    if source == target:
        raise click.BadParameter("--from and --to name the same database", param_hint="--to")
    source_store = open_database(source)
    target_store = open_database(target, create=True)
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
