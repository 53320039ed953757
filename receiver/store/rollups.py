"""Traffic over time, as pure functions: which outcome a delivery had, which time bucket it
falls in, how a batch of deliveries or handler runs adds up into rollup rows, how a chart's
bucket size follows from its time range, and percentiles from a duration histogram.

The stores keep the sums these functions make (``activity`` and ``handler_activity`` rollup
tables, filled by the upkeep thread off the request path) and scan only the not yet rolled
tail at query time, so a chart or a scrape costs the same at a million deliveries as at a
thousand. Nothing here touches a database or a clock it is not given.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..events import format_time

#: Bucket sizes, smallest first; ``all`` is the one bucket of every time (metrics).
BUCKETS = ("minute", "hour", "day")
LEVELS = (*BUCKETS, "all")
#: Characters of an ISO time that name its bucket: ``2026-11-25T09:41``, ``…T09``, ``…-25``.
PREFIX = {"minute": 16, "hour": 13, "day": 10, "all": 0}
STEP = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1),
        "day": dt.timedelta(days=1)}
OUTCOMES = ("new", "duplicate", "refused", "unavailable")
#: Most buckets one answer holds (a minute chart of a day is 1,440).
MAX_BUCKETS = 1500
#: A chart with no range of its own shows this much (the last hour, by minute).
DEFAULT_SPAN = dt.timedelta(hours=1)
#: The longest range each bucket draws before the next size up is chosen.
CHART_LIMITS = (("minute", dt.timedelta(hours=3)), ("hour", dt.timedelta(days=5)))

#: The first and last moments a bucket may start or end at. A datetime holds years 1 to
#: 9999, and a range ends where the bucket after it starts, so the last day of the calendar
#: is left out: its last minute would end in year 10000.
FIRST_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)
LAST_TIME = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)

#: Upper bounds (ms) of the handler duration histogram kept in ``handler_activity``
#: (columns ``h0``..``h14``; the last is everything slower).
DURATION_BOUNDS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                      float("inf"))


def outcome(status_code: int, duplicate: bool) -> str:
    """``new`` (first delivery of an event), ``duplicate`` (a retry), ``refused`` (4xx) or
    ``unavailable`` (503: the database could not take it). Other answers count as refused."""
    if status_code == 503:
        return "unavailable"
    if 200 <= status_code < 300:
        return "duplicate" if duplicate else "new"
    return "refused"


def bucket_key(moment: str, level: str) -> str:
    """The bucket of an ISO time at ``level``, as its ISO prefix (``all``: ``""``)."""
    return moment[:PREFIX[level]]


def bucket_start(key: str, level: str) -> str:
    """A bucket key as the ISO time its bucket starts (``2026-11-25T09:00:00Z``)."""
    if level == "minute":
        return key + ":00Z"
    if level == "hour":
        return key + ":00:00Z"
    return key + "T00:00:00Z"


def parse_time(moment: str) -> dt.datetime:
    return dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))


def floor_time(moment: dt.datetime, level: str) -> dt.datetime:
    """The start of the bucket ``moment`` falls in."""
    moment = moment.astimezone(dt.UTC)
    if level == "minute":
        return moment.replace(second=0, microsecond=0)
    if level == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_time(moment: dt.datetime, level: str) -> dt.datetime:
    """The start of the first bucket at or after ``moment``."""
    floor = floor_time(moment, level)
    return floor if floor == moment else floor + STEP[level]


def shifted(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """``moment + delta`` held within ``FIRST_TIME`` and ``LAST_TIME`` (never an
    ``OverflowError`` at the ends of the calendar)."""
    try:
        moved = moment + delta
    except OverflowError:
        return FIRST_TIME if delta < dt.timedelta(0) else LAST_TIME
    return min(max(moved, FIRST_TIME), LAST_TIME)


def parse_age(value: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` (``receiver purge --older-than``, ``--failed-since``)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", value or "")
    if not match:
        raise ValueError(f"expected an age such as 30d, 12h or 2w; got {value!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    try:
        return dt.timedelta(**{unit[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise ValueError(f"{value!r} is longer than the calendar holds") from None


def choose_bucket(since: dt.datetime, until: dt.datetime) -> str:
    """The bucket size a chart of ``since``..``until`` is drawn in: minutes up to 3 hours,
    hours up to 5 days, days beyond."""
    span = until - since
    for level, limit in CHART_LIMITS:
        if span <= limit:
            return level
    return "day"


@dataclass(frozen=True)
class Window:
    """The buckets of one answer: ``level`` from ``start`` (inclusive) to ``end``
    (exclusive), both on bucket boundaries."""

    level: str
    start: dt.datetime
    end: dt.datetime

    @property
    def first_key(self) -> str:
        return bucket_key(format_time(self.start), self.level)

    @property
    def end_key(self) -> str:
        return bucket_key(format_time(self.end), self.level)

    def keys(self) -> list[str]:
        keys, moment = [], self.start
        while moment < self.end:
            keys.append(bucket_key(format_time(moment), self.level))
            moment += STEP[self.level]
        return keys

    def count(self) -> int:
        return int((self.end - self.start) / STEP[self.level])


def window(since: dt.datetime | None, until: dt.datetime | None, level: str | None,
           now: dt.datetime) -> Window:
    """The buckets covering ``since``..``until`` (default: the last hour up to ``now``), in
    ``level`` or the size ``choose_bucket`` picks. Raises ``ValueError`` with a sentence when
    the range is empty, starts on the calendar's last day (``LAST_TIME``) or holds more than
    ``MAX_BUCKETS`` buckets; an ``until`` past ``LAST_TIME`` counts up to it."""
    if since is None and until is not None and until <= FIRST_TIME:
        raise ValueError(f"until must be after {format_time(FIRST_TIME)}, the first moment "
                         "of the calendar")
    until = min(until or now, LAST_TIME)
    since = since or shifted(until, -DEFAULT_SPAN)
    if since >= LAST_TIME:
        raise ValueError(f"since must be before {format_time(LAST_TIME)[:10]}: activity is "
                         "counted in buckets that end within the calendar")
    if since >= until:
        raise ValueError("since must be before until")
    level = level or choose_bucket(since, until)
    start, end = floor_time(since, level), ceil_time(until, level)
    if start == end:
        end = start + STEP[level]
    chosen = Window(level, start, end)
    if chosen.count() > MAX_BUCKETS:
        raise ValueError(f"{chosen.count():,} {level} buckets are more than one answer holds "
                         f"({MAX_BUCKETS:,}); choose a larger bucket or a shorter range")
    return chosen


# -- rollups of deliveries -------------------------------------------------------------------

#: The columns a delivery rollup row is keyed on, after ``level`` and ``bucket``.
DELIVERY_KEY = ("source", "endpoint", "event_type", "status_code", "duplicate",
                "signature_status")


def roll_up_deliveries(rows: Iterable[Sequence[Any]],
                       levels: Sequence[str] = LEVELS) -> dict[tuple[Any, ...], int]:
    """Rows ``(id, received_at, source, endpoint, event_type, status_code, duplicate,
    signature_status)`` counted by ``(level, bucket, *DELIVERY_KEY)``; a missing source,
    type or verdict is ``""``."""
    # Counted once per row in the finest bucket, then those few counts into every level (a
    # coarser bucket's key is a prefix of a finer one's): a second of deliveries is one or
    # two minutes, so the work per row is one dictionary update instead of one per level.
    finest = max((PREFIX[level] for level in levels), default=0)
    fine: dict[tuple[Any, ...], int] = {}
    for _, received_at, source, endpoint, event_type, status_code, duplicate, signature in rows:
        values = (received_at[:finest], source or "", endpoint, event_type or "",
                  int(status_code), 1 if duplicate else 0, signature or "")
        fine[values] = fine.get(values, 0) + 1
    counts: dict[tuple[Any, ...], int] = {}
    for (moment, *key), number in fine.items():
        for level in levels:
            full = (level, bucket_key(moment, level), *key)
            counts[full] = counts.get(full, 0) + number
    return counts


def unavailable_counts(answered: Mapping[tuple[str, str, str], int]
                       ) -> dict[tuple[Any, ...], int]:
    """503s counted in a process, ``(received_at, endpoint, source) -> n``, as rollup
    counts (no event type, no verdict)."""
    counts: dict[tuple[Any, ...], int] = {}
    for (received_at, endpoint, source), number in answered.items():
        for level in LEVELS:
            full = (level, bucket_key(received_at, level), source, endpoint, "", 503, 0, "")
            counts[full] = counts.get(full, 0) + number
    return counts


def matches(filters: Any, source: str, endpoint: str, event_type: str) -> bool:
    """Whether a rollup key passes the ``source``, ``endpoint`` and ``event_type`` filters
    (exact, ``prefix.*`` or ``*``; rows without a type never match a type)."""
    if filters.source is not None and filters.source != source:
        return False
    if filters.endpoint is not None and filters.endpoint != endpoint:
        return False
    pattern = filters.event_type
    if pattern and pattern != "*":
        if pattern.endswith(".*"):
            return event_type.startswith(pattern[:-1])
        return event_type == pattern
    return True


@dataclass
class Counts:
    """One chart bucket: deliveries by outcome."""

    new: int = 0
    duplicate: int = 0
    refused: int = 0
    unavailable: int = 0

    def add(self, status_code: int, duplicate: bool, count: int) -> None:
        name = outcome(status_code, duplicate)
        setattr(self, name, getattr(self, name) + count)

    @property
    def total(self) -> int:
        return self.new + self.duplicate + self.refused + self.unavailable

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in OUTCOMES}


def bucket_counts(found: Window, rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Every bucket of ``found``, oldest first, zeros included: rows ``(bucket, status_code,
    duplicate, count)`` summed by outcome (rows outside the window are ignored)."""
    counts = {key: Counts() for key in found.keys()}
    for key, status_code, duplicate, count in rows:
        if key in counts:
            counts[key].add(int(status_code), bool(duplicate), int(count))
    return [{"start": bucket_start(key, found.level), **value.as_dict()}
            for key, value in counts.items()]


# -- rollups of handler runs -----------------------------------------------------------------

#: The columns a handler-run rollup row is keyed on, after ``level`` and ``bucket``.
RUN_KEY = ("handler", "status")


def duration_slot(duration_ms: float) -> int:
    """The histogram column a duration counts in."""
    for slot, bound in enumerate(DURATION_BOUNDS_MS):
        if duration_ms <= bound:
            return slot
    return len(DURATION_BOUNDS_MS) - 1


@dataclass
class RunTally:
    """Runs of one handler and status in one bucket."""

    count: int = 0
    total_ms: float = 0.0
    last_id: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * len(DURATION_BOUNDS_MS))

    def add_run(self, run_id: int, duration_ms: float) -> None:
        self.count += 1
        self.total_ms += duration_ms
        self.last_id = max(self.last_id, run_id)
        self.histogram[duration_slot(duration_ms)] += 1

    def merge(self, other: RunTally) -> None:
        self.count += other.count
        self.total_ms += other.total_ms
        self.last_id = max(self.last_id, other.last_id)
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]


def roll_up_runs(rows: Iterable[Sequence[Any]],
                 levels: Sequence[str] = LEVELS) -> dict[tuple[Any, ...], RunTally]:
    """Rows ``(id, started_at, handler, status, duration_ms)`` as tallies keyed
    ``(level, bucket, handler, status)``."""
    tallies: dict[tuple[Any, ...], RunTally] = {}
    for run_id, started_at, handler, status, duration_ms in rows:
        for level in levels:
            tallies.setdefault((level, bucket_key(started_at, level), handler, status),
                               RunTally()).add_run(run_id, float(duration_ms or 0))
    return tallies


def percentile(histogram: Sequence[int], fraction: float) -> float | None:
    """The ``fraction`` quantile (0.5, 0.95) of a duration histogram, interpolated inside
    its bucket as Prometheus' ``histogram_quantile`` does; None for no runs. Slower than the
    last finite bound reads as that bound."""
    total = sum(histogram)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    lower = 0.0
    for slot, count in enumerate(histogram):
        upper = DURATION_BOUNDS_MS[slot]
        if count and seen + count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return lower


@dataclass
class HandlerStats:
    """One row of the handler health page over a window."""

    handler: str
    runs: int = 0
    failures: int = 0
    last_failure_id: int | None = None
    histogram: list[int] = field(default_factory=lambda: [0] * len(DURATION_BOUNDS_MS))
    total_ms: float = 0.0

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.histogram, 0.5)

    @property
    def p95_ms(self) -> float | None:
        return percentile(self.histogram, 0.95)

    def as_dict(self) -> dict[str, Any]:
        return {"handler": self.handler, "runs": self.runs, "failures": self.failures,
                "last_failure_id": self.last_failure_id, "p50_ms": self.p50_ms,
                "p95_ms": self.p95_ms}


def handler_stats(tallies: Iterable[tuple[str, str, RunTally]]) -> dict[str, HandlerStats]:
    """``(handler, status, tally)`` summed per handler."""
    stats: dict[str, HandlerStats] = {}
    for handler, status, tally in tallies:
        row = stats.setdefault(handler, HandlerStats(handler))
        row.runs += tally.count
        row.total_ms += tally.total_ms
        row.histogram = [a + b for a, b in zip(row.histogram, tally.histogram, strict=True)]
        if status == "error":
            row.failures += tally.count
            if tally.last_id:
                row.last_failure_id = max(row.last_failure_id or 0, tally.last_id)
    return stats


def tally_from_row(row: Sequence[Any]) -> RunTally:
    """A stored ``handler_activity`` row's ``count, total_ms, last_id, h0..h14``."""
    count, total_ms, last_id, *histogram = row
    return RunTally(int(count), float(total_ms), int(last_id or 0),
                    [int(value) for value in histogram])


def window_level(since: dt.datetime | None, now: dt.datetime) -> str:
    """As ``choose_bucket`` for a window ending now; ``all`` for no start."""
    return "all" if since is None else choose_bucket(since, now)


def merge_tallies(target: dict[Any, RunTally], source: Mapping[Any, RunTally]) -> None:
    for key, tally in source.items():
        target.setdefault(key, RunTally()).merge(tally)
