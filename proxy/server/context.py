"""What every connection of a listener shares, passed explicitly."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from OpenSSL import SSL

from proxy.flow.record import Address, FlowSource
from proxy.layers.entry import EntryLayers
from proxy.layers.events import TimeoutKind
from proxy.layers.nextlayer import InterceptSettings
from proxy.server.hooks import HookBus
from proxy.server.upstream import Pool
from proxy.session.config import SessionConfig
from proxy.sinks.pcap import PcapTap
from proxy.tls.clientcerts import ClientCerts
from proxy.tls.leaf import LeafIssuer
from proxy.tls.policy import InterceptPolicy, PassthroughMemory, UpstreamNames


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; defaults follow nginx (60 s reads, 75 s keep-alive) and mitmproxy."""

    connect: float = 10.0
    client_head: float = 30.0  # a started request head must complete (slowloris)
    client_idle: float = 75.0  # keep-alive between requests
    response_head: float = 60.0
    transfer_idle: float = 60.0  # no byte either way while a body streams
    tunnel_idle: float = 600.0
    tls_handshake: float = 15.0  # client TLS handshake inside an intercepted tunnel
    upstream_idle: float = 60.0  # pooled connection unused
    held: float = 3600.0  # a flow held by a hook (the web UI's breakpoints time out first)

    def for_kind(self, kind: TimeoutKind) -> float:
        return _BY_KIND[kind](self)


_BY_KIND: dict[TimeoutKind, Callable[[Timeouts], float]] = {
    TimeoutKind.CLIENT_IDLE: lambda t: t.client_idle,
    TimeoutKind.CLIENT_HEAD: lambda t: t.client_head,
    TimeoutKind.RESPONSE_HEAD: lambda t: t.response_head,
    TimeoutKind.TRANSFER_IDLE: lambda t: t.transfer_idle,
    TimeoutKind.TUNNEL_IDLE: lambda t: t.tunnel_idle,
    TimeoutKind.TLS_HANDSHAKE: lambda t: t.tls_handshake,
    TimeoutKind.HELD: lambda t: t.held,
}


class Tracked(Protocol):
    """A live connection as the watchdog and shutdown see it."""

    @property
    def idle(self) -> bool: ...
    def check_timeout(self, now: float) -> None: ...
    def close_now(self) -> None: ...


@dataclass(slots=True)
class Registry:
    """Live client connections, for the watchdog and graceful shutdown;
    ``accepted`` counts every client connection since start (``/metrics``)."""

    connections: set[Tracked] = field(default_factory=set)
    accepted: int = 0


@dataclass(frozen=True, slots=True)
class InterceptContext:
    """Everything TLS interception needs, shared by all listeners."""

    policy: InterceptPolicy
    issuer: LeafIssuer
    pinned: PassthroughMemory
    ca_path: str  # where the CA certificate is, for messages
    upstream_names: UpstreamNames = field(default_factory=UpstreamNames)  # skips re-probing
    probe: bool = True  # False: leaves from the client's names only, no upstream probe


EntryFactory = Callable[["ListenerContext", Address, asyncio.Transport], EntryLayers]


@dataclass(frozen=True, slots=True)
class ListenerContext:
    session: SessionConfig
    pool: Pool
    submit: Callable[[FlowSource], None]
    timeouts: Timeouts
    upstream_tls: SSL.Context
    registry: Registry
    intercept: InterceptContext | None = None
    tap: PcapTap | None = None  # --pcap
    hooks: HookBus = field(default_factory=HookBus)  # lifecycle subscribers beyond the sinks
    max_connections: int = 10_000  # beyond: the newest connection gets 503 and is closed
    client_certs: ClientCerts | None = None  # --client-certs: upstream mTLS, chosen by SNI
    proxy_tls: ssl.SSLContext | None = None  # verifies https:// next proxies (--upstream-ca)
    # SOCKS5 and transparent listeners: the layers of a new connection (proxy.server.entries).
    entry: EntryFactory | None = None

    def tls_for(self, sni: str | None) -> SSL.Context:
        """The client context for TLS to ``sni``: with its client certificate, if one is set."""
        certs = self.client_certs
        if certs is not None and sni is not None:
            context = certs.context_for(sni)
            if context is not None:
                return context
        return self.upstream_tls

    @property
    def intercept_settings(self) -> InterceptSettings | None:
        """What the next-layer choice needs of interception (None: off)."""
        i = self.intercept
        return (
            None if i is None else InterceptSettings(i.policy, i.pinned, i.ca_path, probe=i.probe)
        )
