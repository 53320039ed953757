"""Code that sends to or reads from somewhere else over HTTP, or moves a history away.

``redeliver`` sends a stored delivery to a URL (the inspector's redeliver, ``receiver
trigger``); ``forward`` relays a deployed receiver's deliveries to an app on this machine;
``export`` reads another receiver's NDJSON export (``receiver export --from``); ``copying``
copies a history between two stores. May import ``errors``, ``events``, ``store`` and
``read``; never ``web`` or ``cli``, which call it.
"""
