"""A request's path from its head to the server.

The head is checked (proxy authentication), routed (forward, reverse,
CONNECT; never the proxy itself), answered locally when it is for the proxy
(http://tapproxy.ca/), handed to the rule phase whose outcome is carried
out here, offered to the REQUEST hook, and then framed onto a server
connection: the one kept from the previous exchange when it serves the same
(host, port, SNI), or a new one. A CONNECT becomes a tunnel, or, for a host
we intercept, hands the connection to the next-layer choice.
"""

from __future__ import annotations

from proxy.flow.hooks import HookKind
from proxy.flow.record import RouteInfo
from proxy.http1 import ProtocolError, RequestHead
from proxy.http1.events import KIND_LENGTH, KIND_NONE
from proxy.layers.commands import CLIENT, Command, Intercept, SendData, SetTimer, StartHttp2
from proxy.session import auth, grpcout, messages, routing
from proxy.session.capture import BodyCapture
from proxy.session.endings import Endings
from proxy.session.exchange import Exchange
from proxy.session.hookpoints import HookPoints
from proxy.session.responses import CONNECTION_ESTABLISHED
from proxy.session.rulephase import Answer, Collect, Delay, Forward, RequestOutcome, RulePhase
from proxy.session.sequencer import Sequencer
from proxy.session.target import Target, route
from proxy.session.upgrade import SWITCHING, h2c_settings, upgraded

DIRECT_ROUTE = RouteInfo()  # straight to the server; records share it


class RequestPath:
    __slots__ = ("endings", "hooks", "rules", "s")

    def __init__(
        self, session: Sequencer, endings: Endings, rules: RulePhase | None, hooks: HookPoints
    ) -> None:
        self.s = session
        self.endings = endings
        self.rules = rules
        self.hooks = hooks

    def start(self, head: RequestHead, out: list[Command]) -> None:
        """A request head arrived: check, route, and hand it on (or answer it)."""
        config = self.s.config
        if config.http2 and not self.s.client_side.multiplexed:
            settings = h2c_settings(head)
            if settings is not None:
                self._upgrade(head, settings, out)
                return
        ex = Exchange(config.new_id(), config.clock(), head, config.preview_bytes)
        self.s.ex = ex
        grpcout.watch(ex, config)  # a gRPC call: its messages become MESSAGE hooks
        self.hooks.notice(HookKind.STARTED, ex, out)
        if config.capture.on:
            ex.capture = BodyCapture(config.capture.directory or "", config.capture.max_body)
        auth_token = config.proxy_auth
        forward_mode = config.upstream is None
        if auth_token is not None and forward_mode and not auth.authorized(head, auth_token):
            self.endings.unauthorized(ex, out)
            return
        try:
            target = route(head, config)
        except ProtocolError as e:
            ex.error = f"client: {e.message}"
            self.endings.fail(
                ex, e.status, e.message, out, server_open=self.s.server.key is not None
            )
            return
        if target.host in config.local_hosts and config.local_responder:
            ex.target = target
            ex.url = ex.received_url = target.url
            self.endings.answer_locally(ex, config.local_responder(target.host, target.path), out)
            return
        if head.method == b"CONNECT":
            self._connect(ex, target, out)
            return
        ex.target = target
        ex.url = ex.received_url = target.url
        if config.original_dst is not None:  # transparent: named as the client named it
            ex.url = ex.received_url = routing.named_url(target, head, config)
        if self.rules is not None:
            self.carry_out(ex, self.rules.on_request(ex), out)
            return
        self.dispatch(ex, out)

    def _upgrade(self, head: RequestHead, settings: bytes, out: list[Command]) -> None:
        """``Upgrade: h2c``: 101, then HTTP/2 with this request as stream 1 (its record there)."""
        requests = self.s.client_side.requests
        requests.next_event()  # the request's EndOfMessage: it has no body
        out.append(SendData(CLIENT, SWITCHING))
        out.append(StartHttp2(settings, upgraded(head), requests.take_remaining()))
        self.s.closed = True  # from here on the HTTP/2 layer owns the connection's bytes

    def _connect(self, ex: Exchange, target: Target, out: list[Command]) -> None:
        ex.request_done = True
        self.s.server.release(out, reusable=self.s.server.ready)
        intercept = self.s.config.intercept
        if intercept is not None and intercept(target.host, target.port):
            self.s.client_side.requests.next_event()  # the CONNECT's EndOfMessage
            out.append(SendData(CLIENT, CONNECTION_ESTABLISHED))
            out.append(Intercept(target.host, target.port))
            self.s.tunnel, self.s.ex = ex, None
            self.s.closed = True  # from here on the next layer owns the connection's bytes
            return
        ex.route = routing.route_info(self.s.config, target.host, target.port)
        self.s.server.open((target.host, target.port, None, False), out, reuse=False, tunnel=True)

    def carry_out(self, ex: Exchange, outcome: RequestOutcome, out: list[Command]) -> None:
        """Act on the rule phase's decision about a request."""
        if isinstance(outcome, Forward):
            self.dispatch(ex, out)
        elif isinstance(outcome, Collect):
            if outcome.send_continue:
                self.s.client_side.send_continue(ex, out)
        elif isinstance(outcome, Answer):
            self.endings.answer(ex, outcome.data, out)
        elif isinstance(outcome, Delay):
            ex.waiting = True
            out.append(SetTimer(outcome.seconds))
        else:
            self.endings.close_by_rule(ex, outcome, out)

    def dispatch(self, ex: Exchange, out: list[Command]) -> None:
        """Send the request (as rules left it) to its upstream, connecting first if needed."""
        if self.hooks.collects(ex, out):
            return  # the REQUEST hook sees the whole body: pump_client buffers it first
        if self.hooks.holds(HookKind.REQUEST, ex, out):
            return  # a subscriber may edit, answer or kill it first
        head, target = ex.forward, ex.target
        assert target is not None
        config = self.s.config
        via = routing.via_for(config, target.host, target.port)
        if via is None and config.original_dst is None:
            ex.route, proxy = DIRECT_ROUTE, None  # the common case: nothing to redact or parse
        else:
            ex.route = RouteInfo(routing.redact(via), config.original_dst)
            proxy = routing.forwards_plain(via) if target.scheme == "http" else None
        ex.out_head, ex.upgrade, ex.close_client = messages.request_out(
            head, target, config, ex.keep_host, proxy
        )
        ex.retryable = head.framing.kind is KIND_NONE or (
            head.framing.kind is KIND_LENGTH and head.framing.length == 0
        )
        key = self.s.server.key_for(target, ex)
        if self.s.server.serves(key):
            # A connection that served an earlier exchange: the server may have
            # closed it meanwhile, so the request may be retried (RFC 9112 §9.3.1).
            ex.reused = True
            self.send(ex, out)
            return
        self.s.server.release(out, reusable=self.s.server.ready)
        self.s.server.open(key, out)

    def send(self, ex: Exchange, out: list[Command]) -> None:
        """Frame the request onto the server connection (now open)."""
        try:
            self.s.server.send_request(ex, self.s.client_side.requests, out)
        except ProtocolError as e:
            ex.error = f"client: {e.message}"
            self.endings.fail(ex, e.status, e.message, out)
