"""The web UI under test: ``tapproxy --web`` with a real upstream, and a
headless Chromium page on it (Playwright on the system's Chromium), for
tests/integration/test_web_ui.py."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from playwright import sync_api
from playwright.sync_api import expect

from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams

CHROMIUM = "/usr/bin/chromium"
TOKEN = "web-ui-test-token"
WAIT = 15_000  # ms, for any one thing to show in the page


@dataclass
class Ui:
    page: sync_api.Page
    proxy: ProxyProcess
    upstream: Upstreams
    web: str  # http://127.0.0.1:PORT
    shots: Path
    errors: list[str]

    def curl(self, path: str, *args: str) -> subprocess.Popen[bytes]:
        """curl through the proxy to the upstream, in the background."""
        url = f"{self.upstream.url}{path}"
        cmd = ["curl", "-sS", "--max-time", "60", "-x", self.proxy.url, url, *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def rows(self, text: str | None = None) -> sync_api.Locator:
        rows = self.page.get_by_test_id("flow-row")
        return rows.filter(has_text=text) if text else rows

    def shot(self, name: str) -> None:
        self.page.evaluate("document.getElementById('toasts').replaceChildren()")
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000

    def open_flow(self, path_text: str) -> None:
        self.rows(path_text).first.click()
        expect(self.page.get_by_test_id("details-title")).to_contain_text(path_text, timeout=WAIT)


def finished(proc: subprocess.Popen[bytes]) -> bytes:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")
    return out


def web_address(p: ProxyProcess) -> str:
    line = next(x for x in p.stderr_lines if b"web UI listening at" in x).decode()
    found = re.search(r"web UI listening at (\S+):(\d+)", line)
    assert found is not None, line
    return f"http://{found.group(1)}:{found.group(2)}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def shots_dir(tmp: object) -> Path:
    """Where screenshots go: ``$TAPPROXY_SCREENSHOTS``, or a new temporary
    directory of ``tmp`` (pytest's ``tmp_path_factory``)."""
    given = os.environ.get("TAPPROXY_SCREENSHOTS")
    shots = Path(given) if given else Path(tmp.mktemp("screenshots"))  # type: ignore[attr-defined]
    shots.mkdir(parents=True, exist_ok=True)
    return shots


@contextlib.contextmanager
def static_site(root: Path) -> Iterator[str]:
    """The files of ``root`` over HTTP on loopback (the standard library's
    server, in a thread); yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


#: Run in the page: 100,000 made-up flows into the table at once, then 1,000
#: more one by one (as live updates come); the times in ms to the next frame.
FILL_100K = """async () => {
  const t = window.tapproxy.table;
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const make = (i) => ({id: `synthetic-${i}`, seq: 1e6 + i, start: 2e9 + i, state: "done",
    held: null, protocol: i % 7 ? "HTTP/1.1" : "HTTP/2", kind: "http",
    method: i % 5 ? "GET" : "POST",
    url: `http://many.test/n/${i}`, host: "many.test", path: `/n/${i}`, status: 200 + (i % 3) * 100,
    type: "text/plain", size: (i * 7919) % 100003, duration: i % 50, error: null, marked: false,
    rules: [], changed: false});
  const before = t.count;
  const rows = [];
  for (let i = 1; i <= 100000; i++) rows.push(make(i));
  let t0 = performance.now();
  t.upsert(rows);
  await frame();
  const load = performance.now() - t0;
  t0 = performance.now();
  for (let i = 100001; i <= 101000; i++) t.upsert([make(i)]);  // one by one, as updates come
  await frame();
  const append = performance.now() - t0;
  return {load, append, count: t.count - before, dom: t.rowsBox.children.length};
}"""


@contextlib.contextmanager
def running_ui(shots: Path, *args: str) -> Iterator[Ui]:
    """A proxy with the UI (and ``args``), an upstream, and the UI's page opened
    with the token; the page must have raised no error by the end."""
    upstream = Upstreams()
    proxy = start_proxy("--web", "--web-port", "0", "--web-token", TOKEN, *args, modes=2)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1440, "height": 860})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            web = web_address(proxy)
            page.goto(f"{web}/?token={TOKEN}", timeout=WAIT)
            yield Ui(page, proxy, upstream, web, shots, errors)
            browser.close()
        assert not errors, errors
    finally:
        proxy.stop()
        upstream.close()
