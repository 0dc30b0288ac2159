"""Serialising heads and bodies: canonical framing from our own parse.

What we forward is framed by us: one framing field that we computed, CRLF
line endings, chunk extensions dropped (RFC 9112 §7.1.1 lets a proxy ignore
them). Field names keep their case and order (principle 4).
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.http1.events import KIND_CHUNKED, KIND_LENGTH, Fields, Framing

FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding"})
LAST_CHUNK = b"0\r\n\r\n"
_COLON_SP = b": "


def framed_fields(
    fields: Iterable[tuple[bytes, bytes]], framing: Framing
) -> list[tuple[bytes, bytes]]:
    """``fields`` without any framing field, plus the one ``framing`` calls for."""
    return add_framing([(k, v) for k, v in fields if k.lower() not in FRAMING_FIELDS], framing)


def add_framing(fields: list[tuple[bytes, bytes]], framing: Framing) -> list[tuple[bytes, bytes]]:
    """Append the framing field ``framing`` calls for to ``fields`` (which have none)."""
    kind = framing.kind
    if kind is KIND_LENGTH:
        fields.append((b"Content-Length", b"%d" % framing.length))
    elif kind is KIND_CHUNKED:
        fields.append((b"Transfer-Encoding", b"chunked"))
    return fields


def _fields_block(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Each field as "name: value" CRLF (RFC 9112 §5).

    Hot path (once per forwarded head): each pair is joined in C, and the
    lines with one join, 1.1 µs for ten fields where a concatenation per part
    took 1.8.
    """
    block = b"\r\n".join(map(_COLON_SP.join, fields))
    return block + b"\r\n" if block else block


def request_head(
    method: bytes, target: bytes, version: bytes, fields: Iterable[tuple[bytes, bytes]]
) -> bytes:
    return b"%s %s HTTP/%s\r\n%s\r\n" % (method, target, version, _fields_block(fields))


def response_head(
    version: bytes, status: int, reason: bytes, fields: Iterable[tuple[bytes, bytes]]
) -> bytes:
    return b"HTTP/%s %d %s\r\n%s\r\n" % (version, status, reason, _fields_block(fields))


def chunk(data: bytes) -> list[bytes]:
    """One chunk as a list of buffers for a vectored write (no concatenation).

    No data, no chunk: a zero-size chunk is the last-chunk (RFC 9112 §7.1),
    and emitting one mid-body would end the message early for the receiver.
    """
    if not data:
        return []
    return [b"%x\r\n" % len(data), data, b"\r\n"]


def last_chunk(trailers: Fields = ()) -> bytes:
    if not trailers:
        return LAST_CHUNK
    return b"0\r\n" + _fields_block(trailers) + b"\r\n"
