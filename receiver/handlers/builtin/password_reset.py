"""Built-in plugin ``password-reset-mail``: mail Keygen password-reset tokens to the user.

Keygen sends ``user.password-reset`` whenever a user asks to reset a password; the parsed
payload holds the user at ``data`` and the token at ``meta.passwordResetToken``. Keygen
fulfils the reset with ``POST /v1/accounts/<account>/users/<user id>/actions/reset-password``
and the token, so the page the link opens needs the user id as well: ``MAIL_RESET_URL``
takes ``{token}``, ``{user_id}``, ``{account_id}`` and ``{email}`` (each URL-quoted; any other
placeholder is refused at start).

With ``MAIL_RESET_ENABLED`` this handler mails the user a message with the link and the token,
as plain text and HTML alternatives, from ``MAIL_FROM``, through ``SMTP_HOST``/``SMTP_PORT``:
plain SMTP, STARTTLS (``SMTP_STARTTLS``) or implicit TLS (``SMTP_SSL``, port 465), certificates
checked against the system's authorities or ``SMTP_CA_FILE``; ``SMTP_USER``/``SMTP_PASSWORD``
log in, ``SMTP_TIMEOUT`` bounds each step. A payload without an address or token raises
``ValueError``; SMTP errors propagate. Either way the run is recorded as an error and can be
replayed.
"""

from __future__ import annotations

import html
import logging
import re
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Any
from urllib.parse import quote

from ...config import placeholders
from ...events import Event
from ..retries import GiveUp
from ..signals import on

logger = logging.getLogger(__name__)

SUBJECT = "Reset your password"

_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")

TEXT = """\
Hello {greeting},

Someone (hopefully you) asked to reset the password of the account {email}.
To choose a new password, open this link:

    {link}

If the link does not open, use this reset token:

    {token}

If you did not ask for a password reset, ignore this message; your password stays as it is.
"""

HTML = """\
<!doctype html>
<html lang="en">
<body style="font-family: sans-serif; line-height: 1.5">
<p>Hello {greeting},</p>
<p>Someone (hopefully you) asked to reset the password of the account {email}.</p>
<p><a href="{link}" style="font-weight: bold">Choose a new password</a></p>
<p>If the button does not work, open this link:<br><a href="{link}">{link}</a></p>
<p>Or use this reset token: <code>{token}</code></p>
<p style="color: #555">If you did not ask for a password reset, ignore this message; your
password stays as it is.</p>
</body>
</html>
"""


def mail_enabled(settings: Mapping[str, Any]) -> bool:
    return bool(settings.get("MAIL_RESET_ENABLED", False))


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def reset_link(template: str, token: str, *, user_id: str | None = None,
               account_id: str | None = None, email: str | None = None) -> str:
    """``MAIL_RESET_URL`` with its placeholders replaced by the URL-quoted values;
    ``ValueError`` when the template needs a value the event does not have."""
    values = {"token": token, "user_id": user_id, "account_id": account_id, "email": email}
    for name in placeholders(template):
        if values.get(name) is None:
            raise ValueError(f"MAIL_RESET_URL uses {{{name}}}, which this event does not have")
    return template.format(**{name: quote(value, safe="") for name, value in values.items()
                              if value is not None})


def _text(value: Any) -> str | None:
    """An id as text (Keygen ids are strings; anything else scalar is turned into one)."""
    if value is None or isinstance(value, (dict, list, bool)) or value == "":
        return None
    return str(value)


def build_message(event: Event, settings: Mapping[str, Any]) -> EmailMessage:
    """The mail for a Keygen ``user.password-reset`` event; ``ValueError`` if it lacks the
    user's address or the token, or a value the reset URL needs."""
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
    try:
        link = reset_link(
            str(settings.get("MAIL_RESET_URL") or "{token}"), token,
            user_id=_text(_dig(event.data, "data", "id")),
            account_id=_text(_dig(event.data, "data", "relationships", "account", "data", "id")
                             or event.account),
            email=email)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None

    sender = str(settings.get("MAIL_FROM") or "receiver@localhost")
    message = EmailMessage()
    message["Subject"] = SUBJECT
    message["From"] = sender
    message["To"] = formataddr((name, email)) if name else email
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    message.set_content(TEXT.format(greeting=name or email, email=email, link=link,
                                    token=token))
    message.add_alternative(HTML.format(**{key: html.escape(value) for key, value in {
        "greeting": name or email, "email": email, "link": link, "token": token}.items()}),
        subtype="html")
    return message


def tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """Certificates and host names checked, against ``SMTP_CA_FILE`` when it is set."""
    return ssl.create_default_context(cafile=settings.get("SMTP_CA_FILE") or None)


def send_message(message: EmailMessage, settings: Mapping[str, Any]) -> None:
    """Send through the configured SMTP server; any SMTP, TLS or socket error propagates."""
    timeout = float(settings.get("SMTP_TIMEOUT") or 10)
    host = str(settings.get("SMTP_HOST") or "localhost")
    implicit_tls = bool(settings.get("SMTP_SSL"))
    port = int(settings.get("SMTP_PORT") or (465 if implicit_tls else 25))
    smtp = (smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls_context(settings))
            if implicit_tls else smtplib.SMTP(host, port, timeout=timeout))
    with smtp:
        if settings.get("SMTP_STARTTLS") and not implicit_tls:
            smtp.starttls(context=tls_context(settings))
        if settings.get("SMTP_USER"):
            smtp.login(str(settings["SMTP_USER"]), str(settings.get("SMTP_PASSWORD") or ""))
        smtp.send_message(message)


#: The name its runs are recorded under, kept from before the module moved into
#: ``receiver.handlers``: histories and replays by name still find it.
HANDLER_NAME = "receiver.builtin.password_reset.mail_password_reset_token"


@on("user.password-reset", source="keygen", enabled=mail_enabled, name=HANDLER_NAME)
def mail_password_reset_token(event: Event, settings: Mapping[str, Any], **extra: Any) -> None:
    """Mail the reset link and token to the user of a Keygen ``user.password-reset`` event.

    A server that cannot be reached or answers 4xx (try later) fails the run, so it is tried
    again with backoff; a 5xx refusal of the recipient, the sender or the message cannot get
    better by waiting and gives up, as does an event that holds no address or token.
    """
    try:
        message = build_message(event, settings)
    except ValueError as error:
        raise GiveUp(str(error)) from None
    try:
        send_message(message, settings)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused,
            smtplib.SMTPDataError) as error:
        if _permanent(error):
            raise GiveUp(f"{type(error).__name__}: {error}") from error
        raise
    domain = str(message["To"]).rpartition("@")[2].rstrip(">")
    logger.info("mailed the password-reset link of event %s to a user at %s", event.id, domain)


def _permanent(error: smtplib.SMTPException) -> bool:
    """A 5xx answer (RFC 5321: permanent); for refused recipients, every one of them."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(
            code >= 500 for code, _ in error.recipients.values())
    return getattr(error, "smtp_code", 0) >= 500
