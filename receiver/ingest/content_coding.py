"""``Content-Encoding`` of request bodies: ``gzip`` and ``deflate`` decoded, anything else
refused. Pure: bytes and the header value in, the decoded bytes out.

Decoding is incremental with a cap (``zlib`` ``max_length``): a few kilobytes that expand to
gigabytes (a "zip bomb") stop one byte past the limit, so memory stays bounded by the limit
whatever the ratio. The size limit a receiver applies (``MAX_BODY``) is the limit here too.
"""

from __future__ import annotations

import zlib

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

#: Codings we decode, under the names senders use (RFC 9110 §8.4.1; ``x-gzip`` is ``gzip``).
SUPPORTED = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
ACCEPTED = "gzip, deflate"  # the Accept-Encoding a 415 answer names (RFC 7694)
MAX_LAYERS = 4  # "gzip, gzip, gzip..." beyond this is not a sender, it is a puzzle


def codings(header: str | None) -> list[str]:
    """The codings in the order the sender applied them; ``identity`` (no coding) dropped."""
    if not header:
        return []
    names = [name.strip().lower() for name in header.split(",")]
    return [name for name in names if name and name != "identity"]


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes | None:
    """The body with its content codings undone, or None when it has none.

    Raises ``UnsupportedMediaType`` (415) for a coding other than gzip or deflate,
    ``PayloadTooLarge`` (413) when the decoded bytes would exceed ``limit`` and
    ``BadRequest`` (400) when the bytes are not what the header says.
    """
    names = codings(content_encoding)
    if not names:
        return None
    unknown = [name for name in names if name not in SUPPORTED]
    if unknown:
        raise UnsupportedMediaType(
            f"Content-Encoding {unknown[0]!r} is not supported; send the body uncompressed, "
            f"or compressed with {' or '.join(ACCEPTED.split(', '))}")
    if len(names) > MAX_LAYERS:
        raise BadRequest(f"Content-Encoding lists {len(names)} codings; at most {MAX_LAYERS} "
                         "are decoded")
    data = body
    for name in reversed(names):  # the last coding applied is undone first
        data = inflate(data, SUPPORTED[name], limit)
    return data


def _zlib_wrapped(data: bytes) -> bool:
    """True for a zlib stream (RFC 1950, what HTTP's ``deflate`` means); False for raw deflate
    (RFC 1951), which some senders send under the same name."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


def inflate(data: bytes, coding: str, limit: int) -> bytes:
    """Undo one ``gzip`` or ``deflate`` coding, never holding more than ``limit`` + 1 decoded
    bytes. A zero-length body stays empty (a "Test" ping sent with the header)."""
    if not data:
        return b""
    if coding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS if _zlib_wrapped(data) else -zlib.MAX_WBITS
    decoded = bytearray()
    decoder = zlib.decompressobj(wbits)
    pending = data
    try:
        while True:
            decoded += decoder.decompress(pending, limit - len(decoded) + 1)
            if len(decoded) > limit:
                raise PayloadTooLarge(
                    f"body decodes (Content-Encoding: {coding}) to more than {limit} bytes; "
                    f"this receiver accepts at most {limit} bytes (RECEIVER_MAX_BODY)")
            pending = decoder.unconsumed_tail
            if decoder.eof:
                rest = decoder.unused_data
                if coding == "gzip" and rest.strip(b"\0"):
                    decoder, pending = zlib.decompressobj(wbits), rest  # a further member
                    continue
                if rest.strip(b"\0"):
                    raise BadRequest(f"body has {len(rest)} bytes after the end of its "
                                     f"{coding} data")
                return bytes(decoded)
            if not pending:
                raise BadRequest(f"body ends before the end of its {coding} data (truncated?)")
    except zlib.error as error:
        raise BadRequest(f"body is not valid {coding} data ({error}), though sent with "
                         f"Content-Encoding: {coding}") from None
