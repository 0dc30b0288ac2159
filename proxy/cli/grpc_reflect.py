"""``--grpc-reflection``: ask a reverse-mode upstream for its schemas, once, at start.

gRPC server reflection (grpc/reflection/v1/reflection.proto, and the older
v1alpha) is a bidirectional stream on
``/grpc.reflection.v1.ServerReflection/ServerReflectionInfo``: we send
``list_services`` (field 7), then ``file_containing_symbol`` (4) for each
service and ``file_by_filename`` (3) for any dependency still missing, and
read ``FileDescriptorResponse``s (field 4: repeated serialized
``FileDescriptorProto``, field 1) or an ``ErrorResponse`` (7). The
messages are small and fixed, so they are written and read with
``proxy.grpc.wire``. The call is made over a blocking socket with the ``h2``
library (h2c, or TLS with ALPN h2), before the proxy serves anything.
"""

from __future__ import annotations

import socket
import ssl
import time

from google.protobuf import descriptor_pb2
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, StreamEnded, StreamReset, TrailersReceived

from proxy.grpc.framing import Deframer
from proxy.grpc.schema import SchemaRegistry
from proxy.grpc.wire import WireError, WireType, encode_field, fields

PATHS = (
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)
MAX_FILES = 1000


class ReflectionError(Exception):
    """The server did not answer reflection (the message says why)."""


class _Call:
    """One ServerReflectionInfo stream: send a request message, read one reply."""

    def __init__(self, sock: socket.socket, authority: str, scheme: str, path: str, timeout: float):
        self.sock = sock
        self.deadline = time.monotonic() + timeout
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            self.stream,
            [
                (b":method", b"POST"), (b":scheme", scheme.encode()),
                (b":authority", authority.encode()), (b":path", path.encode()),
                (b"content-type", b"application/grpc"), (b"te", b"trailers"),
            ],
        )  # fmt: skip
        self.frames = Deframer(64 * 1024 * 1024)
        self.replies: list[bytes] = []
        self.ended = False
        self.status: bytes | None = None
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def ask(self, request: bytes) -> bytes:
        body = request
        self.h2.send_data(self.stream, b"\x00" + len(body).to_bytes(4, "big") + body)
        self._flush()
        while not self.replies:
            if self.ended:
                raise ReflectionError(f"the server ended the stream (grpc-status {self.status!r})")
            self._read()
        return self.replies.pop(0)

    def _read(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ReflectionError("no answer in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ReflectionError("the server closed the connection")
        for event in self.h2.receive_data(data):
            if isinstance(event, DataReceived) and event.stream_id == self.stream:
                self.h2.acknowledge_received_data(event.flow_controlled_length, self.stream)
                self.replies += [f.data for f in self.frames.feed(event.data)]
            elif isinstance(event, TrailersReceived):
                self.status = dict(event.headers).get(b"grpc-status")
            elif isinstance(event, StreamEnded | StreamReset) and event.stream_id == self.stream:
                self.ended = True
        self._flush()

    def close(self) -> None:
        self.h2.end_stream(self.stream)
        self._flush()


def _connect(host: str, port: int, tls: bool, sni: str | None, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    if not tls:
        return sock
    context = ssl.create_default_context()
    context.set_alpn_protocols(["h2"])
    return context.wrap_socket(sock, server_hostname=sni or host)


def _reply_files(reply: bytes) -> list[bytes]:
    """The serialized FileDescriptorProtos of a reply (an error reply raises)."""
    out: list[bytes] = []
    for f in fields(reply):
        if f.wire != WireType.LEN:
            continue
        assert isinstance(f.value, tuple)
        inner = reply[f.value[0] : f.value[1]]
        if f.number == 7:
            raise ReflectionError("the server answered with an error: " + repr(inner[:200]))
        if f.number == 4:
            for g in fields(inner):
                if g.number == 1 and isinstance(g.value, tuple):
                    out.append(inner[g.value[0] : g.value[1]])
    return out


def _services(reply: bytes) -> list[str]:
    names: list[str] = []
    for f in fields(reply):
        if f.number == 6 and isinstance(f.value, tuple):
            listing = reply[f.value[0] : f.value[1]]
            for s in fields(listing):
                if s.number == 1 and isinstance(s.value, tuple):
                    service = listing[s.value[0] : s.value[1]]
                    names += [
                        service[n.value[0] : n.value[1]].decode()
                        for n in fields(service)
                        if n.number == 1 and isinstance(n.value, tuple)
                    ]
    return names


def fetch(
    host: str,
    port: int,
    tls: bool = False,
    sni: str | None = None,
    timeout: float = 10.0,
    registry: SchemaRegistry | None = None,
) -> SchemaRegistry:
    """The server's services and their files, added to ``registry`` (or a new one)."""
    registry = registry if registry is not None else SchemaRegistry()
    errors = []
    for path in PATHS:
        sock = _connect(host, port, tls, sni, timeout)
        try:
            call = _Call(sock, f"{host}:{port}", "https" if tls else "http", path, timeout)
            _fetch(call, registry)
            return registry
        except (ReflectionError, WireError, OSError) as e:
            errors.append(f"{path}: {e}")
        finally:
            sock.close()
    raise ReflectionError("; ".join(errors))


def _fetch(call: _Call, registry: SchemaRegistry) -> None:
    services = _services(call.ask(encode_field(7, WireType.LEN, b"")))
    protos: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def take(reply: bytes) -> None:
        for raw in _reply_files(reply):
            fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
            protos.setdefault(fdp.name, fdp)

    for name in services:
        if not name.startswith("grpc.reflection."):
            take(call.ask(encode_field(4, WireType.LEN, name.encode())))
    missing = _missing(protos)
    while missing and len(protos) < MAX_FILES:
        for name in missing:
            take(call.ask(encode_field(3, WireType.LEN, name.encode())))
        still = _missing(protos)
        if still == missing:
            break
        missing = still
    call.close()
    registry.add_files(_ordered(protos))


def _missing(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> list[str]:
    return sorted({d for p in protos.values() for d in p.dependency if d not in protos})


def _ordered(
    protos: dict[str, descriptor_pb2.FileDescriptorProto],
) -> list[descriptor_pb2.FileDescriptorProto]:
    """Dependencies first (the pool needs them added before their users)."""
    out: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def visit(name: str, depth: int) -> None:
        if name in seen or name not in protos or depth > 100:
            return
        seen.add(name)
        for dep in protos[name].dependency:
            visit(dep, depth + 1)
        out.append(protos[name])

    for name in sorted(protos):
        visit(name, 0)
    return out
