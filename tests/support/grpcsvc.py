"""A real grpcio service for the gRPC tests, generated in the test with grpcio-tools.

``build(tmp)`` writes ``demo.proto`` (package ``demo``, service ``Echo``
with one method of each streaming kind, plus a message with nested,
repeated, enum and bytes fields), compiles it with grpcio-tools' protoc to
Python modules and a FileDescriptorSet, and imports them. ``serve`` runs
the service on loopback (insecure or TLS); the behaviour is:

* ``Unary``: echoes ``text`` with ``count`` doubled; a request whose text
  is ``fail`` ends with ``INVALID_ARGUMENT`` and a detail message, one whose
  text is ``details`` with ``UNAVAILABLE`` and ``grpc-status-details-bin``,
  one whose text is ``metadata`` gets the ``x-`` metadata the server received;
* ``ServerStream``: ``count`` replies of ``size`` bytes of payload each;
* ``ClientStream``: one reply summing the requests' counts;
* ``Bidi``: one reply per request, as it comes.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

PROTO = """
syntax = "proto3";
package demo;

enum Colour { COLOUR_UNSET = 0; RED = 1; GREEN = 2; }

message Inner { string label = 1; repeated int32 values = 2; }

message Req {
  string text = 1;
  int32 count = 2;
  int32 size = 3;
  Inner inner = 4;
  Colour colour = 5;
  bytes blob = 6;
}

message Reply {
  string text = 1;
  int32 count = 2;
  bytes payload = 3;
  int32 index = 4;
}

service Echo {
  rpc Unary(Req) returns (Reply);
  rpc ServerStream(Req) returns (stream Reply);
  rpc ClientStream(stream Req) returns (Reply);
  rpc Bidi(stream Req) returns (stream Reply);
}
"""


@dataclass
class Generated:
    directory: Path  # demo.proto, demo.desc and the generated modules
    pb2: ModuleType
    grpc: ModuleType

    @property
    def proto(self) -> Path:
        return self.directory / "demo.proto"

    @property
    def desc(self) -> Path:
        return self.directory / "demo.desc"


def build(directory: Path, proto: str = PROTO, name: str = "demo") -> Generated:
    """``proto`` compiled as ``NAME.proto`` in ``directory``, its modules imported."""
    from grpc_tools import protoc

    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.proto").write_text(proto)
    code = protoc.main(
        [
            "protoc",
            f"-I{directory}",
            f"--python_out={directory}",
            f"--grpc_python_out={directory}",
            f"--descriptor_set_out={directory / f'{name}.desc'}",
            "--include_imports",
            str(directory / f"{name}.proto"),
        ]
    )
    assert code == 0, "protoc failed"
    sys.path.insert(0, str(directory))
    try:
        for module in (f"{name}_pb2", f"{name}_pb2_grpc"):
            sys.modules.pop(module, None)
        pb2 = importlib.import_module(f"{name}_pb2")
        grpc_mod = importlib.import_module(f"{name}_pb2_grpc")
    finally:
        sys.path.remove(str(directory))
    return Generated(directory, pb2, grpc_mod)


def servicer(gen: Generated) -> Any:
    import grpc

    pb2 = gen.pb2

    class Echo(gen.grpc.EchoServicer):  # type: ignore[name-defined,misc]
        def Unary(self, request: Any, context: Any) -> Any:
            if request.text == "fail":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "fail: asked to fail")
            if request.text == "details":  # a rich error: google.rpc.Status in the trailers
                context.abort_with_status(rich_status(pb2))
            metadata = dict(context.invocation_metadata())
            if request.text == "metadata":  # what the server got, for metadata rules
                seen = sorted(k for k in metadata if k.startswith("x-"))
                return pb2.Reply(text=",".join(f"{k}={metadata[k]}" for k in seen))
            return pb2.Reply(text=request.text, count=request.count * 2)

        def ServerStream(self, request: Any, context: Any) -> Iterator[Any]:
            payload = b"x" * request.size
            for i in range(request.count):
                yield pb2.Reply(text=request.text, index=i, payload=payload)

        def ClientStream(self, requests: Iterator[Any], context: Any) -> Any:
            total = 0
            texts = []
            for r in requests:
                total += r.count
                texts.append(r.text)
            return pb2.Reply(text=",".join(texts), count=total)

        def Bidi(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:
            for i, r in enumerate(requests):
                yield pb2.Reply(text=r.text.upper(), index=i, count=r.count)

    return Echo()


def rich_status(pb2: Any) -> Any:
    """UNAVAILABLE with ``grpc-status-details-bin``: a google.rpc.Status whose one
    detail is an Any holding a demo.Reply (written with the wire format by hand:
    google.rpc's modules are not a dependency)."""
    import grpc

    from proxy.grpc.wire import WireType, encode_field

    detail = encode_field(1, WireType.LEN, b"type.googleapis.com/demo.Reply") + encode_field(
        2, WireType.LEN, pb2.Reply(text="retry later", count=3).SerializeToString()
    )
    status = (
        encode_field(1, WireType.VARINT, 14)
        + encode_field(2, WireType.LEN, "dépôt down".encode())
        + encode_field(3, WireType.LEN, detail)
    )

    class _Status(grpc.Status):  # type: ignore[misc]
        code = grpc.StatusCode.UNAVAILABLE
        details = "dépôt down"
        trailing_metadata = (("grpc-status-details-bin", status),)

    return _Status()


@dataclass
class Server:
    server: Any
    port: int

    def stop(self) -> None:
        self.server.stop(grace=None)


def serve(gen: Generated, credentials: Any = None, compression: Any = None) -> Server:
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), compression=compression)
    gen.grpc.add_EchoServicer_to_server(servicer(gen), server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return Server(server, port)


class Gate:
    """A request iterator the test feeds one message at a time (bidi while open)."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Any]:
        while True:
            with self._cond:
                ok = self._cond.wait_for(lambda: self._items or self._closed, timeout=30)
                assert ok, "the test never fed the stream"
                if not self._items:
                    return
                item = self._items.pop(0)
            yield item
