"""Polling for a settled state: the one helper the tests wait with."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05,
             message: str | Callable[[], str] = "condition not met") -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and
    return that. After ``timeout`` seconds without it, fail with ``message`` (a callable is
    called then, for a message that shows the state at that moment, such as a server's log).
    An exception from ``predicate`` ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:g} s)")
        time.sleep(interval)
