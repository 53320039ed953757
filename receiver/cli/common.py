"""What the commands share: settings and the database from the options, the filter options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..config import load_settings
from ..errors import ConfigError, ReceiverError
from ..events import Event

DEFAULT_PORT = 8000


def read_settings(db: str | None = None) -> dict[str, Any]:
    try:
        return load_settings({"DATABASE": db} if db else None)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def open_history(db: str | None, *, create: bool = False) -> Any:
    """The history named by ``--db`` or the settings: an existing SQLite file (or a new one
    with ``create``) or a PostgreSQL URL; a database that cannot be reached is a message."""
    return open_database(read_settings(db)["DATABASE"], create=create)


def settings_masker(db: str | None = None) -> Any:
    """The masking the settings ask for (``MASK_NAMES``), as the web applies it."""
    from ..read.mask import Masker

    return Masker(read_settings(db)["MASK_NAMES"])


def open_database(database: str, *, create: bool = False) -> Any:
    from ..config import backend_of
    from ..store import open_store

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


def event_line(event: Event) -> str:
    subject = f"{event.subject_type}:{event.subject_id}" if event.subject_id else "-"
    dupes = f" x{event.delivery_count}" if event.delivery_count > 1 else ""
    return (f"{event.id:>7} {event.received_at} {event.source:<13} {event.event_type:<40} "
            f"{subject} [{event.signature_status}/{event.dispatch_status}]{dupes}")


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name in reversed(("source", "event-type", "endpoint", "account", "subject-id",
                          "signature-status", "dispatch-status", "q", "since", "until")):
        command = click.option(f"--{name}", default=None)(command)
    return command


def event_filters_from(options: dict[str, Any]) -> Any:
    """The event filters the options give; a bad value is a message, not a traceback."""
    from ..read.filters import event_filters

    args = {key: value for key, value in options.items() if value is not None}
    try:
        return event_filters(args)
    except ReceiverError as error:
        raise click.ClickException(error.message) from None
