"""gRPC options: schemas for decoding (``--proto-path``, ``--grpc-reflection``)
and the per-message cap. See docs/grpc.md."""

from __future__ import annotations

import argparse
import sys

from proxy.config import ConfigError, ModeSpec
from proxy.grpc.protoload import load
from proxy.grpc.schema import SchemaError, SchemaRegistry
from proxy.grpc.settings import DEFAULT_MAX_MESSAGE, GrpcSettings
from proxy.sinks.rotate import size_arg


def add_grpc_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("gRPC (docs/grpc.md)")
    g.add_argument(
        "--proto-path",
        action="append",
        default=[],
        metavar="PATH",
        help="schemas to decode gRPC messages: a .proto file, a folder of them (compiled "
        "with grpcio-tools' protoc), or a FileDescriptorSet (.desc/.pb); repeatable",
    )
    g.add_argument(
        "--grpc-reflection",
        action="store_true",
        help="ask a reverse-mode upstream for its schemas by gRPC server reflection at start",
    )
    g.add_argument(
        "--grpc-max-message",
        type=size_arg,
        default=DEFAULT_MAX_MESSAGE,
        metavar="SIZE",
        help="bytes of one gRPC message kept and decoded (default 4M, gRPC's own limit); "
        "longer messages are recorded as truncated",
    )


def grpc_settings(args: argparse.Namespace, modes: list[ModeSpec]) -> GrpcSettings:
    """The listeners' gRPC settings; raises ``ConfigError`` for a bad schema, or
    when reflection was asked for and no reverse upstream answers it."""
    registry = reflected(modes) if args.grpc_reflection else None
    if args.proto_path:
        try:
            registry = load(list(args.proto_path), registry)
        except (SchemaError, OSError) as e:
            raise ConfigError(str(e)) from e
    return GrpcSettings(registry=registry, max_message=max(1, int(args.grpc_max_message)))


def reflected(modes: list[ModeSpec]) -> SchemaRegistry:
    """The schemas the reverse-mode upstreams offer by server reflection."""
    from proxy.cli.grpc_reflect import ReflectionError, fetch  # protobuf: only when asked

    registry = SchemaRegistry()
    upstreams = [m.upstream for m in modes if m.kind == "reverse" and m.upstream is not None]
    if not upstreams:
        raise ConfigError("--grpc-reflection asks a reverse-mode upstream; there is none")
    for up in upstreams:
        before = set(registry.services)
        try:
            fetch(up.host, up.port, up.scheme == "https", up.sni, registry=registry)
        except (ReflectionError, OSError) as e:
            raise ConfigError(f"--grpc-reflection: {up.host}:{up.port}: {e}") from e
        found = [s for s in registry.services if s not in before]
        print(
            f"tapproxy: {up.host}:{up.port} offered {len(found)} gRPC services by "
            f"reflection: {', '.join(found) or '-'}",
            file=sys.stderr,
        )
    return registry
