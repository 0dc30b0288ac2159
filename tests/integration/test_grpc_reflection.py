"""--grpc-reflection: the schemas come from the upstream's gRPC server reflection.

The grpcio service with grpcio-reflection's real reflection service (v1alpha;
the proxy tries v1 first), behind ``reverse:h2c://``; without reflection on
the server, the proxy refuses to start and says why.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection

from tests.support import grpcsvc
from tests.support.proxyproc import start_proxy


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> grpcsvc.Generated:
    return grpcsvc.build(tmp_path_factory.mktemp("grpcgen"))


@pytest.fixture(scope="module")
def reflecting(gen: grpcsvc.Generated) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gen.grpc.add_EchoServicer_to_server(grpcsvc.servicer(gen), server)
    reflection.enable_server_reflection(["demo.Echo", reflection.SERVICE_NAME], server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


def test_calls_decoded_with_the_reflected_schema(
    gen: grpcsvc.Generated, reflecting: int, tmp_path: Path
) -> None:
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{reflecting}", "--grpc-reflection",
        flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    channel = grpc.insecure_channel(f"127.0.0.1:{p.port}")
    try:
        reply = gen.grpc.EchoStub(channel).Unary(gen.pb2.Req(text="r", count=2), timeout=10)
        deadline = time.monotonic() + 10
        recs: list[Any] = []
        while not any("grpc" in r for r in recs) and time.monotonic() < deadline:
            time.sleep(0.05)
            recs = p.records(0)
    finally:
        channel.close()
        p.stop()
    assert reply.count == 4
    assert "offered 1 gRPC services by reflection: demo.Echo" in p.stderr_text
    [call] = [r for r in recs if "grpc" in r]
    assert call["grpc"]["schema"] is True and call["grpc"]["streaming_from"] == "schema"
    messages = [r["grpc_message"] for r in recs if r["kind"] == "grpc_message"]
    assert {m["type"] for m in messages} == {"demo.Req", "demo.Reply"}
    assert next(m for m in messages if m["direction"] == "request")["decoded"] == {
        "text": "r", "count": 2,
    }  # fmt: skip


def test_no_reflection_on_the_server_stops_the_start(
    gen: grpcsvc.Generated, tmp_path: Path
) -> None:
    plain = grpcsvc.serve(gen)
    mode = f"reverse:h2c://127.0.0.1:{plain.port}"
    try:
        out = subprocess.run(
            [sys.executable, "-m", "proxy", "-p", "0", "--mode", mode, "--grpc-reflection"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        plain.stop()
    assert out.returncode != 0
    assert f"--grpc-reflection: 127.0.0.1:{plain.port}:" in out.stderr
