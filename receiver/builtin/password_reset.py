"""Built-in plugin ``password-reset-mail``: mail Keygen password-reset tokens to the user.

Keygen sends ``user.password-reset`` whenever a user asks to reset a password; the parsed
payload holds the user at ``data`` and the token at ``meta.passwordResetToken``. With
``MAIL_RESET_ENABLED`` this handler mails the user a plain-text message with the token and a
link made from ``MAIL_RESET_URL`` (``{token}`` replaced, URL-quoted), from ``MAIL_FROM``,
through ``SMTP_HOST``/``SMTP_PORT`` (``SMTP_STARTTLS``, ``SMTP_USER``/``SMTP_PASSWORD``,
``SMTP_TIMEOUT``). A payload without an address or token raises ``ValueError``; SMTP errors
propagate. Either way the run is recorded as an error and can be replayed.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Any
from urllib.parse import quote

from ..events import Event
from ..signals import on

logger = logging.getLogger(__name__)

SUBJECT = "Reset your password"

_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")

BODY = """\
Hello {greeting},

Someone (hopefully you) asked to reset the password of the account {email}.
To choose a new password, open this link:

    {link}

If the link does not open, use this reset token:

    {token}

If you did not ask for a password reset, ignore this message; your password stays as it is.
"""


def mail_enabled(settings: Mapping[str, Any]) -> bool:
    return bool(settings.get("MAIL_RESET_ENABLED", False))


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def reset_link(template: str, token: str) -> str:
    """``MAIL_RESET_URL`` with ``{token}`` replaced by the URL-quoted token."""
    return template.replace("{token}", quote(token, safe=""))


def build_message(event: Event, settings: Mapping[str, Any]) -> EmailMessage:
    """The mail for a Keygen ``user.password-reset`` event; ``ValueError`` if it lacks the
    user's address or the token."""
    where = f"user.password-reset event {event.id}"
    token = _dig(event.data, "meta", "passwordResetToken")
    if not isinstance(token, str) or not token.strip():
        raise ValueError(f"{where} has no token at meta.passwordResetToken; nothing to mail")
    email = _dig(event.data, "data", "attributes", "email")
    if not isinstance(email, str) or not email.strip():
        raise ValueError(f"{where} has no user address at data.attributes.email; "
                         "cannot mail the reset token")
    email = email.strip()
    if not _ADDRESS.fullmatch(email):
        raise ValueError(f"{where}: data.attributes.email {email!r} is not a mail address")
    token = token.strip()
    attributes = _dig(event.data, "data", "attributes")
    name = attributes.get("fullName") or " ".join(
        part for part in (attributes.get("firstName"), attributes.get("lastName"))
        if isinstance(part, str) and part
    )
    name = " ".join(name.split()) if isinstance(name, str) else ""  # no line breaks in headers

    sender = str(settings.get("MAIL_FROM") or "receiver@localhost")
    message = EmailMessage()
    message["Subject"] = SUBJECT
    message["From"] = sender
    message["To"] = formataddr((name, email)) if name else email
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    message.set_content(BODY.format(
        greeting=name or email,
        email=email,
        link=reset_link(str(settings.get("MAIL_RESET_URL") or "{token}"), token),
        token=token,
    ))
    return message


def send_message(message: EmailMessage, settings: Mapping[str, Any]) -> None:
    """Send through the configured SMTP server; any SMTP or socket error propagates."""
    timeout = float(settings.get("SMTP_TIMEOUT") or 10)
    with smtplib.SMTP(str(settings.get("SMTP_HOST") or "localhost"),
                      int(settings.get("SMTP_PORT") or 25), timeout=timeout) as smtp:
        if settings.get("SMTP_STARTTLS"):
            smtp.starttls(context=ssl.create_default_context())
        if settings.get("SMTP_USER"):
            smtp.login(str(settings["SMTP_USER"]), str(settings.get("SMTP_PASSWORD") or ""))
        smtp.send_message(message)


@on("user.password-reset", source="keygen", enabled=mail_enabled)
def mail_password_reset_token(event: Event, settings: Mapping[str, Any], **extra: Any) -> None:
    """Mail the reset token and link to the user of a Keygen ``user.password-reset`` event."""
    message = build_message(event, settings)
    send_message(message, settings)
    domain = str(message["To"]).rpartition("@")[2].rstrip(">")
    logger.info("mailed the password-reset link of event %s to a user at %s", event.id, domain)
