"""The IO shell for one client connection: it carries out what the layers decide.

``ClientConnection`` owns the sockets of one client connection: the client's
transport (with TLS over memory BIOs once the layers ask to terminate it),
and the server connections the layers open, by the name they gave them. It
feeds what happens to the layer stack (``proxy.layers.root``) as events and
executes the commands that come back: send (now, or at a time a rule set,
in order per connection), half-close, close, open, release to the pool,
pause and resume reading, timers (the client's side of the timed writes,
half-close, close and pausing is ``proxy.server.clientend.ClientEnd``). It
decides nothing about protocols.

Backpressure is the whole of the flow control: reading from the client
pauses while the layers have enough unprocessed bytes (``PauseReading``) or
a server's write buffer (or its queue of timed writes) is full; reading from
the servers pauses while the client's is. Memory per connection stays
bounded by the water marks plus one read.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import cast

from proxy.flow.hooks import HookKind
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Conn,
    Hook,
    OpenServer,
    PauseReading,
    ReleaseServer,
    ResumeReading,
    SendData,
    SetTimer,
    Shutdown,
    StartClientTls,
)
from proxy.layers.entry import EntryLayers
from proxy.layers.events import (
    ClientTlsFailed,
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    Stopping,
    TimedOut,
    TimeoutKind,
    TimerFired,
)
from proxy.layers.root import ClientLayers
from proxy.layers.tcp import TcpLayers
from proxy.server.clientend import BACKLOG, EOF, PEER, ClientEnd, ClientEndHost
from proxy.server.clienttls import ClientTlsStarter, TlsHost, tls_input
from proxy.server.context import ListenerContext
from proxy.server.ends import EndsHost, ServerEnds
from proxy.server.tapping import ClientTap
from proxy.server.transport import tune
from proxy.tls.endpoint import TlsEndpoint, TlsError


class ClientConnectionHost(EndsHost, TlsHost, ClientEndHost):
    """What the connection's parts call back: its servers', its TLS's and its end's hosts."""


class ClientConnection(asyncio.Protocol):
    def __init__(self, ctx: ListenerContext, tcp_target: tuple[str, int] | None = None) -> None:
        self.ctx = ctx
        self.tcp_target = tcp_target
        self.transport: asyncio.Transport | None = None
        self.layers: ClientLayers | TcpLayers | EntryLayers | None = None
        self.tls: TlsEndpoint | None = None  # the client's TLS, once we terminate it
        self._offered: tuple[str, ...] = ()
        self._starter: ClientTlsStarter | None = None  # made when TLS is first terminated
        # The parts see the connection through a weak proxy: no reference cycle
        # keeps a closed connection (and its TLS buffers) until a full collection.
        self._me = cast(ClientConnectionHost, weakref.proxy(self))
        self.servers = ServerEnds(ctx, self._me)
        self.end = ClientEnd(self._me, self.servers.client_backlog)
        self.last_active = time.monotonic()
        self._head_since = self.last_active
        self._tap: ClientTap | None = None  # --pcap of the client side
        self._timers: list[asyncio.TimerHandle] = []
        self.client_write_paused = False
        self._closed = False
        self._client_ended = False

    # -- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        tune(transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        client = (str(peer[0]), int(peer[1]))
        config = self.ctx.session
        if self.tcp_target is not None:
            self.layers = TcpLayers(config, client, *self.tcp_target)
        elif self.ctx.entry is not None:  # SOCKS5, transparent (proxy.server.entries)
            self.layers = self.ctx.entry(self.ctx, client, transport)
        else:
            self.layers = ClientLayers(config, client, self.ctx.intercept_settings)
        self.ctx.registry.accepted += 1
        if len(self.ctx.registry.connections) >= self.ctx.max_connections:
            self.run(self.layers.refuse())  # the newest connection is told and closed
            self._closed = True
            return
        self.ctx.registry.connections.add(self)
        tap = self.ctx.tap
        if tap is not None and tap.client_side:
            local = transport.get_extra_info("sockname")
            self._tap = ClientTap(tap, id(self), client, (local[0], local[1]))
        self.run(self.layers.start())

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        end = self.end
        if end.held or end.paused:  # delivered despite the pause: held, in order, until it ends
            end.held.append(data)
        else:
            self.take_read(data)

    def take_read(self, data: bytes) -> None:
        """A read from the client, in order."""
        if self.tls is not None:
            self._tls_in(data)
        else:
            self.feed_plain(data)

    def feed_plain(self, data: bytes) -> None:
        """Plaintext from the client into the layers (tapped for --pcap)."""
        layers = self.layers
        if layers is None or self._closed:
            return
        if layers.idle:
            self._head_since = time.monotonic()  # a new head starts: its clock runs
        tap = self._tap
        if tap is None:
            self.run(layers.handle(DataReceived(CLIENT, data)))
        else:
            tap.feed(layers, data, self.run)

    def eof_received(self) -> bool:
        end = self.end
        if end.held or end.paused:  # behind the reads held while paused
            end.held.append(EOF)
            return True
        return self.take_eof()

    def take_eof(self) -> bool:
        """The client's FIN, in order; False: close the connection."""
        if self.tls is not None and not self.tls.handshake_done:
            self.handle(ClientTlsFailed())  # closed during the handshake
            return False
        self.client_ended()
        return True  # keep writing: a response may still be on its way

    def client_ended(self) -> None:
        """The client's stream ended (TCP FIN, or close_notify inside TLS); once."""
        if not self._client_ended:
            self._client_ended = True
            self.handle(EofReceived(CLIENT))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.end.cancel()
        if self._starter is not None:
            self._starter.cancel()
        for timer in self._timers:
            timer.cancel()
        if self._tap is not None:
            self._tap.close(reset=exc is not None)
        self.ctx.registry.connections.discard(self)
        if self.layers is not None:
            self.run(self.layers.handle(ConnectionClosed(CLIENT, reset=exc is not None)))
        self.servers.abort_all()

    def pause_writing(self) -> None:
        self.client_write_paused = True
        self.servers.pause_reading()

    def resume_writing(self) -> None:
        self.client_write_paused = False
        self.servers.resume_reading()

    # -- events from the servers and timers ---------------------------------------
    def handle(self, event: Event) -> None:
        if self.layers is not None:
            self.run(self.layers.handle(event))

    def touch(self) -> None:
        self.last_active = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._closed

    def peer_backlog(self, full: bool) -> None:
        """A server cannot take more (write buffer or timed writes full): stop reading us."""
        if full:
            self.end.pause(PEER)
        else:
            self.end.unpause(PEER)

    # -- commands -----------------------------------------------------------------
    def run(self, commands: list[Command]) -> None:
        """Carry out ``commands`` in order.

        Hot path (runs for every read): consecutive sends to the same
        connection are joined into one write, so a small response (head and
        body) costs one send() instead of two; a lone send (a relayed read)
        goes straight out. Any other command first flushes what is pending,
        keeping the order.
        """
        if len(commands) == 1:
            cmd = commands[0]
            if type(cmd) is SendData and cmd.at is None:
                self._send_now(cmd.conn, cmd.data)
            else:
                self._execute(cmd)
            return
        pending: list[bytes] = []
        to: Conn | None = None
        for cmd in commands:
            if type(cmd) is SendData and cmd.at is None:
                conn = cmd.conn
                if to is not None and conn is not to and conn != to:
                    self._send_now(to, b"".join(pending))
                    pending.clear()
                to = conn
                pending.append(cmd.data)
                continue
            if to is not None:
                self._send_now(to, pending[0] if len(pending) == 1 else b"".join(pending))
                pending.clear()
                to = None
            self._execute(cmd)
        if to is not None:
            self._send_now(to, pending[0] if len(pending) == 1 else b"".join(pending))

    def _send_now(self, to: Conn, data: bytes) -> None:
        """``data`` to ``to`` now, or behind the writes a rule delayed for it (order kept)."""
        if not to.is_client:
            self.servers.send(to, data)
        elif self.end.writer is None:
            self.write_client(data)
        else:
            self.end.writer.write_at(self.loop_time(None), data)

    def _execute(self, cmd: Command) -> None:
        kind = type(cmd)
        if kind is SendData:
            self._send_later(cmd)  # type: ignore[arg-type]
        elif kind is Hook:
            self._hook(cmd)  # type: ignore[arg-type]
        elif kind is OpenServer:
            self.servers.open(cmd)  # type: ignore[arg-type]
        elif kind is ReleaseServer:
            self.servers.release(cmd)  # type: ignore[arg-type]
        elif kind is CloseConnection:
            self._close(cmd)  # type: ignore[arg-type]
        elif kind is Shutdown:
            self._shutdown(cmd)  # type: ignore[arg-type]
        elif kind is PauseReading:
            self._pause_reading(cmd.conn, True)  # type: ignore[union-attr]
        elif kind is ResumeReading:
            self._pause_reading(cmd.conn, False)  # type: ignore[union-attr]
        elif kind is SetTimer:
            self._set_timer(cmd)  # type: ignore[arg-type]
        elif kind is StartClientTls:
            if self._starter is None:
                self._starter = ClientTlsStarter(self.ctx, self._me)
            self._starter.start(cmd)  # type: ignore[arg-type]
        else:
            raise TypeError(f"the layers asked for {cmd!r}, which the shell does not know")

    def write_client(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self._closed:
            return
        wire = data
        if self.tls is not None:
            try:
                wire = self.tls.send(data)
            except TlsError:  # the client's TLS already failed: nothing can reach it
                transport.abort()
                return
        transport.write(wire)
        if self._tap is not None:
            self._tap.sent(data)

    def loop_time(self, at: float | None) -> float:
        """A layer's time (its clock is time.time) as the event loop's."""
        loop = asyncio.get_running_loop()
        return loop.time() if at is None else loop.time() + (at - time.time())

    def _send_later(self, cmd: SendData) -> None:
        """A send a rule delayed or paced, in order with what is queued for it."""
        if cmd.conn.is_client:
            self.end.send_later(cmd)
        else:
            self.servers.write_at(cmd.conn, self.loop_time(cmd.at), cmd.data)

    def _pause_reading(self, conn: Conn, pause: bool) -> None:
        if not conn.is_client:
            self.servers.hold(conn, pause)  # a held flow's server waits
        elif pause:
            self.end.pause(BACKLOG)
        else:
            self.end.unpause(BACKLOG)

    def _hook(self, cmd: Hook) -> None:
        bus = self.ctx.hooks
        if cmd.kind is HookKind.DONE:
            self.ctx.submit(cmd.flow)
            self._head_since = time.monotonic()  # a pipelined head starts its clock now
            if not bus.subscribers:
                return
        elif cmd.kind is HookKind.MESSAGE:  # a gRPC message: its own record, now
            self.ctx.submit(cmd.flow)
            if not bus.subscribers:
                return
        bus.deliver(cmd, self._resumed)

    def _resumed(self, event: Event) -> None:
        """A held flow's verdict (now, or later from a subscriber)."""
        if not self._closed:
            self.handle(event)

    def _set_timer(self, cmd: SetTimer) -> None:
        token = cmd.token

        def fire() -> None:
            if not self._closed:
                self.handle(TimerFired(token))

        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(asyncio.get_running_loop().call_later(cmd.seconds, fire))

    def _shutdown(self, cmd: Shutdown) -> None:
        if not cmd.conn.is_client:
            self.servers.shutdown(cmd)
        else:
            self.end.shutdown(cmd)

    def _close(self, cmd: CloseConnection) -> None:
        if not cmd.conn.is_client:
            self.servers.close(cmd)
        else:
            self.end.close(cmd)

    # -- the client's TLS -----------------------------------------------------------
    def install_tls(self, tls: TlsEndpoint, offered: tuple[str, ...], data: bytes) -> None:
        """Terminate the client's TLS from now on; ``data`` is its ClientHello."""
        self.tls = tls
        self._offered = offered
        self._tls_in(data)

    def _tls_in(self, data: bytes) -> None:
        assert self.tls is not None and self.transport is not None
        tls_input(self._me, self.tls, self.transport, self._offered, data)

    # -- watchdog and shutdown ------------------------------------------------------
    def check_timeout(self, now: float) -> None:
        layers = self.layers
        probing = self._starter is not None and self._starter.probing
        if layers is None or probing or self.servers.connecting:
            return  # waiting for a server: --connect-timeout bounds that
        kind = layers.deadline()
        if kind is None:
            return
        # A head must complete within its timeout however it trickles (slowloris);
        # the other timeouts measure inactivity.
        since = self._head_since if kind is TimeoutKind.CLIENT_HEAD else self.last_active
        if now - since > self.ctx.timeouts.for_kind(kind):
            self.handle(TimedOut(kind))

    @property
    def idle(self) -> bool:
        return self.layers is not None and self.layers.idle

    def close_now(self) -> None:
        self.handle(Stopping())
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
