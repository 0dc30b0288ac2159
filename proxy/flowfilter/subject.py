"""What a filter reads of a flow: the ``Subject`` protocol and its vocabulary.

A subject is one flow (or one message of a streaming flow) seen from the
client's side: the request as the client sent it, the response as the client
got it. Adapters build one from a flow-log JSON record (``json_subject``), a
``FlowRecord`` (``record_subject``) or a flow held at a hook
(``live_subject``). Bodies are read only when an expression looks at them
(``Filter.needs_bodies``), and then through ``body``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol
from urllib.parse import urlsplit

Side = Literal["request", "response"]
Fields = tuple[tuple[bytes, bytes], ...]


class Kind(Enum):
    """The protocol a flow spoke, as the flow list shows it."""

    HTTP1 = "http/1"  # HTTP/1.0 or 1.1
    HTTP2 = "http/2"  # an HTTP/2 stream (or an h2c upgrade's response)
    GRPC = "grpc"  # a gRPC or gRPC-Web call, or one of its messages
    WEBSOCKET = "websocket"  # a WebSocket connection, or one of its messages
    SSE = "sse"  # a text/event-stream response, or one of its events
    TCP = "tcp"  # a raw TCP relay (tcp: mode)
    TUNNEL = "tunnel"  # a CONNECT or Upgrade relayed as opaque bytes


#: What ``~http`` matches: everything with an HTTP exchange at its start.
HTTP_KINDS = frozenset({Kind.HTTP1, Kind.HTTP2, Kind.GRPC, Kind.WEBSOCKET, Kind.SSE})


class Subject(Protocol):
    """The parts of a flow a filter reads.

    Strings are text (URL, host, method as sent); header fields are bytes
    pairs in wire order. ``response_headers`` is None when there is no
    response (yet). ``body(side)`` gives the body as it went over the wire
    (content codings still applied: the evaluator undoes them from the
    side's ``Content-Encoding``), or None when it is not known.
    """

    @property
    def kind(self) -> Kind: ...
    @property
    def url(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def method(self) -> str | None: ...
    @property
    def status(self) -> int | None: ...
    @property
    def request_headers(self) -> Fields: ...
    @property
    def response_headers(self) -> Fields | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def marked(self) -> bool: ...
    @property
    def client(self) -> str | None: ...  # "ip:port"
    @property
    def server(self) -> str | None: ...  # "ip:port"

    def body(self, side: Side) -> bytes | None: ...


def host_of(url: str) -> str | None:
    """The host of an absolute URL or of an authority (a CONNECT's ``host:port``)."""
    if "://" not in url:
        url = "//" + url
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def address(ip: str | None, port: int | None) -> str | None:
    """``ip:port`` (``[v6]:port``), or None for no address."""
    if not ip:
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def version_kind(*versions: str | bytes | None) -> Kind:
    """HTTP/2 when either side spoke it (an h2c upgrade answers in HTTP/2)."""
    for v in versions:
        if v is not None and (v[-3:] in ("2.0", b"2.0") or v in ("2", b"2", "HTTP/2")):
            return Kind.HTTP2
    return Kind.HTTP1


def content_types(fields: Fields | None) -> list[bytes]:
    return [v for k, v in fields or () if k.lower() == b"content-type"]


def is_event_stream(fields: Fields | None) -> bool:
    return any(v.lower().startswith(b"text/event-stream") for v in content_types(fields))


def _no_body(side: Side) -> bytes | None:
    return None


@dataclass(frozen=True, slots=True)
class FlowSubject:
    """The ``Subject`` the adapters build: plain values and a body reader."""

    kind: Kind
    url: str | None = None
    host: str | None = None
    method: str | None = None
    status: int | None = None
    request_headers: Fields = ()
    response_headers: Fields | None = None
    error: str | None = None
    marked: bool = False
    client: str | None = None
    server: str | None = None
    read_body: Callable[[Side], bytes | None] = _no_body

    def body(self, side: Side) -> bytes | None:
        return self.read_body(side)
