"""gRPC in the flow log: a call's ``grpc`` object, and ``grpc_message`` records.

Shapes documented in docs/flow-log.md ("gRPC"); built off the data path.
"""

from __future__ import annotations

import base64
from typing import Any

from proxy.flow.grpcinfo import GrpcCall, GrpcMessage, GrpcStatusInfo


def call_json(c: GrpcCall) -> dict[str, Any]:
    return {
        "protocol": c.protocol,
        "service": c.service,
        "method": c.method,
        "streaming": c.streaming,
        "streaming_from": c.streaming_from,
        "messages": {"request": c.requests, "response": c.responses},
        "encoding": {"request": c.request_encoding, "response": c.response_encoding},
        "status": None if c.status is None else status_json(c.status),
        "schema": c.schema,
        "errors": list(c.errors),
        **({"rules": list(c.rules)} if c.rules else {}),
    }


def status_json(s: GrpcStatusInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"code": s.code, "name": s.name, "message": s.message, "from": s.source}
    if s.details is not None:
        out["details"] = s.details
    if s.raw is not None:
        out["raw"] = s.raw
    return out


def message_json(m: GrpcMessage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "flow": m.flow,
        "direction": m.direction,
        "index": m.index,
        "service": m.service,
        "method": m.method,
        "size": m.size,
        "compressed": m.compressed,
        "encoding": m.encoding,
        "truncated": m.truncated,
        "raw": {
            "data": base64.b64encode(m.raw).decode("ascii"),
            "encoding": "base64",
            "size": m.raw_size,
            "truncated": len(m.raw) < m.raw_size,
        },
    }
    if m.type is not None:
        out["type"] = m.type
    if m.decoded is not None:
        out["decoded"] = m.decoded
    if m.fields is not None:
        out["fields"] = m.fields
    out["error"] = m.error
    return out
