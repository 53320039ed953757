"""Example plugin: log every license event; flag expiries loudly."""

import logging

from receiver import on

log = logging.getLogger(__name__)


@on("license.*")
def log_license_event(event, **extra):
    log.info("%s %s for license %s (event %s)", event.source, event.event_type,
             event.subject_id, event.id)


@on("license.expired")
def mark_expired(event, **extra):
    log.warning("EXPIRED: license %s of account %s", event.subject_id, event.account)
