"""The web UI's HTTP server: aiohttp in the proxy's own event loop.

No thread and no second process: the handlers run between the proxy's own
callbacks, so a handler must stay short (store reads are indexed and paged;
filters scan in chunks). Everything goes through ``auth``: a token given at
start, a cookie after the first visit (docs/api.md, "Authentication").

The routes live by topic in ``api_flows`` (the list, a flow, bodies, diff,
export), ``api_control`` (breakpoints, resend, rules, status, metrics) and
here (the page, its assets, the live updates' WebSocket).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from aiohttp import WSMsgType, web
from aiohttp.typedefs import Middleware

import proxy.web.api_control as api_control
import proxy.web.api_flows as api_flows
from proxy.web.context import WEB, WebContext

COOKIE = "tapproxy_token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _given_token(request: web.Request) -> tuple[str | None, bool]:
    """The token the request carries, and whether it came in the URL."""
    query = request.query.get("token")
    if query is not None:
        return query, True
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(COOKIE), False


def auth_middleware(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given, in_url = _given_token(request)
        if given is None:
            return web.json_response(
                {"error": "a token is needed (see the start line)"}, status=401
            )
        if not hmac.compare_digest(given.encode(), expected):
            return web.json_response({"error": "wrong token"}, status=403)
        response = await handler(request)
        if in_url and not response.prepared:
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check


def static_dir() -> Path:
    return Path(str(resources.files("proxy.web") / "static"))


async def index(request: web.Request) -> web.StreamResponse:
    page = static_dir() / "index.html"
    if not page.is_file():
        return web.Response(text="the UI's files are missing from this install", status=500)
    return web.FileResponse(page, headers={"Cache-Control": "no-store"})


async def updates(request: web.Request) -> web.StreamResponse:
    """The live updates (docs/api.md): the feed sends, the browser only listens."""
    ctx = request.app[WEB]
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    ctx.feed.add(ws)
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        ctx.feed.remove(ws)
    return ws


#: Paths answered without indexing the waiting flows first: the page, its
#: files and the live updates (the flows come from ``/api/flows``).
_NO_SYNC = ("/api/updates",)


@web.middleware
async def synced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Flows waiting in the store are indexed before any API answer (and
    ``/metrics``), so an answer covers every flow finished before it."""
    path = request.path
    if (path.startswith("/api/") or path == "/metrics") and path not in _NO_SYNC:
        await request.app[WEB].sync()
    return await handler(request)


@web.middleware
async def no_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.path.startswith("/api/") and not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def make_app(ctx: WebContext) -> web.Application:
    app = web.Application(
        middlewares=[auth_middleware(ctx.token), synced, no_cache], client_max_size=64 << 20
    )
    app[WEB] = ctx
    app.router.add_get("/", index)
    app.router.add_get("/api/updates", updates)
    api_flows.add_routes(app.router)
    api_control.add_routes(app.router)
    app.router.add_static("/static", static_dir(), follow_symlinks=False)
    return app


class WebServer:
    """Starts and stops the UI's site on the running loop."""

    def __init__(self, ctx: WebContext, host: str, port: int) -> None:
        self.ctx = ctx
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> tuple[str, int]:
        runner = web.AppRunner(make_app(self.ctx), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        host, port = self.host, self.port
        for name in site.name, *runner.addresses:  # the bound address (port 0: the kernel's)
            if isinstance(name, tuple) and len(name) >= 2:
                host, port = str(name[0]), int(name[1])
                break
        self.port = port
        return host, port

    async def stop(self) -> None:
        self.ctx.breakpoints.close()
        self.ctx.feed.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
