"""The HTTP/1.1 proxy session: one client connection, sans-IO.

Events come in as method calls (``client_data``, ``server_connected``,
``server_data``, ...); each returns the commands the shell must carry out, in
order. Requests on one connection are handled one at a time: a pipelined
request waits, parsed but unprocessed, until the response before it has been
delivered, so responses always leave in order (RFC 9112 §9.3.2).

The request and response paths are symmetric: parse with our codec, strip
hop-by-hop fields, reframe from our own parse, forward. What is forwarded
unchanged keeps field order, case and body bytes (principle 4).
"""

from __future__ import annotations

from proxy.flow.record import (
    Address,
    FlowRecord,
    Message,
    RequestInfo,
    TlsInfo,
    TlsSide,
    TunnelInfo,
)
from proxy.http1 import (
    FramingKind,
    ProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from proxy.session import auth, messages
from proxy.session.capture import BodyCapture
from proxy.session.commands import (
    CloseClient,
    Command,
    FlowDone,
    Intercept,
    OpenServer,
    PauseClient,
    ReleaseServer,
    ResumeClient,
    SendClient,
    StartTunnel,
)
from proxy.session.config import SessionConfig
from proxy.session.errors import UpstreamError
from proxy.session.exchange import Exchange
from proxy.session.request import RequestSteps
from proxy.session.response import ResponseSteps
from proxy.session.responses import CONNECTION_ESTABLISHED, error_response
from proxy.session.rulesteps import RuleSteps
from proxy.session.target import Target, connect_target, forward_target, origin_target

# Timeout kinds the shell's watchdog may report (see ``deadline``).
CLIENT_IDLE = "client_idle"
CLIENT_HEAD = "client_head"
RESPONSE_HEAD = "response_head"
TRANSFER_IDLE = "transfer_idle"
TUNNEL_IDLE = "tunnel_idle"


class HttpSession(RequestSteps, ResponseSteps, RuleSteps):
    """Proxy logic for one client connection in regular or reverse mode."""

    def __init__(self, config: SessionConfig, client: Address) -> None:
        self.config = config
        self.client = client
        self.requests = RequestParser(config.limits)
        self.responses: ResponseParser | None = None
        self.ex: Exchange | None = None
        self.server_key: tuple[str, int, str | None] | None = None
        self.server_ready = False
        self.tunnel: Exchange | None = None
        self.closed = False
        self.server_closing = False  # the current server connection sent EOF
        self._paused = False
        self._client_eof = False

    # -- events from the shell ------------------------------------------------
    def client_data(self, data: bytes) -> list[Command]:
        self.requests.feed(data)
        return self._pump_client([])

    def client_eof(self) -> list[Command]:
        self._client_eof = True
        self.requests.feed_eof()
        return self._pump_client([])

    def server_connected(
        self, address: Address, reused: bool, tls: TlsSide | None = None
    ) -> list[Command]:
        ex = self.ex
        self.server_ready = True
        self.server_closing = False
        self.responses = ResponseParser(self.config.limits)
        out: list[Command] = []
        if ex is None:
            return out
        ex.server = address
        ex.server_tls = tls
        ex.reused = reused
        ex.connected_at = self.config.clock()
        if ex.request.method == b"CONNECT":
            out.append(SendClient(CONNECTION_ESTABLISHED))
            out.append(StartTunnel(to_server=self.requests.take_remaining()))
            self.tunnel, self.ex = ex, None
            return out
        self._send_head(ex, out)
        return self._pump_client(out)

    def server_failed(self, error: UpstreamError) -> list[Command]:
        self.server_ready = False
        self.server_key = None
        ex = self.ex
        if ex is None:
            return []
        status = 504 if error.timeout else 502
        target = ex.target
        where = f"{target.host}:{target.port}" if target else ex.url
        return self._fail(ex, status, f"upstream {where}: {error}", [], server_open=False)

    def server_data(self, data: bytes) -> list[Command]:
        if self.responses is None:
            return []
        self.responses.feed(data)
        return self._pump_server([])

    def server_eof(self) -> list[Command]:
        """The server closed (FIN or reset): finish what it sent, then forget it."""
        if self.responses is None:
            return []
        self.responses.feed_eof()
        self.server_closing = True
        out = self._pump_server([])
        if self.ex is None or self.ex.request.method == b"CONNECT":
            self._release(out, reusable=False)
        return out

    def tunnel_closed(
        self,
        info: TunnelInfo | None,
        error: str | None = None,
        tls: TlsInfo | None = None,
        tcp_rules: tuple[str, ...] = (),
    ) -> list[Command]:
        """The tunnel (or intercepted connection) ended; ``info`` None: no relay ran."""
        ex, self.tunnel = self.tunnel, None
        self.closed = True
        if ex is None:
            return []
        if error is not None:
            ex.error = error
        if tcp_rules:
            ex.tcp_rules = tcp_rules
        return [FlowDone(ex.finish(self.config.mode, self.client, self.config.clock(), info, tls))]

    def deadline(self) -> str:
        """Which timeout applies now (the shell's watchdog measures inactivity)."""
        if self.tunnel is not None:
            return TUNNEL_IDLE
        ex = self.ex
        if ex is None:
            return CLIENT_HEAD if self.requests.buffered else CLIENT_IDLE
        if ex.response is None and ex.request_done:
            return RESPONSE_HEAD
        return TRANSFER_IDLE

    def timeout(self, kind: str) -> list[Command]:
        ex = self.ex
        if ex is None or kind in (CLIENT_IDLE, CLIENT_HEAD, TUNNEL_IDLE):
            self.closed = True
            out: list[Command] = []
            if kind == CLIENT_HEAD:  # a head that never completed (slowloris): say so
                now = self.config.clock()
                line = self.requests.pending_line
                request = None
                if line is not None:  # the request line came; the fields never ended
                    method, target, version = line
                    message = Message((), 0, b"", version)
                    request = RequestInfo(method, target.decode("latin-1"), message)
                record = FlowRecord(
                    self.config.new_id(), "http", self.config.mode, now, now, self.client,
                    None, request=request,
                    error=f"client: timeout ({kind}): the request head never completed",
                )  # fmt: skip
                out.append(FlowDone(record))
            out.append(CloseClient())
            return out
        if ex.error is not None and ex.error.endswith(": hang"):
            # A rule's hang says nothing, ever: the timeout only ends it quietly.
            ex.error += f", ended by the {kind} timeout"
            self.ex = None
            self.closed = True
            out = [FlowDone(self._record(ex))]
            self._release(out, reusable=False)
            out.append(CloseClient())
            return out
        return self._fail(ex, 504, f"timeout ({kind}) waiting for {ex.url}", [])

    # -- client side ------------------------------------------------------------
    def _pump_client(self, out: list[Command]) -> list[Command]:
        try:
            while not self.closed:
                ex = self.ex
                if ex is None:
                    event = self.requests.next_event()
                    if event is None:
                        if self._client_eof and not self.requests.buffered:
                            # Idle and the client is gone: its upstream connection
                            # can serve other clients (pooled, not closed).
                            self._release(
                                out, reusable=self.server_ready and not self.server_closing
                            )
                            self.closed = True
                            out.append(CloseClient())
                        break
                    assert isinstance(event, RequestHead)
                    self._start(event, out)
                    continue
                if ex.req_buffer is not None and ex.prepared_body is None and not ex.overflow:
                    event = self.requests.next_event()  # a body the rules must see first
                    if event is None:
                        break
                    self._collect_request(ex, event, out)
                    continue
                if ex.request_done or not self.server_ready or ex.waiting:
                    break
                event = self.requests.next_event()
                if event is None:
                    break
                self._request_body(ex, event, out)
        except ProtocolError as e:
            self._client_error(e, out)
        self._flow_control(out)
        return out

    def _flow_control(self, out: list[Command]) -> None:
        over = self.requests.buffered > self.config.max_client_backlog
        if over and not self._paused:
            self._paused = True
            out.append(PauseClient())
        elif self._paused and not over:
            self._paused = False
            out.append(ResumeClient())

    def _client_error(self, e: ProtocolError, out: list[Command]) -> None:
        ex = self.ex
        if ex is None:
            if self._client_eof and self.requests.at_message_start:
                self.closed = True
                out.append(CloseClient())
                return
            self.closed = True
            out.append(SendClient(error_response(e.status, e.message)))
            out.append(CloseClient())
            return
        if ex.request_done:
            return
        ex.error = f"client: {e.message}"
        self._fail(ex, e.status, e.message, out)

    def _start(self, head: RequestHead, out: list[Command]) -> None:
        config = self.config
        ex = Exchange(config.new_id(), config.clock(), head)
        self.ex = ex
        if config.capture.directory is not None:
            ex.capture = BodyCapture(config.capture.directory, config.capture.max_body)
        auth_token = config.proxy_auth
        if (
            auth_token is not None
            and config.upstream is None
            and not auth.authorized(head, auth_token)
        ):
            self._refuse_unauthorized(ex, out)
            return
        try:
            target = self._route(head)
        except ProtocolError as e:
            ex.error = f"client: {e.message}"
            self._fail(ex, e.status, e.message, out, server_open=self.server_key is not None)
            return
        if target.host in self.config.local_hosts and self.config.local_responder:
            self._answer_locally(ex, target, out)
            return
        if head.method == b"CONNECT":
            ex.request_done = True
            self._release(out, reusable=self.server_ready)
            intercept = self.config.intercept
            if intercept is not None and intercept(target.host, target.port):
                self.requests.next_event()  # the CONNECT's EndOfMessage
                out.append(SendClient(CONNECTION_ESTABLISHED))
                out.append(Intercept(target.host, target.port))
                self.tunnel, self.ex = ex, None
                self.closed = True  # from here on the shell owns the connection's bytes
                return
            out.append(OpenServer(target.host, target.port, reuse=False))
            self.server_key = (target.host, target.port, None)
            return
        ex.target = target
        ex.url = target.url
        if config.rules is not None and self._rules_request(ex, out):
            return
        self._dispatch(ex, out)

    def _dispatch(self, ex: Exchange, out: list[Command]) -> None:
        """Send the request (as rules left it) to its upstream, connecting first if needed."""
        head, target = ex.forward, ex.target
        assert target is not None
        ex.out_head, ex.upgrade, ex.close_client = messages.request_out(
            head, target, self.config, ex.keep_host
        )
        ex.retryable = head.framing.kind is FramingKind.NONE or (
            head.framing.kind is FramingKind.LENGTH and head.framing.length == 0
        )
        key = self._server_key(target)
        if self.server_key == key and self.server_ready:
            # A connection that served an earlier exchange: the server may have
            # closed it meanwhile, so the request may be retried (RFC 9112 §9.3.1).
            ex.reused = True
            self._send_head(ex, out)
            return
        self._release(out, reusable=self.server_ready)
        self.server_key = key
        out.append(OpenServer(key[0], key[1], tls=key[2] is not None, sni=key[2]))

    def _refuse_unauthorized(self, ex: Exchange, out: list[Command]) -> None:
        """407: the client may retry with credentials on the same connection."""
        message = "proxy authentication required"
        data = error_response(407, message, close=False, extra=auth.CHALLENGE)
        ex.error = f"client: {message}"
        self._note_response(ex, data)
        out.append(SendClient(data))
        self.ex = None
        out.append(FlowDone(self._record(ex)))
        if ex.request.framing.kind is FramingKind.NONE and not messages.wants_close(ex.request):
            self.requests.next_event()  # its EndOfMessage
        else:  # an unread body, or the client asked to close
            self.closed = True
            out.append(CloseClient())

    def _server_key(self, target: Target) -> tuple[str, int, str | None]:
        """(host, port, SNI) of the connection a request needs; SNI None: plain TCP."""
        if target.scheme != "https":
            return (target.host, target.port, None)
        up = self.config.upstream
        return (target.host, target.port, (up.sni if up is not None else None) or target.host)

    def _route(self, head: RequestHead) -> Target:
        up = self.config.upstream
        if head.method == b"CONNECT":
            if up is not None:
                raise ProtocolError(405, "CONNECT is not accepted by a reverse proxy")
            host, port = connect_target(head)
            target = Target("tunnel", host, port, b"")
        elif up is None:
            target = forward_target(head)
        else:
            target = origin_target(head, up.scheme, up.host, up.port)
        if (target.host, target.port) in self.config.own_addresses:
            raise ProtocolError(
                508, f"request addressed to the proxy itself ({target.host}:{target.port})"
            )
        return target

    def _answer_locally(self, ex: Exchange, target: Target, out: list[Command]) -> None:
        """A request for a name the proxy answers itself (http://tapproxy.ca/)."""
        assert self.config.local_responder is not None
        ex.target, ex.url = target, target.url
        data = self.config.local_responder(target.host, target.path)
        self._note_response(ex, data)
        out.append(SendClient(data))
        if ex.request.framing.kind is FramingKind.NONE and not messages.wants_close(ex.request):
            self.requests.next_event()  # its EndOfMessage
            ex.request_done = True
            self.ex = None
            out.append(FlowDone(self._record(ex)))
        else:  # a body we do not want, or the client asked to close
            self.ex = None
            self.closed = True
            out.append(FlowDone(self._record(ex)))
            out.append(CloseClient())

    def _note_response(self, ex: Exchange, data: bytes) -> None:
        """Record a response the proxy made up (errors, local pages)."""
        parser = ResponseParser(self.config.limits)
        parser.expect(ex.request.method)
        parser.feed(data)
        head = parser.next_event()
        if isinstance(head, ResponseHead):
            ex.response = head
            ex.response_size = len(data) - data.index(b"\r\n\r\n") - 4
            ex.response_preview = data[len(data) - ex.response_size :][: self.config.preview_bytes]

    def _record(self, ex: Exchange) -> Exchange:
        config = self.config
        if ex.capture is not None:
            sizes = (ex.request_size, ex.response_size)
            ex.captured = ex.capture.finish(sizes, config.preview_bytes, config.capture.budget)
            ex.capture = None
        tls = None
        if config.client_tls is not None or ex.server_tls is not None:
            intercepted = config.client_tls is not None
            tls = TlsInfo(intercepted, config.client_tls, ex.server_tls, config.keylog)
        return ex.finish(config.mode, self.client, config.clock(), tls=tls)

    def _release(self, out: list[Command], reusable: bool) -> None:
        if self.server_key is not None:
            out.append(ReleaseServer(reusable=reusable))
        self.server_key = None
        self.server_ready = False
        self.responses = None

    def _fail(
        self, ex: Exchange, status: int, message: str, out: list[Command], server_open: bool = True
    ) -> list[Command]:
        """End the exchange with an error: a response if none started, else a close."""
        if ex.error is None:
            ex.error = message
        if not ex.response_started:
            data = error_response(status, message)
            self._note_response(ex, data)
            out.append(SendClient(data))
        self.ex = None
        self.closed = True
        out.append(FlowDone(self._record(ex)))
        if server_open:
            self._release(out, reusable=False)
        else:
            self.server_key = None
        out.append(CloseClient(abort=ex.response_started))
        return out
