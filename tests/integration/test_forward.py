"""Forward-proxy behaviour: keep-alive, pipelining, 1xx, upgrades, CONNECT."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import requests

from tests.support.proxyproc import ProxyProcess
from tests.support.rawhttp import connect, recv_response, recv_until_close, serve_keepalive
from tests.support.upstreams import RawConnection, Upstreams


def test_keep_alive_reuses_one_upstream_connection(
    fresh_proxy: ProxyProcess, upstreams: Upstreams
) -> None:
    server = upstreams.raw(serve_keepalive)
    with requests.Session() as s:
        for i in range(100):
            r = s.get(
                f"http://127.0.0.1:{server.port}/n/{i}",
                proxies={"http": fresh_proxy.url},
                timeout=10,
            )
            assert r.status_code == 200 and r.content == b"ok"
    assert len(server.connections) == 1
    assert bytes(server.connections[0].received).count(b"GET /n/") == 100
    assert len(fresh_proxy.records(100)) == 100


def test_pipelined_requests_answered_in_order(proxy: ProxyProcess, upstreams: Upstreams) -> None:
    s = connect(proxy.port)
    reqs = b"".join(
        b"GET %s/echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (upstreams.url.encode(), i)
        for i in range(5)
    )
    s.sendall(reqs)
    for i in range(5):
        resp = recv_response(s)
        assert resp.startswith(b"HTTP/1.1 200 ")
        assert b'"path": "/echo/%d"' % i in resp
    s.close()


def test_expect_100_continue(proxy: ProxyProcess, upstreams: Upstreams) -> None:
    s = connect(proxy.port)
    s.sendall(
        b"POST %s/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n" % upstreams.url.encode()
    )
    interim = s.recv(65536)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
    s.sendall(b"hello")
    resp = recv_response(s)
    assert resp.startswith(b"HTTP/1.1 200 ")
    assert b'"size": 5' in resp
    s.close()


def test_1xx_relayed_before_final_response(proxy: ProxyProcess, upstreams: Upstreams) -> None:
    async def early_hints(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await conn.writer.drain()
        await conn.read_some(2)

    server = upstreams.raw(early_hints)
    s = connect(proxy.port)
    s.sendall(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % server.port)
    data = b""
    while not data.endswith(b"ok"):
        chunk = s.recv(65536)
        assert chunk
        data += chunk
    assert data.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
    assert b"HTTP/1.1 200 OK\r\n" in data


def test_websocket_through_proxy(proxy: ProxyProcess, upstreams: Upstreams) -> None:
    async def run() -> list[str]:
        out = []
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(upstreams.url.replace("http", "ws") + "/ws", proxy=proxy.url) as ws,
        ):
            for i in range(3):
                await ws.send_str(f"m{i}")
                msg = await asyncio.wait_for(ws.receive(), 5)
                out.append(msg.data)
            await ws.send_bytes(b"\x00\x01binary")
            msg = await asyncio.wait_for(ws.receive(), 5)
            out.append(msg.data)
        return out

    assert asyncio.run(run()) == ["echo:m0", "echo:m1", "echo:m2", b"\x00\x01binary"]
    recs = [r for r in proxy.records(1) if r["kind"] == "websocket"]
    deadline_recs = recs or [r for r in proxy.records(99, timeout=3) if r["kind"] == "websocket"]
    assert deadline_recs, "the WebSocket connection is recorded when it ends"


def test_connect_tunnel_keeps_half_close(proxy: ProxyProcess, upstreams: Upstreams) -> None:
    async def reply_after_fin(conn: RawConnection) -> None:
        # Read until the client's FIN, then answer: only works if the proxy
        # passed the FIN on and kept the other direction open.
        while await conn.read_some(5):
            pass
        conn.send(b"got:" + bytes(conn.received))
        await conn.writer.drain()

    server = upstreams.raw(reply_after_fin)
    s = connect(proxy.port)
    s.sendall(
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (server.port, server.port)
    )
    assert s.recv(65536) == b"HTTP/1.1 200 Connection established\r\n\r\n"
    s.sendall(b"opaque \x00\xff bytes")
    s.shutdown(socket.SHUT_WR)
    assert recv_until_close(s) == b"got:opaque \x00\xff bytes"
    recs = [
        r for r in proxy.records(1) if r["kind"] == "tunnel" and r["server"]["port"] == server.port
    ]
    if not recs:
        recs = [
            r
            for r in proxy.records(10**6, timeout=3)
            if r["kind"] == "tunnel" and r["server"]["port"] == server.port
        ]
    tunnel = recs[0]["tunnel"]
    assert tunnel["bytes_client_to_server"] == len(b"opaque \x00\xff bytes")
    assert tunnel["bytes_server_to_client"] == len(b"got:opaque \x00\xff bytes")
    assert tunnel["client_close"] == "fin" and tunnel["server_close"] == "fin"


def test_hop_by_hop_removed_and_host_matches_target(
    proxy: ProxyProcess, upstreams: Upstreams
) -> None:
    async def capture(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close, X-Secret\r\n"
            b"X-Secret: 1\r\nKeep-Alive: 5\r\n\r\n"
        )
        await conn.writer.drain()

    server = upstreams.raw(capture)
    s = connect(proxy.port)
    s.sendall(
        b"GET http://127.0.0.1:%d/p?q=1 HTTP/1.1\r\nHost: other.example\r\nX-Keep: a\r\n"
        b"Connection: X-Drop\r\nX-Drop: 1\r\nProxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nTE: trailers\r\nx-keep-case: B\r\n\r\n" % server.port
    )
    resp = recv_response(s)
    head = resp.split(b"\r\n\r\n")[0]
    assert (
        b"X-Secret" not in head and b"Keep-Alive" not in head and b"Connection: close" not in head
    )
    got = server.connections[0].received
    assert got == (
        b"GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Keep: a\r\nx-keep-case: B\r\n\r\n"
        % server.port
    )


def test_stale_pooled_connection_is_retried(
    fresh_proxy: ProxyProcess, upstreams: Upstreams
) -> None:
    async def one_per_connection(conn: RawConnection) -> None:
        # Answers one request, then closes the keep-alive connection, as a
        # server whose idle timeout expired would.
        await conn.read_until(b"\r\n\r\n")
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await conn.writer.drain()

    server = upstreams.raw(one_per_connection)
    with requests.Session() as s:
        for _ in range(5):
            r = s.get(
                f"http://127.0.0.1:{server.port}/", proxies={"http": fresh_proxy.url}, timeout=10
            )
            assert r.status_code == 200 and r.content == b"ok"
    assert len(server.connections) == 5


def test_http10_client_gets_close_delimited_body(proxy: ProxyProcess, upstreams: Upstreams) -> None:
    s = connect(proxy.port)
    s.sendall(b"GET %s/chunked/1000 HTTP/1.0\r\n\r\n" % upstreams.url.encode())
    data = recv_until_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert len(body) == 1000
