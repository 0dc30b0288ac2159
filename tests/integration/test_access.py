"""Safe defaults: proxy authentication, no accidental open proxy, connection cap."""

from __future__ import annotations

import subprocess
import sys

import requests

from tests.support.proxyproc import running_proxy
from tests.support.rawhttp import connect, recv_response, recv_until_close
from tests.support.upstreams import RawConnection, Upstreams


def test_proxy_auth_407_then_ok_and_never_forwarded(upstreams: Upstreams) -> None:
    async def capture(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await conn.writer.drain()
        await conn.read_some(2)

    server = upstreams.raw(capture)
    with running_proxy("--proxy-auth", "alice:s3cret") as p:
        url = f"http://127.0.0.1:{server.port}/x"
        r = requests.get(url, proxies={"http": p.url}, timeout=10)
        assert r.status_code == 407
        assert r.headers["Proxy-Authenticate"].startswith("Basic ")
        assert server.connections == []  # nothing went upstream
        bad = requests.get(
            url, proxies={"http": f"http://alice:wrong@127.0.0.1:{p.port}"}, timeout=10
        )
        assert bad.status_code == 407
        good = requests.get(
            url, proxies={"http": f"http://alice:s3cret@127.0.0.1:{p.port}"}, timeout=10
        )
        assert good.status_code == 200 and good.content == b"ok"
    assert b"proxy-authorization" not in bytes(server.connections[0].received).lower()


def test_retry_with_credentials_on_the_same_connection(upstreams: Upstreams) -> None:
    with running_proxy("--proxy-auth", "u:p") as p:
        s = connect(p.port)
        req = b"GET %s/echo/a HTTP/1.1\r\nHost: x\r\n" % upstreams.url.encode()
        s.sendall(req + b"\r\n")
        assert recv_response(s).startswith(b"HTTP/1.1 407 ")
        s.sendall(req + b"Proxy-Authorization: Basic dTpw\r\n\r\n")
        assert recv_response(s).startswith(b"HTTP/1.1 200 ")


def test_open_proxy_refused_without_auth() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--listen-host", "0.0.0.0", "-p", "0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "refusing to run an open forward proxy" in out.stderr
    assert "--proxy-auth" in out.stderr


def test_connection_cap_answers_503_to_the_newest(upstreams: Upstreams) -> None:
    with running_proxy("--max-connections", "2") as p:
        held = [connect(p.port), connect(p.port)]
        for s in held:  # make sure both are registered before the third arrives
            s.sendall(b"GET %s/echo HTTP/1.1\r\nHost: x\r\n\r\n" % upstreams.url.encode())
            assert recv_response(s).startswith(b"HTTP/1.1 200 ")
        third = connect(p.port)
        assert recv_until_close(third).startswith(b"HTTP/1.1 503 ")
        held[0].sendall(b"GET %s/echo HTTP/1.1\r\nHost: x\r\n\r\n" % upstreams.url.encode())
        assert recv_response(held[0]).startswith(b"HTTP/1.1 200 ")
