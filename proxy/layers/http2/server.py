"""The HTTP/2 layer facing the client: one connection, many exchanges.

``Http2Server`` owns a client connection that speaks HTTP/2 (ALPN ``h2``
under interception, the h2c preface on a plain listener or inside a
CONNECT tunnel, or ``Upgrade: h2c``). h2 turns the client's bytes into
stream events; each request stream gets an ``HttpSession`` of its own with
a ``StreamCodec`` (``streamcodec``), so rules, hooks, faults and records
work per stream exactly as for an HTTP/1 exchange, and its server side is
HTTP/1.1 (translation, RFC 9113 §8.2.2 and RFC 9112). An extended CONNECT
(RFC 8441) is a WebSocket on its stream (``streams``, ``wsstream``).

Events name the stream they belong to: client frames by their stream id,
server connections by the session that opened them (``OpenServer.conn``,
named from one shared source), timers by a token this layer hands out,
hook verdicts by ``HookResumed.stream``. Per-stream backpressure: while the
client's window keeps a stream's response data queued beyond
``backpressure.STREAM_BACKLOG``, that stream's server waits (``Backpressure``).
"""

from __future__ import annotations

import itertools

import h2.events as ev
from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from h2.exceptions import ProtocolError as H2ProtocolError

from proxy.flow.hooks import HookKind
from proxy.flow.record import Address
from proxy.http1 import BodyData, EndOfMessage, RequestHead
from proxy.http1.parser import FORBIDDEN_TRAILERS
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Conn,
    Hook,
)
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    HookResumed,
    Stopping,
    TimedOut,
    TimeoutKind,
    TimerFired,
)
from proxy.layers.http2 import refusals
from proxy.layers.http2.backpressure import Backpressure
from proxy.layers.http2.floods import LIMITS, WINDOW, FloodGuard, flood_kind
from proxy.layers.http2.link import ClientLink, release
from proxy.layers.http2.names import StreamNames
from proxy.layers.http2.streamcodec import StreamCodec
from proxy.layers.http2.streams import Refused, StreamOpener
from proxy.layers.http2.upstream import KEEPALIVE_TOKEN, UpstreamMux
from proxy.session.config import SessionConfig
from proxy.session.http import HttpSession

FIRST_SERVER_ID = 2_000_000  # server connections of streams: one range per client connection
Headers = list[tuple[bytes, bytes]]


class Http2Server:
    """HTTP/2 from the client; every request stream an exchange of its own."""

    __slots__ = (
        "client", "closed", "config", "conn_ids", "draining", "flow", "guard", "link", "mux",
        "names", "opener", "sessions",
    )  # fmt: skip

    def __init__(self, config: SessionConfig, client: Address) -> None:
        self.config = config
        self.client = client
        self.link = ClientLink()
        self.sessions: dict[int, HttpSession] = {}
        self.names = StreamNames()  # server connections, timers and hooks, per stream
        self.conn_ids = itertools.count(FIRST_SERVER_ID)
        self.flow = Backpressure(self.link)
        self.mux = UpstreamMux()  # HTTP/2 server connections the streams share
        self.opener = StreamOpener(config, client, self.link, self.conn_ids, self.mux)
        self.draining = False  # the client said GOAWAY: close after the last stream
        self.guard = FloodGuard(config.clock)
        self.closed = False

    def start(self, data: bytes, upgrade: tuple[bytes, RequestHead] | None = None) -> list[Command]:
        """Our SETTINGS, then the client's first bytes (starting with its preface).

        ``upgrade``: the HTTP2-Settings of an ``Upgrade: h2c`` request and
        that request, which is stream 1, already complete (RFC 7540 §3.2).
        """
        out: list[Command] = []
        if upgrade is None:
            self.link.start()
            self._take(out)
        else:
            settings, head = upgrade
            try:
                self.link.start(settings)
            except (H2ProtocolError, ValueError) as e:  # a bad HTTP2-Settings value
                return self._connection_error(f"HTTP2-Settings: {e}", out)
            self._take(out)  # our SETTINGS first, right behind the 101
            self._open_stream(1, self.opener.session(1, head, True), out)
            self._take(out)
        if data:
            out += self.handle(DataReceived(CLIENT, data))
        return out

    # -- events -----------------------------------------------------------------------
    def handle(self, event: Event) -> list[Command]:
        if self.closed:
            return []
        try:
            return self._dispatch(event)
        except H2Error as e:  # a state h2 refuses (a race with a reset): end it, recorded
            return self._connection_error(f"{type(e).__name__}: {e}", [], who="proxy")

    def _dispatch(self, event: Event) -> list[Command]:
        conn: Conn | None = getattr(event, "conn", None)
        if conn is not None:  # data, end, close; a server opened or failed
            if conn.is_client:
                return self._client_event(event)
            if self.mux.owns(conn):
                return self._shared(event)
            return self._to_stream(self.names.servers.get(conn), event)
        kind = type(event)
        if kind is TimerFired:
            return self._timer(event.token)  # type: ignore[union-attr]
        if kind is HookResumed:
            return self._to_stream(event.stream, event)  # type: ignore[union-attr]
        if kind is TimedOut:
            return self._timed_out(event)  # type: ignore[arg-type]
        out: list[Command] = []
        if kind is Stopping:  # WebSockets get their Close first, then the GOAWAY
            for stream, session in list(self.sessions.items()):
                self._run(stream, session, session.handle(event), out)
            self.link.conn.close_connection()
            self._take(out)
        return out

    def _timer(self, token: int) -> list[Command]:
        if token != KEEPALIVE_TOKEN:
            stream, token = self.names.timer(token)
            return self._to_stream(stream, TimerFired(token))
        out: list[Command] = []
        self.mux.keepalive(out, fired=True)
        self._wake(out)
        self._take(out)
        return out

    def _shared(self, event: Event) -> list[Command]:
        """An event on a shared server connection: to the mux, then to the streams it woke."""
        out = self.mux.handle(event)
        self._wake(out)
        self._take(out)
        self.mux.keepalive(out)
        return out

    def _wake(self, out: list[Command]) -> None:
        """Carry out what the mux decided: wake sessions, have others open anew."""
        while True:
            wakes, reopen = self.mux.drain()
            if not wakes and not reopen:
                return
            for token, event in wakes:
                session = self.sessions.get(token)
                if session is not None:
                    if not isinstance(event, DataReceived):
                        self.names.servers[event.conn] = token  # type: ignore[union-attr]
                    self._run(token, session, session.handle(event), out, wake=False)
            for token in reopen:
                session = self.sessions.get(token)
                key = session.server.key if session is not None else None
                if session is not None and key is not None:
                    commands: list[Command] = []
                    session.server.open(key, commands)
                    self._run(token, session, commands, out, wake=False)

    def _client_event(self, event: Event) -> list[Command]:
        if isinstance(event, DataReceived):
            return self._frames(event.data)
        out: list[Command] = []
        for session in list(self.sessions.values()):
            out += self.names.commands(session.handle(ConnectionClosed(CLIENT)), 0)
        self.sessions.clear()
        out += self.mux.close_all()
        if isinstance(event, EofReceived):
            self._take(out)  # the streams' resets, to a client that may still read
            out.append(CloseConnection(CLIENT))
        self._end()
        return out

    def _frames(self, data: bytes) -> list[Command]:
        out: list[Command] = []
        try:
            events = self.link.conn.receive_data(data)
        except H2ProtocolError as e:
            return self._connection_error(str(e) or type(e).__name__, out)
        for event in events:
            kind = flood_kind(event)
            if kind is not None and self.guard.count(kind):
                self.link.conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
                limit = f"more than {LIMITS[kind]} in {WINDOW:g} s"
                return self._connection_error(f"{kind.value} flood ({limit})", out)
            self._h2_event(event, out)
        self._take(out)
        return out

    def _h2_event(self, event: object, out: list[Command]) -> None:
        if isinstance(event, ev.RequestReceived):
            self._request(event.stream_id, event.headers, event.stream_ended is not None, out)
        elif isinstance(event, ev.DataReceived):
            padding = event.flow_controlled_length - len(event.data)
            self.link.consumed(event.stream_id, padding)
            self._push(event.stream_id, BodyData(event.data), out)
        elif isinstance(event, ev.StreamEnded):
            self._stream_ended(event.stream_id, out)
        elif isinstance(event, ev.TrailersReceived):
            # Framing and routing never come from trailers (RFC 9110 §6.5.1), as for HTTP/1.
            kept = tuple((k, v) for k, v in event.headers if k.lower() not in FORBIDDEN_TRAILERS)
            self._push(event.stream_id, EndOfMessage(kept), out)
        elif isinstance(event, ev.StreamReset):
            self._reset_by_client(event.stream_id, event.error_code, out)
        elif isinstance(event, ev.WindowUpdated):
            for stream in self.link.flush_all():
                self._balance(stream, out)
        elif isinstance(event, ev.ConnectionTerminated):
            self._goaway(out)

    # -- streams ------------------------------------------------------------------------
    def _request(self, stream: int, headers: Headers, ended: bool, out: list[Command]) -> None:
        try:
            session = self.opener.request(stream, headers, ended)
        except Refused as e:
            self._refuse(stream, headers, str(e), out, e.status)
            return
        self._open_stream(stream, session, out)

    def _open_stream(self, stream: int, session: HttpSession, out: list[Command]) -> None:
        self.sessions[stream] = session
        self._run(stream, session, session.pump_client([]), out)

    def _push(self, stream: int, event: BodyData | EndOfMessage, out: list[Command]) -> None:
        session = self.sessions.get(stream)
        if session is None:  # a stream we already answered: drop what it sends
            if isinstance(event, BodyData):
                self.link.consumed(stream, len(event.data))
            return
        codec = session.client_side
        assert isinstance(codec, StreamCodec)
        codec.requests.push(event)
        self._run(stream, session, session.pump_client([]), out)

    def _stream_ended(self, stream: int, out: list[Command]) -> None:
        session = self.sessions.get(stream)
        if session is None:
            return
        codec = session.client_side
        assert isinstance(codec, StreamCodec)
        if not codec.eof:
            codec.eof = True
            events = codec.requests.events
            if not events or not isinstance(events[-1], EndOfMessage):
                codec.requests.push(EndOfMessage())
            self._run(stream, session, session.pump_client([]), out)

    def _reset_by_client(self, stream: int, code: int, out: list[Command]) -> None:
        session = self.sessions.get(stream)
        if session is None:
            return
        self._forget(stream, session)
        ex = session.ex
        if ex is not None:
            ex.error = f"client reset the stream ({refusals.code_name(code)})"
        codec = session.client_side
        assert isinstance(codec, StreamCodec)
        codec.ended = True
        out += self.names.commands(session.handle(ConnectionClosed(CLIENT, reset=True)), 0)

    def _to_stream(self, stream: int | None, event: Event) -> list[Command]:
        session = self.sessions.get(stream) if stream is not None else None
        if session is None or stream is None:
            return []
        out: list[Command] = []
        self._run(stream, session, session.handle(event), out)
        self._take(out)
        return out

    def _run(
        self,
        stream: int,
        session: HttpSession,
        commands: list[Command],
        out: list[Command],
        wake: bool = True,
    ) -> None:
        out += self.names.commands(commands, stream)
        if session.closed and session.tunnel is None:
            self._forget(stream, session)
            if self.draining and not self.sessions:
                self._goaway(out)
        self._balance(stream, out)
        if wake:
            self._wake(out)

    def _forget(self, stream: int, session: HttpSession) -> None:
        self.sessions.pop(stream, None)
        self.flow.ended(stream, session)

    def _balance(self, stream: int, out: list[Command]) -> None:
        """A slow client's stream: its server waits; a fast one again: it goes on."""
        session = self.sessions.get(stream)
        if session is not None and self.flow.balance(stream, session, out):
            conn = session.server.conn  # take what waited on the shared connection
            if conn is not None:
                self._run(stream, session, session.handle(DataReceived(conn, b"")), out)

    # -- refusals and errors ----------------------------------------------------------------
    def _refuse(
        self, stream: int, headers: Headers, error: str, out: list[Command], status: int = 400
    ) -> None:
        record = refusals.refuse_stream(
            self.link, self.config, self.client, stream, headers, error, status
        )
        out.append(Hook(HookKind.DONE, record, stream))

    def _connection_error(
        self, message: str, out: list[Command], who: str = "client"
    ) -> list[Command]:
        """The client broke the protocol: GOAWAY (h2 queued it), a record, the end."""
        self._take(out)
        for session in list(self.sessions.values()):
            if session.ex is not None:
                session.ex.error = f"{who}: HTTP/2 connection error: {message}"
            out += self.names.commands(session.handle(ConnectionClosed(CLIENT, reset=True)), 0)
        self.sessions.clear()
        self._take(out)  # the streams' resets behind the GOAWAY
        out.append(Hook(HookKind.DONE, refusals.broken(self.config, self.client, message, who)))
        out.append(CloseConnection(CLIENT))
        self._end()
        return out

    def _goaway(self, out: list[Command]) -> None:
        """The client said GOAWAY: finish what is under way, then close."""
        self.draining = True
        if not self.sessions:
            self._take(out)
            out += self.mux.close_all()
            out.append(CloseConnection(CLIENT))
            self._end()

    def _timed_out(self, event: TimedOut) -> list[Command]:
        out: list[Command] = []
        if not self.sessions:
            self.link.conn.close_connection()
            self._take(out)
            out.append(CloseConnection(CLIENT))
            self._end()
            return out
        for stream, session in list(self.sessions.items()):
            self._run(stream, session, session.handle(event), out)
        self._take(out)
        return out

    def deadline(self) -> TimeoutKind:
        if not self.sessions:
            return TimeoutKind.CLIENT_IDLE
        kinds = {session.deadline() for session in self.sessions.values()}
        if kinds == {TimeoutKind.HELD}:
            return TimeoutKind.HELD
        if TimeoutKind.RESPONSE_HEAD in kinds:
            return TimeoutKind.RESPONSE_HEAD
        if kinds == {TimeoutKind.TUNNEL_IDLE}:  # WebSockets only (RFC 8441)
            return TimeoutKind.TUNNEL_IDLE
        return TimeoutKind.TRANSFER_IDLE

    @property
    def idle(self) -> bool:
        return not self.sessions

    @property
    def flow_id(self) -> str | None:
        return None

    def _end(self) -> None:
        """No more from this client: its h2 connection object can go at once."""
        self.closed = True
        release(self.link.conn)

    def _take(self, out: list[Command]) -> None:
        """What the turn left to send, one send per connection: the servers', the client's."""
        self.mux.flush(out)
        send = self.link.take()
        if send is not None:
            out.append(send)
