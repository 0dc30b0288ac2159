"""When a client connection stops being plain HTTP: tunnels and interception.

``ClientConnection`` inherits these steps. A CONNECT or an upgrade turns the
connection into a ``Relay`` (with TCP rules, the pcap tap and, when the
client side is intercepted, TLS in between); an intercepted CONNECT first
hands its bytes to an ``Interceptor``, which then switches the connection to
a nested HTTP session over TLS, to plain HTTP, or to a raw relay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from proxy.flow.record import TlsInfo, TunnelInfo
from proxy.layers.commands import Command, Intercept, StartTunnel
from proxy.layers.events import TunnelEnded
from proxy.rules import TcpPlan
from proxy.server.context import ListenerContext
from proxy.server.intercept import Interceptor
from proxy.server.relay import Relay
from proxy.server.upstream import UpstreamConnection, connect
from proxy.session.errors import UpstreamError
from proxy.session.http import HttpSession
from proxy.sinks.pcap import PcapTap
from proxy.tls.endpoint import TlsEndpoint, TlsError, TlsHandshakeError

if TYPE_CHECKING:
    from proxy.server.client import ClientConnection


class TunnelSteps:
    if TYPE_CHECKING:
        ctx: ListenerContext
        transport: asyncio.Transport | None
        session: HttpSession | None
        upstream: UpstreamConnection | None
        relay: Relay | None
        interceptor: Interceptor | None
        tls: TlsEndpoint | None
        _outer: HttpSession | None
        _offered_alpn: tuple[str, ...]
        _paused: int
        _closed: bool
        _tap: PcapTap | None
        _connecting: asyncio.Task[None] | None

        def run(self, commands: list[Command]) -> None: ...
        def _to_session(self, data: bytes) -> None: ...
        def client_ended(self) -> None: ...

    def _start_tunnel(self, cmd: StartTunnel) -> None:
        assert self.transport is not None and self.upstream is not None
        self._paused = 0
        self.transport.resume_reading()
        key = self.upstream.key
        self.relay = Relay(
            self.transport, self.upstream, self._tunnel_done, self._tls_writer(), self._tap_out(),
            self._tcp_rules(key[0], key[1]),
        )  # fmt: skip
        self.upstream = None
        self.relay.start(cmd.to_server, cmd.to_client)

    def _relay_in(self, data: bytes) -> None:
        assert self.relay is not None
        if self._tap is not None:
            self._tap.data(id(self), True, data)
        self.relay.from_client(data)

    def _tcp_rules(self, host: str, port: int) -> TcpPlan | None:
        """TCP rules (toxics) for a tunnel's bytes, when rules are loaded."""
        get = self.ctx.session.rules
        rules = get() if get is not None else None
        if rules is None or self.session is None:
            return None
        return rules.tcp_for(host, port, self.ctx.session.mode, self.session.client[0])

    def _tap_out(self) -> Callable[[bytes], None] | None:
        tap, key = self._tap, id(self)
        if tap is None:
            return None
        return lambda data: tap.data(key, False, data)

    def _tls_writer(self) -> Callable[[bytes], None] | None:
        tls, transport = self.tls, self.transport
        if tls is None or transport is None:
            return None
        return lambda data: transport.write(tls.send(data))

    # -- interception (see proxy.server.intercept) ------------------------------------
    def _intercept(self, cmd: Intercept) -> None:
        assert self.session is not None
        self._outer = self.session
        self.interceptor = Interceptor(cast("ClientConnection", self), cmd.host, cmd.port)
        early = self.session.client_side.requests.take_remaining()
        if early:
            self.interceptor.feed(early)

    @property
    def closed(self) -> bool:
        return self._closed

    def switch_session(self, session: HttpSession, data: bytes) -> None:
        """Decode the tunnel's content as HTTP with ``session`` from now on."""
        self.interceptor = None
        self.session = session
        if data:
            self._to_session(data)

    def start_client_tls(
        self, tls: TlsEndpoint, interceptor: Interceptor, offered: tuple[str, ...]
    ) -> None:
        self.tls = tls
        self.interceptor = interceptor
        self._offered_alpn = offered

    def tls_data(self, data: bytes) -> None:
        """Ciphertext from an intercepted client: handshake, then plaintext on."""
        tls, transport = self.tls, self.transport
        assert tls is not None and transport is not None
        handshaking = not tls.handshake_done
        try:
            plain, out = tls.receive(data)
        except TlsHandshakeError as e:
            if self.interceptor is not None:
                self.interceptor.handshake_failed(e, self._offered_alpn)
            return
        except TlsError:
            transport.abort()
            return
        if out:
            transport.write(out)
        if handshaking and tls.handshake_done and self.interceptor is not None:
            self.interceptor.handshake_done(tls, self._offered_alpn)
        if plain:
            if self.relay is not None:
                self._relay_in(plain)
            elif self.session is not None:
                self._to_session(plain)
        if tls.peer_closed and not self._closed:
            self.client_ended()  # close_notify: the client's end of stream

    def intercept_failed(self, message: str, tls: TlsInfo) -> None:
        self.interceptor = None
        if self._outer is not None:
            self.run(self._outer.handle(TunnelEnded(None, message, tls)))
        if self.transport is not None:
            self.transport.close()

    def relay_intercepted(self, host: str, port: int, data: bytes, tls: TlsInfo | None) -> None:
        """Not interceptable after all: connect and relay the bytes untouched."""
        self.interceptor = None
        if self.transport is not None:
            self.transport.pause_reading()
        self._connecting = asyncio.get_running_loop().create_task(
            self._relay_to(host, port, data, tls)
        )

    async def _relay_to(self, host: str, port: int, data: bytes, tls: TlsInfo | None) -> None:
        outer = self._outer
        try:
            conn = await connect((host, port, None), self.ctx.timeouts.connect, None, self.ctx.tap)
        except UpstreamError as e:
            self._connecting = None
            if outer is not None:
                self.run(outer.handle(TunnelEnded(None, f"upstream {host}:{port}: {e}", tls)))
            if self.transport is not None:
                self.transport.close()
            return
        self._connecting = None
        if self._closed or self.transport is None:
            conn.close()
            return
        self.relay = Relay(
            self.transport, conn, lambda info: self._relay_done(info, tls), None, self._tap_out(),
            self._tcp_rules(host, port),
        )  # fmt: skip
        self.transport.resume_reading()
        if data and self._tap is not None:
            self._tap.data(id(self), True, data)
        self.relay.start(data, b"")

    def _relay_done(self, info: TunnelInfo, tls: TlsInfo | None) -> None:
        if self._outer is not None:
            self.run(self._outer.handle(TunnelEnded(info, None, tls, self._toxic_names())))

    def _tunnel_done(self, info: TunnelInfo) -> None:
        session = self.session
        if session is not None:
            self.run(session.handle(TunnelEnded(info, tcp_rules=self._toxic_names())))

    def _toxic_names(self) -> tuple[str, ...]:
        toxics = self.relay.toxics if self.relay is not None else None
        return toxics.plan.matched if toxics is not None else ()
