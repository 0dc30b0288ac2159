"""Addon message hooks through a live proxy: ``websocket_message`` (sync) and
``grpc_message`` (async) see each message with its flow, in order, and one that
raises leaves the messages flowing; ``tcp_message`` sees each read of a TCP
relay (observe-only hooks, docs/addons.md)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from tests.support import grpcsvc
from tests.support.proxyproc import running_proxy
from tests.support.upstreams import Upstreams
from tests.support.wsservers import start_app, ws_app

ADDON = """
import asyncio, json, os

OUT = os.environ["TAPPROXY_TEST_OUT"]

def _write(kind, flow, m, extra=None):
    with open(OUT, "a") as f:
        f.write(json.dumps({"hook": kind, "flow": flow.id, "url": flow.request.url,
                            "direction": m.direction, "from_client": m.from_client,
                            "index": m.index, "content": m.content.hex(), "size": m.size,
                            "truncated": m.truncated, "text": m.text, **(extra or {})}) + "\\n")

def websocket_message(flow, message):
    _write("websocket_message", flow, message)
    if message.text == "boom":
        raise RuntimeError("an addon bug")

async def grpc_message(flow, message):
    await asyncio.sleep(0)
    _write("grpc_message", flow, message, {"service": message.service, "method": message.method})
"""


def _seen(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


async def _ws(proxy: str, url: str, sent: list[str | bytes]) -> list[str | bytes]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s,
        s.ws_connect(url, proxy=proxy) as ws,
    ):
        got: list[str | bytes] = []
        for m in sent:
            await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
            got.append((await ws.receive(timeout=10)).data)
        return got


def test_websocket_message_hook_sees_each_message(
    upstreams: Upstreams, tmp_path: Path, monkeypatch: Any
) -> None:
    out = tmp_path / "seen.jsonl"
    monkeypatch.setenv("TAPPROXY_TEST_OUT", str(out))
    addon = tmp_path / "watch.py"
    addon.write_text(ADDON)
    runner, port = upstreams.call(start_app(ws_app()))
    sent: list[str | bytes] = ["hello", b"\x00\xff", "boom", "after"]
    try:
        with running_proxy("-s", str(addon)) as p:
            got = asyncio.run(_ws(p.url, f"ws://127.0.0.1:{port}/echo", sent))
            seen = _seen(out, 8)
            proxy = p  # its stderr is read to the end once it stopped
    finally:
        upstreams.call(runner.cleanup())
    assert got == sent  # the failing hook changed nothing
    assert len(seen) == 8 and {s["hook"] for s in seen} == {"websocket_message"}
    assert {s["url"] for s in seen} == {f"http://127.0.0.1:{port}/echo"}
    assert len({s["flow"] for s in seen}) == 1
    up = [s for s in seen if s["from_client"]]
    down = [s for s in seen if not s["from_client"]]
    expected = [m.encode() if isinstance(m, str) else m for m in sent]
    assert [bytes.fromhex(s["content"]) for s in up] == expected
    assert [bytes.fromhex(s["content"]) for s in down] == expected
    assert [s["index"] for s in up] == [0, 1, 2, 3] and up[1]["text"] is None
    assert {s["direction"] for s in up} == {"upstream"} and not any(s["truncated"] for s in up)
    assert proxy.stderr_text.count("failed in websocket_message()") == 1


def test_grpc_message_hook_sees_requests_and_replies(tmp_path: Path, monkeypatch: Any) -> None:
    out = tmp_path / "seen.jsonl"
    monkeypatch.setenv("TAPPROXY_TEST_OUT", str(out))
    addon = tmp_path / "watch.py"
    addon.write_text(ADDON)
    gen = grpcsvc.build(tmp_path / "gen")
    server = grpcsvc.serve(gen)
    try:
        with running_proxy(
            "-s", str(addon), "--mode", f"reverse:h2c://127.0.0.1:{server.port}"
        ) as p:
            channel = grpc.insecure_channel(f"127.0.0.1:{p.port}", [("grpc.enable_http_proxy", 0)])
            req = gen.pb2.Req(text="s", count=3, size=5)
            replies = list(gen.grpc.EchoStub(channel).ServerStream(req, timeout=20))
            channel.close()
            seen = _seen(out, 4)
    finally:
        server.stop()
    assert len(replies) == 3
    assert [(s["from_client"], s["index"]) for s in seen] == [
        (True, 0),
        (False, 0),
        (False, 1),
        (False, 2),
    ]
    assert {(s["service"], s["method"]) for s in seen} == {("demo.Echo", "ServerStream")}
    assert bytes.fromhex(seen[0]["content"]) == req.SerializeToString()
    assert [bytes.fromhex(s["content"]) for s in seen[1:]] == [
        r.SerializeToString() for r in replies
    ]
    assert {s["url"] for s in seen} == {f"http://127.0.0.1:{server.port}/demo.Echo/ServerStream"}


TCP_ADDON = """
import json, os

def tcp_message(flow, message):
    with open(os.environ["TAPPROXY_TEST_OUT"], "a") as f:
        f.write(json.dumps({"flow": flow.id, "url": flow.request.url, "up": message.from_client,
                            "index": message.index, "data": message.content.hex()}) + "\\n")
"""


def _tcp_echo() -> tuple[socket.socket, threading.Thread]:
    """A TCP server that answers each read with the same bytes upper-cased."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return srv, thread


@pytest.mark.parametrize("via", ["tcp-mode", "connect"])
def test_tcp_message_hook_sees_each_read_of_a_tcp_relay(
    via: str, tmp_path: Path, monkeypatch: Any
) -> None:
    out = tmp_path / "seen.jsonl"
    monkeypatch.setenv("TAPPROXY_TEST_OUT", str(out))
    addon = tmp_path / "tcp.py"
    addon.write_text(TCP_ADDON)
    srv, thread = _tcp_echo()
    port = srv.getsockname()[1]
    sent = [b"hello ", b"tcp ", b"relay"]
    try:
        mode = f"tcp:127.0.0.1:{port}" if via == "tcp-mode" else "regular"
        with running_proxy("-s", str(addon), "--mode", mode) as p:
            with socket.create_connection(("127.0.0.1", p.port), timeout=10) as c:
                if via == "connect":  # a CONNECT tunnel of the forward listener
                    c.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += c.recv(1)
                    assert head.startswith(b"HTTP/1.1 200")
                got = b""
                for piece in sent:
                    c.sendall(piece)
                    while len(got) < sum(map(len, sent[: sent.index(piece) + 1])):
                        got += c.recv(65536)
            seen = _seen(out, 6)
    finally:
        srv.close()
        thread.join(10)
    assert got == b"HELLO TCP RELAY"
    up = [s for s in seen if s["up"]]
    down = [s for s in seen if not s["up"]]
    assert b"".join(bytes.fromhex(s["data"]) for s in up) == b"".join(sent)
    assert b"".join(bytes.fromhex(s["data"]) for s in down) == got
    assert [s["index"] for s in up] == list(range(len(up)))
    if via == "tcp-mode":
        assert {s["url"] for s in seen} == {f"tcp://127.0.0.1:{port}"}
    assert len({s["flow"] for s in seen}) == 1
