"""gRPC in captures: the calls and messages of a connection's HTTP/2 streams.

``H2Conversation`` hands each stream's request head, DATA, response head
and trailers to a ``GrpcTap`` when ``tapproxy analyze`` (or ``sniff``) has
gRPC settings; a stream whose request is gRPC gets the same observer the
live proxy uses (``proxy.grpc.observer``), and its record carries the call
and its messages, decoded with the same schemas (``--proto-path``).
"""

from __future__ import annotations

from dataclasses import replace

from proxy.flow.grpcinfo import GrpcMessage
from proxy.grpc.decode import decode_frame
from proxy.grpc.observer import GrpcObserver, observe
from proxy.grpc.settings import GrpcSettings
from proxy.http1 import Framing, FramingKind, RequestHead
from proxy.pcap.records import CapturedExchange, GrpcCapture

Headers = list[tuple[bytes, bytes]]
MAX_MESSAGES = 10_000  # per stream kept for its record (a capture can be long)


class GrpcTap:
    """The gRPC streams of one HTTP/2 connection (keyed by their stream objects)."""

    __slots__ = ("calls", "preview", "settings")

    def __init__(self, settings: GrpcSettings, preview: int) -> None:
        self.settings = settings
        self.preview = preview
        self.calls: dict[object, tuple[GrpcObserver, list[GrpcMessage], Headers]] = {}

    def open(self, stream: object, headers: Headers | None, ts: float) -> None:
        if headers is None:
            return
        pseudo = dict(h for h in headers if h[0].startswith(b":"))
        fields = tuple(h for h in headers if not h[0].startswith(b":"))
        head = RequestHead(
            pseudo.get(b":method", b""), pseudo.get(b":path", b"/"), b"2.0", fields,
            Framing(FramingKind.CHUNKED),
        )  # fmt: skip
        observer = observe(head, self.settings, "", max(self.preview, 256))
        if observer is not None:
            self.calls[stream] = (observer, [], [])

    def data(self, stream: object, from_client: bool, data: bytes, ts: float) -> None:
        call = self.calls.get(stream)
        if call is None:
            return
        observer, messages, _ = call
        if from_client:
            observer.request_data(data)
        else:
            observer.response_data(data)
        for m in observer.take("capture", ts):
            if len(messages) < MAX_MESSAGES:
                s = self.settings
                messages.append(
                    decode_frame(
                        m.frame, m.index, m.context, s.registry, s.max_message, self.preview, ts
                    )
                )

    def head(self, stream: object, headers: Headers) -> None:
        call = self.calls.get(stream)
        if call is not None:
            call[0].response_head(tuple(headers))

    def trailers(self, stream: object, headers: Headers) -> None:
        call = self.calls.get(stream)
        if call is not None:
            call[2].extend(headers)

    def finish(
        self, stream: object, record: CapturedExchange, response: Headers | None
    ) -> CapturedExchange:
        """``record`` with the stream's call and messages (``response``: its head, if any)."""
        call = self.calls.pop(stream, None)
        if call is None:
            return record
        observer, messages, trailers = call
        head = None if response is None else tuple(h for h in response if h[0][:1] != b":")
        info = observer.call(head, tuple(trailers), False)
        flowed = tuple(replace(m, flow=record.id) for m in messages)
        return replace(record, grpc=GrpcCapture(info, flowed))
