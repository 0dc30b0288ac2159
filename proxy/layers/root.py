"""All the layers of one client connection, and the switches between them.

``ClientLayers`` is what the shell drives: every event goes to the layer in
charge now, and the commands that come back go to the shell, except those
by which an HTTP session hands the connection on (always its last command):

* ``StartTunnel`` (a CONNECT relayed as is, a 101 Upgrade): a
  ``TunnelLayer`` relays from now on (a ``WebSocketLayer`` after a WebSocket
  101; a relayed CONNECT first watches for h2c, ``tunnelsniff``); when it
  ends, the session that opened it records the tunnel (``TunnelEnded``);
* ``Intercept`` (a CONNECT to a host we intercept): a ``NextLayer`` sniffs
  the client's first bytes and chooses: a nested HTTP session (over the TLS
  the shell terminates, or plain; HTTP/2 when ALPN says h2), a raw relay,
  or a failure to record;
* ``StartHttp2`` (an accepted ``Upgrade: h2c``): the HTTP/2 layer.

The HTTP/2 preface as a connection's first bytes also hands it to HTTP/2.
A reverse listener for https or h2c shares HTTP/2 server connections among
its sessions (``UpstreamMux``, driven by ``proxy.layers.muxed``). A reverse
listener with interception on starts with a ``NextLayer`` in listener mode.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.flow.record import Address, TlsInfo
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Conn,
    Intercept,
    OpenServer,
    PauseReading,
    ResumeReading,
    StartHttp2,
    StartTunnel,
    server_conn,
)
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    ServerFailed,
    ServerOpened,
    TimeoutKind,
    TooManyConnections,
    TunnelEnded,
)
from proxy.layers.http2.server import Http2Server
from proxy.layers.http2.upstream import UpstreamMux
from proxy.layers.muxed import SWITCHES, handle_muxed
from proxy.layers.nextlayer import DecodeHttp, GiveUp, InterceptSettings, NextLayer, RelayRaw
from proxy.layers.recorder import TunnelRecorder
from proxy.layers.tcp import observed, tcp_plan
from proxy.layers.tunnel import TunnelLayer
from proxy.layers.tunnelsniff import TunnelSniff, Verdict, preface
from proxy.layers.websocket.layer import WebSocketLayer
from proxy.layers.websocket.setup import websocket_layer
from proxy.session import routing
from proxy.session.config import SessionConfig, Upstream
from proxy.session.http import HttpSession
from proxy.session.shared import ServerKey

RAW_SERVER = server_conn(1_000_000)  # the server of a raw relay chosen by the next layer
Layer = HttpSession | Http2Server | TunnelLayer | WebSocketLayer | NextLayer


class ClientLayers:
    """The layer stack of one client connection (HTTP listeners)."""

    __slots__ = (
        "_next_target", "_probe", "_relay", "_sniff", "client", "config", "current",
        "intercept", "mux", "session", "tunnel_owner", "tunnel_tls",
    )  # fmt: skip

    def __init__(
        self,
        config: SessionConfig,
        client: Address,
        intercept: InterceptSettings | None = None,
    ) -> None:
        self.config = config
        self.client = client
        if intercept is not None and intercept.http2 != config.http2:
            intercept = replace(intercept, http2=config.http2)
        self.intercept = intercept
        # A reverse listener for an https or h2c server may reach it over
        # HTTP/2 (ALPN decides, or prior knowledge) even for HTTP/1.1 clients.
        up = config.upstream
        wants_h2 = up is not None and (up.scheme == "https" or up.h2c) and config.http2
        self.mux = UpstreamMux() if wants_h2 else None
        self.session = HttpSession(config, client, mux=self.mux)  # the listener's own session
        # Where events go now: an HTTP session, an HTTP/2 connection, a
        # tunnel, the next-layer choice.
        self.current: Layer | None = self.session
        # The client's first bytes, while they may still be an HTTP/2 preface.
        self._probe: bytearray | None = bytearray() if config.http2 else None
        self._sniff: TunnelSniff | None = None  # a relayed CONNECT's first bytes
        self.tunnel_owner: HttpSession | TunnelRecorder | None = None  # records the tunnel
        self.tunnel_tls: TlsInfo | None = None
        self._relay: tuple[Conn, bytes, bool] | None = None  # raw relay being connected
        self._next_target: tuple[str, int] = ("", 0)

    def start(self) -> list[Command]:
        """A reverse listener with interception on: clients may speak TLS to it."""
        up = self.config.upstream
        if self.intercept is None or up is None:
            return []
        layer = NextLayer(up.host, up.port, self.intercept, listener=True)
        self.current = layer
        return layer.start()

    def handle(self, event: Event) -> list[Command]:
        current = self.current
        if type(current) is HttpSession:
            if self._probe is not None and type(event) is DataReceived and event.conn.is_client:
                return self._sniff_h2(current, event.data)
            mux = self.mux
            if mux is not None:
                return handle_muxed(self, current, mux, event)
            out = current.handle(event)
            if out and type(out[-1]) in SWITCHES:
                return self.switch(current, out)
            return out
        if self._relay is not None:
            return self._connecting_relay(event)
        if current is None:
            return []
        if self._sniff is not None and type(current) is TunnelLayer:
            sniffed = self._sniff_tunnel(self._sniff, event)
            if sniffed is not None:
                return sniffed
        out = current.handle(event)
        if type(current) is TunnelLayer or type(current) is WebSocketLayer:
            if current.done is not None:
                out += self._tunnel_done(current)
        elif type(current) is NextLayer and current.choice is not None:
            out += self._chosen(current)
        return out

    # -- what the shell asks ------------------------------------------------------
    def deadline(self) -> TimeoutKind | None:
        """Which inactivity limit applies now (None: none of ours)."""
        current = self.current
        if type(current) is HttpSession:
            return current.deadline()
        if type(current) is TunnelLayer or type(current) is WebSocketLayer:
            return TimeoutKind.TUNNEL_IDLE
        if type(current) is NextLayer:
            return TimeoutKind.TLS_HANDSHAKE
        if type(current) is Http2Server:
            return current.deadline()
        return None

    @property
    def http2(self) -> bool:
        """The client speaks HTTP/2 (for --pcap: its frames start a stream of their own)."""
        return type(self.current) is Http2Server

    @property
    def flow_id(self) -> str | None:
        """The id of the HTTP exchange under way, if any (for the --pcap notes)."""
        http = self.http
        ex = http.ex if http is not None else None
        return ex.id if ex is not None else None

    @property
    def http(self) -> HttpSession | None:
        """The HTTP session in charge, if one is."""
        current = self.current
        return current if type(current) is HttpSession else None

    @property
    def idle(self) -> bool:
        """Between requests with nothing buffered: a graceful stop may close it now."""
        http = self.http
        if http is None:
            return type(self.current) is Http2Server and self.current.idle
        return http.between_requests

    def refuse(self) -> list[Command]:
        """Over --max-connections: the session answers (and records) the refusal."""
        return self.session.handle(TooManyConnections())

    def enter(self, host: str, port: int, owner: TunnelRecorder, early: bytes) -> list[Command]:
        """A SOCKS5 or transparent connection for ``host:port``: straight to the
        next-layer choice, as after an intercepted CONNECT; ``owner`` records it."""
        assert self.intercept is not None
        self.tunnel_owner = owner
        self._next_target = (host, port)
        layer = NextLayer(host, port, self.intercept)
        self.current = layer
        out = layer.start()
        if early:
            out += self.handle(DataReceived(CLIENT, early))
        return out

    # -- switches ---------------------------------------------------------------
    def switch(self, session: HttpSession, out: list[Command]) -> list[Command]:
        """``session`` hands the connection on: the last of ``out`` says to what."""
        cmd = out.pop()
        if isinstance(cmd, StartHttp2):
            http2 = Http2Server(session.config, self.client)
            self.current = http2
            self._probe = None
            return out + http2.start(cmd.data, (cmd.settings, cmd.request))
        if isinstance(cmd, StartTunnel):
            self.tunnel_owner = session
            ex = session.tunnel
            ws = websocket_layer(ex, session.config, cmd.server, cmd.replay)
            if ws is not None:  # a WebSocket: messages, not bytes
                self.current = ws
                out.append(ResumeReading(CLIENT))
                return out + ws.start(cmd.to_server, cmd.to_client)
            key = session.server.key
            assert key is not None
            if ex is not None and ex.request.method == b"CONNECT" and self.config.http2:
                # h2c inside a CONNECT (gRPC's http_proxy): the client's first bytes tell.
                first = bytearray()
                if not cmd.to_server or preface(first, cmd.to_server) is None:
                    self._sniff = TunnelSniff()
                    self._sniff.client += first
                elif preface(bytearray(), cmd.to_server):
                    return out + self._tunnel_to_http2(cmd.server, key, cmd.to_server)
            tunnel = TunnelLayer(
                cmd.server,
                self.config.clock,
                tcp_plan(self.config, key[0], key[1], self.client[0]),
                half_close=session.config.client_tls is None,
                observe=observed(self.config, ex.id, key[0], key[1]) if ex is not None else None,
            )
            self.current = tunnel
            out.append(ResumeReading(CLIENT))
            out += tunnel.start(cmd.to_server, cmd.to_client)
            return out
        assert isinstance(cmd, Intercept) and self.intercept is not None
        self.tunnel_owner = session
        self._next_target = (cmd.host, cmd.port)
        layer = NextLayer(cmd.host, cmd.port, self.intercept)
        self.current = layer
        out.append(ResumeReading(CLIENT))  # whatever the session had paused
        out += layer.start()
        early = session.client_side.requests.take_remaining()
        if early:
            out += self.handle(DataReceived(CLIENT, early))
        return out

    def _chosen(self, layer: NextLayer) -> list[Command]:
        choice = layer.choice
        if isinstance(choice, DecodeHttp):
            return self._decode(layer, choice)
        if isinstance(choice, GiveUp):
            self.current = None
            out = self._record_tunnel(TunnelEnded(None, choice.message, choice.tls))
            out.append(CloseConnection(CLIENT))
            return out
        assert isinstance(choice, RelayRaw)
        self.tunnel_tls = choice.tls
        self._relay = (RAW_SERVER, choice.data, choice.eof)
        host, port = layer.host, layer.port
        via = routing.via_for(self.config, host, port)
        return [PauseReading(CLIENT), OpenServer(RAW_SERVER, host, port, None, False, via)]

    def _decode(self, layer: NextLayer, choice: DecodeHttp) -> list[Command]:
        if layer.listener and choice.tls is None:
            session = self.session  # not TLS: the listener's own HTTP
        elif layer.listener:
            config = replace(self.config, client_tls=choice.tls)
            session = HttpSession(config, self.client, mux=self.mux)
        else:
            scheme = "http" if choice.tls is None else "https"
            up = Upstream(scheme, layer.host, layer.port, sni=choice.name)
            config = replace(
                self.config, upstream=up, keep_host=True, intercept=None, client_tls=choice.tls
            )
            session = HttpSession(config, self.client)
        if choice.tls is not None and choice.tls.alpn == "h2":
            return self._http2(replace(session.config, client_tls=choice.tls), choice.data)
        self.current = session
        self._probe = bytearray() if self.config.http2 else None
        out: list[Command] = []
        if choice.data:
            out += self.handle(DataReceived(CLIENT, choice.data))
        if choice.eof:
            out += self.handle(EofReceived(CLIENT))
        return out

    # -- HTTP/2 --------------------------------------------------------------------
    def _sniff_h2(self, session: HttpSession, data: bytes) -> list[Command]:
        """The first bytes of an HTTP session: the HTTP/2 preface (prior
        knowledge, RFC 9113 §3.3) hands the connection to HTTP/2."""
        probe = self._probe
        assert probe is not None
        verdict = preface(probe, data)
        if verdict is None:
            return []  # could still be the preface
        self._probe = None
        if verdict:
            return self._http2(session.config, bytes(probe))
        return self.handle(DataReceived(CLIENT, bytes(probe)))

    def _sniff_tunnel(self, sniff: TunnelSniff, event: Event) -> list[Command] | None:
        """The first bytes of a relayed CONNECT (``tunnelsniff``); None: relay ``event``."""
        if type(event) not in (DataReceived, EofReceived, ConnectionClosed):
            return None
        verdict = sniff.feed(event)  # type: ignore[arg-type]
        if verdict is Verdict.WAIT:
            return []
        self._sniff = None
        owner = self.tunnel_owner
        if verdict is Verdict.HTTP2 and type(owner) is HttpSession and owner.server.key:
            tunnel = self.current
            assert type(tunnel) is TunnelLayer
            return self._tunnel_to_http2(tunnel.server, owner.server.key, bytes(sniff.client))
        out: list[Command] = []
        for held in sniff.replay:
            out += self.handle(held)
        return out

    def _tunnel_to_http2(self, server: Conn, key: ServerKey, data: bytes) -> list[Command]:
        """The tunnel's client speaks h2c: its streams go to the CONNECT's target
        (as h2c for gRPC, HTTP/1.1 otherwise); the CONNECT is recorded as done."""
        out: list[Command] = [CloseConnection(server, discard=True)]
        out += self._record_tunnel(TunnelEnded(None, None, None))
        up = Upstream("http", key[0], key[1])
        config = replace(self.config, upstream=up, keep_host=True, intercept=None)
        return out + self._http2(config, data)

    def _http2(self, config: SessionConfig, data: bytes) -> list[Command]:
        layer = Http2Server(config, self.client)
        self.current = layer
        self._probe = None
        return layer.start(data)

    def _connecting_relay(self, event: Event) -> list[Command]:
        """Events while the raw relay's server connection is being opened."""
        assert self._relay is not None
        conn, data, eof = self._relay
        if isinstance(event, DataReceived) and event.conn.is_client:
            self._relay = (conn, data + event.data, eof)
        elif isinstance(event, EofReceived) and event.conn.is_client:
            self._relay = (conn, data, True)
        elif isinstance(event, ServerOpened) and event.conn == conn:
            self._relay = None
            host, port = self._next_target
            plan = tcp_plan(self.config, host, port, self.client[0])
            owner = self.tunnel_owner.tunnel if self.tunnel_owner is not None else None
            watch = observed(self.config, owner.id, host, port) if owner is not None else None
            tunnel = TunnelLayer(conn, self.config.clock, plan, observe=watch)
            self.current = tunnel
            if self.tunnel_owner is not None and self.tunnel_owner.tunnel is not None:
                self.tunnel_owner.tunnel.server = event.address
            out = [ResumeReading(CLIENT), *tunnel.start(data)]
            if eof:
                out += self.handle(EofReceived(CLIENT))
            return out
        elif isinstance(event, ServerFailed) and event.conn == conn:
            self._relay = None
            self.current = None
            host, port = self._next_target
            error = f"upstream {host}:{port}: {event.message}"
            out = self._record_tunnel(TunnelEnded(None, error, self.tunnel_tls))
            out.append(CloseConnection(CLIENT))
            return out
        elif isinstance(event, ConnectionClosed) and event.conn.is_client:
            self._relay = None
            self.current = None
            return [CloseConnection(conn, discard=True)]
        return []

    def _tunnel_done(self, tunnel: TunnelLayer | WebSocketLayer) -> list[Command]:
        self.current = None
        assert tunnel.done is not None
        rules = tunnel.matched_rules if type(tunnel) is TunnelLayer else ()
        return self._record_tunnel(TunnelEnded(tunnel.done, None, self.tunnel_tls, rules))

    def _record_tunnel(self, ended: TunnelEnded) -> list[Command]:
        owner, self.tunnel_owner = self.tunnel_owner, None
        if owner is None:
            return []
        return owner.handle(ended)
