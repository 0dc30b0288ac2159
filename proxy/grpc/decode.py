"""One gRPC message, decoded: inflated, then with its method's schema, else schemalessly.

Runs when the message's record is built (the sinks' slices, ``tapproxy
analyze``), never on the data path. Whatever the bytes, the result is a
``GrpcMessage``: a failure is its ``error``, not an exception. The
``protobuf`` package is third-party code parsing hostile bytes, so its
failures of any kind are caught and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.flow.grpcinfo import GrpcMessage
from proxy.grpc import schemaless
from proxy.grpc.compression import CompressionError, inflate
from proxy.grpc.framing import Frame
from proxy.grpc.schema import SchemaRegistry, split_path
from proxy.grpc.wire import WireError


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Where a message belongs: its call and direction."""

    flow: str
    path: str  # /pkg.Service/Method
    request: bool
    encoding: str | None  # grpc-encoding of its side


def decode_frame(
    frame: Frame,
    index: int,
    where: MessageContext,
    registry: SchemaRegistry | None,
    max_message: int,
    preview: int,
    at: float = 0.0,
) -> GrpcMessage:
    service, method = split_path(where.path)
    data, error, cut = frame.data, None, frame.truncated
    if frame.compressed and not cut:
        try:
            data, cut = inflate(frame.data, where.encoding or "", max_message)
        except CompressionError as e:
            error = str(e)
    kind, decoded, tree = None, None, None
    if cut and error is None:
        error = f"longer than {max_message} bytes: only its start is kept, not decoded"
    elif error is None:
        kind, decoded, error = _with_schema(data, where, registry)
        if decoded is None:
            tree, error = _schemaless(data, error)
    return GrpcMessage(
        flow=where.flow,
        direction="request" if where.request else "response",
        index=index,
        service=service,
        method=method,
        size=frame.size,
        compressed=frame.compressed,
        encoding=where.encoding if frame.compressed else None,
        truncated=cut,
        raw=data[:preview],
        raw_size=len(data),
        type=kind,
        decoded=decoded,
        fields=tree,
        error=error,
        at=at,
    )


def _with_schema(
    data: bytes, where: MessageContext, registry: SchemaRegistry | None
) -> tuple[str | None, dict[str, object] | None, str | None]:
    if registry is None:
        return None, None, None
    try:
        method = registry.method(where.path)
        if method is None:
            return None, None, None
        desc = method.request if where.request else method.response
        return desc.full_name, registry.decode(data, desc), None
    except Exception as e:  # third-party parsing of hostile bytes: see the module doc
        return None, None, f"schema: {e}"


def _schemaless(
    data: bytes, error: str | None
) -> tuple[list[dict[str, object]] | None, str | None]:
    try:
        return schemaless.decode(data), error
    except WireError as e:
        words = f"not a protobuf message: {e}"
        return None, words if error is None else f"{error}; {words}"
