"""A flow as the web UI's list shows it, and the bodies the store keeps.

The summary's fields are those of docs/api.md ("Flows"); this module says
how each comes from a flow's flow-log record (docs/flow-log.md), the JSON
the store keeps: summaries are made when a flow is indexed
(``proxy.web.storewait``), from the record as written, so the list, the
metrics and the flow log cannot disagree. Pure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from proxy.web.rows import Summary

Json = dict[str, Any]


def header(m: Json, name: str) -> str | None:
    """The first field ``name`` (lower case) of a record's message."""
    for k, v in m.get("headers") or ():
        if k.lower() == name:
            return str(v)
    return None


def media_type(m: Json | None) -> str | None:
    """The content type without its parameters, lower case (``application/json``)."""
    value = None if m is None else header(m, "content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def protocol(r: Json) -> str:
    """``gRPC``, ``WebSocket``, ``TCP``, ``tunnel``, ``SSE``, else the request's HTTP version."""
    kind = r.get("kind")
    if "grpc" in r:
        return "gRPC"
    if kind == "websocket":
        return "WebSocket"
    if kind == "tcp":
        return "TCP"
    if kind == "tunnel":
        return "tunnel"
    request, response = r.get("request"), r.get("response")
    if response is not None and media_type(response) == "text/event-stream":
        return "SSE"
    version = "" if request is None else str(request.get("http_version", ""))
    if version.startswith("HTTP/2"):
        return "HTTP/2"
    if version == "HTTP/1.0":
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


def _where(r: Json) -> tuple[str, str, str]:
    """URL, host and path (with the query) of the flow."""
    request, server = r.get("request"), r.get("server")
    if request is not None:
        url = str(request.get("url", ""))
        host, path = split_url(url)
        return url, host, path
    if server is not None:
        return f"tcp://{server['ip']}:{server['port']}", str(server["ip"]), ""
    return "", "", ""


def rule_names(r: Json) -> list[str]:
    """The rules that matched the flow, each once, in order."""
    rules = r.get("rules")
    if not rules:
        return []
    return list(dict.fromkeys(str(m["rule"]) for m in rules.get("matched", ())))


def body_bytes(r: Json) -> tuple[int, int]:
    """Bytes (upstream, downstream) of a flow: its bodies, or what its tunnel carried."""
    request, response, tunnel = r.get("request"), r.get("response"), r.get("tunnel")
    up = 0 if request is None else int(request.get("body_size", 0))
    down = 0 if response is None else int(response.get("body_size", 0))
    if tunnel is not None:
        up += int(tunnel.get("bytes_client_to_server", 0))
        down += int(tunnel.get("bytes_server_to_client", 0))
    return up, down


def summary(r: Json) -> Summary:
    """The summary columns (``rows.SUMMARY_KEYS``) of a finished flow's record."""
    url, host, path = _where(r)
    req, resp, tunnel = r.get("request"), r.get("response"), r.get("tunnel")
    size: int | None = None
    if resp is not None:
        size = resp.get("body_size")
    elif tunnel is not None:
        size = tunnel.get("bytes_server_to_client")
    return {
        "id": r["id"],
        "start": dt.datetime.fromisoformat(r["start"]).timestamp(),
        "duration": r.get("duration_ms"),
        "protocol": protocol(r),
        "kind": r.get("kind"),
        "method": None if req is None else req.get("method"),
        "url": url,
        "host": host,
        "path": path,
        "status": None if resp is None else resp.get("status"),
        "type": media_type(resp),
        "size": size,
        "error": r.get("error"),
        "rules": rule_names(r),
        "changed": (req is not None and "forwarded" in req)
        or (resp is not None and "upstream" in resp),
        "marked": False,
    }
