"""The activity chart above the history and deliveries lists, drawn on the server as inline
SVG (no script draws it, no style attribute: bars are sized by SVG geometry attributes and
coloured by classes of the one stylesheet, so the pages' CSP stays as it is).

``chart_view`` turns the page's filters and visible range into bars: deliveries per bucket,
stacked by outcome, each bar a link to the same list narrowed to its bucket (``since`` and
``until``), with a text alternative per bar and a table of the same numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BadRequest
from ..events import format_time
from ..store import ActivityFilters, Store, rollups

WIDTH = 720
HEIGHT = 120
GAP = 1.0  # between bars, in viewBox units
#: Bottom to top.
STACK = ("new", "duplicate", "refused", "unavailable")
#: What the Rejected tab draws: only the requests it lists.
REJECTED = ("refused", "unavailable")
#: With no range of its own, a chart starts at its oldest row shown, but spans at least this.
SHORTEST_SPAN = dt.timedelta(minutes=15)
LABELS = {"new": "new", "duplicate": "duplicate", "refused": "refused (4xx)",
          "unavailable": "unavailable (503)"}
#: List filters the chart applies; the others narrow only the list.
CHART_FILTERS = ("source", "endpoint", "event_type")


def window_for(since: str | None, until: str | None, shown: Sequence[str],
               now: dt.datetime, *, first_page: bool, start: str | None = None
               ) -> rollups.Window:
    """The chart's range (ISO times as the filters normalized them): ``since``/``until``
    when the page has them; else from the oldest row shown (at least the last 15 minutes, the
    last hour when no row is shown) to now, or, on an older page, to its newest row: the bars
    follow the traffic on the page instead of squeezing it into the right edge. ``start``
    fixes the beginning (the live view keeps the range it was drawn with)."""
    end = rollups.parse_time(until) if until else (
        now if first_page or not shown else rollups.parse_time(max(shown)))
    end = min(end, rollups.LAST_TIME)
    if since or start:
        begin = rollups.parse_time(since or start or "")
    else:
        begin = rollups.shifted(end, -rollups.DEFAULT_SPAN)
        if shown:
            begin = min(rollups.shifted(end, -SHORTEST_SPAN), rollups.parse_time(min(shown)))
        if begin >= end:  # until at the first moment of the calendar: its first hour
            end = rollups.shifted(begin, rollups.DEFAULT_SPAN)
    # A page never refuses its chart: a range of more days than a chart holds shows the
    # latest of them.
    begin = max(begin, rollups.shifted(end, -rollups.STEP["day"] * (rollups.MAX_BUCKETS - 1)))
    try:
        return rollups.window(begin, end, None, now)
    except ValueError as error:
        raise BadRequest(f"the activity chart cannot show this range: {error}") from None


def filters_of(args: Mapping[str, str]) -> ActivityFilters:
    return ActivityFilters(**{name: args.get(name) or None for name in CHART_FILTERS})


def axis_ticks(tallest: int) -> list[int]:
    """The y axis: 0 and two to four steps of 1, 2 or 5 times a power of ten, the last at or
    above the tallest bar (so bars are drawn against the top tick)."""
    if tallest <= 0:
        return [0, 1]
    power = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * power
            steps = -(-tallest // step)
            if steps <= 4:
                return [step * n for n in range(steps + 1)]
        power *= 10


def chart_view(store: Store, found: rollups.Window, filters: ActivityFilters,
               link: Any, *, outcomes: Sequence[str] = STACK) -> dict[str, Any]:
    """What ``_activity.html`` draws: bars with their stacked segments, links and labels,
    a y axis, and the words of the caption. ``link(since, until)`` is the list URL narrowed
    to one bucket; ``outcomes`` are those the page lists (the Rejected tab: refused and
    unavailable)."""
    stack = tuple(name for name in STACK if name in outcomes)
    buckets = store.activity(found, filters)
    tallest = max((sum(bucket[name] for name in stack) for bucket in buckets), default=0)
    ticks = axis_ticks(tallest)
    scale = HEIGHT / ticks[-1]
    width = WIDTH / max(len(buckets), 1)
    step = rollups.STEP[found.level]
    bars = []
    for index, bucket in enumerate(buckets):
        start = rollups.parse_time(bucket["start"])
        total = sum(bucket[name] for name in stack)
        segments, top = [], float(HEIGHT)
        for name in stack:
            if bucket[name]:
                height = bucket[name] * scale
                top -= height
                segments.append({"outcome": name, "count": bucket[name],
                                 "y": round(top, 3), "height": round(height, 3)})
        shown = _when(start, found.level)
        parts = ", ".join(f"{bucket[name]} {LABELS[name]}" for name in stack if bucket[name])
        bars.append({
            "start": bucket["start"], "total": total, "counts": bucket, "label": shown,
            "x": round(index * width, 3), "width": round(max(width - GAP, 0.5), 3),
            "segments": segments,
            "href": link(bucket["start"], format_time(start + step).replace(".000Z", "Z")),
            "text": f"{shown}: {total} {'delivery' if total == 1 else 'deliveries'}"
                    + (f" ({parts})" if parts else ""),
        })
    first, last = _when(found.start, found.level), _when(found.end - step, found.level)
    return {"bucket": found.level, "bars": bars, "tallest": tallest, "width": WIDTH,
            "height": HEIGHT, "total": sum(bar["total"] for bar in bars),
            "first": first, "last": last,
            "span": f"in the {found.level} {first}" if len(bars) == 1 else f"{first} to {last}",
            "ticks": [{"value": value, "y": round(HEIGHT - value * scale, 3)} for value in ticks],
            "outcomes": stack, "labels": LABELS, "filters": filters,
            "what": "rejected requests" if stack == REJECTED else "deliveries",
            "what_one": "rejected request" if stack == REJECTED else "delivery"}


def _when(moment: dt.datetime, level: str) -> str:
    text = format_time(moment).replace("T", " ")
    return text[:10] if level == "day" else text[:16] + " UTC"
