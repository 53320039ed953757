"""Alerts: one when a problem opens and one when it resolves, to ``RECEIVER_ALERT_URL`` (a
POST of ``{"text", "state", "problem"}``, which Slack- and Mattermost-style incoming webhooks
take as it is) and to ``RECEIVER_ALERT_MAIL_TO`` through the SMTP settings.

The store's outbox holds them. ``AlertSender.send_due`` claims the due ones with a lease,
sends each and marks it sent, or puts it back with a growing wait: a target that is down
delays an alert, it does not lose it. The target is a URL the operator chose, so no redirect
is followed, the timeout is short, and what it answers is kept only as a short line of text.
"""

from __future__ import annotations

import html
import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from ..store import Store

log = logging.getLogger(__name__)

#: Seconds an alert target has to answer.
ALERT_TIMEOUT = 5.0
#: First wait after a failed send, doubled per failure up to the cap (seconds).
ALERT_BACKOFF = (5.0, 600.0)
LEASE_SECONDS = 60.0

URL = "url"
MAIL = "mail"


def channels(settings: Mapping[str, Any]) -> list[str]:
    """Where alerts go with these settings."""
    found = []
    if settings.get("ALERT_URL"):
        found.append(URL)
    if settings.get("ALERT_MAIL_TO"):
        found.append(MAIL)
    return found


def absolute(link: str, settings: Mapping[str, Any]) -> str:
    """A problem's link under ``RECEIVER_PUBLIC_URL``; the path when it is unset."""
    base = str(settings.get("PUBLIC_URL") or "").rstrip("/")
    return base + link if base else link


def payload(problem: Mapping[str, Any], state: str, settings: Mapping[str, Any]
            ) -> dict[str, Any]:
    """The JSON an alert posts: one line for a chat, the state, the problem record."""
    record = dict(problem)
    record["link"] = absolute(str(problem["link"]), settings)
    receiver = str(settings.get("PUBLIC_URL") or "").rstrip("/") or "receiver"
    what = "resolved" if state == "resolved" else "problem"
    times = f" ({record['count']} times)" if int(record.get("count") or 1) > 1 else ""
    text = f"[{receiver}] {what}: {record['summary']}{times}. {record['link']}"
    return {"text": text, "state": state, "problem": record}


def post_json(url: str, body: Mapping[str, Any]) -> None:
    """POST ``body`` to the alert URL; any answer but 2xx, a redirect included, raises."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "license-webhook-receiver"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=ALERT_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        raise OSError(f"the alert URL answered {error.code}") from None
    if not 200 <= status < 300:
        raise OSError(f"the alert URL answered {status}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx surfaces as an HTTPError: a target that moved is a failure


def mail(body: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """The alert as a mail (plain text and HTML) to ``ALERT_MAIL_TO``."""
    problem = body["problem"]
    message = EmailMessage()
    message["Subject"] = body["text"][:200]
    message["From"] = str(settings.get("MAIL_FROM") or "receiver@localhost")
    message["To"] = ", ".join(settings.get("ALERT_MAIL_TO") or [])
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid()
    lines = [body["text"], ""] + [f"{key}: {value}" for key, value in problem.items()]
    message.set_content("\n".join(lines) + "\n")
    rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
                   for key, value in problem.items())
    link = html.escape(str(problem["link"]))
    message.add_alternative(
        f"<!doctype html><html><body><p>{html.escape(body['text'])}</p>"
        f"<p><a href=\"{link}\">{link}</a></p><table>{rows}</table></body></html>",
        subtype="html")
    timeout = float(settings.get("SMTP_TIMEOUT") or 10)
    host = str(settings.get("SMTP_HOST") or "localhost")
    implicit_tls = bool(settings.get("SMTP_SSL"))
    port = int(settings.get("SMTP_PORT") or (465 if implicit_tls else 25))
    context = ssl.create_default_context(cafile=settings.get("SMTP_CA_FILE") or None)
    smtp = (smtplib.SMTP_SSL(host, port, timeout=timeout, context=context) if implicit_tls
            else smtplib.SMTP(host, port, timeout=timeout))
    with smtp:
        if settings.get("SMTP_STARTTLS") and not implicit_tls:
            smtp.starttls(context=context)
        if settings.get("SMTP_USER"):
            smtp.login(str(settings["SMTP_USER"]), str(settings.get("SMTP_PASSWORD") or ""))
        smtp.send_message(message)


def deliver(channel: str, body: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Send one alert through one channel; raises what the target refused with."""
    if channel == URL:
        post_json(str(settings["ALERT_URL"]), body)
    elif channel == MAIL:
        mail(body, settings)
    else:
        raise ValueError(f"unknown alert channel {channel!r}")


def wait_after(failures: int) -> float:
    first, cap = ALERT_BACKOFF
    return float(min(cap, first * 2 ** min(failures - 1, 20)))


class AlertSender:
    """Sends the outbox's due alerts; run by the upkeep thread of each process."""

    def __init__(self, store: Store, settings: Mapping[str, Any],
                 owner: Callable[[], str]) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner  # the lease name, asked anew (it changes in a forked worker)

    def send_due(self, limit: int = 10) -> int:
        """Claim, send and settle the due alerts; how many went out."""
        sent = 0
        for alert in self.store.claim_alerts(self.owner(), lease_seconds=LEASE_SECONDS,
                                             limit=limit):
            body = payload(alert["problem"], alert["state"], self.settings)
            try:
                deliver(alert["channel"], body, self.settings)
            except (OSError, smtplib.SMTPException, ValueError) as error:
                failures = int(alert["attempts"]) + 1
                reason = f"{type(error).__name__}: {error}"
                log.warning("alert %s (%s) not sent, attempt %s: %s", alert["id"],
                            alert["channel"], failures, reason)
                self.store.alert_failed(alert["id"], reason, wait_after(failures))
                continue
            self.store.alert_sent(alert["id"])
            sent += 1
        return sent
