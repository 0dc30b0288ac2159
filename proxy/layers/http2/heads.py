"""Our response heads (and trailers) as HTTP/2 header blocks.

The fields are those of our own parse, minus everything connection-specific
(RFC 9113 §8.2.2: ``connection`` and the fields it names, ``keep-alive``,
``proxy-connection``, ``transfer-encoding``, ``upgrade``, and the rest of
the hop-by-hop set), with lowercase names (RFC 9113 §8.2.1) and ``:status``
first (§8.3.2). ``content-length`` is our own: the body's length when we
know it, kept as metadata for HEAD and 304 (RFC 9110 §8.6), none otherwise.
"""

from __future__ import annotations

from proxy.http1 import FramingKind, ResponseHead
from proxy.http1.events import Fields
from proxy.http1.fields import index_of, indexed_tokens
from proxy.session.hop import ALWAYS_HOP, connection_tokens, strip_hop_by_hop

Header = tuple[bytes, bytes]
# Fields HTTP/2 forbids in any block, whatever HTTP/1.1 allowed.
_FORBIDDEN = ALWAYS_HOP | {b"content-length", b"host"}
_LENGTH = FramingKind.LENGTH  # read once: an enum member through its class costs a lookup
_NONE = FramingKind.NONE
_NO_TOKENS: set[bytes] = set()  # no Connection field: nothing it names to drop (never changed)


def response_block(head: ResponseHead, request_method: bytes) -> list[Header]:
    """``:status`` and the fields an HTTP/2 client gets for ``head``."""
    block: list[Header] = [(b":status", b"%d" % head.status)]
    index = index_of(head)
    tokens = indexed_tokens(index, b"connection") if b"connection" in index else _NO_TOKENS
    fields = strip_hop_by_hop(head, tokens, False, framing=False)
    framing = head.framing
    kind = framing.kind
    length: bytes | None = None
    if kind is _LENGTH:
        length = b"%d" % framing.length
    elif kind is _NONE and head.status not in (204,) and head.status >= 200:
        # HEAD or 304: the length the body would have had, when one was given.
        for name, value in head.fields:
            if name.lower() == b"content-length":
                length = b"%d" % int(value)
                break
    for name, value in fields:
        lname = name.lower()
        if lname not in _FORBIDDEN:
            block.append((lname, value))
    if length is not None and request_method != b"CONNECT":
        block.append((b"content-length", length))
    return block


def informational_block(head: ResponseHead) -> list[Header]:
    """A 1xx (100 Continue, 103 Early Hints) for an HTTP/2 client."""
    fields = strip_hop_by_hop(head, connection_tokens(head), False, framing=True)
    block: list[Header] = [(b":status", b"%d" % head.status)]
    block += [(k.lower(), v) for k, v in fields if k.lower() not in _FORBIDDEN]
    return block


def trailer_block(trailers: Fields) -> list[Header]:
    """Trailers as an HTTP/2 header block: no pseudo-headers, nothing hop-by-hop."""
    return [(k.lower(), v) for k, v in trailers if k.lower() not in _FORBIDDEN]
