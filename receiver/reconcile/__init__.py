"""Reconcile with the vendor's event log: recover the events that never reached us.

Some senders give up early (Keygen never retries a refused connection). A vendor that keeps
its events behind an API is read back (``base``: the interface, ``keygen``: Keygen's API over
httpx, ``vendors``: which vendors and the settings they need), compared by idempotency key
with what is stored (``compare``, pure), and what is missing is fetched through the ingest
pipeline or sent again by the vendor (``run``), now from ``receiver reconcile`` or every
``RECONCILE_EVERY`` (``schedule``).

Above ``ingest`` and ``problems``: it stores through the pipeline and opens
``vendor_failing``; only the web, the app factory and the CLI import it.
"""
