"""``Upgrade: h2c`` on an HTTP/1.1 connection (RFC 7540 §3.2; RFC 9113 §3.1
retired it, but curl and other clients still send it for ``http://`` URLs).

A request asks for it with ``Upgrade: h2c``, ``Connection: Upgrade,
HTTP2-Settings`` and exactly one ``HTTP2-Settings`` field (§3.2.1). We
accept it only for a request without a body (the body would have to be
read before switching); otherwise, as RFC 7540 allows, the request is
simply served over HTTP/1.1. Accepted: ``101 Switching Protocols``, and
the request becomes stream 1 of the HTTP/2 connection, without the
fields that asked for the upgrade.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.http1 import RequestHead
from proxy.http1.events import KIND_NONE
from proxy.http1.fields import index_of, split_list
from proxy.session.hop import connection_tokens

SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
_UPGRADE_FIELDS = frozenset({b"upgrade", b"http2-settings", b"connection"})


def h2c_settings(head: RequestHead) -> bytes | None:
    """The HTTP2-Settings of a request we can upgrade to h2c, else None."""
    if head.version != b"1.1" or head.framing.kind is not KIND_NONE:
        return None
    if head.method == b"CONNECT" or b"upgrade" not in index_of(head):
        return None  # no Upgrade field, so no h2c in it (the common case: one lookup)
    tokens = connection_tokens(head)
    if b"upgrade" not in tokens or b"http2-settings" not in tokens:
        return None
    upgrades: list[bytes] = []
    settings: list[bytes] = []
    for name, value in head.fields:
        lname = name.lower()
        if lname == b"upgrade":
            upgrades += [t.lower() for t in split_list(value)]
        elif lname == b"http2-settings":
            settings.append(value)
    if b"h2c" not in upgrades or len(settings) != 1:
        return None
    return settings[0]


def upgraded(head: RequestHead) -> RequestHead:
    """The request as stream 1 carries it: without the fields that asked for h2c."""
    fields = tuple((k, v) for k, v in head.fields if k.lower() not in _UPGRADE_FIELDS)
    return replace(head, fields=fields, index=None)
