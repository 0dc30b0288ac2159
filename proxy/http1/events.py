"""Events the HTTP/1 parsers emit, and the body framing of a message.

Header fields are kept as a tuple of ``(name, value)`` byte pairs, in wire
order and with the sender's case, so that an unchanged message is forwarded
with the same fields (principle 4). Values have their surrounding optional
whitespace removed (RFC 9110 §5.5).

A parsed head may also carry ``raw``, its received bytes (without the blank
line that ends it), when they are exactly what ``proxy.http1.writer`` would
write for it: the session then forwards them instead of a rebuild
(``proxy.session.messages``). ``raw`` is not an ``__init__`` argument, so
``dataclasses.replace`` and every other constructor leave it ``None``: a
head that anyone changed is never forwarded as received.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

Fields = tuple[tuple[bytes, bytes], ...]
# Lower-cased name -> values as they came after the colon, for the few
# fields the proxy itself acts on (``fields.INDEXED``); built while parsing
# so no consumer rescans the field list. None when a head was built by hand.
FieldIndex = dict[bytes, list[bytes]]


class FramingKind(enum.Enum):
    """How the end of a message body is found (RFC 9112 §6.3)."""

    NONE = "none"  # no body at all (GET without length, HEAD response, 204, 304, 1xx)
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"  # chunked transfer coding
    CLOSE = "close"  # response body runs until the server closes
    TUNNEL = "tunnel"  # 2xx to CONNECT, 101: the connection becomes opaque bytes


# The members as plain module constants for the per-message paths: reading
# ``FramingKind.LENGTH`` goes through the enum's metaclass, 0.18 µs in
# CPython 3.11 where a module global takes 0.01.
KIND_NONE = FramingKind.NONE
KIND_LENGTH = FramingKind.LENGTH
KIND_CHUNKED = FramingKind.CHUNKED
KIND_CLOSE = FramingKind.CLOSE
KIND_TUNNEL = FramingKind.TUNNEL


@dataclass(frozen=True, slots=True)
class Framing:
    kind: FramingKind
    length: int = 0  # only for LENGTH


NO_BODY = Framing(FramingKind.NONE)
CHUNKED = Framing(FramingKind.CHUNKED)
UNTIL_CLOSE = Framing(FramingKind.CLOSE)
TUNNEL = Framing(FramingKind.TUNNEL)


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: bytes  # b"1.1" or b"1.0"
    fields: Fields
    framing: Framing
    index: FieldIndex | None = field(default=None, compare=False, repr=False)
    # The received head when its field lines and framing are canonical
    # (``fields.parse_fields``, ``framing.canonical_framing``): the request
    # line is always rebuilt, the field block may be forwarded as received.
    raw: bytes | None = field(default=None, init=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    version: bytes
    status: int
    reason: bytes
    fields: Fields
    framing: Framing
    index: FieldIndex | None = field(default=None, compare=False, repr=False)
    # The received head when all of it is canonical: an "HTTP/1.1" status
    # line with a reason, and canonical field lines and framing.
    raw: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def informational(self) -> bool:
        """1xx other than 101: more heads follow for the same request."""
        return 100 <= self.status < 200 and self.status != 101


@dataclass(frozen=True, slots=True)
class BodyData:
    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    trailers: Fields = ()


Event = RequestHead | ResponseHead | BodyData | EndOfMessage
