"""Issue 19's bar: 500 mixed flows recorded through a live proxy, then every one
answered byte-identical by --server-replay with nothing reaching the network.

One proxy process with three listeners records:

* 300 HTTP/1.1 flows through the forward listener (``test_replay_live``'s
  mix: JSON API GETs, POSTed JSON, binary bodies of 0 B to 5 MiB, chunked);
* 190 HTTP/2 flows (prior-knowledge h2c to a reverse listener for the same
  HTTP/1.1 service: JSON, binary up to 1 MiB, chunked upstream);
* one WebSocket session (aiohttp echo, through the forward listener);
* 9 gRPC calls (grpcio via a reverse h2c listener: unary, two failing ones,
  server, client and bidi streaming).

Then every upstream is stopped and a listener counting connections takes
each of their ports; the same proxy listeners with ``--server-replay`` answer
every request with the recorded status, fields and bytes (gRPC: the same
messages and status; the WebSocket: the same messages in order), the
counting listeners see no connection, and an unmatched request gets the 404
that names the closest recorded request and the difference.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from proxy.replay.reader import load
from tests.integration.test_replay_grpc import calls as grpc_calls
from tests.integration.test_replay_live import _semantic, fetch_all, mixed_requests
from tests.integration.test_replay_websocket import session as ws_session
from tests.support import grpcsvc
from tests.support.h2fetch import fetch_h2
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.replay_service import CountingListener, Service
from tests.support.upstreams import Upstreams
from tests.support.wsservers import start_app, ws_app

pytestmark = pytest.mark.slow


def h2_paths() -> list[str]:
    paths = [f"/api/items/{n}?via=h2" for n in range(100)]
    sizes = [0, 1, 777, 16_384, 65_537, 1_048_576]
    paths += [f"/bin/{sizes[n % len(sizes)] + n % 7}" for n in range(60)]
    paths += [f"/chunked/{(n * 9_973) % 300_000}" for n in range(30)]
    assert len(paths) == 190
    return paths


def grpc_more(gen: grpcsvc.Generated, target: str) -> list[bytes]:
    """Three more unary calls (with ``calls``'s six: 9 gRPC flows)."""
    import grpc

    channel = grpc.insecure_channel(target, [("grpc.enable_http_proxy", 0)])
    stub = gen.grpc.EchoStub(channel)
    try:
        return [
            stub.Unary(gen.pb2.Req(text=f"u{n}", count=n), timeout=20).SerializeToString()
            for n in range(3)
        ]
    finally:
        channel.close()


@contextmanager
def proxy(*args: str) -> Iterator[ProxyProcess]:
    p = start_proxy(*args, modes=3)
    try:
        yield p
    finally:
        p.stop()


def traffic(p: ProxyProcess, svc: int, ws_port: int, gen: grpcsvc.Generated) -> dict[str, Any]:
    forward = f"http://127.0.0.1:{p.addresses[0][1]}"
    h2_port, grpc_port = p.addresses[1][1], p.addresses[2][1]
    return {
        "h1": asyncio.run(fetch_all(forward, f"http://127.0.0.1:{svc}", mixed_requests())),
        "h2": fetch_h2(h2_port, f"127.0.0.1:{h2_port}", h2_paths()),
        "ws": asyncio.run(ws_session(forward, f"ws://127.0.0.1:{ws_port}/echo")),
        "grpc": grpc_calls(gen, f"127.0.0.1:{grpc_port}"),
        "grpc_more": grpc_more(gen, f"127.0.0.1:{grpc_port}"),
    }


def _same(got: list[Any], want: list[Any]) -> None:
    for (status, fields, body), (w_status, w_fields, w_body) in zip(got, want, strict=True):
        assert (status, body) == (w_status, w_body)  # byte-identical
        assert _semantic(fields) == _semantic(w_fields)


def test_500_mixed_flows_replayed_byte_identical_with_nothing_reaching_the_network(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    recording = tmp_path / "mixed.tap"
    service = Service()
    svc = service.port
    runner, ws_port = upstreams.call(start_app(ws_app()))
    gen = grpcsvc.build(tmp_path / "gen")
    grpc_server = grpcsvc.serve(gen)
    modes = ("--mode", "regular", "--mode", f"reverse:http://127.0.0.1:{svc}",
             "--mode", f"reverse:h2c://127.0.0.1:{grpc_server.port}")  # fmt: skip
    try:
        with proxy(*modes, "--save", str(recording)) as p:
            recorded = traffic(p, svc, ws_port, gen)
    finally:
        service.stop()
        upstreams.call(runner.cleanup())
        grpc_server.stop()
    assert all(status == 200 for status, _, _ in recorded["h1"] + recorded["h2"])
    assert max(len(body) for _, _, body in recorded["h1"]) == 5 * 1024 * 1024
    flows = load(recording).flows
    assert len(flows) == 500
    by_kind = {(f.protocol, f.kind) for f in flows}
    assert by_kind == {("http/1.1", "http"), ("h2", "http"), ("http/1.1", "websocket")}
    assert sum(1 for f in flows if f.protocol == "h2") == 190 + 9

    ports = (svc, ws_port, grpc_server.port)
    listeners = [CountingListener(port) for port in ports]  # where the upstreams were
    try:
        replay = ("--server-replay", str(recording), "--server-replay-speed", "0")
        with proxy(*modes, *replay) as p:
            start = time.monotonic()
            replayed = traffic(p, svc, ws_port, gen)
            took = time.monotonic() - start
            forward = f"http://127.0.0.1:{p.addresses[0][1]}"
            missed = asyncio.run(
                fetch_all(forward, f"http://127.0.0.1:{svc}", [("GET", "/api/items/1?x=2", None)])
            )
        assert [listener.count() for listener in listeners] == [0, 0, 0]
    finally:
        for listener in listeners:
            listener.close()
    _same(replayed["h1"], recorded["h1"])
    _same(replayed["h2"], recorded["h2"])
    assert replayed["ws"] == recorded["ws"]
    assert replayed["grpc"] == recorded["grpc"]  # messages byte for byte, each status
    assert replayed["grpc_more"] == recorded["grpc_more"]
    status, _, text = missed[0]
    assert status == 404, text
    assert b"closest recorded request: GET http://127.0.0.1:" in text
    assert b"--server-replay-ignore-params x" in text
    assert took < 120
