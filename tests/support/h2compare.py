"""HTTP/2 exchanges per TCP connection, as tshark reads them and as our records say.

Both sides reduce a capture to ``{tcp stream index: sorted [(method, path,
request body, status, response body)]}``, one tuple per HTTP/2 stream, so a
test compares them with ``==``. tshark's side comes from its PDML
(``-T pdml``): every HTTP/2 frame is a ``http2.stream`` element with its type,
stream id, decoded ``:method``/``:path``/``:status`` and, for DATA, the
payload bytes (tshark 4.0 leaves a padded frame's padding in them; it is
cut off here, since padding is not content, RFC 9113 §6.1); the last DATA frame of a body in several
frames carries the whole body (``http2.body.reassembled.data``), which
replaces what was gathered; a PUSH_PROMISE's header block is the
promised stream's request. After ``Upgrade: h2c`` stream 1's request is the
HTTP/1.1 one (``http.request.method``/``http.request.uri``). Informational
(1xx) responses and trailers do not count: the first final status is kept.
"""

from __future__ import annotations

import base64
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Exchange = tuple[str | None, str | None, bytes, int | None, bytes]
PerConnection = dict[int, list[Exchange]]


@dataclass
class _Stream:
    method: str | None = None
    path: str | None = None
    request: bytearray = field(default_factory=bytearray)
    status: int | None = None
    response: bytearray = field(default_factory=bytearray)

    def key(self) -> Exchange:
        return (self.method, self.path, bytes(self.request), self.status, bytes(self.response))


def _fields(elem: ET.Element) -> dict[str, ET.Element]:
    out: dict[str, ET.Element] = {}
    for f in elem.iter("field"):
        out.setdefault(f.get("name", ""), f)
    return out


def tshark_h2(tshark: str, cap: str, server_ports: set[int], *args: str) -> PerConnection:
    """tshark's HTTP/2 streams in ``cap``; ``args`` add -d / -o options."""
    pdml = subprocess.run(
        [tshark, "-r", cap, *args, "-Y", "http2 or http.request", "-T", "pdml"],
        capture_output=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    streams: dict[int, dict[int, _Stream]] = {}
    for packet in ET.fromstring(pdml).iter("packet"):
        top = _fields(packet)
        tcp = int(top["tcp.stream"].get("show", "0"))
        from_client = int(top["tcp.dstport"].get("show", "0")) in server_ports
        conn = streams.setdefault(tcp, {})
        if "http.request.method" in top:  # the HTTP/1.1 request of an h2c upgrade
            s = conn.setdefault(1, _Stream())
            s.method = top["http.request.method"].get("show")
            s.path = top["http.request.uri"].get("show")
        for frame in packet.iter("field"):
            if frame.get("name") == "http2.stream":
                _frame(conn, _fields(frame), from_client)
    return {
        tcp: sorted((s.key() for s in conn.values()), key=repr)
        for tcp, conn in streams.items()
        if conn
    }


def _frame(conn: dict[int, _Stream], f: dict[str, ET.Element], from_client: bool) -> None:
    if "http2.type" not in f:
        return  # the preface ("Magic")
    kind = int(f["http2.type"].get("show", "-1"))
    sid = int(f["http2.streamid"].get("show", "0"))
    if kind == 5:  # PUSH_PROMISE: the promised stream's request
        sid = int(f["http2.push_promise.promised_stream_id"].get("show", "0"))
    if sid == 0 or kind not in (0, 1, 5):
        return
    s = conn.setdefault(sid, _Stream())
    if kind == 0:
        body = s.request if from_client else s.response
        if "http2.body.reassembled.data" in f:  # the last frame of a body in many frames: all of it
            body[:] = bytes.fromhex(f["http2.body.reassembled.data"].get("value", ""))
        elif "http2.data.data" in f:
            data = bytes.fromhex(f["http2.data.data"].get("value", ""))
            pad = int(f["http2.pad_length"].get("show", "0")) if "http2.pad_length" in f else 0
            length = int(f["http2.length"].get("show", "0"))
            if pad and len(data) == length - 1:  # tshark 4.0 leaves the padding in
                data = data[:-pad]
            body += data
    elif "http2.headers.method" in f:
        s.method = f["http2.headers.method"].get("show")
        s.path = f["http2.headers.path"].get("show") if "http2.headers.path" in f else None
    elif "http2.headers.status" in f and s.status is None:
        status = int(f["http2.headers.status"].get("show", "0"))
        if status >= 200:
            s.status = status


def our_h2(records: list[dict[str, Any]]) -> PerConnection:
    """The same view of ``analyze``'s records (bodies must be whole in the preview)."""
    out: PerConnection = {}
    for r in records:
        if r["kind"] != "http":
            continue
        tcp = int(r["id"].split("-")[0]) - 1  # connections are numbered from 1, tcp.stream from 0
        req, resp = r.get("request"), r.get("response")
        path = None
        if req is not None:
            url = urlsplit(req["url"])
            path = url.path + ("?" + url.query if url.query else "")
        out.setdefault(tcp, []).append(
            (req["method"] if req else None, path, _body(req), resp["status"] if resp else None,
             _body(resp))
        )  # fmt: skip
    return {tcp: sorted(v, key=repr) for tcp, v in out.items()}


def _body(message: dict[str, Any] | None) -> bytes:
    if message is None:
        return b""
    preview = message.get("body_preview")
    if not preview:
        assert message["body_size"] == 0
        return b""
    assert not preview["truncated"], "raise --body-preview: the comparison needs whole bodies"
    data: str = preview["data"]
    raw = base64.b64decode(data) if preview["encoding"] == "base64" else data.encode("utf-8")
    assert len(raw) == message["body_size"]
    return raw
