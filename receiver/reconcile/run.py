"""One reconcile of one endpoint: list the vendor's events, find those never stored,
recover them, record the run, and open or resolve ``vendor_failing``.

``--fetch`` stores each missing event from the vendor's API through the ingest pipeline (a
delivery whose body is the API's document, ``signature_status`` ``fetched``), so it is
normalized, deduplicated and dispatched like any other; ``--retry`` asks the vendor to send
it again, and the signed delivery arrives through ingest later; ``--dry-run`` only lists.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config import Endpoint
from ..events import Delivery, format_time, utc_now_iso
from ..ingest import pipeline
from ..problems import alerts, kinds
from ..store import Store
from ..store.reconcile_queries import LOOKUP_BATCH
from ..verify import FETCHED, Verdict
from . import compare
from .base import Fetched, Reconciler, VendorError, VendorEvent

FETCH, RETRY, DRY_RUN = "fetch", "retry", "dry-run"
MODES = (FETCH, RETRY, DRY_RUN)

#: Header of a fetched delivery naming the API URL its body came from.
FETCHED_FROM = "X-Receiver-Fetched-From"

#: What was done about one missing event.
LISTED, FETCHED_NOW, ARRIVED, RETRIED, FAILED = "listed", "fetched", "arrived", "retried", \
    "failed"


@dataclass
class Item:
    """One missing event and what this run did about it."""

    vendor_id: str
    event: str
    status: str
    last_response: str
    created: str
    token: str
    action: str = LISTED
    event_id: int | None = None
    new_vendor_id: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, event: VendorEvent) -> Item:
        return cls(event.vendor_id, event.event, event.status, event.last_response,
                   event.created, event.token)

    @property
    def recovered(self) -> bool:
        return self.action in (FETCHED_NOW, ARRIVED, RETRIED)


@dataclass
class Report:
    """One run of one endpoint, as recorded and as ``--json`` prints it."""

    endpoint: str
    vendor: str
    mode: str
    trigger: str
    since: str
    ran_at: str
    finished_at: str = ""
    checked: int = 0
    vendor_failing: int = 0
    api_calls: int = 0
    error: str | None = None
    items: list[Item] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return len(self.items)

    @property
    def recovered(self) -> int:
        return sum(item.recovered for item in self.items)

    @property
    def exit_status(self) -> int:
        """0 nothing missing (after recovering), 1 missing and not recovered, 2 the vendor's
        API refused or failed (or the settings do not allow a reconcile)."""
        if self.error:
            return 2
        return 1 if self.recovered < self.missing else 0

    def as_record(self) -> dict[str, Any]:
        record = {name.name: getattr(self, name.name) for name in dataclasses.fields(self)}
        record.update(missing=self.missing, recovered=self.recovered,
                      items=[dataclasses.asdict(item) for item in self.items])
        return record


def batched(items: Iterable[VendorEvent], size: int) -> Iterator[list[VendorEvent]]:
    """Lists of ``size`` items (the last shorter); ``itertools.batched`` from Python 3.12."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def fetched_delivery(endpoint: Endpoint, fetched: Fetched) -> Delivery:
    """The API's document as a delivery of the endpoint: the bytes the API sent, where they
    came from in a header, no sender address (nobody sent it)."""
    parts = urlsplit(fetched.url)
    return Delivery(body=fetched.body,
                    headers=[("Content-Type", fetched.content_type),
                             (FETCHED_FROM, fetched.url)],
                    endpoint=endpoint.name, method="GET", path=parts.path, query=parts.query)


def reconcile(endpoint: Endpoint, reconciler: Reconciler, store: Store, *,
              since: dt.datetime, mode: str, settings: Mapping[str, Any],
              trigger: str = "cli", dispatcher_id: str | None = None,
              dispatch: Callable[[int], None] | None = None,
              now: Callable[[], dt.datetime] | None = None,
              record: bool = True) -> Report:
    """Reconcile one endpoint over the vendor's events created since ``since``.

    A new event stored by ``fetch`` is leased to ``dispatcher_id`` and handed to
    ``dispatch``. The run is recorded (unless ``record`` is false) and ``vendor_failing``
    follows what the vendor reports, unless the vendor's API could not be read."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    report = Report(endpoint.name, reconciler.source, mode, trigger, format_time(since),
                    utc_now_iso())
    try:
        assert endpoint.url is not None, "checked by vendors.check_endpoint"
        tally = compare.Tally(clock())
        for batch in batched(reconciler.events_since(since), LOOKUP_BATCH):
            mine = compare.ours(batch, endpoint.url)
            tally.add(mine, store.stored_external_ids(reconciler.source,
                                                      (event.token for event in mine)))
        report.checked = tally.checked
        report.vendor_failing = tally.failing
        report.items = [Item.of(event) for event in tally.missing]
        if mode != DRY_RUN:
            for item in report.items:
                recover(item, endpoint, reconciler, store, mode=mode, settings=settings,
                        dispatcher_id=dispatcher_id, dispatch=dispatch)
            failed = [item.error for item in report.items if item.error]
            if failed:
                report.error = failed[0] if len(failed) == 1 else \
                    f"{failed[0]} (and {len(failed) - 1} more failed)"
        note_vendor(store, endpoint, tally, settings)
    except VendorError as error:
        report.error = str(error)
    finally:
        report.api_calls = reconciler.api_calls
        report.finished_at = utc_now_iso()
    if record:
        store.record_reconcile(report.as_record())
    return report


def recover(item: Item, endpoint: Endpoint, reconciler: Reconciler, store: Store, *,
            mode: str, settings: Mapping[str, Any], dispatcher_id: str | None,
            dispatch: Callable[[int], None] | None) -> None:
    """Fetch or resend one missing event; a failure is kept on the item, the run goes on."""
    try:
        if mode == RETRY:
            item.new_vendor_id = reconciler.resend(item.vendor_id)
            item.action = RETRIED
            return
        fetched = reconciler.fetch(item.vendor_id)
    except VendorError as error:
        item.action, item.error = FAILED, str(error)
        return
    answer = pipeline.receive(
        fetched_delivery(endpoint, fetched), endpoint, store, settings=settings,
        dispatcher_id=dispatcher_id,
        verdict=Verdict(FETCHED, f"fetched from {fetched.url} with the endpoint's API token"))
    if answer.status != 200:
        item.action = FAILED
        item.error = f"the vendor's document for {item.vendor_id} was not stored: " \
                     f"{answer.body.get('error')}"
        return
    item.event_id = answer.event_id
    item.action = ARRIVED if answer.body.get("duplicate") else FETCHED_NOW
    if answer.to_dispatch and answer.event_id is not None and dispatch is not None:
        dispatch(answer.event_id)


def note_vendor(store: Store, endpoint: Endpoint, tally: compare.Tally,
                settings: Mapping[str, Any]) -> None:
    """Open ``vendor_failing`` while the vendor's newest deliveries to us fail; resolve it
    once one gets through (or none failed)."""
    channels = alerts.channels(settings)
    newest = tally.newest_failing
    if not tally.failing or newest is None:
        store.resolve_problem(kinds.VENDOR_FAILING, endpoint.name, channels=channels)
        return
    detail = (f"{tally.failing} failed since the last that got through; the newest "
              f"{newest.vendor_id} ({newest.event}) got {newest.last_response}")
    store.note_problem(kinds.VENDOR_FAILING, endpoint.name,
                       kinds.summary(kinds.VENDOR_FAILING, endpoint.name, detail),
                       kinds.link(kinds.VENDOR_FAILING, endpoint.name), channels=channels)
