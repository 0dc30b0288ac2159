"""A gRPC-Web server for the tests: the demo service's Unary and ServerStream over HTTP/1.1.

PROTOCOL-WEB.md: the request body is length-prefixed messages
(``application/grpc-web+proto``), or their base64 (``application/grpc-web-text``);
the response is the reply messages then a trailer frame (flag 0x80) with
``grpc-status``/``grpc-message`` as header lines, in the same encoding.
aiohttp serves it on loopback in a thread; ``frames``/``web_frame`` build
and read bodies for the clients.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from tests.support.grpcsvc import Generated


def web_frame(payload: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + len(payload).to_bytes(4, "big") + payload


def unbase64(text: bytes) -> bytes:
    """gRPC-Web text: base64 pieces, each padded (so decoded 4 characters at a time)."""
    return b"".join(base64.b64decode(text[i : i + 4]) for i in range(0, len(text), 4))


def frames(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    while body:
        size = int.from_bytes(body[1:5], "big")
        out.append((body[0], body[5 : 5 + size]))
        body = body[5 + size :]
    return out


def app(gen: Generated) -> web.Application:
    pb2 = gen.pb2

    async def call(request: web.Request) -> web.Response:
        kind = request.content_type
        text = kind.startswith("application/grpc-web-text")
        body = await request.read()
        if text:
            body = unbase64(body)
        (_, payload), *_ = frames(body)
        req = pb2.Req.FromString(payload)
        method = request.match_info["method"]
        if method == "Unary":
            replies = [pb2.Reply(text=req.text, count=req.count * 2)]
        else:
            replies = [pb2.Reply(text=req.text, index=i) for i in range(req.count)]
        out = b"".join(web_frame(r.SerializeToString()) for r in replies)
        trailers = web_frame(b"grpc-status: 0\r\ngrpc-message: ok\r\n", 0x80)
        if text:  # each frame its own padded base64 piece, as some servers write it
            data = b"".join(base64.b64encode(f) for f in (out, trailers) if f)
        else:
            data = out + trailers
        return web.Response(body=data, headers={"content-type": kind})

    a = web.Application()
    a.router.add_post("/demo.Echo/{method}", call)
    return a


@contextmanager
def serve(gen: Generated) -> Iterator[int]:
    """The server's port, while it runs (in a thread with its own loop)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app(gen))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()))
    thread.start()
    assert ready.wait(10), "the gRPC-Web server did not start"
    try:
        yield int(holder["port"])
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
