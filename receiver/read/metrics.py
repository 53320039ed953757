"""``GET /-/metrics``: Prometheus text, correct under several gunicorn workers and nodes.

Two kinds of numbers, each from where it is true for the whole deployment:

* Counts (deliveries by source/endpoint/status, signature verdicts, handler runs, handlers
  that gave up, pending and retrying events, open problems by kind, the last reconcile of
  each endpoint) come from the database
  at scrape time: the rollups of ``store.activity_queries`` plus the rows not rolled up
  yet. Every worker and every node answers the same totals, they survive restarts, and
  ingest writes nothing extra for them.
* The ingest latency histogram is measured per process, in memory. Under ``receiver serve``
  it uses ``prometheus_client``'s multiprocess mode: each worker writes its observations to
  a memory-mapped file in ``PROMETHEUS_MULTIPROC_DIR`` (made by ``receiver serve`` when
  unset) and a scrape, whichever worker answers it, adds up every worker's file. Nodes are
  scraped each on its own (the histogram is per node).

503s are never stored as deliveries (the database could not take them): the process that
answered counts them in memory (``UnavailableCounts``) and the upkeep thread adds them to
the rollup once the database takes writes again.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from ..store import Store, rollups
from ..store.upkeep import UnavailableCounts

#: Seconds: the ingest latency histogram's buckets.
INGEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: The ``endpoint`` label of every endpoint name that is not configured (anyone may post to
#: ``/hooks/<any name>``): the label values are bounded by the configuration.
OTHER_ENDPOINTS = "_other"


class IngestTimer:
    """The ``receiver_ingest_seconds`` histogram of this process (see the module)."""

    def __init__(self) -> None:
        from prometheus_client import Histogram

        self.histogram = Histogram(
            "receiver_ingest_seconds", "Time from reading a delivery to its answer, in "
            "seconds (this node's workers)", buckets=INGEST_BUCKETS, registry=None)

    def observe(self, seconds: float) -> None:
        self.histogram.observe(seconds)


class StoreCollector:
    """The counts of the module docstring, read from the store at each scrape."""

    def __init__(self, store: Store, unavailable: UnavailableCounts,
                 problem_kinds: Sequence[str] = (), endpoints: Collection[str] = ()) -> None:
        self.store = store
        self.unavailable = unavailable
        #: The configured endpoints (with ``default``, ``/hooks`` itself) keep their names
        #: as labels; the others count as ``OTHER_ENDPOINTS``.
        self.endpoints = frozenset(endpoints) | {"default"}
        #: The kinds of problem that always get a sample (``problems.kinds.KINDS``, passed
        #: in: this floor is below ``problems``).
        self.problem_kinds = tuple(problem_kinds)

    def endpoint_label(self, endpoint: str) -> str:
        return endpoint if endpoint in self.endpoints else OTHER_ENDPOINTS

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        deliveries = CounterMetricFamily(
            "receiver_deliveries", "Requests that reached an ingest route, by answer "
            "(503s included: counted by the process that answered)",
            labels=["source", "endpoint", "status"])
        verdicts = CounterMetricFamily(
            "receiver_signature_verdicts", "Signature checks by verdict (valid, invalid, "
            "unsigned, unchecked; fetched: taken from the vendor's API by reconcile)",
            labels=["source", "endpoint", "verdict"])
        by_status: dict[tuple[str, str, str], int] = {}
        by_verdict: dict[tuple[str, str, str], int] = {}
        for key, count in self.store.delivery_totals().items():
            source, endpoint, _, status_code, _, signature = key
            endpoint = self.endpoint_label(endpoint)
            shown = (source, endpoint, str(status_code))
            by_status[shown] = by_status.get(shown, 0) + count
            if signature:
                checked = (source, endpoint, signature)
                by_verdict[checked] = by_verdict.get(checked, 0) + count
        for (_, endpoint, source), count in self.unavailable.peek().items():
            shown = (source, self.endpoint_label(endpoint), "503")
            by_status[shown] = by_status.get(shown, 0) + count
        for labels, count in sorted(by_status.items()):
            deliveries.add_metric(list(labels), count)
        for labels, count in sorted(by_verdict.items()):
            verdicts.add_metric(list(labels), count)
        yield deliveries
        yield verdicts

        runs = CounterMetricFamily("receiver_handler_runs", "Handler runs by handler and "
                                   "status (ok, error), replays included",
                                   labels=["handler", "status"])
        for name, stats in sorted(self.store.handler_stats().items()):
            runs.add_metric([name, "ok"], stats.runs - stats.failures)
            runs.add_metric([name, "error"], stats.failures)
        yield runs

        gave_up = CounterMetricFamily("receiver_handler_gave_up", "Handler runs after which "
                                      "no further attempt was made (retries used up, GiveUp, "
                                      "retries=0)", labels=["handler"])
        for name, counts in sorted(self.store.retry_counts().items()):
            gave_up.add_metric([name], counts["gave_up"])
        yield gave_up

        pending = self.store.pending_summary()
        oldest = min((row[3] for row in pending), default=None)
        age = 0.0
        if oldest is not None:
            age = max(0.0, (dt.datetime.now(dt.UTC) - rollups.parse_time(oldest))
                      .total_seconds())
        yield GaugeMetricFamily("receiver_events_pending", "Events whose handlers have not "
                                "run yet", value=sum(row[2] for row in pending))
        yield GaugeMetricFamily("receiver_oldest_pending_seconds", "Age of the oldest event "
                                "waiting for its handlers (0: none waits)", value=age)
        retrying = self.store.events_retrying()
        yield GaugeMetricFamily("receiver_events_retrying", "Events with a failed handler's "
                                "next attempt scheduled", value=retrying)

        problems = GaugeMetricFamily("receiver_problems_open", "Problems open (neither "
                                     "acknowledged nor resolved), by kind", labels=["kind"])
        counts = self.store.open_problem_counts()
        for kind in [*self.problem_kinds, *sorted(set(counts) - set(self.problem_kinds))]:
            problems.add_metric([kind], counts.get(kind, 0))
        yield problems
        yield from reconcile_gauges(self.store.latest_reconcile_runs())


def reconcile_gauges(runs: Sequence[dict[str, Any]]) -> Iterator[Any]:
    """The last reconcile of each endpoint (configured endpoints only: bounded labels)."""
    from prometheus_client.core import GaugeMetricFamily

    families = {
        "missing": GaugeMetricFamily(
            "receiver_reconcile_missing", "Vendor events without a stored event at the "
            "endpoint's last reconcile", labels=["endpoint"]),
        "unrecovered": GaugeMetricFamily(
            "receiver_reconcile_unrecovered", "Of those, not fetched, arrived or retried",
            labels=["endpoint"]),
        "vendor_failing": GaugeMetricFamily(
            "receiver_reconcile_vendor_failing", "Deliveries the vendor reports failing since "
            "its last one that got through, at the last reconcile", labels=["endpoint"]),
        "failed": GaugeMetricFamily(
            "receiver_reconcile_failed", "1 when the endpoint's last reconcile ended with an "
            "error (the vendor's API refused or failed)", labels=["endpoint"]),
        "ran_at": GaugeMetricFamily(
            "receiver_reconcile_last_run_timestamp_seconds", "When the endpoint's last "
            "reconcile started (Unix time)", labels=["endpoint"]),
    }
    for run in runs:
        labels = [run["endpoint"]]
        families["missing"].add_metric(labels, run["missing"])
        families["unrecovered"].add_metric(labels, run["missing"] - run["recovered"])
        families["vendor_failing"].add_metric(labels, run["vendor_failing"])
        families["failed"].add_metric(labels, 1 if run["error"] else 0)
        families["ran_at"].add_metric(labels, rollups.parse_time(run["ran_at"]).timestamp())
    yield from families.values()


def exposition(store: Store, unavailable: UnavailableCounts, timer: IngestTimer, *,
               problem_kinds: Sequence[str] = (), endpoints: Collection[str] = ()) -> bytes:
    """The text a scrape gets: the store's counts and the ingest histogram (every worker's
    in multiprocess mode, else this process's); each of ``problem_kinds`` gets its
    ``receiver_problems_open`` sample, 0 included; endpoints other than ``endpoints`` (the
    configured names) and ``default`` are labelled ``OTHER_ENDPOINTS``."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    registry.register(StoreCollector(store, unavailable,  # type: ignore[arg-type]
                                     problem_kinds, endpoints))
    if os.path.isdir(os.environ.get(MULTIPROCESS_DIR) or ""):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(timer.histogram)
    return generate_latest(registry)


def content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)
