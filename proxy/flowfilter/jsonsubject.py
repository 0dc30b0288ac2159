"""A subject from a finished flow-log record (the dict ``record_to_json`` makes).

The web UI's store keeps records in this shape (docs/flow-log.md) and bodies
beside them; ``body`` is its reader, called only when the expression looks
at bodies. When it has no body for a side, the record's ``body_preview`` is
scanned instead. A message record (``grpc_message``, ``websocket_message``,
``sse_event``) is a subject of its own: its protocol, its direction as the
side (client to server is ``request``) and its payload preview as the body;
it has no URL, host or method (those are on its flow's record).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from proxy.flowfilter.subject import (
    Fields,
    FlowSubject,
    Kind,
    Side,
    Subject,
    address,
    host_of,
    version_kind,
)

Json = dict[str, Any]
BodyReader = Callable[[str], bytes | None]


def json_subject(record: Json, body: BodyReader, marked: bool = False) -> Subject:
    """The subject of one flow-log record; ``body("request"|"response")`` reads
    a side's body as it went over the wire (None: not kept)."""
    kind = record.get("kind")
    if kind == "grpc_message":
        m = record.get("grpc_message") or {}
        side: Side = "request" if m.get("direction") == "request" else "response"
        return _message(Kind.GRPC, side, m.get("raw"), marked)
    if kind == "websocket_message":
        m = record.get("websocket_message") or {}
        side = "request" if m.get("direction") == "upstream" else "response"
        return _message(Kind.WEBSOCKET, side, m.get("preview"), marked)
    if kind == "sse_event":
        m = record.get("sse_event") or {}
        return _message(Kind.SSE, "response", m.get("data"), marked)
    return JsonSubject(record, body, marked)


class JsonSubject:
    """A flow record's subject, each part read from the dict when a filter asks
    for it: a filter over many stored records pays only for what it reads."""

    __slots__ = (
        "_read", "_record", "_request", "_request_fields", "_response", "_response_fields",
        "marked",
    )  # fmt: skip

    def __init__(self, record: Json, body: BodyReader, marked: bool) -> None:
        self._record = record
        self._request: Json | None = record.get("request")
        self._response: Json | None = record.get("response")
        self._read = body
        self._request_fields: Fields | None = None
        self._response_fields: Fields | None = None
        self.marked = marked

    @property
    def kind(self) -> Kind:
        return _kind(self._record, self._request, self._response)

    @property
    def url(self) -> str | None:
        return self._request.get("url") if self._request else None

    @property
    def host(self) -> str | None:
        url = self.url
        return host_of(url) if url else (self._record.get("server") or {}).get("ip")

    @property
    def method(self) -> str | None:
        return self._request.get("method") if self._request else None

    @property
    def status(self) -> int | None:
        return self._response.get("status") if self._response else None

    @property
    def request_headers(self) -> Fields:
        if self._request_fields is None:
            self._request_fields = _fields(self._request)
        return self._request_fields

    @property
    def response_headers(self) -> Fields | None:
        if self._response is None:
            return None
        if self._response_fields is None:
            self._response_fields = _fields(self._response)
        return self._response_fields

    @property
    def error(self) -> str | None:
        r = self._record
        error: str | None = r.get("error") or (r.get("websocket") or {}).get("error")
        return error

    @property
    def client(self) -> str | None:
        c = self._record.get("client") or {}
        return address(c.get("ip"), c.get("port"))

    @property
    def server(self) -> str | None:
        s = self._record.get("server") or {}
        return address(s.get("ip"), s.get("port"))

    def body(self, side: Side) -> bytes | None:
        data = self._read(side)
        if data is None:
            message = self._request if side == "request" else self._response
            data = preview_bytes(message.get("body_preview") if message else None)
        return data


def _kind(record: Json, request: Json | None, response: Json | None) -> Kind:
    kind = record.get("kind")
    if kind == "tcp":
        return Kind.TCP
    if kind == "tunnel":
        return Kind.TUNNEL
    if kind == "websocket":
        return Kind.WEBSOCKET
    if record.get("grpc") is not None:
        return Kind.GRPC
    if response is not None and _event_stream(response):
        return Kind.SSE
    return version_kind(
        request.get("http_version") if request else None,
        response.get("http_version") if response else None,
    )


def _event_stream(message: Json) -> bool:
    return any(
        str(k).lower() == "content-type" and str(v).lower().startswith("text/event-stream")
        for k, v in message.get("headers") or ()
    )


def _fields(message: Json | None) -> Fields:
    if not message:
        return ()
    try:  # the flow log's headers are Latin-1 text (docs/flow-log.md)
        return tuple([(k.encode("latin-1"), v.encode("latin-1")) for k, v in message["headers"]])
    except (KeyError, TypeError, ValueError, AttributeError):  # not that shape
        return tuple(
            (str(k).encode("latin-1", "replace"), str(v).encode("latin-1", "replace"))
            for k, v in message.get("headers") or ()
        )


def preview_bytes(preview: Json | None) -> bytes | None:
    """The bytes of a ``{"data", "encoding"}`` preview (None when there is none)."""
    if not preview or not isinstance(preview.get("data"), str):
        return None
    data: str = preview["data"]
    if preview.get("encoding") == "base64":
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None
    return data.encode("utf-8", "surrogatepass")


def _message(kind: Kind, side: Side, preview: Json | None, marked: bool) -> FlowSubject:
    data = preview_bytes(preview)

    def read(s: Side) -> bytes | None:
        return data if s == side else None

    return FlowSubject(kind=kind, marked=marked, read_body=read)
