"""Each process's notice board: where trouble is noted as it happens, and written to the
store off the request path.

* The request path notes refused signatures (a 401 on an enforcing endpoint) and valid
  deliveries on endpoints that have such a problem: a counter in memory. The upkeep thread
  writes them once a second, so a storm of 10,000 refusals is one problem counted 10,000
  times and costs ingest no write of its own.
* Dispatch tells the board the runs it recorded (``note_runs``): a run that gave up opens
  ``handler_failing``, an ok run of a handler with that problem resolves it.
* The upkeep thread checks the backlog (``check_backlog``; one process of the receiver).
* ``Outage`` remembers when this node started answering 503 for storage: past
  ``OUTAGE_SECONDS`` it sends the alert from memory (the database cannot coordinate then),
  and records the problem once the database is back.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import StorageUnavailable
from ..events import utc_now_iso
from ..store import Store
from . import alerts, kinds

log = logging.getLogger(__name__)

#: Seconds a node answers 503 for storage before it alerts from memory.
OUTAGE_SECONDS = 30.0
#: Failures further apart than this (seconds) are separate outages, not one long one.
QUIET_SECONDS = 60.0
#: Seconds between refreshes of which problems are open, where no flush refreshes them.
KNOWN_SECONDS = 5.0


class Noticeboard:
    """See the module. One per process (``create_app`` makes it)."""

    def __init__(self, store: Store, settings: Mapping[str, Any], node: str) -> None:
        self.store = store
        self.settings = settings
        self.channels = alerts.channels(settings)
        self.outage = Outage(settings, node)
        self._lock = threading.Lock()
        self._refused: dict[str, int] = {}  # endpoint -> 401s not written yet
        self._last: dict[str, str] = {}  # endpoint -> "refused" or "valid", the latest seen
        self._known: dict[str, set[str]] = {kind: set() for kind in kinds.KINDS}
        self._known_at = 0.0

    # -- the request path: memory only ----------------------------------------------------

    def refused(self, endpoint: str) -> None:
        with self._lock:
            self._refused[endpoint] = self._refused.get(endpoint, 0) + 1
            self._last[endpoint] = "refused"

    def valid(self, endpoint: str) -> None:
        """A valid delivery: it resolves the endpoint's refused-signature problem."""
        if endpoint not in self._known[kinds.SIGNATURE_REFUSED] and \
                endpoint not in self._refused:
            return
        with self._lock:
            self._last[endpoint] = "valid"

    # -- the upkeep thread --------------------------------------------------------------

    def flush(self) -> None:
        """Write what the request path noted; refresh which problems are open (a read that
        also tells the outage memory the database answers again)."""
        with self._lock:
            refused, self._refused = self._refused, {}
            last, self._last = self._last, {}
        try:
            for endpoint, count in refused.items():
                self.store.note_problem(
                    kinds.SIGNATURE_REFUSED, endpoint,
                    kinds.summary(kinds.SIGNATURE_REFUSED, endpoint),
                    kinds.link(kinds.SIGNATURE_REFUSED, endpoint), count=count,
                    channels=self.channels)
            for endpoint, verdict in last.items():
                if verdict == "valid":
                    self.store.resolve_problem(kinds.SIGNATURE_REFUSED, endpoint,
                                               channels=self.channels)
            if refused or last:
                self.outage.wrote()
            self._refresh_known()
        except BaseException:
            with self._lock:  # kept for the next flush
                for endpoint, count in refused.items():
                    self._refused[endpoint] = self._refused.get(endpoint, 0) + count
                for endpoint, verdict in last.items():
                    self._last.setdefault(endpoint, verdict)
            raise
        self.outage.available(self.store)

    def check_backlog(self) -> None:
        """Open ``dispatch_backlog`` while the oldest waiting work is older than
        ``ALERT_BACKLOG``; resolve it when it is younger again. One process checks."""
        if not self.store.claim_upkeep("problems"):
            return  # another process of this receiver checks
        limit = float(self.settings.get("ALERT_BACKLOG", 300.0))
        waited = self.store.oldest_waiting_seconds()
        is_open = kinds.DISPATCH in self.store.current_problems(kinds.DISPATCH_BACKLOG)
        if waited > limit and not is_open:
            self.store.note_problem(
                kinds.DISPATCH_BACKLOG, kinds.DISPATCH,
                kinds.summary(kinds.DISPATCH_BACKLOG, kinds.DISPATCH,
                              f"the oldest has waited {int(waited)} s"),
                kinds.link(kinds.DISPATCH_BACKLOG, kinds.DISPATCH), channels=self.channels)
        elif waited <= limit and is_open:
            self.store.resolve_problem(kinds.DISPATCH_BACKLOG, kinds.DISPATCH,
                                       channels=self.channels)

    # -- dispatch -------------------------------------------------------------------------

    def on_runs_recorded(self, sender: Any, *, runs: Iterable[Mapping[str, Any]],
                         **extra: Any) -> None:
        """The ``runs_recorded`` receiver ``create_app`` connects for its store."""
        self.note_runs(runs)

    def note_runs(self, runs: Iterable[Mapping[str, Any]]) -> None:
        """Runs dispatch just recorded: one that gave up opens ``handler_failing``; an ok
        run of a handler with that problem resolves it. Never raises into dispatch."""
        try:
            if time.monotonic() - self._known_at > KNOWN_SECONDS:
                self._refresh_known()
            for run in runs:
                handler = str(run["handler"])
                if run.get("gave_up"):
                    self.store.note_problem(
                        kinds.HANDLER_FAILING, handler,
                        kinds.summary(kinds.HANDLER_FAILING, handler,
                                      f"event {run['event_id']}: {run.get('error')}"),
                        kinds.link(kinds.HANDLER_FAILING, handler), channels=self.channels)
                    self._known[kinds.HANDLER_FAILING].add(handler)
                elif run.get("status") == "ok" and \
                        handler in self._known[kinds.HANDLER_FAILING]:
                    self.store.resolve_problem(kinds.HANDLER_FAILING, handler,
                                               channels=self.channels)
                    self._known[kinds.HANDLER_FAILING].discard(handler)
        except StorageUnavailable as error:
            log.warning("problems: %s", error.message)
        except Exception:
            log.exception("problems: noting handler runs failed")

    def _refresh_known(self) -> None:
        for kind in (kinds.SIGNATURE_REFUSED, kinds.HANDLER_FAILING):
            self._known[kind] = self.store.current_problems(kind)
        self._known_at = time.monotonic()


class Outage:
    """This node's memory of answering 503 for storage (see the module).

    An outage starts with the first failure and lasts while failures come less than
    ``QUIET_SECONDS`` apart; a write that succeeds again (``wrote``: a delivery stored, the notice
    board's own writes) ends it. Every worker process of the node keeps its own memory; the
    one that holds the node's lock file (``flock``, let go by the kernel if it dies) alerts
    and records, so a node alerts once however many workers it runs."""

    def __init__(self, settings: Mapping[str, Any], node: str,
                 threshold: float | None = None) -> None:
        self.settings = settings
        self.node = node
        self.threshold = OUTAGE_SECONDS if threshold is None else threshold
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last: float = 0.0
        self._since_text: str | None = None
        self._alerted = False
        self._recovered = False
        self._held: int | None = None  # the node's lock, while this process alerts

    @property
    def alerted(self) -> bool:
        return self._alerted

    def unavailable(self) -> None:
        """The database refused this node: past the threshold, alert from memory."""
        with self._lock:
            now = time.monotonic()
            if self._since is None or (not self._alerted and now - self._last > QUIET_SECONDS):
                self._since, self._since_text = now, utc_now_iso()  # a new outage
            self._last, self._recovered = now, False
            if self._alerted or now - self._since < self.threshold or not self._claim_node():
                return
            self._alerted = True
        self._send_from_memory("opened", self._problem("open"))

    def wrote(self) -> None:
        """A write succeeded (cheap: called for every stored delivery)."""
        if self._since is not None:
            self._recovered = True

    def available(self, store: Store) -> None:
        """Called by the upkeep: once a write succeeded again, the outage is over; an
        alerted one is recorded in the database, resolved, and said so from memory too."""
        if self._since is None or not self._recovered:
            return
        with self._lock:
            alerted = self._alerted
        if alerted:
            kind, subject = kinds.DATABASE_UNAVAILABLE, self.node
            store.note_problem(kind, subject, kinds.summary(kind, subject),
                               kinds.link(kind, subject))
            problem = store.resolve_problem(kind, subject) or self._problem("resolved")
        with self._lock:
            self._since, self._alerted, self._recovered = None, False, False
            self._release_node()
        if alerted:
            self._send_from_memory("resolved", problem)

    def _claim_node(self) -> bool:
        """Take the node's outage lock (not waiting); whether this process holds it."""
        if self._held is not None:
            return True
        name = hashlib.sha256(f"{self.node}\0{self.settings.get('DATABASE')}".encode())
        path = os.path.join(tempfile.gettempdir(),
                            f"receiver-outage-{name.hexdigest()[:16]}.lock")
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another worker of this node alerts
            os.close(descriptor)
            return False
        self._held = descriptor
        return True

    def _release_node(self) -> None:
        if self._held is not None:
            os.close(self._held)  # closing lets the flock go
            self._held = None
    def _problem(self, status: str) -> dict[str, Any]:
        kind, subject = kinds.DATABASE_UNAVAILABLE, self.node
        return {"id": None, "kind": kind, "subject": subject, "status": status,
                "summary": kinds.summary(kind, subject), "count": 1,
                "opened_at": self._since_text, "last_seen_at": utc_now_iso(),
                "acknowledged_at": None,
                "resolved_at": utc_now_iso() if status == "resolved" else None,
                "link": kinds.link(kind, subject)}

    def _send_from_memory(self, state: str, problem: Mapping[str, Any]) -> None:
        body = alerts.payload(problem, state, self.settings)
        for channel in alerts.channels(self.settings):
            threading.Thread(target=self._keep_sending, args=(channel, body),
                             name="receiver-outage-alert", daemon=True).start()

    def _keep_sending(self, channel: str, body: Mapping[str, Any]) -> None:
        """Until the target takes it (a few minutes at most: the process may stop first)."""
        for failures in range(1, 12):
            try:
                alerts.deliver(channel, body, self.settings)
                return
            except Exception as error:  # noqa: BLE001 - any failure is retried, then logged
                log.warning("outage alert (%s) not sent: %s", channel, error)
                time.sleep(alerts.wait_after(failures))
