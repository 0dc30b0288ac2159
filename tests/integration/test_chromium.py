"""Headless Chromium loads an HTTPS page through the intercepting proxy.

Chromium trusts only our CA (added to a fresh NSS database with certutil);
the upstream's own certificate comes from a test CA Chromium does not know,
so a page that renders proves the proxy's leaf was accepted. Chromium's own
background services are pointed at a dead loopback port so that no request
leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.certs import CertAuthority
from tests.support.proxyproc import running_proxy
from tests.support.upstreams import Upstreams, start_https

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DEAD = "http://127.0.0.1:9"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-pings", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--disable-default-apps", "--disable-extensions", "--disable-breakpad",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    f"--component-updater=url-source={DEAD}/", f"--gaia-url={DEAD}", f"--google-apis-url={DEAD}",
    f"--lso-url={DEAD}",
]  # fmt: skip


def chromium_through(
    proxy_url: str, ca_pem: Path, url: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Headless Chromium trusting only ``ca_pem`` (a fresh NSS database), through
    ``proxy_url``, dumping the DOM of ``url``; bounded by a 90 s timeout."""
    assert CHROMIUM is not None
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    env = dict(os.environ, HOME=str(home))
    db = f"sql:{nssdb}"
    subprocess.run(["certutil", "-d", db, "-N", "--empty-password"], check=True, env=env)
    subprocess.run(
        ["certutil", "-d", db, "-A", "-t", "C,,", "-n", "tapproxy", "-i", str(ca_pem)],
        check=True, env=env,
    )  # fmt: skip
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--proxy-server={proxy_url}", "--proxy-bypass-list=<-loopback>", "--dump-dom", url],
        capture_output=True, text=True, timeout=90, env=env,
    )  # fmt: skip


async def _page(request: web.Request) -> web.Response:
    return web.Response(
        text="<html><body><h1 id=t>intercepted hello</h1></body></html>", content_type="text/html"
    )


@pytest.mark.skipif(not (CHROMIUM and shutil.which("certutil")), reason="chromium/certutil missing")
def test_chromium_loads_https_page_through_mitm(upstreams: Upstreams, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    test_ca = CertAuthority.create(tmp_path / "upstream-ca")
    cert = test_ca.server_cert(["localhost"], "page.pem")
    app = web.Application()
    app.router.add_get("/page", _page)
    runner, port = upstreams.call(start_https(app, str(cert)))
    certs = tmp_path / "certs"
    try:
        with running_proxy(
            "--mitm", "--certs", str(certs), "--upstream-ca", str(test_ca.cert_path),
            flow_log=tmp_path / "flows.jsonl",
        ) as p:  # fmt: skip
            url = f"https://localhost:{port}/page"
            out = chromium_through(p.url, certs / "tapproxy-ca.pem", url, tmp_path)
            assert '<h1 id="t">intercepted hello</h1>' in out.stdout, out.stderr[-2000:]
            recs = [r for r in p.records(1) if r["request"]["url"].endswith("/page")]
        assert recs and recs[0]["tls"]["intercepted"] is True
        assert recs[0]["response"]["status"] == 200
    finally:
        upstreams.call(runner.cleanup())
