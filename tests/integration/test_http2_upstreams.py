"""HTTP/2 servers behind the proxy: Debian's nghttpd as the origin (issue 15).

nghttpd speaks HTTP/2 only (``tests.support.nghttpd``), h2c or h2 in TLS,
serves files and echoes uploads. Three routes reach it, each with the
clients that can take it:

* ``h2c``: ``--mode reverse:h2c://127.0.0.1:PORT``, prior-knowledge h2c to
  the server for any client: curl ``--http2-prior-knowledge``, curl
  ``--http1.1`` (an HTTP/1.1 client translated to an h2c server) and nghttp;
* ``tls``: ``--mode reverse:https://localhost:PORT``, the server's ALPN
  choosing h2: curl ``--http1.1`` and curl ``--http2-prior-knowledge`` to
  the plain listener;
* ``mitm``: a forward ``--mitm`` listener, curl ``--http2 -x``: h2 in TLS
  on both legs.

0 B and 1 MiB downloads and uploads must be byte-identical (sha256), the
record must show the client's protocol, and the upstream leg must be shown
to be HTTP/2, twice:

* by the record (``server_version``): a response the client got in another
  HTTP version than the server's (translated) carries the server's as
  ``response.upstream``, so the server's version is
  ``response.upstream.http_version`` when that is there (an HTTP/1.1
  client: ``HTTP/1.1`` at the top, ``HTTP/2.0`` from the server), else
  ``response.http_version`` (an HTTP/2 client, nothing translated); and,
  over TLS, ``tls.server.alpn == "h2"``;
* independently of the proxy, by nghttpd's verbose log holding the
  request's own ``:path`` (with its unique ``?t=`` marker) as a field it
  decoded from a HEADERS frame: ``recv (stream_id=N) :path: ...`` is printed
  only by its HTTP/2 session (and nghttpd answers no HTTP/1.1 request).

Headless Chromium, last, gets h2 on both legs through ``--mitm``.
1 GiB bodies and h2load: ``test_http2_upstreams_load``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_chromium import CHROMIUM, chromium_through
from tests.support.certs import CertAuthority
from tests.support.h2clients import Route, records_for, tag, write_pattern
from tests.support.nghttpd import NGHTTPD, Nghttpd, start_nghttpd
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import pattern_chunks, pattern_sha256

pytestmark = pytest.mark.skipif(not NGHTTPD, reason="nghttpd (nghttp2-server) missing")

MIB = 1024 * 1024
SIZES = [0, MIB]
FILES = {0: "zero", MIB: "mib"}
PK = "--http2-prior-knowledge"


@dataclass(frozen=True)
class Case:
    """A client on a route: how it speaks to the proxy and which nghttpd is behind."""

    route: Route
    client: str  # "curl" or "nghttp"
    h2: bool  # the client speaks HTTP/2 to the proxy
    origin: Nghttpd
    tls_upstream: bool
    tls_client: bool


CASES = ["h2c/curl-h2", "h2c/curl-h1", "h2c/nghttp", "tls/curl-h1", "tls/curl-h2", "mitm/curl-h2"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CertAuthority, Path, Path]]:
    """The origin's CA, certificate (chain and key) and document root."""
    d = tmp_path_factory.mktemp("h2-upstreams")
    ca = CertAuthority.create(d / "origin-ca")
    cert = ca.server_cert(["localhost", "127.0.0.1"], "nghttpd.pem")
    www = d / "www"
    www.mkdir()
    for size, name in FILES.items():
        write_pattern(www / name, pattern_chunks(size))
    yield ca, cert, www


@pytest.fixture(scope="module")
def cases(
    site: tuple[CertAuthority, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Case]]:
    ca, cert, www = site
    d = tmp_path_factory.mktemp("h2-upstream-routes")
    h2c = start_nghttpd(d / "h2c", www)
    tls = start_nghttpd(d / "tls", www, cert=cert)
    up_ca = ("--upstream-ca", str(ca.cert_path))
    procs: list[ProxyProcess] = []
    try:
        rev_h2c = start_proxy("--mode", f"reverse:h2c://127.0.0.1:{h2c.port}", flow_log=d / "a")
        procs.append(rev_h2c)
        rev_tls = start_proxy(
            "--mode", f"reverse:https://localhost:{tls.port}", *up_ca, flow_log=d / "b"
        )  # fmt: skip
        procs.append(rev_tls)
        mitm = start_proxy("--mitm", "--certs", str(d / "certs"), *up_ca, flow_log=d / "c")
        procs.append(mitm)
        our_ca = str(d / "certs" / "tapproxy-ca.pem")
        mitm_args = ("--http2", "-x", mitm.url, "--cacert", our_ca)
        a = Route("h2c", rev_h2c, rev_h2c.url, (PK,), rev_h2c.url)
        a1 = Route("h2c", rev_h2c, rev_h2c.url, ("--http1.1",))
        b = Route("tls", rev_tls, rev_tls.url, (PK,))
        b1 = Route("tls", rev_tls, rev_tls.url, ("--http1.1",))
        c = Route("mitm", mitm, f"https://localhost:{tls.port}", mitm_args)
        yield {
            "h2c/curl-h2": Case(a, "curl", True, h2c, False, False),
            "h2c/curl-h1": Case(a1, "curl", False, h2c, False, False),
            "h2c/nghttp": Case(a, "nghttp", True, h2c, False, False),
            "tls/curl-h1": Case(b1, "curl", False, tls, True, False),
            "tls/curl-h2": Case(b, "curl", True, tls, True, False),
            "mitm/curl-h2": Case(c, "curl", True, tls, True, True),
        }
    finally:
        for p in procs:
            p.stop()
        h2c.stop()
        tls.stop()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(case: Case, path: str, out: Path, upload: Path | None = None) -> None:
    """One request with the case's client; the body lands in ``out``. curl must
    report the protocol it spoke (``2`` or ``1.1``) and a 200."""
    if case.client == "nghttp":
        res = case.route.nghttp(path, *(["-d", str(upload)] if upload else []))
        assert res.returncode == 0, res.stderr
        out.write_bytes(res.stdout)
        return
    extra = ["--data-binary", f"@{upload}"] if upload else []
    done = case.route.curl(path, out, *extra)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("2 200" if case.h2 else "1.1 200"), done.stdout


def server_version(rec: dict[str, Any]) -> str:
    """The HTTP version of the response as the server sent it (docs/flow-log.md:
    ``response.upstream`` is there when the client got something else)."""
    response = rec["response"]
    version: str = (response.get("upstream") or response)["http_version"]
    return version


def check_record(case: Case, marker: str, method: str) -> dict[str, Any]:
    """The stream's record: the client's protocol, nghttpd's answer, and the upstream
    leg shown to be HTTP/2 (see the module's docstring for why these assertions)."""
    [rec] = records_for(case.route.proxy, marker)
    assert rec["error"] is None, rec["error"]
    version = "HTTP/2.0" if case.h2 else "HTTP/1.1"
    assert rec["request"]["http_version"] == version, rec["request"]
    assert rec["request"]["method"] == method
    assert rec["response"]["http_version"] == version, rec["response"]
    assert server_version(rec) == "HTTP/2.0", rec["response"]
    assert ("upstream" in rec["response"]) is (not case.h2), "present when translated"
    assert rec["response"]["status"] == 200
    assert rec["response"]["headers"][0][0] == "server", "nghttpd's own head"
    assert rec["server"]["port"] == case.origin.port, rec["server"]
    tls = rec.get("tls")
    if case.tls_upstream:
        assert tls and tls["server"]["alpn"] == "h2", tls
    if case.tls_client:
        assert tls and tls["intercepted"] is True and tls["client"]["alpn"] == "h2", tls
    else:
        assert tls is None or tls["client"] is None, tls
    log = case.origin.wait_log(marker)
    field = r"\[id=(\d+)\] \[ *[\d.]+\] recv \(stream_id=(\d+)\) "
    m = re.search(rf"{field}:path: /\S*\?{re.escape(marker)}\n", log)
    assert m, f"no HTTP/2 HEADERS field :path with {marker} in nghttpd's log"
    conn, stream = m.groups()
    same = rf"\[id={conn}\] \[ *[\d.]+\] recv \(stream_id={stream}\) "
    assert re.search(rf"{same}:method: {method}\n", log), "the same stream's :method"
    return rec


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", CASES)
def test_download(name: str, size: int, cases: dict[str, Case], tmp_path: Path) -> None:
    case = cases[name]
    marker = tag()
    out = tmp_path / "body"
    fetch(case, f"/{FILES[size]}?{marker}", out)
    assert out.stat().st_size == size
    assert sha(out) == pattern_sha256(size)
    rec = check_record(case, marker, "GET")
    assert rec["response"]["body_size"] == size


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", CASES)
def test_upload_echoed(name: str, size: int, cases: dict[str, Case], tmp_path: Path) -> None:
    """A POST body goes to nghttpd and comes back (``--echo-upload``) unchanged."""
    case = cases[name]
    body = write_pattern(tmp_path / "up", pattern_chunks(size))
    marker = tag()
    out = tmp_path / "echo"
    fetch(case, f"/echo?{marker}", out, body)
    assert out.stat().st_size == size
    assert sha(out) == pattern_sha256(size)
    rec = check_record(case, marker, "POST")
    assert rec["request"]["body_size"] == size
    assert rec["response"]["body_size"] == size
    assert ["nghttpd-response", "echo"] in rec["response"]["headers"]


# -- headless Chromium ---------------------------------------------------------------------------

PAGE = (
    "<html><head><link rel=stylesheet href=/h2up.css></head>"
    "<body><h1 id=t>nghttpd says hello</h1></body></html>"
)


@pytest.mark.skipif(not (CHROMIUM and shutil.which("certutil")), reason="chromium/certutil missing")
def test_chromium_gets_h2_on_both_legs_through_mitm(
    site: tuple[CertAuthority, Path, Path], tmp_path: Path
) -> None:
    """Chromium (trusting only our CA) loads a page from nghttpd over HTTPS through
    ``--mitm``: ALPN h2 with the proxy and h2 with nghttpd, page and stylesheet
    each a stream of one client connection."""
    assert CHROMIUM is not None
    ca, cert, _ = site
    www = tmp_path / "www"
    www.mkdir()
    (www / "page.html").write_text(PAGE)
    (www / "h2up.css").write_text("h1 { color: #336; }\n")
    origin = start_nghttpd(tmp_path / "nghttpd", www, cert=cert)
    certs = tmp_path / "certs"
    p = start_proxy(
        "--mitm", "--certs", str(certs), "--upstream-ca", str(ca.cert_path),
        flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    try:
        url = f"https://localhost:{origin.port}/page.html"
        out = chromium_through(p.url, certs / "tapproxy-ca.pem", url, tmp_path)
        assert '<h1 id="t">nghttpd says hello</h1>' in out.stdout, out.stderr[-2000:]
        page = records_for(p, "/page.html")[0]
        css = records_for(p, "/h2up.css")[0]
        for rec in (page, css):
            assert rec["error"] is None, rec["error"]
            assert rec["request"]["http_version"] == "HTTP/2.0", rec["request"]
            assert rec["response"]["http_version"] == "HTTP/2.0", rec["response"]
            assert server_version(rec) == "HTTP/2.0", rec["response"]
            assert rec["response"]["status"] == 200
            assert rec["server"]["port"] == origin.port
            tls = rec["tls"]
            assert tls["intercepted"] is True
            assert tls["client"]["alpn"] == "h2", tls
            assert tls["server"]["alpn"] == "h2", tls
        assert css["client"]["port"] == page["client"]["port"], "one h2 connection, two streams"
        origin.wait_log("recv (stream_id=")
        assert re.search(r"recv \(stream_id=\d+\) :path: /h2up\.css\n", origin.log_text())
    finally:
        p.stop()
        origin.stop()
