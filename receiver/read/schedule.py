"""A failed handler's scheduled attempts as people read them, the same on the event page and
in ``receiver show``: "tests.crm: attempt 3 of 11, next at 14:02:05 UTC (in 3 min)", or
"running now" while a worker has it. The wait is counted from ``now`` on the server, so a
page needs no script to say it."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import Any


def parse_moment(value: str) -> dt.datetime:
    """A stored ISO time (``...Z``) as an aware datetime."""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def wait_text(seconds: float) -> str:
    """``in 40 s``, ``in 3 min``, ``in 2 h``, ``in 3 d``; ``due now`` once it is due."""
    if seconds <= 0.5:
        return "due now"
    if seconds < 60:
        return f"in {math.ceil(seconds)} s"
    if seconds < 3600:
        return f"in {round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"in {round(seconds / 3600)} h"
    return f"in {round(seconds / 86400)} d"


def clock_text(moment: dt.datetime, now: dt.datetime) -> str:
    """The due time in UTC: the time of day when it is today, else the date too."""
    moment, today = moment.astimezone(dt.UTC), now.astimezone(dt.UTC)
    shown = moment.strftime("%H:%M:%S")
    return shown if moment.date() == today.date() else f"{moment:%Y-%m-%d} {shown}"


def attempt_view(scheduled: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """A scheduled attempt (``Store.scheduled_attempts``) with what to say about it: ``at``
    (UTC clock), ``wait`` (``in 3 min``, or ``running now``) and ``summary``, the whole
    line."""
    view = dict(scheduled)
    due = parse_moment(str(scheduled["due_at"]))
    view["at"] = clock_text(due, now)
    view["wait"] = "running now" if scheduled.get("running") else wait_text(
        (due - now).total_seconds())
    count = f"attempt {scheduled['attempt']} of {scheduled['attempts']}"
    view["summary"] = (f"{scheduled['handler']}: {count}, running now"
                       if scheduled.get("running") else
                       f"{scheduled['handler']}: {count}, next at {view['at']} UTC"
                       f" ({view['wait']})")
    return view


def attempt_views(scheduled: Iterable[Mapping[str, Any]],
                  now: dt.datetime | None = None) -> list[dict[str, Any]]:
    when = now or dt.datetime.now(dt.UTC)
    return [attempt_view(one, when) for one in scheduled]
