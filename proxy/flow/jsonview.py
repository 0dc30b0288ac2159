"""A flow record as JSON: the flow log's line, the base of HAR entries.

Runs off the data path (the sinks' writer, ``tapproxy analyze``). The shape
is documented in docs/flow-log.md; ``schema`` says its version.
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
    CapturedBodies,
    FlowRecord,
    RequestInfo,
    ResponseInfo,
    RulesInfo,
    Timings,
    TlsInfo,
    TlsSide,
    TunnelInfo,
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


def preview_json(preview: bytes, body_size: int) -> dict[str, Any]:
    try:
        text, encoding = preview.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(preview).decode("ascii"), "base64"
    return {"data": text, "encoding": encoding, "truncated": len(preview) < body_size}


# The request and response objects are written out in one function each, the
# message's fields inline: a record is encoded for every flow, and each call
# saved there is one per flow (tests/unit/test_record_json_same.py holds the
# output to the previous, factored version byte for byte).


def _request_json(info: RequestInfo) -> dict[str, Any]:
    m = info.message
    out: dict[str, Any] = {
        "method": info.method.decode("latin-1"),
        "url": info.url,
        "http_version": "HTTP/" + m.version.decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in m.headers],
        "body_size": m.body_size,
    }
    if m.preview:
        out["body_preview"] = preview_json(m.preview, m.body_size)
    if m.trailers:
        out["trailers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in m.trailers]
    if info.forwarded is not None:
        out["forwarded"] = _request_json(info.forwarded)
    return out


def _response_json(info: ResponseInfo) -> dict[str, Any]:
    m = info.message
    out: dict[str, Any] = {
        "status": info.status,
        "reason": info.reason.decode("latin-1"),
        "http_version": "HTTP/" + m.version.decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in m.headers],
        "body_size": m.body_size,
    }
    if m.preview:
        out["body_preview"] = preview_json(m.preview, m.body_size)
    if m.trailers:
        out["trailers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in m.trailers]
    if info.upstream is not None:
        out["upstream"] = _response_json(info.upstream)
    return out


def _body_file(out: dict[str, Any], r: FlowRecord, bodies: CapturedBodies, request: bool) -> None:
    if not bodies.files or (bodies.request if request else bodies.response) is None:
        return
    out["body_file"] = bodies.path(r.id, request)
    if bodies.request_truncated if request else bodies.response_truncated:
        out["body_file_truncated"] = True


def _timings_json(t: Timings, start: float) -> dict[str, float | None]:
    """Milliseconds since ``start``, rounded to the microsecond; None: never happened."""
    a, b, c, d, e = t.request_head, t.connected, t.request_done, t.response_head, t.response_done
    return {
        "request_head": None if a is None else round((a - start) * 1000, 3),
        "connected": None if b is None else round((b - start) * 1000, 3),
        "request_done": None if c is None else round((c - start) * 1000, 3),
        "response_head": None if d is None else round((d - start) * 1000, 3),
        "response_done": None if e is None else round((e - start) * 1000, 3),
    }


def record_to_json(r: FlowRecord) -> dict[str, Any]:
    if r.grpc is not None and isinstance(r.grpc, GrpcMessage):
        return _grpc_message_record(r, r.grpc)
    if r.message is not None:
        return _stream_message_record(r)
    start, end, client, server = r.start, r.end, r.client, r.server
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": r.id,
        "kind": r.kind,
        "mode": r.mode,
        "start": _iso(start),
        "end": _iso(end),
        "duration_ms": round((end - start) * 1000, 3),
        "client": {"ip": client[0], "port": client[1]},
        "server": None if server is None else {"ip": server[0], "port": server[1]},
        "timings_ms": _timings_json(r.timings, start),
    }
    bodies = r.bodies
    if r.request is not None:
        request = out["request"] = _request_json(r.request)
        if bodies is not None:
            _body_file(request, r, bodies, True)
    if r.response is not None:
        response = out["response"] = _response_json(r.response)
        response["source"] = r.response.source.value
        if bodies is not None:
            _body_file(response, r, bodies, False)
    if r.tunnel is not None:
        _tunnel_json(out, r.tunnel)
    if r.tls is not None:
        out["tls"] = tls_json(r.tls)
    if r.rules is not None:
        out["rules"] = _rules_json(r.rules)
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


def _tunnel_json(out: dict[str, Any], tu: TunnelInfo) -> None:
    out["tunnel"] = {
        "bytes_client_to_server": tu.bytes_up,
        "bytes_server_to_client": tu.bytes_down,
        "client_close": tu.client_close,
        "server_close": tu.server_close,
    }
    if tu.websocket is not None:
        out["websocket"] = info_json(tu.websocket)


def _rules_json(rules: RulesInfo) -> dict[str, Any]:
    return {
        "matched": [
            {"rule": name, "source": source, "actions": list(actions)}
            for name, source, actions in rules.matched
        ],
        "warnings": list(rules.warnings),
        "tags": list(rules.tags),
        "detail": rules.detail,
    }


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
