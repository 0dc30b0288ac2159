"""WebSockets over HTTP/2 (RFC 8441): the extended CONNECT, as the exchange sees it.

We advertise ``SETTINGS_ENABLE_CONNECT_PROTOCOL`` (RFC 8441 §3, ``link``), so
a client may open a WebSocket on a stream with an extended CONNECT
(§4): ``:method CONNECT``, ``:protocol websocket``, and ``:scheme``,
``:path``, ``:authority`` as for any request. ``h2`` itself refuses
``:protocol`` on anything but a CONNECT and a CONNECT with ``:protocol``
but without ``:scheme`` or ``:path`` (connection errors, RFC 9113 §5.4.1
lets a stream error be one); what is left is checked here, each a
malformed request (RFC 9113 §8.1.1).

The stream's exchange is the HTTP/1.1 opening handshake it stands for
(RFC 6455 §4.1): ``GET`` with ``Upgrade: websocket``, ``Connection:
Upgrade``, a ``Sec-WebSocket-Key`` of ours (RFC 8441 §5: HTTP/2 uses none;
one the client sent anyway is left out), ``Sec-WebSocket-Version`` 13 and
the client's subprotocols and extensions (offers of extensions other than
permessage-deflate are dropped: one the proxy cannot read would leave a
stream it cannot relay). So rules, hooks and the record are those of any
upgrade; toward an HTTP/2 server it becomes an extended CONNECT again
(``wsupstream``). The server's switch (a ``101`` whose accept answers our
key, or an HTTP/2 server's ``2xx``) goes to the client as ``:status 200``
(§5) with its subprotocol and extensions; any other answer is relayed as
the stream's HTTP/2 response.
"""

from __future__ import annotations

import base64
import os
from dataclasses import replace

from wsproto.utilities import generate_accept_token

from proxy.http1 import NO_BODY, BodyData, EndOfMessage, Event, RequestHead, ResponseHead
from proxy.http1.fields import build_index
from proxy.layers.commands import Command
from proxy.layers.http2.link import ClientLink
from proxy.layers.http2.request import MalformedRequest, request_head
from proxy.layers.http2.streamcodec import StreamCodec, StreamRequests
from proxy.layers.websocket.deflate import extension_names
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange

Headers = list[tuple[bytes, bytes]]
PROTOCOL = b":protocol"
WEBSOCKET = b"websocket"
# The handshake fields of RFC 6455 that RFC 8441 §5 leaves out of HTTP/2.
_NOT_IN_H2 = frozenset({b"sec-websocket-key", b"sec-websocket-accept", b"upgrade", b"connection"})
_BAD_GATEWAY = ResponseHead(b"1.1", 502, b"Bad Gateway", (), NO_BODY)


class Unsupported(Exception):
    """An extended CONNECT for a protocol other than WebSocket: answered 501."""


def extended(headers: Headers) -> bool:
    """The block carries ``:protocol`` (an extended CONNECT, or a malformed request)."""
    for name, _ in headers:  # noqa: SIM110 - a plain loop: 0.23 µs where any() takes 0.51
        if name == PROTOCOL:
            return True
    return False


def websocket_request(headers: Headers, ended: bool, absolute: bool) -> RequestHead:
    """The opening handshake an extended CONNECT for ``websocket`` stands for.

    Raises ``MalformedRequest`` (RFC 9113 §8.1.1, RFC 8441 §4) or
    ``Unsupported`` (another protocol).
    """
    pseudo = {name: value for name, value in headers if name.startswith(b":")}
    if pseudo.get(b":method") != b"CONNECT":
        raise MalformedRequest(":protocol on a request other than CONNECT (RFC 8441 §4)")
    protocol = pseudo.get(PROTOCOL, b"")
    if protocol != WEBSOCKET:
        raise Unsupported(f"extended CONNECT for {protocol[:40]!r} is not supported")
    if not pseudo.get(b":authority"):
        raise MalformedRequest("extended CONNECT without :authority (RFC 8441 §4)")
    if ended:
        raise MalformedRequest("extended CONNECT that ends its stream (RFC 8441 §4)")
    if any(name == b"content-length" for name, _ in headers):
        raise MalformedRequest("content-length on an extended CONNECT (RFC 8441 §4)")
    block = [
        (b":method", b"GET") if name == b":method" else (name, value)
        for name, value in headers
        if name != PROTOCOL and name not in _NOT_IN_H2  # RFC 8441 §5: a key is ours
    ]
    head, _pseudo = request_head(block, True, absolute)
    return _handshake(head)


def _handshake(head: RequestHead) -> RequestHead:
    """``head`` with the fields of an HTTP/1.1 WebSocket handshake (RFC 6455 §4.1)."""
    fields: list[tuple[bytes, bytes]] = []
    version = False
    for name, value in head.fields:
        if name == b"sec-websocket-extensions":
            value = _readable_offers(value)
            if not value:
                continue
        version = version or name == b"sec-websocket-version"
        fields.append((name, value))
    key = base64.b64encode(os.urandom(16))  # RFC 6455 §4.1: 16 random bytes, base64
    fields += [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]
    fields.append((b"sec-websocket-key", key))
    if not version:
        fields.append((b"sec-websocket-version", b"13"))
    kept = tuple(fields)
    return replace(head, fields=kept, index=build_index(kept))


def _readable_offers(value: bytes) -> bytes:
    """The extension offers the WebSocket layer can read (permessage-deflate)."""
    offers = value.decode("latin-1").split(",")
    kept = [o.strip() for o in offers if extension_names(o) == ["permessage-deflate"]]
    return ", ".join(kept).encode("latin-1")


def switched(head: ResponseHead) -> ResponseHead:
    """The server's ``101`` as the client's ``200`` (RFC 8441 §5): the subprotocol
    and extensions it chose, without the HTTP/1.1 handshake's own fields."""
    fields = tuple((k, v) for k, v in head.fields if k.lower() not in _NOT_IN_H2)
    return replace(head, status=200, reason=b"OK", fields=fields, index=None)


class WsRequests(StreamRequests):
    """The stream's request: the handshake head, ended; the stream's DATA after
    it is WebSocket frames, kept (unacknowledged, so bounded by the stream's
    window) until the WebSocket layer takes them (``take``)."""

    __slots__ = ("early",)

    def __init__(self, link: ClientLink, stream: int) -> None:
        super().__init__(link, stream)
        self.early = bytearray()  # frames that came before the WebSocket started

    def push(self, event: Event) -> None:
        if type(event) is RequestHead:
            super().push(event)
            super().push(EndOfMessage())
        elif type(event) is BodyData:
            self.early += event.data
            self.buffered += len(event.data)
        # The stream's end (END_STREAM) is the codec's ``eof``.

    def take(self) -> bytes:
        """The frames that came, acknowledged now that they are taken."""
        data = bytes(self.early)
        self.early.clear()
        self.buffered -= len(data)
        self.link.consumed(self.stream, len(data))
        return data


def accept_error(ex: Exchange, head: ResponseHead) -> str | None:
    """Why the server's ``101`` does not answer our handshake (RFC 6455 §4.1:
    ``Sec-WebSocket-Accept`` made from our key), else None."""
    key = next((v for k, v in ex.forward.fields if k.lower() == b"sec-websocket-key"), b"")
    accept = [v.strip() for k, v in head.fields if k.lower() == b"sec-websocket-accept"]
    if accept != [generate_accept_token(key)]:
        return "server: Sec-WebSocket-Accept does not answer the key (RFC 6455 §4.1)"
    return None


class WsStreamCodec(StreamCodec):
    """The client end of an extended CONNECT's exchange: a ``101`` goes out as
    ``200`` and leaves the stream open for the WebSocket; a ``101`` that does
    not answer our key is a ``502`` that ends the stream (``refused``)."""

    __slots__ = ("refused",)

    def __init__(self, config: SessionConfig, link: ClientLink, stream: int) -> None:
        super().__init__(config, link, stream)
        self.requests = WsRequests(link, stream)
        self.refused: str | None = None

    def send_head(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        if head.status == 101:  # an HTTP/2 server's 2xx has no accept to check (§5)
            self.refused = accept_error(ex, head) if head.version != b"2.0" else None
            head = switched(head) if self.refused is None else _BAD_GATEWAY
        super().send_head(ex, head, out)

    @property
    def ws_requests(self) -> WsRequests:
        requests = self.requests
        assert isinstance(requests, WsRequests)
        return requests
