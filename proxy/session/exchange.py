"""The live state of one HTTP exchange, and its record when it ends."""

from __future__ import annotations

from proxy.flow.grpcinfo import GrpcCall
from proxy.flow.hooks import HookKind
from proxy.flow.record import (
    Address,
    CapturedBodies,
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
    RouteInfo,
    RulesInfo,
    Source,
    Timings,
    TlsInfo,
    TlsSide,
    TunnelInfo,
    tcp_rules_info,
)
from proxy.grpc.edit import GrpcEditor
from proxy.grpc.observer import GrpcObserver
from proxy.http1 import RequestHead, ResponseHead
from proxy.http1.events import Fields
from proxy.rules import RequestPlan, ResponsePlan, RuleSet
from proxy.session.capture import BodyCapture
from proxy.session.ruling import RulesNote
from proxy.session.target import Target


class Exchange:
    """Mutable while the exchange runs; ``record()`` freezes it."""

    __slots__ = (
        "by_proxy",
        "capture",
        "captured",
        "close_client",
        "connected_at",
        "cut_after",
        "error",
        "finished",
        "forward",
        "grpc",
        "grpc_edit",
        "held",
        "held_response",
        "hook_body",
        "hooked",
        "id",
        "keep_host",
        "next_at",
        "notes",
        "out_head",
        "overflow",
        "plan",
        "prepared_body",
        "preview_cap",
        "rate",
        "received_url",
        "req_buffer",
        "request",
        "request_body_edited",
        "request_done",
        "request_done_at",
        "request_preview",
        "request_size",
        "resp_buffer",
        "response",
        "response_head_at",
        "response_preview",
        "response_size",
        "response_started",
        "retryable",
        "reused",
        "route",
        "rplan",
        "rules_note",
        "ruleset",
        "sent_body",
        "server",
        "server_closes",
        "server_tls",
        "start",
        "target",
        "tcp_rules",
        "trailers",
        "upgrade",
        "upstream_head",
        "upstream_preview",
        "upstream_size",
        "url",
        "waiting",
    )  # fmt: skip

    def __init__(self, id: str, start: float, request: RequestHead, preview_cap: int = 256) -> None:
        self.id = id
        self.preview_cap = preview_cap  # bytes of a body kept for the record
        self.start = start
        self.request = request
        self.target: Target | None = None
        self.url = request.target.decode("latin-1")
        self.out_head = b""
        self.request_done = False
        self.request_size = 0
        self.request_preview = b""
        self.received_url = self.url  # the full URL as the client asked (set with the target)
        # The response as the client gets it (what went out), and as the server
        # sent it (``upstream_*``); they differ when a rule, a hook or the proxy
        # itself answered.
        self.response: ResponseHead | None = None
        self.response_size = 0
        self.response_preview = b""
        self.upstream_head: ResponseHead | None = None
        self.upstream_size = 0
        self.upstream_preview = b""
        self.by_proxy = False  # the proxy made the response (error, rule, hook, local page)
        self.request_body_edited = False
        self.response_started = False  # a response byte went to the client
        self.connected_at: float | None = None
        self.request_done_at: float | None = None
        self.response_head_at: float | None = None
        self.server: Address | None = None
        self.error: str | None = None
        self.close_client = False
        self.retryable = False
        self.upgrade = False
        self.reused = False
        self.server_closes = False  # the response said Connection: close (or 1.0)
        # Rules (see proxy.session.ruling): the plans, the request as forwarded,
        # bodies buffered for rules, and the response faults in force.
        self.ruleset: RuleSet | None = None
        self.plan: RequestPlan | None = None
        self.rplan: ResponsePlan | None = None
        self.forward = request
        self.req_buffer: bytearray | None = None
        self.resp_buffer: bytearray | None = None
        self.prepared_body: bytes | None = None
        self.overflow = False
        self.waiting = False
        self.next_at: float | None = None  # response bytes not before this time
        self.rate: int | None = None  # response bandwidth limit, bytes/s
        self.cut_after: int | None = None  # close after this many response body bytes
        self.sent_body = 0
        self.rules_note: RulesNote | None = None
        self.capture: BodyCapture | None = None  # bodies kept for body files
        self.captured: CapturedBodies | None = None
        self.keep_host = False  # a rule pinned Host: forward it unchanged
        self.tcp_rules: tuple[str, ...] = ()  # TCP rules that acted on its tunnel
        # Lifecycle hooks: the holdable point the flow waits at, the hooks
        # already offered (so a resumed flow is not held again), and the
        # response that waits while its head is held.
        self.held: HookKind | None = None
        self.hooked: set[HookKind] = set()
        self.notes: tuple[str, ...] = ()  # what hooks said of the flow (a breakpoint timed out)
        self.hook_body = False  # the request body is being buffered for the REQUEST hook
        # (head, edited body, head only, the response had ended)
        self.held_response: tuple[ResponseHead, bytes | None, bool, bool] | None = None
        self.server_tls: TlsSide | None = None
        self.route: RouteInfo | None = None  # the way to the server (proxy.session.routing)
        self.finished: tuple[str, Address, float, TunnelInfo | None, TlsInfo | None] | None = None
        # gRPC: the call's observer (None for anything else), and the response's
        # trailers as they went to the client (a gRPC call's status is there).
        self.grpc: GrpcObserver | None = None
        self.grpc_edit: GrpcEditor | None = None  # gRPC rules acting on its messages
        self.trailers: Fields = ()

    @property
    def response_head(self) -> ResponseHead | None:
        """The response head as it will go to the client: the held one at
        RESPONSE_HEAD (after rules), else the one that went."""
        held = self.held_response
        return held[0] if held is not None else self.response

    @property
    def body(self) -> bytes | None:
        """The request body as it will be sent, when it is known whole (buffered
        for the REQUEST hook or for rules); None while it streams."""
        return self.prepared_body

    def count_request(self, data: bytes, preview: int) -> None:
        """Request body bytes as received: size, preview and capture."""
        if self.request_size < preview:
            self.request_preview += data[: preview - self.request_size]
        self.request_size += len(data)
        if self.capture is not None:
            self.capture.add(data, True)
        if self.grpc is not None:
            self.grpc.request_data(data)

    def count_upstream(self, data: bytes, preview: int) -> None:
        """Response body bytes as the server sent them: size and preview."""
        if self.upstream_size < preview:
            self.upstream_preview += data[: preview - self.upstream_size]
        self.upstream_size += len(data)
        if self.grpc is not None:
            self.grpc.response_data(data)

    def count_delivered(self, data: bytes, preview: int) -> None:
        """Response body bytes as the client gets them: size, preview and capture."""
        if self.response_size < preview:
            self.response_preview += data[: preview - self.response_size]
        self.response_size += len(data)
        if self.capture is not None:
            self.capture.add(data, False)

    def finish(
        self,
        mode: str,
        client: Address,
        end: float,
        tunnel: TunnelInfo | None = None,
        tls: TlsInfo | None = None,
    ) -> Exchange:
        """Freeze the exchange's outcome; ``to_record`` may then run on any thread.

        Building the frozen record is left to the sinks' writer thread, off the
        data path (and skipped entirely when nothing records flows).
        """
        self.finished = (mode, client, end, tunnel, tls)
        return self

    def to_record(self) -> FlowRecord:
        assert self.finished is not None, "to_record before finish"
        mode, client, end, tunnel, tls = self.finished
        request = self._request_info()
        response = self._response_info()
        kind = "http"
        if tunnel is not None or self.request.method == b"CONNECT":
            kind = "websocket" if self.upgrade else "tunnel"
        return FlowRecord(
            id=self.id,
            kind=kind,
            mode=mode,
            start=self.start,
            end=end,
            client=client,
            server=self.server,
            request=request,
            response=response,
            tunnel=tunnel,
            timings=Timings(
                request_head=self.start,
                connected=self.connected_at,
                request_done=self.request_done_at,
                response_head=self.response_head_at,
                response_done=end if self.response is not None and tunnel is None else None,
            ),
            error=self.error,
            tls=tls,
            rules=self._rules_info(),
            bodies=self.captured,
            route=self.route,
            grpc=None if self.grpc is None else self._grpc_call(),
        )

    def _grpc_call(self) -> GrpcCall:
        assert self.grpc is not None
        head = self.response if self.response_started or self.by_proxy else None
        edit = self.grpc_edit
        return self.grpc.call(
            None if head is None else head.fields,
            self.trailers,
            self.by_proxy,
            () if edit is None else tuple(edit.notes),
        )

    def _request_info(self) -> RequestInfo:
        req = self.request
        received = Message(req.fields, self.request_size, self.request_preview, req.version)
        fwd = self.forward
        if (
            fwd.method == req.method
            and fwd.fields == req.fields
            and self.url == self.received_url
            and not self.request_body_edited
        ):
            return RequestInfo(req.method, self.received_url, received)
        body = self.prepared_body
        if body is None:  # the body streamed as it came
            sent = Message(fwd.fields, self.request_size, self.request_preview, req.version)
        else:
            sent = Message(fwd.fields, len(body), body[: self.preview_cap], req.version)
        forwarded = RequestInfo(fwd.method, self.url, sent)
        return RequestInfo(req.method, self.received_url, received, forwarded)

    def _response_info(self) -> ResponseInfo | None:
        head, up = self.response, self.upstream_head
        delivered = head is not None and (self.response_started or self.by_proxy)
        if head is None or not delivered:
            return None
        source = Source.PROXY if self.by_proxy else Source.UPSTREAM
        message = Message(
            head.fields, self.response_size, self.response_preview, head.version, self.trailers
        )
        upstream = None
        if up is not None and (
            self.by_proxy
            or (
                up is not head  # the same head went on (no rule or hook changed it)
                and (
                    (up.status, up.reason, up.fields) != (head.status, head.reason, head.fields)
                    or up.version != head.version  # translated: HTTP/2 to HTTP/1.1 or back
                )
            )
            or self.upstream_size != self.response_size
        ):
            sent = Message(up.fields, self.upstream_size, self.upstream_preview, up.version)
            upstream = ResponseInfo(up.status, up.reason, sent)
        return ResponseInfo(head.status, head.reason, message, upstream, source)

    def _rules_info(self) -> RulesInfo | None:
        note = self.rules_note
        if note is None:
            if self.notes:
                return RulesInfo(warnings=self.notes)
            return tcp_rules_info(self.tcp_rules) if self.tcp_rules else None
        matched = tuple((h.rule, h.source, h.actions) for h in note.hits)
        return RulesInfo(matched, note.warnings + self.notes, note.tags, note.detail)
