"""The IO shell for one client connection in an HTTP mode.

Feeds socket events to an ``HttpSession`` and carries out the commands it
returns. Reading from the client pauses for two independent reasons, kept
as flags: the session has enough unprocessed bytes (``backlog``), or the
upstream's write buffer is above its high-water mark (``upstream``). Reading
from the upstream pauses while the client's write buffer is full. This is
the whole of the backpressure: memory per connection stays bounded by the
water marks plus one read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from proxy.flow.record import TlsInfo
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Conn,
    Hook,
    Intercept,
    OpenServer,
    PauseReading,
    ReleaseServer,
    ResumeReading,
    SendData,
    SetTimer,
    StartTunnel,
)
from proxy.layers.events import (
    DataReceived,
    EofReceived,
    ServerFailed,
    ServerOpened,
    TimedOut,
    TimeoutKind,
    TimerFired,
)
from proxy.server.client_tunnels import TunnelSteps
from proxy.server.context import ListenerContext
from proxy.server.intercept import Interceptor, ListenerSniffer
from proxy.server.pacing import DelayedWriter
from proxy.server.relay import Relay
from proxy.server.transport import reset, tune
from proxy.server.upstream import UpstreamConnection, connect
from proxy.session.errors import UpstreamError
from proxy.session.http import HttpSession
from proxy.session.responses import error_response
from proxy.sinks.pcap import PcapTap
from proxy.tls.endpoint import TlsEndpoint, TlsError

_BACKLOG, _UPSTREAM = 1, 2


class ClientConnection(TunnelSteps, asyncio.Protocol):
    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.session: HttpSession | None = None
        self.upstream: UpstreamConnection | None = None
        self.relay: Relay | None = None
        # Interception: the sniffer/handshake driver, and the client-side TLS.
        self.interceptor: Interceptor | None = None
        self.tls: TlsEndpoint | None = None
        self._offered_alpn: tuple[str, ...] = ()
        self._outer: HttpSession | None = None  # the session that saw the CONNECT
        self.last_active = time.monotonic()
        self._tap: PcapTap | None = None
        self._delayed: DelayedWriter | None = None  # rule delays / bandwidth
        self._head_since = time.monotonic()
        self._paused = 0  # bit set of reasons reading from the client is paused
        self._client_write_paused = False
        self._connecting: asyncio.Task[None] | None = None
        self._server: Conn | None = None  # the session's name for self.upstream
        self._closed = False
        self._client_ended = False

    # -- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        tune(transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        if len(self.ctx.registry.connections) >= self.ctx.max_connections:
            # Over --max-connections: the newest connection is told and closed,
            # so the ones already served keep working (docs/limits.md).
            transport.write(error_response(503, "too many client connections"))
            transport.close()
            self._closed = True
            return
        self.session = HttpSession(self.ctx.session, (str(peer[0]), int(peer[1])))
        self.ctx.registry.connections.add(self)
        if self.ctx.intercept is not None and self.ctx.session.upstream is not None:
            # A reverse listener with interception on: clients may speak TLS.
            self._outer = self.session
            self.interceptor = ListenerSniffer(self)
        tap = self.ctx.tap
        self._tap = tap if tap is not None and tap.client_side else None
        if self._tap is not None:
            local = transport.get_extra_info("sockname")
            self._tap.open(id(self), (str(peer[0]), int(peer[1])), (local[0], local[1]))

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.tls is not None:
            self.tls_data(data)
        elif self.relay is not None:
            self._relay_in(data)
        elif self.interceptor is not None:
            self.interceptor.feed(data)
        elif self.session is not None:
            self._to_session(data)

    def _to_session(self, data: bytes) -> None:
        """Plaintext from the client into the HTTP session (tapped for --pcap)."""
        session = self.session
        assert session is not None
        if session.ex is None and not session.client_side.requests.buffered:
            self._head_since = time.monotonic()  # a new head starts: its clock runs
        tap = self._tap
        if tap is None:
            self.run(session.handle(DataReceived(CLIENT, data)))
            return
        tap.data(id(self), True, data, await_note=True)
        before = session.ex
        self.run(session.handle(DataReceived(CLIENT, data)))
        ex = session.ex
        started = ex is not None and ex is not before
        tap.note(id(self), f"tapproxy flow {ex.id}" if started and ex is not None else None)

    def eof_received(self) -> bool:
        if self.interceptor is not None and self.tls is not None:
            self.interceptor.handshake_failed(None, self._offered_alpn)
            return False
        if self.interceptor is not None:
            self.interceptor.feed(b"")
            self.interceptor = None
            return False
        relayed_tls = self.relay is not None and self.tls is not None
        self.client_ended()
        # Keep writing, a response may still be on its way; but a relayed TLS
        # connection has no half-close, so there the client is done.
        return not relayed_tls

    def client_ended(self) -> None:
        """The client's stream ended (TCP FIN, or close_notify inside TLS); once."""
        if self._client_ended:
            return
        self._client_ended = True
        if self.relay is not None:
            if self.tls is not None:  # TLS has no half-close: the client is done
                self.relay.client_lost(None)
            else:
                self.relay.client_eof()
        elif self.session is not None:
            self.run(self.session.handle(EofReceived(CLIENT)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._delayed is not None:
            self._delayed.cancel()
        if self._tap is not None:
            self._tap.close(id(self), reset=exc is not None, from_client=True)
        self.ctx.registry.connections.discard(self)
        if self._connecting is not None:
            self._connecting.cancel()
        if self.relay is not None:
            self.relay.client_lost(exc)
            return
        session, self.session = self.session, None
        if session is not None and session.ex is not None:
            self._submit_aborted(session)
        if self.upstream is not None:
            idle = session is not None and session.ex is None
            if idle and session is not None and session.server.idle_reusable:
                self.ctx.pool.put(self.upstream)  # between exchanges: still good
            else:
                self.upstream.abort()
            self.upstream = None

    def pause_writing(self) -> None:
        self._client_write_paused = True
        if self.relay is not None:
            self.relay.client_pause_writing()
        elif self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        self._client_write_paused = False
        if self.relay is not None:
            self.relay.client_resume_writing()
        elif self.upstream is not None:
            self.upstream.resume_reading()

    # -- upstream callbacks (Owner protocol) -------------------------------------
    def on_server_data(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.session is not None:
            self.run(self.session.handle(DataReceived(self._server_id(), data)))

    def on_server_eof(self) -> None:
        if self.session is not None:
            self.run(self.session.handle(EofReceived(self._server_id())))

    def on_server_lost(self, exc: Exception | None) -> None:
        self.upstream = None
        self._unpause(_UPSTREAM)
        if self.session is not None:
            self.run(self.session.handle(EofReceived(self._server_id())))

    def on_server_pause_writing(self) -> None:
        self._pause(_UPSTREAM)

    def on_server_resume_writing(self) -> None:
        self._unpause(_UPSTREAM)

    # -- commands -----------------------------------------------------------------
    def run(self, commands: list[Command]) -> None:
        """Carry out ``commands`` in order.

        Hot path (runs for every read): consecutive sends to the same side are
        joined into one write, so a small response (head and body) costs one
        send() instead of two; profiling showed the syscalls dominating.
        Any other command first flushes what is pending, keeping the order.
        """
        to_client: list[bytes] = []
        to_server: list[bytes] = []
        for cmd in commands:
            kind = type(cmd)
            if kind is SendData:
                if not cmd.conn.is_client:  # type: ignore[union-attr]
                    to_server.append(cmd.data)  # type: ignore[union-attr]
                elif cmd.at is None and self._delayed is None:  # type: ignore[union-attr]
                    to_client.append(cmd.data)  # type: ignore[union-attr]
                else:
                    if to_client or to_server:
                        self._flush(to_client, to_server)
                    self._send_later(cmd)  # type: ignore[arg-type]
            else:
                if to_client or to_server:
                    self._flush(to_client, to_server)
                _HANDLERS[kind](self, cmd)
        if to_client or to_server:
            self._flush(to_client, to_server)

    def _flush(self, to_client: list[bytes], to_server: list[bytes]) -> None:
        if to_client:
            data = to_client[0] if len(to_client) == 1 else b"".join(to_client)
            to_client.clear()
            self._write_client(data)
        if to_server:
            data = to_server[0] if len(to_server) == 1 else b"".join(to_server)
            to_server.clear()
            if self.upstream is not None:
                self.upstream.write(data)

    def _write_client(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            wire = data
            if self.tls is not None:
                try:
                    wire = self.tls.send(data)
                except TlsError:  # the client's TLS already failed: nothing can reach it
                    self.transport.abort()
                    return
            self.transport.write(wire)
            if self._tap is not None:
                self._tap.data(id(self), False, data)

    def _send_later(self, cmd: SendData) -> None:
        """A send a rule delayed or paced (session clock -> loop clock)."""
        if self._delayed is None:
            self._delayed = DelayedWriter(self._write_client, self._delayed_backlog)
        loop = self._delayed.loop
        at = loop.time() if cmd.at is None else loop.time() + (cmd.at - time.time())
        self._delayed.write_at(at, cmd.data)

    def _delayed_backlog(self, full: bool) -> None:
        """Paced output is piling up: stop (or restart) reading the upstream."""
        if self.upstream is not None:
            if full:
                self.upstream.pause_reading()
            elif not self._client_write_paused:
                self.upstream.resume_reading()

    def _wait(self, cmd: SetTimer) -> None:
        def resume() -> None:
            if self.session is not None and not self._closed:
                self.run(self.session.handle(TimerFired()))

        asyncio.get_running_loop().call_later(cmd.seconds, resume)

    def _server_id(self) -> Conn:
        assert self._server is not None
        return self._server

    def _open_server(self, cmd: OpenServer) -> None:
        self._server = cmd.conn
        key = (cmd.host, cmd.port, cmd.tls.sni if cmd.tls is not None else None)
        if cmd.reuse:
            conn = self.ctx.pool.take(key)
            if conn is not None:
                self._attach(conn, reused=True)
                return
        self._connecting = asyncio.get_running_loop().create_task(self._connect(cmd))

    async def _connect(self, cmd: OpenServer) -> None:
        key = (cmd.host, cmd.port, cmd.tls.sni if cmd.tls is not None else None)
        try:
            conn = await connect(
                key, self.ctx.timeouts.connect, self.ctx.upstream_tls, self.ctx.tap
            )
        except UpstreamError as e:
            self._connecting = None
            if self.session is not None and not self._closed:
                self.run(self.session.handle(ServerFailed(cmd.conn, str(e), e.timeout)))
            return
        self._connecting = None
        if self._closed or self.session is None:
            conn.close()
            return
        self._attach(conn, reused=False)

    def _attach(self, conn: UpstreamConnection, reused: bool) -> None:
        conn.owner = self
        self.upstream = conn
        if self._client_write_paused:
            conn.pause_reading()
        assert conn.transport is not None and self.session is not None
        peer = conn.transport.get_extra_info("peername") or (conn.key[0], conn.key[1])
        address = (str(peer[0]), int(peer[1]))
        opened = ServerOpened(self._server_id(), address, reused, conn.tls_facts())
        self.run(self.session.handle(opened))

    def _release_server(self, cmd: ReleaseServer) -> None:
        conn, self.upstream = self.upstream, None
        self._unpause(_UPSTREAM)
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if conn is None:
            return
        if cmd.reusable:
            self.ctx.pool.put(conn)
        else:
            conn.close()

    def _close_client(self, cmd: CloseConnection) -> None:
        if self.transport is None:
            return
        delayed = self._delayed
        if delayed is not None and delayed.busy and not cmd.abort:
            # Close after what rules delayed has gone out; then for real.
            self._delayed = None
            delayed.call_at(0.0, lambda: self._close_client(cmd))
            return
        if cmd.abort:
            reset(self.transport)
            return
        if self.tls is not None and not self.transport.is_closing():
            self.transport.write(self.tls.close())
        self.transport.close()

    def _hook(self, cmd: Hook) -> None:
        self.ctx.submit(cmd.flow)
        self._head_since = time.monotonic()  # a pipelined head starts its clock now

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def _unpause(self, reason: int) -> None:
        was = self._paused
        self._paused &= ~reason
        if was and not self._paused and self.transport is not None and not self._closed:
            self.transport.resume_reading()

    # -- watchdog and shutdown ------------------------------------------------------
    def check_timeout(self, now: float) -> None:
        if self.interceptor is not None:
            if self.interceptor.probing:
                return  # waiting for the upstream: --connect-timeout bounds that
            if now - self.last_active > self.ctx.timeouts.tls_handshake and self.transport:
                self.intercept_failed("timeout during the client's TLS handshake", TlsInfo(True))
            return
        if self.relay is not None:
            if now - self.last_active > self.ctx.timeouts.tunnel_idle:
                self.relay.close("timeout")
            return
        session = self.session
        if session is None or self._connecting is not None:
            return
        kind = session.deadline()
        # A head must complete within its timeout however it trickles (slowloris);
        # the other timeouts measure inactivity.
        since = self._head_since if kind is TimeoutKind.CLIENT_HEAD else self.last_active
        if now - since > self.ctx.timeouts.for_kind(kind):
            self.run(session.handle(TimedOut(kind)))

    @property
    def idle(self) -> bool:
        s = self.session
        return (
            s is not None
            and s.ex is None
            and self.relay is None
            and not s.client_side.requests.buffered
        )

    def close_now(self) -> None:
        if self.relay is not None:
            self.relay.close("proxy")
        elif self.transport is not None:
            self.transport.abort()

    def _submit_aborted(self, session: HttpSession) -> None:
        ex = session.ex
        assert ex is not None
        ex.error = ex.error or "client closed the connection"
        self.ctx.submit(ex.finish(session.config.mode, session.client, session.config.clock()))


_HANDLERS: dict[type, Callable[[ClientConnection, object], None]] = {
    OpenServer: ClientConnection._open_server,  # type: ignore[dict-item]
    ReleaseServer: ClientConnection._release_server,  # type: ignore[dict-item]
    CloseConnection: ClientConnection._close_client,  # type: ignore[dict-item]
    PauseReading: lambda self, _: self._pause(_BACKLOG),
    ResumeReading: lambda self, _: self._unpause(_BACKLOG),
    StartTunnel: ClientConnection._start_tunnel,  # type: ignore[dict-item]
    Intercept: ClientConnection._intercept,  # type: ignore[dict-item]
    SetTimer: ClientConnection._wait,  # type: ignore[dict-item]
    Hook: ClientConnection._hook,  # type: ignore[dict-item]
}
