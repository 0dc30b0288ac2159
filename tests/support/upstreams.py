"""Upstream servers for integration tests, on a background event loop.

``Upstreams`` runs in its own thread so tests can use blocking clients
(curl, requests) as well as asyncio ones. It offers:

* an aiohttp app: ``/echo`` (request echoed as JSON), ``/bytes/N`` (N bytes,
  Content-Length), ``/chunked/N`` (N bytes, chunked), ``/upload`` (sha256 and
  size of the request body), ``/ws`` (WebSocket echo);
* ``RawServer``: a scripted TCP server that records every byte received and
  answers through a handler, for the exact-bytes tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

T = TypeVar("T")

_rng = random.Random(1234)
# An odd-sized block so that repeats never line up with read sizes.
PATTERN = _rng.randbytes(1024 * 1024 + 7)


def pattern_chunks(size: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """``size`` deterministic bytes in chunks (a sliding window over PATTERN)."""
    pos = 0
    n = len(PATTERN)
    doubled = PATTERN + PATTERN
    while size > 0:
        take = min(chunk, size, n)
        start = pos % n
        yield doubled[start : start + take]
        pos += take
        size -= take


def pattern_sha256(size: int) -> str:
    h = hashlib.sha256()
    for c in pattern_chunks(size):
        h.update(c)
    return h.hexdigest()


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "headers": [[k, v] for k, v in request.raw_headers_str()],
            "body": body.decode("latin-1"),
        }
    )


def _raw_headers(request: web.Request) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]


web.Request.raw_headers_str = _raw_headers  # type: ignore[attr-defined]


async def _bytes(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.content_length = size
    resp.content_type = "application/octet-stream"
    await resp.prepare(request)
    for c in pattern_chunks(size):
        await resp.write(c)
    await resp.write_eof()
    return resp


async def _chunked(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    resp.content_type = "application/octet-stream"
    await resp.prepare(request)
    for c in pattern_chunks(size):
        await resp.write(c)
    await resp.write_eof()
    return resp


async def _upload(request: web.Request) -> web.Response:
    h = hashlib.sha256()
    size = 0
    async for c in request.content.iter_any():
        h.update(c)
        size += len(c)
    return web.json_response(
        {
            "sha256": h.hexdigest(),
            "size": size,
            "chunked": "chunked" in request.headers.get("Transfer-Encoding", ""),
        }
    )


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def _peer(request: web.Request) -> web.Response:
    """The client's address as the origin saw it: tells one upstream connection from another."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.Response(text=f"{peer[0]}:{peer[1]}" if peer else "?")


def make_app() -> web.Application:
    app = web.Application(client_max_size=2**40)
    app.router.add_route("*", "/echo{tail:.*}", _echo)
    app.router.add_get("/bytes/{n:[0-9]+}", _bytes)
    app.router.add_get("/chunked/{n:[0-9]+}", _chunked)
    app.router.add_route("*", "/upload", _upload)
    app.router.add_get("/ws", _ws)
    app.router.add_get("/peer", _peer)
    return app


Handler = Callable[["RawConnection"], Awaitable[None]]


class RawConnection:
    """One accepted connection of a ``RawServer``; bytes received are recorded."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = bytearray()

    async def read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            while marker not in self.received:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.received += data
        return bytes(self.received)

    async def read_some(self, timeout: float = 1.0) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(65536)
                self.received += data
                return data
        except TimeoutError:
            return b""

    async def read_exactly_total(self, n: int, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            while len(self.received) < n:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.received += data
        return bytes(self.received)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: list[RawConnection] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RawConnection(reader, writer)
        self.connections.append(conn)
        try:
            await self.handler(conn)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    @property
    def received(self) -> bytes:
        return b"".join(bytes(c.received) for c in self.connections)


class Upstreams:
    """A background loop with the aiohttp app and any raw servers tests add."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.connections = 0
        self.call(self._start_app())

    def call(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return fut.result(timeout)

    async def _start_app(self) -> None:
        self.runner = web.AppRunner(make_app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def raw(self, handler: Handler) -> RawServer:
        server = RawServer(handler)
        self.call(server.start())
        return server

    def close(self) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def run_in(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
    loop.call_soon_threadsafe(fn)


async def start_https(app: web.Application, cert_file: str) -> tuple[web.AppRunner, int]:
    """Serve ``app`` over TLS with the certificate chain and key in ``cert_file``."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
