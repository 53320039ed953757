"""The brake on wrong inspector tokens (docs/operations.md#wrong-tokens-are-braked).

Each process counts the wrong tokens it was sent (``Authorization: Bearer`` on a route that
needs the token, the form of ``/login``) per client address, in a map of at most
``MAX_CLIENTS`` addresses. ``FAILURES`` wrong tokens within ``WINDOW`` seconds brake the
address for ``COOLDOWN`` seconds: every token it sends meanwhile, right or wrong, is answered
429 with ``Retry-After``, without being checked. Nothing sleeps: a braked request costs a
worker no more than a 401. Other addresses, and browsers already signed in from the braked
one, are not affected.

No Flask here: ``access`` asks it and answers; the clock is a parameter so tests move it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: Wrong tokens from one address within ``WINDOW`` seconds that brake it (the default of
#: ``RECEIVER_TOKEN_BRAKE``; 0: no brake).
FAILURES = 5
WINDOW = 60.0
#: Seconds a braked address waits (counted from its last counted failure).
COOLDOWN = 60.0
#: Addresses remembered per process; past it the one that failed longest ago is forgotten.
MAX_CLIENTS = 10_000


@dataclass
class _Record:
    first: float
    failures: int = 0
    braked_until: float = 0.0


class TokenBrake:
    """See the module. Safe to share between a process's threads."""

    def __init__(self, *, failures: int = FAILURES, window: float = WINDOW,
                 cooldown: float = COOLDOWN, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self.cooldown = cooldown
        self.max_clients = max_clients
        self.clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds ``client`` must wait before sending a token again; None when it
        may send one now."""
        now = self.clock()
        with self._lock:
            record = self._records.get(client)
            if record is None:
                return None
            if record.braked_until > now:
                return max(1, math.ceil(record.braked_until - now))
            if record.braked_until or now - record.first > self.window:
                del self._records[client]  # cooled down, or its failures are old
            return None

    def failed(self, client: str) -> None:
        """Count a wrong token from ``client``."""
        now = self.clock()
        with self._lock:
            record = self._records.get(client)
            if record is not None and record.braked_until > now:
                return  # braked already: its tokens are not even checked
            if record is None or record.braked_until or now - record.first > self.window:
                record = _Record(first=now)
            record.failures += 1
            if 0 < self.failures <= record.failures:
                record.braked_until = now + self.cooldown
            self._records[client] = record
            self._records.move_to_end(client)
            while len(self._records) > self.max_clients:
                self._records.popitem(last=False)

    def __len__(self) -> int:
        return len(self._records)
