"""Exceptions that carry the HTTP status a client should see.

Raise these with a sentence the sender can act on; ``receiver.web`` maps them to JSON (or
HTML) in one place. Anything else that escapes is a bug and becomes a logged 500.
"""

from __future__ import annotations


class ReceiverError(Exception):
    """Base class: ``status`` is the HTTP status, ``message`` the sentence for the client."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ReceiverError):
    """The body is not JSON, or a recognised dialect lacks a required field."""

    status = 400


class Unauthorized(ReceiverError):
    """A signature or credential is wrong or missing where the endpoint enforces it."""

    status = 401


class NotFound(ReceiverError):
    status = 404


class PayloadTooLarge(ReceiverError):
    status = 413


class UnsupportedMediaType(ReceiverError):
    """The body is sent with a ``Content-Encoding`` the receiver cannot decode."""

    status = 415


class StorageUnavailable(ReceiverError):
    """The database cannot take the write now (disk full, lock held): the sender should retry."""

    status = 503


class ConfigError(Exception):
    """A setting is wrong; the message names the key. Stops the start."""


class Forbidden(ReceiverError):
    """The action is not allowed here (a redeliver URL outside ``REDELIVER_ALLOW``)."""

    status = 403
