"""Server connections shared by exchanges: what ``ServerSide`` needs of HTTP/2 upstreams.

An HTTP/1.1 server connection serves one exchange at a time, and belongs to
the session using it. An HTTP/2 one carries many exchanges at once, each on
a stream of its own, so it belongs to the layer that hosts the sessions
(``proxy.layers.http2.upstream.UpstreamMux``). A session's ``ServerSide``
asks the mux for a connection to a server (``lookup``, ``opening``); once
the mux knows the connection speaks HTTP/2 it wakes the session with
``ServerOpened`` naming that connection, and the session takes a
``StreamChannel`` for its exchange: the request goes out as frames on its
own stream, the response comes back as the same events our HTTP/1 parser
produces (head, body data, end with trailers).

``token`` names the session to the layer (an HTTP/2 stream id, or 0).
"""

from __future__ import annotations

from typing import Protocol

from proxy.http1 import Event, RequestHead
from proxy.http1.events import Fields
from proxy.layers.commands import Command, Conn

# (host, port, SNI, h2c): SNI None for plain TCP; h2c: HTTP/2 with prior
# knowledge over plain TCP (RFC 9113 §3.3).
ServerKey = tuple[str, int, str | None, bool]


class ResponseSource(Protocol):
    """Where ``ResponsePath`` takes a response's events from."""

    @property
    def buffered(self) -> int: ...

    def next_event(self) -> Event | None: ...
    def feed(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...
    def expect(self, method: bytes) -> None: ...
    def take_remaining(self) -> bytes: ...


class StreamChannel(Protocol):
    """One exchange on a shared HTTP/2 server connection."""

    @property
    def responses(self) -> ResponseSource: ...
    @property
    def blocked(self) -> bool:
        """The server's window keeps enough of the request queued: read no more of it."""
        ...

    def hold(self, held: bool) -> None:
        """Take no more of the response for now (the stream's window closes
        behind it: the server waits), or take it again."""
        ...

    def send_head(
        self, head: RequestHead, scheme: str, authority: str, path: bytes, end: bool
    ) -> None: ...
    def send_data(self, data: bytes) -> None: ...
    def end(self, trailers: Fields) -> None: ...
    def take(self, out: list[Command]) -> None:
        """The frames the connection has to send, as ``SendData``."""
        ...

    def close(self, out: list[Command]) -> None:
        """Done: reset the stream unless both sides ended it; frees its place."""
        ...


class UpstreamMux(Protocol):
    def lookup(self, key: ServerKey) -> Conn | None:
        """An HTTP/2 connection for ``key`` that is open, or opening with
        prior knowledge: the session waits on it instead of opening one."""
        ...

    def wait(self, conn: Conn, token: int) -> None: ...
    def waiting(self, conn: Conn, token: int) -> bool:
        """``token`` waits for ``conn`` (to open, or to have room)."""
        ...

    def forget(self, conn: Conn, token: int) -> None: ...
    def opening(self, conn: Conn, key: ServerKey, token: int) -> None:
        """``conn`` is being opened for ``key`` by the session ``token``; with TLS
        its ALPN decides, with h2c it is HTTP/2 from the start."""
        ...

    def shares(self, conn: Conn) -> bool:
        """``conn`` is an open HTTP/2 connection (woken sessions take a channel)."""
        ...

    def channel(self, conn: Conn, token: int) -> StreamChannel: ...
