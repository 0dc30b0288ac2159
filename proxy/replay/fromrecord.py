"""A finished flow record, with the bodies its capture kept, as a recorded flow.

With ``--save`` every exchange captures its bodies (``CaptureConfig.record``):
a body that fits in the preview is whole in the preview, a longer one is in
``FlowRecord.bodies`` (up to ``--capture-max-body``). The request as
forwarded keeps its own body only when a rule rewrote it; a streamed one is
the received body. The upstream's response, when it differs from what the
client got, keeps its preview only (marked truncated when longer).
"""

from __future__ import annotations

from proxy.flow.record import FlowRecord, Message, RequestInfo, ResponseInfo
from proxy.flow.wsinfo import WsMessage
from proxy.replay.format import (
    Body,
    Offsets,
    RecordedFlow,
    RecordedMessage,
    RecordedRequest,
    RecordedResponse,
)


def _body(message: Message, whole: bytes | None) -> Body:
    if whole is not None:
        return Body(whole, message.body_size)
    return Body(message.preview, message.body_size)


def _request(info: RequestInfo, whole: bytes | None) -> RecordedRequest:
    m = info.message
    return RecordedRequest(info.method, info.url, m.headers, _body(m, whole), m.version)


def _response(info: ResponseInfo, whole: bytes | None) -> RecordedResponse:
    m = info.message
    return RecordedResponse(
        info.status, info.reason, m.headers, _body(m, whole), m.version, m.trailers
    )


def _offset(t: float | None, start: float) -> float | None:
    return None if t is None else round(t - start, 6)


def recorded(r: FlowRecord, messages: tuple[RecordedMessage, ...] = ()) -> RecordedFlow:
    """``r`` as a recorded flow; ``messages``: its WebSocket messages, held until it ended."""
    bodies = r.bodies
    request = forwarded = None
    if r.request is not None:
        request = _request(r.request, bodies.request if bodies else None)
        fwd = r.request.forwarded
        if fwd is not None:
            whole = bodies.forwarded if bodies else None
            if whole is None and fwd.message.body_size == request.body.size:
                whole = request.body.data  # streamed as received (only the head changed)
            forwarded = _request(fwd, whole)
    response = upstream = None
    if r.response is not None:
        response = _response(r.response, bodies.response if bodies else None)
        if r.response.upstream is not None:
            upstream = _response(r.response.upstream, None)
    version = r.request.message.version.decode("latin-1") if r.request else "1.1"
    protocol = "h2" if version.startswith("2") else f"http/{version}"
    t = r.timings
    return RecordedFlow(
        id=r.id,
        start=r.start,
        end=r.end,
        request=request,
        response=response,
        protocol=protocol,
        kind=r.kind,
        mode=r.mode,
        client=r.client,
        server=r.server,
        forwarded=forwarded,
        upstream=upstream,
        source=r.response.source.value if r.response else "upstream",
        offsets=Offsets(
            _offset(t.connected, r.start),
            _offset(t.request_done, r.start),
            _offset(t.response_head, r.start),
            _offset(t.response_done, r.start),
        ),
        error=r.error,
        tls=r.tls is not None and r.tls.intercepted,
        messages=messages,
    )


def recorded_message(r: FlowRecord) -> tuple[str, RecordedMessage] | None:
    """A WebSocket message record as its connection's recorded message (with
    the connection's flow id); None for one without its payload (not --save,
    or injected by a rule) and for other message records."""
    m = r.message
    if not isinstance(m, WsMessage) or m.data is None:
        return None
    return m.flow, RecordedMessage(
        m.direction == "upstream", m.at, m.data, m.opcode == "text", m.size
    )
