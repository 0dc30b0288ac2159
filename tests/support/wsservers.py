"""WebSocket upstreams for the live tests: aiohttp and the ``websockets`` package.

* ``/echo`` (aiohttp): every message back as it came (text or binary), with
  permessage-deflate when the client offers it; a text ``close:CODE`` makes
  the server close with that code;
* ``/stream?count=N&size=S`` (aiohttp): N binary messages of S bytes, then a
  close (the 1 GiB test);
* ``/sse?count=N&every=T`` (aiohttp): ``text/event-stream``, one event every T
  seconds;
* a ``websockets`` echo server (fragmented messages come back fragmented).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiohttp import WSMsgType, web
from websockets.asyncio.server import Server, ServerConnection, serve


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=True, max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            if msg.data.startswith("close:"):
                await ws.close(code=int(msg.data[6:]), message=b"asked")
                break
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def _stream(request: web.Request) -> web.WebSocketResponse:
    count = int(request.query.get("count", "1"))
    size = int(request.query.get("size", "1024"))
    ws = web.WebSocketResponse(compress=False, max_msg_size=0)
    await ws.prepare(request)
    block = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for _ in range(count):
        await ws.send_bytes(block)
    await ws.close()
    return ws


async def _sse(request: web.Request) -> web.StreamResponse:
    count = int(request.query.get("count", "3"))
    every = float(request.query.get("every", "1"))
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(count):
        if i:
            await asyncio.sleep(every)
        await resp.write(f"id: {i}\nevent: tick\ndata: tick {i}\n\n".encode())
    await resp.write_eof()
    return resp


def ws_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/echo", _echo)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/sse", _sse)
    return app


async def start_app(app: web.Application, tls: ssl.SSLContext | None = None) -> tuple[Any, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _ws_echo(conn: ServerConnection) -> None:
    async for message in conn:
        await conn.send(message)


async def start_websockets(tls: ssl.SSLContext | None = None) -> tuple[Server, int]:
    server = await serve(_ws_echo, "127.0.0.1", 0, ssl=tls, max_size=None, compression="deflate")
    port = next(iter(server.sockets)).getsockname()[1]
    return server, port
