"""Message records (``grpc_message``, ``websocket_message``, ``sse_event``) as
the store keeps them for ``GET /api/flows/ID/messages`` (docs/api.md).

One shape for the three: ``direction`` (``client``: client to server,
``server``: server to client), ``type`` (the WebSocket opcode, the event's
type, the gRPC message type or ``grpc``), ``size`` (payload bytes), ``text``
(UTF-8 text, or decoded protobuf as indented JSON) or ``base64`` (the other
one null), ``truncated`` (only the start was kept), ``time`` (seconds since
the epoch), ``index`` (per direction, from 0), plus ``detail``: the
record's own object (docs/flow-log.md), for what the list does not show.
Pure; runs on the event loop.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from proxy.flow.grpcinfo import GrpcMessage
from proxy.flow.grpcjson import message_json as grpc_json
from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import SseEvent, WsMessage
from proxy.flow.wsjson import event_json, message_json
from proxy.sinks.jsonenc import dumps
from proxy.web.rows import MessageRow

#: The most of one message's payload kept for the list (the UI shows text).
MESSAGE_CAP = 64 * 1024

_DIRECTION = {"upstream": "client", "downstream": "server", "request": "client"}


def _payload(data: bytes, size: int) -> dict[str, Any]:
    """``text`` when the kept bytes are UTF-8 (a character cut at the end allowed), else base64."""
    cut = len(data) < size
    for trim in range(4 if cut else 1):
        try:
            text = data[: len(data) - trim].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return {"text": text, "base64": None, "truncated": cut or trim > 0}
    return {"text": None, "base64": base64.b64encode(data).decode("ascii"), "truncated": cut}


def _grpc(m: GrpcMessage) -> dict[str, Any]:
    decoded = m.decoded if m.decoded is not None else m.fields
    if decoded is not None:
        text = json.dumps(decoded, indent=2, ensure_ascii=False)
        payload: dict[str, Any] = {"text": text, "base64": None, "truncated": m.truncated}
    else:
        payload = _payload(m.raw, m.raw_size)
        payload["truncated"] = payload["truncated"] or m.truncated
    return {
        "direction": _DIRECTION.get(m.direction, "server"),
        "type": m.type or "grpc",
        "size": m.size,
        **payload,
        "time": m.at,
        "index": m.index,
        "detail": grpc_json(m),
    }


def _websocket(m: WsMessage) -> dict[str, Any]:
    # The whole payload when capture kept it (``data``), else the preview.
    kept = m.preview if m.data is None else m.data[:MESSAGE_CAP]
    payload = _payload(kept, m.size)
    payload["truncated"] = payload["truncated"] or m.truncated
    return {
        "direction": _DIRECTION.get(m.direction, "server"),
        "type": m.opcode,
        "size": m.size,
        **payload,
        "time": m.at,
        "index": m.index,
        "detail": message_json(m),
    }


def _event(e: SseEvent) -> dict[str, Any]:
    return {
        "direction": "server",
        "type": e.event,
        "size": e.size,
        **_payload(e.data, e.size),
        "time": e.at,
        "index": e.index,
        "detail": event_json(e),
    }


def message_row(r: FlowRecord) -> MessageRow | None:
    """The row of a message record; None for any other record."""
    m = r.message
    if isinstance(r.grpc, GrpcMessage):
        flow, out = r.grpc.flow, _grpc(r.grpc)
    elif isinstance(m, WsMessage):
        flow, out = m.flow, _websocket(m)
    elif isinstance(m, SseEvent):
        flow, out = m.flow, _event(m)
    else:
        return None
    out["time"] = out["time"] or r.start
    return MessageRow(flow, dumps(out))
