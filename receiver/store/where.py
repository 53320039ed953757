"""WHERE terms of the list filters, written once for both backends.

The event list, the deliveries list, the export and the activity chart filter on the same
columns the same way on SQLite and PostgreSQL; only the placeholder differs (``?`` for
sqlite3, ``%s`` for psycopg), so each function takes it as ``mark``. What a backend adds of
its own (SQLite's full-text match, PostgreSQL's feed bound) it appends to the terms.
"""

from __future__ import annotations

from typing import Any

from .base import OUTCOME_TERMS, DeliveryFilters, EventFilters, event_type_prefix

#: Filters that compare one events column for equality, in the order the terms are written.
EVENT_EQUALITY_COLUMNS = ("source", "endpoint", "account", "subject_id", "signature_status",
                          "dispatch_status")
#: The same for deliveries.
DELIVERY_EQUALITY_COLUMNS = ("endpoint", "status_code", "source", "event_id")


def event_type_condition(pattern: str | None, *, mark: str = "?", prefix: str = ""
                         ) -> tuple[str | None, list[Any]]:
    """SQL over ``event_type`` for an exact type or a ``prefix.*`` (``*``: no condition).

    A ``prefix.*`` is a range on the indexed column, so ``license.*`` reads the index from
    ``license.`` to ``license/``. ``prefix`` goes before the column name (SQLite's ``+``
    keeps the planner off the index)."""
    wanted = event_type_prefix(pattern)
    if wanted is None:
        return None, []
    column = f"{prefix}event_type"
    if isinstance(wanted, tuple):
        return f"{column} >= {mark} AND {column} < {mark}", list(wanted)
    return f"{column} = {mark}", [wanted]


def event_filter_terms(filters: EventFilters, *, mark: str = "?", prefix: str = ""
                       ) -> tuple[list[str], list[Any]]:
    """The terms (joined with AND by the caller) and their parameters for every event
    filter but ``q``, which each backend matches with its own index."""
    where, params = equal_terms(filters, EVENT_EQUALITY_COLUMNS, mark=mark, prefix=prefix)
    condition, values = event_type_condition(filters.event_type, mark=mark, prefix=prefix)
    if condition:
        where.append(condition)
        params.extend(values)
    _received_between(filters.since, filters.until, mark, where, params)
    return where, params


def delivery_filter_terms(filters: DeliveryFilters, *, mark: str = "?"
                          ) -> tuple[list[str], list[Any]]:
    """The terms and parameters of the deliveries filters; paging is the caller's."""
    where, params = equal_terms(filters, DELIVERY_EQUALITY_COLUMNS, mark=mark)
    if filters.rejected:
        where.append(OUTCOME_TERMS["refused"])
    if filters.outcome is not None:
        where.append(OUTCOME_TERMS[filters.outcome])
    condition, values = event_type_condition(filters.event_type, mark=mark)
    if condition:
        # A primary-key probe per delivery row, so keyset pages stop at their limit.
        where.append("EXISTS (SELECT 1 FROM events WHERE events.id = deliveries.event_id"
                     f" AND {condition})")
        params.extend(values)
    # ``since``/``until``: a bucket of the activity chart.
    _received_between(filters.since, filters.until, mark, where, params)
    return where, params


def equal_terms(filters: Any, columns: tuple[str, ...], *, mark: str = "?", prefix: str = ""
                ) -> tuple[list[str], list[Any]]:
    """``column = <mark>`` for each of ``columns`` the filters set (not None)."""
    where: list[str] = []
    params: list[Any] = []
    for column in columns:
        value = getattr(filters, column)
        if value is not None:
            where.append(f"{prefix}{column} = {mark}")
            params.append(value)
    return where, params


def _received_between(since: str | None, until: str | None, mark: str,
                      where: list[str], params: list[Any]) -> None:
    if since:
        where.append(f"received_at >= {mark}")
        params.append(since)
    if until:
        where.append(f"received_at < {mark}")
        params.append(until)
