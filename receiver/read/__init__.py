"""The read side: what the history shows and hands out, on top of the store.

``filters`` turns a query string or CLI options into the store's filters (shared by the web
and the CLI, so it is Flask-free); ``mask`` hides secrets in bodies, headers and queries;
``changes`` says what changed between two versions of a subject; ``export`` streams the NDJSON
export; ``metrics`` writes the Prometheus exposition. May import ``config``, ``errors``,
``events``, ``dialects`` and ``store``; never ``web`` or ``cli``.
"""
