"""What a record says of WebSocket connections and messages, and of server-sent events.

A WebSocket connection is one flow (kind ``websocket``): the upgrade
request and its ``101``, the tunnel's byte counts, and ``WsInfo`` (message
counts, compression, the close and who closed). Each message is a record of
its own (kind ``websocket_message``) carrying ``WsMessage``, written as the
message completes; each event of a ``text/event-stream`` response likewise
(kind ``sse_event``, ``SseEvent``). Turned into JSON by ``proxy.flow.wsjson``.
"""

from __future__ import annotations

from dataclasses import dataclass

WS_MESSAGE_KIND = "websocket_message"
SSE_EVENT_KIND = "sse_event"
MESSAGE_KINDS = frozenset({"grpc_message", WS_MESSAGE_KIND, SSE_EVENT_KIND})


@dataclass(frozen=True, slots=True)
class WsMessage:
    flow: str  # the connection's flow id
    direction: str  # "upstream" (client to server) or "downstream"
    index: int  # from 0, per direction
    opcode: str  # "text" or "binary"
    size: int  # payload bytes (inflated, when it was compressed)
    wire_size: int  # bytes of its frames on the wire, headers included
    frames: int
    compressed: bool  # sent with permessage-deflate
    preview: bytes  # the payload's first bytes
    truncated: bool  # over the inspection limit: streamed untouched, only its start kept
    action: str | None = None  # "replaced", "dropped", "delayed", "injected" (by a rule)
    rules: tuple[str, ...] = ()  # the rules that acted on it
    at: float = 0.0  # when it completed
    # The payload whole, or its first --capture-max-body bytes (with --save
    # only, for the recording: a replayed session plays it); None otherwise.
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class WsClose:
    code: int | None  # None: a Close frame without a code
    reason: str


@dataclass(frozen=True, slots=True)
class WsInfo:
    """A WebSocket connection, beside its tunnel's byte counts."""

    extensions: str  # Sec-WebSocket-Extensions as the server accepted it ("" if none)
    deflate: bool  # permessage-deflate was negotiated
    upstream: int  # messages client -> server (as received)
    downstream: int
    client_close: WsClose | None  # the Close frame the client sent, if any
    server_close: WsClose | None
    closed_by: str | None  # who sent the first Close: "client", "server", "proxy"; None: none
    error: str | None = None  # why the proxy failed the connection (a protocol violation)
    rules: tuple[str, ...] = ()  # the message rules that matched
    injected: int = 0  # messages rules injected
    notes: tuple[str, ...] = ()  # rule edits that could not apply


@dataclass(frozen=True, slots=True)
class SseEvent:
    flow: str  # the response's flow id
    index: int  # from 0
    id: str | None  # the event's ``id`` field, if it had one
    event: str  # its type (``message`` when it named none)
    data: bytes  # the start of its data (lines joined with LF)
    size: int  # data bytes
    retry: int | None = None
    action: str | None = None  # "replaced", "dropped" (by a rule)
    at: float = 0.0
