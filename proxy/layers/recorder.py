"""The record of a connection that reached the next-layer choice without a CONNECT.

A CONNECT tunnel is recorded by the HTTP session that read the CONNECT. A
SOCKS5 connection, or one a transparent listener received, has no such
session: ``TunnelRecorder`` plays that part for the root layer
(``proxy.layers.root``): when the relay (or the failure before it) ends, it
makes the flow record, naming the route. A SOCKS5 connection is recorded
as a ``tunnel`` with a ``CONNECT host:port`` request (the command SOCKS5
carried), a transparent one as ``tcp`` with its original destination.
"""

from __future__ import annotations

from proxy.flow.hooks import HookKind
from proxy.flow.record import (
    Address,
    FlowRecord,
    Message,
    RequestInfo,
    RouteInfo,
    Timings,
    tcp_rules_info,
)
from proxy.layers.commands import Command, Hook
from proxy.layers.events import TunnelEnded
from proxy.session.config import SessionConfig


class TunnelRecorder:
    """Owns the record of one SOCKS5 or transparent connection."""

    __slots__ = ("client", "config", "host", "id", "kind", "port", "route", "server", "start")

    def __init__(
        self, config: SessionConfig, client: Address, host: str, port: int, kind: str
    ) -> None:
        self.config = config
        self.client = client
        self.host = host
        self.port = port
        self.kind = kind  # "tunnel" (SOCKS5) or "tcp" (transparent)
        self.start = config.clock()
        self.id = config.new_id()  # from the start: the relay's reads are reported under it
        self.server: Address | None = None
        self.route: RouteInfo | None = None

    @property
    def tunnel(self) -> TunnelRecorder:
        """What the root layer sets ``server`` on once the relay is connected."""
        return self

    def handle(self, event: TunnelEnded) -> list[Command]:
        return [Hook(HookKind.DONE, self.record(event.error, event))]

    def record(self, error: str | None, ended: TunnelEnded | None = None) -> FlowRecord:
        request = None
        if self.kind == "tunnel":
            authority = f"[{self.host}]" if ":" in self.host else self.host
            url = f"{authority}:{self.port}"
            request = RequestInfo(b"CONNECT", url, Message((), 0, b""))
        return FlowRecord(
            id=self.id,
            kind=self.kind,
            mode=self.config.mode,
            start=self.start,
            end=self.config.clock(),
            client=self.client,
            server=self.server,
            request=request,
            tunnel=ended.info if ended is not None else None,
            timings=Timings(request_head=self.start),
            error=error,
            tls=ended.tls if ended is not None else None,
            rules=tcp_rules_info(ended.tcp_rules) if ended is not None else None,
            route=self.route,
        )
