"""``receiver reconcile``: compare an endpoint's events with the vendor's own event log and
recover the ones that never arrived (CONTRACT: exit 0 nothing missing, after recovering;
1 missing and not recovered; 2 the vendor's API, or the settings, did not allow it)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import ConfigError, ReceiverError
from ..store.rollups import parse_age
from .common import db_option

#: The table's columns: heading and item field.
COLUMNS = (("VENDOR ID", "vendor_id"), ("EVENT", "event"), ("VENDOR STATUS", "status"),
           ("LAST RESPONSE", "last_response"), ("DONE", "done"))


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """``24h``, ``30m``, ``7d``, ``2w`` back from now, or an ISO 8601 time (UTC unless it
    says otherwise)."""
    try:
        return now - parse_age(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"expected an age such as 24h, 30m or 7d, or an ISO time; "
                                 f"got {value!r}", param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def stop(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("reconcile")
@click.argument("endpoint", nargs=-1, metavar="[ENDPOINT]...")
@click.option("--since", default="24h", show_default=True,
              help="How far back: 24h, 30m, 7d, or an ISO time.")
@click.option("--fetch", "mode", flag_value="fetch",
              help="Store each missing event from the vendor's API (signature_status "
                   "fetched).")
@click.option("--retry", "mode", flag_value="retry",
              help="Ask the vendor to send each missing event again (signed as usual).")
@click.option("--dry-run", is_flag=True, help="Only list what is missing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for scripts.")
@db_option
def reconcile(endpoint: Sequence[str], since: str, mode: str | None, dry_run: bool,
              as_json: bool, db: str | None) -> None:
    """Recover the events the vendor sent while the receiver could not take them.

    Lists the vendor's events for each ENDPOINT's URL (default: every endpoint with an
    api_token), compares their idempotency keys with the stored events, and fetches the
    missing ones (or asks for them again with --retry; the endpoint's `reconcile` setting
    is the default). Exit status: 0 nothing missing, 1 missing and not recovered, 2 the
    vendor's API refused or failed."""
    from .. import create_app
    from ..config import load_settings
    from ..reconcile import vendors
    from ..reconcile.run import DRY_RUN
    from ..reconcile.run import reconcile as run_reconcile
    from ..reconcile.schedule import endpoints_to_reconcile

    now = dt.datetime.now(dt.UTC)
    start = parse_since(since, now)
    overrides = {"DATABASE": db} if db else None
    try:
        settings = load_settings(overrides)
        endpoints = settings["ENDPOINTS"]
        if endpoint:
            unknown = [name for name in endpoint if name not in endpoints]
            if unknown:
                raise ConfigError(f"no endpoint named {unknown[0]!r} is configured (known: "
                                  f"{', '.join(sorted(endpoints)) or 'none'})")
            chosen = [endpoints[name] for name in dict.fromkeys(endpoint)]
        else:
            chosen = endpoints_to_reconcile(settings)
            if not chosen:
                raise ConfigError("no endpoint has an api_token to read the vendor's event "
                                  "log with ([endpoints.<name>] api_token or api_token_env)")
        known = vendors.vendors()
        reconcilers = [vendors.reconciler_for(each, settings, known=known) for each in chosen]
        app = create_app(overrides, background=False)
    except ConfigError as error:
        stop(str(error))
        return
    except ReceiverError as error:
        stop(error.message)
        return
    store = app.extensions["receiver.store"]
    dispatcher = app.extensions["receiver.dispatcher"]
    reports = []
    for chosen_endpoint, reconciler in zip(chosen, reconcilers, strict=True):
        try:
            report = run_reconcile(
                chosen_endpoint, reconciler, store, since=start,
                mode=DRY_RUN if dry_run else (mode or chosen_endpoint.reconcile),
                settings=app.config, trigger="cli", dispatcher_id=dispatcher.owner,
                dispatch=dispatcher.run_here)
        except ReceiverError as error:
            stop(error.message)
            return
        finally:
            reconciler.close()
        reports.append(report)
        if not as_json:
            click.echo("\n".join(describe(report.as_record())))
        if report.error:
            click.echo(f"error: {chosen_endpoint.name}: {report.error}", err=True)
    if as_json:
        click.echo(json.dumps({"endpoints": [report.as_record() for report in reports]},
                              indent=2))
    sys.exit(max(report.exit_status for report in reports))


def describe(run: dict[str, Any]) -> list[str]:
    """A run for people: one line of counts, then a table of what was missing."""
    mode = "dry run" if run["mode"] == "dry-run" else run["mode"]
    lines = [f"{run['endpoint']} ({run['vendor']}, {mode}): {run['checked']} vendor events "
             f"since {run['since']}, {run['missing']} missing, {run['recovered']} recovered; "
             f"the vendor reports {run['vendor_failing']} failing; {run['api_calls']} API "
             "calls"]
    if not run["items"]:
        return lines
    cells = [[heading for heading, _ in COLUMNS]]
    for item in run["items"]:
        cells.append([str(item.get(field) or "") for _, field in COLUMNS[:-1]] + [done(item)])
    widths = [max(len(row[n]) for row in cells) for n in range(len(COLUMNS) - 1)]
    lines += ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths,
                                                                      strict=False)), row[-1]])
              for row in cells]
    return lines


def done(item: dict[str, Any]) -> str:
    """What was done about one missing event, in words."""
    action = item["action"]
    if action == "fetched":
        return f"fetched: event {item['event_id']}"
    if action == "arrived":
        return f"arrived meanwhile: event {item['event_id']}"
    if action == "retried":
        return f"retried: vendor sends {item['new_vendor_id']}"
    if action == "failed":
        return f"failed: {item['error']}"
    return "missing"
