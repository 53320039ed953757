"""The built-in password-reset mailer against a real SMTP server (aiosmtpd on localhost)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from receiver.config import load_settings
from receiver.errors import ConfigError
from receiver.events import Event
from receiver.handlers import plugins, signals
from receiver.handlers.builtin import password_reset

HANDLER = "receiver.builtin.password_reset.mail_password_reset_token"
TOKEN = "5b0d3c9a7e1f4a2c8d6b0e9f1a3c5e7d9b2d4f6a8c0e2a4c6e8a0c2e4a6c8e0av1"
EMAIL = "ada.lovelace@example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps every envelope (and whether it came over TLS); accepts AUTH
    for mailer / s3cret."""

    envelopes: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.encrypted.append(session.ssl is not None  # after STARTTLS
                              or server.transport.get_extra_info("ssl_object") is not None)
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and \
                (auth_data.login, auth_data.password) == (b"mailer", b"s3cret"):
            self.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(envelope.original_content, policy=policy.default)
                for envelope in self.envelopes]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                            authenticator=mailbox.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Mailbox, int]) -> Mailbox:
    smtp_server[0].envelopes.clear()
    smtp_server[0].logins.clear()
    return smtp_server[0]


@pytest.fixture
def settings(smtp_server: tuple[Mailbox, int]) -> dict[str, Any]:
    return load_settings({
        "MAIL_RESET_ENABLED": True,
        "MAIL_RESET_URL": "https://portal.example.com/reset-password?token={token}",
        "MAIL_FROM": "Licensing <licensing@example.com>",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp_server[1],
        "SMTP_TIMEOUT": 5,
    }, environ={})


@pytest.fixture(autouse=True)
def builtin_loaded() -> Iterator[None]:
    """The built-in, loaded as the app loads it: through load_plugins."""
    signals.reset_registry()
    plugins.reset_plugins()
    plugins.load_plugins(load_settings({}, environ={}))
    yield
    signals.reset_registry()
    plugins.reset_plugins()


def keygen_delivery_body(token: str | None = TOKEN, email: str | None = EMAIL) -> dict[str, Any]:
    """A Keygen webhook-event as it arrives: the payload is a JSON string."""
    attributes: dict[str, Any] = {
        "fullName": "Ada Lovelace", "firstName": "Ada", "lastName": "Lovelace",
        "status": "ACTIVE", "role": "user", "metadata": {},
        "created": "2024-03-01T09:12:44.120Z", "updated": "2024-05-02T16:30:00.004Z",
    }
    if email is not None:
        attributes["email"] = email
    user = {
        "id": "9f4b37e2-2c1a-4b7e-a0e1-3f1d2c5b6a70",
        "type": "users",
        "attributes": attributes,
        "relationships": {
            "account": {"links": {"related": "/v1/accounts/1fddcec8-8dd3-4d8d-9b16-215cac0f9b52"},
                        "data": {"type": "accounts",
                                 "id": "1fddcec8-8dd3-4d8d-9b16-215cac0f9b52"}},
            "licenses": {"links": {"related": "/v1/accounts/1fddcec8-8dd3-4d8d-9b16-215cac0f9b52"
                                              "/users/9f4b37e2-2c1a-4b7e-a0e1-3f1d2c5b6a70"
                                              "/licenses"}},
        },
        "links": {"self": "/v1/accounts/1fddcec8-8dd3-4d8d-9b16-215cac0f9b52/users/"
                          "9f4b37e2-2c1a-4b7e-a0e1-3f1d2c5b6a70"},
    }
    payload: dict[str, Any] = {"data": user}
    if token is not None:
        payload["meta"] = {"passwordResetToken": token}
    return {
        "data": {
            "id": "5c8d2a10-71b2-4a7e-9b0e-6d2f3e4a5b6c",
            "type": "webhook-events",
            "attributes": {
                "endpoint": "https://hooks.example.com/hooks/keygen",
                "payload": json.dumps(payload),
                "event": "user.password-reset",
                "status": "DELIVERING",
                "lastResponseCode": None,
                "lastResponseBody": None,
                "created": "2024-05-02T16:30:00.118Z",
                "updated": "2024-05-02T16:30:00.118Z",
            },
            "relationships": {"account": {"data": {
                "type": "accounts", "id": "1fddcec8-8dd3-4d8d-9b16-215cac0f9b52"}}},
        },
        "meta": {"idempotencyToken": "e3b0c44298fc1c149afbf4c8996fb924"
                                     "27ae41e4649b934ca495991b7852b855"},
    }


def reset_event(source: str = "keygen", **body: Any) -> Event:
    delivered = keygen_delivery_body(**body)
    attributes = delivered["data"]["attributes"]
    payload = json.loads(attributes["payload"])
    return Event(
        id=42, source=source, event_type=attributes["event"], vendor_event=attributes["event"],
        external_id=delivered["meta"]["idempotencyToken"], occurred_at=attributes["created"],
        received_at="2024-05-02T16:30:00.250Z",
        account=delivered["data"]["relationships"]["account"]["data"]["id"], actor=None,
        subject_type="user", subject_id=payload["data"]["id"], endpoint="keygen",
        signature_status="valid", data=payload,
    )


def dispatch(event: Event, settings: dict[str, Any]) -> list[signals.Run]:
    return signals.run_handlers(event, signals.handlers_for(event, settings), settings=settings)


def test_builtin_password_reset_mail_delivered(mailbox: Mailbox, settings: dict[str, Any]) -> None:
    [run] = dispatch(reset_event(), settings)

    assert (run.handler, run.status, run.error) == (HANDLER, "ok", None)
    [envelope] = mailbox.envelopes
    assert envelope.rcpt_tos == [EMAIL]
    assert envelope.mail_from == "licensing@example.com"
    [message] = mailbox.messages()
    assert message["To"] == f"Ada Lovelace <{EMAIL}>"
    assert message["From"] == "Licensing <licensing@example.com>"
    assert message["Subject"] == "Reset your password"
    assert message["Message-ID"] and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    body = plain_part(message)
    assert f"https://portal.example.com/reset-password?token={TOKEN}" in body
    assert TOKEN in body.replace(f"token={TOKEN}", "")  # the bare token too, not only the link
    assert "Hello Ada Lovelace," in body
    page = html_part(message)
    assert f'<a href="https://portal.example.com/reset-password?token={TOKEN}"' in page
    assert f"<code>{TOKEN}</code>" in page and "<p>Hello Ada Lovelace,</p>" in page


def plain_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, "no text/plain alternative"
    return str(part.get_content()).replace("\r\n", "\n")


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None, "no text/html alternative"
    return str(part.get_content())


def test_builtin_password_reset_token_is_url_quoted(
    mailbox: Mailbox, settings: dict[str, Any]
) -> None:
    [run] = dispatch(reset_event(token="a+b/c=d&e f"), settings)
    assert run.status == "ok"
    body = plain_part(mailbox.messages()[0])
    assert "reset-password?token=a%2Bb%2Fc%3Dd%26e%20f\n" in body
    assert "    a+b/c=d&e f\n" in body
    page = html_part(mailbox.messages()[0])
    assert 'href="https://portal.example.com/reset-password?token=a%2Bb%2Fc%3Dd%26e%20f"' in page
    assert "<code>a+b/c=d&amp;e f</code>" in page  # HTML-escaped, never raw


def test_builtin_password_reset_logs_in_when_user_set(
    mailbox: Mailbox, settings: dict[str, Any]
) -> None:
    [run] = dispatch(reset_event(), {**settings, "SMTP_USER": "mailer",
                                     "SMTP_PASSWORD": "s3cret"})
    assert run.status == "ok"
    assert mailbox.logins == ["mailer"] and len(mailbox.envelopes) == 1


def test_builtin_password_reset_wrong_smtp_password_recorded(
    mailbox: Mailbox, settings: dict[str, Any]
) -> None:
    [run] = dispatch(reset_event(), {**settings, "SMTP_USER": "mailer",
                                     "SMTP_PASSWORD": "wrong"})
    assert run.status == "error"
    assert run.error is not None and run.error.startswith("SMTPAuthenticationError: ")
    assert mailbox.envelopes == []


def test_builtin_password_reset_smtp_down_recorded_as_error(settings: dict[str, Any]) -> None:
    ran: list[str] = []
    signals.on("user.*", name="after-mail")(lambda event, **extra: ran.append("after"))

    runs = dispatch(reset_event(), {**settings, "SMTP_PORT": free_port(), "SMTP_TIMEOUT": 2})

    assert [(run.handler, run.status) for run in runs] == [(HANDLER, "error"),
                                                          ("after-mail", "ok")]
    assert runs[0].error is not None
    assert runs[0].error.startswith("ConnectionRefusedError: ")
    assert runs[0].traceback is not None and "smtplib" in runs[0].traceback
    assert ran == ["after"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": None}, "no user address at data.attributes.email"),
        ({"token": None}, "no token at meta.passwordResetToken"),
        ({"email": "ada@example.com\r\nBcc: everyone@example.com"}, "is not a mail address"),
    ],
)
def test_builtin_password_reset_bad_payload_recorded(
    mailbox: Mailbox, settings: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    [run] = dispatch(reset_event(**body), settings)
    assert run.status == "error"
    assert run.error is not None
    # Waiting would not mend the event: the handler gives up instead of being retried.
    assert run.error.startswith("GiveUp: user.password-reset event 42")
    assert run.give_up is not None and message in run.give_up
    assert message in run.error
    assert mailbox.envelopes == []


def test_builtin_password_reset_not_selected_when_disabled(settings: dict[str, Any]) -> None:
    event = reset_event()
    assert [h.name for h in signals.handlers_for(event, settings)] == [HANDLER]
    assert signals.handlers_for(event, {**settings, "MAIL_RESET_ENABLED": False}) == []
    assert signals.handlers_for(event, load_settings({}, environ={})) == []  # off by default
    assert signals.handlers_for(
        event, {**settings, "DISABLED_PLUGINS": ["password-reset-mail"]}) == []


def test_builtin_password_reset_only_for_keygen(settings: dict[str, Any]) -> None:
    assert signals.handlers_for(reset_event(source="licensespring"), settings) == []


def test_builtin_password_reset_link_helper() -> None:
    assert password_reset.reset_link("https://x.test/r/{token}?a=1", "t/1") == \
        "https://x.test/r/t%2F1?a=1"
    assert password_reset.reset_link(
        "https://x.test/{account_id}/{user_id}/{token}?e={email}&q={{x}}", "t", user_id="u 1",
        account_id="a", email="ada+1@example.com") == \
        "https://x.test/a/u%201/t?e=ada%2B1%40example.com&q={x}"
    with pytest.raises(ValueError, match=r"uses \{user_id\}"):
        password_reset.reset_link("https://x.test/{user_id}/{token}", "t")


USER_ID = "9f4b37e2-2c1a-4b7e-a0e1-3f1d2c5b6a70"
ACCOUNT_ID = "1fddcec8-8dd3-4d8d-9b16-215cac0f9b52"
RESET_URL = "https://portal.example.com/reset/{user_id}/{token}?account={account_id}&to={email}"
FILLED = (f"https://portal.example.com/reset/{USER_ID}/{TOKEN}?account={ACCOUNT_ID}"
          "&to=ada.lovelace%40example.com")


def test_builtin_password_reset_url_with_user_and_account(
    mailbox: Mailbox, settings: dict[str, Any]
) -> None:
    """The link Keygen's reset fulfilment needs: POST .../users/<user id>/actions/
    reset-password with the token, so the page must know the user id."""
    [run] = dispatch(reset_event(), {**settings, "MAIL_RESET_URL": RESET_URL})
    assert run.status == "ok", run.error
    [message] = mailbox.messages()
    assert f"    {FILLED}\n" in plain_part(message)
    assert f'href="{FILLED.replace("&", "&amp;")}"' in html_part(message)


@pytest.mark.parametrize("template", [
    "https://x.test/reset/{user}/{token}", "https://x.test/{}", "https://x.test/{token!r}",
    "https://x.test/{token", "https://x.test/{data.id}",
])
def test_builtin_password_reset_unknown_placeholder_refused_at_start(
        make_app: Any, template: str) -> None:
    with pytest.raises(ConfigError, match=r"^MAIL_RESET_URL: "):
        make_app(MAIL_RESET_URL=template)
    with pytest.raises(ConfigError, match=r"^RECEIVER_MAIL_RESET_URL: .*\{user_id\}"):
        load_settings({}, environ={"RECEIVER_MAIL_RESET_URL": template})


# -- TLS: STARTTLS and implicit TLS against aiosmtpd, with a throwaway certificate ----------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert PEM path, key PEM path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver test SMTP")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def server_context(certificate: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def start_smtp(certificate: tuple[str, str]) -> Iterator[Callable[[str], tuple[Mailbox, int]]]:
    """aiosmtpd in one of three modes: ``plain``; ``starttls`` (STARTTLS required before
    anything else); ``implicit`` (TLS from the first byte, as on port 465)."""
    controllers: list[Controller] = []

    def start(mode: str) -> tuple[Mailbox, int]:
        mailbox = Mailbox()
        port = free_port()
        tls: dict[str, Any] = {
            "plain": {"auth_require_tls": False},
            "starttls": {"tls_context": server_context(certificate), "require_starttls": True},
            # aiosmtpd offers AUTH only after STARTTLS unless told that TLS is there already.
            "implicit": {"ssl_context": server_context(certificate), "auth_require_tls": False},
        }[mode]
        controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                                authenticator=mailbox.authenticate, **tls)
        controller.start()
        controllers.append(controller)
        return mailbox, port

    yield start
    for controller in controllers:
        controller.stop()


def tls_settings(mode: str, port: int, ca_file: str | None) -> dict[str, Any]:
    return load_settings({
        "MAIL_RESET_ENABLED": True, "MAIL_RESET_URL": RESET_URL, "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port, "SMTP_TIMEOUT": 5, "SMTP_USER": "mailer", "SMTP_PASSWORD": "s3cret",
        "SMTP_STARTTLS": mode == "starttls", "SMTP_SSL": mode == "implicit",
        "SMTP_CA_FILE": ca_file}, environ={})


@pytest.mark.parametrize("mode", ["plain", "starttls", "implicit"])
def test_builtin_password_reset_link_over_plain_starttls_and_implicit_tls(
        start_smtp: Callable[[str], tuple[Mailbox, int]], certificate: tuple[str, str],
        mode: str) -> None:
    mailbox, port = start_smtp(mode)
    [run] = dispatch(reset_event(), tls_settings(mode, port, certificate[0]))
    assert run.status == "ok", run.error
    assert mailbox.logins == ["mailer"]
    assert mailbox.encrypted == [mode != "plain"]
    [message] = mailbox.messages()
    assert f"    {FILLED}\n" in plain_part(message)
    assert f'href="{FILLED.replace("&", "&amp;")}"' in html_part(message)
    assert [envelope.rcpt_tos for envelope in mailbox.envelopes] == [[EMAIL]]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_builtin_password_reset_tls_checks_the_certificate(
        start_smtp: Callable[[str], tuple[Mailbox, int]], mode: str) -> None:
    mailbox, port = start_smtp(mode)
    [run] = dispatch(reset_event(), tls_settings(mode, port, None))  # the system's CAs only
    assert run.status == "error"
    assert run.error is not None and run.error.startswith("SSLCertVerificationError: ")
    assert mailbox.envelopes == []


def test_smtp_settings_implicit_tls_port_and_conflicts(tmp_path: Any) -> None:
    assert load_settings({}, environ={})["SMTP_PORT"] == 25
    assert load_settings({"SMTP_SSL": True}, environ={})["SMTP_PORT"] == 465
    assert load_settings({"SMTP_SSL": True, "SMTP_PORT": 2465}, environ={})["SMTP_PORT"] == 2465
    with pytest.raises(ConfigError, match=r"^RECEIVER_SMTP_SSL: implicit TLS and SMTP_STARTTLS"):
        load_settings({}, environ={"RECEIVER_SMTP_SSL": "true", "RECEIVER_SMTP_STARTTLS": "1"})
    with pytest.raises(ConfigError, match=r"^RECEIVER_SMTP_CA_FILE: no such file"):
        load_settings({}, environ={"RECEIVER_SMTP_CA_FILE": str(tmp_path / "missing.pem")})
