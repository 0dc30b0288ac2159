"""The flow record: one per completed exchange, tunnel or TCP relay.

A record is built once, when a flow ends, from plain values (bytes stay
bytes); turning it into JSON happens later, off the data path, in
``proxy.flow.jsonview``. The JSON shape is documented in docs/flow-log.md and
carries ``schema`` so readers can tell versions apart. Bump
``SCHEMA_VERSION`` on any incompatible change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from proxy.flow.grpcinfo import GrpcCall, GrpcMessage
from proxy.flow.wsinfo import SseEvent, WsInfo, WsMessage
from proxy.http1.events import Fields

SCHEMA_VERSION = 3  # 2: request.forwarded, response.upstream, response.source;
# 3: response.trailers, gRPC calls (``grpc``) and ``grpc_message`` records

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Message:
    """One side of an HTTP exchange as it went over the wire to us."""

    headers: Fields
    body_size: int
    preview: bytes  # the first bytes of the body (length configurable)
    version: bytes = b"1.1"
    trailers: Fields = ()  # the trailer fields that ended the body (gRPC's status)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The request as the client sent it; ``forwarded``: as it went upstream,
    when a rule or hook changed it (None: forwarded as received)."""

    method: bytes
    url: str
    message: Message
    forwarded: RequestInfo | None = None


class Source(Enum):
    """Who made the response the client got."""

    UPSTREAM = "upstream"
    PROXY = "proxy"  # an error, a rule's answer, a hook's reply, a local page


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """The response as the client got it; ``upstream``: as the server sent it,
    when that differs (a rule or hook changed it, or the proxy answered instead)."""

    status: int
    reason: bytes
    message: Message
    upstream: ResponseInfo | None = None
    source: Source = Source.UPSTREAM


@dataclass(frozen=True, slots=True)
class TunnelInfo:
    bytes_up: int  # client -> server
    bytes_down: int  # server -> client
    client_close: str  # "fin", "reset", "proxy" (we closed it), "timeout"
    server_close: str
    websocket: WsInfo | None = None  # a WebSocket's messages and close (kind websocket)


@dataclass(frozen=True, slots=True)
class TlsSide:
    """TLS as negotiated on one side; certificate fields for the upstream side."""

    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    sni: str | None = None
    offered_alpn: tuple[str, ...] = ()
    cert_subject: str | None = None
    cert_issuer: str | None = None
    cert_sans: tuple[str, ...] = ()
    cert_not_after: str | None = None


@dataclass(frozen=True, slots=True)
class TlsInfo:
    intercepted: bool  # we terminated the client's TLS and read the plaintext
    client: TlsSide | None = None
    server: TlsSide | None = None
    keylog: bool = False  # its secrets went to the key log (--keylog / SSLKEYLOGFILE)


@dataclass(frozen=True, slots=True)
class RulesInfo:
    """Which rules matched this flow and what they did (for "why didn't it fire?")."""

    matched: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (rule, file:line, actions)
    warnings: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    detail: str | None = None


def tcp_rules_info(names: tuple[str, ...]) -> RulesInfo | None:
    """The TCP rules (toxics) that acted on a relay, for its record."""
    if not names:
        return None
    return RulesInfo(tuple((name, "", ("tcp",)) for name in names))


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """How the flow reached the proxy and left it (beyond the listener's mode)."""

    via: str = "direct"  # the next proxy's URL without credentials, or "direct"
    original_dst: Address | None = None  # transparent mode: where the client was going


@dataclass(frozen=True, slots=True)
class Timings:
    """Absolute times (seconds since the epoch); None when a phase never happened."""

    request_head: float | None = None
    connected: float | None = None
    request_done: float | None = None
    response_head: float | None = None
    response_done: float | None = None


@dataclass(frozen=True, slots=True)
class CapturedBodies:
    """What goes to disk for one flow (built when the flow ends): body files
    in ``directory``, or, when it is empty, only the recording (``--save``)."""

    directory: str
    request: bytes | None  # None: not written (fits in the preview, or no budget)
    response: bytes | None
    request_truncated: bool = False
    response_truncated: bool = False
    forwarded: bytes | None = None  # the request body as a rule rewrote it (recording only)

    @property
    def files(self) -> bool:
        """Whether these bodies go to body files (else only to a recording)."""
        return bool(self.directory)

    def path(self, flow_id: str, request: bool) -> str:
        return f"{self.directory}/{flow_id}.{'request' if request else 'response'}.body"


@dataclass(frozen=True, slots=True)
class Refused:
    """The start of what the client sent that the proxy refused (a bad or
    unfinished request head), and how many bytes it was."""

    data: bytes
    size: int


@dataclass(frozen=True, slots=True)
class FlowRecord:
    id: str
    kind: str  # "http", "tunnel", "websocket", "tcp"
    mode: str
    start: float
    end: float
    client: Address
    server: Address | None
    request: RequestInfo | None = None
    response: ResponseInfo | None = None
    tunnel: TunnelInfo | None = None
    timings: Timings = Timings()
    error: str | None = None
    tls: TlsInfo | None = None
    rules: RulesInfo | None = None
    bodies: CapturedBodies | None = None  # body files to write (--capture-bodies)
    refused: Refused | None = None  # the bytes of a request the proxy refused
    route: RouteInfo | None = None  # None: no server connection was attempted
    # A gRPC call (on its HTTP flow), or one of its messages (kind grpc_message).
    grpc: GrpcCall | GrpcMessage | None = None
    # A WebSocket message (kind websocket_message) or a server-sent event (sse_event).
    message: WsMessage | SseEvent | None = None

    def to_record(self) -> FlowRecord:
        """A record is its own flow source (see ``proxy.flow.FlowSource``)."""
        return self


class FlowSource(Protocol):
    """A finished flow; ``to_record`` builds its frozen record (any thread)."""

    def to_record(self) -> FlowRecord: ...
