"""The web UI's store stays bounded: 200,000 flows with the UI open (issue 18).

tapproxy runs as a reverse proxy in front of nginx with ``--web
--web-max-flows 10000``; a watcher stays connected to the live updates and
reads everything it is sent. h2load sends exactly 10,000 and then 190,000
more small keep-alive requests over HTTP/1.1. The store must then hold
10,000 flows (and say how many it dropped), the proxy's RSS after 200,000
flows must be within 15% of its RSS after 10,000, and the flow list must
still load in under 2 s. Slow (about two minutes): ``python -m pytest -m slow``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.support.faults import free_port
from tests.support.nginx import nginx_conf
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.proxystats import rss_kb

TOKEN = "soak-token-1234"
NGINX, H2LOAD = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("h2load")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(H2LOAD is None, reason="h2load (nghttp2-client) is needed"),
]


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    server = f"""    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
        location / {{ return 200 "small body\\n"; }}
    }}
"""
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, server))
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


class Watcher(threading.Thread):
    """A browser's part: connected to the live updates, reading all of it."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.messages = url, 0
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as s, s.ws_connect(self.url, headers=headers) as ws:
            self.ready.set()
            while not self.stop.is_set():
                try:
                    await ws.receive(timeout=0.5)
                    self.messages += 1
                except TimeoutError:
                    continue


def _load(p: ProxyProcess, count: int) -> None:
    assert H2LOAD is not None
    done = subprocess.run(
        [H2LOAD, "--h1", "-n", str(count), "-c", "8", "-m", "1", f"{p.url}/x"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert f"{count} succeeded" in done.stdout, done.stdout[-2000:]


def _settled(c: httpx.Client, flows: int) -> dict[str, int]:
    """The store's status once every flow sent so far went through it."""
    deadline = time.monotonic() + 60
    while True:
        status = c.get("/api/status").json()
        if status["stored"] + status["dropped"] >= flows:
            return dict(status)
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def test_two_hundred_thousand_flows_keep_the_store_and_the_memory_bounded(origin: int) -> None:
    p = start_proxy(
        "--mode", f"reverse:http://127.0.0.1:{origin}", "--web", "--web-port", "0",
        "--web-token", TOKEN, "--web-max-flows", "10000", modes=2,
    )  # fmt: skip
    host, port = p.addresses[1]
    watcher = Watcher(f"http://{host}:{port}/api/updates")
    watcher.start()
    try:
        assert watcher.ready.wait(10)
        with httpx.Client(
            base_url=f"http://{host}:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
            trust_env=False,
        ) as c:
            _load(p, 10_000)
            first = _settled(c, 10_000)
            rss_10k = rss_kb(p.proc.pid)
            _load(p, 190_000)
            last = _settled(c, 200_000)
            rss_200k = rss_kb(p.proc.pid)
            started = time.monotonic()
            page = c.get("/api/flows", params={"limit": 500})
            took = time.monotonic() - started
        print(f"RSS {rss_10k} kB after 10k flows, {rss_200k} kB after 200k; list {took:.3f} s")
        assert first["stored"] == 10_000
        assert last["stored"] == 10_000 and last["dropped"] == 190_000
        assert page.status_code == 200 and len(page.json()["flows"]) == 500
        assert page.json()["total"] == 10_000
        assert took < 2.0, f"the flow list took {took:.2f} s"
        assert rss_200k <= rss_10k * 1.15, f"RSS {rss_10k} kB after 10k, {rss_200k} kB after 200k"
        assert watcher.messages > 0
    finally:
        watcher.stop.set()
        watcher.join(5)
        p.stop()
