"""A 64 MiB server-streaming response through the proxy, with flat proxy memory.

64 replies of 1 MiB each from the grpcio service, through
``reverse:h2c://`` with ``--grpc-max-message 256k``: every message is
framed and recorded as it passes (truncated: only its start is kept), and
the proxy's peak resident size grows by far less than the stream: nothing
buffers it whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support import grpcsvc
from tests.support.proxyproc import start_proxy

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
COUNT = 64
GROWTH_LIMIT_KB = 24 * 1024  # the stream is 64 MiB


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> grpcsvc.Generated:
    return grpcsvc.build(tmp_path_factory.mktemp("grpcgen"))


@pytest.fixture(scope="module")
def server(gen: grpcsvc.Generated) -> Iterator[grpcsvc.Server]:
    s = grpcsvc.serve(gen)
    yield s
    s.stop()


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def test_64_mib_stream_with_flat_memory(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", "--proto-path", str(gen.proto),
        "--grpc-max-message", "256k", flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    options = [("grpc.max_receive_message_length", 2 * MIB)]
    channel = grpc.insecure_channel(f"127.0.0.1:{p.port}", options)
    try:
        stub = gen.grpc.EchoStub(channel)
        warm = list(stub.ServerStream(gen.pb2.Req(text="w", count=4, size=MIB), timeout=30))
        assert len(warm) == 4
        time.sleep(0.5)  # the warm-up's records are written (the writer thread's buffers)
        before = status_kb(p.proc.pid, "VmHWM")
        total = 0
        for i, reply in enumerate(
            stub.ServerStream(gen.pb2.Req(text="big", count=COUNT, size=MIB), timeout=120)
        ):
            assert reply.index == i
            total += len(reply.payload)
        peak = status_kb(p.proc.pid, "VmHWM")
        deadline = time.monotonic() + 20
        while True:
            recs = p.records(0)
            calls = [r for r in recs if "grpc" in r]
            if len(calls) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        channel.close()
        p.stop()
    assert total == COUNT * MIB
    print(f"VmHWM {before} kB before, {peak} kB after the stream")
    assert peak - before < GROWTH_LIMIT_KB, f"VmHWM grew {peak - before} kB over the stream"
    big = next(r for r in calls if r["grpc"]["messages"]["response"] == COUNT)
    assert big["grpc"]["status"]["name"] == "OK"
    replies = [
        r["grpc_message"] for r in recs
        if r["kind"] == "grpc_message" and r["grpc_message"]["flow"] == big["id"]
        and r["grpc_message"]["direction"] == "response"
    ]  # fmt: skip
    assert len(replies) == COUNT
    assert all(m["truncated"] and m["size"] > MIB and "decoded" not in m for m in replies)
