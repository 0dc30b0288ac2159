"""Hop-by-hop fields (RFC 9110 §7.6.1): what a proxy must not forward.

``Connection`` and every field it names are removed, along with the fields
that are always connection-specific. Framing is recomputed afterwards by the
writer, so a ``Connection: Content-Length`` trick cannot strip it (hazard 26);
``Host`` is never removed because ``Connection`` named it.
"""

from __future__ import annotations

from proxy.http1 import RequestHead, ResponseHead
from proxy.http1.fields import index_of, indexed_tokens
from proxy.http1.writer import FRAMING_FIELDS

ALWAYS_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
HOP_AND_FRAMING = ALWAYS_HOP | FRAMING_FIELDS
_NEVER_DROPPED = frozenset({b"host", b"content-length"})


def connection_tokens(head: RequestHead | ResponseHead) -> set[bytes]:
    """Lower-cased names listed in the head's Connection fields."""
    return indexed_tokens(index_of(head), b"connection")


def strip_hop_by_hop(
    head: RequestHead | ResponseHead, tokens: set[bytes], upgrade: bool, framing: bool = False
) -> list[tuple[bytes, bytes]]:
    """The head's fields without hop-by-hop ones; ``upgrade`` keeps Upgrade/Connection.

    ``tokens`` are the lower-cased names listed in Connection. ``framing``:
    drop Content-Length and Transfer-Encoding as well, in the same pass, for
    a caller that adds the framing field it computed (``add_framing``). Hot
    path: when the head has none of the fields to drop (known from its
    index), the field list is copied without looking at each name.
    """
    always = HOP_AND_FRAMING if framing else ALWAYS_HOP
    if not tokens and always.isdisjoint(index_of(head)):
        return list(head.fields)
    drop = always | (tokens - _NEVER_DROPPED)
    if upgrade:
        drop = drop - {b"upgrade", b"connection"}
    return [(k, v) for k, v in head.fields if k.lower() not in drop]
