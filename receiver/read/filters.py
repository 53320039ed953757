"""Query-string filters shared by the API and the pages; a bad value is a 400 naming it."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from ..config import SOURCES
from ..dialects.base import iso_time
from ..errors import BadRequest
from ..store import MAX_ID, ActivityFilters, DeliveryFilters, EventFilters, rollups
from ..store.base import OUTCOMES

SIGNATURE_STATUSES = ("valid", "invalid", "unsigned", "unchecked", "fetched")
DISPATCH_STATUSES = ("pending", "retrying", "done", "failed")
MAX_LIMIT = 500
DIGITS = re.compile(r"[0-9]{1,19}")


def parse_id(value: str | None, name: str) -> int | None:
    """An id-like parameter (cursor, after): ASCII digits within the stores' id range."""
    if value is None or value == "":
        return None
    if not DIGITS.fullmatch(value) or int(value) > MAX_ID:
        raise BadRequest(f"{name} must be an id from a previous answer; got {value!r}")
    return int(value)


EVENT_TYPE = re.compile(r"\*|[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*(\.\*)?")


def _choice(args: Mapping[str, str], name: str, options: tuple[str, ...]) -> str | None:
    value = args.get(name) or None
    if value is not None and value not in options:
        raise BadRequest(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return value


def _time(args: Mapping[str, str], name: str) -> str | None:
    value = args.get(name) or None
    if value is None:
        return None
    moment = iso_time(value)
    if moment is None:
        raise BadRequest(f"{name} must be an ISO 8601 time from year 1 to 9999 (UTC), such as "
                         f"2026-11-25T09:00:00Z; got {value!r}")
    return moment


def _event_type(args: Mapping[str, str]) -> str | None:
    event_type = args.get("event_type") or None
    if event_type is not None and not EVENT_TYPE.fullmatch(event_type):
        raise BadRequest("event_type must be a dotted type such as license.created, or a "
                         f"prefix such as license.*; got {event_type!r}")
    return event_type


def event_filters(args: Mapping[str, str]) -> EventFilters:
    return EventFilters(
        source=_choice(args, "source", SOURCES),
        event_type=_event_type(args),
        endpoint=args.get("endpoint") or None,
        account=args.get("account") or None,
        subject_id=args.get("subject_id") or None,
        signature_status=_choice(args, "signature_status", SIGNATURE_STATUSES),
        dispatch_status=_choice(args, "dispatch_status", DISPATCH_STATUSES),
        q=(args.get("q") or "").strip() or None,
        since=_time(args, "since"),
        until=_time(args, "until"),
    )


def activity_args(args: Mapping[str, str], now: dt.datetime | None = None
                  ) -> tuple[rollups.Window, ActivityFilters]:
    """``GET /api/activity``: the buckets (``bucket``, ``since``, ``until``; the last hour by
    default, the bucket size chosen from the range when not given) and the filters."""
    level = _choice(args, "bucket", rollups.BUCKETS)
    since, until = _time(args, "since"), _time(args, "until")
    try:
        found = rollups.window(rollups.parse_time(since) if since else None,
                                rollups.parse_time(until) if until else None, level,
                                now or dt.datetime.now(dt.UTC))
    except ValueError as error:
        raise BadRequest(str(error)) from None
    filters = ActivityFilters(source=_choice(args, "source", SOURCES),
                              endpoint=args.get("endpoint") or None,
                              event_type=_event_type(args))
    return found, filters


def delivery_filters(args: Mapping[str, str]) -> DeliveryFilters:
    status = args.get("status_code") or None
    if status is not None and not (re.fullmatch(r"[0-9]{3}", status)
                                   and 100 <= int(status) <= 599):
        raise BadRequest(f"status_code must be an HTTP status such as 400; got {status!r}")
    return DeliveryFilters(
        endpoint=args.get("endpoint") or None,
        status_code=int(status) if status else None,
        source=_choice(args, "source", SOURCES),
        rejected=args.get("rejected") in ("1", "true", "yes"),
        outcome=_choice(args, "outcome", OUTCOMES),
        event_type=_event_type(args),
        since=_time(args, "since"),
        until=_time(args, "until"),
    )


def page_args(args: Mapping[str, str]) -> tuple[int, int | None]:
    """``limit`` (default 50, at most 500) and the keyset ``cursor``."""
    raw_limit = args.get("limit") or "50"
    if not DIGITS.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_ID:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}; got {raw_limit!r}")
    cursor = parse_id(args.get("cursor"), "cursor (a value from a previous answer's next)")
    return min(int(raw_limit), MAX_LIMIT), cursor
