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
* a flow a rule changed has its markers, its rule in the Rules tab, and
  the header the rule set highlighted on the request as sent;
* a flow is marked and found with ``~marked``; a 404 and a refused
  upstream show as such (the overview screenshot, docs/web-ui.png).

test_web_ui_tools.py has the rest of the page's tools (Reply and Kill, a
held response, messages, images, exports, pause, clear, 100,000 rows),
test_web_ui_store.py the store's cap as the page shows it.

Each view is saved as a screenshot in ``$TAPPROXY_SCREENSHOTS`` (or the
test's temporary directory). Every wait is Playwright's bounded ``expect``
or a subprocess timeout.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from tests.support.webui import (
    CHROMIUM,
    WAIT,
    Ui,
    closed_port,
    finished,
    running_ui,
    shots_dir,
)

RULES = """\
version: 1
rules:
  - name: stamp-ruled
    match: {path: {glob: "/echo/ruled/**"}}
    request:
      - set_header: {x-stamped: by-rule}
"""
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the system's Chromium")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    rules = tmp_path_factory.mktemp("rules") / "ui.yaml"
    rules.write_text(RULES)
    with running_ui(shots_dir(tmp_path_factory), "--rules", str(rules)) as ui:
        yield ui


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
    # Or: select two flows (Ctrl-click the second), then Diff.
    ui.rows("/echo/item/1").first.click()
    ui.rows("/echo/orders").click(modifiers=["Control"])
    expect(page.locator(".ft-row.selected")).to_have_count(2)
    page.get_by_test_id("diff-selected").click()
    expect(dialog.get_by_test_id("diff-request-line").locator(".d-add")).to_contain_text(
        "POST", timeout=WAIT
    )
    expect(dialog.get_by_test_id("diff-request-body").locator(".d-add").first).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_rule_markers(ui: Ui) -> None:
    page = ui.page
    echoed = json.loads(finished(ui.curl("/echo/ruled/a")))
    assert ["x-stamped", "by-rule"] in [[k.lower(), v] for k, v in echoed["headers"]]
    markers = ui.rows("/echo/ruled/a").locator("[data-col=markers]")
    expect(markers).to_contain_text("⚙", timeout=WAIT)  # a rule fired
    expect(markers).to_contain_text("✎")  # and changed the request
    expect(markers).to_have_attribute("title", re.compile("rules: stamp-ruled"))
    ui.open_flow("/echo/ruled/a")
    page.get_by_test_id("tab-rules").click()
    expect(page.get_by_test_id("rules")).to_contain_text("stamp-ruled", timeout=WAIT)
    expect(page.get_by_test_id("rules")).to_contain_text("ui.yaml")
    ui.shot("3-details-rules")
    page.get_by_test_id("tab-request").click()
    sent = page.get_by_test_id("request-changed").locator("table.headers").nth(1)
    expect(sent.locator("tr.hdr-diff")).to_contain_text("by-rule", timeout=WAIT)


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
