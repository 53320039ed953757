"""The periodic reconcile: every ``RECONCILE_EVERY``, one process of the cluster (the one
holding the ``reconcile`` upkeep lock) reconciles every endpoint with an API token over
``RECONCILE_WINDOW``, in the endpoint's own mode, in a thread of its own so a slow vendor
API never holds up the upkeep. The first run is at start: a restart is when events were
most likely lost."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..config import Endpoint
from ..errors import ConfigError, ReceiverError
from ..events import format_time, utc_now_iso
from ..store import Store
from . import vendors
from .run import Report, reconcile

log = logging.getLogger(__name__)


def endpoints_to_reconcile(settings: Mapping[str, Any]) -> list[Endpoint]:
    """The endpoints with an API token (or one named), by name."""
    endpoints: Mapping[str, Endpoint] = settings["ENDPOINTS"]
    return [endpoints[name] for name in sorted(endpoints) if endpoints[name].reconciles]


def check_settings(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None
                   ) -> None:
    """With ``RECONCILE_EVERY`` set, every endpoint it covers must be reconcilable: a
    ``ConfigError`` stops the start with the setting to fix."""
    if not settings.get("RECONCILE_EVERY"):
        return
    known = vendors.vendors()
    for endpoint in endpoints_to_reconcile(settings):
        # Building the vendor's client checks its own settings too; it connects only later.
        vendors.reconciler_for(endpoint, settings, environ, known=known).close()


class ReconcileSchedule:
    """Started from the upkeep (``tick`` once a second); ``run_all`` is one round."""

    def __init__(self, store: Store, settings: Mapping[str, Any], *,
                 owner: Callable[[], str], dispatch: Callable[[int], None]) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner
        self.dispatch = dispatch
        self._next = 0.0  # monotonic time of the next round; 0: at once
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def every(self) -> float | None:
        every = self.settings.get("RECONCILE_EVERY")
        return float(every) if every else None

    def tick(self) -> None:
        """Start a round in a thread when one is due, none runs, and this process holds the
        cluster's reconcile lock."""
        every = self.every
        if not every or not endpoints_to_reconcile(self.settings):
            return
        if self._pid != os.getpid():  # forked: the parent's thread is not ours
            self._pid, self._thread, self._next = os.getpid(), None, 0.0
        if self._thread is not None and self._thread.is_alive():
            return
        if time.monotonic() < self._next or not self.store.claim_upkeep("reconcile"):
            return
        self._next = time.monotonic() + every
        self._thread = threading.Thread(target=self._round, name="receiver-reconcile",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for a round that is running (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _round(self) -> None:
        try:
            self.run_all()
        except ReceiverError as error:  # the database is away: the next round tries again
            log.warning("reconcile: %s", error.message)
        except Exception:
            log.exception("reconcile failed")

    def run_all(self, now: dt.datetime | None = None) -> list[Report]:
        """Reconcile every endpoint with an API token once; returns the reports (each is
        recorded, a bad setting as the run's error)."""
        now = now or dt.datetime.now(dt.UTC)
        since = now - dt.timedelta(seconds=float(self.settings.get("RECONCILE_WINDOW", 86400)))
        known = vendors.vendors()
        reports = []
        for endpoint in endpoints_to_reconcile(self.settings):
            try:
                reconciler = vendors.reconciler_for(endpoint, self.settings, known=known)
            except ConfigError as error:
                report = Report(endpoint.name, endpoint.source or "-", endpoint.reconcile,
                                "schedule", format_time(since), utc_now_iso(),
                                finished_at=utc_now_iso(), error=str(error))
                self.store.record_reconcile(report.as_record())
                reports.append(report)
                continue
            try:
                report = reconcile(endpoint, reconciler, self.store, since=since,
                                   mode=endpoint.reconcile, settings=self.settings,
                                   trigger="schedule", dispatcher_id=self.owner(),
                                   dispatch=self.dispatch)
            finally:
                reconciler.close()
            if report.error:
                log.warning("reconcile of %s: %s", endpoint.name, report.error)
            elif report.missing:
                log.info("reconcile of %s: %d missing, %d recovered", endpoint.name,
                         report.missing, report.recovered)
            reports.append(report)
        return reports
