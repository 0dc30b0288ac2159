"""A small service to record and replay: JSON API, binary and chunked bodies.

``Service`` runs an aiohttp app on its own thread and port, and can be
stopped and started again on the same port (a new version of the service,
or a ``CountingListener`` where it was). ``version=2`` changes exactly the
responses of ``CHANGED_IN_V2``: a JSON field, a status, a header field.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import threading
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from tests.support.upstreams import pattern_chunks

#: Items whose responses version 2 changes: price, status, a header field.
CHANGED_IN_V2 = (7, 42, 77)


def _item(n: int, version: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {"id": n, "name": f"item {n}", "price": n * 3, "tags": ["a", str(n)]}
    status, headers = 200, {"X-Api-Version": "1"}
    if version == 2 and n == CHANGED_IN_V2[0]:
        body["price"] += 1
    if version == 2 and n == CHANGED_IN_V2[1]:
        status = 503
    if version == 2 and n == CHANGED_IN_V2[2]:
        headers["X-Api-Version"] = "2"
    return status, body, headers


def make_app(version: int) -> web.Application:
    async def item(request: web.Request) -> web.Response:
        status, body, headers = _item(int(request.match_info["n"]), version)
        return web.json_response(body, status=status, headers=headers)

    async def order(request: web.Request) -> web.Response:
        got = json.loads(await request.read() or b"null")
        return web.json_response({"ok": True, "order": got, "n": request.query.get("n")})

    async def binary(request: web.Request) -> web.Response:
        size = int(request.match_info["n"])
        return web.Response(body=b"".join(pattern_chunks(size)), content_type="application/x-bin")

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-bin"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for piece in pattern_chunks(int(request.match_info["n"]), 16 * 1024):
            await resp.write(piece)
        await resp.write_eof()
        return resp

    async def page(request: web.Request) -> web.Response:
        html = (
            "<!doctype html><html><head><title>shop</title>"
            '<link rel="icon" href="data:,"></head><body><h1 id="t">shop</h1>'
            '<img src="/bin/2048"><script>fetch("/api/items/5").then(r => r.json())'
            '.then(j => { document.getElementById("t").textContent = j.name; '
            'document.title = "done"; });</script></body></html>'
        )
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/api/items/{n:[0-9]+}", item)
    app.router.add_post("/api/orders", order)
    app.router.add_get("/bin/{n:[0-9]+}", binary)
    app.router.add_get("/chunked/{n:[0-9]+}", chunked)
    app.router.add_get("/page", page)
    return app


class Service:
    """The app on a background loop; ``port`` 0 picks one, kept across restarts."""

    def __init__(self, version: int = 1, port: int = 0) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None
        self.port = port
        self._call(self._start(version))

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    async def _start(self, version: int) -> None:
        self.runner = web.AppRunner(make_app(version))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.runner is not None:
            self._call(self.runner.cleanup())
            self.runner = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class CountingListener:
    """Listens where the service was and counts the connections that arrive.

    The kernel completes a connection's handshake into the backlog whether or
    not we accept, so counting what ``accept`` finds at the end misses none.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.accepted = 0

    def count(self) -> int:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return self.accepted
                raise
            conn.close()
            self.accepted += 1

    def close(self) -> None:
        self.sock.close()
