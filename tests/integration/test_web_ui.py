"""The web UI in a real browser (issue 18): headless Chromium, driven by
Playwright (the system's ``/usr/bin/chromium``, no browser download), against
a real ``tapproxy --web`` with a real upstream (the aiohttp echo service of
tests/support/upstreams: ``/echo...`` answers with the method, path, headers
and body it received, so what the upstream got is in the answer).

Traffic goes through the proxy with curl. One proxy and one page serve the
module's tests, in order:

* flows appear in the list while curl is still sending, without a reload;
* a filter expression narrows the list, and a bad one shows its column;
* a flow's details show its JSON request body pretty-printed;
* a breakpoint holds a request; its header is edited in the page and the
  flow resumed: the upstream receives the edited header, and the flow's
  details show the request as received and as sent side by side;
* a flow is edited and resent, and replayed as is: the new flows are listed
  and the upstream received the edit;
* two flows are diffed;
* a flow is marked and found with ``~marked``; a 404 and a refused
  upstream show as such (the overview screenshot, docs/web-ui.png);
* the table takes 100,000 flows (made in the page, not sent): it stays
  quick, keeps about a screenful of rows in the DOM, scrolls and sorts.

Each view is saved as a screenshot in ``$TAPPROXY_SCREENSHOTS`` (or the
test's temporary directory). Every wait is Playwright's bounded ``expect``
or a subprocess timeout.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
CHROMIUM = "/usr/bin/chromium"
TOKEN = "web-ui-test-token"
WAIT = 15_000  # ms, for any one thing to show in the page
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the system's Chromium")


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


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    shots = Path(os.environ.get("TAPPROXY_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    upstream = Upstreams()
    proxy = start_proxy("--web", "--web-port", "0", "--web-token", TOKEN, modes=2)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1440, "height": 860})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{web_address(proxy)}/?token={TOKEN}", timeout=WAIT)
            yield Ui(page, proxy, upstream, web_address(proxy), shots, errors)
            browser.close()
        assert not errors, errors
    finally:
        proxy.stop()
        upstream.close()


def test_flows_appear_live(ui: Ui) -> None:
    page = ui.page
    expect(page.get_by_test_id("st-conn")).to_have_text("connected", timeout=WAIT)
    expect(ui.rows()).to_have_count(0)
    page.evaluate("window.__sameDocument = true")
    urls = [f"/echo/item/{i}" for i in range(1, 6)]
    # Five GETs two a second, then a POST with a JSON body: ~2.5 s of sending.
    sender = ui.curl(urls[0], "--rate", "2/s", *[f"{ui.upstream.url}{u}" for u in urls[1:]])
    expect(ui.rows("/echo/item/1")).to_have_count(1, timeout=WAIT)
    assert sender.poll() is None, "curl had finished before the first flow showed"
    finished(sender)
    order = json.dumps({"order": 42, "items": [{"sku": "A-1", "qty": 2}], "gift": False})
    finished(ui.curl("/echo/orders", "-H", "Content-Type: application/json", "--data", order))
    expect(ui.rows()).to_have_count(6, timeout=WAIT)
    expect(ui.rows("/echo/orders")).to_contain_text("POST")
    expect(ui.rows("/echo/orders")).to_contain_text("200")
    expect(ui.rows("/echo/orders")).to_contain_text("HTTP/1.1")
    expect(page.get_by_test_id("st-stored")).to_have_text("6 stored", timeout=WAIT)
    assert page.evaluate("window.__sameDocument") is True  # no reload: pushed live
    ui.shot("1-live-list")


def test_filter(ui: Ui) -> None:
    page = ui.page
    box = page.get_by_test_id("filter-input")
    box.fill("~m POST")
    box.press("Enter")
    expect(ui.rows()).to_have_count(1, timeout=WAIT)
    expect(ui.rows().first).to_contain_text("/echo/orders")
    expect(page.get_by_test_id("st-count")).to_have_text("1 matching")
    box.fill("~u item/[23]")
    box.press("Enter")
    expect(ui.rows()).to_have_count(2, timeout=WAIT)
    box.fill("~m POST & (~u orders")
    box.press("Enter")
    error = page.get_by_test_id("filter-error")
    expect(error).to_be_visible(timeout=WAIT)
    # 1-based, one past the end: where the ')' is missing
    expect(error.get_by_test_id("error-column")).to_have_attribute("data-column", "21")
    expect(ui.rows()).to_have_count(2)  # the list stays as it was
    ui.shot("2-filter-error")
    box.fill("~d 127.0.0.1 & !~m POST")
    box.press("Enter")
    expect(error).to_be_hidden(timeout=WAIT)
    expect(ui.rows()).to_have_count(5, timeout=WAIT)
    ui.shot("2-filter")
    box.fill("")
    box.press("Enter")
    expect(ui.rows()).to_have_count(6, timeout=WAIT)


def test_details_json_pretty(ui: Ui) -> None:
    page = ui.page
    ui.open_flow("/echo/orders")
    request_body = page.get_by_test_id("body-request").locator("pre.body-text")
    expect(request_body).to_have_attribute("data-view", "json", timeout=WAIT)
    pretty = '{\n  "order": 42,\n  "items": [\n    {\n      "sku": "A-1"'
    expect(request_body).to_contain_text(pretty)
    expect(page.get_by_test_id("headers-request")).to_contain_text("application/json")
    ui.shot("3-details-request")
    page.get_by_test_id("tab-response").click()
    response_body = page.get_by_test_id("body-response").locator("pre.body-text")
    expect(response_body).to_contain_text('{\n  "method": "POST",', timeout=WAIT)
    page.get_by_test_id("tab-timing").click()
    expect(page.get_by_test_id("timings")).to_contain_text("total")
    page.get_by_test_id("tab-response").click()
    expect(response_body).to_be_visible(timeout=WAIT)
    ui.shot("3-details-response")


def test_breakpoint_edit_resume(ui: Ui) -> None:
    page = ui.page
    page.get_by_test_id("intercept").click()
    page.get_by_test_id("bp-filter").fill("~u /echo/held")
    page.get_by_test_id("bp-set").click()
    expect(page.get_by_test_id("bp-state")).to_contain_text("Holding", timeout=WAIT)
    client = ui.curl("/echo/held", "-H", "X-Debug: original")
    held = page.get_by_test_id("held-item")
    expect(held).to_have_count(1, timeout=WAIT)
    expect(page.locator(".ft-row.held")).to_have_count(1, timeout=WAIT)
    assert client.poll() is None  # curl waits for its answer
    held.click()
    headers = page.get_by_test_id("he-headers")
    expect(headers).to_have_value(re.compile("X-Debug: original"), timeout=WAIT)
    headers.fill(headers.input_value().replace("X-Debug: original", "X-Debug: edited"))
    ui.shot("4-intercept-edit")
    page.get_by_test_id("he-resume").click()
    echoed = json.loads(finished(client))
    received = [v for k, v in echoed["headers"] if k.lower() == "x-debug"]
    assert received == ["edited"], echoed["headers"]
    expect(held).to_have_count(0, timeout=WAIT)
    expect(ui.rows("/echo/held")).to_contain_text("200", timeout=WAIT)
    page.locator("#bp-off").click()
    expect(page.get_by_test_id("bp-state")).to_contain_text("No breakpoint", timeout=WAIT)
    page.locator("#intercept-close").click()
    # The edited flow: as received and as sent, side by side.
    ui.open_flow("/echo/held")
    page.get_by_test_id("tab-request").click()
    both = page.get_by_test_id("request-changed")
    expect(both).to_be_visible(timeout=WAIT)
    received, sent = both.locator("table.headers").all()
    expect(received).to_contain_text("original")
    expect(sent).to_contain_text("edited")
    expect(sent.locator("tr.hdr-diff")).to_contain_text("X-Debug")
    ui.shot("4-edited-flow")


def test_resend_and_replay(ui: Ui) -> None:
    page = ui.page
    ui.open_flow("/echo/item/1")
    page.locator("#act-resend").click()
    dialog = page.get_by_test_id("resend-dialog")
    expect(dialog).to_be_visible(timeout=WAIT)
    url = page.locator("#rs-url")
    expect(url).to_have_value(f"{ui.upstream.url}/echo/item/1")
    url.fill(f"{ui.upstream.url}/echo/resent?v=2")
    headers = page.locator("#rs-headers")
    headers.fill(headers.input_value() + "\nX-Resent: by-the-ui")
    page.get_by_test_id("rs-send").click()
    expect(page.get_by_test_id("rs-result")).to_contain_text("answered 200", timeout=WAIT)
    ui.shot("5-resend")
    dialog.locator("button", has_text="Close").click()
    expect(ui.rows("/echo/resent?v=2")).to_have_count(1, timeout=WAIT)
    ui.open_flow("/echo/resent?v=2")
    page.get_by_test_id("tab-response").click()
    body = page.get_by_test_id("body-response").locator("pre.body-text")
    expect(body).to_contain_text('"X-Resent",\n      "by-the-ui"', timeout=WAIT)
    before = ui.rows("/echo/item/2").count()
    ui.open_flow("/echo/item/2")
    page.locator("#act-replay").click()
    expect(ui.rows("/echo/item/2")).to_have_count(before + 1, timeout=WAIT)


def test_diff(ui: Ui) -> None:
    page = ui.page
    ui.open_flow("/echo/item/3")
    page.locator("#act-diff").click()
    expect(page.locator("#pick-hint")).to_be_visible()
    ui.rows("/echo/item/4").first.click()
    dialog = page.get_by_test_id("diff-dialog")
    expect(dialog).to_be_visible(timeout=WAIT)
    line = dialog.get_by_test_id("diff-request-line")
    expect(line.locator(".d-del")).to_contain_text("/echo/item/3")
    expect(line.locator(".d-add")).to_contain_text("/echo/item/4")
    body = dialog.get_by_test_id("diff-response-body")
    expect(body.locator(".d-add").first).to_contain_text("item/4")
    expect(dialog.get_by_test_id("diff-request-body")).to_contain_text("identical")
    ui.shot("6-diff")
    page.locator("#diff-close").click()
    expect(dialog).to_be_hidden()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_marks_errors_overview(ui: Ui) -> None:
    page = ui.page
    finished(ui.curl("/missing/page"))
    finished(ui.curl("/bytes/4096"))
    refused = f"http://127.0.0.1:{closed_port()}/api/health"
    cmd = ["curl", "-sS", "-o", "/dev/null", "-x", ui.proxy.url, refused]
    subprocess.run(cmd, timeout=30, check=False, capture_output=True)
    expect(ui.rows("/missing/page")).to_contain_text("404", timeout=WAIT)
    expect(ui.rows("/api/health")).to_contain_text("502", timeout=WAIT)
    expect(ui.rows("/api/health").locator("[data-col=markers]")).to_contain_text("⚠")
    ui.open_flow("/echo/orders")
    page.locator("#act-mark").click()
    expect(ui.rows("/echo/orders").locator("[data-col=markers]")).to_contain_text("★", timeout=WAIT)
    box = page.get_by_test_id("filter-input")
    box.fill("~marked")
    box.press("Enter")
    expect(ui.rows()).to_have_count(1, timeout=WAIT)
    box.fill("")
    box.press("Enter")
    expect(ui.rows("/api/health")).to_have_count(1, timeout=WAIT)
    page.get_by_test_id("tab-request").click()
    expect(page.get_by_test_id("body-request")).to_contain_text('"sku": "A-1"', timeout=WAIT)
    ui.shot("8-overview")


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


def test_table_100k_rows(ui: Ui) -> None:
    page = ui.page.context.new_page()  # a second tab: the cookie is enough now
    page.goto(f"{ui.web}/", timeout=WAIT)
    expect(page.get_by_test_id("st-conn")).to_have_text("connected", timeout=WAIT)
    loaded = page.locator("body")  # the first list load is done (live.js sets it)
    expect(loaded).to_have_attribute("data-list-loaded", re.compile("."), timeout=WAIT)
    facts = page.evaluate(FILL_100K)
    assert facts["count"] == 101_000
    assert facts["dom"] < 100, facts  # a screenful, not 100,000 rows
    # ms, generous for a shared machine (seen: ~200 and ~20 on 2 busy cores)
    assert facts["load"] < 3000, facts
    assert facts["append"] < 1000, facts  # 1,000 flows added one by one, then painted
    viewport = page.get_by_test_id("flow-viewport")
    viewport.evaluate("(v) => { v.scrollTop = 50000 * 24; }")  # rows are 24 px high
    middle = page.locator('[data-testid=flow-row][data-seq="1050001"]')
    expect(middle).to_contain_text("/n/50001", timeout=WAIT)
    page.get_by_test_id("col-size").click()
    expect(page.get_by_test_id("col-size")).to_have_attribute("aria-sort", "ascending")
    viewport.evaluate("(v) => { v.scrollTop = 0; }")
    expect(page.get_by_test_id("flow-row").first).to_contain_text("0 B", timeout=WAIT)
    page.screenshot(path=str(ui.shots / "7-100k-rows.png"))
    page.close()
