"""The handler side: what runs after an event is stored, and the record of each run.

``signals`` is the registry (``@on`` and blinker receivers) and runs each handler on its own;
``plugins`` loads the ``receiver.handlers`` entry points; ``dispatch`` leases stored events
and runs their handlers in background threads or ``receiver worker``; ``replay`` re-runs one
handler on many events; ``builtin/`` holds the handlers that ship with the receiver. Users
import the registry as ``receiver.signals``. May import ``config``, ``errors``, ``events``
and ``store``; never the web, the CLI or the write path.
"""
