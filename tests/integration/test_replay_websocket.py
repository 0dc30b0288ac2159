"""A WebSocket session recorded with --save, then answered by --server-replay.

aiohttp's client talks to aiohttp's echo server (permessage-deflate
offered and accepted) through the proxy with ``--save``: the recording keeps
the connection's messages, whole and inflated, in order. The server is
stopped, a listener counting connections takes its port, and the same client
session through ``--server-replay`` gets a ``101`` (with an accept value made
for its own key, no extension) and the recorded server messages byte for
byte, each after the client message it followed; nothing reaches the network.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from proxy.replay.reader import load
from tests.support.proxyproc import running_proxy
from tests.support.replay_service import CountingListener
from tests.support.upstreams import Upstreams
from tests.support.wsservers import start_app, ws_app

SENT: list[str | bytes] = ["hello", b"\x00\x01\x02 binary", "x" * 70_000, bytes(range(256)) * 400]
Got = list[tuple[aiohttp.WSMsgType, str | bytes]]


async def session(proxy: str, url: str) -> tuple[int, Got]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as s,
        s.ws_connect(url, proxy=proxy, max_msg_size=0) as ws,
    ):
        got: Got = []
        for m in SENT:
            await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
            msg = await ws.receive(timeout=10)
            got.append((msg.type, msg.data))
        await ws.close()
        return ws.close_code or 0, got


def test_websocket_session_replayed_from_the_recording(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    recording = tmp_path / "ws.tap"
    runner, port = upstreams.call(start_app(ws_app()))
    url = f"ws://127.0.0.1:{port}/echo"
    try:
        with running_proxy("--save", str(recording)) as p:
            code, recorded = asyncio.run(session(p.url, url))
    finally:
        upstreams.call(runner.cleanup())
    assert code == 1000 and [data for _, data in recorded] == SENT
    (flow,) = [f for f in load(recording).flows if f.kind == "websocket"]
    assert [m.from_client for m in flow.messages] == [True, False] * 4
    assert [m.data for m in flow.messages[1::2]] == [
        m.encode() if isinstance(m, str) else m for m in SENT
    ]

    listener = CountingListener(port)
    try:
        args = ("--server-replay", str(recording), "--server-replay-speed", "0")
        with running_proxy(*args) as p:
            code, replayed = asyncio.run(session(p.url, url))
            assert listener.count() == 0
    finally:
        listener.close()
    assert code == 1000
    assert replayed == recorded  # each message's type and payload, in order
