"""Send a stored delivery again, byte for byte, to a URL the settings allow.

``Host`` names the hop, so it is replaced by the target's unless ``preserve_host`` asks for
the original: Keygen signs the host it posted to, and an app that checks the signature
against its request's ``Host`` (as Keygen's own examples do) accepts the delivery only then.
"""

from __future__ import annotations

import http.client
import ipaddress
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import BadRequest, Forbidden

#: Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus ones we recompute.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})
BODY_PREVIEW = 2048


def forwardable_headers(headers: Iterable[Sequence[str]], *,
                        preserve_host: bool = False) -> list[tuple[str, str]]:
    """The original headers minus hop-by-hop ones and Host (kept with ``preserve_host``);
    Content-Length is recomputed."""
    connection_tokens: set[str] = set()
    pairs = [(str(name), str(value)) for name, value in headers]
    for name, value in pairs:
        if name.lower() == "connection":
            connection_tokens.update(token.strip().lower() for token in value.split(","))
    dropped = HOP_BY_HOP - {"host"} if preserve_host else HOP_BY_HOP
    kept = [(name, value) for name, value in pairs
            if name.lower() not in dropped and name.lower() not in connection_tokens]
    if preserve_host:  # one Host, the first received (as Delivery.header reads it)
        hosts = [index for index, (name, _) in enumerate(kept) if name.lower() == "host"]
        kept = [pair for index, pair in enumerate(kept) if index not in hosts[1:]]
    return kept


def check_allowed(url: str, allow: Iterable[str]) -> urllib.parse.SplitResult:
    """The parts of an absolute http(s) URL whose host ``allow`` lists; ``BadRequest`` for
    anything ``http.client`` could not send (a bad port, spaces, non-ASCII: percent-encode
    it), ``Forbidden`` for another host."""
    if not url.isascii() or any(char <= " " or char == "\x7f" for char in url):
        raise BadRequest("url must be ASCII without spaces or control characters "
                         f"(percent-encode the rest); got {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError as error:
        raise BadRequest(f"url is not a valid URL ({error}); got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"url must be an absolute http(s) URL; got {url!r}")
    host = parts.hostname.lower()
    allowed = {name.strip().lower().strip("[]") for name in allow}
    if host not in allowed:
        raise Forbidden(f"{host} is not in RECEIVER_REDELIVER_ALLOW "
                        f"({', '.join(sorted(allowed)) or 'empty'})")
    return parts


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def send(url: str, body: bytes, headers: Sequence[tuple[str, str]], *,
         timeout: float = 15.0) -> dict[str, Any]:
    """POST the exact bytes; answer the status, the start of the body and the time taken.
    A ``Host`` among ``headers`` replaces the one made from ``url``."""
    parts = urllib.parse.urlsplit(url)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    own_host = any(name.lower() == "host" for name, _ in headers)
    started = time.perf_counter()
    try:
        connection.putrequest("POST", path, skip_host=own_host, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        preview = response.read(BODY_PREVIEW)
        return {
            "url": url,
            "status": response.status,
            "body": preview.decode("utf-8", "replace"),
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    finally:
        connection.close()


def redeliver(record: dict[str, Any], url: str, *, allow: Iterable[str],
              preserve_host: bool = False) -> dict[str, Any]:
    """Re-send a stored delivery (``store.get_delivery(..., with_body=True)``) to ``url``;
    with ``preserve_host`` the request carries the ``Host`` the delivery arrived with."""
    check_allowed(url, allow)
    headers = forwardable_headers(record["headers"], preserve_host=preserve_host)
    try:
        result = send(url, record["body"] or b"", headers)
    except (OSError, http.client.HTTPException) as error:
        return {"url": url, "status": None, "error": f"{type(error).__name__}: {error}",
                "delivery_id": record["id"]}
    result["delivery_id"] = record["id"]
    return result
