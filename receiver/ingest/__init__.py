"""The write path: request bytes -> ``Delivery`` -> detect the dialect -> verify -> normalize
-> store, then hand the event to dispatch.

``content_coding`` undoes a request's ``Content-Encoding`` within the size limit;
``pipeline`` runs the steps and says what to answer. No Flask here: ``web/ingest`` reads the
request and writes the response. May import ``config``, ``errors``, ``events``, ``dialects``,
``verify``, ``store`` and ``handlers`` (to know whether an event has handlers to run).
"""
