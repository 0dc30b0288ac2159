"""Schemas for gRPC calls: a descriptor pool, looked up by ``/pkg.Service/Method``.

The ``protobuf`` package does the decoding (its descriptor pool, message
factory and ``json_format``), so field names, enums, ``oneof``s, maps and
well-known types come out as protobuf's own JSON mapping
(https://protobuf.dev/programming-guides/json/). Files arrive as
``FileDescriptorProto``s (``proxy.grpc.protoload`` from ``--proto-path``,
``proxy.grpc.reflection`` from a server); one that does not fit the pool
(a duplicate name, a missing import) is reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # protobuf itself loads with the first schema: ~8 MB a process spares
    from google.protobuf import descriptor_pb2
    from google.protobuf.descriptor import Descriptor
    from google.protobuf.message import Message


class SchemaError(ValueError):
    """A message did not parse as the type its method says."""


@dataclass(frozen=True, slots=True)
class MethodSchema:
    service: str
    method: str
    request: Descriptor
    response: Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def streaming(self) -> str:
        """unary, server, client or bidi."""
        if self.client_streaming and self.server_streaming:
            return "bidi"
        if self.client_streaming:
            return "client"
        return "server" if self.server_streaming else "unary"


class SchemaRegistry:
    """The message and service descriptors the user gave (or a server offered)."""

    def __init__(self) -> None:
        from google.protobuf import descriptor_pool

        self.pool = descriptor_pool.DescriptorPool()
        self.files: list[str] = []
        self.problems: list[str] = []
        self._methods: dict[str, MethodSchema | None] = {}

    def add_files(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        """Add files in dependency order (as protoc's --include_imports writes them)."""
        known = set(self.files)
        for fdp in files:
            if fdp.name in known:
                continue
            try:
                self.pool.Add(fdp)
            except (TypeError, ValueError, KeyError) as e:
                self.problems.append(f"{fdp.name}: {e}")
                continue
            known.add(fdp.name)
            self.files.append(fdp.name)
        self._methods.clear()

    def add_set(self, data: bytes) -> None:
        """A serialized ``FileDescriptorSet`` (protoc --descriptor_set_out)."""
        from google.protobuf import descriptor_pb2
        from google.protobuf.message import DecodeError

        fds = descriptor_pb2.FileDescriptorSet()
        try:
            fds.ParseFromString(data)
        except DecodeError as e:
            raise SchemaError(f"not a FileDescriptorSet: {e}") from None
        self.add_files(list(fds.file))

    @property
    def services(self) -> list[str]:
        names: list[str] = []
        for name in self.files:
            found = self.pool.FindFileByName(name).services_by_name.values()
            names.extend(s.full_name for s in found)
        return names

    def method(self, path: str) -> MethodSchema | None:
        """The method of a request path ``/pkg.Service/Method``, if the schema has it."""
        if path in self._methods:
            return self._methods[path]
        found = self._find(path)
        if len(self._methods) < 10_000:  # paths come from clients: bounded
            self._methods[path] = found
        return found

    def _find(self, path: str) -> MethodSchema | None:
        service, method = split_path(path)
        if not service or not method:
            return None
        try:
            sd = self.pool.FindServiceByName(service)
        except KeyError:
            return None
        md = sd.methods_by_name.get(method)
        if md is None:
            return None
        return MethodSchema(
            service,
            method,
            md.input_type,
            md.output_type,
            md.client_streaming,
            md.server_streaming,
        )

    def decode(self, data: bytes, kind: Descriptor) -> dict[str, Any]:
        """``data`` as ``kind``, in protobuf's JSON mapping (field names as in the .proto)."""
        from google.protobuf import json_format

        message = self.message(data, kind)
        out: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
        return out

    def message(self, data: bytes, kind: Descriptor) -> Message:
        from google.protobuf import message_factory
        from google.protobuf.message import DecodeError

        cls = message_factory.GetMessageClass(kind)
        message: Message = cls()
        try:
            message.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError) as e:  # RuntimeError: recursion limit
            raise SchemaError(f"not a {kind.full_name}: {e}") from None
        return message

    def encode(self, value: dict[str, Any], kind: Descriptor) -> bytes:
        """Protobuf JSON back to wire bytes (rules that replace fields)."""
        from google.protobuf import json_format, message_factory

        cls = message_factory.GetMessageClass(kind)
        message: Message = cls()
        try:
            json_format.ParseDict(value, message)
        except json_format.ParseError as e:
            raise SchemaError(f"cannot encode {kind.full_name}: {e}") from None
        data: bytes = message.SerializeToString()
        return data


def split_path(path: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` (a query, if any, dropped) as (service, method)."""
    path = path.split("?", 1)[0]
    parts = path.strip("/").split("/")
    if len(parts) != 2:
        return "", ""
    return parts[0], parts[1]
