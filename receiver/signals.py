"""The handler API users import: the blinker signals and the registry behind ``@on``.

``receiver.signals.signal_for("license.created").connect(fn)`` or
``receiver.signals.event_received.connect(fn)`` subscribe with blinker; ``handlers_for``,
``run_handlers`` and ``dispatch`` test a handler without a database. The code lives in
``receiver.handlers.signals``, beside dispatch and the plugins; this module is its public
name and nothing inside the package imports it.
"""

from __future__ import annotations

from .handlers.signals import (
    Handler,
    Run,
    dispatch,
    event_received,
    handler_gave_up,
    handlers_for,
    on,
    registered_handlers,
    reset_registry,
    run_handlers,
    signal_for,
)

__all__ = ["Handler", "Run", "dispatch", "event_received", "handler_gave_up", "handlers_for", "on",
           "registered_handlers", "reset_registry", "run_handlers", "signal_for"]
