"""gRPC calls answered from a recording by server replay, for a real grpcio client.

The grpcio service (``tests.support.grpcsvc``) is recorded through
``--mode reverse:h2c`` with ``--save``; then the service is stopped, a
listener counting connections takes its port, and the same calls through
``--server-replay`` get the recorded messages byte for byte with their
status (``grpc-status`` travels in HTTP/2 trailers, which the reply now
carries: ``Reply.trailers``), and nothing reaches the network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from proxy.replay.reader import load
from tests.support import grpcsvc
from tests.support.proxyproc import running_proxy
from tests.support.replay_service import CountingListener

Outcome = tuple[str, str, list[bytes]]  # status name, details, serialized replies


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> grpcsvc.Generated:
    return grpcsvc.build(tmp_path_factory.mktemp("grpcgen"))


def calls(gen: grpcsvc.Generated, target: str) -> dict[str, Outcome]:
    """Unary (ok and failing), server streaming, client streaming and bidi calls."""
    pb2 = gen.pb2
    channel = grpc.insecure_channel(target, [("grpc.enable_http_proxy", 0)])
    stub = gen.grpc.EchoStub(channel)
    reqs = [pb2.Req(text="a", count=1), pb2.Req(text="b", count=2)]
    todo: dict[str, Callable[[], Any]] = {
        "unary": lambda: [stub.Unary(pb2.Req(text="hello", count=21), timeout=20)],
        "fail": lambda: [stub.Unary(pb2.Req(text="fail"), timeout=20)],
        "details": lambda: [stub.Unary(pb2.Req(text="details"), timeout=20)],
        "server": lambda: list(
            stub.ServerStream(pb2.Req(text="s", count=5, size=3000), timeout=20)
        ),
        "client": lambda: [stub.ClientStream(iter(reqs), timeout=20)],
        "bidi": lambda: list(stub.Bidi(iter(reqs), timeout=20)),
    }
    out: dict[str, Outcome] = {}
    try:
        for name, fn in todo.items():
            try:
                out[name] = ("OK", "", [r.SerializeToString() for r in fn()])
            except grpc.RpcError as e:
                out[name] = (e.code().name, e.details() or "", [])
    finally:
        channel.close()
    return out


def test_grpc_calls_replayed_from_a_recording(gen: grpcsvc.Generated, tmp_path: Path) -> None:
    recording = tmp_path / "grpc.tap"
    server = grpcsvc.serve(gen)
    port = server.port
    try:
        mode = f"reverse:h2c://127.0.0.1:{port}"
        with running_proxy("--mode", mode, "--save", str(recording)) as p:
            recorded = calls(gen, f"127.0.0.1:{p.port}")
    finally:
        server.stop()
    assert recorded["unary"][0] == "OK" and len(recorded["server"][2]) == 5
    assert recorded["fail"][:2] == ("INVALID_ARGUMENT", "fail: asked to fail")
    assert recorded["details"][0] == "UNAVAILABLE"
    flows = load(recording).flows
    assert len(flows) == 6 and all(f.protocol == "h2" for f in flows)
    # grpc-status: in the trailers after messages, in the head of a trailers-only error
    trailers = [dict(f.response.trailers) for f in flows if f.response and f.response.trailers]
    assert len(trailers) == 4 and {t[b"grpc-status"] for t in trailers} == {b"0"}
    heads = [dict(f.response.headers) for f in flows if f.response and not f.response.trailers]
    assert {h[b"grpc-status"] for h in heads} == {b"3", b"14"}

    listener = CountingListener(port)  # where the service was
    try:
        args = ("--mode", mode, "--server-replay", str(recording), "--server-replay-speed", "0")
        with running_proxy(*args) as p:
            replayed = calls(gen, f"127.0.0.1:{p.port}")
            assert listener.count() == 0
    finally:
        listener.close()
    assert replayed == recorded  # each reply byte for byte, each status and its message
