"""Run handlers after the event is committed, and make sure every event is run once.

An event is stored ``pending``. A worker claims it with a lease (``store.claim_pending``),
runs the handlers, records the runs and settles the status. While it holds leases a keeper
thread renews them every third of the lease, so a handler slower than the lease, or a long
queue, keeps its event. If the worker dies mid-dispatch (SIGKILL, crash) the renewals stop,
the lease runs out and any worker's sweep claims it again, so nothing waits for a restart
and no two live workers run the same event.

A handler that fails gets more attempts (``retries.py``): the store keeps each scheduled
attempt as a row, claimed with a lease like a pending event, so attempts survive restarts,
run once across workers and nodes, and run where dispatch runs. Every pass takes both due
attempts and new events, so neither waits behind a long queue of the other.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import BadRequest, StorageUnavailable
from ..events import Event
from ..store import Store
from ..store.base import ScheduledAttempt
from . import signals
from .retries import Policy, next_attempt

log = logging.getLogger(__name__)

LEASE_SECONDS = 45.0
SWEEP_SECONDS = 2.0
_NOTHING = -1  # the queue had nothing for a sweep's time
#: While new events keep a pass busy, due attempts are looked for this often (seconds): they
#: never wait behind a long queue, and an idle schedule costs a busy worker nothing per event.
ATTEMPT_LOOK_SECONDS = 0.25


def run_event(store: Store, settings: Mapping[str, Any], event: Event, *, owner: str,
              trigger: str = "delivery", names: list[str] | None = None,
              attempt: int = 1,
              on_scheduled: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """Run the event's handlers (or only ``names``), record each run, schedule the next
    attempt of each that failed (or give up on it), settle the status. ``on_scheduled`` is
    told the soonest wait scheduled, if any."""
    handlers = signals.handlers_for(event, settings)
    if names is not None:
        known = {handler.name for handler in handlers}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise BadRequest(f"no handler named {unknown[0]!r} runs for this event "
                             f"(handlers: {', '.join(sorted(known)) or 'none'})")
        handlers = [handler for handler in handlers if handler.name in names]
    runs = signals.run_handlers(event, handlers, settings=settings, trigger=trigger,
                                attempt=attempt)
    retries = {handler.name: handler.retries for handler in handlers}
    scheduled: list[ScheduledAttempt] = []
    records: list[dict[str, Any]] = []
    for run in runs:
        record = dataclasses.asdict(run)
        if not run.ok:
            policy = Policy.from_settings(settings, retries.get(run.handler))
            following = next_attempt(policy, run.attempt, retry_after=run.retry_after,
                                     give_up=run.give_up)
            if following.wait is None:
                record["gave_up"] = True
            else:
                scheduled.append(ScheduledAttempt(run.handler, run.attempt + 1,
                                                  following.wait, policy.attempts))
        records.append(record)
    stored = store.record_runs(event.id, records, trigger=trigger, owner=owner,
                               scheduled=scheduled)
    if scheduled and on_scheduled is not None:
        on_scheduled(min(attempt.wait for attempt in scheduled))
    signals.runs_recorded.send(store, event=event, runs=stored)
    for record in stored:
        if record.get("gave_up"):
            _announce_gave_up(event, record)
    return stored


def run_attempt(store: Store, settings: Mapping[str, Any], event: Event, handler: str,
                attempt: int, *, owner: str,
                on_scheduled: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """Run one scheduled attempt of one handler (``trigger`` ``retry``). A handler that no
    longer runs for the event (its plugin removed or disabled) has its attempts cancelled."""
    if handler not in {known.name for known in signals.handlers_for(event, settings)}:
        log.warning("handler %s no longer runs for event %s: its retries are cancelled",
                    handler, event.id)
        store.cancel_retries(event.id, handlers=[handler])
        return []
    return run_event(store, settings, event, owner=owner, trigger="retry", names=[handler],
                     attempt=attempt, on_scheduled=on_scheduled)


def _announce_gave_up(event: Event, run: dict[str, Any]) -> None:
    """``handler_gave_up``: every receiver runs, a failing one is logged (never retried)."""
    signal = signals.handler_gave_up
    for receiver in list(signal.receivers_for(run["handler"])):
        try:
            receiver(run["handler"], event=event, run=run)
        except Exception:
            log.exception("a handler_gave_up receiver failed for %s on event %s",
                          run["handler"], event.id)


def replay(store: Store, settings: Mapping[str, Any], event_id: int, *,
           only_failed: bool = False, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Re-run handlers on a stored event: all, the named ones, or those whose last run failed."""
    event = store.get_event(event_id)
    if only_failed:
        failed = [name for name, run in store.latest_runs(event_id).items()
                  if run["status"] == "error"]
        names = [name for name in failed if names is None or name in names]
        if not names:
            return []
    return run_event(store, settings, event, owner="replay", trigger="replay", names=names)


def _owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    """Per-process dispatch: sync (before answering) or a background thread."""

    def __init__(self, store: Store, settings: Mapping[str, Any]) -> None:
        self.store = store
        self.settings = settings
        self.mode = settings.get("DISPATCH", "background")
        self.lease_seconds = float(settings.get("DISPATCH_LEASE", LEASE_SECONDS))
        self._owner = _owner_name()
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._held: set[int] = set()  # events leased to us and not yet settled
        self._attempts_running = 0  # scheduled attempts leased to us and running
        self._keeping = False  # a keeper thread renews the leases of _held
        self._last_attempts = time.monotonic()  # when due attempts were last looked for
        self._next_due: float | None = None  # the soonest attempt this process scheduled

    @property
    def owner(self) -> str:
        """The lease name of this process's dispatcher (renewed after a fork)."""
        if self._pid != os.getpid():
            self._reset_after_fork()
        return self._owner

    def submit(self, event_id: int) -> None:
        """Hand over an event that was stored leased to us; in sync mode it runs now. With
        ``DISPATCH=worker`` nothing runs here: the event waits for a `receiver worker`."""
        if self.mode == "worker":
            return
        self._hold(event_id)
        if self.mode == "sync":
            self.run_leased(event_id)
            return
        self._ensure_thread()
        self._queue.put(event_id)

    def run_here(self, event_id: int) -> None:
        """Run an event stored leased to us now, in this thread (one-off commands such as
        ``receiver reconcile``); with ``DISPATCH=worker`` it waits for a `receiver worker`."""
        if self.mode == "worker":
            return
        self._hold(event_id)
        self.run_leased(event_id)

    def run_leased(self, event_id: int) -> None:
        """Run an event this dispatcher holds the lease on (taken when it was stored)."""
        try:
            event = self.store.get_event(event_id)
            # Settled already, or taken over while this process stood still past the lease.
            if event.dispatch_status != "pending" or \
                    self.store.lease_owner(event_id) != self.owner:
                return
            run_event(self.store, self.settings, event, owner=self.owner,
                      on_scheduled=self._note_scheduled)
        finally:
            self._release(event_id)

    def dispatch(self, event_id: int | None = None, limit: int = 20) -> int:
        """Claim and run pending events (one, or a sweep) and the attempts that are due;
        returns how many ran."""
        ran = self._dispatch_pending(event_id, limit)
        if event_id is None and (
                not ran or time.monotonic() - self._last_attempts >= ATTEMPT_LOOK_SECONDS):
            ran += self.run_due_attempts(limit)
        return ran

    def _until_next_look(self) -> float:
        """Seconds until the next sweep: ``SWEEP_SECONDS``, or sooner when an attempt this
        process scheduled falls due before that (short backoffs need no full sweep wait)."""
        wait = SWEEP_SECONDS
        if self._next_due is not None:
            wait = min(wait, max(self._next_due - time.monotonic(), 0.0))
        return wait

    def _note_scheduled(self, seconds: float) -> None:
        due = time.monotonic() + seconds
        if self._next_due is None or due < self._next_due:
            self._next_due = due

    def run_due_attempts(self, limit: int = 20) -> int:
        """Claim and run scheduled handler attempts whose time has come; how many ran."""
        self._last_attempts = time.monotonic()
        if self._next_due is not None and self._next_due <= self._last_attempts:
            self._next_due = None
        claimed = self.store.claim_due_attempts(self.owner, lease_seconds=self.lease_seconds,
                                                limit=limit)
        self._hold_attempts(len(claimed))  # the keeper renews every claimed lease meanwhile
        for due in claimed:
            try:
                # Taken over while this process stood still past the lease: not ours to run.
                if self.store.attempt_owner(due.event.id, due.handler) != self.owner:
                    continue
                run_attempt(self.store, self.settings, due.event, due.handler, due.attempt,
                            owner=self.owner, on_scheduled=self._note_scheduled)
            except StorageUnavailable as error:  # the lease runs out; a sweep retries it
                log.warning("attempt %s of %s on event %s: %s", due.attempt, due.handler,
                            due.event.id, error.message)
            except Exception:
                log.exception("attempt %s of %s on event %s failed", due.attempt,
                              due.handler, due.event.id)
            finally:
                self._release_attempts()
        return len(claimed)

    def _dispatch_pending(self, event_id: int | None, limit: int) -> int:
        events = self.store.claim_pending(self.owner, lease_seconds=self.lease_seconds,
                                          limit=limit, event_id=event_id)
        for event in events:
            self._hold(event.id)
        for event in events:
            try:
                run_event(self.store, self.settings, event, owner=self.owner,
                      on_scheduled=self._note_scheduled)
            except StorageUnavailable as error:  # the lease runs out; a sweep retries it
                log.warning("dispatch of event %s: %s", event.id, error.message)
            except Exception:  # the lease runs out and another sweep retries it
                log.exception("dispatch of event %s failed", event.id)
            finally:
                self._release(event.id)
        return len(events)

    def start(self) -> None:
        """Start the background thread: it sweeps what a dead process left pending and runs
        the attempts that fall due (in ``sync`` mode only the attempts)."""
        if self.mode in ("background", "sync"):
            self._ensure_thread()

    def _reset_after_fork(self) -> None:
        """Threads and leases do not survive fork: the child is a new dispatcher."""
        self._pid = os.getpid()
        self._thread = None
        self._lock = threading.Lock()
        self._held = set()
        self._attempts_running = 0
        self._keeping = False
        self._queue = queue.Queue()
        self._owner = _owner_name()

    def _hold(self, event_id: int) -> None:
        if self._pid != os.getpid():
            self._reset_after_fork()
        with self._lock:
            self._held.add(event_id)
            if not self._keeping:
                self._keeping = True
                threading.Thread(target=self._keep_leases, name="receiver-leases",
                                 daemon=True).start()

    def _release(self, event_id: int) -> None:
        with self._lock:
            self._held.discard(event_id)

    def _hold_attempts(self, count: int) -> None:
        """Count claimed attempts, so the keeper renews their leases until each has run."""
        if not count:
            return
        if self._pid != os.getpid():
            self._reset_after_fork()
        with self._lock:
            self._attempts_running += count
            if not self._keeping:
                self._keeping = True
                threading.Thread(target=self._keep_leases, name="receiver-leases",
                                 daemon=True).start()

    def _release_attempts(self) -> None:
        with self._lock:
            self._attempts_running -= 1

    def _keep_leases(self) -> None:
        """Renew our leases every third of the lease for as long as we hold any."""
        interval = max(self.lease_seconds / 3, 0.1)
        while True:
            time.sleep(interval)  # a lease taken just now is fresh
            with self._lock:
                if not self._held and not self._attempts_running:
                    self._keeping = False
                    return
            try:
                self.store.renew_leases(self.owner, lease_seconds=self.lease_seconds)
            except StorageUnavailable as error:
                log.warning("renewing dispatch leases: %s", error.message)
            except Exception:  # a full disk: retried next round, taken over after the lease
                log.exception("renewing dispatch leases failed")

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            self._reset_after_fork()
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._loop, name="receiver-dispatch",
                                                daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        self._sweep()
        while not self._stopping.is_set():
            try:
                event_id = self._queue.get(timeout=self._until_next_look())
            except queue.Empty:
                event_id = _NOTHING
            if event_id is _NOTHING:  # outside the except: a handler's traceback stays its own
                self._sweep()
                continue
            try:
                if event_id is None:
                    break
                self.run_leased(event_id)
                # A steady stream of new events never reaches the sweep below: due attempts
                # get their turn between them.
                if time.monotonic() - self._last_attempts >= SWEEP_SECONDS:
                    self.run_due_attempts()
            except StorageUnavailable as error:  # the lease runs out; a sweep retries it
                log.warning("dispatch of event %s: %s", event_id, error.message)
            except Exception:
                log.exception("dispatch of event %s failed", event_id)
            finally:
                self._queue.task_done()

    def _sweep(self) -> None:
        """Pending events left by a dead process and due attempts, until none is left; in
        ``sync`` mode only the attempts (new events run inline there)."""
        step = self.run_due_attempts if self.mode == "sync" else self.dispatch
        try:
            while step() and not self._stopping.is_set():
                pass
        except StorageUnavailable as error:  # the next sweep tries again
            log.warning("dispatch sweep: %s", error.message)
        except Exception:
            log.exception("dispatch sweep failed")

    def stop(self, timeout: float = 5.0) -> None:
        """Finish queued events and stop the thread (tests, shutdown)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._queue.put(None)
        thread.join(timeout)
        self._stopping.set()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every event submitted so far has been dispatched (tests, shutdown)."""
        pending = self._queue
        deadline = time.monotonic() + timeout
        with pending.all_tasks_done:
            while pending.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("dispatch queue did not drain")
                pending.all_tasks_done.wait(remaining)


def run_worker(store: Store, settings: Mapping[str, Any], *, concurrency: int = 1,
               poll_seconds: float = 0.5, stop: threading.Event | None = None) -> int:
    """`receiver worker`: claim pending events (and those whose lease ran out) and run their
    handlers until SIGTERM or SIGINT, ``concurrency`` at a time. A signal lets each running
    handler finish, then returns; events claimed one at a time, so none waits on a lease
    held by a worker that is leaving. Returns how many events ran."""
    stop = stop or threading.Event()
    dispatcher = Dispatcher(store, {**settings, "DISPATCH": "background"})
    counts = [0] * concurrency

    def loop(slot: int) -> None:
        while not stop.is_set():
            try:
                ran = dispatcher.dispatch(limit=1)
            except StorageUnavailable as error:  # the database is back later: keep polling
                log.warning("worker: %s", error.message)
                ran = 0
            except Exception:
                log.exception("worker: claiming pending events failed")
                ran = 0
            counts[slot] += ran
            if not ran:
                stop.wait(poll_seconds)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.signal(number, lambda *_: stop.set())
    threads = [threading.Thread(target=loop, args=(slot,), name=f"receiver-worker-{slot}")
               for slot in range(concurrency)]
    log.info("worker %s: running handlers of pending events (concurrency %s)",
             dispatcher.owner, concurrency)
    try:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.2)
    finally:
        stop.set()
        for number, handler in previous.items():
            signal.signal(number, handler)
    return sum(counts)
