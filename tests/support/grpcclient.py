"""A grpcio client in its own process, so the environment configures it as a user's would.

    python -m tests.support.grpcclient GEN_DIR TARGET [--tls] [--compress]

``grpc_proxy`` and ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` are read by gRPC's
core from the environment the test gives the process. Runs the four calls
of ``tests.support.grpcsvc`` and prints one JSON object with what it got
(or the status code and details of a failed call).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc


def run(gen_dir: Path, target: str, tls: bool, compress: bool) -> dict[str, Any]:
    sys.path.insert(0, str(gen_dir))
    import demo_pb2 as pb2
    import demo_pb2_grpc as pb2_grpc

    options = [("grpc.enable_http_proxy", 1)]
    compression = grpc.Compression.Gzip if compress else None
    if tls:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), options, compression)
    else:
        channel = grpc.insecure_channel(target, options, compression)
    stub = pb2_grpc.EchoStub(channel)
    out: dict[str, Any] = {}

    def call(name: str, fn: Any) -> None:
        try:
            out[name] = fn()
        except grpc.RpcError as e:
            out[name] = {"code": e.code().name, "details": e.details()}

    def reply(r: Any) -> dict[str, Any]:
        return {"text": r.text, "count": r.count, "index": r.index, "payload": len(r.payload)}

    req = pb2.Req(text="hello", count=21, inner=pb2.Inner(label="in", values=[1, 2, 300]))
    call("unary", lambda: reply(stub.Unary(req, timeout=20)))
    call(
        "server",
        lambda: [
            reply(r) for r in stub.ServerStream(pb2.Req(text="s", count=3, size=10), timeout=20)
        ],
    )
    reqs = [pb2.Req(text="a", count=1), pb2.Req(text="b", count=2)]
    call("client", lambda: reply(stub.ClientStream(iter(reqs), timeout=20)))
    call("bidi", lambda: [reply(r) for r in stub.Bidi(iter(reqs), timeout=20)])
    channel.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("gen_dir", type=Path)
    p.add_argument("target")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--compress", action="store_true")
    a = p.parse_args()
    print(json.dumps(run(a.gen_dir, a.target, a.tls, a.compress)))


if __name__ == "__main__":
    main()
