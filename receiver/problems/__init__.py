"""Problems a person is told about, and the alerts that tell them.

``kinds`` says what each kind of problem means, how it is summed up and where it is shown
(pure); ``board`` is each process's notice board: the request path and dispatch note trouble
there in memory and the upkeep thread writes it to the store, so a storm of refused
signatures costs ingest a counter, not a write; ``alerts`` sends what the store's outbox
holds to ``RECEIVER_ALERT_URL`` and ``RECEIVER_ALERT_MAIL_TO``, once across nodes, retried
until the target takes it. May import ``config``, ``errors``, ``events`` and ``store``; the
handler side and the web reach it through callbacks that ``create_app`` wires.
"""
