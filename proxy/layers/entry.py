"""SOCKS5 and transparent listeners: how a connection gets to the next-layer choice.

A forward listener learns where a client wants to go from its CONNECT; these
two learn it otherwise: a SOCKS5 client says so in its handshake
(``proxy.layers.socks5``), and a transparent listener is told by the shell,
which reads the original destination of a redirected connection from the
kernel (``SO_ORIGINAL_DST``, ``proxy.server.transparent``). From there on
the connection takes the path of an intercepted CONNECT
(``ClientLayers.enter``): TLS terminated or passed through by the same
options (``--mitm``, ``--mitm-hosts``, ``--ignore-hosts``), HTTP decoded,
anything else relayed as TCP, every outcome recorded (``TunnelRecorder``).

Loops are refused: a destination that is one of the proxy's own listeners
(a client that connected to the transparent port directly, or a SOCKS5
request for the proxy itself) would make the proxy talk to itself.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.flow.hooks import HookKind
from proxy.flow.record import Address, RouteInfo
from proxy.layers.commands import CLIENT, CloseConnection, Command, Hook
from proxy.layers.events import Event, Stopping, TimedOut, TimeoutKind, TooManyConnections
from proxy.layers.nextlayer import InterceptSettings
from proxy.layers.recorder import TunnelRecorder
from proxy.layers.root import ClientLayers
from proxy.layers.socks5 import Socks5Layer
from proxy.session import routing
from proxy.session.config import SessionConfig
from proxy.tls.policy import InterceptPolicy, PassthroughMemory

NO_INTERCEPT = InterceptPolicy.build(False, [], [], False)


def passthrough_settings() -> InterceptSettings:
    """The next-layer choice without ``--mitm``: HTTP decoded, TLS relayed untouched."""
    return InterceptSettings(NO_INTERCEPT, PassthroughMemory(), "")


class EntryLayers:
    """The layers of one SOCKS5 (``original_dst`` None) or transparent connection."""

    __slots__ = ("client", "config", "entered", "inner", "original_dst", "socks", "stopped")

    def __init__(
        self,
        config: SessionConfig,
        client: Address,
        intercept: InterceptSettings | None,
        original_dst: Address | None = None,
    ) -> None:
        if original_dst is not None:
            config = replace(config, original_dst=original_dst)
        self.config = config
        self.client = client
        self.original_dst = original_dst
        self.inner = ClientLayers(config, client, intercept or passthrough_settings())
        self.socks = (
            Socks5Layer(config.proxy_auth, config.own_addresses) if original_dst is None else None
        )
        self.entered = False
        self.stopped = False  # refused or given up before entering

    def start(self) -> list[Command]:
        dst = self.original_dst
        if dst is None:
            return []  # SOCKS5: wait for the greeting
        if self._own(dst):
            where = f"{dst[0]}:{dst[1]}"
            return self._stop(
                f"refused: original destination {where} is the proxy's own listener "
                "(a loop: exempt the proxy's own traffic from the redirect, docs/modes.md)"
            )
        return self._enter(dst[0], dst[1], b"")

    def handle(self, event: Event) -> list[Command]:
        if self.entered:
            return self.inner.handle(event)
        if self.stopped:
            return []
        if isinstance(event, TooManyConnections):
            return self.refuse()
        if isinstance(event, TimedOut | Stopping):
            why = "timed out" if isinstance(event, TimedOut) else "cut: the proxy is stopping"
            return self._stop(f"client: SOCKS handshake {why}")
        socks = self.socks
        if socks is None:
            return []
        out = socks.handle(event)
        target = socks.target
        if target is not None:
            out += self._enter(target[0], target[1], socks.early)
        elif socks.refusal is not None:
            self.stopped = True
            out.append(self._record(socks.refusal.message, socks.refusal.target))
        return out

    def _own(self, dst: Address) -> bool:
        return dst in self.config.own_addresses

    def _enter(self, host: str, port: int, early: bytes) -> list[Command]:
        self.entered = True
        recorder = self._recorder(host, port)
        return self.inner.enter(host, port, recorder, early)

    def _recorder(self, host: str, port: int) -> TunnelRecorder:
        kind = "tunnel" if self.socks is not None else "tcp"
        recorder = TunnelRecorder(self.config, self.client, host, port, kind)
        via = routing.via_for(self.config, host, port)
        recorder.route = RouteInfo(routing.redact(via), self.original_dst)
        return recorder

    def _record(self, message: str, target: Address | None) -> Hook:
        """A connection refused before any server connection (no route to name)."""
        host, port = target if target is not None else ("", 0)
        kind = "tunnel" if self.socks is not None else "tcp"
        record = TunnelRecorder(self.config, self.client, host, port, kind).record(message)
        if target is None:
            record = replace(record, request=None)
        return Hook(HookKind.DONE, record)

    def _stop(self, message: str) -> list[Command]:
        self.stopped = True
        return [self._record(message, self.original_dst), CloseConnection(CLIENT)]

    # -- what the shell asks ------------------------------------------------------
    def deadline(self) -> TimeoutKind | None:
        if self.entered:
            return self.inner.deadline()
        return None if self.stopped else TimeoutKind.CLIENT_HEAD  # the SOCKS handshake

    @property
    def flow_id(self) -> str | None:
        return self.inner.flow_id if self.entered else None

    @property
    def http2(self) -> bool:
        return self.entered and self.inner.http2

    @property
    def idle(self) -> bool:
        return self.entered and self.inner.idle

    def refuse(self) -> list[Command]:
        return self._stop("refused: too many client connections")
