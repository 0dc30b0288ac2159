"""The gRPC side of one exchange: body bytes in, completed messages out.

Created at the request head when the content type is gRPC or gRPC-Web
(``observe``), fed by the exchange's body counters as bytes pass (request
bodies as received, response bodies as the server sent them), it splits
messages as they complete and queues them; the session parts that hold the
command list turn them into ``Hook(MESSAGE)`` commands (``take``). Only
framing happens here, on the data path: a message is decoded when its
record is built (``MessageSource.to_record``). The call's summary for the
exchange's record is ``call``.
"""

from __future__ import annotations

from proxy.flow.grpcinfo import MESSAGE_KIND, GrpcCall, GrpcStatusInfo
from proxy.flow.record import Address, FlowRecord
from proxy.grpc.content import Protocol, header, protocol_in
from proxy.grpc.decode import MessageContext, decode_frame
from proxy.grpc.framing import Deframer, Frame, TextDecoder
from proxy.grpc.schema import split_path
from proxy.grpc.settings import GrpcSettings
from proxy.grpc.status import status_of
from proxy.grpc.webtrailers import parse_trailers
from proxy.http1.events import Fields, RequestHead

_NO_FIELDS: Fields = ()
_NOWHERE: Address = ("", 0)


def observe(
    head: RequestHead, settings: GrpcSettings, flow: str, preview: int
) -> GrpcObserver | None:
    """An observer for a gRPC request (None for anything else: the usual case)."""
    if head.method != b"POST" or not settings.enabled:
        return None
    protocol = protocol_in(head.fields)
    if protocol is None:
        return None
    return GrpcObserver(protocol, head, settings, flow, preview)


class MessageSource:
    """A completed message; its record (and decoding) is built when a sink asks."""

    __slots__ = ("at", "context", "frame", "index", "mode", "observer")

    def __init__(
        self,
        observer: GrpcObserver,
        frame: Frame,
        index: int,
        context: MessageContext,
    ) -> None:
        self.observer = observer
        self.frame = frame
        self.index = index
        self.context = context
        self.at = 0.0  # when it completed (set by ``take``)
        self.mode = ""

    def to_record(self) -> FlowRecord:
        g = self.observer
        s = g.settings
        info = decode_frame(
            self.frame, self.index, self.context, s.registry, s.max_message, g.preview, self.at
        )
        side = "request" if self.context.request else "response"
        return FlowRecord(
            id=f"{self.context.flow}:{side}:{self.index}",
            kind=MESSAGE_KIND,
            mode=self.mode,
            start=self.at,
            end=self.at,
            client=_NOWHERE,  # the call's record has the addresses
            server=None,
            grpc=info,
        )


class GrpcObserver:
    __slots__ = (
        "_req_text", "_resp_text", "errors", "flow", "path", "pending", "preview", "protocol",
        "request", "request_encoding", "requests", "response", "response_encoding", "responses",
        "settings", "web_trailers",
    )  # fmt: skip

    def __init__(
        self,
        protocol: Protocol,
        head: RequestHead,
        settings: GrpcSettings,
        flow: str,
        preview: int,
    ) -> None:
        self.protocol = protocol
        self.settings = settings
        self.flow = flow
        self.preview = preview
        self.path = head.target.decode("latin-1")
        if "://" in self.path:  # absolute-form (forward proxy): the path part
            self.path = "/" + self.path.split("://", 1)[1].partition("/")[2]
        encoding = header(head.fields, b"grpc-encoding")
        self.request_encoding = None if encoding is None else encoding.decode("latin-1")
        self.response_encoding: str | None = None
        self.request = Deframer(settings.max_message)
        self.response = Deframer(settings.max_message)
        text = protocol is Protocol.WEB_TEXT
        self._req_text = TextDecoder() if text else None
        self._resp_text = TextDecoder() if text else None
        self.requests = 0
        self.responses = 0
        self.pending: list[MessageSource] = []
        self.web_trailers: Fields = _NO_FIELDS  # gRPC-Web: the trailer frame's fields
        self.errors: list[str] = []

    @property
    def service_method(self) -> tuple[str, str]:
        return split_path(self.path)

    def request_data(self, data: bytes) -> None:
        if self._req_text is not None:
            data = self._req_text.feed(data)
        for frame in self.request.feed(data):
            self._complete(frame, True)

    def response_head(self, fields: Fields) -> None:
        encoding = header(fields, b"grpc-encoding")
        self.response_encoding = None if encoding is None else encoding.decode("latin-1")

    def response_data(self, data: bytes) -> None:
        if self._resp_text is not None:
            data = self._resp_text.feed(data)
        for frame in self.response.feed(data):
            self._complete(frame, False)

    def _complete(self, frame: Frame, request: bool) -> None:
        if frame.trailers and not request and self.protocol is not Protocol.GRPC:
            self.web_trailers = parse_trailers(frame.data)
            return
        if request:
            index, self.requests = self.requests, self.requests + 1
            encoding = self.request_encoding
        else:
            index, self.responses = self.responses, self.responses + 1
            encoding = self.response_encoding
        context = MessageContext(self.flow, self.path, request, encoding)
        self.pending.append(MessageSource(self, frame, index, context))

    def take(self, mode: str, now: float) -> list[MessageSource]:
        """The messages completed since the last call, for ``Hook(MESSAGE)``."""
        done, self.pending = self.pending, []
        for m in done:
            m.mode, m.at = mode, now
        return done

    def call(
        self, headers: Fields | None, trailers: Fields, by_proxy: bool, rules: tuple[str, ...] = ()
    ) -> GrpcCall:
        """The call's summary, from the response head and trailers as delivered."""
        service, method = self.service_method
        registry = self.settings.registry
        schema = registry.method(self.path) if registry is not None else None
        if schema is not None:
            streaming, source = schema.streaming, "schema"
        else:
            streaming, source = _guess(self.requests, self.responses), "counts"
        errors = list(self.errors)
        for name, deframer in (("request", self.request), ("response", self.response)):
            if deframer.pending:
                errors.append(f"the {name} ended inside a message ({deframer.pending} bytes)")
        for name, text in (("request", self._req_text), ("response", self._resp_text)):
            if text is not None and text.error is not None:
                errors.append(f"{name}: {text.error}")
        return GrpcCall(
            protocol=self.protocol.value,
            service=service,
            method=method,
            streaming=streaming,
            streaming_from=source,
            requests=self.requests,
            responses=self.responses,
            request_encoding=self.request_encoding,
            response_encoding=self.response_encoding,
            status=self._status(headers, trailers, by_proxy),
            schema=schema is not None,
            errors=tuple(errors),
            rules=rules,
        )

    def _status(
        self, headers: Fields | None, trailers: Fields, by_proxy: bool
    ) -> GrpcStatusInfo | None:
        found = None
        for block, source in (
            (trailers, "trailers"),
            (self.web_trailers, "trailers"),
            (headers or _NO_FIELDS, "proxy" if by_proxy else "headers"),
        ):
            status = status_of(block)
            if status is not None:
                found = status, source
                break
        if found is None:
            return None
        s, source = found
        return GrpcStatusInfo(s.code, s.name, s.message, s.details, source, s.raw_code)


def _guess(requests: int, responses: int) -> str:
    if requests > 1 and responses > 1:
        return "bidi"
    if requests > 1:
        return "client"
    return "server" if responses > 1 else "unary"
