"""A WebSocket on an HTTP/2 stream (RFC 8441): the handshake's exchange, then the layer.

``WsSession`` is the session of an extended CONNECT stream (``extconnect``):
until the server switches it is an ordinary ``HttpSession`` (rules, hooks,
its HTTP/1.1 server connection, the record); the ``StartTunnel`` that a
``101`` ends with starts the same ``WebSocketLayer`` an HTTP/1.1 upgrade
gets (``proxy.layers.websocket``), whose client is the stream:

* what the layer sends the client goes out as DATA on the stream, within the
  client's windows (``ClientLink``; a slow client pauses the server as for
  any stream, ``backpressure``);
* the stream's DATA is the client's frames, acknowledged as the layer takes
  them; the client's END_STREAM is its FIN, its RST_STREAM a reset (§6);
* the layer closing the client is END_STREAM after what is queued (the
  Close frame first), or RST_STREAM CANCEL for an abrupt end (§6).

Its server is an HTTP/1.1 connection, or a stream of a shared HTTP/2 one
(``wsupstream``): then the layer's frames for the server go out through
that ``WsChannel`` and the server's come from it, with the same mapping.

The WebSocket's end records the exchange (kind ``websocket``), as a tunnel's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from h2.errors import ErrorCodes

from proxy.flow.record import Address
from proxy.http1 import BodyData, EndOfMessage, ProtocolError
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Conn,
    SendData,
    StartTunnel,
)
from proxy.layers.events import ConnectionClosed, DataReceived, EofReceived, Event, TunnelEnded
from proxy.layers.http2.extconnect import WsStreamCodec
from proxy.layers.http2.link import ClientLink
from proxy.layers.http2.upstream import UpstreamMux
from proxy.layers.http2.wsupstream import WsChannel, WsMux
from proxy.layers.websocket.layer import WebSocketLayer
from proxy.layers.websocket.setup import websocket_layer
from proxy.session.config import SessionConfig
from proxy.session.http import HttpSession


def ws_session(
    config: SessionConfig,
    client: Address,
    link: ClientLink,
    ids: Iterator[int],
    stream: int,
    mux: UpstreamMux,
) -> HttpSession:
    """The session of an extended CONNECT on ``stream``: to a shared HTTP/2
    connection whose server takes extended CONNECTs (``wsupstream``), else as
    HTTP/1.1 on a connection of its own (no ``h2`` offered in ALPN)."""
    codec = WsStreamCodec(config, link, stream)
    return WsSession(replace(config, http2=False), client, codec, ids, stream, WsMux(mux))


class WsSession(HttpSession):
    """An extended CONNECT's exchange; after the server's ``101``, its WebSocket."""

    __slots__ = ("codec", "eof_sent", "ws")

    def __init__(
        self,
        config: SessionConfig,
        client: Address,
        codec: WsStreamCodec,
        ids: Iterator[int],
        stream: int,
        mux: WsMux,
    ) -> None:
        super().__init__(config, client, codec, ids, mux, stream)
        self.codec = codec
        self.ws: WebSocketLayer | None = None
        self.eof_sent = False  # the client's END_STREAM went to the layer

    def handle(self, event: Event) -> list[Command]:
        ws = self.ws
        if ws is None:
            out = super().handle(event)
            if out and type(out[-1]) is StartTunnel:
                cmd = out.pop()
                assert isinstance(cmd, StartTunnel)
                self._start(cmd.server, cmd.to_client, out)
                if self.ws is not None:
                    self._finished(self.ws, out)
            return out
        if ws.done is not None:
            return []
        out = []
        channel = self.channel
        if channel is not None and type(event) is DataReceived and event.conn == ws.server:
            self._from_channel(ws, channel, out)  # a wake: the stream has frames or news
            self.pump_client(out)  # and its window may have room again
        else:
            self._to_stream(ws.handle(event), out)
        self._finished(ws, out)
        return out

    @property
    def channel(self) -> WsChannel | None:
        """The stream of a shared HTTP/2 server connection the WebSocket is on, if so."""
        channel = self.server.channel
        return channel if isinstance(channel, WsChannel) else None

    def _from_channel(self, ws: WebSocketLayer, channel: WsChannel, out: list[Command]) -> None:
        """The server's frames, its END_STREAM (a FIN) or its reset (§6)."""
        while ws.done is None:
            try:
                event = channel.frames()
            except ProtocolError:
                self._to_stream(ws.handle(ConnectionClosed(ws.server, reset=True)), out)
                return
            if event is None:
                return
            if type(event) is BodyData:
                self._to_stream(ws.handle(DataReceived(ws.server, event.data)), out)
            elif type(event) is EndOfMessage:
                self._to_stream(ws.handle(EofReceived(ws.server)), out)

    def pump_client(self, out: list[Command]) -> list[Command]:
        """Before the switch, the handshake's exchange; after it, the stream's frames."""
        ws = self.ws
        if ws is None:
            return super().pump_client(out)
        if ws.done is not None:
            return out
        channel = self.channel
        if channel is not None and channel.blocked:  # the server's window is full
            return out  # the client's frames wait, unacknowledged
        data = self.codec.ws_requests.take()
        if data:
            self._to_stream(ws.handle(DataReceived(CLIENT, data)), out)
        if self.codec.eof and not self.eof_sent and ws.done is None:
            self.eof_sent = True
            self._to_stream(ws.handle(EofReceived(CLIENT)), out)
        self._finished(ws, out)
        return out

    def _start(self, server: Conn, to_client: bytes, out: list[Command]) -> None:
        """The server switched: the WebSocket layer takes the stream over."""
        ex = self.tunnel
        assert ex is not None and ex.response is not None
        if self.codec.refused is not None:  # the client got a 502 for it
            self._fail(server, self.codec.refused, out)
            return
        # The layer reads the switch from the head the client got; ours is the
        # 200 of RFC 8441 §5, so it is shown the 101 that head stands for.
        delivered = ex.response
        ex.response = replace(delivered, status=101)
        try:
            ws = websocket_layer(ex, self.config, server)
        finally:
            ex.response = delivered
        if ws is None:  # a 101 for something the layer cannot read
            error = "server: switched to a protocol or extension not readable over HTTP/2"
            self._fail(server, error, out)
            return
        self.ws = ws
        self._to_stream(ws.start(b"", to_client), out)
        channel = self.channel
        if channel is not None:  # frames that came with the server's 200
            self._from_channel(ws, channel, out)
        self.pump_client(out)

    def _fail(self, server: Conn, error: str, out: list[Command]) -> None:
        """No WebSocket after all: the server closed, the stream reset, the record says why."""
        out.append(CloseConnection(server, abort=True))
        self.codec.link.reset(self.codec.stream, ErrorCodes.CANCEL)
        self._take(out)
        out += super().handle(TunnelEnded(None, error))

    def _to_stream(self, commands: list[Command], out: list[Command]) -> None:
        """The layer's commands, its client being the stream (RFC 8441 §6)."""
        link, stream = self.codec.link, self.codec.stream
        channel = self.channel
        for cmd in commands:
            if type(cmd) is SendData and cmd.conn.is_client:
                if cmd.at is not None:  # other streams' frames due now are not held behind it
                    self._take(out)
                link.data(stream, cmd.data)
                self._take(out, cmd.at)
            elif type(cmd) is CloseConnection and cmd.conn.is_client:
                if cmd.abort:
                    link.reset(stream, ErrorCodes.CANCEL)
                else:
                    link.end(stream)
                self.codec.ended = True
                self._take(out)
            elif channel is not None and type(cmd) in (SendData, CloseConnection):
                self._to_channel(channel, cmd, out)
            else:
                out.append(cmd)

    def _to_channel(self, channel: WsChannel, cmd: Command, out: list[Command]) -> None:
        """The layer's commands for its server when that is a stream (RFC 8441 §6)."""
        if isinstance(cmd, SendData):
            if cmd.at is not None:  # the connection's frames due now go now
                channel.take(out)
            channel.send_data(cmd.data)
            frames: list[Command] = []
            channel.take(frames)
            out += [replace(c, at=cmd.at) if isinstance(c, SendData) else c for c in frames]
        elif isinstance(cmd, CloseConnection) and cmd.abort:
            channel.close(out)  # RST_STREAM CANCEL
        else:
            channel.finish(out)  # END_STREAM

    def _finished(self, ws: WebSocketLayer, out: list[Command]) -> None:
        """The WebSocket ended: the exchange is recorded (and the session done)."""
        if ws.done is not None and self.tunnel is not None:
            out += super().handle(TunnelEnded(ws.done))

    def _take(self, out: list[Command], at: float | None = None) -> None:
        send = self.codec.link.take(at)
        if send is not None:
            out.append(send)
