"""The server-facing side of an HTTP/1 session: one server connection at a time.

``ServerSide`` names each server connection it opens (``OpenServer.conn``),
remembers which one serves which (host, port, SNI), frames requests onto it
from our own parse and parses what comes back. The head goes out only once
the body bytes that arrived with it have parsed: a smuggled second request in
the same packet must never reach the server (hazards 14 and 18-20); then the
body streams as it comes, re-chunked when the forwarded framing is chunked.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from proxy.http1 import BodyData, EndOfMessage, ProtocolError, ResponseParser
from proxy.http1.events import KIND_CHUNKED
from proxy.http1.writer import chunk, last_chunk
from proxy.layers.commands import (
    Command,
    Conn,
    OpenServer,
    ReleaseServer,
    SendData,
    TlsRequest,
    server_conn,
)
from proxy.session import grpcout, h2out, routing
from proxy.session.codec import RequestSource
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange
from proxy.session.h2out import is_grpc
from proxy.session.shared import ResponseSource, ServerKey, StreamChannel, UpstreamMux
from proxy.session.target import Target


class ServerSide:
    __slots__ = (
        "_ids", "channel", "closing", "config", "conn", "key", "mux", "ready", "responses",
        "token",
    )  # fmt: skip

    def __init__(
        self,
        config: SessionConfig,
        ids: Iterator[int] | None = None,
        mux: UpstreamMux | None = None,
        token: int = 0,
    ) -> None:
        self.config = config
        self.conn: Conn | None = None
        self.key: ServerKey | None = None
        self.ready = False  # connected (or taken from the pool)
        self.closing = False  # the server sent EOF
        self.responses: ResponseSource | None = None
        # Names for the connections it opens; sessions that share one client
        # connection (HTTP/2 streams) share one source, so no two collide.
        self._ids = ids if ids is not None else itertools.count(1)
        # HTTP/2 upstreams: the layer's shared connections, this session's name
        # there, and the stream of the current exchange on one of them.
        self.mux = mux
        self.token = token
        self.channel: StreamChannel | None = None

    def key_for(self, target: Target, ex: Exchange | None = None) -> ServerKey:
        """(host, port, SNI, h2c) of the connection a request needs.

        Plain HTTP goes as HTTP/2 with prior knowledge to a ``reverse:h2c://``
        upstream, and for a gRPC request that came over HTTP/2 (gRPC has no
        HTTP/1.1 form, so it is never downgraded).
        """
        if target.scheme != "https":
            up = self.config.upstream
            h2c = self.mux is not None and (
                (up is not None and up.h2c) or (ex is not None and is_grpc(ex))
            )
            return (target.host, target.port, None, h2c)
        up = self.config.upstream
        sni = (up.sni if up is not None else None) or target.host
        return (target.host, target.port, sni, False)

    def serves(self, key: ServerKey) -> bool:
        return self.key == key and self.ready and self.channel is None

    @property
    def pausable(self) -> Conn | None:
        """The connection to stop reading to hold a response (not a shared one:
        there the stream's flow control holds it)."""
        return self.conn if self.channel is None else None

    def open(
        self, key: ServerKey, out: list[Command], reuse: bool = True, tunnel: bool = False
    ) -> None:
        """Ask for a (new or pooled) connection for ``key``; the shell answers for ``conn``.

        ``tunnel``: for a CONNECT relayed as is (never sent to a next proxy in absolute-form).
        """
        self.key = key
        mux = self.mux if not tunnel else None
        existing = mux.lookup(key) if mux is not None else None
        if mux is not None and existing is not None:
            self.conn = existing  # woken with ServerOpened when it has room for us
            mux.wait(existing, self.token)
            return
        self.conn = server_conn(next(self._ids))
        h2 = mux is not None and self.config.http2
        tls = None
        if key[2] is not None:
            tls = TlsRequest(key[2], ("h2", "http/1.1") if h2 else ("http/1.1",))
        via = routing.via_for(self.config, key[0], key[1])
        forward = tls is None and not tunnel and routing.forwards_plain(via) is not None
        sharing = mux if h2 and (tls is not None or key[3]) else None
        if sharing is not None:
            # The pool holds HTTP/1.1 connections (made with another ALPN
            # offer): an HTTP/2 one is opened afresh, and stays with its layer.
            reuse = False
        out.append(OpenServer(self.conn, key[0], key[1], tls, reuse, via, forward))
        if sharing is not None:
            sharing.opening(self.conn, key, self.token)

    def connected(self) -> None:
        self.ready = True
        self.closing = False
        mux, conn = self.mux, self.conn
        if mux is not None and conn is not None and mux.shares(conn):
            self.channel = mux.channel(conn, self.token)
            self.responses = self.channel.responses
        else:
            self.responses = ResponseParser(self.config.limits)

    def failed(self) -> None:
        self.ready = False
        self.key = None
        self.conn = None

    def release(self, out: list[Command], reusable: bool, abort: bool = False) -> None:
        """Done with the current connection: pooled when ``reusable``, reset on ``abort``.

        A stream on a shared connection is reset unless it ended; the
        connection stays with its layer.
        """
        channel, self.channel = self.channel, None
        mux, conn = self.mux, self.conn
        if channel is not None:
            channel.close(out)
        elif mux is not None and conn is not None and mux.waiting(conn, self.token):
            mux.forget(conn, self.token)  # the connection goes on for the others
        elif self.key is not None and conn is not None:
            out.append(ReleaseServer(conn, reusable, abort))
        self.key = None
        self.conn = None
        self.ready = False
        self.responses = None

    @property
    def idle_reusable(self) -> bool:
        """Between exchanges and still good: the connection can serve others."""
        return self.ready and not self.closing

    # -- the request, out --------------------------------------------------------
    @property
    def blocked(self) -> bool:
        """The server cannot take more of the request yet (an HTTP/2 window)."""
        return self.channel is not None and self.channel.blocked

    def send(self, data: bytes, out: list[Command]) -> None:
        assert self.conn is not None
        out.append(SendData(self.conn, data))

    def send_request(self, ex: Exchange, requests: RequestSource, out: list[Command]) -> None:
        """Forward the head, but only after the body bytes already here parse.

        A ``ProtocolError`` from the client's body leaves ``out`` without the head.
        """
        assert self.responses is not None
        if self.channel is not None:
            h2out.send_request(
                self.channel, ex, requests, self.config.preview_bytes, self.config.clock(), out
            )
            grpcout.drain(ex, self.config, out)
            return
        if ex.request.version == b"2.0" and is_grpc(ex):
            raise ProtocolError(502, "gRPC needs HTTP/2 to the server, which answered in HTTP/1.1")
        if ex.prepared_body is not None:  # buffered for rules: framed by its length
            self.responses.expect(ex.forward.method)
            self.send(ex.out_head, out)
            if ex.prepared_body:
                self.send(ex.prepared_body, out)
            self.request_complete(ex)
            return
        body: list[Command] = []
        if ex.req_buffer:  # over --max-body: what was buffered goes first, the rest streams
            self.forward_body(ex, bytes(ex.req_buffer), body)
            ex.req_buffer = None
        while not ex.request_done:
            event = requests.next_event()
            if event is None:
                break
            self.request_event(ex, event, body)
        self.responses.expect(ex.forward.method)
        self.send(ex.out_head, out)
        out.extend(body)
        if ex.grpc is not None:
            grpcout.drain(ex, self.config, out)

    def request_event(self, ex: Exchange, event: object, out: list[Command]) -> None:
        """A body event of the request being forwarded."""
        if self.channel is not None:
            h2out.request_event(
                self.channel, ex, event, self.config.preview_bytes, self.config.clock(), out
            )
            grpcout.drain(ex, self.config, out)
            return
        if isinstance(event, BodyData):
            ex.count_request(event.data, self.config.preview_bytes)
            grpcout.drain(ex, self.config, out)
            self.forward_body(ex, event.data, out)
        elif isinstance(event, EndOfMessage):
            if ex.forward.framing.kind is KIND_CHUNKED:
                self.send(last_chunk(event.trailers), out)
            self.request_complete(ex)

    def forward_body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        if self.channel is not None:
            self.channel.send_data(data)
            self.channel.take(out)
            return
        if ex.forward.framing.kind is KIND_CHUNKED:
            for piece in chunk(data):
                self.send(piece, out)
        else:
            self.send(data, out)

    def request_complete(self, ex: Exchange) -> None:
        ex.request_done = True
        ex.request_done_at = self.config.clock()
