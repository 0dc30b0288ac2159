"""Chromium opens a WebSocket over HTTP/2 (RFC 8441) through the intercepting proxy.

The page and the WebSocket are on one HTTPS origin; Chromium reaches it
through ``--mitm`` with ALPN h2, sees our ``SETTINGS_ENABLE_CONNECT_PROTOCOL``
and opens the WebSocket on a stream of that connection (an extended
CONNECT) instead of a new HTTP/1.1 connection. The server is aiohttp
(HTTP/1.1): the proxy's handshake to it, the echo back in the page, and the
records (the connection over HTTP/2, each message) show the way it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest
from aiohttp import web

from tests.integration.test_chromium import CHROMIUM, chromium_through
from tests.integration.test_websocket import connection, ws_records
from tests.support.certs import CertAuthority
from tests.support.proxyproc import running_proxy
from tests.support.upstreams import Upstreams, start_https

PAGE = """<html><body><p id=out>waiting</p><img src="/wait"><script>
const ws = new WebSocket("wss://" + location.host + "/echo");
ws.onopen = () => ws.send("hello from chromium");
ws.onmessage = (e) => { document.getElementById("out").textContent = "echo: " + e.data;
                        ws.close(1000, "done"); };
ws.onerror = () => { document.getElementById("out").textContent = "error"; };
</script></body></html>"""


def app() -> web.Application:
    """The page, its WebSocket echo, and ``/wait``, an image that loads once the
    page closed its WebSocket: the load event (and the DOM dump) waits for it."""
    done = asyncio.Event()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        done.set()
        return ws

    async def wait(request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 20)
        return web.Response(body=b"", content_type="image/gif")

    application = web.Application()
    application.router.add_get("/page", page)
    application.router.add_get("/echo", echo)
    application.router.add_get("/wait", wait)
    return application


@pytest.mark.skipif(not (CHROMIUM and shutil.which("certutil")), reason="chromium/certutil missing")
def test_chromium_websocket_over_http2(upstreams: Upstreams, tmp_path: Path) -> None:
    test_ca = CertAuthority.create(tmp_path / "upstream-ca")
    cert = test_ca.server_cert(["localhost"], "page.pem")
    runner, port = upstreams.call(start_https(app(), str(cert)))
    certs = tmp_path / "certs"
    try:
        with running_proxy(
            "--mitm", "--certs", str(certs), "--upstream-ca", str(test_ca.cert_path),
            flow_log=tmp_path / "flows.jsonl",
        ) as p:  # fmt: skip
            url = f"https://localhost:{port}/page"
            out = chromium_through(p.url, certs / "tapproxy-ca.pem", url, tmp_path)
            assert "echo: hello from chromium" in out.stdout, out.stderr[-2000:]
            rec = connection(p, "/echo")
            assert rec["request"]["http_version"] == "HTTP/2.0"  # on a stream: RFC 8441
            assert rec["tls"]["intercepted"] is True
            assert rec["websocket"]["messages"] == {"upstream": 1, "downstream": 1}
            assert rec["websocket"]["client_close"] == {"code": 1000, "reason": "done"}
            up = [m for m in ws_records(p, rec["id"]) if m["direction"] == "upstream"]
            assert up[0]["preview"]["data"] == "hello from chromium"
    finally:
        upstreams.call(runner.cleanup())
