"""The recorded flow, and its JSON shape in a recording (docs/replay.md).

A recording holds everything needed to answer or resend a flow without the
network: heads as bytes (header names and values kept byte for byte as
latin-1 text, so any octet round-trips), bodies whole up to
``--capture-max-body`` (base64; ``size`` is the size on the wire, so a cut
body says so), timings as offsets from the flow's start (server replay's
delays). ``protocol`` says which protocol carried the exchange
(``http/1.1`` or ``h2``); a response keeps its trailer fields (gRPC's
status) and a WebSocket flow its messages (``messages``), which server
replay plays back.

The first line of a recording is a header naming the format and its
``schema_version``; readers refuse versions they do not know. Version 2
(this one) writes ``response.trailers`` and a WebSocket flow's
``messages`` with their ``size``; a version 1 recording reads as it is
(no trailers, no messages).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

FORMAT = "tapproxy-recording"
SCHEMA_VERSION = 2
READS = frozenset({1, 2})  # the versions this reader understands

Fields = tuple[tuple[bytes, bytes], ...]
Json = dict[str, Any]


class FormatError(ValueError):
    """A line that is not a recorded flow of a known schema."""


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes
    size: int  # on the wire; more than len(data) when the recording kept only the start

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.size


EMPTY = Body(b"", 0)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: bytes
    url: str  # absolute
    headers: Fields
    body: Body = EMPTY
    version: bytes = b"1.1"


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    status: int
    reason: bytes
    headers: Fields
    body: Body = EMPTY
    version: bytes = b"1.1"
    trailers: Fields = ()


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One message of a WebSocket session, as its receiver got it (uncompressed)."""

    from_client: bool
    offset: float  # seconds after the flow's start
    data: bytes  # whole, or its first --capture-max-body bytes
    text: bool = False
    size: int | None = None  # its size (None: len(data)); more than len(data) when cut

    @property
    def truncated(self) -> bool:
        return self.size is not None and self.size > len(self.data)


@dataclass(frozen=True, slots=True)
class Offsets:
    """Seconds after the flow's start; None when a phase never happened."""

    connected: float | None = None
    request_done: float | None = None
    response_head: float | None = None
    response_done: float | None = None


@dataclass(frozen=True, slots=True)
class RecordedFlow:
    id: str
    start: float  # seconds since the epoch
    end: float
    request: RecordedRequest | None
    response: RecordedResponse | None  # as the client got it
    protocol: str = "http/1.1"
    kind: str = "http"  # http, tunnel, websocket, tcp (as in the flow log)
    mode: str = "regular"
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    forwarded: RecordedRequest | None = None  # as sent upstream, when a rule or hook changed it
    upstream: RecordedResponse | None = None  # as the server sent it, when that differs
    source: str = "upstream"  # who made the response the client got: upstream or proxy
    offsets: Offsets = Offsets()
    error: str | None = None
    tls: bool = False  # the client spoke TLS to us (intercepted)
    messages: tuple[RecordedMessage, ...] = ()


def header_line(created: float, version: str) -> Json:
    return {"type": "header", "format": FORMAT, "schema_version": SCHEMA_VERSION,
            "created": created, "tapproxy": version}  # fmt: skip


def check_header(obj: Json) -> None:
    if obj.get("format") != FORMAT:
        raise FormatError(f"not a {FORMAT}")
    version = obj.get("schema_version")
    if version not in READS:
        known = ", ".join(str(v) for v in sorted(READS))
        raise FormatError(f"schema_version {version!r} (this tapproxy reads {known})")


# -- to JSON ---------------------------------------------------------------------


def _fields(fields: Fields) -> list[list[str]]:
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in fields]


def _body(body: Body) -> Json:
    out: Json = {"size": body.size, "data": base64.b64encode(body.data).decode("ascii")}
    if body.truncated:
        out["truncated"] = True
    return out


def _request(r: RecordedRequest) -> Json:
    return {"method": r.method.decode("latin-1"), "url": r.url,
            "http_version": r.version.decode("latin-1"), "headers": _fields(r.headers),
            "body": _body(r.body)}  # fmt: skip


def _response(r: RecordedResponse) -> Json:
    out = {"status": r.status, "reason": r.reason.decode("latin-1"),
           "http_version": r.version.decode("latin-1"), "headers": _fields(r.headers),
           "body": _body(r.body)}  # fmt: skip
    if r.trailers:
        out["trailers"] = _fields(r.trailers)
    return out


def _message(m: RecordedMessage) -> Json:
    out: Json = {"from_client": m.from_client, "offset": m.offset, "text": m.text,
                 "data": base64.b64encode(m.data).decode("ascii")}  # fmt: skip
    if m.truncated:
        out["size"] = m.size  # cut at --capture-max-body
    return out


def flow_json(f: RecordedFlow) -> Json:
    o = f.offsets
    return {
        "type": "flow",
        "id": f.id,
        "protocol": f.protocol,
        "kind": f.kind,
        "mode": f.mode,
        "start": f.start,
        "end": f.end,
        "client": list(f.client) if f.client else None,
        "server": list(f.server) if f.server else None,
        "tls": f.tls,
        "request": _request(f.request) if f.request else None,
        "forwarded": _request(f.forwarded) if f.forwarded else None,
        "response": _response(f.response) if f.response else None,
        "upstream": _response(f.upstream) if f.upstream else None,
        "source": f.source,
        "offsets": {"connected": o.connected, "request_done": o.request_done,
                    "response_head": o.response_head, "response_done": o.response_done},
        "error": f.error,
        "messages": [_message(m) for m in f.messages],
    }  # fmt: skip


# -- from JSON -------------------------------------------------------------------


def _fields_of(obj: Any) -> Fields:
    return tuple((str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in obj or ())


def _body_of(obj: Any) -> Body:
    if not obj:
        return EMPTY
    data = base64.b64decode(obj.get("data", ""), validate=True)
    return Body(data, int(obj.get("size", len(data))))


def _request_of(obj: Any) -> RecordedRequest | None:
    if obj is None:
        return None
    return RecordedRequest(str(obj["method"]).encode("latin-1"), str(obj["url"]),
                           _fields_of(obj.get("headers")), _body_of(obj.get("body")),
                           str(obj.get("http_version", "1.1")).encode("latin-1"))  # fmt: skip


def _response_of(obj: Any) -> RecordedResponse | None:
    if obj is None:
        return None
    return RecordedResponse(int(obj["status"]), str(obj.get("reason", "")).encode("latin-1"),
                            _fields_of(obj.get("headers")), _body_of(obj.get("body")),
                            str(obj.get("http_version", "1.1")).encode("latin-1"),
                            _fields_of(obj.get("trailers")))  # fmt: skip


def _address(obj: Any) -> tuple[str, int] | None:
    return (str(obj[0]), int(obj[1])) if obj else None


def flow_of(obj: Json) -> RecordedFlow:
    """A recorded flow from its JSON line; FormatError when it is not one."""
    try:
        o = obj.get("offsets") or {}
        return RecordedFlow(
            id=str(obj["id"]),
            start=float(obj["start"]),
            end=float(obj["end"]),
            request=_request_of(obj.get("request")),
            response=_response_of(obj.get("response")),
            protocol=str(obj.get("protocol", "http/1.1")),
            kind=str(obj.get("kind", "http")),
            mode=str(obj.get("mode", "regular")),
            client=_address(obj.get("client")),
            server=_address(obj.get("server")),
            forwarded=_request_of(obj.get("forwarded")),
            upstream=_response_of(obj.get("upstream")),
            source=str(obj.get("source", "upstream")),
            offsets=Offsets(
                o.get("connected"),
                o.get("request_done"),
                o.get("response_head"),
                o.get("response_done"),
            ),
            error=obj.get("error"),
            tls=bool(obj.get("tls")),
            messages=tuple(
                RecordedMessage(
                    bool(m["from_client"]),
                    float(m["offset"]),
                    base64.b64decode(m["data"]),
                    bool(m.get("text")),
                    None if m.get("size") is None else int(m["size"]),
                )
                for m in obj.get("messages") or ()
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as e:
        raise FormatError(f"not a recorded flow: {type(e).__name__}: {e}") from e
