"""WebSocket and server-sent events in the flow log (docs/flow-log.md, "WebSocket").

The connection's ``websocket`` object, ``websocket_message`` and
``sse_event`` records; built off the data path.
"""

from __future__ import annotations

import base64
from typing import Any

from proxy.flow.wsinfo import SseEvent, WsClose, WsInfo, WsMessage


def preview(data: bytes, size: int) -> dict[str, Any]:
    """A payload's start: UTF-8 text when it decodes (a cut inside the last
    character allowed), else base64."""
    cut = len(data) < size
    for trim in range(4 if cut else 1):
        try:
            text = data[: len(data) - trim].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return {"data": text, "encoding": "utf-8", "truncated": cut or trim > 0}
    return {"data": base64.b64encode(data).decode("ascii"), "encoding": "base64", "truncated": cut}


def _close(c: WsClose | None) -> dict[str, Any] | None:
    return None if c is None else {"code": c.code, "reason": c.reason}


def info_json(w: WsInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "extensions": w.extensions,
        "permessage_deflate": w.deflate,
        "messages": {"upstream": w.upstream, "downstream": w.downstream},
        "client_close": _close(w.client_close),
        "server_close": _close(w.server_close),
        "closed_by": w.closed_by,
        "error": w.error,
    }
    if w.rules:
        out["rules"] = list(w.rules)
    if w.injected:
        out["injected"] = w.injected
    if w.notes:
        out["notes"] = list(w.notes)
    return out


def message_json(m: WsMessage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "flow": m.flow,
        "direction": m.direction,
        "index": m.index,
        "opcode": m.opcode,
        "size": m.size,
        "wire_size": m.wire_size,
        "frames": m.frames,
        "compressed": m.compressed,
        "truncated": m.truncated,
        "preview": preview(m.preview, m.size),
        "action": m.action,
    }
    if m.rules:
        out["rules"] = list(m.rules)
    return out


def event_json(e: SseEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "flow": e.flow,
        "index": e.index,
        "id": e.id,
        "event": e.event,
        "size": e.size,
        "data": preview(e.data, e.size),
        "action": e.action,
    }
    if e.retry is not None:
        out["retry"] = e.retry
    return out
