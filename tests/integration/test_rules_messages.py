"""The message rule examples, verbatim, through a live proxy: what a real client sees.

``rules/examples/sse.yaml`` against an upstream that sends quotes, heartbeats
and a staging notice as server-sent events; ``rules/examples/websocket.yaml``
against a WebSocket echo at ``/live`` reached as ``live.example.test`` (the
test's route rule sends every request to the local upstream, Host kept).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from tests.integration.rules_support import rules_dir
from tests.support.proxyproc import running_proxy
from tests.support.upstreams import Upstreams
from tests.support.wsservers import start_app

EVENTS = [
    ("quote", json.dumps({"symbol": "ACME", "price": 12})),
    ("heartbeat", "beat"),
    ("quote", json.dumps({"symbol": "OTHER", "price": 7})),
    ("notice", "deployed to staging"),
]


async def _events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i, (kind, data) in enumerate(EVENTS):
        await response.write(f"id: {i}\nevent: {kind}\ndata: {data}\n\n".encode())
    return response


async def _live(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


@pytest.fixture(scope="module")
def origin(upstreams: Upstreams) -> Iterator[int]:
    app = web.Application()
    app.router.add_get("/events", _events)
    app.router.add_get("/live", _live)
    runner, port = upstreams.call(start_app(app))
    yield port
    upstreams.call(runner.cleanup())


def test_sse_example(origin: int, tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, "examples/sse.yaml", origin=origin, keep_host=True)
    with (
        running_proxy("--rules", str(folder)) as p,
        httpx.Client(proxy=p.url, timeout=10) as c,
    ):
        body = c.get("http://feed.example.test/events").content.decode()
    events = [e for e in body.split("\n\n") if e]
    assert events == [
        'id: 0\nevent: quote\ndata: {"symbol":"ACME","price":0}',  # calm-prices (re-encoded)
        'id: 2\nevent: quote\ndata: {"symbol": "OTHER", "price": 7}',  # no-heartbeats
        "id: 3\nevent: notice\ndata: deployed to production",  # rename
    ]


def test_websocket_example(origin: int, tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, "examples/websocket.yaml", origin=origin, keep_host=True)
    got: list[Any] = []

    async def run(proxy_url: str) -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect("ws://live.example.test/live", proxy=proxy_url) as w,
        ):

            async def recv() -> Any:
                message = await asyncio.wait_for(w.receive(), 10)
                got.append(message.data)
                return message.data

            assert await recv() == '{"op":"heartbeat"}'  # heartbeat: injected at open, echoed
            await w.send_str('{"token":"s3cret"}')
            assert await recv() == '{"token":"REDACTED"}'  # hide-tokens
            await w.send_str('{"type": "quote", "price": 3}')
            assert json.loads(await recv()) == {"type": "quote", "price": 0}  # free-prices
            await w.send_str('{"telemetry": 1}')  # no-telemetry: dropped, no echo
            await w.send_str('{"op":"ping"}')
            assert await recv() == '{"op":"pong","from":"tapproxy"}'  # answer-ping
            assert await recv() == '{"op":"ping"}'  # and the server's echo
            await w.send_str('{"role": "admin"}')
            closing = await asyncio.wait_for(w.receive(), 10)  # kick-on-admin
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert w.close_code == 4003

    with running_proxy("--rules", str(folder)) as p:
        asyncio.run(run(p.url))
