"""HTTP/2 server connections shared by the exchanges of one client connection.

``UpstreamMux`` (the ``proxy.session.shared.UpstreamMux`` of a layer)
keeps, per (host, port, SNI, h2c), one HTTP/2 connection that every
session of the layer uses, each exchange on a stream of its own:

* A connection is opened by the first session that needs it, offering
  ``h2`` and ``http/1.1`` in ALPN (or with prior knowledge, h2c). Sessions
  that need the same server meanwhile wait on it. When it opens: HTTP/2
  (ALPN ``h2``, or h2c) wakes the waiters, as many as the server's
  ``SETTINGS_MAX_CONCURRENT_STREAMS`` allows, the rest queue for a freed
  stream; HTTP/1.1 goes to the first waiter as its own connection and the
  others open their own (``reopen``).
* Frames from the server are turned into each stream's response events;
  the sessions concerned are woken (``wakes``) with an event naming the
  connection, which the layer routes to them by their token.
* GOAWAY: no new streams on it; streams the server never processed fail.
  The connection closes once its last stream is done; the rest close with
  the client connection (``close_all``).

The layer drives it: ``handle`` for events on a connection it ``owns``,
then ``drain`` for the wakes and reopens to carry out.
"""

from __future__ import annotations

from collections import deque

import h2.events as ev
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError as H2ProtocolError

from proxy.http1 import BodyData, EndOfMessage
from proxy.layers.commands import (
    CloseConnection,
    Command,
    Conn,
    ReleaseServer,
    SendData,
    SetTimer,
)
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    ServerFailed,
    ServerOpened,
)
from proxy.layers.http2.channel import Channel, response_head
from proxy.layers.http2.link import connection, initiate, release
from proxy.session.shared import ServerKey

MAX_STREAMS = 100  # per connection, whatever the server allows beyond
KEEPALIVE = 30.0  # seconds of silence before a PING; as long again without an answer: dead
KEEPALIVE_TOKEN = 999  # the keepalive timer of the layer that owns a mux
_CONNECTION_WIDE = (ev.WindowUpdated, ev.RemoteSettingsChanged)  # every channel may send again


class Upstream:
    """One server connection that is, or may become, HTTP/2."""

    __slots__ = (
        "active", "channels", "conn", "draining", "h2", "heard", "key", "opened", "pinged",
        "settled", "waiters",
    )  # fmt: skip

    def __init__(self, conn: Conn, key: ServerKey) -> None:
        self.conn = conn
        self.key = key
        self.h2: H2Connection | None = None  # set once it speaks HTTP/2
        self.opened: ServerOpened | None = None
        self.waiters: deque[int] = deque()  # sessions waiting to open or for room
        self.channels: dict[int, Channel] = {}  # by stream id once its head is out
        self.active: set[Channel] = set()
        self.draining = False
        self.heard = True  # the server sent something since the last keepalive tick
        self.pinged = False  # a keepalive PING is unanswered
        self.settled = False  # the server's SETTINGS came: it does speak HTTP/2

    def failure(self, message: str) -> str:
        """Why streams fail: said plainly when an h2c server never spoke HTTP/2."""
        if self.key[3] and not self.settled:
            return "the server does not speak HTTP/2 with prior knowledge (h2c)"
        return message

    @property
    def room(self) -> int:
        h2 = self.h2
        if h2 is None or self.draining:
            return 0
        limit = min(MAX_STREAMS, int(h2.remote_settings.max_concurrent_streams))
        return limit - len(self.active)


class UpstreamMux:
    __slots__ = ("by_conn", "by_key", "reopen", "ticking", "wakes")

    def __init__(self) -> None:
        self.ticking = False
        self.by_conn: dict[Conn, Upstream] = {}
        self.by_key: dict[ServerKey, Upstream] = {}
        self.wakes: list[tuple[int, Event]] = []
        self.reopen: list[int] = []

    # -- what sessions ask (proxy.session.shared.UpstreamMux) -----------------------
    def lookup(self, key: ServerKey) -> Conn | None:
        up = self.by_key.get(key)
        return up.conn if up is not None and not up.draining else None

    def wait(self, conn: Conn, token: int) -> None:
        up = self.by_conn[conn]
        up.waiters.append(token)
        if up.h2 is not None:
            self._wake_waiters(up)

    def waiting(self, conn: Conn, token: int) -> bool:
        up = self.by_conn.get(conn)
        return up is not None and token in up.waiters

    def forget(self, conn: Conn, token: int) -> None:
        up = self.by_conn.get(conn)
        if up is not None and token in up.waiters:
            up.waiters.remove(token)

    def opening(self, conn: Conn, key: ServerKey, token: int) -> None:
        up = Upstream(conn, key)
        up.waiters.append(token)
        self.by_conn[conn] = up
        self.by_key[key] = up

    def shares(self, conn: Conn) -> bool:
        up = self.by_conn.get(conn)
        return up is not None and up.h2 is not None

    def channel(self, conn: Conn, token: int) -> Channel:
        up = self.by_conn[conn]
        assert up.h2 is not None
        channel = Channel(conn, up.h2, token, self._closed_channel, up.channels)
        up.active.add(channel)
        return channel

    # -- what the layer asks ----------------------------------------------------------
    def owns(self, conn: Conn) -> bool:
        return conn in self.by_conn

    def drain(self) -> tuple[list[tuple[int, Event]], list[int]]:
        wakes, self.wakes = self.wakes, []
        reopen, self.reopen = self.reopen, []
        return wakes, reopen

    def flush(self, out: list[Command]) -> None:
        """What the connections have to send now: above all the WINDOW_UPDATEs
        for data the sessions just took, which a server may be waiting for."""
        for up in self.by_conn.values():
            self._take(up, out)

    def handle(self, event: Event) -> list[Command]:
        """An event on a connection this mux owns; sessions to wake go to ``wakes``."""
        up = self.by_conn[event.conn]  # type: ignore[union-attr]
        if isinstance(event, ServerOpened):
            return self._opened(up, event)
        if isinstance(event, ServerFailed):
            self._forget(up)
            self.wakes += [(token, event) for token in up.waiters]
            return []
        if isinstance(event, DataReceived):
            return self._frames(up, event.data)
        if isinstance(event, EofReceived | ConnectionClosed):
            self._gone(up, up.failure("the server closed the connection"))
        return []

    def tick(self) -> list[Command]:
        """Keepalive, every ``KEEPALIVE`` seconds while there are shared connections:
        a connection the server said nothing on since the last tick gets a PING;
        one whose PING went unanswered a whole tick is taken for dead (its
        streams fail, waiters open anew) and closed."""
        out: list[Command] = []
        for up in list(self.by_conn.values()):
            if up.h2 is None:
                continue
            if up.pinged and not up.heard:
                self._gone(up, f"the server did not answer a PING in {KEEPALIVE:g} s")
                out.append(CloseConnection(up.conn, abort=True))
                continue
            if not up.heard:
                up.h2.ping(b"tapproxy")
                up.pinged = True
                self._take(up, out)
            up.heard = False
        return out

    def keepalive(self, out: list[Command], fired: bool = False) -> None:
        """Keep the keepalive timer running while some connection speaks HTTP/2.

        ``fired``: the timer just fired (tick, then run it again if needed).
        """
        if fired:
            self.ticking = False
            out += self.tick()
        if not self.ticking and any(up.h2 is not None for up in self.by_conn.values()):
            self.ticking = True
            out.append(SetTimer(KEEPALIVE, KEEPALIVE_TOKEN))

    def close_all(self) -> list[Command]:
        """The client connection is gone: GOAWAY and close every shared connection."""
        out: list[Command] = []
        for up in list(self.by_conn.values()):
            if up.h2 is not None:
                up.h2.close_connection()
                self._take(up, out)
            out.append(CloseConnection(up.conn))
            if up.h2 is not None:
                release(up.h2)
        self.by_conn.clear()
        self.by_key.clear()
        return out

    # -- connection life -----------------------------------------------------------------
    def _opened(self, up: Upstream, event: ServerOpened) -> list[Command]:
        alpn = event.tls.alpn if event.tls is not None else None
        if alpn != "h2" and not up.key[3]:
            return self._http1(up, event)
        up.opened = event
        h2 = up.h2 = connection(client_side=True)
        initiate(h2)
        out: list[Command] = []
        self._take(up, out)
        self._wake_waiters(up)
        return out

    def _http1(self, up: Upstream, event: ServerOpened) -> list[Command]:
        """The server chose HTTP/1.1: the connection is the first waiter's own."""
        self._forget(up)
        if not up.waiters:
            return [ReleaseServer(up.conn, reusable=True)]
        self.wakes.append((up.waiters.popleft(), event))
        self.reopen += up.waiters
        return []

    def _wake_waiters(self, up: Upstream) -> None:
        opened = up.opened
        assert opened is not None
        room = up.room
        while up.waiters and room > 0:
            room -= 1
            self.wakes.append((up.waiters.popleft(), opened))

    def _closed_channel(self, channel: Channel) -> None:
        up = self.by_conn.get(channel.conn)
        if up is None:
            return
        up.active.discard(channel)
        up.channels.pop(channel.stream, None)
        if up.draining and not up.active:
            self._forget(up)
            return
        if up.waiters:
            self._wake_waiters(up)

    def _forget(self, up: Upstream) -> None:
        self.by_conn.pop(up.conn, None)
        if self.by_key.get(up.key) is up:
            del self.by_key[up.key]
        if up.h2 is not None:
            release(up.h2)

    def _gone(self, up: Upstream, message: str) -> None:
        """The connection ended: every stream on it fails, waiters open anew."""
        self._forget(up)
        for channel in up.active:
            channel.responses.fail(message)
            self.wakes.append((channel.token, DataReceived(up.conn, b"")))
        self.reopen += up.waiters
        up.waiters.clear()

    # -- frames ----------------------------------------------------------------------------
    def _frames(self, up: Upstream, data: bytes) -> list[Command]:
        h2 = up.h2
        out: list[Command] = []
        if h2 is None:
            return out
        up.heard = True
        up.pinged = False
        try:
            events = h2.receive_data(data)
        except H2ProtocolError as e:
            self._take(up, out)
            self._gone(up, up.failure(f"HTTP/2 protocol error from the server: {e}"))
            out.append(CloseConnection(up.conn))
            return out
        woken: dict[int, None] = {}  # the sessions to wake, in the order their frames came
        for event in events:
            self._event(up, event, woken)
        self._take(up, out)
        wake = DataReceived(up.conn, b"")  # a wake only: the frames are the channel's
        self.wakes += [(token, wake) for token in woken]
        if up.draining and not up.active:
            out.append(CloseConnection(up.conn))
        return out

    def _event(self, up: Upstream, event: object, woken: dict[int, None]) -> None:
        """One h2 event of the connection: to the channel of its stream, or to all.

        The events of every response come first, and the channel of a stream
        is found by its id (``Channel.send_head`` registers it).
        """
        if isinstance(event, _CONNECTION_WIDE):
            if isinstance(event, ev.RemoteSettingsChanged):
                up.settled = True
            for c in up.active:
                c.flush()
                woken[c.token] = None
            if up.waiters:
                self._wake_waiters(up)
            return
        if isinstance(event, ev.ConnectionTerminated):
            self._goaway(up, event, woken)
            return
        stream: int = getattr(event, "stream_id", 0)
        channel = (up.channels.get(stream) or self._by_stream(up, stream)) if stream else None
        if channel is None:  # a stream we gave up: its data still counts for the connection
            if isinstance(event, ev.DataReceived) and up.h2 is not None:
                up.h2.acknowledge_received_data(event.flow_controlled_length, stream)
            return
        responses = channel.responses
        if isinstance(event, ev.DataReceived):
            data = event.data
            padding = event.flow_controlled_length - len(data)
            if padding:
                up.h2.acknowledge_received_data(padding, stream)  # type: ignore[union-attr]
            responses.push(BodyData(data))
        elif isinstance(event, ev.ResponseReceived):
            ended = event.stream_ended is not None
            responses.push(response_head(event.headers, ended, channel.method))
        elif isinstance(event, ev.StreamEnded):
            if not responses.complete:
                responses.push(EndOfMessage())
        elif isinstance(event, ev.InformationalResponseReceived):
            responses.push(response_head(event.headers, False, channel.method))
        elif isinstance(event, ev.TrailersReceived):
            responses.push(EndOfMessage(tuple(event.headers)))
        elif isinstance(event, ev.StreamReset):
            responses.fail(f"the server reset the stream ({_code(event.error_code)})")
        woken[channel.token] = None

    def _by_stream(self, up: Upstream, stream: int) -> Channel | None:
        channel = up.channels.get(stream)
        if channel is None:
            for c in up.active:
                if c.stream == stream:
                    up.channels[stream] = channel = c
                    break
        return channel

    def _goaway(self, up: Upstream, event: ev.ConnectionTerminated, woken: dict[int, None]) -> None:
        """No new streams here; those the server never processed fail (RFC 9113 §6.8)."""
        up.draining = True
        if self.by_key.get(up.key) is up:
            del self.by_key[up.key]
        last = event.last_stream_id or 0
        for c in up.active:
            if c.stream > last or event.error_code:
                c.responses.fail(f"the server sent GOAWAY ({_code(event.error_code)})")
                woken[c.token] = None
        self.reopen += up.waiters
        up.waiters.clear()

    def _take(self, up: Upstream, out: list[Command]) -> None:
        if up.h2 is not None:
            data = up.h2.data_to_send()
            if data:
                out.append(SendData(up.conn, data))


def _code(code: int | None) -> str:
    try:
        return ErrorCodes(code or 0).name
    except ValueError:
        return f"error {code}"
