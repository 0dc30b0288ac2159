"""What a record says of gRPC: the call (on its HTTP flow) and each message.

A gRPC call is one HTTP exchange; its flow record carries ``GrpcCall``
(service, method, status, message counts, streaming kind). Each message is
a record of its own (kind ``grpc_message``), written when the message
completes, carrying ``GrpcMessage`` and its call's flow id. Built by
``proxy.grpc`` (decoding happens when the record is built, off the data
path); turned into JSON by ``proxy.flow.grpcjson``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MESSAGE_KIND = "grpc_message"


@dataclass(frozen=True, slots=True)
class GrpcStatusInfo:
    code: int | None
    name: str | None
    message: str | None
    details: dict[str, Any] | None  # google.rpc.Status, decoded
    source: str  # "trailers", "headers" (trailers-only) or "proxy" (a rule's answer)
    raw: str | None = None  # grpc-status as sent, when it is not a number


@dataclass(frozen=True, slots=True)
class GrpcCall:
    protocol: str  # "grpc", "grpc-web" or "grpc-web-text"
    service: str
    method: str
    streaming: str  # "unary", "server", "client", "bidi"
    streaming_from: str  # "schema", or "counts" (guessed from the messages seen)
    requests: int  # messages client -> server
    responses: int
    request_encoding: str | None  # grpc-encoding of each side
    response_encoding: str | None
    status: GrpcStatusInfo | None
    schema: bool  # the method was in the schema
    errors: tuple[str, ...] = ()  # framing problems (a message cut short at the end...)
    rules: tuple[str, ...] = ()  # what gRPC rules did to its messages


@dataclass(frozen=True, slots=True)
class GrpcMessage:
    flow: str  # the call's flow id
    direction: str  # "request" (client -> server) or "response"
    index: int  # from 0, per direction
    service: str
    method: str
    size: int  # as on the wire (compressed, when it was)
    compressed: bool
    encoding: str | None
    truncated: bool  # longer than the cap: only its start was kept (and not decoded)
    raw: bytes  # the start of the (decompressed) message, up to the preview cap
    raw_size: int  # its decompressed size (or what was kept of it)
    type: str | None = None  # the message type, when decoded with the schema
    decoded: dict[str, Any] | None = None  # protobuf JSON mapping (with the schema)
    fields: list[dict[str, Any]] | None = None  # the schemaless tree (without it)
    error: str | None = None  # why it could not be decoded (as is, or with the schema)
    at: float = 0.0  # when it completed
