"""The flow log's JSON encoder as it was at 68f362d, kept as the reference.

``proxy.flow.jsonview`` was rewritten for speed (issue 22: fewer calls and
objects per record); ``tests/unit/test_record_json_same.py`` holds its output
byte for byte to this version's for generated records. Do not edit: it is
the definition the faster code must agree with.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from typing import Any

from proxy.flow.grpcinfo import GrpcCall, GrpcMessage
from proxy.flow.grpcjson import call_json, message_json
from proxy.flow.record import (
    SCHEMA_VERSION,
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
    TlsInfo,
    TlsSide,
)
from proxy.flow.wsinfo import WsMessage
from proxy.flow.wsjson import event_json, info_json
from proxy.flow.wsjson import message_json as ws_message_json


class _IsoClock:
    """UTC ISO 8601 with microseconds; the date and time of day are reused
    within a second (measured: a third of the cost of datetime per call).

    Records are encoded on one thread at a time (the sinks' writer, or
    ``tapproxy analyze``); a race would only recompute the prefix.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        # As datetime.fromtimestamp rounds: the fraction, half to even.
        frac_part, int_part = math.modf(ts)
        frac = round(frac_part * 1e6)
        second = int(int_part)
        if frac >= 1_000_000:
            second, frac = second + 1, frac - 1_000_000
        elif frac < 0:
            second, frac = second - 1, frac + 1_000_000
        if second != self._second:
            moment = dt.datetime.fromtimestamp(second, dt.UTC)
            self._prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{frac:06d}+00:00"


_iso = _IsoClock()


def _text(b: bytes) -> str:
    return b.decode("latin-1")


def preview_json(preview: bytes, body_size: int) -> dict[str, Any]:
    try:
        text, encoding = preview.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(preview).decode("ascii"), "base64"
    return {"data": text, "encoding": encoding, "truncated": len(preview) < body_size}


def _message_json(out: dict[str, Any], m: Message) -> dict[str, Any]:
    """``out`` (method and URL, or status and reason) with the message's fields added."""
    out["http_version"] = "HTTP/" + m.version.decode("latin-1")
    out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in m.headers]
    out["body_size"] = m.body_size
    if m.preview:
        out["body_preview"] = preview_json(m.preview, m.body_size)
    if m.trailers:
        out["trailers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in m.trailers]
    return out


def _body_file(out: dict[str, Any], r: FlowRecord, request: bool) -> None:
    bodies = r.bodies
    if bodies is None or not bodies.files:
        return
    if (bodies.request if request else bodies.response) is None:
        return
    out["body_file"] = bodies.path(r.id, request)
    if bodies.request_truncated if request else bodies.response_truncated:
        out["body_file_truncated"] = True


def _request_json(info: RequestInfo) -> dict[str, Any]:
    out = _message_json({"method": _text(info.method), "url": info.url}, info.message)
    if info.forwarded is not None:
        out["forwarded"] = _request_json(info.forwarded)
    return out


def _response_json(info: ResponseInfo) -> dict[str, Any]:
    out = _message_json({"status": info.status, "reason": _text(info.reason)}, info.message)
    if info.upstream is not None:
        out["upstream"] = _response_json(info.upstream)
    return out


def _ms(t: float | None, start: float) -> float | None:
    return None if t is None else round((t - start) * 1000, 3)


def record_to_json(r: FlowRecord) -> dict[str, Any]:
    if isinstance(r.grpc, GrpcMessage):
        return _grpc_message_record(r, r.grpc)
    if r.message is not None:
        return _stream_message_record(r)
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": r.id,
        "kind": r.kind,
        "mode": r.mode,
        "start": _iso(r.start),
        "end": _iso(r.end),
        "duration_ms": round((r.end - r.start) * 1000, 3),
        "client": {"ip": r.client[0], "port": r.client[1]},
        "server": None if r.server is None else {"ip": r.server[0], "port": r.server[1]},
    }
    t = r.timings
    out["timings_ms"] = {
        "request_head": _ms(t.request_head, r.start),
        "connected": _ms(t.connected, r.start),
        "request_done": _ms(t.request_done, r.start),
        "response_head": _ms(t.response_head, r.start),
        "response_done": _ms(t.response_done, r.start),
    }
    if r.request is not None:
        out["request"] = _request_json(r.request)
        _body_file(out["request"], r, True)
    if r.response is not None:
        out["response"] = _response_json(r.response)
        out["response"]["source"] = r.response.source.value
        _body_file(out["response"], r, False)
    if r.tunnel is not None:
        tu = r.tunnel
        out["tunnel"] = {
            "bytes_client_to_server": tu.bytes_up,
            "bytes_server_to_client": tu.bytes_down,
            "client_close": tu.client_close,
            "server_close": tu.server_close,
        }
        if tu.websocket is not None:
            out["websocket"] = info_json(tu.websocket)
    if r.tls is not None:
        out["tls"] = tls_json(r.tls)
    if r.rules is not None:
        out["rules"] = {
            "matched": [
                {"rule": name, "source": source, "actions": list(actions)}
                for name, source, actions in r.rules.matched
            ],
            "warnings": list(r.rules.warnings),
            "tags": list(r.rules.tags),
            "detail": r.rules.detail,
        }
    if r.route is not None:
        dst = r.route.original_dst
        out["route"] = {
            "via": r.route.via,
            "original_dst": None if dst is None else {"ip": dst[0], "port": dst[1]},
        }
    if r.refused is not None:
        out["refused"] = {
            "data": escaped(r.refused.data),
            "size": r.refused.size,
            "truncated": len(r.refused.data) < r.refused.size,
        }
    if isinstance(r.grpc, GrpcCall):
        out["grpc"] = call_json(r.grpc)
    out["error"] = r.error
    return out


def _grpc_message_record(r: FlowRecord, m: GrpcMessage) -> dict[str, Any]:
    """A gRPC message's own record: linked to its call by ``flow`` (docs/flow-log.md)."""
    return {
        "schema": SCHEMA_VERSION,
        "id": r.id,
        "kind": r.kind,
        "mode": r.mode,
        "time": _iso(r.start),
        "grpc_message": message_json(m),
    }


def _stream_message_record(r: FlowRecord) -> dict[str, Any]:
    """A WebSocket message's or a server-sent event's own record (docs/flow-log.md)."""
    m = r.message
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": r.id,
        "kind": r.kind,
        "mode": r.mode,
        "time": _iso(r.start),
    }
    if isinstance(m, WsMessage):
        out["websocket_message"] = ws_message_json(m)
    elif m is not None:
        out["sse_event"] = event_json(m)
    return out


_ESCAPES = {0x5C: "\\\\", 0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t"}


def escaped(data: bytes) -> str:
    """Bytes as readable text: printable ASCII as is, ``\\r \\n \\t \\\\``,
    anything else as ``\\xNN`` (so a TLS hello or a NUL is seen, never mangled)."""
    return "".join(_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in data)


def _side_json(side: TlsSide) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": side.version,
        "cipher": side.cipher,
        "alpn": side.alpn,
        "sni": side.sni,
    }
    if side.offered_alpn:
        out["offered_alpn"] = list(side.offered_alpn)
    if side.cert_subject is not None:
        out["certificate"] = {
            "subject": side.cert_subject,
            "issuer": side.cert_issuer,
            "sans": list(side.cert_sans),
            "not_after": side.cert_not_after,
        }
    return out


def tls_json(t: TlsInfo) -> dict[str, Any]:
    return {
        "intercepted": t.intercepted,
        "keylog": t.keylog,
        "client": None if t.client is None else _side_json(t.client),
        "server": None if t.server is None else _side_json(t.server),
    }
