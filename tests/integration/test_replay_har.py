"""A HAR written by another tool imports and replays (issue 19).

Playwright drives the system's headless Chromium (``executable_path``; no
browser download) through a page that loads an image and fetches a JSON
API, with ``record_har_path``. Then:

* ``tapproxy replay`` resends the HAR's requests to the live service: no
  differences, exit 0;
* ``tapproxy convert`` turns the HAR into a recording that reads back;
* the service is stopped, a listener counting connections takes its port,
  and Chromium loads the same page through ``--server-replay HAR``: the page
  runs to its end from the replayed responses, and no connection reaches
  the listener.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.replay.reader import load
from tests.support.proxyproc import running_proxy
from tests.support.replay_service import CountingListener, Service

playwright = pytest.importorskip("playwright.async_api")
CHROMIUM = "/usr/bin/chromium"


async def load_page(url: str, har: Path | None = None, proxy: str | None = None) -> str:
    """The page's title once its script ran, loaded by headless Chromium."""
    args = ["--no-sandbox"]
    if proxy is not None:  # Chromium never proxies loopback unless told to
        args += [f"--proxy-server={proxy}", "--proxy-bypass-list=<-loopback>"]
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            context = await browser.new_context(record_har_path=str(har) if har else None)
            page = await context.new_page()
            await page.goto(url, timeout=20_000)
            await page.wait_for_function("document.title === 'done'", timeout=20_000)
            title = await page.title()
            await context.close()  # writes the HAR
            return title
        finally:
            await browser.close()


def _content(entry: dict[str, object]) -> bytes:
    content = entry["response"]["content"]  # type: ignore[index]
    text = content["text"]  # type: ignore[index]
    return base64.b64decode(text) if content.get("encoding") == "base64" else text.encode()  # type: ignore[attr-defined]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the system's Chromium")
def test_playwright_har_imports_and_replays(tmp_path: Path) -> None:
    har = tmp_path / "chromium.har"
    service = Service()
    port = service.port
    try:
        assert asyncio.run(load_page(f"{service.url}/page", har=har)) == "done"
        doc = json.loads(har.read_text())
        creator = doc["log"]["creator"]["name"]
        urls = [e["request"]["url"] for e in doc["log"]["entries"]]
        assert f"{service.url}/api/items/5" in urls and f"{service.url}/bin/2048" in urls
        replay = subprocess.run(
            [sys.executable, "-m", "proxy", "replay", str(har), "--to", service.url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "0 differ, 0 failed" in replay.stderr
    finally:
        service.stop()
    assert creator == "Playwright"

    recording = tmp_path / "from-har.tap"
    convert = subprocess.run(
        [sys.executable, "-m", "proxy", "convert", str(har), "--to", "recording",
         "-o", str(recording)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert convert.returncode == 0, convert.stderr
    flows = load(recording).flows
    assert [f.request.url for f in flows if f.request] == urls
    by_url = {f.request.url: f for f in flows if f.request}
    image = next(e for e in doc["log"]["entries"] if e["request"]["url"].endswith("/bin/2048"))
    assert by_url[f"{service.url}/bin/2048"].response.body.data == _content(image)  # type: ignore[union-attr]

    listener = CountingListener(port)
    try:
        args = ("--server-replay", str(har), "--server-replay-speed", "0")
        with running_proxy(*args) as p:
            title = asyncio.run(load_page(f"http://127.0.0.1:{port}/page", proxy=p.url))
        assert listener.count() == 0
    finally:
        listener.close()
    assert title == "done"  # the page's script got the replayed JSON
