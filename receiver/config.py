"""Settings: a table of name, type, default and help; read from defaults, then the TOML file
named by ``RECEIVER_CONFIG``, then ``RECEIVER_*`` environment variables, then the mapping
passed to ``create_app``. Every value is parsed by its declared type and checked at start;
a bad one raises ``ConfigError`` naming the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

SOURCES = ("keygen", "licensespring", "fno", "zentitle", "standard", "generic")

MiB = 1024 * 1024


def parse_str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return str(value)


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    text = str(value).strip().replace("_", "")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": MiB, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_count(value: Any) -> int:
    number = parse_int(value)
    if number < 0:
        raise ValueError(f"expected 0 or more, got {value!r}")
    return number


def parse_positive(value: Any) -> int:
    number = parse_int(value)
    if number < 1:
        raise ValueError(f"expected 1 or more, got {value!r}")
    return number


def parse_size(value: Any) -> int:
    """Bytes: ``5242880``, ``5MiB``, ``512kb``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"expected a size in bytes such as 5242880 or 5MiB, got {value!r}")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size <= 0:
        raise ValueError("must be greater than 0")
    return size


_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*")


def parse_duration(value: Any) -> float:
    """Seconds: a number (``0.5``, ``30``) or one with a unit: ``500ms``, ``30s``, ``5m``,
    ``2h``, ``1d``. Zero is allowed (no wait); a negative or unitless word is not."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        if not match:
            raise ValueError("expected a duration such as 30s, 500ms, 5m, 2h, 1d or a number "
                             f"of seconds, got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or ""]
    if not 0 <= seconds < float("inf") or seconds != seconds:
        raise ValueError(f"must be 0 or more seconds, got {value!r}")
    return seconds


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [parse_str(item).strip() for item in value if str(item).strip()]
    return [item.strip() for item in parse_str(value).split(",") if item.strip()]


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = parse_str(value).strip().lower()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return text

    return parse


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return parse(value)

    return parse_optional


def existing_file(value: Any) -> str:
    path = parse_str(value)
    if not os.path.isfile(path):
        raise ValueError(f"no such file {path!r}")
    return path


#: What ``MAIL_RESET_URL`` may hold, each replaced by the URL-quoted value.
RESET_URL_PLACEHOLDERS = ("token", "user_id", "account_id", "email")


def placeholders(template: str) -> list[str]:
    """The ``{name}`` fields of a ``str.format`` template (``{{`` is a literal brace), as
    written (``{token!r}`` as ``token!r``); raises ``ValueError`` for unbalanced braces."""
    return [field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            for _, field, spec, conversion in string.Formatter().parse(template)
            if field is not None]


def url_template(*known: str) -> Callable[[Any], str]:
    """A URL with ``{name}`` placeholders, each one of ``known``."""
    allowed = ", ".join(f"{{{name}}}" for name in known)

    def parse(value: Any) -> str:
        template = parse_str(value)
        try:
            fields = placeholders(template)
        except ValueError as error:
            raise ValueError(f"{error} in {template!r}; placeholders are {allowed}, and a "
                             "literal brace is written twice ({{{{)") from None
        for name in fields:
            if name not in known:
                shown = f"{{{name}}}" if name else "{}"
                raise ValueError(f"unknown placeholder {shown} in {template!r}; use {allowed}")
        return template

    return parse


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = ("postgresql", "postgres")


def backend_of(database: str) -> str:
    """``sqlite`` for a file path, ``postgres`` for a PostgreSQL URL; a URL with any other
    scheme is refused with a sentence."""
    match = _SCHEME.match(database)
    if match is None:
        return "sqlite"
    scheme = match.group(1).lower()
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    raise ConfigError(
        f"DATABASE: {scheme}:// URLs are not supported; give a file path for SQLite or a "
        "postgresql:// URL for PostgreSQL")


def parse_database(value: Any) -> str:
    """A file path (SQLite) or a ``postgresql://`` URL; any other ``scheme://`` is refused."""
    text = parse_str(value).strip()
    if not text:
        raise ValueError("expected a file path or a postgresql:// URL, got an empty value")
    try:
        backend_of(text)
    except ConfigError as error:
        raise ValueError(str(error).removeprefix("DATABASE: ")) from None
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str


SETTINGS: list[Setting] = [
    Setting("DATABASE", parse_database, "receiver.db",
            "SQLite file that holds the history, or a postgresql:// URL (PostgreSQL: several "
            "receivers and workers on one database). DATABASE_URL is read when this is unset."),
    Setting("SECRET_KEY", optional(parse_str), None,
            "Signs session cookies and CSRF tokens; made and kept beside the database when unset."),
    Setting("MAX_BODY", parse_size, 5 * MiB, "Largest accepted body in bytes (413 above)."),
    Setting("DISPATCH", choice("background", "sync", "worker"), "background",
            "Run handlers after the response in a thread of this process (background), before "
            "answering (sync), or only in separate `receiver worker` processes (worker)."),
    Setting("INSPECTOR_TOKEN", optional(parse_str), None,
            "When set, pages and the JSON API need this Bearer token or a /login session."),
    Setting("TOKEN_BRAKE", parse_count, 5,
            "Wrong inspector tokens from one client address within a minute after which its "
            "tokens are answered 429 for a minute (per process); 0: no brake."),
    Setting("REDELIVER_ALLOW", parse_list, ["localhost", "127.0.0.1", "::1"],
            "Host names that redeliver and forward may send to (comma-separated)."),
    Setting("TRUSTED_PROXIES", parse_count, 0,
            "How many reverse proxies stand in front (nginx, a load balancer); their "
            "X-Forwarded-For and X-Forwarded-Proto then give the sender's address and the "
            "scheme. 0 trusts no such header."),
    Setting("STRICT_ENDPOINTS", parse_bool, False,
            "Answer 404 for /hooks/<name> when <name> is not configured."),
    Setting("RETENTION_DAYS", optional(parse_int), None,
            "Delete deliveries, events and runs older than this many days."),
    Setting("BUSY_TIMEOUT", parse_int, 5000,
            "Milliseconds a write waits for the database lock before answering 503."),
    Setting("MAX_DATABASE_SIZE", optional(parse_size), None,
            "Cap on the database file (bytes, 1GiB...); beyond it ingest answers 503."),
    Setting("READ_TIMEOUT", parse_positive, 10,
            "Seconds a client may send nothing while its request is read before the "
            "connection is dropped (receiver serve's workers; a body cut so is a 408)."),
    Setting("POOL_SIZE", parse_positive, 4,
            "PostgreSQL: connections each process keeps at most (requests, dispatch, upkeep "
            "share them)."),
    Setting("PREPARED_STATEMENTS", parse_bool, True,
            "PostgreSQL: prepare frequent statements on the server; turn off behind a "
            "PgBouncer older than 1.21 in transaction mode."),
    Setting("DISPATCH_LEASE", parse_int, 45,
            "Seconds a worker holds an event it dispatches; a dead worker's events are "
            "taken over after this."),
    Setting("HANDLER_RETRIES", parse_count, 10,
            "Attempts after the first that a failed handler gets by default (0: never "
            "retried); @on(..., retries=N) sets it per handler."),
    Setting("HANDLER_BACKOFF", parse_duration, 30.0,
            "Wait before a handler's second attempt (30s, 500ms, 5m...); doubles per "
            "attempt, with random jitter."),
    Setting("HANDLER_BACKOFF_MAX", parse_duration, 7200.0,
            "Longest wait between two attempts of a handler (2h)."),
    Setting("ALERT_URL", optional(parse_str), None,
            "URL that gets a JSON POST when a problem opens or resolves (a Slack- or "
            "Mattermost-style incoming webhook takes it as it is)."),
    Setting("ALERT_MAIL_TO", parse_list, [],
            "Addresses mailed when a problem opens or resolves (comma-separated; the SMTP "
            "settings)."),
    Setting("ALERT_BACKLOG", parse_duration, 300.0,
            "How long events may wait for their handlers before dispatch_backlog opens (5m)."),
    Setting("PUBLIC_URL", optional(parse_str), None,
            "The receiver's public base URL (https://hooks.example.com): alerts link to "
            "it; unset, they carry paths."),
    Setting("RECONCILE_EVERY", optional(parse_duration), None,
            "Reconcile every endpoint with an api_token against the vendor's event log this "
            "often (15m); unset: only `receiver reconcile` does."),
    Setting("RECONCILE_WINDOW", parse_duration, 86400.0,
            "How far back the periodic reconcile looks (24h)."),
    Setting("METRICS_OPEN", parse_bool, False,
            "Serve GET /-/metrics (Prometheus) without the inspector token, for a scraper "
            "on a private network."),
    Setting("MASK_NAMES", parse_list, [],
            "Further header, query-parameter and field names whose values pages, the API, "
            "the CLI and exports mask (comma-separated, compared whole, in any case)."),
    Setting("DISABLED_PLUGINS", parse_list, [],
            "Entry-point names in receiver.handlers not to load (comma-separated)."),
    Setting("MAIL_RESET_ENABLED", parse_bool, False,
            "Mail Keygen password-reset tokens to the user (built-in handler)."),
    Setting("MAIL_RESET_URL", url_template(*RESET_URL_PLACEHOLDERS),
            "https://app.example.com/reset?token={token}",
            "Reset link put in the mail; {token}, {user_id}, {account_id} and {email} are "
            "replaced (URL-quoted)."),
    Setting("MAIL_FROM", parse_str, "receiver@localhost", "Sender address of mails."),
    Setting("SMTP_HOST", parse_str, "localhost", "SMTP server for mail handlers."),
    Setting("SMTP_PORT", parse_int, 25, "SMTP port (465 when SMTP_SSL is on and no port is "
            "set)."),
    Setting("SMTP_USER", optional(parse_str), None, "SMTP login user (none: no login)."),
    Setting("SMTP_PASSWORD", optional(parse_str), None, "SMTP login password."),
    Setting("SMTP_STARTTLS", parse_bool, False, "Use STARTTLS before logging in."),
    Setting("SMTP_SSL", parse_bool, False,
            "Connect with implicit TLS (SMTPS, port 465) instead of plain SMTP or STARTTLS."),
    Setting("SMTP_CA_FILE", optional(existing_file), None,
            "PEM file of the certificate authorities to trust for the SMTP server (a private "
            "CA or a self-signed server); default: the system's."),
    Setting("SMTP_TIMEOUT", parse_int, 10, "Seconds before an SMTP connection gives up."),
]


@dataclass(frozen=True)
class Endpoint:
    """A named ingest channel, ``POST /hooks/<name>``, from ``[endpoints.<name>]`` in TOML.

    ``source`` fixes the dialect (None: auto-detect). The key material is what ``verify``
    checks with; every list may hold several entries so keys can rotate without downtime.
    """

    name: str
    source: str | None = None
    url: str | None = None
    enforce: bool = False
    public_keys: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    auth: str | None = None
    username: str | None = None
    password: str | None = None
    tokens: tuple[str, ...] = ()
    allow_ips: tuple[str, ...] = ()
    signing_key: str | None = None
    verifier: str | None = None
    tolerance: int = 300
    future_skew: int = 60
    # Reconcile with the vendor's event log (reconcile/): read lazily, checked when asked for.
    account: str | None = None
    api_token: str | None = None
    api_token_env: str | None = None
    api_url: str | None = None
    reconcile: str = "fetch"
    configured: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        """An API token is set (or named): the periodic reconcile covers this endpoint."""
        return bool(self.api_token or self.api_token_env)

    @property
    def has_credentials(self) -> bool:
        return bool(self.public_keys or self.secrets or self.tokens or self.password
                    or self.allow_ips or self.verifier)


def ad_hoc_endpoint(name: str) -> Endpoint:
    """An unconfigured name: auto-detect, nothing to check with."""
    return Endpoint(name=name, configured=False)


_ENDPOINT_KEYS = {
    "source", "url", "enforce", "public_key", "public_keys", "secret", "secrets", "auth",
    "username", "password", "token", "tokens", "allow_ips", "signing_key", "verifier",
    "tolerance", "future_skew", "account", "api_token", "api_token_env", "api_url",
    "reconcile",
}

RECONCILE_MODES = ("fetch", "retry")


def _as_tuple(raw: Mapping[str, Any], single: str, plural: str, where: str) -> tuple[str, ...]:
    values: list[str] = []
    for key in (single, plural):
        if key not in raw:
            continue
        try:
            values.extend(parse_list(raw[key]) if key == plural else [parse_str(raw[key])])
        except ValueError as error:
            raise ConfigError(f"{where}.{key}: {error}") from None
    return tuple(values)


def parse_endpoint(name: str, raw: Any) -> Endpoint:
    where = f"endpoints.{name}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{where}: endpoint names may hold letters, digits, '.', '_' and '-'")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table of settings")
    unknown = sorted(set(raw) - _ENDPOINT_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown setting "
                          f"(known: {', '.join(sorted(_ENDPOINT_KEYS))})")

    def get(key: str, parse: Callable[[Any], Any], default: Any = None) -> Any:
        if key not in raw:
            return default
        try:
            return parse(raw[key])
        except ValueError as error:
            raise ConfigError(f"{where}.{key}: {error}") from None

    source = get("source", choice(*SOURCES))
    auth = get("auth", choice("basic", "bearer", "none"))
    username = get("username", parse_str)
    password = get("password", parse_str)
    tokens = _as_tuple(raw, "token", "tokens", where)
    if auth == "basic" and not (username and password):
        raise ConfigError(f"{where}.auth: 'basic' needs a non-empty username and password")
    if auth == "bearer" and not tokens:
        raise ConfigError(f"{where}.auth: 'bearer' needs token (or tokens)")
    allow_ips = _as_tuple(raw, "allow_ips", "allow_ips", where)
    for cidr in allow_ips:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{where}.allow_ips: {cidr!r} is not an IP address or CIDR") from None
    url = get("url", parse_str)
    if url is not None and not re.match(r"https?://[^/]+", url):
        raise ConfigError(f"{where}.url: expected an absolute http(s) URL, got {url!r}")
    endpoint = Endpoint(
        name=name,
        source=source,
        url=url,
        public_keys=_as_tuple(raw, "public_key", "public_keys", where),
        secrets=_as_tuple(raw, "secret", "secrets", where),
        auth=auth,
        username=username,
        password=password,
        tokens=tokens,
        allow_ips=tuple(dict.fromkeys(allow_ips)),
        signing_key=get("signing_key", parse_str),
        verifier=get("verifier", parse_str),
        tolerance=get("tolerance", parse_int, 300),
        future_skew=get("future_skew", parse_int, 60),
        account=get("account", parse_str),
        api_token=get("api_token", parse_str),
        api_token_env=get("api_token_env", parse_str),
        api_url=get("api_url", parse_str),
        reconcile=get("reconcile", lambda value: parse_str(value).strip().lower(), "fetch"),
    )
    enforce = get("enforce", parse_bool, endpoint.has_credentials)
    return _replace(endpoint, enforce=enforce)


def _replace(endpoint: Endpoint, **changes: Any) -> Endpoint:
    from dataclasses import replace

    return replace(endpoint, **changes)


def _key(name: str, origin: str) -> str:
    """How the user wrote a setting: ``RECEIVER_NAME`` in the environment, ``DATABASE_URL``
    when it came from there, else ``NAME``."""
    if origin == "DATABASE_URL":
        return origin
    return f"RECEIVER_{name}" if origin == "RECEIVER_" else name


def _settle_smtp(resolved: dict[str, Any], origins: Mapping[str, str]) -> None:
    """Implicit TLS and STARTTLS exclude each other; implicit TLS defaults to port 465."""
    if resolved["SMTP_SSL"] and resolved["SMTP_STARTTLS"]:
        raise ConfigError(f"{_key('SMTP_SSL', origins['SMTP_SSL'])}: implicit TLS and "
                          "SMTP_STARTTLS exclude each other; turn one off (465 is usually "
                          "implicit TLS, 587 STARTTLS)")
    if resolved["SMTP_SSL"] and "SMTP_PORT" not in origins:
        resolved["SMTP_PORT"] = 465


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"RECEIVER_CONFIG: no such file {path!r}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"RECEIVER_CONFIG: {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"RECEIVER_CONFIG: cannot read {path!r}: {error.strerror}") from None


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Resolve every setting; returns a dict for ``app.config`` with ``ENDPOINTS`` included."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    layers: list[tuple[str, Mapping[str, Any]]] = []
    config_path = overrides.get("CONFIG") or environ.get("RECEIVER_CONFIG")
    toml: dict[str, Any] = read_toml(str(config_path)) if config_path else {}
    endpoints_raw = toml.pop("endpoints", {})
    layers.append(("RECEIVER_CONFIG", {key.upper(): value for key, value in toml.items()}))
    prefixed = {key[len("RECEIVER_"):]: value for key, value in environ.items()
                if key.startswith("RECEIVER_")}
    named = "DATABASE" in prefixed or "DATABASE" in overrides or "DATABASE" in layers[0][1]
    if not named and environ.get("DATABASE_URL"):
        # Platforms (Heroku, Render, Fly, Railway) name their database here.
        layers.append(("DATABASE_URL", {"DATABASE": environ["DATABASE_URL"]}))
    layers.append(("RECEIVER_", prefixed))
    layers.append(("create_app", overrides))

    known = {setting.name for setting in SETTINGS}
    resolved: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        value, origin = setting.default, None
        for label, layer in layers:
            if setting.name in layer:
                value, origin = layer[setting.name], label
        if origin is None:
            resolved[setting.name] = value
            continue
        origins[setting.name] = origin
        try:
            resolved[setting.name] = setting.parse(value)
        except ValueError as error:
            raise ConfigError(f"{_key(setting.name, origin)}: {error}") from None
    file_keys = set(layers[0][1]) - known
    if file_keys:
        raise ConfigError(f"{sorted(file_keys)[0].lower()}: unknown setting in {config_path}")
    _settle_smtp(resolved, origins)

    if "ENDPOINTS" in overrides:
        endpoints_raw = overrides["ENDPOINTS"]
    if isinstance(endpoints_raw, Mapping):
        resolved["ENDPOINTS"] = {
            name: value if isinstance(value, Endpoint) else parse_endpoint(name, value)
            for name, value in endpoints_raw.items()
        }
    else:
        raise ConfigError("endpoints: expected tables such as [endpoints.keygen]")
    # Flask's own keys (TESTING, SERVER_NAME, ...) pass through untouched.
    for key, value in overrides.items():
        if key not in resolved and key != "CONFIG":
            resolved[key] = value
    return resolved
