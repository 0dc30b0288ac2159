"""The server connections of one client connection, by the names the layers gave them.

``ServerEnds`` opens them (from the pool, or anew in a task bounded by
``--connect-timeout``), writes to them (now, or at a time a rule set, in
order), half-closes, closes, resets and pools them, pauses their reading
while the client cannot take more, and reports what they do as events
naming them (``_End`` is each one's owner while it serves us).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from proxy.layers.commands import CloseConnection, Conn, OpenServer, ReleaseServer, Shutdown
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    ServerFailed,
    ServerOpened,
)
from proxy.server.connecterrors import describe_error
from proxy.server.context import ListenerContext
from proxy.server.opening import connect
from proxy.server.pacing import DelayedWriter
from proxy.server.upstream import FORWARD, Key, UpstreamConnection
from proxy.session.errors import UpstreamError
from proxy.tls.endpoint import TlsHandshakeError
from proxy.via import parse_via


def key_of(cmd: OpenServer) -> Key:
    """The pool key of the connection ``cmd`` asks for: the route is part of it."""
    if cmd.forward and cmd.via is not None:  # the HTTP next proxy itself
        proxy = parse_via(cmd.via)
        return (proxy.host, proxy.port, None, FORWARD + cmd.via)
    return (cmd.host, cmd.port, cmd.tls.sni if cmd.tls is not None else None, cmd.via)


class EndsHost(Protocol):
    """The client connection the servers serve."""

    client_write_paused: bool

    @property
    def closed(self) -> bool: ...
    def handle(self, event: Event) -> None: ...
    def touch(self) -> None: ...
    def peer_backlog(self, full: bool) -> None: ...
    def loop_time(self, at: float | None) -> float: ...


class _End:
    """One server connection's owner: its callbacks become events naming it."""

    __slots__ = ("conn", "held", "host", "upstream", "writer")

    def __init__(self, conn: Conn, host: EndsHost, upstream: UpstreamConnection) -> None:
        self.conn = conn
        self.host = host
        self.upstream = upstream
        self.writer: DelayedWriter | None = None
        self.held = False  # its flow is held by a hook: it stays paused

    def on_server_data(self, data: bytes) -> None:
        self.host.touch()
        self.host.handle(DataReceived(self.conn, data))

    def on_server_eof(self) -> None:
        self.host.handle(EofReceived(self.conn))

    def on_server_lost(self, exc: Exception | None) -> None:
        self.host.peer_backlog(False)
        if isinstance(exc, TlsHandshakeError):  # failed late (TLS 1.3 client certificates)
            self.host.handle(ServerFailed(self.conn, describe_error(exc)))
            return
        self.host.handle(ConnectionClosed(self.conn, reset=exc is not None))

    def on_server_pause_writing(self) -> None:
        self.host.peer_backlog(True)

    def on_server_resume_writing(self) -> None:
        self.host.peer_backlog(False)


class ServerEnds:
    __slots__ = ("_connecting", "_ends", "ctx", "host")

    def __init__(self, ctx: ListenerContext, host: EndsHost) -> None:
        self.ctx = ctx
        self.host = host
        # By ``Conn.id`` (every one here is a server's): an int hashes in C.
        self._ends: dict[int, _End] = {}
        self._connecting: dict[int, asyncio.Task[None]] = {}

    @property
    def connecting(self) -> bool:
        return bool(self._connecting)

    # -- opening and ending ------------------------------------------------------
    def open(self, cmd: OpenServer) -> None:
        key = key_of(cmd)
        if cmd.reuse:
            upstream = self.ctx.pool.take(key)
            if upstream is not None:
                self._attach(cmd.conn, upstream, reused=True)
                return
        alpn = cmd.tls.alpn if cmd.tls is not None else None
        task = asyncio.get_running_loop().create_task(self._connect(cmd.conn, key, alpn))
        self._connecting[cmd.conn.id] = task

    async def _connect(self, conn: Conn, key: Key, alpn: tuple[str, ...] | None) -> None:
        ctx = self.ctx
        try:
            tls = ctx.tls_for(key[2])
            upstream = await connect(key, ctx.timeouts.connect, tls, ctx.tap, alpn, ctx.proxy_tls)
        except UpstreamError as e:
            self._connecting.pop(conn.id, None)
            if not self.host.closed:
                self.host.handle(ServerFailed(conn, str(e), e.timeout))
            return
        self._connecting.pop(conn.id, None)
        if self.host.closed:
            upstream.close()
            return
        self._attach(conn, upstream, reused=False)

    def _attach(self, conn: Conn, upstream: UpstreamConnection, reused: bool) -> None:
        end = _End(conn, self.host, upstream)
        upstream.owner = end
        self._ends[conn.id] = end
        if self.host.client_write_paused:
            upstream.pause_reading()
        else:
            upstream.resume_reading()  # paused if the server said more than EARLY_LIMIT first
        assert upstream.transport is not None
        peer = upstream.transport.get_extra_info("peername") or upstream.key[:2]
        address = (str(peer[0]), int(peer[1]))
        self.host.handle(ServerOpened(conn, address, reused, upstream.tls_facts()))
        early, upstream.early = upstream.early, b""
        if early and self._ends.get(conn.id) is end:  # the origin spoke first, behind a next proxy
            end.on_server_data(early)

    def _forget(self, key: int) -> UpstreamConnection | None:
        """Stop connecting or drop server ``Conn.id`` ``key``; its connection, if open."""
        task = self._connecting.pop(key, None)
        if task is not None:
            task.cancel()
        end = self._ends.pop(key, None)
        if end is None:
            return None
        if end.writer is not None:
            end.writer.cancel()
        self.host.peer_backlog(False)
        return end.upstream

    def release(self, cmd: ReleaseServer) -> None:
        upstream = self._forget(cmd.conn.id)
        if upstream is None:
            return
        if cmd.reusable:
            self.ctx.pool.put(upstream)
        elif cmd.abort:
            upstream.abort()
        else:
            upstream.close()

    def close(self, cmd: CloseConnection) -> None:
        end = self._ends.get(cmd.conn.id)
        if end is None:
            self._forget(cmd.conn.id)
            return
        if end.writer is not None and end.writer.busy and not (cmd.abort or cmd.discard):
            end.writer.call_at(0.0, lambda: self.close(CloseConnection(cmd.conn)))
            end.writer = None
            return
        upstream = self._forget(cmd.conn.id)
        assert upstream is not None
        upstream.owner = None
        if cmd.abort:
            upstream.abort()
        else:
            upstream.close()

    def abort_all(self) -> None:
        """The client is gone: whatever is still open is cut."""
        for key in list(self._connecting):
            self._forget(key)
        for key in list(self._ends):
            upstream = self._forget(key)
            if upstream is not None:
                upstream.abort()

    # -- writing -----------------------------------------------------------------
    def send(self, conn: Conn, data: bytes) -> None:
        """``data`` to ``conn`` now, or behind the timed writes queued for it."""
        end = self._ends.get(conn.id)
        if end is None:
            return
        if end.writer is None:
            end.upstream.write(data)
        else:
            end.writer.write_at(self.host.loop_time(None), data)

    def _writer(self, end: _End) -> DelayedWriter:
        if end.writer is None:
            end.writer = DelayedWriter(end.upstream.write, self.host.peer_backlog)
        return end.writer

    def write_at(self, conn: Conn, at: float, data: bytes) -> None:
        end = self._ends.get(conn.id)
        if end is not None:
            self._writer(end).write_at(at, data)

    def shutdown(self, cmd: Shutdown) -> None:
        end = self._ends.get(cmd.conn.id)
        if end is None:
            return
        upstream = end.upstream

        def write_eof() -> None:
            t = upstream.transport
            if t is not None and not t.is_closing() and t.can_write_eof():
                t.write_eof()

        if cmd.at is None and end.writer is None:
            write_eof()
            return
        self._writer(end).call_at(self.host.loop_time(cmd.at), write_eof)

    # -- backpressure ------------------------------------------------------------
    def pause_reading(self) -> None:
        for end in self._ends.values():
            end.upstream.pause_reading()

    def resume_reading(self) -> None:
        for end in self._ends.values():
            if not end.held:
                end.upstream.resume_reading()

    def hold(self, conn: Conn, held: bool) -> None:
        """Stop (or restart) reading ``conn`` while its flow is held."""
        end = self._ends.get(conn.id)
        if end is None:
            return
        end.held = held
        if held:
            end.upstream.pause_reading()
        elif not self.host.client_write_paused:
            end.upstream.resume_reading()

    def client_backlog(self, full: bool) -> None:
        """Timed writes to the client are piling up: stop (or restart) reading the servers."""
        if full:
            self.pause_reading()
        elif not self.host.client_write_paused:
            self.resume_reading()
