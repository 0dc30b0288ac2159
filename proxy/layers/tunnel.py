"""The tunnel layer: opaque bytes both ways, half-close aware, with TCP rules.

Used for CONNECT tunnels, WebSocket connections after the 101, bytes that
are not HTTP or TLS inside an intercepted tunnel, and the raw ``tcp:`` mode.
A FIN from one side is passed on (``Shutdown``) while the other side may
still send (RFC 9293 §3.6); the tunnel ends when both directions have
finished, or either connection is gone, or the proxy ends it (timeout,
shutdown, a rule). TLS has no half-close, so when the client side is TLS we
terminated, its end of stream ends the tunnel.

TCP rules (Toxiproxy's toxics, ``proxy.rules.tcp``) decide, without IO, when
bytes may leave each way; their instructions become timed ``SendData``,
``Shutdown`` and ``CloseConnection`` commands and timers. The shell keeps
each connection's timed writes in order and applies the backpressure.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.flow.hooks import HookKind
from proxy.flow.record import TunnelInfo
from proxy.flow.tcpdata import TcpData
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Conn,
    Hook,
    SendData,
    SetTimer,
    Shutdown,
)
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    Stopping,
    TimedOut,
    TimerFired,
)
from proxy.rules import TcpPlan
from proxy.rules import tcp as toxics

# Timer tokens of this layer (the session uses 0, the next-layer choice 1).
WAKE_UP, WAKE_DOWN, RULE_CLOSE, RULE_RESET = 10, 11, 12, 13


class TunnelLayer:
    """Relays between the client and ``server``; ``done`` is set once it ended."""

    __slots__ = (
        "_closing", "bytes_down", "bytes_up", "client_close", "clock", "done", "half_close",
        "observe", "plan", "server", "server_close",
    )  # fmt: skip

    def __init__(
        self,
        server: Conn,
        clock: Callable[[], float],
        rules: TcpPlan | None = None,
        half_close: bool = True,
        observe: tuple[str, str, int] | None = None,
    ) -> None:
        self.server = server
        # (flow id, host, port): each read goes to ``HookKind.DATA`` subscribers too.
        self.observe = observe
        self.clock = clock
        self.plan = rules if rules is not None and rules.matched else None
        # A client side we terminated TLS for cannot half-close.
        self.half_close = half_close
        self.bytes_up = 0  # client -> server
        self.bytes_down = 0
        self.client_close = ""  # "fin", "reset", "proxy", "timeout", "rule"
        self.server_close = ""
        self.done: TunnelInfo | None = None
        self._closing = False  # both closes were asked for

    @property
    def matched_rules(self) -> tuple[str, ...]:
        return self.plan.matched if self.plan is not None else ()

    def start(self, to_server: bytes = b"", to_client: bytes = b"") -> list[Command]:
        """Begin relaying; bytes already read past the last message go first."""
        out: list[Command] = []
        if self.plan is not None:  # toxics that act from the start (reset_peer, timeout)
            now = self.clock()
            self._run(self.plan.upstream.start(now), True, out)
            self._run(self.plan.downstream.start(now), False, out)
        if to_server:
            self._from_client(to_server, out)
        if to_client:
            self._from_server(to_client, out)
        return out

    def handle(self, event: Event) -> list[Command]:
        out: list[Command] = []
        if self.done is not None:
            return out
        if type(event) is DataReceived:
            conn = event.conn
            if conn.is_client:
                self._from_client(event.data, out)
            elif conn is self.server or conn == self.server:
                self._from_server(event.data, out)
        elif isinstance(event, EofReceived):
            if event.conn.is_client:
                self._client_eof(out)
            elif event.conn == self.server:
                self._server_eof(out)
        elif isinstance(event, ConnectionClosed):
            self._lost(event, out)
        elif isinstance(event, TimerFired):
            self._timer(event.token, out)
        elif isinstance(event, TimedOut):
            self.close("timeout", out)
        elif isinstance(event, Stopping):
            self.close("proxy", out)
        return out

    # -- bytes and ends ---------------------------------------------------------
    def _from_client(self, data: bytes, out: list[Command]) -> None:
        self.bytes_up += len(data)
        if self.plan is not None:
            self._run(self.plan.upstream.feed(self.clock(), data), True, out)
        else:
            out.append(SendData(self.server, data))
        if self.observe is not None:
            self._observed(True, data, out)

    def _from_server(self, data: bytes, out: list[Command]) -> None:
        self.bytes_down += len(data)
        if self.plan is not None:
            self._run(self.plan.downstream.feed(self.clock(), data), False, out)
        else:
            out.append(SendData(CLIENT, data))
        if self.observe is not None:
            self._observed(False, data, out)

    def _observed(self, from_client: bool, data: bytes, out: list[Command]) -> None:
        assert self.observe is not None
        flow, host, port = self.observe
        out.append(Hook(HookKind.DATA, TcpData(flow, host, port, from_client, data, self.clock())))

    def _client_eof(self, out: list[Command]) -> None:
        self.client_close = self.client_close or "fin"
        if not self.half_close:  # TLS: the client is done altogether
            self.server_close = self.server_close or "proxy"
        elif self.plan is not None:
            self._run(self.plan.upstream.eof(self.clock()), True, out)  # the FIN when toxics say
        else:
            out.append(Shutdown(self.server))
        self._maybe_done(out)

    def _server_eof(self, out: list[Command]) -> None:
        self.server_close = self.server_close or "fin"
        if not self.half_close:
            self.client_close = self.client_close or "proxy"
        elif self.plan is not None:
            self._run(self.plan.downstream.eof(self.clock()), False, out)
        else:
            out.append(Shutdown(CLIENT))
        self._maybe_done(out)

    def _lost(self, event: ConnectionClosed, out: list[Command]) -> None:
        """A connection is gone: the other one ends too, and so does the tunnel."""
        reason = "reset" if event.reset else "fin"
        if event.conn.is_client:
            self.client_close = self.client_close or reason
            if event.reset or not self.server_close:
                self.server_close = self.server_close or "proxy"
            out.append(CloseConnection(self.server, abort=event.reset, discard=True))
        elif event.conn == self.server:
            self.server_close = self.server_close or reason
            self.client_close = self.client_close or "proxy"
            out.append(CloseConnection(CLIENT, abort=event.reset, discard=True))
        else:
            return
        self._finish()

    def _maybe_done(self, out: list[Command]) -> None:
        """Both directions ended: close both once what is queued has gone out."""
        if self.client_close and self.server_close and not self._closing:
            self._closing = True
            out.append(CloseConnection(self.server))
            out.append(CloseConnection(CLIENT))

    def close(self, reason: str, out: list[Command]) -> None:
        """End the tunnel from our side (timeout, shutdown, a rule)."""
        self.client_close = self.client_close or reason
        self.server_close = self.server_close or reason
        out.append(CloseConnection(self.server, discard=True))
        out.append(CloseConnection(CLIENT, discard=True))
        self._finish()

    def _reset(self, out: list[Command]) -> None:
        """A reset_peer rule: abort both sides (RST)."""
        self.client_close = self.client_close or "reset"
        self.server_close = self.server_close or "reset"
        out.append(CloseConnection(self.server, abort=True))
        out.append(CloseConnection(CLIENT, abort=True))
        self._finish()

    def _finish(self) -> None:
        if self.done is None:
            self.done = TunnelInfo(
                self.bytes_up, self.bytes_down, self.client_close, self.server_close
            )

    # -- TCP rules -------------------------------------------------------------------
    def _run(self, instructions: list[toxics.Instruction], up: bool, out: list[Command]) -> None:
        dest = self.server if up else CLIENT
        now = self.clock()
        for ins in instructions:
            if isinstance(ins, toxics.Send):
                out.append(SendData(dest, ins.data, ins.at))
            elif isinstance(ins, toxics.Shutdown):
                out.append(Shutdown(dest, ins.at))
            elif isinstance(ins, toxics.Close):
                out.append(SetTimer(max(0.0, ins.at - now), RULE_CLOSE))
            elif isinstance(ins, toxics.Reset):
                out.append(SetTimer(max(0.0, ins.at - now), RULE_RESET))
            elif isinstance(ins, toxics.Wake):
                out.append(SetTimer(max(0.0, ins.at - now), WAKE_UP if up else WAKE_DOWN))

    def _timer(self, token: int, out: list[Command]) -> None:
        if self.plan is None:
            return
        if token == RULE_CLOSE:
            self.close("rule", out)
        elif token == RULE_RESET:
            self._reset(out)
        elif token == WAKE_UP:
            self._run(self.plan.upstream.tick(self.clock()), True, out)
        elif token == WAKE_DOWN:
            self._run(self.plan.downstream.tick(self.clock()), False, out)
