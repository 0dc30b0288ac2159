"""The web UI's view of a capped store (issue 18): with ``--web-max-flows 5``
and eight flows sent, the status bar says the oldest three were dropped and
the list keeps the newest five, live and after a reload. Headless Chromium
(Playwright, the system's Chromium) against a real proxy and upstream; a
module of its own because Playwright's sync API runs one instance at a time
(test_web_ui.py keeps one for its module)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from tests.support.webui import CHROMIUM, WAIT, finished, running_ui

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the system's Chromium")


def test_store_drops_shown(tmp_path: Path) -> None:
    with running_ui(tmp_path, "--web-max-flows", "5") as ui:
        page = ui.page
        expect(page.get_by_test_id("st-conn")).to_have_text("connected", timeout=WAIT)
        urls = [f"{ui.upstream.url}/echo/n/{i}" for i in range(2, 9)]
        finished(ui.curl("/echo/n/1", *urls))
        expect(page.get_by_test_id("st-stored")).to_have_text("5 stored", timeout=WAIT)
        dropped = page.get_by_test_id("st-dropped")
        expect(dropped).to_have_text("the oldest 3 flows were dropped (store limit)", timeout=WAIT)
        expect(ui.rows()).to_have_count(5, timeout=WAIT)
        expect(ui.rows("/echo/n/3")).to_have_count(0)
        expect(ui.rows("/echo/n/8")).to_have_count(1)
        page.reload()  # a fresh list says the same
        expect(ui.rows()).to_have_count(5, timeout=WAIT)
        expect(dropped).to_be_visible(timeout=WAIT)
