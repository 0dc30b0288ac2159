"""Flows out of the UI: a curl command line, HAR, flow-log JSONL, a recording
or PCAP (docs/api.md, ``/export``).

A stored flow is its flow-log record plus its stored bodies; it becomes a
``RecordedFlow`` (``proxy.replay.flowlog``) with those bodies, and from
there the writers ``tapproxy convert`` uses make HAR and recordings, so an
export reads like any other file of the same kind. PCAP has no HTTP/2 or TLS
of its own here: each flow is written as the HTTP/1.1 conversation it stands
for (request as forwarded, response as received by the client), on a
synthetic TCP connection between the recorded addresses, which Wireshark
decodes as HTTP.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from proxy.http1.events import Framing, FramingKind
from proxy.http1.writer import framed_fields, request_head, response_head
from proxy.pcap.writer import PcapngWriter
from proxy.replay.convert import write_har, write_recording
from proxy.replay.flowlog import flow_from_log
from proxy.replay.format import Body, RecordedFlow
from proxy.sinks.jsonenc import dumps
from proxy.web.store import StoredFlow

#: The most flows one export carries.
MAX_FLOWS = 100_000
#: Headers curl sets itself (or that do not fit a command line).
_CURL_SKIP = frozenset({"host", "content-length", "connection", "transfer-encoding"})


def dumps_text(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def _with_body(body: Body, data: bytes | None) -> Body:
    return body if data is None else Body(data, max(body.size, len(data)))


def recorded(flow: StoredFlow) -> RecordedFlow | None:
    """The stored flow with its stored bodies, as the replay modules read flows."""
    f = flow_from_log(flow.record, None)
    if f is None:
        return None
    if f.request is not None:
        f = replace(
            f, request=replace(f.request, body=_with_body(f.request.body, flow.body("request")))
        )
    if f.response is not None:
        body = _with_body(f.response.body, flow.body("response"))
        f = replace(f, response=replace(f.response, body=body))
    if f.forwarded is not None:
        body = _with_body(f.forwarded.body, flow.body("request_sent"))
        f = replace(f, forwarded=replace(f.forwarded, body=body))
    return f


def curl(flow: StoredFlow) -> str:
    """A curl command that sends the request as it went upstream."""
    request = flow.record.get("request") or {}
    sent = request.get("forwarded") or request
    words = ["curl", "-X", str(sent.get("method", "GET"))]
    for name, value in sent.get("headers", []):
        if name.lower() not in _CURL_SKIP and not name.startswith(":"):
            words += ["-H", f"{name}: {value}"]
    body = flow.body("request_sent") if "forwarded" in request else None
    body = body if body is not None else flow.body("request")
    if body:
        try:
            words += ["--data-binary", body.decode("utf-8")]
        except UnicodeDecodeError:
            words += ["--data-binary", "@request.body"]  # binary: save the body beside it
    if str(sent.get("http_version", "")).endswith("/2"):
        words.append("--http2")
    words.append(str(sent.get("url", "")))
    return " ".join(shlex.quote(w) for w in words) + "\n"


def pcap(flows: Sequence[RecordedFlow]) -> bytes:
    out = io.BytesIO()
    writer = PcapngWriter(out, ordered=True)
    for port, f in enumerate(flows, start=40000):
        if f.request is None:
            continue
        client = f.client or ("127.0.0.1", port)
        server = f.server or ("127.0.0.2", urlsplit(f.request.url).port or 80)
        if ":" in client[0] or ":" in server[0]:  # mixed families cannot share a conversation
            client, server = ("127.0.0.1", port), ("127.0.0.2", server[1])
        conv = writer.open_conversation(client, server, f.start, comment=f.id)
        req = f.forwarded or f.request
        parts = urlsplit(req.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = req.body.data
        fields = framed_fields(_plain(req.headers), Framing(FramingKind.LENGTH, len(body)))
        head = request_head(req.method, target.encode(), b"1.1", fields)
        conv.data(f.start, True, head + body)
        if f.response is not None:
            r = f.response
            fields = framed_fields(_plain(r.headers), Framing(FramingKind.LENGTH, len(r.body.data)))
            rhead = response_head(b"1.1", r.status, r.reason, fields)
            conv.data(f.end, False, rhead + r.body.data)
        conv.close(f.end)
    writer.flush()
    return out.getvalue()


def _plain(fields: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """HTTP/1.1 fields: an HTTP/2 flow's pseudo-fields left out (its :authority as Host)."""
    out = [(k, v) for k, v in fields if not k.startswith(b":")]
    for k, v in fields:
        if k == b":authority" and not any(n.lower() == b"host" for n, _ in out):
            out.insert(0, (b"Host", v))
    return out


def respond(fmt: str, flows: Sequence[StoredFlow]) -> web.StreamResponse:
    """The export as a download (curl: text to copy)."""
    if fmt == "curl":
        return web.Response(text="".join(curl(f) for f in flows), content_type="text/plain")
    if fmt == "jsonl":
        data = b"".join(dumps(f.record) + b"\n" for f in flows)
        return _download(data, "application/x-ndjson", "flows.jsonl")
    recs = [r for r in (recorded(f) for f in flows) if r is not None]
    if fmt == "har":
        out = io.BytesIO()
        write_har(recs, out)
        return _download(out.getvalue(), "application/json", "flows.har")
    if fmt == "pcap":
        return _download(pcap(recs), "application/vnd.tcpdump.pcap", "flows.pcapng")
    if fmt == "tap":
        out = io.BytesIO()
        write_recording(recs, out)
        return _download(out.getvalue(), "application/gzip", "flows.tap")
    return web.json_response(
        {"error": f"no format {fmt!r}: curl, har, jsonl, pcap or tap"}, status=400
    )


def _download(data: bytes, mime: str, name: str) -> web.Response:
    return web.Response(
        body=data,
        content_type=mime,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
