"""Re-run one handler on many stored events: every event matching the list filters that the
handler runs for, or only those whose latest run of it failed (since a time). Used by the
handler health page and ``receiver replay --handler NAME [--failed-since 2h]``.

Each event goes through ``dispatch.replay`` like a single replay: the run is recorded with
``trigger = replay`` and the event's dispatch status is settled again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest, NotFound
from ..store import EventFilters, Store
from . import dispatch, signals


@dataclass
class ReplayReport:
    """What a bulk replay did: runs by status, events skipped (the handler no longer runs
    for them, its latest run there did not fail, or the event was purged meanwhile)."""

    ok: int = 0
    error: int = 0
    skipped: int = 0
    failed_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "skipped": self.skipped}


def known_handler(name: str) -> signals.Handler:
    """The registered handler of that name; ``BadRequest`` naming those that exist."""
    handlers = {handler.name: handler for handler in signals.registered_handlers()}
    if name not in handlers:
        raise BadRequest(f"no handler named {name!r} is loaded (handlers: "
                         f"{', '.join(sorted(handlers)) or 'none'})")
    return handlers[name]


def select_events(store: Store, settings: Mapping[str, Any], name: str,
                  filters: EventFilters, *, only_failed: bool = False,
                  failed_since: str | None = None) -> list[int]:
    """Ids, newest first, of the events to re-run ``name`` on: those matching ``filters``
    that it runs for; with ``only_failed`` (or ``failed_since``) those whose latest run of
    it failed (at or after ``failed_since``)."""
    handler = known_handler(name)
    if only_failed or failed_since:
        failed = store.failed_event_ids(name, since=failed_since)
        if filters == EventFilters():
            return failed
        wanted = set(failed)
        return [event.id for event in store.iter_events(filters) if event.id in wanted]
    # Narrowed in the database to what the handler listens to; checked in full below.
    narrowed = dataclasses.replace(
        filters, source=filters.source or handler.source,
        event_type=filters.event_type or (handler.pattern if handler.pattern != "*" else None))
    return [event.id for event in store.iter_events(narrowed)
            if any(found.name == name for found in signals.handlers_for(event, settings))]


def replay_events(store: Store, settings: Mapping[str, Any], name: str, event_ids: list[int],
                  *, only_failed: bool = False,
                  progress: Callable[[int], None] | None = None) -> ReplayReport:
    """Run ``name`` on each event (``only_failed``: where its latest run failed); calls
    ``progress(1)`` after each."""
    outcome = ReplayReport()
    for event_id in event_ids:
        try:
            runs = dispatch.replay(store, settings, event_id, only_failed=only_failed,
                                   names=[name])
        except (BadRequest, NotFound):  # no longer for this event, or purged
            runs = []
        if not runs:
            outcome.skipped += 1
        for run in runs:
            if run["status"] == "ok":
                outcome.ok += 1
            else:
                outcome.error += 1
                outcome.failed_ids.append(event_id)
        if progress is not None:
            progress(1)
    return outcome
