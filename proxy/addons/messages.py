"""Messages of streaming protocols, as addons see them: ``websocket_message``,
``grpc_message`` and ``tcp_message`` hooks (observe-only).

The WebSocket layer and the gRPC observer report each message once it is
complete, as a record (``Hook(MESSAGE)``, the same path as the flow log's
``websocket_message`` and ``grpc_message`` records). By then the WebSocket
layer has already relayed it (or held it only for the YAML ``websocket:``
rules), and a gRPC message is read from the body as it streams: neither
layer can wait for an addon per message without stalling the connection, so
these hooks see a message and cannot change or drop it. Change or drop
messages with the ``websocket:`` and ``grpc`` rules (docs/rules.md).

A TCP relay has no messages: each read of one side is one ``tcp_message``,
reported as it is relayed (``proxy.flow.tcpdata``), observe-only as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.flow.grpcinfo import GrpcMessage
from proxy.flow.record import FlowRecord
from proxy.flow.tcpdata import TcpData
from proxy.flow.wsinfo import WsMessage

__all__ = ["Message", "message_of", "tcp_message_of"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message. ``content`` is its payload (gRPC: the message without its
    5-byte frame, decompressed), whole when ``truncated`` is False."""

    protocol: str  # "websocket", "grpc" or "tcp"
    flow_id: str  # the connection's (WebSocket) or the call's (gRPC) flow
    from_client: bool
    index: int  # from 0, per direction
    content: bytes
    size: int  # its whole size (decompressed)
    truncated: bool = False  # ``content`` is only its start (the record's preview cap)
    is_text: bool = False  # a WebSocket text message
    decoded: dict[str, Any] | None = None  # gRPC: the message decoded with --proto-path
    type: str | None = None  # gRPC: its message type, when decoded
    service: str | None = None  # gRPC
    method: str | None = None  # gRPC

    @property
    def direction(self) -> str:
        """``upstream`` (client to server) or ``downstream``."""
        return "upstream" if self.from_client else "downstream"

    @property
    def text(self) -> str | None:
        """A text message's payload (None for a binary one)."""
        return self.content.decode("utf-8", "replace") if self.is_text else None


def _ws(m: WsMessage) -> Message:
    content = m.data if m.data is not None else m.preview
    return Message(
        "websocket", m.flow, m.direction == "upstream", m.index, content, m.size,
        len(content) < m.size, is_text=m.opcode == "text",
    )  # fmt: skip


def _grpc(m: GrpcMessage) -> Message:
    truncated = m.truncated or len(m.raw) < m.raw_size
    return Message(
        "grpc", m.flow, m.direction == "request", m.index, m.raw, max(m.raw_size, len(m.raw)),
        truncated, decoded=m.decoded, type=m.type, service=m.service, method=m.method,
    )  # fmt: skip


def message_of(record: FlowRecord) -> tuple[str, Message] | None:
    """The hook a message record is for, and the message; None for other records."""
    if isinstance(record.message, WsMessage):
        return "websocket_message", _ws(record.message)
    if isinstance(record.grpc, GrpcMessage):
        return "grpc_message", _grpc(record.grpc)
    return None


def tcp_message_of(d: TcpData, index: int) -> Message:
    """One read of a TCP relay (``index``: from 0, per direction)."""
    return Message("tcp", d.flow, d.from_client, index, d.data, len(d.data))
