"""``receiver``: the command line, one module per group of commands.

``serve`` runs the receiver (gunicorn) and prints sign-in links; ``samples`` lists and
``trigger`` sends the bundled vendor samples; ``history`` reads and changes the stored history
(``events``, ``show``, ``tail``, ``replay``, ``export``, ``purge``, ``problems``,
``plugins``); ``scale`` runs handler workers and copies a history between backends;
``forward`` relays a deployed receiver's deliveries to an app on this machine;
``reconcile`` recovers the events a vendor's own log has and the history misses. Commands
that read the history open the database named by the settings (``RECEIVER_DATABASE``,
``RECEIVER_CONFIG``) or by ``--db``.
The top floor: it imports ``create_app`` and the packages below, never ``web`` internals.
"""

from __future__ import annotations

import click

from . import forward, history, reconcile, samples, scale, serve


@click.group()
@click.version_option(package_name="license-webhook-receiver")
def cli() -> None:
    """Webhook receiver and inspector for license-management platforms."""


for command in (serve.serve, serve.login_link, samples.samples, samples.trigger,
                history.events, history.show, history.tail, history.replay, history.export,
                history.purge, history.problems, history.plugins_command, scale.worker,
                scale.copy_command, forward.forward, reconcile.reconcile):
    cli.add_command(command)
