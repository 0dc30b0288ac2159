"""A subject from a ``FlowRecord`` (the console's and the flow log's filter).

Bodies are what the record holds: the captured body when one was kept
(``--capture-bodies``, a rule's capture, ``--save``), else the preview
(the first ``--body-preview`` bytes). Message records are subjects of their
own, as in ``proxy.flowfilter.jsonsubject``.
"""

from __future__ import annotations

from proxy.flow.grpcinfo import GrpcCall, GrpcMessage
from proxy.flow.record import FlowRecord, Message
from proxy.flow.wsinfo import WsMessage
from proxy.flowfilter.subject import (
    FlowSubject,
    Kind,
    Side,
    address,
    host_of,
    is_event_stream,
    version_kind,
)


def record_subject(r: FlowRecord, marked: bool = False) -> FlowSubject:
    if isinstance(r.grpc, GrpcMessage):
        g = r.grpc
        return _message(Kind.GRPC, "request" if g.direction == "request" else "response", g.raw)
    if r.message is not None:
        m = r.message
        if isinstance(m, WsMessage):
            side: Side = "request" if m.direction == "upstream" else "response"
            return _message(Kind.WEBSOCKET, side, m.preview)
        return _message(Kind.SSE, "response", m.data)
    request, response = r.request, r.response
    url = request.url if request else None
    ws = r.tunnel.websocket if r.tunnel is not None else None

    def read(side: Side) -> bytes | None:
        bodies = r.bodies
        kept = None if bodies is None else bodies.request if side == "request" else bodies.response
        if kept is not None:
            return kept
        message: Message | None = (
            (request.message if request else None)
            if side == "request"
            else (response.message if response else None)
        )
        return message.preview if message is not None else None

    return FlowSubject(
        kind=_kind(r),
        url=url,
        host=host_of(url) if url else (r.server[0] if r.server else None),
        method=request.method.decode("latin-1") if request else None,
        status=response.status if response else None,
        request_headers=request.message.headers if request else (),
        response_headers=response.message.headers if response else None,
        error=r.error or (ws.error if ws is not None else None),
        marked=marked,
        client=address(*r.client) if r.client[0] else None,
        server=address(*r.server) if r.server else None,
        read_body=read,
    )


def _kind(r: FlowRecord) -> Kind:
    if r.kind == "tcp":
        return Kind.TCP
    if r.kind == "tunnel":
        return Kind.TUNNEL
    if r.kind == "websocket":
        return Kind.WEBSOCKET
    if isinstance(r.grpc, GrpcCall):
        return Kind.GRPC
    response = r.response
    if response is not None and is_event_stream(response.message.headers):
        return Kind.SSE
    return version_kind(
        r.request.message.version if r.request else None,
        response.message.version if response else None,
    )


def _message(kind: Kind, side: Side, data: bytes) -> FlowSubject:
    def read(s: Side) -> bytes | None:
        return data if s == side else None

    return FlowSubject(kind=kind, read_body=read)
