"""Hop-by-hop fields (RFC 9110 §7.6.1): what a proxy must not forward.

``Connection`` and every field it names are removed, along with the fields
that are always connection-specific. Framing is recomputed afterwards by the
writer, so a ``Connection: Content-Length`` trick cannot strip it (hazard 26);
``Host`` is never removed because ``Connection`` named it.
"""

from __future__ import annotations

from proxy.http1.events import Fields
from proxy.http1.fields import tokens_of

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
_NEVER_DROPPED = frozenset({b"host", b"content-length"})


def connection_tokens(fields: Fields) -> set[bytes]:
    return tokens_of(fields, b"connection")


def strip_hop_by_hop(
    fields: Fields, tokens: set[bytes], upgrade: bool
) -> list[tuple[bytes, bytes]]:
    """``fields`` without hop-by-hop ones; ``upgrade`` keeps Upgrade/Connection.

    ``tokens`` are the lower-cased names listed in Connection.
    """
    drop = (ALWAYS_HOP | tokens) - _NEVER_DROPPED
    if upgrade:
        drop = drop - {b"upgrade", b"connection"}
    return [(k, v) for k, v in fields if k.lower() not in drop]


def has_hop_fields(fields: Fields) -> bool:
    """Fast check used to skip rebuilding the field list when nothing changes."""
    return any(k.lower() in ALWAYS_HOP for k, _ in fields)
