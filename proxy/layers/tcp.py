"""The ``tcp:host:port`` mode: every client connection relayed raw to one server.

``TcpLayers`` opens the server first (the client may wait to be spoken to),
then a ``TunnelLayer`` relays both ways with the TCP rules (toxics) that
match; its record is a ``tcp`` flow. ``tcp_plan`` finds those rules, for
this mode and for the tunnels of HTTP listeners alike.
"""

from __future__ import annotations

from proxy.flow.hooks import HookKind
from proxy.flow.record import Address, FlowRecord, tcp_rules_info
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Hook,
    OpenServer,
    PauseReading,
    ResumeReading,
    server_conn,
)
from proxy.layers.events import (
    ConnectionClosed,
    Event,
    ServerFailed,
    ServerOpened,
    TimeoutKind,
    TooManyConnections,
)
from proxy.layers.tunnel import TunnelLayer
from proxy.rules import TcpPlan
from proxy.session import routing
from proxy.session.config import SessionConfig


def observed(config: SessionConfig, flow: str, host: str, port: int) -> tuple[str, str, int] | None:
    """What a relay reports its reads under (``HookKind.DATA``), when a subscriber asked."""
    return (flow, host, port) if HookKind.DATA in config.hooks.notify else None


def tcp_plan(config: SessionConfig, host: str, port: int, client_ip: str) -> TcpPlan | None:
    """The TCP rules (toxics) for a relay to ``host:port``, when rules are loaded."""
    get = config.rules
    rules = get() if get is not None else None
    if rules is None:
        return None
    return rules.tcp_for(host, port, config.mode, client_ip)


class TcpLayers:
    """The ``tcp:host:port`` mode: every client connection relayed raw to one server."""

    SERVER = server_conn(1)
    __slots__ = (
        "client", "config", "ended", "host", "id", "port", "server", "start_time", "tunnel",
    )  # fmt: skip

    def __init__(self, config: SessionConfig, client: Address, host: str, port: int) -> None:
        self.config = config
        self.client = client
        self.host = host
        self.port = port
        self.start_time = config.clock()
        self.id = config.new_id()
        self.server: Address | None = None
        self.tunnel: TunnelLayer | None = None
        self.ended = False

    def start(self) -> list[Command]:
        host, port = self.host, self.port
        via = routing.via_for(self.config, host, port)
        return [PauseReading(CLIENT), OpenServer(self.SERVER, host, port, None, False, via)]

    def handle(self, event: Event) -> list[Command]:
        if self.ended:
            return []
        tunnel = self.tunnel
        if tunnel is not None:
            out = tunnel.handle(event)
            if tunnel.done is not None:
                out.append(self._record(tunnel, None))
            return out
        if isinstance(event, ServerOpened):
            self.server = event.address
            plan = tcp_plan(self.config, self.host, self.port, self.client[0])
            watch = observed(self.config, self.id, self.host, self.port)
            tunnel = self.tunnel = TunnelLayer(self.SERVER, self.config.clock, plan, observe=watch)
            return [*tunnel.start(), ResumeReading(CLIENT)]
        if isinstance(event, ServerFailed):
            return [
                self._record(None, f"upstream {self.host}:{self.port}: {event.message}"),
                CloseConnection(CLIENT, abort=True),
            ]
        if isinstance(event, ConnectionClosed) and event.conn.is_client:
            self.ended = True
            return [CloseConnection(self.SERVER, discard=True)]
        if isinstance(event, TooManyConnections):
            return [
                self._record(None, "refused: too many client connections"),
                CloseConnection(CLIENT),
            ]
        return []

    def deadline(self) -> TimeoutKind | None:
        return TimeoutKind.TUNNEL_IDLE if self.tunnel is not None else None

    @property
    def idle(self) -> bool:
        return False

    @property
    def flow_id(self) -> str | None:
        return None

    @property
    def http2(self) -> bool:
        return False

    def refuse(self) -> list[Command]:
        return self.handle(TooManyConnections())

    def _record(self, tunnel: TunnelLayer | None, error: str | None) -> Hook:
        self.ended = True
        record = FlowRecord(
            id=self.id,
            kind="tcp",
            mode=self.config.mode,
            start=self.start_time,
            end=self.config.clock(),
            client=self.client,
            server=self.server,
            tunnel=tunnel.done if tunnel is not None else None,
            error=error,
            rules=tcp_rules_info(tunnel.matched_rules if tunnel is not None else ()),
            route=routing.route_info(self.config, self.host, self.port),
        )
        return Hook(HookKind.DONE, record)
