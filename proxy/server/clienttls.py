"""Terminating an intercepted client's TLS: what ``StartClientTls`` asks of the shell.

The next layer has decided to intercept (``proxy.layers.nextlayer``); this
carries it out. The first interception of a (host, port, name) connects
upstream with TLS first, to copy its certificate's names into our leaf (the
names are remembered for ten minutes, and the connection is pooled for the
first request); then a leaf for the name is issued and the client's
handshake runs over memory BIOs (``proxy.tls.endpoint.TlsEndpoint``), fed
the ClientHello the next layer already read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from proxy.flow.record import TlsSide
from proxy.layers.commands import StartClientTls
from proxy.layers.events import ClientTlsEstablished, ClientTlsFailed, Event
from proxy.server.context import ListenerContext
from proxy.server.opening import connect
from proxy.server.upstream import UpstreamConnection
from proxy.session.errors import UpstreamError
from proxy.tls.endpoint import TlsEndpoint, TlsError, TlsHandshakeError
from proxy.tls.names import certificate_names
from proxy.tls.policy import CertNames


class TlsHost(Protocol):
    """The client connection whose TLS is being terminated."""

    @property
    def closed(self) -> bool: ...
    def touch(self) -> None: ...
    def install_tls(self, tls: TlsEndpoint, offered: tuple[str, ...], data: bytes) -> None: ...
    def handle(self, event: Event) -> None: ...
    def feed_plain(self, data: bytes) -> None: ...
    def client_ended(self) -> None: ...


class ClientTlsStarter:
    __slots__ = ("_task", "ctx", "host", "probing")

    def __init__(self, ctx: ListenerContext, host: TlsHost) -> None:
        self.ctx = ctx
        self.host = host
        # True while we wait for the upstream (certificate probe): the client is
        # waiting for us then, so its handshake timeout does not run.
        self.probing = False
        self._task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """The client is gone: a probe still under way is abandoned."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def start(self, cmd: StartClientTls) -> None:
        intercept = self.ctx.intercept
        assert intercept is not None
        known: CertNames | None = None
        if cmd.probe:
            key = (cmd.host, cmd.port, cmd.name)
            known = intercept.upstream_names.get(key, time.monotonic())
            if known is None:
                loop = asyncio.get_running_loop()
                self._task = loop.create_task(self._probe_then_present(cmd, key))
                return
        self._present(cmd, known)

    async def _probe_then_present(self, cmd: StartClientTls, key: tuple[str, int, str]) -> None:
        upstream, known = await self._probe(key)
        self._task = None
        if self.host.closed:
            if upstream is not None:
                upstream.close()
            return
        if upstream is not None:
            self.ctx.pool.put(upstream)  # for the first request
        self._present(cmd, known)

    def _present(self, cmd: StartClientTls, known: CertNames | None) -> None:
        """Complete the client's handshake with a leaf for the name (and the upstream's names)."""
        intercept = self.ctx.intercept
        assert intercept is not None
        extra, org = known if known is not None else ((), None)
        offered = cmd.offered
        alpn = tuple(p for p in cmd.alpn if p in offered) if offered else ("http/1.1",)
        try:
            server = intercept.issuer.server_tls(
                cmd.name, alpn=alpn, extra_sans=extra, organization=org
            )
        except ValueError:
            server = intercept.issuer.server_tls(cmd.host, alpn=alpn)
        self.host.install_tls(TlsEndpoint(server, sni=cmd.sni), offered, cmd.data)

    async def _probe(
        self, key: tuple[str, int, str]
    ) -> tuple[UpstreamConnection | None, CertNames | None]:
        """Connect upstream with TLS first: its certificate's names go into our leaf.

        On failure the first request tries again and answers 502/504 naming
        why; nothing is remembered.
        """
        ctx = self.ctx
        assert ctx.intercept is not None
        upstream: UpstreamConnection | None = None
        self.probing = True
        try:
            route = ctx.session.route
            via = route(key[0], key[1]) if route is not None else None
            full = (*key, via)
            with contextlib.suppress(UpstreamError):
                upstream = await connect(
                    full, ctx.timeouts.connect, ctx.tls_for(key[2]), ctx.tap, None, ctx.proxy_tls
                )
        finally:
            self.probing = False
            with contextlib.suppress(ReferenceError):  # cancelled: the client is gone
                self.host.touch()  # the client's handshake clock starts now
        if upstream is None or upstream.tls is None:
            return upstream, None
        der = upstream.tls.peer_certificate()
        if not der:
            return upstream, None
        try:
            extra, org = certificate_names(der)
        except ValueError:
            return upstream, None
        ctx.intercept.upstream_names.remember(key, extra, org, time.monotonic())
        return upstream, (extra, org)


def tls_input(
    host: TlsHost, tls: TlsEndpoint, transport: asyncio.Transport, offered: tuple[str, ...],
    data: bytes,
) -> None:  # fmt: skip
    """Ciphertext from an intercepted client: the handshake (its answer sent,
    its outcome an event), then plaintext into the layers; close_notify is
    the client's end of stream."""
    handshaking = not tls.handshake_done
    try:
        plain, out = tls.receive(data)
    except TlsHandshakeError as e:
        host.handle(ClientTlsFailed(e.alert, str(e)))
        return
    except TlsError:
        transport.abort()
        return
    if out:
        transport.write(out)
    if handshaking and tls.handshake_done:
        host.handle(ClientTlsEstablished(tls_side(tls, offered)))
    if plain:
        host.feed_plain(plain)
    if tls.peer_closed and not host.closed:
        host.client_ended()


def tls_side(tls: TlsEndpoint, offered: tuple[str, ...]) -> TlsSide:
    """The client side's TLS as negotiated, for records."""
    facts = tls.facts()
    return TlsSide(facts.version, facts.cipher, facts.alpn, facts.sni, offered)
