"""Commands that read or change the stored history: ``events``, ``show``, ``tail``,
``replay``, ``export``, ``purge``, ``problems``, ``plugins``."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import click

from ..errors import ReceiverError
from ..events import Event, format_time
from ..store.rollups import parse_age
from .common import (
    db_option,
    event_filters_from,
    event_line,
    filter_options,
    open_history,
    read_settings,
    settings_masker,
)


@click.command()
@filter_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
def events(limit: int, as_json: bool, db: str | None, **options: Any) -> None:
    """List stored events, newest first."""
    store = open_history(db)
    masker = settings_masker(db)
    found, _ = store.list_events(event_filters_from(options), limit=limit)
    for event in found:
        if as_json:
            record = event.as_dict()
            record["data"] = masker.data(record["data"])
            click.echo(json.dumps(record))
        else:
            click.echo(event_line(event))


@click.command()
@click.argument("event_id", type=int)
@click.option("--reveal", is_flag=True, help="Show secrets unmasked.")
@db_option
def show(event_id: int, reveal: bool, db: str | None) -> None:
    """Show one event with its deliveries, handler runs and scheduled attempts (JSON); the
    retries of a failed handler are also told in words on stderr."""
    store = open_history(db)
    masker = settings_masker(db)
    try:
        event = store.get_event(event_id)
    except ReceiverError as error:
        raise click.ClickException(error.message) from None
    record = event.as_dict()
    deliveries = store.deliveries_for_event(event_id)
    runs = store.runs_for_event(event_id)
    if not reveal:
        record["data"] = masker.data(record["data"])
        for delivery in deliveries:
            delivery["headers"] = masker.headers(delivery["headers"])
            if delivery.get("query"):
                delivery["query"] = masker.query(delivery["query"])
        secrets = masker.matcher(masker.secret_strings(event.data))
        for run in runs:  # as the event page shows them
            for key in ("error", "traceback"):
                if run.get(key):
                    run[key] = secrets.mask(run[key])
    record["deliveries"] = deliveries
    record["handler_runs"] = runs
    record["scheduled_attempts"] = store.scheduled_attempts(event_id)
    click.echo(json.dumps(record, indent=2))
    for line in retry_lines(record["handler_runs"], record["scheduled_attempts"]):
        click.echo(line, err=True)


def retry_lines(runs: list[dict[str, Any]], scheduled: list[dict[str, Any]]) -> list[str]:
    """Each run with its attempt and the schedule, in words: only for an event whose
    handlers were retried or are to be (stdout stays the JSON alone either way)."""
    from ..read.schedule import attempt_views

    if not scheduled and not any(run["attempt"] > 1 or run["gave_up"] for run in runs):
        return []
    lines = []
    for run in runs:
        gave_up = ", gave up" if run["gave_up"] else ""
        error = f": {run['error']}" if run["error"] else ""
        lines.append(f"run {run['id']} {run['handler']} attempt {run['attempt']}"
                     f" ({run['trigger']}) {run['status']}{gave_up}{error}")
    for view in attempt_views(scheduled):
        when = "running now" if view["running"] else f"at {view['at']} UTC ({view['wait']})"
        lines.append(f"next attempt of {view['handler']}: {view['attempt']} of "
                     f"{view['attempts']} {when}")
    return lines


def follow(store: Any, filters: Any, *, since_id: int, interval: float) -> Iterator[Event]:
    """Yield events newer than ``since_id`` as they arrive, oldest first."""
    last = since_id
    while True:
        fresh, _ = store.list_events(filters, limit=500)
        for event in sorted((e for e in fresh if e.id > last), key=lambda e: e.id):
            last = event.id
            yield event
        time.sleep(interval)


@click.command()
@filter_options
@click.option("--interval", default=0.5, show_default=True, type=float)
@click.option("--last", default=10, show_default=True, type=int,
              help="Show this many recent events first.")
@db_option
def tail(interval: float, last: int, db: str | None, **options: Any) -> None:
    """Follow new events as they arrive (Ctrl-C to stop)."""
    store = open_history(db)
    filters = event_filters_from(options)
    recent, _ = store.list_events(filters, limit=max(last, 1))
    for event in reversed(recent[:last]):
        click.echo(event_line(event))
    newest = recent[0].id if recent else 0
    try:
        for event in follow(store, filters, since_id=newest, interval=interval):
            click.echo(event_line(event))
    except KeyboardInterrupt:
        pass


@click.command()
@click.argument("event_id", type=int, required=False)
@click.option("--only-failed", is_flag=True, help="Only handlers whose last run failed.")
@click.option("--handler", "handlers", multiple=True, help="Only this handler (repeatable; "
              "without EVENT_ID: the one handler to replay on every matching event).")
@click.option("--failed-since", metavar="AGE", default=None,
              help="Without EVENT_ID: only events whose last run of --handler failed within "
                   "this age (2h, 1d).")
@filter_options
@db_option
def replay(event_id: int | None, only_failed: bool, handlers: tuple[str, ...],
           failed_since: str | None, db: str | None, **options: Any) -> None:
    """Re-run handlers on a stored event, or one handler on every matching event; runs are
    recorded with trigger=replay."""
    from .. import create_app
    from ..handlers import dispatch

    if event_id is None and len(handlers) != 1:
        raise click.UsageError("give an EVENT_ID, or one --handler NAME to replay on every "
                               "event matching the filters (--failed-since 2h: its failures)")
    filters = event_filters_from(options)
    cutoff = None
    if failed_since:
        try:
            cutoff = format_time(dt.datetime.now(dt.UTC) - parse_age(failed_since))
        except (ValueError, OverflowError) as error:
            raise click.BadParameter(str(error), param_hint="--failed-since") from None
    app = create_app({"DATABASE": db} if db else None, background=False)
    store = app.extensions["receiver.store"]
    try:
        if event_id is None:
            bulk(store, app.config, handlers[0], filters, only_failed=only_failed or bool(cutoff),
                 failed_since=cutoff)
            return
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


def bulk(store: Any, settings: Any, name: str, filters: Any, *, only_failed: bool,
         failed_since: str | None) -> None:
    """``receiver replay --handler NAME ...``: the events, a progress bar on a terminal, the
    outcome; exit status 1 when a run failed."""
    from ..handlers import replay

    event_ids = replay.select_events(store, settings, name, filters,
                                          only_failed=only_failed, failed_since=failed_since)
    which = "whose last run of it failed" if only_failed else "it runs for"
    click.echo(f"replaying {name} on {len(event_ids)} events {which}", err=True)
    with click.progressbar(length=len(event_ids), label="replaying", file=sys.stderr,
                           show_pos=True) as bar:
        outcome = replay.replay_events(store, settings, name, event_ids,
                                            only_failed=only_failed, progress=bar.update)
    click.echo(f"{name}: {outcome.ok} ok, {outcome.error} failed, {outcome.skipped} skipped")
    if outcome.failed_ids:
        click.echo("still failing: events " + ", ".join(map(str, outcome.failed_ids[:20]))
                   + (" ..." if len(outcome.failed_ids) > 20 else ""))
        sys.exit(1)


@click.command("export")
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
    from ..clients import export as remote_export
    from ..read import export as exporting

    filters = event_filters_from(options)
    if from_url is None:
        store = open_history(db)
        for chunk in exporting.ndjson(store, filters, cursor=cursor, revealed=reveal,
                                      masker=settings_masker(db)):
            output.write(chunk)
        return
    query = {name.replace("-", "_"): value for name, value in options.items() if value}
    if reveal:
        query["reveal"] = "1"
    try:
        exported = remote_export.fetch(from_url, query, output.write, token=token, cursor=cursor,
                                   notice=lambda line: click.echo(line, err=True))
    except remote_export.ExportError as error:
        raise click.ClickException(str(error)) from None
    resumed = f", resumed {exported.resumed} times" if exported.resumed else ""
    click.echo(f"exported {exported.count} events from {from_url}{resumed}", err=True)


@click.command()
@click.option("--older-than", "older_than", required=True,
              help="Age such as 30d, 12h, 2w: delete what was first received before that.")
@click.option("--event-type", default=None, help="Only this type (exact or prefix.*).")
@db_option
def purge(older_than: str, event_type: str | None, db: str | None) -> None:
    """Delete old events with their deliveries and handler runs (and old refused deliveries)."""
    try:
        age = parse_age(older_than)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--older-than") from None
    if event_type:
        event_filters_from({"event_type": event_type})
    try:
        cutoff = format_time(dt.datetime.now(dt.UTC) - age)
    except OverflowError:
        raise click.BadParameter(f"{older_than!r} reaches back before year 1",
                                 param_hint="--older-than") from None
    store = open_history(db)
    counts = store.purge(cutoff, event_type=event_type)
    store.purge_activity(cutoff, event_type=event_type)
    click.echo(f"deleted {counts['events']} events, {counts['deliveries']} deliveries, "
               f"{counts['handler_runs']} handler runs received before {cutoff}")


PROBLEM_STATUSES = ("open", "acknowledged", "resolved")
#: The table's columns: heading and field.
PROBLEM_COLUMNS = (("ID", "id"), ("KIND", "kind"), ("SUBJECT", "subject"),
                   ("STATUS", "status"), ("COUNT", "count"), ("LAST SEEN", "last_seen_at"),
                   ("SUMMARY", "summary"))


@click.command()
@click.option("--status", type=click.Choice(PROBLEM_STATUSES), default=None,
              help="Only problems in this state, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
def problems(status: str | None, as_json: bool, db: str | None) -> None:
    """List problems: open first, then acknowledged, then recently resolved."""
    store = open_history(db)
    found = store.list_problems(status)
    if as_json:
        for problem in found:
            click.echo(json.dumps(problem))
        return
    if not found:
        click.echo(f"no {status} problems" if status else "no problems: nothing is wrong")
        return
    click.echo("\n".join(problem_table(found)))


def problem_table(found: list[dict[str, Any]]) -> list[str]:
    """Aligned columns, the summary last and whole."""
    cells = [[heading for heading, _ in PROBLEM_COLUMNS]]
    for problem in found:
        row = [str(problem[field]) for _, field in PROBLEM_COLUMNS]
        row[5] = row[5].replace("T", " ")[:19]
        cells.append(row)
    widths = [max(len(row[n]) for row in cells) for n in range(len(PROBLEM_COLUMNS) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)),
                       row[-1]]) for row in cells]


@click.command("plugins")
def plugins_command() -> None:
    """List handler plugins from the receiver.handlers entry points."""
    from ..handlers import plugins

    report = plugins.load_plugins(read_settings())
    click.echo(json.dumps(report.as_dict(), indent=2))
    if report.as_dict().get("failed"):
        sys.exit(1)
