"""Upstream failures become 502/504 naming the upstream and the cause."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator

import pytest

from tests.support.proxyproc import ProxyProcess, running_proxy
from tests.support.rawhttp import connect, recv_until_close
from tests.support.upstreams import RawConnection, Upstreams


def _get(proxy_port: int, url: bytes) -> bytes:
    s = connect(proxy_port, timeout=15)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % url)
    return recv_until_close(s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused(proxy: ProxyProcess) -> None:
    port = _free_port()
    resp = _get(proxy.port, b"http://127.0.0.1:%d/x" % port)
    assert resp.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"upstream 127.0.0.1:%d: connection refused" % port in resp


def test_name_not_resolved(proxy: ProxyProcess) -> None:
    resp = _get(proxy.port, b"http://no-such-host.invalid/x")
    assert resp.startswith(b"HTTP/1.1 502 ")
    assert b"no-such-host.invalid:80: name not resolved" in resp


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port whose accept queue is full: further SYNs are dropped, connects hang."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    yield port
    for c in fillers:
        c.close()
    lsock.close()


def test_connect_timeout_is_504(blackhole: int) -> None:
    with running_proxy("--connect-timeout", "1") as p:
        resp = _get(p.port, b"http://127.0.0.1:%d/x" % blackhole)
    assert resp.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert b"connect timed out" in resp


def test_response_timeout_is_504(upstreams: Upstreams) -> None:
    async def silent(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        await conn.read_some(10)

    server = upstreams.raw(silent)
    with running_proxy("--response-head-timeout", "1") as p:
        resp = _get(p.port, b"http://127.0.0.1:%d/x" % server.port)
    assert resp.startswith(b"HTTP/1.1 504 ")
    assert b"response_head" in resp


def _reset(conn: RawConnection) -> None:
    sock = conn.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.writer.transport.abort()


def test_reset_before_response_is_502(proxy: ProxyProcess, upstreams: Upstreams) -> None:
    async def reset(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        _reset(conn)

    server = upstreams.raw(reset)
    resp = _get(proxy.port, b"http://127.0.0.1:%d/x" % server.port)
    assert resp.startswith(b"HTTP/1.1 502 ")
    assert b"upstream http://127.0.0.1:%d/x" % server.port in resp


def test_garbage_response_is_502(proxy: ProxyProcess, upstreams: Upstreams) -> None:
    async def garbage(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await conn.writer.drain()

    server = upstreams.raw(garbage)
    resp = _get(proxy.port, b"http://127.0.0.1:%d/x" % server.port)
    assert resp.startswith(b"HTTP/1.1 502 ")
    assert b"malformed status line" in resp


def test_failure_after_response_started_closes_client(
    proxy: ProxyProcess, upstreams: Upstreams
) -> None:
    async def dies_mid_body(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await conn.writer.drain()
        await asyncio.sleep(0)
        _reset(conn)

    server = upstreams.raw(dies_mid_body)
    resp = _get(proxy.port, b"http://127.0.0.1:%d/x" % server.port)
    # The head and the bytes that arrived were relayed; then the connection
    # closed, so the client sees a short body rather than a corrupt one.
    assert resp.startswith(b"HTTP/1.1 200 OK\r\n")
    assert resp.endswith(b"partial")
    assert b"502" not in resp


def test_request_to_proxy_itself_is_refused(proxy: ProxyProcess) -> None:
    for host in (b"127.0.0.1", b"localhost"):
        resp = _get(proxy.port, b"http://%s:%d/loop" % (host, proxy.port))
        assert resp.startswith(b"HTTP/1.1 508 Loop Detected\r\n")
