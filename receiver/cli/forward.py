"""``receiver forward``: relay a deployed receiver's deliveries to an app on this machine."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import SOURCES
from .common import (
    read_settings,
)


@click.command()
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
    from ..clients import forward as forwarding
    from ..read.filters import EVENT_TYPE

    if event_type is not None and not EVENT_TYPE.fullmatch(event_type):
        raise click.BadParameter("a dotted type such as license.created, or a prefix such as "
                                 f"license.*; got {event_type!r}", param_hint="--event-type")
    forwarder = None
    try:
        forwarder, origin = forwarding.prepare(
            from_url, to_url, token=token, allow=read_settings()["REDELIVER_ALLOW"],
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
