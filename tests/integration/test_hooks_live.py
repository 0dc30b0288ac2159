"""Lifecycle hooks through a live proxy: a subscriber holds flows and resumes them later.

The proxy runs in the test's event loop (so the subscriber can be an object
of the test), with real sockets: an aiohttp client through the proxy to an
aiohttp upstream that echoes what it received. This is the mechanism
breakpoints, addons and server replay build on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from proxy.config import parse_mode
from proxy.flow.hooks import (
    HookKind,
    Kill,
    Proceed,
    Reply,
    RequestEdit,
    ResponseEdit,
    Verdict,
)
from proxy.flow.record import FlowSource
from proxy.server.app import ProxyServer, ServerOptions
from proxy.server.hooks import HookBus, Resume
from proxy.sinks.dispatch import Dispatcher

TIMEOUT = aiohttp.ClientTimeout(total=10)


class Breakpoint:
    """Holds every flow at ``kind`` and answers ``verdict`` after ``delay`` seconds."""

    def __init__(self, kind: HookKind, verdict: Verdict, delay: float = 0.2) -> None:
        self.kinds = frozenset({kind, HookKind.DONE})
        self.holds = frozenset({kind})
        self.verdict = verdict
        self.delay = delay
        self.held: list[str] = []
        self.done: list[FlowSource] = []

    def on_hook(self, kind: HookKind, flow: FlowSource, resume: Resume | None) -> bool:
        if kind is HookKind.DONE:
            self.done.append(flow)
            return False
        assert resume is not None
        self.held.append(flow.url)  # type: ignore[attr-defined]
        asyncio.get_running_loop().call_later(self.delay, resume, self.verdict)
        return True


async def echo(request: web.Request) -> web.Response:
    headers = "".join(f"{k}: {v}\n" for k, v in request.headers.items())
    return web.Response(text=f"{request.method} {request.path_qs}\n{headers}")


async def with_proxy(bus: HookBus, body: Callable[[str, str], Awaitable[Any]]) -> Any:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dispatcher = Dispatcher([])
    server = ProxyServer(
        ServerOptions([parse_mode("regular", "127.0.0.1", 0)], hooks=bus), dispatcher
    )
    await server.start()
    try:
        proxy = f"http://127.0.0.1:{server.addresses[0][1]}"
        return await asyncio.wait_for(body(proxy, f"http://127.0.0.1:{upstream_port}"), 20)
    finally:
        await server.shutdown(1.0)
        dispatcher.close()
        await runner.cleanup()


async def get(proxy: str, url: str) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(url, proxy=proxy) as r,
    ):
        return r.status, await r.text(), dict(r.headers)


def test_held_request_is_edited_before_it_goes_upstream() -> None:
    edit = RequestEdit(headers=((b"Host", b"ignored"), (b"X-Breakpoint", b"edited")))
    bp = Breakpoint(HookKind.REQUEST, Proceed(edit))

    async def run(proxy: str, upstream: str) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        status, text, _ = await get(proxy, upstream + "/held?x=1")
        assert status == 200
        assert "GET /held?x=1" in text and "X-Breakpoint: edited" in text
        assert loop.time() - start >= bp.delay  # it really waited for the resume
        assert bp.held == [upstream + "/held?x=1"]

    asyncio.run(with_proxy(HookBus([bp]), run))
    (flow,) = bp.done
    assert flow.to_record().response is not None


def test_held_request_answered_in_the_servers_place() -> None:
    bp = Breakpoint(HookKind.REQUEST, Reply(299, ((b"X-From", b"hook"),), b"from the hook"))

    async def run(proxy: str, upstream: str) -> None:
        status, text, headers = await get(proxy, upstream + "/never-sent")
        assert (status, text, headers.get("X-From")) == (299, "from the hook", "hook")

    asyncio.run(with_proxy(HookBus([bp]), run))


def test_held_response_head_is_edited_and_the_body_follows() -> None:
    bp = Breakpoint(HookKind.RESPONSE_HEAD, Proceed(ResponseEdit(status=202)))

    async def run(proxy: str, upstream: str) -> None:
        status, text, _ = await get(proxy, upstream + "/r")
        assert status == 202 and text.startswith("GET /r\n")

    asyncio.run(with_proxy(HookBus([bp]), run))


def test_killed_flow_resets_the_client_and_the_proxy_keeps_serving() -> None:
    killer = Breakpoint(HookKind.REQUEST, Kill(), delay=0.0)

    async def run(proxy: str, upstream: str) -> None:
        try:
            await get(proxy, upstream + "/kill")
        except aiohttp.ClientError:
            pass
        else:
            raise AssertionError("a killed flow must not get a response")
        killer.verdict = Proceed()
        status, _, _ = await get(proxy, upstream + "/after")
        assert status == 200

    asyncio.run(with_proxy(HookBus([killer]), run))
    # aiohttp retries an idempotent request once after a reset: both tries are killed.
    outcome = {(f.to_record().request.url, f.to_record().error) for f in killer.done}  # type: ignore[union-attr]
    assert {url.rsplit("/", 1)[1]: error for url, error in outcome} == {
        "kill": "killed by a hook",
        "after": None,
    }


def test_two_subscribers_take_turns() -> None:
    first = Breakpoint(HookKind.REQUEST, Proceed(), delay=0.05)
    second = Breakpoint(HookKind.REQUEST, Proceed(RequestEdit(method=b"DELETE")), delay=0.05)

    async def run(proxy: str, upstream: str) -> None:
        _, text, _ = await get(proxy, upstream + "/t")
        assert text.startswith("DELETE /t")

    asyncio.run(with_proxy(HookBus([first, second]), run))
    assert len(first.held) == len(second.held) == 1
