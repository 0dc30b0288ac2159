"""Building the heads we forward, from our own parse.

Each function takes a parsed head and returns the bytes to send: hop-by-hop
fields removed (RFC 9110 §7.6.1), Host made to agree with the target
(RFC 9112 §3.2.2), framing computed by us (RFC 9112 §6), our own HTTP
version (RFC 9110 §2.5). Everything else is kept as it came, in order.

When none of that changes anything, the received bytes go out instead of a
rebuild (``RequestHead.raw``): the parser kept them only if they are what
the writer writes for the same fields (CRLF, "name: value", canonical
framing values, "HTTP/1.1"), and ``replace`` drops them from a head anyone
edited, so the rebuild is skipped, not weakened. The one visible
difference: the framing field stays where it came instead of moving last.
"""

from __future__ import annotations

from proxy.http1 import RequestHead, ResponseHead
from proxy.http1.events import KIND_CHUNKED, KIND_CLOSE, KIND_LENGTH, KIND_NONE, KIND_TUNNEL
from proxy.http1.fields import index_of, indexed_values, split_list
from proxy.http1.writer import add_framing, request_head, response_head
from proxy.session import routing
from proxy.session.config import SessionConfig
from proxy.session.hop import ALWAYS_HOP, HOP_AND_FRAMING, connection_tokens, strip_hop_by_hop
from proxy.session.routing import NextProxy
from proxy.session.target import Target

# Fields whose presence means a head must be rebuilt: hop-by-hop ones (and
# Connection, so there are no Connection tokens). A ``Transfer-Encoding`` of
# a canonical head is exactly "chunked", the framing we would write.
_REBUILT = ALWAYS_HOP - {b"transfer-encoding"}
_CRLF_CRLF = b"\r\n\r\n"
_CONNECTION = {b"connection"}
_KEEP_ALIVE = [b" keep-alive"]  # one canonical "Connection: keep-alive" line (raw index value)


def wants_close(head: RequestHead | ResponseHead, tokens: set[bytes] | None = None) -> bool:
    """Whether the sender ends the connection after this message (RFC 9112 §9.3).

    ``tokens``: the head's Connection tokens, when the caller has them already.
    """
    if tokens is None:
        tokens = connection_tokens(head)
    if b"close" in tokens:
        return True
    return head.version == b"1.0" and b"keep-alive" not in tokens


def _is_upgrade(head: RequestHead, tokens: set[bytes]) -> bool:
    """An HTTP/1.1 upgrade, or the WebSocket handshake an HTTP/2 extended CONNECT
    stands for (``proxy.layers.http2.extconnect``: an HTTP/2 client cannot send
    these fields, RFC 9113 §8.2.2)."""
    if head.version not in (b"1.1", b"2.0") or b"upgrade" not in tokens:
        return False
    values = [t.lower() for v in indexed_values(index_of(head), b"upgrade") for t in split_list(v)]
    return bool(values) if head.version == b"1.1" else values == [b"websocket"]


def _with_host(fields: list[tuple[bytes, bytes]], authority: bytes) -> list[tuple[bytes, bytes]]:
    """Set Host in place (name case and position kept), or add it first."""
    for i, (k, v) in enumerate(fields):
        if k.lower() == b"host":
            if v != authority:
                fields[i] = (k, authority)
            return fields
    return [(b"Host", authority), *fields]


def _raw_request(
    head: RequestHead, target: Target, config: SessionConfig, keep_host: bool
) -> bytes | None:
    """Our request line and the received field block, when the rebuild would
    write the same fields: none hop-by-hop, Host there and kept (RFC 9112
    §3.2.2), canonical framing (RFC 9112 §6.3)."""
    raw, index = head.raw, head.index
    if raw is None or index is None or not _REBUILT.isdisjoint(index):
        return None
    hosts = index.get(b"host")
    if not hosts:
        return None
    authority = target.authority.encode("ascii")
    if hosts[0][1:] != authority and not keep_host and not (config.upstream and config.keep_host):
        return None
    block = memoryview(raw)[raw.index(b"\r\n") :]
    return b"%s %s HTTP/1.1%s\r\n\r\n" % (head.method, target.path, block)


def request_out(
    head: RequestHead,
    target: Target,
    config: SessionConfig,
    keep_host: bool = False,
    proxy: NextProxy | None = None,
) -> tuple[bytes, bool, bool]:
    """The request head for the upstream, whether it asks for an upgrade, and
    whether the client wants the connection closed after the response.

    ``proxy``: an HTTP next proxy the request goes to, in absolute-form (RFC
    9112 §3.2.2) with its own ``Proxy-Authorization`` (``--upstream-auth``).
    """
    raw = _raw_request(head, target, config, keep_host) if proxy is None else None
    if raw is not None:
        return raw, False, head.version == b"1.0"  # no Connection field: no tokens
    index = index_of(head)
    tokens = connection_tokens(head)
    upgrade = _is_upgrade(head, tokens)
    fields = strip_hop_by_hop(head, tokens, upgrade, framing=True)
    if upgrade:
        fields = [(k, b"Upgrade") if k.lower() == b"connection" else (k, v) for k, v in fields]
    authority = target.authority.encode("ascii")
    hosts = indexed_values(index, b"host")
    if not hosts:
        fields.insert(0, (b"Host", authority))
    elif hosts[0] != authority and not keep_host and not (config.upstream and config.keep_host):
        fields = _with_host(fields, authority)
    add_framing(fields, head.framing)
    path = target.path
    if proxy is not None:
        path = target.url.encode("ascii")
        fields += routing.proxy_authorization(proxy)
    return (
        request_head(head.method, path, b"1.1", fields),
        upgrade,
        wants_close(head, tokens),
    )


def informational_out(head: ResponseHead) -> bytes:
    """A 1xx (100 Continue, 103 Early Hints) relayed to an HTTP/1.1 client."""
    # RFC 9110 §8.6: no Content-Length in a 1xx (a client could read a body).
    fields = add_framing(strip_hop_by_hop(head, connection_tokens(head), False, True), head.framing)
    return response_head(b"1.1", head.status, head.reason, fields)


def _length_metadata(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Content-Length of a HEAD or 304 response, kept in place but canonical.

    It states the length the selected representation would have (RFC 9110
    §8.6); the codec checked it is one ``1*DIGIT`` value, so "010" goes out as
    "10" like a request's (hazard 4).
    """
    return [(k, b"%d" % int(v)) if k.lower() == b"content-length" else (k, v) for k, v in fields]


def _raw_response(head: ResponseHead) -> bytes | None:
    """The received head, when the rebuild for a keep-alive HTTP/1.1 client
    would write the same: no hop-by-hop field, and a framing we keep as it
    came (Content-Length or chunked; no body and no framing field for a 204;
    a HEAD or 304's canonical Content-Length).

    One hop-by-hop field may stay: ``Connection: keep-alive`` alone, as most
    servers send it. RFC 9110 §7.6.1 lets an intermediary replace Connection
    with its own connection options, and ours for a client connection kept
    open are the same "keep-alive".
    """
    raw, index, kind = head.raw, head.index, head.framing.kind
    if raw is None or index is None:
        return None
    if kind is KIND_LENGTH or kind is KIND_CHUNKED:
        rebuilt = _REBUILT
    elif kind is KIND_NONE:
        # RFC 9110 §8.6: a 204 loses any Content-Length; TE is hop-by-hop.
        rebuilt = HOP_AND_FRAMING if head.status == 204 else ALWAYS_HOP
    else:
        return None  # CLOSE announces the close, TUNNEL switches
    if rebuilt.isdisjoint(index):
        return raw + _CRLF_CRLF
    hits = rebuilt.intersection(index)
    if hits == _CONNECTION and index[b"connection"] == _KEEP_ALIVE:
        return raw + _CRLF_CRLF
    return None


def response_out(
    request: RequestHead, head: ResponseHead, upgrade: bool, client_close: bool | None = None
) -> tuple[bytes, bool, bool]:
    """The response head for the client, whether the client connection closes
    after it, and whether the server closes its side (so it is not reusable).

    ``client_close``: ``wants_close(request)``, when the caller has it already.
    """
    close = wants_close(request) if client_close is None else client_close
    if head.raw is not None and not close and request.version == b"1.1":
        raw = _raw_response(head)
        if raw is not None:
            return raw, False, False  # no close in it, HTTP/1.1: the server keeps it
    tokens = connection_tokens(head)
    switching = upgrade and head.status == 101
    kind = head.framing.kind
    # A HEAD or 304 response keeps its Content-Length (1xx never get here).
    keeps_length = kind is KIND_NONE and head.status != 204
    fields = strip_hop_by_hop(head, tokens, switching, framing=not keeps_length)
    client_11 = request.version == b"1.1"
    if keeps_length:
        fields = _length_metadata(fields)
    elif kind is KIND_CHUNKED and not client_11:
        close = True  # HTTP/1.0 has no chunked: the body ends at close (no framing field)
    else:
        # Our own framing field. For CLOSE there is none; for 204 and 101
        # RFC 9110 §8.6 forbids Content-Length (a client that believed one
        # would take the next response's bytes for a body), so none either.
        add_framing(fields, head.framing)
        close = close or kind is KIND_CLOSE
    if not switching and kind is not KIND_TUNNEL:
        if close:
            fields.append((b"Connection", b"close"))
        elif not client_11:
            fields.append((b"Connection", b"keep-alive"))
    data = response_head(b"1.1", head.status, head.reason, fields)
    return data, close, wants_close(head, tokens)
