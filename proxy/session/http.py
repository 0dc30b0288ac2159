"""The HTTP/1.1 proxy session: one client connection, sans-IO.

``HttpSession.handle(event)`` takes what the shell saw (``proxy.layers.events``)
and returns the commands to carry out, in order, each naming its connection.
Requests on one connection are handled one at a time: a pipelined request
waits, parsed but unprocessed, until the response before it has been
delivered, so responses always leave in order (RFC 9112 §9.3.2).

The session is composed of small parts, each with one job: ``ClientSide``
(requests in, paced responses out), ``ServerSide`` (the server connection,
requests framed out, responses parsed), ``RulePhase`` (rule decisions, as
outcomes), ``RequestPath`` (a request from head to server), ``ResponsePath``
(a response from head to end), ``Endings`` (how an exchange ends: done,
failed, answered or closed by a rule) and ``HookPoints``. What is
forwarded unchanged keeps field order, case and body bytes (principle 4).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import cast

from proxy.flow.hooks import HookKind, Kill, Proceed, Reply, RequestEdit
from proxy.flow.record import Address, TlsInfo
from proxy.http1 import ProtocolError, RequestHead
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Hook,
    SendData,
    StartTunnel,
)
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    HookResumed,
    ServerFailed,
    ServerOpened,
    Stopping,
    TimedOut,
    TimeoutKind,
    TimerFired,
    TooManyConnections,
    TunnelEnded,
)
from proxy.session.clientside import ClientSide
from proxy.session.codec import ClientCodec
from proxy.session.config import SessionConfig
from proxy.session.endings import Endings
from proxy.session.exchange import Exchange
from proxy.session.hookpoints import HookPoints, edit_request
from proxy.session.refusals import explain, refusal, refuse_connection
from proxy.session.request import RequestPath
from proxy.session.response import ResponsePath
from proxy.session.responses import CONNECTION_ESTABLISHED, error_response
from proxy.session.rulephase import RulePhase
from proxy.session.sequencer import Sequencer
from proxy.session.serverside import ServerSide
from proxy.session.shared import UpstreamMux


class HttpSession:
    """Proxy logic for one client connection in regular or reverse mode."""

    __slots__ = (
        "__weakref__", "client", "client_side", "closed", "config", "endings", "ex", "hooks",
        "request", "responses", "rules", "server", "tunnel",
    )  # fmt: skip

    def __init__(
        self,
        config: SessionConfig,
        client: Address,
        codec: ClientCodec | None = None,
        conn_ids: Iterator[int] | None = None,
        mux: UpstreamMux | None = None,
        token: int = 0,
    ) -> None:
        self.config = config
        self.client = client
        # HTTP/1 on the client's connection, unless a multiplexing layer gives
        # the session one stream of its connection (``proxy.layers.http2``).
        self.client_side: ClientCodec = codec if codec is not None else ClientSide(config)
        self.server = ServerSide(config, conn_ids, mux, token)
        self.rules = RulePhase(config, client[0]) if config.rules is not None else None
        self.ex: Exchange | None = None
        self.tunnel: Exchange | None = None
        self.closed = False
        self.hooks = HookPoints(config)
        # The parts see the session through a weak proxy: no reference cycle, so
        # a finished session (its parsers, its exchange) is freed at once, not
        # at the next full collection.
        me = cast(Sequencer, weakref.proxy(self))
        self.endings = Endings(me, self.hooks)
        self.request = RequestPath(me, self.endings, self.rules, self.hooks)
        self.responses = ResponsePath(me, self.endings, self.rules, self.hooks)

    def handle(self, event: Event) -> list[Command]:
        return _HANDLERS[type(event)](self, event)

    # -- events from the shell ------------------------------------------------
    def _data(self, event: DataReceived) -> list[Command]:
        if event.conn.is_client:
            self.client_side.requests.feed(event.data)
            return self.pump_client([])
        if event.conn != self.server.conn or self.server.responses is None:
            return []
        self.server.responses.feed(event.data)
        out = self.responses.pump([])
        if self.server.channel is not None:  # a wake from a shared connection:
            self.pump_client(out)  # its window may have room for more of the request
        return out

    def _eof(self, event: EofReceived) -> list[Command]:
        if event.conn.is_client:
            self.client_side.eof = True
            self.client_side.requests.feed_eof()
            return self.pump_client([])
        return self._server_eof(event)

    def _server_eof(self, event: EofReceived) -> list[Command]:
        """The server closed (FIN or reset): finish what it sent, then forget it."""
        server = self.server
        if event.conn != server.conn or server.responses is None:
            return []
        server.responses.feed_eof()
        server.closing = True
        out = self.responses.pump([])
        if self.ex is None or self.ex.request.method == b"CONNECT":
            server.release(out, reusable=False)
        return out

    def _closed(self, event: ConnectionClosed) -> list[Command]:
        """A connection is gone. The client: an exchange in progress is recorded
        as cut short, and an idle server connection goes back to the pool."""
        if not event.conn.is_client:
            return self._server_eof(EofReceived(event.conn))
        ended, self.closed = self.closed, True
        out: list[Command] = []
        ex, self.ex = self.ex, None
        if ex is None:
            self.server.release(out, reusable=self.server.idle_reusable)
            requests = self.client_side.requests
            if requests.buffered and not (ended or self.client_side.eof):  # gone inside a head
                error = "client: closed the connection inside a request head"
                out.append(
                    Hook(HookKind.DONE, refusal(self.config, self.client, requests, error, None))
                )
            return out
        ex.error = ex.error or "client closed the connection"
        self.endings.done(ex, out)  # its last messages (gRPC), then its record
        self.server.release(out, reusable=False, abort=True)
        return out

    def _refuse(self, event: TooManyConnections) -> list[Command]:
        self.closed = True
        return refuse_connection(self.config, self.client)

    @property
    def between_requests(self) -> bool:
        """No exchange under way and no byte of the next one here yet."""
        return self.ex is None and self.tunnel is None and not self.client_side.requests.buffered

    def _opened(self, event: ServerOpened) -> list[Command]:
        if event.conn != self.server.conn:
            return []
        self.server.connected()
        ex = self.ex
        out: list[Command] = []
        if ex is None:
            return out
        ex.server = event.address
        ex.server_tls = event.tls
        ex.reused = event.reused
        ex.connected_at = self.config.clock()
        if ex.request.method == b"CONNECT":
            out.append(SendData(CLIENT, CONNECTION_ESTABLISHED))
            assert self.server.conn is not None
            self.hooks.notice(HookKind.TUNNEL, ex, out)
            out.append(StartTunnel(self.server.conn, self.client_side.requests.take_remaining()))
            self.tunnel, self.ex = ex, None
            return out
        self.request.send(ex, out)
        return self.pump_client(out)

    def _failed(self, event: ServerFailed) -> list[Command]:
        if event.conn != self.server.conn:
            return []
        self.server.failed()
        ex = self.ex
        if ex is None:
            return []
        status = 504 if event.timeout else 502
        target = ex.target
        where = f"{target.host}:{target.port}" if target else ex.url
        return self.endings.fail(
            ex, status, f"upstream {where}: {event.message}", [], server_open=False
        )

    def _tunnel_ended(self, event: TunnelEnded) -> list[Command]:
        ex, self.tunnel = self.tunnel, None
        self.closed = True
        if ex is None:
            return []
        if event.error is not None:
            ex.error = event.error
        if event.tcp_rules:
            ex.tcp_rules = event.tcp_rules
        tls, config = event.tls, self.config
        if tls is None and (config.client_tls is not None or ex.server_tls is not None):
            # a 101 inside intercepted TLS, or to an https upstream: as for its exchange
            intercepted = config.client_tls is not None
            tls = TlsInfo(intercepted, config.client_tls, ex.server_tls, config.keylog)
        record = ex.finish(config.mode, self.client, config.clock(), event.info, tls)
        return [Hook(HookKind.DONE, record)]

    def _timer(self, event: TimerFired) -> list[Command]:
        """A rule's request delay is over: send the request on."""
        ex = self.ex
        out: list[Command] = []
        if ex is not None and ex.waiting and ex.response is None:
            ex.waiting = False
            self.request.dispatch(ex, out)
            self.pump_client(out)
        return out

    def _resumed(self, event: HookResumed) -> list[Command]:
        """A held hook's verdict: carry on (edited), answer, or kill the flow."""
        ex = self.ex
        out: list[Command] = []
        if ex is None or ex.held is not event.kind:
            return out
        ex.held = None
        verdict = event.verdict
        if isinstance(verdict, Proceed) and verdict.note:
            ex.notes += (verdict.note,)
        if event.kind is HookKind.RESPONSE_HEAD:
            self.responses.resume(ex, verdict, out)
        elif isinstance(verdict, Reply):
            self.responses.replies.send(ex, verdict, out)
        elif isinstance(verdict, Kill):
            self.endings.kill(ex, out)
        else:
            if isinstance(verdict.edit, RequestEdit):
                try:
                    edit_request(ex, verdict.edit)
                except ValueError as e:
                    return self.endings.fail(ex, 502, f"a hook's edit: {e}", out)
            self.request.dispatch(ex, out)
            self.pump_client(out)
        return out

    def deadline(self) -> TimeoutKind:
        """Which timeout applies now (the shell's watchdog measures inactivity)."""
        if self.tunnel is not None:
            return TimeoutKind.TUNNEL_IDLE
        ex = self.ex
        if ex is not None and ex.held is not None:
            return TimeoutKind.HELD
        if ex is None:
            if self.client_side.requests.buffered:
                return TimeoutKind.CLIENT_HEAD
            return TimeoutKind.CLIENT_IDLE
        if ex.response is None and ex.request_done:
            return TimeoutKind.RESPONSE_HEAD
        return TimeoutKind.TRANSFER_IDLE

    def _timed_out(self, event: TimedOut) -> list[Command]:
        kind = event.kind
        ex = self.ex
        if ex is not None and ex.held is not None and kind is not TimeoutKind.HELD:
            return []  # another stream's limit; a held flow keeps waiting
        if ex is None or kind in _CONNECTION_TIMEOUTS:
            self.closed = True
            out: list[Command] = []
            if kind is TimeoutKind.CLIENT_HEAD:  # a head that never completed (slowloris)
                # RFC 9110 §15.5.9: the request did not complete in time.
                answer = error_response(408, "the request head did not complete in time")
                error = f"client: timeout ({kind.value}): the request head never completed"
                requests = self.client_side.requests
                out.append(SendData(CLIENT, answer))
                out.append(
                    Hook(HookKind.DONE, refusal(self.config, self.client, requests, error, answer))
                )
            out.append(CloseConnection(CLIENT))
            return out
        if ex.error is not None and ex.error.endswith(": hang"):
            # A rule's hang says nothing, ever: the timeout only ends it quietly.
            ex.error += f", ended by the {kind.value} timeout"
            return self.endings.quietly(ex, [])
        return self.endings.fail(ex, 504, f"timeout ({kind.value}) waiting for {ex.url}", [])

    # -- client side ------------------------------------------------------------
    def pump_client(self, out: list[Command]) -> list[Command]:
        """Take the client's parsed events as far as the current exchange allows."""
        requests = self.client_side.requests
        try:
            while not self.closed:
                ex = self.ex
                if ex is None:
                    event = requests.next_event()
                    if event is None:
                        self._maybe_done(out)
                        break
                    assert isinstance(event, RequestHead)
                    self.request.start(event, out)
                    continue
                if ex.hook_body:  # a body the REQUEST hook must see whole
                    event = requests.next_event()
                    if event is None:
                        break
                    if self.hooks.body_event(ex, event):
                        self.request.dispatch(ex, out)
                    continue
                if ex.req_buffer is not None and ex.prepared_body is None and not ex.overflow:
                    event = requests.next_event()  # a body the rules must see first
                    if event is None:
                        break
                    assert self.rules is not None
                    outcome = self.rules.request_body(ex, event)
                    if outcome is not None:
                        self.request.carry_out(ex, outcome, out)
                    continue
                server = self.server
                if ex.request_done or not server.ready or server.blocked or ex.waiting or ex.held:
                    break
                event = requests.next_event()
                if event is None:
                    break
                self.server.request_event(ex, event, out)
        except ProtocolError as e:
            self._client_error(e, out)
        if not self.closed:  # closed: the connection's reading is not ours to control
            self.client_side.flow_control(out)
        return out

    def _maybe_done(self, out: list[Command]) -> None:
        """Idle, and the client is gone: its upstream connection can serve others."""
        if self.client_side.eof and not self.client_side.requests.buffered:
            self.server.release(out, reusable=self.server.idle_reusable)
            self.closed = True
            self.client_side.close(out)

    def _client_error(self, e: ProtocolError, out: list[Command]) -> None:
        ex = self.ex
        if ex is None:
            self.closed = True
            requests = self.client_side.requests
            if not (self.client_side.eof and requests.at_message_start):
                data, _ = requests.refused(64)
                message = explain(data, e.message)
                answer = error_response(e.status, message)
                out.append(SendData(CLIENT, answer))
                out.append(self._refused(f"client: {message}", answer))
            out.append(CloseConnection(CLIENT))
            return
        if ex.request_done:
            return
        ex.error = f"client: {e.message}"
        self.endings.fail(ex, e.status, e.message, out)

    def _refused(self, error: str, answer: bytes | None) -> Hook:
        requests = self.client_side.requests
        return Hook(HookKind.DONE, refusal(self.config, self.client, requests, error, answer))


_CONNECTION_TIMEOUTS = frozenset(
    {TimeoutKind.CLIENT_IDLE, TimeoutKind.CLIENT_HEAD, TimeoutKind.TUNNEL_IDLE}
)

_HANDLERS: dict[type, Callable[[HttpSession, object], list[Command]]] = {
    DataReceived: HttpSession._data,  # type: ignore[dict-item]
    EofReceived: HttpSession._eof,  # type: ignore[dict-item]
    ServerOpened: HttpSession._opened,  # type: ignore[dict-item]
    ServerFailed: HttpSession._failed,  # type: ignore[dict-item]
    TunnelEnded: HttpSession._tunnel_ended,  # type: ignore[dict-item]
    TimerFired: HttpSession._timer,  # type: ignore[dict-item]
    ConnectionClosed: HttpSession._closed,  # type: ignore[dict-item]
    TooManyConnections: HttpSession._refuse,  # type: ignore[dict-item]
    Stopping: lambda session, event: [],
    TimedOut: HttpSession._timed_out,  # type: ignore[dict-item]
    HookResumed: HttpSession._resumed,  # type: ignore[dict-item]
}
