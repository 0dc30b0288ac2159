"""What gRPC decoding needs, per listener (passed in ``SessionConfig.grpc``)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.grpc.schema import SchemaRegistry

#: gRPC's own default limit on a received message (grpc-java, grpc-go, grpcio:
#: 4 MiB); a longer message is recorded as truncated, only its start kept.
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class GrpcSettings:
    enabled: bool = True  # observe gRPC calls (records per message)
    registry: SchemaRegistry | None = None  # --proto-path, --grpc-reflection
    max_message: int = DEFAULT_MAX_MESSAGE  # bytes of one message kept and decoded
