"""The SOCKS5 listener end to end, with curl and python-socks as clients.

``curl --socks5-hostname`` (the name resolved by the proxy) and ``curl
--socks5`` (resolved by curl: IPv4 and IPv6 literals), with and without
RFC 1929 credentials, plain HTTP and HTTPS intercepted with ``--mitm``;
python-socks as a second client; wrong credentials refused with RFC 1929
status 0x01; BIND refused with reply 0x07. Records name the mode and route.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from python_socks import ProxyError
from python_socks.sync import Proxy

from tests.support.certs import CertAuthority
from tests.support.proxyproc import ProxyProcess, our_ca, record_for, start_proxy
from tests.support.upstreams import Upstreams, make_app, start_https


@dataclass
class Origins:
    ca: CertAuthority
    http: int  # on 127.0.0.1
    http6: int  # on ::1
    https: int  # on 127.0.0.1, certificate for localhost and 127.0.0.1


async def _start_v6() -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "::1", 0)
    await site.start()
    assert site._server is not None
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def origins(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    ca = CertAuthority.create(tmp_path_factory.mktemp("socks-ca"))
    cert = ca.server_cert(["localhost", "127.0.0.1"], "origin.pem")
    runner, port = upstreams.call(start_https(make_app(), str(cert)))
    runner6, port6 = upstreams.call(_start_v6())
    yield Origins(ca, upstreams.port, port6, port)
    upstreams.call(runner.cleanup())
    upstreams.call(runner6.cleanup())


@pytest.fixture(scope="module")
def socks(origins: Origins, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    d = tmp_path_factory.mktemp("socks")
    p = start_proxy(
        "--mode", "socks5", "--mitm", "--certs", str(d / "certs"),
        "--upstream-ca", str(origins.ca.cert_path), flow_log=d / "flows.jsonl",
    )  # fmt: skip
    yield p
    p.stop()


@pytest.fixture(scope="module")
def socks_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    d = tmp_path_factory.mktemp("socksauth")
    p = start_proxy("--mode", "socks5", "--proxy-auth", "alice:s3cret", flow_log=d / "f.jsonl")
    yield p
    p.stop()


def curl(*args: str) -> tuple[str, int, str]:
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=60
    )
    body, _, status = out.stdout.rpartition("\n")
    return body, int(status or 0), out.stderr


def url_is(url: str) -> Callable[[Any], bool]:
    return lambda r: r.get("request", {}).get("url") == url


def test_curl_socks5_hostname_plain_http(socks: ProxyProcess, origins: Origins) -> None:
    url = f"http://localhost:{origins.http}/echo/h"
    body, status, err = curl("--socks5-hostname", f"127.0.0.1:{socks.port}", url)
    assert status == 200 and json.loads(body)["path"] == "/echo/h", err
    rec = record_for(socks, url_is(url))
    assert rec["mode"] == "socks5" and rec["kind"] == "http"
    assert rec["route"] == {"via": "direct", "original_dst": None}


def test_curl_socks5_ipv4_and_ipv6_literals(socks: ProxyProcess, origins: Origins) -> None:
    for url in (
        f"http://127.0.0.1:{origins.http}/echo/v4",
        f"http://[::1]:{origins.http6}/echo/v6",
    ):
        body, status, err = curl("--socks5", f"127.0.0.1:{socks.port}", url)
        assert status == 200 and json.loads(body)["path"].startswith("/echo/v"), err
        rec = record_for(socks, url_is(url))
        assert rec["server"]["ip"] in ("127.0.0.1", "::1")


def test_curl_socks5_https_intercepted(socks: ProxyProcess, origins: Origins) -> None:
    url = f"https://localhost:{origins.https}/echo/tls"
    body, status, err = curl(
        "--socks5-hostname", f"127.0.0.1:{socks.port}", url, "--cacert", our_ca(socks)
    )
    assert status == 200 and json.loads(body)["path"] == "/echo/tls", err
    rec = record_for(socks, url_is(url))
    assert rec["tls"]["intercepted"] is True and rec["tls"]["client"]["sni"] == "localhost"


def test_credentials_accepted_and_refused_with_rfc1929_status(
    socks_auth: ProxyProcess, origins: Origins
) -> None:
    url = f"http://127.0.0.1:{origins.http}/echo/auth"
    body, status, err = curl("--socks5", f"alice:s3cret@127.0.0.1:{socks_auth.port}", url)
    assert status == 200 and json.loads(body)["path"] == "/echo/auth", err
    _, status, err = curl("--socks5-hostname", f"alice:wrong@127.0.0.1:{socks_auth.port}", url)
    assert status == 0 and "rejected" in err.lower()
    # The exact bytes: RFC 1929 status 0x01, then the connection is closed.
    with socket.create_connection(("127.0.0.1", socks_auth.port), timeout=10) as s:
        s.sendall(b"\x05\x01\x02")
        assert s.recv(2) == b"\x05\x02"
        s.sendall(b"\x01\x05alice\x05wrong")
        assert s.recv(2) == b"\x01\x01"
        assert s.recv(1) == b""  # closed
    rec = record_for(socks_auth, lambda r: "RFC 1929 status 0x01" in str(r.get("error")))
    assert rec["kind"] == "tunnel" and "route" not in rec  # no server connection was tried


def test_python_socks_client_with_and_without_credentials(
    socks: ProxyProcess, socks_auth: ProxyProcess, origins: Origins
) -> None:
    for proxy_url in (
        f"socks5://127.0.0.1:{socks.port}",
        f"socks5://alice:s3cret@127.0.0.1:{socks_auth.port}",
    ):
        proxy = Proxy.from_url(proxy_url, rdns=True)
        sock = proxy.connect("localhost", origins.http, timeout=10)
        try:
            sock.sendall(b"GET /echo/ps HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        finally:
            sock.close()
        assert data.startswith(b"HTTP/1.1 200") and b'"/echo/ps"' in data
    # HTTPS through python-socks, verified against the proxy's CA (interception).
    proxy = Proxy.from_url(f"socks5://127.0.0.1:{socks.port}", rdns=True)
    raw = proxy.connect("localhost", origins.https, timeout=10)
    ctx = ssl.create_default_context(cafile=our_ca(socks))
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /echo/pst HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b'"/echo/pst"' in data
    with pytest.raises(ProxyError):
        Proxy.from_url(f"socks5://alice:nope@127.0.0.1:{socks_auth.port}").connect(
            "localhost", origins.http, timeout=10
        )


def test_bind_and_udp_associate_are_answered_0x07(socks: ProxyProcess) -> None:
    for cmd in (2, 3):
        with socket.create_connection(("127.0.0.1", socks.port), timeout=10) as s:
            s.sendall(b"\x05\x01\x00")
            assert s.recv(2) == b"\x05\x00"
            s.sendall(bytes((5, cmd, 0, 1, 127, 0, 0, 1, 0, 80)))
            reply = s.recv(10)
            assert reply[:2] == b"\x05\x07"
            assert s.recv(1) == b""


def test_tls_without_mitm_is_passed_through(socks_auth: ProxyProcess, origins: Origins) -> None:
    url = f"https://localhost:{origins.https}/echo/pass"
    proxy = f"alice:s3cret@127.0.0.1:{socks_auth.port}"
    body, status, err = curl("--socks5-hostname", proxy, url, "--cacert", str(origins.ca.cert_path))
    assert status == 200 and json.loads(body)["path"] == "/echo/pass", err  # the origin's cert
    rec = record_for(socks_auth, url_is(f"localhost:{origins.https}"))
    assert rec["kind"] == "tunnel" and rec["tls"]["intercepted"] is False
    assert rec["tls"]["client"]["sni"] == "localhost"


def test_every_record_matches_the_flow_log_schema(
    socks: ProxyProcess, socks_auth: ProxyProcess, origins: Origins
) -> None:
    from tests.integration.test_flow_log_schema import valid

    url = f"http://127.0.0.1:{origins.http}/echo/schema"
    assert curl("--socks5", f"127.0.0.1:{socks.port}", url)[1] == 200
    assert curl("--socks5", f"alice:bad@127.0.0.1:{socks_auth.port}", url)[1] == 0
    record_for(socks, url_is(url))
    record_for(socks_auth, lambda r: "status 0x01" in str(r.get("error")))
    records = socks.records() + socks_auth.records()
    for rec in records:
        valid(rec)
