"""Which gRPC a content type says: gRPC, gRPC-Web, or gRPC-Web text.

PROTOCOL-HTTP2.md: ``application/grpc`` with an optional ``+format``
(``+proto``, ``+json``...) and parameters; PROTOCOL-WEB.md:
``application/grpc-web`` and ``application/grpc-web-text``, the same way.
"""

from __future__ import annotations

from enum import Enum

from proxy.http1.events import Fields


class Protocol(Enum):
    GRPC = "grpc"
    WEB = "grpc-web"
    WEB_TEXT = "grpc-web-text"


_BASES = {
    b"application/grpc": Protocol.GRPC,
    b"application/grpc-web": Protocol.WEB,
    b"application/grpc-web-text": Protocol.WEB_TEXT,
}


def protocol_of(content_type: bytes) -> Protocol | None:
    base = content_type.split(b";", 1)[0].strip().lower()
    return _BASES.get(base.split(b"+", 1)[0])


def protocol_in(fields: Fields) -> Protocol | None:
    """The gRPC protocol of a request's head (None: not gRPC)."""
    for name, value in fields:
        if len(name) == 12 and name.lower() == b"content-type":
            return protocol_of(value)
    return None


def header(fields: Fields, name: bytes) -> bytes | None:
    for k, v in fields:
        if k.lower() == name:
            return v
    return None
