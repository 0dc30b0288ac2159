"""gRPC-Web's trailer frame: HTTP/1-style header lines inside the body.

PROTOCOL-WEB.md: the last frame of a response, flag bit 7 set, holds the
trailers as ``name: value`` lines separated by CRLF (names lower-cased).
Parsed leniently (a line without a colon is skipped): this is for the record.
"""

from __future__ import annotations

from proxy.http1.events import Fields

MAX_LINES = 100


def parse_trailers(data: bytes) -> Fields:
    out: list[tuple[bytes, bytes]] = []
    for line in data.split(b"\n")[:MAX_LINES]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if colon and name.strip():
            out.append((name.strip().lower(), value.strip()))
    return tuple(out)


def trailer_frame(fields: Fields) -> bytes:
    """The trailer frame for ``fields`` (a rule's gRPC-Web answer)."""
    body = b"".join(k.lower() + b":" + v + b"\r\n" for k, v in fields)
    return b"\x80" + len(body).to_bytes(4, "big") + body
