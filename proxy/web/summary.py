"""A flow record as the web UI's list shows it, and the bodies the store keeps.

The summary's fields are those of docs/api.md ("Flows"); this module says
how each comes from a ``FlowRecord``. Pure: runs on the event loop, in the
store sink's ``prepare``.
"""

from __future__ import annotations

from proxy.flow.grpcinfo import GrpcCall
from proxy.flow.record import FlowRecord, Message
from proxy.web.rows import BodyRow, Summary


def header(m: Message, name: bytes) -> str | None:
    """The first field ``name`` (lower case) of a message, as text."""
    for k, v in m.headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def media_type(m: Message | None) -> str | None:
    """The content type without its parameters, lower case (``application/json``)."""
    value = None if m is None else header(m, b"content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def protocol(r: FlowRecord) -> str:
    """``gRPC``, ``WebSocket``, ``TCP``, ``tunnel``, ``SSE``, else the request's HTTP version."""
    if isinstance(r.grpc, GrpcCall):
        return "gRPC"
    if r.kind == "websocket":
        return "WebSocket"
    if r.kind == "tcp":
        return "TCP"
    if r.kind == "tunnel":
        return "tunnel"
    if r.response is not None and media_type(r.response.message) == "text/event-stream":
        return "SSE"
    if r.request is not None and r.request.message.version.startswith(b"2"):
        return "HTTP/2"
    if r.request is not None and r.request.message.version == b"1.0":
        return "HTTP/1.0"
    return "HTTP/1.1"


def split_url(url: str) -> tuple[str, str]:
    """Host and path (with the query) of an absolute URL, or of CONNECT's
    ``host:port``; by hand, as ``urlsplit`` cost half the summary's time."""
    scheme = url.find("://")
    rest = url[scheme + 3 :] if scheme >= 0 else url
    cut = len(rest)
    for stop in ("/", "?", "#"):
        at = rest.find(stop)
        if 0 <= at < cut:
            cut = at
    authority, path = rest[:cut], rest[cut:].split("#", 1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):  # an IPv6 literal (RFC 3986 §3.2.2)
        host = host[1 : host.find("]")]
    elif ":" in host:
        host = host.rpartition(":")[0]
    if path.startswith("?"):
        path = "/" + path
    return host.lower(), path


def _where(r: FlowRecord) -> tuple[str, str, str]:
    """URL, host and path (with the query) of the flow."""
    if r.request is not None:
        host, path = split_url(r.request.url)
        return r.request.url, host, path
    if r.server is not None:
        host, port = r.server
        return f"tcp://{host}:{port}", host, ""
    return "", "", ""


def _rule_names(r: FlowRecord) -> list[str]:
    if r.rules is None:
        return []
    return list(dict.fromkeys(name for name, _source, _actions in r.rules.matched))


def summary(r: FlowRecord) -> Summary:
    """The summary columns (``rows.SUMMARY_KEYS``) of a finished flow."""
    url, host, path = _where(r)
    req, resp = r.request, r.response
    size: int | None = None
    if resp is not None:
        size = resp.message.body_size
    elif r.tunnel is not None:
        size = r.tunnel.bytes_down
    return {
        "id": r.id,
        "start": r.start,
        "duration": round((r.end - r.start) * 1000, 3),
        "protocol": protocol(r),
        "kind": r.kind,
        "method": None if req is None else req.method.decode("latin-1"),
        "url": url,
        "host": host,
        "path": path,
        "status": None if resp is None else resp.status,
        "type": media_type(None if resp is None else resp.message),
        "size": size,
        "error": r.error,
        "rules": _rule_names(r),
        "changed": (req is not None and req.forwarded is not None)
        or (resp is not None and resp.upstream is not None),
        "marked": False,
    }


def _whole(m: Message) -> bytes | None:
    """The body when the record's preview holds all of it (small bodies need no capture)."""
    return m.preview if len(m.preview) == m.body_size else None


def bodies(r: FlowRecord, max_body: int) -> tuple[BodyRow, ...]:
    """The flow's bodies, each capped at ``max_body``: captured bytes when capture
    was on (``SessionConfig.capture.record``), else whole previews; empty
    bodies are not stored."""
    captured = r.bodies
    found: list[tuple[str, bytes | None, int, bool]] = []
    if r.request is not None:
        m = r.request.message
        data = None if captured is None else captured.request
        trunc = captured is not None and data is not None and captured.request_truncated
        found.append(("request", data if data is not None else _whole(m), m.body_size, trunc))
        fwd = r.request.forwarded
        if fwd is not None:
            data = None if captured is None else captured.forwarded
            sent = data if data is not None else _whole(fwd.message)
            found.append(("request_sent", sent, fwd.message.body_size, False))
    if r.response is not None:
        m = r.response.message
        data = None if captured is None else captured.response
        trunc = captured is not None and data is not None and captured.response_truncated
        found.append(("response", data if data is not None else _whole(m), m.body_size, trunc))
        up = r.response.upstream
        if up is not None:
            found.append(("response_upstream", _whole(up.message), up.message.body_size, False))
    return tuple(
        BodyRow(side, data[:max_body], size, trunc or len(data) > max_body or len(data) < size)
        for side, data, size, trunc in found
        if data and size
    )
