"""An HTTP/2 client's WebSocket to an HTTP/2 server: extended CONNECT both ways (RFC 8441).

A WebSocket stream's session (``wsstream``) sees the shared HTTP/2 server
connections (``upstream.UpstreamMux``) through ``WsMux``: only a connection
that is open and whose server advertised ``SETTINGS_ENABLE_CONNECT_PROTOCOL``
(§3) is offered. Any other way goes as the HTTP/1.1 handshake on a
connection of its own (the session offers no ``h2`` in ALPN): a server's
settings are only known once it speaks, and most HTTP/2 servers do not take
WebSockets over HTTP/2.

On such a connection the handshake's exchange runs on a ``WsChannel``: its
head goes out as an extended CONNECT (``:protocol websocket``, §4, with the
client's subprotocols and extensions and no key, §5) whose stream stays
open, and the server's ``2xx`` (§5) comes back to the session as the ``101``
it stands for, so the exchange switches as for an HTTP/1.1 server. The
stream's DATA then carries the frames (``wsstream`` reads and writes them
through the channel).
"""

from __future__ import annotations

from dataclasses import replace

from h2.settings import SettingCodes

from proxy.http1 import TUNNEL, Event, RequestHead, ResponseHead
from proxy.http1.events import Fields
from proxy.layers.commands import Command, Conn
from proxy.layers.http2.channel import Channel, ChannelResponses, request_block
from proxy.layers.http2.upstream import UpstreamMux
from proxy.session.shared import ServerKey

_NOT_SENT = frozenset({b"sec-websocket-key", b"sec-websocket-accept"})


class WsMux:
    """The shared connections an extended CONNECT may use (a ``shared.UpstreamMux``)."""

    __slots__ = ("mux",)

    def __init__(self, mux: UpstreamMux) -> None:
        self.mux = mux

    def lookup(self, key: ServerKey) -> Conn | None:
        conn = self.mux.lookup(key)
        up = self.mux.by_conn.get(conn) if conn is not None else None
        if up is None or up.h2 is None or not up.settled:
            return None
        enabled = up.h2.remote_settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL, 0)
        return conn if enabled == 1 else None

    def wait(self, conn: Conn, token: int) -> None:
        self.mux.wait(conn, token)

    def waiting(self, conn: Conn, token: int) -> bool:
        return self.mux.waiting(conn, token)

    def forget(self, conn: Conn, token: int) -> None:
        self.mux.forget(conn, token)

    def opening(self, conn: Conn, key: ServerKey, token: int) -> None:
        raise AssertionError("a WebSocket's session opens HTTP/1.1 connections only")

    def shares(self, conn: Conn) -> bool:
        return self.mux.shares(conn)

    def channel(self, conn: Conn, token: int) -> WsChannel:
        return WsChannel(self.mux.channel(conn, token))


class WsResponses:
    """The stream's response for the session: a ``2xx`` as the ``101`` it stands
    for (the exchange switches); anything else as it came."""

    __slots__ = ("inner", "switched")

    def __init__(self, inner: ChannelResponses) -> None:
        self.inner = inner
        self.switched = False

    @property
    def buffered(self) -> int:
        return self.inner.buffered

    def next_event(self) -> Event | None:
        if self.switched:
            return None  # the frames are the WebSocket's (``WsChannel.frames``)
        event = self.inner.next_event()
        if type(event) is ResponseHead and 200 <= event.status < 300:
            self.switched = True
            return replace(event, status=101, reason=b"Switching Protocols", framing=TUNNEL)
        return event

    def feed(self, data: bytes) -> None:
        self.inner.feed(data)

    def feed_eof(self) -> None:
        self.inner.feed_eof()

    def expect(self, method: bytes) -> None:
        self.inner.expect(method)

    def take_remaining(self) -> bytes:
        return b""


class WsChannel:
    """The handshake's exchange on a stream of a shared connection (a ``StreamChannel``)."""

    __slots__ = ("inner", "responses")

    def __init__(self, inner: Channel) -> None:
        self.inner = inner
        self.responses = WsResponses(inner.responses)

    @property
    def blocked(self) -> bool:
        return self.inner.blocked

    def hold(self, held: bool) -> None:
        self.inner.hold(held)

    def send_head(
        self, head: RequestHead, scheme: str, authority: str, path: bytes, end: bool
    ) -> None:
        """The extended CONNECT (RFC 8441 §4-5); the stream stays open whatever ``end``."""
        inner = self.inner
        h2 = inner.h2
        inner.stream = inner.responses.stream = h2.get_next_available_stream_id()
        inner.by_stream[inner.stream] = inner
        inner.method = b"CONNECT"
        block = request_block(head, scheme, authority, path)
        fields = [(k, v) for k, v in block[4:] if k not in _NOT_SENT]
        pseudo = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *block[1:4]]
        h2.send_headers(inner.stream, pseudo + fields)

    def send_data(self, data: bytes) -> None:
        self.inner.send_data(data)

    def end(self, trailers: Fields) -> None:
        """The handshake has no body: its end is not the stream's."""

    def take(self, out: list[Command]) -> None:
        self.inner.take(out)

    def close(self, out: list[Command]) -> None:
        self.inner.close(out)

    # -- the WebSocket (``wsstream``) ---------------------------------------------
    def frames(self) -> Event | None:
        """The server's next frames (``BodyData``), its end, or None; raises
        ``ProtocolError`` when the stream was reset or the connection lost."""
        return self.inner.responses.next_event()

    def finish(self, out: list[Command]) -> None:
        """Our side is done (END_STREAM after what is queued, §6); the stream's
        place on the connection is freed, what the server still sends dropped."""
        inner = self.inner
        inner.end(())
        responses = inner.responses
        if responses.buffered:  # taken by nobody: the connection's window gets it back
            inner.h2.acknowledge_received_data(responses.buffered, inner.stream)
            responses.buffered = 0
            responses.events.clear()
        inner.take(out)
        if not inner.closed:
            inner.closed = True
            inner.on_close(inner)
