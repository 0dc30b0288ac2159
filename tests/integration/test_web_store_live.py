"""The web UI's flow store and /metrics filled by a live proxy (issue 18 items 8 and 9).

The proxy runs in the test's event loop with the store sink as its only
sink, capture on as ``--save`` turns it on; curl and an aiohttp WebSocket
client send real traffic to an aiohttp upstream on loopback. Then the
store holds one row per flow with its bodies, the WebSocket's messages
under its flow, and ``/metrics``' counters are the flows sent.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from proxy.config import parse_mode
from proxy.server.app import ProxyServer, ServerOptions
from proxy.session.capture import CaptureConfig
from proxy.sinks.dispatch import Dispatcher
from proxy.web.metrics import ProxyMetrics
from proxy.web.rows import Summary
from proxy.web.store import FlowStore
from proxy.web.storesink import StoreSink

BODY = bytes(range(256)) * 20  # 5120 bytes, far beyond the 256-byte preview


async def upstream_app() -> tuple[web.AppRunner, int]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/octet-stream")

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str("echo " + msg.data)
        return sock

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_post("/echo", echo)
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def curl(proxy: str, *args: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
        "-x", proxy, *args, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return int(out or 0)


async def websocket(proxy: str, url: str) -> list[str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.ws_connect(url, proxy=proxy) as sock,
    ):
        got = []
        for text in ("one", "two"):
            await sock.send_str(text)
            got.append((await sock.receive()).data)
        return got


async def run(tmp: Path) -> tuple[FlowStore, str, list[Summary]]:
    """The traffic, through a proxy whose only sink is the store's."""
    runner, port = await upstream_app()
    store = FlowStore()
    servers: list[ProxyServer] = []
    metrics = ProxyMetrics(lambda: servers[0].stats(), store)
    heard: list[Summary] = []
    sink = StoreSink(store, heard.extend, metrics, close_store=False)
    dispatcher = Dispatcher([sink])
    options = ServerOptions([parse_mode("regular", "127.0.0.1", 0)])
    session = replace(options.session, capture=CaptureConfig(record=True))  # as --save does
    servers.append(ProxyServer(replace(options, session=session), dispatcher))
    await servers[0].start()
    proxy = f"http://127.0.0.1:{servers[0].addresses[0][1]}"
    base = f"http://127.0.0.1:{port}"
    (tmp / "body").write_bytes(BODY)
    try:
        for _ in range(5):
            assert await curl(proxy, base + "/ok") == 200
        for _ in range(2):
            assert await curl(proxy, base + "/missing") == 404
        assert await curl(proxy, "--data-binary", f"@{tmp / 'body'}", base + "/echo") == 200
        assert await curl(proxy, f"http://127.0.0.1:{closed_port()}/") == 502
        assert await websocket(proxy, f"ws://127.0.0.1:{port}/ws") == ["echo one", "echo two"]
        stats = servers[0].stats()
    finally:
        await servers[0].shutdown(2.0)
        dispatcher.close()  # drains: every record waits in the store after this
        await runner.cleanup()
    assert store.count == 0 and store.waiting.flows == 10  # nobody watched: none indexed yet
    await sink.indexer.sync()  # as an API request does first
    assert stats["connections_accepted"] == 10
    return store, metrics.exposition().decode(), heard  # scraped on the loop, as /metrics is


def test_live_flows_reach_the_store_and_the_metrics(tmp_path: Path) -> None:
    store, text, heard = asyncio.run(asyncio.wait_for(run(tmp_path), 60))
    try:
        page, total = store.query(limit=100, newest_first=False)
        assert total == store.count == 10
        assert page == sorted(heard, key=lambda s: s["seq"])  # on_rows heard each as stored
        protocols = [(s["protocol"], s["status"], s["path"]) for s in page]
        assert protocols == [("HTTP/1.1", 200, "/ok")] * 5 + [("HTTP/1.1", 404, "/missing")] * 2 + [
            ("HTTP/1.1", 200, "/echo"),
            ("HTTP/1.1", 502, "/"),
            ("WebSocket", 101, "/ws"),
        ]
        echo, refused, ws = page[7:]
        assert store.body(echo["id"], "request") == BODY
        assert store.body(echo["id"], "response") == BODY
        assert store.bodies(echo["id"])["response"] == {
            "size": len(BODY), "stored": len(BODY), "truncated": False,
        }  # fmt: skip
        assert refused["error"] and "refused" in refused["error"]
        texts = [(m["direction"], m["text"]) for m in store.messages(ws["id"])]
        assert texts == [
            ("client", "one"), ("server", "echo one"), ("client", "two"), ("server", "echo two"),
        ]  # fmt: skip
        flow = store.get(ws["id"])
        assert flow is not None and flow.record["kind"] == "websocket"
        assert store.pending == 0

        got = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        flows = {k[1]: v for k, v in got.items() if k[0] == "tapproxy_flows_total"}
        assert flows == {
            (("protocol", "HTTP/1.1"), ("status_class", "2xx")): 6,
            (("protocol", "HTTP/1.1"), ("status_class", "4xx")): 2,
            (("protocol", "HTTP/1.1"), ("status_class", "5xx")): 1,
            (("protocol", "WebSocket"), ("status_class", "1xx")): 1,
        }
        assert got["tapproxy_errors_total", (("cause", "connect_refused"),)] == 1
        assert got["tapproxy_request_duration_seconds_count", ()] == 9
        assert got["tapproxy_bytes_total", (("direction", "upstream"),)] >= len(BODY)
        assert got["tapproxy_store_flows", ()] == 10
        assert got["tapproxy_connections_total", ()] == 10
    finally:
        store.close()
