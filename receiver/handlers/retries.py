"""When a failed handler runs again: the retry policy, as pure functions.

The sender has its 200 before any handler runs, so nobody else will try again: a failed run
is tried again by itself, like Celery's ``autoretry_for`` or Sidekiq's retries. A handler gets
``retries`` attempts after the first (``@on(..., retries=N)``, else ``HANDLER_RETRIES``),
waiting ``HANDLER_BACKOFF`` before the second, twice that before the third and so on, never
more than ``HANDLER_BACKOFF_MAX``, with random jitter below that wait so that many events
failing together do not all come back in the same second. A handler may choose for itself:
``raise RetryLater(seconds)`` sets the wait of the next attempt (it still counts as one);
``raise GiveUp(reason)`` ends the attempts now.

Nothing here touches the database or a clock: dispatch asks ``next_attempt`` what to do with
a failed run and the store keeps the schedule.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: What ``retries(n)`` (and ``@on(..., retries=n)``) leaves on a function for dispatch.
RETRIES_ATTRIBUTE = "__receiver_retries__"


class RetryLater(Exception):
    """Raised by a handler: try again in ``seconds`` (the attempt counts; when none is left,
    the handler gives up)."""

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        seconds = float(seconds)
        if not 0 <= seconds < float("inf"):
            raise ValueError(f"RetryLater takes 0 or more seconds, got {seconds!r}")
        self.seconds = seconds
        self.reason = reason
        super().__init__(reason or f"retry in {seconds:g} s")


class GiveUp(Exception):
    """Raised by a handler: this event cannot succeed (bad data, a refused recipient); no
    further attempt, the run is recorded as failed and the handler as given up."""

    def __init__(self, reason: str = "gave up") -> None:
        self.reason = reason
        super().__init__(reason)


def retries(count: int) -> Any:
    """Decorate a function connected straight to a blinker signal with its own number of
    retries (``@on`` takes ``retries=`` itself)::

        @retries(3)
        def notify(event, **extra): ...

        signal_for("license.created").connect(notify, weak=False)
    """
    checked = check_retries(count)

    def decorate(fn: Any) -> Any:
        setattr(fn, RETRIES_ATTRIBUTE, checked)
        return fn

    return decorate


def check_retries(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"retries must be a whole number, 0 or more, got {count!r}")
    return count


@dataclass(frozen=True)
class Policy:
    """How often and how patiently one handler is tried."""

    retries: int  # attempts after the first
    backoff: float  # seconds before the second attempt
    backoff_max: float  # the cap of every wait

    @property
    def attempts(self) -> int:
        """Attempts in all, the first included."""
        return self.retries + 1

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], retries: int | None = None) -> Policy:
        """The handler's own ``retries`` if it set one, the settings for the rest."""
        return cls(retries=int(settings.get("HANDLER_RETRIES", 10) if retries is None
                               else retries),
                   backoff=float(settings.get("HANDLER_BACKOFF", 30.0)),
                   backoff_max=float(settings.get("HANDLER_BACKOFF_MAX", 7200.0)))

    def wait(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): the backoff doubled per
        attempt, capped, then a random point in its upper quarter (jitter never raises it)."""
        exponent = min(attempt - 1, 64)  # 2**64 times any backoff is past every cap
        full = min(self.backoff_max, self.backoff * 2.0 ** exponent)
        return full * (0.75 + 0.25 * (rng or random).random())


@dataclass(frozen=True)
class Next:
    """What follows a failed attempt: another after ``wait`` seconds, or giving up."""

    wait: float | None  # None: no further attempt
    reason: str | None = None  # why it gave up

    @property
    def gives_up(self) -> bool:
        return self.wait is None


def next_attempt(policy: Policy, attempt: int, *, retry_after: float | None = None,
                 give_up: str | None = None, rng: random.Random | None = None) -> Next:
    """After failed attempt ``attempt`` (1-based): when to try again, if at all.
    ``retry_after``: the handler raised ``RetryLater`` with that wait; ``give_up``: it raised
    ``GiveUp`` with that reason."""
    if give_up is not None:
        return Next(None, f"GiveUp: {give_up}")
    if attempt >= policy.attempts:
        used = "no retries" if policy.retries == 0 else f"all {policy.attempts} attempts used"
        return Next(None, used)
    if retry_after is not None:
        return Next(retry_after)
    return Next(policy.wait(attempt, rng))
