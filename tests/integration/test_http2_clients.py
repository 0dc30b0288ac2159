"""HTTP/2 from real clients through the proxy to an HTTP/1.1-only upstream (issue 15).

curl and nghttp speak HTTP/2 to the proxy four ways (``tests.support.h2clients``):
prior-knowledge h2c to a reverse listener and to a forward listener, h2c
inside a CONNECT tunnel of an intercepting listener, and h2 in TLS (ALPN)
through ``--mitm`` (curl with ``-x``; nghttp, which has no proxy option,
to a reverse listener with ``--mitm``). The upstream is aiohttp, which
speaks HTTP/1.1 only. Bodies of 0 B and 1 MiB must be byte-identical both
ways, uploads with and without ``content-length`` (chunked upstream), and
every stream's record must say HTTP/2.0.

Headless Chromium, last, loads a page through ``--mitm`` and gets h2.
Rules and trailers on h2 streams: ``test_http2_rules``; h2load and a slow
reader of 1 GiB: ``test_http2_load``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web

from tests.integration.test_chromium import CHROMIUM, chromium_through
from tests.support.certs import CertAuthority
from tests.support.h2clients import (
    Route,
    assert_h2_record,
    records_for,
    tag,
    write_pattern,
)
from tests.support.proxyproc import start_proxy
from tests.support.upstreams import (
    Upstreams,
    make_app,
    pattern_chunks,
    pattern_sha256,
    start_https,
)

MIB = 1024 * 1024
SIZES = [0, MIB]
CURL_ROUTES = ["reverse", "forward", "tunnel", "mitm"]
NGHTTP_ROUTES = ["reverse", "forward", "reverse-tls"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def origin_tls(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CertAuthority, int]]:
    """The same aiohttp app over HTTPS, its certificate from a test CA."""
    ca = CertAuthority.create(tmp_path_factory.mktemp("h2-origin-ca"))
    cert = ca.server_cert(["localhost", "127.0.0.1"], "origin.pem")
    runner, port = upstreams.call(start_https(make_app(), str(cert)))
    yield ca, port
    upstreams.call(runner.cleanup())


@pytest.fixture(scope="module")
def routes(
    upstreams: Upstreams,
    origin_tls: tuple[CertAuthority, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Route]]:
    d = tmp_path_factory.mktemp("h2clients")
    ca, tls_port = origin_tls
    tls = ("--certs", str(d / "certs"), "--upstream-ca", str(ca.cert_path))
    rev = start_proxy("--mode", "reverse:" + upstreams.url, flow_log=d / "rev.jsonl")
    fwd = start_proxy(flow_log=d / "fwd.jsonl")
    mitm = start_proxy("--mitm", *tls, flow_log=d / "mitm.jsonl")  # creates the CA first
    rtls = start_proxy(
        "--mode", f"reverse:https://localhost:{tls_port}", "--mitm", *tls,
        flow_log=d / "rtls.jsonl",
    )  # fmt: skip
    our_ca = str(d / "certs" / "tapproxy-ca.pem")
    up = upstreams.port
    pk = "--http2-prior-knowledge"
    to_fwd = ("--connect-to", f"127.0.0.1:{up}:127.0.0.1:{fwd.port}")
    yield {
        "reverse": Route("reverse", rev, rev.url, (pk,), rev.url),
        "forward": Route(
            "forward", fwd, upstreams.url, (pk, *to_fwd),
            fwd.url, ("-H", f":authority: 127.0.0.1:{up}"),
        ),
        "tunnel": Route("tunnel", mitm, upstreams.url, (pk, "-p", "-x", mitm.url)),
        "mitm": Route(
            "mitm", mitm, f"https://localhost:{tls_port}",
            ("--http2", "-x", mitm.url, "--cacert", our_ca),
        ),
        "reverse-tls": Route(
            "reverse-tls", rtls, f"https://localhost:{rtls.port}", (),
            f"https://localhost:{rtls.port}",
        ),
    }  # fmt: skip
    for p in (rev, fwd, mitm, rtls):
        p.stop()


def check_tls(route: Route, rec: dict[str, object]) -> None:
    """Over TLS, the client and the proxy agreed on h2 by ALPN."""
    if route.origin.startswith("https:"):
        tls = rec["tls"]
        assert isinstance(tls, dict) and tls["client"]["alpn"] == "h2", tls


# -- curl ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", CURL_ROUTES)
def test_curl_download(name: str, size: int, routes: dict[str, Route], tmp_path: Path) -> None:
    route = routes[name]
    marker = tag()
    out = tmp_path / "body"
    res = route.curl(f"/bytes/{size}?{marker}", out)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "2 200", "curl reports HTTP/2"
    assert sha(out) == pattern_sha256(size)
    [rec] = records_for(route.proxy, marker)
    assert_h2_record(rec)
    assert rec["response"]["body_size"] == size
    check_tls(route, rec)


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", CURL_ROUTES)
def test_curl_upload(
    name: str, size: int, framing: str, routes: dict[str, Route], tmp_path: Path
) -> None:
    """POST with ``content-length``, and without (curl's header removed): the
    HTTP/1.1 upstream gets the same bytes, length-framed or chunked."""
    route = routes[name]
    body = write_pattern(tmp_path / "up", pattern_chunks(size))
    extra = ["--data-binary", f"@{body}", "-H", "content-type: application/octet-stream"]
    if framing == "chunked":
        extra += ["-H", "Content-Length:"]
    marker = tag()
    out = tmp_path / "answer"
    res = route.curl(f"/upload?{marker}", out, *extra)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "2 200"
    seen = json.loads(out.read_bytes())
    assert (seen["sha256"], seen["size"]) == (pattern_sha256(size), size)
    if size:
        assert seen["chunked"] is (framing == "chunked"), seen
    [rec] = records_for(route.proxy, marker)
    assert_h2_record(rec)
    assert rec["request"]["body_size"] == size
    check_tls(route, rec)


# -- nghttp --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", NGHTTP_ROUTES)
def test_nghttp_download(name: str, size: int, routes: dict[str, Route]) -> None:
    route = routes[name]
    marker = tag()
    res = route.nghttp(f"/bytes/{size}?{marker}")
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(res.stdout).hexdigest() == pattern_sha256(size)
    [rec] = records_for(route.proxy, marker)
    assert_h2_record(rec)
    check_tls(route, rec)


@pytest.mark.parametrize("name", NGHTTP_ROUTES)
def test_nghttp_verbose_frames(name: str, routes: dict[str, Route]) -> None:
    """``nghttp -nv``: our SETTINGS, the response HEADERS and END_STREAM on the stream."""
    route = routes[name]
    marker = tag()
    res = route.nghttp(f"/bytes/100?{marker}", "-nv")
    assert res.returncode == 0, res.stderr
    text = res.stdout.decode()
    assert "recv SETTINGS frame" in text
    m = re.search(r"recv \(stream_id=(\d+)\) :status: 200", text)
    assert m, text
    assert re.search(rf"recv DATA frame <length=\d+, flags=0x01, stream_id={m.group(1)}>", text)
    if route.nghttp_base and route.nghttp_base.startswith("https:"):
        assert "The negotiated protocol: h2" in text
    assert_h2_record(records_for(route.proxy, marker)[0])


@pytest.mark.parametrize("name", NGHTTP_ROUTES)
def test_nghttp_twenty_concurrent_streams(name: str, routes: dict[str, Route]) -> None:
    """``nghttp -m 20``: 20 streams of 1 MiB at once on one connection, each its own
    exchange, all complete, and in flight together."""
    route = routes[name]
    marker = tag()
    res = route.nghttp(f"/bytes/{MIB}?{marker}", "-n", "-s", "-m", "20")
    assert res.returncode == 0, res.stderr
    rows = re.findall(rb"^\s*\d+\s+\+\S+\s+\+\S+\s+\S+\s+(\d{3})\s+(\S+)\s", res.stdout, re.M)
    assert rows == [(b"200", b"1M")] * 20, res.stdout.decode()
    recs = records_for(route.proxy, marker, 20)
    for rec in recs:
        assert_h2_record(rec)
        assert rec["response"]["body_size"] == MIB
    assert len({rec["client"]["port"] for rec in recs}) == 1, "one client connection"
    starts = [datetime.fromisoformat(r["start"]) for r in recs]
    ends = [datetime.fromisoformat(r["end"]) for r in recs]
    assert max(starts) < min(ends), "the streams were in flight at the same time"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", NGHTTP_ROUTES)
def test_nghttp_upload(name: str, size: int, routes: dict[str, Route], tmp_path: Path) -> None:
    route = routes[name]
    body = write_pattern(tmp_path / "up", pattern_chunks(size))
    marker = tag()
    res = route.nghttp(f"/upload?{marker}", "-d", str(body))
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    assert (seen["sha256"], seen["size"]) == (pattern_sha256(size), size)
    [rec] = records_for(route.proxy, marker)
    assert_h2_record(rec)
    assert rec["request"]["body_size"] == size


# -- headless Chromium ---------------------------------------------------------------------------

PAGE = (
    "<html><head><link rel=stylesheet href=/h2.css></head>"
    "<body><h1 id=t>h2 hello</h1></body></html>"
)


async def _page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def _css(request: web.Request) -> web.Response:
    return web.Response(text="h1 { color: #336; }\n", content_type="text/css")


@pytest.mark.skipif(not (CHROMIUM and shutil.which("certutil")), reason="chromium/certutil missing")
def test_chromium_gets_h2_through_mitm(upstreams: Upstreams, tmp_path: Path) -> None:
    """Chromium (trusting only our CA) loads an HTTPS page through ``--mitm``: ALPN h2
    with the proxy, every request of the page an HTTP/2 stream, the origin HTTP/1.1."""
    assert CHROMIUM is not None
    origin_ca = CertAuthority.create(tmp_path / "origin-ca")
    app = web.Application()
    app.router.add_get("/page", _page)
    app.router.add_get("/h2.css", _css)
    runner, port = upstreams.call(
        start_https(app, str(origin_ca.server_cert(["localhost"], "page.pem")))
    )
    certs = tmp_path / "certs"
    p = start_proxy(
        "--mitm", "--certs", str(certs), "--upstream-ca", str(origin_ca.cert_path),
        flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    try:
        url = f"https://localhost:{port}/page"
        out = chromium_through(p.url, certs / "tapproxy-ca.pem", url, tmp_path)
        assert '<h1 id="t">h2 hello</h1>' in out.stdout, out.stderr[-2000:]
        page = [r for r in p.records(1) if r.get("request", {}).get("url", "").endswith("/page")]
        assert page, [r.get("request") for r in p.records()]
        rec = page[0]
        assert_h2_record(rec)
        assert rec["tls"]["intercepted"] is True
        assert rec["tls"]["client"]["alpn"] == "h2", rec["tls"]
        assert "h2" in rec["tls"]["client"]["offered_alpn"]
        css = records_for(p, "/h2.css")
        assert_h2_record(css[0])
        assert css[0]["client"]["port"] == rec["client"]["port"], "one h2 connection, two streams"
    finally:
        p.stop()
        upstreams.call(runner.cleanup())
