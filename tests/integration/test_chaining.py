"""Upstream chaining end to end: curl -> tapproxy -> a second tapproxy -> local upstreams.

The next proxy is a second tapproxy started by the test: a regular forward
proxy that demands ``--proxy-auth``, and a SOCKS5 listener that does too.
Plain HTTP goes to it in absolute-form over kept-alive connections, CONNECT
tunnels are opened through it (passed through, or intercepted with
``--mitm``: TLS to the origin inside the next proxy's tunnel), its 407 and
its absence become 502s that name it, bypass and per-host rules go direct
or elsewhere, and every record names the route.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.certs import CertAuthority
from tests.support.proxyproc import ProxyProcess, our_ca, record_for, start_proxy
from tests.support.upstreams import RawConnection, Upstreams, make_app, start_https


@dataclass
class Origins:
    ca: CertAuthority
    http: int
    https: int  # certificate for localhost and 127.0.0.1


@pytest.fixture(scope="module")
def origins(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    ca = CertAuthority.create(tmp_path_factory.mktemp("chain-ca"))
    cert = ca.server_cert(["localhost", "127.0.0.1"], "origin.pem")
    runner, port = upstreams.call(start_https(make_app(), str(cert)))
    yield Origins(ca, upstreams.port, port)
    upstreams.call(runner.cleanup())


@pytest.fixture(scope="module")
def next_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """The next proxy: tapproxy in regular mode demanding Basic credentials."""
    d = tmp_path_factory.mktemp("next")
    p = start_proxy("--proxy-auth", "corp:pw", flow_log=d / "next.jsonl")
    yield p
    p.stop()


@pytest.fixture(scope="module")
def next_socks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    d = tmp_path_factory.mktemp("nextsocks")
    p = start_proxy("--mode", "socks5", "--proxy-auth", "sock:pw", flow_log=d / "socks.jsonl")
    yield p
    p.stop()


@pytest.fixture(scope="module")
def chained(
    next_proxy: ProxyProcess, origins: Origins, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """The proxy under test: intercepts localhost only, everything via the next proxy."""
    d = tmp_path_factory.mktemp("chained")
    p = start_proxy(
        "--mode", f"upstream:http://127.0.0.1:{next_proxy.port}", "--upstream-auth", "corp:pw",
        "--mitm-hosts", "^localhost:", "--certs", str(d / "certs"),
        "--upstream-ca", str(origins.ca.cert_path),
        flow_log=d / "flows.jsonl",
    )  # fmt: skip
    yield p
    p.stop()


def curl(proxy: ProxyProcess, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "-x", proxy.url, "-w", "\n%{http_code}", url, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def body_status(out: subprocess.CompletedProcess[str]) -> tuple[str, int]:
    body, _, status = out.stdout.rpartition("\n")
    return body, int(status)


def test_plain_http_goes_in_absolute_form_over_a_kept_connection(
    chained: ProxyProcess, next_proxy: ProxyProcess, origins: Origins
) -> None:
    url = f"http://127.0.0.1:{origins.http}/echo/plain"
    out = curl(chained, url, url)  # two requests on one client connection
    assert out.returncode == 0, out.stderr
    bodies = out.stdout.split("\n200")
    assert json.loads(bodies[0])["path"] == "/echo/plain"
    seen = [r for r in next_proxy.records(2) if str(r["request"]["url"]).endswith("/echo/plain")]
    assert len(seen) >= 2
    # The next proxy read absolute-form (its record's URL is absolute) with our
    # credentials (else it would have answered 407), over one kept connection.
    assert seen[-1]["request"]["url"] == url
    assert seen[-1]["client"] == seen[-2]["client"]
    ours = record_for(chained, lambda r: r.get("request", {}).get("url") == url)
    assert ours["route"] == {"via": f"http://127.0.0.1:{next_proxy.port}", "original_dst": None}
    assert "corp:pw" not in json.dumps(ours)


def test_connect_passthrough_goes_through_the_next_proxys_tunnel(
    chained: ProxyProcess, next_proxy: ProxyProcess, origins: Origins
) -> None:
    url = f"https://127.0.0.1:{origins.https}/echo/tunnel"
    out = curl(chained, url, "--cacert", str(origins.ca.cert_path))
    body, status = body_status(out)
    assert status == 200 and json.loads(body)["path"] == "/echo/tunnel", out.stderr
    ours = record_for(chained, lambda r: r["kind"] == "tunnel" and str(origins.https) in str(r))
    assert ours["route"]["via"] == f"http://127.0.0.1:{next_proxy.port}"
    assert ours["server"]["port"] == next_proxy.port
    theirs = record_for(
        next_proxy, lambda r: r["kind"] == "tunnel" and str(origins.https) in str(r)
    )
    assert theirs["request"]["url"] == f"127.0.0.1:{origins.https}"


def test_intercepted_https_opens_tls_to_the_origin_inside_the_tunnel(
    chained: ProxyProcess, next_proxy: ProxyProcess, origins: Origins
) -> None:
    url = f"https://localhost:{origins.https}/echo/mitm"
    out = curl(chained, url, "--cacert", our_ca(chained))
    body, status = body_status(out)
    assert status == 200 and json.loads(body)["path"] == "/echo/mitm", out.stderr
    ours = record_for(chained, lambda r: r.get("request", {}).get("url") == url)
    assert ours["tls"]["intercepted"] is True
    assert ours["tls"]["server"]["sni"] == "localhost"
    assert ours["route"]["via"] == f"http://127.0.0.1:{next_proxy.port}"
    # The TLS to the origin ran inside the next proxy's tunnel: our TCP peer was
    # the next proxy (whose tunnel record comes once the pooled connection ends).
    assert ours["server"]["port"] == next_proxy.port


def test_missing_credentials_name_the_next_proxys_407(
    next_proxy: ProxyProcess, origins: Origins, tmp_path: Path
) -> None:
    p = start_proxy("--mode", f"upstream:http://127.0.0.1:{next_proxy.port}")
    try:
        raw = _connect_answer(p, f"127.0.0.1:{origins.https}")
        assert raw.startswith(b"HTTP/1.1 502"), raw
        why = f"next proxy 127.0.0.1:{next_proxy.port}: 407 Proxy Authentication Required"
        assert why in raw.decode()
        # A plain request goes to the next proxy as is: its own 407 reaches the client.
        _, status = body_status(curl(p, f"http://127.0.0.1:{origins.http}/echo"))
        assert status == 407
    finally:
        p.stop()


def test_a_down_next_proxy_gives_502_naming_it(origins: Origins, tmp_path: Path) -> None:
    p = start_proxy("--mode", "upstream:http://127.0.0.1:1", flow_log=tmp_path / "f.jsonl")
    try:
        body, status = body_status(curl(p, f"http://127.0.0.1:{origins.http}/echo"))
        assert status == 502 and "next proxy 127.0.0.1:1: connection refused" in body
        raw = _connect_answer(p, f"127.0.0.1:{origins.https}")
        assert raw.startswith(b"HTTP/1.1 502") and b"next proxy 127.0.0.1:1" in raw
        rec = record_for(p, lambda r: r["kind"] == "http")
        assert rec["route"]["via"] == "http://127.0.0.1:1"
        assert "next proxy 127.0.0.1:1: connection refused" in str(rec["error"])
    finally:
        p.stop()


def test_bypass_goes_direct(origins: Origins, tmp_path: Path) -> None:
    p = start_proxy(
        "--mode", "upstream:http://127.0.0.1:1", "--upstream-bypass", "127.0.0.0/8",
        flow_log=tmp_path / "f.jsonl",
    )  # fmt: skip
    try:
        _, status = body_status(curl(p, f"http://127.0.0.1:{origins.http}/echo"))
        assert status == 200
        assert record_for(p, lambda r: r["kind"] == "http")["route"]["via"] == "direct"
    finally:
        p.stop()


def test_socks5_next_proxy_with_credentials(
    next_socks: ProxyProcess, origins: Origins, tmp_path: Path
) -> None:
    p = start_proxy(
        "--mode", f"upstream:socks5://127.0.0.1:{next_socks.port}", "--upstream-auth", "sock:pw",
        flow_log=tmp_path / "f.jsonl",
    )  # fmt: skip
    try:
        body, status = body_status(curl(p, f"http://localhost:{origins.http}/echo/s"))
        assert status == 200 and json.loads(body)["path"] == "/echo/s"
        out = curl(
            p, f"https://localhost:{origins.https}/echo/t", "--cacert", str(origins.ca.cert_path)
        )
        body, status = body_status(out)
        assert status == 200 and json.loads(body)["path"] == "/echo/t", out.stderr
        rec = record_for(p, lambda r: r["kind"] == "http")
        assert rec["route"]["via"] == f"socks5://127.0.0.1:{next_socks.port}"
        # The SOCKS5 proxy resolved the name itself (remote DNS): it recorded "localhost".
        record_for(
            next_socks, lambda r: r.get("request", {}).get("url", "").startswith("http://localhost")
        )
    finally:
        p.stop()
    bad = start_proxy("--mode", f"upstream:socks5://127.0.0.1:{next_socks.port}")
    try:
        body, status = body_status(curl(bad, f"http://localhost:{origins.http}/echo"))
        assert status == 502 and f"next proxy 127.0.0.1:{next_socks.port}" in body
        assert "user name and password" in body or "authentication" in body
    finally:
        bad.stop()


def test_rules_route_per_host(next_socks: ProxyProcess, origins: Origins, tmp_path: Path) -> None:
    rules = tmp_path / "route.yaml"
    rules.write_text(
        "version: 1\ntcp:\n"
        f"  - match: {{host: localhost}}\n"
        f"    route: {{via: 'socks5://sock:pw@127.0.0.1:{next_socks.port}'}}\n"
    )
    p = start_proxy("--rules", str(rules), flow_log=tmp_path / "f.jsonl")
    try:
        assert body_status(curl(p, f"http://localhost:{origins.http}/echo/r"))[1] == 200
        assert body_status(curl(p, f"http://127.0.0.1:{origins.http}/echo/d"))[1] == 200
        via = {str(r["request"]["url"]).rsplit("/", 1)[-1]: r["route"]["via"] for r in p.records(2)}
        assert via == {"r": f"socks5://127.0.0.1:{next_socks.port}", "d": "direct"}
    finally:
        p.stop()


def _connect_answer(p: ProxyProcess, authority: str) -> bytes:
    with socket.create_connection(("127.0.0.1", p.port), timeout=15) as s:
        s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or len(data) < 200:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


async def _split_answer(conn: RawConnection) -> None:
    """A next proxy whose answer comes in two segments, the origin's first bytes
    right behind it (a server that speaks first, like SSH or SMTP)."""
    await conn.read_until(b"\r\n\r\n")
    conn.send(b"HTTP/1.1 200 Connection established\r\n")
    await conn.writer.drain()
    await asyncio.sleep(0.05)  # shapes the segments; the test holds either way
    conn.send(b"\r\nSSH-2.0-origin\r\n")
    await conn.read_until(b"ping")
    conn.send(b"pong")
    await conn.writer.drain()


def test_no_byte_past_the_next_proxys_answer_is_lost(upstreams: Upstreams) -> None:
    raw = upstreams.raw(_split_answer)
    p = start_proxy("--mode", f"upstream:http://127.0.0.1:{raw.port}")
    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=15) as s:
            s.sendall(b"CONNECT ssh.test:22 HTTP/1.1\r\nHost: ssh.test:22\r\n\r\n")
            data = b""
            while b"SSH-2.0-origin\r\n" not in data:
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")
            s.sendall(b"ping")
            assert s.recv(4) == b"pong"
        assert raw.connections[0].received.startswith(b"CONNECT ssh.test:22 HTTP/1.1\r\n")
    finally:
        p.stop()


def test_a_socks5_listener_chains_through_a_route_rule(
    next_proxy: ProxyProcess, origins: Origins, tmp_path: Path
) -> None:
    """SOCKS5 in, an HTTP next proxy out (mitmproxy #211's combination): a rule
    without a match routes every connection."""
    rules = tmp_path / "all.yaml"
    rules.write_text(
        f"version: 1\ntcp:\n  - route: {{via: 'http://corp:pw@127.0.0.1:{next_proxy.port}'}}\n"
    )
    p = start_proxy("--mode", "socks5", "--rules", str(rules), flow_log=tmp_path / "f.jsonl")
    try:
        url = f"http://localhost:{origins.http}/echo/socks-chain"
        out = subprocess.run(
            ["curl", "-sS", "--socks5-hostname", f"127.0.0.1:{p.port}", url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert json.loads(out.stdout)["path"] == "/echo/socks-chain", out.stderr
        rec = record_for(p, lambda r: r.get("request", {}).get("url") == url)
        assert rec["mode"] == "socks5"
        assert rec["route"]["via"] == f"http://127.0.0.1:{next_proxy.port}"
        record_for(next_proxy, lambda r: r.get("request", {}).get("url") == url)
    finally:
        p.stop()


async def _tls_front(cert: Path, backend: int) -> asyncio.Server:
    """TLS in front of a plain next proxy: makes it an ``https://`` next proxy."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert)

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        br, bw = await asyncio.open_connection("127.0.0.1", backend)
        await asyncio.gather(pipe(r, bw), pipe(br, w))

    return await asyncio.start_server(accept, "127.0.0.1", 0, ssl=ctx)


def test_https_next_proxy(
    upstreams: Upstreams, next_proxy: ProxyProcess, origins: Origins, tmp_path: Path
) -> None:
    cert = origins.ca.server_cert(["localhost", "127.0.0.1"], "front.pem")
    front = upstreams.call(_tls_front(cert, next_proxy.port))
    port = front.sockets[0].getsockname()[1]
    p = start_proxy(
        "--mode", f"upstream:https://localhost:{port}", "--upstream-auth", "corp:pw",
        "--upstream-ca", str(origins.ca.cert_path), flow_log=tmp_path / "f.jsonl",
    )  # fmt: skip
    try:
        # Plain HTTP in absolute-form over TLS to the next proxy, then a tunnel
        # inside it with TLS to the origin inside that (TLS in TLS).
        body, status = body_status(curl(p, f"http://127.0.0.1:{origins.http}/echo/hp"))
        assert status == 200 and json.loads(body)["path"] == "/echo/hp"
        url = f"https://localhost:{origins.https}/echo/hs"
        body, status = body_status(curl(p, url, "--cacert", str(origins.ca.cert_path)))
        assert status == 200 and json.loads(body)["path"] == "/echo/hs"
        rec = record_for(p, lambda r: r["kind"] == "http")
        assert rec["route"]["via"] == f"https://localhost:{port}"
    finally:
        p.stop()
    # A next proxy whose certificate we do not trust is named as such.
    bad = start_proxy("--mode", f"upstream:https://localhost:{port}")
    try:
        body, status = body_status(curl(bad, f"http://127.0.0.1:{origins.http}/echo"))
        assert status == 502
        assert f"next proxy localhost:{port}: certificate verification failed" in body
    finally:
        bad.stop()
        front.close()
