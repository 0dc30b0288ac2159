"""HAR 1.2 entries, written by any tool (a browser, Playwright, tapproxy), as recorded flows.

HAR bodies are stored after content decoding (HAR 1.2 ``content.text``), so
an imported response whose headers name a ``Content-Encoding`` would be
answered with a body that does not match them: those headers are dropped
together with ``Content-Length`` and ``Transfer-Encoding`` (the proxy frames
a replayed body by its length, RFC 9112 §6.3). HTTP/2 pseudo-header fields
(``:authority`` and the like, as browsers write them) are dropped from the
head; ``protocol`` keeps the version the tool saw.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from proxy.replay.flowlog import epoch
from proxy.replay.format import (
    Body,
    Fields,
    Json,
    Offsets,
    RecordedFlow,
    RecordedRequest,
    RecordedResponse,
)

#: Framing and coding fields that stop being true once a HAR decoded the body.
_REFRAMED = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


def _fields(headers: Any, drop: frozenset[bytes] = frozenset()) -> Fields:
    out = []
    for h in headers or ():
        name = str(h.get("name", ""))
        if not name or name.startswith(":"):
            continue
        raw = name.encode("latin-1", "replace")
        if raw.lower() in drop:
            continue
        out.append((raw, str(h.get("value", "")).encode("latin-1", "replace")))
    return tuple(out)


def _version(text: Any) -> tuple[str, bytes]:
    """(protocol, HTTP/1 version) from a HAR ``httpVersion`` (``HTTP/1.1``, ``h2``...)."""
    v = str(text or "HTTP/1.1").lower()
    if v in ("h2", "http/2", "http/2.0"):
        return "h2", b"1.1"
    if v in ("h3", "http/3", "http/3.0"):
        return "h3", b"1.1"
    return "http/1.1" if v != "http/1.0" else "http/1.0", v.removeprefix("http/").encode()


def _post_data(post: Any) -> Body:
    if not post:
        return Body(b"", 0)
    if "_textBase64" in post:
        data = base64.b64decode(post["_textBase64"])
    else:
        data = str(post.get("text", "")).encode("utf-8")
    return Body(data, len(data))


def _content(content: Any) -> Body:
    if not content or "text" not in content:
        size = int((content or {}).get("size") or 0)
        return Body(b"", max(size, 0))  # not included: marked truncated by its size
    text = str(content["text"])
    data = base64.b64decode(text) if content.get("encoding") == "base64" else text.encode("utf-8")
    return Body(data, len(data))


def _ms(value: Any) -> float:
    return max(float(value or 0), 0.0)


def _offsets(entry: Json) -> Offsets:
    t = entry.get("timings") or {}
    before = sum(_ms(t.get(k)) for k in ("blocked", "dns", "connect", "send", "wait"))
    total = _ms(entry.get("time"))
    connected = _ms(t.get("blocked")) + _ms(t.get("dns")) + _ms(t.get("connect"))
    return Offsets(connected / 1000, None, before / 1000, max(total, before) / 1000)


def flow_from_entry(entry: Json, index: int) -> RecordedFlow | None:
    """None for entries that are not http(s) exchanges (data: URLs, WebSocket)."""
    req = entry["request"]
    url = str(req["url"])
    if not url.startswith(("http://", "https://")):
        return None
    protocol, version = _version(req.get("httpVersion"))
    request = RecordedRequest(
        str(req["method"]).encode("latin-1"), url, _fields(req.get("headers")),
        _post_data(req.get("postData")), version,
    )  # fmt: skip
    res = entry.get("response") or {}
    response = None
    status = int(res.get("status") or 0)
    if status > 0:
        headers = _fields(res.get("headers"), _REFRAMED)
        reason = str(res.get("statusText", "")).encode("latin-1", "replace")
        response = RecordedResponse(status, reason, headers, _content(res.get("content")), version)
    start = epoch(str(entry["startedDateTime"]).replace("Z", "+00:00"))
    custom = entry.get("_tapproxy") or {}
    server = entry.get("serverIPAddress")
    return RecordedFlow(
        id=str(custom.get("id") or f"har-{index}"),
        start=start,
        end=start + _ms(entry.get("time")) / 1000,
        request=request,
        response=response,
        protocol=protocol,
        server=(str(server).strip("[]"), 0) if server else None,
        offsets=_offsets(entry),
        error=None if response else str(res.get("_error") or "no response in the HAR"),
        tls=url.startswith("https://"),
    )


def flows_from_har(doc: Json) -> tuple[list[RecordedFlow], list[tuple[str, str]]]:
    """The HAR's http(s) exchanges in order, and (where, why) for malformed entries."""
    flows: list[RecordedFlow] = []
    problems: list[tuple[str, str]] = []
    for i, entry in enumerate((doc.get("log") or {}).get("entries") or ()):
        try:
            flow = flow_from_entry(entry, i)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as e:
            problems.append((f"entry {i}", f"{type(e).__name__}: {e}"))
            continue
        if flow is not None:  # None: a data: URL or the like, nothing to replay
            flows.append(flow)
    return flows, problems
