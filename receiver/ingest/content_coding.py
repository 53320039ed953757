"""``Content-Encoding`` of request bodies: ``gzip`` and ``deflate`` decoded, anything else
refused. Pure: bytes and the header value in, the decoded bytes out.

Decoding is incremental with a cap (``zlib`` ``max_length``): a few kilobytes that expand to
gigabytes (a "zip bomb") stop one byte past the limit, so memory stays bounded by the limit
whatever the ratio. The size limit a receiver applies (``MAX_BODY``) is the limit here too.
"""

from __future__ import annotations

import re
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


#: Compressed bytes handed to a decoder at a time: at first ``FIRST_STEP``, doubling up to
#: ``MAX_STEP`` while a member goes on. What follows the end of a member is copied once, so
#: the copy is never much more than the member itself: a body of many small members (100,000
#: empty gzip members) decodes in time linear in its size, not a copy of the rest per member.
FIRST_STEP = 64
MAX_STEP = 64 * 1024
_NOT_ZERO = re.compile(rb"[^\0]")


def inflate(data: bytes, coding: str, limit: int) -> bytes:
    """Undo one ``gzip`` or ``deflate`` coding, never holding more than ``limit`` + 1 decoded
    bytes. A zero-length body stays empty (a "Test" ping sent with the header).

    ``gzip`` may be several members one after the other, with zero bytes between them or
    after the last (what ``gzip.decompress`` accepts); ``deflate`` is one stream, optionally
    followed by zero bytes."""
    if not data:
        return b""
    if coding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS if _zlib_wrapped(data) else -zlib.MAX_WBITS
    view = memoryview(data)
    decoded = bytearray()
    position = 0  # where the next member (or the unread part of this one) starts
    try:
        while True:
            decoder = zlib.decompressobj(wbits)
            step = FIRST_STEP
            while not decoder.eof:
                if position >= len(data):
                    raise BadRequest(f"body ends before the end of its {coding} data "
                                     "(truncated?)")
                chunk = view[position:position + step]
                position += len(chunk)
                step = min(step * 2, MAX_STEP)
                # max_length: a bomb stops one byte past the limit; below it the whole chunk
                # is consumed, so nothing is left in unconsumed_tail.
                decoded += decoder.decompress(chunk, limit - len(decoded) + 1)
                if len(decoded) > limit:
                    raise PayloadTooLarge(
                        f"body decodes (Content-Encoding: {coding}) to more than {limit} "
                        f"bytes; this receiver accepts at most {limit} bytes "
                        "(RECEIVER_MAX_BODY)")
            position -= len(decoder.unused_data)  # at most the last chunk, copied once
            found = _NOT_ZERO.search(data, position)
            if found is None:  # the end, or only zero bytes after it
                return bytes(decoded)
            if coding != "gzip":
                raise BadRequest(f"body has {len(data) - position} bytes after the end of "
                                 f"its {coding} data")
            position = found.start()  # a further gzip member
    except zlib.error as error:
        raise BadRequest(f"body is not valid {coding} data ({error}), though sent with "
                         f"Content-Encoding: {coding}") from None
