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

from proxy.http1 import BodyData, EndOfMessage, FramingKind, ResponseParser
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
from proxy.session import routing
from proxy.session.codec import RequestSource
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange
from proxy.session.target import Target

# (host, port, SNI): SNI None for plain TCP.
ServerKey = tuple[str, int, str | None]


class ServerSide:
    __slots__ = ("_ids", "closing", "config", "conn", "key", "ready", "responses")

    def __init__(self, config: SessionConfig, ids: Iterator[int] | None = None) -> None:
        self.config = config
        self.conn: Conn | None = None
        self.key: ServerKey | None = None
        self.ready = False  # connected (or taken from the pool)
        self.closing = False  # the server sent EOF
        self.responses: ResponseParser | None = None
        # Names for the connections it opens; sessions that share one client
        # connection (HTTP/2 streams) share one source, so no two collide.
        self._ids = ids if ids is not None else itertools.count(1)

    def key_for(self, target: Target) -> ServerKey:
        """(host, port, SNI) of the connection a request needs."""
        if target.scheme != "https":
            return (target.host, target.port, None)
        up = self.config.upstream
        return (target.host, target.port, (up.sni if up is not None else None) or target.host)

    def serves(self, key: ServerKey) -> bool:
        return self.key == key and self.ready

    def open(
        self, key: ServerKey, out: list[Command], reuse: bool = True, tunnel: bool = False
    ) -> None:
        """Ask for a (new or pooled) connection for ``key``; the shell answers for ``conn``.

        ``tunnel``: for a CONNECT relayed as is (never sent to a next proxy in absolute-form).
        """
        self.conn = server_conn(next(self._ids))
        self.key = key
        tls = TlsRequest(key[2]) if key[2] is not None else None
        via = routing.via_for(self.config, key[0], key[1])
        forward = tls is None and not tunnel and routing.forwards_plain(via) is not None
        out.append(OpenServer(self.conn, key[0], key[1], tls, reuse, via, forward))

    def connected(self) -> None:
        self.ready = True
        self.closing = False
        self.responses = ResponseParser(self.config.limits)

    def failed(self) -> None:
        self.ready = False
        self.key = None
        self.conn = None

    def release(self, out: list[Command], reusable: bool, abort: bool = False) -> None:
        """Done with the current connection: pooled when ``reusable``, reset on ``abort``."""
        if self.key is not None and self.conn is not None:
            out.append(ReleaseServer(self.conn, reusable, abort))
        self.key = None
        self.conn = None
        self.ready = False
        self.responses = None

    @property
    def idle_reusable(self) -> bool:
        """Between exchanges and still good: the connection can serve others."""
        return self.ready and not self.closing

    # -- the request, out --------------------------------------------------------
    def send(self, data: bytes, out: list[Command]) -> None:
        assert self.conn is not None
        out.append(SendData(self.conn, data))

    def send_request(self, ex: Exchange, requests: RequestSource, out: list[Command]) -> None:
        """Forward the head, but only after the body bytes already here parse.

        A ``ProtocolError`` from the client's body leaves ``out`` without the head.
        """
        assert self.responses is not None
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

    def request_event(self, ex: Exchange, event: object, out: list[Command]) -> None:
        """A body event of the request being forwarded."""
        if isinstance(event, BodyData):
            ex.count_request(event.data, self.config.preview_bytes)
            self.forward_body(ex, event.data, out)
        elif isinstance(event, EndOfMessage):
            if ex.forward.framing.kind is FramingKind.CHUNKED:
                self.send(last_chunk(event.trailers), out)
            self.request_complete(ex)

    def forward_body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        if ex.forward.framing.kind is FramingKind.CHUNKED:
            for piece in chunk(data):
                self.send(piece, out)
        else:
            self.send(data, out)

    def request_complete(self, ex: Exchange) -> None:
        ex.request_done = True
        ex.request_done_at = self.config.clock()
